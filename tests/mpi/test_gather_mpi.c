/*
 * test_gather_mpi.c - the gather of a sharded student's parameters
 * (students/param_gather.c) over real MPI communicators: 4 ranks, a
 * teacher rank that idles and a student group of 3 whose shards of tiny_s
 * split block matrices in the middle.
 *
 * Each student rank stands in for an update: it sets its own shard of the
 * parameters to new values (the same function of the old on every rank),
 * leaves the rest old, and starts the gather, counting the bytes it hands
 * to the broadcasts. Then, on every rank:
 *   - fp32 blocks (`cpu`): 4 B per parameter; every parameter new;
 *   - bf16 blocks (`cpu-bf16`): 2 B per block-matrix parameter, 4 B for
 *     the rest; the bf16 copy of every block matrix is bf16 of the new
 *     value and marked current; everything else is new in fp32; the fp32
 *     matrices of other ranks' shards are still old (they did not travel);
 *     a forward reads the copy as it came: its output equals, bit for bit,
 *     a forward of an unsharded student given the new values (which
 *     casts); student_params_full then makes every fp32 value new.
 * Prints the bytes of one gather of ViT-L/16 and ViT-H+/16 both ways.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "comm/comm.h"
#include "nn/half_float.h"
#include "schedule/cost_model.h"
#include "students/students.h"
#include "tests/mpi/mpi_test.h"

enum { STUDENT_RANKS = 3, IMAGES = 2, IMAGE_PX = 32 };
static const char *const model_path = "configs/models/tiny_s.yaml";

/* The broadcasts of the comm hooks, with the bytes started counted. */
typedef struct CountingGroup {
    Comm *comm;
    size_t bytes;
} CountingGroup;

static int counted_broadcast_start(void *context, void *buffer, size_t bytes, int owner, int slot, DdError *err) {
    CountingGroup *counting = context;
    counting->bytes += bytes;
    return comm_group_broadcast_start_hook(counting->comm, buffer, bytes, owner, slot, err);
}

static int counted_broadcast_wait(void *context, int slot, DdError *err) {
    return comm_group_broadcast_wait_hook(((CountingGroup *)context)->comm, slot, err);
}

/* What the stand-in update makes of parameter i, old value x. */
static float updated(float x, size_t i) { return 1.5f * x + 0.01f * (float)(i % 7) + 0.003f; }

/* 1 where float i of the layout is in a block matrix. */
static unsigned char *block_matrix_mask(const Student *s) {
    unsigned char *mask = calloc(s->layout.count, 1);
    if (!mask) return NULL;
    for (int l = 0; l < s->cfg.depth; l++) {
        ViTMatrix matrices[VIT_BLOCK_MATRICES];
        vit_block_matrices(&s->cfg, &s->params.backbone, l, matrices);
        for (int m = 0; m < VIT_BLOCK_MATRICES; m++)
            memset(mask + (matrices[m].tensor - s->params.memory), 1, (size_t)matrices[m].count);
    }
    return mask;
}

/* The backbone's output for fixed images, in host memory ([B, T, D]). */
static float *forward_output(const NnBackend *be, Student *s, size_t *count) {
    DdError err;
    ViTActivations act;
    if (vit_activations_alloc(&act, &s->cfg, be, IMAGES, IMAGE_PX, IMAGE_PX, 0, &err) != 0) return NULL;
    const size_t pixels = (size_t)IMAGES * s->cfg.in_channels * IMAGE_PX * IMAGE_PX;
    float *images = malloc(pixels * sizeof(float));
    *count = (size_t)IMAGES * act.T * s->cfg.dim;
    float *out = malloc(*count * sizeof(float));
    if (images && out) {
        for (size_t i = 0; i < pixels; i++) images[i] = sinf(0.37f * (float)i);
        vit_set_rope(&act, &s->cfg, be, 1.0f);
        vit_forward(be, &s->cfg, &s->params.backbone, &act, images, NULL);
        be->copy_to_host(out, act.out, *count * sizeof(float));
    }
    free(images);
    vit_activations_free(&act, be);
    return out;
}

static void check_gather(const NnBackend *be) {
    RankLayout layout;
    Comm comm;
    DdError err;
    const int ranks[2] = {1, STUDENT_RANKS};
    CHECK(rank_layout_init(&layout, 2, ranks, 6, &err) == 0 && comm_init(&comm, &layout, &err) == 0, "%s",
          err.message);
    if (test_state.failed_checks) return;
    if (comm.group_index == 0) {   /* the teacher rank has nothing to gather */
        comm_free(&comm);
        rank_layout_free(&layout);
        return;
    }
    ViTConfig cfg;
    Student s;
    CHECK(vit_config_load(&cfg, model_path, &err) == 0 &&
              student_create_sharded(&s, &cfg, be, 7, 1, comm.group_rank, STUDENT_RANKS, &err) == 0,
          "%s", err.message);
    if (test_state.failed_checks) return;
    CountingGroup counting = {&comm, 0};
    const StudentGroup group = {.context = &counting, .size = STUDENT_RANKS,
                                .broadcast_start = counted_broadcast_start, .broadcast_wait = counted_broadcast_wait};
    const size_t n = s.layout.count;
    float *old = malloc(n * sizeof(float)), *fresh = malloc(n * sizeof(float)), *found = malloc(n * sizeof(float));
    uint16_t *copy = malloc(s.params.backbone.count * sizeof(uint16_t));   /* the backbone's layout */
    unsigned char *in_matrix = block_matrix_mask(&s);
    CHECK(old && fresh && found && copy && in_matrix, "memory");
    if (test_state.failed_checks) return;

    be->copy_to_host(old, s.params.memory, n * sizeof(float));
    for (size_t i = 0; i < n; i++) fresh[i] = updated(old[i], i);
    be->copy_to_device(s.params.memory + s.shard.begin, fresh + s.shard.begin, s.shard.count * sizeof(float));
    CHECK(student_params_gather_start(be, &s, &group, &err) == 0 && student_params_wait(&s, &group, -1, &err) == 0,
          "%s", err.message);
    be->copy_to_host(found, s.params.memory, n * sizeof(float));

    size_t matrix_floats = 0;
    for (size_t i = 0; i < n; i++) matrix_floats += in_matrix[i];
    int split = 0;   /* a shard boundary inside a matrix: the gather cuts it in two */
    for (int r = 1; r < STUDENT_RANKS; r++) split |= in_matrix[s.shard.bounds[r] - 1] && in_matrix[s.shard.bounds[r]];
    CHECK(split, "no shard of %s ends inside a block matrix: the case would not test a cut", model_path);
    const int bf16 = be->block_bf16;
    const size_t expected_bytes = bf16 ? 2 * matrix_floats + 4 * (n - matrix_floats) : 4 * n;
    CHECK(counting.bytes == expected_bytes, "%s, rank %d: the gather started %zu bytes, expected %zu", be->name,
          comm.group_rank, counting.bytes, expected_bytes);
    CHECK(s.params.backbone.bf16_current == bf16 && s.params_fp32_stale == bf16,
          "%s: bf16_current %d, params_fp32_stale %d, expected %d", be->name, s.params.backbone.bf16_current,
          s.params_fp32_stale, bf16);
    long wrong = 0, stale = 0, wrong_copy = 0;
    size_t other_matrix = 0;   /* fp32 matrix values of other ranks' shards */
    if (bf16) be->copy_to_host(copy, s.params.backbone.bf16, s.params.backbone.count * sizeof(uint16_t));
    for (size_t i = 0; i < n; i++) {
        const int mine = i >= s.shard.begin && i < s.shard.begin + s.shard.count;
        if (bf16 && in_matrix[i]) {
            wrong_copy += copy[i] != float_to_bfloat16(fresh[i]);
            if (mine) wrong += found[i] != fresh[i];
            else stale += found[i] == old[i], other_matrix++;
        } else {
            wrong += found[i] != fresh[i];
        }
    }
    CHECK(wrong == 0 && wrong_copy == 0, "%s, rank %d: %ld fp32 values and %ld bf16 copies differ from the owners'",
          be->name, comm.group_rank, wrong, wrong_copy);
    if (bf16) {
        CHECK(stale > 0 && (size_t)stale == other_matrix,
              "rank %d: %ld of the %zu fp32 matrix values of other shards kept their old value (all should: they "
              "travel in bf16 only)", comm.group_rank, stale, other_matrix);

        /* the forward reads the copy as it came, as an unsharded student
         * given the new values casts them */
        Student whole;
        size_t out_count = 0, whole_count = 0;
        CHECK(student_create(&whole, &cfg, be, 7, 1, &err) == 0, "%s", err.message);
        if (test_state.failed_checks) return;
        be->copy_to_device(whole.params.memory, fresh, n * sizeof(float));
        float *sharded_out = forward_output(be, &s, &out_count), *whole_out = forward_output(be, &whole, &whole_count);
        CHECK(sharded_out && whole_out && out_count == whole_count &&
                  memcmp(sharded_out, whole_out, out_count * sizeof(float)) == 0,
              "rank %d: the forward after the bf16 gather differs from the unsharded one", comm.group_rank);
        free(sharded_out);
        free(whole_out);
        student_free(&whole, be);

        const float *full = student_params_full(&s, &group, &err);
        CHECK(full != NULL, "%s", err.message);
        be->copy_to_host(found, s.params.memory, n * sizeof(float));
        long differ = 0;
        for (size_t i = 0; i < n; i++) differ += found[i] != fresh[i];
        CHECK(differ == 0 && !s.params_fp32_stale, "rank %d: %ld fp32 values differ after student_params_full",
              comm.group_rank, differ);
    }
    free(old), free(fresh), free(found), free(copy), free(in_matrix);
    student_free(&s, be);
    comm_free(&comm);
    rank_layout_free(&layout);
}

static void fp32_blocks_gather_fp32(void) { check_gather(&nn_cpu_backend); }
static void bf16_blocks_gather_their_matrices_in_bf16(void) { check_gather(&nn_cpu_bf16_backend); }

/* What one gather moves of the large students, fp32 and bf16 blocks. */
static void bytes_of_a_gather(void) {
    int rank;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    const char *models[] = {"configs/models/vitl16.yaml", "configs/models/vith16plus.yaml"};
    for (size_t m = 0; m < sizeof models / sizeof *models; m++) {
        DdError err;
        ViTConfig cfg;
        CHECK(vit_config_load(&cfg, models[m], &err) == 0, "%s", err.message);
        if (test_state.failed_checks) return;
        const size_t all = student_gather_bytes(&cfg, 0), bf16 = student_gather_bytes(&cfg, 1);
        CHECK(bf16 < all && bf16 > all / 2, "%s: %zu bytes in bf16 against %zu", cfg.name, bf16, all);
        if (rank == 0)
            printf("  %s: one gather of the parameters %.2f GB in fp32, %.2f GB with bf16 block matrices (%.3fx)\n",
                   cfg.name, all / 1e9, bf16 / 1e9, (double)bf16 / (double)all);
    }
}

MPI_TEST_MAIN(TEST(fp32_blocks_gather_fp32), TEST(bf16_blocks_gather_their_matrices_in_bf16),
              TEST(bytes_of_a_gather))

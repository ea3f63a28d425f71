/*
 * test_student_shard.c - the shards of a student's optimizer state
 * (StudentShard in students/students.h): how the layout's floats are cut,
 * and what a rank keeps when it takes its shard.
 *
 *   - bounds: for counts around the alignment and the layouts of tiny_s,
 *     ViT-S/16, ViT-L/16 and ViT-H+/16, cut 1 to 64 ways: the shards start
 *     at 0, end at the count, follow one another, start on SHARD_ALIGN
 *     floats, and none is longer than an even share rounded up to
 *     SHARD_ALIGN. Prints what a rank keeps of ViT-L/16 and ViT-H+/16;
 *   - keep: a tiny_s student created as shard 1 of 3 has the parameters of
 *     the unsharded one in full, the EMA of its range and zero moments, and
 *     only its range's floats; shard 3 of 3 is refused.
 */
#include <stdlib.h>
#include <string.h>

#include "students/students.h"
#include "tests/test.h"

static void check_bounds(size_t count, int size, const char *what) {
    size_t *bounds = malloc((size_t)(size + 1) * sizeof *bounds);
    CHECK(bounds != NULL, "memory");
    student_shard_bounds(count, size, bounds);
    const size_t share = ((count + (size_t)size - 1) / (size_t)size + SHARD_ALIGN - 1) / SHARD_ALIGN * SHARD_ALIGN;
    CHECK(bounds[0] == 0 && bounds[size] == count, "%s in %d: shards span [%zu, %zu), expected [0, %zu)", what, size,
          bounds[0], bounds[size], count);
    for (int r = 0; r < size; r++) {
        CHECK(bounds[r] <= bounds[r + 1] && bounds[r + 1] - bounds[r] <= share,
              "%s in %d: shard %d is [%zu, %zu), expected at most %zu floats", what, size, r, bounds[r],
              bounds[r + 1], share);
        CHECK(bounds[r] % SHARD_ALIGN == 0 || bounds[r] == count, "%s in %d: shard %d starts at %zu", what, size, r,
              bounds[r]);
    }
    free(bounds);
}

static void shards_cut_the_layout_evenly(void) {
    const size_t counts[] = {0, 1, 63, 64, 65, 1000, 4097};
    const int sizes[] = {1, 2, 3, 7, 8, 64};
    for (size_t c = 0; c < sizeof counts / sizeof *counts; c++)
        for (size_t k = 0; k < sizeof sizes / sizeof *sizes; k++) check_bounds(counts[c], sizes[k], "floats");
    const char *models[] = {"configs/models/tiny_s.yaml", "configs/models/vits16.yaml", "configs/models/vitl16.yaml",
                            "configs/models/vith16plus.yaml"};
    for (size_t m = 0; m < sizeof models / sizeof *models; m++) {
        DdError err = {{0}};
        ViTConfig cfg;
        ModelLayout layout;
        CHECK(vit_config_load(&cfg, models[m], &err) == 0 && model_layout_create(&layout, &cfg, &err) == 0, "%s: %s",
              models[m], err.message);
        if (test_state.failed_checks) return;
        for (size_t k = 0; k < sizeof sizes / sizeof *sizes; k++) check_bounds(layout.count, sizes[k], models[m]);
        if (m >= 2) {   /* the moments and the EMA: 3 fp32 copies */
            size_t bounds[9];
            student_shard_bounds(layout.count, 8, bounds);
            printf("  %s: moments + EMA per rank %.2f GiB unsharded, %.2f GiB in a group of 8\n", cfg.name,
                   3.0 * 4 * (double)layout.count / (1 << 30), 3.0 * 4 * (double)(bounds[1] - bounds[0]) / (1 << 30));
        }
        model_layout_free(&layout);
    }
}

/* n floats of backend memory on the host. */
static float *on_host(const float *memory, size_t n) {
    float *host = malloc((n + 1) * sizeof(float));
    if (host) nn_cpu_backend.copy_to_host(host, memory, n * sizeof(float));
    return host;
}

static void a_rank_keeps_its_shard_only(void) {
    const NnBackend *be = &nn_cpu_backend;
    DdError err = {{0}};
    ViTConfig cfg;
    Student whole, part;
    CHECK(vit_config_load(&cfg, "configs/models/tiny_s.yaml", &err) == 0 &&
              student_create(&whole, &cfg, be, 5, 1, &err) == 0 &&
              student_create_sharded(&part, &cfg, be, 5, 1, 1, 3, &err) == 0,
          "%s", err.message);
    if (test_state.failed_checks) return;
    const size_t count = whole.layout.count;
    CHECK(whole.shard.size == 1 && whole.shard.begin == 0 && whole.shard.count == count,
          "an unsharded student keeps [%zu, +%zu) of %d", whole.shard.begin, whole.shard.count, whole.shard.size);
    size_t bounds[4];
    student_shard_bounds(count, 3, bounds);
    CHECK(part.shard.rank == 1 && part.shard.size == 3 && part.shard.begin == bounds[1] &&
              part.shard.count == bounds[2] - bounds[1] && part.shard.count > 0,
          "shard 1 of 3 keeps [%zu, +%zu), expected [%zu, %zu)", part.shard.begin, part.shard.count, bounds[1],
          bounds[2]);
    /* the same parameters in full, the EMA of its range, zero moments */
    float *params_whole = on_host(whole.params.memory, count), *params_part = on_host(part.params.memory, count);
    float *ema = on_host(part.shard.ema, part.shard.count), *m = on_host(part.shard.adam_m, part.shard.count);
    float *v = on_host(part.shard.adam_v, part.shard.count);
    CHECK(params_whole && params_part && ema && m && v, "memory");
    if (!test_state.failed_checks) {
        CHECK(memcmp(params_whole, params_part, count * sizeof(float)) == 0,
              "a sharded student's parameters differ from the unsharded one's");
        long wrong = 0;
        for (size_t i = 0; i < part.shard.count; i++)
            wrong += ema[i] != params_whole[part.shard.begin + i] || m[i] != 0.0f || v[i] != 0.0f;
        CHECK(wrong == 0, "%ld of %zu kept floats are not the EMA of their range with zero moments", wrong,
              part.shard.count);
    }
    free(params_whole), free(params_part), free(ema), free(m), free(v);
    student_free(&whole, be);
    student_free(&part, be);

    Student bad;
    CHECK(student_create_sharded(&bad, &cfg, be, 5, 1, 3, 3, &err) != 0 &&
              strstr(err.message, "expected shard 0 to 2, found 3"),
          "shard 3 of 3: %s", err.message);
}

TEST_MAIN(TEST(shards_cut_the_layout_evenly), TEST(a_rank_keeps_its_shard_only))

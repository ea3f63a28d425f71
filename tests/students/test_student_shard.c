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
 *   - keep: a tiny_s student with a distinct value in every float of its
 *     moments and EMA keeps exactly its range's values after
 *     student_shard; a second shard outside the range it now keeps is
 *     refused, naming the ranges, and leaves the state as it was.
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

/* The shard's buffer `which` (0: first moments, 1: second, 2: EMA) on the host. */
static float *shard_values(const Student *s, int which) {
    const float *buffers[3] = {s->shard.adam_m, s->shard.adam_v, s->shard.ema};
    float *host = malloc((s->shard.count + 1) * sizeof(float));
    if (host) nn_cpu_backend.copy_to_host(host, buffers[which], s->shard.count * sizeof(float));
    return host;
}

static void a_rank_keeps_its_range_only(void) {
    const NnBackend *be = &nn_cpu_backend;
    DdError err = {{0}};
    ViTConfig cfg;
    Student s;
    CHECK(vit_config_load(&cfg, "configs/models/tiny_s.yaml", &err) == 0 && student_create(&s, &cfg, be, 1, 1, &err) == 0,
          "%s", err.message);
    if (test_state.failed_checks) return;
    const size_t count = s.layout.count;
    CHECK(s.shard.size == 1 && s.shard.begin == 0 && s.shard.count == count, "a new student keeps [%zu, +%zu) of 1",
          s.shard.begin, s.shard.count);
    /* a value in every float that names the buffer and the float */
    float *host = malloc(count * sizeof(float));
    float *buffers[3] = {s.shard.adam_m, s.shard.adam_v, s.shard.ema};
    for (int b = 0; b < 3; b++) {
        for (size_t i = 0; i < count; i++) host[i] = (float)(b * 1000000 + (long)i);
        be->copy_to_device(buffers[b], host, count * sizeof(float));
    }
    CHECK(student_shard(&s, be, 1, 3, &err) == 0, "%s", err.message);
    size_t bounds[4];
    student_shard_bounds(count, 3, bounds);
    CHECK(s.shard.rank == 1 && s.shard.size == 3 && s.shard.begin == bounds[1] && s.shard.count == bounds[2] - bounds[1] &&
              s.shard.count > 0,
          "shard 1 of 3 keeps [%zu, +%zu), expected [%zu, %zu)", s.shard.begin, s.shard.count, bounds[1], bounds[2]);
    long wrong = 0;
    for (int b = 0; b < 3; b++) {
        float *kept = shard_values(&s, b);
        for (size_t i = 0; kept && i < s.shard.count; i++) wrong += kept[i] != (float)(b * 1000000 + (long)(bounds[1] + i));
        free(kept);
    }
    CHECK(wrong == 0, "%ld kept values are not their range's", wrong);

    /* shard 0 of 3 lies outside what shard 1 keeps */
    CHECK(student_shard(&s, be, 0, 3, &err) != 0, "a shard outside the kept range was taken");
    CHECK(strstr(err.message, "shard 0 of 3") && strstr(err.message, "is not within the state it keeps"),
          "message: %s", err.message);
    CHECK(s.shard.rank == 1 && s.shard.begin == bounds[1], "the refused shard changed the state");
    CHECK(student_shard(&s, be, 3, 3, &err) != 0 && strstr(err.message, "expected shard 0 to 2, found 3"),
          "shard 3 of 3: %s", err.message);
    free(host);
    student_free(&s, be);
}

TEST_MAIN(TEST(shards_cut_the_layout_evenly), TEST(a_rank_keeps_its_range_only))

/*
 * test_comm_units.c - the parts of comm/ that need no MPI: rank layouts
 * and bf16 conversion.
 */
#include <string.h>
#include <math.h>
#include <stdint.h>

#include "comm/bf16.h"
#include "comm/proportional_plan.h"
#include "comm/teacher_payload.h"
#include "comm/rank_layout.h"
#include "nn/random.h"
#include "tests/test.h"

static void even_slices_cover_the_batch_once_per_group(void) {
    RankLayout layout;
    DdError err;
    const int ranks[3] = {3, 1, 4};
    CHECK(rank_layout_init(&layout, 3, ranks, 10, &err) == 0, "%s", err.message);
    CHECK(layout.world_size == 8, "world size %d", layout.world_size);
    const int expected_teacher[3][2] = {{0, 4}, {4, 7}, {7, 10}};
    for (int r = 0; r < 3; r++) {
        int b, e;
        rank_layout_slice(&layout, 0, r, &b, &e);
        CHECK(b == expected_teacher[r][0] && e == expected_teacher[r][1], "teacher rank %d: [%d, %d)", r, b, e);
    }
    int b, e;
    rank_layout_slice(&layout, 1, 0, &b, &e);
    CHECK(b == 0 && e == 10, "a one-rank group owns the batch: [%d, %d)", b, e);
    int group_rank = -1;
    CHECK(rank_layout_group_of(&layout, 0, &group_rank) == 0 && group_rank == 0, "rank 0");
    CHECK(rank_layout_group_of(&layout, 3, &group_rank) == 1 && group_rank == 0, "rank 3");
    CHECK(rank_layout_group_of(&layout, 7, &group_rank) == 2 && group_rank == 3, "rank 7");
    CHECK(rank_layout_group_of(&layout, 8, &group_rank) == -1, "rank 8 is outside");
    rank_layout_free(&layout);
}

static void uneven_slices_are_checked(void) {
    RankLayout layout;
    DdError err;
    const int ranks[2] = {2, 2};
    CHECK(rank_layout_init(&layout, 2, ranks, 10, &err) == 0, "%s", err.message);
    const int good[2] = {7, 3}, short_sum[2] = {7, 2}, negative[2] = {11, -1};
    CHECK(rank_layout_set_slices(&layout, 1, good, &err) == 0, "%s", err.message);
    int b, e;
    rank_layout_slice(&layout, 1, 1, &b, &e);
    CHECK(b == 7 && e == 10, "[%d, %d)", b, e);
    CHECK(rank_layout_set_slices(&layout, 1, short_sum, &err) != 0, "a short sum was accepted");
    CHECK(strcmp(err.message, "rank layout: group 1: expected slices summing to the global batch 10, found 9") == 0,
          "%s", err.message);
    CHECK(rank_layout_set_slices(&layout, 0, negative, &err) != 0, "a negative slice was accepted");
    CHECK(strcmp(err.message, "rank layout: group 0 rank 1: expected images >= 0, found -1") == 0, "%s", err.message);
    rank_layout_free(&layout);
}

static void impossible_layouts_are_refused(void) {
    RankLayout layout;
    DdError err;
    const int one[1] = {1}, zero[2] = {1, 0}, many[2] = {1, 5};
    CHECK(rank_layout_init(&layout, 1, one, 4, &err) != 0, "no student group accepted");
    CHECK(rank_layout_init(&layout, 2, zero, 4, &err) != 0, "an empty group accepted");
    CHECK(strcmp(err.message, "rank layout: expected at least 1 rank in group 1, found 0") == 0, "%s", err.message);
    CHECK(rank_layout_init(&layout, 2, many, 4, &err) != 0, "more ranks than images accepted");
}

static void spread_teacher_makes_student_ranks_members(void) {
    /* teacher 2 ranks, students of 2 and 3 ranks; ranks 3 and 6 compute
     * teacher images too, teacher rank 1 none */
    const int ranks[3] = {2, 2, 3};
    const int teacher_images[7] = {6, 0, 0, 3, 0, 0, 1};
    RankLayout layout;
    DdError err = {{0}};
    CHECK(rank_layout_init(&layout, 3, ranks, 10, &err) == 0, "%s", err.message);
    const int moved[3] = {5, 3, 2};
    CHECK(rank_layout_set_slices(&layout, 2, moved, &err) == 0, "%s", err.message);
    CHECK(rank_layout_spread_teacher(&layout, teacher_images, &err) == 0, "%s", err.message);
    CHECK(rank_layout_members(&layout, 0) == 4 && rank_layout_members(&layout, 2) == 3, "members %d, %d",
          rank_layout_members(&layout, 0), rank_layout_members(&layout, 2));
    const int expected_rank[4] = {0, 1, 3, 6}, expected_begin[5] = {0, 6, 6, 9, 10};
    for (int m = 0; m < 4; m++) {
        int b, e;
        rank_layout_slice(&layout, 0, m, &b, &e);
        CHECK(rank_layout_member_rank(&layout, 0, m) == expected_rank[m] && b == expected_begin[m] &&
                  e == expected_begin[m + 1], "member %d: rank %d, [%d, %d)", m, rank_layout_member_rank(&layout, 0, m),
              b, e);
        CHECK(rank_layout_teacher_member(&layout, expected_rank[m]) == m, "rank %d's member", expected_rank[m]);
    }
    CHECK(rank_layout_teacher_member(&layout, 4) == -1, "rank 4 computes no teacher images");
    /* the students' slices are kept, the groups unchanged */
    int b, e, group_rank;
    rank_layout_slice(&layout, 2, 0, &b, &e);
    CHECK(b == 0 && e == 5, "student slice [%d, %d) moved", b, e);
    rank_layout_slice(&layout, 1, 1, &b, &e);
    CHECK(b == 5 && e == 10, "student slice [%d, %d) moved", b, e);
    CHECK(rank_layout_group_of(&layout, 3, &group_rank) == 1 && group_rank == 1, "rank 3 stays a student");
    const int teacher_slices[4] = {4, 2, 3, 1};
    CHECK(rank_layout_set_slices(&layout, 0, teacher_slices, &err) == 0, "%s", err.message);
    rank_layout_slice(&layout, 0, 3, &b, &e);
    CHECK(b == 9 && e == 10, "member 3 after a move: [%d, %d)", b, e);
    const int short_sum[7] = {6, 0, 0, 3, 0, 0, 0};
    CHECK(rank_layout_spread_teacher(&layout, short_sum, &err) != 0 && strstr(err.message, "summing to the global batch"),
          "a short sum was accepted: %s", err.message);
    rank_layout_free(&layout);
}

static void bf16_rounds_to_nearest_even(void) {
    /* 1 + 2^-8 lies halfway between bf16 1.0 and 1 + 2^-7: ties go to even (1.0);
     * 1 + 3 * 2^-8 ties to 1 + 2^-6 (even); just above halfway rounds up */
    const float in[5] = {1.0f + 0x1p-8f, 1.0f + 3 * 0x1p-8f, 1.0f + 0x1p-8f + 0x1p-20f, -2.5f, INFINITY};
    const float out[5] = {1.0f, 1.0f + 0x1p-6f, 1.0f + 0x1p-7f, -2.5f, INFINITY};
    uint16_t wire[5];
    float back[5];
    bf16_from_float(wire, in, 5);
    bf16_to_float(back, wire, 5);
    for (int i = 0; i < 5; i++) CHECK(back[i] == out[i], "value %d: %a, expected %a", i, back[i], out[i]);
    const float nan_in = NAN;
    bf16_from_float(wire, &nan_in, 1);
    bf16_to_float(back, wire, 1);
    CHECK(isnan(back[0]), "NaN did not survive the wire");
}

static void bf16_relative_error_is_at_most_2_to_minus_8(void) {
    DdRandom rng = dd_random_seed(7, 0);
    double worst = 0;
    for (int i = 0; i < 100000; i++) {
        float x = (float)(dd_random_normal(&rng) * pow(10.0, 6 * dd_random_uniform(&rng) - 3));
        uint16_t wire;
        float back;
        bf16_from_float(&wire, &x, 1);
        bf16_to_float(&back, &wire, 1);
        double rel = fabs((double)back - x) / fabs((double)x);
        if (rel > worst) worst = rel;
    }
    printf("  bf16 worst relative error over 100000 values: %.3g (bound 2^-8 = %.3g)\n", worst, 0x1p-8);
    CHECK(worst <= 0x1p-8, "worst relative error %g", worst);
}

static void ranks_follow_cost_with_one_at_least(void) {
    DdError err;
    int ranks[5];
    /* costs 7 : 1 : 2 : 4 : 6 over 25 ranks: 5 fixed, 20 shared as 7, 1, 2, 4, 6 */
    const double costs[5] = {7, 1, 2, 4, 6};
    CHECK(proportional_plan(ranks, costs, 5, 25, 64, &err) == 0, "%s", err.message);
    const int expected[5] = {8, 2, 3, 5, 7};
    for (int g = 0; g < 5; g++) CHECK(ranks[g] == expected[g], "group %d: %d ranks, expected %d", g, ranks[g], expected[g]);
    /* a tiny group still gets one rank; the remainder goes to the largest fraction */
    const double skewed[3] = {100, 1e-6, 1};
    CHECK(proportional_plan(ranks, skewed, 3, 5, 64, &err) == 0, "%s", err.message);
    CHECK(ranks[0] == 3 && ranks[1] == 1 && ranks[2] == 1, "skewed: %d %d %d", ranks[0], ranks[1], ranks[2]);
    /* never more ranks than images: the surplus moves to the other groups */
    CHECK(proportional_plan(ranks, skewed, 3, 6, 2, &err) == 0, "%s", err.message);
    CHECK(ranks[0] == 2 && ranks[1] + ranks[2] == 4 && ranks[1] <= 2 && ranks[2] <= 2, "capped: %d %d %d", ranks[0],
          ranks[1], ranks[2]);
    CHECK(proportional_plan(ranks, costs, 5, 4, 64, &err) != 0, "4 ranks for 5 groups accepted");
    CHECK(strcmp(err.message, "plan: expected at least one rank per group (5 ranks), found 4 ranks") == 0, "%s",
          err.message);
}

static void payload_rows_round_trip_through_bf16(void) {
    /* B = 3 images, G = 2 global crops of Np = 4 patches, Kd = 3, Ki = 2 */
    const PayloadShape shape = {3, 2, 4, 3, 2};
    const uint8_t masks[6 * 4] = {1, 0, 0, 1, /* crop 0 of image 0 */ 0, 0, 0, 0, /* image 1 */ 1, 1, 1, 0,
                                  0, 1, 0, 0, /* crop 1 of image 0 */ 0, 0, 0, 0, 0, 0, 0, 1};
    long offsets[8];
    long masked = payload_offsets(&shape, masks, 2, offsets);
    CHECK(masked == 7, "masked %ld", masked);
    /* image 0: 2*3 + (2 + 1)*2 = 12; image 1: 6; image 2: 6 + (3 + 1)*2 = 14 */
    CHECK(offsets[2] == 0 && offsets[3] == 12 && offsets[4] == 18 && offsets[5] == 32, "offsets %ld %ld %ld %ld",
          offsets[2], offsets[3], offsets[4], offsets[5]);
    float dino[6 * 3], ibot[7 * 2], rows[32], dino_back[6 * 3], ibot_back[7 * 2];
    for (int i = 0; i < 18; i++) dino[i] = (float)(i + 1);
    for (int i = 0; i < 14; i++) ibot[i] = (float)(100 + i);
    long starts[6];
    payload_pack(&shape, masks, dino, ibot, rows, starts);
    /* image 0's row: its DINO rows (crop rows 0 and 3), then its masked patches:
     * crop 0 has ibot rows 0, 1; crop 1 (crop row 3) has ibot row 5 */
    const float image0[12] = {1, 2, 3, 10, 11, 12, 100, 101, 102, 103, 110, 111};
    CHECK(memcmp(rows, image0, sizeof image0) == 0, "image 0 row: %g %g %g ... %g", rows[0], rows[1], rows[2],
          rows[11]);
    uint16_t wire[32];
    bf16_from_float(wire, rows, 32);
    payload_unpack(&shape, masks, wire, dino_back, ibot_back, starts);
    CHECK(memcmp(dino, dino_back, sizeof dino) == 0, "DINO rows differ after the round trip");
    CHECK(memcmp(ibot, ibot_back, sizeof ibot) == 0, "iBOT rows differ after the round trip");
}

TEST_MAIN(TEST(spread_teacher_makes_student_ranks_members), TEST(payload_rows_round_trip_through_bf16), TEST(ranks_follow_cost_with_one_at_least), TEST(even_slices_cover_the_batch_once_per_group), TEST(uneven_slices_are_checked),
          TEST(impossible_layouts_are_refused), TEST(bf16_rounds_to_nearest_even),
          TEST(bf16_relative_error_is_at_most_2_to_minus_8))

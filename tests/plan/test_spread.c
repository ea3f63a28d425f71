/*
 * test_spread.c - the teacher spread over the spare time of student ranks
 * (schedule/planner.h, schedule/teacher_spread.c): a case worked by hand,
 * small cases against a brute force over every split and every way of
 * dealing the teacher's images, memory that forbids hosting the teacher,
 * a sharded optimizer state that makes room for it, and the dinov3-family
 * run on 256 devices of 80 GiB.
 */
#include <math.h>
#include <stdio.h>

#include "schedule/planner.h"
#include "test.h"
#include "tools/commands.h"
#include "tools/run_config.h"

enum { BATCH = 6 };

/* cmd_plan.c (run_plan_inputs) links against the command table's helper. */
int wants_help(int argc, char **argv) { return (void)argc, (void)argv, 0; }

/* Every rank runs at 1 FLOP/s, ample memory, no all-reduce cost. */
static PlanDevices unit_devices(int count) {
    return (PlanDevices){.count = count, .memory_bytes = 1e18, .peak_flops = 1.0, .link_bytes_per_second = 1e30};
}

static PlanGroupInput group(const char *name, int is_teacher, double seconds_per_image) {
    return (PlanGroupInput){.name = name, .is_teacher = is_teacher, .flops_per_image = seconds_per_image,
                            .sustained_flops = 1.0};
}

static const PlanOptions spread = {.spread_teacher = 1};

static void one_teacher_and_one_student_share_the_teacher(void) {
    /* teacher 1 s/image, student 0.5 s/image, 10 images, 2 devices: alone
     * the teacher takes 10 s; the student rank (5 s of its own) can take
     * teacher images: 8 + 2 -> max(8, 5 + 2) = 8 s is the best split */
    PlanGroupInput groups[2] = {group("t", 1, 1.0), group("s", 0, 0.5)};
    PlanDevices d = unit_devices(2);
    Plan p;
    DdError err = {{0}};
    CHECK(plan_groups(&p, groups, 2, 10, &d, &spread, &err) == 0, "%s", err.message);
    CHECK(fabs(p.seconds_per_iteration - 8) < 1e-9, "%g s, expected 8", p.seconds_per_iteration);
    CHECK(p.spread_teacher && p.teacher_images[0] == 8 && p.teacher_images[1] == 2, "teacher images %d + %d",
          p.teacher_images[0], p.teacher_images[1]);
    CHECK(p.groups[1].teacher_images == 2 && p.groups[0].most_images == 8, "groups: %d hosted, teacher %d",
          p.groups[1].teacher_images, p.groups[0].most_images);
    /* idle: teacher 0, student 1 - 7/8 */
    CHECK(fabs(p.groups[1].idle_fraction - 0.125) < 1e-12, "student idle %g", p.groups[1].idle_fraction);
    Plan plain;
    CHECK(plan_groups(&plain, groups, 2, 10, &d, NULL, &err) == 0, "%s", err.message);
    CHECK(fabs(plain.seconds_per_iteration - 10) < 1e-9 && !plain.spread_teacher, "without: %g s",
          plain.seconds_per_iteration);
}

/* Busy seconds of the busiest rank for ranks per group and teacher images
 * per rank (Plan.teacher_images order). */
static double busiest(const PlanGroupInput *groups, int group_count, const int *ranks, const int *teacher_images) {
    double most = 0;
    for (int g = 0, k = 0; g < group_count; g++)
        for (int r = 0; r < ranks[g]; r++, k++) {
            int images = g == 0 ? 0 : BATCH / ranks[g] + (r < BATCH % ranks[g]);
            most = fmax(most, images * groups[g].flops_per_image + teacher_images[k] * groups[0].flops_per_image);
        }
    return most;
}

/* The least busiest-rank time over every deal of `left` teacher images to
 * ranks k.. of `count`. */
static double best_deal(const PlanGroupInput *groups, int group_count, const int *ranks, int *deal, int k, int count,
                        int left) {
    if (k == count - 1) {
        deal[k] = left;
        return busiest(groups, group_count, ranks, deal);
    }
    double best = INFINITY;
    for (int h = 0; h <= left; h++) {
        deal[k] = h;
        best = fmin(best, best_deal(groups, group_count, ranks, deal, k + 1, count, left - h));
    }
    return best;
}

static void small_cases_match_a_brute_force(void) {
    static const double costs[][3] = {{1, 0.2, 0.5}, {3, 1, 0.1}, {1, 1, 1}, {0.5, 2, 0.3}, {2, 0.7, 0.7}};
    int spread_taken = 0, exact = 0, cases = 0;
    for (int c = 0; c < 5; c++)
        for (int devices = 3; devices <= 5; devices++) {
            PlanGroupInput groups[3] = {group("t", 1, costs[c][0]), group("a", 0, costs[c][1]),
                                        group("b", 0, costs[c][2])};
            PlanDevices d = unit_devices(devices);
            double best = INFINITY;
            int ranks[3], deal[8];
            for (ranks[1] = 1; ranks[1] <= devices - 2; ranks[1]++)
                for (ranks[2] = 1; ranks[1] + ranks[2] <= devices - 1; ranks[2]++) {
                    ranks[0] = devices - ranks[1] - ranks[2];
                    best = fmin(best, best_deal(groups, 3, ranks, deal, 0, devices, BATCH));
                }
            Plan p;
            DdError err = {{0}};
            CHECK(plan_groups(&p, groups, 3, BATCH, &d, &spread, &err) == 0, "%s", err.message);
            /* the spread is taken only when it gains PLAN_SPREAD_MIN_GAIN */
            CHECK(p.seconds_per_iteration >= best * (1 - 1e-12) &&
                      p.seconds_per_iteration <= best * (1 + PLAN_SPREAD_MIN_GAIN) / (1 - PLAN_SPREAD_MIN_GAIN) + 1e-12,
                  "costs %d, %d devices: planned %g s, best %g s", c, devices, p.seconds_per_iteration, best);
            int images = 0, used = 0;
            for (int k = 0; k < devices; k++) images += p.teacher_images[k];
            for (int g = 0; g < 3; g++) used += p.groups[g].ranks;
            CHECK(images == BATCH && used == devices, "teacher images %d, ranks %d", images, used);
            spread_taken += p.spread_teacher;
            exact += fabs(p.seconds_per_iteration - best) <= 1e-12 * best;
            cases++;
        }
    printf("  %d cases: the spread taken in %d, the brute force's optimum met exactly in %d\n", cases, spread_taken,
           exact);
    CHECK(spread_taken > 0, "no case spreads the teacher");
}

static void memory_keeps_the_teacher_off_full_ranks(void) {
    /* the same shape as the hand case, but the student's state and the
     * teacher's do not fit one device together */
    PlanGroupInput groups[2] = {group("t", 1, 1.0), group("s", 0, 0.5)};
    groups[0].state_bytes = 50;
    groups[1].state_bytes = 40;
    groups[1].activation_bytes_per_image = 1;
    PlanDevices d = unit_devices(2);
    d.memory_bytes = 80;
    Plan p;
    DdError err = {{0}};
    CHECK(plan_groups(&p, groups, 2, 10, &d, &spread, &err) == 0, "%s", err.message);
    CHECK(!p.spread_teacher && p.teacher_images[1] == 0 && fabs(p.seconds_per_iteration - 10) < 1e-9,
          "hosted %d images, %g s", p.teacher_images[1], p.seconds_per_iteration);
    /* room for both: the student hosts, and its micro-batch shrinks */
    d.memory_bytes = 100;
    CHECK(plan_groups(&p, groups, 2, 10, &d, &spread, &err) == 0, "%s", err.message);
    CHECK(p.spread_teacher && p.groups[1].micro_batch == 10 && p.groups[1].memory_bytes <= 100,
          "micro-batch %d, %g bytes", p.groups[1].micro_batch, p.groups[1].memory_bytes);
    d.memory_bytes = 95;   /* 40 + 50 + 5 images of activations at most */
    CHECK(plan_groups(&p, groups, 2, 10, &d, &spread, &err) == 0, "%s", err.message);
    CHECK(p.groups[1].micro_batch == 5 && p.groups[1].memory_bytes <= 95, "micro-batch %d, %g bytes",
          p.groups[1].micro_batch, p.groups[1].memory_bytes);
}

static void sharded_state_makes_room_for_the_teacher(void) {
    /* teacher 2 s/image (50 B of state, 1 B per image), student 0.5 s/image
     * (1 B per image of a micro-batch), batch 10, 3 devices of 100 B. With
     * its 60 B of state in full a student rank cannot hold the teacher's
     * beside it (60 + 1 + 50 + 1 > 100): the best is 2 teacher ranks, 1
     * student rank, 10 s. With 40 B of it sharded, a rank of 2 keeps
     * 20 + 20 + 1 and hosts: teacher 1 rank x 4 images (8 s), each student
     * rank 5 images of its own (2.5 s) + 3 teacher images (6 s) = 8.5 s */
    PlanGroupInput groups[2] = {group("t", 1, 2.0), group("s", 0, 0.5)};
    groups[0].state_bytes = 50;
    groups[0].activation_bytes_per_image = 1;
    groups[1].state_bytes = 60;
    groups[1].activation_bytes_per_image = 1;
    PlanDevices d = unit_devices(3);
    d.memory_bytes = 100;
    static Plan p;
    DdError err = {{0}};
    CHECK(plan_groups(&p, groups, 2, 10, &d, &spread, &err) == 0, "%s", err.message);
    CHECK(!p.spread_teacher && fabs(p.seconds_per_iteration - 10) < 1e-9 && p.groups[0].ranks == 2,
          "unsharded: %g s, teacher on %d ranks", p.seconds_per_iteration, p.groups[0].ranks);
    groups[1].state_bytes = 20;
    groups[1].sharded_state_bytes = 40;
    CHECK(plan_groups(&p, groups, 2, 10, &d, &spread, &err) == 0, "%s", err.message);
    CHECK(p.spread_teacher && fabs(p.seconds_per_iteration - 8.5) < 1e-9 && p.groups[1].ranks == 2,
          "sharded: %g s, student on %d ranks", p.seconds_per_iteration, p.groups[1].ranks);
    CHECK(p.teacher_images[0] == 4 && p.teacher_images[1] == 3 && p.teacher_images[2] == 3,
          "teacher images %d + %d + %d", p.teacher_images[0], p.teacher_images[1], p.teacher_images[2]);
    /* 20 + 40 / 2 + 5 images of activations + the teacher's 50 + 3 */
    CHECK(p.groups[1].micro_batch == 5 && p.groups[1].memory_bytes == 98, "micro-batch %d, %g bytes",
          p.groups[1].micro_batch, p.groups[1].memory_bytes);
}

static void family_fits_256_devices_under_5_percent_idle(void) {
    RunConfig c;
    DdError err = {{0}};
    CHECK(run_config_load(&c, "configs/runs/dinov3-family.yaml", &err) == 0, "%s", err.message);
    PlanGroupInput groups[PLAN_MAX_GROUPS];
    run_plan_inputs(&c, groups);
    PlanDevices d = plan_h100_devices(256);
    static Plan p, plain;
    CHECK(plan_groups(&p, groups, 5, c.global_batch, &d, &spread, &err) == 0, "%s", err.message);
    CHECK(plan_groups(&plain, groups, 5, c.global_batch, &d, NULL, &err) == 0, "%s", err.message);
    CHECK(p.worst_idle_fraction < 0.05, "worst idle %.4f", p.worst_idle_fraction);
    CHECK(plain.worst_idle_fraction >= 0.05, "without the spread %.4f: the test no longer shows why it exists",
          plain.worst_idle_fraction);
    CHECK(p.seconds_per_iteration <= plain.seconds_per_iteration, "%g s vs %g s", p.seconds_per_iteration,
          plain.seconds_per_iteration);
    int images = 0;
    for (int k = 0; k < p.rank_count; k++) images += p.teacher_images[k];
    CHECK(p.rank_count == 256 && images == c.global_batch, "%d ranks, %d teacher images", p.rank_count, images);
    for (int g = 0; g < 5; g++)
        CHECK(p.groups[g].memory_bytes <= d.memory_bytes && p.groups[g].micro_batch >= 1, "%s: %.1f GiB, micro %d",
              groups[g].name, p.groups[g].memory_bytes / 1073741824.0, p.groups[g].micro_batch);
}

TEST_MAIN(TEST(one_teacher_and_one_student_share_the_teacher), TEST(small_cases_match_a_brute_force),
          TEST(memory_keeps_the_teacher_off_full_ranks), TEST(sharded_state_makes_room_for_the_teacher),
          TEST(family_fits_256_devices_under_5_percent_idle))

/*
 * test_plan.c - the group planner (schedule/planner.h): small cases against
 * a brute force over every split, uneven slices against even ones, the exact
 * message of a model that does not fit, the dinov3-family run, and `distill
 * plan` on the run files.
 */
#include <math.h>

#include "schedule/planner.h"
#include "test.h"
#include "tools/commands.h"
#include "tools/run_config.h"

/* cmd_plan links against the command table's helper; no case asks for help. */
int wants_help(int argc, char **argv) { return 0; }

/* Devices of 1 FLOP/s peak, ample memory, no all-reduce cost. */
static PlanDevices unit_devices(int count) {
    return (PlanDevices){.count = count, .memory_bytes = 1e18, .peak_flops = 1.0, .link_bytes_per_second = 1e30};
}

/* The smallest iteration time over every split of the devices (uneven slices). */
static double brute_force_seconds(const PlanGroupInput *groups, int group_count, int batch, const PlanDevices *d) {
    int ranks[PLAN_MAX_GROUPS];
    double best = INFINITY;
    long splits = 1;
    for (int g = 0; g < group_count - 1; g++) splits *= d->count;
    for (long code = 0; code < splits; code++) {
        long rest = code;
        int used = 0;
        for (int g = 0; g < group_count - 1; g++) ranks[g] = 1 + (int)(rest % d->count), rest /= d->count, used += ranks[g];
        ranks[group_count - 1] = d->count - used;
        if (ranks[group_count - 1] < 1) continue;
        Plan p;
        DdError err = {{0}};
        if (plan_predict(&p, groups, group_count, batch, d, ranks, &err) == 0) best = fmin(best, p.seconds_per_iteration);
    }
    return best;
}

static void known_optimum_by_brute_force(void) {
    static const double costs[][3] = {{3, 1, 2}, {10, 1, 1}, {1, 1, 1}, {5, 7, 2}, {1, 20, 3}};
    for (int k = 0; k < 5; k++)
        for (int devices = 3; devices <= 12; devices++) {
            PlanGroupInput groups[3] = {
                {.name = "t", .is_teacher = 1, .flops_per_image = costs[k][0]},
                {.name = "a", .flops_per_image = costs[k][1]},
                {.name = "b", .flops_per_image = costs[k][2]},
            };
            PlanDevices d = unit_devices(devices);
            Plan p;
            DdError err = {{0}};
            CHECK(plan_groups(&p, groups, 3, 17, &d, NULL, &err) == 0, "%s", err.message);
            double best = brute_force_seconds(groups, 3, 17, &d);
            CHECK(fabs(p.seconds_per_iteration - best) <= 1e-12 * best, "case %d, %d devices: planned %g, best %g", k,
                  devices, p.seconds_per_iteration, best);
            int sum = 0;
            for (int g = 0; g < 3; g++) sum += p.groups[g].ranks;
            CHECK(sum == devices, "ranks sum to %d, expected %d", sum, devices);
        }
}

static void uneven_slices_beat_even_ones(void) {
    /* batch 10 on 7 devices of equal cost: 3 + 4 ranks take 4 images at most
     * (4+3+3); even slices allow only 1, 2, 5 or 10 ranks: 2 + 5 take 5 */
    PlanGroupInput groups[2] = {{.name = "t", .is_teacher = 1, .flops_per_image = 0.6}, {.name = "s", .flops_per_image = 0.45}};
    PlanDevices d = unit_devices(7);
    Plan uneven, even;
    DdError err = {{0}};
    CHECK(plan_groups(&uneven, groups, 2, 10, &d, NULL, &err) == 0, "%s", err.message);
    CHECK(plan_groups(&even, groups, 2, 10, &d, &(PlanOptions){.even_slices_only = 1}, &err) == 0, "%s", err.message);
    CHECK(fabs(uneven.seconds_per_iteration - 4) < 1e-9 && fabs(even.seconds_per_iteration - 5) < 1e-9,
          "uneven %g s, even %g s", uneven.seconds_per_iteration, even.seconds_per_iteration);
    const GroupPlan *three = uneven.groups[0].ranks == 3 ? &uneven.groups[0] : &uneven.groups[1];
    CHECK(three->ranks == 3 && three->most_images == 4 && three->ranks_with_most == 1, "%d ranks, %d images on %d",
          three->ranks, three->most_images, three->ranks_with_most);
    int slices[8], total = 0;
    plan_slices(three, slices);
    for (int r = 0; r < three->ranks; r++) total += slices[r];
    CHECK(total == 10, "slices sum to %d", total);
}
static void fixed_ranks_are_kept(void) {
    PlanGroupInput groups[3] = {{.name = "t", .is_teacher = 1, .flops_per_image = 1, .fixed_ranks = 2},
                                {.name = "a", .flops_per_image = 1}, {.name = "b", .flops_per_image = 1}};
    PlanDevices d = unit_devices(10);
    Plan p;
    DdError err = {{0}};
    CHECK(plan_groups(&p, groups, 3, 16, &d, NULL, &err) == 0, "%s", err.message);
    CHECK(p.groups[0].ranks == 2 && p.groups[1].ranks + p.groups[2].ranks == 8, "%d %d %d", p.groups[0].ranks,
          p.groups[1].ranks, p.groups[2].ranks);
    CHECK(fabs(p.seconds_per_iteration - 8 / PLAN_TEACHER_EFFICIENCY) < 1e-9, "%g s, expected the teacher's", p.seconds_per_iteration);
}

static void model_too_big_is_named(void) {
    PlanGroupInput groups[2] = {
        {.name = "vit7b16", .is_teacher = 1, .flops_per_image = 1, .state_bytes = 30.0 * 1073741824.0},
        {.name = "vith16plus", .flops_per_image = 1, .state_bytes = 90.0 * 1073741824.0,
         .activation_bytes_per_image = 3.1 * 1073741824.0},
    };
    PlanDevices d = plan_h100_devices(8);
    Plan p;
    DdError err = {{0}};
    CHECK(plan_groups(&p, groups, 2, 64, &d, NULL, &err) != 0, "planned a model over memory");
    CHECK(strcmp(err.message, "vith16plus needs 93.1 GiB per rank with 1 image per rank, a device has 80.0 GiB") == 0,
          "message: %s", err.message);
}

static void family_on_256_devices(void) {
    RunConfig c;
    DdError err = {{0}};
    CHECK(run_config_load(&c, "configs/runs/dinov3-family.yaml", &err) == 0, "%s", err.message);
    PlanGroupInput groups[PLAN_MAX_GROUPS];
    run_plan_inputs(&c, groups);
    PlanDevices d = plan_h100_devices(256);
    Plan p;
    /* in 80 GiB every rank fits (micro-batches), at the cost of ranks for
     * memory: a ViT-S rank keeps ~0.1 GiB of targets per image of its slice,
     * so it needs more ranks than its compute asks (the teacher spread then
     * fills their spare time: tests/plan/test_spread.c) */
    CHECK(plan_groups(&p, groups, 5, c.global_batch, &d, NULL, &err) == 0, "%s", err.message);
    for (int g = 0; g < 5; g++)
        CHECK(p.groups[g].memory_bytes <= d.memory_bytes && p.groups[g].micro_batch >= 1, "%s: %.1f GiB, micro %d",
              groups[g].name, p.groups[g].memory_bytes / 1073741824.0, p.groups[g].micro_batch);
    Plan ample;
    d.memory_bytes = 1e15;
    CHECK(plan_groups(&ample, groups, 5, c.global_batch, &d, NULL, &err) == 0, "%s", err.message);
    CHECK(p.groups[1].ranks > ample.groups[1].ranks && p.seconds_per_iteration >= ample.seconds_per_iteration,
          "vits16: %d ranks in 80 GiB, %d in ample memory", p.groups[1].ranks, ample.groups[1].ranks);
    Plan reference;
    PlanDevices rd = d;
    rd.count = 296;
    CHECK(plan_predict_shared_teacher(&reference, groups, 5, c.global_batch, &rd, (const int[]){48, 48, 80, 120},
                                      &err) == 0, "%s", err.message);
    CHECK(p.seconds_per_iteration < reference.seconds_per_iteration, "planned %g s, reference %g s",
          p.seconds_per_iteration, reference.seconds_per_iteration);
}

static void distill_plan_runs_on_the_run_files(void) {
    char *family[] = {"plan", "configs/runs/dinov3-family.yaml", "--devices", "256", "--device-memory", "1000",
                      "--reference", "48,48,80,120"};
    char *demo[] = {"plan", "configs/runs/demo.yaml", "--devices", "5", "--device-tflops", "0.2"};
    char *too_small[] = {"plan", "configs/runs/dinov3-family.yaml", "--devices", "256", "--device-memory", "20"};
    CHECK(cmd_plan(8, family) == 0, "family");
    CHECK(cmd_plan(6, demo) == 0, "demo");
    CHECK(cmd_plan(6, too_small) == 1, "family in 20 GiB (ViT-H+'s state alone is 21.9 GiB)");
}

TEST_MAIN(TEST(known_optimum_by_brute_force), TEST(uneven_slices_beat_even_ones), TEST(fixed_ranks_are_kept),
          TEST(model_too_big_is_named), TEST(family_on_256_devices), TEST(distill_plan_runs_on_the_run_files))

/*
 * test_plan.c - the group planner (schedule/planner.h): small cases against
 * a brute force over every split, uneven slices against even ones, the exact
 * message of a model that does not fit, the optimizer state sharded among a
 * student group's ranks (memory per rank, plans it changes, the off switch),
 * the dinov3-family run, and `distill plan` on the run files.
 */
#include <math.h>

#include "nn/vit.h"
#include "schedule/cost_model.h"
#include "schedule/planner.h"
#include "schedule/planner_internal.h"
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

#define GIB 1073741824.0

/* A teacher of 1 GiB state and 1 GiB per image, and a student keeping
 * `state` GiB in full on every rank, `sharded` GiB divided among its ranks,
 * 1 GiB per image of its slice and 1 GiB per image of a micro-batch. */
static void teacher_and_student(PlanGroupInput *groups, double state, double sharded) {
    groups[0] = (PlanGroupInput){.name = "t", .is_teacher = 1, .flops_per_image = 1, .state_bytes = GIB,
                                 .activation_bytes_per_image = GIB};
    groups[1] = (PlanGroupInput){.name = "s", .flops_per_image = 1, .state_bytes = state * GIB,
                                 .sharded_state_bytes = sharded * GIB, .slice_bytes_per_image = GIB,
                                 .activation_bytes_per_image = GIB};
}

static void sharded_state_is_divided_by_the_ranks(void) {
    /* 40 GiB in full + 60 GiB sharded vs the same 100 GiB unsharded, 12
     * images, ample memory: a rank of n keeps 40 + 60 / n + 2 x its images */
    PlanGroupInput sharded[2], unsharded[2];
    teacher_and_student(sharded, 40, 60);
    teacher_and_student(unsharded, 100, 0);
    for (int n = 1; n <= 4; n++) {
        PlanDevices d = unit_devices(1 + n);
        d.memory_bytes = 1e6 * GIB;
        static Plan with, without;
        DdError err = {{0}};
        CHECK(plan_predict(&with, sharded, 2, 12, &d, (const int[]){1, n}, &err) == 0, "%s", err.message);
        CHECK(plan_predict(&without, unsharded, 2, 12, &d, (const int[]){1, n}, &err) == 0, "%s", err.message);
        const int images = (12 + n - 1) / n;
        const double expected = (40 + 60.0 / n + 2.0 * images) * GIB;
        CHECK(plan_rank_state_bytes(&sharded[1], n) == (40 + 60.0 / n) * GIB, "%d ranks: state %g GiB", n,
              plan_rank_state_bytes(&sharded[1], n) / GIB);
        CHECK(with.groups[1].micro_batch == images && with.groups[1].memory_bytes == expected,
              "%d ranks: micro-batch %d, %g GiB per rank, expected %g", n, with.groups[1].micro_batch,
              with.groups[1].memory_bytes / GIB, expected / GIB);
        CHECK(without.groups[1].memory_bytes == (100 + 2.0 * images) * GIB, "%d ranks unsharded: %g GiB", n,
              without.groups[1].memory_bytes / GIB);
        CHECK(n == 1 ? with.groups[1].memory_bytes == without.groups[1].memory_bytes
                     : with.groups[1].memory_bytes < without.groups[1].memory_bytes,
              "%d ranks: %g GiB sharded, %g unsharded", n, with.groups[1].memory_bytes / GIB,
              without.groups[1].memory_bytes / GIB);
        CHECK(with.groups[0].memory_bytes == without.groups[0].memory_bytes, "the teacher's memory changed");
    }
}

static void sharding_fits_a_student_on_two_ranks(void) {
    /* 80 GiB devices, batch 4 on 3 devices: 100 GiB of state does not fit
     * one rank in full nor sharded (40 + 60); on 2 ranks sharded a rank
     * keeps 40 + 30 + 2 images of slice + a micro-batch of 2 = 74 GiB */
    PlanGroupInput sharded[2], unsharded[2];
    teacher_and_student(sharded, 40, 60);
    teacher_and_student(unsharded, 100, 0);
    PlanDevices d = unit_devices(3);
    d.memory_bytes = 80 * GIB;
    static Plan p;
    DdError err = {{0}};
    CHECK(plan_groups(&p, unsharded, 2, 4, &d, NULL, &err) != 0, "planned 100 GiB of unsharded state in 80");
    CHECK(strcmp(err.message, "s needs 102.0 GiB per rank with 1 image per rank, a device has 80.0 GiB") == 0,
          "message: %s", err.message);
    CHECK(plan_groups(&p, sharded, 2, 4, &d, NULL, &err) == 0, "%s", err.message);
    CHECK(p.groups[0].ranks == 1 && p.groups[1].ranks == 2 && p.groups[1].micro_batch == 2 &&
              p.groups[1].memory_bytes == 74 * GIB,
          "ranks %d + %d, micro-batch %d, %g GiB per student rank", p.groups[0].ranks, p.groups[1].ranks,
          p.groups[1].micro_batch, p.groups[1].memory_bytes / GIB);
    CHECK(plan_predict(&p, sharded, 2, 4, &d, (const int[]){2, 1}, &err) != 0, "the student fits on 1 rank");
    /* 50 GiB: not even on every device (40 + 60 / 3 + 1 + 1) */
    d.memory_bytes = 50 * GIB;
    CHECK(plan_groups(&p, sharded, 2, 4, &d, NULL, &err) != 0, "planned 62 GiB in 50");
    CHECK(strcmp(err.message, "s needs 62.0 GiB per rank with 1 image per rank on 3 ranks (its optimizer state "
                              "sharded), a device has 50.0 GiB") == 0,
          "message: %s", err.message);
}

static void search_is_exact_when_memory_depends_on_ranks(void) {
    /* 40 GiB devices, batch 17: student a needs 2 ranks at least (10 GiB in
     * full + 30 / n sharded + 1 per image of its slice + a micro-batch of 1:
     * 58 GiB on 1 rank, 35 on 2), student b too (5 GiB unsharded + 3 per
     * image + 1: 57 on 1 rank, 33 on 2): the brute force over every split
     * agrees with the search */
    static const double costs[][3] = {{3, 1, 2}, {1, 5, 1}, {1, 1, 5}, {10, 1, 1}};
    for (int k = 0; k < 4; k++)
        for (int devices = 6; devices <= 12; devices++) {
            PlanGroupInput groups[3] = {
                {.name = "t", .is_teacher = 1, .flops_per_image = costs[k][0]},
                {.name = "a", .flops_per_image = costs[k][1], .state_bytes = 10 * GIB, .sharded_state_bytes = 30 * GIB,
                 .slice_bytes_per_image = GIB, .activation_bytes_per_image = GIB},
                {.name = "b", .flops_per_image = costs[k][2], .state_bytes = 5 * GIB, .slice_bytes_per_image = 3 * GIB,
                 .activation_bytes_per_image = GIB},
            };
            PlanDevices d = unit_devices(devices);
            d.memory_bytes = 40 * GIB;
            static Plan p;
            DdError err = {{0}};
            CHECK(plan_groups(&p, groups, 3, 17, &d, NULL, &err) == 0, "%s", err.message);
            double best = brute_force_seconds(groups, 3, 17, &d);
            CHECK(fabs(p.seconds_per_iteration - best) <= 1e-12 * best, "case %d, %d devices: planned %g, best %g", k,
                  devices, p.seconds_per_iteration, best);
            CHECK(p.groups[1].ranks >= 2 && p.groups[1].memory_bytes <= d.memory_bytes, "a on %d ranks, %g GiB",
                  p.groups[1].ranks, p.groups[1].memory_bytes / GIB);
        }
}

/* Plans equal in every figure the planner fills. */
static int same_plan(const Plan *a, const Plan *b) {
    if (a->group_count != b->group_count || a->rank_count != b->rank_count ||
        a->seconds_per_iteration != b->seconds_per_iteration || a->worst_idle_fraction != b->worst_idle_fraction ||
        a->spread_teacher != b->spread_teacher)
        return 0;
    for (int g = 0; g < a->group_count; g++) {
        const GroupPlan *x = &a->groups[g], *y = &b->groups[g];
        if (x->ranks != y->ranks || x->most_images != y->most_images || x->ranks_with_most != y->ranks_with_most ||
            x->seconds != y->seconds || x->idle_fraction != y->idle_fraction || x->memory_bytes != y->memory_bytes ||
            x->micro_batch != y->micro_batch || x->teacher_images != y->teacher_images)
            return 0;
    }
    return memcmp(a->teacher_images, b->teacher_images, sizeof(int) * (size_t)a->rank_count) == 0;
}

static void family_with_and_without_sharding(void) {
    RunConfig c;
    DdError err = {{0}};
    CHECK(run_config_load(&c, "configs/runs/dinov3-family.yaml", &err) == 0, "%s", err.message);
    CHECK(c.shard_optimizer_state == SHARD_AUTO, "shard_optimizer_state is %d in the family's run file",
          (int)c.shard_optimizer_state);
    PlanGroupInput sharded[PLAN_MAX_GROUPS], unsharded[PLAN_MAX_GROUPS], before[PLAN_MAX_GROUPS];
    c.shard_optimizer_state = SHARD_ALWAYS;
    run_plan_inputs(&c, sharded);
    c.shard_optimizer_state = SHARD_NEVER;
    run_plan_inputs(&c, unsharded);
    /* the inputs before sharding existed: every rank keeps all 5 copies of
     * what it trains, the bf16 copy of its backbone (GPUs keep blocks in
     * bf16) and the teacher prototype layers it applies */
    const ViTConfig *t = &c.teacher.model;
    const double teacher_prototypes = COST_BYTES_PER_FLOAT * (double)(head_prototype_param_count(&t->dino_head) +
                                                                       head_prototype_param_count(&t->ibot_head));
    for (int g = 0; g < 5; g++) {
        before[g] = unsharded[g];
        before[g].sharded_state_bytes = 0;
        const double params = g == 0 ? 0 : (double)trained_param_count(&c.students[g - 1].model);
        if (g > 0)
            before[g].state_bytes = COST_BYTES_PER_FLOAT * COST_TRAINED_COPIES * params + teacher_prototypes +
                                    (double)vit_params_bf16_bytes(&c.students[g - 1].model, 1);
        CHECK(unsharded[g].sharded_state_bytes == 0 && unsharded[g].state_bytes == before[g].state_bytes,
              "%s unsharded: %g + %g GiB, expected %g in full", unsharded[g].name, unsharded[g].state_bytes / GIB,
              unsharded[g].sharded_state_bytes / GIB, before[g].state_bytes / GIB);
        CHECK(sharded[g].sharded_state_bytes == COST_BYTES_PER_FLOAT * COST_SHARDABLE_COPIES * params &&
                  sharded[g].state_bytes + sharded[g].sharded_state_bytes == unsharded[g].state_bytes,
              "%s sharded: %g + %g GiB", sharded[g].name, sharded[g].state_bytes / GIB,
              sharded[g].sharded_state_bytes / GIB);
    }
    PlanDevices d = plan_h100_devices(256);
    const PlanOptions spread = {.spread_teacher = 1};
    static Plan off, old, on, same_ranks;
    /* the off switch: the plan of the inputs before sharding, figure for figure */
    CHECK(plan_groups(&off, unsharded, 5, c.global_batch, &d, &spread, &err) == 0, "%s", err.message);
    CHECK(plan_groups(&old, before, 5, c.global_batch, &d, &spread, &err) == 0, "%s", err.message);
    CHECK(same_plan(&off, &old), "unsharded: %g s, the plan before sharding %g s", off.seconds_per_iteration,
          old.seconds_per_iteration);
    /* sharded, on the same ranks: every student rank has room for more
     * images per micro-batch (it keeps 2 of its 5 copies in full) */
    CHECK(plan_groups(&off, unsharded, 5, c.global_batch, &d, NULL, &err) == 0, "%s", err.message);
    int ranks[5];
    for (int g = 0; g < 5; g++) ranks[g] = off.groups[g].ranks;
    CHECK(plan_predict(&same_ranks, sharded, 5, c.global_batch, &d, ranks, &err) == 0, "%s", err.message);
    for (int g = 1; g < 5; g++)
        CHECK(same_ranks.groups[g].micro_batch > off.groups[g].micro_batch,
              "%s on %d ranks: micro-batch %d sharded, %d unsharded", sharded[g].name, ranks[g],
              same_ranks.groups[g].micro_batch, off.groups[g].micro_batch);
    /* on 64 devices the memory it frees buys a faster plan */
    d.count = 64;
    CHECK(plan_groups(&off, unsharded, 5, c.global_batch, &d, &spread, &err) == 0, "%s", err.message);
    CHECK(plan_groups(&on, sharded, 5, c.global_batch, &d, &spread, &err) == 0, "%s", err.message);
    CHECK(on.seconds_per_iteration < off.seconds_per_iteration, "64 devices: %.3f s sharded, %.3f s unsharded",
          on.seconds_per_iteration, off.seconds_per_iteration);
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

/* shard_optimizer_state: auto on the family: the plan is at least as fast
 * as both forced ones, and faster than none sharded on 256 and 64 devices
 * (the memory buys micro-batches and teacher images on student ranks, the
 * gather hides behind the next forward). plan_group_on: a group whose
 * state does not fit 2 ranks unsharded is sharded there; one that fits
 * either way is sharded where its links are too slow for the backward to
 * hide a whole all-reduce. */
static void auto_sharding_chooses_the_faster(void) {
    RunConfig c;
    DdError err = {{0}};
    CHECK(run_config_load(&c, "configs/runs/dinov3-family.yaml", &err) == 0, "%s", err.message);
    if (test_state.failed_checks) return;
    PlanGroupInput ways[3][PLAN_MAX_GROUPS];   /* auto, true, false */
    const ShardMode modes[3] = {SHARD_AUTO, SHARD_ALWAYS, SHARD_NEVER};
    for (int w = 0; w < 3; w++) {
        c.shard_optimizer_state = modes[w];
        run_plan_inputs(&c, ways[w]);
    }
    const PlanOptions spread = {.spread_teacher = 1};
    static Plan plans[3];
    const int device_counts[2] = {256, 64};
    for (int k = 0; k < 2; k++) {
        PlanDevices d = plan_h100_devices(device_counts[k]);
        for (int w = 0; w < 3; w++)
            CHECK(plan_groups(&plans[w], ways[w], 5, c.global_batch, &d, &spread, &err) == 0, "%s", err.message);
        int sharded_groups = 0;
        for (int g = 1; g < 5; g++) sharded_groups += plans[0].groups[g].sharded_state;
        printf("  %d devices: auto %.3f s (%d of 4 groups sharded), true %.3f s, false %.3f s\n", d.count,
               plans[0].seconds_per_iteration, sharded_groups, plans[1].seconds_per_iteration,
               plans[2].seconds_per_iteration);
        CHECK(plans[0].seconds_per_iteration <= plans[1].seconds_per_iteration &&
                  plans[0].seconds_per_iteration <= plans[2].seconds_per_iteration,
              "%d devices: auto %.4f s, true %.4f s, false %.4f s", d.count, plans[0].seconds_per_iteration,
              plans[1].seconds_per_iteration, plans[2].seconds_per_iteration);
        CHECK(plans[0].seconds_per_iteration < plans[2].seconds_per_iteration && sharded_groups > 0,
              "%d devices: auto %.4f s with %d groups sharded, none sharded %.4f s", d.count,
              plans[0].seconds_per_iteration, sharded_groups, plans[2].seconds_per_iteration);
    }
    /* one group on its own: 100 GiB unsharded of which 60 shardable, in 80 GiB */
    PlanDevices d = {.count = 8, .memory_bytes = 80 * GIB, .peak_flops = 1.0, .link_bytes_per_second = 1.0};
    PlanGroupInput g = {.name = "s", .flops_per_image = 1.0, .sustained_flops = 1.0, .state_bytes = 40 * GIB,
                        .sharded_state_bytes = 60 * GIB, .overlap_sums = 1,
                        .activation_bytes_per_image = 1.0, .gradient_bytes = 1.0, .gather_bytes = 1.0,
                        .shard_auto = 1};
    const PlanGroupInput on2 = plan_group_on(&g, &d, 8, 2);
    CHECK(on2.sharded_state_bytes == 60 * GIB && on2.state_bytes == 40 * GIB && !on2.shard_auto,
          "on 2 ranks the unsharded state does not fit: %g + %g GiB", on2.state_bytes / GIB,
          on2.sharded_state_bytes / GIB);
    /* fits either way, links too slow for the backward (8/3 s) to hide the
     * whole all-reduce (4 s: 4/3 s left), where a sharded state's sums
     * (2 s) hide behind it and its gather (2 s) behind the forward (4/3 s:
     * 2/3 s left): sharded is faster */
    g.state_bytes = 10 * GIB, g.sharded_state_bytes = 10 * GIB, g.gradient_bytes = g.gather_bytes = 2.0;
    const PlanGroupInput busy_links = plan_group_on(&g, &d, 8, 2);
    PlanGroupInput whole = g;
    whole.shard_auto = 0, whole.state_bytes = 20 * GIB, whole.sharded_state_bytes = 0;
    CHECK(busy_links.sharded_state_bytes == 10 * GIB &&
              plan_group_seconds(&busy_links, &d, 8, 2, 0) < plan_group_seconds(&whole, &d, 8, 2, 0),
          "with slow links the state is sharded: %g + %g GiB, %.3f s against %.3f s whole",
          busy_links.state_bytes / GIB, busy_links.sharded_state_bytes / GIB,
          plan_group_seconds(&busy_links, &d, 8, 2, 0), plan_group_seconds(&whole, &d, 8, 2, 0));
}

/* The gradient collectives of a student group (plan_gradient_seconds):
 * 1 s each way (10^9 bytes over 10^9 B/s), and 3 s of compute per image
 * (a 2 s backward, a 1 s forward): none on one rank or for the teacher;
 * 2 s not overlapped unsharded; a sharded group's gather hides behind the
 * next forward, its sums (with the overlap) behind the backward, an
 * unsharded all-reduce (with the overlap) behind the backward; a short
 * backward or forward hides what it lasts; a gather of fewer bytes (bf16
 * block matrices) takes less. */
static void gradient_time_follows_overlap_and_sharding(void) {
    PlanDevices d = {.count = 8, .memory_bytes = 1e18, .peak_flops = 1.0, .link_bytes_per_second = 1e9};
    PlanGroupInput g = {.name = "s", .flops_per_image = 3.0, .sustained_flops = 1.0, .state_bytes = 1,
                        .gradient_bytes = 1e9, .gather_bytes = 1e9};
    const struct {
        int overlap, sharded, images;
        double flops_per_image, expected;
    } cases[] = {
        {0, 0, 4, 3.0, 2.0}, {0, 1, 4, 3.0, 1.0},     /* sums not overlapped; a forward of 4 s hides the gather */
        {1, 0, 4, 3.0, 0.0}, {1, 1, 4, 3.0, 0.0},     /* a backward of 8 s hides the rest */
        {1, 0, 1, 0.75, 1.5}, {1, 1, 1, 0.75, 1.25},  /* a backward of 0.5 s, a forward of 0.25 s */
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        g.overlap_sums = cases[i].overlap;
        g.sharded_state_bytes = cases[i].sharded ? 1e9 : 0;
        g.flops_per_image = cases[i].flops_per_image;
        const double seconds = plan_gradient_seconds(&g, &d, 4, cases[i].images);
        CHECK(fabs(seconds - cases[i].expected) < 1e-12, "case %zu: %g s, expected %g", i, seconds, cases[i].expected);
        CHECK(plan_gradient_seconds(&g, &d, 1, cases[i].images) == 0, "case %zu on one rank", i);
    }
    /* a gather of half the bytes (block matrices in bf16) takes half the
     * link time: 0.5 s, 0.25 s of it behind a forward of 0.25 s */
    g.overlap_sums = 0, g.sharded_state_bytes = 1e9, g.flops_per_image = 0.75, g.gather_bytes = 0.5e9;
    CHECK(fabs(plan_gradient_seconds(&g, &d, 4, 1) - 1.25) < 1e-12, "a half-size gather: %g s, expected 1.25",
          plan_gradient_seconds(&g, &d, 4, 1));
    g.sharded_state_bytes = 0;
    CHECK(fabs(plan_gradient_seconds(&g, &d, 4, 1) - 2.0) < 1e-12, "unsharded, the all-reduce ignores gather_bytes: "
          "%g s, expected 2", plan_gradient_seconds(&g, &d, 4, 1));
    g.is_teacher = 1;
    CHECK(plan_gradient_seconds(&g, &d, 4, 4) == 0, "the teacher has no gradients");
}

static void distill_plan_runs_on_the_run_files(void) {
    char *family[] = {"plan", "configs/runs/dinov3-family.yaml", "--devices", "256", "--device-memory", "1000",
                      "--reference", "48,48,80,120"};
    char *demo[] = {"plan", "configs/runs/demo.yaml", "--devices", "5", "--device-tflops", "0.2"};
    char *too_small[] = {"plan", "configs/runs/dinov3-family.yaml", "--devices", "256", "--device-memory", "20"};
    CHECK(cmd_plan(8, family) == 0, "family");
    CHECK(cmd_plan(6, demo) == 0, "demo");
    CHECK(cmd_plan(6, too_small) == 1, "family in 20 GiB (the teacher needs 26.7 GiB with 1 image)");
}

TEST_MAIN(TEST(known_optimum_by_brute_force), TEST(uneven_slices_beat_even_ones), TEST(fixed_ranks_are_kept),
          TEST(model_too_big_is_named), TEST(sharded_state_is_divided_by_the_ranks),
          TEST(sharding_fits_a_student_on_two_ranks), TEST(search_is_exact_when_memory_depends_on_ranks),
          TEST(family_with_and_without_sharding), TEST(family_on_256_devices),
          TEST(auto_sharding_chooses_the_faster), TEST(gradient_time_follows_overlap_and_sharding),
          TEST(distill_plan_runs_on_the_run_files))

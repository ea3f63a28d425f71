/*
 * planner.c - ranks and slices per group from the cost model (see planner.h).
 */
#include "schedule/planner.h"

#include <math.h>
#include <stdlib.h>

#define GIB 1073741824.0

PlanDevices plan_h100_devices(int count) {
    return (PlanDevices){.count = count, .memory_bytes = PLAN_H100_MEMORY_BYTES, .peak_flops = PLAN_H100_PEAK_FLOPS,
                         .link_bytes_per_second = PLAN_LINK_BYTES_PER_SECOND};
}

double plan_group_flops(const PlanGroupInput *group, const PlanDevices *devices) {
    return devices->peak_flops * (group->is_teacher ? PLAN_TEACHER_EFFICIENCY : PLAN_STUDENT_EFFICIENCY);
}

static int most_images_of(int global_batch, int ranks) { return (global_batch + ranks - 1) / ranks; }

static double rank_memory(const PlanGroupInput *g, int images) {
    return g->state_bytes + images * g->activation_bytes_per_image;
}

static double allreduce_seconds(const PlanGroupInput *g, const PlanDevices *devices, int ranks) {
    return ranks > 1 ? 2.0 * g->gradient_bytes / devices->link_bytes_per_second : 0.0;
}

/* Seconds of one iteration of group g on n ranks; INFINITY where n ranks
 * cannot take the batch (memory, more ranks than images, divisibility). */
static double group_seconds(const PlanGroupInput *g, const PlanDevices *devices, int global_batch, int n,
                            int even_slices_only) {
    if (n < 1 || n > global_batch || (even_slices_only && global_batch % n != 0)) return INFINITY;
    int images = most_images_of(global_batch, n);
    if (rank_memory(g, images) > devices->memory_bytes) return INFINITY;
    return images * g->flops_per_image / plan_group_flops(g, devices) + allreduce_seconds(g, devices, n);
}

static void fill_group(GroupPlan *out, const PlanGroupInput *g, const PlanDevices *devices, int global_batch,
                       int ranks, double seconds) {
    out->ranks = ranks;
    out->most_images = most_images_of(global_batch, ranks);
    out->ranks_with_most = global_batch - (out->most_images - 1) * ranks;
    out->seconds = seconds;
    out->memory_bytes = rank_memory(g, out->most_images);
}

static void finish_plan(Plan *plan, int group_count, int global_batch) {
    plan->group_count = group_count;
    plan->global_batch = global_batch;
    plan->seconds_per_iteration = 0;
    for (int g = 0; g < group_count; g++)
        plan->seconds_per_iteration = fmax(plan->seconds_per_iteration, plan->groups[g].seconds);
    plan->worst_idle_fraction = 0;
    for (int g = 0; g < group_count; g++) {
        double idle = plan->seconds_per_iteration > 0 ? 1.0 - plan->groups[g].seconds / plan->seconds_per_iteration : 0;
        plan->groups[g].idle_fraction = idle;
        plan->worst_idle_fraction = fmax(plan->worst_idle_fraction, idle);
    }
}

static int check_inputs(const PlanGroupInput *groups, int group_count, int global_batch, const PlanDevices *devices,
                        DdError *err) {
    if (group_count < 1 || group_count > PLAN_MAX_GROUPS)
        return dd_fail(err, "plan: expected 1 to %d groups, found %d", PLAN_MAX_GROUPS, group_count);
    if (global_batch < 1) return dd_fail(err, "plan: expected a global batch >= 1, found %d", global_batch);
    if (devices->count < group_count || devices->count > PLAN_MAX_DEVICES)
        return dd_fail(err, "plan: expected %d to %d devices (one per group at least), found %d", group_count,
                       PLAN_MAX_DEVICES, devices->count);
    if (!(devices->peak_flops > 0) || !(devices->memory_bytes > 0) || !(devices->link_bytes_per_second > 0))
        return dd_fail(err, "plan: expected a device speed, memory and link bandwidth > 0");
    for (int g = 0; g < group_count; g++) {
        if (!(groups[g].flops_per_image > 0))
            return dd_fail(err, "plan: %s: expected FLOPs per image > 0, found %g", groups[g].name,
                           groups[g].flops_per_image);
        double one_image = rank_memory(&groups[g], 1);
        if (one_image > devices->memory_bytes)
            return dd_fail(err, "%s needs %.1f GiB per rank with 1 image per rank, a device has %.1f GiB",
                           groups[g].name, one_image / GIB, devices->memory_bytes / GIB);
    }
    return 0;
}

/* Ranks a group may take: its fixed count, else 1 .. devices. */
static void rank_range(const PlanGroupInput *g, int devices, int *lowest, int *highest) {
    *lowest = g->fixed_ranks > 0 ? g->fixed_ranks : 1;
    *highest = g->fixed_ranks > 0 ? g->fixed_ranks : devices;
}

/* Over the ranks per group with every group's time <= limit and the ranks
 * summing to the devices: the largest "slowest of the fastest" (the smallest
 * worst idle). Fills ranks and returns 1, or returns 0 if none exists.
 * times[g * (devices + 1) + n]: group g's seconds on n ranks. */
static int assign_ranks(const double *times, const PlanGroupInput *groups, int group_count, int devices,
                        double limit, int *ranks) {
    const int width = devices + 1;
    double *best = malloc(sizeof(double) * (size_t)(group_count + 1) * width);
    int *choice = malloc(sizeof(int) * (size_t)group_count * width);
    if (!best || !choice) {
        free(best);
        free(choice);
        return 0;
    }
    /* best[g * width + s]: over groups < g using s devices, the largest min time; -1: unreachable */
    for (int s = 0; s < width; s++) best[s] = s == 0 ? INFINITY : -1;
    for (int g = 0; g < group_count; g++) {
        int lowest, highest;
        rank_range(&groups[g], devices, &lowest, &highest);
        for (int s = 0; s < width; s++) {
            double value = -1;
            int picked = 0;
            for (int n = lowest; n <= highest && n <= s; n++) {
                double before = best[g * width + s - n], t = times[g * width + n];
                if (before < 0 || !(t <= limit)) continue;
                double v = fmin(before, t);
                if (v > value) value = v, picked = n;
            }
            best[(g + 1) * width + s] = value;
            choice[g * width + s] = picked;
        }
    }
    int found = best[group_count * width + devices] >= 0;
    if (found && ranks)
        for (int g = group_count - 1, s = devices; g >= 0; g--) {
            ranks[g] = choice[g * width + s];
            s -= ranks[g];
        }
    free(best);
    free(choice);
    return found;
}

static int compare_doubles(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int plan_groups(Plan *plan, const PlanGroupInput *groups, int group_count, int global_batch,
                const PlanDevices *devices, int even_slices_only, DdError *err) {
    if (check_inputs(groups, group_count, global_batch, devices, err)) return -1;
    const int width = devices->count + 1;
    double *times = malloc(sizeof(double) * (size_t)group_count * width);
    double *candidates = malloc(sizeof(double) * (size_t)group_count * width);
    if (!times || !candidates) {
        free(times);
        free(candidates);
        return dd_fail(err, "plan: out of memory");
    }
    int count = 0;
    for (int g = 0; g < group_count; g++) {
        int lowest, highest;
        rank_range(&groups[g], devices->count, &lowest, &highest);
        for (int n = 0; n < width; n++) {
            double t = n >= lowest && n <= highest
                           ? group_seconds(&groups[g], devices, global_batch, n, even_slices_only) : INFINITY;
            times[g * width + n] = t;
            if (isfinite(t)) candidates[count++] = t;
        }
    }
    qsort(candidates, (size_t)count, sizeof(double), compare_doubles);
    int ranks[PLAN_MAX_GROUPS];
    int status = 0;
    if (count == 0 || !assign_ranks(times, groups, group_count, devices->count, candidates[count - 1], NULL)) {
        /* say which group is short of what: the memory bound of each */
        double least_devices = 0;
        for (int g = 0; g < group_count; g++) {
            int n = 1;
            while (n < devices->count && !isfinite(times[g * width + n])) n++;
            least_devices += n;
        }
        status = dd_fail(err, "no layout of %d devices fits: the groups need at least %.0f devices for "
                         "a %d-image batch (memory, %s), or the fixed ranks leave none", devices->count,
                         least_devices, global_batch, even_slices_only ? "even slices" : "one image per rank at least");
    } else {
        int low = 0, high = count - 1;  /* candidates[high] is feasible */
        while (low < high) {
            int mid = (low + high) / 2;
            if (assign_ranks(times, groups, group_count, devices->count, candidates[mid], NULL)) high = mid;
            else low = mid + 1;
        }
        assign_ranks(times, groups, group_count, devices->count, candidates[high], ranks);
        for (int g = 0; g < group_count; g++)
            fill_group(&plan->groups[g], &groups[g], devices, global_batch, ranks[g], times[g * width + ranks[g]]);
        finish_plan(plan, group_count, global_batch);
    }
    free(times);
    free(candidates);
    return status;
}

int plan_predict(Plan *plan, const PlanGroupInput *groups, int group_count, int global_batch,
                 const PlanDevices *devices, const int *ranks, DdError *err) {
    if (check_inputs(groups, group_count, global_batch, devices, err)) return -1;
    for (int g = 0; g < group_count; g++) {
        double t = group_seconds(&groups[g], devices, global_batch, ranks[g], 0);
        if (!isfinite(t))
            return dd_fail(err, "plan: %s on %d ranks: expected 1 to %d ranks whose slices fit in %.1f GiB",
                           groups[g].name, ranks[g], global_batch, devices->memory_bytes / GIB);
        fill_group(&plan->groups[g], &groups[g], devices, global_batch, ranks[g], t);
    }
    finish_plan(plan, group_count, global_batch);
    return 0;
}

int plan_predict_shared_teacher(Plan *plan, const PlanGroupInput *groups, int group_count, int global_batch,
                                const PlanDevices *devices, const int *student_ranks, DdError *err) {
    if (group_count < 2 || group_count > PLAN_MAX_GROUPS)
        return dd_fail(err, "plan: expected a teacher and 1 to %d students, found %d groups", PLAN_MAX_GROUPS - 1,
                       group_count);
    int used = 0;
    for (int s = 0; s < group_count - 1; s++) {
        if (student_ranks[s] < 1 || student_ranks[s] > global_batch)
            return dd_fail(err, "plan: %s: expected 1 to %d ranks, found %d", groups[s + 1].name, global_batch,
                           student_ranks[s]);
        used += student_ranks[s];
    }
    if (used != devices->count)
        return dd_fail(err, "plan: the students' ranks sum to %d, expected the %d devices", used, devices->count);
    const double share = (double)global_batch / devices->count * groups[0].flops_per_image /
                         plan_group_flops(&groups[0], devices);
    fill_group(&plan->groups[0], &groups[0], devices, global_batch, devices->count, share);
    plan->groups[0].memory_bytes = groups[0].state_bytes / devices->count;
    for (int s = 0; s < group_count - 1; s++) {
        const PlanGroupInput *g = &groups[s + 1];
        double t = group_seconds(g, devices, global_batch, student_ranks[s], 0);
        if (!isfinite(t))  /* over memory: still predicted, the reference shards */
            t = most_images_of(global_batch, student_ranks[s]) * g->flops_per_image / plan_group_flops(g, devices) +
                allreduce_seconds(g, devices, student_ranks[s]);
        fill_group(&plan->groups[s + 1], g, devices, global_batch, student_ranks[s], share + t);
    }
    finish_plan(plan, group_count, global_batch);
    /* the teacher's share is inside every student's time: no idle of its own */
    plan->groups[0].idle_fraction = 0;
    plan->worst_idle_fraction = 0;
    for (int g = 1; g < group_count; g++)
        plan->worst_idle_fraction = fmax(plan->worst_idle_fraction, plan->groups[g].idle_fraction);
    return 0;
}

void plan_slices(const GroupPlan *group, int *images_per_rank) {
    for (int r = 0; r < group->ranks; r++)
        images_per_rank[r] = r < group->ranks_with_most ? group->most_images : group->most_images - 1;
}

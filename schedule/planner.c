/*
 * planner.c - ranks and slices per group from the cost model (see planner.h).
 */
#include "schedule/planner_internal.h"

#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#define GIB 1073741824.0

PlanDevices plan_h100_devices(int count) {
    return (PlanDevices){.count = count, .memory_bytes = PLAN_H100_MEMORY_BYTES, .peak_flops = PLAN_H100_PEAK_FLOPS,
                         .link_bytes_per_second = PLAN_LINK_BYTES_PER_SECOND};
}

double plan_group_flops(const PlanGroupInput *group, const PlanDevices *devices) {
    if (group->sustained_flops > 0) return group->sustained_flops;
    return devices->peak_flops * (group->is_teacher ? PLAN_TEACHER_EFFICIENCY : PLAN_STUDENT_EFFICIENCY);
}

int plan_most_images(int global_batch, int ranks) { return (global_batch + ranks - 1) / ranks; }

double plan_seconds_per_image(const PlanGroupInput *g, const PlanDevices *devices) {
    return g->flops_per_image / plan_group_flops(g, devices);
}

double plan_gradient_seconds(const PlanGroupInput *g, const PlanDevices *devices, int ranks, int images) {
    if (ranks <= 1 || g->is_teacher) return 0.0;
    /* ring collectives: the sums (the reduce-scatter half) and the gather
     * each move about the gradients' bytes per rank; a sharded state's
     * gather its gather_bytes */
    const double half = g->gradient_bytes / devices->link_bytes_per_second;
    const int micro = plan_micro_batch(g, devices, 0, ranks, images);
    const double step = (micro > 0 ? micro : 1) * plan_seconds_per_image(g, devices);   /* one micro-batch */
    const double backward = g->overlap_sums ? (2.0 / 3.0) * step : 0.0, forward = step / 3.0;
    if (g->sharded_state_bytes > 0)   /* the sums during the backward, the gather during the next forward */
        return fmax(0.0, half - backward) + fmax(0.0, g->gather_bytes / devices->link_bytes_per_second - forward);
    return fmax(0.0, 2.0 * half - backward);   /* the whole all-reduce during the backward */
}

double plan_rank_state_bytes(const PlanGroupInput *group, int ranks) {
    return group->state_bytes + group->sharded_state_bytes / ranks;
}

int plan_micro_batch(const PlanGroupInput *g, const PlanDevices *devices, double extra_bytes, int ranks, int images) {
    double room = devices->memory_bytes - plan_rank_state_bytes(g, ranks) - images * g->slice_bytes_per_image -
                  extra_bytes;
    if (room < 0) return 0;
    if (!(g->activation_bytes_per_image > 0)) return images;
    double fits = floor(room / g->activation_bytes_per_image);
    return fits >= images ? images : (int)fits;
}

double plan_student_memory(const PlanGroupInput *student, int ranks, int images, int micro_batch) {
    return plan_rank_state_bytes(student, ranks) + images * student->slice_bytes_per_image +
           micro_batch * student->activation_bytes_per_image;
}

double plan_teacher_memory(const PlanGroupInput *teacher, int images) {
    return teacher->state_bytes + images * teacher->activation_bytes_per_image;
}

/* A rank of group g on `ranks` ranks with `images` images and nothing hosted fits. */
static int rank_fits(const PlanGroupInput *g, const PlanDevices *devices, int ranks, int images) {
    if (g->is_teacher) return plan_teacher_memory(g, images) <= devices->memory_bytes;
    return plan_micro_batch(g, devices, 0, ranks, images) >= 1;
}

/* The busiest rank's seconds of g on n ranks holding `images` images at most, as given (no choice). */
static double group_seconds_as_given(const PlanGroupInput *g, const PlanDevices *devices, int n, int images) {
    if (!rank_fits(g, devices, n, images)) return INFINITY;
    return images * plan_seconds_per_image(g, devices) + plan_gradient_seconds(g, devices, n, images);
}

PlanGroupInput plan_group_on(const PlanGroupInput *g, const PlanDevices *devices, int global_batch, int n) {
    PlanGroupInput sharded = *g;
    sharded.shard_auto = 0;
    if (!g->shard_auto || g->is_teacher || n < 1) return sharded;
    PlanGroupInput full = sharded;
    full.state_bytes += full.sharded_state_bytes;
    full.sharded_state_bytes = 0;
    const int images = plan_most_images(global_batch, n);
    return group_seconds_as_given(&full, devices, n, images) < group_seconds_as_given(&sharded, devices, n, images)
               ? full
               : sharded;
}

double plan_group_seconds(const PlanGroupInput *g, const PlanDevices *devices, int global_batch, int n,
                          int even_slices_only) {
    if (n < 1 || n > global_batch || (even_slices_only && global_batch % n != 0)) return INFINITY;
    const PlanGroupInput on = plan_group_on(g, devices, global_batch, n);
    return group_seconds_as_given(&on, devices, n, plan_most_images(global_batch, n));
}

/* Busy seconds and memory of a rank holding `images` images of student
 * (as it runs on `ranks` ranks: plan_group_on; NULL on a teacher rank)
 * and `hosted` teacher images. */
static void rank_cost(const PlanGroupInput *teacher, const PlanGroupInput *student, const PlanDevices *devices,
                      int ranks, int images, int hosted, double *busy, double *memory, int *micro_batch) {
    const double teacher_busy = hosted * plan_seconds_per_image(teacher, devices);
    if (!student) {
        *busy = teacher_busy;
        *memory = plan_teacher_memory(teacher, hosted);
        *micro_batch = hosted;
        return;
    }
    const double extra = hosted > 0 ? plan_teacher_memory(teacher, hosted) : 0;
    *micro_batch = plan_micro_batch(student, devices, extra, ranks, images);
    *busy = images * plan_seconds_per_image(student, devices) +
            plan_gradient_seconds(student, devices, ranks, images) + teacher_busy;
    *memory = plan_student_memory(student, ranks, images, *micro_batch) + extra;
}

void plan_finish(Plan *plan, const PlanGroupInput *groups, int group_count, int global_batch,
                 const PlanDevices *devices, const int *ranks, const int *teacher_images) {
    plan->group_count = group_count;
    plan->global_batch = global_batch;
    plan->spread_teacher = 0;
    plan->rank_count = 0;
    static double busy[PLAN_MAX_RANKS];   /* per rank, in Plan.teacher_images order */
    for (int g = 0; g < group_count; g++) {
        GroupPlan *out = &plan->groups[g];
        out->ranks = ranks[g];
        out->most_images = plan_most_images(global_batch, ranks[g]);
        out->ranks_with_most = global_batch - (out->most_images - 1) * ranks[g];
        out->seconds = out->memory_bytes = 0;
        out->micro_batch = out->most_images;
        out->teacher_images = 0;
        out->teacher_images_least = INT_MAX;
        out->teacher_images_most = 0;
        const PlanGroupInput on = plan_group_on(&groups[g], devices, global_batch, ranks[g]);
        out->sharded_state = g > 0 && on.sharded_state_bytes > 0;
        for (int r = 0; r < ranks[g]; r++) {
            const int k = plan->rank_count++;
            const int images = r < out->ranks_with_most ? out->most_images : out->most_images - 1;
            const int hosted = teacher_images ? teacher_images[k] : g == 0 ? images : 0;
            plan->teacher_images[k] = hosted;
            if (hosted > 0 && g > 0) plan->spread_teacher = 1;
            double memory;
            int micro;
            rank_cost(&groups[0], g == 0 ? NULL : &on, devices, ranks[g], g == 0 ? 0 : images, hosted, &busy[k],
                      &memory, &micro);
            out->seconds = fmax(out->seconds, busy[k]);
            out->memory_bytes = fmax(out->memory_bytes, memory);
            if (g > 0 && micro < out->micro_batch) out->micro_batch = micro;
            out->teacher_images += hosted;
            if (hosted < out->teacher_images_least) out->teacher_images_least = hosted;
            if (hosted > out->teacher_images_most) out->teacher_images_most = hosted;
        }
        if (g == 0) {   /* the teacher's slices are its images */
            out->micro_batch = out->teacher_images_most;
            out->most_images = out->teacher_images_most;
            out->ranks_with_most = 0;
            for (int r = 0; r < ranks[0]; r++) out->ranks_with_most += plan->teacher_images[r] == out->most_images;
        }
    }
    plan->seconds_per_iteration = 0;
    for (int g = 0; g < group_count; g++)
        plan->seconds_per_iteration = fmax(plan->seconds_per_iteration, plan->groups[g].seconds);
    plan->worst_idle_fraction = 0;
    for (int g = 0, k = 0; g < group_count; g++) {
        double idle = 0;
        for (int r = 0; r < ranks[g]; r++, k++)
            idle += plan->seconds_per_iteration > 0 ? 1.0 - busy[k] / plan->seconds_per_iteration : 0;
        plan->groups[g].idle_fraction = idle / ranks[g];
        plan->worst_idle_fraction = fmax(plan->worst_idle_fraction, plan->groups[g].idle_fraction);
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
        if (!(groups[g].sharded_state_bytes >= 0) || (groups[g].is_teacher && groups[g].sharded_state_bytes != 0))
            return dd_fail(err, "plan: %s: expected sharded state bytes >= 0 (0 for the teacher), found %g",
                           groups[g].name, groups[g].sharded_state_bytes);
        /* the least a rank can need: 1 image, the sharded state over the most ranks the group may take */
        int lowest, highest;
        plan_rank_range(&groups[g], devices->count, &lowest, &highest);
        const int most_ranks = highest < global_batch ? highest : global_batch;
        double one_image = groups[g].is_teacher ? plan_teacher_memory(&groups[g], 1)
                                                : plan_student_memory(&groups[g], most_ranks, 1, 1);
        if (one_image > devices->memory_bytes) {
            char over[64] = "";
            if (groups[g].sharded_state_bytes > 0)
                snprintf(over, sizeof over, " on %d ranks (its optimizer state sharded)", most_ranks);
            return dd_fail(err, "%s needs %.1f GiB per rank with 1 image per rank%s, a device has %.1f GiB",
                           groups[g].name, one_image / GIB, over, devices->memory_bytes / GIB);
        }
    }
    return 0;
}

void plan_rank_range(const PlanGroupInput *g, int devices, int *lowest, int *highest) {
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
        plan_rank_range(&groups[g], devices, &lowest, &highest);
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

/* plan_groups with the groups as given (a group with shard_auto choosing
 * on each rank count by itself, plan_group_on). */
static int plan_search(Plan *plan, const PlanGroupInput *groups, int group_count, int global_batch,
                       const PlanDevices *devices, const PlanOptions *options, DdError *err) {
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
        plan_rank_range(&groups[g], devices->count, &lowest, &highest);
        for (int n = 0; n < width; n++) {
            double t = n >= lowest && n <= highest
                           ? plan_group_seconds(&groups[g], devices, global_batch, n, options->even_slices_only)
                           : INFINITY;
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
                         least_devices, global_batch,
                         options->even_slices_only ? "even slices" : "one image per rank at least");
    } else {
        int low = 0, high = count - 1;  /* candidates[high] is feasible */
        while (low < high) {
            int mid = (low + high) / 2;
            if (assign_ranks(times, groups, group_count, devices->count, candidates[mid], NULL)) high = mid;
            else low = mid + 1;
        }
        assign_ranks(times, groups, group_count, devices->count, candidates[high], ranks);
        plan_finish(plan, groups, group_count, global_batch, devices, ranks, NULL);
    }
    free(times);
    free(candidates);
    if (status == 0 && options->spread_teacher && !options->even_slices_only) {
        static Plan spread;   /* large */
        /* worth the teacher's memory on student ranks only for a real gain */
        if (plan_spread_teacher(&spread, groups, group_count, global_batch, devices, plan->seconds_per_iteration) &&
            (spread.seconds_per_iteration < plan->seconds_per_iteration * (1 - PLAN_SPREAD_MIN_GAIN) ||
             spread.worst_idle_fraction < plan->worst_idle_fraction - PLAN_SPREAD_MIN_GAIN))
            *plan = spread;
    }
    return status;
}

int plan_groups(Plan *plan, const PlanGroupInput *groups, int group_count, int global_batch,
                const PlanDevices *devices, const PlanOptions *options, DdError *err) {
    const PlanOptions defaults = {0};
    if (!options) options = &defaults;
    if (check_inputs(groups, group_count, global_batch, devices, err)) return -1;
    int choosing = 0;
    for (int g = 0; g < group_count; g++) choosing |= groups[g].shard_auto;
    if (!choosing) return plan_search(plan, groups, group_count, global_batch, devices, options, err);
    /* A group's choice on its own ranks misses what its memory does for the
     * others (room for teacher images): the fastest of three ways, each
     * group choosing for itself, every choosing group sharded, none. */
    static Plan best, candidate;   /* large */
    PlanGroupInput forced[PLAN_MAX_GROUPS];
    int found = 0;
    DdError first = {{0}};
    for (int way = 0; way < 3; way++) {
        for (int g = 0; g < group_count; g++) {
            forced[g] = groups[g];
            if (way == 0 || !groups[g].shard_auto) continue;
            forced[g].shard_auto = 0;
            if (way == 2) forced[g].state_bytes += forced[g].sharded_state_bytes, forced[g].sharded_state_bytes = 0;
        }
        DdError way_err = {{0}};
        if (plan_search(&candidate, forced, group_count, global_batch, devices, options, &way_err) != 0) {
            if (way == 0) first = way_err;
            continue;
        }
        if (!found || candidate.seconds_per_iteration < best.seconds_per_iteration) best = candidate;
        found = 1;
    }
    if (!found) {
        if (err) *err = first;
        return -1;
    }
    *plan = best;
    return 0;
}

int plan_predict(Plan *plan, const PlanGroupInput *groups, int group_count, int global_batch,
                 const PlanDevices *devices, const int *ranks, DdError *err) {
    if (check_inputs(groups, group_count, global_batch, devices, err)) return -1;
    for (int g = 0; g < group_count; g++)
        if (!isfinite(plan_group_seconds(&groups[g], devices, global_batch, ranks[g], 0)))
            return dd_fail(err, "plan: %s on %d ranks: expected 1 to %d ranks whose slices fit in %.1f GiB",
                           groups[g].name, ranks[g], global_batch, devices->memory_bytes / GIB);
    plan_finish(plan, groups, group_count, global_batch, devices, ranks, NULL);
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
    /* every device computes its share of the teacher's batch, then trains;
     * memory is not checked (the reference shards the teacher): the model
     * is given as much as it asks */
    PlanDevices unbounded = *devices;
    unbounded.memory_bytes = INFINITY;
    int ranks[PLAN_MAX_GROUPS];
    ranks[0] = devices->count;
    for (int s = 0; s < group_count - 1; s++) ranks[s + 1] = student_ranks[s];
    plan_finish(plan, groups, group_count, global_batch, &unbounded, ranks, NULL);
    const double share = plan->groups[0].seconds;
    double slowest = 0;
    for (int g = 1; g < group_count; g++) slowest = fmax(slowest, plan->groups[g].seconds += share);
    plan->seconds_per_iteration = slowest;
    plan->groups[0].memory_bytes = groups[0].state_bytes / devices->count;
    /* the teacher's share is inside every student's time: no idle of its own */
    plan->groups[0].idle_fraction = 0;
    plan->worst_idle_fraction = 0;
    for (int g = 1; g < group_count; g++) {
        int slices[PLAN_MAX_DEVICES];
        plan_slices(&plan->groups[g], slices);
        double idle = 0;
        const PlanGroupInput on = plan_group_on(&groups[g], &unbounded, global_batch, student_ranks[g - 1]);
        for (int r = 0; r < student_ranks[g - 1]; r++)
            idle += 1.0 - (share + slices[r] * plan_seconds_per_image(&on, &unbounded) +
                           plan_gradient_seconds(&on, &unbounded, student_ranks[g - 1], slices[r])) / slowest;
        plan->groups[g].idle_fraction = idle / student_ranks[g - 1];
        plan->worst_idle_fraction = fmax(plan->worst_idle_fraction, plan->groups[g].idle_fraction);
    }
    return 0;
}

void plan_slices(const GroupPlan *group, int *images_per_rank) {
    for (int r = 0; r < group->ranks; r++)
        images_per_rank[r] = r < group->ranks_with_most ? group->most_images : group->most_images - 1;
}

/*
 * teacher_spread.c - the teacher's images in the spare time of student
 * ranks (planner.h, "Spreading the teacher").
 *
 * At an iteration time `limit`, every rank can take some teacher images:
 * a dedicated teacher rank as many as fit in `limit` and in its memory; a
 * student rank as many as fit in what its own work leaves of `limit`, and
 * in the memory its own state and a one-image micro-batch leave beside the
 * teacher's state. A limit is feasible when some split of the devices into
 * groups (every student within `limit`) offers the batch's images.
 */
#include <math.h>
#include <stdlib.h>

#include "schedule/planner_internal.h"

enum { BISECTION_STEPS = 40 };

typedef struct Spread {
    const PlanGroupInput *groups;
    int group_count, global_batch;
    const PlanDevices *devices;
} Spread;

/* Teacher images a rank of group g with `images` student images can take
 * by `limit`; -1 when its own work alone passes the limit. */
static long rank_capacity(const Spread *sp, int g, int ranks, int images, double limit) {
    const PlanGroupInput *teacher = &sp->groups[0];
    const PlanDevices *d = sp->devices;
    double busy = 0, room = d->memory_bytes - teacher->state_bytes;
    if (g > 0) {
        const PlanGroupInput on = plan_group_on(&sp->groups[g], d, sp->global_batch, ranks), *student = &on;
        if (plan_micro_batch(student, d, 0, ranks, images) < 1) return -1;   /* its own slice does not fit */
        busy = images * plan_seconds_per_image(student, d) + plan_gradient_seconds(student, d, ranks, images);
        room -= plan_student_memory(student, ranks, images, 1);   /* a micro-batch of one */
    }
    if (busy > limit) return -1;
    /* a hair of slack so that a limit equal to k images' time takes k */
    double by_time = floor((limit - busy) / plan_seconds_per_image(teacher, d) + 1e-9);
    double by_memory = room < 0 ? 0
                       : teacher->activation_bytes_per_image > 0 ? floor(room / teacher->activation_bytes_per_image)
                                                                 : INFINITY;
    return (long)fmin(fmin(by_time, by_memory), sp->global_batch);
}

/* Teacher images group g on n ranks can take by `limit`; -1: infeasible. */
static long group_capacity(const Spread *sp, int g, int n, double limit) {
    if (n < 1 || n > sp->global_batch) return -1;
    if (g == 0) {
        long each = rank_capacity(sp, 0, n, 0, limit);
        return each * n;
    }
    const int most = plan_most_images(sp->global_batch, n), with_most = sp->global_batch - (most - 1) * n;
    long busiest = rank_capacity(sp, g, n, most, limit);
    if (busiest < 0) return -1;
    long others = with_most < n ? rank_capacity(sp, g, n, most - 1, limit) : 0;
    return busiest * with_most + others * (n - with_most);
}

/* The most teacher images any split of the devices offers by `limit`, and
 * that split in ranks (when not NULL); -1 when no split keeps every student
 * within the limit. */
static long most_capacity(const Spread *sp, double limit, int *ranks) {
    const int devices = sp->devices->count, width = devices + 1;
    long *best = malloc(sizeof(long) * (size_t)(sp->group_count + 1) * width);
    int *choice = malloc(sizeof(int) * (size_t)sp->group_count * width);
    long *capacity = malloc(sizeof(long) * (size_t)width);
    long found = -1;
    if (best && choice && capacity) {
        /* best[g * width + s]: over groups < g on s devices, the most images; -1 unreachable */
        for (int s = 0; s < width; s++) best[s] = s == 0 ? 0 : -1;
        for (int g = 0; g < sp->group_count; g++) {
            int lowest, highest;
            plan_rank_range(&sp->groups[g], devices, &lowest, &highest);
            for (int n = 0; n < width; n++) capacity[n] = n >= lowest && n <= highest ? group_capacity(sp, g, n, limit) : -1;
            for (int s = 0; s < width; s++) {
                long value = -1;
                int picked = 0;
                for (int n = lowest; n <= highest && n <= s; n++) {
                    long before = best[g * width + s - n];
                    if (before < 0 || capacity[n] < 0) continue;
                    if (before + capacity[n] > value) value = before + capacity[n], picked = n;
                }
                best[(g + 1) * width + s] = value;
                choice[g * width + s] = picked;
            }
        }
        found = best[sp->group_count * width + devices];
        if (found >= 0 && ranks)
            for (int g = sp->group_count - 1, s = devices; g >= 0; g--) {
                ranks[g] = choice[g * width + s];
                s -= ranks[g];
            }
    }
    free(best);
    free(choice);
    free(capacity);
    return found;
}

/* Deals the batch's teacher images one by one to the least busy rank that
 * can still take one (the first such rank on ties: dedicated teacher ranks
 * come first), each rank within its capacity at `limit`. */
static void deal_teacher_images(const Spread *sp, const int *ranks, double limit, int *teacher_images) {
    static double busy[PLAN_MAX_RANKS];
    static long room[PLAN_MAX_RANKS];
    const PlanDevices *d = sp->devices;
    int count = 0;
    for (int g = 0; g < sp->group_count; g++) {
        const int most = plan_most_images(sp->global_batch, ranks[g]);
        const int with_most = sp->global_batch - (most - 1) * ranks[g];
        for (int r = 0; r < ranks[g]; r++, count++) {
            const int images = g == 0 ? 0 : r < with_most ? most : most - 1;
            const PlanGroupInput on = plan_group_on(&sp->groups[g], d, sp->global_batch, ranks[g]);
            busy[count] = g == 0 ? 0
                                 : images * plan_seconds_per_image(&on, d) +
                                       plan_gradient_seconds(&on, d, ranks[g], images);
            room[count] = rank_capacity(sp, g, ranks[g], images, limit);
            teacher_images[count] = 0;
        }
    }
    const double per_image = plan_seconds_per_image(&sp->groups[0], d);
    for (int i = 0; i < sp->global_batch; i++) {
        int pick = -1;
        for (int k = 0; k < count; k++)
            if (room[k] > 0 && (pick < 0 || busy[k] < busy[pick])) pick = k;
        if (pick < 0) return;   /* cannot happen: the capacities cover the batch */
        teacher_images[pick]++;
        busy[pick] += per_image;
        room[pick]--;
    }
}

int plan_spread_teacher(Plan *plan, const PlanGroupInput *groups, int group_count, int global_batch,
                        const PlanDevices *devices, double upper) {
    const Spread sp = {groups, group_count, global_batch, devices};
    if (group_count < 2 || most_capacity(&sp, upper, NULL) < global_batch) return 0;
    /* below: no split is feasible under the work of the batch spread
     * perfectly over every device */
    double work = 0;
    for (int g = 0; g < group_count; g++) work += global_batch * plan_seconds_per_image(&groups[g], devices);
    double low = work / devices->count, high = upper;
    for (int step = 0; step < BISECTION_STEPS && low < high; step++) {
        double mid = 0.5 * (low + high);
        if (most_capacity(&sp, mid, NULL) >= global_batch) high = mid;
        else low = mid;
    }
    int ranks[PLAN_MAX_GROUPS];
    static int teacher_images[PLAN_MAX_RANKS];
    if (most_capacity(&sp, high, ranks) < global_batch) return 0;
    deal_teacher_images(&sp, ranks, high, teacher_images);
    plan_finish(plan, groups, group_count, global_batch, devices, ranks, teacher_images);
    return 1;
}

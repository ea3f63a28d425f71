/*
 * proportional_plan.c - ranks in proportion to cost (see proportional_plan.h).
 */
#include "comm/proportional_plan.h"

#include "comm/rank_layout.h"

int proportional_plan(int *ranks, const double *costs, int group_count, int world_size, int global_batch,
                      DdError *err) {
    if (group_count < 1 || group_count > LAYOUT_MAX_GROUPS)
        return dd_fail(err, "plan: expected 1 to %d groups, found %d", LAYOUT_MAX_GROUPS, group_count);
    if (world_size < group_count)
        return dd_fail(err, "plan: expected at least one rank per group (%d ranks), found %d ranks",
                       group_count, world_size);
    if ((long)group_count * global_batch < world_size)
        return dd_fail(err, "plan: %d ranks for %d groups of a %d-image batch: expected at most %ld ranks "
                       "(one image per rank)", world_size, group_count, global_batch,
                       (long)group_count * global_batch);
    double total = 0;
    for (int g = 0; g < group_count; g++) {
        if (!(costs[g] > 0)) return dd_fail(err, "plan: group %d: expected a cost > 0, found %g", g, costs[g]);
        total += costs[g];
    }
    /* one rank each, then the rest by largest remainder of the ideal share,
     * never past one rank per image */
    const int spare = world_size - group_count;
    double remainder[LAYOUT_MAX_GROUPS];
    int given = 0;
    for (int g = 0; g < group_count; g++) {
        double ideal = spare * costs[g] / total;
        ranks[g] = 1 + (int)ideal;
        if (ranks[g] > global_batch) ranks[g] = global_batch;
        remainder[g] = ideal - (int)ideal;
        given += ranks[g];
    }
    while (given < world_size) {
        int best = -1;
        for (int g = 0; g < group_count; g++) {
            if (ranks[g] >= global_batch) continue;
            double r = remainder[g];
            if (best < 0 || r > remainder[best]) best = g;
        }
        ranks[best]++;
        remainder[best] -= 1.0;
        given++;
    }
    return 0;
}

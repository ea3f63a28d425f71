/*
 * proportional_plan.h - the simple plan: ranks per group in proportion to
 * each group's cost per iteration (the teacher's forward on the global
 * crops, each student's training step on all crops), at least one rank per
 * group, by largest remainder. The scheduler's planner (schedule/) replaces
 * it with one that also weighs memory and measured speed.
 */
#ifndef DD_COMM_PROPORTIONAL_PLAN_H
#define DD_COMM_PROPORTIONAL_PLAN_H

#include "nn/error.h"

/* ranks[g] for g < group_count from costs[g] > 0, summing to world_size;
 * no group gets more ranks than global_batch images. */
int proportional_plan(int *ranks, const double *costs, int group_count, int world_size, int global_batch,
                      DdError *err);

#endif

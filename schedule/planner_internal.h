/*
 * planner_internal.h - what the group planner (planner.c) and the spreading
 * of the teacher over spare student time (teacher_spread.c) share: the cost
 * of one rank under the model of planner.h.
 */
#ifndef DD_SCHEDULE_PLANNER_INTERNAL_H
#define DD_SCHEDULE_PLANNER_INTERNAL_H

#include "schedule/planner.h"

/* ceil(batch / ranks): the images of a group's busiest ranks. */
int plan_most_images(int global_batch, int ranks);

double plan_seconds_per_image(const PlanGroupInput *g, const PlanDevices *devices);
/* What a rank of a student group of `ranks` ranks with `images` images
 * waits for its group's gradient collectives (the model of planner.h):
 * 0 for one rank and for the teacher. */
double plan_gradient_seconds(const PlanGroupInput *g, const PlanDevices *devices, int ranks, int images);

/* The most images a student rank of a group of `ranks` ranks with `images`
 * images runs per forward/backward pass, its state (plan_rank_state_bytes)
 * and slice buffers held, when `extra_bytes` of its memory hold something
 * else (the teacher it hosts); 0 when not even one image fits. */
int plan_micro_batch(const PlanGroupInput *g, const PlanDevices *devices, double extra_bytes, int ranks, int images);
/* Memory of a student rank of a group of `ranks` ranks with `images` images
 * in its slice and micro-batches of `micro_batch`: state, slice buffers,
 * activations (the teacher it may host not included). */
double plan_student_memory(const PlanGroupInput *student, int ranks, int images, int micro_batch);
/* Memory of a rank running the teacher on `images` images at once. */
double plan_teacher_memory(const PlanGroupInput *teacher, int images);

/* Seconds of one iteration of group g on n ranks without teacher images
 * hosted; INFINITY where n ranks cannot take the batch (memory, more ranks
 * than images, divisibility). */
double plan_group_seconds(const PlanGroupInput *g, const PlanDevices *devices, int global_batch, int n,
                          int even_slices_only);

/* Ranks a group may take: its fixed count, else 1 .. devices. */
void plan_rank_range(const PlanGroupInput *g, int devices, int *lowest, int *highest);

/* Fills the plan from ranks per group and the teacher images of every rank
 * (Plan.teacher_images order; NULL: the teacher's ranks take the batch as
 * their slices and no student rank hosts any): slices, busy times,
 * iteration time, idle fractions, memory and micro-batches. */
void plan_finish(Plan *plan, const PlanGroupInput *groups, int group_count, int global_batch,
                 const PlanDevices *devices, const int *ranks, const int *teacher_images);

/* Spreads the teacher over the spare time of student ranks (planner.h).
 * upper: an iteration time known feasible (the plan without spreading).
 * Returns 1 with *plan filled, 0 when spreading finds nothing faster. */
int plan_spread_teacher(Plan *plan, const PlanGroupInput *groups, int group_count, int global_batch,
                        const PlanDevices *devices, double upper);

#endif

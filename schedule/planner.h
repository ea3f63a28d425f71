/*
 * planner.h - the group planner: how many ranks the teacher and each student
 * get, and how many images each rank takes, so that the iteration time
 * max(teacher, students) is as small as it can be within device memory.
 *
 * Model (numbers for one group g on identical devices):
 *   seconds per image  c_g = flops_per_image / sustained FLOP/s (the teacher's
 *       inference and the students' training run at their own fraction of
 *       the device's peak: PLAN_TEACHER_EFFICIENCY, PLAN_STUDENT_EFFICIENCY);
 *   a rank with b images takes b * c_g seconds and needs state_bytes +
 *       b * activation_bytes_per_image of memory;
 *   a student group of n > 1 ranks adds an all-reduce of its gradients, not
 *       overlapped: 2 * gradient_bytes / link bytes per second (ring);
 *   group time t_g = max over its ranks; iteration time T = max over groups;
 *   idle fraction of g = 1 - t_g / T.
 * Slices: with uneven slices (the default) n ranks share the batch B as
 * ceil(B/n) and floor(B/n) images; with even slices only, n must divide B.
 * Search: exact. The smallest T is found by bisection over every group's
 * possible times (feasibility grows with T); at that T a dynamic programme
 * over the device count picks the ranks per group (summing to the devices)
 * that keep the fastest group as slow as possible, i.e. the worst idle
 * fraction as small as possible. Groups with fixed ranks keep them.
 */
#ifndef DD_SCHEDULE_PLANNER_H
#define DD_SCHEDULE_PLANNER_H

#include "nn/error.h"

enum { PLAN_MAX_GROUPS = 17, PLAN_MAX_DEVICES = 4096 };

#define PLAN_H100_PEAK_FLOPS 790e12       /* bf16 dense matmul, measured (DESIGN.md) */
#define PLAN_TEACHER_EFFICIENCY 0.60      /* inference: large matmuls, no backward */
#define PLAN_STUDENT_EFFICIENCY 0.45      /* training: llm.c reaches 46-56% MFU */
#define PLAN_H100_MEMORY_BYTES (80.0 * 1073741824.0)
#define PLAN_LINK_BYTES_PER_SECOND 47e9   /* InfiniBand NDR, one NIC per device */
#define PLAN_GRADIENT_BYTES_PER_PARAM 2.0 /* bf16 gradients on the wire */

typedef struct PlanDevices {
    int count;
    double memory_bytes;
    double peak_flops;               /* FLOP/s; the efficiencies above apply */
    double link_bytes_per_second;
} PlanDevices;

/* One group as the planner sees it. */
typedef struct PlanGroupInput {
    const char *name;                /* in messages: "vith16plus needs ..." */
    int is_teacher;
    double flops_per_image;
    double state_bytes;              /* per rank, whatever its images */
    double activation_bytes_per_image;
    double gradient_bytes;           /* all-reduced per iteration; 0 for the teacher */
    int fixed_ranks;                 /* > 0: kept as given */
} PlanGroupInput;

typedef struct GroupPlan {
    int ranks;
    int most_images;                 /* images of the first `ranks_with_most` ranks */
    int ranks_with_most;             /* the others take most_images - 1 */
    double seconds;                  /* per iteration */
    double idle_fraction;
    double memory_bytes;             /* per rank, at most_images */
} GroupPlan;

typedef struct Plan {
    int group_count;
    int global_batch;
    GroupPlan groups[PLAN_MAX_GROUPS];
    double seconds_per_iteration;
    double worst_idle_fraction;
} Plan;

/* Devices of the H100 class: 80 GiB, 790 TFLOP/s peak, 47 GB/s links. */
PlanDevices plan_h100_devices(int count);

/* Sustained FLOP/s of a group on a device. */
double plan_group_flops(const PlanGroupInput *group, const PlanDevices *devices);

/* The best plan; even_slices_only: every rank of a group takes B/n images.
 * Errors name the model, the memory it needs and what a device has. */
int plan_groups(Plan *plan, const PlanGroupInput *groups, int group_count, int global_batch,
                const PlanDevices *devices, int even_slices_only, DdError *err);

/* The same model's prediction for given ranks per group (uneven slices). */
int plan_predict(Plan *plan, const PlanGroupInput *groups, int group_count, int global_batch,
                 const PlanDevices *devices, const int *ranks, DdError *err);

/* The reference's layout: the teacher's cost (group 0) spread evenly over
 * every device, then each device trains the student of its group with
 * student_ranks[s] devices (students are groups 1..). Memory not checked
 * (the reference shards the teacher). Group 0's time is its share. */
int plan_predict_shared_teacher(Plan *plan, const PlanGroupInput *groups, int group_count, int global_batch,
                                const PlanDevices *devices, const int *student_ranks, DdError *err);

/* images_per_rank[0 .. ranks-1] of a group's plan. */
void plan_slices(const GroupPlan *group, int *images_per_rank);

#endif

/*
 * planner.h - the group planner: how many ranks the teacher and each student
 * get, and how many images each rank takes, so that the iteration time
 * max(teacher, students) is as small as it can be within device memory.
 *
 * Model (numbers for one group g on identical devices):
 *   seconds per image  c_g = flops_per_image / sustained FLOP/s (the teacher's
 *       inference and the students' training run at their own fraction of
 *       the device's peak: PLAN_TEACHER_EFFICIENCY, PLAN_STUDENT_EFFICIENCY);
 *   a student rank of a group of n ranks with b images takes b * c_g
 *       seconds and runs them in micro-batches of as many images as its
 *       memory holds: it needs state_bytes + sharded_state_bytes / n +
 *       b * slice_bytes_per_image + m * activation_bytes_per_image for a
 *       micro-batch of m >= 1 images (students/students.h, gradient
 *       accumulation; sharded_state_bytes: its optimizer state divided
 *       among the group's ranks, ZeRO-1); a teacher rank runs its images at
 *       once: state + b * activations;
 *   a student group of n > 1 ranks adds its gradient collectives on
 *       rings: the sums (all-reduce, or reduce-scatter to the shards'
 *       owners) and the gather (the all-reduce's second half, or the
 *       parameters' all-gather), gradient_bytes / link bytes per second
 *       each, but gather_bytes for a sharded state's gather (its block
 *       matrices in bf16 where the blocks run in bf16); with overlap_sums what may run during the backward of the
 *       last micro-batch (the whole all-reduce; with a sharded state the
 *       sums only) hides behind it, up to 2/3 of that micro-batch's
 *       compute, and a sharded state's gather, layer by layer, behind the
 *       next forward's first micro-batch, up to 1/3 of its compute;
 *   a rank's busy time is the sum of what it runs; the iteration time T is
 *       the largest; the idle fraction of a group is the mean over its
 *       ranks of 1 - busy / T (the share of its device time spent waiting).
 * Slices: with uneven slices (the default) n ranks share the batch B as
 *   ceil(B/n) and floor(B/n) images; with even slices only, n must divide B.
 * Search: exact. A group's time on n ranks is computed for each n on its
 *   own (its memory per rank falls with n: fewer images, a smaller share of
 *   the sharded state), so a group too large for one rank may take two.
 *   The smallest T is found by bisection over every group's
 *   possible times (feasibility grows with T); at that T a dynamic programme
 *   over the device count picks the ranks per group (summing to the devices)
 *   that keep the fastest group as slow as possible, i.e. the worst idle
 *   fraction as small as possible. Groups with fixed ranks keep them.
 * Spreading the teacher (PlanOptions.spread_teacher, schedule/teacher_spread.c):
 *   whole ranks per group leave the faster groups idle (a 4-rank group that
 *   3 ranks cannot carry waits for the slowest). Student ranks may then also
 *   compute teacher images in that spare time (their memory permitting the
 *   teacher's state besides their own); the teacher's dedicated ranks take
 *   the rest. T is found by bisection on a continuous time: at each T a
 *   dynamic programme over the devices maximises the teacher images every
 *   rank can take by T; T is feasible when they cover the batch. The batch's
 *   teacher images are then dealt one by one to the least busy rank that
 *   can take one, which evens the busy times out to within one image. The
 *   spread plan is taken when it is PLAN_SPREAD_MIN_GAIN faster or less idle.
 */
#ifndef DD_SCHEDULE_PLANNER_H
#define DD_SCHEDULE_PLANNER_H

#include "nn/error.h"

enum { PLAN_MAX_GROUPS = 17, PLAN_MAX_DEVICES = 4096,
       PLAN_MAX_RANKS = 2 * PLAN_MAX_DEVICES /* the reference's layout: a teacher and a student rank per device */ };

#define PLAN_H100_PEAK_FLOPS 790e12       /* bf16 dense matmul, measured (DESIGN.md) */
#define PLAN_TEACHER_EFFICIENCY 0.60      /* inference: large matmuls, no backward */
#define PLAN_STUDENT_EFFICIENCY 0.45      /* training: llm.c reaches 46-56% MFU */
#define PLAN_H100_MEMORY_BYTES (80.0 * 1073741824.0)
#define PLAN_LINK_BYTES_PER_SECOND 47e9   /* InfiniBand NDR, one NIC per device */
#define PLAN_GRADIENT_BYTES_PER_PARAM 4.0 /* fp32 gradients and parameters on the wire */
#define PLAN_SPREAD_MIN_GAIN 0.01         /* spread the teacher for 1% less time or idle, not less */

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
    double sustained_flops;          /* FLOP/s measured or configured; > 0 overrides peak x efficiency */
    double state_bytes;              /* per rank, whatever its images and ranks: each rank keeps it in full */
    double sharded_state_bytes;      /* a student group's state divided among its ranks, whatever their
                                      * images: each of n ranks keeps 1/n (AdamW m and v, EMA); 0 for the
                                      * teacher and when the optimizer state is not sharded */
    int shard_auto;                  /* sharded_state_bytes may instead be kept in full by every rank: the
                                      * planner chooses per rank count (plan_group_on) */
    double activation_bytes_per_image;   /* per image of a micro-batch */
    double slice_bytes_per_image;        /* a student's, per image of its slice (targets, crops) */
    double gradient_bytes;           /* a student's gradients (and parameters), per iteration; 0 for the teacher */
    double gather_bytes;             /* a sharded student's gather of its parameters, per iteration: less than
                                      * gradient_bytes where block matrices travel in bf16 */
    int overlap_sums;                /* the gradients' sums start during the backward (overlap_gradient_sums) */
    int fixed_ranks;                 /* > 0: kept as given */
} PlanGroupInput;

typedef struct GroupPlan {
    int ranks;
    int most_images;                 /* images of the first `ranks_with_most` ranks */
    int ranks_with_most;             /* the others take most_images - 1 */
    double seconds;                  /* per iteration: its busiest rank */
    double idle_fraction;            /* mean over its ranks of 1 - busy / iteration */
    double memory_bytes;             /* per rank, the most of its ranks */
    int micro_batch;                 /* a student's images per forward/backward pass (the fewest of its
                                      * ranks); the teacher's: its most images */
    int teacher_images;              /* teacher images its ranks compute per iteration (a student group's:
                                      * those it hosts when the teacher is spread) */
    int teacher_images_least, teacher_images_most;   /* per rank */
    int sharded_state;               /* a student group's ranks each keep 1/ranks of its optimizer state */
} GroupPlan;

typedef struct PlanOptions {
    int even_slices_only;            /* every rank of a group takes B/n images */
    int spread_teacher;              /* student ranks may compute teacher images in their spare time */
} PlanOptions;

typedef struct Plan {
    int group_count;
    int global_batch;
    GroupPlan groups[PLAN_MAX_GROUPS];
    double seconds_per_iteration;
    double worst_idle_fraction;
    int spread_teacher;              /* the plan hosts teacher images on student ranks */
    int rank_count;                  /* ranks of the plan: the teacher's, then each student group's */
    int teacher_images[PLAN_MAX_RANKS];     /* per rank in that order: teacher images it computes */
} Plan;

/* Devices of the H100 class: 80 GiB, 790 TFLOP/s peak, 47 GB/s links. */
PlanDevices plan_h100_devices(int count);

/* Sustained FLOP/s of a group on a device: its own sustained_flops when
 * given, else the device's peak x the efficiency of its role. */
double plan_group_flops(const PlanGroupInput *group, const PlanDevices *devices);

/* State bytes of one rank of the group on `ranks` ranks: state_bytes +
 * sharded_state_bytes / ranks. */
double plan_rank_state_bytes(const PlanGroupInput *group, int ranks);

/* The group as it runs on n ranks of a global_batch-image batch: itself,
 * or, with shard_auto, with its optimizer state sharded (as given) or kept
 * in full by every rank (sharded_state_bytes moved into state_bytes),
 * whichever makes the group faster on n ranks (memory buys micro-batches,
 * fitting at all; a sharded state's gather costs link time); sharded on a
 * tie. shard_auto is 0 in the result. */
PlanGroupInput plan_group_on(const PlanGroupInput *group, const PlanDevices *devices, int global_batch, int n);

/* The best plan under the options (NULL: uneven slices, teacher not spread).
 * Errors name the model, the memory it needs and what a device has. */
int plan_groups(Plan *plan, const PlanGroupInput *groups, int group_count, int global_batch,
                const PlanDevices *devices, const PlanOptions *options, DdError *err);

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

/*
 * balancer.h - the online balancer of a run (issue 6, part 2; docs/balancer.md).
 *
 * Every monitor window, each rank's busy seconds per iteration (compute,
 * not waiting: StudentStepReport.busy_seconds, TeacherRank.busy_seconds)
 * reach rank 0, which keeps a moving average (EMA) per rank. A group's
 * imbalance is slowest / mean - 1 over its ranks' averages; the groups'
 * imbalance is the same over their balanced times (a group's mean).
 *   - In-group move (no restart): a group whose imbalance stays above
 *     `threshold` for `window` iterations gets new images per rank in
 *     proportion to each rank's measured speed (images / busy seconds);
 *     every rank applies the new slices from the next iteration. The
 *     teacher group is moved likewise when no student rank helps it (no
 *     spread); with helpers it is not: a helper's busy time mixes its
 *     student's work and the teacher's, so its teacher speed is unknown.
 *     Moved slices survive a restart: each checkpoint holds them
 *     (balancer_slices.h).
 *   - Re-plan (restart): when no group needs a move and the groups stay
 *     imbalanced above `threshold` for `window` iterations, ranks per group
 *     in proportion to each group's measured work (proportional_plan); if
 *     that changes the ranks, the override is written at the next
 *     checkpoint and the job exits with RUN_EXIT_REPLAN (run_job.h) for the
 *     supervisor to start it again on the new plan.
 * This file is the decision alone (no MPI): run_job.c gathers the times,
 * broadcasts the decision and applies it.
 *
 * Test hook (environment, like DD_INJECT_NAN_AT): DD_INJECT_SLOW=R:F[,R:F]
 * makes world rank R sleep (F - 1) x its compute after each step, counted
 * as compute.
 */
#ifndef DD_TOOLS_BALANCER_H
#define DD_TOOLS_BALANCER_H

#include <stddef.h>

#include "comm/rank_layout.h"
#include "nn/error.h"

/* `balancer:` in a run file. */
typedef struct BalancerConfig {
    int enabled;
    double threshold;         /* imbalance (slowest / mean - 1) tolerated */
    int window;               /* iterations it must stay above the threshold before acting */
    double average;           /* EMA weight of the newest window, (0, 1] */
    int replan;               /* also move ranks between groups (restart at a checkpoint) */
} BalancerConfig;

enum {
    BALANCER_MAX_RANKS = 1024,        /* a larger world runs without the balancer */
    BALANCER_MAX_GROUP_RANKS = 64,    /* larger groups get no in-group moves */
    BALANCER_TEXT_MAX = 320,
};

typedef enum BalancerAction { BALANCER_NONE = 0, BALANCER_MOVE_IMAGES = 1, BALANCER_REPLAN = 2 } BalancerAction;

/* What rank 0 decided at a window's end; broadcast as bytes. */
typedef struct BalancerDecision {
    int action;                                 /* BalancerAction */
    int group;                                  /* MOVE_IMAGES: the group whose slices change */
    int images[BALANCER_MAX_GROUP_RANKS];       /* MOVE_IMAGES: its images per rank */
    int ranks[LAYOUT_MAX_GROUPS];               /* REPLAN: ranks per group */
    char text[BALANCER_TEXT_MAX];               /* what and why, for the log */
} BalancerDecision;

typedef struct Balancer {
    BalancerConfig config;
    double busy[BALANCER_MAX_RANKS];            /* EMA of busy seconds per iteration; < 0: none yet */
    double imbalance[LAYOUT_MAX_GROUPS];        /* in-group, of the averages */
    double across;                              /* between groups */
    long above_since[LAYOUT_MAX_GROUPS];        /* iteration since which the group is above; -1 below */
    long across_above_since;
    double moves[LAYOUT_MAX_GROUPS];            /* in-group moves so far */
    int settled[LAYOUT_MAX_GROUPS];             /* a move would change nothing: the rest is the re-plan's */
    int replan_decided;                         /* at most one re-plan per job */
} Balancer;

/* Starts with no measurements. */
void balancer_init(Balancer *balancer, const BalancerConfig *config);

/* Folds one window of `steps` iterations ending at iteration `done`:
 * busy[w] is world rank w's busy seconds per iteration. Returns the
 * decision (BALANCER_NONE mostly); a move is counted here. */
BalancerDecision balancer_observe(Balancer *balancer, const RankLayout *layout, const double *busy, long steps,
                                  long done);

/* A group's slices moved: its ranks' averages start again. */
void balancer_forget_group(Balancer *balancer, const RankLayout *layout, int group);

/* images[r] of `batch` in proportion to 1 / seconds_per_image[r], each at
 * least 1 (largest remainder). */
void balancer_split_by_speed(int *images, const double *seconds_per_image, int ranks, int batch);

/* One line of the group's averages: "imbalance 0.52 (busy ms 10.1 30.2)". */
void balancer_describe_group(const Balancer *balancer, const RankLayout *layout, int group, char *text,
                             size_t size);

/* The plan override in the run folder (a re-plan): "ranks N0 N1 ...".
 * Read returns 1 and ranks when there is one for group_count groups
 * summing to world_size, 0 when there is none (or it does not fit). */
int balancer_write_override(const char *run_dir, const int *ranks, int group_count, DdError *err);
int balancer_read_override(const char *run_dir, int *ranks, int group_count, int world_size);

/* DD_INJECT_SLOW's factor for a world rank (1: not slowed), and the sleep
 * it asks for after a step of busy_seconds; returns the seconds slept. */
double balancer_injected_slowness(int world_rank);
double balancer_slow_down(double factor, double busy_seconds);

#endif

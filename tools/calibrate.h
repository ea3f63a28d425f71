/*
 * calibrate.h - how fast this process's device runs each group of a run:
 * the planner's sustained FLOP/s measured instead of assumed
 * (`distill plan --calibrate`, docs/planning.md).
 *
 * What is timed, on the backend given (cpu or cuda), per image:
 *   teacher: the backbone's inference forward of the global crops;
 *   student: the backbone's forward and backward of every crop (global and
 *       local, one activation set per crop size), no optimizer step (AdamW
 *       costs per parameter, not per image).
 * Each model is built with its real width, attention heads and FFN but only
 * 1 and 2 blocks (parameters of small random values, not the real
 * initialisation: the same speed, far quicker to fill); each runs once
 * untimed, then the two take turns `runs` times with `images` images (a
 * busy spell slows both alike), and the medians are kept. The line
 * t(d) = fixed + per_block * d through the two points gives the time at the
 * real depth, so ViT-7B calibrates in seconds (should noise make 2 blocks no
 * slower than 1: t(d) = t(2) * d / 2). The backbone's FLOPs per image
 * (vit_forward_flops, x3 for training) over that time is the group's
 * sustained rate. The DINO and iBOT heads are not timed: they are assumed to
 * run at the same rate, so the group's seconds per image are the cost
 * model's flops_per_image (heads included) over it. An sgemm ceiling timed
 * in the same run (the best of samples before each model and after the
 * last) puts each rate in proportion.
 */
#ifndef DD_TOOLS_CALIBRATE_H
#define DD_TOOLS_CALIBRATE_H

#include "nn/backend.h"
#include "nn/error.h"
#include "nn/vit_config.h"
#include "schedule/cost_model.h"
#include "schedule/planner.h"
#include "tools/run_config.h"

enum {
    CALIBRATE_IMAGES = 1,         /* images per timed run */
    CALIBRATE_RUNS = 3,           /* timed runs per depth, after one untimed */
    CALIBRATE_CEILING_ROWS = 1024, CALIBRATE_CEILING_WIDTH = 4096,   /* the sgemm: [1024, 4096] x [4096, 4096] */
    CALIBRATE_CEILING_RUNS = 2,   /* before each model and after the last; the best counts */
};

/* One model timed at depths 1 and 2 and extrapolated (seconds per image). */
typedef struct ModelTiming {
    double at_depth[2];           /* measured at 1 and 2 blocks */
    double fixed, per_block;      /* t(d) = fixed + per_block * d */
    double seconds;               /* t at the model's own depth */
} ModelTiming;

typedef struct GroupCalibration {
    ModelTiming backbone;
    double backbone_flops;        /* per image: forward (x3 for a student) of its crops */
    double sustained_flops;       /* backbone_flops / backbone.seconds */
    double seconds;               /* per image, heads included: flops_per_image / sustained_flops */
} GroupCalibration;

typedef struct Calibration {
    const char *backend;
    double ceiling_flops;         /* sgemm ceiling, FLOP/s */
    int group_count;
    GroupCalibration groups[PLAN_MAX_GROUPS];
    double wall_seconds;          /* the whole calibration */
} Calibration;

/* Seconds per image of the model's work at its own depth, timed directly
 * (frozen: a teacher's inference, else a student's training pass). */
int calibrate_time_model(double *seconds, const NnBackend *be, const ViTConfig *model, const CropShape *crops,
                         int frozen, int images, int runs, DdError *err);

/* The same at depths 1 and 2, extrapolated to the model's depth. */
int calibrate_model(ModelTiming *timing, const NnBackend *be, const ViTConfig *model, const CropShape *crops,
                    int frozen, int images, int runs, DdError *err);

/* Every group of a run (groups: run_plan_inputs, group 0 the teacher) and
 * the sgemm ceiling, on be. */
int calibrate_run(Calibration *cal, const RunConfig *config, const CropShape *crops, const PlanGroupInput *groups,
                  const NnBackend *be, DdError *err);

/* The table (group, measured seconds per image, sustained TFLOP/s, share of
 * the ceiling), then a `devices:` section to paste into the run file;
 * devices: what the plan assumes besides the speeds. */
void calibration_print(const Calibration *cal, const RunConfig *config, const PlanGroupInput *groups,
                       const PlanDevices *devices);

#endif

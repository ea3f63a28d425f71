/*
 * run_config.h - a whole distillation run as read from configs/runs/NAME.yaml:
 * the teacher, the students, the schedule length, the batch and the crops.
 * Schema and defaults in run_config.c; later sections (data, schedule, comm,
 * monitor) are added there as fields of RunConfig.
 */
#ifndef DD_TOOLS_RUN_CONFIG_H
#define DD_TOOLS_RUN_CONFIG_H

#include <stdint.h>

#include "data/data_config.h"
#include "nn/error.h"
#include "nn/vit_config.h"
#include "nn/yaml_config.h"
#include "schedule/schedule.h"
#include "students/students.h"
#include "tools/balancer.h"

enum { RUN_MAX_STUDENTS = 16 };

/* CropConfig (the `crops:` section) and DataConfig (the `data:` section)
 * come from data/data_config.h. */

typedef struct TeacherConfig {
    ViTConfig model;          /* usually `model: ../models/NAME.yaml` */
    char weights[512];        /* HDF5 weights (`distill import`); empty: drawn from the seed */
    int ranks;                /* ranks of the teacher group; 0: planned */
    int spread;               /* the planner may put teacher images on student ranks with spare time
                               * (schedule/planner.h); true by default */
} TeacherConfig;

/* `checkpoint:` one consistent checkpoint of every group each `every`
 * iterations, the newest `keep` kept. */
typedef struct CheckpointConfig {
    int every;
    int keep;
} CheckpointConfig;

/* `monitor:` a status line and a metrics record per group every `every`
 * iterations (docs/metrics.md); a Prometheus endpoint on bind:port when
 * port is not 0. */
typedef struct MonitorConfig {
    int every;
    int port;                 /* 0: no endpoint */
    char bind[64];            /* the listener's address; 127.0.0.1 by default */
} MonitorConfig;

/* shard_optimizer_state: "auto" (the planner shards a group's optimizer
 * state where that makes the plan faster or lets it fit), "true", "false". */
typedef enum ShardMode { SHARD_AUTO, SHARD_ALWAYS, SHARD_NEVER } ShardMode;

/* What a loss that is not finite does: stop the run, or roll back to the
 * last checkpoint and skip that iteration's batch. */
typedef enum NanPolicy {
    NAN_STOP = 0,
    NAN_ROLLBACK = 1,
} NanPolicy;

typedef struct StudentConfig {
    char name[64];            /* the group's name in logs, metrics and checkpoints */
    ViTConfig model;
    int ranks;                /* ranks of this student's group; 0: planned */
    int micro_batch;          /* images per forward and backward on a rank; 0: the rank's whole slice */
} StudentConfig;

/* `devices:` what the planner assumes of one device (schedule/planner.h,
 * docs/planning.md): memory, peak, link, and per group the sustained speed
 * that `distill plan --calibrate` measured (0: peak x the role's default
 * efficiency). Students are named as in `students:`. */
typedef struct GroupSpeedConfig {
    char name[64];            /* a student's name; unused for the teacher */
    double sustained_tflops;  /* 0: peak x default efficiency */
} GroupSpeedConfig;

typedef struct DevicesConfig {
    double memory_gib;        /* 80 */
    double peak_tflops;       /* 790: H100 dense bf16 */
    double link_gb_per_s;     /* 47: InfiniBand NDR, one NIC per device */
    GroupSpeedConfig teacher;
    GroupSpeedConfig students[RUN_MAX_STUDENTS];
    int student_count;
} DevicesConfig;

typedef struct RunConfig {
    char name[64];
    uint64_t seed;            /* every random choice of the run derives from it */
    int iterations;           /* main phase */
    int cooldown;             /* iterations after the main phase */
    int warmup;               /* first iterations of the main phase with a rising learning rate */
    int global_batch;         /* images per iteration, over all ranks of a group */
    CropConfig crops;
    DataConfig data;          /* sources, augmentation, loader threads; synthetic by default */
    ObjectiveConfig objective;    /* loss weights, temperatures, iBOT masks (students/students.h) */
    OptimizerConfig optimizer;    /* AdamW, parameter groups, clipping (students/students.h) */
    SchedulesConfig schedules;    /* lr, weight decay, teacher temperature, EMA momentum (schedule/schedule.h) */
    TeacherConfig teacher;
    StudentConfig students[RUN_MAX_STUDENTS];
    int student_count;
    int ranks;                /* MPI ranks of the job: teacher and students (0: one per group) */
    int prefetch;             /* iterations the teacher may run ahead of the students */
    int overlap_gradient_sums;   /* students' gradient sums start during the backward, layer by layer */
    ShardMode shard_optimizer_state;   /* whether each rank of a student group keeps 1/n of its AdamW
                                        * moments and EMA (gradients reduce-scattered, parameters
                                        * all-gathered): auto lets the planner choose per group */
    CheckpointConfig checkpoint;
    MonitorConfig monitor;
    NanPolicy on_nan;
    BalancerConfig balancer;  /* the online balancer (tools/balancer.h, docs/balancer.md); off by default */
    DevicesConfig devices;    /* what the planner assumes of a device; H100 figures by default */
} RunConfig;

extern const ConfigSchema run_config_schema;
/* crop_config_schema (data/data_config.h): the crops section alone, for
 * tools that take a model file and need the default recipe. */

/* Loads and checks a run file; errors read "file:line:column: expected X, found Y". */
int run_config_load(RunConfig *config, const char *path, DdError *err);

#endif

/*
 * schedule.h - hyper-parameter schedules over a whole run: one per
 * hyper-parameter (learning rate, weight decay, teacher temperature, EMA
 * momentum), each a pure function of the iteration.
 *
 * A run has `iterations` main iterations, then `cooldown` more. A schedule
 * rises linearly from `start` to `peak` over its first `warmup` iterations,
 * holds `peak` to the end of the main phase, then goes to `final` over the
 * cooldown, on a half cosine (default) or a line:
 *
 *   value(i) = start + (peak - start) * i / warmup          0 <= i < warmup
 *            = peak                                          warmup <= i < iterations
 *            = final + (peak - final) * shape(p)             iterations <= i < iterations + cooldown
 *            = final                                         afterwards
 *   p = (i - iterations) / (cooldown - 1) in [0, 1], shape(p) = (1 + cos(pi p)) / 2 or 1 - p.
 *
 * The boundaries are exact, not merely close: value(0) == start (when
 * warmup > 0), value(warmup) == value(iterations) == peak, and the last
 * iteration of the run, iterations + cooldown - 1, gives final.
 */
#ifndef DD_SCHEDULE_SCHEDULE_H
#define DD_SCHEDULE_SCHEDULE_H

#include "nn/error.h"
#include "nn/yaml_config.h"

typedef enum CooldownShape {
    COOLDOWN_COSINE = 0,
    COOLDOWN_LINEAR = 1,
} CooldownShape;

/* One schedule as written in a run file (`schedules: lr: {...}`). */
typedef struct ScheduleConfig {
    double start;          /* value at iteration 0, where a warmup begins */
    double peak;           /* value from the end of warmup to the end of the main phase */
    double final;          /* value at the last iteration of the cooldown */
    int warmup;            /* iterations of linear warmup; -1: the run's top-level `warmup` */
    CooldownShape shape;   /* `cosine` or `linear` */
} ScheduleConfig;

/* The `schedules` section of a run file. Defaults are DINOv3's: lr 0 -> 2e-4
 * -> 1e-6, weight decay 0.04 throughout, teacher temperature 0.04 -> 0.07,
 * EMA momentum 0.994 -> 1.0; warmups follow the run's `warmup`. */
typedef struct SchedulesConfig {
    ScheduleConfig lr;
    ScheduleConfig weight_decay;
    ScheduleConfig teacher_temperature;
    ScheduleConfig ema_momentum;
} SchedulesConfig;

extern const ConfigSchema schedule_config_schema;    /* one ScheduleConfig */
extern const ConfigSchema schedules_config_schema;   /* the section */

/* A schedule placed on a run's iterations. */
typedef struct Schedule {
    double start, peak, final;
    long warmup;          /* resolved: >= 0 */
    long iterations;      /* main phase */
    long cooldown;        /* iterations after it */
    CooldownShape shape;
} Schedule;

/* Places config on a run of `iterations` + `cooldown` iterations whose
 * default warmup is run_warmup. Fails, naming `what`, when the warmup is
 * longer than the main phase. */
int schedule_make(Schedule *schedule, const ScheduleConfig *config, const char *what,
                  long run_warmup, long iterations, long cooldown, DdError *err);

/* The value at an iteration (>= 0; past the end it stays at final). */
double schedule_value(const Schedule *schedule, long iteration);

/* The four schedules of a run, and their values at one iteration. */
typedef struct RunSchedules {
    Schedule lr, weight_decay, teacher_temperature, ema_momentum;
} RunSchedules;

typedef struct ScheduleValues {
    double lr, weight_decay, teacher_temperature, ema_momentum;
} ScheduleValues;

int run_schedules_make(RunSchedules *schedules, const SchedulesConfig *config, long run_warmup,
                       long iterations, long cooldown, DdError *err);
ScheduleValues run_schedules_at(const RunSchedules *schedules, long iteration);

#endif

/*
 * schedule_config.c - the `schedules` section of a run file: one mapping
 * per hyper-parameter with start, peak, final, warmup and shape, each
 * hyper-parameter with its own defaults (DINOv3's).
 */
#include <stddef.h>

#include "schedule/schedule.h"

static const char *const shape_names[] = {[COOLDOWN_COSINE] = "cosine", [COOLDOWN_LINEAR] = "linear", NULL};

/* The fields of one schedule; the hyper-parameters differ in their defaults
 * and in the range of values that make sense for them. */
#define SCHEDULE_FIELDS(lowest, highest, start_default, peak_default, final_default)                 \
    {                                                                                                \
        {CONFIG_MEMBER(ScheduleConfig, start), .type = CONFIG_DOUBLE, .min = (lowest),               \
         .max = (highest), .fallback = (start_default)},                                             \
        {CONFIG_MEMBER(ScheduleConfig, peak), .type = CONFIG_DOUBLE, .min = (lowest),                \
         .max = (highest), .fallback = (peak_default)},                                              \
        {CONFIG_MEMBER(ScheduleConfig, final), .type = CONFIG_DOUBLE, .min = (lowest),               \
         .max = (highest), .fallback = (final_default)},                                             \
        {CONFIG_MEMBER(ScheduleConfig, warmup), .type = CONFIG_INT, .min = -1, .max = 1e9,           \
         .fallback = -1},                                                                            \
        {CONFIG_MEMBER(ScheduleConfig, shape), .type = CONFIG_ENUM, .names = shape_names,            \
         .fallback_text = "cosine"},                                                                 \
    }

static const ConfigField generic_fields[] = SCHEDULE_FIELDS(-1e9, 1e9, 0, 0, 0);
static const ConfigField lr_fields[] = SCHEDULE_FIELDS(0, 10, 0, 2e-4, 1e-6);
static const ConfigField weight_decay_fields[] = SCHEDULE_FIELDS(0, 10, 0.04, 0.04, 0.04);
static const ConfigField teacher_temperature_fields[] = SCHEDULE_FIELDS(1e-4, 10, 0.04, 0.07, 0.07);
static const ConfigField ema_momentum_fields[] = SCHEDULE_FIELDS(0, 1, 0.994, 0.994, 1.0);

const ConfigSchema schedule_config_schema = CONFIG_SCHEMA("schedule", ScheduleConfig, generic_fields, NULL);
static const ConfigSchema lr_schema = CONFIG_SCHEMA("schedule", ScheduleConfig, lr_fields, NULL);
static const ConfigSchema weight_decay_schema =
    CONFIG_SCHEMA("schedule", ScheduleConfig, weight_decay_fields, NULL);
static const ConfigSchema teacher_temperature_schema =
    CONFIG_SCHEMA("schedule", ScheduleConfig, teacher_temperature_fields, NULL);
static const ConfigSchema ema_momentum_schema =
    CONFIG_SCHEMA("schedule", ScheduleConfig, ema_momentum_fields, NULL);

static const ConfigField schedules_fields[] = {
    {CONFIG_MEMBER(SchedulesConfig, lr), .type = CONFIG_STRUCT, .schema = &lr_schema},
    {CONFIG_MEMBER(SchedulesConfig, weight_decay), .type = CONFIG_STRUCT, .schema = &weight_decay_schema},
    {CONFIG_MEMBER(SchedulesConfig, teacher_temperature), .type = CONFIG_STRUCT,
     .schema = &teacher_temperature_schema},
    {CONFIG_MEMBER(SchedulesConfig, ema_momentum), .type = CONFIG_STRUCT, .schema = &ema_momentum_schema},
};

const ConfigSchema schedules_config_schema =
    CONFIG_SCHEMA("schedules", SchedulesConfig, schedules_fields, NULL);

/*
 * run_config.c - the schema of a run file (configs/runs/NAME.yaml) and the
 * checks that tie its parts together: unique student names, the same patch
 * grid and prototype counts for teacher and students, crops that are whole
 * patches, device speeds (`devices:`) given to students that exist.
 */
#include "tools/run_config.h"

#include <stddef.h>
#include <string.h>

#include "schedule/planner.h"

static const ConfigField teacher_fields[] = {
    {CONFIG_MEMBER(TeacherConfig, model), .type = CONFIG_STRUCT, .required = 1, .schema = &vit_config_schema},
    {CONFIG_MEMBER(TeacherConfig, weights), .type = CONFIG_STRING, .fallback_text = ""},
    {CONFIG_MEMBER(TeacherConfig, ranks), .type = CONFIG_INT, .min = 0, .max = 1 << 20, .fallback = 0},
    {CONFIG_MEMBER(TeacherConfig, spread), .type = CONFIG_BOOL, .fallback = 1},
};
static const ConfigSchema teacher_schema = CONFIG_SCHEMA("teacher", TeacherConfig, teacher_fields, NULL);

static const ConfigField student_fields[] = {
    {CONFIG_MEMBER(StudentConfig, name), .type = CONFIG_STRING, .required = 1, .min = 1},
    {CONFIG_MEMBER(StudentConfig, model), .type = CONFIG_STRUCT, .required = 1, .schema = &vit_config_schema},
    {CONFIG_MEMBER(StudentConfig, ranks), .type = CONFIG_INT, .min = 0, .max = 1 << 20, .fallback = 0},
    {CONFIG_MEMBER(StudentConfig, micro_batch), .type = CONFIG_INT, .min = 0, .max = 1 << 20, .fallback = 0},
};
static const ConfigSchema student_schema = CONFIG_SCHEMA("student", StudentConfig, student_fields, NULL);

static const ConfigField checkpoint_fields[] = {
    {CONFIG_MEMBER(CheckpointConfig, every), .type = CONFIG_INT, .min = 1, .max = 1e9, .fallback = 1000},
    {CONFIG_MEMBER(CheckpointConfig, keep), .type = CONFIG_INT, .min = 1, .max = 1000, .fallback = 3},
};
static const ConfigSchema checkpoint_schema = CONFIG_SCHEMA("checkpoint", CheckpointConfig, checkpoint_fields, NULL);

static const ConfigField monitor_fields[] = {
    {CONFIG_MEMBER(MonitorConfig, every), .type = CONFIG_INT, .min = 1, .max = 1e9, .fallback = 10},
    {CONFIG_MEMBER(MonitorConfig, port), .type = CONFIG_INT, .min = 0, .max = 65535, .fallback = 0},
    {CONFIG_MEMBER(MonitorConfig, bind), .type = CONFIG_STRING, .min = 1, .fallback_text = "127.0.0.1"},
};
static const ConfigSchema monitor_schema = CONFIG_SCHEMA("monitor", MonitorConfig, monitor_fields, NULL);

static const ConfigField balancer_fields[] = {
    {CONFIG_MEMBER(BalancerConfig, enabled), .type = CONFIG_BOOL, .fallback = 0},
    {CONFIG_MEMBER(BalancerConfig, threshold), .type = CONFIG_DOUBLE, .min = 0, .max = 100, .fallback = 0.10},
    {CONFIG_MEMBER(BalancerConfig, window), .type = CONFIG_INT, .min = 1, .max = 1e9, .fallback = 20},
    {CONFIG_MEMBER(BalancerConfig, average), .type = CONFIG_DOUBLE, .min = 0.001, .max = 1, .fallback = 0.5},
    {CONFIG_MEMBER(BalancerConfig, replan), .type = CONFIG_BOOL, .fallback = 1},
};
static const ConfigSchema balancer_schema = CONFIG_SCHEMA("balancer", BalancerConfig, balancer_fields, NULL);

static const ConfigField teacher_speed_fields[] = {
    {CONFIG_MEMBER(GroupSpeedConfig, sustained_tflops), .type = CONFIG_DOUBLE, .min = 0, .max = 1e6, .fallback = 0},
};
static const ConfigSchema teacher_speed_schema =
    CONFIG_SCHEMA("teacher speed", GroupSpeedConfig, teacher_speed_fields, NULL);

static const ConfigField student_speed_fields[] = {
    {CONFIG_MEMBER(GroupSpeedConfig, name), .type = CONFIG_STRING, .required = 1, .min = 1},
    {CONFIG_MEMBER(GroupSpeedConfig, sustained_tflops), .type = CONFIG_DOUBLE, .min = 0, .max = 1e6, .fallback = 0},
};
static const ConfigSchema student_speed_schema =
    CONFIG_SCHEMA("student speed", GroupSpeedConfig, student_speed_fields, NULL);

static const ConfigField devices_fields[] = {
    {CONFIG_MEMBER(DevicesConfig, memory_gib), .type = CONFIG_DOUBLE, .min = 1e-6, .max = 1e6,
     .fallback = PLAN_H100_MEMORY_BYTES / 1073741824.0},
    {CONFIG_MEMBER(DevicesConfig, peak_tflops), .type = CONFIG_DOUBLE, .min = 1e-6, .max = 1e6,
     .fallback = PLAN_H100_PEAK_FLOPS / 1e12},
    {CONFIG_MEMBER(DevicesConfig, link_gb_per_s), .type = CONFIG_DOUBLE, .min = 1e-6, .max = 1e6,
     .fallback = PLAN_LINK_BYTES_PER_SECOND / 1e9},
    {CONFIG_MEMBER(DevicesConfig, teacher), .type = CONFIG_STRUCT, .schema = &teacher_speed_schema},
    {CONFIG_MEMBER(DevicesConfig, students), .type = CONFIG_LIST, .schema = &student_speed_schema,
     .count_offset = offsetof(DevicesConfig, student_count)},
};
static const ConfigSchema devices_schema = CONFIG_SCHEMA("devices", DevicesConfig, devices_fields, NULL);

static const char *const nan_policy_names[] = {"stop", "rollback", NULL};
static const char *const shard_mode_names[] = {"auto", "true", "false", NULL};

static const ConfigField run_fields[] = {
    {CONFIG_MEMBER(RunConfig, name), .type = CONFIG_STRING, .required = 1, .min = 1},
    {CONFIG_MEMBER(RunConfig, seed), .type = CONFIG_UINT64, .fallback = 0},
    {CONFIG_MEMBER(RunConfig, iterations), .type = CONFIG_INT, .required = 1, .min = 1, .max = 1e9},
    {CONFIG_MEMBER(RunConfig, cooldown), .type = CONFIG_INT, .min = 0, .max = 1e9, .fallback = 0},
    {CONFIG_MEMBER(RunConfig, warmup), .type = CONFIG_INT, .min = 0, .max = 1e9, .fallback = 0},
    {CONFIG_MEMBER(RunConfig, global_batch), .type = CONFIG_INT, .required = 1, .min = 1, .max = 1 << 24},
    {CONFIG_MEMBER(RunConfig, crops), .type = CONFIG_STRUCT, .schema = &crop_config_schema},
    {CONFIG_MEMBER(RunConfig, data), .type = CONFIG_STRUCT, .schema = &data_config_schema},
    {CONFIG_MEMBER(RunConfig, objective), .type = CONFIG_STRUCT, .schema = &objective_config_schema},
    {CONFIG_MEMBER(RunConfig, optimizer), .type = CONFIG_STRUCT, .schema = &optimizer_config_schema},
    {CONFIG_MEMBER(RunConfig, schedules), .type = CONFIG_STRUCT, .schema = &schedules_config_schema},
    {CONFIG_MEMBER(RunConfig, teacher), .type = CONFIG_STRUCT, .required = 1, .schema = &teacher_schema},
    {CONFIG_MEMBER(RunConfig, students), .type = CONFIG_LIST, .required = 1, .min = 1,
     .schema = &student_schema, .count_offset = offsetof(RunConfig, student_count)},
    {CONFIG_MEMBER(RunConfig, ranks), .type = CONFIG_INT, .min = 0, .max = 1 << 20, .fallback = 0},
    {CONFIG_MEMBER(RunConfig, prefetch), .type = CONFIG_INT, .min = 1, .max = 16, .fallback = 2},
    {CONFIG_MEMBER(RunConfig, overlap_gradient_sums), .type = CONFIG_BOOL, .fallback = 1},
    {CONFIG_MEMBER(RunConfig, shard_optimizer_state), .type = CONFIG_ENUM, .names = shard_mode_names,
     .fallback = SHARD_AUTO},
    {CONFIG_MEMBER(RunConfig, checkpoint), .type = CONFIG_STRUCT, .schema = &checkpoint_schema},
    {CONFIG_MEMBER(RunConfig, monitor), .type = CONFIG_STRUCT, .schema = &monitor_schema},
    {CONFIG_MEMBER(RunConfig, on_nan), .type = CONFIG_ENUM, .names = nan_policy_names, .fallback = 0},
    {CONFIG_MEMBER(RunConfig, balancer), .type = CONFIG_STRUCT, .schema = &balancer_schema},
    {CONFIG_MEMBER(RunConfig, devices), .type = CONFIG_STRUCT, .schema = &devices_schema},
};

/* The teacher's patch features are matched to the students' patches, so all
 * models cut the crops into the same grid. */
static int check_patch_grid(const RunConfig *c, const ConfigPlaces *places, DdError *err) {
    int patch = c->teacher.model.patch_size;
    for (int i = 0; i < c->student_count; i++)
        if (c->students[i].model.patch_size != patch)
            return CONFIG_FAIL_AT(places, &c->students[i].model, err,
                                  "expected patch_size %d as in the teacher for student '%s', found %d", patch,
                                  c->students[i].name, c->students[i].model.patch_size);
    return 0;
}

/* A student learns to predict the teacher's prototype scores, so its heads
 * have as many prototypes as the teacher's. */
static int check_prototypes(const RunConfig *c, const ConfigPlaces *places, DdError *err) {
    const ViTConfig *teacher = &c->teacher.model;
    for (int i = 0; i < c->student_count; i++) {
        const ViTConfig *student = &c->students[i].model;
        if (student->dino_head.prototypes != teacher->dino_head.prototypes)
            return CONFIG_FAIL_AT(places, student, err,
                                  "expected %d DINO prototypes as in the teacher for student '%s', found %d",
                                  teacher->dino_head.prototypes, c->students[i].name, student->dino_head.prototypes);
        if (student->ibot_head.prototypes != teacher->ibot_head.prototypes)
            return CONFIG_FAIL_AT(places, student, err,
                                  "expected %d iBOT prototypes as in the teacher for student '%s', found %d",
                                  teacher->ibot_head.prototypes, c->students[i].name, student->ibot_head.prototypes);
    }
    return 0;
}

/* Crops are cut into whole patches. */
static int check_crop_sizes(const RunConfig *c, const ConfigPlaces *places, DdError *err) {
    int patch = c->teacher.model.patch_size;
    if (c->crops.global_size % patch != 0)
        return CONFIG_FAIL_AT(places, &c->crops.global_size, err,
                              "expected a multiple of the patch size %d for 'global_size', found %d", patch,
                              c->crops.global_size);
    if (c->crops.local_size % patch != 0)
        return CONFIG_FAIL_AT(places, &c->crops.local_size, err,
                              "expected a multiple of the patch size %d for 'local_size', found %d", patch,
                              c->crops.local_size);
    return 0;
}

/* Every speed in `devices: students:` names a student, once. */
static int check_device_speeds(const RunConfig *c, const ConfigPlaces *places, DdError *err) {
    const DevicesConfig *d = &c->devices;
    for (int i = 0; i < d->student_count; i++) {
        int known = 0;
        for (int s = 0; s < c->student_count; s++) known |= strcmp(d->students[i].name, c->students[s].name) == 0;
        if (!known)
            return CONFIG_FAIL_AT(places, &d->students[i].name, err,
                                  "expected the name of a student of the run, found '%s'", d->students[i].name);
        for (int j = 0; j < i; j++)
            if (strcmp(d->students[i].name, d->students[j].name) == 0)
                return CONFIG_FAIL_AT(places, &d->students[i].name, err,
                                      "expected a student name not given a speed before, found '%s' again",
                                      d->students[i].name);
    }
    return 0;
}

/* Each schedule's warmup (its own, or the run's) fits in the main phase. */
static int check_schedules(const RunConfig *c, const ConfigPlaces *places, DdError *err) {
    const ScheduleConfig *each[] = {&c->schedules.lr, &c->schedules.weight_decay,
                                    &c->schedules.teacher_temperature, &c->schedules.ema_momentum};
    for (size_t i = 0; i < sizeof each / sizeof each[0]; i++)
        if (each[i]->warmup > c->iterations)
            return CONFIG_FAIL_AT(places, &each[i]->warmup, err,
                                  "expected at most iterations (%d) for 'warmup', found %d", c->iterations,
                                  each[i]->warmup);
    return 0;
}

static int check_run_config(const void *object, const ConfigPlaces *places, DdError *err) {
    const RunConfig *c = object;
    if (c->warmup > c->iterations)
        return CONFIG_FAIL_AT(places, &c->warmup, err, "expected at most iterations (%d) for 'warmup', found %d",
                              c->iterations, c->warmup);
    for (int i = 0; i < c->student_count; i++)
        for (int j = 0; j < i; j++)
            if (strcmp(c->students[i].name, c->students[j].name) == 0)
                return CONFIG_FAIL_AT(places, &c->students[i].name, err,
                                      "expected a student name not used before, found '%s' again", c->students[i].name);
    if (c->ranks != 0 && c->ranks < 1 + c->student_count)
        return CONFIG_FAIL_AT(places, &c->ranks, err,
                              "expected at least one rank for the teacher and each of the %d students (%d) for "
                              "'ranks', found %d", c->student_count, 1 + c->student_count, c->ranks);
    for (int i = 0; i < c->student_count; i++)   /* KoLeo's nearest neighbour is in the micro-batch */
        if (c->students[i].micro_batch == 1 && c->objective.koleo_weight > 0)
            return CONFIG_FAIL_AT(places, &c->students[i].micro_batch, err,
                                  "expected 0 or at least 2 for 'micro_batch' of student '%s' (KoLeo compares each "
                                  "image with its nearest neighbour in its micro-batch; or set koleo_weight: 0), "
                                  "found 1", c->students[i].name);
    if (check_patch_grid(c, places, err) || check_prototypes(c, places, err) || check_schedules(c, places, err) ||
        check_device_speeds(c, places, err))
        return -1;
    return check_crop_sizes(c, places, err);
}

const ConfigSchema run_config_schema = CONFIG_SCHEMA("run", RunConfig, run_fields, check_run_config);

int run_config_load(RunConfig *config, const char *path, DdError *err) {
    return config_load(&run_config_schema, config, path, err);
}

/*
 * schedule.c - the value of a schedule at an iteration (see schedule.h):
 * warmup, constant, cooldown, with the boundaries returned exactly.
 */
#include "schedule/schedule.h"

#include <math.h>

int schedule_make(Schedule *schedule, const ScheduleConfig *config, const char *what,
                  long run_warmup, long iterations, long cooldown, DdError *err) {
    const long warmup = config->warmup >= 0 ? config->warmup : run_warmup;
    if (warmup < 0 || warmup > iterations)
        return dd_fail(err, "schedule '%s': expected a warmup of 0 to %ld iterations (the main phase), "
                       "found %ld", what, iterations, warmup);
    if (iterations < 0 || cooldown < 0)
        return dd_fail(err, "schedule '%s': expected non-negative iterations and cooldown, found %ld and %ld",
                       what, iterations, cooldown);
    *schedule = (Schedule){.start = config->start, .peak = config->peak, .final = config->final,
                           .warmup = warmup, .iterations = iterations, .cooldown = cooldown,
                           .shape = config->shape};
    return 0;
}

double schedule_value(const Schedule *s, long iteration) {
    if (iteration < s->warmup) {
        if (iteration <= 0) return s->start;
        return s->start + (s->peak - s->start) * ((double)iteration / (double)s->warmup);
    }
    if (iteration < s->iterations) return s->peak;
    const long into_cooldown = iteration - s->iterations;
    if (into_cooldown >= s->cooldown - 1) return s->final;   /* the last iteration and beyond */
    if (into_cooldown == 0) return s->peak;
    const double progress = (double)into_cooldown / (double)(s->cooldown - 1);   /* (0, 1) */
    const double weight = s->shape == COOLDOWN_LINEAR ? 1.0 - progress : 0.5 * (1.0 + cos(M_PI * progress));
    return s->final + (s->peak - s->final) * weight;
}

int run_schedules_make(RunSchedules *schedules, const SchedulesConfig *config, long run_warmup,
                       long iterations, long cooldown, DdError *err) {
    if (schedule_make(&schedules->lr, &config->lr, "lr", run_warmup, iterations, cooldown, err) ||
        schedule_make(&schedules->weight_decay, &config->weight_decay, "weight_decay", run_warmup,
                      iterations, cooldown, err) ||
        schedule_make(&schedules->teacher_temperature, &config->teacher_temperature,
                      "teacher_temperature", run_warmup, iterations, cooldown, err) ||
        schedule_make(&schedules->ema_momentum, &config->ema_momentum, "ema_momentum", run_warmup,
                      iterations, cooldown, err))
        return -1;
    return 0;
}

ScheduleValues run_schedules_at(const RunSchedules *s, long iteration) {
    return (ScheduleValues){
        .lr = schedule_value(&s->lr, iteration),
        .weight_decay = schedule_value(&s->weight_decay, iteration),
        .teacher_temperature = schedule_value(&s->teacher_temperature, iteration),
        .ema_momentum = schedule_value(&s->ema_momentum, iteration),
    };
}

/*
 * test_schedule.c - the hyper-parameter schedules: pure functions of the
 * iteration, exact at the boundaries of the DINOv3 family run (1,000,000
 * iterations, then a 250,000-iteration cooldown), cosine or linear, and the
 * checks on what a config may say.
 */
#include <math.h>
#include <stdio.h>

#include "schedule/schedule.h"
#include "tests/test.h"

enum { FAMILY_ITERATIONS = 1000000, FAMILY_COOLDOWN = 250000, FAMILY_WARMUP = 100000 };
enum { LAST_ITERATION = FAMILY_ITERATIONS + FAMILY_COOLDOWN - 1 };

static Schedule make(double start, double peak, double final, int warmup, CooldownShape shape) {
    const ScheduleConfig config = {start, peak, final, warmup, shape};
    Schedule s = {0};
    DdError err = {{0}};
    CHECK(schedule_make(&s, &config, "test", FAMILY_WARMUP, FAMILY_ITERATIONS, FAMILY_COOLDOWN, &err) == 0,
          "%s", err.message);
    return s;
}

/* Exact equality: the boundaries are values of the config, not approximations. */
#define CHECK_EXACT(s, iteration, expected)                                                          \
    do {                                                                                             \
        const double found_ = schedule_value(&(s), (iteration));                                     \
        CHECK(found_ == (expected), "iteration %ld: expected exactly %.17g, found %.17g",             \
              (long)(iteration), (double)(expected), found_);                                        \
    } while (0)

static void lr_is_exact_at_the_family_boundaries(void) {
    /* values whose differences are not exact in binary */
    const double start = 0.0, peak = 2e-4, final = 1e-6;
    const Schedule lr = make(start, peak, final, -1, COOLDOWN_COSINE);   /* warmup: the run's 100,000 */
    CHECK_EXACT(lr, 0, start);
    CHECK_EXACT(lr, FAMILY_WARMUP, peak);                 /* end of warmup */
    CHECK_EXACT(lr, FAMILY_ITERATIONS - 1, peak);         /* 999,999 */
    CHECK_EXACT(lr, FAMILY_ITERATIONS, peak);             /* 1,000,000: the cooldown starts at the peak */
    CHECK_EXACT(lr, LAST_ITERATION, final);               /* 1,249,999 */
    CHECK_EXACT(lr, LAST_ITERATION + 1, final);           /* past the end it stays */
    printf("  lr: 0 -> %.17g, 100000 -> %.17g, 999999 -> %.17g, 1000000 -> %.17g, 1249999 -> %.17g\n",
           schedule_value(&lr, 0), schedule_value(&lr, FAMILY_WARMUP), schedule_value(&lr, 999999),
           schedule_value(&lr, 1000000), schedule_value(&lr, LAST_ITERATION));

    /* inside the warmup: the line; inside the cooldown: the half cosine */
    const double quarter = schedule_value(&lr, FAMILY_WARMUP / 4);
    CHECK(fabs(quarter - peak / 4) <= 1e-15 * peak, "warmup quarter %.17g", quarter);
    const double last_warmup = schedule_value(&lr, FAMILY_WARMUP - 1);
    CHECK(last_warmup < peak && fabs(last_warmup - peak * 99999.0 / 100000.0) <= 1e-15,
          "iteration 99,999: %.17g", last_warmup);
    const long middle = FAMILY_ITERATIONS + 125000;   /* p = 125000 / 249999, just past 1/2 */
    const double cosine = final + (peak - final) * 0.5 * (1.0 + cos(M_PI * 125000.0 / 249999.0));
    CHECK(fabs(schedule_value(&lr, middle) - cosine) <= 1e-12 * peak, "cooldown middle %.17g vs %.17g",
          schedule_value(&lr, middle), cosine);
    CHECK(fabs(cosine - (peak + final) / 2) < 1e-5 * peak, "the middle of a half cosine is the midpoint");
    double previous = peak;
    for (long i = FAMILY_ITERATIONS; i <= LAST_ITERATION; i += 997) {
        const double value = schedule_value(&lr, i);
        CHECK(value <= previous && value >= final, "the cooldown falls monotonically: %ld gives %.17g", i, value);
        previous = value;
    }
}

static void every_hyper_parameter_has_its_own_schedule(void) {
    DdError err = {{0}};
    SchedulesConfig config;
    CHECK(config_set_defaults(&schedules_config_schema, &config, &err) == 0, "%s", err.message);
    config.teacher_temperature.warmup = 30000;
    RunSchedules run;
    CHECK(run_schedules_make(&run, &config, FAMILY_WARMUP, FAMILY_ITERATIONS, FAMILY_COOLDOWN, &err) == 0,
          "%s", err.message);
    const ScheduleValues first = run_schedules_at(&run, 0), warm = run_schedules_at(&run, 30000);
    const ScheduleValues main_phase = run_schedules_at(&run, 999999), last = run_schedules_at(&run, LAST_ITERATION);
    CHECK(first.lr == 0.0 && first.teacher_temperature == 0.04 && first.ema_momentum == 0.994 &&
              first.weight_decay == 0.04,
          "iteration 0: lr %g, temperature %g, momentum %g, wd %g", first.lr, first.teacher_temperature,
          first.ema_momentum, first.weight_decay);
    CHECK(warm.teacher_temperature == 0.07 && warm.lr < 2e-4, "iteration 30,000: temperature %g, lr %g",
          warm.teacher_temperature, warm.lr);
    CHECK(main_phase.lr == 2e-4 && main_phase.ema_momentum == 0.994, "iteration 999,999");
    CHECK(last.lr == 1e-6 && last.ema_momentum == 1.0 && last.teacher_temperature == 0.07 &&
              last.weight_decay == 0.04,
          "iteration 1,249,999: lr %g, momentum %.17g", last.lr, last.ema_momentum);
    printf("  EMA momentum: 999999 -> %.6f, 1125000 -> %.6f, 1249999 -> %.6f\n", main_phase.ema_momentum,
           run_schedules_at(&run, 1125000).ema_momentum, last.ema_momentum);
}

static void the_linear_cooldown_is_a_line(void) {
    const Schedule s = make(0.5, 1.0, 0.0, 0, COOLDOWN_LINEAR);
    CHECK_EXACT(s, 0, 1.0);   /* no warmup: the peak from the start */
    CHECK_EXACT(s, FAMILY_ITERATIONS, 1.0);
    CHECK_EXACT(s, LAST_ITERATION, 0.0);
    const long i = FAMILY_ITERATIONS + 62500;   /* a quarter of the way (p = 62500 / 249999) */
    const double expected = 1.0 - 62500.0 / 249999.0;
    CHECK(fabs(schedule_value(&s, i) - expected) <= 1e-15, "%.17g vs %.17g", schedule_value(&s, i), expected);
}

static void short_runs_have_well_defined_edges(void) {
    DdError err = {{0}};
    const ScheduleConfig config = {0.0, 1.0, 0.25, 2, COOLDOWN_COSINE};
    Schedule s;
    /* no cooldown: the peak to the end, then the final value */
    CHECK(schedule_make(&s, &config, "short", 0, 5, 0, &err) == 0, "%s", err.message);
    CHECK_EXACT(s, 1, 0.5);
    CHECK_EXACT(s, 4, 1.0);
    CHECK_EXACT(s, 5, 0.25);
    /* a one-iteration cooldown is its final value */
    CHECK(schedule_make(&s, &config, "short", 0, 5, 1, &err) == 0, "%s", err.message);
    CHECK_EXACT(s, 5, 0.25);
    /* warmup over the whole main phase reaches the peak at the cooldown */
    CHECK(schedule_make(&s, &(ScheduleConfig){0.0, 1.0, 0.0, 5, COOLDOWN_LINEAR}, "short", 0, 5, 3, &err) == 0,
          "%s", err.message);
    CHECK_EXACT(s, 4, 0.8);
    CHECK_EXACT(s, 5, 1.0);
    CHECK_EXACT(s, 6, 0.5);
    CHECK_EXACT(s, 7, 0.0);
}

static void a_warmup_longer_than_the_main_phase_is_refused(void) {
    DdError err = {{0}};
    Schedule s;
    const ScheduleConfig config = {0.0, 1.0, 0.0, 11, COOLDOWN_COSINE};
    CHECK(schedule_make(&s, &config, "teacher_temperature", 0, 10, 5, &err) == -1, "accepted");
    CHECK(strcmp(err.message, "schedule 'teacher_temperature': expected a warmup of 0 to 10 iterations "
                              "(the main phase), found 11") == 0, "message: %s", err.message);
    const ScheduleConfig inherit = {0.0, 1.0, 0.0, -1, COOLDOWN_COSINE};
    CHECK(schedule_make(&s, &inherit, "lr", 20, 10, 5, &err) == -1, "the run's warmup is checked too");
}

static void a_schedules_section_loads_from_yaml(void) {
    const char text[] = "lr: {start: 0, peak: 0.001, final: 0, warmup: 10, shape: linear}\n"
                        "ema_momentum: {peak: 0.99}\n";
    SchedulesConfig config;
    DdError err = {{0}};
    CHECK(config_load_text(&schedules_config_schema, &config, text, sizeof text - 1, "inline.yaml", &err) == 0,
          "%s", err.message);
    CHECK(config.lr.peak == 0.001 && config.lr.warmup == 10 && config.lr.shape == COOLDOWN_LINEAR, "lr");
    CHECK(config.ema_momentum.peak == 0.99 && config.ema_momentum.start == 0.994 &&
              config.ema_momentum.final == 1.0 && config.ema_momentum.warmup == -1,
          "ema keeps its defaults beside the key written");
    const char bad[] = "ema_momentum: {final: 1.5}\n";
    CHECK(config_load_text(&schedules_config_schema, &config, bad, sizeof bad - 1, "bad.yaml", &err) == -1,
          "a momentum over 1 is refused");
    CHECK(strstr(err.message, "bad.yaml:1:23: expected number in [0, 1] for 'final'") != NULL, "%s", err.message);
    const char shape[] = "lr: {shape: step}\n";
    CHECK(config_load_text(&schedules_config_schema, &config, shape, sizeof shape - 1, "shape.yaml", &err) == -1,
          "an unknown shape is refused");
    printf("  refused: %s\n", err.message);
}

TEST_MAIN(TEST(lr_is_exact_at_the_family_boundaries), TEST(every_hyper_parameter_has_its_own_schedule),
          TEST(the_linear_cooldown_is_a_line), TEST(short_runs_have_well_defined_edges),
          TEST(a_warmup_longer_than_the_main_phase_is_refused), TEST(a_schedules_section_loads_from_yaml))

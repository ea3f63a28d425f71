/*
 * test_run_sections.c - the `objective`, `optimizer` and `schedules`
 * sections of a run file: the DINOv3 family run says what DINOv3 does, its
 * schedules are exact at iterations 0, end of warmup, 999,999, 1,000,000
 * and 1,249,999; a run without the sections gets the same defaults; a
 * schedule's warmup longer than the main phase is refused with its place.
 */
#include <stdio.h>
#include <string.h>

#include "tests/test.h"
#include "tools/run_config.h"

static RunConfig run;   /* static: a RunConfig is large */

static void load(const char *path) {
    DdError err = {{0}};
    CHECK(run_config_load(&run, path, &err) == 0, "%s", err.message);
}

static void the_family_run_says_what_dinov3_does(void) {
    load("configs/runs/dinov3-family.yaml");
    const ObjectiveConfig *o = &run.objective;
    CHECK(o->student_temperature == 0.1f && o->sinkhorn_iterations == 3 && o->koleo_weight == 0.1f &&
              o->ibot_mask.probability == 0.5f && o->ibot_mask.min_ratio == 0.1f && o->ibot_mask.max_ratio == 0.5f,
          "objective");
    const LossWeights w = objective_loss_weights(o, run.crops.global_count, run.crops.local_count);
    printf("  loss coefficients: DINO local %.6f (16/18 = %.6f), DINO global %.6f (2/18 = %.6f), iBOT %g, KoLeo %g\n",
           w.dino_local, 16.0 / 18, w.dino_global, 2.0 / 18, w.ibot, w.koleo);
    CHECK(fabs(w.dino_local - 16.0 / 18) < 1e-7 && fabs(w.dino_global - 2.0 / 18) < 1e-7 && w.ibot == 1.0 &&
              fabs(w.koleo - 0.2) < 1e-7,
          "coefficients");
    const OptimizerConfig *p = &run.optimizer;
    CHECK(p->beta1 == 0.9f && p->beta2 == 0.999f && p->eps == 1e-8f && p->layerwise_decay == 0.99f &&
              p->patch_embed_lr_multiplier == 0.2f && p->clip_grad_norm == 3.0f,
          "optimizer");
}

static void the_family_schedules_are_exact_at_their_boundaries(void) {
    load("configs/runs/dinov3-family.yaml");
    CHECK(run.iterations == 1000000 && run.cooldown == 250000 && run.warmup == 100000, "lengths");
    RunSchedules s;
    DdError err = {{0}};
    CHECK(run_schedules_make(&s, &run.schedules, run.warmup, run.iterations, run.cooldown, &err) == 0, "%s",
          err.message);
    const long at[] = {0, run.warmup, 999999, 1000000, 1249999};
    const double lr[] = {0.0, 2e-4, 2e-4, 2e-4, 1e-6};
    const double temperature[] = {0.04, 0.07, 0.07, 0.07, 0.07};
    const double momentum[] = {0.994, 0.994, 0.994, 0.994, 1.0};
    for (int i = 0; i < 5; i++) {
        const ScheduleValues v = run_schedules_at(&s, at[i]);
        printf("  iteration %7ld: lr %.17g, weight decay %g, teacher temperature %.17g, EMA momentum %.17g\n",
               at[i], v.lr, v.weight_decay, v.teacher_temperature, v.ema_momentum);
        CHECK(v.lr == lr[i] && v.teacher_temperature == temperature[i] && v.ema_momentum == momentum[i] &&
                  v.weight_decay == 0.04,
              "iteration %ld: not exactly the configured boundary values", at[i]);
    }
}

static void a_run_without_the_sections_gets_the_defaults(void) {
    load("tests/config/good/run_base.yaml");
    ObjectiveConfig objective;
    OptimizerConfig optimizer;
    SchedulesConfig schedules;
    DdError err = {{0}};
    CHECK(config_set_defaults(&objective_config_schema, &objective, &err) == 0 &&
              config_set_defaults(&optimizer_config_schema, &optimizer, &err) == 0 &&
              config_set_defaults(&schedules_config_schema, &schedules, &err) == 0,
          "%s", err.message);
    CHECK(memcmp(&objective, &run.objective, sizeof objective) == 0, "objective defaults");
    CHECK(memcmp(&optimizer, &run.optimizer, sizeof optimizer) == 0, "optimizer defaults");
    CHECK(memcmp(&schedules, &run.schedules, sizeof schedules) == 0, "schedule defaults");
}

static void a_schedule_warmup_longer_than_the_run_is_refused(void) {
    const char text[] = "include: ../tests/config/good/run_base.yaml\n"
                        "schedules:\n"
                        "  teacher_temperature: {warmup: 50}\n";
    DdError err = {{0}};
    CHECK(config_load_text(&run_config_schema, &run, text, sizeof text - 1, "configs/inline.yaml", &err) == -1,
          "accepted a 50-iteration warmup in a 10-iteration run");
    CHECK(strcmp(err.message, "configs/inline.yaml:3:33: expected at most iterations (10) for 'warmup', found 50") == 0,
          "%s", err.message);
}

TEST_MAIN(TEST(the_family_run_says_what_dinov3_does), TEST(the_family_schedules_are_exact_at_their_boundaries),
          TEST(a_run_without_the_sections_gets_the_defaults), TEST(a_schedule_warmup_longer_than_the_run_is_refused))

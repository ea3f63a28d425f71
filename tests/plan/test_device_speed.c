/*
 * test_device_speed.c - the planner's device speed: the `devices:` section
 * of a run file (values, defaults, errors with their line), a group's
 * sustained FLOP/s moving its ranks as the ratio predicts, and the
 * calibration on the CPU backend (finite times; the depth extrapolation
 * against a model timed at its full depth; `distill plan --calibrate`).
 */
#include <math.h>

#include "schedule/planner.h"
#include "test.h"
#include "tools/calibrate.h"
#include "tools/commands.h"
#include "tools/run_config.h"

/* cmd_plan links against the command table's helper; no case asks for help. */
int wants_help(int argc, char **argv) { return 0; }

/* Includes resolve from configs/runs/; the file itself need not exist. */
static const char *const run_path = "configs/runs/devices_test.yaml";

static const char run_head[] =
    "name: devices-test\n"                                /* line 1 */
    "iterations: 10\n"
    "global_batch: 8\n"
    "teacher:\n"
    "  model: ../models/tiny_teacher.yaml\n"              /* line 5 */
    "students:\n"
    "  - {name: s, model: ../models/tiny_s.yaml}\n"
    "  - {name: b, model: ../models/tiny_b.yaml}\n";

/* run_head, then tail; 0 when it loads. */
static int load_run(RunConfig *c, const char *tail, DdError *err) {
    char text[2048];
    snprintf(text, sizeof text, "%s%s", run_head, tail);
    return config_load_text(&run_config_schema, c, text, strlen(text), run_path, err);
}

static void devices_section_is_read(void) {
    static RunConfig c;
    DdError err = {{0}};
    CHECK(load_run(&c,
                   "devices:\n"                                   /* line 9 */
                   "  memory_gib: 24\n"
                   "  peak_tflops: 0.5\n"
                   "  link_gb_per_s: 12.5\n"
                   "  teacher: {sustained_tflops: 0.25}\n"
                   "  students:\n"
                   "    - {name: b, sustained_tflops: 0.125}\n",
                   &err) == 0, "%s", err.message);
    CHECK(c.devices.memory_gib == 24 && c.devices.peak_tflops == 0.5 && c.devices.link_gb_per_s == 12.5,
          "memory %g, peak %g, link %g", c.devices.memory_gib, c.devices.peak_tflops, c.devices.link_gb_per_s);
    PlanGroupInput groups[PLAN_MAX_GROUPS];
    run_plan_inputs(&c, groups);
    CHECK(groups[0].sustained_flops == 0.25e12 && groups[1].sustained_flops == 0 &&
          groups[2].sustained_flops == 0.125e12, "teacher %g, s %g, b %g FLOP/s", groups[0].sustained_flops,
          groups[1].sustained_flops, groups[2].sustained_flops);
    PlanDevices d = run_plan_devices(&c, 7);
    CHECK(d.count == 7 && d.memory_bytes == 24.0 * 1073741824.0 && d.peak_flops == 0.5e12 &&
          d.link_bytes_per_second == 12.5e9, "devices %d, %g B, %g FLOP/s, %g B/s", d.count, d.memory_bytes,
          d.peak_flops, d.link_bytes_per_second);
    /* a given speed is the group's; a group without one runs at peak x efficiency */
    CHECK(plan_group_flops(&groups[2], &d) == 0.125e12, "b at %g FLOP/s", plan_group_flops(&groups[2], &d));
    CHECK(fabs(plan_group_flops(&groups[1], &d) - 0.5e12 * PLAN_STUDENT_EFFICIENCY) < 1, "s at %g FLOP/s",
          plan_group_flops(&groups[1], &d));
}

static void devices_default_to_h100(void) {
    static RunConfig c;
    DdError err = {{0}};
    CHECK(load_run(&c, "", &err) == 0, "%s", err.message);
    PlanDevices d = run_plan_devices(&c, 3), h100 = plan_h100_devices(3);
    CHECK(fabs(d.memory_bytes - h100.memory_bytes) < 1 && fabs(d.peak_flops - h100.peak_flops) < 1 &&
          fabs(d.link_bytes_per_second - h100.link_bytes_per_second) < 1, "%g B, %g FLOP/s, %g B/s",
          d.memory_bytes, d.peak_flops, d.link_bytes_per_second);
    PlanGroupInput groups[PLAN_MAX_GROUPS];
    run_plan_inputs(&c, groups);
    CHECK(groups[0].sustained_flops == 0 && groups[1].sustained_flops == 0 && groups[2].sustained_flops == 0,
          "speeds given by default");
}

static void check_fails_with(const char *tail, const char *expected) {
    static RunConfig c;
    DdError err = {{0}};
    CHECK(load_run(&c, tail, &err) != 0, "loaded: %s", tail);
    CHECK(strcmp(err.message, expected) == 0, "message: %s\nexpected: %s", err.message, expected);
}

static void malformed_speeds_name_their_line(void) {
    check_fails_with("devices:\n"
                     "  students:\n"
                     "    - {name: b, sustained_tflops: fast}\n",
                     "configs/runs/devices_test.yaml:11:35: expected number in [0, 1e+06] for 'sustained_tflops', "
                     "found 'fast'");
    check_fails_with("devices:\n"
                     "  teacher: {sustained_tflops: -1}\n",
                     "configs/runs/devices_test.yaml:10:31: expected number in [0, 1e+06] for 'sustained_tflops', "
                     "found '-1'");
    check_fails_with("devices:\n"
                     "  students:\n"
                     "    - {name: vits16, sustained_tflops: 1}\n",
                     "configs/runs/devices_test.yaml:11:14: expected the name of a student of the run, found "
                     "'vits16'");
}

/* Unit devices; every group's speed given. Teacher 1 FLOP per image, each
 * student 4, batch 12: on 9 devices the only best split is 1 + 4 + 4 (12 s).
 * Student a twice as fast costs 2 per image: 1 + 2 + 4 on 7 devices, the
 * same 12 s; its ranks halve, as the ratio of speeds says. */
static void sustained_speed_moves_ranks(void) {
    PlanGroupInput groups[3] = {
        {.name = "t", .is_teacher = 1, .flops_per_image = 1, .sustained_flops = 1},
        {.name = "a", .flops_per_image = 4, .sustained_flops = 1},
        {.name = "b", .flops_per_image = 4, .sustained_flops = 1},
    };
    PlanDevices d = {.count = 9, .memory_bytes = 1e18, .peak_flops = 1000, .link_bytes_per_second = 1e30};
    Plan p;
    DdError err = {{0}};
    CHECK(plan_groups(&p, groups, 3, 12, &d, NULL, &err) == 0, "%s", err.message);
    CHECK(p.groups[0].ranks == 1 && p.groups[1].ranks == 4 && p.groups[2].ranks == 4 &&
          fabs(p.seconds_per_iteration - 12) < 1e-9, "%d %d %d, %g s", p.groups[0].ranks, p.groups[1].ranks,
          p.groups[2].ranks, p.seconds_per_iteration);
    groups[1].sustained_flops = 2;
    d.count = 7;
    CHECK(plan_groups(&p, groups, 3, 12, &d, NULL, &err) == 0, "%s", err.message);
    CHECK(p.groups[0].ranks == 1 && p.groups[1].ranks == 2 && p.groups[2].ranks == 4 &&
          fabs(p.seconds_per_iteration - 12) < 1e-9, "%d %d %d, %g s", p.groups[0].ranks, p.groups[1].ranks,
          p.groups[2].ranks, p.seconds_per_iteration);
}

/* A tiny student at depth 4, sized so that a training pass of 3 images takes
 * over 20 ms on two cores even at depth 1: the fit through depths 1 and 2
 * predicts the time measured at depth 4 (printed; asserted within 3x). */
static void calibration_extrapolates_depth(void) {
    ViTConfig model;
    DdError err = {{0}};
    CHECK(vit_config_load(&model, "configs/models/tiny_l.yaml", &err) == 0, "%s", err.message);
    model.depth = 4;
    const CropShape crops = {.global_size = 128, .global_count = 2, .local_size = 64, .local_count = 8};
    const int images = 3, runs = 5;
    ModelTiming fit;
    double direct = 0;
    CHECK(calibrate_model(&fit, &nn_cpu_backend, &model, &crops, 0, images, runs, &err) == 0, "%s", err.message);
    CHECK(calibrate_time_model(&direct, &nn_cpu_backend, &model, &crops, 0, images, runs, &err) == 0, "%s", err.message);
    printf("tiny_l at depth 4, a pass of %d images: %.1f ms measured, %.1f ms from depths 1 (%.1f) and 2 (%.1f)\n",
           images, 1e3 * images * direct, 1e3 * images * fit.seconds, 1e3 * images * fit.at_depth[0],
           1e3 * images * fit.at_depth[1]);
    CHECK(isfinite(fit.at_depth[0]) && fit.at_depth[0] > 0 && isfinite(fit.at_depth[1]) && fit.at_depth[1] > 0,
          "depths 1 and 2: %g s, %g s", fit.at_depth[0], fit.at_depth[1]);
    CHECK(isfinite(direct) && direct > 0, "depth 4: %g s", direct);
    /* a figure, not a speed goal: the bound only catches a wrong
     * extrapolation (a factor depth/2 or worse), not timing noise of a
     * shared machine */
    CHECK(fit.seconds < 3 * direct && direct < 3 * fit.seconds, "extrapolated %g s, measured %g s",
          fit.seconds, direct);
    /* the teacher's inference is timed too */
    CHECK(calibrate_model(&fit, &nn_cpu_backend, &model, &crops, 1, images, 1, &err) == 0 && fit.seconds > 0, "%s",
          err.message);
}

static void distill_plan_calibrates(void) {
    char *demo[] = {"plan", "configs/runs/demo.yaml", "--devices", "5", "--calibrate"};
    char *no_backend[] = {"plan", "configs/runs/demo.yaml", "--devices", "5", "--calibrate", "--backend", "tpu"};
    CHECK(cmd_plan(5, demo) == 0, "demo");
    CHECK(cmd_plan(7, no_backend) == 1, "an unknown backend");
}

TEST_MAIN(TEST(devices_section_is_read), TEST(devices_default_to_h100), TEST(malformed_speeds_name_their_line),
          TEST(sustained_speed_moves_ranks), TEST(calibration_extrapolates_depth), TEST(distill_plan_calibrates))

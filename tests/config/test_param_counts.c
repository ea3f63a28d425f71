/*
 * test_param_counts.c - the backbone of every published model file has the
 * parameter count DINOv3 publishes, within 0.5% (vit_param_count over the
 * shapes the file describes), and the teacher's forward FLOPs per 256 px
 * crop are the 3.55 TFLOPs the design plans with.
 */
#include <math.h>

#include "nn/vit.h"
#include "tests/test.h"

static void backbones_have_the_published_parameter_counts(void) {
    static const struct {
        const char *path;
        double published;
    } family[] = {
        {"configs/models/vits16.yaml", 21.6e6},     {"configs/models/vits16plus.yaml", 28.7e6},
        {"configs/models/vitb16.yaml", 85.7e6},     {"configs/models/vitl16.yaml", 303e6},
        {"configs/models/vith16plus.yaml", 840.6e6}, {"configs/models/vit7b16.yaml", 6716e6},
    };
    for (size_t i = 0; i < sizeof family / sizeof family[0]; i++) {
        ViTConfig cfg;
        DdError err = {{0}};
        CHECK(vit_config_load(&cfg, family[i].path, &err) == 0, "%s", err.message);
        double count = (double)vit_param_count(&cfg);
        double off = fabs(count / family[i].published - 1);
        CHECK(off <= 0.005, "%s: %.1fM parameters, published %.1fM (%.2f%% off)", family[i].path, count / 1e6,
              family[i].published / 1e6, 100 * off);
    }
}

static void the_teacher_costs_about_3_55_tflops_per_global_crop(void) {
    ViTConfig cfg;
    DdError err = {{0}};
    CHECK(vit_config_load(&cfg, "configs/models/vit7b16.yaml", &err) == 0, "%s", err.message);
    double tflops = vit_forward_flops(&cfg, 256, 256) / 1e12;
    CHECK(fabs(tflops / 3.55 - 1) < 0.02, "%.3f TFLOPs", tflops);
}

TEST_MAIN(TEST(backbones_have_the_published_parameter_counts),
          TEST(the_teacher_costs_about_3_55_tflops_per_global_crop))

/*
 * test_param_counts.c - the backbone of every published model file has the
 * parameter count DINOv3 publishes, within 0.5% (vit_param_count over the
 * shapes the file describes), the teacher's forward FLOPs per 256 px
 * crop are the 3.55 TFLOPs the design plans with, and a training block
 * keeps what nn/vit.h says it keeps per token.
 */
#include <math.h>
#include <stdio.h>

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

/* Each block added to a training model adds what the backward keeps of it:
 * per token 3D (qkv) + D (attention out) + D (proj) + F1 (fc1) + D (fc2)
 * inside the block, in bf16 when the blocks are bf16, and D (mid residual)
 * + D (block out) of the residual stream in fp32, two means and two rstds,
 * and H log-sum-exps (fp32); its LayerNorm and activation outputs are
 * recomputed, not kept. B T = 2 x 64 tokens keeps every buffer a multiple
 * of 64 bytes (the allocation's alignment), so the difference is exact.
 * Also printed: the training activations of ViT-L/16 per image at 256 px. */
static void a_training_block_keeps_twelve_rows_of_d(void) {
    const char *models[] = {"configs/models/vitb16.yaml", "configs/models/vith16plus.yaml"};
    for (size_t m = 0; m < sizeof models / sizeof *models; m++) {
        ViTConfig cfg;
        DdError err = {{0}};
        CHECK(vit_config_load(&cfg, models[m], &err) == 0, "%s", err.message);
        ViTConfig shallower = cfg;
        shallower.depth = cfg.depth - 1;
        const int B = 2, side = 7 * cfg.patch_size;   /* 49 patches + 1 + R tokens */
        shallower.registers = cfg.registers = 64 - 1 - 49;
        const size_t BT = 2 * 64, D = (size_t)cfg.dim, H = (size_t)cfg.num_heads;
        const size_t F1 = (size_t)(cfg.ffn == FFN_SWIGLU ? 2 : 1) * (size_t)cfg.ffn_hidden;
        const size_t inner = BT * (6 * D + F1), fp32 = BT * 2 * D + 4 * BT + B * H * 64;
        for (int bf16 = 0; bf16 <= 1; bf16++) {
            const size_t expected = inner * (bf16 ? 2 : 4) + fp32 * 4;
            const size_t added = vit_activation_bytes(&cfg, B, side, side, 1, bf16) -
                                 vit_activation_bytes(&shallower, B, side, side, 1, bf16);
            CHECK(added == expected, "%s, %s blocks: a training block adds %zu bytes, expected %zu", models[m],
                  bf16 ? "bf16" : "fp32", added, expected);
        }
    }
    ViTConfig large;
    DdError err = {{0}};
    CHECK(vit_config_load(&large, "configs/models/vitl16.yaml", &err) == 0, "%s", err.message);
    for (int bf16 = 0; bf16 <= 1; bf16++)
        printf("  vitl16, %s blocks: training activations %.1f MiB per image at 256 px, %.1f MiB at 112 px\n",
               bf16 ? "bf16" : "fp32", vit_activation_bytes(&large, 1, 256, 256, 1, bf16) / 1048576.0,
               vit_activation_bytes(&large, 1, 112, 112, 1, bf16) / 1048576.0);
}

TEST_MAIN(TEST(backbones_have_the_published_parameter_counts),
          TEST(the_teacher_costs_about_3_55_tflops_per_global_crop), TEST(a_training_block_keeps_twelve_rows_of_d))

/*
 * test_gradient_sums.c - the pieces the gradients' group sums start in
 * during the backward (students/gradient_sums.c, ViTLayerHook in nn/vit.h).
 *
 *   - runs: for tiny_s, ViT-S/16 and ViT-H+/16 the runs of one layer each
 *     follow one another and cover the gradient buffer exactly once, every
 *     tensor lies in a run of its own layer, and every layer 0 .. depth + 1
 *     has one;
 *   - forward hook: vit_forward_hooked tells layers 0 .. depth + 1 in order,
 *     each before it reads it (parameters poisoned until told);
 *   - hook: vit_backward on tiny_s (CPU) tells layers depth + 1, depth, ...,
 *     0, each once, in that order, and a layer's gradients are final when
 *     told: the copy taken then equals the buffer after the backward, bit
 *     for bit, while the gradients of the layers below are still to change.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "nn/random.h"
#include "students/students.h"
#include "tests/test.h"

static void check_runs_of(const char *path) {
    DdError err = {{0}};
    ViTConfig cfg;
    ModelLayout layout;
    GradientSums sums;
    CHECK(vit_config_load(&cfg, path, &err) == 0 && model_layout_create(&layout, &cfg, &err) == 0 &&
              gradient_sums_init(&sums, &layout, &err) == 0,
          "%s: %s", path, err.message);
    size_t next = 0;
    int *runs_of_layer = calloc((size_t)cfg.depth + 2, sizeof *runs_of_layer);
    for (int r = 0; r < sums.run_count; r++) {
        const GradientRun *run = &sums.runs[r];
        CHECK(run->offset == next && run->count > 0, "%s: run %d at %zu (%zu floats), expected at %zu", path, r,
              run->offset, run->count, next);
        CHECK(run->layer >= 0 && run->layer <= cfg.depth + 1, "%s: run %d of layer %d", path, r, run->layer);
        if (run->layer >= 0 && run->layer <= cfg.depth + 1) runs_of_layer[run->layer]++;
        next = run->offset + run->count;
    }
    CHECK(next == layout.count, "%s: the runs end at %zu of %zu floats", path, next, layout.count);
    for (int L = 0; L <= cfg.depth + 1; L++) CHECK(runs_of_layer[L] >= 1, "%s: layer %d has no run", path, L);
    for (int i = 0, r = 0; i < layout.tensor_count; i++) {
        const ModelTensor *t = &layout.tensors[i];
        while (r + 1 < sums.run_count && sums.runs[r + 1].offset <= t->info.offset) r++;
        CHECK(sums.runs[r].layer == t->layer &&
                  t->info.offset + t->info.count <= sums.runs[r].offset + sums.runs[r].count,
              "%s: tensor %s (layer %d) lies outside the runs of its layer", path, t->info.name, t->layer);
    }
    printf("  %s: %d runs over %zu floats\n", path, sums.run_count, layout.count);
    free(runs_of_layer);
    gradient_sums_free(&sums);
    model_layout_free(&layout);
}

static void runs_cover_the_buffer_once_layer_by_layer(void) {
    check_runs_of("configs/models/tiny_s.yaml");
    check_runs_of("configs/models/vits16.yaml");
    check_runs_of("configs/models/vith16plus.yaml");
}

/* What a hook saw (the order of the layers) and did: it copies each told
 * layer's runs of `from` into `to`, to the host (the backward's gradients
 * as they were when told) or to the backend (the forward's parameters,
 * arriving as told). */
typedef struct LayerLog {
    const NnBackend *be;
    const GradientSums *sums;
    const float *from;
    float *to;
    int to_backend;
    int told[64], count;
} LayerLog;

static void log_layer(void *context, int layer) {
    LayerLog *log = context;
    if (log->count < 64) log->told[log->count] = layer;
    log->count++;
    for (int i = 0; i < log->sums->run_count; i++) {
        const GradientRun *run = &log->sums->runs[i];
        if (run->layer != layer) continue;
        const size_t bytes = run->count * sizeof(float);
        if (log->to_backend) log->be->copy_to_device(log->to + run->offset, log->from + run->offset, bytes);
        else log->be->copy_to_host(log->to + run->offset, log->from + run->offset, bytes);
    }
}

static void the_backward_tells_each_final_layer_top_down(void) {
    const NnBackend *be = &nn_cpu_backend;
    enum { B = 2, SIZE = 32 };
    DdError err = {{0}};
    ViTConfig cfg;
    ModelLayout layout;
    GradientSums sums;
    ModelParams params, grads;
    ViTActivations act;
    CHECK(vit_config_load(&cfg, "configs/models/tiny_s.yaml", &err) == 0 &&
              model_layout_create(&layout, &cfg, &err) == 0 && gradient_sums_init(&sums, &layout, &err) == 0 &&
              model_params_alloc(&params, &cfg, be, &err) == 0 && model_params_alloc(&grads, &cfg, be, &err) == 0 &&
              model_params_init(&params, &cfg, be, 3, 1, &err) == 0 &&
              vit_activations_alloc(&act, &cfg, be, B, SIZE, SIZE, 1, &err) == 0,
          "%s", err.message);
    const size_t image_floats = (size_t)B * cfg.in_channels * SIZE * SIZE, T = act.T;
    float *images = malloc(image_floats * sizeof(float)), *dout = malloc((size_t)B * T * cfg.dim * sizeof(float));
    float *copy = calloc(layout.count, sizeof(float)), *after = malloc(layout.count * sizeof(float));
    CHECK(images && dout && copy && after, "out of memory");
    DdRandom rng = dd_random_seed(5, 0);
    for (size_t i = 0; i < image_floats; i++) images[i] = (float)dd_random_normal(&rng);
    for (size_t i = 0; i < (size_t)B * T * cfg.dim; i++) dout[i] = (float)dd_random_normal(&rng);
    be->zero(grads.memory, layout.count * sizeof(float));

    vit_set_rope(&act, &cfg, be, 1.0f);
    vit_forward(be, &cfg, &params.backbone, &act, images, NULL);
    LayerLog recorder = {be, &sums, grads.memory, copy, 0, {0}, 0};
    const ViTLayerHook hook = {log_layer, &recorder};
    vit_backward(be, &cfg, &params.backbone, &grads.backbone, &act, dout, NULL, &hook);
    be->copy_to_host(after, grads.memory, layout.count * sizeof(float));

    CHECK(recorder.count == cfg.depth + 2, "told %d layers, expected %d", recorder.count, cfg.depth + 2);
    for (int i = 0; i < recorder.count && i < 64; i++)
        CHECK(recorder.told[i] == cfg.depth + 1 - i, "told layer %d in place %d, expected %d", recorder.told[i], i,
              cfg.depth + 1 - i);
    long changed = 0, nonzero = 0;
    for (int r = 0; r < sums.run_count; r++)
        for (size_t i = sums.runs[r].offset; i < sums.runs[r].offset + sums.runs[r].count; i++) {
            changed += memcmp(&copy[i], &after[i], sizeof(float)) != 0;
            nonzero += after[i] != 0.0f;
        }
    CHECK(changed == 0, "%ld gradients changed after their layer was told", changed);
    CHECK(nonzero > (long)layout.module_offset[MODULE_DINO_HEAD] / 2,
          "only %ld gradients are not zero: the backward did not run", nonzero);
    printf("  tiny_s: %d layers told top down, %ld non-zero gradients final when told\n", recorder.count, nonzero);

    free(images), free(dout), free(copy), free(after);
    vit_activations_free(&act, be);
    model_params_free(&params, be);
    model_params_free(&grads, be);
    gradient_sums_free(&sums);
    model_layout_free(&layout);
}

/* The forward's hook (vit_forward_hooked) as a sharded student's gather
 * uses it: the parameters start as NaN and the hook copies each told
 * layer's runs in place. A forward that read a layer before telling it
 * would carry the NaN to its output; told bottom up and before each read,
 * the output equals the plain forward's, bit for bit. */
static void the_forward_tells_each_layer_before_reading_it(void) {
    const NnBackend *be = &nn_cpu_backend;
    enum { B = 2, SIZE = 32 };
    DdError err = {{0}};
    ViTConfig cfg;
    ModelLayout layout;
    GradientSums sums;
    ModelParams params;
    ViTActivations act;
    CHECK(vit_config_load(&cfg, "configs/models/tiny_s.yaml", &err) == 0 &&
              model_layout_create(&layout, &cfg, &err) == 0 && gradient_sums_init(&sums, &layout, &err) == 0 &&
              model_params_alloc(&params, &cfg, be, &err) == 0 &&
              model_params_init(&params, &cfg, be, 3, 1, &err) == 0 &&
              vit_activations_alloc(&act, &cfg, be, B, SIZE, SIZE, 0, &err) == 0,
          "%s", err.message);
    if (test_state.failed_checks) return;
    const size_t image_floats = (size_t)B * cfg.in_channels * SIZE * SIZE, out_floats = (size_t)B * act.T * cfg.dim;
    float *images = malloc(image_floats * sizeof(float)), *host = malloc(layout.count * sizeof(float));
    float *expected = malloc(out_floats * sizeof(float)), *out = malloc(out_floats * sizeof(float));
    CHECK(images && host && expected && out, "out of memory");
    DdRandom rng = dd_random_seed(6, 0);
    for (size_t i = 0; i < image_floats; i++) images[i] = (float)dd_random_normal(&rng);
    vit_set_rope(&act, &cfg, be, 1.0f);
    vit_forward(be, &cfg, &params.backbone, &act, images, NULL);
    be->copy_to_host(expected, act.out, out_floats * sizeof(float));

    be->copy_to_host(host, params.memory, layout.count * sizeof(float));
    float *poison = malloc(layout.count * sizeof(float));
    CHECK(poison != NULL, "out of memory");
    for (size_t i = 0; poison && i < layout.count; i++) poison[i] = NAN;
    if (poison) be->copy_to_device(params.memory, poison, layout.count * sizeof(float));
    free(poison);
    LayerLog arrivals = {be, &sums, host, params.memory, 1, {0}, 0};
    const ViTLayerHook hook = {log_layer, &arrivals};
    vit_forward_hooked(be, &cfg, &params.backbone, &act, images, NULL, &hook);
    be->copy_to_host(out, act.out, out_floats * sizeof(float));

    CHECK(arrivals.count == cfg.depth + 2, "told %d layers, expected %d", arrivals.count, cfg.depth + 2);
    for (int i = 0; i < arrivals.count && i < 64; i++)
        CHECK(arrivals.told[i] == i, "told layer %d in place %d, expected %d", arrivals.told[i], i, i);
    CHECK(memcmp(out, expected, out_floats * sizeof(float)) == 0,
          "the forward with its layers arriving as told differs from the plain one (a layer read before told)");
    printf("  tiny_s: %d layers told bottom up, each before it was read\n", arrivals.count);

    free(images), free(host), free(expected), free(out);
    vit_activations_free(&act, be);
    model_params_free(&params, be);
    gradient_sums_free(&sums);
    model_layout_free(&layout);
}

TEST_MAIN(TEST(runs_cover_the_buffer_once_layer_by_layer), TEST(the_backward_tells_each_final_layer_top_down),
          TEST(the_forward_tells_each_layer_before_reading_it))

/*
 * test_vit_reference.c - the C ViT against PyTorch, in float64.
 *
 * For each tiny model (configs/models/tiny_ref*.yaml) the file
 * tests/reference/vit_tiny_ref*.h5 (written by gen_vit_reference.py) holds
 * random weights, one batch at two crop sizes (32x48 px with an iBOT mask,
 * 16x16 px without), the RoPE rescale of each, the outputs, and the gradient
 * of every parameter for loss = sum(out_a * dout_a) + sum(out_b * dout_b).
 * This test loads the weights, runs one multi-crop training step (both
 * forwards, then both backwards into one gradient buffer) and compares:
 *   outputs        relative error max|c - ref| / max|ref| < 1e-4
 *   gradients      < 1e-3 for every parameter tensor (each one printed)
 *   forward only   (training = 0) equal to the training forward's output.
 * The same step on "cpu-bf16" (every block's inner tensors in bf16, as the
 * "cuda" table keeps them) against the same float64 reference, with the
 * tolerances of bf16 storage (8 significant bits): outputs < 1e-2,
 * gradients < 3e-2; and its outputs must differ from fp32's by more than
 * fp32 rounding, or the bf16 blocks did not run. There the bf16 matrices
 * are a whole copy (as a student's); a one-block slot (as the teacher's,
 * recast block by block in the backward) must give the same outputs and
 * gradients bit for bit.
 * Run from the source root (meson sets workdir).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nn/backend.h"
#include "nn/tensor_file.h"
#include "nn/vit.h"
#include "nn/vit_config.h"
#include "tests/test.h"

/* Messages go into CHECK as "%.900s": a DdError message is as long as the
 * harness's whole failure line, so an uncapped one would be truncated. */

enum { CROPS = 2 };
static const double forward_only_tolerance = 1e-6;

/* What a backend must reach against the float64 reference. */
typedef struct Tolerances {
    double output, gradient;
    double least_output_error;   /* bf16 blocks: the output error must exceed it (0: no floor) */
} Tolerances;
static const Tolerances fp32_tolerances = {.output = 1e-4, .gradient = 1e-3};
static const Tolerances bf16_tolerances = {.output = 1e-2, .gradient = 3e-2, .least_output_error = 1e-5};

/* One crop size of the reference step: inputs and expected values on the
 * host, copies of the inputs on the backend, and its activations. */
typedef struct Crop {
    const char *name;            /* "crop_a": the prefix of its tensors in the file */
    int B, C, H, W, Np, T;
    float rescale;               /* RoPE coordinate rescale of this forward */
    float *images;               /* [B, C, H, W] host */
    uint8_t *mask;               /* [B, Np] host, NULL: no masking */
    float *dout;                 /* [B, T, D] host: d loss / d output */
    float *expected;             /* [B, T, D] host: PyTorch's output */
    float *output;               /* [B, T, D] host: ours, downloaded */
    float *device_images;        /* backend copies of images, mask, dout */
    uint8_t *device_mask;
    float *device_dout;
    ViTActivations train, infer; /* training = 1 and forward-only */
} Crop;

/* Everything one model's test holds; reference_free releases what is set. */
typedef struct Reference {
    const NnBackend *be;
    Tolerances tolerances;
    int bf16_whole;              /* the bf16 matrices: 1 a whole copy, 0 one block's slot */
    ViTConfig cfg;
    TensorFile file;
    ViTTensorInfo *layout;
    int tensor_count;
    ViTParams params, grads;     /* on the backend */
    float *host_params;          /* layout-sized host buffers */
    float *host_grads;
    float *expected_grads;
    Crop crops[CROPS];
} Reference;

static void reference_free(Reference *r) {
    for (int c = 0; c < CROPS; c++) {
        Crop *crop = &r->crops[c];
        free(crop->images);
        free(crop->mask);
        free(crop->dout);
        free(crop->expected);
        free(crop->output);
        if (crop->device_images) r->be->free(crop->device_images);
        if (crop->device_mask) r->be->free(crop->device_mask);
        if (crop->device_dout) r->be->free(crop->device_dout);
        vit_activations_free(&crop->train, r->be);
        vit_activations_free(&crop->infer, r->be);
    }
    vit_params_free(&r->params, r->be);
    vit_params_free(&r->grads, r->be);
    free(r->host_params);
    free(r->host_grads);
    free(r->expected_grads);
    free(r->layout);
    tensor_file_close(&r->file);
}

/* ---- reading the reference file ------------------------------------------- */

/* Reads tensor `crop.field` of the given shape into a new host buffer. */
static float *read_crop_tensor(Reference *r, const Crop *crop, const char *field,
                               const TensorShape *shape) {
    char name[TENSOR_NAME_MAX];
    snprintf(name, sizeof name, "%s.%s", crop->name, field);
    float *data = malloc((size_t)tensor_shape_count(shape) * sizeof(float));
    DdError err = {{0}};
    if (!data || tensor_file_read(&r->file, name, shape, data, &err) != 0) {
        CHECK(0, "%.900s", data ? err.message : "out of memory");
        free(data);
        return NULL;
    }
    return data;
}

/* A scalar tensor of the file (shape []). */
static double read_scalar(Reference *r, const char *name) {
    float value = 0.0f;
    DdError err = {{0}};
    const TensorShape scalar = {0, {0}};
    CHECK(tensor_file_read(&r->file, name, &scalar, &value, &err) == 0, "%.900s", err.message);
    return value;
}

/* The architecture the file was generated for must be the YAML's. */
static void check_config_matches_file(Reference *r) {
    const ViTConfig *cfg = &r->cfg;
    const struct { const char *field; double yaml; } fields[] = {
        {"patch_size", cfg->patch_size}, {"in_channels", cfg->in_channels}, {"dim", cfg->dim},
        {"depth", cfg->depth}, {"num_heads", cfg->num_heads}, {"ffn_hidden", cfg->ffn_hidden},
        {"ffn_swiglu", cfg->ffn == FFN_SWIGLU}, {"qkv_bias", cfg->qkv_bias},
        {"registers", cfg->registers}, {"norm_eps", cfg->norm_eps}, {"rope_base", cfg->rope_base},
    };
    for (size_t i = 0; i < sizeof fields / sizeof fields[0]; i++) {
        char name[64];
        snprintf(name, sizeof name, "config.%s", fields[i].field);
        double in_file = read_scalar(r, name);
        CHECK((float)in_file == (float)fields[i].yaml,
              "model '%s': %s is %g in the YAML file but the reference %.200s was made for %g",
              cfg->name, fields[i].field, fields[i].yaml, r->file.path, in_file);
    }
}

/* Reads one crop's inputs and expected values from the file, using the
 * shape of its images, and copies the inputs to the backend. */
static void load_crop(Reference *r, Crop *crop) {
    const ViTConfig *cfg = &r->cfg;
    const NnBackend *be = r->be;
    char name[TENSOR_NAME_MAX];
    TensorShape images_shape;
    DdError err = {{0}};
    snprintf(name, sizeof name, "%s.images", crop->name);
    CHECK(tensor_file_shape(&r->file, name, &images_shape, &err) == 0, "%.900s", err.message);
    CHECK(images_shape.ndim == 4 && images_shape.dims[1] == cfg->in_channels,
          "%s: expected images [B, %d, H, W]", name, cfg->in_channels);
    if (test_state.failed_checks) return;
    crop->B = (int)images_shape.dims[0];
    crop->C = (int)images_shape.dims[1];
    crop->H = (int)images_shape.dims[2];
    crop->W = (int)images_shape.dims[3];
    crop->Np = (crop->H / cfg->patch_size) * (crop->W / cfg->patch_size);
    crop->T = 1 + cfg->registers + crop->Np;
    snprintf(name, sizeof name, "%s.rope_rescale", crop->name);
    crop->rescale = (float)read_scalar(r, name);

    const TensorShape mask_shape = {2, {crop->B, crop->Np}};
    const TensorShape token_shape = {3, {crop->B, crop->T, cfg->dim}};
    const size_t token_count = (size_t)tensor_shape_count(&token_shape);
    crop->images = read_crop_tensor(r, crop, "images", &images_shape);
    crop->dout = read_crop_tensor(r, crop, "dout", &token_shape);
    crop->expected = read_crop_tensor(r, crop, "output", &token_shape);
    crop->output = malloc(token_count * sizeof(float));
    snprintf(name, sizeof name, "%s.mask", crop->name);
    if (tensor_file_contains(&r->file, name)) {
        float *mask = read_crop_tensor(r, crop, "mask", &mask_shape);
        crop->mask = malloc((size_t)crop->B * crop->Np);
        for (long i = 0; mask && crop->mask && i < (long)crop->B * crop->Np; i++)
            crop->mask[i] = mask[i] != 0.0f;
        free(mask);
    }
    if (test_state.failed_checks || !crop->output) return;

    size_t image_bytes = (size_t)tensor_shape_count(&images_shape) * sizeof(float);
    crop->device_images = be->alloc(image_bytes);
    crop->device_dout = be->alloc(token_count * sizeof(float));
    CHECK(crop->device_images && crop->device_dout, "out of %s memory", be->name);
    if (test_state.failed_checks) return;
    be->copy_to_device(crop->device_images, crop->images, image_bytes);
    be->copy_to_device(crop->device_dout, crop->dout, token_count * sizeof(float));
    if (crop->mask) {
        crop->device_mask = be->alloc((size_t)crop->B * crop->Np);
        CHECK(crop->device_mask, "out of %s memory", be->name);
        if (crop->device_mask) be->copy_to_device(crop->device_mask, crop->mask, (size_t)crop->B * crop->Np);
    }
}

/* Loads the model file, the reference file, the weights and both crops. */
static void load_reference(Reference *r, const char *model_path, const char *reference_path) {
    DdError err = {{0}};
    ViTParams host_view = {0};
    r->file.handle = -1;
    CHECK(vit_config_load(&r->cfg, model_path, &err) == 0, "%.900s", err.message);
    if (test_state.failed_checks) return;
    CHECK(tensor_file_open(&r->file, reference_path, &err) == 0, "%.900s", err.message);
    if (test_state.failed_checks) return;
    check_config_matches_file(r);
    if (test_state.failed_checks) return;

    r->tensor_count = vit_tensor_count(&r->cfg);
    r->layout = calloc((size_t)r->tensor_count, sizeof *r->layout);
    size_t count = vit_tensor_layout(&r->cfg, r->layout);
    r->host_params = malloc(count * sizeof(float));
    r->host_grads = malloc(count * sizeof(float));
    r->expected_grads = malloc(count * sizeof(float));
    CHECK(r->layout && r->host_params && r->host_grads && r->expected_grads, "out of host memory");
    if (test_state.failed_checks) return;

    /* Weights and reference gradients through host views of the layout. */
    int loaded = vit_params_view(&host_view, &r->cfg, r->host_params, &err) == 0 &&
                 tensor_file_read_vit_params(&r->file, "", &r->cfg, &host_view, &err) == 0;
    vit_params_free(&host_view, NULL);
    loaded = loaded && vit_params_view(&host_view, &r->cfg, r->expected_grads, &err) == 0 &&
             tensor_file_read_vit_params(&r->file, "grad.", &r->cfg, &host_view, &err) == 0;
    vit_params_free(&host_view, NULL);
    CHECK(loaded, "%.900s", err.message);
    if (test_state.failed_checks) return;

    CHECK(vit_params_alloc(&r->params, &r->cfg, r->be, &err) == 0 &&
              vit_params_alloc_bf16(&r->params, &r->cfg, r->be, r->bf16_whole, &err) == 0,
          "%.900s", err.message);
    CHECK(vit_params_alloc(&r->grads, &r->cfg, r->be, &err) == 0, "%.900s", err.message);
    if (test_state.failed_checks) return;
    r->be->copy_to_device(r->params.memory, r->host_params, count * sizeof(float));

    for (int c = 0; c < CROPS && !test_state.failed_checks; c++) load_crop(r, &r->crops[c]);
}

/* ---- the step and the comparisons ----------------------------------------------- */

/* Allocates crop's activations (training or not), sets its RoPE, runs the
 * forward and downloads the output into host_out. */
static void run_forward(Reference *r, Crop *crop, ViTActivations *a, int training, float *host_out) {
    DdError err = {{0}};
    CHECK(vit_activations_alloc(a, &r->cfg, r->be, crop->B, crop->H, crop->W, training, &err) == 0,
          "%.900s", err.message);
    if (test_state.failed_checks) return;
    vit_set_rope(a, &r->cfg, r->be, crop->rescale);
    vit_forward(r->be, &r->cfg, &r->params, a, crop->device_images, crop->device_mask);
    r->be->synchronize();
    r->be->copy_to_host(host_out, a->out, (size_t)crop->B * crop->T * r->cfg.dim * sizeof(float));
}

/* Outputs of both crops, and the loss sum(out * dout) they give (its error
 * relative to sum |out * dout|, as the loss is a sum of cancelling terms). */
static void check_outputs(Reference *r) {
    const double output_tolerance = r->tolerances.output, least = r->tolerances.least_output_error;
    double loss = 0.0, loss_scale = 0.0;
    for (int c = 0; c < CROPS; c++) {
        Crop *crop = &r->crops[c];
        long n = (long)crop->B * crop->T * r->cfg.dim;
        double error = test_relative_error_ff(crop->output, crop->expected, n);
        printf("  %-46s rel err %.2e  (output [%d, %d, %d])\n", crop->name, error, crop->B, crop->T, r->cfg.dim);
        CHECK(error < output_tolerance, "model '%s': %s output (%dx%d px, rescale %g): relative error %.3g, expected < %g",
              r->cfg.name, crop->name, crop->H, crop->W, crop->rescale, error, output_tolerance);
        CHECK(least == 0 || error > least, "model '%s' on %s: %s output within %.3g of float64: expected the rounding of bf16 "
              "blocks, more than %g", r->cfg.name, r->be->name, crop->name, error, least);
        for (long i = 0; i < n; i++) {
            loss += (double)crop->output[i] * crop->dout[i];
            loss_scale += fabs((double)crop->output[i] * crop->dout[i]);
        }
    }
    double expected_loss = read_scalar(r, "loss");
    double error = fabs(loss - expected_loss) / fmax(loss_scale, 1e-30);
    printf("  %-46s rel err %.2e  (%.6f vs %.6f)\n", "loss", error, loss, expected_loss);
    CHECK(error < output_tolerance, "model '%s': loss %.8g, reference %.8g", r->cfg.name, loss, expected_loss);
}

static void check_gradients(Reference *r) {
    const double gradient_tolerance = r->tolerances.gradient;
    for (int i = 0; i < r->tensor_count; i++) {
        const ViTTensorInfo *t = &r->layout[i];
        double error = test_relative_error_ff(r->host_grads + t->offset, r->expected_grads + t->offset,
                                              (long)t->count);
        printf("  grad.%-41s rel err %.2e%s\n", t->name, error,
               error < gradient_tolerance ? "" : "  <-- too large");
        CHECK(error < gradient_tolerance, "model '%s': gradient of %s: relative error %.3g, expected < %g",
              r->cfg.name, t->name, error, gradient_tolerance);
    }
}

/* The forward-only activations (one block's buffers reused) must give the
 * training forward's output. */
static void check_forward_only(Reference *r) {
    for (int c = 0; c < CROPS && !test_state.failed_checks; c++) {
        Crop *crop = &r->crops[c];
        long n = (long)crop->B * crop->T * r->cfg.dim;
        float *inference_out = malloc((size_t)n * sizeof(float));
        if (!inference_out) return;
        run_forward(r, crop, &crop->infer, 0, inference_out);
        double error = test_relative_error_ff(inference_out, crop->output, n);
        int identical = memcmp(inference_out, crop->output, (size_t)n * sizeof(float)) == 0;
        printf("  %-46s rel err %.2e  (forward only vs training)%s\n", crop->name, error,
               identical ? " (bitwise identical)" : "");
        CHECK(error <= forward_only_tolerance, "model '%s': %s forward-only output differs from training: %.3g",
              r->cfg.name, crop->name, error);
        free(inference_out);
    }
}

/* One multi-crop training step: both forwards (outputs on the host), both
 * backwards (gradients on the host). */
static void run_step(Reference *r) {
    for (int c = 0; c < CROPS && !test_state.failed_checks; c++)
        run_forward(r, &r->crops[c], &r->crops[c].train, 1, r->crops[c].output);
    if (test_state.failed_checks) return;
    r->be->zero(r->grads.memory, r->grads.count * sizeof(float));
    for (int c = 0; c < CROPS; c++)
        vit_backward(r->be, &r->cfg, &r->params, &r->grads, &r->crops[c].train, r->crops[c].device_dout,
                     r->crops[c].device_mask, NULL);
    r->be->synchronize();
    r->be->copy_to_host(r->host_grads, r->grads.memory, r->grads.count * sizeof(float));
}

/* One multi-crop training step against the reference. */
static void run_reference(const NnBackend *be, const char *model_path, const char *reference_path) {
    Reference r = {.be = be,
                   .tolerances = be->block_bf16 ? bf16_tolerances : fp32_tolerances,
                   .bf16_whole = 1,
                   .crops = {{.name = "crop_a"}, {.name = "crop_b"}}};
    load_reference(&r, model_path, reference_path);
    printf("  model '%s' on %s, reference %s\n", r.cfg.name, be->name, reference_path);
    if (!test_state.failed_checks) run_step(&r);
    if (!test_state.failed_checks) {
        check_outputs(&r);
        check_gradients(&r);
        check_forward_only(&r);
    }
    reference_free(&r);
}

/* The same step with the bf16 matrices in one block's slot and in a whole
 * copy: outputs and gradients bit for bit. */
static void run_slot_against_whole(const char *model_path, const char *reference_path) {
    Reference r[2] = {{.be = &nn_cpu_bf16_backend, .bf16_whole = 0, .crops = {{.name = "crop_a"}, {.name = "crop_b"}}},
                      {.be = &nn_cpu_bf16_backend, .bf16_whole = 1, .crops = {{.name = "crop_a"}, {.name = "crop_b"}}}};
    for (int i = 0; i < 2 && !test_state.failed_checks; i++) {
        load_reference(&r[i], model_path, reference_path);
        if (!test_state.failed_checks) run_step(&r[i]);
    }
    if (!test_state.failed_checks) {
        int same = memcmp(r[0].host_grads, r[1].host_grads, r[0].grads.count * sizeof(float)) == 0;
        for (int c = 0; c < CROPS; c++) {
            const Crop *slot = &r[0].crops[c], *whole = &r[1].crops[c];
            same = same && memcmp(slot->output, whole->output,
                                  (size_t)slot->B * slot->T * r[0].cfg.dim * sizeof(float)) == 0;
        }
        printf("  model '%s': one-block slot against whole copy: outputs and %zu gradients %s\n", r[0].cfg.name,
               r[0].grads.count, same ? "bit for bit identical" : "DIFFER");
        CHECK(same, "model '%s': the one-block slot of bf16 matrices differs from the whole copy", r[0].cfg.name);
    }
    for (int i = 0; i < 2; i++) reference_free(&r[i]);
}

static void tiny_ref_mlp(void) {
    run_reference(&nn_cpu_backend, "configs/models/tiny_ref.yaml", "tests/reference/vit_tiny_ref.h5");
}

static void tiny_ref_swiglu(void) {
    run_reference(&nn_cpu_backend, "configs/models/tiny_ref_swiglu.yaml",
                  "tests/reference/vit_tiny_ref_swiglu.h5");
}

static void tiny_ref_mlp_bf16_blocks(void) {
    run_reference(&nn_cpu_bf16_backend, "configs/models/tiny_ref.yaml", "tests/reference/vit_tiny_ref.h5");
}

static void tiny_ref_swiglu_bf16_blocks(void) {
    run_reference(&nn_cpu_bf16_backend, "configs/models/tiny_ref_swiglu.yaml",
                  "tests/reference/vit_tiny_ref_swiglu.h5");
}

static void bf16_slot_equals_whole_copy(void) {
    run_slot_against_whole("configs/models/tiny_ref.yaml", "tests/reference/vit_tiny_ref.h5");
    run_slot_against_whole("configs/models/tiny_ref_swiglu.yaml", "tests/reference/vit_tiny_ref_swiglu.h5");
}

TEST_MAIN(TEST(tiny_ref_mlp), TEST(tiny_ref_swiglu), TEST(tiny_ref_mlp_bf16_blocks),
          TEST(tiny_ref_swiglu_bf16_blocks), TEST(bf16_slot_equals_whole_copy))

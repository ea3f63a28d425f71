/*
 * teacher.c - the frozen teacher on a teacher rank (see teacher.h).
 */
#include "teacher/teacher.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nn/tensor_file.h"

/* Reads the weights file into params: the backbone always; the heads when
 * the file has them (names "dino_head.*", "ibot_head.*"), else they stay as
 * drawn from the seed. Returns 1 when the heads came from the file. */
static int load_weights(Teacher *t, const char *path, const NnBackend *be, DdError *err) {
    TensorFile file;
    if (tensor_file_open(&file, path, err) != 0) return -1;
    float *host = malloc(t->layout.count * sizeof(float));
    if (!host) {
        tensor_file_close(&file);
        return dd_fail(err, "%s: out of host memory for the teacher's %zu parameters", path, t->layout.count);
    }
    be->copy_to_host(host, t->params.memory, t->layout.count * sizeof(float));
    int heads = tensor_file_contains(&file, "dino_head.prototypes.weight");
    int status = heads ? model_params_read(&file, "", &t->layout, host, err) : 0;
    if (status == 0 && !heads) {
        ViTParams backbone;
        status = vit_params_view(&backbone, &t->cfg, host, err);
        if (status == 0) status = tensor_file_read_vit_params(&file, "", &t->cfg, &backbone, err);
        free(backbone.blocks);
    }
    if (status == 0) be->copy_to_device(t->params.memory, host, t->layout.count * sizeof(float));
    free(host);
    tensor_file_close(&file);
    if (status != 0) return dd_fail_context(err, "teacher weights");
    return heads;
}

/* Frees what teacher_resize sized. */
static void free_slice_buffers(Teacher *t, const NnBackend *be) {
    vit_activations_free(&t->act, be);
    head_activations_free(&t->dino, be);
    head_activations_free(&t->ibot, be);
    payload_starts_free(&t->starts, be);
    if (t->memory) be->free(t->memory);
    free(t->host);
    t->memory = NULL, t->host = NULL;
    t->images = t->cls = t->patches = t->host_dino = t->host_ibot = NULL;
    t->capacity = 0;
}

int teacher_create(Teacher *t, const ViTConfig *cfg, const char *weights_path, uint64_t seed, int capacity,
                   int global_count, int global_size, int max_masked, const NnBackend *be, DdError *err) {
    memset(t, 0, sizeof *t);
    t->cfg = *cfg;
    t->global_count = global_count;
    t->global_size = global_size;
    if (model_layout_create(&t->layout, cfg, err) != 0 || model_params_alloc(&t->params, cfg, be, err) != 0 ||
        model_params_init_informative(&t->params, cfg, be, seed, TEACHER_MODEL_INDEX, err) != 0)
        goto fail;
    if (weights_path && weights_path[0]) {
        int heads = load_weights(t, weights_path, be, err);
        if (heads < 0) goto fail;
        t->heads_from_file = heads;
    }
    /* frozen, forward only: one block's slot of bf16 matrices suffices */
    if (vit_params_alloc_bf16(&t->params.backbone, cfg, be, 0, err) != 0) goto fail;
    if (capacity > 0 && teacher_resize(t, capacity, max_masked, be, err) != 0) goto fail;
    return 0;
fail:
    teacher_free(t, be);
    return -1;
}

int teacher_resize(Teacher *t, int capacity, int max_masked, const NnBackend *be, DdError *err) {
    const ViTConfig *cfg = &t->cfg;
    max_masked = max_masked > 0 ? max_masked : 1;
    if (capacity < 1) return dd_fail(err, "teacher '%s': expected a capacity >= 1, found %d", cfg->name, capacity);
    if (t->memory && capacity == t->capacity && max_masked == t->max_masked) return 0;
    free_slice_buffers(t, be);
    t->capacity = capacity;
    t->max_masked = max_masked;
    const int rows = t->global_count * capacity, D = cfg->dim;
    const int Kd = cfg->dino_head.bottleneck, Ki = cfg->ibot_head.bottleneck;
    if (vit_activations_alloc(&t->act, cfg, be, rows, t->global_size, t->global_size, 0, err) != 0 ||
        head_activations_alloc(&t->dino, &cfg->dino_head, D, rows, HEAD_PART_MLP, be, err) != 0 ||
        head_activations_alloc(&t->ibot, &cfg->ibot_head, D, t->max_masked, HEAD_PART_MLP, be, err) != 0 ||
        payload_starts_alloc(&t->starts, be, rows, t->max_masked, err) != 0)
        goto fail;
    vit_set_rope(&t->act, cfg, be, 1.0f);   /* no rescale at inference */

    const size_t image_floats = (size_t)rows * cfg->in_channels * t->global_size * t->global_size;
    t->count = image_floats + (size_t)rows * D + (size_t)t->max_masked * D;
    t->memory = be->alloc(t->count * sizeof(float));
    t->host = malloc(((size_t)rows * Kd + (size_t)t->max_masked * Ki) * sizeof(float));
    if (!t->memory || !t->host) {
        dd_fail(err, "teacher '%s': out of memory for a slice of %d images", cfg->name, capacity);
        goto fail;
    }
    t->images = t->memory;
    t->cls = t->images + image_floats;
    t->patches = t->cls + (size_t)rows * D;
    t->host_dino = t->host;
    t->host_ibot = t->host_dino + (size_t)rows * Kd;
    return 0;
fail:
    free_slice_buffers(t, be);
    return -1;
}

void teacher_free(Teacher *t, const NnBackend *be) {
    free_slice_buffers(t, be);
    model_params_free(&t->params, be);
    model_layout_free(&t->layout);
    memset(t, 0, sizeof *t);
}

int teacher_forward(Teacher *t, const NnBackend *be, const float *global_crops, const uint8_t *masks, int images,
                    DdError *err) {
    const ViTConfig *cfg = &t->cfg;
    const int G = t->global_count, S = t->global_size, D = cfg->dim, crops = G * images;
    const int Np = (S / cfg->patch_size) * (S / cfg->patch_size), prefix = 1 + cfg->registers;
    if (images < 1 || images > t->capacity)
        return dd_fail(err, "teacher: expected a slice of 1 to %d images, found %d", t->capacity, images);
    t->shape = (PayloadShape){images, G, Np, cfg->dino_head.bottleneck, cfg->ibot_head.bottleneck};

    /* the crops of this slice: a forward over B = G * images crops; the
     * activations were sized for the capacity, so run with the slice's B */
    ViTActivations act = t->act;
    act.B = crops;
    be->copy_to_device(t->images, global_crops, (size_t)crops * cfg->in_channels * S * S * sizeof(float));
    vit_forward(be, cfg, &t->params.backbone, &act, t->images, NULL);

    /* CLS rows -> DINO head; masked patch rows -> iBOT head */
    const size_t row_bytes = (size_t)D * sizeof(float);
    int masked = 0;
    for (int r = 0; r < crops; r++) {
        const float *tokens = act.out + (size_t)r * act.T * D;
        be->copy(t->cls + (size_t)r * D, tokens, row_bytes);
        for (int p = 0; p < Np; p++) {
            if (!masks[(size_t)r * Np + p]) continue;
            if (masked == t->max_masked)
                return dd_fail(err, "teacher: more than %d masked patches in a slice of %d images", t->max_masked,
                               images);
            be->copy(t->patches + (size_t)masked * D, tokens + (size_t)(prefix + p) * D, row_bytes);
            masked++;
        }
    }
    head_mlp_forward(be, &cfg->dino_head, D, &t->params.dino_head, &t->dino, t->cls, crops);
    if (masked) head_mlp_forward(be, &cfg->ibot_head, D, &t->params.ibot_head, &t->ibot, t->patches, masked);
    t->masked = masked;
    return 0;
}

void teacher_rows(Teacher *t, const NnBackend *be, const uint8_t *masks, float *rows) {
    const long crops = (long)t->shape.global_count * t->shape.images;
    be->copy_to_host(t->host_dino, t->dino.features, (size_t)crops * t->shape.dino_dim * sizeof(float));
    if (t->masked)
        be->copy_to_host(t->host_ibot, t->ibot.features, (size_t)t->masked * t->shape.ibot_dim * sizeof(float));
    payload_pack(&t->shape, masks, t->host_dino, t->host_ibot, rows, t->starts.row_starts);
}

int teacher_wire_rows(Teacher *t, const NnBackend *be, const uint8_t *masks, uint16_t *wire, DdError *err) {
    if (payload_pack_bf16_on(be, &t->shape, masks, t->dino.features, t->ibot.features, wire, &t->starts, err) != 0)
        return dd_fail_context(err, "teacher '%s': rows of a slice of %d images", t->cfg.name, t->shape.images);
    return 0;
}

int teacher_compute_rows(Teacher *t, const NnBackend *be, const float *global_crops, const uint8_t *masks,
                         int images, float *rows, DdError *err) {
    if (teacher_forward(t, be, global_crops, masks, images, err) != 0) return -1;
    teacher_rows(t, be, masks, rows);
    return 0;
}

/*
 * model.c - a backbone and its DINO and iBOT heads in one buffer (see
 * model.h): the layout with each tensor's module and layer, the named
 * views, initialisation, and tensor-file reading and writing.
 */
#include <stdio.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "nn/random.h"
#include "nn/model_layout.h"

const char *const model_module_names[MODULE_COUNT] = {"backbone", "dino_head", "ibot_head"};

/* The layer of a backbone tensor for layer-wise lr decay: 0 for the
 * embeddings and tokens, i + 1 for block i, depth + 1 for the final norm. */
static int backbone_layer(const char *name, int depth) {
    int block;
    if (sscanf(name, "layer.%d.", &block) == 1) return block + 1;
    if (strncmp(name, "embeddings.", 11) == 0) return 0;
    return depth + 1;
}

/* The heads after the backbone: records them (cursor->tensors) or points
 * p's views (cursor->memory); module_offset (may be NULL) gets where each
 * head begins and where the buffer ends. */
static void heads_layout(LayoutCursor *cursor, const ViTConfig *cfg, ModelParams *p, size_t *module_offset) {
    if (module_offset) module_offset[MODULE_DINO_HEAD] = cursor->offset;
    head_layout(cursor, &cfg->dino_head, cfg->dim, MODULE_DINO_HEAD, cfg->depth + 1, "dino_head",
                p ? &p->dino_head : NULL);
    if (module_offset) module_offset[MODULE_IBOT_HEAD] = cursor->offset;
    head_layout(cursor, &cfg->ibot_head, cfg->dim, MODULE_IBOT_HEAD, cfg->depth + 1, "ibot_head",
                p ? &p->ibot_head : NULL);
    if (module_offset) module_offset[MODULE_COUNT] = cursor->offset;
}

int model_layout_create(ModelLayout *layout, const ViTConfig *cfg, DdError *err) {
    memset(layout, 0, sizeof *layout);
    const int backbone_count = vit_tensor_count(cfg);
    layout->tensor_count = backbone_count + head_tensor_count(&cfg->dino_head) +
                           head_tensor_count(&cfg->ibot_head);
    layout->tensors = calloc((size_t)layout->tensor_count, sizeof *layout->tensors);
    ViTTensorInfo *info = calloc((size_t)backbone_count, sizeof *info);
    if (!layout->tensors || !info) {
        free(info);
        model_layout_free(layout);
        return dd_fail(err, "model '%s': out of host memory for the layout of %d tensors", cfg->name,
                       layout->tensor_count);
    }
    const size_t backbone_floats = vit_tensor_layout(cfg, info);
    for (int i = 0; i < backbone_count; i++) {
        ModelTensor *t = &layout->tensors[i];
        t->info = info[i];
        t->module = MODULE_BACKBONE;
        t->layer = backbone_layer(info[i].name, cfg->depth);
        t->patch_embedding = strncmp(info[i].name, "embeddings.patch_embeddings.", 28) == 0;
    }
    free(info);

    LayoutCursor cursor = {.tensors = layout->tensors, .count = backbone_count, .offset = backbone_floats};
    layout->module_offset[MODULE_BACKBONE] = 0;
    heads_layout(&cursor, cfg, NULL, layout->module_offset);
    layout->count = cursor.offset;
    return 0;
}

void model_layout_free(ModelLayout *layout) {
    free(layout->tensors);
    memset(layout, 0, sizeof *layout);
}

int model_params_view(ModelParams *p, const ViTConfig *cfg, float *memory, DdError *err) {
    memset(p, 0, sizeof *p);
    if (vit_params_view(&p->backbone, cfg, memory, err) != 0) return -1;
    LayoutCursor cursor = {.memory = memory, .offset = p->backbone.count};
    heads_layout(&cursor, cfg, p, NULL);
    p->memory = memory;
    p->count = cursor.offset;
    return 0;
}

int model_params_alloc(ModelParams *p, const ViTConfig *cfg, const NnBackend *be, DdError *err) {
    ModelLayout layout;
    if (model_layout_create(&layout, cfg, err) != 0) return -1;
    const size_t count = layout.count;
    model_layout_free(&layout);
    float *memory = be->alloc(count * sizeof(float));
    if (!memory)
        return dd_fail(err, "model '%s': could not allocate %.1f MiB of %s memory for %zu parameters "
                       "(backbone and heads)", cfg->name, count * 4.0 / (1 << 20), be->name, count);
    if (model_params_view(p, cfg, memory, err) != 0) {
        be->free(memory);
        return -1;
    }
    return 0;
}

void model_params_free(ModelParams *p, const NnBackend *be) {
    if (be && p->memory) be->free(p->memory);
    if (be && p->backbone.bf16) be->free(p->backbone.bf16);
    free(p->backbone.blocks);
    memset(p, 0, sizeof *p);
}

void model_head_tensor_draw(const ModelLayout *layout, int index, uint64_t seed, uint64_t model_index, float *x) {
    const ModelTensor *t = &layout->tensors[index];
    DdRandom rng = dd_random_keyed(seed, DD_RANDOM_INIT, model_index, (uint64_t)index, 0);
    for (size_t j = 0; j < t->info.count; j++)
        x[j] = t->info.decays ? (float)dd_random_truncated_normal(&rng, 0.02) : 0.0f;
}

/* Length of the prototype rows of an informative model: scores up to +-4
 * at temperature 0.07 give targets well below the uniform entropy. */
#define INFORMATIVE_PROTOTYPE_NORM 4.0

void model_informative_tensor_draw(const ModelLayout *layout, int index, uint64_t seed, uint64_t model_index,
                                   float *x) {
    const ViTTensorInfo *t = &layout->tensors[index].info;
    const char *leaf = strrchr(t->name, '.') + 1;
    DdRandom rng = dd_random_keyed(seed, DD_RANDOM_INIT, model_index, (uint64_t)index, 0);
    const double gain = strstr(t->name, "prototypes") ? INFORMATIVE_PROTOTYPE_NORM : 1.0;
    for (size_t j = 0; j < t->count; j++) {
        float value = 0.0f;                                                       /* biases */
        if (t->decays) value = (float)(gain * dd_random_normal(&rng) / sqrt((double)t->shape[1]));
        else if (!strcmp(leaf, "lambda1")) value = 0.5f;
        else if (strstr(t->name, "_token")) value = (float)dd_random_normal(&rng);
        else if (!strcmp(leaf, "weight")) value = 1.0f;                           /* norms */
        x[j] = value;
    }
}

int model_params_init_informative(ModelParams *p, const ViTConfig *cfg, const NnBackend *be, uint64_t seed,
                                  uint64_t model_index, DdError *err) {
    ModelLayout layout;
    if (model_layout_create(&layout, cfg, err) != 0) return -1;
    float *host = malloc(layout.count * sizeof(float));   /* [layout.count] */
    if (!host) {
        model_layout_free(&layout);
        return dd_fail(err, "model '%s': out of host memory to initialise it", cfg->name);
    }
    for (int i = 0; i < layout.tensor_count; i++)
        model_informative_tensor_draw(&layout, i, seed, model_index, host + layout.tensors[i].info.offset);
    be->copy_to_device(p->memory, host, layout.count * sizeof(float));
    free(host);
    model_layout_free(&layout);
    return 0;
}

int model_params_init(ModelParams *p, const ViTConfig *cfg, const NnBackend *be, uint64_t seed,
                      uint64_t model_index, DdError *err) {
    /* the backbone as vit_params_init draws it, from a seed of its own per model */
    DdRandom backbone_seed = dd_random_keyed(seed, DD_RANDOM_INIT, model_index, UINT64_MAX, 0);
    if (vit_params_init(&p->backbone, cfg, be, dd_random_u64(&backbone_seed), err) != 0) return -1;

    ModelLayout layout;
    if (model_layout_create(&layout, cfg, err) != 0) return -1;
    const size_t heads_begin = layout.module_offset[MODULE_DINO_HEAD];
    const size_t heads_count = layout.count - heads_begin;
    float *host = malloc(heads_count * sizeof(float));   /* [heads_count] */
    if (!host) {
        model_layout_free(&layout);
        return dd_fail(err, "model '%s': out of host memory to initialise its heads", cfg->name);
    }
    for (int i = 0; i < layout.tensor_count; i++) {
        const ModelTensor *t = &layout.tensors[i];
        if (t->module != MODULE_BACKBONE)
            model_head_tensor_draw(&layout, i, seed, model_index, host + (t->info.offset - heads_begin));
    }
    be->copy_to_device(p->memory + heads_begin, host, heads_count * sizeof(float));
    free(host);
    model_layout_free(&layout);
    return 0;
}

/* "prefix" + the tensor's name, and its shape as a tensor file sees it. */
static void file_name_and_shape(const ModelTensor *t, const char *prefix, char name[TENSOR_NAME_MAX],
                                TensorShape *shape) {
    snprintf(name, TENSOR_NAME_MAX, "%s%s", prefix, t->info.name);
    shape->ndim = t->info.ndim;
    for (int d = 0; d < t->info.ndim; d++) shape->dims[d] = t->info.shape[d];
}

int model_params_read(const TensorFile *file, const char *prefix, const ModelLayout *layout,
                      float *host, DdError *err) {
    for (int i = 0; i < layout->tensor_count; i++) {
        char name[TENSOR_NAME_MAX];
        TensorShape shape;
        file_name_and_shape(&layout->tensors[i], prefix, name, &shape);
        if (tensor_file_read(file, name, &shape, host + layout->tensors[i].info.offset, err) != 0) return -1;
    }
    return 0;
}

int model_params_write(TensorFileWriter *writer, const char *prefix, const ModelLayout *layout,
                       const float *host, DdError *err) {
    for (int i = 0; i < layout->tensor_count; i++) {
        char name[TENSOR_NAME_MAX];
        TensorShape shape;
        file_name_and_shape(&layout->tensors[i], prefix, name, &shape);
        if (tensor_writer_add(writer, name, &shape, host + layout->tensors[i].info.offset, err) != 0)
            return -1;
    }
    return 0;
}

/*
 * weights_export.c - ViTParams -> model.safetensors + config.json in the
 * Hugging Face DINOv3ViT layout (weights_export.h).
 */
#include "nn/weights_export.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "nn/atomic_file.h"
#include "nn/safetensors.h"
#include "nn/weights_names.h"

/* The shortest decimal text that reads back as the same float, written as
 * a JSON float ("100.0", not "100": transformers checks float fields' types). */
static void format_float(char text[32], float value) {
    for (int digits = 6; digits <= 9; digits++) {
        snprintf(text, 32, "%.*g", digits, (double)value);
        if (strtof(text, NULL) == value) break;
    }
    if (!strpbrk(text, ".e")) strcat(text, ".0");
}

void weights_write_hugging_face_config(FILE *out, const ViTConfig *cfg, int image_size) {
    const int gated = cfg->ffn == FFN_SWIGLU;
    const char *qkv_bias = cfg->qkv_bias ? "true" : "false";
    char layerscale[32], eps[32], theta[32];
    format_float(layerscale, cfg->layerscale_init);
    format_float(eps, cfg->norm_eps);
    format_float(theta, cfg->rope_base);
    fprintf(out,
            "{\n"
            "  \"architectures\": [\"DINOv3ViTModel\"],\n"
            "  \"model_type\": \"dinov3_vit\",\n"
            "  \"hidden_size\": %d,\n"
            "  \"num_hidden_layers\": %d,\n"
            "  \"num_attention_heads\": %d,\n"
            "  \"intermediate_size\": %d,\n"
            "  \"use_gated_mlp\": %s,\n"
            "  \"hidden_act\": \"%s\",\n"
            "  \"patch_size\": %d,\n"
            "  \"num_channels\": %d,\n"
            "  \"image_size\": %d,\n"
            "  \"num_register_tokens\": %d,\n"
            "  \"layerscale_value\": %s,\n"
            "  \"layer_norm_eps\": %s,\n"
            "  \"rope_theta\": %s,\n"
            "  \"query_bias\": %s,\n"
            "  \"key_bias\": false,\n"
            "  \"value_bias\": %s,\n"
            "  \"proj_bias\": true,\n"
            "  \"mlp_bias\": true,\n"
            "  \"attention_dropout\": 0.0,\n"
            "  \"drop_path_rate\": 0.0,\n"
            "  \"initializer_range\": 0.02,\n"
            "  \"pos_embed_shift\": null,\n"
            "  \"pos_embed_jitter\": null,\n"
            "  \"pos_embed_rescale\": 2.0,\n"
            "  \"torch_dtype\": \"float32\"\n"
            "}\n",
            cfg->dim, cfg->depth, cfg->num_heads, cfg->ffn_hidden, gated ? "true" : "false", gated ? "silu" : "gelu",
            cfg->patch_size, cfg->in_channels, image_size, cfg->registers, layerscale, eps, theta, qkv_bias,
            qkv_bias);
}

static int write_config(const char *folder, const ViTConfig *cfg, int image_size, DdError *err) {
    char path[ATOMIC_FILE_PATH_MAX];
    snprintf(path, sizeof path, "%s/config.json", folder);
    AtomicFile file;
    if (atomic_file_open(&file, path, err) != 0) return -1;
    weights_write_hugging_face_config(file.stream, cfg, image_size);
    return atomic_file_commit(&file, err);
}

/* The pieces of every tensor as Hugging Face names them; tensors[] gets
 * views into params, *count how many. The skipped key biases must be 0. */
static int collect_tensors(const ViTConfig *cfg, const ViTParams *params, const ForeignTensor *layout, int n,
                           NamedTensor *tensors, int *count, DdError *err) {
    *count = 0;
    for (int i = 0; i < n; i++) {
        const ForeignTensor *t = &layout[i];
        const float *source = params->memory + t->target.offset;
        for (int p = 0; p < t->piece_count; p++) {
            const ForeignPiece *piece = &t->pieces[p];
            if (piece->absent) {
                for (size_t j = 0; j < piece->count; j++)
                    if (source[piece->offset + j] != 0.0f)
                        return dd_fail(err, "model '%s': tensor '%s': expected zeros in floats %zu..%zu (the key "
                                       "bias, which Hugging Face does not have), found %g at %zu", cfg->name,
                                       t->target.name, piece->offset, piece->offset + piece->count - 1,
                                       (double)source[piece->offset + j], piece->offset + j);
                continue;
            }
            tensors[*count] = (NamedTensor){piece->name, piece->shape, source + piece->offset};
            (*count)++;
        }
    }
    if (cfg->registers == 0)   /* DINOv3ViTModel holds the parameter even when it is empty */
        tensors[(*count)++] = (NamedTensor){"embeddings.register_tokens", {3, {1, 0, cfg->dim}}, NULL};
    return 0;
}

int weights_export_hugging_face(const char *folder, const ViTConfig *cfg, const ViTParams *params, int image_size,
                                DdError *err) {
    struct stat info;
    if (stat(folder, &info) != 0 && mkdir(folder, 0777) != 0)
        return dd_fail(err, "%s: cannot create the folder: %s", folder, strerror(errno));
    if (stat(folder, &info) != 0 || !S_ISDIR(info.st_mode))
        return dd_fail(err, "%s: expected a folder, found a file", folder);

    int n = vit_tensor_count(cfg);
    ForeignTensor *layout = malloc((size_t)n * sizeof *layout);
    NamedTensor *tensors = malloc(((size_t)n * FOREIGN_MAX_PIECES + 1) * sizeof *tensors);
    int count = 0, status = 0;
    if (!layout || !tensors) status = dd_fail(err, "model '%s': out of memory", cfg->name);
    if (status == 0) status = foreign_tensor_layout(cfg, WEIGHT_NAMING_HUGGING_FACE, layout, err);
    if (status == 0) status = collect_tensors(cfg, params, layout, n, tensors, &count, err);
    if (status == 0) {
        char path[ATOMIC_FILE_PATH_MAX];
        snprintf(path, sizeof path, "%s/model.safetensors", folder);
        status = safetensors_write(path, tensors, count, SAFETENSORS_F32, err);
    }
    if (status == 0) status = write_config(folder, cfg, image_size, err);
    free(layout);
    free(tensors);
    return status;
}

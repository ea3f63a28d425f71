/*
 * weights_names.c - the naming tables of weights_names.h: one row per
 * project tensor, giving its pieces in each foreign naming and how their
 * shapes differ from the project's.
 */
#include "nn/weights_names.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *weight_naming_title(WeightNaming naming) {
    return naming == WEIGHT_NAMING_HUGGING_FACE ? "Hugging Face DINOv3ViTModel" : "original DINOv3";
}

const char *weight_naming_anchor(WeightNaming naming) {
    return naming == WEIGHT_NAMING_HUGGING_FACE ? "embeddings.patch_embeddings.weight" : "patch_embed.proj.weight";
}

/* How a piece's shape is written in a foreign file, from the project's
 * shape of that piece. */
typedef enum ShapeForm {
    SHAPE_SAME,          /* as in the project */
    SHAPE_LEADING_ONE,   /* [R, D] -> [1, R, D];  [D] -> [1, D] */
    SHAPE_TOKEN,         /* [D] -> [1, 1, D] */
    SHAPE_CONV,          /* [D, C*P*P] -> [D, C, P, P] */
} ShapeForm;

/* One naming's view of a project tensor: pieces stacked along the first
 * dim; absent is 1 + the index of a piece the naming does not hold. */
typedef struct ForeignForm {
    const char *pieces[FOREIGN_MAX_PIECES];
    ShapeForm shape;
    int absent;
} ForeignForm;

typedef struct NameRule {
    const char *project;           /* the layout name; inside a block, without "layer.N." */
    int ffn;                       /* the FfnKind it applies to, -1 for both */
    ForeignForm form[2];           /* [WeightNaming] */
} NameRule;

#define ONE(name) {{(name)}, SHAPE_SAME, 0}

static const NameRule model_rules[] = {
    {"embeddings.patch_embeddings.weight", -1,
     {{{"embeddings.patch_embeddings.weight"}, SHAPE_CONV, 0}, {{"patch_embed.proj.weight"}, SHAPE_CONV, 0}}},
    {"embeddings.patch_embeddings.bias", -1, {ONE("embeddings.patch_embeddings.bias"), ONE("patch_embed.proj.bias")}},
    {"embeddings.cls_token", -1, {{{"embeddings.cls_token"}, SHAPE_TOKEN, 0}, {{"cls_token"}, SHAPE_TOKEN, 0}}},
    {"embeddings.register_tokens", -1,
     {{{"embeddings.register_tokens"}, SHAPE_LEADING_ONE, 0}, {{"storage_tokens"}, SHAPE_LEADING_ONE, 0}}},
    {"embeddings.mask_token", -1, {{{"embeddings.mask_token"}, SHAPE_TOKEN, 0}, {{"mask_token"}, SHAPE_LEADING_ONE, 0}}},
    {"norm.weight", -1, {ONE("norm.weight"), ONE("norm.weight")}},
    {"norm.bias", -1, {ONE("norm.bias"), ONE("norm.bias")}},
};

static const NameRule block_rules[] = {
    {"norm1.weight", -1, {ONE("norm1.weight"), ONE("norm1.weight")}},
    {"norm1.bias", -1, {ONE("norm1.bias"), ONE("norm1.bias")}},
    {"attention.qkv_proj.weight", -1,
     {{{"attention.q_proj.weight", "attention.k_proj.weight", "attention.v_proj.weight"}, SHAPE_SAME, 0},
      ONE("attn.qkv.weight")}},
    {"attention.qkv_proj.bias", -1,
     {{{"attention.q_proj.bias", "attention.k_proj.bias", "attention.v_proj.bias"}, SHAPE_SAME, 2},
      ONE("attn.qkv.bias")}},
    {"attention.o_proj.weight", -1, {ONE("attention.o_proj.weight"), ONE("attn.proj.weight")}},
    {"attention.o_proj.bias", -1, {ONE("attention.o_proj.bias"), ONE("attn.proj.bias")}},
    {"layer_scale1.lambda1", -1, {ONE("layer_scale1.lambda1"), ONE("ls1.gamma")}},
    {"norm2.weight", -1, {ONE("norm2.weight"), ONE("norm2.weight")}},
    {"norm2.bias", -1, {ONE("norm2.bias"), ONE("norm2.bias")}},
    {"mlp.up_proj.weight", FFN_MLP, {ONE("mlp.up_proj.weight"), ONE("mlp.fc1.weight")}},
    {"mlp.up_proj.bias", FFN_MLP, {ONE("mlp.up_proj.bias"), ONE("mlp.fc1.bias")}},
    {"mlp.gate_up_proj.weight", FFN_SWIGLU,
     {{{"mlp.gate_proj.weight", "mlp.up_proj.weight"}, SHAPE_SAME, 0},
      {{"mlp.w1.weight", "mlp.w2.weight"}, SHAPE_SAME, 0}}},
    {"mlp.gate_up_proj.bias", FFN_SWIGLU,
     {{{"mlp.gate_proj.bias", "mlp.up_proj.bias"}, SHAPE_SAME, 0}, {{"mlp.w1.bias", "mlp.w2.bias"}, SHAPE_SAME, 0}}},
    {"mlp.down_proj.weight", FFN_MLP, {ONE("mlp.down_proj.weight"), ONE("mlp.fc2.weight")}},
    {"mlp.down_proj.bias", FFN_MLP, {ONE("mlp.down_proj.bias"), ONE("mlp.fc2.bias")}},
    {"mlp.down_proj.weight", FFN_SWIGLU, {ONE("mlp.down_proj.weight"), ONE("mlp.w3.weight")}},
    {"mlp.down_proj.bias", FFN_SWIGLU, {ONE("mlp.down_proj.bias"), ONE("mlp.w3.bias")}},
    {"layer_scale2.lambda1", -1, {ONE("layer_scale2.lambda1"), ONE("ls2.gamma")}},
};

#define RULE_COUNT(table) ((int)(sizeof table / sizeof table[0]))

static const NameRule *find_rule(const NameRule *rules, int count, const char *project, FfnKind ffn) {
    for (int i = 0; i < count; i++)
        if (strcmp(rules[i].project, project) == 0 && (rules[i].ffn < 0 || rules[i].ffn == (int)ffn))
            return &rules[i];
    return NULL;
}

/* The foreign shape of a piece of `rows` rows of the target. */
static TensorShape piece_shape(const ViTConfig *cfg, const ViTTensorInfo *target, int64_t rows, ShapeForm form) {
    TensorShape shape = {.ndim = target->ndim};
    for (int i = 0; i < target->ndim; i++) shape.dims[i] = target->shape[i];
    shape.dims[0] = rows;
    if (form == SHAPE_CONV) {
        shape = (TensorShape){4, {shape.dims[0], cfg->in_channels, cfg->patch_size, cfg->patch_size}};
    } else if (form == SHAPE_LEADING_ONE || form == SHAPE_TOKEN) {
        int ones = form == SHAPE_TOKEN ? 3 - shape.ndim : 1;
        memmove(&shape.dims[ones], &shape.dims[0], (size_t)shape.ndim * sizeof shape.dims[0]);
        for (int i = 0; i < ones; i++) shape.dims[i] = 1;
        shape.ndim += ones;
    }
    return shape;
}

/* The pieces of one project tensor in one naming; block is the block
 * number, or -1 outside the blocks. */
static void fill_foreign(const ViTConfig *cfg, const NameRule *rule, WeightNaming naming, int block,
                         ForeignTensor *out) {
    const ForeignForm *form = &rule->form[naming];
    const char *block_prefix = naming == WEIGHT_NAMING_HUGGING_FACE ? "layer" : "blocks";
    int pieces = 0;
    while (pieces < FOREIGN_MAX_PIECES && form->pieces[pieces]) pieces++;
    const int64_t rows = out->target.shape[0] / pieces;
    const size_t piece_count = out->target.count / (size_t)pieces;
    out->piece_count = pieces;
    for (int p = 0; p < pieces; p++) {
        ForeignPiece *piece = &out->pieces[p];
        if (block >= 0) snprintf(piece->name, sizeof piece->name, "%s.%d.%s", block_prefix, block, form->pieces[p]);
        else snprintf(piece->name, sizeof piece->name, "%s", form->pieces[p]);
        piece->shape = piece_shape(cfg, &out->target, rows, form->shape);
        piece->offset = (size_t)p * piece_count;
        piece->count = piece_count;
        piece->absent = form->absent == p + 1;
    }
    out->zero_offset = out->target.masked ? out->target.count / 3 : 0;   /* the key third of q, k, v */
    out->zero_count = (size_t)out->target.masked;
}

int foreign_tensor_layout(const ViTConfig *cfg, WeightNaming naming, ForeignTensor *out, DdError *err) {
    int n = vit_tensor_count(cfg);
    ViTTensorInfo *info = malloc((size_t)n * sizeof *info);
    if (!info) return dd_fail(err, "model '%s': out of memory for %d tensor names", cfg->name, n);
    vit_tensor_layout(cfg, info);
    for (int i = 0; i < n; i++) {
        ForeignTensor *t = &out[i];
        memset(t, 0, sizeof *t);
        t->target = info[i];
        int block = -1, consumed = 0;
        const NameRule *rule;
        if (sscanf(info[i].name, "layer.%d.%n", &block, &consumed) == 1 && consumed > 0) {
            rule = find_rule(block_rules, RULE_COUNT(block_rules), info[i].name + consumed, cfg->ffn);
        } else {
            block = -1;
            rule = find_rule(model_rules, RULE_COUNT(model_rules), info[i].name, cfg->ffn);
        }
        if (!rule) {   /* the layout gained a tensor the tables above do not know */
            dd_fail(err, "model '%s': tensor '%s' has no %s name (weights_names.c lacks a rule)", cfg->name,
                    info[i].name, weight_naming_title(naming));
            free(info);
            return -1;
        }
        fill_foreign(cfg, rule, naming, block, t);
    }
    free(info);
    return 0;
}

static int ends_with(const char *text, const char *suffix) {
    size_t n = strlen(text), m = strlen(suffix);
    return n >= m && strcmp(text + n - m, suffix) == 0;
}

const char *foreign_tensor_skip_reason(const char *name, WeightNaming naming) {
    if (naming == WEIGHT_NAMING_ORIGINAL) {
        if (strncmp(name, "blocks.", 7) == 0 && ends_with(name, ".attn.qkv.bias_mask"))
            return "the key-bias mask buffer (the key bias is held at zero)";
        if (strcmp(name, ORIGINAL_ROPE_PERIODS_NAME) == 0) return "RoPE periods (checked against rope_base)";
        if (strncmp(name, "local_cls_norm.", 15) == 0) return "a norm of local crops used only in training";
    } else if (strcmp(name, "rope_embeddings.inv_freq") == 0) {
        return "RoPE frequencies (computed from rope_base)";
    }
    return NULL;
}

/* ---- heads ---------------------------------------------------------------------------- */

int head_tensor_count(const HeadConfig *head) {
    return 2 * head->layers + 1;
}

size_t head_tensor_layout(const char *head_name, const HeadConfig *head, int in_dim, HeadTensorInfo *out) {
    size_t offset = 0;
    int k = 0;
    for (int i = 0; i < head->layers; i++) {
        int64_t in = i == 0 ? in_dim : head->hidden;
        int64_t width = i == head->layers - 1 ? head->bottleneck : head->hidden;
        const struct { const char *leaf; TensorShape shape; } parts[2] = {
            {"weight", {2, {width, in}}}, {"bias", {1, {width}}},
        };
        for (int p = 0; p < 2; p++, k++) {
            snprintf(out[k].name, sizeof out[k].name, "%s.mlp.%d.%s", head_name, i, parts[p].leaf);
            if (head->layers == 1)
                snprintf(out[k].original_name, sizeof out[k].original_name, "%s.mlp.%s", head_name, parts[p].leaf);
            else
                snprintf(out[k].original_name, sizeof out[k].original_name, "%s.mlp.%d.%s", head_name, 2 * i,
                         parts[p].leaf);
            out[k].shape = parts[p].shape;
            out[k].offset = offset;
            out[k].count = (size_t)tensor_shape_count(&parts[p].shape);
            offset += out[k].count;
        }
    }
    snprintf(out[k].name, sizeof out[k].name, "%s.prototypes.weight", head_name);
    snprintf(out[k].original_name, sizeof out[k].original_name, "%s.last_layer.weight", head_name);
    out[k].shape = (TensorShape){2, {head->prototypes, head->bottleneck}};
    out[k].offset = offset;
    out[k].count = (size_t)head->prototypes * (size_t)head->bottleneck;
    return offset + out[k].count;
}

/*
 * vit.c - the DINOv3 ViT backbone on the op API (see vit.h): one layout
 * walk that names, counts and places every parameter; one that places
 * every activation; the forward; the backward.
 */
#include "nn/vit.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nn/random.h"
#include "nn/rope.h"

/* ---- parameter layout ---------------------------------------------------- */

/* Walks the layout in memory order. With info it records each tensor; with
 * memory it returns the tensor's address in it (else NULL). */
typedef struct LayoutWalk {
    ViTTensorInfo *info;   /* may be NULL */
    float *memory;         /* may be NULL */
    int tensors;
    size_t offset;         /* floats so far */
} LayoutWalk;

static float *layout_tensor(LayoutWalk *w, int decays, long masked, int ndim, const int64_t *shape,
                            const char *name_format, ...) {
    size_t count = 1;
    for (int i = 0; i < ndim; i++) count *= (size_t)shape[i];
    if (w->info) {
        ViTTensorInfo *t = &w->info[w->tensors];
        va_list args;
        va_start(args, name_format);
        vsnprintf(t->name, sizeof t->name, name_format, args);
        va_end(args);
        t->ndim = ndim;
        for (int i = 0; i < VIT_TENSOR_MAX_DIMS; i++) t->shape[i] = i < ndim ? shape[i] : 1;
        t->offset = w->offset;
        t->count = count;
        t->decays = decays;
        t->masked = masked;
    }
    float *address = w->memory ? w->memory + w->offset : NULL;
    w->tensors++;
    w->offset += count;
    return address;
}

#define VEC(n) (const int64_t[]){(n)}
#define MAT(r, c) (const int64_t[]){(r), (c)}

/* The first feed-forward matrix produces F (MLP) or gate and up, 2F (SwiGLU). */
static int ffn_first_width(const ViTConfig *cfg) {
    return cfg->ffn == FFN_SWIGLU ? 2 * cfg->ffn_hidden : cfg->ffn_hidden;
}

static void layout_walk(const ViTConfig *cfg, LayoutWalk *w, ViTParams *p) {
    const int64_t D = cfg->dim, F = cfg->ffn_hidden, F1 = ffn_first_width(cfg);
    const int64_t patch_in = (int64_t)cfg->in_channels * cfg->patch_size * cfg->patch_size;
    const char *fc1_name = cfg->ffn == FFN_SWIGLU ? "gate_up_proj" : "up_proj";
    ViTParams ignored = {0};
    if (!p) p = &ignored;

    p->patch_w = layout_tensor(w, 1, 0, 2, MAT(D, patch_in), "embeddings.patch_embeddings.weight");
    p->patch_b = layout_tensor(w, 0, 0, 1, VEC(D), "embeddings.patch_embeddings.bias");
    p->cls_token = layout_tensor(w, 0, 0, 1, VEC(D), "embeddings.cls_token");
    p->register_tokens = cfg->registers > 0
        ? layout_tensor(w, 0, 0, 2, MAT(cfg->registers, D), "embeddings.register_tokens") : NULL;
    p->mask_token = layout_tensor(w, 0, 0, 1, VEC(D), "embeddings.mask_token");
    for (int i = 0; i < cfg->depth; i++) {
        ViTBlockParams ignored_block, *b = p->blocks ? &p->blocks[i] : &ignored_block;
        b->norm1_w = layout_tensor(w, 0, 0, 1, VEC(D), "layer.%d.norm1.weight", i);
        b->norm1_b = layout_tensor(w, 0, 0, 1, VEC(D), "layer.%d.norm1.bias", i);
        b->qkv_w = layout_tensor(w, 1, 0, 2, MAT(3 * D, D), "layer.%d.attention.qkv_proj.weight", i);
        b->qkv_b = cfg->qkv_bias
            ? layout_tensor(w, 0, (long)D, 1, VEC(3 * D), "layer.%d.attention.qkv_proj.bias", i) : NULL;
        b->proj_w = layout_tensor(w, 1, 0, 2, MAT(D, D), "layer.%d.attention.o_proj.weight", i);
        b->proj_b = layout_tensor(w, 0, 0, 1, VEC(D), "layer.%d.attention.o_proj.bias", i);
        b->ls1 = layout_tensor(w, 0, 0, 1, VEC(D), "layer.%d.layer_scale1.lambda1", i);
        b->norm2_w = layout_tensor(w, 0, 0, 1, VEC(D), "layer.%d.norm2.weight", i);
        b->norm2_b = layout_tensor(w, 0, 0, 1, VEC(D), "layer.%d.norm2.bias", i);
        b->fc1_w = layout_tensor(w, 1, 0, 2, MAT(F1, D), "layer.%d.mlp.%s.weight", i, fc1_name);
        b->fc1_b = layout_tensor(w, 0, 0, 1, VEC(F1), "layer.%d.mlp.%s.bias", i, fc1_name);
        b->fc2_w = layout_tensor(w, 1, 0, 2, MAT(D, F), "layer.%d.mlp.down_proj.weight", i);
        b->fc2_b = layout_tensor(w, 0, 0, 1, VEC(D), "layer.%d.mlp.down_proj.bias", i);
        b->ls2 = layout_tensor(w, 0, 0, 1, VEC(D), "layer.%d.layer_scale2.lambda1", i);
    }
    p->norm_w = layout_tensor(w, 0, 0, 1, VEC(D), "norm.weight");
    p->norm_b = layout_tensor(w, 0, 0, 1, VEC(D), "norm.bias");
}

int vit_tensor_count(const ViTConfig *cfg) {
    LayoutWalk w = {0};
    layout_walk(cfg, &w, NULL);
    return w.tensors;
}

size_t vit_tensor_layout(const ViTConfig *cfg, ViTTensorInfo *info) {
    LayoutWalk w = {.info = info};
    layout_walk(cfg, &w, NULL);
    return w.offset;
}

size_t vit_param_count(const ViTConfig *cfg) {
    int n = vit_tensor_count(cfg);
    ViTTensorInfo *info = malloc((size_t)n * sizeof *info);
    if (!info) return 0;
    size_t total = vit_tensor_layout(cfg, info);
    for (int i = 0; i < n; i++) total -= (size_t)info[i].masked;
    free(info);
    return total;
}

int vit_params_view(ViTParams *p, const ViTConfig *cfg, float *memory, DdError *err) {
    memset(p, 0, sizeof *p);
    p->blocks = calloc((size_t)cfg->depth, sizeof *p->blocks);
    if (!p->blocks) return dd_fail(err, "out of host memory for %d block views", cfg->depth);
    LayoutWalk w = {.memory = memory};
    layout_walk(cfg, &w, p);
    p->memory = memory;
    p->count = w.offset;
    return 0;
}

int vit_params_alloc(ViTParams *p, const ViTConfig *cfg, const NnBackend *be, DdError *err) {
    size_t count = vit_tensor_layout(cfg, NULL);
    float *memory = be->alloc(count * sizeof(float));
    if (!memory)
        return dd_fail(err, "model '%s': could not allocate %.1f MiB of %s memory for %zu parameters",
                       cfg->name, count * 4.0 / (1 << 20), be->name, count);
    if (vit_params_view(p, cfg, memory, err) != 0) {
        be->free(memory);
        return -1;
    }
    return 0;
}

void vit_params_free(ViTParams *p, const NnBackend *be) {
    if (be && p->memory) be->free(p->memory);
    free(p->blocks);
    memset(p, 0, sizeof *p);
}

int vit_params_init(ViTParams *p, const ViTConfig *cfg, const NnBackend *be, uint64_t seed, DdError *err) {
    int n = vit_tensor_count(cfg);
    ViTTensorInfo *info = malloc((size_t)n * sizeof *info);
    float *host = malloc(p->count * sizeof(float));
    if (!info || !host) {
        free(info);
        free(host);
        return dd_fail(err, "model '%s': out of host memory for initialisation", cfg->name);
    }
    vit_tensor_layout(cfg, info);
    for (int i = 0; i < n; i++) {
        const ViTTensorInfo *t = &info[i];
        float *x = host + t->offset;
        DdRandom rng = dd_random_seed(seed, (uint64_t)i);
        const char *leaf = strrchr(t->name, '.') + 1;
        int is_token = strstr(t->name, "_token") != NULL;
        if (t->decays || (is_token && !strstr(t->name, "mask_token"))) {
            for (size_t j = 0; j < t->count; j++) x[j] = (float)dd_random_truncated_normal(&rng, 0.02);
        } else if (strcmp(leaf, "lambda1") == 0) {
            for (size_t j = 0; j < t->count; j++) x[j] = cfg->layerscale_init;
        } else if (strcmp(leaf, "weight") == 0) {   /* LayerNorm weights */
            for (size_t j = 0; j < t->count; j++) x[j] = 1.0f;
        } else {                                      /* biases, mask token */
            memset(x, 0, t->count * sizeof(float));
        }
    }
    be->copy_to_device(p->memory, host, p->count * sizeof(float));
    free(host);
    free(info);
    return 0;
}

/* ---- activation layout --------------------------------------------------- */

typedef struct ActivationWalk {
    float *memory;   /* may be NULL: count only */
    size_t offset;
} ActivationWalk;

static float *take(ActivationWalk *w, size_t count) {
    float *address = w->memory ? w->memory + w->offset : NULL;
    w->offset += (count + 15) & ~(size_t)15;   /* keep every buffer 64-byte aligned */
    return address;
}

static void activation_walk(const ViTConfig *cfg, ViTActivations *a, ActivationWalk *w) {
    const size_t B = (size_t)a->B, T = (size_t)a->T, Np = (size_t)a->Np, D = (size_t)cfg->dim;
    const size_t F = (size_t)cfg->ffn_hidden, F1 = (size_t)ffn_first_width(cfg);
    const size_t H = (size_t)cfg->num_heads, Dh = D / H;
    const size_t patch_in = (size_t)cfg->in_channels * cfg->patch_size * cfg->patch_size;
    const size_t BT = B * T;

    a->patches = take(w, B * Np * patch_in);
    a->patch_emb = take(w, B * Np * D);
    a->tokens = take(w, BT * D);
    /* the LayerNorm outputs and the activation function's: one buffer each
     * for every block, also in training (vit_backward recomputes them) */
    float *ln = take(w, BT * D), *act = take(w, BT * F);
    int distinct_blocks = a->training ? cfg->depth : 1;
    for (int i = 0; i < cfg->depth; i++) {
        ViTBlockActivations *b = &a->blocks[i];
        if (i >= distinct_blocks) {
            *b = a->blocks[0];
            continue;
        }
        b->ln1 = b->ln2 = ln;
        b->act = act;
        b->ln1_mean = take(w, BT);
        b->ln1_rstd = take(w, BT);
        b->qkv = take(w, BT * 3 * D);
        b->lse = take(w, B * H * T);
        b->attn = take(w, BT * D);
        b->proj = take(w, BT * D);
        b->resid_mid = take(w, BT * D);
        b->ln2_mean = take(w, BT);
        b->ln2_rstd = take(w, BT);
        b->fc1 = take(w, BT * F1);
        b->fc2 = take(w, BT * D);
        b->resid_out = take(w, BT * D);
    }
    a->out = take(w, BT * D);
    a->out_mean = take(w, BT);
    a->out_rstd = take(w, BT);
    a->rope_sin = take(w, Np * Dh);
    a->rope_cos = take(w, Np * Dh);
    if (a->training) {
        a->d_resid = take(w, BT * D);
        a->d_ln = take(w, BT * D);
        a->d_attn = take(w, BT * D);
        a->d_branch = take(w, BT * D);
        a->d_qkv = take(w, BT * 3 * D);
        a->d_fc1 = take(w, BT * F1);
        a->d_act = take(w, BT * F);
        a->d_patch_emb = take(w, B * Np * D);
    }
}

static int activation_shape(ViTActivations *a, const ViTConfig *cfg, int B, int H_px, int W_px,
                            int training, DdError *err) {
    const int P = cfg->patch_size;
    if (B < 1 || H_px < P || W_px < P || H_px % P || W_px % P)
        return dd_fail(err, "model '%s': expected a batch >= 1 of images whose sides are positive "
                       "multiples of the patch size %d, found batch %d of %dx%d px",
                       cfg->name, P, B, H_px, W_px);
    memset(a, 0, sizeof *a);
    a->B = B;
    a->H_px = H_px;
    a->W_px = W_px;
    a->Hp = H_px / P;
    a->Wp = W_px / P;
    a->Np = a->Hp * a->Wp;
    a->T = 1 + cfg->registers + a->Np;
    a->training = training;
    return 0;
}

size_t vit_activation_count(const ViTConfig *cfg, int B, int H_px, int W_px, int training) {
    ViTActivations a;
    if (activation_shape(&a, cfg, B, H_px, W_px, training, NULL) != 0) return 0;
    ViTBlockActivations *blocks = calloc((size_t)cfg->depth, sizeof *blocks);
    if (!blocks) return 0;
    a.blocks = blocks;
    ActivationWalk w = {0};
    activation_walk(cfg, &a, &w);
    free(blocks);
    return w.offset;
}

int vit_activations_alloc(ViTActivations *a, const ViTConfig *cfg, const NnBackend *be,
                          int B, int H_px, int W_px, int training, DdError *err) {
    if (activation_shape(a, cfg, B, H_px, W_px, training, err) != 0) return -1;
    a->blocks = calloc((size_t)cfg->depth, sizeof *a->blocks);
    if (!a->blocks) return dd_fail(err, "out of host memory for %d block views", cfg->depth);
    ActivationWalk w = {0};
    activation_walk(cfg, a, &w);
    a->count = w.offset;
    a->memory = be->alloc(a->count * sizeof(float));
    if (!a->memory) {
        free(a->blocks);
        a->blocks = NULL;
        return dd_fail(err, "model '%s': could not allocate %.1f MiB of %s memory for activations "
                       "(batch %d, %dx%d px)", cfg->name, a->count * 4.0 / (1 << 20), be->name,
                       B, H_px, W_px);
    }
    w = (ActivationWalk){.memory = a->memory};
    activation_walk(cfg, a, &w);
    a->host_rope = malloc(2 * (size_t)a->Np * (cfg->dim / cfg->num_heads) * sizeof(float));
    if (!a->host_rope) {
        vit_activations_free(a, be);
        return dd_fail(err, "out of host memory for the RoPE tables");
    }
    return 0;
}

void vit_activations_free(ViTActivations *a, const NnBackend *be) {
    if (be && a->memory) be->free(a->memory);
    free(a->blocks);
    free(a->host_rope);
    memset(a, 0, sizeof *a);
}

void vit_set_rope(ViTActivations *a, const ViTConfig *cfg, const NnBackend *be, float rescale) {
    const int Dh = cfg->dim / cfg->num_heads;
    size_t count = (size_t)a->Np * Dh;
    rope_tables(a->host_rope, a->host_rope + count, a->Hp, a->Wp, Dh, cfg->rope_base, rescale);
    be->copy_to_device(a->rope_sin, a->host_rope, count * sizeof(float));
    be->copy_to_device(a->rope_cos, a->host_rope + count, count * sizeof(float));
}

/* ---- forward ------------------------------------------------------------- */

/* The three block steps whose outputs the backward recomputes rather than
 * keeps (one buffer serves every block): the same calls on the same
 * inputs, so the same values, bit for bit, on every backend. */
static void norm1_forward(const NnBackend *be, const ViTConfig *cfg, const ViTBlockParams *w,
                          ViTBlockActivations *s, const float *x, int BT) {
    be->layernorm_forward(s->ln1, s->ln1_mean, s->ln1_rstd, x, w->norm1_w, w->norm1_b, BT, cfg->dim,
                          cfg->norm_eps);
}

static void norm2_forward(const NnBackend *be, const ViTConfig *cfg, const ViTBlockParams *w,
                          ViTBlockActivations *s, int BT) {
    be->layernorm_forward(s->ln2, s->ln2_mean, s->ln2_rstd, s->resid_mid, w->norm2_w, w->norm2_b, BT,
                          cfg->dim, cfg->norm_eps);
}

static void ffn_activation_forward(const NnBackend *be, const ViTConfig *cfg, ViTBlockActivations *s, int BT) {
    if (cfg->ffn == FFN_SWIGLU)
        be->swiglu_forward(s->act, s->fc1, BT, cfg->ffn_hidden);
    else
        be->gelu_forward(s->act, s->fc1, (long)BT * cfg->ffn_hidden);
}

static void tell_layer(const ViTLayerHook *hook, int layer) {
    if (hook && hook->on_layer) hook->on_layer(hook->context, layer);
}

void vit_forward(const NnBackend *be, const ViTConfig *cfg, const ViTParams *p,
                 ViTActivations *a, const float *images, const uint8_t *mask) {
    vit_forward_hooked(be, cfg, p, a, images, mask, NULL);
}

void vit_forward_hooked(const NnBackend *be, const ViTConfig *cfg, const ViTParams *p, ViTActivations *a,
                        const float *images, const uint8_t *mask, const ViTLayerHook *before) {
    const int B = a->B, T = a->T, Np = a->Np, D = cfg->dim, R = cfg->registers;
    const int H = cfg->num_heads, Dh = D / H, F = cfg->ffn_hidden, F1 = ffn_first_width(cfg);
    const int P = cfg->patch_size, C = cfg->in_channels, BT = B * T;
    const float eps = cfg->norm_eps;

    tell_layer(before, 0);
    be->patchify(a->patches, images, B, C, a->H_px, a->W_px, P);
    be->matmul_forward(a->patch_emb, a->patches, p->patch_w, p->patch_b, B * Np, C * P * P, D);
    be->tokens_forward(a->tokens, a->patch_emb, p->cls_token, p->register_tokens, p->mask_token,
                       mask, B, Np, R, D);

    const float *x = a->tokens;   /* [B, T, D] residual stream */
    for (int l = 0; l < cfg->depth; l++) {
        const ViTBlockParams *w = &p->blocks[l];
        ViTBlockActivations *s = &a->blocks[l];
        tell_layer(before, l + 1);
        norm1_forward(be, cfg, w, s, x, BT);
        be->matmul_forward(s->qkv, s->ln1, w->qkv_w, w->qkv_b, BT, D, 3 * D);
        be->attention_forward(s->attn, s->lse, s->qkv, a->rope_sin, a->rope_cos, B, T, 1 + R, H, Dh);
        be->matmul_forward(s->proj, s->attn, w->proj_w, w->proj_b, BT, D, D);
        be->layerscale_residual_forward(s->resid_mid, x, s->proj, w->ls1, BT, D);

        norm2_forward(be, cfg, w, s, BT);
        be->matmul_forward(s->fc1, s->ln2, w->fc1_w, w->fc1_b, BT, D, F1);
        ffn_activation_forward(be, cfg, s, BT);
        be->matmul_forward(s->fc2, s->act, w->fc2_w, w->fc2_b, BT, F, D);
        be->layerscale_residual_forward(s->resid_out, s->resid_mid, s->fc2, w->ls2, BT, D);
        x = s->resid_out;
    }
    tell_layer(before, cfg->depth + 1);
    be->layernorm_forward(a->out, a->out_mean, a->out_rstd, x, p->norm_w, p->norm_b, BT, D, eps);
}

/* ---- backward ------------------------------------------------------------ */


void vit_backward(const NnBackend *be, const ViTConfig *cfg, const ViTParams *p, ViTParams *g,
                  ViTActivations *a, const float *dout, const uint8_t *mask, const ViTLayerHook *hook) {
    const int B = a->B, T = a->T, Np = a->Np, D = cfg->dim, R = cfg->registers;
    const int H = cfg->num_heads, Dh = D / H, F = cfg->ffn_hidden, F1 = ffn_first_width(cfg);
    const int P = cfg->patch_size, C = cfg->in_channels, BT = B * T;
    const size_t row_bytes = (size_t)BT * D * sizeof(float);

    const float *x_last = cfg->depth > 0 ? a->blocks[cfg->depth - 1].resid_out : a->tokens;
    be->zero(a->d_resid, row_bytes);
    be->layernorm_backward(a->d_resid, g->norm_w, g->norm_b, dout, x_last, p->norm_w,
                           a->out_mean, a->out_rstd, BT, D);
    tell_layer(hook, cfg->depth + 1);

    /* a->d_resid carries the gradient of the residual stream down the
     * blocks: each branch adds its input gradient into it in place. */
    for (int l = cfg->depth - 1; l >= 0; l--) {
        const ViTBlockParams *w = &p->blocks[l];
        ViTBlockParams *gw = &g->blocks[l];
        ViTBlockActivations *s = &a->blocks[l];
        const float *x_in = l > 0 ? a->blocks[l - 1].resid_out : a->tokens;

        /* resid_out = resid_mid + ls2 * fc2(act(fc1(norm2(resid_mid)))) */
        be->zero(a->d_branch, row_bytes);
        be->layerscale_residual_backward(NULL, a->d_branch, gw->ls2, a->d_resid, s->fc2, w->ls2, BT, D);
        ffn_activation_forward(be, cfg, s, BT);   /* act, recomputed from fc1 */
        be->zero(a->d_act, (size_t)BT * F * sizeof(float));
        be->matmul_backward(a->d_act, gw->fc2_w, gw->fc2_b, a->d_branch, s->act, w->fc2_w, BT, F, D);
        be->zero(a->d_fc1, (size_t)BT * F1 * sizeof(float));
        if (cfg->ffn == FFN_SWIGLU)
            be->swiglu_backward(a->d_fc1, a->d_act, s->fc1, BT, F);
        else
            be->gelu_backward(a->d_fc1, a->d_act, s->fc1, (long)BT * F);
        norm2_forward(be, cfg, w, s, BT);   /* ln2, recomputed from resid_mid */
        be->zero(a->d_ln, row_bytes);
        be->matmul_backward(a->d_ln, gw->fc1_w, gw->fc1_b, a->d_fc1, s->ln2, w->fc1_w, BT, D, F1);
        be->layernorm_backward(a->d_resid, gw->norm2_w, gw->norm2_b, a->d_ln, s->resid_mid,
                               w->norm2_w, s->ln2_mean, s->ln2_rstd, BT, D);

        /* resid_mid = x_in + ls1 * proj(attention(rope(qkv(norm1(x_in))))) */
        be->zero(a->d_branch, row_bytes);
        be->layerscale_residual_backward(NULL, a->d_branch, gw->ls1, a->d_resid, s->proj, w->ls1, BT, D);
        be->zero(a->d_attn, row_bytes);
        be->matmul_backward(a->d_attn, gw->proj_w, gw->proj_b, a->d_branch, s->attn, w->proj_w, BT, D, D);
        be->zero(a->d_qkv, 3 * row_bytes);
        be->attention_backward(a->d_qkv, a->d_attn, s->qkv, s->attn, s->lse, a->rope_sin,
                               a->rope_cos, B, T, 1 + R, H, Dh);
        norm1_forward(be, cfg, w, s, x_in, BT);   /* ln1, recomputed from x_in */
        be->zero(a->d_ln, row_bytes);
        be->matmul_backward(a->d_ln, gw->qkv_w, gw->qkv_b, a->d_qkv, s->ln1, w->qkv_w, BT, D, 3 * D);
        if (gw->qkv_b) be->zero(gw->qkv_b + D, (size_t)D * sizeof(float));   /* the key bias is masked */
        be->layernorm_backward(a->d_resid, gw->norm1_w, gw->norm1_b, a->d_ln, x_in, w->norm1_w,
                               s->ln1_mean, s->ln1_rstd, BT, D);
        tell_layer(hook, l + 1);
    }

    be->zero(a->d_patch_emb, (size_t)B * Np * D * sizeof(float));
    be->tokens_backward(a->d_patch_emb, g->cls_token, g->register_tokens, g->mask_token, a->d_resid,
                        mask, B, Np, R, D);
    be->matmul_backward(NULL, g->patch_w, g->patch_b, a->d_patch_emb, a->patches, p->patch_w,
                        B * Np, C * P * P, D);
    tell_layer(hook, 0);
}

/* ---- cost ---------------------------------------------------------------- */

double vit_forward_flops(const ViTConfig *cfg, int H_px, int W_px) {
    const double P = cfg->patch_size, D = cfg->dim;
    const double Np = (double)(H_px / cfg->patch_size) * (W_px / cfg->patch_size);
    const double T = 1 + cfg->registers + Np;
    const double F = cfg->ffn_hidden, F1 = ffn_first_width(cfg);
    double patch = 2.0 * Np * cfg->in_channels * P * P * D;
    double block = 2.0 * T * D * (3 * D)   /* qkv */
                 + 2.0 * 2.0 * T * T * D   /* q k^T and probs v */
                 + 2.0 * T * D * D         /* o_proj */
                 + 2.0 * T * D * F1        /* fc1 (or gate and up) */
                 + 2.0 * T * F * D;        /* fc2 */
    return patch + cfg->depth * block;
}

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

/* Floats of one block in the layout. */
static size_t block_float_count(const ViTConfig *cfg) {
    ViTConfig one = *cfg, none = *cfg;
    one.depth = 1, none.depth = 0;
    return vit_tensor_layout(&one, NULL) - vit_tensor_layout(&none, NULL);
}

size_t vit_params_bf16_bytes(const ViTConfig *cfg, int whole) {
    return (whole ? vit_tensor_layout(cfg, NULL) : block_float_count(cfg)) * sizeof(uint16_t);
}

int vit_params_alloc_bf16(ViTParams *p, const ViTConfig *cfg, const NnBackend *be, int whole, DdError *err) {
    if (!be->block_bf16) return 0;
    const size_t bytes = vit_params_bf16_bytes(cfg, whole);
    p->bf16 = be->alloc(bytes);
    p->bf16_blocks = whole ? cfg->depth : 1;
    if (!p->bf16)
        return dd_fail(err, "model '%s': could not allocate %.1f MiB of %s memory for the bf16 copy of "
                       "its block matrices", cfg->name, bytes / 1048576.0, be->name);
    return 0;
}

void vit_params_free(ViTParams *p, const NnBackend *be) {
    if (be && p->memory) be->free(p->memory);
    if (be && p->bf16) be->free(p->bf16);
    free(p->blocks);
    memset(p, 0, sizeof *p);
}

/* ---- the bf16 copy of the block matrices ---------------------------------- */

uint16_t *vit_bf16_copy_of(const ViTParams *p, int l, const float *at) {
    const float *origin = p->bf16_blocks > 1 ? p->memory : p->blocks[l].norm1_w;
    return p->bf16 + (at - origin);
}

/* The floats of a block's matrices: qkv, proj, fc1, fc2. */
static void block_matrix_counts(const ViTConfig *cfg, long counts[VIT_BLOCK_MATRICES]) {
    const long D = cfg->dim, F = cfg->ffn_hidden, F1 = ffn_first_width(cfg);
    counts[0] = 3 * D * D, counts[1] = D * D, counts[2] = F1 * D, counts[3] = D * F;
}

void vit_block_matrices(const ViTConfig *cfg, const ViTParams *p, int l, ViTMatrix out[VIT_BLOCK_MATRICES]) {
    const ViTBlockParams *w = &p->blocks[l];
    long counts[VIT_BLOCK_MATRICES];
    block_matrix_counts(cfg, counts);
    float *const tensors[VIT_BLOCK_MATRICES] = {w->qkv_w, w->proj_w, w->fc1_w, w->fc2_w};
    for (int i = 0; i < VIT_BLOCK_MATRICES; i++) out[i] = (ViTMatrix){tensors[i], counts[i]};
}

size_t vit_block_matrix_floats(const ViTConfig *cfg) {
    long counts[VIT_BLOCK_MATRICES], block = 0;
    block_matrix_counts(cfg, counts);
    for (int i = 0; i < VIT_BLOCK_MATRICES; i++) block += counts[i];
    return (size_t)block * (size_t)cfg->depth;
}

/* Casts block l's four matrices into p->bf16. */
static void cast_block_matrices(const NnBackend *be, const ViTConfig *cfg, const ViTParams *p, int l) {
    ViTMatrix matrices[VIT_BLOCK_MATRICES];
    vit_block_matrices(cfg, p, l, matrices);
    for (int i = 0; i < VIT_BLOCK_MATRICES; i++)
        be->cast_to_bf16(vit_bf16_copy_of(p, l, matrices[i].tensor), matrices[i].tensor, matrices[i].count);
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
    char *memory;      /* may be NULL: count only */
    size_t bytes;      /* so far */
    size_t inner;      /* bytes of one value inside a block: 2 (bf16) or 4 */
} ActivationWalk;

/* count values of `size` bytes each; every buffer 64-byte aligned. */
static void *take_sized(ActivationWalk *w, size_t count, size_t size) {
    void *address = w->memory ? w->memory + w->bytes : NULL;
    w->bytes += (count * size + 63) & ~(size_t)63;
    return address;
}

static float *take(ActivationWalk *w, size_t count) { return take_sized(w, count, sizeof(float)); }
static void *take_inner(ActivationWalk *w, size_t count) { return take_sized(w, count, w->inner); }

static void activation_walk(const ViTConfig *cfg, ViTActivations *a, ActivationWalk *w) {
    const size_t B = (size_t)a->B, T = (size_t)a->T, Np = (size_t)a->Np, D = (size_t)cfg->dim;
    const size_t F = (size_t)cfg->ffn_hidden, F1 = (size_t)ffn_first_width(cfg);
    const size_t H = (size_t)cfg->num_heads, Dh = D / H;
    const size_t patch_in = (size_t)cfg->in_channels * cfg->patch_size * cfg->patch_size;
    const size_t BT = B * T;
    w->inner = a->block_bf16 ? sizeof(uint16_t) : sizeof(float);

    a->patches = take(w, B * Np * patch_in);
    a->patch_emb = take(w, B * Np * D);
    a->tokens = take(w, BT * D);
    /* the LayerNorm outputs and the activation function's: one buffer each
     * for every block, also in training (vit_backward recomputes them) */
    void *ln = take_inner(w, BT * D), *act = take_inner(w, BT * F);
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
        b->qkv = take_inner(w, BT * 3 * D);
        b->lse = take(w, B * H * T);
        b->attn = take_inner(w, BT * D);
        b->proj = take_inner(w, BT * D);
        b->resid_mid = take(w, BT * D);
        b->ln2_mean = take(w, BT);
        b->ln2_rstd = take(w, BT);
        b->fc1 = take_inner(w, BT * F1);
        b->fc2 = take_inner(w, BT * D);
        b->resid_out = take(w, BT * D);
    }
    a->out = take(w, BT * D);
    a->out_mean = take(w, BT);
    a->out_rstd = take(w, BT);
    a->rope_sin = take(w, Np * Dh);
    a->rope_cos = take(w, Np * Dh);
    if (a->training) {
        a->d_resid = take(w, BT * D);
        a->d_ln = take_inner(w, BT * D);
        a->d_attn = take_inner(w, BT * D);
        a->d_branch = take_inner(w, BT * D);
        a->d_qkv = take_inner(w, BT * 3 * D);
        a->d_fc1 = take_inner(w, BT * F1);
        a->d_act = take_inner(w, BT * F);
        a->d_patch_emb = take(w, B * Np * D);
    }
}

static int activation_shape(ViTActivations *a, const ViTConfig *cfg, int B, int H_px, int W_px,
                            int training, int block_bf16, DdError *err) {
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
    a->block_bf16 = block_bf16;
    return 0;
}

size_t vit_activation_bytes(const ViTConfig *cfg, int B, int H_px, int W_px, int training, int block_bf16) {
    ViTActivations a;
    if (activation_shape(&a, cfg, B, H_px, W_px, training, block_bf16, NULL) != 0) return 0;
    ViTBlockActivations *blocks = calloc((size_t)cfg->depth, sizeof *blocks);
    if (!blocks) return 0;
    a.blocks = blocks;
    ActivationWalk w = {0};
    activation_walk(cfg, &a, &w);
    free(blocks);
    return w.bytes;
}

int vit_activations_alloc(ViTActivations *a, const ViTConfig *cfg, const NnBackend *be,
                          int B, int H_px, int W_px, int training, DdError *err) {
    if (activation_shape(a, cfg, B, H_px, W_px, training, be->block_bf16, err) != 0) return -1;
    a->blocks = calloc((size_t)cfg->depth, sizeof *a->blocks);
    if (!a->blocks) return dd_fail(err, "out of host memory for %d block views", cfg->depth);
    ActivationWalk w = {0};
    activation_walk(cfg, a, &w);
    a->bytes = w.bytes;
    a->memory = be->alloc(a->bytes);
    if (!a->memory) {
        free(a->blocks);
        a->blocks = NULL;
        return dd_fail(err, "model '%s': could not allocate %.1f MiB of %s memory for activations "
                       "(batch %d, %dx%d px)", cfg->name, a->bytes / 1048576.0, be->name,
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

/* ---- the block's ops in its precision ------------------------------------ */

/* What a block's ops need to pick the fp32 entry or its _bf16 twin
 * (backend.h): the blocks' inner tensors are void * and bf16 when the
 * activation set says so; matrices are then read from p's bf16 copy. */
typedef struct BlockRun {
    const NnBackend *be;
    const ViTConfig *cfg;
    const ViTParams *p;
    int bf16;          /* the activation set's block_bf16 */
    size_t inner;      /* bytes of one inner value */
} BlockRun;

static BlockRun block_run(const NnBackend *be, const ViTConfig *cfg, const ViTParams *p, const ViTActivations *a) {
    if (a->block_bf16 && (!p->bf16 || !be->matmul_forward_bf16)) {
        /* a set allocated on one backend run on another, or parameters
         * allocated as a view: a programming error, not an input error */
        fprintf(stderr, "vit: model '%s': activations keep their blocks in bf16 but %s\n", cfg->name,
                !p->bf16 ? "the parameters have no bf16 copy (allocate them with vit_params_alloc_bf16)"
                         : "the backend has no bf16 block entries");
        abort();
    }
    return (BlockRun){be, cfg, p, a->block_bf16, a->block_bf16 ? sizeof(uint16_t) : sizeof(float)};
}

static void block_zero(const BlockRun *r, void *x, size_t count) { r->be->zero(x, count * r->inner); }

/* out[N, OC] = inp[N, C] @ weight^T + bias, weight a matrix of block l of p. */
static void block_matmul_forward(const BlockRun *r, int l, void *out, const void *inp, const float *weight,
                                 const float *bias, int N, int C, int OC) {
    if (r->bf16) r->be->matmul_forward_bf16(out, inp, vit_bf16_copy_of(r->p, l, weight), bias, N, C, OC);
    else r->be->matmul_forward(out, inp, weight, bias, N, C, OC);
}

static void block_matmul_backward(const BlockRun *r, int l, void *dinp, float *dweight, float *dbias,
                                  const void *dout, const void *inp, const float *weight, int N, int C, int OC) {
    if (r->bf16)
        r->be->matmul_backward_bf16(dinp, dweight, dbias, dout, inp, vit_bf16_copy_of(r->p, l, weight), N, C, OC);
    else
        r->be->matmul_backward(dinp, dweight, dbias, dout, inp, weight, N, C, OC);
}

/* out (inner) from the fp32 residual x. */
static void block_layernorm_forward(const BlockRun *r, void *out, float *mean, float *rstd, const float *x,
                                    const float *weight, const float *bias, int N) {
    const int C = r->cfg->dim;
    const float eps = r->cfg->norm_eps;
    if (r->bf16) r->be->layernorm_forward_bf16(out, mean, rstd, x, weight, bias, N, C, eps);
    else r->be->layernorm_forward(out, mean, rstd, x, weight, bias, N, C, eps);
}

/* dx (fp32, the residual's gradient) += from dout (inner). */
static void block_layernorm_backward(const BlockRun *r, float *dx, float *dweight, float *dbias, const void *dout,
                                     const float *x, const float *weight, const float *mean, const float *rstd,
                                     int N) {
    const int C = r->cfg->dim;
    if (r->bf16) r->be->layernorm_backward_bf16(dx, dweight, dbias, dout, x, weight, mean, rstd, N, C);
    else r->be->layernorm_backward(dx, dweight, dbias, dout, x, weight, mean, rstd, N, C);
}

static void block_attention_forward(const BlockRun *r, const ViTActivations *a, ViTBlockActivations *s) {
    const int H = r->cfg->num_heads, Dh = r->cfg->dim / H, prefix = 1 + r->cfg->registers;
    if (r->bf16)
        r->be->attention_forward_bf16(s->attn, s->lse, s->qkv, a->rope_sin, a->rope_cos, a->B, a->T, prefix, H, Dh);
    else
        r->be->attention_forward(s->attn, s->lse, s->qkv, a->rope_sin, a->rope_cos, a->B, a->T, prefix, H, Dh);
}

/* a->d_qkv += the gradient of block s's attention from a->d_attn. */
static void block_attention_backward(const BlockRun *r, const ViTActivations *a, const ViTBlockActivations *s) {
    const int H = r->cfg->num_heads, Dh = r->cfg->dim / H, prefix = 1 + r->cfg->registers;
    if (r->bf16)
        r->be->attention_backward_bf16(a->d_qkv, a->d_attn, s->qkv, s->attn, s->lse, a->rope_sin, a->rope_cos,
                                       a->B, a->T, prefix, H, Dh);
    else
        r->be->attention_backward(a->d_qkv, a->d_attn, s->qkv, s->attn, s->lse, a->rope_sin, a->rope_cos,
                                  a->B, a->T, prefix, H, Dh);
}

/* act = gelu(fc1) or swiglu(fc1), over BT rows. */
static void block_ffn_activation_forward(const BlockRun *r, ViTBlockActivations *s, int BT) {
    const int F = r->cfg->ffn_hidden;
    if (r->cfg->ffn == FFN_SWIGLU) {
        if (r->bf16) r->be->swiglu_forward_bf16(s->act, s->fc1, BT, F);
        else r->be->swiglu_forward(s->act, s->fc1, BT, F);
    } else {
        if (r->bf16) r->be->gelu_forward_bf16(s->act, s->fc1, (long)BT * F);
        else r->be->gelu_forward(s->act, s->fc1, (long)BT * F);
    }
}

/* a->d_fc1 += the gradient of the activation function from a->d_act. */
static void block_ffn_activation_backward(const BlockRun *r, const ViTActivations *a, const ViTBlockActivations *s,
                                          int BT) {
    const int F = r->cfg->ffn_hidden;
    if (r->cfg->ffn == FFN_SWIGLU) {
        if (r->bf16) r->be->swiglu_backward_bf16(a->d_fc1, a->d_act, s->fc1, BT, F);
        else r->be->swiglu_backward(a->d_fc1, a->d_act, s->fc1, BT, F);
    } else {
        if (r->bf16) r->be->gelu_backward_bf16(a->d_fc1, a->d_act, s->fc1, (long)BT * F);
        else r->be->gelu_backward(a->d_fc1, a->d_act, s->fc1, (long)BT * F);
    }
}

/* out = res + gamma * y, y the branch's output (inner), res and out fp32. */
static void block_layerscale_forward(const BlockRun *r, float *out, const float *res, const void *y,
                                     const float *gamma, int N) {
    if (r->bf16) r->be->layerscale_residual_forward_bf16(out, res, y, gamma, N, r->cfg->dim);
    else r->be->layerscale_residual_forward(out, res, y, gamma, N, r->cfg->dim);
}

/* dy (inner) += dout * gamma, dgamma += sum of dout * y; the residual keeps dout (dres NULL). */
static void block_layerscale_backward(const BlockRun *r, void *dy, float *dgamma, const float *dout, const void *y,
                                      const float *gamma, int N) {
    if (r->bf16) r->be->layerscale_residual_backward_bf16(NULL, dy, dgamma, dout, y, gamma, N, r->cfg->dim);
    else r->be->layerscale_residual_backward(NULL, dy, dgamma, dout, y, gamma, N, r->cfg->dim);
}

/* ---- forward ------------------------------------------------------------- */

/* The block steps whose outputs the backward recomputes rather than keeps
 * (one buffer serves every block): the same calls on the same inputs, so
 * the same values, bit for bit, on every backend. */
static void norm1_forward(const BlockRun *r, const ViTBlockParams *w, ViTBlockActivations *s, const float *x, int BT) {
    block_layernorm_forward(r, s->ln1, s->ln1_mean, s->ln1_rstd, x, w->norm1_w, w->norm1_b, BT);
}

static void norm2_forward(const BlockRun *r, const ViTBlockParams *w, ViTBlockActivations *s, int BT) {
    block_layernorm_forward(r, s->ln2, s->ln2_mean, s->ln2_rstd, s->resid_mid, w->norm2_w, w->norm2_b, BT);
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
    const int B = a->B, Np = a->Np, D = cfg->dim, R = cfg->registers;
    const int F = cfg->ffn_hidden, F1 = ffn_first_width(cfg);
    const int P = cfg->patch_size, C = cfg->in_channels, BT = B * a->T;
    const BlockRun run = block_run(be, cfg, p, a), *r = &run;

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
        if (r->bf16 && !p->bf16_current) cast_block_matrices(be, cfg, p, l);
        norm1_forward(r, w, s, x, BT);
        block_matmul_forward(r, l, s->qkv, s->ln1, w->qkv_w, w->qkv_b, BT, D, 3 * D);
        block_attention_forward(r, a, s);
        block_matmul_forward(r, l, s->proj, s->attn, w->proj_w, w->proj_b, BT, D, D);
        block_layerscale_forward(r, s->resid_mid, x, s->proj, w->ls1, BT);

        norm2_forward(r, w, s, BT);
        block_matmul_forward(r, l, s->fc1, s->ln2, w->fc1_w, w->fc1_b, BT, D, F1);
        block_ffn_activation_forward(r, s, BT);
        block_matmul_forward(r, l, s->fc2, s->act, w->fc2_w, w->fc2_b, BT, F, D);
        block_layerscale_forward(r, s->resid_out, s->resid_mid, s->fc2, w->ls2, BT);
        x = s->resid_out;
    }
    tell_layer(before, cfg->depth + 1);
    be->layernorm_forward(a->out, a->out_mean, a->out_rstd, x, p->norm_w, p->norm_b, BT, D, cfg->norm_eps);
}

/* ---- backward ------------------------------------------------------------ */

void vit_backward(const NnBackend *be, const ViTConfig *cfg, const ViTParams *p, ViTParams *g,
                  ViTActivations *a, const float *dout, const uint8_t *mask, const ViTLayerHook *hook) {
    const int B = a->B, Np = a->Np, D = cfg->dim, R = cfg->registers;
    const int F = cfg->ffn_hidden, F1 = ffn_first_width(cfg);
    const int P = cfg->patch_size, C = cfg->in_channels, BT = B * a->T;
    const size_t rows = (size_t)BT * D;
    const BlockRun run = block_run(be, cfg, p, a), *r = &run;

    const float *x_last = cfg->depth > 0 ? a->blocks[cfg->depth - 1].resid_out : a->tokens;
    be->zero(a->d_resid, rows * sizeof(float));
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
        if (r->bf16 && p->bf16_blocks == 1) cast_block_matrices(be, cfg, p, l);   /* the slot holds another block */

        /* resid_out = resid_mid + ls2 * fc2(act(fc1(norm2(resid_mid)))) */
        block_zero(r, a->d_branch, rows);
        block_layerscale_backward(r, a->d_branch, gw->ls2, a->d_resid, s->fc2, w->ls2, BT);
        block_ffn_activation_forward(r, s, BT);   /* act, recomputed from fc1 */
        block_zero(r, a->d_act, (size_t)BT * F);
        block_matmul_backward(r, l, a->d_act, gw->fc2_w, gw->fc2_b, a->d_branch, s->act, w->fc2_w, BT, F, D);
        block_zero(r, a->d_fc1, (size_t)BT * F1);
        block_ffn_activation_backward(r, a, s, BT);
        norm2_forward(r, w, s, BT);   /* ln2, recomputed from resid_mid */
        block_zero(r, a->d_ln, rows);
        block_matmul_backward(r, l, a->d_ln, gw->fc1_w, gw->fc1_b, a->d_fc1, s->ln2, w->fc1_w, BT, D, F1);
        block_layernorm_backward(r, a->d_resid, gw->norm2_w, gw->norm2_b, a->d_ln, s->resid_mid, w->norm2_w,
                                 s->ln2_mean, s->ln2_rstd, BT);

        /* resid_mid = x_in + ls1 * proj(attention(rope(qkv(norm1(x_in))))) */
        block_zero(r, a->d_branch, rows);
        block_layerscale_backward(r, a->d_branch, gw->ls1, a->d_resid, s->proj, w->ls1, BT);
        block_zero(r, a->d_attn, rows);
        block_matmul_backward(r, l, a->d_attn, gw->proj_w, gw->proj_b, a->d_branch, s->attn, w->proj_w, BT, D, D);
        block_zero(r, a->d_qkv, 3 * rows);
        block_attention_backward(r, a, s);
        norm1_forward(r, w, s, x_in, BT);   /* ln1, recomputed from x_in */
        block_zero(r, a->d_ln, rows);
        block_matmul_backward(r, l, a->d_ln, gw->qkv_w, gw->qkv_b, a->d_qkv, s->ln1, w->qkv_w, BT, D, 3 * D);
        if (gw->qkv_b) be->zero(gw->qkv_b + D, (size_t)D * sizeof(float));   /* the key bias is masked */
        block_layernorm_backward(r, a->d_resid, gw->norm1_w, gw->norm1_b, a->d_ln, x_in, w->norm1_w,
                                 s->ln1_mean, s->ln1_rstd, BT);
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

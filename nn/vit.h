/*
 * vit.h - the DINOv3 ViT backbone: parameter layout, activations, forward
 * and backward, written once against the op API of backend.h.
 *
 * Token order is [CLS, reg x R, patches]; patch tokens carry 2-D RoPE in
 * attention, the prefix tokens do not. One block is
 *     x = x + ls1 * attn(norm1(x));   x = x + ls2 * ffn(norm2(x))
 * and the output is norm(x) for every token.
 *
 * Memory: parameters live in one allocation with named views (ViTParams);
 * a gradient buffer has the same layout. Activations for one crop size and
 * batch live in one allocation (ViTActivations); a training step with
 * multi-crop holds one ViTActivations per crop size and accumulates the
 * gradients of both into the same ViTParams gradient. Training keeps, per
 * block, what the backward cannot cheaply redo (12 D values per token with
 * the GELU MLP's F = 4D: the residual stream's 2 D in fp32, 10 D inside the
 * block, in bf16 on a backend that keeps blocks in bf16); the two LayerNorm
 * outputs and the activation function's output (6 D per token) share one
 * buffer each over all blocks and the backward recomputes them from what
 * is kept (three memory-bound kernels per block, the same values bit for
 * bit).
 */
#ifndef DD_NN_VIT_H
#define DD_NN_VIT_H

#include <stddef.h>
#include <stdint.h>

#include "nn/backend.h"
#include "nn/error.h"
#include "nn/vit_config.h"

/* ---- parameters ------------------------------------------------------- */

typedef struct ViTBlockParams {
    float *norm1_w, *norm1_b;   /* [D] */
    float *qkv_w;               /* [3D, D]  rows: q, k, v */
    float *qkv_b;               /* [3D] (k third held at zero) or NULL */
    float *proj_w, *proj_b;     /* [D, D], [D] */
    float *ls1;                 /* [D] */
    float *norm2_w, *norm2_b;   /* [D] */
    float *fc1_w, *fc1_b;       /* MLP: [F, D], [F]; SwiGLU: [2F, D], [2F] (gate rows, then up rows) */
    float *fc2_w, *fc2_b;       /* [D, F], [D] */
    float *ls2;                 /* [D] */
} ViTBlockParams;

typedef struct ViTParams {
    float *memory;              /* the one allocation all views point into */
    size_t count;               /* floats in memory */
    /* bf16 copies of the block matrices, for the GEMMs of blocks kept in
     * bf16 (NnBackend.block_bf16), allocated by vit_params_alloc_bf16 for
     * the parameters a forward reads (not for gradients or moments), NULL
     * otherwise; freed with them. Every forward casts each block's matrices
     * just before the block reads them, so a change to memory is never
     * missed, unless bf16_current says the copy is already filled.
     * bf16_blocks = depth: a copy of the whole layout at memory's offsets,
     * which the backward reads again (a trained model); bf16_blocks = 1:
     * one block's slot that the forward and the backward fill block by
     * block (a frozen model: 2 B per parameter of one block, not of all,
     * for one more cast per block in a backward). */
    uint16_t *bf16;
    int bf16_blocks;
    /* 1: a whole copy holds bf16 of every block matrix's current weights,
     * written by whoever set it (the bf16 gather of a sharded student,
     * students/param_gather.c, which leaves the fp32 matrices of other
     * ranks' shards stale): the forward reads it as it is and does not
     * cast. Whoever sets it clears it before the weights change again
     * (student_update). 0, the default: the forward casts. */
    int bf16_current;
    float *patch_w, *patch_b;   /* [D, C*P*P], [D] */
    float *cls_token;           /* [D] */
    float *register_tokens;     /* [R, D] */
    float *mask_token;          /* [D] */
    ViTBlockParams *blocks;     /* [depth], host array of views */
    float *norm_w, *norm_b;     /* [D] */
} ViTParams;

/* A matrix of a block whose bf16 copy the block's GEMMs read. */
typedef struct ViTMatrix {
    float *tensor;
    long count;
} ViTMatrix;
enum { VIT_BLOCK_MATRICES = 4 };

/* Block l's matrices in memory order: qkv [3D, D], proj [D, D], fc1
 * [F1, D], fc2 [D, F]. */
void vit_block_matrices(const ViTConfig *cfg, const ViTParams *p, int l, ViTMatrix out[VIT_BLOCK_MATRICES]);
/* The floats of every block's matrices together. */
size_t vit_block_matrix_floats(const ViTConfig *cfg);
/* Where the bf16 copy of the element at `at` (in block l's matrices) is:
 * at memory's offset in a whole copy, at the block's offset in a slot. */
uint16_t *vit_bf16_copy_of(const ViTParams *p, int l, const float *at);

/* One named tensor of the layout, in the order it sits in memory. Names
 * follow Hugging Face DINOv3ViTModel where a tensor exists there; q, k, v
 * and gate, up are stored fused (attention.qkv_proj, mlp.gate_up_proj). */
enum { VIT_TENSOR_NAME_MAX = 64, VIT_TENSOR_MAX_DIMS = 4 };
typedef struct ViTTensorInfo {
    char name[VIT_TENSOR_NAME_MAX];
    int ndim;
    int64_t shape[VIT_TENSOR_MAX_DIMS];
    size_t offset;              /* in floats from the start of ViTParams.memory */
    size_t count;
    int decays;                 /* 1: weight decay applies (matrices); 0: biases, norms, LayerScale, tokens */
    long masked;                /* floats held at zero and not trained (the key bias) */
} ViTTensorInfo;

/* Number of tensors in the layout. */
int vit_tensor_count(const ViTConfig *cfg);
/* Fills info[0 .. vit_tensor_count-1]; returns the total float count. */
size_t vit_tensor_layout(const ViTConfig *cfg, ViTTensorInfo *info);
/* Trainable backbone parameters (excludes the masked key bias). */
size_t vit_param_count(const ViTConfig *cfg);

/* Allocates params on the backend (zeroed) and points the views. */
int vit_params_alloc(ViTParams *p, const ViTConfig *cfg, const NnBackend *be, DdError *err);
void vit_params_free(ViTParams *p, const NnBackend *be);
/* Points the views of p into memory (count floats), for a second buffer of
 * the same layout (gradients, moments) or for host-side copies. */
int vit_params_view(ViTParams *p, const ViTConfig *cfg, float *memory, DdError *err);
/* Allocates p->bf16 when be keeps blocks in bf16 (else leaves it NULL):
 * for parameters that vit_forward will read; whole = 1 copies every block
 * (training), 0 one block's slot (inference). */
int vit_params_alloc_bf16(ViTParams *p, const ViTConfig *cfg, const NnBackend *be, int whole, DdError *err);
/* Bytes of that copy (0 when be does not keep blocks in bf16). */
size_t vit_params_bf16_bytes(const ViTConfig *cfg, int whole);
/* DINOv3-style initialisation from a seed: truncated-normal (std 0.02)
 * matrices and tokens, zero biases, unit norms, LayerScale = layerscale_init.
 * Identical on every backend (drawn on the host, then copied). */
int vit_params_init(ViTParams *p, const ViTConfig *cfg, const NnBackend *be, uint64_t seed, DdError *err);

/* ---- activations ------------------------------------------------------ */

/* One block's. The block's inner tensors (void *) are bf16 (uint16_t)
 * when the set's block_bf16 is 1, else fp32; the residual stream and the
 * statistics are always fp32. ln1, ln2 and act point into buffers that
 * every block shares (recomputed by the backward), the others are the
 * block's own in training. */
typedef struct ViTBlockActivations {
    void *ln1;                          /* [B,T,D] inner */
    float *ln1_mean, *ln1_rstd;         /* [B,T], [B,T] */
    void *qkv;                          /* [B,T,3D] inner, unrotated (attention applies RoPE) */
    float *lse;                         /* [B,H,T] log-sum-exp of each attention row */
    void *attn;                         /* [B,T,D] inner */
    void *proj;                         /* [B,T,D] inner */
    float *resid_mid;                   /* [B,T,D]  x after the attention branch */
    void *ln2;                          /* [B,T,D] inner */
    float *ln2_mean, *ln2_rstd;         /* [B,T], [B,T] */
    void *fc1;                          /* [B,T,F] or [B,T,2F] inner */
    void *act;                          /* [B,T,F] inner */
    void *fc2;                          /* [B,T,D] inner */
    float *resid_out;                   /* [B,T,D]  block output */
} ViTBlockActivations;

typedef struct ViTActivations {
    int B, H_px, W_px;                  /* batch and image size */
    int Hp, Wp, Np, T;                  /* patch grid, patches, tokens (1 + R + Np) */
    int training;                       /* 0: forward only, one block's buffers reused */
    int block_bf16;                     /* 1: the blocks' inner tensors are bf16 (the backend's block_bf16) */
    void *memory;                       /* the one allocation */
    size_t bytes;
    float *patches;                     /* [B, Np, C*P*P] */
    float *patch_emb;                   /* [B, Np, D] */
    float *tokens;                      /* [B, T, D]  input of block 0 */
    ViTBlockActivations *blocks;        /* [depth] (all alias one set when !training) */
    float *out, *out_mean, *out_rstd;   /* [B,T,D], [B,T], [B,T]  final LayerNorm */
    float *rope_sin, *rope_cos;         /* [Np, Dh] */
    float *host_rope;                   /* [2, Np, Dh] host staging for vit_set_rope */
    /* backward scratch, reused by every block */
    float *d_resid;                     /* [B,T,D] gradient of the residual stream */
    void *d_ln, *d_attn, *d_branch;     /* [B,T,D] inner */
    void *d_qkv;                        /* [B,T,3D] inner */
    void *d_fc1;                        /* [B,T,F or 2F] inner */
    void *d_act;                        /* [B,T,F] inner */
    float *d_patch_emb;                 /* [B,Np,D] */
} ViTActivations;

/* Bytes an activation set needs (the figure `distill info` reports), with
 * the blocks' inner tensors in bf16 (block_bf16 1) or fp32. */
size_t vit_activation_bytes(const ViTConfig *cfg, int B, int H_px, int W_px, int training, int block_bf16);
/* An activation set on be: its blocks in bf16 when be->block_bf16. */
int vit_activations_alloc(ViTActivations *a, const ViTConfig *cfg, const NnBackend *be,
                          int B, int H_px, int W_px, int training, DdError *err);
void vit_activations_free(ViTActivations *a, const NnBackend *be);

/* Computes the RoPE tables of a for one forward: rescale 1.0 at inference;
 * in training one log-uniform factor in [0.5, 2] per forward. */
void vit_set_rope(ViTActivations *a, const ViTConfig *cfg, const NnBackend *be, float rescale);

/* ---- compute ------------------------------------------------------------ */

/* A layer of the model by the numbering of ModelTensor.layer (0 the
 * embeddings and tokens, i + 1 block i, depth + 1 the final norm), told
 * to a caller. vit_backward tells each layer when it has written its last
 * gradient, depth + 1 first, while later layers' kernels are still to come:
 * a caller may start reducing that layer's gradients (its work queued
 * after the layer's on the backend). vit_forward_hooked tells each layer,
 * 0 first, just before it reads its parameters: a caller may wait for
 * them to arrive. */
typedef struct ViTLayerHook {
    void (*on_layer)(void *context, int layer);
    void *context;
} ViTLayerHook;

/* images[B, C, H, W] -> a->out[B, T, D]; mask[B, Np] may be NULL. Call
 * vit_set_rope first (once per forward, or once for all if rescale is fixed). */
void vit_forward(const NnBackend *be, const ViTConfig *cfg, const ViTParams *p,
                 ViTActivations *a, const float *images, const uint8_t *mask);
/* The same, telling `before` (may be NULL) each layer it is about to read. */
void vit_forward_hooked(const NnBackend *be, const ViTConfig *cfg, const ViTParams *p, ViTActivations *a,
                        const float *images, const uint8_t *mask, const ViTLayerHook *before);

/* dout[B, T, D] is the gradient of the loss with respect to a->out; the
 * parameter gradients accumulate into grads (same layout as p). The mask
 * must be the one given to the forward, and p unchanged since (the
 * backward recomputes the LayerNorm and activation outputs). hook may be
 * NULL. */
void vit_backward(const NnBackend *be, const ViTConfig *cfg, const ViTParams *p, ViTParams *grads,
                  ViTActivations *a, const float *dout, const uint8_t *mask, const ViTLayerHook *hook);

/* Model FLOPs of one forward of one image (matmuls and attention, 2 per
 * multiply-add); a training step costs about 3x this. */
double vit_forward_flops(const ViTConfig *cfg, int H_px, int W_px);

#endif

/*
 * weights_names.h - how the tensors of the project's ViT layout (vit.h) are
 * named and shaped in foreign weight files, and the names of the DINO and
 * iBOT heads in the project's files.
 *
 * Two foreign namings:
 *   Hugging Face DINOv3ViTModel: layer.N.attention.{q,k,v,o}_proj,
 *     layer.N.mlp.{up,down}_proj or {gate,up,down}_proj, layer_scaleK.lambda1,
 *     embeddings.* (conv weight [D, C, P, P], tokens [1, 1, D] and
 *     [1, R, D]); the key projection has no bias.
 *   Original DINOv3 (facebookresearch/dinov3): blocks.N.attn.qkv (fused, with
 *     a bias_mask buffer), attn.proj, lsK.gamma, mlp.fc1/fc2 or mlp.w1 (gate),
 *     w2 (up), w3 (down), patch_embed.proj, cls_token [1, 1, D],
 *     storage_tokens [1, R, D], mask_token [1, D], rope_embed.periods.
 * One project tensor is one to three foreign tensors ("pieces"), stacked
 * along the first dim in the order given: q, k, v and gate, up. The same
 * table serves import (pieces -> project tensor) and export (the reverse).
 *
 * Heads ("dino_head" or "ibot_head"), in the project's files (the names of
 * students/heads.c) and in DINOv3's DINOHead (nn.Sequential of Linear and
 * GELU, so the linear layers sit at even indices):
 *     project                       DINOv3                      shape
 *     HEAD.mlp.{i}.weight           HEAD.mlp.{2i}.weight        [out_i, in_i]
 *     HEAD.mlp.{i}.bias             HEAD.mlp.{2i}.bias          [out_i]
 *                                   (HEAD.mlp.weight, .bias when layers == 1)
 *     HEAD.prototypes.weight        HEAD.last_layer.weight      [prototypes, bottleneck]
 * in_0 = D, out_{layers-1} = bottleneck, hidden in between.
 */
#ifndef DD_NN_WEIGHTS_NAMES_H
#define DD_NN_WEIGHTS_NAMES_H

#include <stddef.h>

#include "nn/tensor_file.h"
#include "nn/vit.h"
#include "nn/vit_config.h"

typedef enum WeightNaming {
    WEIGHT_NAMING_HUGGING_FACE = 0,
    WEIGHT_NAMING_ORIGINAL = 1,
} WeightNaming;

/* "Hugging Face DINOv3ViTModel" or "original DINOv3". */
const char *weight_naming_title(WeightNaming naming);
/* The patch-embedding weight's name in a naming: present in every model,
 * so finding it tells the naming and any prefix in front of the names. */
const char *weight_naming_anchor(WeightNaming naming);

enum { FOREIGN_MAX_PIECES = 3 };

/* One foreign tensor that holds part of a project tensor. */
typedef struct ForeignPiece {
    char name[TENSOR_NAME_MAX];    /* in the foreign file, without any prefix */
    TensorShape shape;             /* its shape there */
    size_t offset, count;          /* the floats of the project tensor it holds */
    int absent;                    /* 1: the naming has no such tensor (the Hugging Face key bias):
                                      the floats are zero; a file that holds it anyway must hold zeros */
} ForeignPiece;

/* One project tensor and the foreign tensors it is made of. */
typedef struct ForeignTensor {
    ViTTensorInfo target;
    int piece_count;
    ForeignPiece pieces[FOREIGN_MAX_PIECES];
    size_t zero_offset, zero_count;   /* floats of target held at zero (the key third of a qkv bias) */
} ForeignTensor;

/* Fills out[vit_tensor_count(cfg)], in the order of vit_tensor_layout. */
int foreign_tensor_layout(const ViTConfig *cfg, WeightNaming naming, ForeignTensor *out, DdError *err);

/* Why a foreign tensor that has no place in the layout may be skipped (a
 * buffer, a training-only norm), or NULL when it may not. */
const char *foreign_tensor_skip_reason(const char *name, WeightNaming naming);

/* The name of the RoPE period buffer of original checkpoints. */
#define ORIGINAL_ROPE_PERIODS_NAME "rope_embed.periods"

/* ---- heads ---------------------------------------------------------------------------- */

typedef struct HeadTensorInfo {
    char name[TENSOR_NAME_MAX];          /* the project's */
    char original_name[TENSOR_NAME_MAX]; /* DINOv3's */
    TensorShape shape;
    size_t offset, count;                /* floats from the start of the head's buffer */
} HeadTensorInfo;

/* 2 * layers + 1. */
int head_tensor_count(const HeadConfig *head);
/* Fills out[head_tensor_count] for head `head_name` ("dino_head") on a
 * backbone of width in_dim, in the project's order (as students/heads.c);
 * returns the total float count (equal to head_param_count). */
size_t head_tensor_layout(const char *head_name, const HeadConfig *head, int in_dim, HeadTensorInfo *out);

#endif

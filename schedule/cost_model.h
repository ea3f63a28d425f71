/*
 * cost_model.h - what one model costs one rank: parameters (backbone, DINO
 * and iBOT heads), FLOPs per image, and memory for a number of images. Shared
 * by `distill info` (the table) and the group planner (planner.h).
 *
 * Memory (fp32; with block_bf16, as on the "cuda" backend, the blocks'
 * inner activations are bf16 (vit_activation_bytes) and bf16 copies of the
 * block matrices join the state: 2 B per backbone parameter trained, one
 * block's worth frozen; vit_params_bf16_bytes):
 *   trained (a student): 20 B per parameter (weights, gradients, AdamW m and
 *       v, EMA) of the backbone and both heads, 4 B per parameter of the
 *       frozen teacher prototype layers it applies, + training activations
 *       of every crop (vit_activation_bytes) and of its heads (DINO on each
 *       crop's CLS, iBOT on the most patches a crop may mask), per image of
 *       a micro-batch; + what it keeps per image of its whole slice: the
 *       crops, the teacher's rows and the targets (one row of prototype
 *       scores per global crop and per maskable patch);
 *   frozen (the teacher): 4 B per parameter + inference activations of the
 *       global crops and of its head MLPs (DINO on the CLS, iBOT on every
 *       patch).
 *   Of a student's 20 B per parameter, 12 (AdamW m and v, EMA) are
 *   shardable: with its optimizer state sharded (ZeRO-1,
 *   RunConfig.shard_optimizer_state) each of the n ranks of its group keeps
 *   about 1/n of them, and only weights and gradients (8 B) in full
 *   (rank_state). `distill info` and model_cost report the unsharded state.
 * FLOPs per image (2 per multiply-add):
 *   teacher: forward of the global crops + the head MLPs (DINO on CLS, iBOT
 *       on every patch: the MLP runs before the masked rows are picked);
 *   student: 3 x (forward of every crop + DINO head (MLP and prototypes) on
 *       each crop's CLS + iBOT head on the masked patches of the global
 *       crops) + the teacher prototype layers it applies (forward only, 1 x).
 */
#ifndef DD_SCHEDULE_COST_MODEL_H
#define DD_SCHEDULE_COST_MODEL_H

#include <stddef.h>

#include "nn/vit_config.h"

/* The crops of one image, and the mean fraction of global-crop patches the
 * students mask (iBOT probability x mean ratio; 0 when unknown). */
typedef struct CropShape {
    int global_size, global_count;
    int local_size, local_count;
    double masked_patch_fraction;
    double max_masked_patch_fraction;   /* the most a crop may mask: buffers are sized by it */
} CropShape;

typedef struct ModelCost {
    size_t backbone, dino_mlp, dino_prototypes, ibot_mlp, ibot_prototypes;
    double flops_global, flops_local;   /* one forward of the backbone on one crop */
    double state_bytes;                 /* parameters and what training keeps per parameter, unsharded */
    double shardable_state_bytes;       /* the part of state_bytes a student group's ranks may divide
                                         * among them (AdamW m and v, EMA); 0 frozen */
    double activation_bytes;            /* for the batch asked */
} ModelCost;

/* fp32 copies of a trained parameter: every rank keeps the replicated ones
 * in full; the shardable ones may be divided among the ranks of its group. */
enum {
    COST_BYTES_PER_FLOAT = 4,
    COST_REPLICATED_COPIES = 2,   /* weights, gradients */
    COST_SHARDABLE_COPIES = 3,    /* AdamW m and v, EMA */
    COST_TRAINED_COPIES = COST_REPLICATED_COPIES + COST_SHARDABLE_COPIES
};

/* What a rank keeps whatever its images, in bytes: a rank of a group of n
 * ranks keeps replicated_bytes + shardable_bytes / n with its optimizer
 * state sharded, replicated_bytes + shardable_bytes without. */
typedef struct RankState {
    double replicated_bytes;   /* a student: its weights and gradients, and the teacher prototype layers
                                * it applies (4 B each); the teacher: its weights */
    double shardable_bytes;    /* a student's AdamW m and v and EMA; 0 for the teacher */
} RankState;

/* The `distill info` figures of one model with `batch` images per rank. */
ModelCost model_cost(const ViTConfig *model, const CropShape *crops, int batch, int frozen, int block_bf16);

/* Parameters a student trains: backbone and both heads. */
size_t trained_param_count(const ViTConfig *model);
/* Bytes of one gather of a sharded student's parameters: 4 per parameter,
 * but 2 per block-matrix parameter where the blocks run in bf16 (they
 * travel in bf16, students/param_gather.c). */
size_t student_gather_bytes(const ViTConfig *model, int block_bf16);

/* FLOPs of one image: the teacher's inference on the global crops, or one
 * student training step on every crop (see the header comment). */
double teacher_flops_per_image(const ViTConfig *teacher, const CropShape *crops);
double student_flops_per_image(const ViTConfig *student, const ViTConfig *teacher, const CropShape *crops);

/* What a rank keeps whatever its images: state (model_cost's state_bytes,
 * split as its shardable_state_bytes says), plus, for a student, the
 * teacher prototype layers it applies (replicated). */
RankState rank_state(const ViTConfig *model, const ViTConfig *teacher, const CropShape *crops, int frozen,
                     int block_bf16);
/* Activation bytes of `images` images on one rank (of a micro-batch). */
double rank_activation_bytes(const ViTConfig *model, const CropShape *crops, int images, int frozen, int block_bf16);
/* Bytes a student rank keeps per image of its slice, whatever its
 * micro-batch: crops, the teacher's rows, the targets. */
double rank_slice_bytes_per_image(const ViTConfig *student, const ViTConfig *teacher, const CropShape *crops);

#endif

/*
 * weights_import.h - DINOv3 weights from safetensors files into the
 * project's teacher weights file (HDF5, tensor_file.h), as `distill import`
 * does it.
 *
 * The source is a .safetensors file, a sharded index or a Hugging Face model
 * folder (safetensors_set.h), in Hugging Face DINOv3ViTModel names or in the
 * original DINOv3 names (weights_names.h); which one is found from the name
 * of the patch-embedding weight, and so is any prefix in front of the names
 * ("teacher.backbone." in a training checkpoint), unless one is given.
 * Every tensor of the model YAML must be there with its exact shape; every
 * tensor of the file (under the prefix) must have a place in the model,
 * except buffers that carry nothing (weights_names.h lists them) and empty
 * tensors (Hugging Face's register_tokens [1, 0, D] of a model without
 * registers); each error
 * names the file, the tensor, the shape expected and the shape found.
 * Values are converted to fp32 (F32, F16, BF16, F64); the key third of a
 * fused qkv bias is set to zero, as DINOv3's bias mask does.
 *
 * Heads come from a second file, in DINOv3's DINOHead names
 * (dino_head.mlp.0.weight, ..., dino_head.last_layer.weight, ibot_head.*;
 * weights_names.h) with any prefix, e.g. "teacher."; without one, the
 * output file has no head tensors, says so in TEACHER_HEADS_PRESENT (0), and
 * the import prints that the teacher heads will be random.
 *
 * Output tensors: the vit_tensor_layout names (prefix ""), the heads in the
 * project's names (dino_head.mlp.{i}.*, dino_head.prototypes.weight, the same
 * for ibot_head; what students/heads.c lays out and teacher/ reads) when
 * given, and TEACHER_HEADS_PRESENT, a scalar 1 or 0.
 */
#ifndef DD_NN_WEIGHTS_IMPORT_H
#define DD_NN_WEIGHTS_IMPORT_H

#include <stdio.h>

#include "nn/error.h"
#include "nn/safetensors_set.h"
#include "nn/tensor_file.h"
#include "nn/vit.h"
#include "nn/vit_config.h"
#include "nn/weights_names.h"

#define TEACHER_HEADS_PRESENT "heads_present"

typedef struct WeightsImport {
    const char *source;       /* backbone: file, index or model folder */
    const char *heads;        /* heads: file, index or folder; NULL when there are none */
    const char *prefix;       /* in front of every name of source; NULL: found (the heads' always is) */
    const char *output;       /* the HDF5 file to write (atomically) */
    const ViTConfig *model;   /* what the weights must be */
    FILE *log;                /* what was done, and the notice about random heads; may be NULL */
} WeightsImport;

int weights_import(const WeightsImport *job, DdError *err);

/* The backbone of set into params (views into host memory). prefix NULL:
 * found from the file. *naming (may be NULL) receives the naming found. */
int weights_read_backbone(const SafetensorsSet *set, const char *prefix, const ViTConfig *cfg,
                          ViTParams *params, WeightNaming *naming, DdError *err);

/* Both heads of set (DINOv3 names) into dino[head_tensor_layout count] and
 * ibot[...] (host memory, laid out as head_tensor_layout says). */
int weights_read_heads(const SafetensorsSet *set, const char *prefix, const ViTConfig *cfg, float *dino,
                       float *ibot, DdError *err);

/* For the teacher's loader: 1 when a teacher weights file holds heads, 0
 * when it was imported without them (the heads start random), -1 when the
 * marker cannot be read. */
int teacher_file_has_heads(const TensorFile *file, DdError *err);

#endif

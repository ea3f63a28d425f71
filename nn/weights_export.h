/*
 * weights_export.h - a ViT of the project's layout written as a Hugging
 * Face model folder that `DINOv3ViTModel.from_pretrained(folder)` loads:
 *
 *     FOLDER/model.safetensors   every tensor in DINOv3ViTModel names and
 *                                shapes (weights_names.h), F32
 *     FOLDER/config.json         the DINOv3ViTConfig of the architecture
 *
 * Both files are written atomically; the folder is created if missing (its
 * parent must exist). The key third of every qkv bias must be exactly zero
 * (Hugging Face's key projection has no bias); a non-zero one is an error.
 */
#ifndef DD_NN_WEIGHTS_EXPORT_H
#define DD_NN_WEIGHTS_EXPORT_H

#include <stdio.h>

#include "nn/error.h"
#include "nn/vit.h"
#include "nn/vit_config.h"

/* params: views into host memory. image_size goes into config.json (the
 * size the model was trained at; inference takes any multiple of the patch). */
int weights_export_hugging_face(const char *folder, const ViTConfig *cfg, const ViTParams *params, int image_size,
                                DdError *err);

/* Writes the config.json text of cfg to out. */
void weights_write_hugging_face_config(FILE *out, const ViTConfig *cfg, int image_size);

#endif

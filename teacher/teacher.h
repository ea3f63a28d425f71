/*
 * teacher.h - the frozen teacher on a teacher rank: weights from an HDF5
 * file (or drawn from the run seed), inference on the global crops of its
 * slice, the head MLPs, and the image rows it sends (DESIGN, step 2).
 *
 *     rows of image b = [DINO bottleneck of each global crop,
 *                        iBOT bottlenecks of the masked patches of each global crop]
 *
 * Bottlenecks are L2-normalised (head_mlp_forward); the prototype layers run
 * on the student ranks (teacher_prototypes_* in students/). The teacher is
 * never trained and never checkpointed: its weights are the file it was
 * given, or the seed (model_params_init_informative: a random teacher whose
 * features depend on the image; the heads too when the file has none).
 */
#ifndef DD_TEACHER_TEACHER_H
#define DD_TEACHER_TEACHER_H

#include <stdint.h>

#include "comm/teacher_payload.h"
#include "nn/backend.h"
#include "nn/error.h"
#include "nn/vit.h"
#include "nn/model.h"

typedef struct Teacher {
    ViTConfig cfg;
    ModelLayout layout;
    ModelParams params;           /* backbone and both heads, frozen */
    int heads_from_file;          /* 0: the heads were drawn from the seed (no trained heads given) */
    int capacity;                 /* most images of a slice (teacher_resize) */
    int global_count, global_size, max_masked;
    PayloadShape shape;           /* of the last computed slice */
    int masked;                   /* its masked patches */
    ViTActivations act;           /* inference activations of G * capacity crops */
    HeadActivations dino, ibot;   /* MLP halves */
    float *memory;                /* one backend allocation for: */
    size_t count;
    float *images;                /* [G*B, C, S, S] */
    float *cls;                   /* [G*B, D] */
    float *patches;               /* [max_masked, D] masked patch tokens */
    void *host;                   /* one host allocation for: */
    float *host_dino;             /* [G*B, Kd] */
    float *host_ibot;             /* [max_masked, Ki] */
    PayloadStarts starts;         /* payload scratch, G*B + max_masked feature rows */
} Teacher;

/* weights_path may be NULL (random weights from the seed). capacity and
 * max_masked size the slice buffers as teacher_resize does; capacity 0
 * leaves them for a later teacher_resize. */
int teacher_create(Teacher *t, const ViTConfig *cfg, const char *weights_path, uint64_t seed, int capacity,
                   int global_count, int global_size, int max_masked, const NnBackend *be, DdError *err);
/* Sizes what depends on the slice, the weights kept: activations and
 * buffers for slices of up to capacity (>= 1) images, whose masked patches
 * number at most max_masked (student_max_masked). Nothing is done when
 * both are unchanged. */
int teacher_resize(Teacher *t, int capacity, int max_masked, const NnBackend *be, DdError *err);
void teacher_free(Teacher *t, const NnBackend *be);

/* From the B images of a slice: global_crops[G*B, C, S, S] (host, crop-major)
 * and masks[G*B, Np] -> the slice's bottlenecks, dino.features[G*B, Kd] and
 * ibot.features[M, Ki] in the backend's memory, for teacher_rows or
 * teacher_wire_rows (with the same masks). */
int teacher_forward(Teacher *t, const NnBackend *be, const float *global_crops, const uint8_t *masks, int images,
                    DdError *err);
/* After teacher_forward: rows (host floats, the slice's image rows;
 * payload_offsets gives their layout). */
void teacher_rows(Teacher *t, const NnBackend *be, const uint8_t *masks, float *rows);
/* After teacher_forward: the same rows in bf16, as bf16_from_float would
 * make them, written by the backend into wire (its memory), where they stay
 * for a send from the device. */
int teacher_wire_rows(Teacher *t, const NnBackend *be, const uint8_t *masks, uint16_t *wire, DdError *err);
/* teacher_forward, then teacher_rows. */
int teacher_compute_rows(Teacher *t, const NnBackend *be, const float *global_crops, const uint8_t *masks,
                         int images, float *rows, DdError *err);

#endif

/*
 * model.h - a ViT backbone with its DINO and iBOT heads, as the teacher
 * and every student hold it: the heads' two halves (the MLP to the
 * L2-normalised bottleneck, the prototype layer) callable on their own, and
 * the layout of backbone and heads in one buffer with named views.
 */
#ifndef DD_NN_MODEL_H
#define DD_NN_MODEL_H

#include <stddef.h>
#include <stdint.h>

#include "nn/backend.h"
#include "nn/error.h"
#include "nn/tensor_file.h"
#include "nn/vit.h"
#include "nn/vit_config.h"

/* The model index every rank draws the teacher's random weights with
 * (students are 1, 2, ...), so a student rank can draw the teacher's
 * prototypes alone. */
enum { TEACHER_MODEL_INDEX = 0 };

/* ==== heads ================================================================ */

enum { HEAD_MAX_LAYERS = 16 };

/* Views of one head's parameters: an MLP of `layers` linear layers (GELU
 * between them) from the backbone's dim to the bottleneck, L2-normalised,
 * then the prototype layer. */
typedef struct HeadParams {
    float *weight[HEAD_MAX_LAYERS];   /* layer i: [out_i, in_i]; out = hidden, ..., bottleneck */
    float *bias[HEAD_MAX_LAYERS];     /* layer i: [out_i] */
    float *prototypes;                /* [prototypes, bottleneck], no bias */
} HeadParams;

/* Which buffers a HeadActivations holds. */
enum {
    HEAD_PART_MLP = 1,          /* the MLP and the normalised bottleneck */
    HEAD_PART_PROTOTYPES = 2,   /* the scores of the prototype layer */
    HEAD_PART_BACKWARD = 4,     /* gradient scratch of both */
};

/* A head's activations for up to `capacity` rows, in one allocation; a call
 * may use fewer rows (the first N of each buffer). */
typedef struct HeadActivations {
    int capacity, parts;
    float *memory;
    size_t count;
    float *linear[HEAD_MAX_LAYERS];   /* [rows, out_i] MLP layer outputs before GELU */
    float *hidden[HEAD_MAX_LAYERS];   /* [rows, hidden] GELU(linear[i]) for i < layers - 1 */
    float *norm;                      /* [rows] ||bottleneck|| */
    float *features;                  /* [rows, bottleneck] the L2-normalised bottleneck */
    float *logits;                    /* [rows, prototypes] */
    float *d_logits;                  /* [rows, prototypes] */
    float *d_features;                /* [rows, bottleneck] */
    float *d_linear;                  /* [rows, max(hidden, bottleneck)] of the current layer */
    float *d_hidden;                  /* [rows, hidden] */
} HeadActivations;

/* eps of the bottleneck's L2 normalisation (torch's default). */
#define HEAD_NORM_EPS 1e-12f

/* Floats head_activations_alloc takes for `rows` rows of the parts asked. */
size_t head_activation_count(const HeadConfig *head, int rows, int parts);
int head_activations_alloc(HeadActivations *a, const HeadConfig *head, int in_dim, int capacity,
                           int parts, const NnBackend *be, DdError *err);
void head_activations_free(HeadActivations *a, const NnBackend *be);

/* The MLP half, run by the teacher's ranks on frozen heads and by the
 * student on its own: inp[N, in_dim] -> a->features[N, bottleneck]. */
void head_mlp_forward(const NnBackend *be, const HeadConfig *head, int in_dim, const HeadParams *p,
                      HeadActivations *a, const float *inp, int N);
/* The prototype half: logits[N, prototypes] = features[N, bottleneck] @ prototypes^T.
 * Student ranks run it on the teacher's delivered bottlenecks with the
 * teacher's frozen prototypes, and on their own. */
void head_prototypes_forward(const NnBackend *be, const HeadConfig *head, const float *prototypes,
                             const float *features, float *logits, int N);
/* Backward of the prototype half from a->d_logits: dprototypes accumulates,
 * a->d_features is overwritten. */
void head_prototypes_backward(const NnBackend *be, const HeadConfig *head, const HeadParams *p,
                              HeadParams *grads, HeadActivations *a, int N);
/* Backward of the MLP half from a->d_features: the parameter gradients
 * accumulate into grads, the input's into d_input[N, in_dim] (may be NULL). */
void head_mlp_backward(const NnBackend *be, const HeadConfig *head, int in_dim, const HeadParams *p,
                       HeadParams *grads, HeadActivations *a, const float *inp, float *d_input, int N);

/* ==== a backbone with its heads: layout and parameters ======================= */

typedef enum ModelModule {
    MODULE_BACKBONE = 0,
    MODULE_DINO_HEAD = 1,
    MODULE_IBOT_HEAD = 2,
    MODULE_COUNT = 3,
} ModelModule;

extern const char *const model_module_names[MODULE_COUNT];   /* "backbone", "dino_head", "ibot_head" */

/* One tensor of the layout. Backbone tensors keep vit_tensor_layout's names;
 * head tensors are "dino_head.mlp.{i}.weight", "dino_head.mlp.{i}.bias",
 * "dino_head.prototypes.weight", and the same for "ibot_head". */
typedef struct ModelTensor {
    ViTTensorInfo info;     /* name, shape, offset in the buffer, decays, masked */
    ModelModule module;
    int layer;              /* 0: embeddings and tokens; i + 1: block i; depth + 1: final norm, heads */
    int patch_embedding;    /* 1 for embeddings.patch_embeddings.* */
} ModelTensor;

/* The layout of a backbone and its two heads in one buffer: the backbone
 * first, then the DINO head, then the iBOT head. */
typedef struct ModelLayout {
    int tensor_count;
    ModelTensor *tensors;                     /* [tensor_count], host */
    size_t count;                             /* floats */
    size_t module_offset[MODULE_COUNT + 1];   /* module m spans [offset[m], offset[m + 1]) */
} ModelLayout;

int model_layout_create(ModelLayout *layout, const ViTConfig *cfg, DdError *err);
void model_layout_free(ModelLayout *layout);

/* Named views into one buffer of the layout. */
typedef struct ModelParams {
    float *memory;
    size_t count;
    ViTParams backbone;
    HeadParams dino_head, ibot_head;
} ModelParams;

/* Points p's views into memory (host or backend; layout.count floats). */
int model_params_view(ModelParams *p, const ViTConfig *cfg, float *memory, DdError *err);
/* Allocates a zeroed buffer on the backend and points the views. */
int model_params_alloc(ModelParams *p, const ViTConfig *cfg, const NnBackend *be, DdError *err);
/* Frees the buffer (when be is not NULL) and the views. */
void model_params_free(ModelParams *p, const NnBackend *be);
/* The backbone as vit_params_init makes it; the heads truncated-normal
 * (std 0.02) matrices and zero biases, from dd_random_keyed(seed,
 * DD_RANDOM_INIT, model_index, tensor index, 0). */
int model_params_init(ModelParams *p, const ViTConfig *cfg, const NnBackend *be, uint64_t seed,
                      uint64_t model_index, DdError *err);

/* Draws head tensor `index` of the layout into x[count] (host) exactly as
 * model_params_init does, so one head tensor can be made without the rest. */
void model_head_tensor_draw(const ModelLayout *layout, int index, uint64_t seed, uint64_t model_index, float *x);

/* An informative random model: unit-gain matrices (N(0, 1/fan_in)),
 * LayerScale 0.5, unit tokens, prototype rows of norm ~4. A fresh DINOv3
 * init (std 0.02, LayerScale 1e-5) maps every image to nearly the same CLS
 * token, and Sinkhorn-Knopp turns identical rows into uniform targets, so a
 * random teacher without weights is drawn this way: its features depend on
 * the image and give a student something to learn. Tensor `index` alone,
 * or all of them. */
void model_informative_tensor_draw(const ModelLayout *layout, int index, uint64_t seed, uint64_t model_index,
                                   float *x);
int model_params_init_informative(ModelParams *p, const ViTConfig *cfg, const NnBackend *be, uint64_t seed,
                                  uint64_t model_index, DdError *err);

/* Tensor files: every tensor of the layout as prefix + name, from or into a
 * host buffer of layout->count floats. Reading checks every name and shape. */
int model_params_read(const TensorFile *file, const char *prefix, const ModelLayout *layout,
                      float *host, DdError *err);
int model_params_write(TensorFileWriter *writer, const char *prefix, const ModelLayout *layout,
                       const float *host, DdError *err);

#endif

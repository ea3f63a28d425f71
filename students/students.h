/*
 * students.h - a student of the distillation run: its model (the ViT
 * backbone with DINO and iBOT heads), the objective it learns from the
 * frozen teacher (Sinkhorn-Knopp targets, DINO, iBOT and KoLeo losses),
 * and its optimisation (AdamW with parameter groups, per-module clipping,
 * the EMA copy that a run delivers). Everything runs on the op API of
 * nn/backend.h.
 *
 * One iteration on a student rank (DESIGN, steps 2 and 4):
 *
 *     teacher rank:  vit_forward (frozen) -> head_mlp_forward of the teacher's
 *                    heads -> L2-normalised bottlenecks, sent to the students
 *     student rank:  student_forward_backward: the teacher's prototype layers
 *                    and Sinkhorn-Knopp (column maxima and sums over the group
 *                    through the StudentGroup hooks) give the targets; the student's own
 *                    backbone and heads give its scores; the losses and every
 *                    gradient follow;
 *                    student_update: gradients summed over the group (each
 *                    rank's weighted by its share of the batch), clipped
 *                    per module, one AdamW step, the EMA.
 *
 * Memory: a backbone and its two heads share one buffer (ModelLayout); a
 * Student holds two such buffers (parameters, gradients), each with named
 * views, and two AdamW moments and the EMA of all of them, or, sharded over
 * a group of n ranks, of 1/n of them (StudentShard). Per-iteration buffers
 * are allocated once in a StudentWorkspace; nothing is allocated in the
 * iteration loop.
 *
 * Crops and rows: an iteration of B images on this rank has G global crops
 * and L local crops per image; global crop g of image b is row g*B + b of
 * every global-crop tensor (images, masks, teacher bottlenecks), local crop
 * l of image b row l*B + b.
 *
 * Micro-batches: the slice's B images may run through the student in chunks
 * of at most StudentShape.micro_batch images (images b0 .. b0+c-1), each a
 * forward, its losses and a backward that accumulates into the gradients;
 * the activations are sized by the micro-batch, so memory falls with it. A
 * micro-batch keeps the same layout with c in place of B (global crop g of
 * its image j at row g*c + j), gathered from the slice's rows. The teacher's
 * targets are made once for the whole slice, and every row keeps its weight
 * in the slice's loss, so the gradient is the whole slice's (up to the order
 * of fp32 sums) -- except KoLeo, whose nearest neighbours are taken within
 * a micro-batch (as DINOv3 takes them within each device's batch).
 */
#ifndef DD_STUDENTS_STUDENTS_H
#define DD_STUDENTS_STUDENTS_H

#include <stddef.h>
#include <stdint.h>

#include "data/ibot_mask.h"
#include "nn/backend.h"
#include "nn/error.h"
#include "nn/model.h"
#include "nn/tensor_file.h"
#include "nn/vit.h"
#include "nn/vit_config.h"
#include "nn/yaml_config.h"

/* ==== configuration: the `objective` and `optimizer` sections of a run ==== */

typedef struct ObjectiveConfig {
    float student_temperature;   /* of the student's softmax: 0.1 */
    int sinkhorn_iterations;     /* Sinkhorn-Knopp iterations: 3 */
    /* Each term's coefficient is its weight times the scale DINOv3 bakes in
     * (see LossWeights): with 2 global and 8 local crops and weights 1, 1,
     * 1, 0.1 the total is (16/18) DINO_local + (2/18) DINO_global + 1.0 iBOT
     * + 0.1 * 2 KoLeo. */
    float dino_local_weight;
    float dino_global_weight;
    float ibot_weight;
    float koleo_weight;
    IbotMaskConfig ibot_mask;    /* which global-crop patches the student sees masked */
} ObjectiveConfig;

typedef struct OptimizerConfig {
    float beta1, beta2, eps;           /* AdamW: 0.9, 0.999, 1e-8 */
    float layerwise_decay;             /* lr multiplier decay^(depth + 1 - layer): 0.99 */
    float patch_embed_lr_multiplier;   /* times the patch embedding's lr: 0.2 */
    float clip_grad_norm;              /* per module (backbone, DINO head, iBOT head); 0: off. 3.0 */
} OptimizerConfig;

extern const ConfigSchema objective_config_schema;
extern const ConfigSchema optimizer_config_schema;

/* The coefficient of each loss term in the total. With G global and L local
 * crops, DINO compares G(G-1) global pairs (no crop with itself) and GL local
 * ones: dino_global = dino_global_weight * G(G-1) / (G(G-1) + GL),
 * dino_local = dino_local_weight * GL / (G(G-1) + GL), ibot = ibot_weight,
 * koleo = koleo_weight * G (KoLeo is the mean over the global crops). */
typedef struct LossWeights {
    double dino_local, dino_global, ibot, koleo;
} LossWeights;

LossWeights objective_loss_weights(const ObjectiveConfig *config, int global_count, int local_count);

/* ==== Sinkhorn-Knopp over a student group ==================================== */

/* Sums buffer[count] (backend memory) in place over the ranks of a student
 * group. comm_group_sum_hook (comm/comm.h) is one; group_sum_single_process
 * leaves the buffer alone (a group of one rank). */
typedef int (*GroupSum)(void *context, float *buffer, long count, DdError *err);
/* The same with the maximum in place of the sum (MPI_MAX). */
typedef int (*GroupMax)(void *context, float *buffer, long count, DdError *err);

/* Starts buffer[count] <- its sum over the group and returns at once: the
 * buffer is not to be read or written until GroupSumFinish returns. owner
 * < 0: every rank gets the sum; else only group rank owner does (the
 * others' buffers are then unspecified). comm_group_sum_start_hook is one.
 * Every rank starts the same sums in the same order. */
typedef int (*GroupSumStart)(void *context, float *buffer, long count, int owner, DdError *err);
/* Completes every sum started since the last finish. */
typedef int (*GroupSumFinish)(void *context, DdError *err);
/* values[count] (host memory) <- their sum over the group. */
typedef int (*GroupSumDoubles)(void *context, double *values, int count, DdError *err);
/* Starts the `bytes` bytes at buffer (backend memory) <- group rank
 * owner's copy on every rank (a broadcast) and returns at once: the buffer
 * is not to be touched until GroupBroadcastWait has waited for its slot
 * (>= 0) or for every slot (-1). comm_group_broadcast_start_hook /
 * _wait_hook are these. */
typedef int (*GroupBroadcastStart)(void *context, void *buffer, size_t bytes, int owner, int slot, DdError *err);
typedef int (*GroupBroadcastWait)(void *context, int slot, DdError *err);

typedef struct StudentGroup {
    GroupSum sum;
    GroupMax max;
    void *context;     /* given to every hook */
    int size;          /* ranks in the group */
    double slice_weight;   /* this rank's images * size / the global batch: 1 (or 0) for equal slices */
    /* The asynchronous sums: needed by a sharded state (StudentShard),
     * which sums each shard's gradients to its owner. */
    GroupSumStart sum_start;
    GroupSumFinish sum_finish;
    /* Set (size > 1, with the two above): the gradients' sums overlap the
     * backward, each layer's started as the last micro-batch's backward
     * finishes it, and student_update completes them. 0: the sums start
     * after the backward. */
    int overlap_sums;
    /* A sharded state's: the squared norms summed over the group, the
     * updated parameters gathered (broadcast by their owners, a slot per
     * layer). */
    GroupSumDoubles sum_doubles;
    GroupBroadcastStart broadcast_start;
    GroupBroadcastWait broadcast_wait;
} StudentGroup;

/* A group of one rank: the local sums and maxima are the group's. */
int group_reduce_single_process(void *context, float *buffer, long count, DdError *err);
#define STUDENT_GROUP_SINGLE_PROCESS                                                           \
    ((StudentGroup){.sum = group_reduce_single_process, .max = group_reduce_single_process, .size = 1})

/* Sinkhorn-Knopp centering in fp32, in place on scores[M, K] (this rank's
 * M rows of teacher prototype scores): on return each row is the target
 * distribution of its sample. With Q = exp((scores - max[k]) / temperature),
 * max[k] the prototype's largest score over all rows of the group, each
 * iteration divides every prototype's column by its sum over the group,
 * then every row by its own sum. This is DINOv3's algorithm with its global
 * normalisations and its B and K factors left out, as each is undone by the
 * next normalisation; the per-prototype shift is undone exactly by the first
 * column normalisation, and keeps exp() from overflowing (the largest value
 * of a column is 1, so no column underflows either). column[K] is the
 * backend scratch the group reduces. Every rank of the group must call it
 * (also with M = 0), as the reductions are collective. */
int sinkhorn_knopp(const NnBackend *be, float *scores, float *column, int M, int K, float temperature,
                   int iterations, const StudentGroup *group, DdError *err);

/* The teacher's frozen prototype layers, on a student rank. */
typedef struct TeacherPrototypes {
    HeadConfig dino, ibot;                 /* the teacher's heads */
    float *memory;                         /* one allocation: */
    size_t count;
    float *dino_weight;                    /* [dino.prototypes, dino.bottleneck] */
    float *ibot_weight;                    /* [ibot.prototypes, ibot.bottleneck] */
} TeacherPrototypes;

int teacher_prototypes_alloc(TeacherPrototypes *t, const ViTConfig *teacher, const NnBackend *be,
                             DdError *err);
/* Copies the prototype weights (backend memory, e.g. the teacher's
 * ModelParams views). */
void teacher_prototypes_set(TeacherPrototypes *t, const NnBackend *be, const float *dino_weight,
                            const float *ibot_weight);
void teacher_prototypes_free(TeacherPrototypes *t, const NnBackend *be);

/* Targets from the teacher's delivered bottlenecks: features[M, bottleneck]
 * -> teacher prototype scores -> Sinkhorn-Knopp -> targets[M, prototypes]. */
int teacher_targets(const NnBackend *be, const HeadConfig *head, const float *prototypes,
                    const float *features, float *targets, float *column, int M, float temperature,
                    int iterations, const StudentGroup *group, DdError *err);

/* ==== the student and one iteration ========================================== */

/* The gradient buffer cut into runs of one layer each (ModelTensor.layer),
 * the pieces whose group sums start as the backward finishes them
 * (students/gradient_sums.c). */
typedef struct GradientRun {
    size_t offset, count;      /* floats of the gradient buffer */
    int layer;
} GradientRun;

typedef struct GradientSums {
    GradientRun *runs;         /* in buffer order; together the whole buffer */
    int run_count;
    int in_flight;             /* sums started, not yet finished */
} GradientSums;

/* Cuts s's gradient buffer into its layers' runs (student_create does). */
int gradient_sums_init(GradientSums *sums, const ModelLayout *layout, DdError *err);
void gradient_sums_free(GradientSums *sums);

/* The part of the optimizer state a rank keeps and updates. The layout's
 * floats are cut into `size` contiguous shards, one per rank of the group
 * (ZeRO stage 1): rank r keeps the AdamW moments and the EMA of shard r
 * only, its gradients are summed to it alone, it takes the AdamW step and
 * the EMA of those floats, and the group then gathers the parameters. A
 * shard holds SHARD_ALIGN-float multiples (the last ones shorter, or
 * empty). Unsharded, one shard of everything (rank 0 of 1). */
enum { SHARD_ALIGN = 64 };

typedef struct StudentShard {
    int rank, size;            /* this rank's shard of `size` */
    size_t *bounds;            /* [size + 1] floats of the layout: shard r is [bounds[r], bounds[r + 1]) */
    size_t begin, count;       /* this rank's: bounds[rank], bounds[rank + 1] - bounds[rank] */
    float *adam_m, *adam_v;    /* [count] backend: the AdamW moments of those floats */
    float *ema;                /* [count] backend: their EMA */
} StudentShard;

/* The student's state: parameters and gradients (two buffers of the
 * layout, with views), and its shard of the optimizer state. The EMA is
 * the model a run delivers. */
typedef struct Student {
    ViTConfig cfg;
    ModelLayout layout;
    ModelParams params, grads;
    StudentShard shard;
    long steps;                /* AdamW steps taken; the next one's bias correction uses steps + 1 */
    GradientSums sums;
    int params_in_flight;      /* a sharded update's gather of the parameters is under way: a layer's
                                * may be read once student_params_wait has waited for it */
    int params_fp32_stale;     /* the last gather sent the block matrices in bf16: the fp32 ones of
                                * other ranks' shards are stale (student_params_full) */
} Student;

/* Initialises the parameters (model_params_init), the EMA to them, zero
 * moments, keeping shard `rank` of `size` of the optimizer state (0 of 1:
 * all of it; only that shard is ever allocated). */
int student_create_sharded(Student *s, const ViTConfig *cfg, const NnBackend *be, uint64_t seed,
                           uint64_t model_index, int rank, int size, DdError *err);
/* The same, unsharded. */
int student_create(Student *s, const ViTConfig *cfg, const NnBackend *be, uint64_t seed,
                   uint64_t model_index, DdError *err);
void student_free(Student *s, const NnBackend *be);
/* bounds[size + 1] of count floats cut into size shards (StudentShard). */
void student_shard_bounds(size_t count, int size, size_t *bounds);
/* The part of floats [begin, end) in shard `owner`: [*lo, *hi). Returns 0
 * when there is none. */
int student_shard_overlap(const StudentShard *shard, int owner, size_t begin, size_t end, size_t *lo, size_t *hi);

/* After a sharded update: starts the gather of the parameters, each
 * shard's part of each layer broadcast by its owner, layer 0 first (the
 * order the next forward reads them), so that the forward of one layer
 * overlaps the gather of the next (students/param_gather.c). Where the
 * blocks read a whole bf16 copy of their matrices, those travel in bf16
 * into the copy (half the bytes), the fp32 ones of other ranks' shards
 * are left stale, and the forward reads the copy as it is. */
int student_params_gather_start(const NnBackend *be, Student *s, const StudentGroup *group, DdError *err);
/* Returns when layer's parameters may be read (on a device backend: when
 * kernels enqueued afterwards will see them), every layer's with -1; at
 * once when no gather is under way. */
int student_params_wait(Student *s, const StudentGroup *group, int layer, DdError *err);
/* Every rank of the group: each shard of buffer (the layout's floats,
 * backend memory) from its owner to every rank, returning when done. */
int student_shards_gather(Student *s, const StudentGroup *group, float *buffer, DdError *err);
/* Every rank of the group: the parameters in full fp32 (the gather waited
 * for, stale fp32 matrices gathered from their owners), or NULL. */
const float *student_params_full(Student *s, const StudentGroup *group, DdError *err);

/* Scales layer's runs of s's gradients by the group's slice weight and
 * starts their group sums (group->sum_start): to every rank, or, with a
 * sharded state, each shard's part to its owner. */
int gradient_sums_start_layer(Student *s, const NnBackend *be, const StudentGroup *group, int layer,
                              DdError *err);
/* The same for floats [offset, offset + count) of the gradients. */
int gradient_sums_start_range(Student *s, const NnBackend *be, const StudentGroup *group, size_t offset,
                              size_t count, DdError *err);
/* Completes the sums in flight, if any (group->sum_finish): 1 when there
 * were some, 0 when none, -1 on failure. */
int gradient_sums_finish(Student *s, const StudentGroup *group, DdError *err);

/* The shape of one rank's iteration. */
typedef struct StudentShape {
    int images;          /* B */
    int global_count;    /* G >= 1 */
    int global_size;     /* px, square */
    int local_count;     /* L >= 0 */
    int local_size;      /* px */
    int max_masked;      /* masked patches one iteration may hold, over all G*B global crops; a bound
                          * of so many per image (as student_max_masked gives it): a micro-batch
                          * of c images holds up to ceil(max_masked * c / B) */
    int micro_batch;     /* images per forward and backward (0, or >= B: the whole slice at once) */
} StudentShape;

/* The bound of max_masked for a mask config: every global crop masked at
 * the largest ratio. */
int student_max_masked(const StudentShape *shape, const ObjectiveConfig *objective, int patch_size);

/* Where the masked patches of `crops` global crops sit in a backbone output
 * seen as [crops * T, D] (T tokens, the first `prefix` not patches), crop
 * by crop, patches in order: the order of the teacher's iBOT bottlenecks.
 * masks[crops, Np] (host). Writes rows[M] and, when weights is not NULL,
 * weights[M] = 1 / (masked patches of the row's crop). Returns M, or -1
 * when it would exceed capacity. Teacher and student ranks use the same. */
int masked_patch_rows(const uint8_t *masks, int crops, int Np, int T, int prefix, int capacity, int32_t *rows,
                      float *weights);

/* What a rank trains on in one iteration. */
typedef struct StudentBatch {
    const float *global_crops;   /* [G*B, C, S, S] backend */
    const float *local_crops;    /* [L*B, C, s, s] backend; NULL when L = 0 */
    const uint8_t *masks;        /* [G*B, Np] host; 1 = masked (from ibot_mask_generate) */
    const float *teacher_dino;   /* [G*B, teacher dino bottleneck] backend: the teacher's
                                  * L2-normalised DINO bottleneck of each global crop */
    const float *teacher_ibot;   /* [M, teacher ibot bottleneck] backend: its iBOT bottlenecks at
                                  * the masked patches, crop row by crop row, patches in order */
    float global_rope_rescale;   /* the RoPE rescale of each forward (drawn by data/) */
    float local_rope_rescale;
} StudentBatch;

/* Every per-iteration buffer of one student rank, allocated once. m is the
 * images of a full micro-batch (micro), Mm the masked patches one may hold
 * (micro_masked); the buffers marked "slice" hold the whole slice. */
typedef struct StudentWorkspace {
    StudentShape shape;
    ObjectiveConfig objective;
    LossWeights weights;                 /* from the objective; a test may change them */
    int D, Np, prototypes_dino, prototypes_ibot;
    int micro;                           /* m: min(micro_batch, B), B when micro_batch is 0 */
    int micro_masked;                    /* Mm: ceil(max_masked * m / B) */
    int koleo_crops;                     /* global crops in micro-batches of >= 2 images (KoLeo's rows) */
    ViTActivations global, local;        /* G*m global crops (masked), L*m local crops */
    HeadActivations dino, ibot;          /* (G+L)*m CLS rows, Mm patch rows */
    float *memory;                       /* one allocation for: */
    size_t count;
    float *cls;                          /* [(G+L)*m, D] pre-head CLS: global rows, then local */
    float *d_cls;                        /* [(G+L)*m, D] */
    float *patches;                      /* [Mm, D] masked patch tokens of the global crops */
    float *d_patches;                    /* [Mm, D] */
    float *dout_global;                  /* [G*m, T_global, D] gradient of the backbone outputs */
    float *dout_local;                   /* [L*m, T_local, D] */
    float *koleo_unit;                   /* [G*m, D] global CLS, L2-normalised */
    float *koleo_norm;                   /* [G*m] */
    float *d_koleo_unit;                 /* [G*m, D] */
    float *micro_global_crops;           /* [G*m, C, S, S] a micro-batch's crops, gathered from the */
    float *micro_local_crops;            /* [L*m, C, s, s] slice's; NULL when m = B (the slice's are used) */
    float *dino_targets;                 /* slice [G*B, dino prototypes] */
    float *ibot_targets;                 /* slice [max_masked, ibot prototypes] */
    float *column;                       /* [max(prototypes)] Sinkhorn-Knopp scratch */
    float *row_loss;                     /* slice [rows] per-row losses: DINO, iBOT, KoLeo */
    float *row_dloss;                    /* slice [rows] their weights in the total */
    float *row_lse;                      /* slice [rows] log-sum-exp of the cross-entropy rows */
    int32_t *indices;                    /* one int32 allocation for: */
    int32_t *cls_rows_global;            /* [G*m] CLS rows of global.out as [G*m*T, D] */
    int32_t *cls_rows_local;             /* [L*m] */
    int32_t *patch_rows;                 /* [Mm] masked patch rows of global.out */
    int32_t *ibot_target_rows;           /* [Mm] their rows of ibot_targets */
    int32_t *dino_global_targets;        /* [G*m, G-1] rows of dino_targets each global crop is compared with */
    int32_t *dino_local_targets;         /* [L*m, G] those of each local crop */
    int32_t *koleo_neighbor;             /* [G*m] */
    uint8_t *masks;                      /* [G*m, Np] backend copy of the micro-batch's masks */
    void *host;                          /* one host allocation for: */
    float *host_row_loss, *host_row_dloss;   /* slice [rows] */
    int32_t *host_patch_rows;            /* [Mm] */
    float *host_patch_weight;            /* [Mm] 1 / (masked patches of its crop) */
    int32_t *host_ibot_target_rows;      /* [Mm] */
    int32_t *host_target_tables;         /* [G*m*(G-1) + L*m*G] */
    int32_t *host_crop_masked;           /* slice [G*B + 1] masked patches before each global crop */
    uint8_t *host_masks;                 /* [G*m, Np] a micro-batch's masks, gathered */
    int tables_first, tables_images;     /* the micro-batch the target tables on the backend are for */
    int rows;                            /* per-row loss slots */
    int masked;                          /* M of the last iteration */
} StudentWorkspace;

int student_workspace_alloc(StudentWorkspace *w, const ViTConfig *student, const ViTConfig *teacher,
                            const StudentShape *shape, const ObjectiveConfig *objective,
                            const NnBackend *be, DdError *err);
void student_workspace_free(StudentWorkspace *w, const NnBackend *be);

/* The loss of one iteration, term by term (each as defined in DESIGN; the
 * total is the weighted sum of LossWeights). */
typedef struct LossTerms {
    double dino_local;    /* mean CE of each local crop against each teacher global crop */
    double dino_global;   /* mean CE of each global crop against the other teacher global crops */
    double ibot;          /* sum over masked crops of the mean CE of their masked patches, / (G*B) */
    double koleo;         /* mean over global crops of KoLeo on the pre-head CLS (neighbours
                           * within a micro-batch; a micro-batch of 1 image has none and
                           * does not count) */
    double total;
    int masked;           /* M, masked patches */
} LossTerms;

/* Forward, targets and loss of one iteration; with backward != 0 also every
 * gradient (s->grads is zeroed first, then filled), micro-batch by
 * micro-batch: the targets first (the group's collectives: the same calls
 * however the slice is cut), then per micro-batch a forward, its losses and
 * a backward. Fails on a masked count over the workspace's capacity, a
 * failing group sum, or a loss that is not finite, checked before each
 * micro-batch's backward: the parameters are left as they were (the
 * gradients may hold the earlier micro-batches'). */
int student_forward_backward(const NnBackend *be, Student *s, StudentWorkspace *w,
                             const TeacherPrototypes *teacher, const StudentBatch *batch,
                             float teacher_temperature, const StudentGroup *group, int backward,
                             LossTerms *losses, DdError *err);

/* What an update measured, per module. */
typedef struct UpdateReport {
    double grad_norm[MODULE_COUNT];    /* before clipping */
    double clip_scale[MODULE_COUNT];   /* applied factor, 1 when not clipped */
} UpdateReport;

/* The learning-rate multiplier of a tensor: layer-wise decay, and the
 * patch embedding's multiplier. */
double student_lr_multiplier(const OptimizerConfig *config, const ViTConfig *cfg, const ModelTensor *t);

/* Averages the gradients over the group (each multiplied by its rank's
 * slice_weight, a sum, then 1/size: the gradient of the batch's mean loss
 * however the batch is sliced), clips each
 * module to clip_grad_norm, takes one AdamW step (lr * multiplier per
 * tensor, weight decay where the tensor decays), then updates the EMA.
 * With a sharded state each rank does so on its shard (the gradients summed
 * to it, the module norms summed over the group), then starts the gather
 * of the parameters (student_params_gather_start; the next forward waits
 * for each layer); the other gradients are left unspecified.
 * Fails, leaving the parameters alone, on a gradient that is not finite. */
int student_update(const NnBackend *be, Student *s, const OptimizerConfig *config, double lr,
                   double weight_decay, double ema_momentum, const StudentGroup *group,
                   UpdateReport *report, DdError *err);

#endif

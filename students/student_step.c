/*
 * student_step.c - one iteration's forward and backward on a student rank
 * (see students.h): the teacher's targets by Sinkhorn-Knopp, once for the
 * slice; then micro-batch by micro-batch, both crop sizes through the
 * backbone, the CLS and masked patch tokens through the heads, the four loss
 * terms, and every gradient back to the parameters, where they accumulate.
 *
 * Per-row loss slots (w->row_loss, w->row_dloss, w->row_lse): one block per
 * micro-batch of c images and Mc masked patches, the blocks one after the
 * other, each in this order:
 *   DINO global  [G*c]   crop g, image j against the other teacher crops
 *   DINO local   [L*c]   crop l, image j against every teacher crop
 *   iBOT         [Mc]    masked patches
 *   KoLeo        [G*c]   the global CLS tokens, neighbours within the block
 * A block's losses come back to the host (a few hundred floats), are summed
 * there in double, normalised by the slice's counts, and each row's weight
 * in the slice's total goes back as its dloss.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "students/students_internal.h"

/* eps of KoLeo's normalisation and distance (torch.nn.PairwiseDistance's). */
#define KOLEO_EPS 1e-8f

/* One micro-batch: images first .. first + images - 1 of the slice, and
 * its block of loss slots. */
typedef struct MicroBatch {
    int first, images;                  /* b0, c */
    int masked;                         /* Mc */
    int global, local, ibot, koleo;     /* the first slot of each part of its block */
    int end;                            /* the slot after its block */
    const float *global_crops;          /* [G*c, C, S, S] backend */
    const float *local_crops;           /* [L*c, C, s, s] backend; NULL when L = 0 */
} MicroBatch;

int masked_patch_rows(const uint8_t *masks, int crops, int Np, int T, int prefix, int capacity, int32_t *rows,
                      float *weights) {
    int M = 0;
    for (int i = 0; i < crops; i++) {
        int in_crop = 0;
        for (int p = 0; p < Np; p++) in_crop += masks[(long)i * Np + p] != 0;
        if (M + in_crop > capacity) return -1;
        for (int p = 0; p < Np; p++) {
            if (!masks[(long)i * Np + p]) continue;
            rows[M] = i * T + prefix + p;
            if (weights) weights[M] = 1.0f / (float)in_crop;
            M++;
        }
    }
    return M;
}

/* Counts the masked patches of each global crop of the slice (into
 * host_crop_masked: those before each crop, crop row by crop row) and checks
 * the slice's and each micro-batch's against the workspace. Returns M, or -1. */
static int count_masked_patches(StudentWorkspace *w, const uint8_t *masks, DdError *err) {
    const int B = w->shape.images, G = w->shape.global_count, crops = G * B, Np = w->Np;
    int32_t *before = w->host_crop_masked;
    before[0] = 0;
    for (int i = 0; i < crops; i++) {
        int in_crop = 0;
        for (int p = 0; p < Np; p++) in_crop += masks[(long)i * Np + p] != 0;
        before[i + 1] = before[i] + in_crop;
    }
    if (before[crops] > w->shape.max_masked)
        return dd_fail(err, "batch: expected at most %d masked patches (the workspace's max_masked) over %d "
                       "global crops, found %d", w->shape.max_masked, crops, before[crops]);
    for (int first = 0; first < B; first += w->micro) {
        const int images = micro_batch_images(w, first);
        int in_micro = 0;
        for (int g = 0; g < G; g++) in_micro += before[g * B + first + images] - before[g * B + first];
        if (in_micro > w->micro_masked)
            return dd_fail(err, "batch: expected at most %d masked patches (the workspace's max_masked in "
                           "proportion) in the micro-batch of images %d to %d, found %d", w->micro_masked, first,
                           first + images - 1, in_micro);
    }
    return before[crops];
}

typedef void (*CopyBytes)(void *dst, const void *src, size_t bytes);

static void host_copy(void *dst, const void *src, size_t bytes) {
    memcpy(dst, src, bytes);
}

/* A micro-batch's rows of a crop-major slice tensor src[crops*B, row]
 * (crop k of image b at row k*B + b), into dst[crops*images, row] (crop k of
 * its image j at row k*images + j); the whole slice is src itself. */
static const void *micro_rows(CopyBytes copy, void *dst, const void *src, int crops, int B, int first, int images,
                              size_t row_bytes) {
    if (images == B) return src;
    for (int k = 0; k < crops; k++)
        copy((char *)dst + (size_t)k * images * row_bytes, (const char *)src + ((size_t)k * B + first) * row_bytes,
             (size_t)images * row_bytes);
    return dst;
}

/* The rows of the slice's DINO targets each crop of the micro-batch is
 * compared with (global: every other teacher crop of its image; local:
 * all), uploaded unless they are on the backend already. */
static void place_target_tables(StudentWorkspace *w, const NnBackend *be, const MicroBatch *mb) {
    if (mb->first == w->tables_first && mb->images == w->tables_images) return;
    const int B = w->shape.images, G = w->shape.global_count, L = w->shape.local_count, c = mb->images;
    int32_t *global_targets = w->host_target_tables;              /* [G*c, G-1] */
    int32_t *local_targets = global_targets + (size_t)G * c * (G - 1);   /* [L*c, G] */
    for (int g = 0; g < G; g++)
        for (int j = 0; j < c; j++) {
            int32_t *row = global_targets + (size_t)(g * c + j) * (G - 1);
            for (int other = 0, r = 0; other < G; other++)
                if (other != g) row[r++] = other * B + mb->first + j;
        }
    for (int l = 0; l < L; l++)
        for (int j = 0; j < c; j++)
            for (int g = 0; g < G; g++) local_targets[(size_t)(l * c + j) * G + g] = g * B + mb->first + j;
    be->copy_to_device(w->dino_global_targets, global_targets, (size_t)G * c * (G - 1) * sizeof(int32_t));
    be->copy_to_device(w->dino_local_targets, local_targets, (size_t)L * c * G * sizeof(int32_t));
    w->tables_first = mb->first, w->tables_images = mb->images;
}

/* The micro-batch at image `first`: its crops, masks, masked patch rows
 * (in its global.out, and in the slice's iBOT targets) and DINO target rows
 * on the backend; its block of slots from `slot` on. */
static MicroBatch start_micro_batch(StudentWorkspace *w, const NnBackend *be, const ViTConfig *cfg,
                                    const StudentBatch *batch, int first, int slot) {
    const int B = w->shape.images, G = w->shape.global_count, L = w->shape.local_count, Np = w->Np;
    const int c = micro_batch_images(w, first);
    const size_t global_bytes = (size_t)cfg->in_channels * w->shape.global_size * w->shape.global_size * sizeof(float);
    const size_t local_bytes = (size_t)cfg->in_channels * w->shape.local_size * w->shape.local_size * sizeof(float);
    MicroBatch mb = {.first = first, .images = c};
    mb.global_crops = micro_rows(be->copy, w->micro_global_crops, batch->global_crops, G, B, first, c, global_bytes);
    mb.local_crops = micro_rows(be->copy, w->micro_local_crops, batch->local_crops, L, B, first, c, local_bytes);
    const uint8_t *masks = micro_rows(host_copy, w->host_masks, batch->masks, G, B, first, c, (size_t)Np);
    mb.masked = masked_patch_rows(masks, G * c, Np, w->global.T, 1 + cfg->registers, w->micro_masked,
                                  w->host_patch_rows, w->host_patch_weight);   /* counted: fits */
    for (int g = 0, n = 0; g < G; g++)   /* the teacher's rows: crop row by crop row of the slice */
        for (int j = 0; j < c; j++) {
            const int32_t *before = w->host_crop_masked + g * B + first + j;
            for (int32_t row = before[0]; row < before[1]; row++) w->host_ibot_target_rows[n++] = row;
        }
    be->copy_to_device(w->masks, masks, (size_t)G * c * Np);
    be->copy_to_device(w->patch_rows, w->host_patch_rows, (size_t)mb.masked * sizeof(int32_t));
    be->copy_to_device(w->ibot_target_rows, w->host_ibot_target_rows, (size_t)mb.masked * sizeof(int32_t));
    place_target_tables(w, be, &mb);
    mb.global = slot;
    mb.local = mb.global + G * c;
    mb.ibot = mb.local + L * c;
    mb.koleo = mb.ibot + mb.masked;
    mb.end = mb.koleo + G * c;
    return mb;
}

/* Backbones, token gathering and the student's heads, forward. The global
 * crops' backbone tells `before` each layer it is about to read (the
 * heads are layer depth + 1, told before the final norm). */
static void student_forward(Student *s, StudentWorkspace *w, const NnBackend *be, const MicroBatch *mb,
                            const ViTLayerHook *before) {
    const ViTConfig *cfg = &s->cfg;
    const int Gc = w->shape.global_count * mb->images, Lc = w->shape.local_count * mb->images;
    const int D = w->D, M = mb->masked;
    /* the activations are [G*m, ...] row-major and vit_forward reads a->B:
     * a smaller micro-batch runs in their first rows */
    w->global.B = Gc;
    vit_forward_hooked(be, cfg, &s->params.backbone, &w->global, mb->global_crops, w->masks, before);
    be->gather_rows(w->cls, w->global.out, w->cls_rows_global, Gc, D);
    be->gather_rows(w->patches, w->global.out, w->patch_rows, M, D);
    if (Lc > 0) {
        w->local.B = Lc;
        vit_forward(be, cfg, &s->params.backbone, &w->local, mb->local_crops, NULL);
        be->gather_rows(w->cls + (size_t)Gc * D, w->local.out, w->cls_rows_local, Lc, D);
    }
    head_mlp_forward(be, &cfg->dino_head, D, &s->params.dino_head, &w->dino, w->cls, Gc + Lc);
    head_prototypes_forward(be, &cfg->dino_head, s->params.dino_head.prototypes, w->dino.features,
                            w->dino.logits, Gc + Lc);
    if (M > 0) {
        head_mlp_forward(be, &cfg->ibot_head, D, &s->params.ibot_head, &w->ibot, w->patches, M);
        head_prototypes_forward(be, &cfg->ibot_head, s->params.ibot_head.prototypes, w->ibot.features,
                                w->ibot.logits, M);
    }
}

/* Each row's loss of the micro-batch (backend), then its block downloaded. */
static void row_losses(const StudentWorkspace *w, const NnBackend *be, const MicroBatch *mb) {
    const int c = mb->images, G = w->shape.global_count, L = w->shape.local_count, M = mb->masked;
    const int K = w->prototypes_dino, D = w->D;
    const float temperature = w->objective.student_temperature;
    if (G > 1)
        be->softmax_cross_entropy_forward(w->row_loss + mb->global, w->row_lse + mb->global, w->dino.logits,
                                          w->dino_targets, w->dino_global_targets, G * c, K, G - 1, temperature);
    if (L > 0)
        be->softmax_cross_entropy_forward(w->row_loss + mb->local, w->row_lse + mb->local,
                                          w->dino.logits + (size_t)G * c * K, w->dino_targets,
                                          w->dino_local_targets, L * c, K, G, temperature);
    if (M > 0)
        be->softmax_cross_entropy_forward(w->row_loss + mb->ibot, w->row_lse + mb->ibot, w->ibot.logits,
                                          w->ibot_targets, w->ibot_target_rows, M, w->prototypes_ibot, 1,
                                          temperature);
    if (c > 1) {
        be->l2norm_forward(w->koleo_unit, w->koleo_norm, w->cls, G * c, D, KOLEO_EPS);
        for (int g = 0; g < G; g++)
            be->koleo_forward(w->row_loss + mb->koleo + g * c, w->koleo_neighbor + g * c,
                              w->koleo_unit + (size_t)g * c * D, c, D, KOLEO_EPS);
    }
    be->synchronize();
    be->copy_to_host(w->host_row_loss + mb->global, w->row_loss + mb->global,
                     (size_t)(mb->end - mb->global) * sizeof(float));
}

/* Adds the micro-batch's rows to the terms on the host, each divided by the
 * slice's count (so the micro-batches sum to the slice's mean), and writes
 * each row's weight in the slice's total. */
static void add_terms(StudentWorkspace *w, const MicroBatch *mb, LossTerms *t) {
    const int B = w->shape.images, G = w->shape.global_count, L = w->shape.local_count, c = mb->images;
    const LossWeights *k = &w->weights;
    const float *loss = w->host_row_loss;
    float *dloss = w->host_row_dloss;
    memset(dloss + mb->global, 0, (size_t)(mb->end - mb->global) * sizeof(float));

    const double global_pairs = (double)G * B * (G - 1), local_pairs = (double)L * B * G;
    for (int i = 0; G > 1 && i < G * c; i++) {
        t->dino_global += loss[mb->global + i] / global_pairs;
        dloss[mb->global + i] = (float)(k->dino_global / global_pairs);
    }
    for (int i = 0; i < L * c; i++) {
        t->dino_local += loss[mb->local + i] / local_pairs;
        dloss[mb->local + i] = (float)(k->dino_local / local_pairs);
    }
    for (int i = 0; i < mb->masked; i++) {   /* each masked crop weighs as one image */
        t->ibot += loss[mb->ibot + i] * w->host_patch_weight[i] / (G * B);
        dloss[mb->ibot + i] = (float)(k->ibot * w->host_patch_weight[i] / (G * B));
    }
    for (int i = 0; c > 1 && i < G * c; i++) {
        t->koleo += loss[mb->koleo + i] / w->koleo_crops;
        dloss[mb->koleo + i] = (float)(k->koleo / w->koleo_crops);
    }
    t->total = k->dino_local * t->dino_local + k->dino_global * t->dino_global + k->ibot * t->ibot +
               k->koleo * t->koleo;
}

/* Every gradient of the micro-batch, from its rows' weights back to the
 * parameters (accumulating). The backbone's last pass tells `finished`
 * (may be NULL) as it finishes each layer. */
static void student_backward(Student *s, StudentWorkspace *w, const NnBackend *be, const MicroBatch *mb,
                             const ViTLayerHook *finished) {
    const ViTConfig *cfg = &s->cfg;
    const int c = mb->images, G = w->shape.global_count, M = mb->masked;
    const int Gc = G * c, Lc = w->shape.local_count * c, D = w->D, K = w->prototypes_dino, Ki = w->prototypes_ibot;
    const float temperature = w->objective.student_temperature;
    be->copy_to_device(w->row_dloss + mb->global, w->host_row_dloss + mb->global,
                       (size_t)(mb->end - mb->global) * sizeof(float));

    /* losses -> scores */
    be->zero(w->dino.d_logits, (size_t)(Gc + Lc) * K * sizeof(float));
    if (G > 1)
        be->softmax_cross_entropy_backward(w->dino.d_logits, w->row_dloss + mb->global, w->dino.logits,
                                           w->dino_targets, w->dino_global_targets, w->row_lse + mb->global,
                                           Gc, K, G - 1, temperature);
    if (Lc > 0)
        be->softmax_cross_entropy_backward(w->dino.d_logits + (size_t)Gc * K, w->row_dloss + mb->local,
                                           w->dino.logits + (size_t)Gc * K, w->dino_targets,
                                           w->dino_local_targets, w->row_lse + mb->local, Lc, K, G, temperature);
    /* scores -> heads -> CLS and patch tokens */
    be->zero(w->d_cls, (size_t)(Gc + Lc) * D * sizeof(float));
    head_prototypes_backward(be, &cfg->dino_head, &s->params.dino_head, &s->grads.dino_head, &w->dino, Gc + Lc);
    head_mlp_backward(be, &cfg->dino_head, D, &s->params.dino_head, &s->grads.dino_head, &w->dino, w->cls,
                      w->d_cls, Gc + Lc);
    if (M > 0) {
        be->zero(w->ibot.d_logits, (size_t)M * Ki * sizeof(float));
        be->softmax_cross_entropy_backward(w->ibot.d_logits, w->row_dloss + mb->ibot, w->ibot.logits,
                                           w->ibot_targets, w->ibot_target_rows, w->row_lse + mb->ibot, M, Ki, 1,
                                           temperature);
        be->zero(w->d_patches, (size_t)M * D * sizeof(float));
        head_prototypes_backward(be, &cfg->ibot_head, &s->params.ibot_head, &s->grads.ibot_head, &w->ibot, M);
        head_mlp_backward(be, &cfg->ibot_head, D, &s->params.ibot_head, &s->grads.ibot_head, &w->ibot,
                          w->patches, w->d_patches, M);
    }
    if (c > 1) {   /* KoLeo -> global CLS */
        be->zero(w->d_koleo_unit, (size_t)Gc * D * sizeof(float));
        for (int g = 0; g < G; g++)
            be->koleo_backward(w->d_koleo_unit + (size_t)g * c * D, w->row_dloss + mb->koleo + g * c,
                               w->koleo_unit + (size_t)g * c * D, w->koleo_neighbor + g * c, c, D, KOLEO_EPS);
        be->l2norm_backward(w->d_cls, w->d_koleo_unit, w->cls, w->koleo_norm, Gc, D, KOLEO_EPS);
    }
    /* tokens -> backbones */
    be->zero(w->dout_global, (size_t)Gc * w->global.T * D * sizeof(float));
    be->gather_rows_backward(w->dout_global, w->d_cls, w->cls_rows_global, Gc, D);
    be->gather_rows_backward(w->dout_global, w->d_patches, w->patch_rows, M, D);
    vit_backward(be, cfg, &s->params.backbone, &s->grads.backbone, &w->global, w->dout_global, w->masks,
                 Lc > 0 ? NULL : finished);
    if (Lc > 0) {
        be->zero(w->dout_local, (size_t)Lc * w->local.T * D * sizeof(float));
        be->gather_rows_backward(w->dout_local, w->d_cls + (size_t)Gc * D, w->cls_rows_local, Lc, D);
        vit_backward(be, cfg, &s->params.backbone, &s->grads.backbone, &w->local, w->dout_local, NULL, finished);
    }
}

/* A ViTLayerHook's context: starts each finished layer's group sums, and
 * keeps the first failure (the hook cannot return one). */
typedef struct LayerSums {
    Student *s;
    const NnBackend *be;
    const StudentGroup *group;
    int failed;
    DdError *err;
} LayerSums;

static void start_layer_sums(void *context, int layer) {
    LayerSums *sums = context;
    if (!sums->failed && gradient_sums_start_layer(sums->s, sums->be, sums->group, layer, sums->err) != 0)
        sums->failed = 1;
}

/* The forward's ViTLayerHook: waits for each layer's parameters (a
 * sharded update's gather, students/param_gather.c) before it is read. */
static void wait_for_layer(void *context, int layer) {
    LayerSums *waits = context;
    if (!waits->failed && student_params_wait(waits->s, waits->group, layer, waits->err) != 0) waits->failed = 1;
}

int student_forward_backward(const NnBackend *be, Student *s, StudentWorkspace *w,
                             const TeacherPrototypes *teacher, const StudentBatch *batch,
                             float teacher_temperature, const StudentGroup *group, int backward,
                             LossTerms *losses, DdError *err) {
    const int M = count_masked_patches(w, batch->masks, err);
    if (M < 0) return dd_fail_context(err, "student '%s'", s->cfg.name);
    w->masked = M;
    const int B = w->shape.images, GB = w->shape.global_count * B, iterations = w->objective.sinkhorn_iterations;

    /* the teacher's targets for the whole slice: its prototype layers on its
     * bottlenecks, centred over the group (the group's collectives, once) */
    if (teacher_targets(be, &teacher->dino, teacher->dino_weight, batch->teacher_dino, w->dino_targets,
                        w->column, GB, teacher_temperature, iterations, group, err) ||
        teacher_targets(be, &teacher->ibot, teacher->ibot_weight, batch->teacher_ibot, w->ibot_targets,
                        w->column, M, teacher_temperature, iterations, group, err))
        return dd_fail_context(err, "student '%s': teacher targets", s->cfg.name);

    /* one RoPE rescale per crop size: the slice's, for every micro-batch */
    vit_set_rope(&w->global, &s->cfg, be, batch->global_rope_rescale);
    if (w->shape.local_count > 0) vit_set_rope(&w->local, &s->cfg, be, batch->local_rope_rescale);
    /* the gradients' group sums overlap the last micro-batch's backward */
    LayerSums sums = {s, be, group, 0, err}, waits = {s, be, group, 0, err};
    const ViTLayerHook start_sums = {start_layer_sums, &sums}, wait_layers = {wait_for_layer, &waits};
    const int overlap = backward && group->size > 1 && group->overlap_sums && group->sum_start && group->sum_finish;
    if (gradient_sums_finish(s, group, err) < 0)   /* left in flight by a failed step: discarded */
        return -1;
    *losses = (LossTerms){.masked = M};
    for (int first = 0, slot = 0; first < B; first += w->micro) {
        const MicroBatch mb = start_micro_batch(w, be, &s->cfg, batch, first, slot);
        slot = mb.end;
        student_forward(s, w, be, &mb, first == 0 ? &wait_layers : NULL);
        if (waits.failed || (first == 0 && student_params_wait(s, group, -1, err) != 0)) return -1;
        row_losses(w, be, &mb);
        add_terms(w, &mb, losses);
        if (!isfinite(losses->total)) {
            char where[128] = "";
            if (w->micro < B)
                snprintf(where, sizeof where, "; over images 0 to %d of %d, in micro-batches of %d",
                         first + mb.images - 1, B, w->micro);
            return dd_fail(err, "student '%s': the loss is not finite (%g: DINO local %g, DINO global %g, iBOT %g, "
                           "KoLeo %g%s)", s->cfg.name, losses->total, losses->dino_local, losses->dino_global,
                           losses->ibot, losses->koleo, where);
        }
        if (!backward) continue;
        if (first == 0) be->zero(s->grads.memory, s->layout.count * sizeof(float));
        student_backward(s, w, be, &mb, overlap && first + w->micro >= B ? &start_sums : NULL);
        if (sums.failed) return -1;
    }
    return 0;
}

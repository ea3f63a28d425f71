/*
 * student_step.c - one iteration's forward and backward on a student rank
 * (see students.h): both crop sizes through the backbone, the CLS and masked
 * patch tokens through the heads, the teacher's targets by Sinkhorn-Knopp,
 * the four loss terms, then every gradient back to the parameters.
 *
 * Per-row loss slots (w->row_loss, w->row_dloss), in this order:
 *   DINO global  [G*B]   crop g, image b against the other teacher crops
 *   DINO local   [L*B]   crop l, image b against every teacher crop
 *   iBOT         [M]     masked patches (capacity max_masked)
 *   KoLeo        [G*B]   the global CLS tokens
 * The losses come back to the host (a few hundred floats), are summed there
 * in double, and each row's weight in the total goes back as its dloss.
 */
#include <math.h>
#include <string.h>

#include "students/students_internal.h"

/* eps of KoLeo's normalisation and distance (torch.nn.PairwiseDistance's). */
#define KOLEO_EPS 1e-8f

/* Offsets of the loss slots. */
typedef struct RowSlots {
    int global, local, ibot, koleo;
} RowSlots;

static RowSlots row_slots(const StudentWorkspace *w) {
    const int GB = w->shape.global_count * w->shape.images, LB = w->shape.local_count * w->shape.images;
    return (RowSlots){.global = 0, .local = GB, .ibot = GB + LB, .koleo = GB + LB + w->shape.max_masked};
}

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

/* The masked patches of the batch: their rows in global.out and weights,
 * uploaded with the masks. Returns M, or -1 when it exceeds the workspace. */
static int place_masked_patches(StudentWorkspace *w, const NnBackend *be, int registers,
                                const uint8_t *masks, DdError *err) {
    const int crops = w->shape.global_count * w->shape.images, Np = w->Np;
    const int M = masked_patch_rows(masks, crops, Np, w->global.T, 1 + registers, w->shape.max_masked,
                                    w->host_patch_rows, w->host_patch_weight);
    if (M < 0)
        return dd_fail(err, "batch: expected at most %d masked patches (the workspace's max_masked) over %d "
                       "global crops, found more", w->shape.max_masked, crops);
    be->copy_to_device(w->masks, masks, (size_t)crops * Np);
    be->copy_to_device(w->patch_rows, w->host_patch_rows, (size_t)M * sizeof(int32_t));
    return M;
}

/* Backbones, token gathering and the student's heads, forward. */
static void student_forward(Student *s, StudentWorkspace *w, const NnBackend *be, const StudentBatch *batch,
                            int M) {
    const ViTConfig *cfg = &s->cfg;
    const int B = w->shape.images, GB = w->shape.global_count * B, LB = w->shape.local_count * B, D = w->D;
    vit_set_rope(&w->global, cfg, be, batch->global_rope_rescale);
    vit_forward(be, cfg, &s->params.backbone, &w->global, batch->global_crops, w->masks);
    be->gather_rows(w->cls, w->global.out, w->cls_rows_global, GB, D);
    be->gather_rows(w->patches, w->global.out, w->patch_rows, M, D);
    if (LB > 0) {
        vit_set_rope(&w->local, cfg, be, batch->local_rope_rescale);
        vit_forward(be, cfg, &s->params.backbone, &w->local, batch->local_crops, NULL);
        be->gather_rows(w->cls + (size_t)GB * D, w->local.out, w->cls_rows_local, LB, D);
    }
    head_mlp_forward(be, &cfg->dino_head, D, &s->params.dino_head, &w->dino, w->cls, GB + LB);
    head_prototypes_forward(be, &cfg->dino_head, s->params.dino_head.prototypes, w->dino.features,
                            w->dino.logits, GB + LB);
    if (M > 0) {
        head_mlp_forward(be, &cfg->ibot_head, D, &s->params.ibot_head, &w->ibot, w->patches, M);
        head_prototypes_forward(be, &cfg->ibot_head, s->params.ibot_head.prototypes, w->ibot.features,
                                w->ibot.logits, M);
    }
}

/* Each row's loss (backend), then downloaded. */
static void row_losses(const StudentWorkspace *w, const NnBackend *be, int M) {
    const int B = w->shape.images, G = w->shape.global_count, L = w->shape.local_count;
    const int K = w->prototypes_dino, D = w->D;
    const float temperature = w->objective.student_temperature;
    const RowSlots slot = row_slots(w);
    if (G > 1)
        be->softmax_cross_entropy_forward(w->row_loss + slot.global, w->row_lse + slot.global, w->dino.logits,
                                          w->dino_targets, w->dino_global_targets, G * B, K, G - 1, temperature);
    if (L > 0)
        be->softmax_cross_entropy_forward(w->row_loss + slot.local, w->row_lse + slot.local,
                                          w->dino.logits + (size_t)G * B * K, w->dino_targets,
                                          w->dino_local_targets, L * B, K, G, temperature);
    if (M > 0)
        be->softmax_cross_entropy_forward(w->row_loss + slot.ibot, w->row_lse + slot.ibot, w->ibot.logits,
                                          w->ibot_targets, NULL, M, w->prototypes_ibot, 1, temperature);
    if (B > 1) {
        be->l2norm_forward(w->koleo_unit, w->koleo_norm, w->cls, G * B, D, KOLEO_EPS);
        for (int g = 0; g < G; g++)
            be->koleo_forward(w->row_loss + slot.koleo + g * B, w->koleo_neighbor + g * B,
                              w->koleo_unit + (size_t)g * B * D, B, D, KOLEO_EPS);
    }
    be->synchronize();
    be->copy_to_host(w->host_row_loss, w->row_loss, (size_t)w->rows * sizeof(float));
}

/* Sums the terms on the host and writes each row's weight in the total. */
static LossTerms sum_terms(StudentWorkspace *w, int M) {
    const int B = w->shape.images, G = w->shape.global_count, L = w->shape.local_count;
    const RowSlots slot = row_slots(w);
    const LossWeights *c = &w->weights;
    const float *loss = w->host_row_loss;
    float *dloss = w->host_row_dloss;
    LossTerms t = {.masked = M};
    memset(dloss, 0, (size_t)w->rows * sizeof(float));

    const double global_pairs = (double)G * B * (G - 1), local_pairs = (double)L * B * G;
    for (int i = 0; G > 1 && i < G * B; i++) {
        t.dino_global += loss[slot.global + i] / global_pairs;
        dloss[slot.global + i] = (float)(c->dino_global / global_pairs);
    }
    for (int i = 0; i < L * B; i++) {
        t.dino_local += loss[slot.local + i] / local_pairs;
        dloss[slot.local + i] = (float)(c->dino_local / local_pairs);
    }
    for (int i = 0; i < M; i++) {   /* each masked crop weighs as one image */
        t.ibot += loss[slot.ibot + i] * w->host_patch_weight[i] / (G * B);
        dloss[slot.ibot + i] = (float)(c->ibot * w->host_patch_weight[i] / (G * B));
    }
    for (int i = 0; B > 1 && i < G * B; i++) {
        t.koleo += loss[slot.koleo + i] / (G * B);
        dloss[slot.koleo + i] = (float)(c->koleo / (G * B));
    }
    t.total = c->dino_local * t.dino_local + c->dino_global * t.dino_global + c->ibot * t.ibot +
              c->koleo * t.koleo;
    return t;
}

/* Every gradient, from the row weights back to the parameters. */
static void student_backward(Student *s, StudentWorkspace *w, const NnBackend *be, int M) {
    const ViTConfig *cfg = &s->cfg;
    const int B = w->shape.images, G = w->shape.global_count, L = w->shape.local_count;
    const int GB = G * B, LB = L * B, D = w->D, K = w->prototypes_dino, Ki = w->prototypes_ibot;
    const float temperature = w->objective.student_temperature;
    const RowSlots slot = row_slots(w);
    be->copy_to_device(w->row_dloss, w->host_row_dloss, (size_t)w->rows * sizeof(float));

    /* losses -> scores */
    be->zero(w->dino.d_logits, (size_t)(GB + LB) * K * sizeof(float));
    if (G > 1)
        be->softmax_cross_entropy_backward(w->dino.d_logits, w->row_dloss + slot.global, w->dino.logits,
                                           w->dino_targets, w->dino_global_targets, w->row_lse + slot.global,
                                           GB, K, G - 1, temperature);
    if (L > 0)
        be->softmax_cross_entropy_backward(w->dino.d_logits + (size_t)GB * K, w->row_dloss + slot.local,
                                           w->dino.logits + (size_t)GB * K, w->dino_targets,
                                           w->dino_local_targets, w->row_lse + slot.local, LB, K, G,
                                           temperature);
    /* scores -> heads -> CLS and patch tokens */
    be->zero(w->d_cls, (size_t)(GB + LB) * D * sizeof(float));
    head_prototypes_backward(be, &cfg->dino_head, &s->params.dino_head, &s->grads.dino_head, &w->dino, GB + LB);
    head_mlp_backward(be, &cfg->dino_head, D, &s->params.dino_head, &s->grads.dino_head, &w->dino, w->cls,
                      w->d_cls, GB + LB);
    if (M > 0) {
        be->zero(w->ibot.d_logits, (size_t)M * Ki * sizeof(float));
        be->softmax_cross_entropy_backward(w->ibot.d_logits, w->row_dloss + slot.ibot, w->ibot.logits,
                                           w->ibot_targets, NULL, w->row_lse + slot.ibot, M, Ki, 1, temperature);
        be->zero(w->d_patches, (size_t)M * D * sizeof(float));
        head_prototypes_backward(be, &cfg->ibot_head, &s->params.ibot_head, &s->grads.ibot_head, &w->ibot, M);
        head_mlp_backward(be, &cfg->ibot_head, D, &s->params.ibot_head, &s->grads.ibot_head, &w->ibot,
                          w->patches, w->d_patches, M);
    }
    if (B > 1) {   /* KoLeo -> global CLS */
        be->zero(w->d_koleo_unit, (size_t)GB * D * sizeof(float));
        for (int g = 0; g < G; g++)
            be->koleo_backward(w->d_koleo_unit + (size_t)g * B * D, w->row_dloss + slot.koleo + g * B,
                               w->koleo_unit + (size_t)g * B * D, w->koleo_neighbor + g * B, B, D, KOLEO_EPS);
        be->l2norm_backward(w->d_cls, w->d_koleo_unit, w->cls, w->koleo_norm, GB, D, KOLEO_EPS);
    }
    /* tokens -> backbones */
    be->zero(w->dout_global, (size_t)GB * w->global.T * D * sizeof(float));
    be->gather_rows_backward(w->dout_global, w->d_cls, w->cls_rows_global, GB, D);
    be->gather_rows_backward(w->dout_global, w->d_patches, w->patch_rows, M, D);
    vit_backward(be, cfg, &s->params.backbone, &s->grads.backbone, &w->global, w->dout_global, w->masks);
    if (LB > 0) {
        be->zero(w->dout_local, (size_t)LB * w->local.T * D * sizeof(float));
        be->gather_rows_backward(w->dout_local, w->d_cls + (size_t)GB * D, w->cls_rows_local, LB, D);
        vit_backward(be, cfg, &s->params.backbone, &s->grads.backbone, &w->local, w->dout_local, NULL);
    }
}

int student_forward_backward(const NnBackend *be, Student *s, StudentWorkspace *w,
                             const TeacherPrototypes *teacher, const StudentBatch *batch,
                             float teacher_temperature, const StudentGroup *group, int backward,
                             LossTerms *losses, DdError *err) {
    const int M = place_masked_patches(w, be, s->cfg.registers, batch->masks, err);
    if (M < 0) return dd_fail_context(err, "student '%s'", s->cfg.name);
    w->masked = M;
    const int GB = w->shape.global_count * w->shape.images, iterations = w->objective.sinkhorn_iterations;

    /* the teacher's targets: its prototype layers on its bottlenecks, centred over the group */
    if (teacher_targets(be, &teacher->dino, teacher->dino_weight, batch->teacher_dino, w->dino_targets,
                        w->column, GB, teacher_temperature, iterations, group, err) ||
        teacher_targets(be, &teacher->ibot, teacher->ibot_weight, batch->teacher_ibot, w->ibot_targets,
                        w->column, M, teacher_temperature, iterations, group, err))
        return dd_fail_context(err, "student '%s': teacher targets", s->cfg.name);

    student_forward(s, w, be, batch, M);
    row_losses(w, be, M);
    *losses = sum_terms(w, M);
    if (!isfinite(losses->total))
        return dd_fail(err, "student '%s': the loss is not finite (%g: DINO local %g, DINO global %g, iBOT %g, "
                       "KoLeo %g)", s->cfg.name, losses->total, losses->dino_local, losses->dino_global,
                       losses->ibot, losses->koleo);
    if (!backward) return 0;
    be->zero(s->grads.memory, s->layout.count * sizeof(float));
    student_backward(s, w, be, M);
    return 0;
}

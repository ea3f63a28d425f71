/*
 * optimizer.c - the student's update (see students.h): gradients averaged
 * over the group, each rank's weighted by its share of the batch (the sums
 * completed here when the backward started them, students/gradient_sums.c),
 * clipped per module by global norm, one AdamW step with
 * parameter groups (layer-wise lr decay, the patch embedding's multiplier,
 * no weight decay on biases, norms, LayerScale and tokens), then the EMA.
 */
#include <math.h>

#include "students/students.h"

double student_lr_multiplier(const OptimizerConfig *config, const ViTConfig *cfg, const ModelTensor *t) {
    /* DINOv2/v3: decay^(depth + 1 - layer), so the heads and the final norm
     * keep the full rate and the embeddings get the smallest */
    double multiplier = pow(config->layerwise_decay, cfg->depth + 1 - t->layer);
    if (t->patch_embedding) multiplier *= config->patch_embed_lr_multiplier;
    return multiplier;
}

/* Norm of each module's gradient; clips it to max_norm (0: off) as
 * torch.nn.utils.clip_grad_norm_ does. Fails on a norm that is not finite. */
static int clip_modules(const NnBackend *be, Student *s, double max_norm, UpdateReport *report, DdError *err) {
    for (int m = 0; m < MODULE_COUNT; m++) {
        float *grads = s->grads.memory + s->layout.module_offset[m];
        const long n = (long)(s->layout.module_offset[m + 1] - s->layout.module_offset[m]);
        const double norm = sqrt(be->sum_squares(grads, n));
        if (!isfinite(norm))
            return dd_fail(err, "student '%s': the gradient of the %s is not finite at step %ld; the parameters "
                           "are left as they were", s->cfg.name, model_module_names[m], s->steps + 1);
        double scale = 1.0;
        if (max_norm > 0) {
            const double coefficient = max_norm / (norm + 1e-6);
            if (coefficient < 1.0) {
                be->scale(grads, (float)coefficient, n);
                scale = coefficient;
            }
        }
        if (report) {
            report->grad_norm[m] = norm;
            report->clip_scale[m] = scale;
        }
    }
    return 0;
}

int student_update(const NnBackend *be, Student *s, const OptimizerConfig *config, double lr,
                   double weight_decay, double ema_momentum, const StudentGroup *group,
                   UpdateReport *report, DdError *err) {
    const size_t total = s->layout.count;
    if (group->size > 1) {
        /* a rank's gradient is that of its own slice's mean loss: weighted
         * by images / global batch, the group's sum is the gradient of the
         * whole batch's mean. Written as slice_weight (images * size /
         * batch) before the sum and 1 / size after it, equal slices skip
         * the multiply and give the plain average bit for bit. */
        const int started = gradient_sums_finish(s, group, err);   /* during the backward */
        if (started < 0) return -1;
        if (!started) {
            if (group->slice_weight > 0 && group->slice_weight != 1.0)
                be->scale(s->grads.memory, (float)group->slice_weight, (long)total);
            if (group->sum(group->context, s->grads.memory, (long)total, err) != 0)
                return dd_fail_context(err, "student '%s': summing %zu gradients over the group", s->cfg.name,
                                       total);
        }
        be->scale(s->grads.memory, 1.0f / (float)group->size, (long)total);
    }
    if (clip_modules(be, s, config->clip_grad_norm, report, err) != 0) return -1;

    s->steps++;
    for (int i = 0; i < s->layout.tensor_count; i++) {
        const ModelTensor *t = &s->layout.tensors[i];
        const size_t at = t->info.offset;
        const double tensor_lr = lr * student_lr_multiplier(config, &s->cfg, t);
        be->adamw_update(s->params.memory + at, s->grads.memory + at, s->adam_m.memory + at,
                         s->adam_v.memory + at, (long)t->info.count, (float)tensor_lr, config->beta1,
                         config->beta2, config->eps, t->info.decays ? (float)weight_decay : 0.0f, (int)s->steps);
    }
    be->ema_update(s->ema.memory, s->params.memory, (long)total, (float)ema_momentum);
    return 0;
}

/*
 * optimizer.c - the student's update (see students.h): gradients averaged
 * over the group, each rank's weighted by its share of the batch (the sums
 * completed here when the backward started them, students/gradient_sums.c),
 * clipped per module by global norm, one AdamW step with
 * parameter groups (layer-wise lr decay, the patch embedding's multiplier,
 * no weight decay on biases, norms, LayerScale and tokens), then the EMA.
 * With a sharded state (StudentShard) all of it runs on this rank's shard,
 * and the gather of the updated parameters starts at the end
 * (students/param_gather.c).
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

/* The part of floats [begin, end) in this rank's shard, as an offset into
 * the shard and a count (0 when none). */
typedef struct ShardPiece {
    size_t at, count;
} ShardPiece;

static ShardPiece shard_piece(const StudentShard *shard, size_t begin, size_t end) {
    size_t lo, hi;
    return student_shard_overlap(shard, shard->rank, begin, end, &lo, &hi) ? (ShardPiece){lo - shard->begin, hi - lo}
                                                                           : (ShardPiece){0, 0};
}

/* Norm of each module's gradient (summed over the group's shards); clips
 * this rank's part of it to max_norm (0: off) as
 * torch.nn.utils.clip_grad_norm_ does. Fails on a norm that is not finite. */
static int clip_modules(const NnBackend *be, Student *s, const StudentGroup *group, double max_norm,
                        UpdateReport *report, DdError *err) {
    const StudentShard *shard = &s->shard;
    float *mine = s->grads.memory + shard->begin;
    double squares[MODULE_COUNT];
    for (int m = 0; m < MODULE_COUNT; m++) {
        const ShardPiece piece = shard_piece(shard, s->layout.module_offset[m], s->layout.module_offset[m + 1]);
        squares[m] = piece.count ? be->sum_squares(mine + piece.at, (long)piece.count) : 0.0;
    }
    if (shard->size > 1 && group->sum_doubles(group->context, squares, MODULE_COUNT, err) != 0)
        return dd_fail_context(err, "student '%s': summing the gradient norms over the group", s->cfg.name);
    for (int m = 0; m < MODULE_COUNT; m++) {
        const double norm = sqrt(squares[m]);
        if (!isfinite(norm))
            return dd_fail(err, "student '%s': the gradient of the %s is not finite at step %ld; the parameters "
                           "are left as they were", s->cfg.name, model_module_names[m], s->steps + 1);
        double scale = 1.0;
        if (max_norm > 0) {
            const double coefficient = max_norm / (norm + 1e-6);
            if (coefficient < 1.0) {
                const ShardPiece piece =
                    shard_piece(shard, s->layout.module_offset[m], s->layout.module_offset[m + 1]);
                if (piece.count) be->scale(mine + piece.at, (float)coefficient, (long)piece.count);
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

/* The group's sum of the gradients, complete on this rank's shard (all of
 * them unsharded): finishes the sums the backward started, or sums now. */
static int sum_gradients(const NnBackend *be, Student *s, const StudentGroup *group, DdError *err) {
    const size_t total = s->layout.count;
    const int started = gradient_sums_finish(s, group, err);   /* during the backward */
    if (started != 0) return started < 0 ? -1 : 0;
    if (s->shard.size > 1) {   /* each shard's sum to its owner */
        if (gradient_sums_start_range(s, be, group, 0, total, err) != 0 || gradient_sums_finish(s, group, err) < 0)
            return dd_fail_context(err, "student '%s': summing %zu gradients to their shards", s->cfg.name, total);
        return 0;
    }
    /* a rank's gradient is that of its own slice's mean loss: weighted by
     * images / global batch, the group's sum is the gradient of the whole
     * batch's mean. Written as slice_weight (images * size / batch) before
     * the sum and 1 / size after it, equal slices skip the multiply and
     * give the plain average bit for bit. */
    if (group->slice_weight > 0 && group->slice_weight != 1.0)
        be->scale(s->grads.memory, (float)group->slice_weight, (long)total);
    if (group->sum(group->context, s->grads.memory, (long)total, err) != 0)
        return dd_fail_context(err, "student '%s': summing %zu gradients over the group", s->cfg.name, total);
    return 0;
}

int student_update(const NnBackend *be, Student *s, const OptimizerConfig *config, double lr,
                   double weight_decay, double ema_momentum, const StudentGroup *group,
                   UpdateReport *report, DdError *err) {
    const StudentShard *shard = &s->shard;
    if (shard->size > 1 && (shard->size != group->size || !group->sum_start || !group->sum_finish ||
                            !group->sum_doubles || !group->broadcast_start || !group->broadcast_wait))
        return dd_fail(err, "student '%s': a state sharded %d ways needs a group of as many ranks with the sharded "
                       "hooks, found %d ranks", s->cfg.name, shard->size, group->size);
    float *mine = s->grads.memory + shard->begin;
    if (student_params_wait(s, group, -1, err) != 0) return -1;   /* the last gather, if no forward waited */
    if (group->size > 1) {
        if (sum_gradients(be, s, group, err) != 0) return -1;
        be->scale(mine, 1.0f / (float)group->size, (long)shard->count);
    }
    if (clip_modules(be, s, group, config->clip_grad_norm, report, err) != 0) return -1;

    s->steps++;
    s->params.backbone.bf16_current = 0;   /* the weights change: a bf16 gather refills the copy, else the forward casts */
    for (int i = 0; i < s->layout.tensor_count; i++) {
        const ModelTensor *t = &s->layout.tensors[i];
        const ShardPiece piece = shard_piece(shard, t->info.offset, t->info.offset + t->info.count);
        if (!piece.count) continue;
        const size_t at = shard->begin + piece.at;
        const double tensor_lr = lr * student_lr_multiplier(config, &s->cfg, t);
        be->adamw_update(s->params.memory + at, s->grads.memory + at, shard->adam_m + piece.at,
                         shard->adam_v + piece.at, (long)piece.count, (float)tensor_lr, config->beta1,
                         config->beta2, config->eps, t->info.decays ? (float)weight_decay : 0.0f, (int)s->steps);
    }
    be->ema_update(shard->ema, s->params.memory + shard->begin, (long)shard->count, (float)ema_momentum);
    return student_params_gather_start(be, s, group, err);   /* the next forward waits for each layer */
}

/*
 * gradient_sums.c - the group sum of a student's gradients, overlapping the
 * backward (see GradientSums in students.h).
 *
 * The backward finishes the layers from the top down: the heads and the
 * final norm (layer depth + 1), block depth - 1 ... block 0, then the
 * embeddings (layer 0). In the last micro-batch, vit_backward tells as it
 * finishes each one (ViTLayerHook), and that layer's runs of the gradient
 * buffer are scaled by the slice weight and their sums started
 * (GroupSumStart: MPI_Iallreduce, or ncclAllReduce on its own stream), so
 * the sums of the upper layers travel while the lower ones are computed.
 * student_update completes them before it clips. With a sharded optimizer
 * state (StudentShard) a run's part in each shard is summed to that
 * shard's owner only (MPI_Ireduce, ncclReduce): a reduce-scatter, piece by
 * piece.
 *
 * A run is a stretch of the buffer whose tensors share a layer, from its
 * first tensor up to the next run (alignment gaps included), so the runs
 * cover the buffer exactly once: the sums are those of one call over the
 * whole buffer, value for value.
 */
#include <stdlib.h>

#include "students/students.h"

int gradient_sums_init(GradientSums *sums, const ModelLayout *layout, DdError *err) {
    *sums = (GradientSums){0};
    if (layout->tensor_count == 0) return 0;
    sums->runs = calloc((size_t)layout->tensor_count, sizeof *sums->runs);
    if (!sums->runs) return dd_fail(err, "gradient sums: out of memory for %d runs", layout->tensor_count);
    for (int i = 0; i < layout->tensor_count; i++) {   /* the layout walks the buffer in order */
        const ModelTensor *t = &layout->tensors[i];
        GradientRun *last = sums->run_count > 0 ? &sums->runs[sums->run_count - 1] : NULL;
        if (last && last->layer == t->layer) continue;
        sums->runs[sums->run_count++] = (GradientRun){.offset = i == 0 ? 0 : t->info.offset, .layer = t->layer};
    }
    for (int r = 0; r < sums->run_count; r++) {
        const size_t end = r + 1 < sums->run_count ? sums->runs[r + 1].offset : layout->count;
        sums->runs[r].count = end - sums->runs[r].offset;
    }
    return 0;
}

void gradient_sums_free(GradientSums *sums) {
    free(sums->runs);
    *sums = (GradientSums){0};
}

int gradient_sums_start_range(Student *s, const NnBackend *be, const StudentGroup *group, size_t offset,
                              size_t count, DdError *err) {
    if (count == 0) return 0;
    float *start = s->grads.memory + offset;
    /* as student_update does for one sum: the slice's weight first */
    if (group->slice_weight > 0 && group->slice_weight != 1.0)
        be->scale(start, (float)group->slice_weight, (long)count);
    const StudentShard *shard = &s->shard;
    if (shard->size == 1) {
        if (group->sum_start(group->context, start, (long)count, -1, err) != 0) return -1;
        s->sums.in_flight++;
        return 0;
    }
    /* each shard's part of the range to its owner */
    for (int owner = 0; owner < shard->size; owner++) {
        size_t lo, hi;
        if (!student_shard_overlap(shard, owner, offset, offset + count, &lo, &hi)) continue;
        if (group->sum_start(group->context, s->grads.memory + lo, (long)(hi - lo), owner, err) != 0) return -1;
        s->sums.in_flight++;
    }
    return 0;
}

int gradient_sums_start_layer(Student *s, const NnBackend *be, const StudentGroup *group, int layer,
                              DdError *err) {
    const GradientSums *sums = &s->sums;
    for (int r = 0; r < sums->run_count; r++) {
        const GradientRun *run = &sums->runs[r];
        if (run->layer != layer) continue;
        if (gradient_sums_start_range(s, be, group, run->offset, run->count, err) != 0)
            return dd_fail_context(err, "student '%s': starting the group sum of layer %d's %zu gradients",
                                   s->cfg.name, layer, run->count);
    }
    return 0;
}

int gradient_sums_finish(Student *s, const StudentGroup *group, DdError *err) {
    if (s->sums.in_flight == 0) return 0;
    s->sums.in_flight = 0;
    if (group->sum_finish(group->context, err) != 0)
        return dd_fail_context(err, "student '%s': completing the group sums of the gradients", s->cfg.name);
    return 1;
}

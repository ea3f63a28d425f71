/*
 * param_gather.c - the gather of a sharded student's parameters after its
 * update (see student_params_gather_start in students.h).
 *
 * Each rank updated its shard of the parameters; every rank needs all of
 * them for the next forward. The gather is started as broadcasts, one per
 * piece where a layer's run of the buffer (GradientRun) meets a shard, sent
 * by the shard's owner and labelled with the layer (the slot). The forward
 * waits for each layer just before it reads it (a ViTLayerHook given to
 * vit_forward_hooked, students/student_step.c), so the first blocks
 * compute while the later ones still travel; anything else that reads the
 * parameters waits for all of them first.
 */
#include "students/students.h"

int student_params_gather_start(Student *s, const StudentGroup *group, DdError *err) {
    const StudentShard *shard = &s->shard;
    const GradientSums *sums = &s->sums;
    if (shard->size == 1) return 0;
    for (int layer = 0; layer <= s->cfg.depth + 1; layer++)
        for (int r = 0; r < sums->run_count; r++) {
            const GradientRun *run = &sums->runs[r];
            if (run->layer != layer) continue;
            for (int owner = 0; owner < shard->size; owner++) {
                size_t lo, hi;
                if (!student_shard_overlap(shard, owner, run->offset, run->offset + run->count, &lo, &hi)) continue;
                s->params_in_flight = 1;
                if (group->broadcast_start(group->context, s->params.memory + lo, (long)(hi - lo), owner, layer,
                                           err) != 0)
                    return dd_fail_context(err, "student '%s': starting the gather of layer %d's parameters",
                                           s->cfg.name, layer);
            }
        }
    return 0;
}

int student_params_wait(Student *s, const StudentGroup *group, int layer, DdError *err) {
    if (!s->params_in_flight) return 0;
    if (group->broadcast_wait(group->context, layer, err) != 0)
        return dd_fail_context(err, "student '%s': gathering the parameters", s->cfg.name);
    if (layer < 0) s->params_in_flight = 0;
    return 0;
}

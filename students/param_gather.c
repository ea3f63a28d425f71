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
 *
 * Where the blocks run in bf16 (a whole bf16 copy of the block matrices,
 * vit_params_alloc_bf16), a block's matrices travel in bf16: the owner
 * casts its part of them into the copy and broadcasts that, half the bytes
 * of fp32, and every rank's forward reads the copy as it came
 * (ViTParams.bf16_current): the bits the cast of the fp32 weights would
 * give, so the step is the same bit for bit. The rest (biases, norms,
 * scales, embeddings, heads) travels in fp32. A rank's fp32 matrices of
 * other ranks' shards are then stale (Student.params_fp32_stale): nothing
 * reads them but a checkpoint, which gathers them first
 * (student_params_full).
 */
#include "students/students.h"

/* Where in the parameters a piece of the gather goes. */
typedef struct GatherPiece {
    Student *s;
    const StudentGroup *group;
    int owner, layer;
} GatherPiece;

static int broadcast_fp32(const GatherPiece *g, size_t lo, size_t hi, DdError *err) {
    if (lo >= hi) return 0;
    return g->group->broadcast_start(g->group->context, g->s->params.memory + lo, (hi - lo) * sizeof(float), g->owner,
                                     g->layer, err);
}

/* [lo, hi) of block matrix floats: cast into the bf16 copy by the owner,
 * then broadcast from there. */
static int broadcast_bf16(const NnBackend *be, const GatherPiece *g, size_t lo, size_t hi, DdError *err) {
    if (lo >= hi) return 0;
    const ViTParams *p = &g->s->params.backbone;
    uint16_t *copy = vit_bf16_copy_of(p, g->layer - 1, g->s->params.memory + lo);
    if (g->owner == g->s->shard.rank) be->cast_to_bf16(copy, g->s->params.memory + lo, (long)(hi - lo));
    return g->group->broadcast_start(g->group->context, copy, (hi - lo) * sizeof(uint16_t), g->owner, g->layer, err);
}

/* Whether s's block matrices travel in bf16: its blocks read a whole bf16 copy. */
static int gathers_bf16(const Student *s) {
    const ViTParams *p = &s->params.backbone;
    return p->bf16 && p->bf16_blocks > 1;
}

/* Starts the broadcasts of floats [lo, hi) of one layer, owned by g->owner:
 * in fp32, but a block's matrices in bf16 where the blocks read a copy. */
static int broadcast_piece(const NnBackend *be, const GatherPiece *g, size_t lo, size_t hi, DdError *err) {
    if (!gathers_bf16(g->s) || g->layer < 1 || g->layer > g->s->cfg.depth) return broadcast_fp32(g, lo, hi, err);
    ViTMatrix matrices[VIT_BLOCK_MATRICES];   /* in memory order */
    vit_block_matrices(&g->s->cfg, &g->s->params.backbone, g->layer - 1, matrices);
    size_t at = lo;
    for (int i = 0; i < VIT_BLOCK_MATRICES && at < hi; i++) {
        const size_t begin = (size_t)(matrices[i].tensor - g->s->params.memory);
        const size_t end = begin + (size_t)matrices[i].count;
        const size_t from = begin > at ? begin : at, to = end < hi ? end : hi;
        if (from >= to) continue;
        if (broadcast_fp32(g, at, from, err) != 0 || broadcast_bf16(be, g, from, to, err) != 0) return -1;
        at = to;
    }
    return broadcast_fp32(g, at, hi, err);
}

int student_params_gather_start(const NnBackend *be, Student *s, const StudentGroup *group, DdError *err) {
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
                const GatherPiece piece = {s, group, owner, layer};
                if (broadcast_piece(be, &piece, lo, hi, err) != 0)
                    return dd_fail_context(err, "student '%s': starting the gather of layer %d's parameters",
                                           s->cfg.name, layer);
            }
        }
    if (gathers_bf16(s)) s->params.backbone.bf16_current = s->params_fp32_stale = 1;
    return 0;
}

int student_params_wait(Student *s, const StudentGroup *group, int layer, DdError *err) {
    if (!s->params_in_flight) return 0;
    if (group->broadcast_wait(group->context, layer, err) != 0)
        return dd_fail_context(err, "student '%s': gathering the parameters", s->cfg.name);
    if (layer < 0) s->params_in_flight = 0;
    return 0;
}

int student_shards_gather(Student *s, const StudentGroup *group, float *buffer, DdError *err) {
    const StudentShard *shard = &s->shard;
    if (shard->size == 1) return 0;
    for (int owner = 0; owner < shard->size; owner++)
        if (group->broadcast_start(group->context, buffer + shard->bounds[owner],
                                   (shard->bounds[owner + 1] - shard->bounds[owner]) * sizeof(float), owner, 0,
                                   err) != 0)
            return -1;
    return group->broadcast_wait(group->context, -1, err);
}

const float *student_params_full(Student *s, const StudentGroup *group, DdError *err) {
    if (student_params_wait(s, group, -1, err) != 0) return NULL;
    if (s->params_fp32_stale) {
        if (student_shards_gather(s, group, s->params.memory, err) != 0) {
            dd_fail_context(err, "student '%s': gathering the fp32 parameters", s->cfg.name);
            return NULL;
        }
        s->params_fp32_stale = 0;
    }
    return s->params.memory;
}

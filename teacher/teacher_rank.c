/*
 * teacher_rank.c - a teacher rank's iteration (see teacher_rank.h).
 */
#include "teacher/teacher_rank.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "nn/clock.h"

int teacher_rank_open(TeacherRank *rank, const TeacherRankOptions *o, const Comm *comm,
                      const RankLayout *layout, const NnBackend *be, DdError *err) {
    memset(rank, 0, sizeof *rank);
    if (o->prefetch < 1 || o->prefetch > TEACHER_MAX_PREFETCH)
        return dd_fail(err, "teacher: expected prefetch in [1, %d], found %d", TEACHER_MAX_PREFETCH, o->prefetch);
    rank->prefetch = o->prefetch;
    rank_layout_slice(layout, comm->group_index, comm->group_rank, &rank->begin, &rank->end);
    const int images = rank->end - rank->begin;
    const ViTConfig *cfg = o->model;
    const int side = o->crops->global_size / cfg->patch_size, Np = side * side;
    rank->masks = (IbotMaskHookContext){*o->ibot_mask, side, side, o->crops->global_count};
    if (teacher_create(&rank->teacher, cfg, o->weights_path, o->seed, images > 0 ? images : 1,
                       o->crops->global_count, o->crops->global_size, o->max_masked, be, err) != 0)
        return -1;
    const size_t max_values = (size_t)images * o->crops->global_count *
                              ((size_t)cfg->dino_head.bottleneck + (size_t)Np * cfg->ibot_head.bottleneck);
    rank->offsets = calloc((size_t)o->global_batch + 1, sizeof *rank->offsets);
    rank->rows = malloc((max_values + 1) * sizeof(float));
    if (!rank->offsets || !rank->rows) return dd_fail(err, "teacher: out of memory for the rows of a slice");
    for (int s = 0; s < rank->prefetch; s++) {
        rank->wire[s] = malloc((max_values + 1) * sizeof(uint16_t));
        if (!rank->wire[s]) return dd_fail(err, "teacher: out of memory for the wire buffers");
        if (delivery_transfer_init(&rank->transfers[s], layout, err) != 0) return -1;
    }
    if (images == 0) return 0;
    DataLoaderOptions loader = {
        .data = o->data, .crops = o->crops, .seed = o->seed, .global_batch = o->global_batch,
        .begin = rank->begin, .end = rank->end, .build_locals = 0, .first_iteration = (uint64_t)o->first_iteration,
        .mask_hook = ibot_mask_hook, .mask_context = &rank->masks,
        .mask_bytes = ibot_mask_batch_bytes(&rank->masks, images),
    };
    return data_loader_open(&rank->loader, &loader, err);
}

int teacher_rank_step(TeacherRank *rank, long iteration, const Comm *comm, const RankLayout *layout,
                      const NnBackend *be, DdError *err) {
    const int slot = (int)(iteration % rank->prefetch);
    if (rank->in_flight[slot]) {   /* the rows of iteration - prefetch must have left */
        if (delivery_wait(&rank->transfers[slot], err) != 0) return -1;
        rank->in_flight[slot] = 0;
    }
    if (rank->end == rank->begin) return 0;
    const DataBatch *batch;
    if (data_loader_next(rank->loader, &batch, err) != 0) return -1;
    double start = dd_now_seconds();
    if ((long)batch->iteration != iteration) {
        data_loader_release(rank->loader, batch);
        return dd_fail(err, "teacher: expected the batch of iteration %ld, found %llu", iteration,
                       (unsigned long long)batch->iteration);
    }
    const uint8_t *masks = batch->masks;
    PayloadShape shape = {batch->count, batch->global_count,
                          rank->masks.Hp * rank->masks.Wp, rank->teacher.cfg.dino_head.bottleneck,
                          rank->teacher.cfg.ibot_head.bottleneck};
    payload_offsets(&shape, masks, rank->begin, rank->offsets);
    int status = teacher_compute_rows(&rank->teacher, be, batch->global_crops, masks, batch->count, rank->rows, err);
    const long values = rank->offsets[rank->end];
    data_loader_release(rank->loader, batch);
    if (status != 0) return -1;
    bf16_from_float(rank->wire[slot], rank->rows, values);
    rank->busy_seconds = dd_now_seconds() - start;
    if (delivery_post_sends(comm, layout, rank->offsets, rank->wire[slot], (int)(iteration % 32768),
                            &rank->transfers[slot], err) != 0)
        return -1;
    rank->bytes_sent = rank->transfers[slot].bytes_sent;
    rank->in_flight[slot] = 1;
    return 0;
}

int teacher_rank_drain(TeacherRank *rank, DdError *err) {
    for (int s = 0; s < rank->prefetch; s++) {
        if (!rank->in_flight[s]) continue;
        if (delivery_wait(&rank->transfers[s], err) != 0) return -1;
        rank->in_flight[s] = 0;
    }
    return 0;
}

void teacher_rank_close(TeacherRank *rank, const NnBackend *be) {
    if (rank->loader) data_loader_close(rank->loader);
    teacher_free(&rank->teacher, be);
    for (int s = 0; s < TEACHER_MAX_PREFETCH; s++) {
        free(rank->wire[s]);
        delivery_transfer_free(&rank->transfers[s]);
    }
    free(rank->offsets);
    free(rank->rows);
    memset(rank, 0, sizeof *rank);
}

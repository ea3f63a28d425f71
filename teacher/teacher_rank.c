/*
 * teacher_rank.c - a teacher rank's iteration (see teacher_rank.h): wait
 * for the slot's earlier rows to leave, compute the slice's features, turn
 * them into bf16 rows in the slot's wire buffer, post them.
 */
#include "teacher/teacher_rank.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "nn/clock.h"

/* Masked patches of a slice of `images` images at most, as
 * student_max_masked counts them. */
static int slice_max_masked(const TeacherRank *rank, int images) {
    const IbotMaskHookContext *m = &rank->masks;
    return m->global_count * images * ibot_mask_max_count(&m->config, m->Hp * m->Wp);
}

/* Everything sized by the slice: the teacher's activations, the rows and
 * wire buffers, the loader from first_iteration (none for 0 images). */
static int open_slice(TeacherRank *rank, const RankLayout *layout, const NnBackend *be, long first_iteration,
                      DdError *err) {
    const TeacherRankOptions *o = &rank->options;
    rank_layout_slice(layout, LAYOUT_TEACHER_GROUP, rank->member, &rank->begin, &rank->end);
    const int images = rank->end - rank->begin, capacity = images > 0 ? images : 1;
    if (teacher_resize(&rank->teacher, capacity, slice_max_masked(rank, capacity), be, err) != 0) return -1;
    const ViTConfig *cfg = o->model;
    const size_t max_values = (size_t)images * o->crops->global_count *
                              ((size_t)cfg->dino_head.bottleneck +
                               (size_t)rank->masks.Hp * rank->masks.Wp * cfg->ibot_head.bottleneck);
    if (!rank->on_device && !(rank->rows = malloc((max_values + 1) * sizeof(float))))
        return dd_fail(err, "teacher: out of memory for the rows of a slice");
    const size_t wire_bytes = (max_values + 1) * sizeof(uint16_t);
    for (int s = 0; s < rank->prefetch; s++) {
        rank->wire[s] = rank->on_device ? be->alloc(wire_bytes) : malloc(wire_bytes);
        if (!rank->wire[s])
            return dd_fail(err, "teacher: out of %s memory for the wire buffers", rank->on_device ? be->name : "host");
    }
    if (images == 0) return 0;
    DataLoaderOptions loader = {
        .data = o->data, .crops = o->crops, .seed = o->seed, .global_batch = o->global_batch,
        .begin = rank->begin, .end = rank->end, .build_locals = 0, .first_iteration = (uint64_t)first_iteration,
        .mask_hook = ibot_mask_hook, .mask_context = &rank->masks,
        .mask_bytes = ibot_mask_batch_bytes(&rank->masks, images),
    };
    return data_loader_open(&rank->loader, &loader, err);
}

/* Frees what open_slice made but the teacher's buffers (teacher_resize
 * replaces those, teacher_free frees them); nothing may be in flight. */
static void close_slice(TeacherRank *rank, const NnBackend *be) {
    if (rank->loader) data_loader_close(rank->loader);
    rank->loader = NULL;
    free(rank->rows);
    rank->rows = NULL;
    for (int s = 0; s < TEACHER_MAX_PREFETCH; s++) {
        if (rank->on_device && rank->wire[s]) be->free(rank->wire[s]);
        else free(rank->wire[s]);
        rank->wire[s] = NULL;
    }
}

int teacher_rank_open(TeacherRank *rank, const TeacherRankOptions *o, const Comm *comm,
                      const RankLayout *layout, const NnBackend *be, DdError *err) {
    memset(rank, 0, sizeof *rank);
    if (o->prefetch < 1 || o->prefetch > TEACHER_MAX_PREFETCH)
        return dd_fail(err, "teacher: expected prefetch in [1, %d], found %d", TEACHER_MAX_PREFETCH, o->prefetch);
    rank->options = *o;
    rank->prefetch = o->prefetch;
    rank->comm = comm;
    rank->on_device = delivery_on_device(comm, be);
    /* a teacher rank, or a student rank computing teacher images too */
    rank->member = rank_layout_teacher_member(layout, comm->world_rank);
    if (rank->member < 0)
        return dd_fail(err, "teacher: rank %d computes no teacher images in the plan", comm->world_rank);
    const ViTConfig *cfg = o->model;
    const int side = o->crops->global_size / cfg->patch_size;
    rank->masks = (IbotMaskHookContext){*o->ibot_mask, side, side, o->crops->global_count};
    if (teacher_create(&rank->teacher, cfg, o->weights_path, o->seed, 0, o->crops->global_count,
                       o->crops->global_size, 0, be, err) != 0)
        return -1;
    rank->offsets = calloc((size_t)o->global_batch + 1, sizeof *rank->offsets);
    if (!rank->offsets) return dd_fail(err, "teacher: out of memory for the batch offsets");
    for (int s = 0; s < rank->prefetch; s++)
        if (delivery_transfer_init(&rank->transfers[s], layout, err) != 0) return -1;
    return open_slice(rank, layout, be, o->first_iteration, err);
}

int teacher_rank_move_slice(TeacherRank *rank, const RankLayout *layout, const NnBackend *be, long first_iteration,
                            DdError *err) {
    if (teacher_rank_drain(rank, err) != 0) return -1;   /* the wire buffers are freed */
    close_slice(rank, be);
    if (open_slice(rank, layout, be, first_iteration, err) != 0)
        return dd_fail_context(err, "teacher member %d: moving to a new slice at iteration %ld", rank->member,
                               first_iteration);
    return 0;
}

/* Returns once the rows posted from slot have left: on the device, when
 * the event of the slot's sends has passed (later sends stay in flight). A
 * host wait, outside the busy time: the next step's first upload would wait
 * for it anyway, and count waiting for the students as compute. */
static int wait_slot(TeacherRank *rank, int slot, DdError *err) {
    if (rank->on_device) return delivery_device_wait_slot(rank->comm, slot, err);
    return delivery_wait(&rank->transfers[slot], err);
}

/* The slice's rows, from the features teacher_forward left, into the wire
 * buffer of slot in bf16: made by the backend in its memory (on_device), or
 * on the host. */
static int fill_wire(TeacherRank *rank, const NnBackend *be, const uint8_t *masks, int slot, DdError *err) {
    if (rank->on_device) return teacher_wire_rows(&rank->teacher, be, masks, rank->wire[slot], err);
    teacher_rows(&rank->teacher, be, masks, rank->rows);
    bf16_from_float(rank->wire[slot], rank->rows, rank->offsets[rank->end]);
    return 0;
}

/* Posts the rows of slot to the students; rank->bytes_sent gets their size. */
static int post_wire(TeacherRank *rank, long iteration, int slot, const Comm *comm, const RankLayout *layout,
                     DdError *err) {
    if (rank->on_device)
        return delivery_device_post_sends(comm, layout, rank->offsets, rank->wire[slot], slot, &rank->bytes_sent, err);
    if (delivery_post_sends(comm, layout, rank->offsets, rank->wire[slot], (int)(iteration % 32768),
                            &rank->transfers[slot], err) != 0)
        return -1;
    rank->bytes_sent = rank->transfers[slot].bytes_sent;
    return 0;
}

int teacher_rank_step(TeacherRank *rank, long iteration, const Comm *comm, const RankLayout *layout,
                      const NnBackend *be, DdError *err) {
    const int slot = (int)(iteration % rank->prefetch);
    if (rank->in_flight[slot]) {   /* the rows of iteration - prefetch must have left */
        if (wait_slot(rank, slot, err) != 0) return -1;
        rank->in_flight[slot] = 0;
    }
    rank->busy_seconds = 0;
    rank->bytes_sent = 0;
    if (rank->end == rank->begin) return 0;   /* a member with no images this time */
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
    int status = teacher_forward(&rank->teacher, be, batch->global_crops, masks, batch->count, err);
    if (status == 0) status = fill_wire(rank, be, masks, slot, err);
    data_loader_release(rank->loader, batch);
    if (status != 0) return -1;
    rank->busy_seconds = dd_now_seconds() - start;
    if (post_wire(rank, iteration, slot, comm, layout, err) != 0) return -1;
    rank->in_flight[slot] = 1;
    return 0;
}

int teacher_rank_drain(TeacherRank *rank, DdError *err) {
    for (int s = 0; s < rank->prefetch; s++) {
        if (!rank->in_flight[s]) continue;
        if (wait_slot(rank, s, err) != 0) return -1;
        rank->in_flight[s] = 0;
    }
    return 0;
}

void teacher_rank_close(TeacherRank *rank, const NnBackend *be) {
    close_slice(rank, be);
    teacher_free(&rank->teacher, be);
    for (int s = 0; s < TEACHER_MAX_PREFETCH; s++) delivery_transfer_free(&rank->transfers[s]);
    free(rank->offsets);
    memset(rank, 0, sizeof *rank);
}

/*
 * student_rank.c - a student rank's iteration and its checkpoint state
 * (see student_rank.h).
 */
#include "students/student_rank.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "nn/clock.h"

/* The group's collectives, timed: what a rank spends in them is waiting
 * for its group, not compute (StudentStepReport.busy_seconds). Each hook
 * reads the clock, calls the comm/ hook, and hands its status to timed(). */
static int timed(StudentRank *rank, double start, int status) {
    rank->collective_seconds += dd_now_seconds() - start;
    return status;
}

static int timed_group_sum(void *context, float *buffer, long count, DdError *err) {
    StudentRank *rank = context;
    const double start = dd_now_seconds();
    return timed(rank, start, comm_group_sum_hook(rank->comm, buffer, count, err));
}

static int timed_group_max(void *context, float *buffer, long count, DdError *err) {
    StudentRank *rank = context;
    const double start = dd_now_seconds();
    return timed(rank, start, comm_group_max_hook(rank->comm, buffer, count, err));
}

static int timed_group_sum_start(void *context, float *buffer, long count, int owner, DdError *err) {
    StudentRank *rank = context;
    const double start = dd_now_seconds();
    return timed(rank, start, comm_group_sum_start_hook(rank->comm, buffer, count, owner, err));
}

static int timed_group_sum_finish(void *context, DdError *err) {
    StudentRank *rank = context;
    const double start = dd_now_seconds();
    return timed(rank, start, comm_group_sum_finish_hook(rank->comm, err));
}

static int timed_group_sum_doubles(void *context, double *values, int count, DdError *err) {
    StudentRank *rank = context;
    const double start = dd_now_seconds();
    return timed(rank, start, comm_group_sum_doubles_hook(rank->comm, values, count, err));
}

static int timed_group_broadcast_start(void *context, void *buffer, size_t bytes, int owner, int slot,
                                       DdError *err) {
    StudentRank *rank = context;
    const double start = dd_now_seconds();
    return timed(rank, start, comm_group_broadcast_start_hook(rank->comm, buffer, bytes, owner, slot, err));
}

static int timed_group_broadcast_wait(void *context, int slot, DdError *err) {
    StudentRank *rank = context;
    const double start = dd_now_seconds();
    return timed(rank, start, comm_group_broadcast_wait_hook(rank->comm, slot, err));
}

/* Everything sized by the slice: the workspace (its activations by the
 * micro-batch), the crops and rows buffers, the loader from first_iteration. */
static int open_slice(StudentRank *rank, const RankLayout *layout, const NnBackend *be, long first_iteration,
                      DdError *err) {
    const StudentRankOptions *o = &rank->options;
    const Comm *comm = rank->comm;
    rank_layout_slice(layout, comm->group_index, comm->group_rank, &rank->begin, &rank->end);
    rank->on_device = delivery_on_device(comm, be);
    const int B = rank->end - rank->begin;
    if (B < 1) return dd_fail(err, "student '%s': expected a slice of at least 1 image, found %d", o->model->name, B);
    rank->group.slice_weight = (double)B * comm->group_size / o->global_batch;
    const CropConfig *c = o->crops;
    const int side = c->global_size / o->model->patch_size, Np = side * side;
    const int Kd = o->teacher->dino_head.bottleneck, Ki = o->teacher->ibot_head.bottleneck;
    StudentShape shape = {B, c->global_count, c->global_size, c->local_count, c->local_size, 0, o->micro_batch};
    shape.max_masked = student_max_masked(&shape, o->objective, o->model->patch_size);
    if (student_workspace_alloc(&rank->workspace, o->model, o->teacher, &shape, o->objective, be, err) != 0)
        return -1;
    const size_t global_floats = (size_t)c->global_count * B * 3 * c->global_size * c->global_size;
    const size_t local_floats = (size_t)c->local_count * B * 3 * c->local_size * c->local_size;
    const size_t dino_floats = (size_t)c->global_count * B * Kd, ibot_floats = (size_t)(shape.max_masked + 1) * Ki;
    rank->memory = be->alloc((global_floats + local_floats + dino_floats + ibot_floats) * sizeof(float));
    const size_t max_values = (size_t)B * c->global_count * ((size_t)Kd + (size_t)Np * Ki);
    const size_t wire_bytes = (max_values + 1) * sizeof(uint16_t);
    rank->wire = rank->on_device ? be->alloc(wire_bytes) : malloc(wire_bytes);
    if (!rank->on_device) rank->host_dino = malloc((dino_floats + ibot_floats) * sizeof(float));
    if (!rank->memory || !rank->wire || (!rank->on_device && !rank->host_dino))
        return dd_fail(err, "student '%s': out of memory for a slice of %d images", o->model->name, B);
    if (payload_starts_alloc(&rank->starts, be, (long)c->global_count * B, shape.max_masked, err) != 0) return -1;
    if (rank->host_dino) rank->host_ibot = rank->host_dino + dino_floats;
    rank->global_crops = rank->memory;
    rank->local_crops = rank->global_crops + global_floats;
    rank->teacher_dino = rank->local_crops + local_floats;
    rank->teacher_ibot = rank->teacher_dino + dino_floats;
    DataLoaderOptions loader = {
        .data = o->data, .crops = o->crops, .seed = o->seed, .global_batch = o->global_batch,
        .begin = rank->begin, .end = rank->end, .build_locals = 1, .first_iteration = (uint64_t)first_iteration,
        .mask_hook = ibot_mask_hook, .mask_context = &rank->masks,
        .mask_bytes = ibot_mask_batch_bytes(&rank->masks, B),
    };
    return data_loader_open(&rank->loader, &loader, err);
}

static void close_slice(StudentRank *rank, const NnBackend *be) {
    if (rank->loader) data_loader_close(rank->loader);
    rank->loader = NULL;
    student_workspace_free(&rank->workspace, be);
    if (rank->memory) be->free(rank->memory);
    if (rank->on_device && rank->wire) be->free(rank->wire);
    else free(rank->wire);
    payload_starts_free(&rank->starts, be);
    free(rank->host_dino);
    rank->memory = NULL, rank->wire = NULL, rank->host_dino = NULL, rank->host_ibot = NULL;
}

int student_rank_open(StudentRank *rank, const StudentRankOptions *o, Comm *comm, const RankLayout *layout,
                      const NnBackend *be, DdError *err) {
    memset(rank, 0, sizeof *rank);
    rank->options = *o;
    rank->comm = comm;
    const int side = o->crops->global_size / o->model->patch_size;
    rank->masks = (IbotMaskHookContext){o->objective->ibot_mask, side, side, o->crops->global_count};
    rank->group = (StudentGroup){.sum = timed_group_sum, .max = timed_group_max, .context = rank,
                                 .size = comm->group_size, .slice_weight = 1.0,
                                 .sum_start = timed_group_sum_start, .sum_finish = timed_group_sum_finish,
                                 .overlap_sums = o->overlap_gradient_sums, .sum_doubles = timed_group_sum_doubles,
                                 .broadcast_start = timed_group_broadcast_start,
                                 .broadcast_wait = timed_group_broadcast_wait};
    const int sharded = o->shard_optimizer_state && comm->group_size > 1;
    if (student_create_sharded(&rank->student, o->model, be, o->seed, (uint64_t)o->model_index,
                               sharded ? comm->group_rank : 0, sharded ? comm->group_size : 1, err) != 0 ||
        teacher_prototypes_load(&rank->prototypes, o->teacher, o->teacher_weights, o->seed, be, err) != 0)
        return -1;
    rank->offsets = calloc((size_t)o->global_batch + 1, sizeof *rank->offsets);
    if (!rank->offsets) return dd_fail(err, "student '%s': out of memory for the batch offsets", o->model->name);
    if (delivery_transfer_init(&rank->transfer, layout, err) != 0) return -1;
    const char *inject_nan = getenv("DD_INJECT_NAN_AT"), *inject_hang = getenv("DD_INJECT_HANG_AT");
    rank->inject_nan_at = inject_nan ? atol(inject_nan) : -1;
    rank->inject_hang_at = inject_hang ? atol(inject_hang) : -1;
    return open_slice(rank, layout, be, o->first_iteration, err);
}

int student_rank_move_slice(StudentRank *rank, const RankLayout *layout, const NnBackend *be, long first_iteration,
                            DdError *err) {
    close_slice(rank, be);
    if (open_slice(rank, layout, be, first_iteration, err) != 0)
        return dd_fail_context(err, "student group '%s': moving to a new slice at iteration %ld", rank->options.name,
                               first_iteration);
    return 0;
}

/* The teacher's rows of this slice, as teacher_dino[G*B, Kd] and
 * teacher_ibot[M, Ki] in the backend's memory: received over NCCL into the
 * device wire buffer and unpacked there (on_device), or received over MPI,
 * unpacked on the host and copied. The wait for them is timed apart. */
static int receive_teacher_rows(StudentRank *rank, long iteration, Comm *comm, const RankLayout *layout,
                                const NnBackend *be, const uint8_t *masks, StudentStepReport *report, DdError *err) {
    const double wait_start = dd_now_seconds();
    if (rank->on_device) {
        if (delivery_device_post_receives(comm, layout, rank->offsets, rank->wire, &report->bytes_received, err) != 0 ||
            delivery_device_wait(comm, err) != 0)
            return -1;
        report->wait_seconds = dd_now_seconds() - wait_start;
        return payload_unpack_on(be, &rank->shape, masks, rank->wire, rank->teacher_dino, rank->teacher_ibot,
                                 &rank->starts, err);
    }
    if (delivery_post_receives(comm, layout, rank->offsets, rank->wire, (int)(iteration % 32768), &rank->transfer,
                               err) != 0 ||
        delivery_wait(&rank->transfer, err) != 0)
        return -1;
    report->wait_seconds = dd_now_seconds() - wait_start;
    report->bytes_received = rank->transfer.bytes_received;
    const PayloadShape *s = &rank->shape;
    payload_unpack(s, masks, rank->wire, rank->host_dino, rank->host_ibot, rank->starts.row_starts);
    long masked = 0;
    for (size_t i = 0; i < (size_t)s->global_count * s->images * s->patches; i++) masked += masks[i] != 0;
    be->copy_to_device(rank->teacher_dino, rank->host_dino,
                       (size_t)s->global_count * s->images * s->dino_dim * sizeof(float));
    if (masked) be->copy_to_device(rank->teacher_ibot, rank->host_ibot, (size_t)masked * s->ibot_dim * sizeof(float));
    return 0;
}

int student_rank_step(StudentRank *rank, long iteration, Comm *comm, const RankLayout *layout,
                      const NnBackend *be, StudentStepReport *report, DdError *err) {
    const StudentRankOptions *o = &rank->options;
    const CropConfig *c = o->crops;
    memset(report, 0, sizeof *report);
    if (iteration == rank->inject_hang_at) {
        fprintf(stderr, "student group '%s': hanging at iteration %ld (DD_INJECT_HANG_AT)\n", o->name, iteration);
        for (;;) pause();
    }
    const DataBatch *batch;
    if (data_loader_next(rank->loader, &batch, err) != 0) return -1;
    double start = dd_now_seconds();   /* compute from here, as on the teacher: not waiting for data */
    rank->collective_seconds = 0;
    if ((long)batch->iteration != iteration) {
        data_loader_release(rank->loader, batch);
        return dd_fail(err, "student '%s': expected the batch of iteration %ld, found %llu", o->model->name,
                       iteration, (unsigned long long)batch->iteration);
    }
    const int B = batch->count;
    const uint8_t *masks = batch->masks;
    rank->shape = (PayloadShape){B, c->global_count, rank->masks.Hp * rank->masks.Wp,
                                 o->teacher->dino_head.bottleneck, o->teacher->ibot_head.bottleneck};
    payload_offsets(&rank->shape, masks, rank->begin, rank->offsets);

    if (receive_teacher_rows(rank, iteration, comm, layout, be, masks, report, err) != 0) {
        data_loader_release(rank->loader, batch);
        return -1;
    }

    const size_t global_floats = (size_t)c->global_count * B * 3 * c->global_size * c->global_size;
    const size_t local_floats = (size_t)c->local_count * B * 3 * c->local_size * c->local_size;
    be->copy_to_device(rank->global_crops, batch->global_crops, global_floats * sizeof(float));
    if (iteration == rank->inject_nan_at) {
        const float nan = NAN;
        be->copy_to_device(rank->global_crops, &nan, sizeof nan);
    }
    if (local_floats) be->copy_to_device(rank->local_crops, batch->local_crops, local_floats * sizeof(float));

    const DataRange *rescale = &o->data->rope_rescale;
    StudentBatch student_batch = {
        .global_crops = rank->global_crops,
        .local_crops = local_floats ? rank->local_crops : NULL,
        .masks = masks,
        .teacher_dino = rank->teacher_dino,
        .teacher_ibot = rank->teacher_ibot,
        .global_rope_rescale = data_rope_rescale(o->seed, (uint64_t)iteration, 0, rescale->min, rescale->max),
        .local_rope_rescale = data_rope_rescale(o->seed, (uint64_t)iteration, 1, rescale->min, rescale->max),
    };
    report->values = run_schedules_at(o->schedules, iteration);
    report->images = B;
    int status = student_forward_backward(be, &rank->student, &rank->workspace, &rank->prototypes, &student_batch,
                                          (float)report->values.teacher_temperature, &rank->group, 1,
                                          &report->losses, err);
    data_loader_release(rank->loader, batch);
    if (status == 0)
        status = student_update(be, &rank->student, o->optimizer, report->values.lr, report->values.weight_decay,
                                report->values.ema_momentum, &rank->group, &report->update, err);
    if (status != 0) return dd_fail_context(err, "student group '%s', iteration %ld", o->name, iteration);
    report->collective_seconds = rank->collective_seconds;
    report->busy_seconds = dd_now_seconds() - start - report->wait_seconds - report->collective_seconds;
    return 0;
}

void student_rank_close(StudentRank *rank, const NnBackend *be) {
    DdError ignored;   /* the broadcasts of a last update still write into the parameters */
    student_params_wait(&rank->student, &rank->group, -1, &ignored);
    close_slice(rank, be);
    student_free(&rank->student, be);
    teacher_prototypes_free(&rank->prototypes, be);
    delivery_transfer_free(&rank->transfer);
    free(rank->offsets);
    memset(rank, 0, sizeof *rank);
}

/* ---- checkpoint state ---------------------------------------------------- */

/* The prefixes of the state's buffers in a checkpoint file. */
enum { STATE_BUFFERS = 4 };
static const char *const state_prefixes[STATE_BUFFERS] = {"params.", "ema.", "adam_m.", "adam_v."};

/* Buffer i of s's state in full, in backend memory: the parameters
 * (student_params_full), or a shard buffer (one shard of everything), or,
 * sharded, the shards gathered over the group into the gradient buffer
 * (collectives: each owner broadcasts its shard). */
static const float *full_state_buffer(Student *s, const NnBackend *be, const StudentGroup *group, int i,
                                      DdError *err) {
    if (i == 0) return student_params_full(s, group, err);
    const StudentShard *shard = &s->shard;
    const float *mine = i == 1 ? shard->ema : i == 2 ? shard->adam_m : shard->adam_v;
    if (shard->size == 1) return mine;
    be->copy(s->grads.memory + shard->begin, mine, shard->count * sizeof(float));
    return student_shards_gather(s, group, s->grads.memory, err) == 0 ? s->grads.memory : NULL;
}

int student_state_save(Student *s, const NnBackend *be, const StudentGroup *group, const char *path,
                       DdError *err) {
    float *host = path ? malloc(s->layout.count * sizeof(float)) : NULL;
    TensorFileWriter writer;
    int status = 0, writing = path != NULL;
    if (writing && !host) status = dd_fail(err, "%s: out of host memory for the student state", path);
    if (status == 0 && writing) status = tensor_writer_open(&writer, path, err);
    writing = writing && status == 0;
    DdError ignored;   /* a failure after the first */
    for (int i = 0; i < STATE_BUFFERS; i++) {   /* every rank takes part in the gathers, whatever failed */
        const float *full = full_state_buffer(s, be, group, i, status == 0 ? err : &ignored);
        if (!full && status == 0) status = -1;
        if (!full || status != 0 || !writing) continue;
        be->copy_to_host(host, full, s->layout.count * sizeof(float));
        status = model_params_write(&writer, state_prefixes[i], &s->layout, host, err);
    }
    if (writing) {
        float steps = (float)s->steps;
        TensorShape scalar = {1, {1}};
        if (status == 0) status = tensor_writer_add(&writer, "state.steps", &scalar, &steps, err);
        if (status == 0) status = tensor_writer_commit(&writer, err);
        else tensor_writer_abort(&writer);
    }
    free(host);
    return status;
}

int student_state_load(Student *s, const NnBackend *be, const char *path, DdError *err) {
    float *host = malloc(s->layout.count * sizeof(float));
    if (!host) return dd_fail(err, "%s: out of host memory for the student state", path);
    TensorFile file;
    int status = tensor_file_open(&file, path, err);
    if (status != 0) {
        free(host);
        return -1;
    }
    const StudentShard *shard = &s->shard;
    float *const shard_buffers[STATE_BUFFERS] = {NULL, shard->ema, shard->adam_m, shard->adam_v};
    for (int i = 0; status == 0 && i < STATE_BUFFERS; i++) {
        status = model_params_read(&file, state_prefixes[i], &s->layout, host, err);
        if (status != 0) break;
        if (i == 0) {   /* every fp32 weight, which the next forward casts */
            be->copy_to_device(s->params.memory, host, s->layout.count * sizeof(float));
            s->params.backbone.bf16_current = s->params_fp32_stale = 0;
        }
        else be->copy_to_device(shard_buffers[i], host + shard->begin, shard->count * sizeof(float));
    }
    float steps = 0;
    TensorShape scalar = {1, {1}};
    if (status == 0) status = tensor_file_read(&file, "state.steps", &scalar, &steps, err);
    if (status == 0) s->steps = (long)steps;
    tensor_file_close(&file);
    free(host);
    return status;
}

/*
 * nccl_comm.c - NCCL under comm.h for runs on the CUDA backend (compiled
 * only when the build has NCCL): communicators bootstrapped over MPI, the
 * in-group all-reduce of device buffers, and the teacher -> student delivery
 * of device rows with grouped ncclSend / ncclRecv.
 *
 * Streams. The CUDA backend runs every kernel on the legacy default stream
 * ("compute", COMPUTE_STREAM below). NCCL work goes to two streams created
 * cudaStreamNonBlocking, so that neither is ordered implicitly with compute
 * nor with the other:
 *   reduce    in-group all-reduces, on the group communicator;
 *   delivery  teacher -> student sends and receives, on the world communicator.
 * A delivery waiting for a slow peer thus holds up neither an in-group sum nor
 * the kernels after it, and a sum never queues behind a delivery.
 *
 * Order is explicit, with events (cudaEventDisableTiming):
 *   - before NCCL work on buffers that kernels write or read, an event
 *     recorded on compute and waited for by the NCCL stream (after_compute);
 *   - where compute consumes a result with no host wait
 *     (comm_group_sum_device_finish), an event recorded on the NCCL stream and
 *     waited for by compute (compute_after);
 *   - where a call's contract is to return when done (comm_group_sum_device,
 *     comm_group_max_device, delivery_device_wait, delivery_device_wait_slot),
 *     a host wait on the stream or the event.
 * One event per prefetch slot marks when the sends from that slot's rows have
 * left, so a teacher refills a slot without waiting for the later sends.
 *
 * A rank that both computes teacher images and trains a student (a helper,
 * comm/rank_layout.h) sends in its teacher step and receives in its student
 * step. Posted as two NCCL groups on one stream, helpers sending to one
 * another would deadlock (a group of p2p calls completes only once the
 * peers' matching calls run, and those queue behind the peers' own sends),
 * and a send to itself could never meet its receive. So a helper's sends are
 * held and posted in one group with its receives.
 */
#include <cuda_runtime.h>
#include <nccl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "comm/comm.h"
#include "comm/delivery_overlap.h"

/* Where the CUDA backend runs its kernels (nn/cuda/cuda_common.cuh). */
#define COMPUTE_STREAM cudaStreamLegacy

/* One message of a helper's held sends. */
typedef struct HeldSend {
    int peer;
    long first_value, values;
} HeldSend;

typedef struct CommNccl {
    ncclComm_t group;                /* the ranks of this rank's group */
    ncclComm_t world;                /* every rank: teacher -> student delivery */
    cudaStream_t reduce, delivery;   /* non-blocking; see the top */
    cudaEvent_t compute_ready;       /* recorded on compute before NCCL work */
    cudaEvent_t sums_done;           /* recorded on reduce where compute waits for all of it */
    cudaEvent_t *broadcast_done;     /* [broadcast_slot_count] recorded on reduce after a slot's broadcasts */
    int broadcast_slot_count;
    cudaEvent_t slot_sent[DELIVERY_DEVICE_SLOTS];   /* recorded on delivery after a slot's sends */
    int sums_started;                /* since the last finish */
    const uint16_t *held_rows;       /* a helper's held sends (see the top): NULL when none */
    int held_slot, held_count, held_capacity;
    HeldSend *held;                  /* [held_capacity = world size]: one message per peer at most */
} CommNccl;

static int nccl_fail(DdError *err, ncclResult_t result, const char *what) {
    return dd_fail(err, "%s: %s", what, ncclGetErrorString(result));
}

static int cuda_fail(DdError *err, cudaError_t code, const char *what) {
    return dd_fail(err, "%s: %s (%s)", what, cudaGetErrorString(code), cudaGetErrorName(code));
}

static int cuda_check(DdError *err, cudaError_t code, const char *what) {
    return code == cudaSuccess ? 0 : cuda_fail(err, code, what);
}

/* What rank 0 of an MPI communicator broadcasts: its unique id, or that
 * making one failed (so the other ranks fail too instead of hanging). */
typedef struct UniqueIdMessage {
    int ok;
    ncclResult_t result;
    ncclUniqueId id;
} UniqueIdMessage;

/* An NCCL communicator over the ranks of mpi (this rank is rank of size).
 * Collective over mpi. which names it in messages. */
static int nccl_comm_over(MPI_Comm mpi, int rank, int size, ncclComm_t *out, const char *which,
                          DdError *err) {
    UniqueIdMessage message;
    memset(&message, 0, sizeof message);
    if (rank == 0) {
        message.result = ncclGetUniqueId(&message.id);
        message.ok = message.result == ncclSuccess;
    }
    int code = MPI_Bcast(&message, (int)sizeof message, MPI_BYTE, 0, mpi);
    if (code != MPI_SUCCESS)
        return dd_fail(err, "NCCL %s communicator: MPI_Bcast of the unique id failed (MPI error %d)", which,
                       code);
    if (!message.ok)
        return dd_fail(err, "NCCL %s communicator: ncclGetUniqueId on its rank 0 failed: %s", which,
                       ncclGetErrorString(message.result));
    ncclResult_t result = ncclCommInitRank(out, size, message.id, rank);
    if (result != ncclSuccess) {
        *out = NULL;
        return dd_fail(err, "NCCL %s communicator: ncclCommInitRank (rank %d of %d): %s", which, rank, size,
                       ncclGetErrorString(result));
    }
    return 0;
}

/* A stream that no other stream waits for implicitly. */
static int create_stream(cudaStream_t *stream, DdError *err) {
    cudaError_t code = cudaStreamCreateWithFlags(stream, cudaStreamNonBlocking);
    if (code == cudaSuccess) return 0;
    *stream = NULL;
    return cuda_fail(err, code, "comm_init_nccl: cudaStreamCreateWithFlags (non-blocking)");
}

/* An event for ordering only (no timing: cheaper to record and wait for). */
static int create_event(cudaEvent_t *event, DdError *err) {
    cudaError_t code = cudaEventCreateWithFlags(event, cudaEventDisableTiming);
    if (code == cudaSuccess) return 0;
    *event = NULL;
    return cuda_fail(err, code, "comm_init_nccl: cudaEventCreateWithFlags");
}

static int create_streams_and_events(CommNccl *nccl, DdError *err) {
    if (create_stream(&nccl->reduce, err) != 0 || create_stream(&nccl->delivery, err) != 0 ||
        create_event(&nccl->compute_ready, err) != 0 || create_event(&nccl->sums_done, err) != 0)
        return -1;
    for (int s = 0; s < DELIVERY_DEVICE_SLOTS; s++)
        if (create_event(&nccl->slot_sent[s], err) != 0) return -1;
    return 0;
}

int comm_init_nccl(Comm *comm, DdError *err) {
    if (comm->nccl) return 0;
    CommNccl *nccl = calloc(1, sizeof *nccl);
    if (!nccl) return dd_fail(err, "comm_init_nccl: out of memory");
    comm->nccl = nccl;
    /* the collective part first, both communicators even after a failure,
     * so that every rank takes part in each; a rank failing afterwards fails
     * alone (run_device_reductions agrees over MPI) */
    DdError world_err;
    int failed = nccl_comm_over(comm->group, comm->group_rank, comm->group_size, &nccl->group, "group", err) != 0;
    if (nccl_comm_over(comm->world, comm->world_rank, comm->world_size, &nccl->world, "world", &world_err) != 0 &&
        !failed)
        failed = 1, *err = world_err;
    if (!failed) {
        nccl->held_capacity = comm->world_size;
        nccl->held = calloc((size_t)nccl->held_capacity, sizeof *nccl->held);
        failed = !nccl->held ? dd_fail(err, "comm_init_nccl: out of memory") : create_streams_and_events(nccl, err);
    }
    if (failed) comm_free_nccl(comm);
    return failed ? -1 : 0;
}

int comm_has_nccl(void) { return 1; }

int comm_devices_shared(Comm *comm, int *shared, char *note, size_t note_size, DdError *err) {
    *shared = 0;
    int device = -1;
    cudaError_t code = cudaGetDevice(&device);
    if (code != cudaSuccess) return cuda_fail(err, code, "comm_devices_shared: cudaGetDevice");
    struct cudaDeviceProp properties;
    code = cudaGetDeviceProperties(&properties, device);
    if (code != cudaSuccess) return cuda_fail(err, code, "comm_devices_shared: cudaGetDeviceProperties");
    cudaUUID_t *uuids = calloc((size_t)comm->world_size, sizeof *uuids);
    if (!uuids) return dd_fail(err, "comm_devices_shared: out of memory");
    int mpi = MPI_Allgather(&properties.uuid, (int)sizeof(cudaUUID_t), MPI_BYTE, uuids, (int)sizeof(cudaUUID_t),
                            MPI_BYTE, comm->world);
    if (mpi != MPI_SUCCESS) {
        free(uuids);
        return dd_fail(err, "comm_devices_shared: MPI_Allgather of the device UUIDs failed (MPI error %d)", mpi);
    }
    for (int a = 0; a < comm->world_size && !*shared; a++)
        for (int b = a + 1; b < comm->world_size && !*shared; b++)
            if (memcmp(&uuids[a], &uuids[b], sizeof(cudaUUID_t)) == 0) {
                *shared = 1;
                if (note && note_size > 0)
                    snprintf(note, note_size, "ranks %d and %d share one CUDA device", a, b);
            }
    free(uuids);
    return 0;
}

void comm_free_nccl(Comm *comm) {
    CommNccl *nccl = comm->nccl;
    if (!nccl) return;
    if (nccl->group) ncclCommDestroy(nccl->group);
    if (nccl->world) ncclCommDestroy(nccl->world);
    /* work still queued completes first: CUDA releases them afterwards */
    if (nccl->reduce) cudaStreamDestroy(nccl->reduce);
    if (nccl->delivery) cudaStreamDestroy(nccl->delivery);
    if (nccl->compute_ready) cudaEventDestroy(nccl->compute_ready);
    if (nccl->sums_done) cudaEventDestroy(nccl->sums_done);
    for (int s = 0; s < nccl->broadcast_slot_count; s++)
        if (nccl->broadcast_done[s]) cudaEventDestroy(nccl->broadcast_done[s]);
    free(nccl->broadcast_done);
    for (int s = 0; s < DELIVERY_DEVICE_SLOTS; s++)
        if (nccl->slot_sent[s]) cudaEventDestroy(nccl->slot_sent[s]);
    free(nccl->held);
    free(nccl);
    comm->nccl = NULL;
}

static int require_nccl(const Comm *comm, const char *what, DdError *err) {
    if (comm->nccl) return 0;
    return dd_fail(err, "%s: no NCCL communicators (call comm_init_nccl first)", what);
}

/* ---- ordering ------------------------------------------------------------ */

/* stream waits, on the device, for every kernel enqueued so far on compute. */
static int after_compute(CommNccl *nccl, cudaStream_t stream, const char *what, DdError *err) {
    if (cuda_check(err, cudaEventRecord(nccl->compute_ready, COMPUTE_STREAM), what) != 0) return -1;
    return cuda_check(err, cudaStreamWaitEvent(stream, nccl->compute_ready, 0), what);
}

/* Compute waits, on the device, for everything enqueued so far on stream
 * (event is recorded there). */
static int compute_after(cudaStream_t stream, cudaEvent_t event, const char *what, DdError *err) {
    if (cuda_check(err, cudaEventRecord(event, stream), what) != 0) return -1;
    return cuda_check(err, cudaStreamWaitEvent(COMPUTE_STREAM, event, 0), what);
}

/* NCCL's asynchronous error state of a communicator (a peer gone, a
 * network failure): what its operations in flight have run into. */
static int async_error(ncclComm_t communicator, const char *what, DdError *err) {
    ncclResult_t async = ncclSuccess;
    ncclResult_t result = ncclCommGetAsyncError(communicator, &async);
    if (result == ncclSuccess) result = async;
    return result == ncclSuccess ? 0 : nccl_fail(err, result, what);
}

/* ---- in-group sums -------------------------------------------------------- */

/* Enqueues the all-reduce of device_buffer[count] on the reduce stream,
 * after the kernels enqueued so far. */
static int enqueue_allreduce(Comm *comm, float *device_buffer, long count, ncclRedOp_t op, const char *what,
                             DdError *err) {
    CommNccl *nccl = comm->nccl;
    if (after_compute(nccl, nccl->reduce, what, err) != 0) return -1;
    ncclResult_t result =
        ncclAllReduce(device_buffer, device_buffer, (size_t)count, ncclFloat32, op, nccl->group, nccl->reduce);
    return result == ncclSuccess ? 0 : nccl_fail(err, result, what);
}

/* The all-reduce, returning when done. */
static int group_allreduce_device(Comm *comm, float *device_buffer, long count, ncclRedOp_t op,
                                  const char *what, DdError *err) {
    if (require_nccl(comm, what, err) != 0) return -1;
    if (count <= 0) return 0;
    if (enqueue_allreduce(comm, device_buffer, count, op, what, err) != 0 ||
        cuda_check(err, cudaStreamSynchronize(comm->nccl->reduce), what) != 0)
        return -1;
    return async_error(comm->nccl->group, what, err);
}

int comm_group_sum_device(Comm *comm, float *device_buffer, long count, DdError *err) {
    return group_allreduce_device(comm, device_buffer, count, ncclSum, "in-group ncclAllReduce (sum)", err);
}

int comm_group_max_device(Comm *comm, float *device_buffer, long count, DdError *err) {
    return group_allreduce_device(comm, device_buffer, count, ncclMax, "in-group ncclAllReduce (max)", err);
}

int comm_group_sum_device_start(Comm *comm, float *device_buffer, long count, int owner, DdError *err) {
    if (require_nccl(comm, "comm_group_sum_device_start", err) != 0) return -1;
    if (count <= 0) return 0;
    CommNccl *nccl = comm->nccl;
    if (owner < 0) {
        if (enqueue_allreduce(comm, device_buffer, count, ncclSum, "in-group ncclAllReduce (sum, started)", err))
            return -1;
    } else {
        const char *what = "in-group ncclReduce (sum to its owner, started)";
        if (after_compute(nccl, nccl->reduce, what, err) != 0) return -1;
        ncclResult_t result = ncclReduce(device_buffer, device_buffer, (size_t)count, ncclFloat32, ncclSum, owner,
                                         nccl->group, nccl->reduce);
        if (result != ncclSuccess) return nccl_fail(err, result, what);
    }
    nccl->sums_started++;
    return 0;
}

int comm_group_sum_device_finish(Comm *comm, DdError *err) {
    const char *what = "in-group ncclAllReduce (sum, finishing)";
    if (require_nccl(comm, "comm_group_sum_device_finish", err) != 0) return -1;
    CommNccl *nccl = comm->nccl;
    if (nccl->sums_started > 0) {
        nccl->sums_started = 0;
        if (compute_after(nccl->reduce, nccl->sums_done, what, err) != 0) return -1;
    }
    return async_error(nccl->group, what, err);
}

/* The event of broadcast slot `slot`, created on first use. */
static cudaEvent_t *slot_event(CommNccl *nccl, int slot, DdError *err) {
    if (slot >= nccl->broadcast_slot_count) {
        const int count = slot + 1;
        cudaEvent_t *grown = realloc(nccl->broadcast_done, (size_t)count * sizeof *grown);
        if (!grown) return dd_fail(err, "in-group broadcast: out of memory for %d events", count), NULL;
        for (int s = nccl->broadcast_slot_count; s < count; s++) grown[s] = NULL;
        nccl->broadcast_done = grown;
        nccl->broadcast_slot_count = count;
    }
    cudaEvent_t *event = &nccl->broadcast_done[slot];
    if (!*event && create_event(event, err) != 0) return NULL;
    return event;
}

int comm_group_broadcast_device_start(Comm *comm, void *device_buffer, size_t bytes, int owner, int slot,
                                      DdError *err) {
    const char *what = "in-group ncclBroadcast (started)";
    if (require_nccl(comm, what, err) != 0) return -1;
    if (bytes == 0) return 0;
    CommNccl *nccl = comm->nccl;
    cudaEvent_t *event = slot_event(nccl, slot, err);
    if (!event || after_compute(nccl, nccl->reduce, what, err) != 0) return -1;
    ncclResult_t result = ncclBroadcast(device_buffer, device_buffer, bytes, ncclUint8, owner, nccl->group,
                                        nccl->reduce);
    if (result != ncclSuccess) return nccl_fail(err, result, what);
    return cuda_check(err, cudaEventRecord(*event, nccl->reduce), what);
}

int comm_group_broadcast_device_wait(Comm *comm, int slot, DdError *err) {
    const char *what = "in-group ncclBroadcast (waiting)";
    if (require_nccl(comm, what, err) != 0) return -1;
    CommNccl *nccl = comm->nccl;
    if (slot < 0) {
        if (compute_after(nccl->reduce, nccl->sums_done, what, err) != 0) return -1;
    } else if (slot < nccl->broadcast_slot_count && nccl->broadcast_done[slot]) {
        if (cuda_check(err, cudaStreamWaitEvent(COMPUTE_STREAM, nccl->broadcast_done[slot], 0), what) != 0) return -1;
    }
    return async_error(nccl->group, what, err);
}

/* ---- teacher -> student delivery ------------------------------------------ */

int delivery_on_device(const Comm *comm, const struct NnBackend *be) {
    return comm->nccl != NULL && be != NULL && comm->hook_memory == be;
}

/* Enqueues one ncclSend or ncclRecv of values rows values (bf16: NCCL
 * moves them without arithmetic) starting first_value into rows. */
static int enqueue_message(const CommNccl *nccl, const uint16_t *rows, int sending, int peer, long first_value,
                           long values, DdError *err) {
    ncclResult_t result =
        sending ? ncclSend(rows + first_value, (size_t)values, ncclBfloat16, peer, nccl->world, nccl->delivery)
                : ncclRecv((uint16_t *)rows + first_value, (size_t)values, ncclBfloat16, peer, nccl->world,
                           nccl->delivery);
    if (result != ncclSuccess)
        return dd_fail(err, "delivery: %s of %ld values with rank %d: %s", sending ? "ncclSend" : "ncclRecv", values,
                       peer, ncclGetErrorString(result));
    return 0;
}

/* What the messages of one post need. */
typedef struct NcclPost {
    CommNccl *nccl;
    uint16_t *rows;   /* this rank's slice rows, device memory */
    int sending;
    int holding;      /* a helper's sends: held, not enqueued */
    long bytes;
} NcclPost;

/* Enqueues or holds one message (a DeliveryMessageVisitor). */
static int post_nccl_message(void *ctx, int peer, long first_value, long values, DdError *err) {
    NcclPost *post = ctx;
    CommNccl *nccl = post->nccl;
    post->bytes += values * (long)sizeof(uint16_t);
    if (!post->holding) return enqueue_message(nccl, post->rows, post->sending, peer, first_value, values, err);
    if (nccl->held_count == nccl->held_capacity)
        return dd_fail(err, "delivery: more than %d messages held for one post", nccl->held_capacity);
    nccl->held[nccl->held_count++] = (HeldSend){peer, first_value, values};
    return 0;
}

/* Enqueues the held sends (inside the group being posted) and forgets them. */
static int enqueue_held_sends(CommNccl *nccl, DdError *err) {
    int failed = 0;
    for (int m = 0; m < nccl->held_count && !failed; m++)
        failed = enqueue_message(nccl, nccl->held_rows, 1, nccl->held[m].peer, nccl->held[m].first_value,
                                 nccl->held[m].values, err);
    nccl->held_rows = NULL;
    nccl->held_count = 0;
    return failed;
}

/* One NCCL group on the delivery stream, after the kernels enqueued so far:
 * the held sends if any, then this rank's side of a delivery (sends from
 * slot, or receives); records the event of the slot sent from. */
static int post_group(const Comm *comm, const RankLayout *layout, const long *payload_offsets, uint16_t *rows,
                      int sending, int slot, long *bytes, DdError *err) {
    CommNccl *nccl = comm->nccl;
    const int sent_slot = sending ? slot : nccl->held_rows ? nccl->held_slot : -1;
    if (after_compute(nccl, nccl->delivery, "delivery: ordering after the compute stream", err) != 0) return -1;
    NcclPost post = {nccl, rows, sending, 0, 0};
    ncclResult_t result = ncclGroupStart();
    if (result != ncclSuccess) return nccl_fail(err, result, "delivery: ncclGroupStart");
    int failed = enqueue_held_sends(nccl, err);
    if (!failed)
        failed = delivery_for_each_message(comm, layout, payload_offsets, sending, post_nccl_message, &post, err);
    result = ncclGroupEnd();   /* always closes the group, also after a failure */
    if (failed) return -1;
    if (result != ncclSuccess) return nccl_fail(err, result, "delivery: ncclGroupEnd");
    if (sent_slot >= 0 &&
        cuda_check(err, cudaEventRecord(nccl->slot_sent[sent_slot], nccl->delivery),
                   "delivery: recording the event of a prefetch slot's sends") != 0)
        return -1;
    if (bytes) *bytes = post.bytes;
    return 0;
}

static int check_slot(int slot, const char *what, DdError *err) {
    if (slot >= 0 && slot < DELIVERY_DEVICE_SLOTS) return 0;
    return dd_fail(err, "%s: expected a prefetch slot in [0, %d), found %d", what, DELIVERY_DEVICE_SLOTS, slot);
}

/* A helper's sends, held for its receives (see the top). */
static int hold_sends(const Comm *comm, const RankLayout *layout, const long *payload_offsets, uint16_t *rows,
                      int slot, long *bytes, DdError *err) {
    CommNccl *nccl = comm->nccl;
    if (nccl->held_rows)
        return dd_fail(err, "delivery: rank %d posts sends while it still holds earlier ones for receives it never "
                            "posted", comm->world_rank);
    NcclPost post = {nccl, rows, 1, 1, 0};
    nccl->held_count = 0;
    if (delivery_for_each_message(comm, layout, payload_offsets, 1, post_nccl_message, &post, err) != 0) {
        nccl->held_count = 0;
        return -1;
    }
    if (nccl->held_count > 0) nccl->held_rows = rows, nccl->held_slot = slot;
    if (bytes) *bytes = post.bytes;
    return 0;
}

int delivery_device_post_sends(const Comm *comm, const RankLayout *layout, const long *payload_offsets,
                               const uint16_t *device_slice_rows, int slot, long *bytes, DdError *err) {
    if (require_nccl(comm, "delivery_device_post_sends", err) != 0 ||
        check_slot(slot, "delivery_device_post_sends", err) != 0)
        return -1;
    /* a teacher rank, or a student rank computing teacher images: checked
     * by the walk (delivery_for_each_message) */
    uint16_t *rows = (uint16_t *)device_slice_rows;
    if (comm->group_index != LAYOUT_TEACHER_GROUP)
        return hold_sends(comm, layout, payload_offsets, rows, slot, bytes, err);
    return post_group(comm, layout, payload_offsets, rows, 1, slot, bytes, err);
}

int delivery_device_post_receives(const Comm *comm, const RankLayout *layout, const long *payload_offsets,
                                  uint16_t *device_slice_rows, long *bytes, DdError *err) {
    if (require_nccl(comm, "delivery_device_post_receives", err) != 0) return -1;
    if (comm->group_index == LAYOUT_TEACHER_GROUP)
        return dd_fail(err, "delivery: rank %d is a teacher rank, not a student rank", comm->world_rank);
    return post_group(comm, layout, payload_offsets, device_slice_rows, 0, -1, bytes, err);
}

/* Fails when this rank holds sends that no receive posted (waiting would
 * never see them leave). */
static int require_nothing_held(const Comm *comm, const char *what, DdError *err) {
    if (!comm->nccl->held_rows) return 0;
    return dd_fail(err, "%s: rank %d holds sends for its next receives, which were never posted "
                        "(delivery_device_post_receives)", what, comm->world_rank);
}

int delivery_device_wait(const Comm *comm, DdError *err) {
    const char *what = "delivery: waiting for the delivery stream";
    if (require_nccl(comm, "delivery_device_wait", err) != 0 || require_nothing_held(comm, what, err) != 0 ||
        cuda_check(err, cudaStreamSynchronize(comm->nccl->delivery), what) != 0)
        return -1;
    return async_error(comm->nccl->world, what, err);
}

int delivery_device_wait_slot(const Comm *comm, int slot, DdError *err) {
    const char *what = "delivery: waiting for the sends of a prefetch slot";
    if (require_nccl(comm, "delivery_device_wait_slot", err) != 0 || check_slot(slot, what, err) != 0)
        return -1;
    if (comm->nccl->held_rows && comm->nccl->held_slot == slot) return require_nothing_held(comm, what, err);
    if (cuda_check(err, cudaEventSynchronize(comm->nccl->slot_sent[slot]), what) != 0) return -1;
    return async_error(comm->nccl->world, what, err);
}

/*
 * nccl_comm.c - NCCL under comm.h for runs on the CUDA backend (compiled
 * only when the build has NCCL): communicators bootstrapped over MPI, the
 * in-group all-reduce of device buffers, and the teacher -> student delivery
 * of device rows with grouped ncclSend / ncclRecv.
 *
 * All NCCL work goes to one CUDA stream per Comm, created blocking (not
 * cudaStreamNonBlocking), so it is ordered after the CUDA backend's kernels
 * on the legacy default stream and before the ones launched later, with no
 * explicit events. The all-reduce waits for completion before returning; the
 * delivery is posted, then waited for (delivery_device_wait).
 */
#include <cuda_runtime.h>
#include <nccl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "comm/comm.h"
#include "comm/delivery_overlap.h"

typedef struct CommNccl {
    ncclComm_t group;   /* the ranks of this rank's group */
    ncclComm_t world;   /* every rank: teacher -> student delivery */
    cudaStream_t stream;
} CommNccl;

static int nccl_fail(DdError *err, ncclResult_t result, const char *what) {
    return dd_fail(err, "%s: %s", what, ncclGetErrorString(result));
}

static int cuda_fail(DdError *err, cudaError_t code, const char *what) {
    return dd_fail(err, "%s: %s (%s)", what, cudaGetErrorString(code), cudaGetErrorName(code));
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

int comm_init_nccl(Comm *comm, DdError *err) {
    if (comm->nccl) return 0;
    CommNccl *nccl = calloc(1, sizeof *nccl);
    if (!nccl) return dd_fail(err, "comm_init_nccl: out of memory");
    comm->nccl = nccl;
    cudaError_t code = cudaStreamCreate(&nccl->stream);
    if (code != cudaSuccess) {
        nccl->stream = NULL;
        cuda_fail(err, code, "comm_init_nccl: cudaStreamCreate");
        comm_free_nccl(comm);
        return -1;
    }
    if (nccl_comm_over(comm->group, comm->group_rank, comm->group_size, &nccl->group, "group", err) != 0 ||
        nccl_comm_over(comm->world, comm->world_rank, comm->world_size, &nccl->world, "world", err) != 0) {
        comm_free_nccl(comm);
        return -1;
    }
    return 0;
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
    if (nccl->stream) cudaStreamDestroy(nccl->stream);
    free(nccl);
    comm->nccl = NULL;
}

static int require_nccl(const Comm *comm, const char *what, DdError *err) {
    if (comm->nccl) return 0;
    return dd_fail(err, "%s: no NCCL communicators (call comm_init_nccl first)", what);
}

static int wait_for_stream(const Comm *comm, const char *what, DdError *err) {
    cudaError_t code = cudaStreamSynchronize(comm->nccl->stream);
    if (code != cudaSuccess) return cuda_fail(err, code, what);
    ncclResult_t async = ncclSuccess;
    ncclResult_t result = ncclCommGetAsyncError(comm->nccl->world, &async);
    if (result == ncclSuccess) result = async;
    if (result == ncclSuccess) result = ncclCommGetAsyncError(comm->nccl->group, &async);
    if (result == ncclSuccess) result = async;
    return result == ncclSuccess ? 0 : nccl_fail(err, result, what);
}

static int group_allreduce_device(Comm *comm, float *device_buffer, long count, ncclRedOp_t op,
                                  const char *what, DdError *err) {
    if (require_nccl(comm, what, err) != 0) return -1;
    if (count <= 0) return 0;
    ncclResult_t result = ncclAllReduce(device_buffer, device_buffer, (size_t)count, ncclFloat32, op,
                                        comm->nccl->group, comm->nccl->stream);
    if (result != ncclSuccess) return nccl_fail(err, result, what);
    return wait_for_stream(comm, what, err);
}

int comm_group_sum_device(Comm *comm, float *device_buffer, long count, DdError *err) {
    return group_allreduce_device(comm, device_buffer, count, ncclSum, "in-group ncclAllReduce (sum)", err);
}

int comm_group_max_device(Comm *comm, float *device_buffer, long count, DdError *err) {
    return group_allreduce_device(comm, device_buffer, count, ncclMax, "in-group ncclAllReduce (max)", err);
}

/* The stream is blocking, so the legacy default stream already orders the
 * sum after the kernels before it and the kernels after it behind it. */
int comm_group_sum_device_start(Comm *comm, float *device_buffer, long count, DdError *err) {
    if (require_nccl(comm, "comm_group_sum_device_start", err) != 0) return -1;
    if (count <= 0) return 0;
    ncclResult_t result = ncclAllReduce(device_buffer, device_buffer, (size_t)count, ncclFloat32, ncclSum,
                                        comm->nccl->group, comm->nccl->stream);
    return result == ncclSuccess ? 0 : nccl_fail(err, result, "in-group ncclAllReduce (sum, started)");
}

int comm_group_sum_device_finish(Comm *comm, DdError *err) {
    if (require_nccl(comm, "comm_group_sum_device_finish", err) != 0) return -1;
    return wait_for_stream(comm, "in-group ncclAllReduce (sum, finishing)", err);
}

/* What the NCCL messages of one post need. */
typedef struct NcclPost {
    const Comm *comm;
    uint16_t *rows;   /* this rank's slice rows, device memory */
    int sending;
    long bytes;
} NcclPost;

/* Enqueues one ncclSend or ncclRecv of a message (a DeliveryMessageVisitor).
 * The payload is bf16; NCCL moves it without arithmetic. */
static int post_nccl_message(void *ctx, int peer, long first_value, long values, DdError *err) {
    NcclPost *post = ctx;
    const CommNccl *nccl = post->comm->nccl;
    uint16_t *start = post->rows + first_value;
    ncclResult_t result = post->sending
                              ? ncclSend(start, (size_t)values, ncclBfloat16, peer, nccl->world, nccl->stream)
                              : ncclRecv(start, (size_t)values, ncclBfloat16, peer, nccl->world, nccl->stream);
    if (result != ncclSuccess)
        return dd_fail(err, "delivery: %s of %ld values with rank %d: %s", post->sending ? "ncclSend" : "ncclRecv",
                       values, peer, ncclGetErrorString(result));
    post->bytes += values * (long)sizeof(uint16_t);
    return 0;
}

/* One grouped post of every message of this rank's side of a delivery. */
static int post_device_delivery(const Comm *comm, const RankLayout *layout, const long *payload_offsets,
                                uint16_t *rows, int sending, long *bytes, DdError *err) {
    if (require_nccl(comm, sending ? "delivery_device_post_sends" : "delivery_device_post_receives", err) != 0)
        return -1;
    NcclPost post = {comm, rows, sending, 0};
    ncclResult_t result = ncclGroupStart();
    if (result != ncclSuccess) return nccl_fail(err, result, "delivery: ncclGroupStart");
    int failed = delivery_for_each_message(comm, layout, payload_offsets, sending, post_nccl_message, &post, err);
    result = ncclGroupEnd();   /* always closes the group, also after a failure */
    if (failed) return -1;
    if (result != ncclSuccess) return nccl_fail(err, result, "delivery: ncclGroupEnd");
    if (bytes) *bytes = post.bytes;
    return 0;
}

int delivery_device_post_sends(const Comm *comm, const RankLayout *layout, const long *payload_offsets,
                               const uint16_t *device_slice_rows, long *bytes, DdError *err) {
    /* a teacher rank, or a student rank computing teacher images: checked
     * by the walk (delivery_for_each_message) */
    return post_device_delivery(comm, layout, payload_offsets, (uint16_t *)device_slice_rows, 1, bytes, err);
}

int delivery_device_post_receives(const Comm *comm, const RankLayout *layout, const long *payload_offsets,
                                  uint16_t *device_slice_rows, long *bytes, DdError *err) {
    if (comm->group_index == LAYOUT_TEACHER_GROUP)
        return dd_fail(err, "delivery: rank %d is a teacher rank, not a student rank", comm->world_rank);
    return post_device_delivery(comm, layout, payload_offsets, device_slice_rows, 0, bytes, err);
}

int delivery_device_wait(const Comm *comm, DdError *err) {
    if (require_nccl(comm, "delivery_device_wait", err) != 0) return -1;
    return wait_for_stream(comm, "delivery: waiting for the NCCL stream", err);
}

/*
 * emulator_nccl.cc - NCCL for the CUDA emulator (include/nccl.h) over MPI:
 * a communicator is an MPI communicator split from MPI_COMM_WORLD; each
 * collective or group of sends and receives is posted as nonblocking MPI
 * (MPI_Iallreduce, MPI_Ireduce, MPI_Ibcast, MPI_Isend, MPI_Irecv) and its
 * completion queued on the call's stream (emu::stream_enqueue), so the host
 * waits for it where a GPU stream would: at a stream or event
 * synchronisation, or a cudaStreamWaitEvent. Buffers must be emulated
 * device memory, as NCCL's must be device memory.
 */
#include <limits.h>
#include <mpi.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <vector>

#include "include/nccl.h"

struct ncclComm {
    MPI_Comm mpi;
    int rank, size;
};

namespace {

/* What an emulated ncclUniqueId holds. */
struct UniqueId {
    uint64_t magic;
    int creator;   /* world rank of the process that made it */
    int serial;    /* its count of ids made before */
};
const uint64_t ID_MAGIC = 0x64645f6e63636c31ull;   /* "1lccn_dd" */
static_assert(sizeof(UniqueId) <= sizeof(ncclUniqueId), "the id must fit");

int ids_made;

struct P2p {
    bool sending;
    void *buffer;
    int bytes, peer;
    ncclComm_t comm;
    cudaStream_t stream;
};
int group_depth;
std::vector<P2p> &grouped = *new std::vector<P2p>;

size_t element_bytes(ncclDataType_t type) {
    switch (type) {
    case ncclInt8:
    case ncclUint8: return 1;
    case ncclBfloat16: return 2;
    case ncclInt32:
    case ncclFloat32: return 4;
    }
    return 0;
}

ncclResult_t invalid(const char *api, const char *why) {
    fprintf(stderr, "cuda emulator: %s: %s\n", api, why);
    return ncclInvalidArgument;
}

/* The buffer of count elements of type, as bytes for MPI; checked to be device memory. */
ncclResult_t check_buffer(const char *api, const char *which, const void *buffer, size_t count, ncclDataType_t type,
                          int *bytes) {
    const size_t size = element_bytes(type);
    if (size == 0) return invalid(api, "a data type the emulator does not have");
    if (count * size > (size_t)INT_MAX) return invalid(api, "more than 2 GiB in one call (MPI counts are int)");
    char what[128];
    snprintf(what, sizeof what, "%s %s buffer", api, which);
    if (count > 0 && !emu::check_device_range(buffer, count * size, what))
        return invalid(api, "a buffer that is not device memory");
    *bytes = (int)(count * size);
    return ncclSuccess;
}

/* MPI's datatype and operation for a reduction, or 0 when the emulator has none. */
int reduction(ncclDataType_t type, ncclRedOp_t op, MPI_Datatype *mpi_type, MPI_Op *mpi_op) {
    if (type == ncclFloat32) *mpi_type = MPI_FLOAT;
    else if (type == ncclInt32) *mpi_type = MPI_INT;
    else return 0;
    switch (op) {
    case ncclSum: *mpi_op = MPI_SUM; return 1;
    case ncclProd: *mpi_op = MPI_PROD; return 1;
    case ncclMax: *mpi_op = MPI_MAX; return 1;
    case ncclMin: *mpi_op = MPI_MIN; return 1;
    }
    return 0;
}

/* The completion of request, queued on stream. */
void complete_on(cudaStream_t stream, MPI_Request request) {
    emu::stream_enqueue(stream, [request]() mutable { MPI_Wait(&request, MPI_STATUS_IGNORE); });
}

void post(const P2p &op) {
    MPI_Request request;
    if (op.sending) MPI_Isend(op.buffer, op.bytes, MPI_BYTE, op.peer, 0, op.comm->mpi, &request);
    else MPI_Irecv(op.buffer, op.bytes, MPI_BYTE, op.peer, 0, op.comm->mpi, &request);
    complete_on(op.stream, request);
}

ncclResult_t p2p(const char *api, bool sending, const void *buffer, size_t count, ncclDataType_t type, int peer,
                 ncclComm_t comm, cudaStream_t stream) {
    if (!comm) return invalid(api, "a NULL communicator");
    if (peer < 0 || peer >= comm->size) return invalid(api, "a peer outside the communicator");
    P2p op = {sending, const_cast<void *>(buffer), 0, peer, comm, stream};
    ncclResult_t result = check_buffer(api, sending ? "send" : "receive", buffer, count, type, &op.bytes);
    if (result != ncclSuccess) return result;
    if (group_depth > 0) grouped.push_back(op);
    else post(op);   /* a group of one */
    return ncclSuccess;
}

}  // namespace

ncclResult_t ncclGetUniqueId(ncclUniqueId *id) {
    UniqueId contents = {ID_MAGIC, 0, ids_made++};
    MPI_Comm_rank(MPI_COMM_WORLD, &contents.creator);
    memset(id, 0, sizeof *id);
    memcpy(id->internal, &contents, sizeof contents);
    return ncclSuccess;
}

ncclResult_t ncclCommInitRank(ncclComm_t *comm, int nranks, ncclUniqueId id, int rank) {
    *comm = NULL;
    UniqueId contents;
    memcpy(&contents, id.internal, sizeof contents);
    if (contents.magic != ID_MAGIC) return invalid("ncclCommInitRank", "an id ncclGetUniqueId did not make");
    if (rank < 0 || rank >= nranks) return invalid("ncclCommInitRank", "a rank outside 0..nranks-1");
    MPI_Comm mpi;
    if (MPI_Comm_split(MPI_COMM_WORLD, contents.creator * 1024 + contents.serial % 1024, rank, &mpi) != MPI_SUCCESS)
        return ncclSystemError;
    int size = 0, mpi_rank = -1;
    MPI_Comm_size(mpi, &size);
    MPI_Comm_rank(mpi, &mpi_rank);
    if (size != nranks || mpi_rank != rank) {
        fprintf(stderr,
                "cuda emulator: ncclCommInitRank: rank %d of %d found %d processes with its id (itself rank %d): "
                "the processes did not create their communicators in the same order\n",
                rank, nranks, size, mpi_rank);
        MPI_Comm_free(&mpi);
        return ncclInvalidUsage;
    }
    *comm = new ncclComm{mpi, rank, size};
    return ncclSuccess;
}

ncclResult_t ncclCommDestroy(ncclComm_t comm) {
    if (!comm) return ncclSuccess;
    MPI_Comm_free(&comm->mpi);
    delete comm;
    return ncclSuccess;
}

ncclResult_t ncclCommGetAsyncError(ncclComm_t comm, ncclResult_t *async_error) {
    if (!comm) return invalid("ncclCommGetAsyncError", "a NULL communicator");
    *async_error = ncclSuccess;
    return ncclSuccess;
}

const char *ncclGetErrorString(ncclResult_t result) {
    switch (result) {
    case ncclSuccess: return "no error";
    case ncclUnhandledCudaError: return "unhandled cuda error";
    case ncclSystemError: return "unhandled system error";
    case ncclInternalError: return "internal error";
    case ncclInvalidArgument: return "invalid argument";
    case ncclInvalidUsage: return "invalid usage";
    }
    return "unknown result code";
}

namespace {

/* The checks of a reduction to root (-1: to every rank) and MPI's datatype
 * and operation for it. */
ncclResult_t check_reduction(const char *api, const void *sendbuff, const void *recvbuff, size_t count,
                             ncclDataType_t datatype, ncclRedOp_t op, int root, ncclComm_t comm,
                             MPI_Datatype *type, MPI_Op *mpi_op) {
    int bytes;
    if (!comm) return invalid(api, "a NULL communicator");
    if (root >= comm->size) return invalid(api, "a root outside the communicator");
    if (!reduction(datatype, op, type, mpi_op)) return invalid(api, "a reduction the emulator does not have");
    ncclResult_t result = check_buffer(api, "send", sendbuff, count, datatype, &bytes);
    if (result == ncclSuccess && (root < 0 || comm->rank == root))
        result = check_buffer(api, "receive", recvbuff, count, datatype, &bytes);
    return result;
}

}  // namespace

ncclResult_t ncclAllReduce(const void *sendbuff, void *recvbuff, size_t count, ncclDataType_t datatype,
                           ncclRedOp_t op, ncclComm_t comm, cudaStream_t stream) {
    MPI_Datatype type;
    MPI_Op mpi_op;
    ncclResult_t result =
        check_reduction("ncclAllReduce", sendbuff, recvbuff, count, datatype, op, -1, comm, &type, &mpi_op);
    if (result != ncclSuccess) return result;
    MPI_Request request;
    MPI_Iallreduce(sendbuff == recvbuff ? MPI_IN_PLACE : sendbuff, recvbuff, (int)count, type, mpi_op, comm->mpi,
                   &request);
    complete_on(stream, request);
    return ncclSuccess;
}

ncclResult_t ncclReduce(const void *sendbuff, void *recvbuff, size_t count, ncclDataType_t datatype, ncclRedOp_t op,
                        int root, ncclComm_t comm, cudaStream_t stream) {
    MPI_Datatype type;
    MPI_Op mpi_op;
    if (root < 0) return invalid("ncclReduce", "a negative root");
    ncclResult_t result =
        check_reduction("ncclReduce", sendbuff, recvbuff, count, datatype, op, root, comm, &type, &mpi_op);
    if (result != ncclSuccess) return result;
    const bool in_place = comm->rank == root && sendbuff == recvbuff;
    MPI_Request request;
    MPI_Ireduce(in_place ? MPI_IN_PLACE : sendbuff, recvbuff, (int)count, type, mpi_op, root, comm->mpi, &request);
    complete_on(stream, request);
    return ncclSuccess;
}

ncclResult_t ncclBroadcast(const void *sendbuff, void *recvbuff, size_t count, ncclDataType_t datatype, int root,
                           ncclComm_t comm, cudaStream_t stream) {
    const char *api = "ncclBroadcast";
    int bytes;
    if (!comm) return invalid(api, "a NULL communicator");
    if (root < 0 || root >= comm->size) return invalid(api, "a root outside the communicator");
    ncclResult_t result = check_buffer(api, "receive", recvbuff, count, datatype, &bytes);
    if (result == ncclSuccess && comm->rank == root)
        result = check_buffer(api, "send", sendbuff, count, datatype, &bytes);
    if (result != ncclSuccess) return result;
    if (comm->rank == root && sendbuff != recvbuff) memmove(recvbuff, sendbuff, (size_t)bytes);
    MPI_Request request;
    MPI_Ibcast(recvbuff, bytes, MPI_BYTE, root, comm->mpi, &request);
    complete_on(stream, request);
    return ncclSuccess;
}

ncclResult_t ncclSend(const void *sendbuff, size_t count, ncclDataType_t datatype, int peer, ncclComm_t comm,
                      cudaStream_t stream) {
    return p2p("ncclSend", true, sendbuff, count, datatype, peer, comm, stream);
}

ncclResult_t ncclRecv(void *recvbuff, size_t count, ncclDataType_t datatype, int peer, ncclComm_t comm,
                      cudaStream_t stream) {
    return p2p("ncclRecv", false, recvbuff, count, datatype, peer, comm, stream);
}

ncclResult_t ncclGroupStart(void) {
    group_depth++;
    return ncclSuccess;
}

ncclResult_t ncclGroupEnd(void) {
    if (group_depth == 0) return invalid("ncclGroupEnd", "no group was started");
    if (--group_depth > 0) return ncclSuccess;
    for (const P2p &op : grouped) post(op);
    grouped.clear();
    return ncclSuccess;
}

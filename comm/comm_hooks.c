/*
 * comm_hooks.c - the in-group reduction hooks the students call (Sinkhorn
 * column sums and maxima, gradient sums), on buffers in the backend's
 * memory. Three paths, chosen by how the run was set up:
 *   host memory (the CPU backend)      MPI_Allreduce in place;
 *   device memory, NCCL communicators  ncclAllReduce on the device buffer;
 *   device memory, no NCCL             copy to a host staging buffer,
 *                                      MPI_Allreduce, copy back.
 * The third is for several ranks on one GPU (NCCL refuses two ranks of one
 * communicator on the same device) and for builds without NCCL: slower,
 * the same sums.
 *
 * The sum also comes asynchronous (start, then finish), for the gradients
 * whose sums overlap the backward: the same three paths, with
 * MPI_Iallreduce, or ncclAllReduce on the NCCL reduce stream; or, for a
 * sharded optimizer state, each piece summed to the rank that owns it
 * (MPI_Ireduce, ncclReduce). The broadcasts that gather a sharded state's
 * parameters take the same three paths (MPI_Ibcast, ncclBroadcast), each
 * labelled with a slot that can be waited for on its own.
 */
#include <limits.h>
#include <stdlib.h>

#include "comm/comm.h"
#include "nn/backend.h"

void comm_set_hook_memory(Comm *comm, const NnBackend *be) { comm->hook_memory = be; }

/* comm->host_staging holds at least count floats afterwards. */
static int reserve_staging(Comm *comm, long count, DdError *err) {
    if (count <= comm->host_staging_count) return 0;
    float *grown = realloc(comm->host_staging, (size_t)count * sizeof(float));
    if (!grown) return dd_fail(err, "in-group reduction: out of host memory staging %ld floats", count);
    comm->host_staging = grown;
    comm->host_staging_count = count;
    return 0;
}

typedef int (*HostReduce)(Comm *comm, float *buffer, long count, DdError *err);
typedef int (*DeviceReduce)(Comm *comm, float *device_buffer, long count, DdError *err);

static int reduce_hook(Comm *comm, float *buffer, long count, HostReduce host, DeviceReduce device,
                       DdError *err) {
    if (count <= 0) return 0;
    if (!comm->hook_memory) return host(comm, buffer, count, err);
    if (comm->nccl) return device(comm, buffer, count, err);
    const NnBackend *be = comm->hook_memory;
    if (reserve_staging(comm, count, err) != 0) return -1;
    be->copy_to_host(comm->host_staging, buffer, (size_t)count * sizeof(float));
    if (host(comm, comm->host_staging, count, err) != 0) return -1;
    be->copy_to_device(buffer, comm->host_staging, (size_t)count * sizeof(float));
    return 0;
}

int comm_group_sum_hook(void *comm, float *buffer, long count, DdError *err) {
    return reduce_hook(comm, buffer, count, comm_group_sum, comm_group_sum_device, err);
}

int comm_group_max_hook(void *comm, float *buffer, long count, DdError *err) {
    return reduce_hook(comm, buffer, count, comm_group_max, comm_group_max_device, err);
}

int comm_group_sum_doubles_hook(void *comm, double *values, int count, DdError *err) {
    return comm_group_sum_doubles(comm, values, count, err);
}

/* ---- asynchronous sums --------------------------------------------------- */

/* One sum or broadcast started over MPI: its request and, when the buffer
 * is device memory, the host copy it runs on. */
typedef struct PendingSum {
    MPI_Request request;
    void *buffer;         /* the caller's buffer */
    void *host;           /* == buffer in host memory, else the staged copy */
    size_t bytes;
    int wanted;           /* this rank gets the result: copy a staged one back */
    int slot;             /* a broadcast's slot (comm_group_broadcast_wait_hook); -1 for a sum */
    int done;             /* waited for (a broadcast whose slot was waited for) */
} PendingSum;

/* Host copies live in chunks that are kept from step to step (after the
 * first step nothing is allocated): a chunk is handed out front to back and
 * rewound at finish. */
typedef struct StagingChunk {
    float *memory;
    long capacity, used;
} StagingChunk;

typedef struct CommPendingSums {
    PendingSum *sums;
    int count, capacity;
    StagingChunk *chunks;
    int chunk_count;
} CommPendingSums;

enum { STAGING_CHUNK_FLOATS = 1 << 22 };   /* 16 MiB, or one sum's size if larger */

static CommPendingSums *pending_of(Comm *comm, DdError *err) {
    if (!comm->pending && !(comm->pending = calloc(1, sizeof *comm->pending)))
        dd_fail(err, "in-group sums: out of memory");
    return comm->pending;
}

/* Host memory for count floats that stays valid until the next finish. */
static float *take_staging(CommPendingSums *p, long count, DdError *err) {
    for (int c = 0; c < p->chunk_count; c++) {
        StagingChunk *chunk = &p->chunks[c];
        if (chunk->capacity - chunk->used >= count) {
            float *taken = chunk->memory + chunk->used;
            chunk->used += count;
            return taken;
        }
    }
    StagingChunk *grown = realloc(p->chunks, (size_t)(p->chunk_count + 1) * sizeof *grown);
    if (!grown) return dd_fail(err, "in-group sums: out of memory"), NULL;
    p->chunks = grown;
    const long capacity = count > STAGING_CHUNK_FLOATS ? count : STAGING_CHUNK_FLOATS;
    float *memory = malloc((size_t)capacity * sizeof(float));
    if (!memory) return dd_fail(err, "in-group sums: out of host memory staging %ld floats", capacity), NULL;
    p->chunks[p->chunk_count++] = (StagingChunk){memory, capacity, count};
    return memory;
}

static int push_pending(CommPendingSums *p, PendingSum sum, DdError *err) {
    if (p->count == p->capacity) {
        const int capacity = p->capacity ? 2 * p->capacity : 64;
        PendingSum *grown = realloc(p->sums, (size_t)capacity * sizeof *grown);
        if (!grown) return dd_fail(err, "in-group sums: out of memory");
        p->sums = grown, p->capacity = capacity;
    }
    p->sums[p->count++] = sum;
    return 0;
}

/* Starts MPI sums of host[count] in pieces MPI's int counts can hold:
 * all-reduces (owner < 0) or reduces to group rank owner. */
static int start_mpi_sums(Comm *comm, CommPendingSums *p, float *buffer, float *host, long count, int owner,
                          DdError *err) {
    const int wanted = owner < 0 || owner == comm->group_rank;
    for (long done = 0; done < count;) {
        const int piece = count - done > INT_MAX ? INT_MAX : (int)(count - done);
        PendingSum sum = {MPI_REQUEST_NULL, buffer + done, host + done, (size_t)piece * sizeof(float), wanted, -1, 0};
        int code;
        if (owner < 0)
            code = MPI_Iallreduce(MPI_IN_PLACE, host + done, piece, MPI_FLOAT, MPI_SUM, comm->group, &sum.request);
        else   /* the owner sums in place; the others' buffers are only read */
            code = MPI_Ireduce(wanted ? MPI_IN_PLACE : host + done, wanted ? host + done : NULL, piece, MPI_FLOAT,
                               MPI_SUM, owner, comm->group, &sum.request);
        if (code != MPI_SUCCESS) return comm_mpi_fail(err, code, owner < 0 ? "in-group MPI_Iallreduce"
                                                                           : "in-group MPI_Ireduce");
        if (push_pending(p, sum, err) != 0) return -1;
        done += piece;
    }
    /* Open MPI moves nonblocking collectives on only inside MPI calls:
     * testing the earlier ones here keeps them going during the backward */
    int flag;
    for (int i = 0; i + 1 < p->count; i++) MPI_Test(&p->sums[i].request, &flag, MPI_STATUS_IGNORE);
    return 0;
}

int comm_group_sum_start_hook(void *context, float *buffer, long count, int owner, DdError *err) {
    Comm *comm = context;
    if (count <= 0) return 0;
    if (owner >= comm->group_size)
        return dd_fail(err, "in-group sum: expected an owner below the group's %d ranks, found %d", comm->group_size,
                       owner);
    if (comm->hook_memory && comm->nccl) return comm_group_sum_device_start(comm, buffer, count, owner, err);
    CommPendingSums *p = pending_of(comm, err);
    if (!p) return -1;
    float *host = buffer;
    if (comm->hook_memory) {
        if (!(host = take_staging(p, count, err))) return -1;
        comm->hook_memory->copy_to_host(host, buffer, (size_t)count * sizeof(float));
    }
    return start_mpi_sums(comm, p, buffer, host, count, owner, err);
}

/* Waits for the pending pieces of slot (every one with -1), copying a
 * staged result back where this rank wants it; rewinds the list and the
 * staging once every piece is done. */
static int complete_pending(Comm *comm, int slot, const char *what, DdError *err) {
    CommPendingSums *p = comm->pending;
    if (!p) return 0;
    int failed = 0, left = 0;
    for (int i = 0; i < p->count; i++) {
        PendingSum *piece = &p->sums[i];
        if (piece->done || (slot >= 0 && piece->slot != slot)) {
            left += !piece->done;
            continue;
        }
        int code = MPI_Wait(&piece->request, MPI_STATUS_IGNORE);
        if (code != MPI_SUCCESS && !failed) failed = comm_mpi_fail(err, code, what);
        if (!failed && piece->wanted && piece->host != piece->buffer)
            comm->hook_memory->copy_to_device(piece->buffer, piece->host, piece->bytes);
        piece->done = 1;
    }
    if (left == 0) {
        p->count = 0;
        for (int c = 0; c < p->chunk_count; c++) p->chunks[c].used = 0;
    }
    return failed;
}

int comm_group_sum_finish_hook(void *context, DdError *err) {
    Comm *comm = context;
    if (comm->hook_memory && comm->nccl) return comm_group_sum_device_finish(comm, err);
    return complete_pending(comm, -1, "in-group sum (waiting)", err);
}

/* ---- broadcasts: a sharded state's parameters to every rank --------------- */

int comm_group_broadcast_start_hook(void *context, void *buffer, size_t bytes, int owner, int slot, DdError *err) {
    Comm *comm = context;
    if (bytes == 0) return 0;
    if (owner < 0 || owner >= comm->group_size || slot < 0)
        return dd_fail(err, "in-group broadcast: expected an owner below the group's %d ranks and a slot >= 0, "
                       "found owner %d, slot %d", comm->group_size, owner, slot);
    if (comm->hook_memory && comm->nccl)
        return comm_group_broadcast_device_start(comm, buffer, bytes, owner, slot, err);
    CommPendingSums *p = pending_of(comm, err);
    if (!p) return -1;
    const int mine = owner == comm->group_rank;
    char *host = buffer;
    if (comm->hook_memory) {
        if (!(host = (char *)take_staging(p, (long)((bytes + sizeof(float) - 1) / sizeof(float)), err))) return -1;
        if (mine) comm->hook_memory->copy_to_host(host, buffer, bytes);
    }
    for (size_t done = 0; done < bytes;) {
        const int piece = bytes - done > INT_MAX ? INT_MAX : (int)(bytes - done);
        PendingSum broadcast = {MPI_REQUEST_NULL, (char *)buffer + done, host + done, (size_t)piece, !mine, slot, 0};
        int code = MPI_Ibcast(host + done, piece, MPI_BYTE, owner, comm->group, &broadcast.request);
        if (code != MPI_SUCCESS) return comm_mpi_fail(err, code, "in-group MPI_Ibcast");
        if (push_pending(p, broadcast, err) != 0) return -1;
        done += (size_t)piece;
    }
    return 0;
}

int comm_group_broadcast_wait_hook(void *context, int slot, DdError *err) {
    Comm *comm = context;
    if (comm->hook_memory && comm->nccl) return comm_group_broadcast_device_wait(comm, slot, err);
    return complete_pending(comm, slot, "in-group MPI_Ibcast (waiting)", err);
}

void comm_pending_sums_free(Comm *comm) {
    CommPendingSums *p = comm->pending;
    if (!p) return;
    if (p->count == 0)   /* else MPI may still write into them */
        for (int c = 0; c < p->chunk_count; c++) free(p->chunks[c].memory);
    free(p->chunks);
    free(p->sums);
    free(p);
    comm->pending = NULL;
}

size_t comm_staging_bytes(const Comm *comm) {
    size_t floats = (size_t)comm->host_staging_count;
    if (comm->pending)
        for (int c = 0; c < comm->pending->chunk_count; c++) floats += (size_t)comm->pending->chunks[c].capacity;
    return floats * sizeof(float);
}

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
 * (MPI_Ireduce, ncclReduce). The all-gather of the shards takes the same
 * three paths.
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

int comm_group_gather_hook(void *context, float *buffer, const size_t *bounds, DdError *err) {
    Comm *comm = context;
    if (!comm->hook_memory) return comm_group_gather(comm, buffer, bounds, err);
    if (comm->nccl) return comm_group_gather_device(comm, buffer, bounds, err);
    /* staged: this rank's shard to host memory, every shard back */
    const NnBackend *be = comm->hook_memory;
    const size_t total = bounds[comm->group_size], mine = bounds[comm->group_rank];
    const size_t mine_count = bounds[comm->group_rank + 1] - mine;
    if (total > (size_t)LONG_MAX || reserve_staging(comm, (long)total, err) != 0) return -1;
    be->copy_to_host(comm->host_staging + mine, buffer + mine, mine_count * sizeof(float));
    if (comm_group_gather(comm, comm->host_staging, bounds, err) != 0) return -1;
    be->copy_to_device(buffer, comm->host_staging, total * sizeof(float));
    return 0;
}

/* ---- asynchronous sums --------------------------------------------------- */

/* One sum started over MPI: its request and, when the buffer is device
 * memory, the host copy it runs on. */
typedef struct PendingSum {
    MPI_Request request;
    float *buffer;        /* the caller's buffer */
    float *host;          /* == buffer in host memory, else the staged copy */
    long count;
    int wanted;           /* this rank gets the sum: copy a staged one back */
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
        PendingSum sum = {MPI_REQUEST_NULL, buffer + done, host + done, piece, wanted};
        int code;
        if (owner < 0)
            code = MPI_Iallreduce(MPI_IN_PLACE, sum.host, piece, MPI_FLOAT, MPI_SUM, comm->group, &sum.request);
        else   /* the owner sums in place; the others' buffers are only read */
            code = MPI_Ireduce(wanted ? MPI_IN_PLACE : sum.host, wanted ? sum.host : NULL, piece, MPI_FLOAT,
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

int comm_group_sum_finish_hook(void *context, DdError *err) {
    Comm *comm = context;
    if (comm->hook_memory && comm->nccl) return comm_group_sum_device_finish(comm, err);
    CommPendingSums *p = comm->pending;
    if (!p) return 0;
    int failed = 0;
    for (int i = 0; i < p->count; i++) {
        PendingSum *sum = &p->sums[i];
        int code = MPI_Wait(&sum->request, MPI_STATUS_IGNORE);
        if (code != MPI_SUCCESS && !failed) failed = comm_mpi_fail(err, code, "in-group sum (waiting)");
        if (!failed && sum->wanted && sum->host != sum->buffer)
            comm->hook_memory->copy_to_device(sum->buffer, sum->host, (size_t)sum->count * sizeof(float));
    }
    p->count = 0;
    for (int c = 0; c < p->chunk_count; c++) p->chunks[c].used = 0;
    return failed;
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

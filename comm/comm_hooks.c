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
 */
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

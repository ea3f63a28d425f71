/*
 * run_device.c - device choice and device reductions of a `distill run`
 * rank, which also decide how the teacher's rows travel (see run_device.h).
 */
#include "tools/run_device.h"

#include <mpi.h>
#include <stdio.h>
#include <string.h>

/* 1 when every rank passes ok = 1. */
static int every_rank_ok(int ok) {
    int all = 0;
    MPI_Allreduce(&ok, &all, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD);
    return all;
}

/* This process's rank among the ranks of its node. */
static int node_local_rank(void) {
    MPI_Comm node;
    int rank = 0;
    if (MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, 0, MPI_INFO_NULL, &node) != MPI_SUCCESS)
        return 0;
    MPI_Comm_rank(node, &rank);
    MPI_Comm_free(&node);
    return rank;
}

const NnBackend *run_backend_for_rank(const char *backend_name, DdError *err) {
    char why[512] = "";
    int world_rank = 0;
    MPI_Comm_rank(MPI_COMM_WORLD, &world_rank);
    int ok = 1;
    if (strncmp(backend_name, "cuda", 4) == 0) {
        int device = -1;
        const int local_rank = node_local_rank();
        ok = nn_cuda_select_device(local_rank, &device, why, sizeof why) == 0;
    }
    const NnBackend *be = ok ? nn_backend_by_name(backend_name, why, sizeof why) : NULL;
    if (every_rank_ok(be != NULL)) return be;
    if (be) dd_fail(err, "backend %s: unavailable on another rank", backend_name);
    else dd_fail(err, "backend %s on rank %d: %s", backend_name, world_rank, why);
    return NULL;
}

int run_device_reductions(Comm *comm, const NnBackend *be, char *how, size_t how_size, DdError *err) {
    char reason[256] = "";
    int use_nccl = 0, ok = 1;
    DdError local = {0};
    if (!comm_has_nccl()) {
        snprintf(reason, sizeof reason, "this build has no NCCL");
    } else {
        int shared = 0;
        ok = comm_devices_shared(comm, &shared, reason, sizeof reason, &local) == 0;
        use_nccl = ok && !shared;
    }
    if (!every_rank_ok(ok)) return dd_fail(err, "choosing the reduction path: %s", ok ? "failed on another rank" : local.message);
    if (use_nccl) {
        ok = comm_init_nccl(comm, &local) == 0;
        if (!every_rank_ok(ok)) {
            comm_free_nccl(comm);
            return dd_fail(err, "%s", ok ? "NCCL: comm_init_nccl failed on another rank" : local.message);
        }
    }
    comm_set_hook_memory(comm, be);
    if (how && how_size > 0) {
        if (use_nccl) snprintf(how, how_size, "in-group reductions on %s: NCCL", be->name);
        else snprintf(how, how_size, "in-group reductions on %s: MPI through host memory (%s)", be->name, reason);
    }
    return 0;
}

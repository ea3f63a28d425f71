/*
 * comm.c - MPI communicators of a rank layout and the in-group collectives
 * on host memory: sums and maxima.
 */
#include "comm/comm.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>

int comm_mpi_fail(DdError *err, int code, const char *what) {
    char text[MPI_MAX_ERROR_STRING];
    int length = 0;
    MPI_Error_string(code, text, &length);
    return dd_fail(err, "%s: %s", what, text);
}

int comm_init(Comm *comm, const RankLayout *layout, DdError *err) {
    memset(comm, 0, sizeof *comm);
    comm->world = MPI_COMM_NULL;
    comm->group = MPI_COMM_NULL;
    int code = MPI_Comm_dup(MPI_COMM_WORLD, &comm->world);
    if (code != MPI_SUCCESS) return comm_mpi_fail(err, code, "MPI_Comm_dup");
    MPI_Comm_set_errhandler(comm->world, MPI_ERRORS_RETURN);
    MPI_Comm_rank(comm->world, &comm->world_rank);
    MPI_Comm_size(comm->world, &comm->world_size);
    if (comm->world_size != layout->world_size) {
        dd_fail(err, "the plan needs %d ranks (teacher %d + students), found %d MPI ranks",
                layout->world_size, layout->ranks[0], comm->world_size);
        comm_free(comm);
        return -1;
    }
    comm->group_index = rank_layout_group_of(layout, comm->world_rank, &comm->group_rank);
    code = MPI_Comm_split(comm->world, comm->group_index, comm->world_rank, &comm->group);
    if (code != MPI_SUCCESS) {
        comm_mpi_fail(err, code, "MPI_Comm_split");
        comm_free(comm);
        return -1;
    }
    MPI_Comm_set_errhandler(comm->group, MPI_ERRORS_RETURN);
    MPI_Comm_size(comm->group, &comm->group_size);
    return 0;
}

void comm_free(Comm *comm) {
    if (comm->nccl) comm_free_nccl(comm);
    free(comm->host_staging);
    comm->host_staging = NULL, comm->host_staging_count = 0;
    comm_pending_sums_free(comm);
    if (comm->group != MPI_COMM_NULL) MPI_Comm_free(&comm->group);
    if (comm->world != MPI_COMM_NULL) MPI_Comm_free(&comm->world);
    comm->group = comm->world = MPI_COMM_NULL;
}

static int group_allreduce(Comm *comm, float *buffer, long count, MPI_Op op, DdError *err) {
    for (long done = 0; done < count;) {   /* MPI counts are ints */
        int chunk = count - done > INT_MAX ? INT_MAX : (int)(count - done);
        int code = MPI_Allreduce(MPI_IN_PLACE, buffer + done, chunk, MPI_FLOAT, op, comm->group);
        if (code != MPI_SUCCESS) return comm_mpi_fail(err, code, "in-group MPI_Allreduce");
        done += chunk;
    }
    return 0;
}

int comm_group_sum(Comm *comm, float *buffer, long count, DdError *err) {
    return group_allreduce(comm, buffer, count, MPI_SUM, err);
}

int comm_group_max(Comm *comm, float *buffer, long count, DdError *err) {
    return group_allreduce(comm, buffer, count, MPI_MAX, err);
}

int comm_group_sum_doubles(Comm *comm, double *values, int count, DdError *err) {
    if (count <= 0) return 0;
    int code = MPI_Allreduce(MPI_IN_PLACE, values, count, MPI_DOUBLE, MPI_SUM, comm->group);
    return code == MPI_SUCCESS ? 0 : comm_mpi_fail(err, code, "in-group MPI_Allreduce (doubles)");
}

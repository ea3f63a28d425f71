/*
 * test_nccl_mpi.c - comm/'s NCCL path under mpirun (CUDA builds only;
 * registered in tests/mpi/meson.build with 2 ranks): the in-group
 * all-reduce of device buffers (sum and max) and the teacher -> student
 * delivery of device rows with grouped ncclSend / ncclRecv.
 *
 * Layout: a teacher group of 1 rank, the other ranks one student group
 * (with 2 ranks the student group has 1 rank and its all-reduce is the
 * identity; run under `mpirun -n 3` on 3 GPUs for a real 2-rank sum).
 * NCCL needs one device per rank: every case SKIPs, with the reason, when
 * a rank has no CUDA device, when there are fewer devices than ranks, or
 * when the build has no NCCL.
 */
#include <cuda_runtime.h>
#include <stdlib.h>

#include "comm/comm.h"
#include "nn/backend.h"
#include "tests/mpi/mpi_test.h"

enum { BATCH = 7 };

/* Sample i has 3 + 5i % 4 values; value j of it is a small integer, exact
 * in bf16, that names both (as tests/mpi/test_comm_mpi.c). */
static long row_values(int i) { return 3 + (5 * i) % 4; }
static float row_value(int i, long j) { return (float)(i * 16 + j); }

/* Teacher group {0}, student group {1 .. size-1}. */
static int make_layout(RankLayout *layout, int world_size, DdError *err) {
    const int ranks[2] = {1, world_size - 1};
    return rank_layout_init(layout, 2, ranks, BATCH, err);
}

/* Picks this rank's device and the CUDA backend; on every rank alike,
 * returns 0 when each rank has a device of its own, else writes why. */
static const NnBackend *choose_device(const Comm *comm, char *why, size_t why_size) {
    int count = 0;
    cudaError_t code = cudaGetDeviceCount(&count);
    if (code != cudaSuccess) {
        snprintf(why, why_size, "no CUDA device on rank %d: %s", comm->world_rank, cudaGetErrorString(code));
        count = 0;
    }
    int fewest = 0;
    MPI_Allreduce(&count, &fewest, 1, MPI_INT, MPI_MIN, comm->world);
    if (fewest < comm->world_size) {
        if (code == cudaSuccess)
            snprintf(why, why_size, "NCCL needs one CUDA device per rank: %d ranks, %d devices on the "
                                    "emptiest rank", comm->world_size, fewest);
        return NULL;
    }
    cudaSetDevice(comm->world_rank % count);
    const NnBackend *gpu = nn_cuda_backend(why, why_size);
    int ready = gpu != NULL, all_ready = 0;
    MPI_Allreduce(&ready, &all_ready, 1, MPI_INT, MPI_MIN, comm->world);
    if (gpu && !all_ready) snprintf(why, why_size, "another rank has no usable CUDA backend");
    return all_ready ? gpu : NULL;
}

/* Sets up layout, comm (with NCCL) and gpu, or SKIPs / fails the case. */
#define REQUIRE_NCCL(layout, comm, gpu)                                                    \
    RankLayout layout;                                                                     \
    Comm comm;                                                                             \
    DdError err_;                                                                          \
    int world_size_ = 0;                                                                   \
    MPI_Comm_size(MPI_COMM_WORLD, &world_size_);                                           \
    if (make_layout(&layout, world_size_, &err_) != 0) {                                   \
        CHECK(0, "layout: %s", err_.message);                                              \
        return;                                                                            \
    }                                                                                      \
    if (comm_init(&comm, &layout, &err_) != 0) {                                           \
        CHECK(0, "comm_init: %s", err_.message);                                           \
        rank_layout_free(&layout);                                                         \
        return;                                                                            \
    }                                                                                      \
    char why_[DD_ERROR_MESSAGE_MAX + 64] = "";                                             \
    const NnBackend *gpu = choose_device(&comm, why_, sizeof why_);                        \
    if (gpu && comm_init_nccl(&comm, &err_) != 0) {                                        \
        gpu = NULL;                                                                        \
        snprintf(why_, sizeof why_, "%s", err_.message);                                   \
        CHECK(strstr(why_, "this build has no NCCL") != NULL, "comm_init_nccl: %s", why_); \
    }                                                                                      \
    if (!gpu) {                                                                            \
        comm_free(&comm);                                                                  \
        rank_layout_free(&layout);                                                         \
        SKIP("%s", why_);                                                                  \
    }

static void group_sum_and_max_on_device(void) {
    REQUIRE_NCCL(layout, comm, gpu);
    enum { COUNT = 1001 };
    float values[COUNT], expected_sum[COUNT], expected_max[COUNT];
    for (int i = 0; i < COUNT; i++) {
        values[i] = (float)(comm.world_rank + 1) * (float)(i % 17);
        expected_sum[i] = expected_max[i] = 0.0f;
        for (int r = 0; r < comm.group_size; r++) {   /* the group's world ranks are consecutive */
            float v = (float)(comm.world_rank - comm.group_rank + r + 1) * (float)(i % 17);
            expected_sum[i] += v;
            expected_max[i] = v > expected_max[i] ? v : expected_max[i];
        }
    }
    float *device = gpu->alloc(sizeof values);
    DdError err;
    for (int op = 0; op < 2; op++) {
        gpu->copy_to_device(device, values, sizeof values);
        int code = op == 0 ? comm_group_sum_device(&comm, device, COUNT, &err)
                           : comm_group_max_device(&comm, device, COUNT, &err);
        CHECK(code == 0, "%s", err.message);
        float back[COUNT];
        gpu->copy_to_host(back, device, sizeof back);
        const float *expected = op == 0 ? expected_sum : expected_max;
        int same = 1;
        for (int i = 0; i < COUNT; i++) same &= back[i] == expected[i];   /* small integers: exact */
        CHECK(same, "group %s on device differs from the expected values", op == 0 ? "sum" : "max");
    }
    gpu->free(device);
    comm_free(&comm);
    rank_layout_free(&layout);
}

static void students_receive_their_rows_on_device(void) {
    REQUIRE_NCCL(layout, comm, gpu);
    long offsets[BATCH + 1];
    offsets[0] = 0;
    for (int i = 0; i < BATCH; i++) offsets[i + 1] = offsets[i] + row_values(i);
    int begin, end;
    rank_layout_slice(&layout, comm.group_index, comm.group_rank, &begin, &end);
    long count = offsets[end] - offsets[begin];
    float *values = calloc((size_t)count + 1, sizeof(float));
    uint16_t *rows = calloc((size_t)count + 1, sizeof(uint16_t));
    for (int i = begin; i < end; i++)
        for (long j = 0; j < row_values(i); j++) values[offsets[i] - offsets[begin] + j] = row_value(i, j);
    uint16_t *device = gpu->alloc((size_t)(count + 1) * sizeof(uint16_t));
    DdError err;
    long bytes = -1;
    if (comm.group_index == LAYOUT_TEACHER_GROUP) {
        bf16_from_float(rows, values, count);
        gpu->copy_to_device(device, rows, (size_t)count * sizeof(uint16_t));
        CHECK(delivery_device_post_sends(&comm, &layout, offsets, device, &bytes, &err) == 0, "%s", err.message);
    } else {
        CHECK(delivery_device_post_receives(&comm, &layout, offsets, device, &bytes, &err) == 0, "%s",
              err.message);
    }
    CHECK(delivery_device_wait(&comm, &err) == 0, "%s", err.message);
    /* the teacher sends the whole batch once per student group; a student gets its slice */
    CHECK(bytes == count * (long)sizeof(uint16_t), "%ld bytes moved, expected %ld", bytes,
          count * (long)sizeof(uint16_t));
    if (comm.group_index != LAYOUT_TEACHER_GROUP) {
        gpu->copy_to_host(rows, device, (size_t)count * sizeof(uint16_t));
        float *received = calloc((size_t)count + 1, sizeof(float));
        bf16_to_float(received, rows, count);
        int same = 1;
        for (long v = 0; v < count; v++) same &= received[v] == values[v];
        CHECK(same, "rank %d: received rows differ from the teacher's", comm.world_rank);
        free(received);
    }
    gpu->free(device);
    free(rows);
    free(values);
    comm_free(&comm);
    rank_layout_free(&layout);
}

static void calls_without_comm_init_nccl_fail_clearly(void) {
    RankLayout layout;
    Comm comm;
    DdError err;
    int world_size = 0;
    MPI_Comm_size(MPI_COMM_WORLD, &world_size);
    CHECK(make_layout(&layout, world_size, &err) == 0, "%s", err.message);
    CHECK(comm_init(&comm, &layout, &err) == 0, "%s", err.message);
    float dummy = 0.0f;
    CHECK(comm_group_sum_device(&comm, &dummy, 1, &err) != 0, "an all-reduce without NCCL succeeded");
    CHECK(strstr(err.message, "comm_init_nccl") != NULL || strstr(err.message, "no NCCL") != NULL,
          "message: %s", err.message);
    comm_free(&comm);
    rank_layout_free(&layout);
}

MPI_TEST_MAIN(TEST(group_sum_and_max_on_device), TEST(students_receive_their_rows_on_device),
              TEST(calls_without_comm_init_nccl_fail_clearly))

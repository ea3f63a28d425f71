/*
 * test_nccl_mpi.c - comm/'s NCCL path under mpirun (CUDA builds only;
 * registered in tests/mpi/meson.build with 1 and with 2 ranks): the in-group
 * all-reduce of device buffers (sum and max, and the started sum that the
 * compute stream waits for, also to one owner), the gather of shards by
 * broadcasts waited for by slot,
 * and the teacher -> student delivery of device
 * rows with grouped ncclSend / ncclRecv, also from a student rank that
 * computes teacher images and so sends rows to itself.
 *
 * Layout: a teacher group of 1 rank, the other ranks one student group (with
 * 2 ranks the student group has 1 rank and its all-reduce is the identity;
 * run under `mpirun -n 3` on 3 GPUs for a real 2-rank sum). A world of 1
 * rank has no rank layout (that needs a student group too): its Comm is
 * that rank alone as world and group, the sums run, the deliveries SKIP.
 * NCCL needs one device per rank: every case SKIPs, with the reason, when a
 * rank has no CUDA device, when there are fewer devices than ranks, or when
 * the build has no NCCL.
 */
#include <cuda_runtime.h>
#include <stdlib.h>

#include "comm/comm.h"
#include "nn/backend.h"
#include "tests/mpi/mpi_test.h"

enum { BATCH = 7, HELPER_IMAGES = 3 };

/* Sample i has 3 + 5i % 4 values; value j of it is a small integer, exact
 * in bf16, that names both (as tests/mpi/test_comm_mpi.c). */
static long row_values(int i) { return 3 + (5 * i) % 4; }
static float row_value(int i, long j) { return (float)(i * 16 + j); }

/* Teacher group {0}, student group {1 .. size-1}. spread: the last rank
 * also computes the teacher's last HELPER_IMAGES images (a helper,
 * comm/rank_layout.h). */
static int make_layout(RankLayout *layout, int world_size, int spread, DdError *err) {
    const int ranks[2] = {1, world_size - 1};
    if (rank_layout_init(layout, 2, ranks, BATCH, err) != 0) return -1;
    if (!spread) return 0;
    int *teacher_images = calloc((size_t)world_size, sizeof *teacher_images);
    if (!teacher_images) return dd_fail(err, "out of memory");
    teacher_images[0] = BATCH - HELPER_IMAGES;
    teacher_images[world_size - 1] = HELPER_IMAGES;
    int status = rank_layout_spread_teacher(layout, teacher_images, err);
    free(teacher_images);
    return status;
}

/* The layout (make_layout) and comm_init of this world; with 1 rank, a
 * Comm of that rank alone (world and group) and an empty layout. */
static int make_comm(RankLayout *layout, Comm *comm, int spread, DdError *err) {
    int world_size = 0;
    MPI_Comm_size(MPI_COMM_WORLD, &world_size);
    memset(layout, 0, sizeof *layout);
    if (world_size == 1) {
        memset(comm, 0, sizeof *comm);
        comm->world_size = comm->group_size = 1;
        if (MPI_Comm_dup(MPI_COMM_WORLD, &comm->world) != MPI_SUCCESS ||
            MPI_Comm_dup(MPI_COMM_WORLD, &comm->group) != MPI_SUCCESS)
            return dd_fail(err, "MPI_Comm_dup failed");
        return 0;
    }
    if (make_layout(layout, world_size, spread, err) != 0) return -1;
    if (comm_init(comm, layout, err) == 0) return 0;
    rank_layout_free(layout);
    return -1;
}

/* Picks this rank's device (rank mod devices on its node) and the CUDA
 * backend; on every rank alike, returns the backend when each rank has a
 * device of its own (comm_devices_shared compares the devices' UUIDs, as
 * distill run does), else NULL and why. Without NCCL in the build,
 * comm_devices_shared says so, and that is the reason. */
static const NnBackend *choose_device(Comm *comm, char *why, size_t why_size) {
    int count = 0;
    cudaError_t code = cudaGetDeviceCount(&count);
    int have = code == cudaSuccess && count > 0, all_have = 0;
    if (code != cudaSuccess)
        snprintf(why, why_size, "no CUDA device on rank %d: %s", comm->world_rank, cudaGetErrorString(code));
    else if (count == 0)
        snprintf(why, why_size, "no CUDA device on rank %d", comm->world_rank);
    MPI_Allreduce(&have, &all_have, 1, MPI_INT, MPI_MIN, comm->world);
    if (!all_have) {
        if (have) snprintf(why, why_size, "another rank has no CUDA device");
        return NULL;
    }
    cudaSetDevice(comm->world_rank % count);
    int shared = 0;
    char note[256] = "";
    DdError err = {0};
    if (comm_devices_shared(comm, &shared, note, sizeof note, &err) != 0) {
        snprintf(why, why_size, "%s", err.message);
        return NULL;
    }
    if (shared) {
        snprintf(why, why_size, "NCCL needs one CUDA device per rank: %s", note);
        return NULL;
    }
    const NnBackend *gpu = nn_cuda_backend(why, why_size);
    int ready = gpu != NULL, all_ready = 0;
    MPI_Allreduce(&ready, &all_ready, 1, MPI_INT, MPI_MIN, comm->world);
    if (gpu && !all_ready) snprintf(why, why_size, "another rank has no usable CUDA backend");
    return all_ready ? gpu : NULL;
}

/* Sets up layout and comm (make_comm; with NCCL, its hooks on the device)
 * and gpu, or SKIPs / fails the case. */
#define REQUIRE_NCCL(layout, comm, gpu, spread)                                            \
    RankLayout layout;                                                                     \
    Comm comm;                                                                             \
    DdError err_;                                                                          \
    if (make_comm(&layout, &comm, spread, &err_) != 0) {                                   \
        CHECK(0, "layout and comm: %s", err_.message);                                     \
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
    }                                                                                      \
    comm_set_hook_memory(&comm, gpu)

/* The delivery cases need a teacher rank and a student rank. */
#define REQUIRE_TWO_RANKS(layout, comm)                                                    \
    if ((comm).world_size < 2) {                                                           \
        comm_free(&(comm));                                                                \
        rank_layout_free(&(layout));                                                       \
        SKIP("a delivery needs a teacher rank and a student rank (mpirun -n 2 or more)");  \
    }

/* values[COUNT] of this rank and their sum and maximum over its group. */
enum { COUNT = 1001 };
static void group_values(const Comm *comm, float *values, float *expected_sum, float *expected_max) {
    for (int i = 0; i < COUNT; i++) {
        values[i] = (float)(comm->world_rank + 1) * (float)(i % 17);
        expected_sum[i] = expected_max[i] = 0.0f;
        for (int r = 0; r < comm->group_size; r++) {   /* the group's world ranks are consecutive */
            float v = (float)(comm->world_rank - comm->group_rank + r + 1) * (float)(i % 17);
            expected_sum[i] += v;
            expected_max[i] = v > expected_max[i] ? v : expected_max[i];
        }
    }
}

/* 1 when device[COUNT] holds scale * expected (small integers: exact). */
static int device_equals(const NnBackend *gpu, const float *device, const float *expected, float scale) {
    float back[COUNT];
    gpu->copy_to_host(back, device, sizeof back);
    int same = 1;
    for (int i = 0; i < COUNT; i++) same &= back[i] == scale * expected[i];
    return same;
}

static void group_sum_and_max_on_device(void) {
    REQUIRE_NCCL(layout, comm, gpu, 0);
    float values[COUNT], expected_sum[COUNT], expected_max[COUNT];
    group_values(&comm, values, expected_sum, expected_max);
    float *device = gpu->alloc(sizeof values);
    DdError err;
    for (int op = 0; op < 2; op++) {
        gpu->copy_to_device(device, values, sizeof values);
        int code = op == 0 ? comm_group_sum_device(&comm, device, COUNT, &err)
                           : comm_group_max_device(&comm, device, COUNT, &err);
        CHECK(code == 0, "%s", err.message);
        CHECK(device_equals(gpu, device, op == 0 ? expected_sum : expected_max, 1.0f),
              "group %s on device differs from the expected values", op == 0 ? "sum" : "max");
    }
    gpu->free(device);
    comm_free(&comm);
    rank_layout_free(&layout);
}

/* Two sums started around an unrelated kernel, finished, then kernels that
 * scale the sums: the compute stream must have waited for them (and the
 * first sum for the kernel that made its input). The first goes to every
 * rank (ncclAllReduce), the second to the group's last rank only
 * (ncclReduce, as for a shard's owner). */
static void group_sum_started_then_finished_on_device(void) {
    REQUIRE_NCCL(layout, comm, gpu, 0);
    float values[COUNT], expected_sum[COUNT], expected_max[COUNT];
    group_values(&comm, values, expected_sum, expected_max);
    float *a = gpu->alloc(sizeof values), *b = gpu->alloc(sizeof values), *other = gpu->alloc(sizeof values);
    DdError err;
    CHECK(comm_group_sum_device_finish(&comm, &err) == 0, "finish with nothing started: %s", err.message);
    gpu->copy_to_device(a, values, sizeof values);
    gpu->copy_to_device(b, values, sizeof values);
    gpu->scale(a, 4.0f, COUNT);   /* the input of the first sum, made by a kernel */
    CHECK(comm_group_sum_device_start(&comm, a, COUNT, -1, &err) == 0, "%s", err.message);
    gpu->copy_to_device(other, values, sizeof values);
    gpu->scale(other, 3.0f, COUNT);   /* overlaps the first sum */
    const int owner = comm.group_size - 1;
    CHECK(comm_group_sum_device_start(&comm, b, COUNT, owner, &err) == 0, "%s", err.message);
    CHECK(comm_group_sum_device_start(&comm, b, 0, -1, &err) == 0, "an empty sum: %s", err.message);
    CHECK(comm_group_sum_device_finish(&comm, &err) == 0, "%s", err.message);
    gpu->scale(a, 0.5f, COUNT);   /* reads the sums: queued behind them */
    gpu->scale(b, 2.0f, COUNT);
    CHECK(device_equals(gpu, a, expected_sum, 2.0f), "the first started sum differs from 4 x the group sum / 2");
    if (comm.group_rank == owner)
        CHECK(device_equals(gpu, b, expected_sum, 2.0f), "the sum to its owner differs from the group sum x 2");
    CHECK(device_equals(gpu, other, values, 3.0f), "the kernel between the sums went wrong");
    gpu->free(a);
    gpu->free(b);
    gpu->free(other);
    comm_free(&comm);
    rank_layout_free(&layout);
}

/* The gather of uneven shards (one empty) by broadcasts, slot = owner:
 * each rank fills its own, poisons the rest, starts them, waits for every
 * slot, and a kernel then doubles the buffer: it must have waited for the
 * broadcasts. Then slot 1 alone: owner 1's shard, poisoned again on the
 * other ranks, is in place once its slot was waited for. */
static void shards_gathered_on_device(void) {
    REQUIRE_NCCL(layout, comm, gpu, 0);
    size_t *bounds = calloc((size_t)comm.group_size + 1, sizeof *bounds);
    for (int r = 1; r < comm.group_size; r++)   /* rank 0's shard empty, then 300 floats each, the rest last */
        bounds[r] = (size_t)(r - 1) * 300 < COUNT ? (size_t)(r - 1) * 300 : COUNT;
    bounds[comm.group_size] = COUNT;
    float values[COUNT], expected[COUNT];
    for (int i = 0; i < COUNT; i++) {
        int owner = 0;
        while (owner + 1 < comm.group_size && (size_t)i >= bounds[owner + 1]) owner++;
        expected[i] = (float)(owner * 10000 + i);
        values[i] = owner == comm.group_rank ? expected[i] : NAN;
    }
    float *device = gpu->alloc(sizeof values);
    gpu->copy_to_device(device, values, sizeof values);
    DdError err;
    for (int owner = 0; owner < comm.group_size; owner++)
        CHECK(comm_group_broadcast_device_start(&comm, device + bounds[owner],
                                                (bounds[owner + 1] - bounds[owner]) * sizeof(float), owner, owner,
                                                &err) == 0,
              "%s", err.message);
    CHECK(comm_group_broadcast_device_wait(&comm, -1, &err) == 0, "%s", err.message);
    gpu->scale(device, 2.0f, COUNT);
    CHECK(device_equals(gpu, device, expected, 2.0f), "rank %d: the gathered shards differ from their owners'",
          comm.world_rank);
    if (comm.group_size > 1) {   /* owner 1's shard once more, NaN again on the other ranks */
        gpu->copy_to_device(device, values, sizeof values);
        CHECK(comm_group_broadcast_device_start(&comm, device + bounds[1], (bounds[2] - bounds[1]) * sizeof(float), 1,
                                                1, &err) == 0 &&
                  comm_group_broadcast_device_wait(&comm, 1, &err) == 0,
              "%s", err.message);
        float back[COUNT];
        gpu->copy_to_host(back, device, sizeof back);
        long wrong = 0;
        for (size_t i = bounds[1]; i < bounds[2]; i++) wrong += back[i] != expected[i];
        CHECK(wrong == 0, "rank %d: %ld values of slot 1 differ after waiting for it", comm.world_rank, wrong);
    }
    gpu->free(device);
    free(bounds);
    comm_free(&comm);
    rank_layout_free(&layout);
}

/* ---- delivery -------------------------------------------------------------- */

static void batch_offsets(long offsets[BATCH + 1]) {
    offsets[0] = 0;
    for (int i = 0; i < BATCH; i++) offsets[i + 1] = offsets[i] + row_values(i);
}

/* The bf16 rows of samples [begin, end) in device memory. */
static uint16_t *device_rows(const NnBackend *gpu, const long *offsets, int begin, int end) {
    const long count = offsets[end] - offsets[begin];
    float *values = calloc((size_t)count + 1, sizeof(float));
    uint16_t *rows = calloc((size_t)count + 1, sizeof(uint16_t));
    for (int i = begin; i < end; i++)
        for (long j = 0; j < row_values(i); j++) values[offsets[i] - offsets[begin] + j] = row_value(i, j);
    bf16_from_float(rows, values, count);
    uint16_t *device = gpu->alloc((size_t)(count + 1) * sizeof(uint16_t));
    gpu->copy_to_device(device, rows, (size_t)count * sizeof(uint16_t));
    free(values);
    free(rows);
    return device;
}

/* 1 when device holds the rows of samples [begin, end). */
static int rows_received(const NnBackend *gpu, const uint16_t *device, const long *offsets, int begin, int end) {
    const long count = offsets[end] - offsets[begin];
    uint16_t *rows = calloc((size_t)count + 1, sizeof(uint16_t));
    float *received = calloc((size_t)count + 1, sizeof(float));
    gpu->copy_to_host(rows, device, (size_t)count * sizeof(uint16_t));
    bf16_to_float(received, rows, count);
    int same = 1;
    for (int i = begin; i < end; i++)
        for (long j = 0; j < row_values(i); j++) same &= received[offsets[i] - offsets[begin] + j] == row_value(i, j);
    free(rows);
    free(received);
    return same;
}

static void students_receive_their_rows_on_device(void) {
    REQUIRE_NCCL(layout, comm, gpu, 0);
    REQUIRE_TWO_RANKS(layout, comm);
    long offsets[BATCH + 1];
    batch_offsets(offsets);
    int begin, end;
    rank_layout_slice(&layout, comm.group_index, comm.group_rank, &begin, &end);
    const long bytes_expected = (offsets[end] - offsets[begin]) * (long)sizeof(uint16_t);
    CHECK(delivery_on_device(&comm, gpu), "NCCL communicators and device hooks, yet no delivery on the device");
    DdError err;
    long bytes = -1;
    uint16_t *device = NULL;
    if (comm.group_index == LAYOUT_TEACHER_GROUP) {
        device = device_rows(gpu, offsets, begin, end);
        CHECK(delivery_device_post_sends(&comm, &layout, offsets, device, 0, &bytes, &err) == 0, "%s", err.message);
        CHECK(delivery_device_wait_slot(&comm, 0, &err) == 0, "%s", err.message);
    } else {
        device = gpu->alloc((size_t)(offsets[end] - offsets[begin] + 1) * sizeof(uint16_t));
        CHECK(delivery_device_post_receives(&comm, &layout, offsets, device, &bytes, &err) == 0, "%s",
              err.message);
    }
    CHECK(delivery_device_wait(&comm, &err) == 0, "%s", err.message);
    /* the teacher sends the whole batch once per student group; a student gets its slice */
    CHECK(bytes == bytes_expected, "%ld bytes moved, expected %ld", bytes, bytes_expected);
    if (comm.group_index != LAYOUT_TEACHER_GROUP)
        CHECK(rows_received(gpu, device, offsets, begin, end), "rank %d: received rows differ from the teacher's",
              comm.world_rank);
    gpu->free(device);
    comm_free(&comm);
    rank_layout_free(&layout);
}

/* The last rank computes teacher images too: its sends, to itself among
 * others, are held and posted with its receives. */
static void helper_sends_rows_to_itself_on_device(void) {
    REQUIRE_NCCL(layout, comm, gpu, 1);
    REQUIRE_TWO_RANKS(layout, comm);
    enum { SLOT = 1 };
    long offsets[BATCH + 1];
    batch_offsets(offsets);
    DdError err;
    const int member = rank_layout_teacher_member(&layout, comm.world_rank);
    uint16_t *sent = NULL, *received = NULL;
    if (member >= 0) {
        int begin, end;
        rank_layout_slice(&layout, LAYOUT_TEACHER_GROUP, member, &begin, &end);
        sent = device_rows(gpu, offsets, begin, end);
        long bytes = -1, expected = (offsets[end] - offsets[begin]) * (long)sizeof(uint16_t);
        CHECK(delivery_device_post_sends(&comm, &layout, offsets, sent, SLOT, &bytes, &err) == 0, "%s", err.message);
        CHECK(bytes == expected, "member %d sends %ld bytes, expected %ld", member, bytes, expected);
    }
    if (comm.group_index != LAYOUT_TEACHER_GROUP) {
        int begin, end;
        rank_layout_slice(&layout, comm.group_index, comm.group_rank, &begin, &end);
        received = gpu->alloc((size_t)(offsets[end] - offsets[begin] + 1) * sizeof(uint16_t));
        long bytes = -1, expected = (offsets[end] - offsets[begin]) * (long)sizeof(uint16_t);
        CHECK(delivery_device_post_receives(&comm, &layout, offsets, received, &bytes, &err) == 0, "%s",
              err.message);
        CHECK(delivery_device_wait(&comm, &err) == 0, "%s", err.message);
        CHECK(bytes == expected, "rank %d receives %ld bytes, expected %ld", comm.world_rank, bytes, expected);
        CHECK(rows_received(gpu, received, offsets, begin, end), "rank %d: received rows differ from the teacher's",
              comm.world_rank);
    }
    if (member >= 0) CHECK(delivery_device_wait_slot(&comm, SLOT, &err) == 0, "%s", err.message);
    if (sent) gpu->free(sent);
    if (received) gpu->free(received);
    comm_free(&comm);
    rank_layout_free(&layout);
}

static void calls_without_comm_init_nccl_fail_clearly(void) {
    RankLayout layout;
    Comm comm;
    DdError err;
    if (make_comm(&layout, &comm, 0, &err) != 0) {
        CHECK(0, "layout and comm: %s", err.message);
        return;
    }
    float dummy = 0.0f;
    CHECK(comm_group_sum_device(&comm, &dummy, 1, &err) != 0, "an all-reduce without NCCL succeeded");
    CHECK(strstr(err.message, "comm_init_nccl") != NULL || strstr(err.message, "no NCCL") != NULL,
          "message: %s", err.message);
    CHECK(comm_group_sum_device_start(&comm, &dummy, 1, -1, &err) != 0, "a started sum without NCCL succeeded");
    CHECK(comm_group_broadcast_device_start(&comm, &dummy, sizeof dummy, 0, 0, &err) != 0, "a broadcast without NCCL succeeded");
    CHECK(comm_group_sum_device_finish(&comm, &err) != 0, "finishing sums without NCCL succeeded");
    CHECK(delivery_device_wait_slot(&comm, 0, &err) != 0, "waiting for a slot without NCCL succeeded");
    comm_set_hook_memory(&comm, &nn_cpu_backend);
    CHECK(!delivery_on_device(&comm, &nn_cpu_backend), "a delivery on the device without NCCL");
    comm_free(&comm);
    rank_layout_free(&layout);
}

MPI_TEST_MAIN(TEST(group_sum_and_max_on_device), TEST(group_sum_started_then_finished_on_device),
              TEST(shards_gathered_on_device),
              TEST(students_receive_their_rows_on_device), TEST(helper_sends_rows_to_itself_on_device),
              TEST(calls_without_comm_init_nccl_fail_clearly))

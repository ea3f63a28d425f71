/*
 * test_comm_mpi.c - comm/ under mpirun with 5 ranks: a teacher group of 2
 * and student groups of 1 and 2 ranks. Communicators, in-group sums, and
 * the teacher -> student delivery (uneven slices, rows of different
 * lengths, two batches in flight at once, bytes counted).
 */
#include <math.h>
#include <stdlib.h>

#include "comm/comm.h"
#include "nn/backend.h"
#include "tests/mpi/mpi_test.h"

enum { BATCH = 7 };
static const int ranks_per_group[3] = {2, 1, 2};

static int make_layout(RankLayout *layout) {
    DdError err;
    if (rank_layout_init(layout, 3, ranks_per_group, BATCH, &err) != 0) return -1;
    const int teacher_slices[2] = {4, 3}, student_slices[2] = {2, 5};
    if (rank_layout_set_slices(layout, 0, teacher_slices, &err) != 0) return -1;
    return rank_layout_set_slices(layout, 2, student_slices, &err);
}

/* Sample i of batch `batch` has 3 + (5i + batch) % 4 values; value j of it is
 * a small integer, exact in bf16, that names both. */
static long row_values(int batch, int i) { return 3 + (5 * i + batch) % 4; }
static float row_value(int batch, int i, long j) { return (float)(batch * 128 + i * 16 + j); }

static void offsets_of(int batch, long *offsets) {
    offsets[0] = 0;
    for (int i = 0; i < BATCH; i++) offsets[i + 1] = offsets[i] + row_values(batch, i);
}

/* The layout (make_layout) and comm_init of this rank, the hooks' buffers
 * in hook_memory (NULL: host memory). */
static void open_comm(RankLayout *layout, Comm *comm, const NnBackend *hook_memory) {
    DdError err;
    CHECK(make_layout(layout) == 0, "layout");
    CHECK(comm_init(comm, layout, &err) == 0, "%s", err.message);
    comm_set_hook_memory(comm, hook_memory);
}

static void groups_follow_the_layout(void) {
    RankLayout layout;
    Comm comm;
    open_comm(&layout, &comm, NULL);
    int expected_group = comm.world_rank < 2 ? 0 : comm.world_rank < 3 ? 1 : 2;
    CHECK(comm.group_index == expected_group, "rank %d: group %d, expected %d", comm.world_rank,
          comm.group_index, expected_group);
    CHECK(comm.group_size == ranks_per_group[expected_group], "group size %d", comm.group_size);
    comm_free(&comm);
    rank_layout_free(&layout);
}

static void a_world_of_the_wrong_size_is_refused(void) {
    RankLayout layout;
    const int too_many[3] = {2, 2, 2};
    DdError err;
    CHECK(rank_layout_init(&layout, 3, too_many, BATCH, &err) == 0, "%s", err.message);
    Comm comm;
    CHECK(comm_init(&comm, &layout, &err) != 0, "a 6-rank plan on 5 ranks was accepted");
    CHECK(strcmp(err.message, "the plan needs 6 ranks (teacher 2 + students), found 5 MPI ranks") == 0,
          "message: %s", err.message);
    rank_layout_free(&layout);
}

static void group_sum_adds_within_the_group_only(void) {
    RankLayout layout;
    Comm comm;
    DdError err;
    open_comm(&layout, &comm, NULL);
    float values[5];
    for (int i = 0; i < 5; i++) values[i] = (float)((comm.world_rank + 1) * (i + 1));
    CHECK(comm_group_sum_hook(&comm, values, 5, &err) == 0, "%s", err.message);
    /* world ranks by group: {0, 1}, {2}, {3, 4} */
    int rank_sum = comm.group_index == 0 ? 1 + 2 : comm.group_index == 1 ? 3 : 4 + 5;
    for (int i = 0; i < 5; i++)
        CHECK(values[i] == (float)(rank_sum * (i + 1)), "value %d: %g, expected %d", i, values[i],
              rank_sum * (i + 1));
    comm_free(&comm);
    rank_layout_free(&layout);
}

/* The hooks on buffers in a backend's memory without NCCL: copied to host
 * memory, reduced over MPI, copied back. The CPU backend's copies are
 * memcpy, so this runs the very path a CUDA run without NCCL takes (several
 * ranks on one GPU). */
static void hooks_stage_backend_buffers_through_host_memory(void) {
    RankLayout layout;
    Comm comm;
    DdError err;
    open_comm(&layout, &comm, &nn_cpu_backend);
    enum { COUNT = 1000 };
    float *sums = nn_cpu_backend.alloc(COUNT * sizeof(float)), *maxima = nn_cpu_backend.alloc(COUNT * sizeof(float));
    CHECK(sums && maxima, "out of memory");
    for (int i = 0; i < COUNT; i++) {
        sums[i] = (float)((comm.world_rank + 1) * (i + 1));
        maxima[i] = (float)((comm.world_rank * 7 + i) % 5);
    }
    CHECK(comm_group_sum_hook(&comm, sums, COUNT, &err) == 0, "%s", err.message);
    CHECK(comm_group_max_hook(&comm, maxima, COUNT, &err) == 0, "%s", err.message);
    CHECK(comm.host_staging != NULL && comm.host_staging_count >= COUNT,
          "the buffers were not staged (staging holds %ld floats)", comm.host_staging_count);
    /* world ranks by group: {0, 1}, {2}, {3, 4} */
    const int first = comm.group_index == 0 ? 0 : comm.group_index == 1 ? 2 : 3;
    const int last = comm.group_index == 0 ? 1 : comm.group_index == 1 ? 2 : 4;
    int mismatches = 0;
    for (int i = 0; i < COUNT; i++) {
        float expected_sum = 0, expected_max = 0;
        for (int r = first; r <= last; r++) {
            expected_sum += (float)((r + 1) * (i + 1));
            float m = (float)((r * 7 + i) % 5);
            expected_max = r == first || m > expected_max ? m : expected_max;
        }
        mismatches += sums[i] != expected_sum || maxima[i] != expected_max;
    }
    CHECK(mismatches == 0, "rank %d: %d of %d staged reductions differ from the group's", comm.world_rank,
          mismatches, COUNT);
    nn_cpu_backend.free(sums);
    nn_cpu_backend.free(maxima);
    comm_free(&comm);
    CHECK(comm.host_staging == NULL, "comm_free left the staging buffer");
    rank_layout_free(&layout);
}

/* Three sums started, then finished together (comm_group_sum_start_hook),
 * twice: on host memory, and staged from "device" memory (the CPU backend as
 * above), where the buffers must stay as they were until the finish and the
 * second round must reuse the first round's host memory. One buffer is
 * larger than a staging chunk. The first goes to every rank, the second to
 * group rank 0 only, the third to the group's last rank only (the sums of
 * a sharded state): their owners must hold the sums. */
static void started_sums_complete_at_finish(int staged) {
    RankLayout layout;
    Comm comm;
    DdError err;
    open_comm(&layout, &comm, staged ? &nn_cpu_backend : NULL);
    const long counts[3] = {1, 1000, 5L << 20};
    float *buffers[3];
    for (int b = 0; b < 3; b++) CHECK((buffers[b] = nn_cpu_backend.alloc(counts[b] * sizeof(float))), "memory");
    const int first = comm.group_index == 0 ? 0 : comm.group_index == 1 ? 2 : 3;
    const int last = comm.group_index == 0 ? 1 : comm.group_index == 1 ? 2 : 4;
    const int owners[3] = {-1, 0, comm.group_size - 1};
    size_t staging_after_first_round = 0;
    for (int round = 0; round < 2; round++) {
        for (int b = 0; b < 3; b++)
            for (long i = 0; i < counts[b]; i++)
                buffers[b][i] = (float)((comm.world_rank + 1) * (i % 97 + b + round + 1));
        for (int b = 0; b < 3; b++)
            CHECK(comm_group_sum_start_hook(&comm, buffers[b], counts[b], owners[b], &err) == 0, "%s",
                  err.message);
        if (staged)
            CHECK(buffers[1][5] == (float)((comm.world_rank + 1) * (5 + 1 + round + 1)),
                  "a staged buffer changed before the finish");
        CHECK(comm_group_sum_finish_hook(&comm, &err) == 0, "%s", err.message);
        long mismatches = 0, checked = 0;
        for (int b = 0; b < 3; b++)
            for (long i = 0; i < counts[b] && (owners[b] < 0 || owners[b] == comm.group_rank); i++, checked++) {
                float expected = 0;
                for (int r = first; r <= last; r++) expected += (float)((r + 1) * (i % 97 + b + round + 1));
                mismatches += buffers[b][i] != expected;
            }
        const long wanted = counts[0] + (comm.group_rank == 0) * counts[1] +
                            (comm.group_rank == comm.group_size - 1) * counts[2];
        CHECK(mismatches == 0 && checked == wanted, "rank %d, round %d: %ld of %ld sums differ from the group's",
              comm.world_rank, round, mismatches, checked);
        if (round == 0) staging_after_first_round = comm_staging_bytes(&comm);
    }
    const size_t staged_bytes = (size_t)(counts[0] + counts[1] + counts[2]) * sizeof(float);
    if (staged)
        CHECK(staging_after_first_round >= staged_bytes && comm_staging_bytes(&comm) == staging_after_first_round,
              "staging: %zu bytes after the first round, %zu after the second (expected >= %zu, reused)",
              staging_after_first_round, comm_staging_bytes(&comm), staged_bytes);
    else
        CHECK(comm_staging_bytes(&comm) == 0, "sums on host memory staged %zu bytes", comm_staging_bytes(&comm));
    for (int b = 0; b < 3; b++) nn_cpu_backend.free(buffers[b]);
    comm_free(&comm);
    CHECK(comm.pending == NULL, "comm_free left the pending sums' state");
    rank_layout_free(&layout);
}

static void started_sums_on_host_memory(void) { started_sums_complete_at_finish(0); }
static void started_sums_staged_through_host_memory(void) { started_sums_complete_at_finish(1); }

/* The gather of uneven shards by broadcasts (comm_group_broadcast_start_hook,
 * slot = owner), on host memory and staged, of floats and of 2-byte values
 * (odd counts: the staging rounds up to whole floats, and the value past
 * the last shard stays untouched): each rank fills only its own shard (the
 * rest is poisoned); after waiting for slot 0 alone, owner 0's
 * shard is in place on every rank; after waiting for all, every shard is.
 * The teacher group's two ranks both own a shard; in the second student
 * group rank 1's is empty. Then the sum of doubles over the group. */
static void shards_gathered_and_doubles_summed(int staged) {
    RankLayout layout;
    Comm comm;
    DdError err;
    open_comm(&layout, &comm, staged ? &nn_cpu_backend : NULL);
    enum { TOTAL = 1000 };
    size_t bounds[3] = {0, 700, TOTAL};
    if (comm.group_index == 2) bounds[1] = TOTAL;   /* the second student group: rank 1's shard empty */
    float *buffer = nn_cpu_backend.alloc(TOTAL * sizeof(float));
    CHECK(buffer != NULL, "memory");
    const size_t mine = bounds[comm.group_rank], mine_end = bounds[comm.group_rank + 1];
    for (size_t i = 0; i < TOTAL; i++)
        buffer[i] = i >= mine && i < mine_end ? (float)(comm.group_rank * 10000 + (long)i) : NAN;
    /* 2-byte values too (bf16 bits), an odd number of them in each shard:
     * the staging holds whole floats */
    uint16_t *halves = nn_cpu_backend.alloc(TOTAL * sizeof(uint16_t));
    CHECK(halves != NULL, "memory");
    size_t half_bounds[3] = {0, 333, TOTAL - 1};
    if (comm.group_index == 2) half_bounds[1] = TOTAL - 1;
    for (size_t i = 0; i < TOTAL; i++)
        halves[i] = i >= half_bounds[comm.group_rank] && i < half_bounds[comm.group_rank + 1]
            ? (uint16_t)(comm.group_rank * 1000 + i) : 0xffff;
    for (int owner = 0; owner < comm.group_size; owner++) {
        const size_t count = bounds[owner + 1] - bounds[owner], half_count = half_bounds[owner + 1] - half_bounds[owner];
        CHECK(comm_group_broadcast_start_hook(&comm, buffer + bounds[owner], count * sizeof(float), owner, owner,
                                              &err) == 0 &&
              comm_group_broadcast_start_hook(&comm, halves + half_bounds[owner], half_count * sizeof(uint16_t),
                                              owner, owner, &err) == 0,
              "%s", err.message);
    }
    for (int wait = 0; wait < 2; wait++) {   /* slot 0, then every slot */
        CHECK(comm_group_broadcast_wait_hook(&comm, wait == 0 ? 0 : -1, &err) == 0, "%s", err.message);
        long mismatches = 0;
        for (int owner = 0; owner < (wait == 0 ? 1 : comm.group_size); owner++) {
            for (size_t i = bounds[owner]; i < bounds[owner + 1]; i++)
                mismatches += buffer[i] != (float)(owner * 10000 + (long)i);
            for (size_t i = half_bounds[owner]; i < half_bounds[owner + 1]; i++)
                mismatches += halves[i] != (uint16_t)(owner * 1000 + i);
        }
        CHECK(mismatches == 0 && halves[TOTAL - 1] == 0xffff,
              "rank %d, %s: %ld gathered values differ from their owner's (the byte past the last shard %#x)",
              comm.world_rank, wait == 0 ? "slot 0" : "every slot", mismatches, halves[TOTAL - 1]);
    }
    nn_cpu_backend.free(halves);

    double values[2] = {comm.world_rank + 0.25, 1e-17};
    CHECK(comm_group_sum_doubles_hook(&comm, values, 2, &err) == 0, "%s", err.message);
    const int first = comm.group_index == 0 ? 0 : comm.group_index == 1 ? 2 : 3;
    double expected = 0;
    for (int r = first; r < first + comm.group_size; r++) expected += r + 0.25;
    CHECK(values[0] == expected && values[1] == comm.group_size * 1e-17,
          "rank %d: doubles summed to %.17g and %.17g, expected %.17g and %.17g", comm.world_rank, values[0],
          values[1], expected, comm.group_size * 1e-17);
    nn_cpu_backend.free(buffer);
    comm_free(&comm);
    rank_layout_free(&layout);
}

static void shards_gathered_on_host_memory(void) { shards_gathered_and_doubles_summed(0); }
static void shards_gathered_through_host_memory(void) { shards_gathered_and_doubles_summed(1); }

static void students_receive_exactly_their_rows(void) {
    RankLayout layout;
    Comm comm;
    DdError err;
    open_comm(&layout, &comm, NULL);
    DeliveryTransfer transfers[2];
    long offsets[2][BATCH + 1];
    uint16_t *rows[2];
    int begin, end;
    rank_layout_slice(&layout, comm.group_index, comm.group_rank, &begin, &end);
    for (int batch = 0; batch < 2; batch++) {
        CHECK(delivery_transfer_init(&transfers[batch], &layout, &err) == 0, "%s", err.message);
        offsets_of(batch, offsets[batch]);
        rows[batch] = calloc((size_t)(offsets[batch][end] - offsets[batch][begin]) + 1, sizeof(uint16_t));
    }
    /* teachers post both batches before anyone waits; students post them in reverse order */
    for (int k = 0; k < 2; k++) {
        int batch = comm.group_index == 0 ? k : 1 - k;
        long *o = offsets[batch];
        if (comm.group_index == 0) {
            float *values = malloc((size_t)(o[end] - o[begin]) * sizeof(float));
            for (int i = begin; i < end; i++)
                for (long j = 0; j < row_values(batch, i); j++) values[o[i] - o[begin] + j] = row_value(batch, i, j);
            bf16_from_float(rows[batch], values, o[end] - o[begin]);
            free(values);
            CHECK(delivery_post_sends(&comm, &layout, o, rows[batch], batch, &transfers[batch], &err) == 0,
                  "%s", err.message);
        } else {
            CHECK(delivery_post_receives(&comm, &layout, o, rows[batch], batch, &transfers[batch], &err) == 0,
                  "%s", err.message);
        }
    }
    long bytes[2] = {0, 0};
    for (int batch = 0; batch < 2; batch++) {
        bytes[0] += transfers[batch].bytes_sent;
        bytes[1] += transfers[batch].bytes_received;
        CHECK(delivery_wait(&transfers[batch], &err) == 0, "%s", err.message);
    }
    if (comm.group_index != 0) {
        for (int batch = 0; batch < 2; batch++) {
            long *o = offsets[batch];
            float *values = malloc((size_t)(o[end] - o[begin]) * sizeof(float));
            bf16_to_float(values, rows[batch], o[end] - o[begin]);
            int wrong = 0;
            for (int i = begin; i < end; i++)
                for (long j = 0; j < row_values(batch, i); j++)
                    wrong += values[o[i] - o[begin] + j] != row_value(batch, i, j);
            CHECK(wrong == 0, "batch %d: %d values differ on rank %d", batch, wrong, comm.world_rank);
            free(values);
        }
    }
    /* every student group receives the whole payload once; teachers send it once per group */
    long totals[2];
    MPI_Allreduce(bytes, totals, 2, MPI_LONG, MPI_SUM, MPI_COMM_WORLD);
    long payload_bytes = 0;
    for (int batch = 0; batch < 2; batch++) payload_bytes += offsets[batch][BATCH] * (long)sizeof(uint16_t);
    CHECK(totals[0] == 2 * payload_bytes, "teachers sent %ld bytes, expected %ld", totals[0], 2 * payload_bytes);
    CHECK(totals[1] == 2 * payload_bytes, "students received %ld bytes, expected %ld", totals[1],
          2 * payload_bytes);
    for (int batch = 0; batch < 2; batch++) {
        delivery_transfer_free(&transfers[batch]);
        free(rows[batch]);
    }
    comm_free(&comm);
    rank_layout_free(&layout);
}

MPI_TEST_MAIN(TEST(groups_follow_the_layout), TEST(a_world_of_the_wrong_size_is_refused),
              TEST(group_sum_adds_within_the_group_only),
              TEST(hooks_stage_backend_buffers_through_host_memory), TEST(started_sums_on_host_memory),
              TEST(started_sums_staged_through_host_memory), TEST(shards_gathered_on_host_memory),
              TEST(shards_gathered_through_host_memory), TEST(students_receive_exactly_their_rows))

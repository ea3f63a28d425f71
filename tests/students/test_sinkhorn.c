/*
 * test_sinkhorn.c - Sinkhorn-Knopp centering across a student group: a
 * batch of teacher scores split over 1, 2 and 4 ranks (threads here, with
 * group sums and maxima that combine the ranks' buffers in rank order)
 * gives the same targets as on one rank, and those match DINOv3's algorithm
 * computed in float64 (with its global normalisation and its B and K
 * factors, which the fp32 version leaves out). Also: a rank with no rows (no
 * masked patches) still takes part; scores far beyond what exp() holds in
 * fp32 still give distributions; a failing group reduction is reported.
 */
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nn/random.h"
#include "students/students.h"
#include "tests/test.h"

enum { ROWS = 24, PROTOTYPES = 67, BOTTLENECK = 16, ITERATIONS = 3, MAX_RANKS = 4 };
static const float temperature = 0.07f;

/* ---- a group of threads ---------------------------------------------------- */

typedef struct ThreadGroup {
    int size;
    pthread_barrier_t barrier;
    float *buffers[MAX_RANKS];   /* each rank's buffer of the current sum */
} ThreadGroup;

typedef struct Rank {
    ThreadGroup *group;
    int rank;
    int first_row, rows;         /* this rank's slice of the batch */
    const float *scores;         /* [ROWS, PROTOTYPES] the whole batch's scores */
    float *targets;              /* [ROWS, PROTOTYPES] this rank writes its slice */
    float *sum;                  /* [PROTOTYPES] scratch of the group sum */
    int status;
    DdError err;
} Rank;

/* buffer <- its sum (or maximum) over the ranks, in rank order: the same
 * bits on every rank. */
static int thread_group_reduce(Rank *r, float *buffer, long count, int maximum) {
    ThreadGroup *g = r->group;
    g->buffers[r->rank] = buffer;
    pthread_barrier_wait(&g->barrier);
    for (long i = 0; i < count; i++) {
        float total = g->buffers[0][i];
        for (int q = 1; q < g->size; q++) total = maximum ? fmaxf(total, g->buffers[q][i]) : total + g->buffers[q][i];
        r->sum[i] = total;
    }
    pthread_barrier_wait(&g->barrier);   /* everyone has read every buffer */
    memcpy(buffer, r->sum, (size_t)count * sizeof(float));
    return 0;
}

static int thread_group_sum(void *context, float *buffer, long count, DdError *err) {
    (void)err;
    return thread_group_reduce(context, buffer, count, 0);
}

static int thread_group_max(void *context, float *buffer, long count, DdError *err) {
    (void)err;
    return thread_group_reduce(context, buffer, count, 1);
}

static void *run_rank(void *argument) {
    Rank *r = argument;
    const StudentGroup group = {.sum = thread_group_sum, .max = thread_group_max, .context = r,
                               .size = r->group->size, .slice_weight = 1.0};
    float *scores = malloc(((size_t)r->rows + 1) * PROTOTYPES * sizeof(float));   /* [rows, K] */
    float *column_sums = malloc(PROTOTYPES * sizeof(float));
    memcpy(scores, r->scores + (size_t)r->first_row * PROTOTYPES, (size_t)r->rows * PROTOTYPES * sizeof(float));
    r->status = sinkhorn_knopp(&nn_cpu_backend, scores, column_sums, r->rows, PROTOTYPES, temperature,
                               ITERATIONS, &group, &r->err);
    memcpy(r->targets + (size_t)r->first_row * PROTOTYPES, scores, (size_t)r->rows * PROTOTYPES * sizeof(float));
    free(scores);
    free(column_sums);
    return NULL;
}

/* Runs the batch on len(rows) ranks, rank q holding rows[q] consecutive rows. */
static void run_split(const int *rows, int ranks, const float *scores, float *targets) {
    ThreadGroup group = {.size = ranks};
    pthread_barrier_init(&group.barrier, NULL, (unsigned)ranks);
    Rank rank[MAX_RANKS];
    pthread_t thread[MAX_RANKS];
    float sums[MAX_RANKS][PROTOTYPES];
    for (int q = 0, first = 0; q < ranks; first += rows[q], q++) {
        rank[q] = (Rank){.group = &group, .rank = q, .first_row = first, .rows = rows[q], .scores = scores,
                         .targets = targets, .sum = sums[q]};
        pthread_create(&thread[q], NULL, run_rank, &rank[q]);
    }
    for (int q = 0; q < ranks; q++) {
        pthread_join(thread[q], NULL);
        CHECK(rank[q].status == 0, "rank %d: %s", q, rank[q].err.message);
    }
    pthread_barrier_destroy(&group.barrier);
}

/* ---- the batch and DINOv3's algorithm in float64 ---------------------------- */

/* scores[ROWS, K] of unit features against prototypes of norms from
 * 0.5 to 2 times `length`. */
static void make_scores(float *scores, double length) {
    DdRandom rng = dd_random_seed(11, 0);
    double features[ROWS][BOTTLENECK], prototypes[PROTOTYPES][BOTTLENECK];
    for (int m = 0; m < ROWS; m++) {
        double norm = 0.0;
        for (int c = 0; c < BOTTLENECK; c++) {
            features[m][c] = dd_random_normal(&rng);
            norm += features[m][c] * features[m][c];
        }
        for (int c = 0; c < BOTTLENECK; c++) features[m][c] /= sqrt(norm);
    }
    for (int k = 0; k < PROTOTYPES; k++) {
        const double scale = length * (0.5 + 1.5 * dd_random_uniform(&rng));
        for (int c = 0; c < BOTTLENECK; c++) prototypes[k][c] = scale * dd_random_normal(&rng) / sqrt((double)BOTTLENECK);
    }
    for (int m = 0; m < ROWS; m++)
        for (int k = 0; k < PROTOTYPES; k++) {
            double dot = 0.0;
            for (int c = 0; c < BOTTLENECK; c++) dot += features[m][c] * prototypes[k][c];
            scores[m * PROTOTYPES + k] = (float)dot;
        }
}

/* DINOv3's sinkhorn_knopp_teacher, Q = K x B, in float64. */
static void reference_sinkhorn(const float *scores, double *targets) {
    static double Q[PROTOTYPES][ROWS];
    const double K = PROTOTYPES, B = ROWS;
    double total = 0.0;
    for (int k = 0; k < PROTOTYPES; k++)
        for (int b = 0; b < ROWS; b++) total += Q[k][b] = exp(scores[b * PROTOTYPES + k] / (double)temperature);
    for (int k = 0; k < PROTOTYPES; k++)
        for (int b = 0; b < ROWS; b++) Q[k][b] /= total;
    for (int it = 0; it < ITERATIONS; it++) {
        for (int k = 0; k < PROTOTYPES; k++) {
            double row = 0.0;
            for (int b = 0; b < ROWS; b++) row += Q[k][b];
            for (int b = 0; b < ROWS; b++) Q[k][b] = Q[k][b] / row / K;
        }
        for (int b = 0; b < ROWS; b++) {
            double column = 0.0;
            for (int k = 0; k < PROTOTYPES; k++) column += Q[k][b];
            for (int k = 0; k < PROTOTYPES; k++) Q[k][b] = Q[k][b] / column / B;
        }
    }
    for (int b = 0; b < ROWS; b++)
        for (int k = 0; k < PROTOTYPES; k++) targets[b * PROTOTYPES + k] = Q[k][b] * B;
}

/* ---- the cases --------------------------------------------------------------- */

/* Each row of targets[ROWS, K] sums to 1: the largest deviation. */
static double worst_row_sum(const float *targets) {
    double worst = 0.0;
    for (int m = 0; m < ROWS; m++) {
        double sum = 0.0;
        for (int k = 0; k < PROTOTYPES; k++) sum += targets[m * PROTOTYPES + k];
        worst = fmax(worst, isfinite(sum) ? fabs(sum - 1.0) : INFINITY);
    }
    return worst;
}

static void shards_give_the_same_targets(void) {
    static float scores[ROWS * PROTOTYPES];
    static float targets[5][ROWS * PROTOTYPES];
    static double expected[ROWS * PROTOTYPES];
    make_scores(scores, 1.0);
    reference_sinkhorn(scores, expected);

    const struct {
        const char *name;
        int ranks;
        int rows[MAX_RANKS];
    } splits[] = {
        {"1 shard", 1, {ROWS}},
        {"2 shards", 2, {ROWS / 2, ROWS / 2}},
        {"4 shards", 4, {ROWS / 4, ROWS / 4, ROWS / 4, ROWS / 4}},
        {"4 uneven shards, one empty", 4, {11, 0, 6, 7}},
        {"3 uneven shards", 3, {1, 20, 3}},
    };
    for (int s = 0; s < 5; s++) {
        run_split(splits[s].rows, splits[s].ranks, scores, targets[s]);
        const double against_one = test_relative_error_ff(targets[s], targets[0], ROWS * PROTOTYPES);
        const double against_float64 = test_relative_error(targets[s], expected, ROWS * PROTOTYPES);
        const double worst_row = worst_row_sum(targets[s]);
        printf("  %-28s vs 1 shard %.2e, vs DINOv3 in float64 %.2e, rows sum to 1 within %.1e\n", splits[s].name,
               against_one, against_float64, worst_row);
        CHECK(against_one < 1e-5, "%s: targets differ from one shard's by %.3g", splits[s].name, against_one);
        CHECK(against_float64 < 1e-5, "%s: targets differ from the float64 algorithm by %.3g", splits[s].name,
              against_float64);
        CHECK(worst_row < 1e-5, "%s: a row sums to 1 +- %.3g", splits[s].name, worst_row);
    }
}

/* exp(score / 0.07) overflows fp32 for scores over ~6.2 and the float64
 * reference for scores over ~50: the shift by each prototype's group
 * maximum keeps long prototype rows working, and no column vanishes. */
static void long_prototype_rows_neither_overflow_nor_vanish(void) {
    static float scores[ROWS * PROTOTYPES], targets[ROWS * PROTOTYPES];
    static double expected[ROWS * PROTOTYPES];
    const double lengths[] = {10.0, 100.0};
    for (int l = 0; l < 2; l++) {
        make_scores(scores, lengths[l]);
        const int rows[] = {ROWS / 2, ROWS / 2};
        run_split(rows, 2, scores, targets);
        double smallest_column = INFINITY;
        for (int k = 0; k < PROTOTYPES; k++) {
            double mass = 0.0;
            for (int m = 0; m < ROWS; m++) mass += targets[m * PROTOTYPES + k];
            smallest_column = fmin(smallest_column, mass);
        }
        const double worst_row = worst_row_sum(targets);
        printf("  prototype rows %gx longer: rows sum to 1 within %.1e, smallest prototype mass %.3f (even: %.3f)",
               lengths[l], worst_row, smallest_column, (double)ROWS / PROTOTYPES);
        CHECK(worst_row < 1e-5, "length %g: a row sums to 1 +- %.3g", lengths[l], worst_row);
        CHECK(smallest_column > 0.0, "length %g: a prototype column vanished", lengths[l]);
        if (lengths[l] * 2 / temperature < 700) {   /* the float64 reference holds these */
            reference_sinkhorn(scores, expected);
            const double error = test_relative_error(targets, expected, ROWS * PROTOTYPES);
            printf(", vs DINOv3 in float64 %.2e", error);
            CHECK(error < 1e-4, "length %g: %.3g from the float64 algorithm", lengths[l], error);
        }
        printf("\n");
    }
}

static int failing_reduction(void *context, float *buffer, long count, DdError *err) {
    (void)context, (void)buffer;
    return dd_fail(err, "rank 3 left the group (%ld values)", count);
}

static void a_failing_group_reduction_is_reported(void) {
    float scores[4 * 5] = {0}, column[5];
    DdError err = {{0}};
    const StudentGroup failing_max = {.sum = group_reduce_single_process, .max = failing_reduction, .size = 2,
                                     .slice_weight = 1.0};
    CHECK(sinkhorn_knopp(&nn_cpu_backend, scores, column, 4, 5, temperature, 3, &failing_max, &err) == -1,
          "the failure was ignored");
    CHECK(strcmp(err.message, "Sinkhorn-Knopp: the maxima of 5 prototype columns over the group: "
                              "rank 3 left the group (5 values)") == 0, "%s", err.message);
    const StudentGroup group = {.sum = failing_reduction, .max = group_reduce_single_process, .size = 2,
                               .slice_weight = 1.0};
    CHECK(sinkhorn_knopp(&nn_cpu_backend, scores, column, 4, 5, temperature, 3, &group, &err) == -1,
          "the failure was ignored");
    CHECK(strcmp(err.message, "Sinkhorn-Knopp, iteration 1 of 3: summing 5 prototype columns over the group: "
                              "rank 3 left the group (5 values)") == 0, "%s", err.message);
}

TEST_MAIN(TEST(shards_give_the_same_targets), TEST(long_prototype_rows_neither_overflow_nor_vanish),
          TEST(a_failing_group_reduction_is_reported))

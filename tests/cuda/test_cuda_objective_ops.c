/*
 * test_cuda_objective_ops.c - the ops of the distillation objective (row
 * norms, row gathers, cross-entropy over up to 262,144 prototypes, KoLeo,
 * Sinkhorn-Knopp's building blocks, EMA) on the CUDA backend against the
 * CPU backend: fresh random inputs, the same op on both, compare.
 * Gradients are pre-filled with random values on both sides, so each
 * backward is also checked to accumulate. Tolerances: cuda_op_case.h.
 * Without a device (or a build without CUDA) every case calls SKIP with the
 * reason nn_cuda_backend / nn_cuda_fp32_backend gives, so the output says so
 * case by case.
 */
#include <stdlib.h>
#include <string.h>

#include "tests/cuda/cuda_op_case.h"

/* with_out = 0: only the norms (out NULL). Row 1 is zero: its norm is clamped.
 * The row norm is a C-term sum, in double on both sides: TOL. */
static void check_l2norm_forward(int with_out) {
    REQUIRE_CUDA(gpu);
    int N = 37, C = 200;
    long n = (long)N * C;
    float *inp = random_host(n, -1, 1);
    memset(inp + C, 0, (size_t)C * sizeof(float));
    float *out = random_host(n, -1, 1), *norm = random_host(N, -1, 1);
    float *d_out = to_device_f(gpu, out, n), *d_norm = to_device_f(gpu, norm, N);
    cpu->l2norm_forward(with_out ? out : NULL, norm, inp, N, C, 1e-12f);
    gpu->l2norm_forward(with_out ? d_out : NULL, d_norm, to_device_f(gpu, inp, n), N, C, 1e-12f);
    CHECK_CLOSE(gpu, d_out, out, n, TOL);   /* untouched on both sides when with_out = 0 */
    CHECK_CLOSE(gpu, d_norm, norm, N, TOL);
    release_all(gpu);
}
static void l2norm_forward(void) { check_l2norm_forward(1); }
static void l2norm_forward_norms_only(void) { check_l2norm_forward(0); }

static void l2norm_backward(void) {
    REQUIRE_CUDA(gpu);
    int N = 37, C = 200;
    long n = (long)N * C;
    const float eps = 1e-3f;
    float *inp = random_host(n, -1, 1);
    for (int c = 0; c < C; c++) inp[C + c] = 1e-7f;   /* row 1: norm below eps, clamped */
    float *norm = host_alloc((size_t)N * sizeof(float));
    cpu->l2norm_forward(NULL, norm, inp, N, C, eps);   /* saved norms, for both */
    float *dout = random_host(n, -1, 1), *dinp = random_host(n, -1, 1);
    float *d_dinp = to_device_f(gpu, dinp, n);
    cpu->l2norm_backward(dinp, dout, inp, norm, N, C, eps);
    gpu->l2norm_backward(d_dinp, to_device_f(gpu, dout, n), to_device_f(gpu, inp, n),
                         to_device_f(gpu, norm, N), N, C, eps);
    CHECK_CLOSE(gpu, d_dinp, dinp, n, TOL);
    release_all(gpu);
}

static void gather_rows(void) {
    REQUIRE_CUDA(gpu);
    int rows_in = 50, N = 33, C = 70;
    float *inp = random_host((long)rows_in * C, -1, 1), *out = random_host((long)N * C, -1, 1);
    int32_t *rows = random_indices(N, rows_in);
    float *d_out = to_device_f(gpu, out, (long)N * C);
    cpu->gather_rows(out, inp, rows, N, C);
    gpu->gather_rows(d_out, to_device_f(gpu, inp, (long)rows_in * C), to_device_i(gpu, rows, N), N, C);
    CHECK_CLOSE(gpu, d_out, out, (long)N * C, 0.0);   /* a gather: exact */
    release_all(gpu);
}

static void gather_rows_backward(void) {
    REQUIRE_CUDA(gpu);
    int rows_in = 10, N = 77, C = 300;   /* N > rows_in: rows repeat */
    float *dout = random_host((long)N * C, -1, 1), *dinp = random_host((long)rows_in * C, -1, 1);
    int32_t *rows = random_indices(N, rows_in);
    float *d_dinp = to_device_f(gpu, dinp, (long)rows_in * C);
    cpu->gather_rows_backward(dinp, dout, rows, N, C);
    gpu->gather_rows_backward(d_dinp, to_device_f(gpu, dout, (long)N * C), to_device_i(gpu, rows, N), N, C);
    CHECK_CLOSE(gpu, d_dinp, dinp, (long)rows_in * C, TOL);
    release_all(gpu);
}

/* M rows of K probabilities (positive, each summing to 1), on the host. */
static float *random_distributions(int M, int K) {
    float *t = random_host((long)M * K, 0, 1);
    for (int m = 0; m < M; m++) {
        double sum = 0.0;
        for (int k = 0; k < K; k++) sum += t[(long)m * K + k];
        for (int k = 0; k < K; k++) t[(long)m * K + k] = (float)(t[(long)m * K + k] / sum);
    }
    return t;
}

/* R = 1 without target_rows (row n against targets row n) or R targets per
 * row picked by target_rows. K-term sums (logsumexp, dot products): TOL for
 * short rows, TOL_LONG for K = 262,144. */
static void check_cross_entropy_forward(int N, int K, int R, int with_rows, double tol) {
    REQUIRE_CUDA(gpu);
    int M = with_rows ? 5 : N;
    float *logits = random_host((long)N * K, -3, 3);
    float *targets = random_distributions(M, K);
    int32_t *rows = with_rows ? random_indices((long)N * R, M) : NULL;
    float *loss = random_host(N, -1, 1), *lse = random_host(N, -1, 1);
    float *d_loss = to_device_f(gpu, loss, N), *d_lse = to_device_f(gpu, lse, N);
    cpu->softmax_cross_entropy_forward(loss, lse, logits, targets, rows, N, K, R, 0.1f);
    gpu->softmax_cross_entropy_forward(d_loss, d_lse, to_device_f(gpu, logits, (long)N * K),
                                       to_device_f(gpu, targets, (long)M * K),
                                       rows ? to_device_i(gpu, rows, (long)N * R) : NULL, N, K, R, 0.1f);
    CHECK_CLOSE(gpu, d_loss, loss, N, tol);
    CHECK_CLOSE(gpu, d_lse, lse, N, tol);
    release_all(gpu);
}
static void softmax_cross_entropy_forward(void) { check_cross_entropy_forward(19, 1000, 1, 0, TOL); }
static void softmax_cross_entropy_forward_two_targets(void) { check_cross_entropy_forward(19, 1000, 2, 1, TOL); }
static void softmax_cross_entropy_forward_262144(void) { check_cross_entropy_forward(3, 262144, 2, 1, TOL_LONG); }

static void check_cross_entropy_backward(int N, int K, int R, int with_rows, double tol) {
    REQUIRE_CUDA(gpu);
    int M = with_rows ? 5 : N;
    float *logits = random_host((long)N * K, -3, 3);
    float *targets = random_distributions(M, K);
    int32_t *rows = with_rows ? random_indices((long)N * R, M) : NULL;
    float *loss = host_alloc((size_t)N * sizeof(float)), *lse = host_alloc((size_t)N * sizeof(float));
    cpu->softmax_cross_entropy_forward(loss, lse, logits, targets, rows, N, K, R, 0.1f);   /* saved lse */
    float *dloss = random_host(N, -1, 1), *dlogits = random_host((long)N * K, -1, 1);
    float *d_dlogits = to_device_f(gpu, dlogits, (long)N * K);
    cpu->softmax_cross_entropy_backward(dlogits, dloss, logits, targets, rows, lse, N, K, R, 0.1f);
    gpu->softmax_cross_entropy_backward(d_dlogits, to_device_f(gpu, dloss, N),
                                        to_device_f(gpu, logits, (long)N * K),
                                        to_device_f(gpu, targets, (long)M * K),
                                        rows ? to_device_i(gpu, rows, (long)N * R) : NULL,
                                        to_device_f(gpu, lse, N), N, K, R, 0.1f);
    CHECK_CLOSE(gpu, d_dlogits, dlogits, (long)N * K, tol);
    release_all(gpu);
}
static void softmax_cross_entropy_backward(void) { check_cross_entropy_backward(19, 1000, 1, 0, TOL); }
static void softmax_cross_entropy_backward_two_targets(void) { check_cross_entropy_backward(19, 1000, 2, 1, TOL); }
/* The target mass is a 2 x 262,144-term sum: TOL_LONG. */
static void softmax_cross_entropy_backward_262144(void) { check_cross_entropy_backward(3, 262144, 2, 1, TOL_LONG); }

/* N unit rows of C values, on the host; with_tie: rows 4 and 9 are equal (a
 * tie for every other row's nearest; kept out of the backward, whose
 * near-zero pair distance would dwarf every other gradient). */
static float *random_unit_rows(int N, int C, int with_tie) {
    float *x = random_host((long)N * C, -1, 1);
    cpu->l2norm_forward(x, host_alloc((size_t)N * sizeof(float)), x, N, C, 1e-12f);
    if (with_tie) memcpy(x + 9L * C, x + 4L * C, (size_t)C * sizeof(float));
    return x;
}

static void koleo_forward(void) {
    REQUIRE_CUDA(gpu);
    int N = 40, C = 64;
    float *inp = random_unit_rows(N, C, 1);
    float *loss = random_host(N, -1, 1);
    int32_t *neighbor = host_alloc((size_t)N * sizeof(int32_t));
    int32_t *back = host_alloc((size_t)N * sizeof(int32_t));
    float *d_loss = to_device_f(gpu, loss, N);
    int32_t *d_neighbor = to_device_i(gpu, neighbor, N);
    cpu->koleo_forward(loss, neighbor, inp, N, C, 1e-8f);
    gpu->koleo_forward(d_loss, d_neighbor, to_device_f(gpu, inp, (long)N * C), N, C, 1e-8f);
    gpu->copy_to_host(back, d_neighbor, (size_t)N * sizeof(int32_t));
    int same = 1;
    for (int n = 0; n < N; n++) same &= back[n] == neighbor[n];
    CHECK(same, "neighbours differ from the CPU's");
    CHECK_CLOSE(gpu, d_loss, loss, N, TOL);
    release_all(gpu);
}

static void koleo_backward(void) {
    REQUIRE_CUDA(gpu);
    int N = 40, C = 64;
    float *inp = random_unit_rows(N, C, 0);
    float *loss = host_alloc((size_t)N * sizeof(float));
    int32_t *neighbor = host_alloc((size_t)N * sizeof(int32_t));
    cpu->koleo_forward(loss, neighbor, inp, N, C, 1e-8f);   /* saved neighbours, for both */
    float *dloss = random_host(N, -1, 1), *dinp = random_host((long)N * C, -1, 1);
    float *d_dinp = to_device_f(gpu, dinp, (long)N * C);
    cpu->koleo_backward(dinp, dloss, inp, neighbor, N, C, 1e-8f);
    gpu->koleo_backward(d_dinp, to_device_f(gpu, dloss, N), to_device_f(gpu, inp, (long)N * C),
                        to_device_i(gpu, neighbor, N), N, C, 1e-8f);
    CHECK_CLOSE(gpu, d_dinp, dinp, (long)N * C, TOL);
    release_all(gpu);
}

/* with_shift: subtract a per-column shift; in_place: out == inp. */
static void check_exp_with_temperature(int with_shift, int in_place) {
    REQUIRE_CUDA(gpu);
    int M = 13, K = 1001;
    long n = (long)M * K;
    float *inp = random_host(n, -1, 1), *shift = random_host(K, -1, 1), *out = random_host(n, -1, 1);
    float *d_inp = to_device_f(gpu, inp, n), *d_out = in_place ? d_inp : to_device_f(gpu, out, n);
    float *d_shift = with_shift ? to_device_f(gpu, shift, K) : NULL;
    cpu->exp_with_temperature(out, inp, with_shift ? shift : NULL, M, K, 0.07f);
    gpu->exp_with_temperature(d_out, d_inp, d_shift, M, K, 0.07f);
    CHECK_CLOSE(gpu, d_out, out, n, TOL);
    release_all(gpu);
}
static void exp_with_temperature(void) { check_exp_with_temperature(1, 0); }
static void exp_with_temperature_in_place_no_shift(void) { check_exp_with_temperature(0, 1); }

static void check_column_sums(int M, int K, double tol) {
    REQUIRE_CUDA(gpu);
    float *x = random_host((long)M * K, 0, 1), *sums = random_host(K, -1, 1);
    float *d_sums = to_device_f(gpu, sums, K);   /* garbage: column_sums overwrites */
    cpu->column_sums(sums, x, M, K);
    gpu->column_sums(d_sums, to_device_f(gpu, x, (long)M * K), M, K);
    CHECK_CLOSE(gpu, d_sums, sums, K, tol);
    release_all(gpu);
}
static void column_sums(void) { check_column_sums(13, 1001, TOL); }
/* 3001-row column sums (double on both sides, different orders): TOL_LONG. */
static void column_sums_many_rows(void) { check_column_sums(3001, 300, TOL_LONG); }

static void check_column_max(int M) {
    REQUIRE_CUDA(gpu);
    int K = 1001;
    float *x = random_host((long)M * K, -5, 5), *maxes = random_host(K, -1, 1);
    float *d_maxes = to_device_f(gpu, maxes, K);
    cpu->column_max(maxes, x, M, K);
    gpu->column_max(d_maxes, M > 0 ? to_device_f(gpu, x, (long)M * K) : NULL, M, K);
    float *back = host_alloc((size_t)K * sizeof(float));
    gpu->copy_to_host(back, d_maxes, (size_t)K * sizeof(float));
    int same = 1;   /* a maximum: exact, -infinity included */
    for (int k = 0; k < K; k++) same &= back[k] == maxes[k];
    CHECK(same, "column maxima differ from the CPU's");
    release_all(gpu);
}
static void column_max(void) { check_column_max(13); }
static void column_max_no_rows(void) { check_column_max(0); }

static void divide_columns(void) {
    REQUIRE_CUDA(gpu);
    int M = 13, K = 1001;
    long n = (long)M * K;
    float *x = random_host(n, -1, 1), *divisors = random_host(K, 0.5f, 2);
    divisors[7] = divisors[500] = 0.0f;   /* those columns become 0 */
    float *d_x = to_device_f(gpu, x, n);
    cpu->divide_columns(x, divisors, M, K);
    gpu->divide_columns(d_x, to_device_f(gpu, divisors, K), M, K);
    CHECK_CLOSE(gpu, d_x, x, n, TOL);
    release_all(gpu);
}

static void normalize_rows(void) {
    REQUIRE_CUDA(gpu);
    int M = 13, K = 5001;
    long n = (long)M * K;
    float *x = random_host(n, 0, 1);
    memset(x + 2L * K, 0, (size_t)K * sizeof(float));   /* row 2 sums to 0: stays 0 */
    float *d_x = to_device_f(gpu, x, n);
    cpu->normalize_rows(x, M, K);
    gpu->normalize_rows(d_x, M, K);
    CHECK_CLOSE(gpu, d_x, x, n, TOL);
    release_all(gpu);
}

static void ema_update(void) {
    REQUIRE_CUDA(gpu);
    long n = 10007;
    float *ema = random_host(n, -1, 1), *params = random_host(n, -1, 1);
    float *d_ema = to_device_f(gpu, ema, n);
    cpu->ema_update(ema, params, n, 0.996f);
    gpu->ema_update(d_ema, to_device_f(gpu, params, n), n, 0.996f);
    CHECK_CLOSE(gpu, d_ema, ema, n, TOL);
    release_all(gpu);
}

TEST_MAIN(TEST(l2norm_forward), TEST(l2norm_forward_norms_only), TEST(l2norm_backward),
          TEST(gather_rows), TEST(gather_rows_backward), TEST(softmax_cross_entropy_forward),
          TEST(softmax_cross_entropy_forward_two_targets),
          TEST(softmax_cross_entropy_forward_262144), TEST(softmax_cross_entropy_backward),
          TEST(softmax_cross_entropy_backward_two_targets),
          TEST(softmax_cross_entropy_backward_262144), TEST(koleo_forward), TEST(koleo_backward),
          TEST(exp_with_temperature), TEST(exp_with_temperature_in_place_no_shift),
          TEST(column_sums), TEST(column_sums_many_rows), TEST(column_max), TEST(column_max_no_rows),
          TEST(divide_columns), TEST(normalize_rows), TEST(ema_update))

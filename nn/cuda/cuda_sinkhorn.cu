/*
 * cuda_sinkhorn.cu - the building blocks of Sinkhorn-Knopp centering on the
 * GPU (semantics: nn/backend.h, oracle: nn/cpu/cpu_sinkhorn.c): tempered
 * exponentials, column sums and maxima, column and row normalisation.
 * Scores are [M, K]: M samples (rows), K prototypes (up to 262,144 columns).
 *
 * Column sums reuse the deterministic column_sum kernel of cuda_common.cuh
 * (double partials, fixed order); row sums run one block per row in double.
 */
#include <math.h>

#include "nn/cuda/cuda_common.cuh"

/* out[m, k] = exp((inp[m, k] - shift[k]) / temperature); shift may be NULL,
 * out may be inp. One element per thread. */
__global__ static void exp_with_temperature_kernel(float *out, const float *inp, const float *shift,
                                                   int M, int K, float inverse_temperature) {
    CUDA_GRID_STRIDE_LOOP(i, (long)M * K) {
        const float centre = shift ? shift[i % K] : 0.0f;
        out[i] = expf((inp[i] - centre) * inverse_temperature);
    }
}

void cuda_exp_with_temperature(float *out, const float *inp, const float *shift, int M, int K,
                               float temperature) {
    if ((long)M * K <= 0) return;
    CUDA_LAUNCH(cuda_grid_for((long)M * K), CUDA_BLOCK, 0, exp_with_temperature_kernel)(out, inp, shift, M, K,
                                                                           1.0f / temperature);
    CUDA_CHECK_LAUNCH();
}

/* The value column_sum adds: x[r, c] of a row-major [rows, K] matrix. */
struct MatrixEntry {
    const float *x;
    int K;
    __device__ float operator()(long r, int c) const { return x[r * K + c]; }
};

void cuda_column_sums(float *sums, const float *x, int M, int K) {
    if (K <= 0) return;
    CUDA_CHECK(cudaMemset(sums, 0, (size_t)K * sizeof(float)));   /* column_sum accumulates */
    column_sum(sums, M, K, MatrixEntry{x, K});
}

/* maxes[k] = max over m of x[m, k]: thread k walks its column (coalesced
 * across the threads of a warp); -infinity when M = 0. */
__global__ static void column_max_kernel(float *maxes, const float *x, int M, int K) {
    const long k = (long)blockIdx.x * blockDim.x + threadIdx.x;
    if (k >= K) return;
    float max = -INFINITY;
    for (int m = 0; m < M; m++) max = fmaxf(max, x[(long)m * K + k]);
    maxes[k] = max;
}

void cuda_column_max(float *maxes, const float *x, int M, int K) {
    if (K <= 0) return;
    CUDA_LAUNCH((unsigned)((K + CUDA_BLOCK - 1) / CUDA_BLOCK), CUDA_BLOCK, 0, column_max_kernel)(maxes, x, M, K);
    CUDA_CHECK_LAUNCH();
}

/* x[m, k] /= divisors[k]; 0 where the divisor is 0. One element per thread. */
__global__ static void divide_columns_kernel(float *x, const float *divisors, int M, int K) {
    CUDA_GRID_STRIDE_LOOP(i, (long)M * K) {
        const float divisor = divisors[i % K];
        x[i] = divisor != 0.0f ? x[i] / divisor : 0.0f;
    }
}

void cuda_divide_columns(float *x, const float *divisors, int M, int K) {
    if ((long)M * K <= 0) return;
    CUDA_LAUNCH(cuda_grid_for((long)M * K), CUDA_BLOCK, 0, divide_columns_kernel)(x, divisors, M, K);
    CUDA_CHECK_LAUNCH();
}

/* One block per row of x[M, K]: the row's sum in double, then row /= sum
 * (left alone when the sum is 0). */
__global__ static void normalize_rows_kernel(float *x, int K) {
    float *row = x + (long)blockIdx.x * K;
    double sum = 0.0;
    for (int k = threadIdx.x; k < K; k += blockDim.x) sum += row[k];
    sum = block_sum_double(sum);
    if (sum == 0.0) return;
    const float total = (float)sum;
    for (int k = threadIdx.x; k < K; k += blockDim.x) row[k] /= total;
}

void cuda_normalize_rows(float *x, int M, int K) {
    if (M <= 0 || K <= 0) return;
    CUDA_LAUNCH((unsigned)M, CUDA_BLOCK, 0, normalize_rows_kernel)(x, K);
    CUDA_CHECK_LAUNCH();
}

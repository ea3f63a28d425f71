/*
 * cuda_rows.cu - row-wise ops of the heads on the GPU (semantics: nn/backend.h,
 * oracle: nn/cpu/cpu_rows.c): L2 normalisation of rows and its backward,
 * picking rows out of a token tensor and scattering their gradients back.
 *
 * Row norms and dot products add in double within a warp, as the CPU sums
 * in double. gather_rows_backward is deterministic without atomics: one
 * thread per column walks the rows in order (rows may repeat), which is
 * also the CPU's order of additions, so the result is bit-identical.
 */
#include "nn/cuda/cuda_common.cuh"

/* One warp per row: norm[n] = ||inp[n]||; out[n] = inp[n] / max(norm, eps).
 * inp[N, C], out[N, C] (may be NULL), norm[N]. */
__global__ static void l2norm_forward_kernel(float *out, float *norm, const float *inp, int N, int C,
                                             float eps) {
    const long n = (long)blockIdx.x * (blockDim.x / CUDA_WARP) + threadIdx.x / CUDA_WARP;
    const int lane = threadIdx.x % CUDA_WARP;
    if (n >= N) return;
    const float *x = inp + n * C;
    double sum = 0.0;
    for (int c = lane; c < C; c += CUDA_WARP) sum += (double)x[c] * x[c];
    const float length = (float)sqrt(warp_sum_double(sum));
    if (lane == 0) norm[n] = length;
    if (!out) return;
    const float inverse = 1.0f / fmaxf(length, eps);
    float *y = out + n * C;
    for (int c = lane; c < C; c += CUDA_WARP) y[c] = x[c] * inverse;
}

void cuda_l2norm_forward(float *out, float *norm, const float *inp, int N, int C, float eps) {
    if (N <= 0) return;
    CUDA_LAUNCH(cuda_grid_for_rows(N), CUDA_BLOCK, 0, l2norm_forward_kernel)(out, norm, inp, N, C, eps);
    CUDA_CHECK_LAUNCH();
}

/* One warp per row: dinp[n] += (dout - y (y . dout)) / norm, y = inp / norm,
 * or dout / eps where the norm was clamped. dinp, dout, inp [N, C]; norm[N]. */
__global__ static void l2norm_backward_kernel(float *dinp, const float *dout, const float *inp,
                                              const float *norm, int N, int C, float eps) {
    const long n = (long)blockIdx.x * (blockDim.x / CUDA_WARP) + threadIdx.x / CUDA_WARP;
    const int lane = threadIdx.x % CUDA_WARP;
    if (n >= N) return;
    const float *x = inp + n * C, *dy = dout + n * C;
    float *dx = dinp + n * C;
    if (norm[n] <= eps) {   /* clamped: out = inp / eps, a constant scale */
        const float inverse = 1.0f / eps;
        for (int c = lane; c < C; c += CUDA_WARP) dx[c] += dy[c] * inverse;
        return;
    }
    const float inverse = 1.0f / norm[n];
    double dot = 0.0;
    for (int c = lane; c < C; c += CUDA_WARP) dot += (double)x[c] * dy[c];
    const float projection = (float)warp_sum_double(dot) * inverse;
    for (int c = lane; c < C; c += CUDA_WARP) dx[c] += (dy[c] - x[c] * inverse * projection) * inverse;
}

void cuda_l2norm_backward(float *dinp, const float *dout, const float *inp, const float *norm,
                          int N, int C, float eps) {
    if (N <= 0) return;
    CUDA_LAUNCH(cuda_grid_for_rows(N), CUDA_BLOCK, 0, l2norm_backward_kernel)(dinp, dout, inp, norm, N, C, eps);
    CUDA_CHECK_LAUNCH();
}

/* out[n, c] = inp[rows[n], c]; one element per thread. out[N, C], rows[N]. */
__global__ static void gather_rows_kernel(float *out, const float *inp, const int32_t *rows, int N, int C) {
    CUDA_GRID_STRIDE_LOOP(i, (long)N * C) {
        const long n = i / C, c = i % C;
        out[i] = inp[(long)rows[n] * C + c];
    }
}

void cuda_gather_rows(float *out, const float *inp, const int32_t *rows, int N, int C) {
    if ((long)N * C <= 0) return;
    CUDA_LAUNCH(cuda_grid_for((long)N * C), CUDA_BLOCK, 0, gather_rows_kernel)(out, inp, rows, N, C);
    CUDA_CHECK_LAUNCH();
}

/* dinp[rows[n], c] += dout[n, c]: thread c adds the rows in order n = 0..N-1. */
__global__ static void gather_rows_backward_kernel(float *dinp, const float *dout, const int32_t *rows,
                                                   int N, int C) {
    const int c = blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= C) return;
    for (int n = 0; n < N; n++) dinp[(long)rows[n] * C + c] += dout[(long)n * C + c];
}

void cuda_gather_rows_backward(float *dinp, const float *dout, const int32_t *rows, int N, int C) {
    if (N <= 0 || C <= 0) return;
    CUDA_LAUNCH((unsigned)((C + CUDA_BLOCK - 1) / CUDA_BLOCK), CUDA_BLOCK, 0, gather_rows_backward_kernel)(
        dinp, dout, rows, N, C);
    CUDA_CHECK_LAUNCH();
}

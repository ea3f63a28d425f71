/*
 * cuda_norm.cu - LayerNorm over the last dimension for the CUDA backend.
 *
 * Forward: one warp per row; two passes over the row (mean, then the biased
 * variance of x - mean) as PyTorch does, rstd = 1 / sqrt(var + eps).
 * Backward: one warp per row for dinp; dweight and dbias are column sums
 * (deterministic, cuda_common.cuh) that recompute xhat from mean and rstd.
 */
#include "nn/cuda/cuda_common.cuh"

/* out[N, C] = (inp - mean) * rstd * weight[C] + bias[C]; mean[N], rstd[N]
 * saved (either may be NULL when no backward follows). */
__global__ static void layernorm_forward_kernel(float *out, float *mean, float *rstd,
                                                const float *inp, const float *weight,
                                                const float *bias, int N, int C, float eps) {
    int lane = threadIdx.x % CUDA_WARP;
    long row = (long)blockIdx.x * (blockDim.x / CUDA_WARP) + threadIdx.x / CUDA_WARP;
    if (row >= N) return;
    const float *x = inp + row * C;
    float sum = 0.0f;
    for (int i = lane; i < C; i += CUDA_WARP) sum += x[i];
    float m = warp_sum(sum) / C;
    float sq = 0.0f;
    for (int i = lane; i < C; i += CUDA_WARP) {
        float d = x[i] - m;
        sq += d * d;
    }
    float var = warp_sum(sq) / C;
    float s = 1.0f / sqrtf(var + eps);
    float *y = out + row * C;
    for (int i = lane; i < C; i += CUDA_WARP) y[i] = (x[i] - m) * s * weight[i] + bias[i];
    if (lane == 0) {
        if (mean) mean[row] = m;
        if (rstd) rstd[row] = s;
    }
}

void cuda_layernorm_forward(float *out, float *mean, float *rstd, const float *inp,
                            const float *weight, const float *bias, int N, int C, float eps) {
    if (N <= 0 || C <= 0) return;
    layernorm_forward_kernel<<<cuda_grid_for_rows(N), CUDA_BLOCK>>>(out, mean, rstd, inp, weight,
                                                                    bias, N, C, eps);
    CUDA_CHECK_LAUNCH();
}

/* dinp[N, C] += rstd * (g - mean(g) - xhat * mean(g * xhat)), g = dout * weight,
 * xhat = (inp - mean) * rstd; means over the row. */
__global__ static void layernorm_backward_dinp_kernel(float *dinp, const float *dout,
                                                      const float *inp, const float *weight,
                                                      const float *mean, const float *rstd,
                                                      int N, int C) {
    int lane = threadIdx.x % CUDA_WARP;
    long row = (long)blockIdx.x * (blockDim.x / CUDA_WARP) + threadIdx.x / CUDA_WARP;
    if (row >= N) return;
    const float *x = inp + row * C;
    const float *dy = dout + row * C;
    float m = mean[row], s = rstd[row];
    float g_sum = 0.0f, gx_sum = 0.0f;
    for (int i = lane; i < C; i += CUDA_WARP) {
        float g = dy[i] * weight[i];
        g_sum += g;
        gx_sum += g * (x[i] - m) * s;
    }
    float g_mean = warp_sum(g_sum) / C;
    float gx_mean = warp_sum(gx_sum) / C;
    float *dx = dinp + row * C;
    for (int i = lane; i < C; i += CUDA_WARP) {
        float xhat = (x[i] - m) * s;
        dx[i] += s * (dy[i] * weight[i] - g_mean - xhat * gx_mean);
    }
}

/* value(r, c) = dout[r, c] * xhat[r, c]: the column sums are dweight. */
struct DoutTimesXhat {
    const float *dout, *inp, *mean, *rstd;
    int C;
    __device__ float operator()(long r, int c) const {
        return dout[r * C + c] * (inp[r * C + c] - mean[r]) * rstd[r];
    }
};
/* value(r, c) = dout[r, c]: the column sums are dbias. */
struct DoutValue {
    const float *dout;
    int C;
    __device__ float operator()(long r, int c) const { return dout[r * C + c]; }
};

/* dinp[N, C], dweight[C], dbias[C] accumulate; each may be NULL. */
void cuda_layernorm_backward(float *dinp, float *dweight, float *dbias, const float *dout,
                             const float *inp, const float *weight, const float *mean,
                             const float *rstd, int N, int C) {
    if (N <= 0 || C <= 0) return;
    if (dinp) {
        layernorm_backward_dinp_kernel<<<cuda_grid_for_rows(N), CUDA_BLOCK>>>(dinp, dout, inp, weight,
                                                                              mean, rstd, N, C);
        CUDA_CHECK_LAUNCH();
    }
    DoutTimesXhat w_value = {dout, inp, mean, rstd, C};
    column_sum(dweight, N, C, w_value);
    DoutValue b_value = {dout, C};
    column_sum(dbias, N, C, b_value);
}

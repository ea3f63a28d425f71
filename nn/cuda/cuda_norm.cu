/*
 * cuda_norm.cu - LayerNorm over the last dimension for the CUDA backend.
 *
 * Forward: one warp per row; two passes over the row (mean, then the biased
 * variance of x - mean) as PyTorch does, rstd = 1 / sqrt(var + eps).
 * Backward: one warp per row for dinp; dweight and dbias are column sums
 * (deterministic, cuda_common.cuh) that recompute xhat from mean and rstd.
 *
 * The input, the statistics and every parameter gradient are fp32 in both
 * variants; the kernels are templated on the element type of out (forward)
 * and dout (backward): fp32 for layernorm_forward / _backward, bf16 for the
 * _bf16 entries (a ViT block with bf16 storage reads the fp32 residual and
 * writes a bf16 normalised row; its gradient comes back in bf16).
 */
#include "nn/cuda/cuda_common.cuh"

/* out[N, C] = (inp - mean) * rstd * weight[C] + bias[C]; mean[N], rstd[N]
 * saved (either may be NULL when no backward follows). out of element type
 * Out, everything else fp32. */
template <typename Out>
__global__ static void layernorm_forward_kernel(Out *out, float *mean, float *rstd, const float *inp,
                                                const float *weight, const float *bias, int N, int C,
                                                float eps) {
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
    Out *y = out + row * C;
    for (int i = lane; i < C; i += CUDA_WARP) y[i] = from_float<Out>((x[i] - m) * s * weight[i] + bias[i]);
    if (lane == 0) {
        if (mean) mean[row] = m;
        if (rstd) rstd[row] = s;
    }
}

template <typename Out>
static void layernorm_forward(Out *out, float *mean, float *rstd, const float *inp, const float *weight,
                              const float *bias, int N, int C, float eps) {
    if (N <= 0 || C <= 0) return;
    CUDA_LAUNCH(cuda_grid_for_rows(N), CUDA_BLOCK, 0, layernorm_forward_kernel)(out, mean, rstd, inp, weight, bias,
                                                                    N, C, eps);
    CUDA_CHECK_LAUNCH();
}

/* dinp[N, C] += rstd * (g - mean(g) - xhat * mean(g * xhat)), g = dout * weight,
 * xhat = (inp - mean) * rstd; means over the row. dout of element type G,
 * everything else fp32. */
template <typename G>
__global__ static void layernorm_backward_dinp_kernel(float *dinp, const G *dout, const float *inp,
                                                      const float *weight, const float *mean,
                                                      const float *rstd, int N, int C) {
    int lane = threadIdx.x % CUDA_WARP;
    long row = (long)blockIdx.x * (blockDim.x / CUDA_WARP) + threadIdx.x / CUDA_WARP;
    if (row >= N) return;
    const float *x = inp + row * C;
    const G *dy = dout + row * C;
    float m = mean[row], s = rstd[row];
    float g_sum = 0.0f, gx_sum = 0.0f;
    for (int i = lane; i < C; i += CUDA_WARP) {
        float g = to_float(dy[i]) * weight[i];
        g_sum += g;
        gx_sum += g * (x[i] - m) * s;
    }
    float g_mean = warp_sum(g_sum) / C;
    float gx_mean = warp_sum(gx_sum) / C;
    float *dx = dinp + row * C;
    for (int i = lane; i < C; i += CUDA_WARP) {
        float xhat = (x[i] - m) * s;
        dx[i] += s * (to_float(dy[i]) * weight[i] - g_mean - xhat * gx_mean);
    }
}

/* value(r, c) = dout[r, c] * xhat[r, c]: the column sums are dweight. */
template <typename G>
struct DoutTimesXhat {
    const G *dout;
    const float *inp, *mean, *rstd;
    int C;
    __device__ float operator()(long r, int c) const {
        return to_float(dout[r * C + c]) * (inp[r * C + c] - mean[r]) * rstd[r];
    }
};
/* value(r, c) = dout[r, c]: the column sums are dbias. */
template <typename G>
struct DoutValue {
    const G *dout;
    int C;
    __device__ float operator()(long r, int c) const { return to_float(dout[r * C + c]); }
};

/* dinp[N, C], dweight[C], dbias[C] accumulate; each may be NULL. */
template <typename G>
static void layernorm_backward(float *dinp, float *dweight, float *dbias, const G *dout, const float *inp,
                               const float *weight, const float *mean, const float *rstd, int N, int C) {
    if (N <= 0 || C <= 0) return;
    if (dinp) {
        CUDA_LAUNCH(cuda_grid_for_rows(N), CUDA_BLOCK, 0, layernorm_backward_dinp_kernel)(dinp, dout, inp, weight,
                                                                              mean, rstd, N, C);
        CUDA_CHECK_LAUNCH();
    }
    DoutTimesXhat<G> w_value = {dout, inp, mean, rstd, C};
    column_sum(dweight, N, C, w_value);
    DoutValue<G> b_value = {dout, C};
    column_sum(dbias, N, C, b_value);
}

void cuda_layernorm_forward(float *out, float *mean, float *rstd, const float *inp,
                            const float *weight, const float *bias, int N, int C, float eps) {
    layernorm_forward(out, mean, rstd, inp, weight, bias, N, C, eps);
}

void cuda_layernorm_backward(float *dinp, float *dweight, float *dbias, const float *dout,
                             const float *inp, const float *weight, const float *mean,
                             const float *rstd, int N, int C) {
    layernorm_backward(dinp, dweight, dbias, dout, inp, weight, mean, rstd, N, C);
}

/* out[N, C] bf16 from the fp32 residual inp[N, C]. */
void cuda_layernorm_forward_bf16(uint16_t *out, float *mean, float *rstd, const float *inp,
                                 const float *weight, const float *bias, int N, int C, float eps) {
    layernorm_forward(as_bf16(out), mean, rstd, inp, weight, bias, N, C, eps);
}

/* dinp[N, C] (fp32, the residual's gradient) += from dout[N, C] (bf16). */
void cuda_layernorm_backward_bf16(float *dinp, float *dweight, float *dbias, const uint16_t *dout,
                                  const float *inp, const float *weight, const float *mean,
                                  const float *rstd, int N, int C) {
    layernorm_backward(dinp, dweight, dbias, as_bf16(dout), inp, weight, mean, rstd, N, C);
}

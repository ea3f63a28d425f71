/*
 * cuda_attention.cu - multi-head softmax attention for the CUDA backend, on
 * cuBLAS strided-batched sgemm (fp32) plus warp-per-row softmax kernels.
 * This is the straightforward reference path: it materialises
 * probs[B, H, T, T] (the op API saves it for the backward); a fused
 * flash-attention kernel is later work.
 *
 * Layout: qkv[B, T, 3, H, Dh]; for image b and head h, q, k, v are T x Dh
 * row-major views with row stride L = 3 * H * Dh, starting at
 *   q = qkv + b*T*L + h*Dh,  k = q + H*Dh,  v = q + 2*H*Dh.
 * To column-major cuBLAS such a view is the Dh x T matrix (q^T) with
 * leading dimension L, and successive heads are Dh floats apart, so one
 * strided-batched call covers the H heads of one image (heads of different
 * images are not a constant stride apart: one call per image).
 * A row-major [T, T] matrix P is the column-major P^T with ld T.
 */
#include <math.h>

#include "nn/cuda/cuda_common.cuh"

/* In place on rows[rows, T]: each row becomes softmax(row). */
__global__ static void softmax_rows_kernel(float *rows_ptr, long rows, int T) {
    int lane = threadIdx.x % CUDA_WARP;
    long row = (long)blockIdx.x * (blockDim.x / CUDA_WARP) + threadIdx.x / CUDA_WARP;
    if (row >= rows) return;
    float *x = rows_ptr + row * T;
    float m = -INFINITY;
    for (int j = lane; j < T; j += CUDA_WARP) m = fmaxf(m, x[j]);
    m = warp_max(m);
    float sum = 0.0f;
    for (int j = lane; j < T; j += CUDA_WARP) {
        float e = expf(x[j] - m);
        x[j] = e;
        sum += e;
    }
    float inv = 1.0f / warp_sum(sum);
    for (int j = lane; j < T; j += CUDA_WARP) x[j] *= inv;
}

/* In place on dp[rows, T] (gradient w.r.t. probs), given probs[rows, T]:
 * dp <- scale * probs * (dp - sum_j probs * dp), the gradient w.r.t. the
 * unscaled scores q k^T (scale = 1/sqrt(Dh)). */
__global__ static void softmax_backward_rows_kernel(float *dp, const float *probs, long rows, int T,
                                                    float scale) {
    int lane = threadIdx.x % CUDA_WARP;
    long row = (long)blockIdx.x * (blockDim.x / CUDA_WARP) + threadIdx.x / CUDA_WARP;
    if (row >= rows) return;
    float *g = dp + row * T;
    const float *p = probs + row * T;
    float dot = 0.0f;
    for (int j = lane; j < T; j += CUDA_WARP) dot += p[j] * g[j];
    dot = warp_sum(dot);
    for (int j = lane; j < T; j += CUDA_WARP) g[j] = scale * p[j] * (g[j] - dot);
}

/* out[B, T, H, Dh] = softmax(q k^T / sqrt(Dh)) v; probs[B, H, T, T] saved. */
void cuda_attention_forward(float *out, float *probs, const float *qkv, int B, int T, int H, int Dh) {
    if (B <= 0 || T <= 0 || H <= 0 || Dh <= 0) return;
    cublasHandle_t handle = cuda_cublas_handle();
    const long L = 3L * H * Dh;  /* row stride of q, k, v */
    const long HD = (long)H * Dh; /* row stride of out */
    const long TT = (long)T * T;
    const float scale = 1.0f / sqrtf((float)Dh), one = 1.0f, zero = 0.0f;
    for (int b = 0; b < B; b++) {
        const float *q = qkv + (long)b * T * L;
        const float *k = q + HD;
        float *p = probs + (long)b * H * TT;
        /* scores[i, j] = scale * q_i . k_j: as column-major S^T (T x T)
         * = (k^T)^T (T x Dh) * q^T (Dh x T), for each head. */
        CUBLAS_CHECK(cublasSgemmStridedBatched(handle, CUBLAS_OP_T, CUBLAS_OP_N, T, T, Dh, &scale,
                                               k, (int)L, Dh, q, (int)L, Dh, &zero, p, T, TT, H));
    }
    long rows = (long)B * H * T;
    softmax_rows_kernel<<<cuda_grid_for_rows(rows), CUDA_BLOCK>>>(probs, rows, T);
    CUDA_CHECK_LAUNCH();
    for (int b = 0; b < B; b++) {
        const float *v = qkv + (long)b * T * L + 2 * HD;
        const float *p = probs + (long)b * H * TT;
        float *o = out + (long)b * T * HD;
        /* out_i = sum_j P[i, j] v_j: out^T (Dh x T) = v^T (Dh x T) * P^T (T x T). */
        CUBLAS_CHECK(cublasSgemmStridedBatched(handle, CUBLAS_OP_N, CUBLAS_OP_N, Dh, T, T, &one,
                                               v, (int)L, Dh, p, T, TT, &zero, o, (int)HD, Dh, H));
    }
}

/* dqkv[B, T, 3, H, Dh] += gradients of q, k, v from dout[B, T, H, Dh], with
 * probs[B, H, T, T] from the forward. Per image, in scratch dS[H, T, T]:
 *   dP = dout v^T;  dS = scale * P * (dP - rowsum(P * dP));
 *   dq += dS k;  dk += dS^T q;  dv += P^T dout   (beta = 1: accumulate). */
void cuda_attention_backward(float *dqkv, const float *dout, const float *qkv, const float *probs,
                             int B, int T, int H, int Dh) {
    if (B <= 0 || T <= 0 || H <= 0 || Dh <= 0 || dqkv == NULL) return;
    cublasHandle_t handle = cuda_cublas_handle();
    const long L = 3L * H * Dh;
    const long HD = (long)H * Dh;
    const long TT = (long)T * T;
    const float scale = 1.0f / sqrtf((float)Dh), one = 1.0f, zero = 0.0f;
    float *ds = (float *)cuda_scratch((size_t)H * TT * sizeof(float));
    for (int b = 0; b < B; b++) {
        const float *q = qkv + (long)b * T * L;
        const float *k = q + HD;
        const float *v = q + 2 * HD;
        float *dq = dqkv + (long)b * T * L;
        float *dk = dq + HD;
        float *dv = dq + 2 * HD;
        const float *p = probs + (long)b * H * TT;
        const float *dout_b = dout + (long)b * T * HD;
        /* dP[i, j] = dout_i . v_j: dP^T (T x T) = (v^T)^T (T x Dh) * dout^T (Dh x T). */
        CUBLAS_CHECK(cublasSgemmStridedBatched(handle, CUBLAS_OP_T, CUBLAS_OP_N, T, T, Dh, &one,
                                               v, (int)L, Dh, dout_b, (int)HD, Dh, &zero, ds, T, TT, H));
        long rows = (long)H * T;
        softmax_backward_rows_kernel<<<cuda_grid_for_rows(rows), CUDA_BLOCK>>>(ds, p, rows, T, scale);
        CUDA_CHECK_LAUNCH();
        /* dq_i += sum_j dS[i, j] k_j: dq^T (Dh x T) += k^T (Dh x T) * dS^T (T x T). */
        CUBLAS_CHECK(cublasSgemmStridedBatched(handle, CUBLAS_OP_N, CUBLAS_OP_N, Dh, T, T, &one,
                                               k, (int)L, Dh, ds, T, TT, &one, dq, (int)L, Dh, H));
        /* dk_j += sum_i dS[i, j] q_i: dk^T (Dh x T) += q^T (Dh x T) * dS (T x T). */
        CUBLAS_CHECK(cublasSgemmStridedBatched(handle, CUBLAS_OP_N, CUBLAS_OP_T, Dh, T, T, &one,
                                               q, (int)L, Dh, ds, T, TT, &one, dk, (int)L, Dh, H));
        /* dv_j += sum_i P[i, j] dout_i: dv^T (Dh x T) += dout^T (Dh x T) * P (T x T). */
        CUBLAS_CHECK(cublasSgemmStridedBatched(handle, CUBLAS_OP_N, CUBLAS_OP_T, Dh, T, T, &one,
                                               dout_b, (int)HD, Dh, p, T, TT, &one, dv, (int)L, Dh, H));
    }
}

/*
 * cuda_pointwise.cu - the elementwise and gather/scatter ops of the CUDA
 * backend: patchify, tokens (cls, registers, iBOT mask token), exact GELU,
 * SwiGLU, LayerScale + residual, and the fp32 -> bf16 cast of the
 * parameters. (2-D RoPE is applied inside attention: cuda_attention.cu.)
 *
 * One thread per element in a grid-stride loop; the few reductions (token
 * and LayerScale gradients) use the deterministic column_sum of
 * cuda_common.cuh. Every gradient pointer may be NULL (not needed).
 *
 * GELU, SwiGLU and LayerScale are templated on the element type of the
 * tensors that a ViT block with bf16 storage keeps in bf16 (backend.h):
 * fp32 for the plain entries, bf16 for the _bf16 ones (read widened,
 * computed in fp32, written or accumulated with one rounding).
 */
#include "nn/cuda/cuda_common.cuh"

/* ---- patchify ------------------------------------------------------------ */

/* patches[B, Hp*Wp, C*P*P] from images[B, C, H, W]; row order (c, y, x). */
__global__ static void patchify_kernel(float *patches, const float *images, int B, int C, int H,
                                       int W, int P, int Hp, int Wp) {
    long row_len = (long)C * P * P;
    long np = (long)Hp * Wp;
    long n = (long)B * np * row_len;
    CUDA_GRID_STRIDE_LOOP(i, n) {
        long col = i % row_len;
        long p = (i / row_len) % np;
        long b = i / (row_len * np);
        int c = (int)(col / ((long)P * P));
        int y = (int)((col / P) % P);
        int x = (int)(col % P);
        int py = (int)(p / Wp), px = (int)(p % Wp);
        patches[i] = images[(((long)b * C + c) * H + (long)py * P + y) * W + (long)px * P + x];
    }
}

void cuda_patchify(float *patches, const float *images, int B, int C, int H, int W, int P) {
    int Hp = H / P, Wp = W / P;
    long n = (long)B * Hp * Wp * C * P * P;
    if (n <= 0) return;
    CUDA_LAUNCH(cuda_grid_for(n), CUDA_BLOCK, 0, patchify_kernel)(patches, images, B, C, H, W, P, Hp, Wp);
    CUDA_CHECK_LAUNCH();
}

/* ---- tokens ---------------------------------------------------------------- */

/* tokens[B, T, D], T = 1 + R + Np: [cls, reg_0..reg_{R-1}, patch_0..]; masked
 * patch rows take mask_token. */
__global__ static void tokens_forward_kernel(float *tokens, const float *patch_emb,
                                             const float *cls, const float *reg,
                                             const float *mask_token, const uint8_t *mask,
                                             int B, int Np, int R, int D) {
    long T = 1 + (long)R + Np;
    long n = (long)B * T * D;
    CUDA_GRID_STRIDE_LOOP(i, n) {
        int d = (int)(i % D);
        long t = (i / D) % T;
        long b = i / (T * D);
        float value;
        if (t == 0) {
            value = cls[d];
        } else if (t <= R) {
            value = reg[(t - 1) * D + d];
        } else {
            long p = t - 1 - R;
            if (mask && mask[b * Np + p])
                value = mask_token[d];
            else
                value = patch_emb[(b * Np + p) * D + d];
        }
        tokens[i] = value;
    }
}

void cuda_tokens_forward(float *tokens, const float *patch_emb, const float *cls, const float *reg,
                         const float *mask_token, const uint8_t *mask, int B, int Np, int R, int D) {
    long n = (long)B * (1 + R + Np) * D;
    if (n <= 0) return;
    CUDA_LAUNCH(cuda_grid_for(n), CUDA_BLOCK, 0, tokens_forward_kernel)(tokens, patch_emb, cls, reg, mask_token,
                                                            mask, B, Np, R, D);
    CUDA_CHECK_LAUNCH();
}

/* dpatch_emb[B, Np, D] += dtokens of the unmasked patch rows. */
__global__ static void tokens_backward_patches_kernel(float *dpatch_emb, const float *dtokens,
                                                      const uint8_t *mask, int B, int Np, int R,
                                                      int D) {
    long T = 1 + (long)R + Np;
    long n = (long)B * Np * D;
    CUDA_GRID_STRIDE_LOOP(i, n) {
        int d = (int)(i % D);
        long bp = i / D; /* b * Np + p */
        if (mask && mask[bp]) continue;
        long b = bp / Np, p = bp % Np;
        dpatch_emb[i] += dtokens[(b * T + 1 + R + p) * D + d];
    }
}

/* value(b, j) = dtokens[b, 0, j] over the (1 + R) * D prefix values of image b. */
struct PrefixValue {
    const float *dtokens;
    long image_stride; /* T * D */
    int offset;        /* 0 for cls, D for the registers */
    __device__ float operator()(long b, int j) const { return dtokens[b * image_stride + offset + j]; }
};

/* value(b*Np + p, d) = dtokens[b, 1 + R + p, d] where mask[b, p], else 0. */
struct MaskedPatchValue {
    const float *dtokens;
    const uint8_t *mask;
    int Np, R, D;
    __device__ float operator()(long bp, int d) const {
        if (!mask[bp]) return 0.0f;
        long b = bp / Np, p = bp % Np;
        long T = 1 + (long)R + Np;
        return dtokens[(b * T + 1 + R + p) * D + d];
    }
};

/* dpatch_emb[B, Np, D] (unmasked rows), dcls[D], dreg[R, D], dmask_token[D]
 * (masked rows), all accumulated, from dtokens[B, T, D]. */
void cuda_tokens_backward(float *dpatch_emb, float *dcls, float *dreg, float *dmask_token,
                          const float *dtokens, const uint8_t *mask, int B, int Np, int R, int D) {
    if (B <= 0 || D <= 0) return;
    long T = 1 + (long)R + Np;
    long n = (long)B * Np * D;
    if (dpatch_emb && n > 0) {
        CUDA_LAUNCH(cuda_grid_for(n), CUDA_BLOCK, 0, tokens_backward_patches_kernel)(dpatch_emb, dtokens, mask,
                                                                         B, Np, R, D);
        CUDA_CHECK_LAUNCH();
    }
    PrefixValue cls_value = {dtokens, T * D, 0};
    column_sum(dcls, B, D, cls_value);
    if (R > 0) {
        PrefixValue reg_value = {dtokens, T * D, D};
        column_sum(dreg, B, R * D, reg_value);
    }
    if (mask && dmask_token) {
        MaskedPatchValue mask_value = {dtokens, mask, Np, R, D};
        column_sum(dmask_token, (long)B * Np, D, mask_value);
    }
}

/* ---- GELU (exact, erf form) ------------------------------------------------ */

#define DD_INV_SQRT2 0.70710678118654752440f
#define DD_INV_SQRT_2PI 0.39894228040143267794f

/* out[n] = 0.5 x (1 + erf(x / sqrt 2)); out may be inp (in place). E: the
 * element type of out and inp. */
template <typename E>
__global__ static void gelu_forward_kernel(E *out, const E *inp, long n) {
    CUDA_GRID_STRIDE_LOOP(i, n) {
        float x = to_float(inp[i]);
        out[i] = from_float<E>(0.5f * x * (1.0f + erff(x * DD_INV_SQRT2)));
    }
}

/* dinp[n] += dout * (Phi(x) + x phi(x)). E: the element type of all three. */
template <typename E>
__global__ static void gelu_backward_kernel(E *dinp, const E *dout, const E *inp, long n) {
    CUDA_GRID_STRIDE_LOOP(i, n) {
        float x = to_float(inp[i]);
        float cdf = 0.5f * (1.0f + erff(x * DD_INV_SQRT2));
        float pdf = DD_INV_SQRT_2PI * expf(-0.5f * x * x);
        accumulate(&dinp[i], to_float(dout[i]) * (cdf + x * pdf));
    }
}

template <typename E>
static void gelu_forward(E *out, const E *inp, long n) {
    if (n <= 0) return;
    CUDA_LAUNCH(cuda_grid_for(n), CUDA_BLOCK, 0, gelu_forward_kernel)(out, inp, n);
    CUDA_CHECK_LAUNCH();
}

template <typename E>
static void gelu_backward(E *dinp, const E *dout, const E *inp, long n) {
    if (n <= 0 || dinp == NULL) return;
    CUDA_LAUNCH(cuda_grid_for(n), CUDA_BLOCK, 0, gelu_backward_kernel)(dinp, dout, inp, n);
    CUDA_CHECK_LAUNCH();
}

void cuda_gelu_forward(float *out, const float *inp, long n) { gelu_forward(out, inp, n); }
void cuda_gelu_backward(float *dinp, const float *dout, const float *inp, long n) {
    gelu_backward(dinp, dout, inp, n);
}
void cuda_gelu_forward_bf16(uint16_t *out, const uint16_t *inp, long n) {
    gelu_forward(as_bf16(out), as_bf16(inp), n);
}
void cuda_gelu_backward_bf16(uint16_t *dinp, const uint16_t *dout, const uint16_t *inp, long n) {
    gelu_backward(as_bf16(dinp), as_bf16(dout), as_bf16(inp), n);
}

/* ---- SwiGLU ------------------------------------------------------------------ */

/* out[N, F] = silu(g) * u with g = inp[N, 0:F] (gate), u = inp[N, F:2F] (up).
 * E: the element type of out and inp. */
template <typename E>
__global__ static void swiglu_forward_kernel(E *out, const E *inp, int N, int F) {
    long n = (long)N * F;
    CUDA_GRID_STRIDE_LOOP(i, n) {
        long r = i / F;
        int f = (int)(i % F);
        float g = to_float(inp[r * 2 * F + f]);
        float u = to_float(inp[r * 2 * F + F + f]);
        out[i] = from_float<E>(g / (1.0f + expf(-g)) * u);
    }
}

/* dinp[N, 2F] += d/d(g, u): dg = dout u sig(g) (1 + g (1 - sig(g))), du = dout silu(g).
 * E: the element type of all three. */
template <typename E>
__global__ static void swiglu_backward_kernel(E *dinp, const E *dout, const E *inp, int N, int F) {
    long n = (long)N * F;
    CUDA_GRID_STRIDE_LOOP(i, n) {
        long r = i / F;
        int f = (int)(i % F);
        float g = to_float(inp[r * 2 * F + f]);
        float u = to_float(inp[r * 2 * F + F + f]);
        float sig = 1.0f / (1.0f + expf(-g));
        float dy = to_float(dout[i]);
        accumulate(&dinp[r * 2 * F + f], dy * u * sig * (1.0f + g * (1.0f - sig)));
        accumulate(&dinp[r * 2 * F + F + f], dy * g * sig);
    }
}

template <typename E>
static void swiglu_forward(E *out, const E *inp, int N, int F) {
    long n = (long)N * F;
    if (n <= 0) return;
    CUDA_LAUNCH(cuda_grid_for(n), CUDA_BLOCK, 0, swiglu_forward_kernel)(out, inp, N, F);
    CUDA_CHECK_LAUNCH();
}

template <typename E>
static void swiglu_backward(E *dinp, const E *dout, const E *inp, int N, int F) {
    long n = (long)N * F;
    if (n <= 0 || dinp == NULL) return;
    CUDA_LAUNCH(cuda_grid_for(n), CUDA_BLOCK, 0, swiglu_backward_kernel)(dinp, dout, inp, N, F);
    CUDA_CHECK_LAUNCH();
}

void cuda_swiglu_forward(float *out, const float *inp, int N, int F) { swiglu_forward(out, inp, N, F); }
void cuda_swiglu_backward(float *dinp, const float *dout, const float *inp, int N, int F) {
    swiglu_backward(dinp, dout, inp, N, F);
}
void cuda_swiglu_forward_bf16(uint16_t *out, const uint16_t *inp, int N, int F) {
    swiglu_forward(as_bf16(out), as_bf16(inp), N, F);
}
void cuda_swiglu_backward_bf16(uint16_t *dinp, const uint16_t *dout, const uint16_t *inp, int N, int F) {
    swiglu_backward(as_bf16(dinp), as_bf16(dout), as_bf16(inp), N, F);
}

/* ---- LayerScale + residual ------------------------------------------------ */

/* out[N, C] = res + gamma[C] * y; out may be res (in-place residual). y of
 * element type Y, the rest fp32. */
template <typename Y>
__global__ static void layerscale_residual_forward_kernel(float *out, const float *res, const Y *y,
                                                          const float *gamma, long N, int C) {
    CUDA_GRID_STRIDE_LOOP(i, N * C) { out[i] = res[i] + gamma[i % C] * to_float(y[i]); }
}

/* dres += dout; dy += dout * gamma (either may be NULL). dy of element type
 * Y, the rest fp32. */
template <typename Y>
__global__ static void layerscale_residual_backward_kernel(float *dres, Y *dy, const float *dout,
                                                           const float *gamma, long N, int C) {
    CUDA_GRID_STRIDE_LOOP(i, N * C) {
        float g = dout[i];
        if (dres) dres[i] += g;
        if (dy) accumulate(&dy[i], g * gamma[i % C]);
    }
}

/* value(r, c) = dout[r, c] * y[r, c]: the column sums are dgamma. dout
 * fp32, y of element type Y. */
template <typename Y>
struct ProductValue {
    const float *a;
    const Y *b;
    int cols;
    __device__ float operator()(long r, int c) const { return a[r * cols + c] * to_float(b[r * cols + c]); }
};

template <typename Y>
static void layerscale_residual_forward(float *out, const float *res, const Y *y, const float *gamma, int N,
                                        int C) {
    long n = (long)N * C;
    if (n <= 0) return;
    CUDA_LAUNCH(cuda_grid_for(n), CUDA_BLOCK, 0, layerscale_residual_forward_kernel)(out, res, y, gamma, N, C);
    CUDA_CHECK_LAUNCH();
}

template <typename Y>
static void layerscale_residual_backward(float *dres, Y *dy, float *dgamma, const float *dout, const Y *y,
                                         const float *gamma, int N, int C) {
    long n = (long)N * C;
    if (n <= 0) return;
    ProductValue<Y> value = {dout, y, C};
    column_sum(dgamma, N, C, value);
    if (dres || dy) {
        CUDA_LAUNCH(cuda_grid_for(n), CUDA_BLOCK, 0, layerscale_residual_backward_kernel)(dres, dy, dout, gamma, N, C);
        CUDA_CHECK_LAUNCH();
    }
}

void cuda_layerscale_residual_forward(float *out, const float *res, const float *y,
                                      const float *gamma, int N, int C) {
    layerscale_residual_forward(out, res, y, gamma, N, C);
}
void cuda_layerscale_residual_backward(float *dres, float *dy, float *dgamma, const float *dout,
                                       const float *y, const float *gamma, int N, int C) {
    layerscale_residual_backward(dres, dy, dgamma, dout, y, gamma, N, C);
}
void cuda_layerscale_residual_forward_bf16(float *out, const float *res, const uint16_t *y,
                                           const float *gamma, int N, int C) {
    layerscale_residual_forward(out, res, as_bf16(y), gamma, N, C);
}
void cuda_layerscale_residual_backward_bf16(float *dres, uint16_t *dy, float *dgamma, const float *dout,
                                            const uint16_t *y, const float *gamma, int N, int C) {
    layerscale_residual_backward(dres, as_bf16(dy), dgamma, dout, as_bf16(y), gamma, N, C);
}

/* ---- fp32 -> bf16 ------------------------------------------------------------ */

/* out[n] = bf16(inp[n]) with the CPU's bits (bf16_bits_of: nearest even, a
 * NaN kept quiet with its payload). VECTOR (inp 16-byte and out 8-byte
 * aligned): four values per step, one float4 load and one 8-byte store, the
 * last n % 4 values by the first threads of the grid. */
template <bool VECTOR>
__global__ static void cast_to_bf16_kernel(uint16_t *out, const float *inp, long n) {
    if (!VECTOR) {
        CUDA_GRID_STRIDE_LOOP(i, n) { out[i] = bf16_bits_of(inp[i]); }
        return;
    }
    const long n4 = n / 4;
    CUDA_GRID_STRIDE_LOOP(i, n4) {
        const float4 v = reinterpret_cast<const float4 *>(inp)[i];
        reinterpret_cast<ushort4 *>(out)[i] =
            make_ushort4(bf16_bits_of(v.x), bf16_bits_of(v.y), bf16_bits_of(v.z), bf16_bits_of(v.w));
    }
    const long tail = (long)blockIdx.x * blockDim.x + threadIdx.x + 4 * n4;
    if (tail < n) out[tail] = bf16_bits_of(inp[tail]);
}

/* out[n] = bf16(inp[n]) (a whole parameter buffer: n may exceed 2^31). */
void cuda_cast_to_bf16(uint16_t *out, const float *inp, long n) {
    if (n <= 0) return;
    if ((uintptr_t)inp % 16 == 0 && (uintptr_t)out % 8 == 0) {
        CUDA_LAUNCH(cuda_grid_for(n / 4 + 1), CUDA_BLOCK, 0, cast_to_bf16_kernel<true>)(out, inp, n);
    } else {
        CUDA_LAUNCH(cuda_grid_for(n), CUDA_BLOCK, 0, cast_to_bf16_kernel<false>)(out, inp, n);
    }
    CUDA_CHECK_LAUNCH();
}

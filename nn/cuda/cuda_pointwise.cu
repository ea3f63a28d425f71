/*
 * cuda_pointwise.cu - the elementwise and gather/scatter ops of the CUDA
 * backend: patchify, tokens (cls, registers, iBOT mask token), exact GELU,
 * SwiGLU, LayerScale + residual. (2-D RoPE is applied inside attention:
 * cuda_attention.cu.)
 *
 * One thread per element in a grid-stride loop; the few reductions (token
 * and LayerScale gradients) use the deterministic column_sum of
 * cuda_common.cuh. Every gradient pointer may be NULL (not needed).
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
    patchify_kernel<<<cuda_grid_for(n), CUDA_BLOCK>>>(patches, images, B, C, H, W, P, Hp, Wp);
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
    tokens_forward_kernel<<<cuda_grid_for(n), CUDA_BLOCK>>>(tokens, patch_emb, cls, reg, mask_token,
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
        tokens_backward_patches_kernel<<<cuda_grid_for(n), CUDA_BLOCK>>>(dpatch_emb, dtokens, mask,
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

/* out[n] = 0.5 x (1 + erf(x / sqrt 2)); out may be inp (in place). */
__global__ static void gelu_forward_kernel(float *out, const float *inp, long n) {
    CUDA_GRID_STRIDE_LOOP(i, n) {
        float x = inp[i];
        out[i] = 0.5f * x * (1.0f + erff(x * DD_INV_SQRT2));
    }
}

/* dinp[n] += dout * (Phi(x) + x phi(x)). */
__global__ static void gelu_backward_kernel(float *dinp, const float *dout, const float *inp, long n) {
    CUDA_GRID_STRIDE_LOOP(i, n) {
        float x = inp[i];
        float cdf = 0.5f * (1.0f + erff(x * DD_INV_SQRT2));
        float pdf = DD_INV_SQRT_2PI * expf(-0.5f * x * x);
        dinp[i] += dout[i] * (cdf + x * pdf);
    }
}

void cuda_gelu_forward(float *out, const float *inp, long n) {
    if (n <= 0) return;
    gelu_forward_kernel<<<cuda_grid_for(n), CUDA_BLOCK>>>(out, inp, n);
    CUDA_CHECK_LAUNCH();
}

void cuda_gelu_backward(float *dinp, const float *dout, const float *inp, long n) {
    if (n <= 0 || dinp == NULL) return;
    gelu_backward_kernel<<<cuda_grid_for(n), CUDA_BLOCK>>>(dinp, dout, inp, n);
    CUDA_CHECK_LAUNCH();
}

/* ---- SwiGLU ------------------------------------------------------------------ */

/* out[N, F] = silu(g) * u with g = inp[N, 0:F] (gate), u = inp[N, F:2F] (up). */
__global__ static void swiglu_forward_kernel(float *out, const float *inp, int N, int F) {
    long n = (long)N * F;
    CUDA_GRID_STRIDE_LOOP(i, n) {
        long r = i / F;
        int f = (int)(i % F);
        float g = inp[r * 2 * F + f];
        float u = inp[r * 2 * F + F + f];
        out[i] = g / (1.0f + expf(-g)) * u;
    }
}

/* dinp[N, 2F] += d/d(g, u): dg = dout u sig(g) (1 + g (1 - sig(g))), du = dout silu(g). */
__global__ static void swiglu_backward_kernel(float *dinp, const float *dout, const float *inp,
                                              int N, int F) {
    long n = (long)N * F;
    CUDA_GRID_STRIDE_LOOP(i, n) {
        long r = i / F;
        int f = (int)(i % F);
        float g = inp[r * 2 * F + f];
        float u = inp[r * 2 * F + F + f];
        float sig = 1.0f / (1.0f + expf(-g));
        float dy = dout[i];
        dinp[r * 2 * F + f] += dy * u * sig * (1.0f + g * (1.0f - sig));
        dinp[r * 2 * F + F + f] += dy * g * sig;
    }
}

void cuda_swiglu_forward(float *out, const float *inp, int N, int F) {
    long n = (long)N * F;
    if (n <= 0) return;
    swiglu_forward_kernel<<<cuda_grid_for(n), CUDA_BLOCK>>>(out, inp, N, F);
    CUDA_CHECK_LAUNCH();
}

void cuda_swiglu_backward(float *dinp, const float *dout, const float *inp, int N, int F) {
    long n = (long)N * F;
    if (n <= 0 || dinp == NULL) return;
    swiglu_backward_kernel<<<cuda_grid_for(n), CUDA_BLOCK>>>(dinp, dout, inp, N, F);
    CUDA_CHECK_LAUNCH();
}

/* ---- LayerScale + residual ------------------------------------------------ */

/* out[N, C] = res + gamma[C] * y; out may be res (in-place residual). */
__global__ static void layerscale_residual_forward_kernel(float *out, const float *res,
                                                          const float *y, const float *gamma,
                                                          long N, int C) {
    CUDA_GRID_STRIDE_LOOP(i, N * C) { out[i] = res[i] + gamma[i % C] * y[i]; }
}

/* dres += dout; dy += dout * gamma (either may be NULL). */
__global__ static void layerscale_residual_backward_kernel(float *dres, float *dy,
                                                           const float *dout, const float *gamma,
                                                           long N, int C) {
    CUDA_GRID_STRIDE_LOOP(i, N * C) {
        float g = dout[i];
        if (dres) dres[i] += g;
        if (dy) dy[i] += g * gamma[i % C];
    }
}

/* value(r, c) = dout[r, c] * y[r, c]: the column sums are dgamma. */
struct ProductValue {
    const float *a, *b;
    int cols;
    __device__ float operator()(long r, int c) const { return a[r * cols + c] * b[r * cols + c]; }
};

void cuda_layerscale_residual_forward(float *out, const float *res, const float *y,
                                      const float *gamma, int N, int C) {
    long n = (long)N * C;
    if (n <= 0) return;
    layerscale_residual_forward_kernel<<<cuda_grid_for(n), CUDA_BLOCK>>>(out, res, y, gamma, N, C);
    CUDA_CHECK_LAUNCH();
}

void cuda_layerscale_residual_backward(float *dres, float *dy, float *dgamma, const float *dout,
                                       const float *y, const float *gamma, int N, int C) {
    long n = (long)N * C;
    if (n <= 0) return;
    ProductValue value = {dout, y, C};
    column_sum(dgamma, N, C, value);
    if (dres || dy) {
        layerscale_residual_backward_kernel<<<cuda_grid_for(n), CUDA_BLOCK>>>(dres, dy, dout, gamma,
                                                                              N, C);
        CUDA_CHECK_LAUNCH();
    }
}

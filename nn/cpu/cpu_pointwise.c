/*
 * cpu_pointwise.c - the element-wise and data-movement ops on the CPU:
 * patchify, token assembly, GELU, SwiGLU, LayerScale + residual.
 */
#include <math.h>
#include <string.h>

#include "nn/cpu/cpu_math.h"
#include "nn/cpu/cpu_ops.h"

void cpu_patchify(float *patches, const float *images, int B, int C, int H, int W, int P) {
    const int Hp = H / P, Wp = W / P, row = C * P * P;
    #pragma omp parallel for collapse(2) schedule(static)
    for (int b = 0; b < B; b++) {
        for (int py = 0; py < Hp; py++) {
            for (int px = 0; px < Wp; px++) {
                float *dst = patches + (((long)b * Hp + py) * Wp + px) * row;
                for (int c = 0; c < C; c++)
                    for (int y = 0; y < P; y++)
                        memcpy(dst + (c * P + y) * P,
                               images + (((long)b * C + c) * H + py * P + y) * W + px * P,
                               (size_t)P * sizeof(float));
            }
        }
    }
}

void cpu_tokens_forward(float *tokens, const float *patch_emb, const float *cls, const float *reg,
                        const float *mask_token, const uint8_t *mask, int B, int Np, int R, int D) {
    const int T = 1 + R + Np;
    const size_t row_bytes = (size_t)D * sizeof(float);
    #pragma omp parallel for schedule(static)
    for (int b = 0; b < B; b++) {
        float *t = tokens + (long)b * T * D;
        memcpy(t, cls, row_bytes);
        if (R > 0) memcpy(t + D, reg, R * row_bytes);
        for (int p = 0; p < Np; p++) {
            const float *src = mask && mask[(long)b * Np + p] ? mask_token
                                                               : patch_emb + ((long)b * Np + p) * D;
            memcpy(t + (long)(1 + R + p) * D, src, row_bytes);
        }
    }
}

void cpu_tokens_backward(float *dpatch_emb, float *dcls, float *dreg, float *dmask_token,
                         const float *dtokens, const uint8_t *mask, int B, int Np, int R, int D) {
    const int T = 1 + R + Np;
    #pragma omp parallel for schedule(static)
    for (int b = 0; b < B; b++)
        for (int p = 0; p < Np; p++) {
            if (mask && mask[(long)b * Np + p]) continue;
            const float *src = dtokens + ((long)b * T + 1 + R + p) * D;
            float *dst = dpatch_emb + ((long)b * Np + p) * D;
            for (int d = 0; d < D; d++) dst[d] += src[d];
        }
    /* the shared tokens sum over the batch, in batch order */
    for (int b = 0; b < B; b++) {
        const float *t = dtokens + (long)b * T * D;
        for (int d = 0; d < D; d++) dcls[d] += t[d];
        for (int r = 0; r < R; r++)
            for (int d = 0; d < D; d++) dreg[(long)r * D + d] += t[(long)(1 + r) * D + d];
        if (!mask || !dmask_token) continue;
        for (int p = 0; p < Np; p++) {
            if (!mask[(long)b * Np + p]) continue;
            const float *src = t + (long)(1 + R + p) * D;
            for (int d = 0; d < D; d++) dmask_token[d] += src[d];
        }
    }
}

/* GELU, exact: x * Phi(x) with Phi the standard normal CDF. */
void cpu_gelu_forward(float *out, const float *inp, long n) {
    #pragma omp parallel for simd schedule(static)
    for (long i = 0; i < n; i++) {
        float x = inp[i];
        out[i] = 0.5f * x * (1.0f + cpu_erff(x * (float)M_SQRT1_2));
    }
}

void cpu_gelu_backward(float *dinp, const float *dout, const float *inp, long n) {
    const float inv_sqrt_2pi = 0.3989422804014327f;
    #pragma omp parallel for simd schedule(static)
    for (long i = 0; i < n; i++) {
        float x = inp[i];
        float cdf = 0.5f * (1.0f + cpu_erff(x * (float)M_SQRT1_2));
        float pdf = inv_sqrt_2pi * cpu_expf(-0.5f * x * x);
        dinp[i] += dout[i] * (cdf + x * pdf);
    }
}

void cpu_swiglu_forward(float *out, const float *inp, int N, int F) {
    #pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++) {
        const float *gate = inp + (long)n * 2 * F, *up = gate + F;
        float *y = out + (long)n * F;
        #pragma omp simd
        for (int f = 0; f < F; f++) {
            float g = gate[f];
            y[f] = g / (1.0f + cpu_expf(-g)) * up[f];
        }
    }
}

void cpu_swiglu_backward(float *dinp, const float *dout, const float *inp, int N, int F) {
    #pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++) {
        const float *gate = inp + (long)n * 2 * F, *up = gate + F, *dy = dout + (long)n * F;
        float *dgate = dinp + (long)n * 2 * F, *dup = dgate + F;
        #pragma omp simd
        for (int f = 0; f < F; f++) {
            float g = gate[f];
            float sig = 1.0f / (1.0f + cpu_expf(-g));
            float silu = g * sig;
            dgate[f] += dy[f] * up[f] * sig * (1.0f + g * (1.0f - sig));
            dup[f] += dy[f] * silu;
        }
    }
}

void cpu_layerscale_residual_forward(float *out, const float *res, const float *y,
                                     const float *gamma, int N, int C) {
    #pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++) {
        const long o = (long)n * C;
        #pragma omp simd
        for (int c = 0; c < C; c++) out[o + c] = res[o + c] + gamma[c] * y[o + c];
    }
}

void cpu_layerscale_residual_backward(float *dres, float *dy, float *dgamma, const float *dout,
                                      const float *y, const float *gamma, int N, int C) {
    #pragma omp parallel
    {
        #pragma omp for schedule(static)
        for (int n = 0; n < N; n++) {
            const long o = (long)n * C;
            if (dres) {
                #pragma omp simd
                for (int c = 0; c < C; c++) dres[o + c] += dout[o + c];
            }
            #pragma omp simd
            for (int c = 0; c < C; c++) dy[o + c] += dout[o + c] * gamma[c];
        }
        #pragma omp for schedule(static)
        for (int c0 = 0; c0 < C; c0 += 16) {
            int c1 = c0 + 16 < C ? c0 + 16 : C;
            float sum[16] = {0};
            for (int n = 0; n < N; n++)
                for (int c = c0; c < c1; c++) sum[c - c0] += dout[(long)n * C + c] * y[(long)n * C + c];
            for (int c = c0; c < c1; c++) dgamma[c] += sum[c - c0];
        }
    }
}

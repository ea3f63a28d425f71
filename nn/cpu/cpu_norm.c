/*
 * cpu_norm.c - LayerNorm forward and backward on the CPU (rows in parallel).
 */
#include <math.h>

#include "nn/cpu/cpu_ops.h"

void cpu_layernorm_forward(float *out, float *mean, float *rstd, const float *inp,
                           const float *weight, const float *bias, int N, int C, float eps) {
    #pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++) {
        const float *x = inp + (long)n * C;
        float *y = out + (long)n * C;
        float sum = 0.0f;
        #pragma omp simd reduction(+ : sum)
        for (int c = 0; c < C; c++) sum += x[c];
        float m = sum / C;
        float var = 0.0f;
        #pragma omp simd reduction(+ : var)
        for (int c = 0; c < C; c++) var += (x[c] - m) * (x[c] - m);
        float s = 1.0f / sqrtf(var / C + eps);
        #pragma omp simd
        for (int c = 0; c < C; c++) y[c] = (x[c] - m) * s * weight[c] + bias[c];
        mean[n] = m;
        rstd[n] = s;
    }
}

void cpu_layernorm_backward(float *dinp, float *dweight, float *dbias, const float *dout,
                            const float *inp, const float *weight, const float *mean,
                            const float *rstd, int N, int C) {
    #pragma omp parallel
    {
        #pragma omp for schedule(static)
        for (int n = 0; n < N; n++) {
            const float *x = inp + (long)n * C, *dy = dout + (long)n * C;
            float *dx = dinp + (long)n * C;
            const float m = mean[n], s = rstd[n];
            float sum_dxhat = 0.0f, sum_dxhat_xhat = 0.0f;
            #pragma omp simd reduction(+ : sum_dxhat, sum_dxhat_xhat)
            for (int c = 0; c < C; c++) {
                float dxhat = dy[c] * weight[c];
                sum_dxhat += dxhat;
                sum_dxhat_xhat += dxhat * (x[c] - m) * s;
            }
            const float mean_dxhat = sum_dxhat / C, mean_dxhat_xhat = sum_dxhat_xhat / C;
            #pragma omp simd
            for (int c = 0; c < C; c++) {
                float xhat = (x[c] - m) * s;
                dx[c] += s * (dy[c] * weight[c] - mean_dxhat - xhat * mean_dxhat_xhat);
            }
        }
        /* dweight and dbias: columns split between threads, rows summed in order */
        #pragma omp for schedule(static)
        for (int c0 = 0; c0 < C; c0 += 16) {
            int c1 = c0 + 16 < C ? c0 + 16 : C;
            float dw[16] = {0}, db[16] = {0};
            for (int n = 0; n < N; n++) {
                const float *x = inp + (long)n * C, *dy = dout + (long)n * C;
                for (int c = c0; c < c1; c++) {
                    dw[c - c0] += dy[c] * (x[c] - mean[n]) * rstd[n];
                    db[c - c0] += dy[c];
                }
            }
            for (int c = c0; c < c1; c++) {
                dweight[c] += dw[c - c0];
                dbias[c] += db[c - c0];
            }
        }
    }
}

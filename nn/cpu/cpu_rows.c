/*
 * cpu_rows.c - row-wise ops of the heads on the CPU: L2 normalisation of
 * rows (the bottleneck, KoLeo's inputs, a weight matrix's row norms) and
 * picking rows out of a token tensor (CLS, masked patches) and back.
 */
#include <math.h>
#include <string.h>

#include "nn/cpu/cpu_ops.h"

void cpu_l2norm_forward(float *out, float *norm, const float *inp, int N, int C, float eps) {
    #pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++) {
        const float *x = inp + (long)n * C;
        double sum = 0.0;
        #pragma omp simd reduction(+ : sum)
        for (int c = 0; c < C; c++) sum += (double)x[c] * x[c];
        const float length = (float)sqrt(sum);
        norm[n] = length;
        if (!out) continue;
        const float inverse = 1.0f / fmaxf(length, eps);
        float *y = out + (long)n * C;
        #pragma omp simd
        for (int c = 0; c < C; c++) y[c] = x[c] * inverse;
    }
}

void cpu_l2norm_backward(float *dinp, const float *dout, const float *inp, const float *norm,
                         int N, int C, float eps) {
    #pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++) {
        const float *x = inp + (long)n * C, *dy = dout + (long)n * C;
        float *dx = dinp + (long)n * C;
        if (norm[n] <= eps) {   /* clamped: out = inp / eps, a constant scale */
            const float inverse = 1.0f / eps;
            #pragma omp simd
            for (int c = 0; c < C; c++) dx[c] += dy[c] * inverse;
            continue;
        }
        const float inverse = 1.0f / norm[n];
        double dot = 0.0;   /* y . dout with y = x / norm */
        #pragma omp simd reduction(+ : dot)
        for (int c = 0; c < C; c++) dot += (double)x[c] * dy[c];
        const float projection = (float)dot * inverse;
        #pragma omp simd
        for (int c = 0; c < C; c++) dx[c] += (dy[c] - x[c] * inverse * projection) * inverse;
    }
}

void cpu_gather_rows(float *out, const float *inp, const int32_t *rows, int N, int C) {
    #pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++)
        memcpy(out + (long)n * C, inp + (long)rows[n] * C, (size_t)C * sizeof(float));
}

void cpu_gather_rows_backward(float *dinp, const float *dout, const int32_t *rows, int N, int C) {
    /* rows may repeat: one thread per slice of columns, rows in order */
    #pragma omp parallel for schedule(static)
    for (int c0 = 0; c0 < C; c0 += 64) {
        const int c1 = c0 + 64 < C ? c0 + 64 : C;
        for (int n = 0; n < N; n++) {
            float *dst = dinp + (long)rows[n] * C;
            const float *src = dout + (long)n * C;
            #pragma omp simd
            for (int c = c0; c < c1; c++) dst[c] += src[c];
        }
    }
}

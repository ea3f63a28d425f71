/*
 * cpu_attention.c - 2-D RoPE and multi-head softmax attention on the CPU.
 *
 * Attention runs one (batch, head) pair per OpenMP iteration with
 * single-threaded sgemm calls on strided views of qkv[B, T, 3, H, Dh]:
 *   S = q k^T / sqrt(Dh);  P = softmax_rows(S);  out = P v.
 */
#include <cblas.h>
#include <math.h>
#include <stdlib.h>

#include "nn/cpu/cpu_math.h"
#include "nn/cpu/cpu_ops.h"

/* ---- RoPE ------------------------------------------------------------- */

/* Rotates one head vector x[Dh] by the tables s, c [Dh]; transpose = 1
 * applies the inverse (transposed) rotation, which is what the backward of
 * the forward rotation is. */
static void rotate_half_pairs(float *x, const float *s, const float *c, int Dh, int transpose) {
    const int half = Dh / 2;
    for (int i = 0; i < half; i++) {
        float x1 = x[i], x2 = x[i + half];
        if (!transpose) {
            x[i] = x1 * c[i] - x2 * s[i];
            x[i + half] = x2 * c[i + half] + x1 * s[i + half];
        } else {
            x[i] = x1 * c[i] + x2 * s[i + half];
            x[i + half] = x2 * c[i + half] - x1 * s[i];
        }
    }
}

static void rope_apply(float *qkv, const float *sin, const float *cos, int B, int T, int prefix,
                       int H, int Dh, int transpose) {
    const int D = H * Dh, patches = T - prefix;
    #pragma omp parallel for collapse(2) schedule(static)
    for (int b = 0; b < B; b++) {
        for (int p = 0; p < patches; p++) {
            const float *s = sin + (long)p * Dh, *c = cos + (long)p * Dh;
            float *row = qkv + ((long)b * T + prefix + p) * 3 * D;
            for (int part = 0; part < 2; part++)      /* q, then k; v is not rotated */
                for (int h = 0; h < H; h++)
                    rotate_half_pairs(row + part * D + h * Dh, s, c, Dh, transpose);
        }
    }
}

void cpu_rope_forward(float *qkv, const float *sin, const float *cos, int B, int T, int prefix,
                      int H, int Dh) {
    rope_apply(qkv, sin, cos, B, T, prefix, H, Dh, 0);
}

void cpu_rope_backward(float *dqkv, const float *sin, const float *cos, int B, int T, int prefix,
                       int H, int Dh) {
    rope_apply(dqkv, sin, cos, B, T, prefix, H, Dh, 1);
}

/* ---- attention -------------------------------------------------------- */

static void softmax_rows(float *x, int rows, int cols) {
    for (int r = 0; r < rows; r++) {
        float *row = x + (long)r * cols;
        float max = row[0];
        for (int j = 1; j < cols; j++) max = row[j] > max ? row[j] : max;
        float sum = 0.0f;
        #pragma omp simd reduction(+ : sum)
        for (int j = 0; j < cols; j++) {
            row[j] = cpu_expf(row[j] - max);
            sum += row[j];
        }
        float inv = 1.0f / sum;
        #pragma omp simd
        for (int j = 0; j < cols; j++) row[j] *= inv;
    }
}

void cpu_attention_forward(float *out, float *probs, const float *qkv, int B, int T, int H, int Dh) {
    const int D = H * Dh, row3 = 3 * D;
    const float scale = 1.0f / sqrtf((float)Dh);
    int saved = cpu_blas_threads_begin_serial();
    #pragma omp parallel for collapse(2) schedule(dynamic, 1)
    for (int b = 0; b < B; b++) {
        for (int h = 0; h < H; h++) {
            const float *q = qkv + (long)b * T * row3 + h * Dh;   /* [T, Dh], row stride 3D */
            const float *k = q + D, *v = q + 2 * D;
            float *p = probs + ((long)b * H + h) * T * T;          /* [T, T] */
            float *o = out + (long)b * T * D + h * Dh;             /* [T, Dh], row stride D */
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, T, T, Dh, scale, q, row3, k, row3,
                        0.0f, p, T);
            softmax_rows(p, T, T);
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, T, Dh, T, 1.0f, p, T, v, row3,
                        0.0f, o, D);
        }
    }
    cpu_blas_threads_end_serial(saved);
}

void cpu_attention_backward(float *dqkv, const float *dout, const float *qkv, const float *probs,
                            int B, int T, int H, int Dh) {
    const int D = H * Dh, row3 = 3 * D;
    const float scale = 1.0f / sqrtf((float)Dh);
    int saved = cpu_blas_threads_begin_serial();
    #pragma omp parallel
    {
        /* dS[T, T] scratch of this thread, allocated once per call */
        float *ds = malloc((size_t)T * T * sizeof(float));
        if (!ds) abort();   /* T*T floats per thread: out of memory is not recoverable here */
        #pragma omp for collapse(2) schedule(dynamic, 1)
        for (int b = 0; b < B; b++) {
            for (int h = 0; h < H; h++) {
                const float *q = qkv + (long)b * T * row3 + h * Dh, *k = q + D, *v = q + 2 * D;
                float *dq = dqkv + (long)b * T * row3 + h * Dh, *dk = dq + D, *dv = dq + 2 * D;
                const float *p = probs + ((long)b * H + h) * T * T;
                const float *dout_bh = dout + (long)b * T * D + h * Dh;
                /* dv += P^T dout;  dP = dout v^T */
                cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, T, Dh, T, 1.0f, p, T, dout_bh, D,
                            1.0f, dv, row3);
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, T, T, Dh, 1.0f, dout_bh, D, v,
                            row3, 0.0f, ds, T);
                /* dS = P * (dP - rowsum(P * dP)) */
                for (int i = 0; i < T; i++) {
                    float *dsr = ds + (long)i * T;
                    const float *pr = p + (long)i * T;
                    float dot = 0.0f;
                    #pragma omp simd reduction(+ : dot)
                    for (int j = 0; j < T; j++) dot += pr[j] * dsr[j];
                    #pragma omp simd
                    for (int j = 0; j < T; j++) dsr[j] = pr[j] * (dsr[j] - dot);
                }
                /* dq += scale dS k;  dk += scale dS^T q */
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, T, Dh, T, scale, ds, T, k, row3,
                            1.0f, dq, row3);
                cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, T, Dh, T, scale, ds, T, q, row3,
                            1.0f, dk, row3);
            }
        }
        free(ds);
    }
    cpu_blas_threads_end_serial(saved);
}

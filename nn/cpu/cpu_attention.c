/*
 * cpu_attention.c - 2-D RoPE and multi-head softmax attention on the CPU.
 *
 * Attention is memory-efficient: it keeps only the log-sum-exp of each
 * score row (lse[B, H, T]) from the forward, and both passes walk tiles of
 * query rows, so a thread holds at most 4 MiB of scores and no [T, T]
 * matrix outlives a call. Each tile is single-threaded sgemm calls
 * on strided views of qkv[B, T, 3, H, Dh]:
 *   S = q k^T / sqrt(Dh);  P = softmax_rows(S);  out = P v.
 */
#include <cblas.h>
#include <math.h>
#include <stdio.h>
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

/* Query rows per tile: each thread holds `blocks` [rows, T] blocks of
 * scores (the backward also their gradients), at most ATTENTION_SCRATCH_FLOATS
 * floats in all, and never fewer than ATTENTION_MIN_TILE rows. A 224 px
 * crop (T = 201) fits in one tile, so its sgemm calls are as large as
 * whole-matrix attention's; T = 1025 (512 px) takes tiles of 512 rows. */
enum { ATTENTION_SCRATCH_FLOATS = 1 << 20, ATTENTION_MIN_TILE = 64 };

static int attention_tile_rows(int T, int blocks) {
    long rows = ATTENTION_SCRATCH_FLOATS / ((long)blocks * T);
    if (rows < ATTENTION_MIN_TILE) rows = ATTENTION_MIN_TILE;
    return rows < T ? (int)rows : T;
}

/* Per-thread scratch of `blocks` [rows, T] blocks. The op API has no error
 * return; a few MiB per thread that cannot be had is not recoverable here. */
static float *attention_scratch(int rows, int T, int blocks) {
    float *scratch = malloc((size_t)blocks * rows * T * sizeof(float));
    if (!scratch) {
        fprintf(stderr, "cpu attention: out of memory for %d x %d x %d scores\n", blocks, rows, T);
        abort();
    }
    return scratch;
}

/* In place on scores s[rows, T]: each row becomes its softmax; lse[rows]
 * receives each row's log-sum-exp. */
static void softmax_rows_with_lse(float *s, float *lse, int rows, int T) {
    for (int r = 0; r < rows; r++) {
        float *row = s + (long)r * T;
        float max = row[0];
        for (int j = 1; j < T; j++) max = row[j] > max ? row[j] : max;
        float sum = 0.0f;
        #pragma omp simd reduction(+ : sum)
        for (int j = 0; j < T; j++) {
            row[j] = cpu_expf(row[j] - max);
            sum += row[j];
        }
        const float inv = 1.0f / sum;
        #pragma omp simd
        for (int j = 0; j < T; j++) row[j] *= inv;
        lse[r] = max + logf(sum);
    }
}

/* Query tile [q0, q0 + rows) of image b, head h:
 *   S = q k^T / sqrt(Dh)  [rows, T];  P = softmax_rows(S);  out = P v. */
void cpu_attention_forward(float *out, float *lse, const float *qkv, int B, int T, int H, int Dh) {
    const int D = H * Dh, row3 = 3 * D;
    const int tile_rows = attention_tile_rows(T, 1);
    const int tiles = (T + tile_rows - 1) / tile_rows;
    const float scale = 1.0f / sqrtf((float)Dh);
    int saved = cpu_blas_threads_begin_serial();
    #pragma omp parallel
    {
        float *scores = attention_scratch(tile_rows, T, 1);        /* [tile_rows, T] */
        #pragma omp for collapse(3) schedule(dynamic, 1)
        for (int b = 0; b < B; b++) {
            for (int h = 0; h < H; h++) {
                for (int tile = 0; tile < tiles; tile++) {
                    const int q0 = tile * tile_rows;
                    const int rows = T - q0 < tile_rows ? T - q0 : tile_rows;
                    const float *k = qkv + (long)b * T * row3 + D + h * Dh; /* [T, Dh], stride 3D */
                    const float *v = k + D;
                    const float *q = k - D + (long)q0 * row3;               /* [rows, Dh] */
                    float *o = out + ((long)b * T + q0) * D + h * Dh;       /* [rows, Dh], stride D */
                    float *tile_lse = lse + ((long)b * H + h) * T + q0;     /* [rows] */
                    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, rows, T, Dh, scale, q, row3,
                                k, row3, 0.0f, scores, T);
                    softmax_rows_with_lse(scores, tile_lse, rows, T);
                    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, rows, Dh, T, 1.0f, scores, T,
                                v, row3, 0.0f, o, D);
                }
            }
        }
        free(scores);
    }
    cpu_blas_threads_end_serial(saved);
}

/* Per (image, head), query tile by query tile, with P recomputed from lse:
 *   P = exp(S - lse);  dv += P^T dout;  dP = dout v^T;
 *   dS = P * (dP - rowsum(dout * out))   (rowsum(P * dP) = dout . out);
 *   dq += dS k / sqrt(Dh);  dk += dS^T q / sqrt(Dh).
 * dk and dv gather every query tile of their (image, head), so one thread
 * owns a whole (image, head). */
void cpu_attention_backward(float *dqkv, const float *dout, const float *qkv, const float *out,
                            const float *lse, int B, int T, int H, int Dh) {
    const int D = H * Dh, row3 = 3 * D;
    const float scale = 1.0f / sqrtf((float)Dh);
    const int tile_rows = attention_tile_rows(T, 2);
    int saved = cpu_blas_threads_begin_serial();
    #pragma omp parallel
    {
        float *probs = attention_scratch(tile_rows, T, 2);         /* [tile_rows, T] */
        float *dscores = probs + (size_t)tile_rows * T;            /* [tile_rows, T] */
        #pragma omp for collapse(2) schedule(dynamic, 1)
        for (int b = 0; b < B; b++) {
            for (int h = 0; h < H; h++) {
                const float *k = qkv + (long)b * T * row3 + D + h * Dh, *v = k + D;
                float *dk = dqkv + (long)b * T * row3 + D + h * Dh, *dv = dk + D;
                for (int q0 = 0; q0 < T; q0 += tile_rows) {
                    const int rows = T - q0 < tile_rows ? T - q0 : tile_rows;
                    const float *q = k - D + (long)q0 * row3;                 /* [rows, Dh] */
                    float *dq = dk - D + (long)q0 * row3;
                    const long first = (long)b * T + q0;
                    const float *dout_t = dout + first * D + h * Dh;          /* [rows, Dh] */
                    const float *out_t = out + first * D + h * Dh;
                    const float *tile_lse = lse + ((long)b * H + h) * T + q0; /* [rows] */
                    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, rows, T, Dh, scale, q, row3,
                                k, row3, 0.0f, probs, T);
                    for (int i = 0; i < rows; i++) {
                        float *p = probs + (long)i * T;
                        const float shift = tile_lse[i];
                        #pragma omp simd
                        for (int j = 0; j < T; j++) p[j] = cpu_expf(p[j] - shift);
                    }
                    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, T, Dh, rows, 1.0f, probs, T,
                                dout_t, D, 1.0f, dv, row3);
                    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, rows, T, Dh, 1.0f, dout_t, D,
                                v, row3, 0.0f, dscores, T);
                    for (int i = 0; i < rows; i++) {
                        const float *p = probs + (long)i * T, *o = out_t + (long)i * D;
                        const float *g = dout_t + (long)i * D;
                        float *ds = dscores + (long)i * T;
                        float dot = 0.0f;
                        for (int d = 0; d < Dh; d++) dot += g[d] * o[d];
                        #pragma omp simd
                        for (int j = 0; j < T; j++) ds[j] = p[j] * (ds[j] - dot);
                    }
                    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, rows, Dh, T, scale, dscores,
                                T, k, row3, 1.0f, dq, row3);
                    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, T, Dh, rows, scale, dscores, T,
                                q, row3, 1.0f, dk, row3);
                }
            }
        }
        free(probs);
    }
    cpu_blas_threads_end_serial(saved);
}

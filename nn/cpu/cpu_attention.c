/*
 * cpu_attention.c - multi-head softmax attention with 2-D RoPE on the CPU.
 *
 * Attention is memory-efficient: it keeps only the log-sum-exp of each
 * score row (lse[B, H, T]) from the forward, and both passes walk tiles of
 * query rows, so a thread holds at most 4 MiB of scores and no [T, T]
 * matrix outlives a call. qkv[B, T, 3, H, Dh] comes in unrotated: a thread
 * copies the q rows of its tile and the k rows of its (image, head) into
 * its own scratch, rotating the patch tokens' rows as it copies, and runs
 * single-threaded sgemm calls on those copies and on strided views of v:
 *   S = q' k'^T / sqrt(Dh);  P = softmax_rows(S);  out = P v.
 * The backward computes dq', dk' in rotated space in scratch, then adds
 * their transposed rotation into dqkv.
 */
#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nn/cpu/cpu_math.h"
#include "nn/cpu/cpu_ops.h"

/* ---- RoPE on scratch rows -------------------------------------------- */

/* The rotation of one call: tables sin, cos [T - prefix, Dh] for the tokens
 * t >= prefix, or sin == NULL for none. */
typedef struct Rope {
    const float *sin, *cos;
    int prefix;
} Rope;

/* Rotates one head vector x[Dh] in place by the tables s, c [Dh];
 * transpose = 1 applies the transposed rotation (the backward's). */
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

/* In place on rows[count, Dh], the rows of tokens t0 .. t0 + count - 1:
 * rotates those with t >= prefix (transposed if asked). */
static void rotate_rows(float *rows, int t0, int count, const Rope *rope, int Dh, int transpose) {
    if (!rope->sin) return;
    for (int r = 0; r < count; r++) {
        const long p = (long)t0 + r - rope->prefix;   /* table row */
        if (p < 0) continue;
        rotate_half_pairs(rows + (long)r * Dh, rope->sin + p * Dh, rope->cos + p * Dh, Dh, transpose);
    }
}

/* dst[count, Dh] = the rows t0 .. t0 + count - 1 of the head view src
 * (row stride `stride`), those of tokens t >= prefix rotated. */
static void copy_rotated(float *dst, const float *src, long stride, int t0, int count,
                         const Rope *rope, int Dh) {
    for (int r = 0; r < count; r++)
        memcpy(dst + (long)r * Dh, src + (long)(t0 + r) * stride, (size_t)Dh * sizeof(float));
    rotate_rows(dst, t0, count, rope, Dh, 0);
}

/* The rows t0 .. t0 + count - 1 of the head view dst (row stride `stride`)
 * += the transposed rotation of grad[count, Dh], which this overwrites. */
static void add_unrotated(float *dst, long stride, float *grad, int t0, int count,
                          const Rope *rope, int Dh) {
    rotate_rows(grad, t0, count, rope, Dh, 1);
    for (int r = 0; r < count; r++) {
        float *d = dst + (long)(t0 + r) * stride;
        const float *g = grad + (long)r * Dh;
        #pragma omp simd
        for (int i = 0; i < Dh; i++) d[i] += g[i];
    }
}

/* ---- scratch ----------------------------------------------------------- */

/* Query rows per tile: each thread holds `blocks` [rows, T] blocks of
 * scores (the backward also their gradients), at most ATTENTION_SCRATCH_FLOATS
 * floats in all, and never fewer than ATTENTION_MIN_TILE rows; the rotated
 * q and k rows (and their gradients) come on top, [rows + T, Dh] each. A
 * 224 px crop (T = 201) fits in one tile, so its sgemm calls are as large as
 * whole-matrix attention's; T = 1025 (512 px) takes tiles of 512 rows. */
enum { ATTENTION_SCRATCH_FLOATS = 1 << 20, ATTENTION_MIN_TILE = 64 };

static int attention_tile_rows(int T, int blocks) {
    long rows = ATTENTION_SCRATCH_FLOATS / ((long)blocks * T);
    if (rows < ATTENTION_MIN_TILE) rows = ATTENTION_MIN_TILE;
    return rows < T ? (int)rows : T;
}

/* One thread's scratch: the forward's scores and rotated q, k rows; the
 * backward's also their gradients. */
typedef struct AttentionScratch {
    float *scores;    /* [rows, T]: S, then P */
    float *q, *k;     /* [rows, Dh], [T, Dh]: q' of a query tile, k' of an (image, head) */
    float *dscores;   /* [rows, T]: dP, then dS (backward only) */
    float *dq, *dk;   /* [rows, Dh], [T, Dh]: dq', dk' (backward only) */
} AttentionScratch;

/* The op API has no error return; a few MiB per thread that cannot be had
 * is not recoverable here. Free with free(scratch.scores). */
static AttentionScratch attention_scratch(int rows, int T, int Dh, int with_gradients) {
    const size_t scores = (size_t)rows * T, q = (size_t)rows * Dh, k = (size_t)T * Dh;
    const size_t floats = (with_gradients ? 2 : 1) * (scores + q + k);
    float *memory = malloc(floats * sizeof(float));
    if (!memory) {
        fprintf(stderr, "cpu attention: out of memory for %zu floats of scratch (T=%d, Dh=%d)\n",
                floats, T, Dh);
        abort();
    }
    AttentionScratch s = {.scores = memory, .q = memory + scores, .k = memory + scores + q};
    if (with_gradients) {
        s.dscores = s.k + k;
        s.dq = s.dscores + scores;
        s.dk = s.dq + q;
    }
    return s;
}

/* ---- forward ------------------------------------------------------------ */

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

/* Query tile [q0, q0 + rows) of image b, head h, with q', k' rotated into
 * scratch (the keys again for each tile: T * Dh copies against the
 * 2 * rows * T * Dh flops of the tile's sgemm calls):
 *   S = q' k'^T / sqrt(Dh)  [rows, T];  P = softmax_rows(S);  out = P v. */
void cpu_attention_forward(float *out, float *lse, const float *qkv, const float *sin,
                           const float *cos, int B, int T, int prefix, int H, int Dh) {
    const int D = H * Dh, row3 = 3 * D;
    const int tile_rows = attention_tile_rows(T, 1);
    const int tiles = (T + tile_rows - 1) / tile_rows;
    const float scale = 1.0f / sqrtf((float)Dh);
    const Rope rope = {sin, cos, prefix};
    int saved = cpu_blas_threads_begin_serial();
    #pragma omp parallel
    {
        AttentionScratch scratch = attention_scratch(tile_rows, T, Dh, 0);
        #pragma omp for collapse(3) schedule(dynamic, 1)
        for (int b = 0; b < B; b++) {
            for (int h = 0; h < H; h++) {
                for (int tile = 0; tile < tiles; tile++) {
                    const int q0 = tile * tile_rows;
                    const int rows = T - q0 < tile_rows ? T - q0 : tile_rows;
                    const float *q = qkv + (long)b * T * row3 + h * Dh;     /* [T, Dh], stride 3D */
                    const float *k = q + D, *v = q + 2 * D;
                    float *o = out + ((long)b * T + q0) * D + h * Dh;       /* [rows, Dh], stride D */
                    float *tile_lse = lse + ((long)b * H + h) * T + q0;     /* [rows] */
                    copy_rotated(scratch.q, q, row3, q0, rows, &rope, Dh);  /* [rows, Dh] */
                    copy_rotated(scratch.k, k, row3, 0, T, &rope, Dh);      /* [T, Dh] */
                    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, rows, T, Dh, scale,
                                scratch.q, Dh, scratch.k, Dh, 0.0f, scratch.scores, T);
                    softmax_rows_with_lse(scratch.scores, tile_lse, rows, T);
                    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, rows, Dh, T, 1.0f,
                                scratch.scores, T, v, row3, 0.0f, o, D);
                }
            }
        }
        free(scratch.scores);
    }
    cpu_blas_threads_end_serial(saved);
}

/* ---- backward ----------------------------------------------------------- */

/* In place on scores p[rows, T]: p = exp(p - lse[row]), the probabilities. */
static void probabilities_from_lse(float *p, const float *lse, int rows, int T) {
    for (int i = 0; i < rows; i++) {
        float *row = p + (long)i * T;
        const float shift = lse[i];
        #pragma omp simd
        for (int j = 0; j < T; j++) row[j] = cpu_expf(row[j] - shift);
    }
}

/* In place on ds[rows, T] holding dP: dS = P * (dP - dout_i . out_i) per
 * row i; dout, out [rows, Dh] with row stride D. */
static void score_gradients(float *ds, const float *p, const float *dout, const float *out,
                            int rows, int T, int Dh, int D) {
    for (int i = 0; i < rows; i++) {
        const float *p_i = p + (long)i * T, *o = out + (long)i * D, *g = dout + (long)i * D;
        float *ds_i = ds + (long)i * T;
        float dot = 0.0f;
        for (int d = 0; d < Dh; d++) dot += g[d] * o[d];
        #pragma omp simd
        for (int j = 0; j < T; j++) ds_i[j] = p_i[j] * (ds_i[j] - dot);
    }
}

/* Per (image, head), query tile by query tile, with P recomputed from lse:
 *   P = exp(S - lse);  dv += P^T dout;  dP = dout v^T;
 *   dS = P * (dP - rowsum(dout * out))   (rowsum(P * dP) = dout . out);
 *   dq' = dS k' / sqrt(Dh);  dk' += dS^T q' / sqrt(Dh)
 * in scratch; each tile's dq' and, after the last tile, dk' go through the
 * transposed rotation into dqkv. dk' and dv gather every query tile of
 * their (image, head), so one thread owns a whole (image, head). */
void cpu_attention_backward(float *dqkv, const float *dout, const float *qkv, const float *out,
                            const float *lse, const float *sin, const float *cos, int B, int T,
                            int prefix, int H, int Dh) {
    const int D = H * Dh, row3 = 3 * D;
    const float scale = 1.0f / sqrtf((float)Dh);
    const int tile_rows = attention_tile_rows(T, 2);
    const Rope rope = {sin, cos, prefix};
    int saved = cpu_blas_threads_begin_serial();
    #pragma omp parallel
    {
        AttentionScratch scratch = attention_scratch(tile_rows, T, Dh, 1);
        float *probs = scratch.scores, *dscores = scratch.dscores;   /* [tile_rows, T] */
        #pragma omp for collapse(2) schedule(dynamic, 1)
        for (int b = 0; b < B; b++) {
            for (int h = 0; h < H; h++) {
                const long head = (long)b * T * row3 + h * Dh;
                const float *q = qkv + head, *k = q + D, *v = q + 2 * D;   /* [T, Dh], stride 3D */
                float *dq = dqkv + head, *dk = dq + D, *dv = dq + 2 * D;
                copy_rotated(scratch.k, k, row3, 0, T, &rope, Dh);          /* [T, Dh] */
                memset(scratch.dk, 0, (size_t)T * Dh * sizeof(float));      /* [T, Dh] */
                for (int q0 = 0; q0 < T; q0 += tile_rows) {
                    const int rows = T - q0 < tile_rows ? T - q0 : tile_rows;
                    const long first = (long)b * T + q0;
                    const float *dout_t = dout + first * D + h * Dh;          /* [rows, Dh] */
                    const float *out_t = out + first * D + h * Dh;
                    const float *tile_lse = lse + ((long)b * H + h) * T + q0; /* [rows] */
                    copy_rotated(scratch.q, q, row3, q0, rows, &rope, Dh);    /* [rows, Dh] */
                    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, rows, T, Dh, scale,
                                scratch.q, Dh, scratch.k, Dh, 0.0f, probs, T);
                    probabilities_from_lse(probs, tile_lse, rows, T);
                    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, T, Dh, rows, 1.0f, probs, T,
                                dout_t, D, 1.0f, dv, row3);
                    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, rows, T, Dh, 1.0f, dout_t, D,
                                v, row3, 0.0f, dscores, T);
                    score_gradients(dscores, probs, dout_t, out_t, rows, T, Dh, D);
                    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, rows, Dh, T, scale, dscores,
                                T, scratch.k, Dh, 0.0f, scratch.dq, Dh);
                    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, T, Dh, rows, scale, dscores, T,
                                scratch.q, Dh, 1.0f, scratch.dk, Dh);
                    add_unrotated(dq, row3, scratch.dq, q0, rows, &rope, Dh);
                }
                add_unrotated(dk, row3, scratch.dk, 0, T, &rope, Dh);
            }
        }
        free(scratch.scores);
    }
    cpu_blas_threads_end_serial(saved);
}

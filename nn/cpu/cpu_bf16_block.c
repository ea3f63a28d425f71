/*
 * cpu_bf16_block.c - the block_bf16 entries of the CPU backend (semantics:
 * nn/backend.h): the ops of a ViT block with their inner tensors stored as
 * bf16 (uint16_t), computed in fp32 by the fp32 ops of this backend.
 *
 * Each entry widens its bf16 operands into fp32 scratch (exact), runs the
 * fp32 op of the same name on them and rounds its bf16 outputs back once,
 * to nearest even, with float_to_bfloat16 (nn/half_float.h). An
 * accumulating bf16 output gets the fp32 op's increment, computed into
 * zeroed scratch, added to its widened old value before that one rounding.
 * fp32 outputs (dweight, dbias, mean, rstd, lse, residuals, dgamma) are
 * written by the fp32 op directly. So on the same inputs this is, bit for
 * bit, "the fp32 op, then float_to_bfloat16": the oracle of other
 * backends' bf16 entries (tests/nn/test_bf16_block_ops.c).
 *
 * The scratch is one grow-only host buffer held by this file for the life
 * of the process: no allocation per call once it has reached the largest
 * call's size. It assumes what every caller of the op API does: one host
 * thread drives the backend (OpenMP threads run only inside a call), so
 * calls never overlap; an overlapping call aborts with a message rather
 * than share the buffer.
 */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>

#include "nn/cpu/cpu_ops.h"
#include "nn/half_float.h"

/* ---- scratch ------------------------------------------------------------ */

static float *scratch;            /* [scratch_floats] */
static size_t scratch_floats;
static atomic_flag scratch_busy = ATOMIC_FLAG_INIT;

/* The op API has no error return: scratch that cannot be had, or a second
 * host thread in the backend, is not recoverable here. */
static void scratch_fail(const char *op, const char *what, size_t bytes) {
    fprintf(stderr, "cpu-bf16 %s: %s (%zu bytes of fp32 scratch)\n", op, what, bytes);
    abort();
}

/* Points *views[i] at counts[i] floats of the scratch each, one after the
 * other (count 0: NULL), growing it to their sum first. Every call to it
 * is paired with scratch_release. */
static void scratch_views(const char *op, int n, const size_t *counts, float **const *views) {
    size_t total = 0;
    for (int i = 0; i < n; i++) total += counts[i];
    if (atomic_flag_test_and_set(&scratch_busy))
        scratch_fail(op, "called while another host thread is inside a cpu-bf16 op", total * sizeof(float));
    if (total > scratch_floats) {
        cpu_free(scratch);
        scratch_floats = 0;
        scratch = cpu_alloc(total * sizeof(float));
        if (!scratch) scratch_fail(op, "out of memory", total * sizeof(float));
        scratch_floats = total;
    }
    float *next = scratch;
    for (int i = 0; i < n; i++) {
        *views[i] = counts[i] ? next : NULL;
        next += counts[i];
    }
}

static void scratch_release(void) { atomic_flag_clear(&scratch_busy); }

/* ---- conversions ---------------------------------------------------------- */

/* out[n] = fp32(inp[n]), exact. */
static void widen(float *out, const uint16_t *inp, long n) {
    #pragma omp parallel for schedule(static)
    for (long i = 0; i < n; i++) out[i] = bfloat16_to_float(inp[i]);
}

/* acc[n] = bf16(fp32(acc[n]) + increment[n]): one rounding. */
static void add_rounded(uint16_t *acc, const float *increment, long n) {
    #pragma omp parallel for schedule(static)
    for (long i = 0; i < n; i++) acc[i] = float_to_bfloat16(bfloat16_to_float(acc[i]) + increment[i]);
}

/* Zeroed scratch for the fp32 increment of an accumulating output. */
static void zero_floats(float *x, long n) { cpu_zero(x, (size_t)n * sizeof(float)); }

void cpu_cast_to_bf16(uint16_t *out, const float *inp, long n) {
    #pragma omp parallel for schedule(static)
    for (long i = 0; i < n; i++) out[i] = float_to_bfloat16(inp[i]);
}

/* ---- linear layers ---------------------------------------------------------- */

void cpu_matmul_forward_bf16(uint16_t *out, const uint16_t *inp, const uint16_t *weight,
                             const float *bias, int N, int C, int OC) {
    const long in_count = (long)N * C, weight_count = (long)OC * C, out_count = (long)N * OC;
    float *inp32, *weight32, *out32;   /* [N, C], [OC, C], [N, OC] */
    scratch_views("matmul_forward", 3, (size_t[]){in_count, weight_count, out_count},
                  (float **[]){&inp32, &weight32, &out32});
    widen(inp32, inp, in_count);
    widen(weight32, weight, weight_count);
    cpu_matmul_forward(out32, inp32, weight32, bias, N, C, OC);
    cpu_cast_to_bf16(out, out32, out_count);
    scratch_release();
}

void cpu_matmul_backward_bf16(uint16_t *dinp, float *dweight, float *dbias, const uint16_t *dout,
                              const uint16_t *inp, const uint16_t *weight, int N, int C, int OC) {
    const long in_count = (long)N * C, out_count = (long)N * OC;
    const long weight_count = dinp ? (long)OC * C : 0, dinp_count = dinp ? in_count : 0;
    float *dout32, *inp32, *weight32, *dinp32;   /* [N, OC], [N, C], [OC, C], [N, C]; the last two only with dinp */
    scratch_views("matmul_backward", 4, (size_t[]){out_count, in_count, weight_count, dinp_count},
                  (float **[]){&dout32, &inp32, &weight32, &dinp32});
    widen(dout32, dout, out_count);
    widen(inp32, inp, in_count);
    if (dinp) {
        widen(weight32, weight, weight_count);
        zero_floats(dinp32, dinp_count);
    }
    cpu_matmul_backward(dinp32, dweight, dbias, dout32, inp32, weight32, N, C, OC);
    if (dinp) add_rounded(dinp, dinp32, dinp_count);
    scratch_release();
}

/* ---- normalisation ---------------------------------------------------------- */

void cpu_layernorm_forward_bf16(uint16_t *out, float *mean, float *rstd, const float *inp,
                                const float *weight, const float *bias, int N, int C, float eps) {
    const long count = (long)N * C;
    float *out32;   /* [N, C] */
    scratch_views("layernorm_forward", 1, (size_t[]){count}, (float **[]){&out32});
    cpu_layernorm_forward(out32, mean, rstd, inp, weight, bias, N, C, eps);
    cpu_cast_to_bf16(out, out32, count);
    scratch_release();
}

void cpu_layernorm_backward_bf16(float *dinp, float *dweight, float *dbias, const uint16_t *dout,
                                 const float *inp, const float *weight, const float *mean,
                                 const float *rstd, int N, int C) {
    const long count = (long)N * C;
    float *dout32;   /* [N, C] */
    scratch_views("layernorm_backward", 1, (size_t[]){count}, (float **[]){&dout32});
    widen(dout32, dout, count);
    cpu_layernorm_backward(dinp, dweight, dbias, dout32, inp, weight, mean, rstd, N, C);
    scratch_release();
}

/* ---- attention -------------------------------------------------------------- */

void cpu_attention_forward_bf16(uint16_t *out, float *lse, const uint16_t *qkv, const float *sin,
                                const float *cos, int B, int T, int prefix, int H, int Dh) {
    const long out_count = (long)B * T * H * Dh, qkv_count = 3 * out_count;
    float *qkv32, *out32;   /* [B, T, 3, H, Dh], [B, T, H, Dh] */
    scratch_views("attention_forward", 2, (size_t[]){qkv_count, out_count}, (float **[]){&qkv32, &out32});
    widen(qkv32, qkv, qkv_count);
    cpu_attention_forward(out32, lse, qkv32, sin, cos, B, T, prefix, H, Dh);
    cpu_cast_to_bf16(out, out32, out_count);
    scratch_release();
}

void cpu_attention_backward_bf16(uint16_t *dqkv, const uint16_t *dout, const uint16_t *qkv,
                                 const uint16_t *out, const float *lse, const float *sin,
                                 const float *cos, int B, int T, int prefix, int H, int Dh) {
    const long out_count = (long)B * T * H * Dh, qkv_count = 3 * out_count;
    float *dout32, *qkv32, *out32, *dqkv32;   /* [B, T, H, Dh], [B, T, 3, H, Dh], [B, T, H, Dh], [B, T, 3, H, Dh] */
    scratch_views("attention_backward", 4, (size_t[]){out_count, qkv_count, out_count, qkv_count},
                  (float **[]){&dout32, &qkv32, &out32, &dqkv32});
    widen(dout32, dout, out_count);
    widen(qkv32, qkv, qkv_count);
    widen(out32, out, out_count);
    zero_floats(dqkv32, qkv_count);
    cpu_attention_backward(dqkv32, dout32, qkv32, out32, lse, sin, cos, B, T, prefix, H, Dh);
    add_rounded(dqkv, dqkv32, qkv_count);
    scratch_release();
}

/* ---- pointwise ---------------------------------------------------------------- */

void cpu_gelu_forward_bf16(uint16_t *out, const uint16_t *inp, long n) {
    float *inp32, *out32;   /* [n], [n] */
    scratch_views("gelu_forward", 2, (size_t[]){n, n}, (float **[]){&inp32, &out32});
    widen(inp32, inp, n);
    cpu_gelu_forward(out32, inp32, n);
    cpu_cast_to_bf16(out, out32, n);
    scratch_release();
}

void cpu_gelu_backward_bf16(uint16_t *dinp, const uint16_t *dout, const uint16_t *inp, long n) {
    float *dout32, *inp32, *dinp32;   /* [n] each */
    scratch_views("gelu_backward", 3, (size_t[]){n, n, n}, (float **[]){&dout32, &inp32, &dinp32});
    widen(dout32, dout, n);
    widen(inp32, inp, n);
    zero_floats(dinp32, n);
    cpu_gelu_backward(dinp32, dout32, inp32, n);
    add_rounded(dinp, dinp32, n);
    scratch_release();
}

void cpu_swiglu_forward_bf16(uint16_t *out, const uint16_t *inp, int N, int F) {
    const long out_count = (long)N * F, in_count = 2 * out_count;
    float *inp32, *out32;   /* [N, 2F], [N, F] */
    scratch_views("swiglu_forward", 2, (size_t[]){in_count, out_count}, (float **[]){&inp32, &out32});
    widen(inp32, inp, in_count);
    cpu_swiglu_forward(out32, inp32, N, F);
    cpu_cast_to_bf16(out, out32, out_count);
    scratch_release();
}

void cpu_swiglu_backward_bf16(uint16_t *dinp, const uint16_t *dout, const uint16_t *inp, int N, int F) {
    const long out_count = (long)N * F, in_count = 2 * out_count;
    float *dout32, *inp32, *dinp32;   /* [N, F], [N, 2F], [N, 2F] */
    scratch_views("swiglu_backward", 3, (size_t[]){out_count, in_count, in_count},
                  (float **[]){&dout32, &inp32, &dinp32});
    widen(dout32, dout, out_count);
    widen(inp32, inp, in_count);
    zero_floats(dinp32, in_count);
    cpu_swiglu_backward(dinp32, dout32, inp32, N, F);
    add_rounded(dinp, dinp32, in_count);
    scratch_release();
}

void cpu_layerscale_residual_forward_bf16(float *out, const float *res, const uint16_t *y,
                                          const float *gamma, int N, int C) {
    const long count = (long)N * C;
    float *y32;   /* [N, C] */
    scratch_views("layerscale_residual_forward", 1, (size_t[]){count}, (float **[]){&y32});
    widen(y32, y, count);
    cpu_layerscale_residual_forward(out, res, y32, gamma, N, C);
    scratch_release();
}

void cpu_layerscale_residual_backward_bf16(float *dres, uint16_t *dy, float *dgamma, const float *dout,
                                           const uint16_t *y, const float *gamma, int N, int C) {
    const long count = (long)N * C;
    float *y32, *dy32;   /* [N, C], [N, C] */
    scratch_views("layerscale_residual_backward", 2, (size_t[]){count, count}, (float **[]){&y32, &dy32});
    widen(y32, y, count);
    zero_floats(dy32, count);
    cpu_layerscale_residual_backward(dres, dy32, dgamma, dout, y32, gamma, N, C);
    add_rounded(dy, dy32, count);
    scratch_release();
}

/*
 * op_tolerances.h - the tolerances and op constants of the op tests, each
 * with the reason for its size (shared by test_ops.c and the op checks
 * split out of it).
 */
#ifndef DD_TESTS_NN_OP_TOLERANCES_H
#define DD_TESTS_NN_OP_TOLERANCES_H

/* ---- tolerances ------------------------------------------------------------ */

/* Ops that only move values (copies, patchify, tokens) must be exact. */
#define EXACT 0.0
/* An fp32 op rounds each value at 2^-24 ~ 6e-8 relative; a reduction over K
 * terms adds up to ~K * 6e-8 in the worst case and ~sqrt(K) * 6e-8 typically,
 * relative to the largest output. 1e-5 covers the small shapes (K <= 33). */
#define FP32_TOLERANCE 1e-5
/* Long reductions of the realistic shapes (K = 384 and 1536 features of a
 * matmul, T = 201 keys of attention): blocked BLAS sums and contracted FMAs
 * stay near sqrt(K) * 6e-8, but the worst-case bound K * 6e-8 reaches 9e-5
 * for K = 1536, so the bound is loosened to 5e-5 (measured values are
 * printed; they sit far below it). */
#define FP32_LONG_REDUCTION_TOLERANCE 5e-5
/* Softmax of logits of magnitude up to ~150 (the "large logits" attention
 * case): the fp32 rounding of a logit s, ~|s| * 6e-8 ~ 1e-5, becomes a
 * relative error of the same size in exp(s) and so in probs and out. */
#define LARGE_LOGIT_TOLERANCE 1e-4
/* sum_squares returns a double and backend.h asks for double precision:
 * an fp32 accumulator misses by ~1e-7 (pairwise) to ~1e-5 (sequential) on a
 * million values; fp32-rounded squares with random rounding signs stay
 * near 6e-8 / sqrt(n). */
#define SUM_SQUARES_TOLERANCE 1e-8
/* rope_tables rounds a double sin or cos of magnitude <= 1 to fp32: at most
 * 2^-25 ~ 3e-8 off, well under 1e-7 (angles computed in fp32 would not be). */
#define ROPE_TABLE_TOLERANCE 1e-7

/* Constants the ops take as arguments. */
#define LAYERNORM_EPS 1e-5f
#define ROPE_BASE 100.0
#define ROPE_RESCALE 1.37   /* one of the training-time rescales in [0.5, 2] */
#define SCALE_FACTOR -0.37f

#endif

/*
 * test_ops.c - every op of the NnBackend table, on every backend, against
 * the float64 oracle of reference_ops.c (in the style of ggml's
 * test-backend-ops).
 *
 * OP_TABLE below is the one list of ops: each entry names the op, its shape
 * cases and the function that checks one shape. Every entry becomes one test
 * case per backend ("matmul_forward/cpu", "matmul_forward/cuda"); a cuda case
 * reports "skipped" with the reason when the build or machine has none.
 * For each shape a check:
 *   - draws seeded random inputs (the same on every backend), copies them to
 *     the backend, runs the op, copies the results back and compares them
 *     with the float64 reference: relative error = max abs difference / max
 *     abs reference, INFINITY when anything is NaN or Inf;
 *   - fills forward outputs with NaN beforehand, so an element the op does
 *     not write fails the comparison, and fills gradient buffers with random
 *     values, so a backward that overwrites instead of accumulating fails
 *     (the gradient is compared as "value after - value before");
 *   - for backward ops, checks the float64 reference backward (and so,
 *     through the comparison above, the op) against central finite
 *     differences of the float64 reference forward on the scalar loss
 *     L = sum(out * dout), dout being the op's random dout.
 * Each case prints one line with the measured errors of each shape, then the
 * harness prints "ok" or "FAIL" for the case; every failed comparison is
 * also printed on its own line. The machinery (test tensors, comparisons,
 * finite differences, the loop over shapes) is in op_check.c; this file
 * holds the checks, the shape cases and the table.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nn/backend.h"
#include "nn/rope.h"
#include "tests/nn/op_check.h"
#include "tests/nn/reference_ops.h"
#include "tests/test.h"

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

/* ---- the checks: one per op, each runs one shape on one backend ------------- */

static void check_memory(OpRun *run) {
    const NnBackend *be = run->be;
    const long n = run->shape->n;
    const size_t bytes = (size_t)n * sizeof(float);

    /* alloc is zero-filled */
    TestTensor *fresh = new_tensor(run, "alloc (zero-filled)", n);
    for (long i = 0; i < n; i++) fresh->host[i] = NAN;
    expect_close(run, fresh);

    /* copy_to_device then copy_to_host: source is uploaded by input_tensor */
    TestTensor *source = input_tensor(run, "copy_to_device + copy_to_host", n);
    expect_close(run, source);

    /* copy (device to device) into a NaN-filled buffer */
    TestTensor *copy = output_tensor(run, "copy", n);
    be->copy(copy->device, source->device, bytes);
    memcpy(copy->ref, source->ref, (size_t)n * sizeof(double));
    expect_close(run, copy);

    /* zero of the tail only: the head must survive */
    const long head = n / 3;
    be->zero(copy->device + head, (size_t)(n - head) * sizeof(float));
    for (long i = head; i < n; i++) copy->ref[i] = 0.0;
    copy->name = "zero (tail of the buffer)";
    expect_close(run, copy);
}

static void check_matmul_forward(OpRun *run) {
    const OpShape *s = run->shape;
    TestTensor *inp = input_tensor(run, "inp", (long)s->N * s->C);          /* [N, C] */
    TestTensor *weight = input_tensor(run, "weight", (long)s->OC * s->C);   /* [OC, C] */
    TestTensor *bias = input_tensor(run, "bias", s->OC);                    /* [OC] */
    TestTensor *out = output_tensor(run, "out", (long)s->N * s->OC);        /* [N, OC] */
    TestTensor *out_no_bias = output_tensor(run, "out (bias NULL)", (long)s->N * s->OC);

    ref_matmul_forward(out->ref, inp->ref, weight->ref, bias->ref, s->N, s->C, s->OC);
    run->be->matmul_forward(out->device, inp->device, weight->device, bias->device,
                            s->N, s->C, s->OC);
    expect_close(run, out);

    ref_matmul_forward(out_no_bias->ref, inp->ref, weight->ref, NULL, s->N, s->C, s->OC);
    run->be->matmul_forward(out_no_bias->device, inp->device, weight->device, NULL,
                            s->N, s->C, s->OC);
    expect_close(run, out_no_bias);
}

/* inputs: inp, weight, bias */
static void matmul_loss_forward(const LossFunction *loss, double *out) {
    const OpShape *s = loss->shape;
    ref_matmul_forward(out, loss->inputs[0]->ref, loss->inputs[1]->ref, loss->inputs[2]->ref,
                       s->N, s->C, s->OC);
}

static void check_matmul_backward(OpRun *run) {
    const OpShape *s = run->shape;
    const NnBackend *be = run->be;
    TestTensor *inp = input_tensor(run, "inp", (long)s->N * s->C);          /* [N, C] */
    TestTensor *weight = input_tensor(run, "weight", (long)s->OC * s->C);   /* [OC, C] */
    TestTensor *bias = input_tensor(run, "bias", s->OC);                    /* [OC] */
    TestTensor *dout = input_tensor(run, "dout", (long)s->N * s->OC);       /* [N, OC] */
    TestTensor *dinp = gradient_tensor(run, "dinp", inp->count);            /* [N, C] */
    TestTensor *dweight = gradient_tensor(run, "dweight", weight->count);   /* [OC, C] */
    TestTensor *dbias = gradient_tensor(run, "dbias", bias->count);         /* [OC] */

    ref_matmul_backward(dinp->ref, dweight->ref, dbias->ref, dout->ref, inp->ref, weight->ref,
                        s->N, s->C, s->OC);
    be->matmul_backward(dinp->device, dweight->device, dbias->device, dout->device,
                        inp->device, weight->device, s->N, s->C, s->OC);
    expect_change(run, dinp);
    expect_change(run, dweight);
    expect_change(run, dbias);

    TestTensor *inputs[] = {inp, weight, bias};
    const LossFunction loss = {matmul_loss_forward, s, inputs, 3, dout->ref, dout->count, NULL};
    const double *gradients[] = {reference_change(run, dinp), reference_change(run, dweight),
                                 reference_change(run, dbias)};
    expect_finite_differences(run, &loss, gradients);

    /* dinp and dbias NULL: only dweight is written */
    TestTensor *dweight_only = gradient_tensor(run, "dweight (dinp, dbias NULL)", weight->count);
    ref_matmul_backward(NULL, dweight_only->ref, NULL, dout->ref, inp->ref, weight->ref,
                        s->N, s->C, s->OC);
    be->matmul_backward(NULL, dweight_only->device, NULL, dout->device, inp->device,
                        weight->device, s->N, s->C, s->OC);
    expect_change(run, dweight_only);
}

static void check_patchify(OpRun *run) {
    const OpShape *s = run->shape;
    const int Hp = s->image_height / s->P, Wp = s->image_width / s->P;
    TestTensor *images = input_tensor(run, "images",   /* [B, C, H, W] */
                                      (long)s->B * s->C * s->image_height * s->image_width);
    TestTensor *patches = output_tensor(run, "patches",   /* [B, Hp*Wp, C*P*P] */
                                        (long)s->B * Hp * Wp * s->C * s->P * s->P);
    ref_patchify(patches->ref, images->ref, s->B, s->C, s->image_height, s->image_width, s->P);
    run->be->patchify(patches->device, images->device, s->B, s->C, s->image_height,
                      s->image_width, s->P);
    expect_close(run, patches);
}

/* mask[B, Np] with about half the patches masked, and in every image at least
 * one masked and one kept patch (Np >= 2). */
typedef struct TokenMask {
    uint8_t *host;
    uint8_t *device;
} TokenMask;

static TokenMask random_token_mask(OpRun *run) {
    const OpShape *s = run->shape;
    const size_t bytes = (size_t)s->B * s->Np;
    TokenMask mask = {host_block(run, bytes), device_block(run, bytes)};
    for (int b = 0; b < s->B; b++)
        for (int p = 0; p < s->Np; p++)
            mask.host[(long)b * s->Np + p] =
                p == 0 ? 1 : p == 1 ? 0 : (uint8_t)(rng_uniform(&run->rng, 0, 1) < 0.5);
    run->be->copy_to_device(mask.device, mask.host, bytes);
    return mask;
}

static void check_tokens_forward(OpRun *run) {
    const OpShape *s = run->shape;
    const int T = 1 + s->R + s->Np;
    TestTensor *patch_emb = input_tensor(run, "patch_emb", (long)s->B * s->Np * s->D);
    TestTensor *cls = input_tensor(run, "cls", s->D);                      /* [D] */
    TestTensor *reg = input_tensor(run, "reg", (long)s->R * s->D);         /* [R, D] */
    TestTensor *mask_token = input_tensor(run, "mask_token", s->D);        /* [D] */
    const TokenMask mask = random_token_mask(run);                        /* [B, Np] */

    for (int masked = 0; masked <= 1; masked++) {
        run->variant = masked ? "with mask" : "mask NULL";
        TestTensor *tokens = output_tensor(run, "tokens", (long)s->B * T * s->D);   /* [B, T, D] */
        ref_tokens_forward(tokens->ref, patch_emb->ref, cls->ref, reg->ref, mask_token->ref,
                           masked ? mask.host : NULL, s->B, s->Np, s->R, s->D);
        run->be->tokens_forward(tokens->device, patch_emb->device, cls->device, reg->device,
                                mask_token->device, masked ? mask.device : NULL,
                                s->B, s->Np, s->R, s->D);
        expect_close(run, tokens);
    }
    run->variant = NULL;
}

/* inputs: patch_emb, cls, reg, mask_token; context: the host mask or NULL */
static void tokens_loss_forward(const LossFunction *loss, double *out) {
    const OpShape *s = loss->shape;
    ref_tokens_forward(out, loss->inputs[0]->ref, loss->inputs[1]->ref, loss->inputs[2]->ref,
                       loss->inputs[3]->ref, loss->context, s->B, s->Np, s->R, s->D);
}

static void check_tokens_backward(OpRun *run) {
    const OpShape *s = run->shape;
    const int T = 1 + s->R + s->Np;
    TestTensor *patch_emb = input_tensor(run, "patch_emb", (long)s->B * s->Np * s->D);
    TestTensor *cls = input_tensor(run, "cls", s->D);                           /* [D] */
    TestTensor *reg = input_tensor(run, "reg", (long)s->R * s->D);              /* [R, D] */
    TestTensor *mask_token = input_tensor(run, "mask_token", s->D);             /* [D] */
    TestTensor *dtokens = input_tensor(run, "dtokens", (long)s->B * T * s->D);  /* [B, T, D] */
    const TokenMask mask = random_token_mask(run);                             /* [B, Np] */

    for (int masked = 0; masked <= 1; masked++) {
        run->variant = masked ? "with mask" : "mask NULL, dmask_token NULL";
        TestTensor *dpatch_emb = gradient_tensor(run, "dpatch_emb", patch_emb->count);
        TestTensor *dcls = gradient_tensor(run, "dcls", cls->count);
        TestTensor *dreg = gradient_tensor(run, "dreg", reg->count);
        TestTensor *dmask_token = masked ? gradient_tensor(run, "dmask_token", s->D) : NULL;
        ref_tokens_backward(dpatch_emb->ref, dcls->ref, dreg->ref,
                            masked ? dmask_token->ref : NULL, dtokens->ref,
                            masked ? mask.host : NULL, s->B, s->Np, s->R, s->D);
        run->be->tokens_backward(dpatch_emb->device, dcls->device, dreg->device,
                                 masked ? dmask_token->device : NULL, dtokens->device,
                                 masked ? mask.device : NULL, s->B, s->Np, s->R, s->D);
        expect_change(run, dpatch_emb);
        expect_change(run, dcls);
        expect_change(run, dreg);
        if (masked) expect_change(run, dmask_token);

        TestTensor *inputs[] = {patch_emb, cls, reg, mask_token};
        const LossFunction loss = {tokens_loss_forward, s, inputs, 4, dtokens->ref,
                                   dtokens->count, masked ? mask.host : NULL};
        const double *gradients[] = {reference_change(run, dpatch_emb),
                                     reference_change(run, dcls), reference_change(run, dreg),
                                     masked ? reference_change(run, dmask_token) : NULL};
        expect_finite_differences(run, &loss, gradients);
    }
    run->variant = NULL;
}

static void check_layernorm_forward(OpRun *run) {
    const OpShape *s = run->shape;
    TestTensor *inp = input_tensor(run, "inp", (long)s->N * s->C);   /* [N, C] */
    TestTensor *weight = input_tensor(run, "weight", s->C);          /* [C] */
    TestTensor *bias = input_tensor(run, "bias", s->C);              /* [C] */
    TestTensor *out = output_tensor(run, "out", inp->count);         /* [N, C] */
    TestTensor *mean = output_tensor(run, "mean", s->N);             /* [N] */
    TestTensor *rstd = output_tensor(run, "rstd", s->N);             /* [N] */
    ref_layernorm_forward(out->ref, mean->ref, rstd->ref, inp->ref, weight->ref, bias->ref,
                          s->N, s->C, LAYERNORM_EPS);
    run->be->layernorm_forward(out->device, mean->device, rstd->device, inp->device,
                               weight->device, bias->device, s->N, s->C, LAYERNORM_EPS);
    expect_close(run, out);
    expect_close(run, mean);
    expect_close(run, rstd);
}

/* inputs: inp, weight, bias; context: scratch for mean and rstd [2, N] */
static void layernorm_loss_forward(const LossFunction *loss, double *out) {
    const OpShape *s = loss->shape;
    double *mean = loss->context, *rstd = mean + s->N;
    ref_layernorm_forward(out, mean, rstd, loss->inputs[0]->ref, loss->inputs[1]->ref,
                          loss->inputs[2]->ref, s->N, s->C, LAYERNORM_EPS);
}

static void check_layernorm_backward(OpRun *run) {
    const OpShape *s = run->shape;
    TestTensor *inp = input_tensor(run, "inp", (long)s->N * s->C);   /* [N, C] */
    TestTensor *weight = input_tensor(run, "weight", s->C);          /* [C] */
    TestTensor *bias = input_tensor(run, "bias", s->C);              /* [C] */
    TestTensor *dout = input_tensor(run, "dout", inp->count);        /* [N, C] */
    double *saved = host_block(run, sizeof(double) * 2 * s->N);      /* mean, rstd [2, N] */
    double *forward_out = host_block(run, sizeof(double) * inp->count);
    ref_layernorm_forward(forward_out, saved, saved + s->N, inp->ref, weight->ref, bias->ref,
                          s->N, s->C, LAYERNORM_EPS);
    TestTensor *mean = tensor_from_doubles(run, "mean", saved, s->N);          /* [N] */
    TestTensor *rstd = tensor_from_doubles(run, "rstd", saved + s->N, s->N);   /* [N] */
    TestTensor *dinp = gradient_tensor(run, "dinp", inp->count);               /* [N, C] */
    TestTensor *dweight = gradient_tensor(run, "dweight", s->C);               /* [C] */
    TestTensor *dbias = gradient_tensor(run, "dbias", s->C);                   /* [C] */

    ref_layernorm_backward(dinp->ref, dweight->ref, dbias->ref, dout->ref, inp->ref,
                           weight->ref, mean->ref, rstd->ref, s->N, s->C);
    run->be->layernorm_backward(dinp->device, dweight->device, dbias->device, dout->device,
                                inp->device, weight->device, mean->device, rstd->device,
                                s->N, s->C);
    expect_change(run, dinp);
    expect_change(run, dweight);
    expect_change(run, dbias);

    TestTensor *inputs[] = {inp, weight, bias};
    const LossFunction loss = {layernorm_loss_forward, s, inputs, 3, dout->ref, dout->count,
                               host_block(run, sizeof(double) * 2 * s->N)};
    const double *gradients[] = {reference_change(run, dinp), reference_change(run, dweight),
                                 reference_change(run, dbias)};
    expect_finite_differences(run, &loss, gradients);
}

/* sin, cos [Hp*Wp, Dh] from nn/rope.h (or random), as tensors. */
static void rope_table_tensors(OpRun *run, TestTensor **sin, TestTensor **cos) {
    const OpShape *s = run->shape;
    CHECK(s->Hp * s->Wp == s->T - s->prefix, "shape table: rope needs Hp * Wp = T - prefix");
    const long count = (long)s->Hp * s->Wp * s->Dh;
    if (s->random_rope_tables) {
        *sin = random_tensor(run, "sin", count, -1.0, 1.0);
        *cos = random_tensor(run, "cos", count, -1.0, 1.0);
        return;
    }
    float *sin_host = host_block(run, sizeof(float) * count);
    float *cos_host = host_block(run, sizeof(float) * count);
    rope_tables(sin_host, cos_host, s->Hp, s->Wp, s->Dh, ROPE_BASE, ROPE_RESCALE);
    *sin = tensor_from_floats(run, "sin", sin_host, count);
    *cos = tensor_from_floats(run, "cos", cos_host, count);
}

static long qkv_count(const OpShape *s) { return (long)s->B * s->T * 3 * s->H * s->Dh; }

static void check_rope_forward(OpRun *run) {
    const OpShape *s = run->shape;
    TestTensor *sin, *cos;                                         /* [T - prefix, Dh] */
    rope_table_tensors(run, &sin, &cos);
    TestTensor *qkv = input_tensor(run, "qkv", qkv_count(s));      /* [B, T, 3, H, Dh] */
    ref_rope_forward(qkv->ref, sin->ref, cos->ref, s->B, s->T, s->prefix, s->H, s->Dh);
    run->be->rope_forward(qkv->device, sin->device, cos->device, s->B, s->T, s->prefix,
                          s->H, s->Dh);
    expect_close(run, qkv);
}

/* inputs: qkv, sin, cos */
static void rope_loss_forward(const LossFunction *loss, double *out) {
    const OpShape *s = loss->shape;
    memcpy(out, loss->inputs[0]->ref, sizeof(double) * loss->out_count);
    ref_rope_forward(out, loss->inputs[1]->ref, loss->inputs[2]->ref, s->B, s->T, s->prefix,
                     s->H, s->Dh);
}

static void check_rope_backward(OpRun *run) {
    const OpShape *s = run->shape;
    TestTensor *sin, *cos;                                         /* [T - prefix, Dh] */
    rope_table_tensors(run, &sin, &cos);
    TestTensor *qkv = input_tensor(run, "qkv", qkv_count(s));      /* [B, T, 3, H, Dh] */
    /* in place: dout in, gradient out; rope_backward overwrites, so the
     * values (not the change) are compared */
    TestTensor *dqkv = input_tensor(run, "dqkv", qkv_count(s));    /* [B, T, 3, H, Dh] */
    ref_rope_backward(dqkv->ref, sin->ref, cos->ref, s->B, s->T, s->prefix, s->H, s->Dh);
    run->be->rope_backward(dqkv->device, sin->device, cos->device, s->B, s->T, s->prefix,
                           s->H, s->Dh);
    expect_close(run, dqkv);

    TestTensor *inputs[] = {qkv, sin, cos};
    const LossFunction loss = {rope_loss_forward, s, inputs, 3, dqkv->initial, dqkv->count, NULL};
    const double *gradients[] = {dqkv->ref, NULL, NULL};
    expect_finite_differences(run, &loss, gradients);
}

static void check_attention_forward(OpRun *run) {
    const OpShape *s = run->shape;
    /* qkv [B, T, 3, H, Dh] -> out [B, T, H, Dh], probs [B, H, T, T] */
    TestTensor *qkv = input_tensor(run, "qkv", qkv_count(s));
    TestTensor *out = output_tensor(run, "out", (long)s->B * s->T * s->H * s->Dh);
    TestTensor *probs = output_tensor(run, "probs", (long)s->B * s->H * s->T * s->T);
    ref_attention_forward(out->ref, probs->ref, qkv->ref, s->B, s->T, s->H, s->Dh);
    run->be->attention_forward(out->device, probs->device, qkv->device, s->B, s->T, s->H, s->Dh);
    expect_close(run, out);
    expect_close(run, probs);
}

/* inputs: qkv; context: scratch for probs [B, H, T, T] */
static void attention_loss_forward(const LossFunction *loss, double *out) {
    const OpShape *s = loss->shape;
    ref_attention_forward(out, loss->context, loss->inputs[0]->ref, s->B, s->T, s->H, s->Dh);
}

static void check_attention_backward(OpRun *run) {
    const OpShape *s = run->shape;
    const long out_count = (long)s->B * s->T * s->H * s->Dh;
    const long probs_count = (long)s->B * s->H * s->T * s->T;
    TestTensor *qkv = input_tensor(run, "qkv", qkv_count(s));      /* [B, T, 3, H, Dh] */
    TestTensor *dout = input_tensor(run, "dout", out_count);       /* [B, T, H, Dh] */
    double *forward_out = host_block(run, sizeof(double) * out_count);
    double *saved_probs = host_block(run, sizeof(double) * probs_count);
    ref_attention_forward(forward_out, saved_probs, qkv->ref, s->B, s->T, s->H, s->Dh);
    TestTensor *probs = tensor_from_doubles(run, "probs", saved_probs, probs_count);
    TestTensor *dqkv = gradient_tensor(run, "dqkv", qkv->count);   /* [B, T, 3, H, Dh] */

    ref_attention_backward(dqkv->ref, dout->ref, qkv->ref, probs->ref, s->B, s->T, s->H, s->Dh);
    run->be->attention_backward(dqkv->device, dout->device, qkv->device, probs->device,
                                s->B, s->T, s->H, s->Dh);
    expect_change(run, dqkv);

    TestTensor *inputs[] = {qkv};
    const LossFunction loss = {attention_loss_forward, s, inputs, 1, dout->ref, out_count,
                               host_block(run, sizeof(double) * probs_count)};
    const double *gradients[] = {reference_change(run, dqkv)};
    expect_finite_differences(run, &loss, gradients);
}

static void check_gelu_forward(OpRun *run) {
    const long n = run->shape->n;
    TestTensor *inp = input_tensor(run, "inp", n);    /* [n] */
    TestTensor *out = output_tensor(run, "out", n);   /* [n] */
    ref_gelu_forward(out->ref, inp->ref, n);
    run->be->gelu_forward(out->device, inp->device, n);
    expect_close(run, out);
}

/* inputs: inp */
static void gelu_loss_forward(const LossFunction *loss, double *out) {
    ref_gelu_forward(out, loss->inputs[0]->ref, loss->shape->n);
}

static void check_gelu_backward(OpRun *run) {
    const long n = run->shape->n;
    TestTensor *inp = input_tensor(run, "inp", n);      /* [n] */
    TestTensor *dout = input_tensor(run, "dout", n);    /* [n] */
    TestTensor *dinp = gradient_tensor(run, "dinp", n);   /* [n] */
    ref_gelu_backward(dinp->ref, dout->ref, inp->ref, n);
    run->be->gelu_backward(dinp->device, dout->device, inp->device, n);
    expect_change(run, dinp);

    TestTensor *inputs[] = {inp};
    const LossFunction loss = {gelu_loss_forward, run->shape, inputs, 1, dout->ref, n, NULL};
    const double *gradients[] = {reference_change(run, dinp)};
    expect_finite_differences(run, &loss, gradients);
}

static void check_swiglu_forward(OpRun *run) {
    const OpShape *s = run->shape;
    TestTensor *inp = input_tensor(run, "inp", (long)s->N * 2 * s->F);   /* [N, 2F] gate, up */
    TestTensor *out = output_tensor(run, "out", (long)s->N * s->F);      /* [N, F] */
    ref_swiglu_forward(out->ref, inp->ref, s->N, s->F);
    run->be->swiglu_forward(out->device, inp->device, s->N, s->F);
    expect_close(run, out);
}

/* inputs: inp */
static void swiglu_loss_forward(const LossFunction *loss, double *out) {
    ref_swiglu_forward(out, loss->inputs[0]->ref, loss->shape->N, loss->shape->F);
}

static void check_swiglu_backward(OpRun *run) {
    const OpShape *s = run->shape;
    TestTensor *inp = input_tensor(run, "inp", (long)s->N * 2 * s->F);     /* [N, 2F] */
    TestTensor *dout = input_tensor(run, "dout", (long)s->N * s->F);       /* [N, F] */
    TestTensor *dinp = gradient_tensor(run, "dinp", inp->count);           /* [N, 2F] */
    ref_swiglu_backward(dinp->ref, dout->ref, inp->ref, s->N, s->F);
    run->be->swiglu_backward(dinp->device, dout->device, inp->device, s->N, s->F);
    expect_change(run, dinp);

    TestTensor *inputs[] = {inp};
    const LossFunction loss = {swiglu_loss_forward, s, inputs, 1, dout->ref, dout->count, NULL};
    const double *gradients[] = {reference_change(run, dinp)};
    expect_finite_differences(run, &loss, gradients);
}

static void check_layerscale_residual_forward(OpRun *run) {
    const OpShape *s = run->shape;
    TestTensor *res = input_tensor(run, "res", (long)s->N * s->C);   /* [N, C] */
    TestTensor *y = input_tensor(run, "y", res->count);              /* [N, C] */
    TestTensor *gamma = input_tensor(run, "gamma", s->C);            /* [C] */
    TestTensor *out = output_tensor(run, "out", res->count);         /* [N, C] */
    ref_layerscale_residual_forward(out->ref, res->ref, y->ref, gamma->ref, s->N, s->C);
    run->be->layerscale_residual_forward(out->device, res->device, y->device, gamma->device,
                                         s->N, s->C);
    expect_close(run, out);
}

/* inputs: res, y, gamma */
static void layerscale_residual_loss_forward(const LossFunction *loss, double *out) {
    ref_layerscale_residual_forward(out, loss->inputs[0]->ref, loss->inputs[1]->ref,
                                    loss->inputs[2]->ref, loss->shape->N, loss->shape->C);
}

static void check_layerscale_residual_backward(OpRun *run) {
    const OpShape *s = run->shape;
    TestTensor *res = input_tensor(run, "res", (long)s->N * s->C);   /* [N, C] */
    TestTensor *y = input_tensor(run, "y", res->count);              /* [N, C] */
    TestTensor *gamma = input_tensor(run, "gamma", s->C);            /* [C] */
    TestTensor *dout = input_tensor(run, "dout", res->count);        /* [N, C] */
    TestTensor *dres = gradient_tensor(run, "dres", res->count);     /* [N, C] */
    TestTensor *dy = gradient_tensor(run, "dy", res->count);         /* [N, C] */
    TestTensor *dgamma = gradient_tensor(run, "dgamma", s->C);       /* [C] */
    ref_layerscale_residual_backward(dres->ref, dy->ref, dgamma->ref, dout->ref, y->ref,
                                     gamma->ref, s->N, s->C);
    run->be->layerscale_residual_backward(dres->device, dy->device, dgamma->device,
                                          dout->device, y->device, gamma->device, s->N, s->C);
    expect_change(run, dres);
    expect_change(run, dy);
    expect_change(run, dgamma);
    /* dout is an input: it must come back unchanged */
    dout->name = "dout (unchanged)";
    expect_close(run, dout);

    TestTensor *inputs[] = {res, y, gamma};
    const LossFunction loss = {layerscale_residual_loss_forward, s, inputs, 3, dout->ref,
                               dout->count, NULL};
    const double *gradients[] = {reference_change(run, dres), reference_change(run, dy),
                                 reference_change(run, dgamma)};
    expect_finite_differences(run, &loss, gradients);
}

static void check_adamw_update(OpRun *run) {
    /* A large lr makes the update (about lr) large against the fp32 rounding
     * of the parameters (about 6e-8); eps = 1e-3 is of the order of
     * sqrt(v_hat), so where eps goes (inside or outside the root) matters. */
    const float lr = 0.1f, beta1 = 0.9f, beta2 = 0.999f, eps = 1e-3f, weight_decay = 0.04f;
    const long n = run->shape->n;
    TestTensor *params = input_tensor(run, "params (update)", n);   /* [n] */
    TestTensor *grads = random_tensor(run, "grads", n, -1e-2, 1e-2);
    TestTensor *m = random_tensor(run, "m", n, -1e-2, 1e-2);
    TestTensor *v = random_tensor(run, "v", n, 0.0, 1e-4);
    ref_adamw_update(params->ref, grads->ref, m->ref, v->ref, n, lr, beta1, beta2, eps,
                     weight_decay, run->shape->step);
    run->be->adamw_update(params->device, grads->device, m->device, v->device, n, lr, beta1,
                          beta2, eps, weight_decay, run->shape->step);
    expect_change(run, params);
    expect_close(run, m);
    expect_close(run, v);
    grads->name = "grads (unchanged)";
    expect_close(run, grads);
}

static void check_sum_squares(OpRun *run) {
    const long n = run->shape->n;
    TestTensor *x = input_tensor(run, "x", n);   /* [n] */
    const double expected = ref_sum_squares(x->ref, n);
    const double found = run->be->sum_squares(x->device, n);
    record_error(run, "sum", isfinite(found) ? fabs(found - expected) / expected : INFINITY,
                 run->shape->tolerance, NULL);
}

static void check_scale(OpRun *run) {
    const long n = run->shape->n;
    TestTensor *x = input_tensor(run, "x", n);   /* [n], in place */
    ref_scale(x->ref, SCALE_FACTOR, n);
    run->be->scale(x->device, SCALE_FACTOR, n);
    expect_close(run, x);
}

/* ---- heads, losses, Sinkhorn-Knopp, EMA ---------------------------------------- */

/* A backend may not implement the ops appended for the objective yet
 * (their entries are NULL): the case is skipped and says so. */
#define REQUIRE_OP(run, entry)                                                               \
    do {                                                                                     \
        if (!(run)->be->entry) SKIP("%s has no " #entry " yet", (run)->be->name);             \
    } while (0)

/* Bottleneck normalisation's eps (torch.nn.functional.normalize's default)
 * and KoLeo's; the temperatures of the recipe. */
#define L2NORM_EPS 1e-12f
#define KOLEO_EPS 1e-8f
#define STUDENT_TEMPERATURE 0.1f
#define TEACHER_TEMPERATURE 0.07f
#define EMA_MOMENTUM 0.994f

/* int32 indices in [0, limit), on the host and on the backend. */
typedef struct IndexArray {
    int32_t *host;
    int32_t *device;
} IndexArray;

static IndexArray random_indices(OpRun *run, long count, int limit) {
    const size_t bytes = (size_t)count * sizeof(int32_t);
    IndexArray rows = {host_block(run, bytes), device_block(run, bytes)};
    for (long i = 0; i < count; i++) {
        rows.host[i] = (int32_t)rng_uniform(&run->rng, 0, limit);
        if (rows.host[i] >= limit) rows.host[i] = limit - 1;
    }
    run->be->copy_to_device(rows.device, rows.host, bytes);
    return rows;
}

/* Rows of positive values summing to 1, as Sinkhorn-Knopp's targets. */
static TestTensor *distribution_tensor(OpRun *run, const char *name, int rows, int K) {
    TestTensor *t = new_tensor(run, name, (long)rows * K);
    for (int m = 0; m < rows; m++) {
        double sum = 0.0;
        for (int k = 0; k < K; k++) sum += t->ref[(long)m * K + k] = rng_uniform(&run->rng, 0.0, 1.0);
        for (int k = 0; k < K; k++) t->host[(long)m * K + k] = (float)(t->ref[(long)m * K + k] / sum);
    }
    for (long i = 0; i < t->count; i++) t->ref[i] = t->initial[i] = t->host[i];
    run->be->copy_to_device(t->device, t->host, (size_t)t->count * sizeof(float));
    return t;
}

/* Re-uploads t after its host values were edited, keeping the copies equal. */
static void reupload(OpRun *run, TestTensor *t) {
    for (long i = 0; i < t->count; i++) t->ref[i] = t->initial[i] = t->host[i];
    run->be->copy_to_device(t->device, t->host, (size_t)t->count * sizeof(float));
}

static void check_l2norm_forward(OpRun *run) {
    REQUIRE_OP(run, l2norm_forward);
    const OpShape *s = run->shape;
    TestTensor *inp = input_tensor(run, "inp", (long)s->N * s->C);   /* [N, C] */
    /* the last row is (almost) zero: its norm is clamped to eps */
    for (int c = 0; c < s->C; c++) inp->host[(long)(s->N - 1) * s->C + c] *= 1e-14f;
    reupload(run, inp);
    TestTensor *out = output_tensor(run, "out", inp->count);         /* [N, C] */
    TestTensor *norm = output_tensor(run, "norm", s->N);             /* [N] */
    ref_l2norm_forward(out->ref, norm->ref, inp->ref, s->N, s->C, L2NORM_EPS);
    run->be->l2norm_forward(out->device, norm->device, inp->device, s->N, s->C, L2NORM_EPS);
    expect_close(run, out);
    expect_close(run, norm);

    TestTensor *norm_only = output_tensor(run, "norm (out NULL)", s->N);   /* [N] */
    ref_l2norm_forward(NULL, norm_only->ref, inp->ref, s->N, s->C, L2NORM_EPS);
    run->be->l2norm_forward(NULL, norm_only->device, inp->device, s->N, s->C, L2NORM_EPS);
    expect_close(run, norm_only);
}

/* inputs: inp; context: scratch for norm [N] */
static void l2norm_loss_forward(const LossFunction *loss, double *out) {
    ref_l2norm_forward(out, loss->context, loss->inputs[0]->ref, loss->shape->N, loss->shape->C,
                       L2NORM_EPS);
}

static void check_l2norm_backward(OpRun *run) {
    REQUIRE_OP(run, l2norm_backward);
    const OpShape *s = run->shape;
    TestTensor *inp = input_tensor(run, "inp", (long)s->N * s->C);    /* [N, C] */
    TestTensor *dout = input_tensor(run, "dout", inp->count);         /* [N, C] */
    double *saved = host_block(run, sizeof(double) * s->N);           /* norm [N] */
    ref_l2norm_forward(NULL, saved, inp->ref, s->N, s->C, L2NORM_EPS);
    TestTensor *norm = tensor_from_doubles(run, "norm", saved, s->N);
    TestTensor *dinp = gradient_tensor(run, "dinp", inp->count);      /* [N, C] */
    ref_l2norm_backward(dinp->ref, dout->ref, inp->ref, norm->ref, s->N, s->C, L2NORM_EPS);
    run->be->l2norm_backward(dinp->device, dout->device, inp->device, norm->device, s->N, s->C,
                             L2NORM_EPS);
    expect_change(run, dinp);

    TestTensor *inputs[] = {inp};
    const LossFunction loss = {l2norm_loss_forward, s, inputs, 1, dout->ref, dout->count,
                               host_block(run, sizeof(double) * s->N)};
    const double *gradients[] = {reference_change(run, dinp)};
    expect_finite_differences(run, &loss, gradients);

    /* a clamped row (norm <= eps): the gradient is dout / eps (no finite
     * differences: the clamp is where the function bends) */
    run->variant = "clamped norm";
    const float clamped_norm = L2NORM_EPS / 2;
    TestTensor *tiny = tensor_from_floats(run, "norm", &clamped_norm, 1);
    TestTensor *dtiny = gradient_tensor(run, "dinp", s->C);           /* [1, C] */
    ref_l2norm_backward(dtiny->ref, dout->ref, inp->ref, tiny->ref, 1, s->C, L2NORM_EPS);
    run->be->l2norm_backward(dtiny->device, dout->device, inp->device, tiny->device, 1, s->C,
                             L2NORM_EPS);
    expect_change(run, dtiny);
    run->variant = NULL;
}

static void check_gather_rows(OpRun *run) {
    REQUIRE_OP(run, gather_rows);
    const OpShape *s = run->shape;
    TestTensor *inp = input_tensor(run, "inp", (long)s->M * s->C);   /* [M, C] */
    const IndexArray rows = random_indices(run, s->N, s->M);        /* [N] */
    TestTensor *out = output_tensor(run, "out", (long)s->N * s->C);  /* [N, C] */
    ref_gather_rows(out->ref, inp->ref, rows.host, s->N, s->C);
    run->be->gather_rows(out->device, inp->device, rows.device, s->N, s->C);
    expect_close(run, out);
}

/* inputs: inp; context: the host rows */
static void gather_rows_loss_forward(const LossFunction *loss, double *out) {
    ref_gather_rows(out, loss->inputs[0]->ref, loss->context, loss->shape->N, loss->shape->C);
}

static void check_gather_rows_backward(OpRun *run) {
    REQUIRE_OP(run, gather_rows_backward);
    const OpShape *s = run->shape;
    TestTensor *inp = input_tensor(run, "inp", (long)s->M * s->C);    /* [M, C] */
    const IndexArray rows = random_indices(run, s->N, s->M);         /* [N], with repeats */
    TestTensor *dout = input_tensor(run, "dout", (long)s->N * s->C);  /* [N, C] */
    TestTensor *dinp = gradient_tensor(run, "dinp", inp->count);      /* [M, C] */
    ref_gather_rows_backward(dinp->ref, dout->ref, rows.host, s->N, s->C);
    run->be->gather_rows_backward(dinp->device, dout->device, rows.device, s->N, s->C);
    expect_change(run, dinp);

    TestTensor *inputs[] = {inp};
    const LossFunction loss = {gather_rows_loss_forward, s, inputs, 1, dout->ref, dout->count,
                               rows.host};
    const double *gradients[] = {reference_change(run, dinp)};
    expect_finite_differences(run, &loss, gradients);
}

/* Cross-entropy cases: targets [M, K]; target_rows [N, R] random, or NULL
 * when M is 0 (then R = 1 and row n uses targets row n). */
static int targets_rows_of(const OpShape *s) { return s->M ? s->M : s->N; }

static void check_softmax_cross_entropy_forward(OpRun *run) {
    REQUIRE_OP(run, softmax_cross_entropy_forward);
    const OpShape *s = run->shape;
    TestTensor *logits = input_tensor(run, "logits", (long)s->N * s->K);              /* [N, K] */
    TestTensor *targets = distribution_tensor(run, "targets", targets_rows_of(s), s->K);
    const IndexArray rows = s->M ? random_indices(run, (long)s->N * s->R, s->M)
                                 : (IndexArray){NULL, NULL};                          /* [N, R] */
    TestTensor *loss = output_tensor(run, "loss", s->N);                              /* [N] */
    TestTensor *lse = output_tensor(run, "lse", s->N);                                /* [N] */
    ref_softmax_cross_entropy_forward(loss->ref, lse->ref, logits->ref, targets->ref, rows.host,
                                      s->N, s->K, s->R, STUDENT_TEMPERATURE);
    run->be->softmax_cross_entropy_forward(loss->device, lse->device, logits->device,
                                           targets->device, rows.device, s->N, s->K, s->R,
                                           STUDENT_TEMPERATURE);
    expect_close(run, loss);
    expect_close(run, lse);
}

/* inputs: logits, targets; context: target rows (host) then scratch for lse [N] */
typedef struct CrossEntropyContext {
    const int32_t *rows;
    double *lse;
} CrossEntropyContext;

static void cross_entropy_loss_forward(const LossFunction *loss, double *out) {
    const OpShape *s = loss->shape;
    const CrossEntropyContext *context = loss->context;
    ref_softmax_cross_entropy_forward(out, context->lse, loss->inputs[0]->ref, loss->inputs[1]->ref,
                                      context->rows, s->N, s->K, s->R, STUDENT_TEMPERATURE);
}

static void check_softmax_cross_entropy_backward(OpRun *run) {
    REQUIRE_OP(run, softmax_cross_entropy_backward);
    const OpShape *s = run->shape;
    TestTensor *logits = input_tensor(run, "logits", (long)s->N * s->K);              /* [N, K] */
    TestTensor *targets = distribution_tensor(run, "targets", targets_rows_of(s), s->K);
    const IndexArray rows = s->M ? random_indices(run, (long)s->N * s->R, s->M)
                                 : (IndexArray){NULL, NULL};                          /* [N, R] */
    TestTensor *dloss = input_tensor(run, "dloss", s->N);                             /* [N] */
    double *forward_loss = host_block(run, sizeof(double) * s->N);
    double *saved_lse = host_block(run, sizeof(double) * s->N);
    ref_softmax_cross_entropy_forward(forward_loss, saved_lse, logits->ref, targets->ref, rows.host,
                                      s->N, s->K, s->R, STUDENT_TEMPERATURE);
    TestTensor *lse = tensor_from_doubles(run, "lse", saved_lse, s->N);
    TestTensor *dlogits = gradient_tensor(run, "dlogits", logits->count);             /* [N, K] */
    ref_softmax_cross_entropy_backward(dlogits->ref, dloss->ref, logits->ref, targets->ref,
                                       rows.host, lse->ref, s->N, s->K, s->R, STUDENT_TEMPERATURE);
    run->be->softmax_cross_entropy_backward(dlogits->device, dloss->device, logits->device,
                                            targets->device, rows.device, lse->device, s->N, s->K,
                                            s->R, STUDENT_TEMPERATURE);
    expect_change(run, dlogits);

    CrossEntropyContext context = {rows.host, host_block(run, sizeof(double) * s->N)};
    TestTensor *inputs[] = {logits, targets};
    const LossFunction loss = {cross_entropy_loss_forward, s, inputs, 2, dloss->ref, s->N, &context};
    const double *gradients[] = {reference_change(run, dlogits), NULL};
    expect_finite_differences(run, &loss, gradients);
}

/* Unit rows, as KoLeo sees them. */
static TestTensor *unit_rows_tensor(OpRun *run, const char *name, int N, int C) {
    TestTensor *t = input_tensor(run, name, (long)N * C);
    for (int n = 0; n < N; n++) {
        double sum = 0.0;
        for (int c = 0; c < C; c++) sum += (double)t->host[(long)n * C + c] * t->host[(long)n * C + c];
        for (int c = 0; c < C; c++) t->host[(long)n * C + c] = (float)(t->host[(long)n * C + c] / sqrt(sum));
    }
    reupload(run, t);
    return t;
}

static void check_koleo_forward(OpRun *run) {
    REQUIRE_OP(run, koleo_forward);
    const OpShape *s = run->shape;
    TestTensor *inp = unit_rows_tensor(run, "inp", s->N, s->C);   /* [N, C] */
    TestTensor *loss = output_tensor(run, "loss", s->N);          /* [N] */
    int32_t *expected = host_block(run, sizeof(int32_t) * s->N);  /* [N] */
    int32_t *found = host_block(run, sizeof(int32_t) * s->N);
    int32_t *neighbor = device_block(run, sizeof(int32_t) * s->N);
    ref_koleo_forward(loss->ref, expected, inp->ref, s->N, s->C, KOLEO_EPS);
    run->be->koleo_forward(loss->device, neighbor, inp->device, s->N, s->C, KOLEO_EPS);
    expect_close(run, loss);
    run->be->copy_to_host(found, neighbor, sizeof(int32_t) * s->N);
    int wrong = 0;
    for (int n = 0; n < s->N; n++) wrong += found[n] != expected[n];
    record_error(run, "neighbor (rows with another nearest row)", wrong, 0.0, NULL);
}

/* inputs: inp; context: the host neighbours */
static void koleo_loss_forward(const LossFunction *loss, double *out) {
    ref_koleo_pair_loss(out, loss->inputs[0]->ref, loss->context, loss->shape->N, loss->shape->C,
                        KOLEO_EPS);
}

static void check_koleo_backward(OpRun *run) {
    REQUIRE_OP(run, koleo_backward);
    const OpShape *s = run->shape;
    TestTensor *inp = unit_rows_tensor(run, "inp", s->N, s->C);   /* [N, C] */
    TestTensor *dloss = input_tensor(run, "dloss", s->N);         /* [N] */
    double *forward_loss = host_block(run, sizeof(double) * s->N);
    int32_t *neighbor = host_block(run, sizeof(int32_t) * s->N);  /* [N] */
    int32_t *device_neighbor = device_block(run, sizeof(int32_t) * s->N);
    ref_koleo_forward(forward_loss, neighbor, inp->ref, s->N, s->C, KOLEO_EPS);
    run->be->copy_to_device(device_neighbor, neighbor, sizeof(int32_t) * s->N);
    TestTensor *dinp = gradient_tensor(run, "dinp", inp->count);  /* [N, C] */
    ref_koleo_backward(dinp->ref, dloss->ref, inp->ref, neighbor, s->N, s->C, KOLEO_EPS);
    run->be->koleo_backward(dinp->device, dloss->device, inp->device, device_neighbor, s->N, s->C,
                            KOLEO_EPS);
    expect_change(run, dinp);

    TestTensor *inputs[] = {inp};
    const LossFunction loss = {koleo_loss_forward, s, inputs, 1, dloss->ref, s->N, neighbor};
    const double *gradients[] = {reference_change(run, dinp)};
    expect_finite_differences(run, &loss, gradients);
}

static void check_exp_with_temperature(OpRun *run) {
    REQUIRE_OP(run, exp_with_temperature);
    const OpShape *s = run->shape;
    TestTensor *inp = input_tensor(run, "inp", (long)s->M * s->K);   /* [M, K] */
    TestTensor *shift = input_tensor(run, "shift", s->K);            /* [K] */
    TestTensor *out = output_tensor(run, "out", inp->count);         /* [M, K] */
    ref_exp_with_temperature(out->ref, inp->ref, shift->ref, s->M, s->K, TEACHER_TEMPERATURE);
    run->be->exp_with_temperature(out->device, inp->device, shift->device, s->M, s->K,
                                  TEACHER_TEMPERATURE);
    expect_close(run, out);

    run->variant = "shift NULL, in place";
    ref_exp_with_temperature(inp->ref, inp->ref, NULL, s->M, s->K, TEACHER_TEMPERATURE);
    run->be->exp_with_temperature(inp->device, inp->device, NULL, s->M, s->K, TEACHER_TEMPERATURE);
    expect_close(run, inp);
    run->variant = NULL;
}

static void check_column_sums(OpRun *run) {
    REQUIRE_OP(run, column_sums);
    const OpShape *s = run->shape;
    TestTensor *x = random_tensor(run, "x", (long)s->M * s->K, 0.0, 1.0);   /* [M, K] */
    TestTensor *sums = output_tensor(run, "sums", s->K);                    /* [K] */
    ref_column_sums(sums->ref, x->ref, s->M, s->K);
    run->be->column_sums(sums->device, x->device, s->M, s->K);
    expect_close(run, sums);
}

static void check_column_max(OpRun *run) {
    REQUIRE_OP(run, column_max);
    const OpShape *s = run->shape;
    TestTensor *x = input_tensor(run, "x", (long)s->M * s->K);   /* [M, K] */
    TestTensor *maxes = output_tensor(run, "maxes", s->K);       /* [K] */
    ref_column_max(maxes->ref, x->ref, s->M, s->K);
    run->be->column_max(maxes->device, x->device, s->M, s->K);
    expect_close(run, maxes);

    /* no rows (a rank without masked patches): every maximum is -infinity */
    float *empty = host_block(run, sizeof(float) * s->K);
    run->be->column_max(maxes->device, x->device, 0, s->K);
    run->be->synchronize();
    run->be->copy_to_host(empty, maxes->device, sizeof(float) * s->K);
    int finite = 0;
    for (int k = 0; k < s->K; k++) finite += !(isinf(empty[k]) && empty[k] < 0);
    record_error(run, "maxes of 0 rows (values other than -infinity)", finite, 0.0, NULL);
}

static void check_divide_columns(OpRun *run) {
    REQUIRE_OP(run, divide_columns);
    const OpShape *s = run->shape;
    TestTensor *x = random_tensor(run, "x", (long)s->M * s->K, 0.0, 1.0);      /* [M, K], in place */
    TestTensor *divisors = random_tensor(run, "divisors", s->K, 0.5, 2.0);    /* [K] */
    divisors->host[s->K / 2] = 0.0f;   /* an empty column */
    reupload(run, divisors);
    ref_divide_columns(x->ref, divisors->ref, s->M, s->K);
    run->be->divide_columns(x->device, divisors->device, s->M, s->K);
    expect_close(run, x);
}

static void check_normalize_rows(OpRun *run) {
    REQUIRE_OP(run, normalize_rows);
    const OpShape *s = run->shape;
    TestTensor *x = random_tensor(run, "x", (long)s->M * s->K, 0.0, 1.0);   /* [M, K], in place */
    for (int k = 0; k < s->K; k++) x->host[k] = 0.0f;   /* a row summing to 0 stays 0 */
    reupload(run, x);
    ref_normalize_rows(x->ref, s->M, s->K);
    run->be->normalize_rows(x->device, s->M, s->K);
    expect_close(run, x);
}

static void check_ema_update(OpRun *run) {
    REQUIRE_OP(run, ema_update);
    const long n = run->shape->n;
    TestTensor *ema = input_tensor(run, "ema (update)", n);   /* [n], in place */
    TestTensor *params = input_tensor(run, "params", n);      /* [n] */
    ref_ema_update(ema->ref, params->ref, n, EMA_MOMENTUM);
    run->be->ema_update(ema->device, params->device, n, EMA_MOMENTUM);
    expect_change(run, ema);
    params->name = "params (unchanged)";
    expect_close(run, params);
}

/* ---- shape cases --------------------------------------------------------------- */

/* Small shapes are odd and not powers of two; each forward op also runs one
 * realistic ViT-S/16 shape at 224 px: B = 2, T = 5 + 14 * 14 = 201 tokens,
 * D = 384, H = 6, Dh = 64, FFN 1536 (N = B * T = 402 rows). Backward ops run
 * small shapes only: finite differences cost one forward per input value. */

static const OpShape memory_shapes[] = {
    {.label = "odd", .n = 1001, .tolerance = EXACT},
    {.label = "realistic", .n = 402 * 384 + 7, .tolerance = EXACT},
};
static const OpShape matmul_forward_shapes[] = {
    {.label = "odd", .N = 7, .C = 13, .OC = 5, .tolerance = FP32_TOLERANCE},
    {.label = "odd", .N = 3, .C = 33, .OC = 17, .tolerance = FP32_TOLERANCE},
    {.label = "realistic qkv", .N = 402, .C = 384, .OC = 1152,
     .tolerance = FP32_LONG_REDUCTION_TOLERANCE},
    {.label = "realistic fc2", .N = 402, .C = 1536, .OC = 384,
     .tolerance = FP32_LONG_REDUCTION_TOLERANCE},
};
static const OpShape matmul_backward_shapes[] = {
    {.label = "odd", .N = 7, .C = 13, .OC = 5, .tolerance = FP32_TOLERANCE},
    {.label = "odd", .N = 3, .C = 33, .OC = 17, .tolerance = FP32_TOLERANCE},
};
static const OpShape patchify_shapes[] = {
    {.label = "odd", .B = 2, .C = 3, .image_height = 15, .image_width = 10, .P = 5,
     .tolerance = EXACT},
    {.label = "realistic", .B = 2, .C = 3, .image_height = 224, .image_width = 224, .P = 16,
     .tolerance = EXACT},
};
static const OpShape tokens_forward_shapes[] = {
    {.label = "odd", .B = 2, .Np = 7, .R = 3, .D = 13, .tolerance = EXACT},
    {.label = "realistic", .B = 2, .Np = 196, .R = 4, .D = 384, .tolerance = EXACT},
};
static const OpShape tokens_backward_shapes[] = {
    {.label = "odd", .B = 2, .Np = 7, .R = 3, .D = 13, .tolerance = FP32_TOLERANCE},
    {.label = "odd", .B = 3, .Np = 4, .R = 1, .D = 5, .tolerance = FP32_TOLERANCE},
};
static const OpShape layernorm_forward_shapes[] = {
    {.label = "odd", .N = 7, .C = 13, .tolerance = FP32_TOLERANCE},
    {.label = "realistic", .N = 402, .C = 384, .tolerance = FP32_LONG_REDUCTION_TOLERANCE},
};
static const OpShape layernorm_backward_shapes[] = {
    {.label = "odd", .N = 7, .C = 13, .tolerance = FP32_TOLERANCE},
    {.label = "odd", .N = 5, .C = 31, .tolerance = FP32_TOLERANCE},
};
static const OpShape rope_forward_shapes[] = {
    {.label = "odd", .B = 2, .T = 9, .prefix = 5, .H = 3, .Dh = 8, .Hp = 2, .Wp = 2,
     .tolerance = FP32_TOLERANCE},
    {.label = "odd", .B = 1, .T = 11, .prefix = 5, .H = 2, .Dh = 12, .Hp = 2, .Wp = 3,
     .tolerance = FP32_TOLERANCE},
    {.label = "random tables", .B = 2, .T = 9, .prefix = 5, .H = 3, .Dh = 8, .Hp = 2, .Wp = 2,
     .random_rope_tables = 1, .tolerance = FP32_TOLERANCE},
    {.label = "realistic", .B = 2, .T = 201, .prefix = 5, .H = 6, .Dh = 64, .Hp = 14, .Wp = 14,
     .tolerance = FP32_TOLERANCE},
};
static const OpShape rope_backward_shapes[] = {
    {.label = "odd", .B = 2, .T = 9, .prefix = 5, .H = 3, .Dh = 8, .Hp = 2, .Wp = 2,
     .tolerance = FP32_TOLERANCE},
    {.label = "odd", .B = 1, .T = 11, .prefix = 5, .H = 2, .Dh = 12, .Hp = 2, .Wp = 3,
     .tolerance = FP32_TOLERANCE},
    {.label = "random tables", .B = 2, .T = 9, .prefix = 5, .H = 3, .Dh = 8, .Hp = 2, .Wp = 2,
     .random_rope_tables = 1, .tolerance = FP32_TOLERANCE},
};
static const OpShape attention_forward_shapes[] = {
    {.label = "odd", .B = 2, .T = 9, .H = 3, .Dh = 8, .tolerance = FP32_TOLERANCE},
    /* logits up to ~150: exp() overflows fp32 unless the row max is subtracted */
    {.label = "large logits", .B = 2, .T = 9, .H = 3, .Dh = 8, .input_range = 20,
     .tolerance = LARGE_LOGIT_TOLERANCE},
    {.label = "realistic", .B = 2, .T = 201, .H = 6, .Dh = 64,
     .tolerance = FP32_LONG_REDUCTION_TOLERANCE},
};
static const OpShape attention_backward_shapes[] = {
    {.label = "odd", .B = 2, .T = 9, .H = 3, .Dh = 8, .tolerance = FP32_TOLERANCE},
    {.label = "odd", .B = 1, .T = 6, .H = 2, .Dh = 12, .input_range = 3,
     .tolerance = FP32_TOLERANCE},
};
/* GELU and SiLU inputs span the curved part and both tails. */
static const OpShape gelu_forward_shapes[] = {
    {.label = "odd", .n = 1001, .input_range = 6, .tolerance = FP32_TOLERANCE},
    {.label = "realistic", .n = 402 * 1536, .input_range = 6, .tolerance = FP32_TOLERANCE},
};
static const OpShape gelu_backward_shapes[] = {
    {.label = "odd", .n = 1001, .input_range = 6, .tolerance = FP32_TOLERANCE},
    {.label = "odd", .n = 37, .input_range = 1, .tolerance = FP32_TOLERANCE},
};
static const OpShape swiglu_forward_shapes[] = {
    {.label = "odd", .N = 7, .F = 11, .input_range = 6, .tolerance = FP32_TOLERANCE},
    {.label = "realistic", .N = 402, .F = 1536, .input_range = 6, .tolerance = FP32_TOLERANCE},
};
static const OpShape swiglu_backward_shapes[] = {
    {.label = "odd", .N = 7, .F = 11, .input_range = 6, .tolerance = FP32_TOLERANCE},
};
static const OpShape layerscale_residual_forward_shapes[] = {
    {.label = "odd", .N = 7, .C = 13, .tolerance = FP32_TOLERANCE},
    {.label = "realistic", .N = 402, .C = 384, .tolerance = FP32_TOLERANCE},
};
static const OpShape layerscale_residual_backward_shapes[] = {
    {.label = "odd", .N = 7, .C = 13, .tolerance = FP32_TOLERANCE},
};
static const OpShape adamw_update_shapes[] = {
    {.label = "odd", .n = 1001, .step = 1, .tolerance = FP32_TOLERANCE},
    {.label = "odd", .n = 1001, .step = 7, .tolerance = FP32_TOLERANCE},
    {.label = "realistic", .n = (1 << 20) + 3, .step = 1000, .tolerance = FP32_TOLERANCE},
};
static const OpShape sum_squares_shapes[] = {
    {.label = "odd", .n = 1001, .tolerance = SUM_SQUARES_TOLERANCE},
    {.label = "realistic", .n = (1 << 20) + 3, .tolerance = SUM_SQUARES_TOLERANCE},
};
static const OpShape scale_shapes[] = {
    {.label = "odd", .n = 1001, .tolerance = FP32_TOLERANCE},
    {.label = "realistic", .n = (1 << 20) + 3, .tolerance = FP32_TOLERANCE},
};
/* Heads and losses: a DINO head's bottleneck is 512 wide and its prototype
 * rows 262,144 long; KoLeo sees one crop's CLS tokens of a rank. */
static const OpShape l2norm_forward_shapes[] = {
    {.label = "odd", .N = 7, .C = 13, .tolerance = FP32_TOLERANCE},
    {.label = "realistic", .N = 640, .C = 512, .tolerance = FP32_TOLERANCE},
};
static const OpShape l2norm_backward_shapes[] = {
    {.label = "odd", .N = 7, .C = 13, .tolerance = FP32_TOLERANCE},
    {.label = "odd", .N = 3, .C = 31, .input_range = 5, .tolerance = FP32_TOLERANCE},
};
static const OpShape gather_rows_shapes[] = {
    {.label = "odd", .N = 9, .M = 5, .C = 13, .tolerance = EXACT},
    {.label = "realistic", .N = 256, .M = 64 * 261, .C = 384, .tolerance = EXACT},
};
static const OpShape gather_rows_backward_shapes[] = {
    {.label = "odd", .N = 9, .M = 5, .C = 13, .tolerance = FP32_TOLERANCE},
};
/* Logits in [-3, 3] at temperature 0.1: scores up to 30 before the softmax. */
static const OpShape softmax_cross_entropy_forward_shapes[] = {
    {.label = "odd", .N = 5, .K = 37, .R = 2, .M = 4, .input_range = 3, .tolerance = FP32_TOLERANCE},
    {.label = "odd, rows NULL", .N = 3, .K = 64, .R = 1, .input_range = 3,
     .tolerance = FP32_TOLERANCE},
    {.label = "realistic", .N = 6, .K = 262144, .R = 2, .M = 4, .input_range = 3,
     .tolerance = FP32_TOLERANCE},
};
static const OpShape softmax_cross_entropy_backward_shapes[] = {
    {.label = "odd", .N = 5, .K = 37, .R = 2, .M = 4, .input_range = 3, .tolerance = FP32_TOLERANCE},
    {.label = "odd, rows NULL", .N = 3, .K = 11, .R = 1, .input_range = 3,
     .tolerance = FP32_TOLERANCE},
};
static const OpShape koleo_forward_shapes[] = {
    {.label = "odd", .N = 7, .C = 13, .tolerance = FP32_TOLERANCE},
    {.label = "realistic", .N = 64, .C = 384, .tolerance = FP32_TOLERANCE},
};
static const OpShape koleo_backward_shapes[] = {
    {.label = "odd", .N = 7, .C = 13, .tolerance = FP32_TOLERANCE},
    {.label = "odd", .N = 2, .C = 5, .tolerance = FP32_TOLERANCE},
};
/* Scores in [-1, 1] at temperature 0.07: exponentials up to e^14. */
static const OpShape exp_with_temperature_shapes[] = {
    {.label = "odd", .M = 7, .K = 37, .tolerance = FP32_TOLERANCE},
    {.label = "realistic", .M = 8, .K = 262144, .tolerance = FP32_TOLERANCE},
};
static const OpShape column_sums_shapes[] = {
    {.label = "odd", .M = 7, .K = 37, .tolerance = FP32_TOLERANCE},
    {.label = "realistic", .M = 256, .K = 98304, .tolerance = FP32_TOLERANCE},
};
static const OpShape column_max_shapes[] = {
    {.label = "odd", .M = 7, .K = 37, .tolerance = EXACT},
    {.label = "realistic", .M = 256, .K = 98304, .tolerance = EXACT},
};
static const OpShape divide_columns_shapes[] = {
    {.label = "odd", .M = 7, .K = 37, .tolerance = FP32_TOLERANCE},
    {.label = "realistic", .M = 8, .K = 262144, .tolerance = FP32_TOLERANCE},
};
static const OpShape normalize_rows_shapes[] = {
    {.label = "odd", .M = 7, .K = 37, .tolerance = FP32_TOLERANCE},
    {.label = "realistic", .M = 8, .K = 262144, .tolerance = FP32_TOLERANCE},
};
static const OpShape ema_update_shapes[] = {
    {.label = "odd", .n = 1001, .tolerance = FP32_TOLERANCE},
    {.label = "realistic", .n = (1 << 20) + 3, .tolerance = FP32_TOLERANCE},
};

/* ---- the op table --------------------------------------------------------------- */

/* Each row: the op (the NnBackend entry it tests), its shape cases, its
 * check. The table is expanded twice below: once into a pair of case
 * functions per op (cpu, cuda), once into the harness's list of cases. */
#define OP_TABLE(X)                                                                          \
    X(memory, memory_shapes, check_memory)                                                   \
    X(matmul_forward, matmul_forward_shapes, check_matmul_forward)                           \
    X(matmul_backward, matmul_backward_shapes, check_matmul_backward)                        \
    X(patchify, patchify_shapes, check_patchify)                                             \
    X(tokens_forward, tokens_forward_shapes, check_tokens_forward)                           \
    X(tokens_backward, tokens_backward_shapes, check_tokens_backward)                        \
    X(layernorm_forward, layernorm_forward_shapes, check_layernorm_forward)                  \
    X(layernorm_backward, layernorm_backward_shapes, check_layernorm_backward)               \
    X(rope_forward, rope_forward_shapes, check_rope_forward)                                 \
    X(rope_backward, rope_backward_shapes, check_rope_backward)                              \
    X(attention_forward, attention_forward_shapes, check_attention_forward)                  \
    X(attention_backward, attention_backward_shapes, check_attention_backward)               \
    X(gelu_forward, gelu_forward_shapes, check_gelu_forward)                                 \
    X(gelu_backward, gelu_backward_shapes, check_gelu_backward)                              \
    X(swiglu_forward, swiglu_forward_shapes, check_swiglu_forward)                           \
    X(swiglu_backward, swiglu_backward_shapes, check_swiglu_backward)                        \
    X(layerscale_residual_forward, layerscale_residual_forward_shapes,                       \
      check_layerscale_residual_forward)                                                     \
    X(layerscale_residual_backward, layerscale_residual_backward_shapes,                     \
      check_layerscale_residual_backward)                                                    \
    X(adamw_update, adamw_update_shapes, check_adamw_update)                                 \
    X(sum_squares, sum_squares_shapes, check_sum_squares)                                    \
    X(scale, scale_shapes, check_scale)                                                      \
    X(l2norm_forward, l2norm_forward_shapes, check_l2norm_forward)                           \
    X(l2norm_backward, l2norm_backward_shapes, check_l2norm_backward)                        \
    X(gather_rows, gather_rows_shapes, check_gather_rows)                                    \
    X(gather_rows_backward, gather_rows_backward_shapes, check_gather_rows_backward)         \
    X(softmax_cross_entropy_forward, softmax_cross_entropy_forward_shapes,                   \
      check_softmax_cross_entropy_forward)                                                   \
    X(softmax_cross_entropy_backward, softmax_cross_entropy_backward_shapes,                 \
      check_softmax_cross_entropy_backward)                                                  \
    X(koleo_forward, koleo_forward_shapes, check_koleo_forward)                              \
    X(koleo_backward, koleo_backward_shapes, check_koleo_backward)                           \
    X(exp_with_temperature, exp_with_temperature_shapes, check_exp_with_temperature)         \
    X(column_sums, column_sums_shapes, check_column_sums)                                    \
    X(column_max, column_max_shapes, check_column_max)                                       \
    X(divide_columns, divide_columns_shapes, check_divide_columns)                           \
    X(normalize_rows, normalize_rows_shapes, check_normalize_rows)                           \
    X(ema_update, ema_update_shapes, check_ema_update)

#define DEFINE_OP_CASES(op, shapes, check)                                                   \
    static void op##_on_cpu(void) { run_op(#op, check, shapes, ARRAY_LENGTH(shapes), ON_CPU); } \
    static void op##_on_cuda(void) { run_op(#op, check, shapes, ARRAY_LENGTH(shapes), ON_CUDA); }
OP_TABLE(DEFINE_OP_CASES)

#define LIST_OP_CASES(op, shapes, check) {#op "/cpu", op##_on_cpu}, {#op "/cuda", op##_on_cuda},

/* ---- rope_tables (host code, no backend) ---------------------------------------- */

static void rope_tables_match_formula(void) {
    static const struct {
        int Hp, Wp, Dh;
        double base, rescale;
    } cases[] = {
        {14, 14, 64, 100.0, 1.0}, {2, 3, 12, 100.0, 0.5}, {3, 2, 8, 100.0, 2.0},
        {4, 7, 16, 10000.0, ROPE_RESCALE},
    };
    char line[1024];
    size_t used = (size_t)snprintf(line, sizeof line, "  rope_tables (host):");
    for (int k = 0; k < ARRAY_LENGTH(cases); k++) {
        const long count = (long)cases[k].Hp * cases[k].Wp * cases[k].Dh;
        float *found = require_allocation(malloc(sizeof(float) * 2 * count), "rope tables",
                                          sizeof(float) * 2 * count);   /* sin, cos [2, count] */
        double *expected = require_allocation(malloc(sizeof(double) * 2 * count), "rope tables",
                                              sizeof(double) * 2 * count);   /* [2, count] */
        float *sin_found = found, *cos_found = found + count;
        double *sin_expected = expected, *cos_expected = expected + count;
        rope_tables(sin_found, cos_found, cases[k].Hp, cases[k].Wp, cases[k].Dh, cases[k].base,
                    cases[k].rescale);
        ref_rope_tables(sin_expected, cos_expected, cases[k].Hp, cases[k].Wp, cases[k].Dh,
                        cases[k].base, cases[k].rescale);
        const double error = fmax(test_relative_error(sin_found, sin_expected, count),
                                  test_relative_error(cos_found, cos_expected, count));
        CHECK(error <= ROPE_TABLE_TOLERANCE,
              "rope_tables Hp=%d Wp=%d Dh=%d base=%g rescale=%g: relative error %.3g > %.3g",
              cases[k].Hp, cases[k].Wp, cases[k].Dh, cases[k].base, cases[k].rescale, error,
              ROPE_TABLE_TOLERANCE);
        if (used < sizeof line)
            used += (size_t)snprintf(line + used, sizeof line - used,
                                     "%s Hp=%d Wp=%d Dh=%d base=%g rescale=%g: %.2e",
                                     k ? ";" : "", cases[k].Hp, cases[k].Wp, cases[k].Dh,
                                     cases[k].base, cases[k].rescale, error);
        free(found);
        free(expected);
    }
    printf("%s\n", line);
}

int main(int argc, char **argv) {
    static const TestCase cases[] = {
        TEST(rope_tables_match_formula),
        OP_TABLE(LIST_OP_CASES)
    };
    return test_main(cases, ARRAY_LENGTH(cases), argc, argv);
}

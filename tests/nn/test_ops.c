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
#include "tests/nn/op_checks_objective.h"
#include "tests/nn/op_tolerances.h"
#include "tests/nn/reference_ops.h"
#include "tests/test.h"

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

    /* dweight and dbias NULL: only dinp is written (a frozen layer's backward) */
    TestTensor *dinp_only = gradient_tensor(run, "dinp (dweight, dbias NULL)", inp->count);
    ref_matmul_backward(dinp_only->ref, NULL, NULL, dout->ref, inp->ref, weight->ref, s->N, s->C, s->OC);
    be->matmul_backward(dinp_only->device, NULL, NULL, dout->device, inp->device, weight->device, s->N, s->C,
                        s->OC);
    expect_change(run, dinp_only);
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

/* The RoPE tables of a shape, sin, cos [T - prefix, Dh] = [Hp*Wp, Dh]: from
 * nn/rope.h, random, or none (both NULL: no rotation) when the shape has
 * no patch grid (Hp = 0). */
typedef struct RopeTables {
    TestTensor *sin, *cos;
} RopeTables;

static RopeTables rope_table_tensors(OpRun *run) {
    const OpShape *s = run->shape;
    RopeTables tables = {NULL, NULL};
    if (s->Hp == 0) return tables;
    CHECK(s->Hp * s->Wp == s->T - s->prefix, "shape table: rope needs Hp * Wp = T - prefix");
    const long count = (long)s->Hp * s->Wp * s->Dh;
    if (s->random_rope_tables) {
        tables.sin = random_tensor(run, "sin", count, -1.0, 1.0);
        tables.cos = random_tensor(run, "cos", count, -1.0, 1.0);
        return tables;
    }
    float *sin_host = host_block(run, sizeof(float) * count);
    float *cos_host = host_block(run, sizeof(float) * count);
    rope_tables(sin_host, cos_host, s->Hp, s->Wp, s->Dh, ROPE_BASE, ROPE_RESCALE);
    tables.sin = tensor_from_floats(run, "sin", sin_host, count);
    tables.cos = tensor_from_floats(run, "cos", cos_host, count);
    return tables;
}

/* A table's float64 copy or its backend copy; NULL for no table. */
static const double *ref_or_null(const TestTensor *t) { return t ? t->ref : NULL; }
static const float *device_or_null(const TestTensor *t) { return t ? t->device : NULL; }

static long qkv_count(const OpShape *s) { return (long)s->B * s->T * 3 * s->H * s->Dh; }

static void check_attention_forward(OpRun *run) {
    const OpShape *s = run->shape;
    /* qkv [B, T, 3, H, Dh] unrotated, sin, cos [T - prefix, Dh] or NULL
     * -> out [B, T, H, Dh], lse [B, H, T] */
    const RopeTables rope = rope_table_tensors(run);
    TestTensor *qkv = input_tensor(run, "qkv", qkv_count(s));
    TestTensor *out = output_tensor(run, "out", (long)s->B * s->T * s->H * s->Dh);
    TestTensor *lse = output_tensor(run, "lse", (long)s->B * s->H * s->T);
    ref_attention_forward(out->ref, lse->ref, qkv->ref, ref_or_null(rope.sin), ref_or_null(rope.cos),
                          s->B, s->T, s->prefix, s->H, s->Dh);
    run->be->attention_forward(out->device, lse->device, qkv->device, device_or_null(rope.sin),
                               device_or_null(rope.cos), s->B, s->T, s->prefix, s->H, s->Dh);
    expect_close(run, out);
    expect_close(run, lse);
}

/* What attention's loss needs besides qkv: the tables (or NULL) and
 * scratch for lse [B, H, T]. */
typedef struct AttentionLossContext {
    const double *sin, *cos;
    double *lse;
} AttentionLossContext;

/* inputs: qkv */
static void attention_loss_forward(const LossFunction *loss, double *out) {
    const OpShape *s = loss->shape;
    const AttentionLossContext *context = loss->context;
    ref_attention_forward(out, context->lse, loss->inputs[0]->ref, context->sin, context->cos,
                          s->B, s->T, s->prefix, s->H, s->Dh);
}

/* The backend gets the forward's out and lse from the float64 reference;
 * the reference backward recomputes its probabilities from qkv alone, so a
 * backend that misuses lse or out cannot agree with it. The finite
 * differences perturb the unrotated qkv, so they check the rotation's
 * transpose too. */
static void check_attention_backward(OpRun *run) {
    const OpShape *s = run->shape;
    const long out_count = (long)s->B * s->T * s->H * s->Dh;
    const long lse_count = (long)s->B * s->H * s->T;
    const RopeTables rope = rope_table_tensors(run);               /* [T - prefix, Dh] or NULL */
    const double *sin = ref_or_null(rope.sin), *cos = ref_or_null(rope.cos);
    TestTensor *qkv = input_tensor(run, "qkv", qkv_count(s));      /* [B, T, 3, H, Dh] */
    TestTensor *dout = input_tensor(run, "dout", out_count);       /* [B, T, H, Dh] */
    double *forward_out = host_block(run, sizeof(double) * out_count);
    double *forward_lse = host_block(run, sizeof(double) * lse_count);
    ref_attention_forward(forward_out, forward_lse, qkv->ref, sin, cos, s->B, s->T, s->prefix, s->H,
                          s->Dh);
    TestTensor *out = tensor_from_doubles(run, "out", forward_out, out_count);
    TestTensor *lse = tensor_from_doubles(run, "lse", forward_lse, lse_count);
    TestTensor *dqkv = gradient_tensor(run, "dqkv", qkv->count);   /* [B, T, 3, H, Dh] */

    ref_attention_backward(dqkv->ref, dout->ref, qkv->ref, sin, cos, s->B, s->T, s->prefix, s->H,
                           s->Dh);
    run->be->attention_backward(dqkv->device, dout->device, qkv->device, out->device, lse->device,
                                device_or_null(rope.sin), device_or_null(rope.cos), s->B, s->T,
                                s->prefix, s->H, s->Dh);
    expect_change(run, dqkv);
    if (s->no_finite_differences) return;

    TestTensor *inputs[] = {qkv};
    AttentionLossContext context = {sin, cos, host_block(run, sizeof(double) * lse_count)};
    const LossFunction loss = {attention_loss_forward, s, inputs, 1, dout->ref, out_count, &context};
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
/* Attention: RoPE tables from nn/rope.h (prefix 5: CLS and 4 registers, or
 * prefix 0), random tables (rope_tables' halves repeat, so only these
 * tell sin[i] from sin[i + Dh/2]; the rotation's transpose holds for any
 * tables), and none (Hp = 0: sin, cos NULL). Dh = 48 splits its halves
 * across 32-lane chunks of the CUDA kernels. */
static const OpShape attention_forward_shapes[] = {
    {.label = "odd, tables NULL", .B = 2, .T = 9, .H = 3, .Dh = 8, .tolerance = FP32_TOLERANCE},
    {.label = "odd", .B = 2, .T = 9, .prefix = 5, .H = 3, .Dh = 8, .Hp = 2, .Wp = 2,
     .tolerance = FP32_TOLERANCE},
    {.label = "odd, prefix 0", .B = 1, .T = 6, .prefix = 0, .H = 2, .Dh = 12, .Hp = 2, .Wp = 3,
     .tolerance = FP32_TOLERANCE},
    {.label = "random tables", .B = 2, .T = 21, .prefix = 5, .H = 2, .Dh = 48, .Hp = 4, .Wp = 4,
     .random_rope_tables = 1, .tolerance = FP32_TOLERANCE},
    /* logits up to ~150: exp() overflows fp32 unless the row max is subtracted
     * (the rotation keeps the norms of q and k) */
    {.label = "large logits", .B = 2, .T = 9, .prefix = 5, .H = 3, .Dh = 8, .Hp = 2, .Wp = 2,
     .input_range = 20, .tolerance = LARGE_LOGIT_TOLERANCE},
    {.label = "realistic", .B = 2, .T = 201, .prefix = 5, .H = 6, .Dh = 64, .Hp = 14, .Wp = 14,
     .tolerance = FP32_LONG_REDUCTION_TOLERANCE},
    /* two query tiles of the CPU backend (953 rows at T = 1100) */
    {.label = "several query tiles", .B = 1, .T = 1100, .prefix = 5, .H = 2, .Dh = 8, .Hp = 15,
     .Wp = 73, .tolerance = FP32_LONG_REDUCTION_TOLERANCE},
};
static const OpShape attention_backward_shapes[] = {
    {.label = "odd, tables NULL", .B = 2, .T = 9, .H = 3, .Dh = 8, .tolerance = FP32_TOLERANCE},
    {.label = "odd", .B = 2, .T = 9, .prefix = 5, .H = 3, .Dh = 8, .Hp = 2, .Wp = 2,
     .tolerance = FP32_TOLERANCE},
    {.label = "odd, prefix 0", .B = 1, .T = 6, .prefix = 0, .H = 2, .Dh = 12, .Hp = 2, .Wp = 3,
     .input_range = 3, .tolerance = FP32_TOLERANCE},
    {.label = "random tables", .B = 1, .T = 21, .prefix = 5, .H = 1, .Dh = 48, .Hp = 4, .Wp = 4,
     .random_rope_tables = 1, .tolerance = FP32_TOLERANCE},
    {.label = "realistic", .B = 1, .T = 201, .prefix = 5, .H = 2, .Dh = 64, .Hp = 14, .Wp = 14,
     .tolerance = FP32_LONG_REDUCTION_TOLERANCE, .no_finite_differences = 1},
    /* more query rows than one tile of the CPU backend (476 rows at
     * T = 1100 in the backward): dk and dv gather three tiles */
    {.label = "several query tiles", .B = 1, .T = 1100, .prefix = 5, .H = 1, .Dh = 8, .Hp = 15,
     .Wp = 73, .tolerance = FP32_LONG_REDUCTION_TOLERANCE, .no_finite_differences = 1},
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

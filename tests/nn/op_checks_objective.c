/*
 * op_checks_objective.c - one check per op of the objective (heads,
 * losses, Sinkhorn-Knopp, EMA): each runs one shape on one backend against
 * the float64 reference, and the backward ops against finite differences.
 */
#include "tests/nn/op_checks_objective.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nn/backend.h"
#include "tests/nn/op_tolerances.h"
#include "tests/nn/reference_ops.h"
#include "tests/test.h"

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

void check_l2norm_forward(OpRun *run) {
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

void check_l2norm_backward(OpRun *run) {
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

void check_gather_rows(OpRun *run) {
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

void check_gather_rows_backward(OpRun *run) {
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

void check_softmax_cross_entropy_forward(OpRun *run) {
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

void check_softmax_cross_entropy_backward(OpRun *run) {
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

void check_koleo_forward(OpRun *run) {
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

void check_koleo_backward(OpRun *run) {
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

void check_exp_with_temperature(OpRun *run) {
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

void check_column_sums(OpRun *run) {
    REQUIRE_OP(run, column_sums);
    const OpShape *s = run->shape;
    TestTensor *x = random_tensor(run, "x", (long)s->M * s->K, 0.0, 1.0);   /* [M, K] */
    TestTensor *sums = output_tensor(run, "sums", s->K);                    /* [K] */
    ref_column_sums(sums->ref, x->ref, s->M, s->K);
    run->be->column_sums(sums->device, x->device, s->M, s->K);
    expect_close(run, sums);
}

void check_column_max(OpRun *run) {
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

void check_divide_columns(OpRun *run) {
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

void check_normalize_rows(OpRun *run) {
    REQUIRE_OP(run, normalize_rows);
    const OpShape *s = run->shape;
    TestTensor *x = random_tensor(run, "x", (long)s->M * s->K, 0.0, 1.0);   /* [M, K], in place */
    for (int k = 0; k < s->K; k++) x->host[k] = 0.0f;   /* a row summing to 0 stays 0 */
    reupload(run, x);
    ref_normalize_rows(x->ref, s->M, s->K);
    run->be->normalize_rows(x->device, s->M, s->K);
    expect_close(run, x);
}

void check_ema_update(OpRun *run) {
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

/*
 * test_bf16_block_ops.c - the block_bf16 entries of nn/backend.h
 * (cast_to_bf16 and the twelve *_bf16 ops), on every table that has them,
 * against what backend.h defines them to be: the CPU's fp32 entry
 * (nn_cpu_backend) run on the widened bf16 inputs, its bf16 outputs then
 * rounded with float_to_bfloat16 (nn/half_float.h), an accumulating bf16
 * output as bf16(widen(old) + the fp32 increment), fp32 outputs as the
 * fp32 entry leaves them.
 *
 * Every case runs once per table: "<case>/cpu" on nn_cpu_bf16_backend,
 * which must match bit for bit, and "<case>/cuda" on nn_cuda_backend,
 * within CUDA_TOLERANCE (skipped with the reason without a CUDA device or
 * in a build without CUDA). Registered twice: tests/nn runs the /cpu cases,
 * tests/cuda the /cuda ones. cast_to_bf16 is bit for bit on every table.
 * The two linear layers run on cuda a second time with cuBLASLt's
 * epilogues switched off (*_epilogues_off/cuda), as in the benchmark that
 * weighs them.
 *
 * Each shape draws fresh random inputs; those typed bf16 are exactly
 * representable (drawn in fp32, rounded with float_to_bfloat16), those
 * typed fp32 (residual, biases, scales, dout of the residual) are full fp32
 * values, so a table that narrowed them would differ. Forward outputs start
 * as NaN (an element left unwritten fails); accumulating outputs start
 * prefilled with random values of the size of their increment (an op that
 * overwrites fails, on cuda too). No output may be NaN or infinite. Each
 * forward op is also compared with the float64 reference of
 * tests/nn/reference_ops.c (FLOAT64_TOLERANCE), so the oracle is not only
 * the implementation compared with itself. One line per shape reports the
 * measured errors.
 */
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nn/backend.h"
#include "nn/half_float.h"
#include "nn/rope.h"
#include "tests/nn/op_check.h"
#include "tests/nn/op_tolerances.h"
#include "tests/nn/reference_ops.h"
#include "tests/test.h"

/* ---- tolerances ----------------------------------------------------------- */

/* cuda against the cpu oracle, relative to the largest reference value of
 * the output: another order of summation (and bf16 tensor-core products,
 * exact on bf16 operands) moves a value by a few fp32 units, which can
 * carry it across a rounding boundary of bf16: one unit in the last place,
 * at most 2^-7 of the largest value. */
#define CUDA_TOLERANCE 1e-2
/* Against float64: one rounding to bf16 is at most half a unit, 2^-8
 * relative; the fp32 computation adds far less. */
#define FLOAT64_TOLERANCE 0x1p-7

/* ---- one shape on one table: its memory and its report ------------------- */

typedef struct Bf16Run {
    const NnBackend *be;       /* the table under test */
    int exact;                 /* 1: bit for bit (cpu-bf16); 0: within CUDA_TOLERANCE */
    char label[128];           /* "matmul_forward N=37 C=72 OC=200" */
    const char *variant;       /* "bias NULL", ...: named in reports; may be NULL */
    Rng rng;
    char report[1024];         /* "out exact, out vs float64 1.9e-03, ..." */
    int block_count, block_capacity;
    struct Block {
        void *pointer;
        int on_device;
    } *blocks;                 /* freed by end_run */
} Bf16Run;

/* A run seeded from its label: the same inputs on every table. */
static Bf16Run *begin_run(const NnBackend *be, int exact, const char *format, ...) {
    Bf16Run *run = require_allocation(calloc(1, sizeof *run), "a run", sizeof *run);
    run->be = be;
    run->exact = exact;
    va_list args;
    va_start(args, format);
    vsnprintf(run->label, sizeof run->label, format, args);
    va_end(args);
    run->rng.state = 1469598103934665603ull;   /* FNV-1a of the label */
    for (const char *c = run->label; *c; c++) run->rng.state = (run->rng.state ^ (uint8_t)*c) * 1099511628211ull;
    return run;
}

static void end_run(Bf16Run *run) {
    printf("  %s on %s:%s\n", run->label, run->be->name, run->report);
    for (int i = 0; i < run->block_count; i++) {
        if (run->blocks[i].on_device) run->be->free(run->blocks[i].pointer);
        else free(run->blocks[i].pointer);
    }
    free(run->blocks);
    free(run);
}

static void *track(Bf16Run *run, void *pointer, int on_device) {
    if (run->block_count == run->block_capacity) {
        run->block_capacity = run->block_capacity ? 2 * run->block_capacity : 32;
        const size_t bytes = (size_t)run->block_capacity * sizeof *run->blocks;
        run->blocks = require_allocation(realloc(run->blocks, bytes), "the list of blocks", bytes);
    }
    run->blocks[run->block_count++] = (struct Block){pointer, on_device};
    return pointer;
}

/* Zeroed host memory that lives as long as the run. */
static void *host_array(Bf16Run *run, long count, size_t element_size) {
    const size_t bytes = (size_t)count * element_size;
    return track(run, require_allocation(calloc(1, bytes ? bytes : 1), "host memory", bytes), 0);
}

/* A backend copy of host[bytes] that lives as long as the run. */
static void *device_copy(Bf16Run *run, const void *host, size_t bytes) {
    void *device = track(run, require_allocation(run->be->alloc(bytes), "backend memory", bytes), 1);
    run->be->copy_to_device(device, host, bytes);
    return device;
}

/* ---- host tensors ------------------------------------------------------------ */

static float *random_floats(Bf16Run *run, long count, double range) {   /* uniform in [-range, range) */
    float *x = host_array(run, count, sizeof(float));
    for (long i = 0; i < count; i++) x[i] = (float)rng_uniform(&run->rng, -range, range);
    return x;
}

/* bf16 of the fp32 values x[count]: float_to_bfloat16 of each. */
static uint16_t *rounded(Bf16Run *run, const float *x, long count) {
    uint16_t *bits = host_array(run, count, sizeof(uint16_t));
    for (long i = 0; i < count; i++) bits[i] = float_to_bfloat16(x[i]);
    return bits;
}

/* Random bf16 values: fp32 draws in [-range, range), rounded. */
static uint16_t *random_bf16(Bf16Run *run, long count, double range) {
    return rounded(run, random_floats(run, count, range), count);
}

/* The fp32 values of bits[count], exact. */
static float *widened(Bf16Run *run, const uint16_t *bits, long count) {
    float *x = host_array(run, count, sizeof(float));
    for (long i = 0; i < count; i++) x[i] = bfloat16_to_float(bits[i]);
    return x;
}

/* The float64 values of x[count] (or NULL for NULL), for the references. */
static double *doubles(Bf16Run *run, const float *x, long count) {
    if (!x) return NULL;
    double *d = host_array(run, count, sizeof(double));
    for (long i = 0; i < count; i++) d[i] = x[i];
    return d;
}

static float *copied(Bf16Run *run, const float *x, long count) {
    float *copy = host_array(run, count, sizeof(float));
    memcpy(copy, x, (size_t)count * sizeof(float));
    return copy;
}

static double max_magnitude(const float *x, long count) {
    double max = 0.0;
    for (long i = 0; i < count; i++) max = fmax(max, fabs(x[i]));
    return max;
}

/* The prefill of an accumulating output whose increment is increment[count]:
 * random values of its size, so an op that overwrites differs by as much
 * as the increment itself. */
static float *prefill_floats(Bf16Run *run, const float *increment, long count) {
    const double size = max_magnitude(increment, count);
    return random_floats(run, count, size > 0.0 ? size : 1.0);
}

static uint16_t *prefill_bf16(Bf16Run *run, const float *increment, long count) {
    return rounded(run, prefill_floats(run, increment, count), count);
}

/* What an accumulating bf16 output must hold, widened:
 * bf16(widen(old) + increment), one rounding. */
static float *accumulated(Bf16Run *run, const uint16_t *old, const float *increment, long count) {
    float *x = host_array(run, count, sizeof(float));
    for (long i = 0; i < count; i++)
        x[i] = bfloat16_to_float(float_to_bfloat16(bfloat16_to_float(old[i]) + increment[i]));
    return x;
}

/* What a bf16 output computed as x[count] in fp32 must hold, widened. */
static float *rounded_widened(Bf16Run *run, const float *x, long count) {
    return widened(run, rounded(run, x, count), count);
}

/* ---- backend tensors ----------------------------------------------------------- */

/* A bf16 output on the backend, every value `fill`. */
static uint16_t *filled_bf16_output(Bf16Run *run, long count, uint16_t fill) {
    uint16_t *bits = host_array(run, count, sizeof(uint16_t));
    for (long i = 0; i < count; i++) bits[i] = fill;
    return device_copy(run, bits, (size_t)count * sizeof(uint16_t));
}

/* A forward output on the backend, all NaN. */
static uint16_t *nan_bf16_output(Bf16Run *run, long count) { return filled_bf16_output(run, count, 0x7fc0u); }

static float *nan_float_output(Bf16Run *run, long count) {
    float *x = host_array(run, count, sizeof(float));
    for (long i = 0; i < count; i++) x[i] = NAN;
    return device_copy(run, x, (size_t)count * sizeof(float));
}

#define TO_DEVICE(run, host, count) device_copy(run, host, (size_t)(count) * sizeof *(host))

/* A bf16 result of the backend, widened. */
static float *fetch_bf16(Bf16Run *run, const uint16_t *device, long count) {
    uint16_t *bits = host_array(run, count, sizeof(uint16_t));
    run->be->synchronize();
    run->be->copy_to_host(bits, device, (size_t)count * sizeof(uint16_t));
    return widened(run, bits, count);
}

static float *fetch_floats(Bf16Run *run, const float *device, long count) {
    float *x = host_array(run, count, sizeof(float));
    run->be->synchronize();
    run->be->copy_to_host(x, device, (size_t)count * sizeof(float));
    return x;
}

/* ---- comparisons --------------------------------------------------------------- */

/* "dinp (dbias NULL)": what, and the variant when there is one. */
static const char *with_variant(const Bf16Run *run, const char *what, char *label, size_t size) {
    if (run->variant) snprintf(label, size, "%s (%s)", what, run->variant);
    else snprintf(label, size, "%s", what);
    return label;
}

/* Appends "what: result" to the run's report line. */
static void report(Bf16Run *run, const char *what, const char *result) {
    char label[128];
    const size_t used = strlen(run->report);
    snprintf(run->report + used, sizeof run->report - used, "%s %s %s", used ? "," : "",
             with_variant(run, what, label, sizeof label), result);
}

/* Fails the case, and prints the mismatch on its own line. */
static void fail(Bf16Run *run, const char *what, const char *why) {
    char label[128];
    with_variant(run, what, label, sizeof label);
    printf("    mismatch: %s on %s, %s: %s\n", run->label, run->be->name, label, why);
    CHECK(0, "%s on %s, %s: %s", run->label, run->be->name, label, why);
}

/* Index of the first non-finite value of x[count], or -1. */
static long first_non_finite(const float *x, long count) {
    for (long i = 0; i < count; i++)
        if (!isfinite(x[i])) return i;
    return -1;
}

/* found[count] (a result, bf16 ones widened) against expected[count]: bit
 * for bit on an exact table, else relative error <= CUDA_TOLERANCE; never
 * a non-finite value. */
static void expect_result(Bf16Run *run, const char *what, const float *found, const float *expected, long count) {
    char why[256];
    const long bad = first_non_finite(found, count);
    long first = -1;
    double error = 0.0;
    if (bad >= 0) {
        snprintf(why, sizeof why, "value %ld is %g", bad, found[bad]);
    } else if (run->exact) {
        for (long i = 0; i < count && first < 0; i++)
            if (memcmp(&found[i], &expected[i], sizeof(float)) != 0) first = i;
        if (first >= 0)
            snprintf(why, sizeof why, "not bit for bit: value %ld is %.9g, expected %.9g", first, found[first],
                     expected[first]);
    } else {
        error = test_relative_error_ff(found, expected, count);
        if (!(error <= CUDA_TOLERANCE))
            snprintf(why, sizeof why, "relative error %.3g > %.3g", error, CUDA_TOLERANCE);
    }
    if (bad >= 0 || first >= 0 || !(error <= CUDA_TOLERANCE)) {
        fail(run, what, why);
        return;
    }
    char measured[32];
    snprintf(measured, sizeof measured, "%.2e", error);
    report(run, what, run->exact ? "exact" : measured);
}

/* found[count] against the float64 reference: relative error <= FLOAT64_TOLERANCE. */
static void expect_near_float64(Bf16Run *run, const char *what, const float *found, const double *reference,
                                long count) {
    char label[96], why[128];
    snprintf(label, sizeof label, "%s vs float64", what);
    const double error = test_relative_error(found, reference, count);
    snprintf(why, sizeof why, "%.2e", error);
    report(run, label, why);
    if (!(error <= FLOAT64_TOLERANCE)) {
        snprintf(why, sizeof why, "relative error %.3g > %.3g", error, FLOAT64_TOLERANCE);
        fail(run, label, why);
    }
}

/* ---- the tables ------------------------------------------------------------------- */

/* The table of a case, or NULL after SKIP with the reason. */
static const NnBackend *table_of(int cuda, char *why, size_t why_size) {
    return cuda ? nn_cuda_backend(why, why_size) : &nn_cpu_bf16_backend;
}

/* Declares be, the table under test, and returns from the case with SKIP
 * when there is none; fails the case when the table has no `entry`
 * although it sets block_bf16 (skips it when it does not). */
#define REQUIRE_ENTRY(be, cuda, entry)                                                      \
    char why_[512] = "";                                                                    \
    const NnBackend *be = table_of(cuda, why_, sizeof why_);                                \
    if (!be) {                                                                              \
        CHECK(why_[0] != '\0', "the CUDA backend returned NULL without a reason");          \
        SKIP("%s", why_);                                                                   \
    }                                                                                       \
    if (!be->entry) {                                                                       \
        if (!be->block_bf16) SKIP("%s has no bf16 block entries (block_bf16 0)", be->name); \
        CHECK(0, "%s sets block_bf16 but has no " #entry, be->name);                        \
        return;                                                                             \
    }

/* ---- cast_to_bf16 -------------------------------------------------------------------- */

static float float_of_bits(uint32_t bits) {
    float value;
    memcpy(&value, &bits, sizeof value);
    return value;
}

/* Every bf16 pattern (upper half) with the lower halves that decide the
 * rounding: exact, just below, at and just above the tie (odd and even
 * upper halves: ties to even both ways), all ones, random; so every
 * infinity, NaN payload (quiet and signalling), subnormal, the largest
 * float rounding to infinity; then a few random floats (an odd count). */
static void check_cast_to_bf16(int cuda) {
    REQUIRE_ENTRY(be, cuda, cast_to_bf16);
    static const uint16_t lower_halves[] = {0x0000u, 0x7fffu, 0x8000u, 0x8001u, 0xffffu};
    enum { LOWERS = sizeof lower_halves / sizeof lower_halves[0] + 1, EXTRA = 7 };
    const long count = (long)LOWERS * 65536 + EXTRA;
    Bf16Run *run = begin_run(be, 1, "cast_to_bf16 n=%ld", count);
    float *inp = host_array(run, count, sizeof(float));   /* [count] */
    for (long i = 0; i < count - EXTRA; i++) {
        const uint32_t upper = (uint32_t)(i / LOWERS), which = (uint32_t)(i % LOWERS);
        const uint32_t lower = which < LOWERS - 1 ? lower_halves[which]
                                                  : (uint32_t)rng_uniform(&run->rng, 0.0, 65536.0);
        inp[i] = float_of_bits(upper << 16 | lower);
    }
    for (long i = count - EXTRA; i < count; i++) inp[i] = (float)rng_uniform(&run->rng, -1e3, 1e3);
    uint16_t *expected = rounded(run, inp, count);
    uint16_t *d_out = filled_bf16_output(run, count, 0xabcdu);   /* unwritten values show (but those of 0xabcd) */
    be->cast_to_bf16(d_out, TO_DEVICE(run, inp, count), count);
    uint16_t *found = host_array(run, count, sizeof(uint16_t));
    be->synchronize();
    be->copy_to_host(found, d_out, (size_t)count * sizeof(uint16_t));
    long first = -1;
    for (long i = 0; i < count && first < 0; i++)
        if (found[i] != expected[i]) first = i;
    char why[160];
    if (first >= 0) {
        snprintf(why, sizeof why, "value %ld (fp32 %a) is 0x%04x, float_to_bfloat16 gives 0x%04x", first,
                 (double)inp[first], found[first], expected[first]);
        fail(run, "out", why);
    } else {
        report(run, "out", "bit for bit with float_to_bfloat16");
    }
    end_run(run);
}

/* ---- linear layers ----------------------------------------------------------------------- */

typedef struct MatmulShape {
    int N, C, OC;
} MatmulShape;
/* Odd sizes everywhere; sizes that are not multiples of 16; a block's. */
static const MatmulShape matmul_shapes[] = {{5, 13, 7}, {37, 72, 200}, {300, 256, 768}};

static void check_matmul_forward_shape(const NnBackend *be, int exact, const MatmulShape *s) {
    Bf16Run *run = begin_run(be, exact, "matmul_forward N=%d C=%d OC=%d", s->N, s->C, s->OC);
    const long in_count = (long)s->N * s->C, weight_count = (long)s->OC * s->C, out_count = (long)s->N * s->OC;
    uint16_t *inp = random_bf16(run, in_count, 1.0);            /* [N, C] */
    uint16_t *weight = random_bf16(run, weight_count, 1.0);     /* [OC, C] */
    float *bias = random_floats(run, s->OC, 1.0);               /* [OC] */
    float *inp32 = widened(run, inp, in_count), *weight32 = widened(run, weight, weight_count);
    uint16_t *d_inp = TO_DEVICE(run, inp, in_count), *d_weight = TO_DEVICE(run, weight, weight_count);
    float *d_bias = TO_DEVICE(run, bias, s->OC);
    for (int with_bias = 1; with_bias >= 0; with_bias--) {
        run->variant = with_bias ? NULL : "bias NULL";
        float *out32 = host_array(run, out_count, sizeof(float));   /* [N, OC] */
        nn_cpu_backend.matmul_forward(out32, inp32, weight32, with_bias ? bias : NULL, s->N, s->C, s->OC);
        uint16_t *d_out = nan_bf16_output(run, out_count);
        be->matmul_forward_bf16(d_out, d_inp, d_weight, with_bias ? d_bias : NULL, s->N, s->C, s->OC);
        float *found = fetch_bf16(run, d_out, out_count);
        expect_result(run, "out", found, rounded_widened(run, out32, out_count), out_count);

        double *out64 = host_array(run, out_count, sizeof(double));
        ref_matmul_forward(out64, doubles(run, inp32, in_count), doubles(run, weight32, weight_count),
                           with_bias ? doubles(run, bias, s->OC) : NULL, s->N, s->C, s->OC);
        expect_near_float64(run, "out", found, out64, out_count);
    }
    end_run(run);
}

/* dinp (bf16) prefilled, dweight and dbias (fp32) prefilled; then with
 * dinp NULL and with dbias NULL. */
static void check_matmul_backward_shape(const NnBackend *be, int exact, const MatmulShape *s) {
    Bf16Run *run = begin_run(be, exact, "matmul_backward N=%d C=%d OC=%d", s->N, s->C, s->OC);
    const long in_count = (long)s->N * s->C, weight_count = (long)s->OC * s->C, out_count = (long)s->N * s->OC;
    uint16_t *dout = random_bf16(run, out_count, 1.0);          /* [N, OC] */
    uint16_t *inp = random_bf16(run, in_count, 1.0);            /* [N, C] */
    uint16_t *weight = random_bf16(run, weight_count, 1.0);     /* [OC, C] */
    float *dout32 = widened(run, dout, out_count), *inp32 = widened(run, inp, in_count);
    float *weight32 = widened(run, weight, weight_count);

    /* the fp32 entry's increments, then the prefills and what they become */
    float *dinp_increment = host_array(run, in_count, sizeof(float));         /* [N, C] */
    float *dweight_increment = host_array(run, weight_count, sizeof(float));  /* [OC, C] */
    float *dbias_increment = host_array(run, s->OC, sizeof(float));           /* [OC] */
    nn_cpu_backend.matmul_backward(dinp_increment, dweight_increment, dbias_increment, dout32, inp32, weight32,
                                   s->N, s->C, s->OC);
    uint16_t *dinp_old = prefill_bf16(run, dinp_increment, in_count);
    float *dweight_old = prefill_floats(run, dweight_increment, weight_count);
    float *dbias_old = prefill_floats(run, dbias_increment, s->OC);
    float *dinp_expected = accumulated(run, dinp_old, dinp_increment, in_count);
    float *dweight_expected = copied(run, dweight_old, weight_count), *dbias_expected = copied(run, dbias_old, s->OC);
    nn_cpu_backend.matmul_backward(NULL, dweight_expected, dbias_expected, dout32, inp32, weight32, s->N, s->C,
                                   s->OC);

    uint16_t *d_dout = TO_DEVICE(run, dout, out_count), *d_inp = TO_DEVICE(run, inp, in_count);
    uint16_t *d_weight = TO_DEVICE(run, weight, weight_count);
    static const char *const variants[] = {NULL, "dinp NULL", "dbias NULL"};
    for (int v = 0; v < ARRAY_LENGTH(variants); v++) {
        run->variant = variants[v];
        uint16_t *d_dinp = v == 1 ? NULL : TO_DEVICE(run, dinp_old, in_count);
        float *d_dweight = TO_DEVICE(run, dweight_old, weight_count);
        float *d_dbias = v == 2 ? NULL : TO_DEVICE(run, dbias_old, s->OC);
        be->matmul_backward_bf16(d_dinp, d_dweight, d_dbias, d_dout, d_inp, d_weight, s->N, s->C, s->OC);
        if (d_dinp) expect_result(run, "dinp", fetch_bf16(run, d_dinp, in_count), dinp_expected, in_count);
        expect_result(run, "dweight", fetch_floats(run, d_dweight, weight_count), dweight_expected, weight_count);
        if (d_dbias) expect_result(run, "dbias", fetch_floats(run, d_dbias, s->OC), dbias_expected, s->OC);
    }
    end_run(run);
}

/* ---- normalisation ------------------------------------------------------------------------- */

typedef struct RowsShape {
    int N, C;
} RowsShape;
static const RowsShape rows_shapes[] = {{37, 72}, {300, 384}, {3, 13}};

/* The residual stream: fp32 values around an offset, as a LayerNorm sees them. */
static float *residual_rows(Bf16Run *run, long count) {
    float *x = random_floats(run, count, 3.0);
    for (long i = 0; i < count; i++) x[i] += 0.5f;
    return x;
}

static void check_layernorm_forward_shape(const NnBackend *be, int exact, const RowsShape *s) {
    Bf16Run *run = begin_run(be, exact, "layernorm_forward N=%d C=%d", s->N, s->C);
    const long count = (long)s->N * s->C;
    float *inp = residual_rows(run, count);                          /* [N, C] fp32 */
    float *weight = random_floats(run, s->C, 1.0), *bias = random_floats(run, s->C, 1.0);   /* [C] */
    float *out32 = host_array(run, count, sizeof(float));            /* [N, C] */
    float *mean = host_array(run, s->N, sizeof(float)), *rstd = host_array(run, s->N, sizeof(float));   /* [N] */
    nn_cpu_backend.layernorm_forward(out32, mean, rstd, inp, weight, bias, s->N, s->C, LAYERNORM_EPS);

    uint16_t *d_out = nan_bf16_output(run, count);
    float *d_mean = nan_float_output(run, s->N), *d_rstd = nan_float_output(run, s->N);
    be->layernorm_forward_bf16(d_out, d_mean, d_rstd, TO_DEVICE(run, inp, count), TO_DEVICE(run, weight, s->C),
                               TO_DEVICE(run, bias, s->C), s->N, s->C, LAYERNORM_EPS);
    float *found = fetch_bf16(run, d_out, count);
    float *found_mean = fetch_floats(run, d_mean, s->N), *found_rstd = fetch_floats(run, d_rstd, s->N);
    expect_result(run, "out", found, rounded_widened(run, out32, count), count);
    expect_result(run, "mean", found_mean, mean, s->N);
    expect_result(run, "rstd", found_rstd, rstd, s->N);

    double *out64 = host_array(run, count, sizeof(double));
    double *mean64 = host_array(run, s->N, sizeof(double)), *rstd64 = host_array(run, s->N, sizeof(double));
    ref_layernorm_forward(out64, mean64, rstd64, doubles(run, inp, count), doubles(run, weight, s->C),
                          doubles(run, bias, s->C), s->N, s->C, LAYERNORM_EPS);
    expect_near_float64(run, "out", found, out64, count);
    expect_near_float64(run, "mean", found_mean, mean64, s->N);
    expect_near_float64(run, "rstd", found_rstd, rstd64, s->N);
    end_run(run);
}

/* dinp, dweight, dbias (all fp32) prefilled. */
static void check_layernorm_backward_shape(const NnBackend *be, int exact, const RowsShape *s) {
    Bf16Run *run = begin_run(be, exact, "layernorm_backward N=%d C=%d", s->N, s->C);
    const long count = (long)s->N * s->C;
    float *inp = residual_rows(run, count);                          /* [N, C] fp32 */
    float *weight = random_floats(run, s->C, 1.0), *bias = random_floats(run, s->C, 1.0);   /* [C] */
    uint16_t *dout = random_bf16(run, count, 1.0);                   /* [N, C] */
    float *dout32 = widened(run, dout, count);
    float *mean = host_array(run, s->N, sizeof(float)), *rstd = host_array(run, s->N, sizeof(float));   /* [N] */
    nn_cpu_backend.layernorm_forward(host_array(run, count, sizeof(float)), mean, rstd, inp, weight, bias, s->N,
                                     s->C, LAYERNORM_EPS);

    float *dinp_increment = host_array(run, count, sizeof(float));   /* [N, C] */
    float *dweight_increment = host_array(run, s->C, sizeof(float));   /* [C] */
    float *dbias_increment = host_array(run, s->C, sizeof(float));     /* [C] */
    nn_cpu_backend.layernorm_backward(dinp_increment, dweight_increment, dbias_increment, dout32, inp, weight, mean,
                                      rstd, s->N, s->C);
    float *dinp_old = prefill_floats(run, dinp_increment, count);
    float *dweight_old = prefill_floats(run, dweight_increment, s->C);
    float *dbias_old = prefill_floats(run, dbias_increment, s->C);
    float *dinp_expected = copied(run, dinp_old, count);
    float *dweight_expected = copied(run, dweight_old, s->C), *dbias_expected = copied(run, dbias_old, s->C);
    nn_cpu_backend.layernorm_backward(dinp_expected, dweight_expected, dbias_expected, dout32, inp, weight, mean,
                                      rstd, s->N, s->C);

    float *d_dinp = TO_DEVICE(run, dinp_old, count);
    float *d_dweight = TO_DEVICE(run, dweight_old, s->C), *d_dbias = TO_DEVICE(run, dbias_old, s->C);
    be->layernorm_backward_bf16(d_dinp, d_dweight, d_dbias, TO_DEVICE(run, dout, count), TO_DEVICE(run, inp, count),
                                TO_DEVICE(run, weight, s->C), TO_DEVICE(run, mean, s->N), TO_DEVICE(run, rstd, s->N),
                                s->N, s->C);
    expect_result(run, "dinp", fetch_floats(run, d_dinp, count), dinp_expected, count);
    expect_result(run, "dweight", fetch_floats(run, d_dweight, s->C), dweight_expected, s->C);
    expect_result(run, "dbias", fetch_floats(run, d_dbias, s->C), dbias_expected, s->C);
    end_run(run);
}

/* ---- attention ------------------------------------------------------------------------------- */

typedef struct AttentionShape {
    int B, T, prefix, H, Dh;
    int Hp, Wp;   /* the RoPE grid, Hp * Wp = T - prefix; Hp = 0: sin = cos = NULL */
} AttentionShape;
/* CLS and 4 registers before the patches; Dh of ViT-S/B (64), of a ViT-7B
 * (128), and an odd size (32, one warp of values). */
static const AttentionShape attention_shapes[] = {
    {2, 37, 5, 3, 64, 4, 8},
    {2, 37, 5, 2, 32, 4, 8},
    {1, 261, 5, 2, 128, 16, 16},
    {1, 261, 5, 3, 64, 16, 16},
    {2, 37, 0, 3, 64, 0, 0},
};

/* The attention inputs of a shape on the host: qkv (bf16), the RoPE tables
 * (fp32, or NULL). */
typedef struct AttentionInputs {
    long qkv_count, out_count, lse_count;
    uint16_t *qkv;           /* [B, T, 3, H, Dh] */
    float *qkv32;            /* the same, widened */
    float *sin, *cos;        /* [T - prefix, Dh] or NULL */
} AttentionInputs;

static long table_count(const AttentionShape *s) { return (long)s->Hp * s->Wp * s->Dh; }

static AttentionInputs attention_inputs(Bf16Run *run, const AttentionShape *s) {
    AttentionInputs a = {.out_count = (long)s->B * s->T * s->H * s->Dh, .lse_count = (long)s->B * s->H * s->T};
    a.qkv_count = 3 * a.out_count;
    a.qkv = random_bf16(run, a.qkv_count, 2.0);
    a.qkv32 = widened(run, a.qkv, a.qkv_count);
    if (s->Hp) {
        a.sin = host_array(run, table_count(s), sizeof(float));
        a.cos = host_array(run, table_count(s), sizeof(float));
        rope_tables(a.sin, a.cos, s->Hp, s->Wp, s->Dh, ROPE_BASE, ROPE_RESCALE);
    }
    return a;
}

/* A table's backend copy, NULL for none. */
static float *table_on_device(Bf16Run *run, const float *table, const AttentionShape *s) {
    return table ? TO_DEVICE(run, table, table_count(s)) : NULL;
}

static Bf16Run *begin_attention_run(const NnBackend *be, int exact, const char *op, const AttentionShape *s) {
    return begin_run(be, exact, "%s B=%d T=%d prefix=%d H=%d Dh=%d%s", op, s->B, s->T, s->prefix, s->H, s->Dh,
                     s->Hp ? "" : " sin=cos=NULL");
}

static void check_attention_forward_shape(const NnBackend *be, int exact, const AttentionShape *s) {
    Bf16Run *run = begin_attention_run(be, exact, "attention_forward", s);
    const AttentionInputs a = attention_inputs(run, s);
    float *out32 = host_array(run, a.out_count, sizeof(float));   /* [B, T, H, Dh] */
    float *lse = host_array(run, a.lse_count, sizeof(float));     /* [B, H, T] */
    nn_cpu_backend.attention_forward(out32, lse, a.qkv32, a.sin, a.cos, s->B, s->T, s->prefix, s->H, s->Dh);

    uint16_t *d_out = nan_bf16_output(run, a.out_count);
    float *d_lse = nan_float_output(run, a.lse_count);
    be->attention_forward_bf16(d_out, d_lse, TO_DEVICE(run, a.qkv, a.qkv_count), table_on_device(run, a.sin, s),
                               table_on_device(run, a.cos, s), s->B, s->T, s->prefix, s->H, s->Dh);
    float *found = fetch_bf16(run, d_out, a.out_count), *found_lse = fetch_floats(run, d_lse, a.lse_count);
    expect_result(run, "out", found, rounded_widened(run, out32, a.out_count), a.out_count);
    expect_result(run, "lse", found_lse, lse, a.lse_count);

    double *out64 = host_array(run, a.out_count, sizeof(double)), *lse64 = host_array(run, a.lse_count, sizeof(double));
    ref_attention_forward(out64, lse64, doubles(run, a.qkv32, a.qkv_count), doubles(run, a.sin, table_count(s)),
                          doubles(run, a.cos, table_count(s)), s->B, s->T, s->prefix, s->H, s->Dh);
    expect_near_float64(run, "out", found, out64, a.out_count);
    expect_near_float64(run, "lse", found_lse, lse64, a.lse_count);
    end_run(run);
}

/* out (bf16) and lse as the bf16 forward leaves them; dqkv (bf16) prefilled. */
static void check_attention_backward_shape(const NnBackend *be, int exact, const AttentionShape *s) {
    Bf16Run *run = begin_attention_run(be, exact, "attention_backward", s);
    const AttentionInputs a = attention_inputs(run, s);
    float *forward_out = host_array(run, a.out_count, sizeof(float));   /* [B, T, H, Dh] */
    float *lse = host_array(run, a.lse_count, sizeof(float));           /* [B, H, T] */
    nn_cpu_backend.attention_forward(forward_out, lse, a.qkv32, a.sin, a.cos, s->B, s->T, s->prefix, s->H, s->Dh);
    uint16_t *out = rounded(run, forward_out, a.out_count);
    uint16_t *dout = random_bf16(run, a.out_count, 1.0);                 /* [B, T, H, Dh] */

    float *dqkv_increment = host_array(run, a.qkv_count, sizeof(float));   /* [B, T, 3, H, Dh] */
    nn_cpu_backend.attention_backward(dqkv_increment, widened(run, dout, a.out_count), a.qkv32,
                                      widened(run, out, a.out_count), lse, a.sin, a.cos, s->B, s->T, s->prefix,
                                      s->H, s->Dh);
    uint16_t *dqkv_old = prefill_bf16(run, dqkv_increment, a.qkv_count);

    uint16_t *d_dqkv = TO_DEVICE(run, dqkv_old, a.qkv_count);
    be->attention_backward_bf16(d_dqkv, TO_DEVICE(run, dout, a.out_count), TO_DEVICE(run, a.qkv, a.qkv_count),
                                TO_DEVICE(run, out, a.out_count), TO_DEVICE(run, lse, a.lse_count),
                                table_on_device(run, a.sin, s), table_on_device(run, a.cos, s), s->B, s->T,
                                s->prefix, s->H, s->Dh);
    expect_result(run, "dqkv", fetch_bf16(run, d_dqkv, a.qkv_count),
                  accumulated(run, dqkv_old, dqkv_increment, a.qkv_count), a.qkv_count);
    end_run(run);
}

/* ---- pointwise --------------------------------------------------------------------------------- */

/* GELU: inputs over its curved part and both tails; an odd count and a
 * block's hidden rows. */
static const long gelu_counts[] = {1001, 300L * 1536};

static void check_gelu_forward_shape(const NnBackend *be, int exact, const long *n) {
    Bf16Run *run = begin_run(be, exact, "gelu_forward n=%ld", *n);
    uint16_t *inp = random_bf16(run, *n, 6.0);                   /* [n] */
    float *inp32 = widened(run, inp, *n);
    float *out32 = host_array(run, *n, sizeof(float));           /* [n] */
    nn_cpu_backend.gelu_forward(out32, inp32, *n);
    uint16_t *d_out = nan_bf16_output(run, *n);
    be->gelu_forward_bf16(d_out, TO_DEVICE(run, inp, *n), *n);
    float *found = fetch_bf16(run, d_out, *n);
    expect_result(run, "out", found, rounded_widened(run, out32, *n), *n);
    double *out64 = host_array(run, *n, sizeof(double));
    ref_gelu_forward(out64, doubles(run, inp32, *n), *n);
    expect_near_float64(run, "out", found, out64, *n);
    end_run(run);
}

static void check_gelu_backward_shape(const NnBackend *be, int exact, const long *n) {
    Bf16Run *run = begin_run(be, exact, "gelu_backward n=%ld", *n);
    uint16_t *inp = random_bf16(run, *n, 6.0), *dout = random_bf16(run, *n, 1.0);   /* [n] */
    float *dinp_increment = host_array(run, *n, sizeof(float));                   /* [n] */
    nn_cpu_backend.gelu_backward(dinp_increment, widened(run, dout, *n), widened(run, inp, *n), *n);
    uint16_t *dinp_old = prefill_bf16(run, dinp_increment, *n);
    uint16_t *d_dinp = TO_DEVICE(run, dinp_old, *n);
    be->gelu_backward_bf16(d_dinp, TO_DEVICE(run, dout, *n), TO_DEVICE(run, inp, *n), *n);
    expect_result(run, "dinp", fetch_bf16(run, d_dinp, *n), accumulated(run, dinp_old, dinp_increment, *n), *n);
    end_run(run);
}

typedef struct SwigluShape {
    int N, F;
} SwigluShape;
static const SwigluShape swiglu_shapes[] = {{37, 200}, {300, 1024}, {3, 7}};

static void check_swiglu_forward_shape(const NnBackend *be, int exact, const SwigluShape *s) {
    Bf16Run *run = begin_run(be, exact, "swiglu_forward N=%d F=%d", s->N, s->F);
    const long out_count = (long)s->N * s->F, in_count = 2 * out_count;
    uint16_t *inp = random_bf16(run, in_count, 4.0);             /* [N, 2F] */
    float *inp32 = widened(run, inp, in_count);
    float *out32 = host_array(run, out_count, sizeof(float));    /* [N, F] */
    nn_cpu_backend.swiglu_forward(out32, inp32, s->N, s->F);
    uint16_t *d_out = nan_bf16_output(run, out_count);
    be->swiglu_forward_bf16(d_out, TO_DEVICE(run, inp, in_count), s->N, s->F);
    float *found = fetch_bf16(run, d_out, out_count);
    expect_result(run, "out", found, rounded_widened(run, out32, out_count), out_count);
    double *out64 = host_array(run, out_count, sizeof(double));
    ref_swiglu_forward(out64, doubles(run, inp32, in_count), s->N, s->F);
    expect_near_float64(run, "out", found, out64, out_count);
    end_run(run);
}

static void check_swiglu_backward_shape(const NnBackend *be, int exact, const SwigluShape *s) {
    Bf16Run *run = begin_run(be, exact, "swiglu_backward N=%d F=%d", s->N, s->F);
    const long out_count = (long)s->N * s->F, in_count = 2 * out_count;
    uint16_t *inp = random_bf16(run, in_count, 4.0);             /* [N, 2F] */
    uint16_t *dout = random_bf16(run, out_count, 1.0);           /* [N, F] */
    float *dinp_increment = host_array(run, in_count, sizeof(float));   /* [N, 2F] */
    nn_cpu_backend.swiglu_backward(dinp_increment, widened(run, dout, out_count), widened(run, inp, in_count), s->N,
                                   s->F);
    uint16_t *dinp_old = prefill_bf16(run, dinp_increment, in_count);
    uint16_t *d_dinp = TO_DEVICE(run, dinp_old, in_count);
    be->swiglu_backward_bf16(d_dinp, TO_DEVICE(run, dout, out_count), TO_DEVICE(run, inp, in_count), s->N, s->F);
    expect_result(run, "dinp", fetch_bf16(run, d_dinp, in_count),
                  accumulated(run, dinp_old, dinp_increment, in_count), in_count);
    end_run(run);
}

static void check_layerscale_residual_forward_shape(const NnBackend *be, int exact, const RowsShape *s) {
    Bf16Run *run = begin_run(be, exact, "layerscale_residual_forward N=%d C=%d", s->N, s->C);
    const long count = (long)s->N * s->C;
    float *res = residual_rows(run, count);                      /* [N, C] fp32 */
    uint16_t *y = random_bf16(run, count, 2.0);                  /* [N, C] */
    float *gamma = random_floats(run, s->C, 1.0);                /* [C] */
    float *y32 = widened(run, y, count);
    float *out = host_array(run, count, sizeof(float));          /* [N, C] fp32 */
    nn_cpu_backend.layerscale_residual_forward(out, res, y32, gamma, s->N, s->C);
    float *d_out = nan_float_output(run, count);
    be->layerscale_residual_forward_bf16(d_out, TO_DEVICE(run, res, count), TO_DEVICE(run, y, count),
                                         TO_DEVICE(run, gamma, s->C), s->N, s->C);
    float *found = fetch_floats(run, d_out, count);
    expect_result(run, "out", found, out, count);
    double *out64 = host_array(run, count, sizeof(double));
    ref_layerscale_residual_forward(out64, doubles(run, res, count), doubles(run, y32, count),
                                    doubles(run, gamma, s->C), s->N, s->C);
    expect_near_float64(run, "out", found, out64, count);
    end_run(run);
}

/* dy (bf16), dgamma and dres (fp32) prefilled; then with dres NULL. */
static void check_layerscale_residual_backward_shape(const NnBackend *be, int exact, const RowsShape *s) {
    Bf16Run *run = begin_run(be, exact, "layerscale_residual_backward N=%d C=%d", s->N, s->C);
    const long count = (long)s->N * s->C;
    float *dout = random_floats(run, count, 1.0);                /* [N, C] fp32 */
    uint16_t *y = random_bf16(run, count, 2.0);                  /* [N, C] */
    float *gamma = random_floats(run, s->C, 1.0);                /* [C] */
    float *y32 = widened(run, y, count);

    float *dres_increment = host_array(run, count, sizeof(float));   /* [N, C] */
    float *dy_increment = host_array(run, count, sizeof(float));     /* [N, C] */
    float *dgamma_increment = host_array(run, s->C, sizeof(float));   /* [C] */
    nn_cpu_backend.layerscale_residual_backward(dres_increment, dy_increment, dgamma_increment, dout, y32, gamma,
                                                s->N, s->C);
    float *dres_old = prefill_floats(run, dres_increment, count);
    uint16_t *dy_old = prefill_bf16(run, dy_increment, count);
    float *dgamma_old = prefill_floats(run, dgamma_increment, s->C);
    float *dres_expected = copied(run, dres_old, count), *dgamma_expected = copied(run, dgamma_old, s->C);
    nn_cpu_backend.layerscale_residual_backward(dres_expected, host_array(run, count, sizeof(float)), dgamma_expected,
                                                dout, y32, gamma, s->N, s->C);
    float *dy_expected = accumulated(run, dy_old, dy_increment, count);

    float *d_dout = TO_DEVICE(run, dout, count), *d_gamma = TO_DEVICE(run, gamma, s->C);
    uint16_t *d_y = TO_DEVICE(run, y, count);
    for (int with_dres = 1; with_dres >= 0; with_dres--) {
        run->variant = with_dres ? NULL : "dres NULL";
        float *d_dres = with_dres ? TO_DEVICE(run, dres_old, count) : NULL;
        uint16_t *d_dy = TO_DEVICE(run, dy_old, count);
        float *d_dgamma = TO_DEVICE(run, dgamma_old, s->C);
        be->layerscale_residual_backward_bf16(d_dres, d_dy, d_dgamma, d_dout, d_y, d_gamma, s->N, s->C);
        if (d_dres) expect_result(run, "dres", fetch_floats(run, d_dres, count), dres_expected, count);
        expect_result(run, "dy", fetch_bf16(run, d_dy, count), dy_expected, count);
        expect_result(run, "dgamma", fetch_floats(run, d_dgamma, s->C), dgamma_expected, s->C);
    }
    end_run(run);
}

/* ---- cases: each op on each table ----------------------------------------------------------- */

/* check_<op>(cuda): every shape of shapes through check_<op>_shape. */
#define DEFINE_SHAPE_LOOP(op, entry, shapes)                                                      \
    static void check_##op(int cuda) {                                                           \
        REQUIRE_ENTRY(be, cuda, entry);                                                          \
        for (int i = 0; i < ARRAY_LENGTH(shapes); i++) check_##op##_shape(be, !cuda, &shapes[i]); \
    }
DEFINE_SHAPE_LOOP(matmul_forward, matmul_forward_bf16, matmul_shapes)
DEFINE_SHAPE_LOOP(matmul_backward, matmul_backward_bf16, matmul_shapes)
DEFINE_SHAPE_LOOP(layernorm_forward, layernorm_forward_bf16, rows_shapes)
DEFINE_SHAPE_LOOP(layernorm_backward, layernorm_backward_bf16, rows_shapes)
DEFINE_SHAPE_LOOP(attention_forward, attention_forward_bf16, attention_shapes)
DEFINE_SHAPE_LOOP(attention_backward, attention_backward_bf16, attention_shapes)
DEFINE_SHAPE_LOOP(gelu_forward, gelu_forward_bf16, gelu_counts)
DEFINE_SHAPE_LOOP(gelu_backward, gelu_backward_bf16, gelu_counts)
DEFINE_SHAPE_LOOP(swiglu_forward, swiglu_forward_bf16, swiglu_shapes)
DEFINE_SHAPE_LOOP(swiglu_backward, swiglu_backward_bf16, swiglu_shapes)
DEFINE_SHAPE_LOOP(layerscale_residual_forward, layerscale_residual_forward_bf16, rows_shapes)
DEFINE_SHAPE_LOOP(layerscale_residual_backward, layerscale_residual_backward_bf16, rows_shapes)

/* The CUDA linear layers once more with cuBLASLt's epilogues off
 * (nn_cuda_fuse_epilogues(0)): the bias added, dbias summed by kernels of
 * their own, as where cuBLASLt has no algorithm with the epilogue. The
 * cases above run them fused. */
#define DEFINE_UNFUSED_CASE(op, entry, shapes)                                                    \
    static void op##_epilogues_off_on_cuda(void) {                                               \
        REQUIRE_ENTRY(be, 1, entry);                                                             \
        const int previous = nn_cuda_fuse_epilogues(0);                                          \
        CHECK(previous == 1, "nn_cuda_fuse_epilogues was %d, expected 1 (on by default)", previous); \
        for (int i = 0; i < ARRAY_LENGTH(shapes); i++) check_##op##_shape(be, 0, &shapes[i]);    \
        nn_cuda_fuse_epilogues(previous);                                                        \
    }
DEFINE_UNFUSED_CASE(matmul_forward, matmul_forward_bf16, matmul_shapes)
DEFINE_UNFUSED_CASE(matmul_backward, matmul_backward_bf16, matmul_shapes)

#define BF16_CASES(X)                                                                              \
    X(cast_to_bf16)                                                                                \
    X(matmul_forward)                                                                              \
    X(matmul_backward)                                                                             \
    X(layernorm_forward)                                                                           \
    X(layernorm_backward)                                                                          \
    X(attention_forward)                                                                           \
    X(attention_backward)                                                                          \
    X(gelu_forward)                                                                                \
    X(gelu_backward)                                                                               \
    X(swiglu_forward)                                                                              \
    X(swiglu_backward)                                                                             \
    X(layerscale_residual_forward)                                                                 \
    X(layerscale_residual_backward)

#define DEFINE_CASES(name)                                                                         \
    static void name##_on_cpu(void) { check_##name(0); }                                           \
    static void name##_on_cuda(void) { check_##name(1); }
BF16_CASES(DEFINE_CASES)

#define LIST_CASES(name) {#name "/cpu", name##_on_cpu}, {#name "/cuda", name##_on_cuda},

int main(int argc, char **argv) {
    static const TestCase cases[] = {BF16_CASES(LIST_CASES){"matmul_forward_epilogues_off/cuda",
                                                            matmul_forward_epilogues_off_on_cuda},
                                     {"matmul_backward_epilogues_off/cuda", matmul_backward_epilogues_off_on_cuda}};
    return test_main(cases, (int)(sizeof cases / sizeof cases[0]), argc, argv);
}

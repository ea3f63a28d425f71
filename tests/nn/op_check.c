/*
 * op_check.c - the machinery of the op tests (see op_check.h): test tensors
 * in three copies, comparison with the float64 reference, central finite
 * differences, and the loop over the shapes of one op on one backend.
 */
#include "tests/nn/op_check.h"

#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tests/test.h"

/* Reference backward against central differences, both in float64: with
 * step h = 1e-6 the truncation error is ~h^2 * |L'''| ~ 1e-12 and the
 * rounding error ~1e-16 * |L| / h ~ 1e-9. */
#define FINITE_DIFFERENCE_STEP 1e-6
#define FINITE_DIFFERENCE_TOLERANCE 1e-6

/* ---- shapes ------------------------------------------------------------------ */

/* The dimensions of OpShape, for reports. */
static const struct {
    const char *name;
    size_t offset;
} shape_dimensions[] = {
    {"N", offsetof(OpShape, N)},   {"C", offsetof(OpShape, C)},
    {"OC", offsetof(OpShape, OC)}, {"B", offsetof(OpShape, B)},
    {"T", offsetof(OpShape, T)},   {"prefix", offsetof(OpShape, prefix)},
    {"H", offsetof(OpShape, H)},   {"Dh", offsetof(OpShape, Dh)},
    {"Hp", offsetof(OpShape, Hp)}, {"Wp", offsetof(OpShape, Wp)},
    {"Np", offsetof(OpShape, Np)}, {"R", offsetof(OpShape, R)},
    {"D", offsetof(OpShape, D)},   {"height", offsetof(OpShape, image_height)},
    {"width", offsetof(OpShape, image_width)}, {"P", offsetof(OpShape, P)},
    {"F", offsetof(OpShape, F)},   {"n", offsetof(OpShape, n)},
    {"t", offsetof(OpShape, step)},   {"K", offsetof(OpShape, K)},
    {"M", offsetof(OpShape, M)},
};

/* "odd N=7 C=13 OC=5" */
static void describe_shape(const OpShape *shape, char *text, size_t size) {
    size_t used = (size_t)snprintf(text, size, "%s", shape->label);
    for (int i = 0; i < ARRAY_LENGTH(shape_dimensions) && used < size; i++) {
        int value = *(const int *)((const char *)shape + shape_dimensions[i].offset);
        if (value) used += (size_t)snprintf(text + used, size - used, " %s=%d",
                                            shape_dimensions[i].name, value);
    }
    if (shape->input_range && used < size)
        snprintf(text + used, size - used, " range=%g", shape->input_range);
}

/* ---- deterministic random numbers (splitmix64) ------------------------------ */

static uint64_t rng_next(Rng *rng) {
    uint64_t z = (rng->state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* Uniform in [lo, hi). */
double rng_uniform(Rng *rng, double lo, double hi) {
    return lo + (hi - lo) * (double)(rng_next(rng) >> 11) * 0x1.0p-53;
}

/* Same seed for the same op and shape on every backend. */
static uint64_t seed_for(const char *op_name, int shape_index) {
    uint64_t hash = 1469598103934665603ull;   /* FNV-1a */
    for (const char *c = op_name; *c; c++) hash = (hash ^ (uint8_t)*c) * 1099511628211ull;
    return hash + (uint64_t)shape_index * 0x9E3779B97F4A7C15ull;
}

/* ---- one op on one shape: its tensors and what it measured ----------------- */

void *require_allocation(void *pointer, const char *what, size_t bytes) {
    if (!pointer) {
        fprintf(stderr, "test_ops: could not allocate %zu bytes for %s\n", bytes, what);
        exit(2);
    }
    return pointer;
}

static void *track_block(OpRun *run, void *pointer, int on_device) {
    if (run->block_count == MAX_BLOCKS_PER_RUN) {
        fprintf(stderr, "test_ops: more than %d blocks in %s\n", MAX_BLOCKS_PER_RUN, run->op_name);
        exit(2);
    }
    run->blocks[run->block_count].pointer = pointer;
    run->blocks[run->block_count++].on_device = on_device;
    return pointer;
}

static void *zeroed_array(long count, size_t element_size, const char *what) {
    return require_allocation(calloc((size_t)count, element_size), what,
                              (size_t)count * element_size);
}

/* Zero-filled host memory that lives as long as the run. */
void *host_block(OpRun *run, size_t bytes) {
    return track_block(run, require_allocation(calloc(1, bytes), "host scratch", bytes), 0);
}

/* Backend memory that lives as long as the run. */
void *device_block(OpRun *run, size_t bytes) {
    return track_block(run, require_allocation(run->be->alloc(bytes), "backend memory", bytes), 1);
}

static void free_run(OpRun *run) {
    for (int i = 0; i < run->tensor_count; i++) {
        TestTensor *t = &run->tensors[i];
        free(t->host);
        free(t->ref);
        free(t->initial);
        run->be->free(t->device);
    }
    for (int i = 0; i < run->block_count; i++) {
        if (run->blocks[i].on_device) run->be->free(run->blocks[i].pointer);
        else free(run->blocks[i].pointer);
    }
    run->tensor_count = run->block_count = 0;
}

/* A tensor with every copy allocated and zero. */
TestTensor *new_tensor(OpRun *run, const char *name, long count) {
    if (run->tensor_count == MAX_TENSORS_PER_RUN) {
        fprintf(stderr, "test_ops: more than %d tensors in %s\n", MAX_TENSORS_PER_RUN,
                run->op_name);
        exit(2);
    }
    TestTensor *t = &run->tensors[run->tensor_count++];
    t->name = name;
    t->count = count;
    t->host = zeroed_array(count, sizeof(float), name);
    t->ref = zeroed_array(count, sizeof(double), name);
    t->initial = zeroed_array(count, sizeof(double), name);
    t->device = require_allocation(run->be->alloc((size_t)count * sizeof(float)), name,
                        (size_t)count * sizeof(float));
    return t;
}

/* Makes ref and initial equal to host and copies host to the backend. */
static void upload(OpRun *run, TestTensor *t) {
    for (long i = 0; i < t->count; i++) t->ref[i] = t->initial[i] = t->host[i];
    run->be->copy_to_device(t->device, t->host, (size_t)t->count * sizeof(float));
}

static void fetch_to_host(OpRun *run, TestTensor *t) {
    run->be->synchronize();
    run->be->copy_to_host(t->host, t->device, (size_t)t->count * sizeof(float));
}

/* Values uniform in [lo, hi). */
TestTensor *random_tensor(OpRun *run, const char *name, long count, double lo, double hi) {
    TestTensor *t = new_tensor(run, name, count);
    for (long i = 0; i < count; i++) t->host[i] = (float)rng_uniform(&run->rng, lo, hi);
    upload(run, t);
    return t;
}

/* An op input: uniform in the shape's input range. */
TestTensor *input_tensor(OpRun *run, const char *name, long count) {
    double range = run->shape->input_range ? run->shape->input_range : 1.0;
    return random_tensor(run, name, count, -range, range);
}

/* A gradient buffer, prefilled with random values the op must add to. */
TestTensor *gradient_tensor(OpRun *run, const char *name, long count) {
    return random_tensor(run, name, count, -1.0, 1.0);
}

/* A forward output: NaN on the backend (elements left unwritten fail),
 * 0 in the reference. */
TestTensor *output_tensor(OpRun *run, const char *name, long count) {
    TestTensor *t = new_tensor(run, name, count);
    for (long i = 0; i < count; i++) t->host[i] = NAN;
    run->be->copy_to_device(t->device, t->host, (size_t)count * sizeof(float));
    return t;
}

/* Given fp32 values, e.g. the rope tables: backend and reference see the same. */
TestTensor *tensor_from_floats(OpRun *run, const char *name, const float *values,
                                      long count) {
    TestTensor *t = new_tensor(run, name, count);
    memcpy(t->host, values, (size_t)count * sizeof(float));
    upload(run, t);
    return t;
}

/* Given float64 values, e.g. the saved mean/rstd/probs of a forward: the
 * backend gets them rounded to fp32, the reference exact. */
TestTensor *tensor_from_doubles(OpRun *run, const char *name, const double *values,
                                       long count) {
    TestTensor *t = new_tensor(run, name, count);
    for (long i = 0; i < count; i++) t->host[i] = (float)values[i];
    upload(run, t);
    memcpy(t->ref, values, (size_t)count * sizeof(double));
    memcpy(t->initial, values, (size_t)count * sizeof(double));
    return t;
}

/* max|a - b| / max|b|, INFINITY when anything is NaN or Inf (the float64
 * twin of test_relative_error, for differences and finite differences). */
static double relative_error_double(const double *a, const double *b, long n) {
    double max_difference = 0.0, max_reference = 0.0;
    for (long i = 0; i < n; i++) {
        if (!isfinite(a[i]) || !isfinite(b[i])) return INFINITY;
        max_difference = fmax(max_difference, fabs(a[i] - b[i]));
        max_reference = fmax(max_reference, fabs(b[i]));
    }
    return max_difference / (max_reference > 1e-30 ? max_reference : 1e-30);
}

/* Checks one measured error against its tolerance; prints a line when it fails. */
static void check_error(OpRun *run, const char *label, double error, double tolerance,
                        const char *hint) {
    if (!(error <= tolerance))
        printf("    mismatch: %s on %s, %s: %s relative error %.3g > tolerance %.3g%s\n",
               run->op_name, run->be->name, run->shape_text, label, error, tolerance,
               hint ? hint : "");
    CHECK(error <= tolerance, "%s on %s, %s: %s relative error %.3g > tolerance %.3g%s",
          run->op_name, run->be->name, run->shape_text, label, error, tolerance,
          hint ? hint : "");
}

/* "dinp (with mask)": what, and the variant when there is one. */
static void label_with_variant(const OpRun *run, const char *what, char *label, size_t size) {
    if (run->variant) snprintf(label, size, "%s (%s)", what, run->variant);
    else snprintf(label, size, "%s", what);
}

/* A backend result against the reference: keeps the worst of the run, checks it. */
void record_error(OpRun *run, const char *what, double error, double tolerance,
                         const char *hint) {
    char label[96];
    label_with_variant(run, what, label, sizeof label);
    if (isnan(error)) error = INFINITY;
    if (error > run->worst_error || !run->worst_what[0]) {
        run->worst_error = error;
        snprintf(run->worst_what, sizeof run->worst_what, "%s", label);
    }
    check_error(run, label, error, tolerance, hint);
}

/* Temporary float64 host memory for one comparison. */
static double *scratch_doubles(long count) {
    return zeroed_array(count, sizeof(double), "scratch");
}

/* A forward output or in-place result: the values against the reference. */
void expect_close(OpRun *run, TestTensor *t) {
    fetch_to_host(run, t);
    record_error(run, t->name, test_relative_error(t->host, t->ref, t->count),
                 run->shape->tolerance, NULL);
}

/* The reference's change to t (ref - initial): the pure gradient of an
 * accumulating backward, the update of an optimiser step. */
double *reference_change(OpRun *run, const TestTensor *t) {
    double *change = host_block(run, (size_t)t->count * sizeof(double));   /* [count] */
    for (long i = 0; i < t->count; i++) change[i] = t->ref[i] - t->initial[i];
    return change;
}

/* An accumulated gradient (or an update): compares the change the backend
 * made to the buffer with the change the reference made, so a prefilled
 * buffer must end as prefill + gradient. */
void expect_change(OpRun *run, TestTensor *t) {
    fetch_to_host(run, t);
    double *found_values = scratch_doubles(t->count);   /* [count] */
    double *found_change = scratch_doubles(t->count);   /* [count] */
    double *expected_change = scratch_doubles(t->count);   /* [count] */
    for (long i = 0; i < t->count; i++) {
        found_values[i] = t->host[i];
        found_change[i] = found_values[i] - t->initial[i];
        expected_change[i] = t->ref[i] - t->initial[i];
    }
    const double error = relative_error_double(found_change, expected_change, t->count);
    const char *hint = NULL;
    if (!(error <= run->shape->tolerance) &&
        relative_error_double(found_values, expected_change, t->count) <= run->shape->tolerance)
        hint = " (the buffer holds the gradient alone: the op overwrote its prefill "
               "instead of accumulating)";
    record_error(run, t->name, error, run->shape->tolerance, hint);
    free(found_values);
    free(found_change);
    free(expected_change);
}

/* ---- finite differences ------------------------------------------------------ */

static double loss_value(const LossFunction *loss, double *out) {
    loss->forward(loss, out);
    double sum = 0.0;
    for (long i = 0; i < loss->out_count; i++) sum += out[i] * loss->dout[i];
    return sum;
}

/* For every input i with gradients[i] != NULL: dL/d input by central
 * differences against gradients[i] (the reference backward's). */
void expect_finite_differences(OpRun *run, const LossFunction *loss,
                                      const double *const *gradients) {
    double *out = scratch_doubles(loss->out_count);   /* [out_count] */
    for (int i = 0; i < loss->input_count; i++) {
        if (!gradients[i]) continue;
        TestTensor *input = loss->inputs[i];
        double *numeric = scratch_doubles(input->count);   /* [count] */
        for (long j = 0; j < input->count; j++) {
            const double saved = input->ref[j];
            input->ref[j] = saved + FINITE_DIFFERENCE_STEP;
            const double loss_plus = loss_value(loss, out);
            input->ref[j] = saved - FINITE_DIFFERENCE_STEP;
            const double loss_minus = loss_value(loss, out);
            input->ref[j] = saved;
            numeric[j] = (loss_plus - loss_minus) / (2.0 * FINITE_DIFFERENCE_STEP);
        }
        double error = relative_error_double(gradients[i], numeric, input->count);
        free(numeric);
        if (isnan(error)) error = INFINITY;
        run->worst_finite_difference_error = fmax(run->worst_finite_difference_error, error);
        char what[96], label[128];
        snprintf(what, sizeof what, "d%s of the float64 reference vs finite differences",
                 input->name);
        label_with_variant(run, what, label, sizeof label);
        check_error(run, label, error, FINITE_DIFFERENCE_TOLERANCE, NULL);
    }
    free(out);
}

/* ---- every shape of one op on one backend ---------------------------------- */

/* Runs every shape of one op on one backend and prints one line with the
 * worst relative error of each shape (and of finite differences). */
void run_op(const char *op_name, void (*check)(OpRun *), const OpShape *shapes, int shape_count,
            BackendChoice choice) {
    char why[256] = "";
    const NnBackend *be = choice == ON_CPU ? &nn_cpu_backend : nn_cuda_fp32_backend(why, sizeof why);
    if (!be) SKIP("cuda variant of %s not run: %s", op_name, why);

    char line[4096];
    size_t used = (size_t)snprintf(line, sizeof line, "  %s on %s:", op_name, be->name);
    for (int i = 0; i < shape_count; i++) {
        OpRun *run = require_allocation(calloc(1, sizeof *run), "an op run", sizeof *run);
        run->op_name = op_name;
        run->be = be;
        run->shape = &shapes[i];
        run->rng.state = seed_for(op_name, i);
        run->worst_finite_difference_error = -1.0;
        describe_shape(run->shape, run->shape_text, sizeof run->shape_text);
        check(run);
        free_run(run);
        if (used < sizeof line)
            used += (size_t)snprintf(line + used, sizeof line - used, "%s %s: %.2e (%s)",
                                     i ? ";" : "", run->shape_text, run->worst_error,
                                     run->worst_what);
        if (run->worst_finite_difference_error >= 0 && used < sizeof line)
            used += (size_t)snprintf(line + used, sizeof line - used,
                                     ", reference vs finite differences %.2e",
                                     run->worst_finite_difference_error);
        free(run);
    }
    printf("%s\n", line);
}

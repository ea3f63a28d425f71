/*
 * op_check.h - the machinery behind tests/nn/test_ops.c: what one check of
 * one op needs to run a shape on a backend and judge the result.
 *
 *   - OpShape: one shape case, with the dimensions named as in backend.h;
 *   - TestTensor: a tensor in three copies (fp32 host, float64 reference,
 *     backend memory), created random, NaN-poisoned or prefilled;
 *   - expect_close / expect_change: fetch from the backend and compare with
 *     the float64 reference (values, or the change an accumulating op made);
 *   - expect_finite_differences: the float64 reference backward against
 *     central differences of the float64 reference forward;
 *   - run_op: every shape of one op on one backend, one report line; the
 *     cuda variant is an explicit SKIP when there is no CUDA backend.
 * A failed comparison fails the current test case (tests/test.h CHECK) and
 * prints a "mismatch:" line naming op, backend, shape, tensor and error.
 */
#ifndef DD_TESTS_NN_OP_CHECK_H
#define DD_TESTS_NN_OP_CHECK_H

#include <stdint.h>

#include "nn/backend.h"

#define ARRAY_LENGTH(a) ((int)(sizeof(a) / sizeof((a)[0])))

/* One shape case. Each op reads the dimensions its backend.h comment names
 * (same letters); the others stay 0. */
typedef struct OpShape {
    const char *label;              /* "odd", "realistic", ... */
    int N, C, OC;                   /* rows, input features, output features */
    int B, T, prefix, H, Dh;        /* batch, tokens, prefix tokens, heads, head dim */
    int Hp, Wp;                     /* attention's RoPE tables: patch grid, Hp * Wp = T - prefix;
                                     * Hp = 0: no tables (sin, cos NULL) */
    int random_rope_tables;         /* RoPE: random sin, cos instead of rope_tables(), whose
                                     * halves repeat: the contract's transpose holds for any */
    int Np, R, D;                   /* tokens: patches, registers, model dim */
    int image_height, image_width, P;   /* patchify (C = channels) */
    int F;                          /* swiglu hidden features */
    int n;                          /* element count of pointwise and optimiser ops */
    int K, M;                       /* losses, Sinkhorn-Knopp: prototypes, rows of targets */
    int step;                       /* adamw: t */
    double input_range;             /* inputs uniform in [-range, range]; 0 means 1 */
    double tolerance;               /* backend against float64, relative */
    int no_finite_differences;      /* shapes too large to perturb every input: the reference
                                     * backward is checked on the smaller shapes of the op */
} OpShape;

/* Deterministic random numbers (splitmix64). */
typedef struct Rng {
    uint64_t state;
} Rng;

/* Uniform in [lo, hi). */
double rng_uniform(Rng *rng, double lo, double hi);

/* A tensor of a test in three copies: fp32 on the host (what the backend
 * is given; after a comparison, what it returned), float64 (what the
 * reference reads and writes) and the backend's own memory. */
typedef struct TestTensor {
    const char *name;               /* named in reports */
    long count;
    float *host;       /* [count] */
    double *ref;       /* [count] */
    double *initial;   /* [count]: the values before the op (prefill, in-place input) */
    float *device;     /* [count], backend memory */
} TestTensor;

#define MAX_TENSORS_PER_RUN 32
#define MAX_BLOCKS_PER_RUN 32

/* One op, one shape, one backend: everything a check allocates (freed
 * together when the shape is done) and the errors it measured. */
typedef struct OpRun {
    const char *op_name;
    const NnBackend *be;
    const OpShape *shape;
    char shape_text[160];           /* "odd N=7 C=13 OC=5" */
    const char *variant;            /* e.g. "mask NULL"; named in reports, may be NULL */
    Rng rng;                        /* seeded from op name and shape index */
    int tensor_count;
    TestTensor tensors[MAX_TENSORS_PER_RUN];
    int block_count;                /* other allocations */
    struct {
        void *pointer;
        int on_device;
    } blocks[MAX_BLOCKS_PER_RUN];
    double worst_error;             /* backend against float64 */
    char worst_what[96];
    double worst_finite_difference_error;   /* < 0: not measured */
} OpRun;

/* pointer, or a message naming what and bytes and exit(2) when it is NULL. */
void *require_allocation(void *pointer, const char *what, size_t bytes);

/* Zero-filled host memory / backend memory that lives as long as the run. */
void *host_block(OpRun *run, size_t bytes);
void *device_block(OpRun *run, size_t bytes);

/* A tensor with every copy zero (the backend copy as alloc returned it). */
TestTensor *new_tensor(OpRun *run, const char *name, long count);
/* Values uniform in [lo, hi), in all three copies. */
TestTensor *random_tensor(OpRun *run, const char *name, long count, double lo, double hi);
/* An op input: uniform in the shape's input range. */
TestTensor *input_tensor(OpRun *run, const char *name, long count);
/* A gradient buffer, prefilled with random values the op must add to. */
TestTensor *gradient_tensor(OpRun *run, const char *name, long count);
/* A forward output: NaN on the backend (elements left unwritten fail), 0 in
 * the reference. */
TestTensor *output_tensor(OpRun *run, const char *name, long count);
/* Given fp32 values, e.g. the rope tables: backend and reference see the same. */
TestTensor *tensor_from_floats(OpRun *run, const char *name, const float *values, long count);
/* Given float64 values, e.g. the saved mean/rstd/probs of a forward: the
 * backend gets them rounded to fp32, the reference exact. */
TestTensor *tensor_from_doubles(OpRun *run, const char *name, const double *values, long count);

/* Keeps the worst error of the run and checks it against tolerance; hint
 * (may be NULL) is appended to the failure message. */
void record_error(OpRun *run, const char *what, double error, double tolerance,
                  const char *hint);
/* A forward output or in-place result: the backend's values against ref. */
void expect_close(OpRun *run, TestTensor *t);
/* An accumulated gradient or an update: the change the backend made to the
 * buffer against the change the reference made, so a prefilled buffer must
 * end as prefill + gradient. */
void expect_change(OpRun *run, TestTensor *t);
/* The reference's change to t (ref - initial), [count], owned by the run. */
double *reference_change(OpRun *run, const TestTensor *t);

/* A backward op's float64 reference seen as the scalar loss
 * L = sum(forward(inputs) * dout), for central finite differences. */
typedef struct LossFunction {
    /* writes out[out_count] from the .ref values of inputs */
    void (*forward)(const struct LossFunction *loss, double *out);
    const OpShape *shape;
    TestTensor *const *inputs;
    int input_count;
    const double *dout;             /* [out_count] */
    long out_count;
    void *context;                  /* what forward needs besides inputs (mask, scratch) */
} LossFunction;

/* For every input i with gradients[i] != NULL: dL/d input by central
 * differences against gradients[i] (the reference backward's), relative
 * error under 1e-6. */
void expect_finite_differences(OpRun *run, const LossFunction *loss,
                               const double *const *gradients);

typedef enum { ON_CPU, ON_CUDA } BackendChoice;

/* Runs check on every shape of one op on one backend (a SKIP when the
 * backend is not available) and prints one line with the worst relative
 * error of each shape and of its finite differences. */
void run_op(const char *op_name, void (*check)(OpRun *), const OpShape *shapes, int shape_count,
            BackendChoice choice);

#endif

/*
 * test_cuda_ops.c - every op of the CUDA backend against the CPU backend
 * (the oracle): fresh random inputs, the same op on both, compare.
 *
 * The CUDA backend has two tables that differ only in the linear layers:
 * "cuda-fp32" (exact fp32 GEMMs), which every fp32 case below runs on, and
 * "cuda" (bf16 tensor-core GEMMs), which the *_bf16 matmul cases run on.
 *
 * Gradients are pre-filled with random values on both sides, so each
 * backward is also checked to accumulate (+=) rather than overwrite; the
 * backward inputs that a forward would save (mean, rstd, probs) are taken
 * from the CPU and given to both, so each case checks one op only.
 *
 * Tolerances are relative: max|cuda - cpu| / max|cpu|.
 *   TOL       1e-5: elementwise ops and short reductions; both sides round
 *             in fp32, differing at most by a few ulps per value.
 *   TOL_LONG  1e-4: sums over long rows (sgemm with a long inner
 *             dimension, column sums over thousands of rows). The CPU and
 *             the GPU add in different orders (OpenBLAS blocks vs cuBLAS
 *             tiles, a sequential loop vs a tree), and the rounding error of
 *             a K-term fp32 sum grows like sqrt(K) eps of the terms, more
 *             relative to a result that cancels.
 *   TOL_BF16  1e-2: the "cuda" table's GEMMs round every input to bf16
 *             (8-bit mantissa: relative error up to 2^-9 ~ 2e-3 per
 *             factor); each product of rounded inputs is exact in fp32 and
 *             the sum is fp32, so a product is off by up to ~4e-3 of its
 *             size. A K-term sum of such errors of random sign grows like
 *             sqrt(K), as the result itself does: for uniform inputs the
 *             error is ~2e-3 of the largest value whatever K, so 1e-2 leaves
 *             a margin of ~5 and still fails a wrong transpose or a lost
 *             bias (errors of order 1).
 * Without a device (or a build without CUDA) every case calls SKIP with the
 * reason nn_cuda_backend / nn_cuda_fp32_backend gives, so the output says so
 * case by case.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "nn/backend.h"
#include "tests/cuda/cuda_table.h"
#include "tests/test.h"

#define TOL 1e-5
#define TOL_LONG 1e-4
#define TOL_BF16 1e-2

/* ---- the backend under test ------------------------------------------------ */

/* The exact fp32 table: every case compared with the CPU at fp32 accuracy. */
#define REQUIRE_CUDA(gpu) REQUIRE_CUDA_TABLE(gpu, FP32_TABLE)

static const NnBackend *cpu = &nn_cpu_backend;

/* ---- allocations of one case, freed together -------------------------------- */

enum { MAX_ALLOCS = 64 };
static void *host_allocs[MAX_ALLOCS];
static int host_count;
static void *device_allocs[MAX_ALLOCS];
static int device_count;

static void *host_alloc(size_t bytes) {
    void *p = calloc(1, bytes > 0 ? bytes : 1);
    if (!p || host_count == MAX_ALLOCS) {
        fprintf(stderr, "test_cuda_ops: out of host memory or MAX_ALLOCS\n");
        exit(2);
    }
    host_allocs[host_count++] = p;
    return p;
}

static void release_all(const NnBackend *gpu) {
    for (int i = 0; i < host_count; i++) free(host_allocs[i]);
    for (int i = 0; i < device_count; i++) gpu->free(device_allocs[i]);
    host_count = device_count = 0;
}

/* ---- random inputs ------------------------------------------------------------ */

static uint64_t rng = 0x9E3779B97F4A7C15ull;

static uint64_t next_u64(void) { /* splitmix64 */
    uint64_t z = (rng += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}
/* Uniform in [lo, hi). */
static float uniform(float lo, float hi) {
    return lo + (hi - lo) * (float)((next_u64() >> 40) * (1.0 / 16777216.0));
}

/* n floats uniform in [lo, hi), on the host. */
static float *random_host(long n, float lo, float hi) {
    float *p = host_alloc((size_t)n * sizeof(float));
    for (long i = 0; i < n; i++) p[i] = uniform(lo, hi);
    return p;
}
/* Device memory holding a copy of host[bytes]. */
static void *to_device(const NnBackend *gpu, const void *host, size_t bytes) {
    void *d = gpu->alloc(bytes);
    if (!d || device_count == MAX_ALLOCS) {
        fprintf(stderr, "test_cuda_ops: device alloc of %zu bytes failed\n", bytes);
        exit(2);
    }
    device_allocs[device_count++] = d;
    gpu->copy_to_device(d, host, bytes);
    return d;
}
static float *to_device_f(const NnBackend *gpu, const float *host, long n) {
    return to_device(gpu, host, (size_t)n * sizeof(float));
}
/* Relative error of device[n] against the CPU result ref[n]. */
static double device_error(const NnBackend *gpu, const float *device, const float *ref, long n) {
    float *back = host_alloc((size_t)n * sizeof(float));
    gpu->copy_to_host(back, device, (size_t)n * sizeof(float));
    return test_relative_error_ff(back, ref, n);
}

#define CHECK_CLOSE(gpu, dev, ref, n, tol)                                       \
    do {                                                                         \
        double err_ = device_error(gpu, dev, ref, n);                            \
        CHECK(err_ <= (tol), "%s: relative error %.3g > %.0e", #dev, err_, (double)(tol)); \
    } while (0)

/* ---- backend ---------------------------------------------------------------- */

/* Entry i after the name of a table (every one is a function pointer). */
static void (*table_entry(const NnBackend *table, size_t i))(void) {
    void (*fn)(void);
    memcpy(&fn, (const char *)table + offsetof(NnBackend, alloc) + i * sizeof fn, sizeof fn);
    return fn;
}

static void backend_table(void) {
    REQUIRE_CUDA(fp32);
    const NnBackend *bf16 = nn_cuda_backend(NULL, 0);
    CHECK(bf16 != NULL, "nn_cuda_fp32_backend returned a table, nn_cuda_backend NULL");
    if (!bf16) return;
    CHECK(strcmp(bf16->name, "cuda") == 0, "name is '%s', expected 'cuda'", bf16->name);
    CHECK(strcmp(fp32->name, "cuda-fp32") == 0, "name is '%s', expected 'cuda-fp32'", fp32->name);
    CHECK(nn_cuda_backend(NULL, 0) == bf16, "a second call returned another table");
    CHECK(nn_cuda_fp32_backend(NULL, 0) == fp32, "a second call returned another fp32 table");
    char why[256] = "";
    CHECK(nn_backend_by_name("cuda", why, sizeof why) == bf16, "by name: %s", why);
    CHECK(nn_backend_by_name("cuda-fp32", why, sizeof why) == fp32, "by name: %s", why);
    /* Every entry after the name is a function pointer; none may be NULL,
     * and the two tables share all but the matmuls. */
    size_t entries = (sizeof(NnBackend) - offsetof(NnBackend, alloc)) / sizeof(void (*)(void));
    size_t matmul_first = (offsetof(NnBackend, matmul_forward) - offsetof(NnBackend, alloc)) /
                          sizeof(void (*)(void));
    for (size_t i = 0; i < entries; i++) {
        CHECK(table_entry(bf16, i) != NULL, "cuda: entry %zu after 'name' is NULL", i);
        CHECK(table_entry(fp32, i) != NULL, "cuda-fp32: entry %zu after 'name' is NULL", i);
        int is_matmul = i == matmul_first || i == matmul_first + 1;
        CHECK(is_matmul != (table_entry(bf16, i) == table_entry(fp32, i)),
              "entry %zu after 'name': %s", i,
              is_matmul ? "the matmul is the same in both tables" : "the tables differ");
    }
}

static void memory(void) {
    REQUIRE_CUDA(gpu);
    long n = 1000;
    float *d = gpu->alloc(n * sizeof(float));
    CHECK(d != NULL, "alloc failed");
    if (!d) return;
    device_allocs[device_count++] = d;
    float *back = host_alloc(n * sizeof(float));
    gpu->copy_to_host(back, d, n * sizeof(float));
    int zeroed = 1;
    for (long i = 0; i < n; i++) zeroed &= back[i] == 0.0f;
    CHECK(zeroed, "alloc did not zero-fill");

    float *x = random_host(n, -1, 1);
    gpu->copy_to_device(d, x, n * sizeof(float));
    float *e = to_device_f(gpu, x, n); /* a second buffer, then copy d -> e offset */
    gpu->zero(e, n * sizeof(float));
    gpu->copy(e + 10, d, (n - 10) * sizeof(float));
    gpu->synchronize();
    gpu->copy_to_host(back, e, n * sizeof(float));
    int same = 1;
    for (long i = 0; i < 10; i++) same &= back[i] == 0.0f;
    for (long i = 10; i < n; i++) same &= back[i] == x[i - 10];
    CHECK(same, "zero / copy / copy_to_host round trip differs");
    void *empty = gpu->alloc(0);
    CHECK(empty != NULL, "alloc(0) returned NULL (NULL means failure)");
    gpu->free(empty);
    gpu->free(NULL);
    release_all(gpu);
}

/* ---- linear layers ------------------------------------------------------------ */

static void check_matmul_forward(CudaTable table, int N, int C, int OC, int with_bias, double tol) {
    REQUIRE_CUDA_TABLE(gpu, table);
    float *inp = random_host((long)N * C, -1, 1);
    float *w = random_host((long)OC * C, -1, 1);
    float *b = with_bias ? random_host(OC, -1, 1) : NULL;
    float *out = random_host((long)N * OC, -1, 1); /* garbage: forward overwrites */
    float *d_out = to_device_f(gpu, out, (long)N * OC);
    cpu->matmul_forward(out, inp, w, b, N, C, OC);
    gpu->matmul_forward(d_out, to_device_f(gpu, inp, (long)N * C), to_device_f(gpu, w, (long)OC * C),
                        b ? to_device_f(gpu, b, OC) : NULL, N, C, OC);
    CHECK_CLOSE(gpu, d_out, out, (long)N * OC, tol);
    release_all(gpu);
}
static void matmul_forward(void) { check_matmul_forward(FP32_TABLE, 67, 96, 130, 1, TOL); }
static void matmul_forward_no_bias(void) { check_matmul_forward(FP32_TABLE, 33, 50, 17, 0, TOL); }
static void matmul_forward_long_inner(void) {
    check_matmul_forward(FP32_TABLE, 40, 3072, 24, 1, TOL_LONG);
}

/* which: bit 0 dinp, bit 1 dweight, bit 2 dbias. dbias is checked with
 * tol_bias (the column sum of fp32 dout in both tables). */
static void check_matmul_backward(CudaTable table, int N, int C, int OC, int which, double tol,
                                  double tol_bias) {
    REQUIRE_CUDA_TABLE(gpu, table);
    float *inp = random_host((long)N * C, -1, 1);
    float *w = random_host((long)OC * C, -1, 1);
    float *dout = random_host((long)N * OC, -1, 1);
    float *dinp = random_host((long)N * C, -1, 1);
    float *dw = random_host((long)OC * C, -1, 1);
    float *db = random_host(OC, -1, 1);
    float *d_dinp = to_device_f(gpu, dinp, (long)N * C);
    float *d_dw = to_device_f(gpu, dw, (long)OC * C);
    float *d_db = to_device_f(gpu, db, OC);
    cpu->matmul_backward(which & 1 ? dinp : NULL, which & 2 ? dw : NULL, which & 4 ? db : NULL,
                         dout, inp, w, N, C, OC);
    gpu->matmul_backward(which & 1 ? d_dinp : NULL, which & 2 ? d_dw : NULL, which & 4 ? d_db : NULL,
                         to_device_f(gpu, dout, (long)N * OC), to_device_f(gpu, inp, (long)N * C),
                         to_device_f(gpu, w, (long)OC * C), N, C, OC);
    /* Buffers passed as NULL must stay as they were (compared with the untouched CPU copy). */
    CHECK_CLOSE(gpu, d_dinp, dinp, (long)N * C, tol);
    CHECK_CLOSE(gpu, d_dw, dw, (long)OC * C, tol);
    CHECK_CLOSE(gpu, d_db, db, OC, tol_bias);
    release_all(gpu);
}
static void matmul_backward(void) { check_matmul_backward(FP32_TABLE, 67, 96, 130, 7, TOL, TOL); }
static void matmul_backward_weight_only(void) {
    check_matmul_backward(FP32_TABLE, 45, 64, 31, 2, TOL, TOL);
}
/* dweight and dbias sum over 4099 rows: TOL_LONG. */
static void matmul_backward_long_batch(void) {
    check_matmul_backward(FP32_TABLE, 4099, 48, 40, 7, TOL_LONG, TOL_LONG);
}

/* The "cuda" table (bf16 tensor cores): TOL_BF16. Shapes: a realistic one
 * (402 tokens of a ViT-L MLP, C = 1024, OC = 4096: inner dimensions 1024,
 * 4096 and 402) and odd ones (no dimension a multiple of 8, where tensor-core
 * kernels need tails or other kernels). dbias is the fp32 column sum of dout
 * in this table too (cuda_matmul.cu): TOL_LONG. */
static void matmul_forward_bf16(void) { check_matmul_forward(BF16_TABLE, 402, 1024, 4096, 1, TOL_BF16); }
static void matmul_forward_bf16_no_bias(void) {
    check_matmul_forward(BF16_TABLE, 402, 1024, 4096, 0, TOL_BF16);
}
static void matmul_forward_bf16_odd(void) { check_matmul_forward(BF16_TABLE, 37, 33, 5, 1, TOL_BF16); }
static void matmul_forward_bf16_odd_no_bias(void) {
    check_matmul_forward(BF16_TABLE, 37, 33, 5, 0, TOL_BF16);
}
static void matmul_backward_bf16(void) {
    check_matmul_backward(BF16_TABLE, 402, 1024, 4096, 7, TOL_BF16, TOL_LONG);
}
static void matmul_backward_bf16_odd(void) {
    check_matmul_backward(BF16_TABLE, 37, 33, 5, 7, TOL_BF16, TOL_LONG);
}
/* dinp only: dweight and dbias must stay as they were. */
static void matmul_backward_bf16_input_only(void) {
    check_matmul_backward(BF16_TABLE, 37, 33, 5, 1, TOL_BF16, TOL_LONG);
}

/* The same K = 1024 product on "cuda" and "cuda-fp32": they must differ by
 * more than fp32 arithmetic could (TOL_LONG: different summation orders
 * stay ~1e-6 here) and by less than TOL_BF16. Rounding the inputs to bf16
 * gives ~2e-3 (TF32, 10-bit mantissa, would give ~5e-4, still above); a
 * difference below TOL_LONG means the tensor-core path was not taken (the
 * GPU or cuBLASLt fell back to fp32 for CUBLAS_COMPUTE_32F_FAST_16BF). */
static void matmul_bf16_differs_from_fp32(void) {
    REQUIRE_CUDA_TABLE(bf16, BF16_TABLE);
    const NnBackend *fp32 = nn_cuda_fp32_backend(NULL, 0);
    int N = 64, C = 1024, OC = 64;
    float *inp = random_host((long)N * C, -1, 1), *w = random_host((long)OC * C, -1, 1);
    float *d_inp = to_device_f(bf16, inp, (long)N * C), *d_w = to_device_f(bf16, w, (long)OC * C);
    float *d_out_bf16 = to_device_f(bf16, random_host((long)N * OC, -1, 1), (long)N * OC);
    float *d_out_fp32 = to_device_f(bf16, random_host((long)N * OC, -1, 1), (long)N * OC);
    bf16->matmul_forward(d_out_bf16, d_inp, d_w, NULL, N, C, OC);
    fp32->matmul_forward(d_out_fp32, d_inp, d_w, NULL, N, C, OC);
    float *out_fp32 = host_alloc((size_t)N * OC * sizeof(float));
    fp32->copy_to_host(out_fp32, d_out_fp32, (size_t)N * OC * sizeof(float));
    double difference = device_error(bf16, d_out_bf16, out_fp32, (long)N * OC);
    CHECK(difference > TOL_LONG,
          "cuda and cuda-fp32 differ by %.3g <= %.0e: the bf16 tensor-core path was not taken",
          difference, (double)TOL_LONG);
    CHECK(difference < TOL_BF16, "cuda and cuda-fp32 differ by %.3g >= %.0e", difference,
          (double)TOL_BF16);
    release_all(bf16);
}

/* ---- patch embedding and tokens -------------------------------------------- */

static void patchify(void) {
    REQUIRE_CUDA(gpu);
    int B = 2, C = 3, H = 32, W = 48, P = 16;
    long n_img = (long)B * C * H * W, n_patch = (long)B * (H / P) * (W / P) * C * P * P;
    float *images = random_host(n_img, -1, 1);
    float *patches = random_host(n_patch, -1, 1);
    float *d_patches = to_device_f(gpu, patches, n_patch);
    cpu->patchify(patches, images, B, C, H, W, P);
    gpu->patchify(d_patches, to_device_f(gpu, images, n_img), B, C, H, W, P);
    CHECK_CLOSE(gpu, d_patches, patches, n_patch, 0.0); /* a gather: exact */
    release_all(gpu);
}

static uint8_t *random_mask(long n) {
    uint8_t *m = host_alloc((size_t)n);
    for (long i = 0; i < n; i++) m[i] = uniform(0, 1) < 0.3f;
    return m;
}

static void check_tokens_forward(int use_mask, int R) {
    REQUIRE_CUDA(gpu);
    int B = 3, Np = 10, D = 40, T = 1 + R + Np;
    float *patch_emb = random_host((long)B * Np * D, -1, 1);
    float *cls = random_host(D, -1, 1);
    float *reg = random_host((long)(R > 0 ? R : 1) * D, -1, 1);
    float *mask_token = random_host(D, -1, 1);
    uint8_t *mask = use_mask ? random_mask((long)B * Np) : NULL;
    float *tokens = random_host((long)B * T * D, -1, 1);
    float *d_tokens = to_device_f(gpu, tokens, (long)B * T * D);
    cpu->tokens_forward(tokens, patch_emb, cls, reg, use_mask ? mask_token : NULL, mask, B, Np, R, D);
    gpu->tokens_forward(d_tokens, to_device_f(gpu, patch_emb, (long)B * Np * D), to_device_f(gpu, cls, D),
                        to_device_f(gpu, reg, (long)(R > 0 ? R : 1) * D),
                        use_mask ? to_device_f(gpu, mask_token, D) : NULL,
                        mask ? to_device(gpu, mask, (size_t)B * Np) : NULL, B, Np, R, D);
    CHECK_CLOSE(gpu, d_tokens, tokens, (long)B * T * D, 0.0); /* copies: exact */
    release_all(gpu);
}
static void tokens_forward_masked(void) { check_tokens_forward(1, 4); }
static void tokens_forward_unmasked(void) { check_tokens_forward(0, 4); }
static void tokens_forward_no_registers(void) { check_tokens_forward(1, 0); }

static void check_tokens_backward(int use_mask) {
    REQUIRE_CUDA(gpu);
    int B = 5, Np = 37, R = 4, D = 40, T = 1 + R + Np;
    float *dtokens = random_host((long)B * T * D, -1, 1);
    uint8_t *mask = use_mask ? random_mask((long)B * Np) : NULL;
    float *dpatch = random_host((long)B * Np * D, -1, 1);
    float *dcls = random_host(D, -1, 1);
    float *dreg = random_host((long)R * D, -1, 1);
    float *dmask = random_host(D, -1, 1);
    float *d_dpatch = to_device_f(gpu, dpatch, (long)B * Np * D);
    float *d_dcls = to_device_f(gpu, dcls, D);
    float *d_dreg = to_device_f(gpu, dreg, (long)R * D);
    float *d_dmask = to_device_f(gpu, dmask, D);
    cpu->tokens_backward(dpatch, dcls, dreg, use_mask ? dmask : NULL, dtokens, mask, B, Np, R, D);
    gpu->tokens_backward(d_dpatch, d_dcls, d_dreg, use_mask ? d_dmask : NULL,
                         to_device_f(gpu, dtokens, (long)B * T * D),
                         mask ? to_device(gpu, mask, (size_t)B * Np) : NULL, B, Np, R, D);
    CHECK_CLOSE(gpu, d_dpatch, dpatch, (long)B * Np * D, TOL);
    CHECK_CLOSE(gpu, d_dcls, dcls, D, TOL);
    CHECK_CLOSE(gpu, d_dreg, dreg, (long)R * D, TOL);
    CHECK_CLOSE(gpu, d_dmask, dmask, D, TOL);
    release_all(gpu);
}
static void tokens_backward_masked(void) { check_tokens_backward(1); }
static void tokens_backward_unmasked(void) { check_tokens_backward(0); }

/* ---- normalisation ------------------------------------------------------------ */

static void check_layernorm_forward(int N, int C, double tol) {
    REQUIRE_CUDA(gpu);
    float *inp = random_host((long)N * C, -2, 3); /* nonzero mean */
    float *w = random_host(C, 0.5f, 1.5f);
    float *b = random_host(C, -1, 1);
    float *out = random_host((long)N * C, -1, 1);
    float *mean = random_host(N, -1, 1), *rstd = random_host(N, -1, 1);
    float *d_out = to_device_f(gpu, out, (long)N * C);
    float *d_mean = to_device_f(gpu, mean, N), *d_rstd = to_device_f(gpu, rstd, N);
    cpu->layernorm_forward(out, mean, rstd, inp, w, b, N, C, 1e-5f);
    gpu->layernorm_forward(d_out, d_mean, d_rstd, to_device_f(gpu, inp, (long)N * C),
                           to_device_f(gpu, w, C), to_device_f(gpu, b, C), N, C, 1e-5f);
    CHECK_CLOSE(gpu, d_out, out, (long)N * C, tol);
    CHECK_CLOSE(gpu, d_mean, mean, N, tol);
    CHECK_CLOSE(gpu, d_rstd, rstd, N, tol);
    release_all(gpu);
}
static void layernorm_forward(void) { check_layernorm_forward(37, 200, TOL); }
/* Rows of 4096 (ViT-7B width): the row mean and variance are long sums. */
static void layernorm_forward_wide(void) { check_layernorm_forward(9, 4096, TOL_LONG); }

static void check_layernorm_backward(int N, int C, double tol) {
    REQUIRE_CUDA(gpu);
    float *inp = random_host((long)N * C, -2, 3);
    float *w = random_host(C, 0.5f, 1.5f);
    float *b = random_host(C, -1, 1);
    float *out = host_alloc((size_t)N * C * sizeof(float));
    float *mean = host_alloc((size_t)N * sizeof(float)), *rstd = host_alloc((size_t)N * sizeof(float));
    cpu->layernorm_forward(out, mean, rstd, inp, w, b, N, C, 1e-5f); /* saved values, for both */
    float *dout = random_host((long)N * C, -1, 1);
    float *dinp = random_host((long)N * C, -1, 1);
    float *dw = random_host(C, -1, 1), *db = random_host(C, -1, 1);
    float *d_dinp = to_device_f(gpu, dinp, (long)N * C);
    float *d_dw = to_device_f(gpu, dw, C), *d_db = to_device_f(gpu, db, C);
    cpu->layernorm_backward(dinp, dw, db, dout, inp, w, mean, rstd, N, C);
    gpu->layernorm_backward(d_dinp, d_dw, d_db, to_device_f(gpu, dout, (long)N * C),
                            to_device_f(gpu, inp, (long)N * C), to_device_f(gpu, w, C),
                            to_device_f(gpu, mean, N), to_device_f(gpu, rstd, N), N, C);
    CHECK_CLOSE(gpu, d_dinp, dinp, (long)N * C, tol);
    CHECK_CLOSE(gpu, d_dw, dw, C, tol);
    CHECK_CLOSE(gpu, d_db, db, C, tol);
    release_all(gpu);
}
static void layernorm_backward(void) { check_layernorm_backward(37, 200, TOL); }
/* dweight and dbias sum over 3001 rows: TOL_LONG. */
static void layernorm_backward_many_rows(void) { check_layernorm_backward(3001, 96, TOL_LONG); }

/* ---- attention ---------------------------------------------------------------- */

static void check_rope(int backward) {
    REQUIRE_CUDA(gpu);
    int B = 2, T = 13, prefix = 5, H = 3, Dh = 16;
    long n = (long)B * T * 3 * H * Dh, nt = (long)(T - prefix) * Dh;
    float *qkv = random_host(n, -1, 1);
    float *sin = random_host(nt, -1, 1), *cos = random_host(nt, -1, 1);
    float *d_qkv = to_device_f(gpu, qkv, n);
    float *d_sin = to_device_f(gpu, sin, nt), *d_cos = to_device_f(gpu, cos, nt);
    if (backward) {
        cpu->rope_backward(qkv, sin, cos, B, T, prefix, H, Dh);
        gpu->rope_backward(d_qkv, d_sin, d_cos, B, T, prefix, H, Dh);
    } else {
        cpu->rope_forward(qkv, sin, cos, B, T, prefix, H, Dh);
        gpu->rope_forward(d_qkv, d_sin, d_cos, B, T, prefix, H, Dh);
    }
    CHECK_CLOSE(gpu, d_qkv, qkv, n, TOL);
    release_all(gpu);
}
static void rope_forward(void) { check_rope(0); }
static void rope_backward(void) { check_rope(1); }

static void check_attention_forward(int B, int T, int H, int Dh, float qkv_range) {
    REQUIRE_CUDA(gpu);
    long n_qkv = (long)B * T * 3 * H * Dh, n_out = (long)B * T * H * Dh, n_lse = (long)B * H * T;
    float *qkv = random_host(n_qkv, -qkv_range, qkv_range);
    float *out = random_host(n_out, -1, 1), *lse = random_host(n_lse, -1, 1);
    float *d_out = to_device_f(gpu, out, n_out), *d_lse = to_device_f(gpu, lse, n_lse);
    cpu->attention_forward(out, lse, qkv, B, T, H, Dh);
    gpu->attention_forward(d_out, d_lse, to_device_f(gpu, qkv, n_qkv), B, T, H, Dh);
    CHECK_CLOSE(gpu, d_out, out, n_out, TOL);
    CHECK_CLOSE(gpu, d_lse, lse, n_lse, TOL);
    release_all(gpu);
}
static void attention_forward(void) { check_attention_forward(2, 37, 3, 16, 2); }
static void attention_forward_small(void) { check_attention_forward(3, 5, 2, 8, 2); }
/* More keys than one tile of the kernels (T = 261: a 256 px crop with 4
 * registers), Dh = 64 and 128 (ViT-L/H+ and the 7B teacher's heads). */
static void attention_forward_many_keys(void) { check_attention_forward(2, 261, 2, 64, 1); }
static void attention_forward_wide_heads(void) { check_attention_forward(1, 133, 2, 128, 1); }
/* Scores of magnitude ~100: the online softmax must rescale, not overflow. */
static void attention_forward_large_scores(void) { check_attention_forward(1, 70, 2, 32, 6); }

static void check_attention_backward(int B, int T, int H, int Dh, float qkv_range) {
    REQUIRE_CUDA(gpu);
    long n_qkv = (long)B * T * 3 * H * Dh, n_out = (long)B * T * H * Dh, n_lse = (long)B * H * T;
    float *qkv = random_host(n_qkv, -qkv_range, qkv_range);
    float *out = host_alloc((size_t)n_out * sizeof(float));
    float *lse = host_alloc((size_t)n_lse * sizeof(float));
    cpu->attention_forward(out, lse, qkv, B, T, H, Dh); /* saved out and lse, for both */
    float *dout = random_host(n_out, -1, 1);
    float *dqkv = random_host(n_qkv, -1, 1);
    float *d_dqkv = to_device_f(gpu, dqkv, n_qkv);
    cpu->attention_backward(dqkv, dout, qkv, out, lse, B, T, H, Dh);
    gpu->attention_backward(d_dqkv, to_device_f(gpu, dout, n_out), to_device_f(gpu, qkv, n_qkv),
                            to_device_f(gpu, out, n_out), to_device_f(gpu, lse, n_lse), B, T, H, Dh);
    CHECK_CLOSE(gpu, d_dqkv, dqkv, n_qkv, TOL_LONG);
    release_all(gpu);
}
static void attention_backward(void) { check_attention_backward(2, 37, 3, 16, 2); }
static void attention_backward_small(void) { check_attention_backward(3, 5, 2, 8, 2); }
static void attention_backward_many_keys(void) { check_attention_backward(2, 261, 2, 64, 1); }
static void attention_backward_wide_heads(void) { check_attention_backward(1, 133, 2, 128, 1); }

/* ---- pointwise ------------------------------------------------------------------ */

static void gelu_forward(void) {
    REQUIRE_CUDA(gpu);
    long n = 10007;
    float *inp = random_host(n, -5, 5), *out = random_host(n, -1, 1);
    float *d_out = to_device_f(gpu, out, n);
    cpu->gelu_forward(out, inp, n);
    gpu->gelu_forward(d_out, to_device_f(gpu, inp, n), n);
    CHECK_CLOSE(gpu, d_out, out, n, TOL);
    release_all(gpu);
}

static void gelu_backward(void) {
    REQUIRE_CUDA(gpu);
    long n = 10007;
    float *inp = random_host(n, -5, 5), *dout = random_host(n, -1, 1), *dinp = random_host(n, -1, 1);
    float *d_dinp = to_device_f(gpu, dinp, n);
    cpu->gelu_backward(dinp, dout, inp, n);
    gpu->gelu_backward(d_dinp, to_device_f(gpu, dout, n), to_device_f(gpu, inp, n), n);
    CHECK_CLOSE(gpu, d_dinp, dinp, n, TOL);
    release_all(gpu);
}

static void swiglu_forward(void) {
    REQUIRE_CUDA(gpu);
    int N = 33, F = 70;
    float *inp = random_host((long)N * 2 * F, -5, 5), *out = random_host((long)N * F, -1, 1);
    float *d_out = to_device_f(gpu, out, (long)N * F);
    cpu->swiglu_forward(out, inp, N, F);
    gpu->swiglu_forward(d_out, to_device_f(gpu, inp, (long)N * 2 * F), N, F);
    CHECK_CLOSE(gpu, d_out, out, (long)N * F, TOL);
    release_all(gpu);
}

static void swiglu_backward(void) {
    REQUIRE_CUDA(gpu);
    int N = 33, F = 70;
    float *inp = random_host((long)N * 2 * F, -5, 5), *dout = random_host((long)N * F, -1, 1);
    float *dinp = random_host((long)N * 2 * F, -1, 1);
    float *d_dinp = to_device_f(gpu, dinp, (long)N * 2 * F);
    cpu->swiglu_backward(dinp, dout, inp, N, F);
    gpu->swiglu_backward(d_dinp, to_device_f(gpu, dout, (long)N * F),
                         to_device_f(gpu, inp, (long)N * 2 * F), N, F);
    CHECK_CLOSE(gpu, d_dinp, dinp, (long)N * 2 * F, TOL);
    release_all(gpu);
}

static void layerscale_residual_forward(void) {
    REQUIRE_CUDA(gpu);
    int N = 67, C = 96;
    long n = (long)N * C;
    float *res = random_host(n, -1, 1), *y = random_host(n, -1, 1), *gamma = random_host(C, -1, 1);
    float *out = random_host(n, -1, 1);
    float *d_res = to_device_f(gpu, res, n), *d_y = to_device_f(gpu, y, n);
    float *d_gamma = to_device_f(gpu, gamma, C), *d_out = to_device_f(gpu, out, n);
    cpu->layerscale_residual_forward(out, res, y, gamma, N, C);
    gpu->layerscale_residual_forward(d_out, d_res, d_y, d_gamma, N, C);
    CHECK_CLOSE(gpu, d_out, out, n, TOL);
    /* In place on the residual stream (out == res), as a block does. */
    gpu->layerscale_residual_forward(d_res, d_res, d_y, d_gamma, N, C);
    CHECK_CLOSE(gpu, d_res, out, n, TOL);
    release_all(gpu);
}

static void check_layerscale_residual_backward(int N, int C, double tol) {
    REQUIRE_CUDA(gpu);
    long n = (long)N * C;
    float *dout = random_host(n, -1, 1), *y = random_host(n, -1, 1), *gamma = random_host(C, -1, 1);
    float *dres = random_host(n, -1, 1), *dy = random_host(n, -1, 1), *dgamma = random_host(C, -1, 1);
    float *d_dres = to_device_f(gpu, dres, n), *d_dy = to_device_f(gpu, dy, n);
    float *d_dgamma = to_device_f(gpu, dgamma, C);
    cpu->layerscale_residual_backward(dres, dy, dgamma, dout, y, gamma, N, C);
    gpu->layerscale_residual_backward(d_dres, d_dy, d_dgamma, to_device_f(gpu, dout, n),
                                      to_device_f(gpu, y, n), to_device_f(gpu, gamma, C), N, C);
    CHECK_CLOSE(gpu, d_dres, dres, n, TOL);
    CHECK_CLOSE(gpu, d_dy, dy, n, TOL);
    CHECK_CLOSE(gpu, d_dgamma, dgamma, C, tol);
    release_all(gpu);
}
static void layerscale_residual_backward(void) { check_layerscale_residual_backward(67, 96, TOL); }
/* dgamma sums over 5003 rows: TOL_LONG. */
static void layerscale_residual_backward_many_rows(void) {
    check_layerscale_residual_backward(5003, 64, TOL_LONG);
}

/* ---- optimisation ------------------------------------------------------------- */

static void adamw_update(void) {
    REQUIRE_CUDA(gpu);
    long n = 10007;
    float *p = random_host(n, -1, 1), *g = random_host(n, -1, 1);
    float *m = random_host(n, -0.1f, 0.1f), *v = random_host(n, 0, 0.01f);
    float *d_p = to_device_f(gpu, p, n), *d_m = to_device_f(gpu, m, n), *d_v = to_device_f(gpu, v, n);
    float *d_g = to_device_f(gpu, g, n);
    for (int t = 1; t <= 3; t++) {
        cpu->adamw_update(p, g, m, v, n, 1e-3f, 0.9f, 0.999f, 1e-8f, 0.04f, t);
        gpu->adamw_update(d_p, d_g, d_m, d_v, n, 1e-3f, 0.9f, 0.999f, 1e-8f, 0.04f, t);
    }
    CHECK_CLOSE(gpu, d_p, p, n, TOL);
    CHECK_CLOSE(gpu, d_m, m, n, TOL);
    CHECK_CLOSE(gpu, d_v, v, n, TOL);
    release_all(gpu);
}

static void sum_squares(void) {
    REQUIRE_CUDA(gpu);
    long n = 1000003;
    float *x = random_host(n, -1, 1);
    double want = cpu->sum_squares(x, n);
    double got = gpu->sum_squares(to_device_f(gpu, x, n), n);
    /* Both sides accumulate in double: only double rounding differs. */
    double rel = fabs(got - want) / want;
    CHECK(rel <= 1e-9, "sum_squares %.17g vs cpu %.17g (relative %.3g)", got, want, rel);
    CHECK(gpu->sum_squares(NULL, 0) == 0.0, "sum_squares of 0 values is not 0");
    release_all(gpu);
}

static void scale(void) {
    REQUIRE_CUDA(gpu);
    long n = 5001;
    float *x = random_host(n, -1, 1);
    float *d_x = to_device_f(gpu, x, n);
    cpu->scale(x, 0.37f, n);
    gpu->scale(d_x, 0.37f, n);
    CHECK_CLOSE(gpu, d_x, x, n, 0.0); /* one rounding on both sides: exact */
    release_all(gpu);
}

/* ---- heads, losses, Sinkhorn-Knopp, EMA ------------------------------------- */

/* n int32 indices uniform in [0, limit), on the host. */
static int32_t *random_indices(long n, int limit) {
    int32_t *p = host_alloc((size_t)n * sizeof(int32_t));
    for (long i = 0; i < n; i++) p[i] = (int32_t)(next_u64() % (uint64_t)limit);
    return p;
}
static int32_t *to_device_i(const NnBackend *gpu, const int32_t *host, long n) {
    return to_device(gpu, host, (size_t)n * sizeof(int32_t));
}

/* with_out = 0: only the norms (out NULL). Row 1 is zero: its norm is clamped.
 * The row norm is a C-term sum, in double on both sides: TOL. */
static void check_l2norm_forward(int with_out) {
    REQUIRE_CUDA(gpu);
    int N = 37, C = 200;
    long n = (long)N * C;
    float *inp = random_host(n, -1, 1);
    memset(inp + C, 0, (size_t)C * sizeof(float));
    float *out = random_host(n, -1, 1), *norm = random_host(N, -1, 1);
    float *d_out = to_device_f(gpu, out, n), *d_norm = to_device_f(gpu, norm, N);
    cpu->l2norm_forward(with_out ? out : NULL, norm, inp, N, C, 1e-12f);
    gpu->l2norm_forward(with_out ? d_out : NULL, d_norm, to_device_f(gpu, inp, n), N, C, 1e-12f);
    CHECK_CLOSE(gpu, d_out, out, n, TOL);   /* untouched on both sides when with_out = 0 */
    CHECK_CLOSE(gpu, d_norm, norm, N, TOL);
    release_all(gpu);
}
static void l2norm_forward(void) { check_l2norm_forward(1); }
static void l2norm_forward_norms_only(void) { check_l2norm_forward(0); }

static void l2norm_backward(void) {
    REQUIRE_CUDA(gpu);
    int N = 37, C = 200;
    long n = (long)N * C;
    const float eps = 1e-3f;
    float *inp = random_host(n, -1, 1);
    for (int c = 0; c < C; c++) inp[C + c] = 1e-7f;   /* row 1: norm below eps, clamped */
    float *norm = host_alloc((size_t)N * sizeof(float));
    cpu->l2norm_forward(NULL, norm, inp, N, C, eps);   /* saved norms, for both */
    float *dout = random_host(n, -1, 1), *dinp = random_host(n, -1, 1);
    float *d_dinp = to_device_f(gpu, dinp, n);
    cpu->l2norm_backward(dinp, dout, inp, norm, N, C, eps);
    gpu->l2norm_backward(d_dinp, to_device_f(gpu, dout, n), to_device_f(gpu, inp, n),
                         to_device_f(gpu, norm, N), N, C, eps);
    CHECK_CLOSE(gpu, d_dinp, dinp, n, TOL);
    release_all(gpu);
}

static void gather_rows(void) {
    REQUIRE_CUDA(gpu);
    int rows_in = 50, N = 33, C = 70;
    float *inp = random_host((long)rows_in * C, -1, 1), *out = random_host((long)N * C, -1, 1);
    int32_t *rows = random_indices(N, rows_in);
    float *d_out = to_device_f(gpu, out, (long)N * C);
    cpu->gather_rows(out, inp, rows, N, C);
    gpu->gather_rows(d_out, to_device_f(gpu, inp, (long)rows_in * C), to_device_i(gpu, rows, N), N, C);
    CHECK_CLOSE(gpu, d_out, out, (long)N * C, 0.0);   /* a gather: exact */
    release_all(gpu);
}

static void gather_rows_backward(void) {
    REQUIRE_CUDA(gpu);
    int rows_in = 10, N = 77, C = 300;   /* N > rows_in: rows repeat */
    float *dout = random_host((long)N * C, -1, 1), *dinp = random_host((long)rows_in * C, -1, 1);
    int32_t *rows = random_indices(N, rows_in);
    float *d_dinp = to_device_f(gpu, dinp, (long)rows_in * C);
    cpu->gather_rows_backward(dinp, dout, rows, N, C);
    gpu->gather_rows_backward(d_dinp, to_device_f(gpu, dout, (long)N * C), to_device_i(gpu, rows, N), N, C);
    CHECK_CLOSE(gpu, d_dinp, dinp, (long)rows_in * C, TOL);
    release_all(gpu);
}

/* M rows of K probabilities (positive, each summing to 1), on the host. */
static float *random_distributions(int M, int K) {
    float *t = random_host((long)M * K, 0, 1);
    for (int m = 0; m < M; m++) {
        double sum = 0.0;
        for (int k = 0; k < K; k++) sum += t[(long)m * K + k];
        for (int k = 0; k < K; k++) t[(long)m * K + k] = (float)(t[(long)m * K + k] / sum);
    }
    return t;
}

/* R = 1 without target_rows (row n against targets row n) or R targets per
 * row picked by target_rows. K-term sums (logsumexp, dot products): TOL for
 * short rows, TOL_LONG for K = 262,144. */
static void check_cross_entropy_forward(int N, int K, int R, int with_rows, double tol) {
    REQUIRE_CUDA(gpu);
    int M = with_rows ? 5 : N;
    float *logits = random_host((long)N * K, -3, 3);
    float *targets = random_distributions(M, K);
    int32_t *rows = with_rows ? random_indices((long)N * R, M) : NULL;
    float *loss = random_host(N, -1, 1), *lse = random_host(N, -1, 1);
    float *d_loss = to_device_f(gpu, loss, N), *d_lse = to_device_f(gpu, lse, N);
    cpu->softmax_cross_entropy_forward(loss, lse, logits, targets, rows, N, K, R, 0.1f);
    gpu->softmax_cross_entropy_forward(d_loss, d_lse, to_device_f(gpu, logits, (long)N * K),
                                       to_device_f(gpu, targets, (long)M * K),
                                       rows ? to_device_i(gpu, rows, (long)N * R) : NULL, N, K, R, 0.1f);
    CHECK_CLOSE(gpu, d_loss, loss, N, tol);
    CHECK_CLOSE(gpu, d_lse, lse, N, tol);
    release_all(gpu);
}
static void softmax_cross_entropy_forward(void) { check_cross_entropy_forward(19, 1000, 1, 0, TOL); }
static void softmax_cross_entropy_forward_two_targets(void) { check_cross_entropy_forward(19, 1000, 2, 1, TOL); }
static void softmax_cross_entropy_forward_262144(void) { check_cross_entropy_forward(3, 262144, 2, 1, TOL_LONG); }

static void check_cross_entropy_backward(int N, int K, int R, int with_rows, double tol) {
    REQUIRE_CUDA(gpu);
    int M = with_rows ? 5 : N;
    float *logits = random_host((long)N * K, -3, 3);
    float *targets = random_distributions(M, K);
    int32_t *rows = with_rows ? random_indices((long)N * R, M) : NULL;
    float *loss = host_alloc((size_t)N * sizeof(float)), *lse = host_alloc((size_t)N * sizeof(float));
    cpu->softmax_cross_entropy_forward(loss, lse, logits, targets, rows, N, K, R, 0.1f);   /* saved lse */
    float *dloss = random_host(N, -1, 1), *dlogits = random_host((long)N * K, -1, 1);
    float *d_dlogits = to_device_f(gpu, dlogits, (long)N * K);
    cpu->softmax_cross_entropy_backward(dlogits, dloss, logits, targets, rows, lse, N, K, R, 0.1f);
    gpu->softmax_cross_entropy_backward(d_dlogits, to_device_f(gpu, dloss, N),
                                        to_device_f(gpu, logits, (long)N * K),
                                        to_device_f(gpu, targets, (long)M * K),
                                        rows ? to_device_i(gpu, rows, (long)N * R) : NULL,
                                        to_device_f(gpu, lse, N), N, K, R, 0.1f);
    CHECK_CLOSE(gpu, d_dlogits, dlogits, (long)N * K, tol);
    release_all(gpu);
}
static void softmax_cross_entropy_backward(void) { check_cross_entropy_backward(19, 1000, 1, 0, TOL); }
static void softmax_cross_entropy_backward_two_targets(void) { check_cross_entropy_backward(19, 1000, 2, 1, TOL); }
/* The target mass is a 2 x 262,144-term sum: TOL_LONG. */
static void softmax_cross_entropy_backward_262144(void) { check_cross_entropy_backward(3, 262144, 2, 1, TOL_LONG); }

/* N unit rows of C values, on the host; with_tie: rows 4 and 9 are equal (a
 * tie for every other row's nearest; kept out of the backward, whose
 * near-zero pair distance would dwarf every other gradient). */
static float *random_unit_rows(int N, int C, int with_tie) {
    float *x = random_host((long)N * C, -1, 1);
    cpu->l2norm_forward(x, host_alloc((size_t)N * sizeof(float)), x, N, C, 1e-12f);
    if (with_tie) memcpy(x + 9L * C, x + 4L * C, (size_t)C * sizeof(float));
    return x;
}

static void koleo_forward(void) {
    REQUIRE_CUDA(gpu);
    int N = 40, C = 64;
    float *inp = random_unit_rows(N, C, 1);
    float *loss = random_host(N, -1, 1);
    int32_t *neighbor = host_alloc((size_t)N * sizeof(int32_t));
    int32_t *back = host_alloc((size_t)N * sizeof(int32_t));
    float *d_loss = to_device_f(gpu, loss, N);
    int32_t *d_neighbor = to_device_i(gpu, neighbor, N);
    cpu->koleo_forward(loss, neighbor, inp, N, C, 1e-8f);
    gpu->koleo_forward(d_loss, d_neighbor, to_device_f(gpu, inp, (long)N * C), N, C, 1e-8f);
    gpu->copy_to_host(back, d_neighbor, (size_t)N * sizeof(int32_t));
    int same = 1;
    for (int n = 0; n < N; n++) same &= back[n] == neighbor[n];
    CHECK(same, "neighbours differ from the CPU's");
    CHECK_CLOSE(gpu, d_loss, loss, N, TOL);
    release_all(gpu);
}

static void koleo_backward(void) {
    REQUIRE_CUDA(gpu);
    int N = 40, C = 64;
    float *inp = random_unit_rows(N, C, 0);
    float *loss = host_alloc((size_t)N * sizeof(float));
    int32_t *neighbor = host_alloc((size_t)N * sizeof(int32_t));
    cpu->koleo_forward(loss, neighbor, inp, N, C, 1e-8f);   /* saved neighbours, for both */
    float *dloss = random_host(N, -1, 1), *dinp = random_host((long)N * C, -1, 1);
    float *d_dinp = to_device_f(gpu, dinp, (long)N * C);
    cpu->koleo_backward(dinp, dloss, inp, neighbor, N, C, 1e-8f);
    gpu->koleo_backward(d_dinp, to_device_f(gpu, dloss, N), to_device_f(gpu, inp, (long)N * C),
                        to_device_i(gpu, neighbor, N), N, C, 1e-8f);
    CHECK_CLOSE(gpu, d_dinp, dinp, (long)N * C, TOL);
    release_all(gpu);
}

/* with_shift: subtract a per-column shift; in_place: out == inp. */
static void check_exp_with_temperature(int with_shift, int in_place) {
    REQUIRE_CUDA(gpu);
    int M = 13, K = 1001;
    long n = (long)M * K;
    float *inp = random_host(n, -1, 1), *shift = random_host(K, -1, 1), *out = random_host(n, -1, 1);
    float *d_inp = to_device_f(gpu, inp, n), *d_out = in_place ? d_inp : to_device_f(gpu, out, n);
    float *d_shift = with_shift ? to_device_f(gpu, shift, K) : NULL;
    cpu->exp_with_temperature(out, inp, with_shift ? shift : NULL, M, K, 0.07f);
    gpu->exp_with_temperature(d_out, d_inp, d_shift, M, K, 0.07f);
    CHECK_CLOSE(gpu, d_out, out, n, TOL);
    release_all(gpu);
}
static void exp_with_temperature(void) { check_exp_with_temperature(1, 0); }
static void exp_with_temperature_in_place_no_shift(void) { check_exp_with_temperature(0, 1); }

static void check_column_sums(int M, int K, double tol) {
    REQUIRE_CUDA(gpu);
    float *x = random_host((long)M * K, 0, 1), *sums = random_host(K, -1, 1);
    float *d_sums = to_device_f(gpu, sums, K);   /* garbage: column_sums overwrites */
    cpu->column_sums(sums, x, M, K);
    gpu->column_sums(d_sums, to_device_f(gpu, x, (long)M * K), M, K);
    CHECK_CLOSE(gpu, d_sums, sums, K, tol);
    release_all(gpu);
}
static void column_sums(void) { check_column_sums(13, 1001, TOL); }
/* 3001-row column sums (double on both sides, different orders): TOL_LONG. */
static void column_sums_many_rows(void) { check_column_sums(3001, 300, TOL_LONG); }

static void check_column_max(int M) {
    REQUIRE_CUDA(gpu);
    int K = 1001;
    float *x = random_host((long)M * K, -5, 5), *maxes = random_host(K, -1, 1);
    float *d_maxes = to_device_f(gpu, maxes, K);
    cpu->column_max(maxes, x, M, K);
    gpu->column_max(d_maxes, M > 0 ? to_device_f(gpu, x, (long)M * K) : NULL, M, K);
    float *back = host_alloc((size_t)K * sizeof(float));
    gpu->copy_to_host(back, d_maxes, (size_t)K * sizeof(float));
    int same = 1;   /* a maximum: exact, -infinity included */
    for (int k = 0; k < K; k++) same &= back[k] == maxes[k];
    CHECK(same, "column maxima differ from the CPU's");
    release_all(gpu);
}
static void column_max(void) { check_column_max(13); }
static void column_max_no_rows(void) { check_column_max(0); }

static void divide_columns(void) {
    REQUIRE_CUDA(gpu);
    int M = 13, K = 1001;
    long n = (long)M * K;
    float *x = random_host(n, -1, 1), *divisors = random_host(K, 0.5f, 2);
    divisors[7] = divisors[500] = 0.0f;   /* those columns become 0 */
    float *d_x = to_device_f(gpu, x, n);
    cpu->divide_columns(x, divisors, M, K);
    gpu->divide_columns(d_x, to_device_f(gpu, divisors, K), M, K);
    CHECK_CLOSE(gpu, d_x, x, n, TOL);
    release_all(gpu);
}

static void normalize_rows(void) {
    REQUIRE_CUDA(gpu);
    int M = 13, K = 5001;
    long n = (long)M * K;
    float *x = random_host(n, 0, 1);
    memset(x + 2L * K, 0, (size_t)K * sizeof(float));   /* row 2 sums to 0: stays 0 */
    float *d_x = to_device_f(gpu, x, n);
    cpu->normalize_rows(x, M, K);
    gpu->normalize_rows(d_x, M, K);
    CHECK_CLOSE(gpu, d_x, x, n, TOL);
    release_all(gpu);
}

static void ema_update(void) {
    REQUIRE_CUDA(gpu);
    long n = 10007;
    float *ema = random_host(n, -1, 1), *params = random_host(n, -1, 1);
    float *d_ema = to_device_f(gpu, ema, n);
    cpu->ema_update(ema, params, n, 0.996f);
    gpu->ema_update(d_ema, to_device_f(gpu, params, n), n, 0.996f);
    CHECK_CLOSE(gpu, d_ema, ema, n, TOL);
    release_all(gpu);
}

TEST_MAIN(TEST(backend_table), TEST(memory),
          TEST(matmul_forward), TEST(matmul_forward_no_bias), TEST(matmul_forward_long_inner),
          TEST(matmul_backward), TEST(matmul_backward_weight_only), TEST(matmul_backward_long_batch),
          TEST(matmul_forward_bf16), TEST(matmul_forward_bf16_no_bias), TEST(matmul_forward_bf16_odd),
          TEST(matmul_forward_bf16_odd_no_bias), TEST(matmul_backward_bf16),
          TEST(matmul_backward_bf16_odd), TEST(matmul_backward_bf16_input_only),
          TEST(matmul_bf16_differs_from_fp32),
          TEST(patchify),
          TEST(tokens_forward_masked), TEST(tokens_forward_unmasked), TEST(tokens_forward_no_registers),
          TEST(tokens_backward_masked), TEST(tokens_backward_unmasked),
          TEST(layernorm_forward), TEST(layernorm_forward_wide),
          TEST(layernorm_backward), TEST(layernorm_backward_many_rows),
          TEST(rope_forward), TEST(rope_backward),
          TEST(attention_forward), TEST(attention_forward_small),
          TEST(attention_forward_many_keys), TEST(attention_forward_wide_heads),
          TEST(attention_forward_large_scores), TEST(attention_backward_many_keys),
          TEST(attention_backward_wide_heads),
          TEST(attention_backward), TEST(attention_backward_small),
          TEST(gelu_forward), TEST(gelu_backward), TEST(swiglu_forward), TEST(swiglu_backward),
          TEST(layerscale_residual_forward), TEST(layerscale_residual_backward),
          TEST(layerscale_residual_backward_many_rows),
          TEST(adamw_update), TEST(sum_squares), TEST(scale),
          TEST(l2norm_forward), TEST(l2norm_forward_norms_only), TEST(l2norm_backward),
          TEST(gather_rows), TEST(gather_rows_backward),
          TEST(softmax_cross_entropy_forward), TEST(softmax_cross_entropy_forward_two_targets),
          TEST(softmax_cross_entropy_forward_262144),
          TEST(softmax_cross_entropy_backward), TEST(softmax_cross_entropy_backward_two_targets),
          TEST(softmax_cross_entropy_backward_262144),
          TEST(koleo_forward), TEST(koleo_backward),
          TEST(exp_with_temperature), TEST(exp_with_temperature_in_place_no_shift),
          TEST(column_sums), TEST(column_sums_many_rows), TEST(column_max), TEST(column_max_no_rows),
          TEST(divide_columns), TEST(normalize_rows), TEST(ema_update))

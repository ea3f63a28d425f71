/*
 * cuda_matmul.cu - linear layers on cuBLASLt, in PyTorch's weight layout:
 * out[N, OC] = inp[N, C] @ weight[OC, C]^T + bias[OC], in two precisions
 * that share every line but the compute type:
 *   bf16  (table "cuda"): CUBLAS_COMPUTE_32F_FAST_16BF, tensor cores; the
 *         fp32 inputs are rounded to bf16 (8-bit mantissa) inside the GEMM,
 *         products and sums are fp32. Tensors stay fp32 in memory.
 *   fp32  (table "cuda-fp32"): CUBLAS_COMPUTE_32F, exact fp32, the path the
 *         fp32 op tests compare with the CPU oracle.
 *
 * cuBLAS(Lt) is column-major: a row-major [R, S] matrix is, to cuBLAS, the
 * column-major S x R matrix with leading dimension S (its transpose). So
 *   inp    [N, C]   is  inp^T    C x N   (ld C)
 *   weight [OC, C]  is  weight^T C x OC  (ld C)
 *   out    [N, OC]  is  out^T    OC x N  (ld OC)
 * and each row-major product is written as the column-major product of the
 * transposes. The backward uses beta = 1: gradients accumulate (backend.h).
 *
 * Plans: a cuBLASLt GEMM needs a matmul descriptor, three matrix layouts and
 * an algorithm chosen by cublasLtMatmulAlgoGetHeuristic, which costs far more
 * host time than the launch. They are built once per distinct GEMM and kept
 * in a fixed table (see GemmKey for what makes two GEMMs the same), searched
 * linearly, the oldest entry evicted round-robin when full. The table is per
 * process and not locked: the backend is driven from one host thread.
 */
#include <string.h>

#include "nn/cuda/cuda_common.cuh"

typedef enum { PRECISION_BF16, PRECISION_FP32 } GemmPrecision;

/* out[N, OC] += bias[OC] broadcast over rows. */
__global__ static void add_bias_kernel(float *out, const float *bias, long N, int OC) {
    CUDA_GRID_STRIDE_LOOP(i, N * OC) { out[i] += bias[i % OC]; }
}

static void add_bias(float *out, const float *bias, int N, int OC) {
    long n = (long)N * OC;
    add_bias_kernel<<<cuda_grid_for(n), CUDA_BLOCK>>>(out, bias, N, OC);
    CUDA_CHECK_LAUNCH();
}

/* ---- plans ------------------------------------------------------------------ */

/* Everything a plan depends on: the column-major problem D (m x n) =
 * op(A) (m x k) op(B) (k x n) + beta C with C = D, its precision and
 * epilogue, and the alignment of each pointer, because the heuristic picks
 * kernels that may rely on it (cuBLASLt assumes 256-byte alignment unless
 * told otherwise, and our tensors are often slices of larger buffers).
 * Only 32-bit fields, so keys compare with memcmp. */
typedef struct GemmKey {
    int32_t precision;         /* GemmPrecision */
    int32_t transa, transb;    /* cublasOperation_t */
    int32_t m, n, k;
    int32_t lda, ldb, ldc;
    int32_t epilogue;          /* cublasLtEpilogue_t */
    uint32_t align_a, align_b, align_c, align_bias;   /* bytes; align_bias 0 without bias */
} GemmKey;

typedef struct GemmPlan {
    int used;
    GemmKey key;
    /* 0 when cuBLASLt has no algorithm for the key: cached as well, so the
     * fallback (the bias by a separate kernel) does not ask again. */
    int found;
    cublasStatus_t heuristic_status;
    cublasLtMatmulDesc_t desc;
    cublasLtMatrixLayout_t a, b, c;   /* c is also D's layout (D = C, in place) */
    cublasLtMatmulAlgo_t algo;
} GemmPlan;

/* 256 plans: a ViT has ~10 linear shapes, times 3 GEMMs (forward, dinp,
 * dweight), times 2 crop sizes, plus a teacher's forward shapes and a few
 * alignments; a plan is a few small host objects. */
enum { PLAN_CACHE_SIZE = 256 };
static GemmPlan plan_cache[PLAN_CACHE_SIZE];
static int plan_next_victim;

/* The largest power of two <= 256 that divides the address (4 for a float). */
static uint32_t alignment_of(const void *ptr) {
    uintptr_t address = (uintptr_t)ptr;
    uint32_t align = 256;
    while (align > 1 && address % align != 0) align >>= 1;
    return align;
}

static void release_plan(GemmPlan *plan) {
    if (!plan->used) return;
    CUBLAS_CHECK(cublasLtMatrixLayoutDestroy(plan->a));
    CUBLAS_CHECK(cublasLtMatrixLayoutDestroy(plan->b));
    CUBLAS_CHECK(cublasLtMatrixLayoutDestroy(plan->c));
    CUBLAS_CHECK(cublasLtMatmulDescDestroy(plan->desc));
    memset(plan, 0, sizeof *plan);
}

/* Creates the descriptor and layouts of key and asks the heuristic for its
 * best algorithm. bias (NULL without the bias epilogue) is set on the
 * descriptor because the heuristic reads its alignment from the pointer. */
static void build_plan(GemmPlan *plan, const GemmKey *key, const float *bias) {
    memset(plan, 0, sizeof *plan);
    plan->used = 1;
    plan->key = *key;

    cublasComputeType_t compute =
        key->precision == PRECISION_BF16 ? CUBLAS_COMPUTE_32F_FAST_16BF : CUBLAS_COMPUTE_32F;
    CUBLAS_CHECK(cublasLtMatmulDescCreate(&plan->desc, compute, CUDA_R_32F));
    cublasOperation_t transa = (cublasOperation_t)key->transa, transb = (cublasOperation_t)key->transb;
    CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(plan->desc, CUBLASLT_MATMUL_DESC_TRANSA, &transa,
                                                sizeof transa));
    CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(plan->desc, CUBLASLT_MATMUL_DESC_TRANSB, &transb,
                                                sizeof transb));
    cublasLtEpilogue_t epilogue = (cublasLtEpilogue_t)key->epilogue;
    CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(plan->desc, CUBLASLT_MATMUL_DESC_EPILOGUE, &epilogue,
                                                sizeof epilogue));
    if (bias) {
        int32_t bias_type = CUDA_R_32F;
        CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(plan->desc, CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE,
                                                    &bias_type, sizeof bias_type));
        CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(plan->desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER,
                                                    &bias, sizeof bias));
    }

    /* op(A) is m x k: A itself is m x k (N) or k x m (T); likewise B. */
    int a_rows = transa == CUBLAS_OP_N ? key->m : key->k, a_cols = transa == CUBLAS_OP_N ? key->k : key->m;
    int b_rows = transb == CUBLAS_OP_N ? key->k : key->n, b_cols = transb == CUBLAS_OP_N ? key->n : key->k;
    CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&plan->a, CUDA_R_32F, a_rows, a_cols, key->lda));
    CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&plan->b, CUDA_R_32F, b_rows, b_cols, key->ldb));
    CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&plan->c, CUDA_R_32F, key->m, key->n, key->ldc));

    cublasLtMatmulPreference_t preference;
    CUBLAS_CHECK(cublasLtMatmulPreferenceCreate(&preference));
    uint64_t workspace = CUDA_CUBLASLT_WORKSPACE_BYTES;
    CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(
        preference, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &workspace, sizeof workspace));
    const struct {
        cublasLtMatmulPreferenceAttributes_t attribute;
        uint32_t bytes;
    } alignments[] = {
        {CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, key->align_a},
        {CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, key->align_b},
        {CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, key->align_c},
        {CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, key->align_c},
    };
    for (size_t i = 0; i < sizeof alignments / sizeof alignments[0]; i++)
        CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(preference, alignments[i].attribute,
                                                          &alignments[i].bytes, sizeof(uint32_t)));

    cublasLtMatmulHeuristicResult_t result;
    memset(&result, 0, sizeof result);
    int returned = 0;
    cublasStatus_t status = cublasLtMatmulAlgoGetHeuristic(cuda_cublaslt_handle(), plan->desc, plan->a,
                                                           plan->b, plan->c, plan->c, preference, 1,
                                                           &result, &returned);
    CUBLAS_CHECK(cublasLtMatmulPreferenceDestroy(preference));
    plan->heuristic_status = status;
    /* NOT_SUPPORTED, or success with no result: no algorithm for this key. */
    if (status != CUBLAS_STATUS_NOT_SUPPORTED)
        cublas_check_at(status, "cublasLtMatmulAlgoGetHeuristic", __FILE__, __LINE__);
    plan->found = status == CUBLAS_STATUS_SUCCESS && returned > 0 && result.state == CUBLAS_STATUS_SUCCESS;
    if (plan->found) plan->algo = result.algo;
}

/* The plan of key, built (evicting round-robin) if the table has none. */
static GemmPlan *find_plan(const GemmKey *key, const float *bias) {
    for (int i = 0; i < PLAN_CACHE_SIZE; i++)
        if (plan_cache[i].used && memcmp(&plan_cache[i].key, key, sizeof *key) == 0)
            return &plan_cache[i];
    GemmPlan *plan = &plan_cache[plan_next_victim];
    plan_next_victim = (plan_next_victim + 1) % PLAN_CACHE_SIZE;
    release_plan(plan);
    build_plan(plan, key, bias);
    return plan;
}

/* Column-major D (m x n, ld ldc) = op(A) op(B) + beta D (+ bias[m] on every
 * column when bias is not NULL), on the legacy default stream. k >= 1. */
static void gemm(GemmPrecision precision, cublasOperation_t transa, cublasOperation_t transb, int m,
                 int n, int k, const float *A, int lda, const float *B, int ldb, float beta, float *D,
                 int ldc, const float *bias) {
    GemmKey key;
    memset(&key, 0, sizeof key);
    key.precision = precision;
    key.transa = transa;
    key.transb = transb;
    key.m = m;
    key.n = n;
    key.k = k;
    key.lda = lda;
    key.ldb = ldb;
    key.ldc = ldc;
    key.epilogue = bias ? CUBLASLT_EPILOGUE_BIAS : CUBLASLT_EPILOGUE_DEFAULT;
    key.align_a = alignment_of(A);
    key.align_b = alignment_of(B);
    key.align_c = alignment_of(D);
    key.align_bias = bias ? alignment_of(bias) : 0;

    const GemmPlan *plan = find_plan(&key, bias);
    int bias_by_kernel = 0;
    if (!plan->found && bias) {
        /* No algorithm fuses the bias for this shape: plain GEMM, then the kernel. */
        key.epilogue = CUBLASLT_EPILOGUE_DEFAULT;
        key.align_bias = 0;
        plan = find_plan(&key, NULL);
        bias_by_kernel = 1;
    }
    if (!plan->found) {
        fprintf(stderr,
                "%s:%d: cuBLASLt has no algorithm for a %s GEMM m=%d n=%d k=%d (op A %s, op B %s, "
                "ld %d %d %d, alignment %u %u %u bytes): cublasLtMatmulAlgoGetHeuristic: %s\n",
                __FILE__, __LINE__, precision == PRECISION_BF16 ? "bf16" : "fp32", m, n, k,
                transa == CUBLAS_OP_N ? "N" : "T", transb == CUBLAS_OP_N ? "N" : "T", lda, ldb, ldc,
                key.align_a, key.align_b, key.align_c,
                plan->heuristic_status == CUBLAS_STATUS_SUCCESS ? "no result"
                                                                : cublasGetStatusString(plan->heuristic_status));
        fflush(stderr);
        abort();
    }
    if (bias && !bias_by_kernel)   /* this call's bias (the plan may have been built for another) */
        CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(plan->desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER,
                                                    &bias, sizeof bias));
    const float alpha = 1.0f;
    CUBLAS_CHECK(cublasLtMatmul(cuda_cublaslt_handle(), plan->desc, &alpha, A, plan->a, B, plan->b,
                                &beta, D, plan->c, D, plan->c, &plan->algo, cuda_cublaslt_workspace(),
                                CUDA_CUBLASLT_WORKSPACE_BYTES, 0));
    if (bias_by_kernel) add_bias(D, bias, n, m);
}

/* ---- the ops ------------------------------------------------------------------ */

/* out[N, OC] = inp[N, C] @ weight[OC, C]^T + bias[OC]; bias may be NULL. */
static void matmul_forward(GemmPrecision precision, float *out, const float *inp, const float *weight,
                           const float *bias, int N, int C, int OC) {
    if (N <= 0 || OC <= 0) return;
    if (C <= 0) {   /* an empty product: out = bias (cuBLASLt takes no k = 0) */
        CUDA_CHECK(cudaMemset(out, 0, (size_t)N * OC * sizeof(float)));
        if (bias) add_bias(out, bias, N, OC);
        return;
    }
    /* out^T (OC x N) = (weight^T)^T (OC x C) * inp^T (C x N) + bias[OC] on
     * every column: the bias epilogue (CUBLASLT_EPILOGUE_BIAS adds a vector
     * of D's row count, OC, to each column), no separate pass over out. */
    gemm(precision, CUBLAS_OP_T, CUBLAS_OP_N, OC, N, C, weight, C, inp, C, 0.0f, out, OC, bias);
}

/* value(r, c) = dout[r, c]: the column sums are dbias. */
struct RowMajorValue {
    const float *x;
    int cols;
    __device__ float operator()(long r, int c) const { return x[r * cols + c]; }
};

/* dinp[N, C]     += dout[N, OC] @ weight[OC, C]
 * dweight[OC, C] += dout^T @ inp[N, C]
 * dbias[OC]      += sum over N of dout
 * Any of dinp, dweight, dbias may be NULL (not needed). */
static void matmul_backward(GemmPrecision precision, float *dinp, float *dweight, float *dbias,
                            const float *dout, const float *inp, const float *weight, int N, int C,
                            int OC) {
    if (N <= 0 || OC <= 0) return;
    if (dinp && C > 0) {
        /* dinp^T (C x N) += weight^T (C x OC) * dout^T (OC x N) */
        gemm(precision, CUBLAS_OP_N, CUBLAS_OP_N, C, N, OC, weight, C, dout, OC, 1.0f, dinp, C, NULL);
    }
    if (dweight && C > 0) {
        /* dweight^T (C x OC) += inp^T (C x N) * (dout^T)^T (N x OC) */
        gemm(precision, CUBLAS_OP_N, CUBLAS_OP_T, C, OC, N, inp, C, dout, OC, 1.0f, dweight, C, NULL);
    }
    if (dbias) {
        /* Not the CUBLASLT_EPILOGUE_BGRADB epilogue of the dweight GEMM (op(B)
         * = dout, its sums over k = N would be dbias): cuBLASLt documents that
         * it *stores* the bias gradient, so it would overwrite where the API
         * accumulates; it exists only when dweight is wanted; and in the bf16
         * path it may sum bf16-rounded dout. The column-sum kernel reads the
         * fp32 dout, adds in double in a fixed order (deterministic) and
         * accumulates into dbias, for one extra read of dout. */
        RowMajorValue value = {dout, OC};
        column_sum(dbias, N, OC, value);
    }
}

void cuda_matmul_forward_bf16(float *out, const float *inp, const float *weight, const float *bias,
                              int N, int C, int OC) {
    matmul_forward(PRECISION_BF16, out, inp, weight, bias, N, C, OC);
}
void cuda_matmul_backward_bf16(float *dinp, float *dweight, float *dbias, const float *dout,
                               const float *inp, const float *weight, int N, int C, int OC) {
    matmul_backward(PRECISION_BF16, dinp, dweight, dbias, dout, inp, weight, N, C, OC);
}
void cuda_matmul_forward_fp32(float *out, const float *inp, const float *weight, const float *bias,
                              int N, int C, int OC) {
    matmul_forward(PRECISION_FP32, out, inp, weight, bias, N, C, OC);
}
void cuda_matmul_backward_fp32(float *dinp, float *dweight, float *dbias, const float *dout,
                               const float *inp, const float *weight, int N, int C, int OC) {
    matmul_backward(PRECISION_FP32, dinp, dweight, dbias, dout, inp, weight, N, C, OC);
}

/*
 * cuda_matmul.cu - linear layers on cuBLASLt, in PyTorch's weight layout:
 * out[N, OC] = inp[N, C] @ weight[OC, C]^T + bias[OC], in three variants
 * that share every line but the compute type and the element types:
 *   _tc   (table "cuda"): fp32 tensors, CUBLAS_COMPUTE_32F_FAST_16BF, tensor
 *         cores; the fp32 inputs are rounded to bf16 (8-bit mantissa) inside
 *         the GEMM, products and sums are fp32.
 *   _fp32 (table "cuda-fp32"): fp32 tensors, CUBLAS_COMPUTE_32F, exact fp32,
 *         the path the fp32 op tests compare with the CPU oracle.
 *   _bf16 (both tables; the ViT blocks of block_bf16, backend.h): bf16
 *         activations, weights and dinp (A, B CUDA_R_16BF), CUBLAS_COMPUTE_32F
 *         (tensor cores, fp32 accumulation), D in bf16 (out, dinp) or fp32
 *         (dweight); bias and dbias fp32.
 *
 * Epilogues. What a linear layer does besides its GEMMs goes into cuBLASLt's
 * epilogues where it has an algorithm for them, so that no kernel makes an
 * extra pass over the output or the incoming gradient:
 *   the bias      CUBLASLT_EPILOGUE_BIAS on every forward. Its bias has D's
 *                 type (see gemm), so a bf16 out gets a bf16 copy of the
 *                 fp32 bias (OC values, into cuda_scratch): out = bf16(x W^T
 *                 + bf16(b)), one rounding of the sum (backend.h allows it).
 *   dbias         CUBLASLT_EPILOGUE_BGRADB on the dweight GEMM of the _bf16
 *                 entries: the column sums of dout (op(B) there) come out of
 *                 the GEMM that reads dout anyway, into cuda_scratch, and
 *                 are added to dbias (cuBLASLt stores a bias gradient, the
 *                 API accumulates). Not on _tc (it could sum bf16-rounded
 *                 dout) nor _fp32 (the exact path: its column sums are in
 *                 double, as the CPU's are nearly).
 * Where cuBLASLt has no such algorithm, or with the epilogues switched off
 * (nn_cuda_fuse_epilogues, for the benchmark that compares both), a kernel
 * adds the fp32 bias after the GEMM (out = bf16(bf16(x W^T) + b)) and
 * column_sum sums dout in double. The GELU epilogues are not used: cuBLASLt's
 * GELU is the tanh approximation, up to 4.7e-4 from the exact (erf) GELU of
 * the models here, so the feed-forward's GELU stays a kernel.
 *
 * cuBLAS(Lt) is column-major: a row-major [R, S] matrix is, to cuBLAS, the
 * column-major S x R matrix with leading dimension S (its transpose). So
 *   inp    [N, C]   is  inp^T    C x N   (ld C)
 *   weight [OC, C]  is  weight^T C x OC  (ld C)
 *   out    [N, OC]  is  out^T    OC x N  (ld OC)
 * and each row-major product is written as the column-major product of the
 * transposes. The backward uses beta = 1: gradients accumulate (backend.h);
 * cuBLASLt forms alpha AB + beta C in fp32 and rounds once to D's type.
 *
 * Plans: a cuBLASLt GEMM needs a matmul descriptor, three matrix layouts and
 * an algorithm chosen by cublasLtMatmulAlgoGetHeuristic, which costs far more
 * host time than the launch. They are built once per distinct GEMM and kept
 * in a fixed table (see GemmKey for what makes two GEMMs the same), searched
 * linearly, the oldest entry evicted round-robin when full (a key for which
 * the heuristic found nothing is cached too, and its GEMMs run on cuBLAS's
 * cublasGemmEx). The table is per process and not locked: the backend is
 * driven from one host thread.
 */
#include <string.h>

#include "nn/cuda/cuda_common.cuh"

/* The compute type of a GEMM (cublasComputeType_t). */
typedef enum { COMPUTE_32F_FAST_16BF, COMPUTE_32F } GemmCompute;

/* The cudaDataType_t of an element type. */
template <typename E>
struct GemmType;
template <>
struct GemmType<float> {
    static constexpr cudaDataType_t value = CUDA_R_32F;
};
template <>
struct GemmType<bf16> {
    static constexpr cudaDataType_t value = CUDA_R_16BF;
};

/* out[N, OC] += bias[OC] broadcast over rows (rounded once to E). */
template <typename E>
__global__ static void add_bias_kernel(E *out, const float *bias, long N, int OC) {
    CUDA_GRID_STRIDE_LOOP(i, N * OC) { accumulate(&out[i], bias[i % OC]); }
}

template <typename E>
static void add_bias(E *out, const float *bias, int N, int OC) {
    long n = (long)N * OC;
    CUDA_LAUNCH(cuda_grid_for(n), CUDA_BLOCK, 0, add_bias_kernel)(out, bias, N, OC);
    CUDA_CHECK_LAUNCH();
}

/* sums[n] += increments[n]: a bias gradient cuBLASLt stored, into the
 * gradient the API accumulates. */
__global__ static void accumulate_vector_kernel(float *sums, const float *increments, int n) {
    CUDA_GRID_STRIDE_LOOP(i, n) { sums[i] += increments[i]; }
}

/* value(r, c) = op(X)(r, c) of a column-major matrix X of element type E
 * (leading dimension ld), op transposing where transposed: the sums over r
 * of op(B) are the bias gradient of BGRADB, and the fallback sums the same. */
template <typename E>
struct OperandValue {
    const E *x;
    int ld;
    bool transposed;
    __device__ float operator()(long r, int c) const {
        return to_float(transposed ? x[c + r * (long)ld] : x[r + (long)c * ld]);
    }
};

/* Fused epilogues on (1, the default) or every bias and bias gradient by the
 * kernels above (0): nn_cuda_fuse_epilogues. */
static int fuse_epilogues = 1;

int nn_cuda_fuse_epilogues(int on) {
    const int previous = fuse_epilogues;
    fuse_epilogues = on != 0;
    return previous;
}

/* ---- plans ------------------------------------------------------------------ */

/* Everything a plan depends on: the column-major problem D (m x n) =
 * op(A) (m x k) op(B) (k x n) + beta C with C = D, its compute type, the
 * element types of A, B and of C, D, its epilogue, and the alignment of each
 * pointer, because the heuristic picks kernels that may rely on it
 * (cuBLASLt assumes 256-byte alignment unless told otherwise, and our
 * tensors are often slices of larger buffers: a bf16 weight copy may sit at
 * any even address). Only 32-bit fields, so keys compare with memcmp. */
typedef struct GemmKey {
    int32_t compute;           /* GemmCompute */
    int32_t ab_type, cd_type;  /* cudaDataType_t of A and B, of C and D */
    int32_t transa, transb;    /* cublasOperation_t */
    int32_t m, n, k;
    int32_t lda, ldb, ldc;
    int32_t epilogue;          /* cublasLtEpilogue_t; BIAS and BGRADB have a vector of D's type */
    uint32_t align_a, align_b, align_c, align_bias;   /* bytes; align_bias 0 without a vector */
} GemmKey;

typedef struct GemmPlan {
    int used;
    GemmKey key;
    /* 0 when cuBLASLt has no algorithm for the key: cached as well, so the
     * fallback (a plain GEMM and the kernels) does not ask again. */
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

static cublasComputeType_t cublas_compute(GemmCompute compute) {
    return compute == COMPUTE_32F_FAST_16BF ? CUBLAS_COMPUTE_32F_FAST_16BF : CUBLAS_COMPUTE_32F;
}

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
 * best algorithm. vector (the bias or the bias gradient; NULL without the
 * BIAS or BGRADB epilogue) is set on the descriptor because the heuristic
 * reads its alignment from the pointer. */
static void build_plan(GemmPlan *plan, const GemmKey *key, const void *vector) {
    memset(plan, 0, sizeof *plan);
    plan->used = 1;
    plan->key = *key;

    CUBLAS_CHECK(cublasLtMatmulDescCreate(&plan->desc, cublas_compute((GemmCompute)key->compute), CUDA_R_32F));
    cublasOperation_t transa = (cublasOperation_t)key->transa, transb = (cublasOperation_t)key->transb;
    CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(plan->desc, CUBLASLT_MATMUL_DESC_TRANSA, &transa,
                                                sizeof transa));
    CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(plan->desc, CUBLASLT_MATMUL_DESC_TRANSB, &transb,
                                                sizeof transb));
    cublasLtEpilogue_t epilogue = (cublasLtEpilogue_t)key->epilogue;
    CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(plan->desc, CUBLASLT_MATMUL_DESC_EPILOGUE, &epilogue,
                                                sizeof epilogue));
    if (vector) {
        int32_t vector_type = key->cd_type;
        CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(plan->desc, CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE,
                                                    &vector_type, sizeof vector_type));
        CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(plan->desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER,
                                                    &vector, sizeof vector));
    }

    /* op(A) is m x k: A itself is m x k (N) or k x m (T); likewise B. */
    int a_rows = transa == CUBLAS_OP_N ? key->m : key->k, a_cols = transa == CUBLAS_OP_N ? key->k : key->m;
    int b_rows = transb == CUBLAS_OP_N ? key->k : key->n, b_cols = transb == CUBLAS_OP_N ? key->n : key->k;
    const cudaDataType_t ab_type = (cudaDataType_t)key->ab_type, cd_type = (cudaDataType_t)key->cd_type;
    CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&plan->a, ab_type, a_rows, a_cols, key->lda));
    CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&plan->b, ab_type, b_rows, b_cols, key->ldb));
    CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&plan->c, cd_type, key->m, key->n, key->ldc));

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
    if (cd_type != CUDA_R_32F) {
        /* Split-K partial sums only in the compute type: the INPLACE and
         * OUTPUT_TYPE reduction schemes add the parts in D's type, which for
         * a bf16 D would round more than once (the API rounds once). */
        uint32_t schemes = CUBLASLT_REDUCTION_SCHEME_COMPUTE_TYPE;
        CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(
            preference, CUBLASLT_MATMUL_PREF_REDUCTION_SCHEME_MASK, &schemes, sizeof schemes));
    }

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
static GemmPlan *find_plan(const GemmKey *key, const void *vector) {
    for (int i = 0; i < PLAN_CACHE_SIZE; i++)
        if (plan_cache[i].used && memcmp(&plan_cache[i].key, key, sizeof *key) == 0)
            return &plan_cache[i];
    GemmPlan *plan = &plan_cache[plan_next_victim];
    plan_next_victim = (plan_next_victim + 1) % PLAN_CACHE_SIZE;
    release_plan(plan);
    build_plan(plan, key, vector);
    return plan;
}

static const char *type_name(int32_t type) { return type == CUDA_R_16BF ? "bf16" : "fp32"; }

/* What a GEMM does besides D = op(A) op(B) + beta D (either may be NULL):
 *   bias       [m] fp32: + bias[i] on every column of D (the forward's);
 *   bias_grad  [n] fp32: += the sums over k of op(B) (the dweight GEMM's
 *              dbias, op(B) being dout). */
typedef struct GemmExtras {
    const float *bias;
    float *bias_grad;
} GemmExtras;

/* Column-major D (m x n, ld ldc) = op(A) op(B) + beta D, and extras, on the
 * legacy default stream. k >= 1. A, B of element type AB, D of CD.
 *
 * The extras are cuBLASLt epilogues (the file's header says which) on a
 * vector of D's type: cublasLt.h, CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE:
 * "Bias vector elements are the same type as the elements of output matrix
 * (Dtype)", the exceptions being IMMA and fp8 kernels; a bias gradient has
 * C's. So a bf16 D gets a bf16 copy of the bias, and a bias gradient goes
 * to an fp32 D only. Where cuBLASLt has no algorithm with the epilogue, the
 * GEMM runs without it and kernels do the extras; where it has no algorithm
 * at all (a layout or alignment none of its kernels takes), the GEMM runs
 * on cublasGemmEx (same types and compute type), which takes any. */
template <typename AB, typename CD>
static void gemm(GemmCompute compute, cublasOperation_t transa, cublasOperation_t transb, int m, int n,
                 int k, const AB *A, int lda, const AB *B, int ldb, float beta, CD *D, int ldc,
                 GemmExtras extras) {
    GemmKey key;
    memset(&key, 0, sizeof key);
    key.compute = compute;
    key.ab_type = GemmType<AB>::value;
    key.cd_type = GemmType<CD>::value;
    key.transa = transa;
    key.transb = transb;
    key.m = m;
    key.n = n;
    key.k = k;
    key.lda = lda;
    key.ldb = ldb;
    key.ldc = ldc;
    key.align_a = alignment_of(A);
    key.align_b = alignment_of(B);
    key.align_c = alignment_of(D);

    /* The epilogue's vector, of D's type (cuda_scratch where it is a copy
     * or a bias gradient to add afterwards). */
    const bool d_is_fp32 = GemmType<CD>::value == CUDA_R_32F;
    const bool fuse_bias = fuse_epilogues && extras.bias != NULL;
    const bool fuse_bias_grad = fuse_epilogues && extras.bias_grad != NULL && !fuse_bias && d_is_fp32 &&
                                GemmType<AB>::value == CUDA_R_16BF && compute == COMPUTE_32F;
    void *vector = NULL;
    if (fuse_bias && d_is_fp32) {
        vector = (void *)extras.bias;
    } else if (fuse_bias) {
        vector = cuda_scratch((size_t)m * sizeof(bf16));
        cuda_cast_to_bf16((uint16_t *)vector, extras.bias, m);
    } else if (fuse_bias_grad) {
        vector = cuda_scratch((size_t)n * sizeof(float));
    }
    key.epilogue = fuse_bias ? CUBLASLT_EPILOGUE_BIAS
                   : fuse_bias_grad ? CUBLASLT_EPILOGUE_BGRADB
                                    : CUBLASLT_EPILOGUE_DEFAULT;
    key.align_bias = vector ? alignment_of(vector) : 0;

    const GemmPlan *plan = find_plan(&key, vector);
    if (!plan->found && vector) {
        /* No algorithm with the epilogue for this shape: plain GEMM, then the kernels. */
        key.epilogue = CUBLASLT_EPILOGUE_DEFAULT;
        key.align_bias = 0;
        vector = NULL;
        plan = find_plan(&key, NULL);
    }
    const float alpha = 1.0f;
    if (!plan->found) {
        const cublasStatus_t status =
            cublasGemmEx(cuda_cublas_handle(), transa, transb, m, n, k, &alpha, A, GemmType<AB>::value, lda, B,
                         GemmType<AB>::value, ldb, &beta, D, GemmType<CD>::value, ldc, cublas_compute(compute),
                         CUBLAS_GEMM_DEFAULT);
        if (status != CUBLAS_STATUS_SUCCESS) {
            fprintf(stderr,
                    "%s:%d: cuBLASLt has no algorithm for a GEMM m=%d n=%d k=%d (compute %s, A and B %s, "
                    "C and D %s, op A %s, op B %s, ld %d %d %d, alignment %u %u %u bytes): "
                    "cublasLtMatmulAlgoGetHeuristic: %s; and cublasGemmEx failed: %s\n",
                    __FILE__, __LINE__, m, n, k, compute == COMPUTE_32F_FAST_16BF ? "32F_FAST_16BF" : "32F",
                    type_name(key.ab_type), type_name(key.cd_type), transa == CUBLAS_OP_N ? "N" : "T",
                    transb == CUBLAS_OP_N ? "N" : "T", lda, ldb, ldc, key.align_a, key.align_b, key.align_c,
                    plan->heuristic_status == CUBLAS_STATUS_SUCCESS
                        ? "no result"
                        : cublasGetStatusString(plan->heuristic_status),
                    cublasGetStatusString(status));
            fflush(stderr);
            abort();
        }
    } else {
        if (vector)   /* this call's vector (the plan may have been built for another) */
            CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(plan->desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER,
                                                        &vector, sizeof vector));
        CUBLAS_CHECK(cublasLtMatmul(cuda_cublaslt_handle(), plan->desc, &alpha, A, plan->a, B, plan->b,
                                    &beta, D, plan->c, D, plan->c, &plan->algo, cuda_cublaslt_workspace(),
                                    CUDA_CUBLASLT_WORKSPACE_BYTES, 0));
    }

    if (extras.bias && !vector) add_bias(D, extras.bias, n, m);
    if (extras.bias_grad && vector) {
        CUDA_LAUNCH(cuda_grid_for(n), CUDA_BLOCK, 0, accumulate_vector_kernel)(extras.bias_grad,
                                                                             (const float *)vector, n);
        CUDA_CHECK_LAUNCH();
    } else if (extras.bias_grad) {
        OperandValue<AB> value = {B, ldb, transb == CUBLAS_OP_T};
        column_sum(extras.bias_grad, k, n, value);
    }
}

/* ---- the ops ------------------------------------------------------------------ */

/* out[N, OC] = inp[N, C] @ weight[OC, C]^T + bias[OC]; bias may be NULL.
 * out, inp, weight of element type E. */
template <typename E>
static void matmul_forward(GemmCompute compute, E *out, const E *inp, const E *weight, const float *bias,
                           int N, int C, int OC) {
    if (N <= 0 || OC <= 0) return;
    if (C <= 0) {   /* an empty product: out = bias (cuBLASLt takes no k = 0) */
        CUDA_CHECK(cudaMemset(out, 0, (size_t)N * OC * sizeof(E)));
        if (bias) add_bias(out, bias, N, OC);
        return;
    }
    /* out^T (OC x N) = (weight^T)^T (OC x C) * inp^T (C x N) + bias[OC] on
     * every column: the BIAS epilogue adds a vector of D's row count, OC,
     * to each column. */
    const GemmExtras extras = {bias, NULL};
    gemm(compute, CUBLAS_OP_T, CUBLAS_OP_N, OC, N, C, weight, C, inp, C, 0.0f, out, OC, extras);
}

/* dinp[N, C]     += dout[N, OC] @ weight[OC, C]
 * dweight[OC, C] += dout^T @ inp[N, C]
 * dbias[OC]      += sum over N of dout
 * Any of dinp, dweight, dbias may be NULL (not needed). dinp, dout, inp,
 * weight of element type E; dweight, dbias fp32. */
template <typename E>
static void matmul_backward(GemmCompute compute, E *dinp, float *dweight, float *dbias, const E *dout,
                            const E *inp, const E *weight, int N, int C, int OC) {
    if (N <= 0 || OC <= 0) return;
    const GemmExtras none = {NULL, NULL};
    if (dinp && C > 0) {
        /* dinp^T (C x N) += weight^T (C x OC) * dout^T (OC x N) */
        gemm(compute, CUBLAS_OP_N, CUBLAS_OP_N, C, N, OC, weight, C, dout, OC, 1.0f, dinp, C, none);
    }
    if (dweight && C > 0) {
        /* dweight^T (C x OC) += inp^T (C x N) * (dout^T)^T (N x OC), and
         * dbias = the sums of op(B) = dout^T^T over k = N: BGRADB where the
         * header says, column_sum otherwise. */
        const GemmExtras with_dbias = {NULL, dbias};
        gemm(compute, CUBLAS_OP_N, CUBLAS_OP_T, C, OC, N, inp, C, dout, OC, 1.0f, dweight, C, with_dbias);
    } else if (dbias) {
        /* dout [N, OC] is column-major OC x N (ld OC); its transpose's column sums. */
        OperandValue<E> value = {dout, OC, true};
        column_sum(dbias, N, OC, value);
    }
}

void cuda_matmul_forward_tc(float *out, const float *inp, const float *weight, const float *bias,
                            int N, int C, int OC) {
    matmul_forward(COMPUTE_32F_FAST_16BF, out, inp, weight, bias, N, C, OC);
}
void cuda_matmul_backward_tc(float *dinp, float *dweight, float *dbias, const float *dout,
                             const float *inp, const float *weight, int N, int C, int OC) {
    matmul_backward(COMPUTE_32F_FAST_16BF, dinp, dweight, dbias, dout, inp, weight, N, C, OC);
}
void cuda_matmul_forward_fp32(float *out, const float *inp, const float *weight, const float *bias,
                              int N, int C, int OC) {
    matmul_forward(COMPUTE_32F, out, inp, weight, bias, N, C, OC);
}
void cuda_matmul_backward_fp32(float *dinp, float *dweight, float *dbias, const float *dout,
                               const float *inp, const float *weight, int N, int C, int OC) {
    matmul_backward(COMPUTE_32F, dinp, dweight, dbias, dout, inp, weight, N, C, OC);
}
/* bf16 operands need no _FAST_ compute type: CUBLAS_COMPUTE_32F with
 * CUDA_R_16BF A and B runs on tensor cores with fp32 accumulation. */
void cuda_matmul_forward_bf16(uint16_t *out, const uint16_t *inp, const uint16_t *weight,
                              const float *bias, int N, int C, int OC) {
    matmul_forward(COMPUTE_32F, as_bf16(out), as_bf16(inp), as_bf16(weight), bias, N, C, OC);
}
void cuda_matmul_backward_bf16(uint16_t *dinp, float *dweight, float *dbias, const uint16_t *dout,
                               const uint16_t *inp, const uint16_t *weight, int N, int C, int OC) {
    matmul_backward(COMPUTE_32F, as_bf16(dinp), dweight, dbias, as_bf16(dout), as_bf16(inp),
                    as_bf16(weight), N, C, OC);
}

/*
 * emulator_blas.cc - cuBLAS and cuBLASLt for the CUDA emulator: the GEMMs
 * of cublas_v2.h and cublasLt.h computed on the host, synchronously, with
 * the checks a real library or GPU would make:
 *   - arithmetic: column-major D = alpha op(A) op(B) + beta C (+ bias[row]),
 *     and for BGRADB the bias gradient bias[col] = the sum over k of
 *     op(B)(k, col) (stored, in fp32 over k ascending, not scaled by
 *     alpha); each output element an fp32 dot product over k ascending, one fused
 *     multiply-add per step (a GPU's FFMA, a tensor core's fp32
 *     accumulation); CUBLAS_COMPUTE_32F_FAST_16BF rounds the fp32 operands
 *     to bf16 first. The epilogue is fp32 too and D is rounded once to its
 *     type. As in BLAS, beta = 0 does not read C and alpha = 0 does not read
 *     A and B (NaN there does not propagate).
 *   - support: the (compute type, A and B type, C and D type) combinations
 *     of the cublasGemmEx and cublasLtMatmul tables that involve only fp32
 *     and bf16, and for cuBLASLt the DEFAULT, BIAS and BGRADB epilogues, the
 *     vector of D's type; anything else is CUBLAS_STATUS_NOT_SUPPORTED, quietly, as a
 *     real library answers it (the heuristic's NOT_SUPPORTED is an answer
 *     callers act on).
 *   - arguments: a NULL handle is CUBLAS_STATUS_NOT_INITIALIZED; NULL
 *     objects, empty or inconsistent shapes, short leading dimensions,
 *     attribute values of the wrong size and operands outside device memory
 *     (emu::check_device_range) are CUBLAS_STATUS_INVALID_VALUE, the reason
 *     printed on stderr.
 *   - alignment: an algorithm from cublasLtMatmulAlgoGetHeuristic records
 *     the operand alignments it was chosen for (the preference's
 *     MIN_ALIGNMENT_*_BYTES, 256 where not set as cuBLASLt assumes; for the
 *     bias, the bias pointer's own alignment at that time). cublasLtMatmul
 *     aborts (emu::fail) where a pointer is less aligned than its algorithm
 *     assumed: a GPU kernel would read misaligned memory, as where a plan
 *     cache reuses an algorithm for a less aligned pointer. A pointer not
 *     aligned to its element size aborts in every call, as it faults on a
 *     GPU.
 * It does not model split-K, workspace use, TF32, streams (the work is done
 * before the call returns), nor the speed of anything.
 */
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cublasLt.h"
#include "cublas_v2.h"
#include "cuda_bf16.h"
#include "dd_cuda_emulator.h"

/* ---- objects -------------------------------------------------------------- */

/* The handles carry no state the emulator uses (no streams, one math mode):
 * each is a distinct non-NULL pointer from malloc, so a missing Create shows
 * as NULL. */
struct EmuCublasContext {
    int unused;
};
struct EmuLtContext {
    int unused;
};

struct EmuLtMatmulDesc {
    cublasComputeType_t compute;
    cudaDataType_t scale_type;
    cublasOperation_t transa, transb;
    cublasLtEpilogue_t epilogue;
    const void *bias;
    int bias_type_set;   /* 0: the bias has D's type (the default) */
    cudaDataType_t bias_type;
};

struct EmuLtMatrixLayout {
    cudaDataType_t type;
    uint64_t rows, cols;
    int64_t ld;
};

/* The operands of a GEMM, indexing Gemm::op and the alignments. */
enum { OPERAND_A, OPERAND_B, OPERAND_C, OPERAND_D, OPERAND_BIAS, OPERAND_COUNT };
static const char *const operand_names[OPERAND_COUNT] = {"A", "B", "C", "D", "bias"};

/* cuBLASLt assumes this alignment of A, B, C and D unless told less. */
enum { DEFAULT_ALIGNMENT = 256 };

struct EmuLtMatmulPreference {
    uint32_t min_alignment[4];   /* bytes, A, B, C, D */
};

/* ---- messages ------------------------------------------------------------- */

/* Prints "cuda emulator: <api>: <message>" to stderr and returns status. */
__attribute__((format(printf, 3, 4))) static cublasStatus_t complain(cublasStatus_t status, const char *api,
                                                                     const char *format, ...) {
    fprintf(stderr, "cuda emulator: %s: ", api);
    va_list args;
    va_start(args, format);
    vfprintf(stderr, format, args);
    va_end(args);
    fputc('\n', stderr);
    return status;
}

/* NOT_INITIALIZED for a NULL handle, as cuBLAS answers. */
static cublasStatus_t check_handle(const void *handle, const char *api) {
    if (handle) return CUBLAS_STATUS_SUCCESS;
    return complain(CUBLAS_STATUS_NOT_INITIALIZED, api, "the handle is NULL (never created?)");
}

/* INVALID_VALUE unless operation is CUBLAS_OP_N or CUBLAS_OP_T. */
static cublasStatus_t check_operation(int operation, const char *api) {
    if (operation == CUBLAS_OP_N || operation == CUBLAS_OP_T) return CUBLAS_STATUS_SUCCESS;
    return complain(CUBLAS_STATUS_INVALID_VALUE, api, "operation %d is neither CUBLAS_OP_N nor CUBLAS_OP_T",
                    operation);
}

/* INVALID_VALUE, naming the first of arguments that is NULL. */
typedef struct Argument {
    const void *pointer;
    const char *name;
} Argument;

template <size_t N>
static cublasStatus_t check_not_null(const char *api, const Argument (&arguments)[N]) {
    for (size_t i = 0; i < N; i++)
        if (!arguments[i].pointer)
            return complain(CUBLAS_STATUS_INVALID_VALUE, api, "%s is NULL", arguments[i].name);
    return CUBLAS_STATUS_SUCCESS;
}

/* Copies an attribute's value of size bytes from buf; INVALID_VALUE where
 * buf is NULL or its size is not the attribute's. */
static cublasStatus_t read_attribute(const char *api, int attribute, const void *buf, size_t given,
                                     void *value, size_t size) {
    if (!buf)
        return complain(CUBLAS_STATUS_INVALID_VALUE, api, "attribute %d: the value pointer is NULL", attribute);
    if (given != size)
        return complain(CUBLAS_STATUS_INVALID_VALUE, api, "attribute %d takes %zu bytes, not %zu", attribute, size,
                        given);
    memcpy(value, buf, size);
    return CUBLAS_STATUS_SUCCESS;
}

/* ---- status strings -------------------------------------------------------- */

static const struct {
    cublasStatus_t status;
    const char *name, *description;
} status_table[] = {
    {CUBLAS_STATUS_SUCCESS, "CUBLAS_STATUS_SUCCESS", "the operation completed successfully"},
    {CUBLAS_STATUS_NOT_INITIALIZED, "CUBLAS_STATUS_NOT_INITIALIZED", "the library was not initialized"},
    {CUBLAS_STATUS_ALLOC_FAILED, "CUBLAS_STATUS_ALLOC_FAILED", "a resource allocation failed"},
    {CUBLAS_STATUS_INVALID_VALUE, "CUBLAS_STATUS_INVALID_VALUE", "an argument has an invalid value"},
    {CUBLAS_STATUS_ARCH_MISMATCH, "CUBLAS_STATUS_ARCH_MISMATCH",
     "the device lacks an architectural feature the operation requires"},
    {CUBLAS_STATUS_MAPPING_ERROR, "CUBLAS_STATUS_MAPPING_ERROR", "an access to GPU memory failed"},
    {CUBLAS_STATUS_EXECUTION_FAILED, "CUBLAS_STATUS_EXECUTION_FAILED", "the GPU program failed to execute"},
    {CUBLAS_STATUS_INTERNAL_ERROR, "CUBLAS_STATUS_INTERNAL_ERROR", "an internal operation failed"},
    {CUBLAS_STATUS_NOT_SUPPORTED, "CUBLAS_STATUS_NOT_SUPPORTED", "the requested operation is not supported"},
};

/* status's row of status_table, or -1. */
static int status_index(cublasStatus_t status) {
    for (size_t i = 0; i < sizeof status_table / sizeof status_table[0]; i++)
        if (status_table[i].status == status) return (int)i;
    return -1;
}

const char *cublasGetStatusString(cublasStatus_t status) {
    const int i = status_index(status);
    return i < 0 ? "an unknown cuBLAS status" : status_table[i].description;
}

const char *cublasGetStatusName(cublasStatus_t status) {
    const int i = status_index(status);
    return i < 0 ? "CUBLAS_STATUS_UNKNOWN" : status_table[i].name;
}

/* ---- the GEMM -------------------------------------------------------------- */

/* An operand: a column-major rows x cols matrix of element type type at
 * data, leading dimension ld (the bias: m x 1; BGRADB's bias gradient:
 * n x 1). */
typedef struct Matrix {
    cudaDataType_t type;
    int64_t rows, cols, ld;
    const void *data;
} Matrix;

/* One GEMM as either API describes it. */
typedef struct Gemm {
    const char *api;   /* for messages */
    cublasComputeType_t compute;
    cudaDataType_t scale_type;
    cublasOperation_t transa, transb;
    cublasLtEpilogue_t epilogue;
    int64_t m, n, k;
    Matrix op[OPERAND_COUNT];
    bool used[OPERAND_COUNT];   /* the operands that must be valid device memory */
} Gemm;

/* Bytes per element of the types the emulator computes with; 0 for others. */
static size_t element_size(cudaDataType_t type) {
    switch (type) {
    case CUDA_R_32F: return sizeof(float);
    case CUDA_R_16BF: return sizeof(__nv_bfloat16);
    default: return 0;
    }
}

/* The stored shape of an operand whose op() is op_rows x op_cols. */
static void stored_shape(cublasOperation_t op, int64_t op_rows, int64_t op_cols, int64_t *rows, int64_t *cols) {
    *rows = op == CUBLAS_OP_N ? op_rows : op_cols;
    *cols = op == CUBLAS_OP_N ? op_cols : op_rows;
}

/* The bytes from a matrix's first element to one past its last
 * (rows, cols >= 1). */
static size_t span_bytes(const Matrix *x) {
    return ((size_t)(x->cols - 1) * (size_t)x->ld + (size_t)x->rows) * element_size(x->type);
}

/* x(row, col) as a float; x is fp32 or bf16 (check_support). */
static float read_element(const Matrix *x, int64_t row, int64_t col) {
    const size_t i = (size_t)(row + col * x->ld);
    if (x->type == CUDA_R_32F) return ((const float *)x->data)[i];
    return __bfloat162float(((const __nv_bfloat16 *)x->data)[i]);
}

/* x(row, col) = value, rounded once to x's type (fp32 or bf16); x is an
 * output, written through the pointer the caller gave as writable. */
static void write_element(const Matrix *x, int64_t row, int64_t col, float value) {
    const size_t i = (size_t)(row + col * x->ld);
    if (x->type == CUDA_R_32F)
        ((float *)x->data)[i] = value;
    else
        ((__nv_bfloat16 *)x->data)[i] = __float2bfloat16_rn(value);
}

/* The epilogues that take a vector (BIAS_POINTER): the bias, or BGRADB's
 * bias gradient. */
static bool has_vector(cublasLtEpilogue_t epilogue) {
    return epilogue == CUBLASLT_EPILOGUE_BIAS || epilogue == CUBLASLT_EPILOGUE_BGRADB;
}

/* INVALID_VALUE where a leading dimension of A, B, C or D is smaller than
 * its matrix's rows (or than 1). */
static cublasStatus_t check_leading_dimensions(const Gemm *g) {
    for (int i = OPERAND_A; i <= OPERAND_D; i++) {
        const Matrix *x = &g->op[i];
        if (x->ld < 1 || x->ld < x->rows)
            return complain(CUBLAS_STATUS_INVALID_VALUE, g->api,
                            "the leading dimension of %s is %lld, less than its %lld rows (or 1)", operand_names[i],
                            (long long)x->ld, (long long)x->rows);
    }
    return CUBLAS_STATUS_SUCCESS;
}

/* NOT_SUPPORTED unless the library has kernels for g: fp32 scale; A and B
 * of one type, C and D of one type; CUBLAS_COMPUTE_32F with fp32 A, B, C,
 * D or bf16 A, B and bf16 or fp32 C, D; CUBLAS_COMPUTE_32F_FAST_16BF with
 * fp32 A, B, C, D; the DEFAULT epilogue, or BIAS or BGRADB with a vector of
 * D's type (cuBLASLt's documented bias and bias gradient types). */
static cublasStatus_t check_support(const Gemm *g) {
    const cudaDataType_t ab = g->op[OPERAND_A].type, cd = g->op[OPERAND_D].type;
    if (g->scale_type != CUDA_R_32F || g->op[OPERAND_B].type != ab || g->op[OPERAND_C].type != cd)
        return CUBLAS_STATUS_NOT_SUPPORTED;
    bool types_supported;
    switch (g->compute) {
    case CUBLAS_COMPUTE_32F:
        types_supported = (ab == CUDA_R_32F && cd == CUDA_R_32F) ||
                          (ab == CUDA_R_16BF && (cd == CUDA_R_16BF || cd == CUDA_R_32F));
        break;
    case CUBLAS_COMPUTE_32F_FAST_16BF: types_supported = ab == CUDA_R_32F && cd == CUDA_R_32F; break;
    default: types_supported = false; break;
    }
    if (!types_supported) return CUBLAS_STATUS_NOT_SUPPORTED;
    if (g->epilogue == CUBLASLT_EPILOGUE_DEFAULT) return CUBLAS_STATUS_SUCCESS;
    if (has_vector(g->epilogue) && g->op[OPERAND_BIAS].type == cd) return CUBLAS_STATUS_SUCCESS;
    return CUBLAS_STATUS_NOT_SUPPORTED;
}

/* ---- algorithms ------------------------------------------------------------ */

/* What an algorithm is specific to (all int32, so that two compare with
 * memcmp): using it for another operation is an error. */
typedef struct Operation {
    int32_t compute, scale_type, transa, transb, epilogue, bias_type;
    int32_t type[4];   /* A, B, C, D */
} Operation;

/* The emulator's content of a cublasLtMatmulAlgo_t: a tag that tells it from
 * memory the heuristic did not fill, the operation it was chosen for, and
 * the alignment (bytes, a power of two <= 256) of each operand it assumes. */
typedef struct Algo {
    uint64_t tag;
    Operation operation;
    uint16_t alignment[OPERAND_COUNT];
} Algo;
static_assert(sizeof(Algo) <= sizeof(cublasLtMatmulAlgo_t), "Algo must fit in cublasLtMatmulAlgo_t");
static const uint64_t ALGO_TAG = 0x676c615f756d6564ull;   /* the bytes "demu_alg", little-endian */

static Operation operation_of(const Gemm *g) {
    Operation operation;
    memset(&operation, 0, sizeof operation);
    operation.compute = g->compute;
    operation.scale_type = g->scale_type;
    operation.transa = g->transa;
    operation.transb = g->transb;
    operation.epilogue = g->epilogue;
    operation.bias_type = has_vector(g->epilogue) ? g->op[OPERAND_BIAS].type : -1;
    for (int i = OPERAND_A; i <= OPERAND_D; i++) operation.type[i] = g->op[i].type;
    return operation;
}

/* The largest power of two <= 256 that divides value (256 for 0): the
 * alignment a kernel can rely on for an address, or for a promised
 * alignment that is not a power of two (12 bytes guarantee 4). */
static uint16_t alignment_of(uint64_t value) {
    uint16_t alignment = 256;
    while (value % alignment != 0) alignment >>= 1;
    return alignment;
}

/* The algorithm for g assuming the alignments promised for A, B, C and D,
 * and for the bias that of g's bias pointer. */
static cublasLtMatmulAlgo_t make_algo(const Gemm *g, const uint32_t promised[4]) {
    Algo algo;
    memset(&algo, 0, sizeof algo);
    algo.tag = ALGO_TAG;
    algo.operation = operation_of(g);
    for (int i = OPERAND_A; i <= OPERAND_D; i++) algo.alignment[i] = alignment_of(promised[i]);
    algo.alignment[OPERAND_BIAS] = alignment_of((uintptr_t)g->op[OPERAND_BIAS].data);
    cublasLtMatmulAlgo_t result;
    memset(&result, 0, sizeof result);
    memcpy(&result, &algo, sizeof algo);
    return result;
}

/* ---- running a GEMM --------------------------------------------------------- */

/* Every operand g uses must lie inside device memory (else INVALID_VALUE,
 * check_device_range says why) and be aligned to its element size, and to
 * the alignment algo assumes where there is one (else abort). */
static cublasStatus_t check_operands(const Gemm *g, const Algo *algo) {
    for (int i = 0; i < OPERAND_COUNT; i++) {
        if (!g->used[i]) continue;
        const Matrix *x = &g->op[i];
        char what[64];
        snprintf(what, sizeof what, "%s %s", g->api, operand_names[i]);
        if (!emu::check_device_range(x->data, span_bytes(x), what)) return CUBLAS_STATUS_INVALID_VALUE;
        const uintptr_t address = (uintptr_t)x->data;
        const size_t element = element_size(x->type);
        if (address % element != 0)
            emu::fail("%s: %s at %p is not aligned to its %zu-byte elements (a GPU faults: misaligned address)",
                      g->api, operand_names[i], x->data, element);
        if (algo && address % algo->alignment[i] != 0) {
            char chosen_for[96];
            if (i == OPERAND_BIAS)
                snprintf(chosen_for, sizeof chosen_for, "the bias pointer's alignment at the heuristic");
            else
                snprintf(chosen_for, sizeof chosen_for,
                         "CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_%s_BYTES, %d if not set", operand_names[i],
                         DEFAULT_ALIGNMENT);
            emu::fail("%s: %s at %p is not %u-byte aligned, the alignment its algorithm was chosen for (%s): "
                      "on a GPU the kernel may read misaligned memory; choose the algorithm "
                      "(cublasLtMatmulAlgoGetHeuristic) for pointers as little aligned as those it runs with",
                      g->api, operand_names[i], x->data, (unsigned)algo->alignment[i], chosen_for);
        }
    }
    return CUBLAS_STATUS_SUCCESS;
}

/* The rows x cols matrix M = x (or x^T where transposed) as packed
 * column-major floats in out, each element rounded to bf16 first where
 * round_to_bf16. */
static void pack_columns(const Matrix *x, bool transposed, int64_t rows, int64_t cols, bool round_to_bf16,
                         float *out) {
    for (int64_t c = 0; c < cols; c++)
        for (int64_t r = 0; r < rows; r++) {
            float value = transposed ? read_element(x, c, r) : read_element(x, r, c);
            if (round_to_bf16) value = __bfloat162float(__float2bfloat16_rn(value));
            out[r + c * rows] = value;
        }
}

/* D = alpha op(A) op(B) + beta C (+ bias[row]), and BGRADB's bias
 * gradient, g checked and supported. Each element of D is computed from the
 * same element of C before it is written, so C and D may be the same
 * matrix. */
static cublasStatus_t multiply(const Gemm *g, float alpha, float beta) {
    const int64_t m = g->m, n = g->n, k = g->k;
    const bool products = alpha != 0.0f && k > 0, bias_grad = g->epilogue == CUBLASLT_EPILOGUE_BGRADB;
    float *a = NULL, *b = NULL;   /* op(A) by rows, op(B) by columns: each k contiguous floats */
    if (products || bias_grad) {
        a = (float *)malloc((size_t)m * (size_t)k * sizeof(float));
        b = (float *)malloc((size_t)k * (size_t)n * sizeof(float));
        if (!a || !b) {
            free(a);
            free(b);
            return complain(CUBLAS_STATUS_ALLOC_FAILED, g->api,
                            "no host memory for the operands of an m = %lld, n = %lld, k = %lld product",
                            (long long)m, (long long)n, (long long)k);
        }
        const bool round_to_bf16 = g->compute == CUBLAS_COMPUTE_32F_FAST_16BF;
        /* Row i of op(A) is column i of op(A)^T, which is A^T for OP_N, A for OP_T. */
        pack_columns(&g->op[OPERAND_A], g->transa == CUBLAS_OP_N, k, m, round_to_bf16, a);
        pack_columns(&g->op[OPERAND_B], g->transb == CUBLAS_OP_T, k, n, round_to_bf16, b);
    }
    const bool bias = g->epilogue == CUBLASLT_EPILOGUE_BIAS;
    for (int64_t j = 0; j < n; j++)
        for (int64_t i = 0; i < m; i++) {
            float value = 0.0f;
            if (products) {
                const float *row = a + i * k, *col = b + j * k;
                float sum = 0.0f;
                for (int64_t l = 0; l < k; l++) sum = fmaf(row[l], col[l], sum);
                value = alpha * sum;
            }
            if (beta != 0.0f) value += beta * read_element(&g->op[OPERAND_C], i, j);
            if (bias) value += read_element(&g->op[OPERAND_BIAS], i, 0);
            write_element(&g->op[OPERAND_D], i, j, value);
        }
    for (int64_t j = 0; bias_grad && j < n; j++) {
        float sum = 0.0f;
        for (int64_t l = 0; l < k; l++) sum += b[j * k + l];
        write_element(&g->op[OPERAND_BIAS], j, 0, sum);
    }
    free(a);
    free(b);
    return CUBLAS_STATUS_SUCCESS;
}

/* ---- cuBLAS ---------------------------------------------------------------- */

/* *object = a new zeroed T, for api's Create (out names the argument). */
template <typename T>
static cublasStatus_t create_object(T **object, const char *api, const char *out) {
    if (!object) return complain(CUBLAS_STATUS_INVALID_VALUE, api, "%s is NULL", out);
    *object = (T *)calloc(1, sizeof(T));
    return *object ? CUBLAS_STATUS_SUCCESS : CUBLAS_STATUS_ALLOC_FAILED;
}

cublasStatus_t cublasCreate(cublasHandle_t *handle) {
    return create_object(handle, "cublasCreate", "handle");
}

cublasStatus_t cublasDestroy(cublasHandle_t handle) {
    const cublasStatus_t status = check_handle(handle, "cublasDestroy");
    free(handle);
    return status;
}

cublasStatus_t cublasSetMathMode(cublasHandle_t handle, cublasMath_t mode) {
    const char *api = "cublasSetMathMode";
    cublasStatus_t status = check_handle(handle, api);
    if (status != CUBLAS_STATUS_SUCCESS) return status;
    if (mode != CUBLAS_DEFAULT_MATH)
        return complain(CUBLAS_STATUS_NOT_SUPPORTED, api,
                        "math mode %d: the emulator has CUBLAS_DEFAULT_MATH only", (int)mode);
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasGemmEx(cublasHandle_t handle, cublasOperation_t transa, cublasOperation_t transb,
                            int m, int n, int k, const void *alpha, const void *A, cudaDataType_t Atype,
                            int lda, const void *B, cudaDataType_t Btype, int ldb, const void *beta,
                            void *C, cudaDataType_t Ctype, int ldc, cublasComputeType_t computeType,
                            cublasGemmAlgo_t algo) {
    const char *api = "cublasGemmEx";
    cublasStatus_t status = check_handle(handle, api);
    if (status != CUBLAS_STATUS_SUCCESS) return status;
    const Argument arguments[] = {{alpha, "alpha"}, {beta, "beta"}};
    if ((status = check_not_null(api, arguments)) != CUBLAS_STATUS_SUCCESS) return status;
    if ((status = check_operation(transa, api)) != CUBLAS_STATUS_SUCCESS ||
        (status = check_operation(transb, api)) != CUBLAS_STATUS_SUCCESS)
        return status;
    if (m < 0 || n < 0 || k < 0)
        return complain(CUBLAS_STATUS_INVALID_VALUE, api, "m = %d, n = %d, k = %d: a size is negative", m, n, k);
    if (algo != CUBLAS_GEMM_DEFAULT)
        return complain(CUBLAS_STATUS_INVALID_VALUE, api, "algorithm %d is not CUBLAS_GEMM_DEFAULT", (int)algo);

    /* cuBLAS allows empty sizes: m or n 0 does nothing, k 0 scales C. */
    Gemm g;
    memset(&g, 0, sizeof g);
    g.api = api;
    g.compute = computeType;
    g.scale_type = CUDA_R_32F;   /* implied by a 32F compute type, and required */
    g.transa = transa;
    g.transb = transb;
    g.epilogue = CUBLASLT_EPILOGUE_DEFAULT;
    g.m = m;
    g.n = n;
    g.k = k;
    Matrix *a = &g.op[OPERAND_A], *b = &g.op[OPERAND_B];
    *a = {Atype, 0, 0, lda, A};
    stored_shape(transa, m, k, &a->rows, &a->cols);
    *b = {Btype, 0, 0, ldb, B};
    stored_shape(transb, k, n, &b->rows, &b->cols);
    g.op[OPERAND_C] = g.op[OPERAND_D] = {Ctype, m, n, ldc, C};
    if ((status = check_leading_dimensions(&g)) != CUBLAS_STATUS_SUCCESS) return status;
    if ((status = check_support(&g)) != CUBLAS_STATUS_SUCCESS) return status;
    if (m == 0 || n == 0) return CUBLAS_STATUS_SUCCESS;

    g.used[OPERAND_A] = g.used[OPERAND_B] = k > 0;
    g.used[OPERAND_D] = true;   /* C, the same matrix */
    if ((status = check_operands(&g, NULL)) != CUBLAS_STATUS_SUCCESS) return status;
    return multiply(&g, *(const float *)alpha, *(const float *)beta);
}

/* ---- cuBLASLt objects -------------------------------------------------------- */

cublasStatus_t cublasLtCreate(cublasLtHandle_t *handle) {
    return create_object(handle, "cublasLtCreate", "handle");
}

cublasStatus_t cublasLtDestroy(cublasLtHandle_t handle) {
    const cublasStatus_t status = check_handle(handle, "cublasLtDestroy");
    free(handle);
    return status;
}

cublasStatus_t cublasLtMatmulDescCreate(cublasLtMatmulDesc_t *desc, cublasComputeType_t computeType,
                                        cudaDataType_t scaleType) {
    const cublasStatus_t status = create_object(desc, "cublasLtMatmulDescCreate", "desc");
    if (status != CUBLAS_STATUS_SUCCESS) return status;
    (*desc)->compute = computeType;
    (*desc)->scale_type = scaleType;
    (*desc)->transa = (*desc)->transb = CUBLAS_OP_N;
    (*desc)->epilogue = CUBLASLT_EPILOGUE_DEFAULT;
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasLtMatmulDescDestroy(cublasLtMatmulDesc_t desc) {
    free(desc);
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasLtMatmulDescSetAttribute(cublasLtMatmulDesc_t desc, cublasLtMatmulDescAttributes_t attr,
                                              const void *buf, size_t sizeInBytes) {
    const char *api = "cublasLtMatmulDescSetAttribute";
    if (!desc) return complain(CUBLAS_STATUS_INVALID_VALUE, api, "desc is NULL");
    int32_t value = 0;   /* every attribute but the bias pointer is 4 bytes */
    cublasStatus_t status;
    switch (attr) {
    case CUBLASLT_MATMUL_DESC_TRANSA:
    case CUBLASLT_MATMUL_DESC_TRANSB:
        if ((status = read_attribute(api, attr, buf, sizeInBytes, &value, sizeof value)) != CUBLAS_STATUS_SUCCESS ||
            (status = check_operation(value, api)) != CUBLAS_STATUS_SUCCESS)
            return status;
        (attr == CUBLASLT_MATMUL_DESC_TRANSA ? desc->transa : desc->transb) = (cublasOperation_t)value;
        return CUBLAS_STATUS_SUCCESS;
    case CUBLASLT_MATMUL_DESC_EPILOGUE:
        status = read_attribute(api, attr, buf, sizeInBytes, &value, sizeof value);
        if (status == CUBLAS_STATUS_SUCCESS) desc->epilogue = (cublasLtEpilogue_t)value;
        return status;
    case CUBLASLT_MATMUL_DESC_BIAS_POINTER:
        return read_attribute(api, attr, buf, sizeInBytes, &desc->bias, sizeof desc->bias);
    case CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE:
        status = read_attribute(api, attr, buf, sizeInBytes, &value, sizeof value);
        if (status == CUBLAS_STATUS_SUCCESS) {
            desc->bias_type = (cudaDataType_t)value;
            desc->bias_type_set = 1;
        }
        return status;
    default: return complain(CUBLAS_STATUS_INVALID_VALUE, api, "unknown attribute %d", (int)attr);
    }
}

cublasStatus_t cublasLtMatrixLayoutCreate(cublasLtMatrixLayout_t *layout, cudaDataType_t type, uint64_t rows,
                                          uint64_t cols, int64_t ld) {
    const cublasStatus_t status = create_object(layout, "cublasLtMatrixLayoutCreate", "layout");
    if (status != CUBLAS_STATUS_SUCCESS) return status;
    **layout = {type, rows, cols, ld};
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasLtMatrixLayoutDestroy(cublasLtMatrixLayout_t layout) {
    free(layout);
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasLtMatmulPreferenceCreate(cublasLtMatmulPreference_t *pref) {
    const cublasStatus_t status = create_object(pref, "cublasLtMatmulPreferenceCreate", "pref");
    if (status != CUBLAS_STATUS_SUCCESS) return status;
    for (int i = OPERAND_A; i <= OPERAND_D; i++) (*pref)->min_alignment[i] = DEFAULT_ALIGNMENT;
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasLtMatmulPreferenceDestroy(cublasLtMatmulPreference_t pref) {
    free(pref);
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasLtMatmulPreferenceSetAttribute(cublasLtMatmulPreference_t pref,
                                                    cublasLtMatmulPreferenceAttributes_t attr, const void *buf,
                                                    size_t sizeInBytes) {
    const char *api = "cublasLtMatmulPreferenceSetAttribute";
    if (!pref) return complain(CUBLAS_STATUS_INVALID_VALUE, api, "pref is NULL");
    uint64_t workspace = 0;
    uint32_t value = 0;
    cublasStatus_t status;
    switch (attr) {
    case CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES:
        /* The emulated algorithms need no workspace: any limit admits them. */
        return read_attribute(api, attr, buf, sizeInBytes, &workspace, sizeof workspace);
    case CUBLASLT_MATMUL_PREF_REDUCTION_SCHEME_MASK:
        /* They split no dot product either (CUBLASLT_REDUCTION_SCHEME_NONE,
         * which every mask admits); the mask is only validated. */
        if ((status = read_attribute(api, attr, buf, sizeInBytes, &value, sizeof value)) != CUBLAS_STATUS_SUCCESS)
            return status;
        if (value & ~(uint32_t)CUBLASLT_REDUCTION_SCHEME_MASK)
            return complain(CUBLAS_STATUS_INVALID_VALUE, api, "reduction scheme mask 0x%x has unknown bits", value);
        return CUBLAS_STATUS_SUCCESS;
    case CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES:
    case CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES:
    case CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES:
    case CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES:
        if ((status = read_attribute(api, attr, buf, sizeInBytes, &value, sizeof value)) != CUBLAS_STATUS_SUCCESS)
            return status;
        if (value == 0)
            return complain(CUBLAS_STATUS_INVALID_VALUE, api, "attribute %d: an alignment of 0 bytes", (int)attr);
        pref->min_alignment[attr - CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES] = value;
        return CUBLAS_STATUS_SUCCESS;
    default: return complain(CUBLAS_STATUS_INVALID_VALUE, api, "unknown attribute %d", (int)attr);
    }
}

/* ---- cuBLASLt matmul ----------------------------------------------------------- */

/* g from a descriptor and the layouts of A, B, C, D (no pointers yet, no
 * operand marked used); INVALID_VALUE with a message where the sizes are
 * empty, the layouts disagree with each other and the transposes, or a
 * leading dimension is short. m and n are D's rows and columns, k the
 * columns of op(A). */
static cublasStatus_t describe(const char *api, cublasLtMatmulDesc_t desc,
                               const cublasLtMatrixLayout_t layouts[4], Gemm *g) {
    memset(g, 0, sizeof *g);
    g->api = api;
    g->compute = desc->compute;
    g->scale_type = desc->scale_type;
    g->transa = desc->transa;
    g->transb = desc->transb;
    g->epilogue = desc->epilogue;
    for (int i = OPERAND_A; i <= OPERAND_D; i++)
        g->op[i] = {layouts[i]->type, (int64_t)layouts[i]->rows, (int64_t)layouts[i]->cols, layouts[i]->ld, NULL};
    g->m = g->op[OPERAND_D].rows;
    g->n = g->op[OPERAND_D].cols;
    g->k = g->transa == CUBLAS_OP_N ? g->op[OPERAND_A].cols : g->op[OPERAND_A].rows;
    if (g->m < 1 || g->n < 1 || g->k < 1)
        return complain(CUBLAS_STATUS_INVALID_VALUE, api,
                        "m = %lld, n = %lld, k = %lld: cuBLASLt takes no empty product", (long long)g->m,
                        (long long)g->n, (long long)g->k);

    /* The shape each of A, B, C must have, given m, n, k and the transposes. */
    const struct {
        int operand;
        cublasOperation_t op;
        int64_t op_rows, op_cols;
    } expected[] = {
        {OPERAND_A, g->transa, g->m, g->k},
        {OPERAND_B, g->transb, g->k, g->n},
        {OPERAND_C, CUBLAS_OP_N, g->m, g->n},
    };
    for (const auto &e : expected) {
        const Matrix *x = &g->op[e.operand];
        int64_t rows, cols;
        stored_shape(e.op, e.op_rows, e.op_cols, &rows, &cols);
        if (x->rows != rows || x->cols != cols)
            return complain(CUBLAS_STATUS_INVALID_VALUE, api,
                            "the layout of %s is %lld x %lld, but m = %lld, n = %lld, k = %lld and op(%s) = %s%s "
                            "make it %lld x %lld",
                            operand_names[e.operand], (long long)x->rows, (long long)x->cols, (long long)g->m,
                            (long long)g->n, (long long)g->k, operand_names[e.operand], operand_names[e.operand],
                            e.op == CUBLAS_OP_T ? "^T" : "", (long long)rows, (long long)cols);
    }
    cublasStatus_t status = check_leading_dimensions(g);
    if (status != CUBLAS_STATUS_SUCCESS) return status;
    const cudaDataType_t bias_type = desc->bias_type_set ? desc->bias_type : g->op[OPERAND_D].type;
    const int64_t length = g->epilogue == CUBLASLT_EPILOGUE_BGRADB ? g->n : g->m;
    g->op[OPERAND_BIAS] = {bias_type, length, 1, length, desc->bias};
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasLtMatmulAlgoGetHeuristic(cublasLtHandle_t handle, cublasLtMatmulDesc_t desc,
                                              cublasLtMatrixLayout_t Adesc, cublasLtMatrixLayout_t Bdesc,
                                              cublasLtMatrixLayout_t Cdesc, cublasLtMatrixLayout_t Ddesc,
                                              cublasLtMatmulPreference_t pref, int requestedAlgoCount,
                                              cublasLtMatmulHeuristicResult_t heuristicResultsArray[],
                                              int *returnAlgoCount) {
    const char *api = "cublasLtMatmulAlgoGetHeuristic";
    cublasStatus_t status = check_handle(handle, api);
    if (status != CUBLAS_STATUS_SUCCESS) return status;
    const Argument arguments[] = {{desc, "desc"},   {Adesc, "Adesc"},
                                  {Bdesc, "Bdesc"}, {Cdesc, "Cdesc"},
                                  {Ddesc, "Ddesc"}, {pref, "pref"},
                                  {heuristicResultsArray, "heuristicResultsArray"},
                                  {returnAlgoCount, "returnAlgoCount"}};
    if ((status = check_not_null(api, arguments)) != CUBLAS_STATUS_SUCCESS) return status;
    *returnAlgoCount = 0;
    if (requestedAlgoCount < 1)
        return complain(CUBLAS_STATUS_INVALID_VALUE, api, "requestedAlgoCount is %d", requestedAlgoCount);
    const cublasLtMatrixLayout_t layouts[4] = {Adesc, Bdesc, Cdesc, Ddesc};
    Gemm g;
    if ((status = describe(api, desc, layouts, &g)) != CUBLAS_STATUS_SUCCESS) return status;
    if ((status = check_support(&g)) != CUBLAS_STATUS_SUCCESS) return status;

    /* One algorithm, for the alignments the preference promises. */
    cublasLtMatmulHeuristicResult_t *result = &heuristicResultsArray[0];
    memset(result, 0, sizeof *result);
    result->algo = make_algo(&g, pref->min_alignment);
    result->workspaceSize = 0;
    result->state = CUBLAS_STATUS_SUCCESS;
    result->wavesCount = 1.0f;
    *returnAlgoCount = 1;
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasLtMatmul(cublasLtHandle_t handle, cublasLtMatmulDesc_t desc, const void *alpha,
                              const void *A, cublasLtMatrixLayout_t Adesc, const void *B,
                              cublasLtMatrixLayout_t Bdesc, const void *beta, const void *C,
                              cublasLtMatrixLayout_t Cdesc, void *D, cublasLtMatrixLayout_t Ddesc,
                              const cublasLtMatmulAlgo_t *algo, void *workspace, size_t workspaceSizeInBytes,
                              cudaStream_t /* stream: the work is done before the call returns */) {
    const char *api = "cublasLtMatmul";
    cublasStatus_t status = check_handle(handle, api);
    if (status != CUBLAS_STATUS_SUCCESS) return status;
    const Argument arguments[] = {{desc, "desc"},   {Adesc, "Adesc"}, {Bdesc, "Bdesc"},
                                  {Cdesc, "Cdesc"}, {Ddesc, "Ddesc"}, {alpha, "alpha"},
                                  {beta, "beta"}};
    if ((status = check_not_null(api, arguments)) != CUBLAS_STATUS_SUCCESS) return status;
    const cublasLtMatrixLayout_t layouts[4] = {Adesc, Bdesc, Cdesc, Ddesc};
    Gemm g;
    if ((status = describe(api, desc, layouts, &g)) != CUBLAS_STATUS_SUCCESS) return status;
    if ((status = check_support(&g)) != CUBLAS_STATUS_SUCCESS) return status;
    const float alpha_value = *(const float *)alpha, beta_value = *(const float *)beta;
    g.op[OPERAND_A].data = A;
    g.op[OPERAND_B].data = B;
    g.op[OPERAND_C].data = C;
    g.op[OPERAND_D].data = D;
    g.used[OPERAND_A] = g.used[OPERAND_B] = g.used[OPERAND_D] = true;
    g.used[OPERAND_C] = C != NULL || beta_value != 0.0f;   /* C is read only where beta is not 0 */
    g.used[OPERAND_BIAS] = has_vector(g.epilogue);
    if (g.used[OPERAND_BIAS] && !g.op[OPERAND_BIAS].data)
        return complain(CUBLAS_STATUS_INVALID_VALUE, api, "the %s epilogue without a bias pointer",
                        g.epilogue == CUBLASLT_EPILOGUE_BIAS ? "BIAS" : "BGRADB");
    if (C == D && g.op[OPERAND_C].ld != g.op[OPERAND_D].ld)
        return complain(CUBLAS_STATUS_INVALID_VALUE, api,
                        "C and D are the same matrix (in place) but their leading dimensions differ: %lld and %lld",
                        (long long)g.op[OPERAND_C].ld, (long long)g.op[OPERAND_D].ld);

    /* The algorithm: the heuristic's, for this operation; without one, the
     * implicit search chooses for the pointers at hand. */
    Algo chosen;
    if (algo) {
        memcpy(&chosen, algo, sizeof chosen);
        if (chosen.tag != ALGO_TAG)
            return complain(CUBLAS_STATUS_INVALID_VALUE, api,
                            "algo was not filled by cublasLtMatmulAlgoGetHeuristic");
        const Operation operation = operation_of(&g);
        if (memcmp(&chosen.operation, &operation, sizeof operation) != 0)
            return complain(CUBLAS_STATUS_INVALID_VALUE, api,
                            "algo was chosen for another operation (compute, scale or element types, transposes "
                            "or epilogue differ)");
    } else {
        uint32_t alignments[4];
        for (int i = OPERAND_A; i <= OPERAND_D; i++) alignments[i] = alignment_of((uintptr_t)g.op[i].data);
        const cublasLtMatmulAlgo_t implicit = make_algo(&g, alignments);
        memcpy(&chosen, &implicit, sizeof chosen);
    }

    if (workspace) {
        if (!emu::check_device_range(workspace, workspaceSizeInBytes, "cublasLtMatmul workspace"))
            return CUBLAS_STATUS_INVALID_VALUE;
    } else if (workspaceSizeInBytes > 0) {
        return complain(CUBLAS_STATUS_INVALID_VALUE, api, "workspace is NULL but its size is %zu bytes",
                        workspaceSizeInBytes);
    }
    if ((status = check_operands(&g, &chosen)) != CUBLAS_STATUS_SUCCESS) return status;
    return multiply(&g, alpha_value, beta_value);
}

/*
 * cublas_v2.h (CUDA emulator) - the part of the cuBLAS API that the CUDA
 * backend uses (a handle, its math mode, cublasGemmEx and the status
 * strings), declared for the host implementation in emulator_blas.cc.
 * Enum values are cuBLAS's own, so a value printed by the emulator reads as
 * it would on a GPU. cublasLt.h builds on the types declared here.
 */
#ifndef DD_CUDA_EMULATOR_CUBLAS_V2_H
#define DD_CUDA_EMULATOR_CUBLAS_V2_H

#include "library_types.h"

typedef enum cublasStatus_t {
    CUBLAS_STATUS_SUCCESS = 0,
    CUBLAS_STATUS_NOT_INITIALIZED = 1,   /* a NULL handle */
    CUBLAS_STATUS_ALLOC_FAILED = 3,
    CUBLAS_STATUS_INVALID_VALUE = 7,     /* a bad argument (the emulator says which on stderr) */
    CUBLAS_STATUS_ARCH_MISMATCH = 8,
    CUBLAS_STATUS_MAPPING_ERROR = 11,
    CUBLAS_STATUS_EXECUTION_FAILED = 13,
    CUBLAS_STATUS_INTERNAL_ERROR = 14,
    CUBLAS_STATUS_NOT_SUPPORTED = 15,    /* a valid request the library has no kernel for */
} cublasStatus_t;

/* A cuBLAS context (cublasCreate .. cublasDestroy). */
typedef struct EmuCublasContext *cublasHandle_t;

typedef enum cublasOperation_t {
    CUBLAS_OP_N = 0,   /* the matrix as stored */
    CUBLAS_OP_T = 1,   /* its transpose */
} cublasOperation_t;

/* Only the default (no TF32 rounding of fp32 operands) is modeled. */
typedef enum cublasMath_t {
    CUBLAS_DEFAULT_MATH = 0,
} cublasMath_t;

/* The precision of products and sums. The emulator computes the 32F ones
 * it lists in emulator_blas.cc and answers CUBLAS_STATUS_NOT_SUPPORTED to
 * the others. */
typedef enum cublasComputeType_t {
    CUBLAS_COMPUTE_32F = 68,
    CUBLAS_COMPUTE_32F_PEDANTIC = 69,
    CUBLAS_COMPUTE_32F_FAST_16F = 74,
    CUBLAS_COMPUTE_32F_FAST_16BF = 75,   /* fp32 operands rounded to bf16, fp32 sums */
    CUBLAS_COMPUTE_32F_FAST_TF32 = 77,
} cublasComputeType_t;

typedef enum cublasGemmAlgo_t {
    CUBLAS_GEMM_DEFAULT = -1,
} cublasGemmAlgo_t;

cublasStatus_t cublasCreate(cublasHandle_t *handle);
cublasStatus_t cublasDestroy(cublasHandle_t handle);
cublasStatus_t cublasSetMathMode(cublasHandle_t handle, cublasMath_t mode);

/* Column-major C (m x n, ld ldc) = alpha op(A) op(B) + beta C, op(A) m x k
 * and op(B) k x n; alpha and beta are host floats (the default pointer
 * mode). Runs on the host before it returns. */
cublasStatus_t cublasGemmEx(cublasHandle_t handle, cublasOperation_t transa, cublasOperation_t transb,
                            int m, int n, int k, const void *alpha, const void *A, cudaDataType_t Atype,
                            int lda, const void *B, cudaDataType_t Btype, int ldb, const void *beta,
                            void *C, cudaDataType_t Ctype, int ldc, cublasComputeType_t computeType,
                            cublasGemmAlgo_t algo);

/* A sentence describing status, and its enumerator's name. */
const char *cublasGetStatusString(cublasStatus_t status);
const char *cublasGetStatusName(cublasStatus_t status);

#endif /* DD_CUDA_EMULATOR_CUBLAS_V2_H */

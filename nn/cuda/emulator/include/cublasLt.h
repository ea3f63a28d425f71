/*
 * cublasLt.h (CUDA emulator) - the part of the cuBLASLt API that the CUDA
 * backend's linear layers use (nn/cuda/cuda_matmul.cu): a handle, a matmul
 * descriptor (compute type, transposes, bias epilogue), matrix layouts, a
 * preference (workspace, reduction schemes, operand alignments), the
 * heuristic that picks an algorithm and cublasLtMatmul itself, declared for
 * the host implementation in emulator_blas.cc. Enum values and the
 * attribute sizes are cuBLASLt's own.
 */
#ifndef DD_CUDA_EMULATOR_CUBLASLT_H
#define DD_CUDA_EMULATOR_CUBLASLT_H

#include <stddef.h>
#include <stdint.h>

#include "cublas_v2.h"
#include "library_types.h"

/* The stream type of the runtime; cuda_runtime.h declares it under the
 * same guard, so either header may come first. */
#ifndef DD_EMULATOR_CUDA_STREAM_T
#define DD_EMULATOR_CUDA_STREAM_T
typedef struct CUstream_st *cudaStream_t;
#endif

/* The opaque objects, each from its Create and freed by its Destroy. */
typedef struct EmuLtContext *cublasLtHandle_t;
typedef struct EmuLtMatmulDesc *cublasLtMatmulDesc_t;
typedef struct EmuLtMatrixLayout *cublasLtMatrixLayout_t;
typedef struct EmuLtMatmulPreference *cublasLtMatmulPreference_t;

/* Descriptor attributes; the comment gives the type (and size) of the value
 * cublasLtMatmulDescSetAttribute takes. */
typedef enum cublasLtMatmulDescAttributes_t {
    CUBLASLT_MATMUL_DESC_TRANSA = 3,           /* int32_t (cublasOperation_t), default N */
    CUBLASLT_MATMUL_DESC_TRANSB = 4,           /* int32_t (cublasOperation_t), default N */
    CUBLASLT_MATMUL_DESC_EPILOGUE = 7,         /* uint32_t (cublasLtEpilogue_t), default DEFAULT */
    CUBLASLT_MATMUL_DESC_BIAS_POINTER = 8,     /* const void *, device memory, default NULL */
    CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE = 26,  /* int32_t (cudaDataType_t), default D's type */
} cublasLtMatmulDescAttributes_t;

/* What is done to alpha op(A) op(B) + beta C before it is stored in D. */
typedef enum cublasLtEpilogue_t {
    CUBLASLT_EPILOGUE_DEFAULT = 1,   /* nothing */
    CUBLASLT_EPILOGUE_BIAS = 4,      /* + bias[row] on every column */
    CUBLASLT_EPILOGUE_BGRADB = 512,  /* bias[col] = the sum over k of op(B)(k, col), stored */
} cublasLtEpilogue_t;

/* Preference attributes, with the type (and size) of their values. */
typedef enum cublasLtMatmulPreferenceAttributes_t {
    CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES = 1,    /* uint64_t, default 0 */
    CUBLASLT_MATMUL_PREF_REDUCTION_SCHEME_MASK = 3,  /* uint32_t (cublasLtReductionScheme_t bits) */
    CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES = 5,  /* uint32_t, default 256 */
    CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES = 6,  /* uint32_t, default 256 */
    CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES = 7,  /* uint32_t, default 256 */
    CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES = 8,  /* uint32_t, default 256 */
} cublasLtMatmulPreferenceAttributes_t;

/* How a split-K algorithm may add its partial sums (bits of a mask). */
typedef enum cublasLtReductionScheme_t {
    CUBLASLT_REDUCTION_SCHEME_NONE = 0,          /* no split: one sequence of sums */
    CUBLASLT_REDUCTION_SCHEME_INPLACE = 1,       /* in D, in D's type */
    CUBLASLT_REDUCTION_SCHEME_COMPUTE_TYPE = 2,  /* in the workspace, in the compute type */
    CUBLASLT_REDUCTION_SCHEME_OUTPUT_TYPE = 4,   /* in the workspace, in D's type */
    CUBLASLT_REDUCTION_SCHEME_MASK = 7,
} cublasLtReductionScheme_t;

/* An algorithm chosen by cublasLtMatmulAlgoGetHeuristic: plain data, copied
 * by value and passed back to cublasLtMatmul. */
typedef struct cublasLtMatmulAlgo_t {
    uint64_t data[8];
} cublasLtMatmulAlgo_t;

typedef struct cublasLtMatmulHeuristicResult_t {
    cublasLtMatmulAlgo_t algo;
    size_t workspaceSize;   /* bytes of workspace algo needs */
    cublasStatus_t state;   /* CUBLAS_STATUS_SUCCESS for a usable result */
    float wavesCount;       /* device utilisation estimate */
    int reserved[4];
} cublasLtMatmulHeuristicResult_t;

cublasStatus_t cublasLtCreate(cublasLtHandle_t *handle);
cublasStatus_t cublasLtDestroy(cublasLtHandle_t handle);

cublasStatus_t cublasLtMatmulDescCreate(cublasLtMatmulDesc_t *desc, cublasComputeType_t computeType,
                                        cudaDataType_t scaleType);
cublasStatus_t cublasLtMatmulDescDestroy(cublasLtMatmulDesc_t desc);
cublasStatus_t cublasLtMatmulDescSetAttribute(cublasLtMatmulDesc_t desc, cublasLtMatmulDescAttributes_t attr,
                                              const void *buf, size_t sizeInBytes);

/* A column-major rows x cols matrix of element type, leading dimension ld. */
cublasStatus_t cublasLtMatrixLayoutCreate(cublasLtMatrixLayout_t *layout, cudaDataType_t type, uint64_t rows,
                                          uint64_t cols, int64_t ld);
cublasStatus_t cublasLtMatrixLayoutDestroy(cublasLtMatrixLayout_t layout);

cublasStatus_t cublasLtMatmulPreferenceCreate(cublasLtMatmulPreference_t *pref);
cublasStatus_t cublasLtMatmulPreferenceDestroy(cublasLtMatmulPreference_t pref);
cublasStatus_t cublasLtMatmulPreferenceSetAttribute(cublasLtMatmulPreference_t pref,
                                                    cublasLtMatmulPreferenceAttributes_t attr, const void *buf,
                                                    size_t sizeInBytes);

/* Up to requestedAlgoCount algorithms for D = alpha op(A) op(B) + beta C as
 * desc and the layouts describe, best first, in heuristicResultsArray;
 * *returnAlgoCount says how many. CUBLAS_STATUS_NOT_SUPPORTED when there
 * is none. */
cublasStatus_t cublasLtMatmulAlgoGetHeuristic(cublasLtHandle_t handle, cublasLtMatmulDesc_t desc,
                                              cublasLtMatrixLayout_t Adesc, cublasLtMatrixLayout_t Bdesc,
                                              cublasLtMatrixLayout_t Cdesc, cublasLtMatrixLayout_t Ddesc,
                                              cublasLtMatmulPreference_t pref, int requestedAlgoCount,
                                              cublasLtMatmulHeuristicResult_t heuristicResultsArray[],
                                              int *returnAlgoCount);

/* D = alpha op(A) op(B) + beta C, then the epilogue; alpha and beta are
 * host floats. C and D may be the same matrix (in place). Runs on the host
 * before it returns, whatever the stream. */
cublasStatus_t cublasLtMatmul(cublasLtHandle_t handle, cublasLtMatmulDesc_t desc, const void *alpha,
                              const void *A, cublasLtMatrixLayout_t Adesc, const void *B,
                              cublasLtMatrixLayout_t Bdesc, const void *beta, const void *C,
                              cublasLtMatrixLayout_t Cdesc, void *D, cublasLtMatrixLayout_t Ddesc,
                              const cublasLtMatmulAlgo_t *algo, void *workspace, size_t workspaceSizeInBytes,
                              cudaStream_t stream);

#endif /* DD_CUDA_EMULATOR_CUBLASLT_H */

/*
 * cuda_table.h - the CUDA table a test case runs on, and the macro that
 * takes it or skips the case with the reason (no device, or a build
 * without CUDA). Shared by the tests of tests/cuda.
 */
#ifndef DD_TESTS_CUDA_CUDA_TABLE_H
#define DD_TESTS_CUDA_CUDA_TABLE_H

#include "nn/backend.h"
#include "tests/test.h"

/* "cuda-fp32" (exact fp32 GEMMs) or "cuda" (bf16 tensor-core GEMMs). */
typedef enum { FP32_TABLE, BF16_TABLE } CudaTable;

/* Declares gpu, the table asked for, and returns from the case with SKIP
 * and the reason when there is none. */
#define REQUIRE_CUDA_TABLE(gpu, table)                                                \
    char why_[512] = "";                                                              \
    const NnBackend *gpu = (table) == BF16_TABLE ? nn_cuda_backend(why_, sizeof why_)  \
                                                 : nn_cuda_fp32_backend(why_, sizeof why_); \
    if (!gpu) {                                                                       \
        CHECK(why_[0] != '\0', "the CUDA backend returned NULL without a reason");    \
        if (!why_[0]) return;                                                         \
        SKIP("%s", why_);                                                             \
    }

#endif

/*
 * library_types.h (CUDA emulator) - the element-type enum that the CUDA
 * libraries share (cudaDataType_t), with the real numeric values, for the
 * types the backend names. Of these the emulated cuBLAS computes with fp32
 * and bf16 only (emulator_blas.cc); CUDA_R_16F exists so that an fp16
 * operand is a type the emulator can reject rather than a compile error.
 */
#ifndef DD_CUDA_EMULATOR_LIBRARY_TYPES_H
#define DD_CUDA_EMULATOR_LIBRARY_TYPES_H

typedef enum cudaDataType_t {
    CUDA_R_32F = 0,    /* float */
    CUDA_R_16F = 2,    /* IEEE half */
    CUDA_R_16BF = 14,  /* __nv_bfloat16 */
} cudaDataType_t;

#endif /* DD_CUDA_EMULATOR_LIBRARY_TYPES_H */

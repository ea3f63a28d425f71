/*
 * cuda_bf16_rows.cu - the teacher's rows to and from the bf16 wire format on
 * the GPU (semantics: nn/backend.h, oracle: nn/cpu/cpu_bf16_rows.c): feature
 * rows scattered to, or gathered from, value offsets of a flat bf16 array.
 *
 * The rounding is written out on the bits (bf16_bits_of, cuda_common.cuh),
 * as nn/half_float.c's float_to_bfloat16 does (the intrinsic
 * __float2bfloat16_rn makes every NaN the canonical one), so the wire
 * carries the same bits from either backend (tests/nn/test_wire_ops.c
 * compares them bit for bit).
 */
#include "nn/cuda/cuda_common.cuh"

/* out[starts[n] + c] = bf16(inp[n, c]); one value per thread. inp[N, C], starts[N]. */
__global__ static void scatter_rows_to_bf16_kernel(uint16_t *out, const float *inp, const int64_t *starts,
                                                   int N, int C) {
    CUDA_GRID_STRIDE_LOOP(i, (long)N * C) {
        const long n = i / C, c = i % C;
        out[starts[n] + c] = bf16_bits_of(inp[i]);
    }
}

void cuda_scatter_rows_to_bf16(uint16_t *out, const float *inp, const int64_t *starts, int N, int C) {
    if ((long)N * C <= 0) return;
    CUDA_LAUNCH(cuda_grid_for((long)N * C), CUDA_BLOCK, 0, scatter_rows_to_bf16_kernel)(out, inp, starts, N, C);
    CUDA_CHECK_LAUNCH();
}

/* out[n, c] = fp32(inp[starts[n] + c]); one value per thread. out[N, C], starts[N]. */
__global__ static void gather_rows_from_bf16_kernel(float *out, const uint16_t *inp, const int64_t *starts,
                                                    int N, int C) {
    CUDA_GRID_STRIDE_LOOP(i, (long)N * C) {
        const long n = i / C, c = i % C;
        out[i] = __uint_as_float((uint32_t)inp[starts[n] + c] << 16);
    }
}

void cuda_gather_rows_from_bf16(float *out, const uint16_t *inp, const int64_t *starts, int N, int C) {
    if ((long)N * C <= 0) return;
    CUDA_LAUNCH(cuda_grid_for((long)N * C), CUDA_BLOCK, 0, gather_rows_from_bf16_kernel)(out, inp, starts, N, C);
    CUDA_CHECK_LAUNCH();
}

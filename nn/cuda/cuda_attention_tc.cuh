/*
 * cuda_attention_tc.cuh - what the attention kernels on bf16 tensor cores
 * share (cuda_attention_tc.cu, the forward; cuda_attention_tc_backward.cu,
 * the backward): the tile sizes, the block of 4 warps that each own 16 rows
 * of the block's tile, the WMMA fragment shape, and the staging of a q', k',
 * v or dout tile into shared memory as bf16 (from fp32 or bf16 tensors: the
 * kernels are templated on the element type E of qkv, out, dout and dqkv).
 */
#ifndef DD_NN_CUDA_ATTENTION_TC_CUH
#define DD_NN_CUDA_ATTENTION_TC_CUH

#include <cuda_bf16.h>
#include <math.h>
#include <mma.h>

#include "nn/cuda/cuda_attention_common.cuh"
#include "nn/cuda/cuda_common.cuh"

namespace wmma = nvcuda::wmma;

enum {
    TC_QUERIES = 64,                        /* queries per tile */
    TC_KEYS = 64,                           /* keys per tile */
    TC_WARPS = 4,
    TC_THREADS = TC_WARPS * CUDA_WARP,
    TC_WARP_ROWS = TC_QUERIES / TC_WARPS,   /* 16: one row of fragments per warp */
    TC_FRAG = 16,                           /* WMMA m = n = k */
    TC_KEYS_PER_LANE = TC_KEYS / CUDA_WARP,
};
static_assert(TC_WARP_ROWS == TC_FRAG, "each warp owns exactly one row of 16 x 16 fragments");

/* The WMMA fragments (16 x 16 x 16, bf16 inputs, fp32 accumulation). */
typedef wmma::fragment<wmma::accumulator, TC_FRAG, TC_FRAG, TC_FRAG, float> TcAccumulator;
template <typename Layout>
using TcMatrixA = wmma::fragment<wmma::matrix_a, TC_FRAG, TC_FRAG, TC_FRAG, bf16, Layout>;
template <typename Layout>
using TcMatrixB = wmma::fragment<wmma::matrix_b, TC_FRAG, TC_FRAG, TC_FRAG, bf16, Layout>;

/* dst[r * ld + d] = bf16(element d of token t0 + r) for r < rows, d < DH:
 * one tile of a T x DH view of element type E with row stride stride,
 * rotated where rope says (in fp32, then rounded; an unrotated bf16 element
 * is copied exactly), zero past T. The whole block stages; coalesced
 * along d. */
template <int DH, typename E>
__device__ static void stage_tile_bf16(bf16 *dst, int ld, int rows, const E *src, long stride, int t0,
                                       int T, const AttentionRope &rope) {
    for (int idx = threadIdx.x; idx < rows * DH; idx += blockDim.x) {
        int r = idx / DH, d = idx - r * DH;
        dst[r * ld + d] = __float2bfloat16(staged_element(src, stride, t0 + r, d, T, DH, rope));
    }
}

#endif /* DD_NN_CUDA_ATTENTION_TC_CUH */

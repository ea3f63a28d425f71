/*
 * cuda_attention_common.cuh - what the attention kernels of the CUDA
 * backend share: the RoPE of one call, the rotation of one element of a q
 * or k row as it is staged into shared memory and the transposed rotation
 * of a gradient row as it is added to dqkv, the shared-memory opt-in, and
 * the rows D = rowsum(dout * out) of the backward (cuda_attention.cu, the
 * fp32 kernels; cuda_attention_tc.cu and cuda_attention_tc_backward.cu, the
 * bf16 tensor-core forward and backward).
 *
 * The element helpers are __host__ __device__ so that a host-side model of
 * a kernel can stage its tiles and write its gradients with exactly the
 * same index arithmetic. They and every kernel are templated on the element
 * type E of qkv, out, dout and dqkv in global memory: float for the fp32
 * entries, bf16 for the _bf16 ones (read widened, computed in fp32, written
 * or accumulated with one rounding; cuda_common.cuh); lse and the rows D
 * are fp32 in both.
 */
#ifndef DD_NN_CUDA_ATTENTION_COMMON_CUH
#define DD_NN_CUDA_ATTENTION_COMMON_CUH

#include "nn/cuda/cuda_common.cuh"

/* The rotation of one call: tables sin, cos [T - prefix, Dh] for the
 * tokens t >= prefix; sin == nullptr (the default): no rotation. */
struct AttentionRope {
    const float *sin = nullptr, *cos = nullptr;
    int prefix = 0;
};

__host__ __device__ inline bool rope_rotates(const AttentionRope &rope, int t) {
    return rope.sin != nullptr && t >= rope.prefix;
}

/* Element d of rope_t(x) for a head vector x[Dh] and its table rows s, c
 * [Dh] (backend.h): with h = Dh/2,
 *   d < h:  x[d] c[d] - x[d + h] s[d];   d >= h:  x[d] c[d] + x[d - h] s[d]. */
template <typename E>
__host__ __device__ __forceinline__ float rotated_element(const E *x, int d, int Dh, const float *s,
                                                          const float *c) {
    const int half = Dh / 2;
    return d < half ? to_float(x[d]) * c[d] - to_float(x[d + half]) * s[d]
                    : to_float(x[d]) * c[d] + to_float(x[d - half]) * s[d];
}

/* Element d of the transposed rotation of a gradient g[Dh]:
 *   d < h:  g[d] c[d] + g[d + h] s[d + h];   d >= h:  g[d] c[d] - g[d - h] s[d - h]. */
__host__ __device__ __forceinline__ float unrotated_element(const float *g, int d, int Dh,
                                                            const float *s, const float *c) {
    const int half = Dh / 2;
    return d < half ? g[d] * c[d] + g[d + half] * s[d + half]
                    : g[d] * c[d] - g[d - half] * s[d - half];
}

/* Element d of token t of a T x Dh view src with row stride stride (q, k or
 * v of one (b, h) in qkv[B, T, 3, H, Dh]), rotated where rope says; 0 for
 * t >= T (the rows of a tile past the end). */
template <typename E>
__host__ __device__ __forceinline__ float staged_element(const E *src, long stride, int t, int d, int T,
                                                         int Dh, const AttentionRope &rope) {
    if (t >= T) return 0.0f;
    const E *row = src + (long)t * stride;
    if (!rope_rotates(rope, t)) return to_float(row[d]);
    const long at = (long)(t - rope.prefix) * Dh;
    return rotated_element(row, d, Dh, rope.sin + at, rope.cos + at);
}

/* dst[d] += the transposed rotation of g[Dh] (a gradient row of the
 * rotated space, in memory the lane's warp may read) for token t, or g[d]
 * where t is not rotated, for the lane's elements d = lane + 32c, c < NCH. */
template <int NCH, typename E>
__host__ __device__ __forceinline__ void add_unrotated_row(E *dst, const float *g, int t, int Dh,
                                                           const AttentionRope &rope, int lane) {
    const bool rotated = rope_rotates(rope, t);
    const long at = (long)(t - rope.prefix) * Dh;
    for (int c = 0; c < NCH; c++) {
        int d = lane + CUDA_WARP * c;
        if (d < Dh)
            accumulate(&dst[d], rotated ? unrotated_element(g, d, Dh, rope.sin + at, rope.cos + at) : g[d]);
    }
}

/* dst[r] = src[t0 + r] for r < rows: one tile of a per-token vector of
 * length T (lse, D), zero past T. The whole block stages. */
__device__ __forceinline__ void stage_tile_vector(float *dst, int rows, const float *src, int t0, int T) {
    for (int r = threadIdx.x; r < rows; r += blockDim.x) dst[r] = (t0 + r < T) ? src[t0 + r] : 0.0f;
}

/* Dynamic shared memory above the default 48 KiB needs a per-kernel opt-in. */
template <typename Kernel>
static inline void allow_shared_memory(Kernel kernel, size_t bytes) {
    if (bytes > 48 * 1024)
        CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)bytes));
}

/* cuda_attention.cu: D[B, H, T] (the layout of lse), D = dout_t . out_t per
 * (b, t, h), from dout, out [B, T, H, Dh] of element type E, into
 * cuda_scratch: valid until the next op that asks for scratch. Both
 * backwards start with it. (Defined for E = float and bf16.) */
template <typename E>
float *cuda_attention_rowsums(const E *dout, const E *out, int B, int T, int H, int Dh);

/* cuda_attention.cu: the fp32 (SIMT) forward and backward on tensors of
 * element type E (float, bf16): the fp32 entries for E = float, and what the
 * tensor-core entries fall back to for the head sizes they do not cover.
 * Contracts: cuda_attention_forward / _backward (backend.h). */
template <typename E>
void attention_forward_simt(E *out, float *lse, const E *qkv, const float *sin, const float *cos, int B,
                            int T, int prefix, int H, int Dh);
template <typename E>
void attention_backward_simt(E *dqkv, const E *dout, const E *qkv, const E *out, const float *lse,
                             const float *sin, const float *cos, int B, int T, int prefix, int H, int Dh);

#endif /* DD_NN_CUDA_ATTENTION_COMMON_CUH */

/*
 * cuda_attention_common.cuh - what the attention kernels of the CUDA
 * backend share: the RoPE of one call and the rotation of one element of a
 * q or k row as it is staged into shared memory (cuda_attention.cu, the
 * fp32 kernels; cuda_attention_tc.cu, the bf16 tensor-core forward).
 *
 * The helpers are __host__ __device__ so that a host-side model of a kernel
 * can stage its tiles with exactly the same index arithmetic.
 */
#ifndef DD_NN_CUDA_ATTENTION_COMMON_CUH
#define DD_NN_CUDA_ATTENTION_COMMON_CUH

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
__host__ __device__ __forceinline__ float rotated_element(const float *x, int d, int Dh,
                                                          const float *s, const float *c) {
    const int half = Dh / 2;
    return d < half ? x[d] * c[d] - x[d + half] * s[d] : x[d] * c[d] + x[d - half] * s[d];
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
__host__ __device__ __forceinline__ float staged_element(const float *src, long stride, int t, int d,
                                                         int T, int Dh, const AttentionRope &rope) {
    if (t >= T) return 0.0f;
    const float *row = src + (long)t * stride;
    if (!rope_rotates(rope, t)) return row[d];
    const long at = (long)(t - rope.prefix) * Dh;
    return rotated_element(row, d, Dh, rope.sin + at, rope.cos + at);
}

#endif /* DD_NN_CUDA_ATTENTION_COMMON_CUH */

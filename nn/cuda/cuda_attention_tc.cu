/*
 * cuda_attention_tc.cu - the attention forward of the "cuda" table on bf16
 * tensor cores (WMMA 16x16x16, fp32 accumulation), flash style: no [T, T]
 * matrix in global memory. Same contract as cuda_attention_forward
 * (backend.h, cuda_attention.cu), to bf16 accuracy; its out and lse feed
 * the tensor-core backward (cuda_attention_tc_backward.cu). Head sizes
 * other than 64 and 128 go to the fp32 forward. Tile sizes, fragment
 * types and the bf16 staging: cuda_attention_tc.cuh. Two entries:
 * cuda_attention_forward_tc on fp32 qkv and out (table "cuda"), and
 * cuda_attention_forward_bf16 on bf16 ones (backend.h's _bf16 entry), the
 * same kernel templated on the element type E of qkv and out.
 *
 * One block per tile of TC_QUERIES = 64 queries of one (b, h); 4 warps, warp
 * w owning the 16 query rows 16w..16w+15 of the tile in every step below, so
 * within a key tile the warps only sync among their own lanes. With
 * scale = 1/sqrt(Dh), per key tile of TC_KEYS = 64 keys:
 *   1. the block stages k' (rotated, as cuda_attention.cu does) and v as
 *      bf16 into shared memory; rows past T are zero. (q' was staged once,
 *      and each warp holds its 16 x Dh slice as WMMA fragments throughout.)
 *   2. S = q' k'^T, fp32 [16, 64] per warp, into shared memory;
 *   3. online softmax per row, in fp32, one row at a time over the warp
 *      (lane holds keys lane and lane + 32): keys >= T score -inf; the new
 *      maximum m' rescales the row sum l and the row of the accumulator O by
 *      exp(m - m'); p = exp(scale s - m') is rounded to bf16 into P, and l
 *      sums the rounded p (the weights that multiply v);
 *   4. O += P v on tensor cores, O kept in fp32 shared memory (WMMA does
 *      not say which accumulator element holds which row, so the per-row
 *      rescale of step 3 is done there).
 * At the end out_i = O_i / l_i and lse_i = m_i + log l_i. m and l are
 * per-row registers, the same in every lane of the owning warp.
 *
 * Shared memory (bytes, TcLayout): q', k', v bf16 [64, Dh + 8] each, S fp32
 * [64, 68], P bf16 [64, 72], O fp32 [64, Dh + 4]: 110 KiB for Dh = 128 (two
 * blocks per H100 SM), 70 KiB for Dh = 64. The row padding keeps the WMMA
 * loads' 16-byte row pieces in different banks and every fragment pointer
 * 32-byte aligned.
 */
#include "nn/cuda/cuda_attention_tc.cuh"

/* Row strides (elements) and byte offsets of the shared-memory arrays for
 * head size DH. Every array starts at a multiple of 128 bytes (the sizes
 * are multiples of 256), every row of 16 fragments at a multiple of 32. */
template <int DH>
struct TcLayout {
    static constexpr int ld_qkv = DH + 8;        /* bf16 q', k', v rows */
    static constexpr int ld_s = TC_KEYS + 4;     /* fp32 scores */
    static constexpr int ld_p = TC_KEYS + 8;     /* bf16 probabilities */
    static constexpr int ld_o = DH + 4;          /* fp32 accumulator */
    static constexpr size_t q_at = 0;
    static constexpr size_t k_at = q_at + sizeof(bf16) * TC_QUERIES * ld_qkv;
    static constexpr size_t v_at = k_at + sizeof(bf16) * TC_KEYS * ld_qkv;
    static constexpr size_t s_at = v_at + sizeof(bf16) * TC_KEYS * ld_qkv;
    static constexpr size_t p_at = s_at + sizeof(float) * TC_QUERIES * ld_s;
    static constexpr size_t o_at = p_at + sizeof(bf16) * TC_QUERIES * ld_p;
    static constexpr size_t bytes = o_at + sizeof(float) * TC_QUERIES * ld_o;
    static_assert(DH % TC_FRAG == 0, "head size a multiple of 16");
    static_assert(k_at % 128 == 0 && v_at % 128 == 0 && s_at % 128 == 0 && p_at % 128 == 0 &&
                      o_at % 128 == 0,
                  "arrays 128-byte aligned");
};

/* out[B, T, H, DH], lse[B, H, T] from qkv[B, T, 3, H, DH] (unrotated); out
 * and qkv of element type E. Grid (ceil(T / TC_QUERIES), H, B), TC_THREADS
 * threads, TcLayout<DH>::bytes of dynamic shared memory. */
template <int DH, typename E>
__global__ static void __launch_bounds__(TC_THREADS)
attention_forward_tc_kernel(E *out, float *lse, const E *qkv, AttentionRope rope, int T, int H,
                            float scale) {
    typedef TcLayout<DH> Layout;
    constexpr int ld = Layout::ld_qkv, ld_s = Layout::ld_s, ld_p = Layout::ld_p, ld_o = Layout::ld_o;
    constexpr int DH_FRAGS = DH / TC_FRAG, KEY_FRAGS = TC_KEYS / TC_FRAG;
    CUDA_DYNAMIC_SHARED(unsigned char, smem);
    bf16 *qs = (bf16 *)(smem + Layout::q_at);     /* the block's queries q' */
    bf16 *ks = (bf16 *)(smem + Layout::k_at);     /* a key tile k' */
    bf16 *vs = (bf16 *)(smem + Layout::v_at);     /* its values */
    float *ss = (float *)(smem + Layout::s_at);   /* scores, rows owned by warps */
    bf16 *ps = (bf16 *)(smem + Layout::p_at);     /* probabilities, likewise */
    float *os = (float *)(smem + Layout::o_at);   /* accumulator, likewise */

    const int lane = threadIdx.x % CUDA_WARP, warp = threadIdx.x / CUDA_WARP;
    const int b = blockIdx.z, h = blockIdx.y, i0 = blockIdx.x * TC_QUERIES;
    const int r0 = warp * TC_WARP_ROWS;   /* the warp's first row in the tile */
    const long L = 3L * H * DH, HD = (long)H * DH;
    const E *q = qkv + (long)b * T * L + (long)h * DH, *k = q + HD, *v = q + 2 * HD;

    stage_tile_bf16<DH>(qs, ld, TC_QUERIES, q, L, i0, T, rope);
    for (int idx = lane; idx < TC_WARP_ROWS * DH; idx += CUDA_WARP) {
        int r = idx / DH, d = idx - r * DH;
        os[(r0 + r) * ld_o + d] = 0.0f;
    }
    __syncthreads();   /* q' staged */
    TcMatrixA<wmma::row_major> qa[DH_FRAGS];
#pragma unroll
    for (int c = 0; c < DH_FRAGS; c++) wmma::load_matrix_sync(qa[c], qs + r0 * ld + c * TC_FRAG, ld);

    float m[TC_WARP_ROWS], l[TC_WARP_ROWS];
#pragma unroll
    for (int r = 0; r < TC_WARP_ROWS; r++) {
        m[r] = -INFINITY;
        l[r] = 0.0f;
    }

    for (int j0 = 0; j0 < T; j0 += TC_KEYS) {
        __syncthreads();   /* every warp is done with the previous k', v */
        stage_tile_bf16<DH>(ks, ld, TC_KEYS, k, L, j0, T, rope);
        stage_tile_bf16<DH>(vs, ld, TC_KEYS, v, L, j0, T, AttentionRope());
        __syncthreads();

        /* S[r0 .. r0 + 15, :] = q' k'^T: k' row-major [key, d] is k'^T
         * column-major [d, key]. */
#pragma unroll
        for (int n = 0; n < KEY_FRAGS; n++) {
            TcAccumulator acc;
            wmma::fill_fragment(acc, 0.0f);
#pragma unroll
            for (int c = 0; c < DH_FRAGS; c++) {
                TcMatrixB<wmma::col_major> kb;
                wmma::load_matrix_sync(kb, ks + n * TC_FRAG * ld + c * TC_FRAG, ld);
                wmma::mma_sync(acc, qa[c], kb, acc);
            }
            wmma::store_matrix_sync(ss + r0 * ld_s + n * TC_FRAG, acc, ld_s, wmma::mem_row_major);
        }
        __syncwarp();

        /* Online softmax of the warp's rows; key j0 < T is valid, so m_new
         * is finite and exp(m - m_new) is 0, not NaN, while m is -inf. */
        const int keys = min((int)TC_KEYS, T - j0);
#pragma unroll
        for (int r = 0; r < TC_WARP_ROWS; r++) {
            const float *s_row = ss + (r0 + r) * ld_s;
            float s[TC_KEYS_PER_LANE], top = -INFINITY;
#pragma unroll
            for (int c = 0; c < TC_KEYS_PER_LANE; c++) {
                int j = lane + CUDA_WARP * c;
                s[c] = j < keys ? scale * s_row[j] : -INFINITY;
                top = fmaxf(top, s[c]);
            }
            const float m_new = fmaxf(m[r], warp_max(top));
            const float rescale = expf(m[r] - m_new);
            float sum = 0.0f;
#pragma unroll
            for (int c = 0; c < TC_KEYS_PER_LANE; c++) {
                bf16 p = __float2bfloat16(expf(s[c] - m_new));
                ps[(r0 + r) * ld_p + lane + CUDA_WARP * c] = p;
                sum += __bfloat162float(p);
            }
            l[r] = l[r] * rescale + warp_sum(sum);
            m[r] = m_new;
            for (int d = lane; d < DH; d += CUDA_WARP) os[(r0 + r) * ld_o + d] *= rescale;
        }
        __syncwarp();

        /* O[r0 .. r0 + 15, :] += P v */
        TcMatrixA<wmma::row_major> pa[KEY_FRAGS];
#pragma unroll
        for (int c = 0; c < KEY_FRAGS; c++) wmma::load_matrix_sync(pa[c], ps + r0 * ld_p + c * TC_FRAG, ld_p);
#pragma unroll
        for (int n = 0; n < DH_FRAGS; n++) {
            TcAccumulator acc;
            float *o_frag = os + r0 * ld_o + n * TC_FRAG;
            wmma::load_matrix_sync(acc, o_frag, ld_o, wmma::mem_row_major);
#pragma unroll
            for (int c = 0; c < KEY_FRAGS; c++) {
                TcMatrixB<wmma::row_major> vb;
                wmma::load_matrix_sync(vb, vs + c * TC_FRAG * ld + n * TC_FRAG, ld);
                wmma::mma_sync(acc, pa[c], vb, acc);
            }
            wmma::store_matrix_sync(o_frag, acc, ld_o, wmma::mem_row_major);
        }
        __syncwarp();   /* O and P are rewritten by the next tile's step 3 */
    }

#pragma unroll
    for (int r = 0; r < TC_WARP_ROWS; r++) {
        const int i = i0 + r0 + r;
        if (i < T) {
            E *out_i = out + ((long)b * T + i) * HD + (long)h * DH;
            const float inv = 1.0f / l[r];
            for (int d = lane; d < DH; d += CUDA_WARP)
                out_i[d] = from_float<E>(os[(r0 + r) * ld_o + d] * inv);
            if (lane == 0) lse[((long)b * H + h) * T + i] = m[r] + logf(l[r]);
        }
    }
}

template <int DH, typename E>
static void attention_forward_tc_launch(E *out, float *lse, const E *qkv, const AttentionRope &rope, int B,
                                        int T, int H) {
    const size_t smem = TcLayout<DH>::bytes;
    allow_shared_memory(attention_forward_tc_kernel<DH, E>, smem);
    const dim3 grid((unsigned)((T + TC_QUERIES - 1) / TC_QUERIES), (unsigned)H, (unsigned)B);
    CUDA_LAUNCH(grid, TC_THREADS, smem, attention_forward_tc_kernel<DH, E>)(out, lse, qkv, rope, T, H,
                                                                   1.0f / sqrtf((float)DH));
    CUDA_CHECK_LAUNCH();
}

/* out[B, T, H, Dh] = softmax(q' k'^T / sqrt(Dh)) v per (b, h); lse[B, H, T];
 * as cuda_attention_forward, on bf16 tensor cores for Dh = 64 and 128, by
 * the fp32 kernels (attention_forward_simt, which also rejects shapes they
 * cannot run) otherwise. out, qkv of element type E. */
template <typename E>
static void attention_forward_tc(E *out, float *lse, const E *qkv, const float *sin, const float *cos, int B,
                                 int T, int prefix, int H, int Dh) {
    if (B <= 0 || T <= 0 || H <= 0 || Dh <= 0) return;
    const AttentionRope rope = {sin, cos, prefix};
    const bool grid_fits = B <= 65535 && H <= 65535;
    if (grid_fits && Dh == 64) {
        attention_forward_tc_launch<64>(out, lse, qkv, rope, B, T, H);
    } else if (grid_fits && Dh == 128) {
        attention_forward_tc_launch<128>(out, lse, qkv, rope, B, T, H);
    } else {
        attention_forward_simt(out, lse, qkv, sin, cos, B, T, prefix, H, Dh);
    }
}

void cuda_attention_forward_tc(float *out, float *lse, const float *qkv, const float *sin,
                               const float *cos, int B, int T, int prefix, int H, int Dh) {
    attention_forward_tc(out, lse, qkv, sin, cos, B, T, prefix, H, Dh);
}

/* out[B, T, H, Dh] and qkv[B, T, 3, H, Dh] bf16; lse[B, H, T] fp32. */
void cuda_attention_forward_bf16(uint16_t *out, float *lse, const uint16_t *qkv, const float *sin,
                                 const float *cos, int B, int T, int prefix, int H, int Dh) {
    attention_forward_tc(as_bf16(out), lse, as_bf16(qkv), sin, cos, B, T, prefix, H, Dh);
}

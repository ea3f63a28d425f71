/*
 * cuda_attention_tc_backward.cu - the attention backward of the "cuda"
 * table on bf16 tensor cores (WMMA 16x16x16, fp32 accumulation),
 * FlashAttention-2 style: the probabilities are recomputed tile by tile
 * from q, k and the forward's lse, no [T, T] matrix in global memory, no
 * atomics. Same contract as cuda_attention_backward (backend.h,
 * cuda_attention.cu): dqkv[B, T, 3, H, Dh] += the gradients of the
 * unrotated q, k and of v, to bf16 accuracy. Head sizes other than 64 and
 * 128 go to the fp32 backward. Tile sizes, fragment types and the bf16
 * staging are the forward's (cuda_attention_tc.cuh). Two entries:
 * cuda_attention_backward_tc on fp32 tensors (table "cuda") and
 * cuda_attention_backward_bf16 on bf16 dqkv, dout, qkv, out (backend.h's
 * _bf16 entry; each dqkv element gets bf16(old + gradient), one rounding),
 * the same kernels templated on the element type E of those four.
 *
 * With scale = 1/sqrt(Dh), q'_i, k'_j the rotated rows (RoPE applied while
 * staging, as in the forward), lse_i from the forward and
 * D_i = dout_i . out_i (cuda_attention_rowsums, the fp32 backward's kernel,
 * reading E):
 *   p_ij  = exp(scale q'_i . k'_j - lse_i)        (0 for i or j >= T)
 *   dp_ij = dout_i . v_j
 *   ds_ij = p_ij (dp_ij - D_i)
 *   dv_j  = sum_i p_ij dout_i,   dk'_j = scale sum_i ds_ij q'_i,
 *   dq'_i = scale sum_j ds_ij k'_j,
 * and dqkv gets dv, rope^T dk', rope^T dq' added (the transposed rotation
 * of cuda_attention_common.cuh, applied as the rows are written).
 *
 * Two kernels, so that every gradient element is summed by one block in a
 * fixed order (deterministic, no atomics); each recomputes p and ds:
 *   dK/dV: one block per tile of TC_KEYS = 64 keys of one (b, h). It stages
 *     k' (rotated) and v as bf16 once, then loops over the query tiles of
 *     TC_QUERIES = 64: stages q' (rotated), dout as bf16 and lse, D; warp w
 *     owns keys 16w..16w+15 of the tile and, per 16 queries n, computes
 *     S^T = k' q'^T and dP^T = v dout^T (fp32 [16, 16] each) into its own
 *     scratch, then p and ds in fp32 per element (lane: query column
 *     lane % 16, key rows lane / 16 + 2e), written as bf16 into P^T, dS^T
 *     [16, 64]; then dV += P^T dout and dK += dS^T q' on tensor cores. dV,
 *     dK [16, Dh] per warp stay in fp32 accumulator fragments (registers)
 *     for the whole loop.
 *   dQ: one block per tile of 64 queries. It stages q', dout, lse, D once
 *     and loops over the key tiles: stages k', v as bf16; warp w owns
 *     queries 16w..16w+15, computes S = q' k'^T, dP = dout v^T per 16 keys,
 *     ds in fp32 (lane: key column lane % 16), bf16 into dS [16, 64];
 *     dQ += dS k' on tensor cores, dQ [16, Dh] per warp in registers.
 * At the end of both, after a block barrier, each warp stores its
 * accumulators (dK and dQ times scale) as fp32 rows into shared memory over
 * the streamed tiles, which are no longer read, and adds them row by row
 * to dqkv: dv as it is, dk' and dq' through the transposed rotation (which
 * pairs element d with d +- Dh/2, held by another lane).
 *
 * Masking: rows of a tile past T are staged as zeros, p is 0 for a query
 * (dK/dV) or key (dQ) past T, and rows past T are never written. (The zero
 * rows alone would already make those terms vanish: a query past T has
 * dout = 0, so its p multiplies zeros in dV and its ds is 0; a key past T
 * has k' = 0 in dQ += ds k'. The mask keeps p itself right.)
 *
 * Shared memory (bytes, TcBackwardLayout; rows of 64): two resident tiles
 * (dK/dV: k', v; dQ: q', dout) and two streamed tiles (dK/dV: q', dout;
 * dQ: k', v), bf16 [64, Dh + 8] each; per warp fp32 [16, 20] scratch for S
 * and dP; P^T bf16 [64, 72] (dK/dV only); dS bf16 [64, 72]; lse, D fp32
 * [64]. The epilogue's fp32 rows [64, Dh + 4] lie over the streamed tiles.
 *   Dh = 64:  dK/dV 66,048 (64.5 KiB), dQ 56,832 (55.5 KiB);
 *   Dh = 128: dK/dV 98,816 (96.5 KiB), dQ 89,600 (87.5 KiB),
 * all above 48 KiB, so the launch opts in (allow_shared_memory). On an H100
 * (228 KiB per SM) that is 3 (dK/dV) and 4 (dQ) blocks per SM at Dh 64 as
 * far as shared memory goes, 2 and 2 at Dh 128; registers: ptxas figures
 * in docs/cuda.md. The row padding (16 bytes on every bf16 row, 4 floats
 * on the fp32 ones) keeps the WMMA loads' row pieces in different banks,
 * and every fragment pointer is 32-byte aligned.
 */
#include "nn/cuda/cuda_attention_tc.cuh"

static_assert(TC_QUERIES == TC_KEYS, "the two kernels swap the roles of query and key tiles");

enum {
    TC_TILE = TC_QUERIES,                  /* rows of every tile, resident or streamed */
    TC_TILE_FRAGS = TC_TILE / TC_FRAG,     /* 4 fragments of 16 along a tile */
};

/* Row strides (elements) and byte offsets of the shared memory of both
 * kernels for head size DH; WITH_P: the dK/dV kernel's P^T array. */
template <int DH, bool WITH_P>
struct TcBackwardLayout {
    static constexpr int ld = DH + 8;             /* bf16 tile rows [64, ld] */
    static constexpr int ld_f = TC_FRAG + 4;      /* fp32 fragment scratch [16, ld_f] */
    static constexpr int ld_p = TC_TILE + 8;      /* bf16 P^T, dS rows [64, ld_p] */
    static constexpr int ld_o = DH + 4;           /* fp32 gradient rows of the epilogue [64, ld_o] */
    static constexpr size_t tile_bytes = sizeof(bf16) * TC_TILE * ld;
    static constexpr size_t frag_bytes = sizeof(float) * TC_FRAG * ld_f;
    static constexpr size_t own0_at = 0;          /* dK/dV: k';  dQ: q' */
    static constexpr size_t own1_at = own0_at + tile_bytes;      /* dK/dV: v;   dQ: dout */
    static constexpr size_t stream0_at = own1_at + tile_bytes;   /* dK/dV: q';  dQ: k' */
    static constexpr size_t stream1_at = stream0_at + tile_bytes; /* dK/dV: dout; dQ: v */
    static constexpr size_t scratch_at = stream1_at + tile_bytes; /* per warp: S, then dP */
    static constexpr size_t p_at = scratch_at + TC_WARPS * 2 * frag_bytes;
    static constexpr size_t ds_at = p_at + (WITH_P ? sizeof(bf16) * TC_TILE * ld_p : 0);
    static constexpr size_t lse_at = ds_at + sizeof(bf16) * TC_TILE * ld_p;
    static constexpr size_t drow_at = lse_at + sizeof(float) * TC_TILE;
    static constexpr size_t bytes = drow_at + sizeof(float) * TC_TILE;
    static constexpr size_t rows_at = stream0_at; /* the epilogue, after the last streamed tile */

    static_assert(DH % TC_FRAG == 0 && DH % CUDA_WARP == 0, "head size a multiple of 32");
    static_assert(own1_at % 128 == 0 && stream0_at % 128 == 0 && stream1_at % 128 == 0 &&
                      scratch_at % 128 == 0 && frag_bytes % 128 == 0 && p_at % 128 == 0 &&
                      ds_at % 128 == 0 && lse_at % 128 == 0 && drow_at % 128 == 0,
                  "arrays 128-byte aligned");
    static_assert((sizeof(bf16) * TC_FRAG * ld) % 32 == 0 && (sizeof(bf16) * TC_FRAG * ld_p) % 32 == 0 &&
                      (sizeof(float) * TC_FRAG * ld_o) % 32 == 0,
                  "every row of fragments 32-byte aligned");
    static_assert(ld % 8 == 0 && ld_p % 8 == 0 && ld_f % 4 == 0 && ld_o % 4 == 0,
                  "WMMA leading dimensions: multiples of 16 bytes");
    static_assert(rows_at + sizeof(float) * TC_TILE * ld_o <= scratch_at,
                  "the epilogue's rows fit over the two streamed tiles");
    static_assert(bytes <= 227 * 1024, "within an H100 block's shared memory");
};
static_assert(TcBackwardLayout<64, true>::bytes == 66048 && TcBackwardLayout<64, false>::bytes == 56832 &&
                  TcBackwardLayout<128, true>::bytes == 98816 &&
                  TcBackwardLayout<128, false>::bytes == 89600,
              "the byte counts of the header comment");

/* The warp's fp32 [16, ld_f] scratch for S (then dP at + TC_FRAG * ld_f). */
template <typename Layout>
__device__ __forceinline__ static float *warp_scratch(unsigned char *smem, int warp) {
    return (float *)(smem + Layout::scratch_at + (size_t)warp * 2 * Layout::frag_bytes);
}

/* s = a_rows b_rows^T over DH for one 16 x 16 block: a_rows the warp's 16
 * rows [16, DH] (row stride ld), b_rows 16 rows [16, DH] of the streamed
 * or resident tile, both bf16 in shared memory; the result into the warp's
 * fp32 scratch out [16, ld_f]. */
template <int DH, int LD, int LD_F>
__device__ __forceinline__ static void tile_dot_16x16(float *out, const bf16 *a_rows, const bf16 *b_rows) {
    TcAccumulator acc;
    wmma::fill_fragment(acc, 0.0f);
#pragma unroll
    for (int c = 0; c < DH / TC_FRAG; c++) {
        TcMatrixA<wmma::row_major> a;
        TcMatrixB<wmma::col_major> b;   /* b_rows row-major [16, DH] is b_rows^T column-major */
        wmma::load_matrix_sync(a, a_rows + c * TC_FRAG, LD);
        wmma::load_matrix_sync(b, b_rows + c * TC_FRAG, LD);
        wmma::mma_sync(acc, a, b, acc);
    }
    wmma::store_matrix_sync(out, acc, LD_F, wmma::mem_row_major);
}

/* acc[n] += a [16, 64] (bf16, row stride lda) times b [64, DH] (bf16, row
 * stride ldb), n < DH / 16: the warp's 16 rows of dV, dK or dQ. */
template <int DH>
__device__ __forceinline__ static void accumulate_16xDH(TcAccumulator (&acc)[DH / TC_FRAG], const bf16 *a,
                                                        int lda, const bf16 *b, int ldb) {
#pragma unroll
    for (int c = 0; c < TC_TILE_FRAGS; c++) {
        TcMatrixA<wmma::row_major> af;
        wmma::load_matrix_sync(af, a + c * TC_FRAG, lda);
#pragma unroll
        for (int n = 0; n < DH / TC_FRAG; n++) {
            TcMatrixB<wmma::row_major> bf;
            wmma::load_matrix_sync(bf, b + c * TC_FRAG * ldb + n * TC_FRAG, ldb);
            wmma::mma_sync(acc[n], af, bf, acc[n]);
        }
    }
}

/* rows[r * ld_o + d] = factor * acc (the warp's 16 rows [16, DH] of a
 * gradient, fp32), then a warp barrier so every lane sees every element. */
template <int DH, int LD_O>
__device__ __forceinline__ static void store_warp_rows(float *rows, TcAccumulator (&acc)[DH / TC_FRAG],
                                                       float factor) {
#pragma unroll
    for (int n = 0; n < DH / TC_FRAG; n++) {
        if (factor != 1.0f)
            for (int e = 0; e < acc[n].num_elements; e++) acc[n].x[e] *= factor;
        wmma::store_matrix_sync(rows + n * TC_FRAG, acc[n], LD_O, wmma::mem_row_major);
    }
    __syncwarp();
}

/* dqkv's k and v parts += rope^T dk', dv for the 64 keys of one tile of one
 * (b, h); qkv[B, T, 3, H, DH] unrotated, dout[B, T, H, DH] (dqkv, qkv, dout
 * of element type E), lse and drow (D) [B, H, T]. Grid (ceil(T / 64), H, B),
 * TC_THREADS threads, TcBackwardLayout<DH, true>::bytes of dynamic shared
 * memory. */
template <int DH, typename E>
__global__ static void __launch_bounds__(TC_THREADS)
attention_backward_kv_tc_kernel(E *dqkv, const E *dout, const E *qkv, const float *lse, const float *drow,
                                AttentionRope rope, int T, int H, float scale) {
    typedef TcBackwardLayout<DH, true> Layout;
    constexpr int ld = Layout::ld, ld_f = Layout::ld_f, ld_p = Layout::ld_p, ld_o = Layout::ld_o;
    constexpr int DH_FRAGS = DH / TC_FRAG;
    CUDA_DYNAMIC_SHARED(unsigned char, smem);
    bf16 *ks = (bf16 *)(smem + Layout::own0_at);      /* k' [64 keys, ld], the block's */
    bf16 *vs = (bf16 *)(smem + Layout::own1_at);      /* v [64 keys, ld] */
    bf16 *qs = (bf16 *)(smem + Layout::stream0_at);   /* q' [64 queries, ld], one query tile */
    bf16 *gs = (bf16 *)(smem + Layout::stream1_at);   /* dout [64 queries, ld] */
    bf16 *pt = (bf16 *)(smem + Layout::p_at);         /* P^T [64 keys, ld_p], rows owned by warps */
    bf16 *dst = (bf16 *)(smem + Layout::ds_at);       /* dS^T [64 keys, ld_p], likewise */
    float *lse_s = (float *)(smem + Layout::lse_at);  /* lse [64 queries] */
    float *drow_s = (float *)(smem + Layout::drow_at);   /* D [64 queries] */
    float *rows = (float *)(smem + Layout::rows_at);  /* epilogue [64 keys, ld_o] */

    const int lane = threadIdx.x % CUDA_WARP, warp = threadIdx.x / CUDA_WARP;
    const int b = blockIdx.z, h = blockIdx.y, j0 = blockIdx.x * TC_KEYS;
    const int r0 = warp * TC_WARP_ROWS;   /* the warp's first key row in the tile */
    float *s_frag = warp_scratch<Layout>(smem, warp);   /* S^T [16 keys, ld_f] */
    float *dp_frag = s_frag + TC_FRAG * ld_f;           /* dP^T [16 keys, ld_f] */
    const long L = 3L * H * DH, HD = (long)H * DH;
    const long head = (long)b * T * L + (long)h * DH;   /* q of token 0 of (b, h) */
    const E *q = qkv + head, *k = q + HD, *v = q + 2 * HD;   /* [T, DH], row stride L */
    const E *g = dout + (long)b * T * HD + (long)h * DH;     /* [T, DH], row stride HD */
    const float *lse_bh = lse + ((long)b * H + h) * T, *drow_bh = drow + ((long)b * H + h) * T;   /* [T] */

    stage_tile_bf16<DH>(ks, ld, TC_KEYS, k, L, j0, T, rope);   /* visible after the loop's first barrier */
    stage_tile_bf16<DH>(vs, ld, TC_KEYS, v, L, j0, T, AttentionRope());

    TcAccumulator dk[DH_FRAGS], dv[DH_FRAGS];   /* the warp's dk', dv [16 keys, DH] */
#pragma unroll
    for (int n = 0; n < DH_FRAGS; n++) {
        wmma::fill_fragment(dk[n], 0.0f);
        wmma::fill_fragment(dv[n], 0.0f);
    }

    for (int i0 = 0; i0 < T; i0 += TC_QUERIES) {
        __syncthreads();   /* every warp is done with the previous query tile */
        stage_tile_bf16<DH>(qs, ld, TC_QUERIES, q, L, i0, T, rope);
        stage_tile_bf16<DH>(gs, ld, TC_QUERIES, g, HD, i0, T, AttentionRope());
        stage_tile_vector(lse_s, TC_QUERIES, lse_bh, i0, T);
        stage_tile_vector(drow_s, TC_QUERIES, drow_bh, i0, T);
        __syncthreads();

        for (int n = 0; n < TC_TILE_FRAGS; n++) {   /* queries i0 + 16n .. i0 + 16n + 15 */
            tile_dot_16x16<DH, ld, ld_f>(s_frag, ks + r0 * ld, qs + n * TC_FRAG * ld);    /* k' q'^T */
            tile_dot_16x16<DH, ld, ld_f>(dp_frag, vs + r0 * ld, gs + n * TC_FRAG * ld);   /* v dout^T */
            __syncwarp();
            /* element (r, c): key r0 + r, query i0 + 16n + c */
            const int c = lane % TC_FRAG, qi = n * TC_FRAG + c;
            const bool valid = i0 + qi < T;
            const float lse_i = lse_s[qi], d_i = drow_s[qi];
#pragma unroll
            for (int e = 0; e < TC_FRAG * TC_FRAG / CUDA_WARP; e++) {
                const int r = lane / TC_FRAG + 2 * e;
                const float p = valid ? expf(scale * s_frag[r * ld_f + c] - lse_i) : 0.0f;
                const float ds = p * (dp_frag[r * ld_f + c] - d_i);
                pt[(r0 + r) * ld_p + qi] = __float2bfloat16(p);
                dst[(r0 + r) * ld_p + qi] = __float2bfloat16(ds);
            }
            __syncwarp();   /* the scratch is rewritten next; P^T, dS^T read below */
        }

        accumulate_16xDH<DH>(dv, pt + r0 * ld_p, ld_p, gs, ld);    /* dV += P^T dout */
        accumulate_16xDH<DH>(dk, dst + r0 * ld_p, ld_p, qs, ld);   /* dK += dS^T q' */
    }

    __syncthreads();   /* every warp is done with q', dout: rows lie over them */
    float *my_rows = rows + r0 * ld_o;   /* [16 keys, ld_o], this warp's */
    const int keys = min((int)TC_WARP_ROWS, T - (j0 + r0));
    store_warp_rows<DH, ld_o>(my_rows, dv, 1.0f);
    for (int r = 0; r < keys; r++) {
        E *dv_j = dqkv + head + (long)(j0 + r0 + r) * L + 2 * HD;
        for (int d = lane; d < DH; d += CUDA_WARP) accumulate(&dv_j[d], my_rows[r * ld_o + d]);
    }
    __syncwarp();   /* every lane is done reading dv before dk' replaces it */
    store_warp_rows<DH, ld_o>(my_rows, dk, scale);
    for (int r = 0; r < keys; r++) {
        const int j = j0 + r0 + r;
        add_unrotated_row<DH / CUDA_WARP>(dqkv + head + (long)j * L + HD, my_rows + r * ld_o, j, DH, rope,
                                          lane);
    }
}

/* dqkv's q part += rope^T dq' for the 64 queries of one tile of one (b, h);
 * dqkv, dout, qkv of element type E. Grid (ceil(T / 64), H, B), TC_THREADS
 * threads, TcBackwardLayout<DH, false>::bytes of dynamic shared memory. */
template <int DH, typename E>
__global__ static void __launch_bounds__(TC_THREADS)
attention_backward_q_tc_kernel(E *dqkv, const E *dout, const E *qkv, const float *lse, const float *drow,
                               AttentionRope rope, int T, int H, float scale) {
    typedef TcBackwardLayout<DH, false> Layout;
    constexpr int ld = Layout::ld, ld_f = Layout::ld_f, ld_p = Layout::ld_p, ld_o = Layout::ld_o;
    constexpr int DH_FRAGS = DH / TC_FRAG;
    CUDA_DYNAMIC_SHARED(unsigned char, smem);
    bf16 *qs = (bf16 *)(smem + Layout::own0_at);      /* q' [64 queries, ld], the block's */
    bf16 *gs = (bf16 *)(smem + Layout::own1_at);      /* dout [64 queries, ld] */
    bf16 *ks = (bf16 *)(smem + Layout::stream0_at);   /* k' [64 keys, ld], one key tile */
    bf16 *vs = (bf16 *)(smem + Layout::stream1_at);   /* v [64 keys, ld] */
    bf16 *dss = (bf16 *)(smem + Layout::ds_at);       /* dS [64 queries, ld_p], rows owned by warps */
    float *lse_s = (float *)(smem + Layout::lse_at);  /* lse [64 queries] */
    float *drow_s = (float *)(smem + Layout::drow_at);   /* D [64 queries] */
    float *rows = (float *)(smem + Layout::rows_at);  /* epilogue [64 queries, ld_o] */

    const int lane = threadIdx.x % CUDA_WARP, warp = threadIdx.x / CUDA_WARP;
    const int b = blockIdx.z, h = blockIdx.y, i0 = blockIdx.x * TC_QUERIES;
    const int r0 = warp * TC_WARP_ROWS;   /* the warp's first query row in the tile */
    float *s_frag = warp_scratch<Layout>(smem, warp);   /* S [16 queries, ld_f] */
    float *dp_frag = s_frag + TC_FRAG * ld_f;           /* dP [16 queries, ld_f] */
    const long L = 3L * H * DH, HD = (long)H * DH;
    const long head = (long)b * T * L + (long)h * DH;
    const E *q = qkv + head, *k = q + HD, *v = q + 2 * HD;   /* [T, DH], row stride L */
    const E *g = dout + (long)b * T * HD + (long)h * DH;     /* [T, DH], row stride HD */
    const float *lse_bh = lse + ((long)b * H + h) * T, *drow_bh = drow + ((long)b * H + h) * T;   /* [T] */

    stage_tile_bf16<DH>(qs, ld, TC_QUERIES, q, L, i0, T, rope);   /* visible after the loop's first barrier */
    stage_tile_bf16<DH>(gs, ld, TC_QUERIES, g, HD, i0, T, AttentionRope());
    stage_tile_vector(lse_s, TC_QUERIES, lse_bh, i0, T);
    stage_tile_vector(drow_s, TC_QUERIES, drow_bh, i0, T);

    TcAccumulator dq[DH_FRAGS];   /* the warp's dq' [16 queries, DH], unscaled */
#pragma unroll
    for (int n = 0; n < DH_FRAGS; n++) wmma::fill_fragment(dq[n], 0.0f);

    for (int j0 = 0; j0 < T; j0 += TC_KEYS) {
        __syncthreads();   /* every warp is done with the previous key tile */
        stage_tile_bf16<DH>(ks, ld, TC_KEYS, k, L, j0, T, rope);
        stage_tile_bf16<DH>(vs, ld, TC_KEYS, v, L, j0, T, AttentionRope());
        __syncthreads();

        for (int n = 0; n < TC_TILE_FRAGS; n++) {   /* keys j0 + 16n .. j0 + 16n + 15 */
            tile_dot_16x16<DH, ld, ld_f>(s_frag, qs + r0 * ld, ks + n * TC_FRAG * ld);    /* q' k'^T */
            tile_dot_16x16<DH, ld, ld_f>(dp_frag, gs + r0 * ld, vs + n * TC_FRAG * ld);   /* dout v^T */
            __syncwarp();
            /* element (r, c): query i0 + r0 + r, key j0 + 16n + c */
            const int c = lane % TC_FRAG, kj = n * TC_FRAG + c;
            const bool valid = j0 + kj < T;
#pragma unroll
            for (int e = 0; e < TC_FRAG * TC_FRAG / CUDA_WARP; e++) {
                const int r = lane / TC_FRAG + 2 * e;
                const float p = valid ? expf(scale * s_frag[r * ld_f + c] - lse_s[r0 + r]) : 0.0f;
                const float ds = p * (dp_frag[r * ld_f + c] - drow_s[r0 + r]);
                dss[(r0 + r) * ld_p + kj] = __float2bfloat16(ds);
            }
            __syncwarp();   /* the scratch is rewritten next; dS read below */
        }

        accumulate_16xDH<DH>(dq, dss + r0 * ld_p, ld_p, ks, ld);   /* dQ += dS k' */
    }

    __syncthreads();   /* every warp is done with k', v: rows lie over them */
    float *my_rows = rows + r0 * ld_o;   /* [16 queries, ld_o], this warp's */
    store_warp_rows<DH, ld_o>(my_rows, dq, scale);
    const int queries = min((int)TC_WARP_ROWS, T - (i0 + r0));
    for (int r = 0; r < queries; r++) {
        const int i = i0 + r0 + r;
        add_unrotated_row<DH / CUDA_WARP>(dqkv + head + (long)i * L, my_rows + r * ld_o, i, DH, rope, lane);
    }
}

template <int DH, typename E>
static void attention_backward_tc_launch(E *dqkv, const E *dout, const E *qkv, const float *lse,
                                         const float *drow, const AttentionRope &rope, int B, int T, int H) {
    const float scale = 1.0f / sqrtf((float)DH);
    const dim3 grid((unsigned)((T + TC_TILE - 1) / TC_TILE), (unsigned)H, (unsigned)B);
    const size_t smem_kv = TcBackwardLayout<DH, true>::bytes, smem_q = TcBackwardLayout<DH, false>::bytes;
    allow_shared_memory(attention_backward_kv_tc_kernel<DH, E>, smem_kv);
    CUDA_LAUNCH(grid, TC_THREADS, smem_kv, attention_backward_kv_tc_kernel<DH, E>)(dqkv, dout, qkv, lse, drow, rope,
                                                                           T, H, scale);
    CUDA_CHECK_LAUNCH();
    allow_shared_memory(attention_backward_q_tc_kernel<DH, E>, smem_q);
    CUDA_LAUNCH(grid, TC_THREADS, smem_q, attention_backward_q_tc_kernel<DH, E>)(dqkv, dout, qkv, lse, drow, rope, T,
                                                                         H, scale);
    CUDA_CHECK_LAUNCH();
}

/* dqkv[B, T, 3, H, Dh] += gradients of the unrotated q, k and of v from
 * dout[B, T, H, Dh], given the forward's out[B, T, H, Dh], lse[B, H, T] and
 * tables sin, cos [T - prefix, Dh] (or NULL); as cuda_attention_backward,
 * on bf16 tensor cores for Dh = 64 and 128, by the fp32 kernels
 * (attention_backward_simt, which also rejects shapes they cannot run)
 * otherwise. dqkv, dout, qkv, out of element type E. Scratch: D[B, H, T]. */
template <typename E>
static void attention_backward_tc(E *dqkv, const E *dout, const E *qkv, const E *out, const float *lse,
                                  const float *sin, const float *cos, int B, int T, int prefix, int H,
                                  int Dh) {
    if (B <= 0 || T <= 0 || H <= 0 || Dh <= 0 || dqkv == NULL) return;
    const bool grid_fits = B <= 65535 && H <= 65535;
    if (!grid_fits || (Dh != 64 && Dh != 128)) {
        attention_backward_simt(dqkv, dout, qkv, out, lse, sin, cos, B, T, prefix, H, Dh);
        return;
    }
    const AttentionRope rope = {sin, cos, prefix};
    const float *drow = cuda_attention_rowsums(dout, out, B, T, H, Dh);   /* D [B, H, T] */
    if (Dh == 64)
        attention_backward_tc_launch<64>(dqkv, dout, qkv, lse, drow, rope, B, T, H);
    else
        attention_backward_tc_launch<128>(dqkv, dout, qkv, lse, drow, rope, B, T, H);
}

void cuda_attention_backward_tc(float *dqkv, const float *dout, const float *qkv, const float *out,
                                const float *lse, const float *sin, const float *cos, int B, int T,
                                int prefix, int H, int Dh) {
    attention_backward_tc(dqkv, dout, qkv, out, lse, sin, cos, B, T, prefix, H, Dh);
}

/* dqkv (bf16) += from dout, qkv, out (bf16) and lse (fp32). */
void cuda_attention_backward_bf16(uint16_t *dqkv, const uint16_t *dout, const uint16_t *qkv,
                                  const uint16_t *out, const float *lse, const float *sin,
                                  const float *cos, int B, int T, int prefix, int H, int Dh) {
    attention_backward_tc(as_bf16(dqkv), as_bf16(dout), as_bf16(qkv), as_bf16(out), lse, sin, cos, B, T,
                          prefix, H, Dh);
}

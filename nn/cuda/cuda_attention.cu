/*
 * cuda_attention.cu - multi-head softmax attention with 2-D RoPE for the
 * CUDA backend, memory-efficient ("flash") style, fp32 throughout on the
 * SIMT cores: no [T, T] matrix is ever stored, in global or in shared
 * memory, and no rotated copy of q or k in global memory. The forward and
 * backward of table "cuda-fp32"; table "cuda" runs the bf16 tensor-core
 * forward of cuda_attention_tc.cu and backward of
 * cuda_attention_tc_backward.cu (and these ones for the head sizes they do
 * not cover; both backwards start with this file's D = rowsum(dout * out),
 * cuda_attention_rowsums). Shared helpers (RoPE, staging, the transposed
 * rotation of gradient rows): cuda_attention_common.cuh.
 *
 * The kernels are templated on the element type E of qkv, out, dout and
 * dqkv in global memory (attention_forward_simt / attention_backward_simt):
 * float for the fp32 entries, bf16 where the _bf16 entries fall back to
 * these kernels. Everything in shared memory and registers is fp32 either
 * way; a bf16 tensor is widened as it is staged and rounded once as it is
 * written (dqkv: bf16(old + gradient)).
 *
 * Layout: qkv[B, T, 3, H, Dh]; for image b, head h and token t
 *   q_t = qkv + ((b*T + t)*3 + 0)*H*Dh + h*Dh,  k_t: part 1,  v_t: part 2,
 * so one (b, h) pair sees q, k, v as T x Dh row-major views with row stride
 * L = 3*H*Dh; out[B, T, H, Dh] (row stride H*Dh), lse[B, H, T].
 *
 * RoPE: qkv is unrotated. Every q and k tile is rotated as it is staged
 * into shared memory (q'_t, k'_t; tokens t >= prefix, tables row t - prefix;
 * the thread that writes element d reads d and its partner d +- Dh/2 from
 * global memory), so the kernels below see only q', k'. The backward's
 * dq', dk' are summed in registers in rotated space; at the end each warp
 * stages its rows in its own part of shared memory and each lane adds the
 * transposed rotation of its elements (which needs the partner element,
 * held by another lane or chunk) to dqkv.
 *
 * With scale = 1/sqrt(Dh) and the scores s_ij = scale * q'_i . k'_j:
 *
 * Forward: one block per tile of 32 queries of one (b, h); 8 warps, each
 * owning 4 of the queries. Keys are visited in tiles of 32 staged in shared
 * memory; lane j of a warp scores key j of the tile against each of the
 * warp's queries. Each query keeps an online softmax: a running maximum m,
 * a running sum l = sum_j exp(s_ij - m) and an accumulator
 * o = sum_j exp(s_ij - m) v_j, spread over the lanes (lane holds o[d] for
 * d = lane + 32c). A tile whose scores raise m to m' first rescales l and o
 * by exp(m - m'). At the end out_i = o / l and lse_i = m + log l.
 *
 * Backward: with p_ij = exp(s_ij - lse_i) recomputed, dp_ij = dout_i . v_j
 * and D_i = dout_i . out_i (which equals sum_j p_ij dp_ij),
 *   ds_ij = p_ij (dp_ij - D_i),
 *   dq'_i = scale sum_j ds_ij k'_j,  dk'_j = scale sum_i ds_ij q'_i,
 *   dv_j += sum_i p_ij dout_i,
 * and dq_i += rope_i^T dq'_i, dk_j += rope_j^T dk'_j.
 * Three kernels: D into scratch; dk and dv, one block per 32 keys looping
 * over query tiles; dq, one block per 32 queries looping over key tiles.
 * Every element of dqkv is summed in registers by one thread and added to
 * once: deterministic, no atomics.
 *
 * Shared-memory rows that lanes read one row per lane are padded to Dh + 1
 * floats (no bank conflicts); rows read by a whole warp at once (broadcast)
 * or one d per lane are not. Head sizes up to ATT_MAX_DH; the kernels are
 * instantiated for the number of 32-float chunks per lane, ceil(Dh / 32).
 */
#include <math.h>

#include "nn/cuda/cuda_attention_common.cuh"
#include "nn/cuda/cuda_common.cuh"

enum {
    ATT_TILE = 32,                          /* queries per block, keys per tile */
    ATT_WARPS = 8,                          /* warps per block */
    ATT_THREADS = ATT_WARPS * CUDA_WARP,
    ATT_ROWS = ATT_TILE / ATT_WARPS,        /* queries (or keys) per warp */
    ATT_MAX_DH = 128,                       /* largest head size supported */
};

/* dst[r * ld + d] = src[(t0 + r) * stride + d] for r < ATT_TILE, d < Dh: one
 * tile of a T x Dh view with row stride stride, rotated where rope says
 * (for token t = t0 + r); rows past T are zero. The whole block loads;
 * coalesced along d (the partner elements too). */
template <typename E>
__device__ static void load_tile(float *dst, int ld, const E *src, long stride, int t0, int T, int Dh,
                                 const AttentionRope &rope = AttentionRope()) {
    for (int idx = threadIdx.x; idx < ATT_TILE * Dh; idx += blockDim.x) {
        int r = idx / Dh, d = idx - r * Dh;
        dst[r * ld + d] = staged_element(src, stride, t0 + r, d, T, Dh, rope);
    }
}

/* rows[r * Dh + d] = scale * acc[r][c], d = lane + 32c, for the warp's
 * ATT_ROWS rows of gradients: rows is a part of shared memory that only
 * this warp reads, so a warp barrier on each side suffices. */
template <int NCH>
__device__ __forceinline__ static void stage_warp_rows(float *rows, const float (&acc)[ATT_ROWS][NCH],
                                                       float scale, int Dh, int lane) {
    __syncwarp();   /* every lane of the warp is done reading rows */
    for (int r = 0; r < ATT_ROWS; r++)
        for (int c = 0; c < NCH; c++) {
            int d = lane + CUDA_WARP * c;
            if (d < Dh) rows[r * Dh + d] = scale * acc[r][c];
        }
    __syncwarp();   /* and every lane sees the others' elements */
}

/* ---- forward --------------------------------------------------------------- */

/* out[B, T, H, Dh], lse[B, H, T] from qkv[B, T, 3, H, Dh] (unrotated);
 * out and qkv of element type E. Grid (ceil(T / ATT_TILE), H, B),
 * ATT_THREADS threads, NCH = ceil(Dh / 32). Dynamic shared memory: queries
 * q' [ATT_TILE, Dh], keys k' [ATT_TILE, Dh + 1], values [ATT_TILE, Dh]. */
template <int NCH, typename E>
__global__ static void __launch_bounds__(ATT_THREADS)
attention_forward_kernel(E *out, float *lse, const E *qkv, AttentionRope rope, int T, int H, int Dh,
                         float scale) {
    CUDA_DYNAMIC_SHARED(float, smem);
    const int ldk = Dh + 1;
    float *qs = smem;                  /* the block's queries; rows read by whole warps */
    float *ks = qs + ATT_TILE * Dh;    /* a key tile; lane j reads row j */
    float *vs = ks + ATT_TILE * ldk;   /* its values; lane reads column d */

    const int lane = threadIdx.x % CUDA_WARP, warp = threadIdx.x / CUDA_WARP;
    const int b = blockIdx.z, h = blockIdx.y, i0 = blockIdx.x * ATT_TILE;
    const long L = 3L * H * Dh, HD = (long)H * Dh;
    const E *q = qkv + (long)b * T * L + (long)h * Dh, *k = q + HD, *v = q + 2 * HD;
    const float *my_q = qs + warp * ATT_ROWS * Dh;   /* the warp's ATT_ROWS queries */

    load_tile(qs, Dh, q, L, i0, T, Dh, rope);   /* visible after the loop's first barrier */

    float m[ATT_ROWS], l[ATT_ROWS], o[ATT_ROWS][NCH];
    for (int r = 0; r < ATT_ROWS; r++) {
        m[r] = -INFINITY;
        l[r] = 0.0f;
        for (int c = 0; c < NCH; c++) o[r][c] = 0.0f;
    }

    for (int j0 = 0; j0 < T; j0 += ATT_TILE) {
        __syncthreads();   /* every warp is done with the previous tile */
        load_tile(ks, ldk, k, L, j0, T, Dh, rope);
        load_tile(vs, Dh, v, L, j0, T, Dh);
        __syncthreads();

        /* s[r] = score of the warp's query r against key j0 + lane */
        float s[ATT_ROWS];
        for (int r = 0; r < ATT_ROWS; r++) s[r] = 0.0f;
        const float *k_row = ks + lane * ldk;
        for (int d = 0; d < Dh; d++) {
            float kd = k_row[d];
            for (int r = 0; r < ATT_ROWS; r++) s[r] += my_q[r * Dh + d] * kd;
        }

        /* online softmax update; key j0 < T is valid, so m_new is finite and
         * exp(m - m_new) is 0, not NaN, while m is still -inf */
        const bool valid = j0 + lane < T;
        float p[ATT_ROWS];
        for (int r = 0; r < ATT_ROWS; r++) {
            s[r] = valid ? scale * s[r] : -INFINITY;
            float m_new = fmaxf(m[r], warp_max(s[r]));
            float rescale = expf(m[r] - m_new);
            p[r] = valid ? expf(s[r] - m_new) : 0.0f;
            l[r] = l[r] * rescale + warp_sum(p[r]);
            m[r] = m_new;
            for (int c = 0; c < NCH; c++) o[r][c] *= rescale;
        }

        /* o[r] += sum_j p_j v_j, p_j broadcast from lane j */
        const int keys = min(ATT_TILE, T - j0);   /* the same in every lane */
        for (int j = 0; j < keys; j++) {
            float pj[ATT_ROWS];
            for (int r = 0; r < ATT_ROWS; r++) pj[r] = __shfl_sync(0xffffffffu, p[r], j);
            for (int c = 0; c < NCH; c++) {
                int d = lane + CUDA_WARP * c;
                if (d < Dh) {
                    float vd = vs[j * Dh + d];
                    for (int r = 0; r < ATT_ROWS; r++) o[r][c] += pj[r] * vd;
                }
            }
        }
    }

    for (int r = 0; r < ATT_ROWS; r++) {
        int i = i0 + warp * ATT_ROWS + r;
        if (i >= T) break;
        E *out_i = out + ((long)b * T + i) * HD + (long)h * Dh;
        float inv = 1.0f / l[r];
        for (int c = 0; c < NCH; c++) {
            int d = lane + CUDA_WARP * c;
            if (d < Dh) out_i[d] = from_float<E>(o[r][c] * inv);
        }
        if (lane == 0) lse[((long)b * H + h) * T + i] = m[r] + logf(l[r]);
    }
}

/* ---- backward -------------------------------------------------------------- */

/* drow[B, H, T] (the layout of lse): D = dout_t . out_t per (b, t, h).
 * One warp per row of dout[B, T, H, Dh] and out (element type E). */
template <typename E>
__global__ static void attention_drow_kernel(float *drow, const E *dout, const E *out, int B, int T, int H,
                                             int Dh) {
    const int lane = threadIdx.x % CUDA_WARP;
    const long row = (long)blockIdx.x * (blockDim.x / CUDA_WARP) + threadIdx.x / CUDA_WARP;
    if (row >= (long)B * T * H) return;   /* whole warps leave together */
    const E *g = dout + row * Dh, *o = out + row * Dh;
    float acc = 0.0f;
    for (int d = lane; d < Dh; d += CUDA_WARP) acc += to_float(g[d]) * to_float(o[d]);
    acc = warp_sum(acc);
    if (lane == 0) {
        long bt = row / H;
        int h = (int)(row - bt * H), t = (int)(bt % T);
        long b = bt / T;
        drow[(b * H + h) * T + t] = acc;
    }
}

/* dqkv's k and v parts += rope^T dk', dv for the keys of one tile of one
 * (b, h). Grid (ceil(T / ATT_TILE), H, B), ATT_THREADS threads; each warp
 * owns ATT_ROWS keys, lane i takes query i0 + i of each query tile.
 * Dynamic shared memory: keys k', values [ATT_TILE, Dh]; queries q', output
 * gradients [ATT_TILE, Dh + 1]; lse, D [ATT_TILE]. At the end each warp's
 * rows of k' hold its dk'. dqkv, dout, qkv of element type E. */
template <int NCH, typename E>
__global__ static void __launch_bounds__(ATT_THREADS)
attention_backward_kv_kernel(E *dqkv, const E *dout, const E *qkv, const float *lse, const float *drow,
                             AttentionRope rope, int T, int H, int Dh, float scale) {
    CUDA_DYNAMIC_SHARED(float, smem);
    const int ldq = Dh + 1;
    float *ks = smem;                     /* the block's keys; rows read by whole warps */
    float *vs = ks + ATT_TILE * Dh;       /* their values, the same */
    float *qs = vs + ATT_TILE * Dh;       /* a query tile; lane i reads row i */
    float *gs = qs + ATT_TILE * ldq;      /* its output gradients, the same */
    float *lse_s = gs + ATT_TILE * ldq;   /* its lse */
    float *drow_s = lse_s + ATT_TILE;     /* its D */

    const int lane = threadIdx.x % CUDA_WARP, warp = threadIdx.x / CUDA_WARP;
    const int b = blockIdx.z, h = blockIdx.y, j0 = blockIdx.x * ATT_TILE;
    const long L = 3L * H * Dh, HD = (long)H * Dh;
    const long head = (long)b * T * L + (long)h * Dh;   /* q of token 0 of (b, h) */
    const E *q = qkv + head, *k = q + HD, *v = q + 2 * HD;
    const E *g = dout + (long)b * T * HD + (long)h * Dh;
    const float *lse_bh = lse + ((long)b * H + h) * T, *drow_bh = drow + ((long)b * H + h) * T;
    float *my_k = ks + warp * ATT_ROWS * Dh;   /* read by this warp only */
    const float *my_v = vs + warp * ATT_ROWS * Dh;

    load_tile(ks, Dh, k, L, j0, T, Dh, rope);   /* visible after the loop's first barrier */
    load_tile(vs, Dh, v, L, j0, T, Dh);

    float dk[ATT_ROWS][NCH], dv[ATT_ROWS][NCH];
    for (int r = 0; r < ATT_ROWS; r++)
        for (int c = 0; c < NCH; c++) dk[r][c] = dv[r][c] = 0.0f;

    for (int i0 = 0; i0 < T; i0 += ATT_TILE) {
        __syncthreads();   /* every warp is done with the previous tile */
        load_tile(qs, ldq, q, L, i0, T, Dh, rope);
        load_tile(gs, ldq, g, HD, i0, T, Dh);
        stage_tile_vector(lse_s, ATT_TILE, lse_bh, i0, T);
        stage_tile_vector(drow_s, ATT_TILE, drow_bh, i0, T);
        __syncthreads();

        /* for key r of the warp and query i0 + lane: q . k and dout . v */
        float s[ATT_ROWS], dp[ATT_ROWS];
        for (int r = 0; r < ATT_ROWS; r++) s[r] = dp[r] = 0.0f;
        const float *q_row = qs + lane * ldq, *g_row = gs + lane * ldq;
        for (int d = 0; d < Dh; d++) {
            float qd = q_row[d], gd = g_row[d];
            for (int r = 0; r < ATT_ROWS; r++) {
                s[r] += qd * my_k[r * Dh + d];
                dp[r] += gd * my_v[r * Dh + d];
            }
        }
        const bool valid = i0 + lane < T;
        float p[ATT_ROWS], ds[ATT_ROWS];
        for (int r = 0; r < ATT_ROWS; r++) {
            p[r] = valid ? expf(scale * s[r] - lse_s[lane]) : 0.0f;
            ds[r] = p[r] * (dp[r] - drow_s[lane]);
        }

        /* dv[r] += sum_i p_i dout_i, dk[r] += sum_i ds_i q_i, p_i and ds_i
         * broadcast from lane i */
        const int queries = min(ATT_TILE, T - i0);   /* the same in every lane */
        for (int i = 0; i < queries; i++) {
            float pi[ATT_ROWS], dsi[ATT_ROWS];
            for (int r = 0; r < ATT_ROWS; r++) {
                pi[r] = __shfl_sync(0xffffffffu, p[r], i);
                dsi[r] = __shfl_sync(0xffffffffu, ds[r], i);
            }
            for (int c = 0; c < NCH; c++) {
                int d = lane + CUDA_WARP * c;
                if (d < Dh) {
                    float gd = gs[i * ldq + d], qd = qs[i * ldq + d];
                    for (int r = 0; r < ATT_ROWS; r++) {
                        dv[r][c] += pi[r] * gd;
                        dk[r][c] += dsi[r] * qd;
                    }
                }
            }
        }
    }

    stage_warp_rows<NCH>(my_k, dk, scale, Dh, lane);   /* dk' replaces the warp's k' */
    for (int r = 0; r < ATT_ROWS; r++) {
        int j = j0 + warp * ATT_ROWS + r;
        if (j >= T) break;
        E *dk_j = dqkv + head + (long)j * L + HD, *dv_j = dk_j + HD;
        add_unrotated_row<NCH>(dk_j, my_k + r * Dh, j, Dh, rope, lane);
        for (int c = 0; c < NCH; c++) {
            int d = lane + CUDA_WARP * c;
            if (d < Dh) accumulate(&dv_j[d], dv[r][c]);
        }
    }
}

/* dqkv's q part += rope^T dq' for the queries of one tile of one (b, h).
 * Grid (ceil(T / ATT_TILE), H, B), ATT_THREADS threads; each warp owns
 * ATT_ROWS queries, lane j takes key j0 + j of each key tile.
 * Dynamic shared memory: queries q', output gradients [ATT_TILE, Dh]; keys
 * k', values [ATT_TILE, Dh + 1]. At the end each warp's rows of q' hold
 * its dq'. dqkv, dout, qkv of element type E. */
template <int NCH, typename E>
__global__ static void __launch_bounds__(ATT_THREADS)
attention_backward_q_kernel(E *dqkv, const E *dout, const E *qkv, const float *lse, const float *drow,
                            AttentionRope rope, int T, int H, int Dh, float scale) {
    CUDA_DYNAMIC_SHARED(float, smem);
    const int ldk = Dh + 1;
    float *qs = smem;                  /* the block's queries; rows read by whole warps */
    float *gs = qs + ATT_TILE * Dh;    /* their output gradients, the same */
    float *ks = gs + ATT_TILE * Dh;    /* a key tile; lane j reads row j */
    float *vs = ks + ATT_TILE * ldk;   /* its values, the same */

    const int lane = threadIdx.x % CUDA_WARP, warp = threadIdx.x / CUDA_WARP;
    const int b = blockIdx.z, h = blockIdx.y, i0 = blockIdx.x * ATT_TILE;
    const long L = 3L * H * Dh, HD = (long)H * Dh;
    const long head = (long)b * T * L + (long)h * Dh;
    const E *q = qkv + head, *k = q + HD, *v = q + 2 * HD;
    const E *g = dout + (long)b * T * HD + (long)h * Dh;
    float *my_q = qs + warp * ATT_ROWS * Dh;   /* read by this warp only */
    const float *my_g = gs + warp * ATT_ROWS * Dh;

    load_tile(qs, Dh, q, L, i0, T, Dh, rope);   /* visible after the loop's first barrier */
    load_tile(gs, Dh, g, HD, i0, T, Dh);

    float lse_i[ATT_ROWS], drow_i[ATT_ROWS], dq[ATT_ROWS][NCH];
    for (int r = 0; r < ATT_ROWS; r++) {
        int i = i0 + warp * ATT_ROWS + r;
        long at = ((long)b * H + h) * T + i;
        lse_i[r] = i < T ? lse[at] : 0.0f;
        drow_i[r] = i < T ? drow[at] : 0.0f;
        for (int c = 0; c < NCH; c++) dq[r][c] = 0.0f;
    }

    for (int j0 = 0; j0 < T; j0 += ATT_TILE) {
        __syncthreads();   /* every warp is done with the previous tile */
        load_tile(ks, ldk, k, L, j0, T, Dh, rope);
        load_tile(vs, ldk, v, L, j0, T, Dh);
        __syncthreads();

        /* for query r of the warp and key j0 + lane: q . k and dout . v */
        float s[ATT_ROWS], dp[ATT_ROWS];
        for (int r = 0; r < ATT_ROWS; r++) s[r] = dp[r] = 0.0f;
        const float *k_row = ks + lane * ldk, *v_row = vs + lane * ldk;
        for (int d = 0; d < Dh; d++) {
            float kd = k_row[d], vd = v_row[d];
            for (int r = 0; r < ATT_ROWS; r++) {
                s[r] += my_q[r * Dh + d] * kd;
                dp[r] += my_g[r * Dh + d] * vd;
            }
        }
        const bool valid = j0 + lane < T;
        float ds[ATT_ROWS];
        for (int r = 0; r < ATT_ROWS; r++) {
            float p = valid ? expf(scale * s[r] - lse_i[r]) : 0.0f;
            ds[r] = p * (dp[r] - drow_i[r]);
        }

        /* dq[r] += sum_j ds_j k_j, ds_j broadcast from lane j */
        const int keys = min(ATT_TILE, T - j0);   /* the same in every lane */
        for (int j = 0; j < keys; j++) {
            float dsj[ATT_ROWS];
            for (int r = 0; r < ATT_ROWS; r++) dsj[r] = __shfl_sync(0xffffffffu, ds[r], j);
            for (int c = 0; c < NCH; c++) {
                int d = lane + CUDA_WARP * c;
                if (d < Dh) {
                    float kd = ks[j * ldk + d];
                    for (int r = 0; r < ATT_ROWS; r++) dq[r][c] += dsj[r] * kd;
                }
            }
        }
    }

    stage_warp_rows<NCH>(my_q, dq, scale, Dh, lane);   /* dq' replaces the warp's q' */
    for (int r = 0; r < ATT_ROWS; r++) {
        int i = i0 + warp * ATT_ROWS + r;
        if (i >= T) break;
        add_unrotated_row<NCH>(dqkv + head + (long)i * L, my_q + r * Dh, i, Dh, rope, lane);
    }
}

/* ---- launchers ------------------------------------------------------------- */

/* Aborts, as the CUDA_CHECK errors do, on shapes the kernels do not cover. */
static void check_attention_shape(int B, int H, int Dh, const AttentionRope &rope, const char *op) {
    if (Dh > ATT_MAX_DH || H > 65535 || B > 65535 || (rope.sin && Dh % 2 != 0)) {
        fprintf(stderr,
                "%s:%d: %s: unsupported shape B=%d H=%d Dh=%d (at most Dh=%d, B, H <= 65535, "
                "Dh even with RoPE tables)\n",
                __FILE__, __LINE__, op, B, H, Dh, (int)ATT_MAX_DH);
        fflush(stderr);
        abort();
    }
}

static dim3 attention_grid(int B, int T, int H) {
    return dim3((unsigned)((T + ATT_TILE - 1) / ATT_TILE), (unsigned)H, (unsigned)B);
}

template <int NCH, typename E>
static void attention_forward_launch(E *out, float *lse, const E *qkv, const AttentionRope &rope, int B,
                                     int T, int H, int Dh) {
    const float scale = 1.0f / sqrtf((float)Dh);
    size_t smem = (size_t)ATT_TILE * (3 * Dh + 1) * sizeof(float);
    allow_shared_memory(attention_forward_kernel<NCH, E>, smem);
    CUDA_LAUNCH(attention_grid(B, T, H), ATT_THREADS, smem, attention_forward_kernel<NCH, E>)(out, lse, qkv, rope,
                                                                                     T, H, Dh, scale);
    CUDA_CHECK_LAUNCH();
}

template <int NCH, typename E>
static void attention_backward_launch(E *dqkv, const E *dout, const E *qkv, const float *lse,
                                      const float *drow, const AttentionRope &rope, int B, int T, int H,
                                      int Dh) {
    const float scale = 1.0f / sqrtf((float)Dh);
    const dim3 grid = attention_grid(B, T, H);
    size_t smem_kv = (size_t)ATT_TILE * (4 * Dh + 4) * sizeof(float);
    allow_shared_memory(attention_backward_kv_kernel<NCH, E>, smem_kv);
    CUDA_LAUNCH(grid, ATT_THREADS, smem_kv, attention_backward_kv_kernel<NCH, E>)(dqkv, dout, qkv, lse, drow, rope,
                                                                         T, H, Dh, scale);
    CUDA_CHECK_LAUNCH();
    size_t smem_q = (size_t)ATT_TILE * (4 * Dh + 2) * sizeof(float);
    allow_shared_memory(attention_backward_q_kernel<NCH, E>, smem_q);
    CUDA_LAUNCH(grid, ATT_THREADS, smem_q, attention_backward_q_kernel<NCH, E>)(dqkv, dout, qkv, lse, drow, rope,
                                                                       T, H, Dh, scale);
    CUDA_CHECK_LAUNCH();
}

/* D[B, H, T] = rowsum(dout * out) per (b, t, h), in cuda_scratch
 * (cuda_attention_common.cuh); one warp per row. */
template <typename E>
float *cuda_attention_rowsums(const E *dout, const E *out, int B, int T, int H, int Dh) {
    const long rows = (long)B * T * H;
    float *drow = (float *)cuda_scratch((size_t)rows * sizeof(float));
    CUDA_LAUNCH(cuda_grid_for_rows(rows), CUDA_BLOCK, 0, attention_drow_kernel)(drow, dout, out, B, T, H, Dh);
    CUDA_CHECK_LAUNCH();
    return drow;
}
template float *cuda_attention_rowsums<float>(const float *, const float *, int, int, int, int);
template float *cuda_attention_rowsums<bf16>(const bf16 *, const bf16 *, int, int, int, int);

/* out[B, T, H, Dh] = softmax(q' k'^T / sqrt(Dh)) v per (b, h); lse[B, H, T];
 * q', k' rotated from qkv[B, T, 3, H, Dh] by sin, cos [T - prefix, Dh]
 * (NULL: not rotated). out, qkv of element type E. */
template <typename E>
void attention_forward_simt(E *out, float *lse, const E *qkv, const float *sin, const float *cos, int B,
                            int T, int prefix, int H, int Dh) {
    if (B <= 0 || T <= 0 || H <= 0 || Dh <= 0) return;
    const AttentionRope rope = {sin, cos, prefix};
    check_attention_shape(B, H, Dh, rope, "cuda_attention_forward");
    switch ((Dh + CUDA_WARP - 1) / CUDA_WARP) {
    case 1: attention_forward_launch<1>(out, lse, qkv, rope, B, T, H, Dh); break;
    case 2: attention_forward_launch<2>(out, lse, qkv, rope, B, T, H, Dh); break;
    case 3: attention_forward_launch<3>(out, lse, qkv, rope, B, T, H, Dh); break;
    default: attention_forward_launch<4>(out, lse, qkv, rope, B, T, H, Dh); break;
    }
}
template void attention_forward_simt<float>(float *, float *, const float *, const float *, const float *,
                                            int, int, int, int, int);
template void attention_forward_simt<bf16>(bf16 *, float *, const bf16 *, const float *, const float *, int,
                                           int, int, int, int);

/* dqkv[B, T, 3, H, Dh] += gradients of the unrotated q, k and of v from
 * dout[B, T, H, Dh], given the forward's out[B, T, H, Dh], lse[B, H, T] and
 * tables; dqkv, dout, qkv, out of element type E. Scratch: D[B, H, T]. */
template <typename E>
void attention_backward_simt(E *dqkv, const E *dout, const E *qkv, const E *out, const float *lse,
                             const float *sin, const float *cos, int B, int T, int prefix, int H, int Dh) {
    if (B <= 0 || T <= 0 || H <= 0 || Dh <= 0 || dqkv == NULL) return;
    const AttentionRope rope = {sin, cos, prefix};
    check_attention_shape(B, H, Dh, rope, "cuda_attention_backward");
    const float *drow = cuda_attention_rowsums(dout, out, B, T, H, Dh);
    switch ((Dh + CUDA_WARP - 1) / CUDA_WARP) {
    case 1: attention_backward_launch<1>(dqkv, dout, qkv, lse, drow, rope, B, T, H, Dh); break;
    case 2: attention_backward_launch<2>(dqkv, dout, qkv, lse, drow, rope, B, T, H, Dh); break;
    case 3: attention_backward_launch<3>(dqkv, dout, qkv, lse, drow, rope, B, T, H, Dh); break;
    default: attention_backward_launch<4>(dqkv, dout, qkv, lse, drow, rope, B, T, H, Dh); break;
    }
}
template void attention_backward_simt<float>(float *, const float *, const float *, const float *,
                                             const float *, const float *, const float *, int, int, int,
                                             int, int);
template void attention_backward_simt<bf16>(bf16 *, const bf16 *, const bf16 *, const bf16 *, const float *,
                                            const float *, const float *, int, int, int, int, int);

void cuda_attention_forward(float *out, float *lse, const float *qkv, const float *sin,
                            const float *cos, int B, int T, int prefix, int H, int Dh) {
    attention_forward_simt(out, lse, qkv, sin, cos, B, T, prefix, H, Dh);
}

void cuda_attention_backward(float *dqkv, const float *dout, const float *qkv, const float *out,
                             const float *lse, const float *sin, const float *cos, int B, int T,
                             int prefix, int H, int Dh) {
    attention_backward_simt(dqkv, dout, qkv, out, lse, sin, cos, B, T, prefix, H, Dh);
}

/*
 * cuda_common.cuh - what every file of the CUDA backend shares: the error
 * checks, the one cuBLAS handle and the one cuBLASLt handle with its
 * workspace, the scratch buffer, launch helpers, a deterministic column-sum
 * kernel, and the declarations of every op that cuda_backend.cu puts into
 * the NnBackend tables.
 *
 * Execution model of this backend (tensors are fp32 in device memory, but
 * those of the _bf16 entries, which are bf16: see "element types" below;
 * the linear layers run on cuBLASLt, in bf16 on tensor cores for the "cuda"
 * table and in exact fp32 for "cuda-fp32"):
 *   - every kernel and every cuBLAS / cuBLASLt call runs on the legacy
 *     default stream, so ops are ordered among themselves and with cudaMemcpy;
 *   - one cuBLAS handle, one cuBLASLt handle and its 32 MiB workspace,
 *     created by nn_cuda_backend() / nn_cuda_fp32_backend() (whichever comes
 *     first) on the device that is current at that moment (call
 *     cudaSetDevice first on multi-GPU nodes);
 *   - a device error inside an op aborts the process with file:line and the
 *     CUDA message (the op API has no error return);
 *   - the backend is meant to be driven from one host thread at a time
 *     (the matmul plan cache of cuda_matmul.cu relies on it).
 */
#ifndef DD_NN_CUDA_COMMON_CUH
#define DD_NN_CUDA_COMMON_CUH

#include <cublasLt.h>
#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

extern "C" {
#include "nn/backend.h"
}

/* ---- error checks -------------------------------------------------------- */

static inline void cuda_check_at(cudaError_t err, const char *what, const char *file, int line) {
    if (err != cudaSuccess) {
        fprintf(stderr, "%s:%d: CUDA error in %s: %s (%s)\n", file, line, what,
                cudaGetErrorString(err), cudaGetErrorName(err));
        fflush(stderr);
        abort();
    }
}
static inline void cublas_check_at(cublasStatus_t status, const char *what, const char *file, int line) {
    if (status != CUBLAS_STATUS_SUCCESS) {
        fprintf(stderr, "%s:%d: cuBLAS error in %s: %s (%s)\n", file, line, what,
                cublasGetStatusString(status), cublasGetStatusName(status));
        fflush(stderr);
        abort();
    }
}
/* Aborts with file:line and the CUDA / cuBLAS message when call fails.
 * CUBLAS_CHECK serves cuBLASLt calls too (they return cublasStatus_t). */
#define CUDA_CHECK(call) cuda_check_at((call), #call, __FILE__, __LINE__)
#define CUBLAS_CHECK(call) cublas_check_at((call), #call, __FILE__, __LINE__)
/* After every kernel launch: catches bad launch configurations at once. */
#define CUDA_CHECK_LAUNCH() cuda_check_at(cudaGetLastError(), "kernel launch", __FILE__, __LINE__)

/* ---- shared state (cuda_backend.cu, cuda_memory.cu) ----------------------- */

/* The one cuBLAS handle; valid once nn_cuda_backend() returned the table. */
cublasHandle_t cuda_cublas_handle(void);
/* The one cuBLASLt handle and its workspace (CUDA_CUBLASLT_WORKSPACE_BYTES
 * of device memory, cudaMalloc'ed once at backend initialisation and kept
 * for the life of the process; 32 MiB is what cuBLASLt's larger Hopper
 * kernels can use). Valid once a CUDA table was returned. */
enum { CUDA_CUBLASLT_WORKSPACE_BYTES = 32 << 20 };
cublasLtHandle_t cuda_cublaslt_handle(void);
void *cuda_cublaslt_workspace(void);
/* A device buffer of at least bytes, reused across calls and grown on
 * demand (growing frees the old one, which synchronises the device). Ops
 * use it for temporaries the API has no argument for; its contents do not
 * survive the next op that asks for it. */
void *cuda_scratch(size_t bytes);

/* ---- element types ---------------------------------------------------------- */

/* The tensors of the ops are fp32 (float) or, for the _bf16 entries of
 * backend.h, bf16: uint16_t in the op API, the same bits as __nv_bfloat16
 * here. A kernel templated on an element type E reads with to_float (exact
 * widening), computes in fp32 and writes with from_float<E> (rounded to
 * nearest even, once) or accumulate (+=: bf16(widen(old) + increment), one
 * rounding). For E = float they are plain loads, stores and +=, so the fp32
 * instantiation of a kernel computes bit for bit what the fp32 kernel did
 * before the templates (its PTX has the same floating-point operations on
 * the same operands). */
typedef __nv_bfloat16 bf16;

__host__ __device__ __forceinline__ float to_float(float x) { return x; }
__host__ __device__ __forceinline__ float to_float(bf16 x) { return __bfloat162float(x); }

template <typename E>
__host__ __device__ __forceinline__ E from_float(float x);
template <>
__host__ __device__ __forceinline__ float from_float<float>(float x) { return x; }
template <>
__host__ __device__ __forceinline__ bf16 from_float<bf16>(float x) { return __float2bfloat16_rn(x); }

/* *dst += increment, rounded once to E. */
template <typename E>
__host__ __device__ __forceinline__ void accumulate(E *dst, float increment) {
    *dst = from_float<E>(to_float(*dst) + increment);
}

/* fp32 -> bf16 bits, round to nearest, ties to even, and a NaN stays a quiet
 * NaN with its payload: written out on the bits as nn/half_float.c's
 * float_to_bfloat16, so that the bf16 wire (cuda_bf16_rows.cu) and
 * cast_to_bf16 give the CPU's bits for every input. (__float2bfloat16_rn,
 * and so from_float<bf16>, agrees on every non-NaN value but makes each
 * NaN the canonical one.) */
__device__ __forceinline__ uint16_t bf16_bits_of(float value) {
    const uint32_t bits = __float_as_uint(value);
    if ((bits & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((bits >> 16) | 0x0040u);
    return (uint16_t)((bits + 0x7fffu + ((bits >> 16) & 1u)) >> 16);
}

/* A bf16 tensor of the op API as the device sees it. */
static inline bf16 *as_bf16(uint16_t *p) { return reinterpret_cast<bf16 *>(p); }
static inline const bf16 *as_bf16(const uint16_t *p) { return reinterpret_cast<const bf16 *>(p); }

/* ---- launch helpers -------------------------------------------------------- */

enum { CUDA_BLOCK = 256, CUDA_WARP = 32 };

/* CUDA_LAUNCH(grid, block, shared_bytes, kernel)(arguments) launches kernel
 * (a function or template id; the last macro argument, as it may hold
 * commas) as kernel<<<grid, block, shared_bytes>>>(arguments) does, on the
 * legacy default stream. CUDA_DYNAMIC_SHARED(type, name); declares the
 * launch's dynamic shared memory as type name[] (128-byte aligned). Both are
 * written as macros so that the CUDA emulator (nn/cuda/emulator, meson
 * option emulate_cuda: the host compiler builds these files and the
 * kernels run on the CPU) can stand in for the two pieces of CUDA syntax
 * that C++ has no way to express. */
#ifdef DD_CUDA_EMULATOR
#define CUDA_LAUNCH(grid, block, shared_bytes, ...)                  \
    emu::launch((grid), (block), (shared_bytes), #__VA_ARGS__,       \
                [](auto &...arguments) { __VA_ARGS__(arguments...); })
#define CUDA_DYNAMIC_SHARED(type, name) type *const name = static_cast<type *>(emu::dynamic_shared())
#else
#define CUDA_LAUNCH(grid, block, shared_bytes, ...) __VA_ARGS__<<<(grid), (block), (shared_bytes)>>>
#define CUDA_DYNAMIC_SHARED(type, name) extern __shared__ __align__(128) type name[]
#endif

/* Blocks for a grid-stride loop over n elements (capped: the loop covers the rest). */
static inline unsigned cuda_grid_for(long n) {
    long blocks = (n + CUDA_BLOCK - 1) / CUDA_BLOCK;
    if (blocks < 1) blocks = 1;
    if (blocks > 65536) blocks = 65536;
    return (unsigned)blocks;
}
/* Blocks for one warp per row over rows rows. */
static inline unsigned cuda_grid_for_rows(long rows) {
    long per_block = CUDA_BLOCK / CUDA_WARP;
    return (unsigned)((rows + per_block - 1) / per_block);
}

#define CUDA_GRID_STRIDE_LOOP(i, n)                                              \
    for (long i = (long)blockIdx.x * blockDim.x + threadIdx.x; i < (n);         \
         i += (long)gridDim.x * blockDim.x)

/* Sum of v over the 32 lanes of a warp, returned to every lane. */
__device__ __forceinline__ float warp_sum(float v) {
    for (int offset = 16; offset > 0; offset >>= 1) v += __shfl_xor_sync(0xffffffffu, v, offset);
    return v;
}
__device__ __forceinline__ float warp_max(float v) {
    for (int offset = 16; offset > 0; offset >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, offset));
    return v;
}

/* Sum of v over the 32 lanes of a warp in double (the long reductions of the
 * objective's ops add in double, as the CPU oracle does). */
__device__ __forceinline__ double warp_sum_double(double v) {
    for (int offset = 16; offset > 0; offset >>= 1) v += __shfl_xor_sync(0xffffffffu, v, offset);
    return v;
}
/* Sum of v over the threads of a block (blockDim.x a multiple of 32, at most
 * 1024), returned to every thread. Every thread of the block must call it;
 * it may be called several times in a row (it synchronises before reuse). */
__device__ __forceinline__ double block_sum_double(double v) {
    __shared__ double per_warp[32];
    const int lane = threadIdx.x % CUDA_WARP, warp = threadIdx.x / CUDA_WARP;
    const int warps = blockDim.x / CUDA_WARP;
    v = warp_sum_double(v);
    __syncthreads();   /* the previous call's readers are done with per_warp */
    if (lane == 0) per_warp[warp] = v;
    __syncthreads();
    double total = 0.0;
    for (int w = 0; w < warps; w++) total += per_warp[w];   /* same order in every thread */
    return total;
}

/* Maximum of v over the threads of a block, returned to every thread (the
 * same conditions as block_sum_double). */
__device__ __forceinline__ float block_max_float(float v) {
    __shared__ float per_warp[32];
    const int lane = threadIdx.x % CUDA_WARP, warp = threadIdx.x / CUDA_WARP;
    const int warps = blockDim.x / CUDA_WARP;
    v = warp_max(v);
    __syncthreads();
    if (lane == 0) per_warp[warp] = v;
    __syncthreads();
    float max = per_warp[0];
    for (int w = 1; w < warps; w++) max = fmaxf(max, per_warp[w]);
    return max;
}

/* ---- column sums -------------------------------------------------------- */

/* out[c] += sum over r < rows of value(r, c), for c < cols.
 * Block (32, 32): threadIdx.x picks a column (coalesced reads of row-major
 * data), threadIdx.y strides over rows; partial sums are kept in double and
 * combined in a fixed order, so the result is deterministic (no atomics).
 * (Few blocks when cols is small: correct, not fast; a later issue.)
 * value is a functor with  __device__ float operator()(long r, int c) const. */
template <typename Value>
__global__ void __launch_bounds__(1024) column_sum_kernel(float *out, long rows, int cols, Value value) {
    __shared__ double partial[32][33];
    int c = blockIdx.x * 32 + threadIdx.x;
    double acc = 0.0;
    if (c < cols)
        for (long r = threadIdx.y; r < rows; r += 32) acc += (double)value(r, c);
    partial[threadIdx.y][threadIdx.x] = acc;
    __syncthreads();
    if (threadIdx.y == 0 && c < cols) {
        double sum = 0.0;
        for (int k = 0; k < 32; k++) sum += partial[k][threadIdx.x];
        out[c] += (float)sum;
    }
}
/* Launches column_sum_kernel; nothing when out is NULL (gradient not needed). */
template <typename Value>
static inline void column_sum(float *out, long rows, int cols, Value value) {
    if (out == NULL || cols <= 0 || rows <= 0) return;
    dim3 block(32, 32);
    dim3 grid((unsigned)((cols + 31) / 32));
    CUDA_LAUNCH(grid, block, 0, column_sum_kernel)(out, rows, cols, value);
    CUDA_CHECK_LAUNCH();
}

/* ---- the ops (semantics: nn/backend.h) ------------------------------------ */

/* cuda_memory.cu */
void *cuda_alloc(size_t bytes);
void cuda_free(void *ptr);
void cuda_zero(void *ptr, size_t bytes);
void cuda_copy_to_device(void *dst, const void *host_src, size_t bytes);
void cuda_copy_to_host(void *host_dst, const void *src, size_t bytes);
void cuda_copy(void *dst, const void *src, size_t bytes);
void cuda_synchronize(void);

/* cuda_matmul.cu: the _tc entries (table "cuda") multiply fp32 tensors on
 * tensor cores with bf16-rounded inputs and fp32 accumulation; the _fp32
 * entries (table "cuda-fp32") are exact fp32; the _bf16 entries (both
 * tables, used by ViT blocks with block_bf16) take bf16 activations and
 * weights (tensor cores, fp32 accumulation). */
void cuda_matmul_forward_tc(float *out, const float *inp, const float *weight, const float *bias,
                            int N, int C, int OC);
void cuda_matmul_backward_tc(float *dinp, float *dweight, float *dbias, const float *dout,
                             const float *inp, const float *weight, int N, int C, int OC);
void cuda_matmul_forward_fp32(float *out, const float *inp, const float *weight, const float *bias,
                              int N, int C, int OC);
void cuda_matmul_backward_fp32(float *dinp, float *dweight, float *dbias, const float *dout,
                               const float *inp, const float *weight, int N, int C, int OC);
void cuda_matmul_forward_bf16(uint16_t *out, const uint16_t *inp, const uint16_t *weight,
                              const float *bias, int N, int C, int OC);
void cuda_matmul_backward_bf16(uint16_t *dinp, float *dweight, float *dbias, const uint16_t *dout,
                               const uint16_t *inp, const uint16_t *weight, int N, int C, int OC);

/* cuda_pointwise.cu */
void cuda_patchify(float *patches, const float *images, int B, int C, int H, int W, int P);
void cuda_tokens_forward(float *tokens, const float *patch_emb, const float *cls, const float *reg,
                         const float *mask_token, const uint8_t *mask, int B, int Np, int R, int D);
void cuda_tokens_backward(float *dpatch_emb, float *dcls, float *dreg, float *dmask_token,
                          const float *dtokens, const uint8_t *mask, int B, int Np, int R, int D);
void cuda_gelu_forward(float *out, const float *inp, long n);
void cuda_gelu_backward(float *dinp, const float *dout, const float *inp, long n);
void cuda_swiglu_forward(float *out, const float *inp, int N, int F);
void cuda_swiglu_backward(float *dinp, const float *dout, const float *inp, int N, int F);
void cuda_layerscale_residual_forward(float *out, const float *res, const float *y,
                                      const float *gamma, int N, int C);
void cuda_layerscale_residual_backward(float *dres, float *dy, float *dgamma, const float *dout,
                                       const float *y, const float *gamma, int N, int C);
/* the same kernels on bf16 tensors (backend.h, "a ViT block with bf16 storage") */
void cuda_cast_to_bf16(uint16_t *out, const float *inp, long n);
void cuda_gelu_forward_bf16(uint16_t *out, const uint16_t *inp, long n);
void cuda_gelu_backward_bf16(uint16_t *dinp, const uint16_t *dout, const uint16_t *inp, long n);
void cuda_swiglu_forward_bf16(uint16_t *out, const uint16_t *inp, int N, int F);
void cuda_swiglu_backward_bf16(uint16_t *dinp, const uint16_t *dout, const uint16_t *inp, int N, int F);
void cuda_layerscale_residual_forward_bf16(float *out, const float *res, const uint16_t *y,
                                           const float *gamma, int N, int C);
void cuda_layerscale_residual_backward_bf16(float *dres, uint16_t *dy, float *dgamma, const float *dout,
                                            const uint16_t *y, const float *gamma, int N, int C);

/* cuda_norm.cu */
void cuda_layernorm_forward(float *out, float *mean, float *rstd, const float *inp,
                            const float *weight, const float *bias, int N, int C, float eps);
void cuda_layernorm_backward(float *dinp, float *dweight, float *dbias, const float *dout,
                             const float *inp, const float *weight, const float *mean,
                             const float *rstd, int N, int C);
void cuda_layernorm_forward_bf16(uint16_t *out, float *mean, float *rstd, const float *inp,
                                 const float *weight, const float *bias, int N, int C, float eps);
void cuda_layernorm_backward_bf16(float *dinp, float *dweight, float *dbias, const uint16_t *dout,
                                  const float *inp, const float *weight, const float *mean,
                                  const float *rstd, int N, int C);

/* cuda_attention.cu: the exact fp32 kernels (table "cuda-fp32") */
void cuda_attention_forward(float *out, float *lse, const float *qkv, const float *sin,
                            const float *cos, int B, int T, int prefix, int H, int Dh);
void cuda_attention_backward(float *dqkv, const float *dout, const float *qkv, const float *out,
                             const float *lse, const float *sin, const float *cos, int B, int T,
                             int prefix, int H, int Dh);
/* cuda_attention_tc.cu: the forward of table "cuda", on bf16 tensor cores
 * with fp32 accumulation (Dh = 64, 128; other head sizes: the fp32
 * kernels), on fp32 tensors (_tc) or bf16 ones (_bf16, both tables). */
void cuda_attention_forward_tc(float *out, float *lse, const float *qkv, const float *sin,
                               const float *cos, int B, int T, int prefix, int H, int Dh);
void cuda_attention_forward_bf16(uint16_t *out, float *lse, const uint16_t *qkv, const float *sin,
                                 const float *cos, int B, int T, int prefix, int H, int Dh);
/* cuda_attention_tc_backward.cu: the backward of table "cuda", likewise. */
void cuda_attention_backward_tc(float *dqkv, const float *dout, const float *qkv, const float *out,
                                const float *lse, const float *sin, const float *cos, int B, int T,
                                int prefix, int H, int Dh);
void cuda_attention_backward_bf16(uint16_t *dqkv, const uint16_t *dout, const uint16_t *qkv,
                                  const uint16_t *out, const float *lse, const float *sin,
                                  const float *cos, int B, int T, int prefix, int H, int Dh);

/* cuda_optim.cu */
void cuda_adamw_update(float *params, const float *grads, float *m, float *v, long n, float lr,
                       float beta1, float beta2, float eps, float weight_decay, int t);
double cuda_sum_squares(const float *x, long n);
void cuda_scale(float *x, float s, long n);

/* cuda_rows.cu */
void cuda_l2norm_forward(float *out, float *norm, const float *inp, int N, int C, float eps);
void cuda_l2norm_backward(float *dinp, const float *dout, const float *inp, const float *norm,
                          int N, int C, float eps);
void cuda_gather_rows(float *out, const float *inp, const int32_t *rows, int N, int C);
void cuda_gather_rows_backward(float *dinp, const float *dout, const int32_t *rows, int N, int C);

/* cuda_loss.cu */
void cuda_softmax_cross_entropy_forward(float *loss, float *lse, const float *logits,
                                        const float *targets, const int32_t *target_rows,
                                        int N, int K, int R, float temperature);
void cuda_softmax_cross_entropy_backward(float *dlogits, const float *dloss, const float *logits,
                                         const float *targets, const int32_t *target_rows,
                                         const float *lse, int N, int K, int R, float temperature);
void cuda_koleo_forward(float *loss, int32_t *neighbor, const float *inp, int N, int C, float eps);
void cuda_koleo_backward(float *dinp, const float *dloss, const float *inp, const int32_t *neighbor,
                         int N, int C, float eps);

/* cuda_sinkhorn.cu */
void cuda_exp_with_temperature(float *out, const float *inp, const float *shift, int M, int K,
                               float temperature);
void cuda_column_sums(float *sums, const float *x, int M, int K);
void cuda_column_max(float *maxes, const float *x, int M, int K);
void cuda_divide_columns(float *x, const float *divisors, int M, int K);
void cuda_normalize_rows(float *x, int M, int K);

/* cuda_ema.cu */
void cuda_ema_update(float *ema, const float *params, long n, float momentum);

/* cuda_bf16_rows.cu */
void cuda_scatter_rows_to_bf16(uint16_t *out, const float *inp, const int64_t *starts, int N, int C);
void cuda_gather_rows_from_bf16(float *out, const uint16_t *inp, const int64_t *starts, int N, int C);

#endif

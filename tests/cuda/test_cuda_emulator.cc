/*
 * test_cuda_emulator.cc - the CUDA emulator (nn/cuda/emulator) itself:
 * that it runs kernels as a GPU would where the CUDA tests rely on it, and
 * that it stops, with its reason, where a GPU would fail. Built only with
 * -Demulate_cuda=true; the kernels here are CUDA C++ as the backend writes
 * it (CUDA_LAUNCH, __shared__, shuffles, WMMA), compiled by the host
 * compiler.
 *
 * What must abort (a deadlock, a host pointer given to a kernel, a shuffle
 * from an exited lane, a misaligned cuBLASLt operand) runs in a child
 * process; the case checks that the child died of SIGABRT and that its
 * stderr says why.
 */
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <mma.h>

#include "nn/cuda/cuda_common.cuh"

extern "C" {
#include "tests/test.h"
}

/* ---- helpers ---------------------------------------------------------------- */

static float *device_floats(const float *host, long n) {
    void *ptr = NULL;
    CUDA_CHECK(cudaMalloc(&ptr, (size_t)n * sizeof(float)));
    if (host) CUDA_CHECK(cudaMemcpy(ptr, host, (size_t)n * sizeof(float), cudaMemcpyHostToDevice));
    return static_cast<float *>(ptr);
}

static void host_floats(float *host, const float *device, long n) {
    CUDA_CHECK(cudaMemcpy(host, device, (size_t)n * sizeof(float), cudaMemcpyDeviceToHost));
}

/* Runs body in a child process; 1 when the child died of SIGABRT and its
 * stderr contains expected. what gets up to what_size bytes of that stderr. */
static int aborts_saying(void (*body)(void), const char *expected, char *what, size_t what_size) {
    int pipe_ends[2];
    if (pipe(pipe_ends) != 0) return 0;
    fflush(stdout);
    fflush(stderr);
    const pid_t child = fork();
    if (child == 0) {
        dup2(pipe_ends[1], STDERR_FILENO);
        close(pipe_ends[0]);
        body();
        _exit(0);
    }
    close(pipe_ends[1]);
    size_t used = 0;
    ssize_t got;
    while ((got = read(pipe_ends[0], what + used, what_size - 1 - used)) > 0) used += (size_t)got;
    what[used] = '\0';
    close(pipe_ends[0]);
    int status = 0;
    waitpid(child, &status, 0);
    return WIFSIGNALED(status) && WTERMSIG(status) == SIGABRT && strstr(what, expected) != NULL;
}

/* ---- kernels -------------------------------------------------------------------- */

/* out[b] = sum of in[b * n .. b * n + n): warp shuffles, then __shared__ per warp. */
__global__ static void block_sums_kernel(float *out, const float *in, int n) {
    __shared__ float per_warp[32];
    float v = 0.0f;
    for (int i = threadIdx.x; i < n; i += blockDim.x) v += in[(long)blockIdx.x * n + i];
    v = warp_sum(v);
    if (threadIdx.x % CUDA_WARP == 0) per_warp[threadIdx.x / CUDA_WARP] = v;
    __syncthreads();
    if (threadIdx.x == 0) {
        float total = 0.0f;
        for (unsigned w = 0; w < blockDim.x / CUDA_WARP; w++) total += per_warp[w];
        out[blockIdx.x] = total;
    }
}

/* out[t] = the sum of the neighbours' thread numbers, read back from their
 * shared slots, with or without the barrier between the writes and the
 * reads. */
__global__ static void neighbour_kernel(float *out, int with_barrier) {
    CUDA_DYNAMIC_SHARED(float, slots);
    const unsigned n = blockDim.x, t = threadIdx.x;
    slots[t] = (float)t;
    if (with_barrier) __syncthreads();
    out[t] = slots[(t + 1) % n] + slots[(t + n - 1) % n];
}

/* Lanes of one warp at different barriers: undefined on a GPU. */
__global__ static void split_barrier_kernel(float *out) {
    if (threadIdx.x % 2) __syncthreads();
    else __syncwarp();
    out[threadIdx.x] = 1.0f;
}

/* Lane 0 exits; the others read its value by a shuffle. */
__global__ static void shuffle_after_exit_kernel(float *out) {
    if (threadIdx.x == 0) return;
    out[threadIdx.x] = __shfl_sync(0xffffffffu, (float)threadIdx.x, 0);
}

__global__ static void write_one_kernel(float *out) { out[threadIdx.x] = 1.0f; }

/* c[16, 16] = a[16, 16] b^T, a and b row-major bf16 (b read as a col_major
 * matrix_b), through a shared tile; with_sync 0 leaves out the __syncwarp
 * between the store and a lane's reading of other lanes' elements. */
__global__ static void wmma_kernel(float *c, const bf16 *a, const bf16 *b, int with_sync) {
    namespace wmma = nvcuda::wmma;
    CUDA_DYNAMIC_SHARED(float, tile);   /* [16 * 16], 0xff (NaN) before the block */
    wmma::fragment<wmma::matrix_a, 16, 16, 16, bf16, wmma::row_major> fa;
    wmma::fragment<wmma::matrix_b, 16, 16, 16, bf16, wmma::col_major> fb;
    wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc;
    wmma::fill_fragment(acc, 0.0f);
    wmma::load_matrix_sync(fa, a, 16);
    wmma::load_matrix_sync(fb, b, 16);
    wmma::mma_sync(acc, fa, fb, acc);
    wmma::store_matrix_sync(tile, acc, 16, wmma::mem_row_major);
    if (with_sync) __syncwarp();
    for (int e = threadIdx.x; e < 256; e += 32) c[e] = tile[255 - e];   /* other lanes' elements */
}

/* ---- cases ------------------------------------------------------------------------ */

static void block_reduction_with_shuffles(void) {
    const int n = 1000, blocks = 5;
    float *in = (float *)malloc(sizeof(float) * n * blocks);
    for (int i = 0; i < n * blocks; i++) in[i] = (float)((i * 7919) % 101) * 0.25f - 12.0f;
    float *d_in = device_floats(in, (long)n * blocks), *d_out = device_floats(NULL, blocks);
    CUDA_LAUNCH(blocks, 256, 0, block_sums_kernel)(d_out, d_in, n);
    CHECK(cudaGetLastError() == cudaSuccess, "the launch failed");
    float out[blocks];
    host_floats(out, d_out, blocks);
    for (int b = 0; b < blocks; b++) {
        double expected = 0.0;
        for (int i = 0; i < n; i++) expected += in[b * n + i];
        CHECK(fabs(out[b] - expected) <= 1e-4 * fabs(expected) + 1e-3, "block %d: %g, expected %g", b, out[b],
              expected);
    }
    cudaFree(d_in);
    cudaFree(d_out);
    free(in);
}

/* The emulator runs each thread to its next barrier in thread order (or
 * the reverse), so a read of a neighbour's shared write with no barrier in
 * between sees the unwritten (0xff, NaN) memory on one side or the other:
 * the missing barrier shows, in either order. */
static void missing_barrier_shows(void) {
    const int threads = 64;
    float *d_out = device_floats(NULL, threads), out[threads];
    for (int with_barrier = 1; with_barrier >= 0; with_barrier--) {
        CUDA_LAUNCH(1, threads, threads * sizeof(float), neighbour_kernel)(d_out, with_barrier);
        host_floats(out, d_out, threads);
        int right = 0;
        for (int t = 0; t < threads; t++)
            right += out[t] == (float)((t + 1) % threads + (t + threads - 1) % threads);
        if (with_barrier) CHECK(right == threads, "with the barrier: %d of %d right", right, threads);
        else   /* only the thread that runs last finds both neighbours' slots written */
            CHECK(right <= 1, "without the barrier %d of %d were right: the race went unseen", right, threads);
    }
    cudaFree(d_out);
}

static void fresh_memory_is_nan(void) {
    float *d = device_floats(NULL, 8), host[8];
    host_floats(host, d, 8);
    for (int i = 0; i < 8; i++) CHECK(isnan(host[i]), "element %d of fresh device memory is %g, not NaN", i, host[i]);
    cudaFree(d);
}

static void bad_launches_fail_as_on_a_gpu(void) {
    float *d = device_floats(NULL, 4);
    CUDA_CHECK(cudaMemset(d, 0, 4 * sizeof(float)));
    CUDA_LAUNCH(1, 2048, 0, write_one_kernel)(d);
    CHECK(cudaGetLastError() == cudaErrorInvalidConfiguration, "a block of 2048 threads was not refused");
    CUDA_LAUNCH(1, 4, 228 << 10, write_one_kernel)(d);
    CHECK(cudaGetLastError() == cudaErrorInvalidValue, "228 KiB of dynamic shared memory was not refused");
    CHECK(cudaGetLastError() == cudaSuccess, "cudaGetLastError did not clear the error");
    float host[4];
    host_floats(host, d, 4);
    CHECK(host[0] == 0.0f, "a refused launch ran");
    cudaFree(d);
}

static void copies_outside_device_memory_fail(void) {
    float *d = device_floats(NULL, 4), host[8] = {0};
    CHECK(cudaMemcpy(d, host, 8 * sizeof(float), cudaMemcpyHostToDevice) == cudaErrorInvalidValue,
          "a copy past the end of an allocation was accepted");
    CHECK(cudaMemcpy(host, d, 4 * sizeof(float), cudaMemcpyHostToDevice) == cudaErrorInvalidValue,
          "a copy with the directions swapped was accepted");
    CHECK(cudaMemset(host, 0, sizeof host) == cudaErrorInvalidValue, "a memset of host memory was accepted");
    cudaGetLastError();
    cudaFree(d);
}

static void run_split_barrier(void) {
    float *d = device_floats(NULL, 64);
    CUDA_LAUNCH(1, 64, 0, split_barrier_kernel)(d);
}
static void run_host_pointer(void) {
    static float host[32];
    CUDA_LAUNCH(1, 32, 0, write_one_kernel)(host);
}
static void run_shuffle_after_exit(void) {
    float *d = device_floats(NULL, 32);
    CUDA_LAUNCH(1, 32, 0, shuffle_after_exit_kernel)(d);
}

static void undefined_behaviour_aborts(void) {
    const struct {
        const char *name;
        void (*body)(void);
        const char *expected;
    } cases[] = {
        {"lanes at different barriers", run_split_barrier, "deadlock"},
        {"a host pointer as a kernel argument", run_host_pointer, "is a host pointer"},
        {"a shuffle from an exited lane", run_shuffle_after_exit, "has exited"},
    };
    for (const auto &c : cases) {
        char what[1024];
        CHECK(aborts_saying(c.body, c.expected, what, sizeof what), "%s: no abort saying '%s'; stderr: %s", c.name,
              c.expected, what);
    }
}

static void wmma_matches_float64(void) {
    bf16 a[256], b[256];
    for (int i = 0; i < 256; i++) {
        a[i] = __float2bfloat16((float)((i * 37) % 23) / 8.0f - 1.25f);
        b[i] = __float2bfloat16((float)((i * 53) % 19) / 4.0f - 2.0f);
    }
    void *d_a = NULL, *d_b = NULL;
    CUDA_CHECK(cudaMalloc(&d_a, sizeof a));
    CUDA_CHECK(cudaMalloc(&d_b, sizeof b));
    CUDA_CHECK(cudaMemcpy(d_a, a, sizeof a, cudaMemcpyHostToDevice));
    CUDA_CHECK(cudaMemcpy(d_b, b, sizeof b, cudaMemcpyHostToDevice));
    float *d_c = device_floats(NULL, 256), c[256];
    for (int with_sync = 1; with_sync >= 0; with_sync--) {
        CUDA_LAUNCH(1, 32, 256 * sizeof(float), wmma_kernel)(d_c, (const bf16 *)d_a, (const bf16 *)d_b, with_sync);
        host_floats(c, d_c, 256);
        double worst = 0.0;
        int nan = 0;
        for (int e = 0; e < 256; e++) {
            const int r = (255 - e) / 16, col = (255 - e) % 16;
            double expected = 0.0;
            for (int k = 0; k < 16; k++)
                expected += (double)__bfloat162float(a[r * 16 + k]) * __bfloat162float(b[col * 16 + k]);
            nan += isnan(c[e]);
            worst = fmax(worst, fabs(c[e] - expected));
        }
        if (with_sync) CHECK(nan == 0 && worst <= 1e-5, "c = a b^T: %d NaN, worst error %g", nan, worst);
        else CHECK(nan > 0, "without __syncwarp every lane read the others' elements: the race went unseen");
    }
    cudaFree(d_a);
    cudaFree(d_b);
    cudaFree(d_c);
}

/* A GEMM through cuda_matmul.cu's path is the cuda_ops tests' business; here
 * the emulated cuBLASLt's own checks: an algorithm chosen for 256-byte
 * aligned operands, then given a 16-byte aligned A. */
static void run_misaligned_cublaslt(void) {
    cublasLtHandle_t handle;
    CUBLAS_CHECK(cublasLtCreate(&handle));
    cublasLtMatmulDesc_t desc;
    CUBLAS_CHECK(cublasLtMatmulDescCreate(&desc, CUBLAS_COMPUTE_32F, CUDA_R_32F));
    cublasLtMatrixLayout_t layout;
    CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&layout, CUDA_R_32F, 8, 8, 8));
    cublasLtMatmulPreference_t preference;
    CUBLAS_CHECK(cublasLtMatmulPreferenceCreate(&preference));
    cublasLtMatmulHeuristicResult_t result;
    int returned = 0;
    CUBLAS_CHECK(cublasLtMatmulAlgoGetHeuristic(handle, desc, layout, layout, layout, layout, preference, 1, &result,
                                                &returned));
    float *d = device_floats(NULL, 8 * 8 * 4 + 4);
    const float alpha = 1.0f, beta = 0.0f;
    cublasLtMatmul(handle, desc, &alpha, d + 4, layout, d + 64, layout, &beta, d + 128, layout, d + 128, layout,
                   &result.algo, NULL, 0, 0);
}

static void cublaslt_misaligned_operand_aborts(void) {
    char what[1024];
    CHECK(aborts_saying(run_misaligned_cublaslt, "align", what, sizeof what),
          "a 16-byte aligned A under an algorithm chosen for 256 bytes did not abort; stderr: %s", what);
}

/* BGRADB as cuBLASLt documents it: the bias gradient has D's column count
 * n and holds the sums over k of op(B), stored (what was there is gone);
 * D is the product as without it. With B stored k x n (op N) and n x k (op
 * T), against float64. */
static void cublaslt_bias_gradient_sums_op_b(void) {
    enum { M = 3, N = 5, K = 7 };
    cublasLtHandle_t handle;
    CUBLAS_CHECK(cublasLtCreate(&handle));
    float a[M * K], b[K * N];   /* A m x k column-major; B's values, op(B)(l, j) = b[l + j K] */
    for (int i = 0; i < M * K; i++) a[i] = (float)((i * 7) % 11) - 5.0f;
    for (int i = 0; i < K * N; i++) b[i] = (float)((i * 5) % 13) * 0.25f - 1.5f;
    float *d_a = device_floats(a, M * K), *d_b = device_floats(NULL, K * N), *d_d = device_floats(NULL, M * N);
    for (int transposed = 0; transposed <= 1; transposed++) {
        /* B stored as op(B) (k x n, ld K) or as its transpose (n x k, ld N). */
        float stored[K * N];
        for (int l = 0; l < K; l++)
            for (int j = 0; j < N; j++) stored[transposed ? j + l * N : l + j * K] = b[l + j * K];
        CUDA_CHECK(cudaMemcpy(d_b, stored, sizeof stored, cudaMemcpyHostToDevice));
        float grad[N];
        for (int j = 0; j < N; j++) grad[j] = 1000.0f;   /* stored over, not added to */
        float *d_grad = device_floats(grad, N);

        cublasLtMatmulDesc_t desc;
        CUBLAS_CHECK(cublasLtMatmulDescCreate(&desc, CUBLAS_COMPUTE_32F, CUDA_R_32F));
        const cublasOperation_t op_b = transposed ? CUBLAS_OP_T : CUBLAS_OP_N;
        const cublasLtEpilogue_t epilogue = CUBLASLT_EPILOGUE_BGRADB;
        CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_TRANSB, &op_b, sizeof op_b));
        CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_EPILOGUE, &epilogue, sizeof epilogue));
        CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &d_grad, sizeof d_grad));
        cublasLtMatrixLayout_t la, lb, ld;
        CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&la, CUDA_R_32F, M, K, M));
        CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&lb, CUDA_R_32F, transposed ? N : K, transposed ? K : N,
                                                transposed ? N : K));
        CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&ld, CUDA_R_32F, M, N, M));
        const float alpha = 1.0f, beta = 0.0f;
        CUBLAS_CHECK(cublasLtMatmul(handle, desc, &alpha, d_a, la, d_b, lb, &beta, d_d, ld, d_d, ld, NULL, NULL, 0, 0));
        float d[M * N];
        host_floats(grad, d_grad, N);
        host_floats(d, d_d, M * N);
        double worst_grad = 0.0, worst_d = 0.0;
        for (int j = 0; j < N; j++) {
            double sum = 0.0;
            for (int l = 0; l < K; l++) sum += b[l + j * K];
            worst_grad = fmax(worst_grad, fabs(grad[j] - sum));
            for (int i = 0; i < M; i++) {
                double product = 0.0;
                for (int l = 0; l < K; l++) product += (double)a[i + l * M] * b[l + j * K];
                worst_d = fmax(worst_d, fabs(d[i + j * M] - product));
            }
        }
        CHECK(worst_grad <= 1e-5, "op(B) %s: the bias gradient is off the sums over k by %g", transposed ? "T" : "N",
              worst_grad);
        CHECK(worst_d <= 1e-4, "op(B) %s: D is off the product by %g", transposed ? "T" : "N", worst_d);
        cublasLtMatrixLayoutDestroy(la);
        cublasLtMatrixLayoutDestroy(lb);
        cublasLtMatrixLayoutDestroy(ld);
        cublasLtMatmulDescDestroy(desc);
        cudaFree(d_grad);
    }
    cudaFree(d_a);
    cudaFree(d_b);
    cudaFree(d_d);
    cublasLtDestroy(handle);
}

TEST_MAIN(TEST(block_reduction_with_shuffles), TEST(missing_barrier_shows), TEST(fresh_memory_is_nan),
          TEST(bad_launches_fail_as_on_a_gpu), TEST(copies_outside_device_memory_fail),
          TEST(undefined_behaviour_aborts), TEST(wmma_matches_float64), TEST(cublaslt_misaligned_operand_aborts),
          TEST(cublaslt_bias_gradient_sums_op_b))

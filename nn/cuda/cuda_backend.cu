/*
 * cuda_backend.cu - the CUDA backend's entry points: finds a device, creates
 * the one cuBLAS handle, the one cuBLASLt handle and its workspace, and
 * hands out the two NnBackend tables whose entries live in the other
 * cuda_*.cu files (one file per op family):
 *   "cuda"       linear layers and the attention forward and backward in
 *                bf16 on tensor cores (fp32 accumulation), and ViT blocks
 *                with bf16 storage (block_bf16 = 1: nn/vit.c runs every
 *                block through the _bf16 entries), the fast default for
 *                runs;
 *   "cuda-fp32"  the same ops but exact fp32 linear layers and attention,
 *                and fp32 blocks (block_bf16 = 0), for comparing with the
 *                CPU oracle.
 * Every other entry is the same function in both, the _bf16 ones included
 * (so "cuda-fp32" can run them in the op tests, though its blocks do not).
 *
 * The initialisation runs once per process (a thread-safe function static)
 * for both tables; later calls return the same table, or the same reason
 * for NULL.
 */
#include <dlfcn.h>
#include <string.h>

#include "nn/cuda/cuda_common.cuh"

static cublasHandle_t the_cublas_handle;
static cublasLtHandle_t the_cublaslt_handle;
static void *the_cublaslt_workspace;

cublasHandle_t cuda_cublas_handle(void) { return the_cublas_handle; }
cublasLtHandle_t cuda_cublaslt_handle(void) { return the_cublaslt_handle; }
void *cuda_cublaslt_workspace(void) { return the_cublaslt_workspace; }

/* The tables, filled field by field (C++17 has no designated initialisers),
 * so a reordering of NnBackend cannot silently mismatch entries. */
static NnBackend the_table;        /* "cuda" */
static NnBackend the_fp32_table;   /* "cuda-fp32" */

/* Every entry but the name, the fp32 matmuls and block_bf16, which
 * fill_tables sets (and, for "cuda", replaces the attention forward and
 * backward). */
static void fill_shared_entries(NnBackend *t) {
    memset(t, 0, sizeof *t);
    t->alloc = cuda_alloc;
    t->free = cuda_free;
    t->zero = cuda_zero;
    t->copy_to_device = cuda_copy_to_device;
    t->copy_to_host = cuda_copy_to_host;
    t->copy = cuda_copy;
    t->synchronize = cuda_synchronize;
    t->patchify = cuda_patchify;
    t->tokens_forward = cuda_tokens_forward;
    t->tokens_backward = cuda_tokens_backward;
    t->layernorm_forward = cuda_layernorm_forward;
    t->layernorm_backward = cuda_layernorm_backward;
    t->attention_forward = cuda_attention_forward;
    t->attention_backward = cuda_attention_backward;
    t->gelu_forward = cuda_gelu_forward;
    t->gelu_backward = cuda_gelu_backward;
    t->swiglu_forward = cuda_swiglu_forward;
    t->swiglu_backward = cuda_swiglu_backward;
    t->layerscale_residual_forward = cuda_layerscale_residual_forward;
    t->layerscale_residual_backward = cuda_layerscale_residual_backward;
    t->adamw_update = cuda_adamw_update;
    t->sum_squares = cuda_sum_squares;
    t->scale = cuda_scale;
    t->l2norm_forward = cuda_l2norm_forward;
    t->l2norm_backward = cuda_l2norm_backward;
    t->gather_rows = cuda_gather_rows;
    t->gather_rows_backward = cuda_gather_rows_backward;
    t->softmax_cross_entropy_forward = cuda_softmax_cross_entropy_forward;
    t->softmax_cross_entropy_backward = cuda_softmax_cross_entropy_backward;
    t->koleo_forward = cuda_koleo_forward;
    t->koleo_backward = cuda_koleo_backward;
    t->exp_with_temperature = cuda_exp_with_temperature;
    t->column_sums = cuda_column_sums;
    t->column_max = cuda_column_max;
    t->divide_columns = cuda_divide_columns;
    t->normalize_rows = cuda_normalize_rows;
    t->ema_update = cuda_ema_update;
    t->scatter_rows_to_bf16 = cuda_scatter_rows_to_bf16;
    t->gather_rows_from_bf16 = cuda_gather_rows_from_bf16;
    t->cast_to_bf16 = cuda_cast_to_bf16;
    t->matmul_forward_bf16 = cuda_matmul_forward_bf16;
    t->matmul_backward_bf16 = cuda_matmul_backward_bf16;
    t->layernorm_forward_bf16 = cuda_layernorm_forward_bf16;
    t->layernorm_backward_bf16 = cuda_layernorm_backward_bf16;
    t->attention_forward_bf16 = cuda_attention_forward_bf16;
    t->attention_backward_bf16 = cuda_attention_backward_bf16;
    t->gelu_forward_bf16 = cuda_gelu_forward_bf16;
    t->gelu_backward_bf16 = cuda_gelu_backward_bf16;
    t->swiglu_forward_bf16 = cuda_swiglu_forward_bf16;
    t->swiglu_backward_bf16 = cuda_swiglu_backward_bf16;
    t->layerscale_residual_forward_bf16 = cuda_layerscale_residual_forward_bf16;
    t->layerscale_residual_backward_bf16 = cuda_layerscale_residual_backward_bf16;
}

static void fill_tables(void) {
    fill_shared_entries(&the_table);
    the_table.name = "cuda";
    the_table.block_bf16 = 1;
    the_table.matmul_forward = cuda_matmul_forward_tc;
    the_table.matmul_backward = cuda_matmul_backward_tc;
    the_table.attention_forward = cuda_attention_forward_tc;
    the_table.attention_backward = cuda_attention_backward_tc;
    fill_shared_entries(&the_fp32_table);
    the_fp32_table.name = "cuda-fp32";
    the_fp32_table.block_bf16 = 0;
    the_fp32_table.matmul_forward = cuda_matmul_forward_fp32;
    the_fp32_table.matmul_backward = cuda_matmul_backward_fp32;
}

typedef struct CudaInit {
    int ok;
    char why[512];
} CudaInit;

static CudaInit initialise(void) {
    CudaInit r;
    memset(&r, 0, sizeof r);
    int count = 0;
    cudaError_t err = cudaGetDeviceCount(&count);
    if (err != cudaSuccess) {
        /* Without any NVIDIA driver the runtime reports an "insufficient"
         * driver; say what is really missing. */
        void *driver = dlopen("libcuda.so.1", RTLD_LAZY | RTLD_LOCAL);
        if (driver) dlclose(driver);
        snprintf(r.why, sizeof r.why, "no CUDA device: %s%s (cudaGetDeviceCount: %s)",
                 driver ? "" : "no NVIDIA driver (libcuda.so.1 not found); ",
                 cudaGetErrorString(err), cudaGetErrorName(err));
        cudaGetLastError(); /* clear, so later CUDA calls elsewhere do not see it */
        return r;
    }
    if (count == 0) {
        snprintf(r.why, sizeof r.why, "no CUDA device: cudaGetDeviceCount reports 0 devices");
        return r;
    }
    /* Creating the context now turns "device busy / unavailable" into a
     * clear reason here instead of an abort inside the first op. */
    err = cudaFree(0);
    if (err != cudaSuccess) {
        int device = -1;
        cudaGetDevice(&device);
        snprintf(r.why, sizeof r.why, "no usable CUDA device: creating a context on device %d: %s (%s)",
                 device, cudaGetErrorString(err), cudaGetErrorName(err));
        cudaGetLastError();
        return r;
    }
    cublasStatus_t status = cublasCreate(&the_cublas_handle);
    if (status != CUBLAS_STATUS_SUCCESS) {
        snprintf(r.why, sizeof r.why, "CUDA device present but cublasCreate failed: %s (%s)",
                 cublasGetStatusString(status), cublasGetStatusName(status));
        return r;
    }
    /* Plain fp32 sgemm for the cuBLAS calls: no TF32 tensor-core rounding,
     * so results match the CPU oracle to fp32 accuracy. (cuBLASLt ignores
     * this: its compute type is chosen per GEMM in cuda_matmul.cu.) */
    status = cublasSetMathMode(the_cublas_handle, CUBLAS_DEFAULT_MATH);
    if (status != CUBLAS_STATUS_SUCCESS) {
        snprintf(r.why, sizeof r.why, "cublasSetMathMode failed: %s", cublasGetStatusString(status));
        return r;
    }
    status = cublasLtCreate(&the_cublaslt_handle);
    if (status != CUBLAS_STATUS_SUCCESS) {
        snprintf(r.why, sizeof r.why, "CUDA device present but cublasLtCreate failed: %s (%s)",
                 cublasGetStatusString(status), cublasGetStatusName(status));
        return r;
    }
    /* The cuBLASLt workspace, once for the process (cuda_common.cuh). */
    err = cudaMalloc(&the_cublaslt_workspace, CUDA_CUBLASLT_WORKSPACE_BYTES);
    if (err != cudaSuccess) {
        snprintf(r.why, sizeof r.why, "cudaMalloc of the %d MiB cuBLASLt workspace failed: %s (%s)",
                 CUDA_CUBLASLT_WORKSPACE_BYTES >> 20, cudaGetErrorString(err), cudaGetErrorName(err));
        cudaGetLastError();
        return r;
    }
    fill_tables();
#ifdef DD_CUDA_EMULATOR
    /* Say so wherever the tables are used: nothing of this process measures
     * or exercises a GPU. */
    fprintf(stderr, "cuda: this build runs the CUDA backend on the CUDA emulator (nn/cuda/emulator): its kernels "
                    "run on the CPU, as a check of the code; no timing here says anything of a GPU\n");
#endif
    r.ok = 1;
    return r;
}

/* The shared initialisation, once per process. */
static const CudaInit *initialised(void) {
    static const CudaInit init = initialise();
    return &init;
}

static const NnBackend *table_or_reason(const NnBackend *table, char *why, size_t why_size) {
    const CudaInit *init = initialised();
    if (!init->ok) {
        if (why && why_size > 0) snprintf(why, why_size, "%s", init->why);
        return NULL;
    }
    return table;
}

const NnBackend *nn_cuda_backend(char *why, size_t why_size) {
    return table_or_reason(&the_table, why, why_size);
}

const NnBackend *nn_cuda_fp32_backend(char *why, size_t why_size) {
    return table_or_reason(&the_fp32_table, why, why_size);
}

int nn_cuda_select_device(int local_rank, int *device, char *why, size_t why_size) {
    *device = -1;
    int count = 0;
    cudaError_t err = cudaGetDeviceCount(&count);
    if (err != cudaSuccess || count == 0) {
        cudaGetLastError();
        nn_cuda_backend(why, why_size);   /* its reason says what is missing */
        return -1;
    }
    const int chosen = (local_rank < 0 ? 0 : local_rank) % count;
    err = cudaSetDevice(chosen);
    if (err != cudaSuccess) {
        if (why && why_size > 0)
            snprintf(why, why_size, "cudaSetDevice(%d) for local rank %d: %s (%s)", chosen, local_rank,
                     cudaGetErrorString(err), cudaGetErrorName(err));
        cudaGetLastError();
        return -1;
    }
    *device = chosen;
    return 0;
}

/*
 * cuda_backend.cu - the CUDA backend's entry point: finds a device, creates
 * the one cuBLAS handle, and hands out the NnBackend table whose entries
 * live in the other cuda_*.cu files (one file per op family).
 *
 * nn_cuda_backend() does its work once per process (a thread-safe function
 * static); later calls return the same table, or the same reason for NULL.
 */
#include <dlfcn.h>
#include <string.h>

#include "nn/cuda/cuda_common.cuh"

static cublasHandle_t the_cublas_handle;

cublasHandle_t cuda_cublas_handle(void) { return the_cublas_handle; }

/* The table, filled field by field (C++17 has no designated initialisers),
 * so a reordering of NnBackend cannot silently mismatch entries. */
static NnBackend the_table;

static void fill_table(NnBackend *t) {
    memset(t, 0, sizeof *t);
    t->name = "cuda";
    t->alloc = cuda_alloc;
    t->free = cuda_free;
    t->zero = cuda_zero;
    t->copy_to_device = cuda_copy_to_device;
    t->copy_to_host = cuda_copy_to_host;
    t->copy = cuda_copy;
    t->synchronize = cuda_synchronize;
    t->matmul_forward = cuda_matmul_forward;
    t->matmul_backward = cuda_matmul_backward;
    t->patchify = cuda_patchify;
    t->tokens_forward = cuda_tokens_forward;
    t->tokens_backward = cuda_tokens_backward;
    t->layernorm_forward = cuda_layernorm_forward;
    t->layernorm_backward = cuda_layernorm_backward;
    t->rope_forward = cuda_rope_forward;
    t->rope_backward = cuda_rope_backward;
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
    /* Plain fp32 sgemm: no TF32 tensor-core rounding, so results match the
     * CPU oracle to fp32 accuracy. */
    status = cublasSetMathMode(the_cublas_handle, CUBLAS_DEFAULT_MATH);
    if (status != CUBLAS_STATUS_SUCCESS) {
        snprintf(r.why, sizeof r.why, "cublasSetMathMode failed: %s", cublasGetStatusString(status));
        return r;
    }
    fill_table(&the_table);
    r.ok = 1;
    return r;
}

const NnBackend *nn_cuda_backend(char *why, size_t why_size) {
    static const CudaInit init = initialise();
    if (!init.ok) {
        if (why && why_size > 0) snprintf(why, why_size, "%s", init.why);
        return NULL;
    }
    return &the_table;
}

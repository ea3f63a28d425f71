/*
 * cuda_memory.cu - device memory for the CUDA backend: allocation (zeroed),
 * copies between host and device, synchronisation, and the scratch buffer
 * that ops use for temporaries the op API has no argument for.
 *
 * Ordering: everything runs on the legacy default stream. copy_to_host
 * returns when the data is on the host; copy_to_device returns once the
 * host buffer may be reused; zero and copy (device to device) are queued
 * behind the ops before them and ahead of the ops after them.
 */
#include "nn/cuda/cuda_common.cuh"

/* Zero-filled device memory, or NULL when the device is out of memory.
 * alloc(0) returns a valid (1-byte) allocation so that NULL always means
 * failure. */
void *cuda_alloc(size_t bytes) {
    void *ptr = NULL;
    cudaError_t err = cudaMalloc(&ptr, bytes > 0 ? bytes : 1);
    if (err != cudaSuccess) {
        cudaGetLastError(); /* out-of-memory is not sticky: clear it */
        return NULL;
    }
    CUDA_CHECK(cudaMemset(ptr, 0, bytes > 0 ? bytes : 1));
    return ptr;
}

void cuda_free(void *ptr) {
    if (ptr) CUDA_CHECK(cudaFree(ptr));
}

void cuda_zero(void *ptr, size_t bytes) {
    if (bytes == 0) return;
    CUDA_CHECK(cudaMemset(ptr, 0, bytes));
}

void cuda_copy_to_device(void *dst, const void *host_src, size_t bytes) {
    if (bytes == 0) return;
    CUDA_CHECK(cudaMemcpy(dst, host_src, bytes, cudaMemcpyHostToDevice));
}

void cuda_copy_to_host(void *host_dst, const void *src, size_t bytes) {
    if (bytes == 0) return;
    CUDA_CHECK(cudaMemcpy(host_dst, src, bytes, cudaMemcpyDeviceToHost));
}

void cuda_copy(void *dst, const void *src, size_t bytes) {
    if (bytes == 0 || dst == src) return;
    CUDA_CHECK(cudaMemcpy(dst, src, bytes, cudaMemcpyDeviceToDevice));
}

void cuda_synchronize(void) { CUDA_CHECK(cudaDeviceSynchronize()); }

/* ---- scratch -------------------------------------------------------------- */

static void *scratch_ptr;
static size_t scratch_bytes;

void *cuda_scratch(size_t bytes) {
    if (bytes <= scratch_bytes) return scratch_ptr;
    /* Wait until no queued kernel still uses the old buffer. Growth happens
     * in the first iterations only. */
    if (scratch_ptr) {
        CUDA_CHECK(cudaDeviceSynchronize());
        CUDA_CHECK(cudaFree(scratch_ptr));
    }
    scratch_ptr = NULL;
    scratch_bytes = 0;
    size_t grown = bytes + bytes / 4; /* headroom for a slightly larger next request */
    CUDA_CHECK(cudaMalloc(&scratch_ptr, grown));
    scratch_bytes = grown;
    return scratch_ptr;
}

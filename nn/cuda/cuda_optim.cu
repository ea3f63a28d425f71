/*
 * cuda_optim.cu - optimiser ops for the CUDA backend: AdamW, the sum of
 * squares (in double, for gradient norms and clipping), and scaling.
 *
 * sum_squares is deterministic: a fixed grid writes per-block partials
 * (double) to scratch, one block adds them in a fixed order, and the result
 * is copied to the host (which waits for the device: the caller needs the
 * number now).
 */
#include <math.h>

#include "nn/cuda/cuda_common.cuh"

/* AdamW on params[n] with moments m[n], v[n]; bc1 = 1 - beta1^t, bc2 = 1 - beta2^t. */
__global__ static void adamw_kernel(float *params, const float *grads, float *m, float *v, long n,
                                    float lr, float beta1, float beta2, float eps,
                                    float weight_decay, float bc1, float bc2) {
    CUDA_GRID_STRIDE_LOOP(i, n) {
        float g = grads[i];
        float mi = beta1 * m[i] + (1.0f - beta1) * g;
        float vi = beta2 * v[i] + (1.0f - beta2) * g * g;
        m[i] = mi;
        v[i] = vi;
        float p = params[i];
        float m_hat = mi / bc1;
        float v_hat = vi / bc2;
        params[i] = p - lr * (m_hat / (sqrtf(v_hat) + eps) + weight_decay * p);
    }
}

void cuda_adamw_update(float *params, const float *grads, float *m, float *v, long n, float lr,
                       float beta1, float beta2, float eps, float weight_decay, int t) {
    if (n <= 0) return;
    /* Bias corrections on the host, in double, rounded once to float. */
    float bc1 = (float)(1.0 - pow((double)beta1, (double)t));
    float bc2 = (float)(1.0 - pow((double)beta2, (double)t));
    CUDA_LAUNCH(cuda_grid_for(n), CUDA_BLOCK, 0, adamw_kernel)(params, grads, m, v, n, lr, beta1, beta2, eps,
                                                   weight_decay, bc1, bc2);
    CUDA_CHECK_LAUNCH();
}

/* ---- sum of squares ------------------------------------------------------- */

enum { SUM_SQUARES_BLOCKS = 1024 };

/* Sum of the CUDA_BLOCK values of a block, in double; the total lands in
 * thread 0. shared holds CUDA_BLOCK doubles. */
__device__ static double block_sum(double value, double *shared) {
    shared[threadIdx.x] = value;
    __syncthreads();
    for (int stride = blockDim.x / 2; stride > 0; stride >>= 1) {
        if ((int)threadIdx.x < stride) shared[threadIdx.x] += shared[threadIdx.x + stride];
        __syncthreads();
    }
    return shared[0];
}

/* partials[gridDim.x]: each block's share of sum x[i]^2. */
__global__ static void sum_squares_partial_kernel(double *partials, const float *x, long n) {
    __shared__ double shared[CUDA_BLOCK];
    double acc = 0.0;
    CUDA_GRID_STRIDE_LOOP(i, n) {
        double xi = (double)x[i];
        acc += xi * xi;
    }
    double total = block_sum(acc, shared);
    if (threadIdx.x == 0) partials[blockIdx.x] = total;
}

/* partials[count] summed by one block into partials[count]. */
__global__ static void sum_partials_kernel(double *partials, int count) {
    __shared__ double shared[CUDA_BLOCK];
    double acc = 0.0;
    for (int i = threadIdx.x; i < count; i += blockDim.x) acc += partials[i];
    double total = block_sum(acc, shared);
    if (threadIdx.x == 0) partials[count] = total;
}

double cuda_sum_squares(const float *x, long n) {
    if (n <= 0) return 0.0;
    unsigned blocks = cuda_grid_for(n);
    if (blocks > SUM_SQUARES_BLOCKS) blocks = SUM_SQUARES_BLOCKS;
    double *partials = (double *)cuda_scratch((blocks + 1) * sizeof(double));
    CUDA_LAUNCH(blocks, CUDA_BLOCK, 0, sum_squares_partial_kernel)(partials, x, n);
    CUDA_CHECK_LAUNCH();
    CUDA_LAUNCH(1, CUDA_BLOCK, 0, sum_partials_kernel)(partials, (int)blocks);
    CUDA_CHECK_LAUNCH();
    double result = 0.0;
    CUDA_CHECK(cudaMemcpy(&result, partials + blocks, sizeof result, cudaMemcpyDeviceToHost));
    return result;
}

/* ---- scale ------------------------------------------------------------------ */

__global__ static void scale_kernel(float *x, float s, long n) {
    CUDA_GRID_STRIDE_LOOP(i, n) { x[i] *= s; }
}

void cuda_scale(float *x, float s, long n) {
    if (n <= 0) return;
    CUDA_LAUNCH(cuda_grid_for(n), CUDA_BLOCK, 0, scale_kernel)(x, s, n);
    CUDA_CHECK_LAUNCH();
}

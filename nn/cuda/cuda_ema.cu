/*
 * cuda_ema.cu - the exponential moving average of parameters on the GPU
 * (semantics: nn/backend.h, oracle: nn/cpu/cpu_ema.c).
 */
#include "nn/cuda/cuda_common.cuh"

/* ema[n] = momentum * ema + (1 - momentum) * params, elementwise over n. */
__global__ static void ema_update_kernel(float *ema, const float *params, long n, float momentum) {
    const float rest = 1.0f - momentum;
    CUDA_GRID_STRIDE_LOOP(i, n) ema[i] = momentum * ema[i] + rest * params[i];
}

void cuda_ema_update(float *ema, const float *params, long n, float momentum) {
    if (n <= 0) return;
    CUDA_LAUNCH(cuda_grid_for(n), CUDA_BLOCK, 0, ema_update_kernel)(ema, params, n, momentum);
    CUDA_CHECK_LAUNCH();
}

/*
 * cpu_ema.c - the exponential moving average of parameters on the CPU
 * (the student's EMA copy, the model a run delivers).
 */
#include "nn/cpu/cpu_ops.h"

void cpu_ema_update(float *ema, const float *params, long n, float momentum) {
    const float rest = 1.0f - momentum;
    #pragma omp parallel for simd schedule(static)
    for (long i = 0; i < n; i++) ema[i] = momentum * ema[i] + rest * params[i];
}

/*
 * cpu_optim.c - AdamW, sums of squares and scaling on the CPU.
 */
#include <math.h>

#include "nn/cpu/cpu_ops.h"

void cpu_adamw_update(float *params, const float *grads, float *m, float *v, long n, float lr,
                      float beta1, float beta2, float eps, float weight_decay, int t) {
    const float correction1 = 1.0f - powf(beta1, (float)t);
    const float correction2 = 1.0f - powf(beta2, (float)t);
    #pragma omp parallel for simd schedule(static)
    for (long i = 0; i < n; i++) {
        float g = grads[i];
        float mi = beta1 * m[i] + (1.0f - beta1) * g;
        float vi = beta2 * v[i] + (1.0f - beta2) * g * g;
        m[i] = mi;
        v[i] = vi;
        float update = (mi / correction1) / (sqrtf(vi / correction2) + eps);
        params[i] -= lr * (update + weight_decay * params[i]);
    }
}

double cpu_sum_squares(const float *x, long n) {
    double sum = 0.0;
    #pragma omp parallel for simd reduction(+ : sum) schedule(static)
    for (long i = 0; i < n; i++) sum += (double)x[i] * x[i];
    return sum;
}

void cpu_scale(float *x, float s, long n) {
    #pragma omp parallel for simd schedule(static)
    for (long i = 0; i < n; i++) x[i] *= s;
}

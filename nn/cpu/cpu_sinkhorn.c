/*
 * cpu_sinkhorn.c - the building blocks of Sinkhorn-Knopp centering on the
 * CPU: column maxima and sums (reduced over a student group by the
 * caller), tempered exponentials of the teacher's prototype scores, and the
 * column and row normalisations. Scores are [M, K]: M samples, K prototypes.
 */
#include <math.h>

#include "nn/cpu/cpu_math.h"
#include "nn/cpu/cpu_ops.h"

enum { COLUMN_BLOCK = 256 };   /* columns one thread sums at a time */

void cpu_exp_with_temperature(float *out, const float *inp, const float *shift, int M, int K,
                              float temperature) {
    const float inverse_temperature = 1.0f / temperature;
    #pragma omp parallel for schedule(static)
    for (int m = 0; m < M; m++) {
        const float *x = inp + (long)m * K;
        float *y = out + (long)m * K;
        if (shift) {
            #pragma omp simd
            for (int k = 0; k < K; k++) y[k] = cpu_expf((x[k] - shift[k]) * inverse_temperature);
        } else {
            #pragma omp simd
            for (int k = 0; k < K; k++) y[k] = cpu_expf(x[k] * inverse_temperature);
        }
    }
}

void cpu_column_sums(float *sums, const float *x, int M, int K) {
    #pragma omp parallel for schedule(static)
    for (int k0 = 0; k0 < K; k0 += COLUMN_BLOCK) {
        const int k1 = k0 + COLUMN_BLOCK < K ? k0 + COLUMN_BLOCK : K;
        double block[COLUMN_BLOCK] = {0};
        for (int m = 0; m < M; m++) {
            const float *row = x + (long)m * K;
            #pragma omp simd
            for (int k = k0; k < k1; k++) block[k - k0] += row[k];
        }
        for (int k = k0; k < k1; k++) sums[k] = (float)block[k - k0];
    }
}

void cpu_column_max(float *maxes, const float *x, int M, int K) {
    #pragma omp parallel for schedule(static)
    for (int k0 = 0; k0 < K; k0 += COLUMN_BLOCK) {
        const int k1 = k0 + COLUMN_BLOCK < K ? k0 + COLUMN_BLOCK : K;
        for (int k = k0; k < k1; k++) maxes[k] = -INFINITY;
        for (int m = 0; m < M; m++) {
            const float *row = x + (long)m * K;
            #pragma omp simd
            for (int k = k0; k < k1; k++) maxes[k] = fmaxf(maxes[k], row[k]);
        }
    }
}

void cpu_divide_columns(float *x, const float *divisors, int M, int K) {
    #pragma omp parallel for schedule(static)
    for (int m = 0; m < M; m++) {
        float *row = x + (long)m * K;
        #pragma omp simd
        for (int k = 0; k < K; k++) row[k] = divisors[k] != 0.0f ? row[k] / divisors[k] : 0.0f;
    }
}

void cpu_normalize_rows(float *x, int M, int K) {
    #pragma omp parallel for schedule(static)
    for (int m = 0; m < M; m++) {
        float *row = x + (long)m * K;
        double sum = 0.0;
        #pragma omp simd reduction(+ : sum)
        for (int k = 0; k < K; k++) sum += row[k];
        if (sum == 0.0) continue;
        const float total = (float)sum;
        #pragma omp simd
        for (int k = 0; k < K; k++) row[k] /= total;
    }
}

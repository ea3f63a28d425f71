/*
 * cpu_loss.c - the loss ops of the distillation objective on the CPU:
 * softmax cross-entropy with temperature against teacher distributions
 * (DINO and iBOT), and the KoLeo spreading term.
 *
 * Cross-entropy rows can hold 262,144 prototype scores: each row is read a
 * few times (max, sum of exponentials, dot products with the targets) and
 * nothing of size [N, K] is allocated. Sums run in double.
 */
#include <math.h>

#include "nn/cpu/cpu_math.h"
#include "nn/cpu/cpu_ops.h"

/* Row of targets that row n's r-th comparison uses. */
static const float *target_row(const float *targets, const int32_t *target_rows, int n, int r,
                               int R, int K) {
    const long row = target_rows ? target_rows[(long)n * R + r] : n;
    return targets + row * K;
}

/* logsumexp(x[K] * inverse_temperature), with the maximum taken out. */
static float row_logsumexp(const float *x, int K, float inverse_temperature) {
    float max = -INFINITY;
    #pragma omp simd reduction(max : max)
    for (int k = 0; k < K; k++) max = fmaxf(max, x[k]);
    double sum = 0.0;
    #pragma omp simd reduction(+ : sum)
    for (int k = 0; k < K; k++) sum += cpu_expf((x[k] - max) * inverse_temperature);
    return max * inverse_temperature + (float)log(sum);
}

void cpu_softmax_cross_entropy_forward(float *loss, float *lse, const float *logits,
                                       const float *targets, const int32_t *target_rows,
                                       int N, int K, int R, float temperature) {
    const float inverse_temperature = 1.0f / temperature;
    #pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++) {
        const float *x = logits + (long)n * K;
        const float row_lse = row_logsumexp(x, K, inverse_temperature);
        /* - sum_k t_k (x_k / T - lse) = lse * sum_k t_k - (sum_k t_k x_k) / T */
        double total = 0.0;
        for (int r = 0; r < R; r++) {
            const float *t = target_row(targets, target_rows, n, r, R, K);
            double dot = 0.0, mass = 0.0;
            #pragma omp simd reduction(+ : dot, mass)
            for (int k = 0; k < K; k++) {
                dot += (double)t[k] * x[k];
                mass += t[k];
            }
            total += (double)row_lse * mass - dot * inverse_temperature;
        }
        loss[n] = (float)total;
        lse[n] = row_lse;
    }
}

void cpu_softmax_cross_entropy_backward(float *dlogits, const float *dloss, const float *logits,
                                        const float *targets, const int32_t *target_rows,
                                        const float *lse, int N, int K, int R, float temperature) {
    const float inverse_temperature = 1.0f / temperature;
    #pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++) {
        const float *x = logits + (long)n * K;
        float *dx = dlogits + (long)n * K;
        const float scale = dloss[n] * inverse_temperature;
        double mass = 0.0;   /* sum_r sum_k t_r[k]: 1 per target for distributions */
        for (int r = 0; r < R; r++) {
            const float *t = target_row(targets, target_rows, n, r, R, K);
            #pragma omp simd reduction(+ : mass)
            for (int k = 0; k < K; k++) mass += t[k];
        }
        const float softmax_scale = scale * (float)mass, row_lse = lse[n];
        #pragma omp simd
        for (int k = 0; k < K; k++)
            dx[k] += softmax_scale * cpu_expf(x[k] * inverse_temperature - row_lse);
        for (int r = 0; r < R; r++) {
            const float *t = target_row(targets, target_rows, n, r, R, K);
            #pragma omp simd
            for (int k = 0; k < K; k++) dx[k] -= scale * t[k];
        }
    }
}

/* The distance torch.nn.PairwiseDistance(p=2, eps) measures: ||a - b + eps||. */
static double pair_distance(const float *a, const float *b, int C, float eps) {
    double sum = 0.0;
    #pragma omp simd reduction(+ : sum)
    for (int c = 0; c < C; c++) {
        double d = (double)a[c] - b[c] + eps;
        sum += d * d;
    }
    return sqrt(sum);
}

void cpu_koleo_forward(float *loss, int32_t *neighbor, const float *inp, int N, int C, float eps) {
    #pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++) {
        const float *x = inp + (long)n * C;
        double best = -INFINITY;
        int nearest = n == 0 ? 1 : 0;
        for (int j = 0; j < N; j++) {
            if (j == n) continue;
            const float *y = inp + (long)j * C;
            double dot = 0.0;
            #pragma omp simd reduction(+ : dot)
            for (int c = 0; c < C; c++) dot += (double)x[c] * y[c];
            if (dot > best) {
                best = dot;
                nearest = j;
            }
        }
        neighbor[n] = nearest;
        loss[n] = (float)-log(pair_distance(x, inp + (long)nearest * C, C, eps) + eps);
    }
}

void cpu_koleo_backward(float *dinp, const float *dloss, const float *inp, const int32_t *neighbor,
                        int N, int C, float eps) {
    /* a row can be the neighbour of several others: one pair at a time */
    for (int n = 0; n < N; n++) {
        const int j = neighbor[n];
        const float *x = inp + (long)n * C, *y = inp + (long)j * C;
        const double distance = pair_distance(x, y, C, eps);
        if (distance == 0.0) continue;   /* no direction to move in */
        /* d/dx of -log(d + eps) = -(x - y + eps) / (d (d + eps)) */
        const float scale = (float)(-dloss[n] / (distance * (distance + eps)));
        float *dx = dinp + (long)n * C, *dy = dinp + (long)j * C;
        for (int c = 0; c < C; c++) {
            const float g = scale * (x[c] - y[c] + eps);
            dx[c] += g;
            dy[c] -= g;
        }
    }
}

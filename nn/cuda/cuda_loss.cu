/*
 * cuda_loss.cu - the loss ops of the distillation objective on the GPU
 * (semantics: nn/backend.h, oracle: nn/cpu/cpu_loss.c): softmax
 * cross-entropy with temperature against teacher distributions (DINO,
 * iBOT), and the KoLeo spreading term.
 *
 * Cross-entropy: one block per row of K prototype scores (K up to 262,144),
 * nothing of size [N, K] allocated. The forward reads the row once for an
 * online maximum and sum of exponentials (each thread keeps its own running
 * pair, rescaling its sum when its maximum grows; the block then merges the
 * pairs), then once per target row for the dot products. Sums in double.
 *
 * KoLeo: N is a per-rank batch (tens to hundreds of rows), so both kernels
 * are O(N^2 C) and deterministic: the backward does not use atomics; each
 * gradient element walks the pairs in the CPU's order.
 */
#include <math.h>

#include "nn/cuda/cuda_common.cuh"

/* Row of targets that row n's r-th comparison uses (as cpu_loss.c). */
__device__ __forceinline__ const float *target_row(const float *targets, const int32_t *target_rows,
                                                   long n, int r, int R, int K) {
    const long row = target_rows ? target_rows[n * R + r] : n;
    return targets + row * K;
}

/* logsumexp(x[K] * inverse_temperature) of one row, returned to every thread
 * of the block: per-thread online (max, sum relative to max), then merged. */
__device__ static float block_row_logsumexp(const float *x, int K, float inverse_temperature) {
    float max = -INFINITY;
    double sum = 0.0;   /* of exp((x - max) / T) over this thread's elements */
    for (int k = threadIdx.x; k < K; k += blockDim.x) {
        const float v = x[k];
        if (v > max) {
            sum = sum * (double)expf((max - v) * inverse_temperature) + 1.0;
            max = v;
        } else {
            sum += (double)expf((v - max) * inverse_temperature);
        }
    }
    const float row_max = block_max_float(max);
    /* a thread without elements has sum 0 and max -inf: contributes 0 */
    const double rescaled = sum == 0.0 ? 0.0 : sum * (double)expf((max - row_max) * inverse_temperature);
    const double row_sum = block_sum_double(rescaled);
    return row_max * inverse_temperature + (float)log(row_sum);
}

/* Block n: loss[n] = sum_r (lse * sum_k t_r[k] - (sum_k t_r[k] x[k]) / T), lse[n].
 * logits[N, K], targets[M, K], target_rows[N, R] or NULL. */
__global__ static void softmax_cross_entropy_forward_kernel(float *loss, float *lse, const float *logits,
                                                            const float *targets,
                                                            const int32_t *target_rows, int K, int R,
                                                            float inverse_temperature) {
    const long n = blockIdx.x;
    const float *x = logits + n * K;
    const float row_lse = block_row_logsumexp(x, K, inverse_temperature);
    double total = 0.0;
    for (int r = 0; r < R; r++) {
        const float *t = target_row(targets, target_rows, n, r, R, K);
        double dot = 0.0, mass = 0.0;
        for (int k = threadIdx.x; k < K; k += blockDim.x) {
            dot += (double)t[k] * x[k];
            mass += t[k];
        }
        dot = block_sum_double(dot);
        mass = block_sum_double(mass);
        total += (double)row_lse * mass - dot * inverse_temperature;
    }
    if (threadIdx.x == 0) {
        loss[n] = (float)total;
        lse[n] = row_lse;
    }
}

void cuda_softmax_cross_entropy_forward(float *loss, float *lse, const float *logits,
                                        const float *targets, const int32_t *target_rows,
                                        int N, int K, int R, float temperature) {
    if (N <= 0) return;
    CUDA_LAUNCH((unsigned)N, CUDA_BLOCK, 0, softmax_cross_entropy_forward_kernel)(
        loss, lse, logits, targets, target_rows, K, R, 1.0f / temperature);
    CUDA_CHECK_LAUNCH();
}

/* Block n: dlogits[n, k] += s * mass * exp(x[k] / T - lse) - s * sum_r t_r[k],
 * s = dloss[n] / T, mass = sum_r sum_k t_r[k]. */
__global__ static void softmax_cross_entropy_backward_kernel(float *dlogits, const float *dloss,
                                                             const float *logits, const float *targets,
                                                             const int32_t *target_rows, const float *lse,
                                                             int K, int R, float inverse_temperature) {
    const long n = blockIdx.x;
    const float *x = logits + n * K;
    float *dx = dlogits + n * K;
    const float scale = dloss[n] * inverse_temperature;
    double mass = 0.0;
    for (int r = 0; r < R; r++) {
        const float *t = target_row(targets, target_rows, n, r, R, K);
        for (int k = threadIdx.x; k < K; k += blockDim.x) mass += t[k];
    }
    mass = block_sum_double(mass);
    const float softmax_scale = scale * (float)mass, row_lse = lse[n];
    for (int k = threadIdx.x; k < K; k += blockDim.x) {
        float g = dx[k] + softmax_scale * expf(x[k] * inverse_temperature - row_lse);
        for (int r = 0; r < R; r++) g -= scale * target_row(targets, target_rows, n, r, R, K)[k];
        dx[k] = g;
    }
}

void cuda_softmax_cross_entropy_backward(float *dlogits, const float *dloss, const float *logits,
                                         const float *targets, const int32_t *target_rows,
                                         const float *lse, int N, int K, int R, float temperature) {
    if (N <= 0) return;
    CUDA_LAUNCH((unsigned)N, CUDA_BLOCK, 0, softmax_cross_entropy_backward_kernel)(
        dlogits, dloss, logits, targets, target_rows, lse, K, R, 1.0f / temperature);
    CUDA_CHECK_LAUNCH();
}

/* ||a - b + eps||_2 of two rows of C values, returned to every thread of the
 * block (torch.nn.PairwiseDistance(p=2, eps)). */
__device__ static double block_pair_distance(const float *a, const float *b, int C, float eps) {
    double sum = 0.0;
    for (int c = threadIdx.x; c < C; c += blockDim.x) {
        const double d = (double)a[c] - b[c] + eps;
        sum += d * d;
    }
    return sqrt(block_sum_double(sum));
}

/* Block n: neighbor[n] = the other row of largest inner product (the first on
 * ties), loss[n] = -log(distance + eps). Warp w scores rows j = w, w + warps, ...
 * (lanes over C); the warps' winners are merged by thread 0. inp[N, C]. */
__global__ static void koleo_forward_kernel(float *loss, int32_t *neighbor, const float *inp, int N, int C,
                                            float eps) {
    __shared__ double warp_best[32];
    __shared__ int warp_nearest[32];
    __shared__ int nearest_row;
    const int n = blockIdx.x;
    const int lane = threadIdx.x % CUDA_WARP, warp = threadIdx.x / CUDA_WARP;
    const int warps = blockDim.x / CUDA_WARP;
    const float *x = inp + (long)n * C;
    double best = -INFINITY;
    int nearest = -1;   /* none yet: the CPU keeps only dots > -infinity */
    for (int j = warp; j < N; j += warps) {
        if (j == n) continue;
        const float *y = inp + (long)j * C;
        double dot = 0.0;
        for (int c = lane; c < C; c += CUDA_WARP) dot += (double)x[c] * y[c];
        dot = warp_sum_double(dot);
        if (dot > best) {   /* j grows within a warp: strict keeps the first */
            best = dot;
            nearest = j;
        }
    }
    if (lane == 0) {
        warp_best[warp] = best;
        warp_nearest[warp] = nearest;
    }
    __syncthreads();
    if (threadIdx.x == 0) {
        double top = -INFINITY;
        int chosen = n == 0 ? 1 : 0;   /* the CPU's default when no dot beats -infinity */
        int found = 0;
        for (int w = 0; w < warps; w++) {
            const int j = warp_nearest[w];
            if (j < 0) continue;
            if (!found || warp_best[w] > top || (warp_best[w] == top && j < chosen)) {
                top = warp_best[w];
                chosen = j;
                found = 1;
            }
        }
        nearest_row = chosen;
        neighbor[n] = chosen;
    }
    __syncthreads();
    const double distance = block_pair_distance(x, inp + (long)nearest_row * C, C, eps);
    if (threadIdx.x == 0) loss[n] = (float)-log(distance + eps);
}

void cuda_koleo_forward(float *loss, int32_t *neighbor, const float *inp, int N, int C, float eps) {
    if (N < 2) return;
    CUDA_LAUNCH((unsigned)N, CUDA_BLOCK, 0, koleo_forward_kernel)(loss, neighbor, inp, N, C, eps);
    CUDA_CHECK_LAUNCH();
}

/* Block n: pair_scale[n] = -dloss[n] / (d (d + eps)) with d the distance of
 * row n to its neighbour, 0 when d = 0 (no direction to move in). */
__global__ static void koleo_pair_scale_kernel(float *pair_scale, const float *dloss, const float *inp,
                                               const int32_t *neighbor, int C, float eps) {
    const int n = blockIdx.x;
    const double distance = block_pair_distance(inp + (long)n * C, inp + (long)neighbor[n] * C, C, eps);
    if (threadIdx.x == 0)
        pair_scale[n] = distance == 0.0 ? 0.0f : (float)(-dloss[n] / (distance * (distance + eps)));
}

/* Element (i, c) of dinp[N, C]: walks the pairs (n, neighbor[n]) in order,
 * adding g = pair_scale[n] (inp[n, c] - inp[neighbor[n], c] + eps) when i = n
 * and subtracting it when i = neighbor[n], as the CPU does pair by pair. */
__global__ static void koleo_backward_kernel(float *dinp, const float *pair_scale, const float *inp,
                                             const int32_t *neighbor, int N, int C, float eps) {
    CUDA_GRID_STRIDE_LOOP(e, (long)N * C) {
        const int i = (int)(e / C), c = (int)(e % C);
        float acc = dinp[e];
        for (int n = 0; n < N; n++) {
            const int j = neighbor[n];
            if ((n != i && j != i) || pair_scale[n] == 0.0f) continue;
            const float g = pair_scale[n] * (inp[(long)n * C + c] - inp[(long)j * C + c] + eps);
            if (n == i) acc += g;
            else acc -= g;
        }
        dinp[e] = acc;
    }
}

void cuda_koleo_backward(float *dinp, const float *dloss, const float *inp, const int32_t *neighbor,
                         int N, int C, float eps) {
    if (N <= 0 || C <= 0) return;
    float *pair_scale = (float *)cuda_scratch((size_t)N * sizeof(float));
    CUDA_LAUNCH((unsigned)N, CUDA_BLOCK, 0, koleo_pair_scale_kernel)(pair_scale, dloss, inp, neighbor, C, eps);
    CUDA_CHECK_LAUNCH();
    CUDA_LAUNCH(cuda_grid_for((long)N * C), CUDA_BLOCK, 0, koleo_backward_kernel)(dinp, pair_scale, inp, neighbor,
                                                                     N, C, eps);
    CUDA_CHECK_LAUNCH();
}

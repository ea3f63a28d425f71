/*
 * device_timing.c - random device buffers, medians and the sgemm ceiling
 * (see device_timing.h).
 */
#include "tools/device_timing.h"

#include <math.h>
#include <stdlib.h>

#include "nn/clock.h"
#include "nn/random.h"

float *device_random_buffer(const NnBackend *be, size_t count, uint64_t seed, float scale) {
    float *host = malloc(count * sizeof(float));
    float *device = be->alloc(count * sizeof(float));
    if (!host || !device) {
        free(host);
        if (device) be->free(device);
        return NULL;
    }
    DdRandom rng = dd_random_seed(seed, 0);
    for (size_t i = 0; i < count; i++) host[i] = (float)(scale * dd_random_normal(&rng));
    be->copy_to_device(device, host, count * sizeof(float));
    free(host);
    return device;
}

static int compare_doubles(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

double median_of(double *values, int n) {
    qsort(values, (size_t)n, sizeof *values, compare_doubles);
    return n % 2 ? values[n / 2] : 0.5 * (values[n / 2 - 1] + values[n / 2]);
}

double sgemm_ceiling_gflops(const NnBackend *be, int N, int C, int OC, int runs) {
    float *a = device_random_buffer(be, (size_t)N * C, 1, 1.0f);
    float *w = device_random_buffer(be, (size_t)OC * C, 2, 1.0f);
    float *out = be->alloc((size_t)N * OC * sizeof(float));
    double best = INFINITY;
    for (int i = 0; a && w && out && i < runs; i++) {
        be->synchronize();
        double t0 = dd_now_seconds();
        be->matmul_forward(out, a, w, NULL, N, C, OC);
        be->synchronize();
        best = fmin(best, dd_now_seconds() - t0);
    }
    if (a) be->free(a);
    if (w) be->free(w);
    if (out) be->free(out);
    return isfinite(best) ? 2.0 * N * C * OC / best * 1e-9 : 0.0;
}

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

int sgemm_probe_alloc(SgemmProbe *probe, const NnBackend *be, int N, int C, int OC) {
    *probe = (SgemmProbe){.be = be, .N = N, .C = C, .OC = OC};
    probe->inp = device_random_buffer(be, (size_t)N * C, 1, 1.0f);
    probe->weight = device_random_buffer(be, (size_t)OC * C, 2, 1.0f);
    probe->out = be->alloc((size_t)N * OC * sizeof(float));
    if (!probe->inp || !probe->weight || !probe->out) {
        sgemm_probe_free(probe);
        return -1;
    }
    if (!be->block_bf16) return 0;
    probe->inp_bf16 = be->alloc((size_t)N * C * sizeof(uint16_t));
    probe->weight_bf16 = be->alloc((size_t)OC * C * sizeof(uint16_t));
    probe->out_bf16 = be->alloc((size_t)N * OC * sizeof(uint16_t));
    if (!probe->inp_bf16 || !probe->weight_bf16 || !probe->out_bf16) {
        sgemm_probe_free(probe);
        return -1;
    }
    be->cast_to_bf16(probe->inp_bf16, probe->inp, (long)N * C);
    be->cast_to_bf16(probe->weight_bf16, probe->weight, (long)OC * C);
    return 0;
}

double sgemm_probe_gflops(const SgemmProbe *p, int runs) {
    double best = INFINITY;
    for (int i = 0; p->out && i < runs; i++) {
        p->be->synchronize();
        double t0 = dd_now_seconds();
        if (p->out_bf16)
            p->be->matmul_forward_bf16(p->out_bf16, p->inp_bf16, p->weight_bf16, NULL, p->N, p->C, p->OC);
        else
            p->be->matmul_forward(p->out, p->inp, p->weight, NULL, p->N, p->C, p->OC);
        p->be->synchronize();
        best = fmin(best, dd_now_seconds() - t0);
    }
    return isfinite(best) ? 2.0 * p->N * p->C * p->OC / best * 1e-9 : 0.0;
}

void sgemm_probe_free(SgemmProbe *p) {
    if (p->inp) p->be->free(p->inp);
    if (p->weight) p->be->free(p->weight);
    if (p->out) p->be->free(p->out);
    void *bf16[] = {p->inp_bf16, p->weight_bf16, p->out_bf16};
    for (size_t i = 0; i < sizeof bf16 / sizeof bf16[0]; i++)
        if (bf16[i]) p->be->free(bf16[i]);
    p->inp = p->weight = p->out = NULL;
    p->inp_bf16 = p->weight_bf16 = p->out_bf16 = NULL;
}

double sgemm_ceiling_gflops(const NnBackend *be, int N, int C, int OC, int runs) {
    SgemmProbe probe;
    if (sgemm_probe_alloc(&probe, be, N, C, OC)) return 0.0;
    double gflops = sgemm_probe_gflops(&probe, runs);
    sgemm_probe_free(&probe);
    return gflops;
}

/*
 * device_timing.h - what timing code on a backend shares: random inputs on
 * the device, the median of repeated runs, and the sgemm ceiling (the best
 * rate of one large matmul), so that a model's rate can be read as a
 * fraction of what the matmul reaches in the same run. Used by `distill
 * bench` and the planner's calibration (tools/calibrate.h).
 */
#ifndef DD_TOOLS_DEVICE_TIMING_H
#define DD_TOOLS_DEVICE_TIMING_H

#include <stddef.h>
#include <stdint.h>

#include "nn/backend.h"

/* count floats on the device, normal with standard deviation scale, drawn
 * from seed on the host; NULL when out of memory. Free with be->free. */
float *device_random_buffer(const NnBackend *be, size_t count, uint64_t seed, float scale);

/* The median of values[0 .. n-1] (sorts them in place); n >= 1. */
double median_of(double *values, int n);

/* The sgemm ceiling in GFLOP/s: the best of `runs` repetitions of
 * out[N, OC] = inp[N, C] @ W[OC, C]^T on the backend (the best, not the
 * median, makes it a ceiling: fractions of it are then conservative);
 * 0 when out of memory. */
double sgemm_ceiling_gflops(const NnBackend *be, int N, int C, int OC, int runs);

/* The same matmul kept allocated, to sample the ceiling several times in a
 * run: alloc (0, or -1 when out of memory), then sgemm_probe_gflops as often
 * as wanted, then free. */
/* The probe multiplies as the model's blocks do: fp32 operands through
 * matmul_forward, or, on a backend that keeps blocks in bf16, bf16 copies
 * of them through matmul_forward_bf16 (the ceiling the model's GEMMs can
 * reach there). */
typedef struct SgemmProbe {
    const NnBackend *be;
    int N, C, OC;
    float *inp, *weight, *out;    /* [N, C], [OC, C], [N, OC] */
    uint16_t *inp_bf16, *weight_bf16, *out_bf16;   /* the same in bf16, block_bf16 only */
} SgemmProbe;

int sgemm_probe_alloc(SgemmProbe *probe, const NnBackend *be, int N, int C, int OC);
double sgemm_probe_gflops(const SgemmProbe *probe, int runs);
void sgemm_probe_free(SgemmProbe *probe);

#endif

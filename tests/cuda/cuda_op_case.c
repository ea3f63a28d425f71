/*
 * cuda_op_case.c - the shared machinery of the op tests (see cuda_op_case.h).
 */
#include "tests/cuda/cuda_op_case.h"

#include <stdio.h>
#include <stdlib.h>

/* ---- allocations of one case, freed together -------------------------------- */

enum { MAX_ALLOCS = 64 };
static void *host_allocs[MAX_ALLOCS];
static int host_count;
static void *device_allocs[MAX_ALLOCS];
static int device_count;

void *host_alloc(size_t bytes) {
    void *p = calloc(1, bytes > 0 ? bytes : 1);
    if (!p || host_count == MAX_ALLOCS) {
        fprintf(stderr, "cuda op test: out of host memory or MAX_ALLOCS\n");
        exit(2);
    }
    host_allocs[host_count++] = p;
    return p;
}

void release_with_case(void *device) {
    if (device_count == MAX_ALLOCS) {
        fprintf(stderr, "cuda op test: more than MAX_ALLOCS device allocations\n");
        exit(2);
    }
    device_allocs[device_count++] = device;
}

void release_all(const NnBackend *gpu) {
    for (int i = 0; i < host_count; i++) free(host_allocs[i]);
    for (int i = 0; i < device_count; i++) gpu->free(device_allocs[i]);
    host_count = device_count = 0;
}

/* ---- random inputs ------------------------------------------------------------ */

static uint64_t rng = 0x9E3779B97F4A7C15ull;

uint64_t next_u64(void) { /* splitmix64 */
    uint64_t z = (rng += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}
/* Uniform in [lo, hi). */
float uniform(float lo, float hi) {
    return lo + (hi - lo) * (float)((next_u64() >> 40) * (1.0 / 16777216.0));
}

/* n floats uniform in [lo, hi), on the host. */
float *random_host(long n, float lo, float hi) {
    float *p = host_alloc((size_t)n * sizeof(float));
    for (long i = 0; i < n; i++) p[i] = uniform(lo, hi);
    return p;
}
/* Device memory holding a copy of host[bytes]. */
void *to_device(const NnBackend *gpu, const void *host, size_t bytes) {
    void *d = gpu->alloc(bytes);
    if (!d) {
        fprintf(stderr, "cuda op test: device alloc of %zu bytes failed\n", bytes);
        exit(2);
    }
    release_with_case(d);
    gpu->copy_to_device(d, host, bytes);
    return d;
}
float *to_device_f(const NnBackend *gpu, const float *host, long n) {
    return to_device(gpu, host, (size_t)n * sizeof(float));
}
/* Relative error of device[n] against the CPU result ref[n]. */
double device_error(const NnBackend *gpu, const float *device, const float *ref, long n) {
    float *back = host_alloc((size_t)n * sizeof(float));
    gpu->copy_to_host(back, device, (size_t)n * sizeof(float));
    return test_relative_error_ff(back, ref, n);
}

/* n int32 indices uniform in [0, limit), on the host. */
int32_t *random_indices(long n, int limit) {
    int32_t *p = host_alloc((size_t)n * sizeof(int32_t));
    for (long i = 0; i < n; i++) p[i] = (int32_t)(next_u64() % (uint64_t)limit);
    return p;
}
int32_t *to_device_i(const NnBackend *gpu, const int32_t *host, long n) {
    return to_device(gpu, host, (size_t)n * sizeof(int32_t));
}

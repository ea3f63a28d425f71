/*
 * cuda_op_case.h - what the op tests of tests/cuda share: the tolerances,
 * the backend under test, the allocations of one case (freed together),
 * random inputs, copies to the device, and the comparison with the CPU.
 *
 * Tolerances are relative: max|cuda - cpu| / max|cpu|.
 *   TOL       1e-5: elementwise ops and short reductions; both sides round
 *             in fp32, differing at most by a few ulps per value.
 *   TOL_LONG  1e-4: sums over long rows (sgemm with a long inner
 *             dimension, column sums over thousands of rows). The CPU and
 *             the GPU add in different orders (OpenBLAS blocks vs cuBLAS
 *             tiles, a sequential loop vs a tree), and the rounding error of
 *             a K-term fp32 sum grows like sqrt(K) eps of the terms, more
 *             relative to a result that cancels.
 *   TOL_BF16  1e-2: the "cuda" table's GEMMs round every input to bf16
 *             (8-bit mantissa: relative error up to 2^-9 ~ 2e-3 per
 *             factor); each product of rounded inputs is exact in fp32 and
 *             the sum is fp32, so a product is off by up to ~4e-3 of its
 *             size. A K-term sum of such errors of random sign grows like
 *             sqrt(K), as the result itself does: for uniform inputs the
 *             error is ~2e-3 of the largest value whatever K, so 1e-2 leaves
 *             a margin of ~5 and still fails a wrong transpose or a lost
 *             bias (errors of order 1).
 */
#ifndef DD_TESTS_CUDA_CUDA_OP_CASE_H
#define DD_TESTS_CUDA_CUDA_OP_CASE_H

#include <stddef.h>
#include <stdint.h>

#include "nn/backend.h"
#include "tests/cuda/cuda_table.h"
#include "tests/test.h"

#define TOL 1e-5
#define TOL_LONG 1e-4
#define TOL_BF16 1e-2

/* The exact fp32 table: every case compared with the CPU at fp32 accuracy. */
#define REQUIRE_CUDA(gpu) REQUIRE_CUDA_TABLE(gpu, FP32_TABLE)

/* The oracle. */
static const NnBackend *const cpu = &nn_cpu_backend;

/* Zeroed host memory, freed by release_all; exits on failure. */
void *host_alloc(size_t bytes);
/* Device memory the case allocated itself, freed by release_all too. */
void release_with_case(void *device);
/* Frees every host and device allocation of the case. */
void release_all(const NnBackend *gpu);

/* splitmix64, one stream for the whole test. */
uint64_t next_u64(void);
/* Uniform in [lo, hi). */
float uniform(float lo, float hi);
/* n floats uniform in [lo, hi), on the host. */
float *random_host(long n, float lo, float hi);
/* n int32 indices uniform in [0, limit), on the host. */
int32_t *random_indices(long n, int limit);

/* Device memory holding a copy of host[bytes] (freed by release_all). */
void *to_device(const NnBackend *gpu, const void *host, size_t bytes);
float *to_device_f(const NnBackend *gpu, const float *host, long n);
int32_t *to_device_i(const NnBackend *gpu, const int32_t *host, long n);

/* Relative error of device[n] against the CPU result ref[n]. */
double device_error(const NnBackend *gpu, const float *device, const float *ref, long n);

#define CHECK_CLOSE(gpu, dev, ref, n, tol)                                       \
    do {                                                                         \
        double err_ = device_error(gpu, dev, ref, n);                            \
        CHECK(err_ <= (tol), "%s: relative error %.3g > %.0e", #dev, err_, (double)(tol)); \
    } while (0)

#endif

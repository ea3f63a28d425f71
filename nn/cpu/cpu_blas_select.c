/*
 * cpu_blas_select.c - making OpenBLAS use the kernels this CPU supports.
 *
 * OpenBLAS picks its kernels from the CPUID model number when the library
 * loads. Under a hypervisor that reports an unknown model it falls back to
 * the oldest x86-64 kernels ("Prescott"), which run sgemm 5-8x slower on a
 * CPU with AVX-512. The choice can only be overridden through the
 * environment before the library loads, so when the detected kernels are
 * generic but the CPU has AVX-512 (or AVX2), the process sets
 * OPENBLAS_CORETYPE and re-executes itself once. A user's own
 * OPENBLAS_CORETYPE is always respected.
 */
#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "nn/backend.h"

static const char *best_core_for_this_cpu(void) {
#if defined(__x86_64__)
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw")) return "SkylakeX";
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return "Haswell";
#endif
    return NULL;
}

void nn_cpu_select_blas_kernels(char **argv) {
    if (getenv("OPENBLAS_CORETYPE") || getenv("DD_BLAS_REEXECUTED")) return;
    const char *detected = openblas_get_corename();
    const char *best = best_core_for_this_cpu();
    if (!best || !detected || strcasecmp(detected, "Prescott") != 0) return;
    setenv("OPENBLAS_CORETYPE", best, 1);
    setenv("DD_BLAS_REEXECUTED", "1", 1);
    execv("/proc/self/exe", argv);
    /* exec failed: go on with the generic kernels, slower but correct */
    unsetenv("OPENBLAS_CORETYPE");
}

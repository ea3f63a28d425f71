/*
 * cpu_memory.c - host memory for the CPU backend: 64-byte aligned, zeroed.
 */
#include <stdlib.h>
#include <string.h>

#include "nn/cpu/cpu_ops.h"

void *cpu_alloc(size_t bytes) {
    void *ptr = NULL;
    size_t rounded = (bytes + 63) & ~(size_t)63;
    if (posix_memalign(&ptr, 64, rounded ? rounded : 64) != 0) return NULL;
    memset(ptr, 0, rounded);
    return ptr;
}

void cpu_free(void *ptr) { free(ptr); }

/* Large buffers are cleared by all threads: the backward clears about a
 * gigabyte per ViT-S step. */
void cpu_zero(void *ptr, size_t bytes) {
    const size_t chunk = (size_t)1 << 18;
    if (bytes < 4 * chunk) {
        memset(ptr, 0, bytes);
        return;
    }
    const long chunks = (long)((bytes + chunk - 1) / chunk);
    #pragma omp parallel for schedule(static)
    for (long i = 0; i < chunks; i++) {
        size_t start = (size_t)i * chunk;
        memset((char *)ptr + start, 0, bytes - start < chunk ? bytes - start : chunk);
    }
}

void cpu_copy(void *dst, const void *src, size_t bytes) {
    if (dst != src) memmove(dst, src, bytes);
}

void cpu_synchronize(void) {}

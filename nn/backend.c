/*
 * backend.c - choosing a backend by name.
 */
#include <stdio.h>
#include <string.h>

#include "nn/backend.h"

const NnBackend *nn_backend_by_name(const char *name, char *why, size_t why_size) {
    if (strcmp(name, "cpu") == 0) return &nn_cpu_backend;
    if (strcmp(name, "cpu-bf16") == 0) return &nn_cpu_bf16_backend;
    if (strcmp(name, "cuda") == 0) return nn_cuda_backend(why, why_size);
    if (strcmp(name, "cuda-fp32") == 0) return nn_cuda_fp32_backend(why, why_size);
    if (why)
        snprintf(why, why_size, "expected backend 'cpu', 'cpu-bf16', 'cuda' or 'cuda-fp32', found '%s'", name);
    return NULL;
}

int nn_backend_on_host(const NnBackend *be) { return be == &nn_cpu_backend || be == &nn_cpu_bf16_backend; }

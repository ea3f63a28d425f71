/*
 * cuda_absent.c - the CUDA backend entry point of a build without CUDA.
 */
#include <stdio.h>

#include "nn/backend.h"

const NnBackend *nn_cuda_backend(char *why, size_t why_size) {
    if (why) snprintf(why, why_size, "this build has no CUDA backend (configured with -Dcuda=disabled or nvcc not found)");
    return NULL;
}

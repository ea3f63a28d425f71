/*
 * cuda_absent.c - the CUDA backend entry points of a build without CUDA.
 */
#include <stdio.h>

#include "nn/backend.h"

static const char no_cuda[] =
    "this build has no CUDA backend (configured with -Dcuda=disabled or nvcc not found)";

const NnBackend *nn_cuda_backend(char *why, size_t why_size) {
    if (why) snprintf(why, why_size, "%s", no_cuda);
    return NULL;
}

const NnBackend *nn_cuda_fp32_backend(char *why, size_t why_size) {
    if (why) snprintf(why, why_size, "%s", no_cuda);
    return NULL;
}

int nn_cuda_select_device(int local_rank, int *device, char *why, size_t why_size) {
    (void)local_rank;
    *device = -1;
    nn_cuda_backend(why, why_size);
    return -1;
}

int nn_cuda_fuse_epilogues(int on) {
    (void)on;
    return -1;
}

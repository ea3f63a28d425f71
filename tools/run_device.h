/*
 * run_device.h - what a rank of `distill run` does for a device backend:
 * chooses its GPU by its rank on the node, and sets up the group reductions
 * on device memory (NCCL when every rank has a GPU of its own, else MPI
 * through host memory). The same choice moves the teacher's rows: with NCCL
 * they go from device to device (delivery_on_device, teacher/ and
 * students/), else over MPI through host memory. Every call is collective
 * over MPI_COMM_WORLD and agrees on success, so one rank's failure stops
 * every rank alike.
 */
#ifndef DD_TOOLS_RUN_DEVICE_H
#define DD_TOOLS_RUN_DEVICE_H

#include "comm/comm.h"
#include "nn/backend.h"

/* The backend named backend_name, on a device chosen for this rank when it
 * is a CUDA backend ("cuda", "cuda-fp32"). NULL with the reason in err when
 * any rank could not have it. */
const NnBackend *run_backend_for_rank(const char *backend_name, DdError *err);

/* After comm_init, for a backend other than the CPU's: NCCL communicators
 * when the build has NCCL and no two ranks share a device, and the hooks'
 * buffers marked as device memory (which, with the communicators, makes
 * delivery_on_device true for be on every rank). *how (may be NULL) gets a
 * line for the log: which path the reductions take and why. */
int run_device_reductions(Comm *comm, const NnBackend *be, char *how, size_t how_size, DdError *err);

#endif

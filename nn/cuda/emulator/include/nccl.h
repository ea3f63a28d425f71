/*
 * nccl.h (CUDA emulator) - the part of NCCL that comm/nccl_comm.c uses, run
 * over MPI by emulator_nccl.cc on the emulated device memory (host memory),
 * so that the project's NCCL path runs in a build with the CUDA emulator.
 * C and C++.
 *
 * Each call queues its MPI requests on the stream it is given; they
 * complete when the host waits for the stream (cuda_runtime.h). Grouped
 * sends and receives (ncclGroupStart / ncclGroupEnd) are posted together at
 * ncclGroupEnd, as NCCL runs them. ncclCommInitRank builds its communicator
 * with MPI_Comm_split over MPI_COMM_WORLD, so every process of the world
 * must create its communicators in the same order (comm_init_nccl does: its
 * group's, then the world's); a mismatch is reported, not waited for.
 */
#ifndef DD_CUDA_EMULATOR_NCCL_H
#define DD_CUDA_EMULATOR_NCCL_H

#include <stddef.h>

#include "cuda_runtime.h"

typedef enum {
    ncclSuccess = 0,
    ncclUnhandledCudaError = 1,
    ncclSystemError = 2,
    ncclInternalError = 3,
    ncclInvalidArgument = 4,
    ncclInvalidUsage = 5,
} ncclResult_t;

typedef enum {
    ncclInt8 = 0,
    ncclUint8 = 1,
    ncclInt32 = 2,
    ncclFloat32 = 7,
    ncclBfloat16 = 9,
} ncclDataType_t;

typedef enum { ncclSum = 0, ncclProd = 1, ncclMax = 2, ncclMin = 3 } ncclRedOp_t;

typedef struct {
    char internal[128];
} ncclUniqueId;

typedef struct ncclComm *ncclComm_t;

#ifdef __cplusplus
extern "C" {
#endif

ncclResult_t ncclGetUniqueId(ncclUniqueId *id);
ncclResult_t ncclCommInitRank(ncclComm_t *comm, int nranks, ncclUniqueId id, int rank);
ncclResult_t ncclCommDestroy(ncclComm_t comm);
ncclResult_t ncclCommGetAsyncError(ncclComm_t comm, ncclResult_t *async_error);
const char *ncclGetErrorString(ncclResult_t result);
ncclResult_t ncclAllReduce(const void *sendbuff, void *recvbuff, size_t count, ncclDataType_t datatype,
                           ncclRedOp_t op, ncclComm_t comm, cudaStream_t stream);
ncclResult_t ncclReduce(const void *sendbuff, void *recvbuff, size_t count, ncclDataType_t datatype, ncclRedOp_t op,
                        int root, ncclComm_t comm, cudaStream_t stream);
ncclResult_t ncclBroadcast(const void *sendbuff, void *recvbuff, size_t count, ncclDataType_t datatype, int root,
                           ncclComm_t comm, cudaStream_t stream);
ncclResult_t ncclSend(const void *sendbuff, size_t count, ncclDataType_t datatype, int peer, ncclComm_t comm,
                      cudaStream_t stream);
ncclResult_t ncclRecv(void *recvbuff, size_t count, ncclDataType_t datatype, int peer, ncclComm_t comm,
                      cudaStream_t stream);
ncclResult_t ncclGroupStart(void);
ncclResult_t ncclGroupEnd(void);

#ifdef __cplusplus
}  /* extern "C" */
#endif

#endif /* DD_CUDA_EMULATOR_NCCL_H */

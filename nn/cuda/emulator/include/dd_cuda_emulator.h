/*
 * dd_cuda_emulator.h - the core of the CUDA emulator (nn/cuda/emulator/):
 * what the stand-in CUDA headers of this folder (cuda_runtime.h, mma.h,
 * cublasLt.h, ...) call to run device code on the host. Not a CUDA header;
 * nothing outside nn/cuda/emulator includes it directly.
 *
 * The emulator exists so that the CUDA backend's own source, kernels and
 * host code as nvcc compiles them, can be compiled by the host C++ compiler
 * and run on a machine without a GPU (meson option emulate_cuda). It
 * checks what it can check on the host and aborts with a message where a
 * GPU would fail or misbehave:
 *   - memory: cudaMalloc'ed memory is tracked (and filled with 0xff bytes,
 *     NaN for fp32 and bf16, where a GPU would leave garbage); copies,
 *     memsets and cuBLAS operands must lie inside one allocation; every
 *     pointer argument of a kernel must be NULL or device memory; under
 *     AddressSanitizer every kernel access is bounds-checked;
 *   - launches: the block and grid limits and 227 KiB of dynamic shared
 *     memory (an H100's; not whether cudaFuncSetAttribute allowed more than
 *     48 KiB for the kernel: a launch does not name its instantiation); the
 *     launch fails as on a GPU (cudaGetLastError), and dynamic shared
 *     memory starts as 0xff bytes before each block;
 *   - threads: each thread of a block runs as a fiber on its own stack, to
 *     its next barrier (__syncthreads, __syncwarp, a shuffle), in thread
 *     order (or reversed: DD_CUDA_EMULATOR_ORDER=reverse), so a missing
 *     barrier shows as a wrong result; threads waiting at different
 *     barriers, or a shuffle from a lane that has exited, abort the run.
 * It does not model the memory model of a real GPU, warp scheduling,
 * register or shared-memory capacity, nor the speed of anything; static
 * __shared__ arrays (function statics here) keep their contents from one
 * block to the next, where a GPU leaves them undefined.
 */
#ifndef DD_CUDA_EMULATOR_H
#define DD_CUDA_EMULATOR_H

#include <stddef.h>

#include <functional>

struct CUstream_st;

namespace emu {

/* Queues work on stream that completes later (NCCL over MPI: complete
 * waits for its requests). Work queued on a stream completes in order, when
 * the host waits for it: cudaStreamSynchronize, cudaEventSynchronize, or a
 * cudaStreamWaitEvent on an event recorded after it (there the host waits
 * where a GPU stream would), cudaDeviceSynchronize, cudaStreamDestroy. */
void stream_enqueue(CUstream_st *stream, std::function<void()> complete);

/* 1 when [ptr, ptr + bytes) lies inside one live cudaMalloc allocation;
 * otherwise 0, after printing to stderr "cuda emulator: <what>: ..." with
 * the address and the allocation it falls in or near. bytes 0 checks ptr
 * alone (one past the end of an allocation is accepted). */
int check_device_range(const void *ptr, size_t bytes, const char *what);

/* Prints "cuda emulator: <message>" to stderr and aborts. */
[[noreturn]] void fail(const char *format, ...) __attribute__((format(printf, 1, 2)));

}  // namespace emu

#endif /* DD_CUDA_EMULATOR_H */

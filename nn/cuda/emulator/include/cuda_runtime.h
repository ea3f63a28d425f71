/*
 * cuda_runtime.h (CUDA emulator) - the part of the CUDA runtime API and of
 * the CUDA C++ device language that the backend (the .cu files of nn/cuda) uses, for
 * the host C++ compiler (dd_cuda_emulator.h says why and what is checked):
 *   - the runtime API: devices (one, number 0), memory (host memory that the
 *     emulator tracks), copies, synchronisation (every call completes before
 *     it returns), errors, cudaFuncSetAttribute;
 *   - the device language: __global__, __device__, __host__ and the like
 *     expand to nothing, __shared__ to static (the blocks of a grid run one
 *     after another, so a function's static is its block's shared memory);
 *     threadIdx, blockIdx, blockDim, gridDim; __syncthreads, __syncwarp,
 *     __shfl_sync, __shfl_xor_sync; the vector types and bit casts used;
 *   - launches: emu::launch, which CUDA_LAUNCH (cuda_common.cuh) expands to
 *     in place of kernel<<<grid, block, shared_bytes>>>(arguments), and
 *     emu::dynamic_shared, which CUDA_DYNAMIC_SHARED expands to in place of
 *     extern __shared__.
 */
#ifndef DD_CUDA_EMULATOR_CUDA_RUNTIME_H
#define DD_CUDA_EMULATOR_CUDA_RUNTIME_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "library_types.h"

#ifdef __cplusplus
#include <tuple>
#include <type_traits>
#include <utility>

#include "dd_cuda_emulator.h"
#endif

/* ---- the runtime API -------------------------------------------------------- */

typedef enum cudaError {
    cudaSuccess = 0,
    cudaErrorInvalidValue = 1,
    cudaErrorMemoryAllocation = 2,
    cudaErrorInvalidConfiguration = 9,
    cudaErrorInvalidDevicePointer = 17,
    cudaErrorInvalidMemcpyDirection = 21,
    cudaErrorInvalidDevice = 101,
    cudaErrorNoDevice = 100,
    cudaErrorLaunchOutOfResources = 701,
} cudaError_t;

typedef enum cudaMemcpyKind {
    cudaMemcpyHostToHost = 0,
    cudaMemcpyHostToDevice = 1,
    cudaMemcpyDeviceToHost = 2,
    cudaMemcpyDeviceToDevice = 3,
    cudaMemcpyDefault = 4,
} cudaMemcpyKind;

typedef enum cudaFuncAttribute {
    cudaFuncAttributeMaxDynamicSharedMemorySize = 8,
} cudaFuncAttribute;

#ifndef DD_EMULATOR_CUDA_STREAM_T
#define DD_EMULATOR_CUDA_STREAM_T
typedef struct CUstream_st *cudaStream_t;
#endif
typedef struct CUevent_st *cudaEvent_t;

/* Streams and events order the work of NCCL (emulator_nccl.cc), which runs
 * over MPI; kernels and copies complete before their call returns. */
#define cudaStreamLegacy ((cudaStream_t)0x1)
enum { cudaStreamDefault = 0, cudaStreamNonBlocking = 1 };
enum { cudaEventDefault = 0, cudaEventDisableTiming = 2 };

typedef struct CUuuid_st {
    char bytes[16];
} cudaUUID_t;
/* The fields the project reads. The emulated device of a process has a
 * UUID of its own (from the host name and the process id), as if each
 * process had its own GPU. */
struct cudaDeviceProp {
    char name[256];
    cudaUUID_t uuid;
    size_t totalGlobalMem;
    int multiProcessorCount;
    int major, minor;
};

#ifdef __cplusplus
extern "C" {
#endif

cudaError_t cudaGetDeviceCount(int *count);
cudaError_t cudaGetDeviceProperties(struct cudaDeviceProp *properties, int device);
cudaError_t cudaGetDevice(int *device);
cudaError_t cudaSetDevice(int device);
cudaError_t cudaDeviceSynchronize(void);
cudaError_t cudaMalloc(void **ptr, size_t bytes);
cudaError_t cudaFree(void *ptr);
cudaError_t cudaMemset(void *ptr, int value, size_t bytes);
cudaError_t cudaMemcpy(void *dst, const void *src, size_t bytes, cudaMemcpyKind kind);
/* Returns and clears the last error of a launch or a call. */
cudaError_t cudaGetLastError(void);
const char *cudaGetErrorString(cudaError_t error);
const char *cudaGetErrorName(cudaError_t error);
cudaError_t cudaStreamCreateWithFlags(cudaStream_t *stream, unsigned flags);
cudaError_t cudaStreamDestroy(cudaStream_t stream);
/* Completes the NCCL work queued on stream. */
cudaError_t cudaStreamSynchronize(cudaStream_t stream);
/* Completes the NCCL work event was recorded after (the host waits where a
 * GPU stream would). */
cudaError_t cudaStreamWaitEvent(cudaStream_t stream, cudaEvent_t event, unsigned flags);
cudaError_t cudaEventCreateWithFlags(cudaEvent_t *event, unsigned flags);
cudaError_t cudaEventDestroy(cudaEvent_t event);
cudaError_t cudaEventRecord(cudaEvent_t event, cudaStream_t stream);
cudaError_t cudaEventSynchronize(cudaEvent_t event);

#ifdef __cplusplus
}  /* extern "C" */
#endif

#ifdef __cplusplus

namespace emu {
cudaError_t set_function_attribute(const void *kernel, cudaFuncAttribute attribute, int value);
}
template <typename Kernel>
cudaError_t cudaFuncSetAttribute(Kernel *kernel, cudaFuncAttribute attribute, int value) {
    return emu::set_function_attribute(reinterpret_cast<const void *>(kernel), attribute, value);
}

/* ---- the device language ------------------------------------------------------ */

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __align__(n) __attribute__((aligned(n)))
#define __shared__ static

struct uint3 {
    unsigned x, y, z;
};
struct dim3 {
    unsigned x, y, z;
    dim3(unsigned vx = 1, unsigned vy = 1, unsigned vz = 1) : x(vx), y(vy), z(vz) {}
};
struct __attribute__((aligned(16))) float4 {
    float x, y, z, w;
};
struct __attribute__((aligned(8))) ushort4 {
    unsigned short x, y, z, w;
};
static inline ushort4 make_ushort4(unsigned short x, unsigned short y, unsigned short z, unsigned short w) {
    ushort4 v = {x, y, z, w};
    return v;
}

static inline unsigned __float_as_uint(float value) {
    unsigned bits;
    memcpy(&bits, &value, sizeof bits);
    return bits;
}
static inline float __uint_as_float(unsigned bits) {
    float value;
    memcpy(&value, &bits, sizeof value);
    return value;
}

namespace emu {

/* The launch being run and the thread being run (emulator_threads.cc). */
extern dim3 grid_dim, block_dim;
extern uint3 block_idx;
const uint3 &thread_idx();

/* A block-wide barrier (__syncthreads) and a warp-wide one (__syncwarp:
 * every lane of the warp that has not exited). */
void sync_block();
void sync_warp(unsigned mask);
/* Lane source_lane's value of a shuffle: every lane of the warp calls it
 * with its own bytes of value; out gets source_lane's. */
void shuffle(unsigned mask, const void *value, size_t bytes, int source_lane, void *out);
/* This thread's lane (0..31) in its warp. */
int lane();

/* The launch's dynamic shared memory (the shared_bytes of the launch). */
void *dynamic_shared();

/* Aborts unless ptr is NULL or device memory: kernel's argument index. */
void check_kernel_pointer(const void *ptr, const char *kernel, int index);

/* Runs body(context) once per thread of grid x block, records the launch's
 * error for cudaGetLastError and returns it (nothing runs on an error). */
cudaError_t run_grid(const char *kernel_name, dim3 grid, dim3 block, size_t shared_bytes, void (*body)(void *),
                     void *context);

/* Keeps error, when it is one, for cudaGetLastError (a failed call or
 * launch), and returns it. */
cudaError_t record_error(cudaError_t error);

template <typename T>
void check_argument(const T &, const char *, int) {}
template <typename T>
void check_argument(T *const &ptr, const char *kernel, int index) {
    check_kernel_pointer(reinterpret_cast<const void *>(ptr), kernel, index);
}

/* kernel<<<grid, block, shared_bytes>>>(arguments): CUDA_LAUNCH
 * (cuda_common.cuh) passes the kernel's name and call, a generic lambda that
 * calls it with the arguments, so that template arguments are deduced as in
 * the <<<>>> call. The arguments are stored once, as values, and checked;
 * each thread calls the kernel with them, and the kernel's parameters are
 * copies (by value, as on a GPU). */
template <typename Call>
class KernelLaunch {
  public:
    KernelLaunch(dim3 grid, dim3 block, size_t shared_bytes, const char *name, Call call)
        : grid_(grid), block_(block), shared_bytes_(shared_bytes), name_(name), call_(call) {}

    template <typename... Args>
    void operator()(Args &&...args) const {
        typedef std::tuple<typename std::decay<Args>::type...> Arguments;
        Arguments arguments(std::forward<Args>(args)...);
        std::apply(
            [this](const auto &...value) {
                int index = 0;
                (check_argument(value, name_, index++), ...);
            },
            arguments);
        struct Thread {
            Call call;
            Arguments *arguments;
            static void run(void *context) {
                Thread *thread = static_cast<Thread *>(context);
                std::apply(thread->call, *thread->arguments);
            }
        } thread = {call_, &arguments};
        run_grid(name_, grid_, block_, shared_bytes_, &Thread::run, &thread);
    }

  private:
    dim3 grid_, block_;
    size_t shared_bytes_;
    const char *name_;
    Call call_;
};

template <typename Call>
KernelLaunch<Call> launch(dim3 grid, dim3 block, size_t shared_bytes, const char *name, Call call) {
    return KernelLaunch<Call>(grid, block, shared_bytes, name, call);
}

}  // namespace emu

#define threadIdx (emu::thread_idx())
#define blockIdx (emu::block_idx)
#define blockDim (emu::block_dim)
#define gridDim (emu::grid_dim)

/* CUDA's integer and floating-point min and max. */
#define DD_EMULATOR_MIN_MAX(type)                                        \
    static inline type min(type a, type b) { return a < b ? a : b; }     \
    static inline type max(type a, type b) { return a > b ? a : b; }
DD_EMULATOR_MIN_MAX(int)
DD_EMULATOR_MIN_MAX(unsigned)
DD_EMULATOR_MIN_MAX(long)
DD_EMULATOR_MIN_MAX(unsigned long)
DD_EMULATOR_MIN_MAX(long long)
DD_EMULATOR_MIN_MAX(unsigned long long)
#undef DD_EMULATOR_MIN_MAX
static inline float min(float a, float b) { return fminf(a, b); }
static inline float max(float a, float b) { return fmaxf(a, b); }

static inline void __syncthreads() { emu::sync_block(); }
static inline void __syncwarp(unsigned mask = 0xffffffffu) { emu::sync_warp(mask); }

template <typename T>
T __shfl_sync(unsigned mask, T value, int source_lane, int width = 32) {
    if (width != 32) emu::fail("__shfl_sync with width %d: the emulator has whole warps only", width);
    T out;
    emu::shuffle(mask, &value, sizeof value, source_lane & 31, &out);
    return out;
}
template <typename T>
T __shfl_xor_sync(unsigned mask, T value, int lane_mask, int width = 32) {
    if (width != 32) emu::fail("__shfl_xor_sync with width %d: the emulator has whole warps only", width);
    T out;
    emu::shuffle(mask, &value, sizeof value, (emu::lane() ^ lane_mask) & 31, &out);
    return out;
}

#endif /* __cplusplus */

#endif /* DD_CUDA_EMULATOR_CUDA_RUNTIME_H */

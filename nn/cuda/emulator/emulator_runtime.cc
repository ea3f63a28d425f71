/*
 * emulator_runtime.cc - the runtime API of the CUDA emulator
 * (include/cuda_runtime.h): one device, number 0; device memory is host
 * memory from posix_memalign (256-byte aligned, as cudaMalloc's), filled
 * with 0xff bytes and recorded, so that copies, memsets, kernels and cuBLAS
 * can check that a pointer said to be device memory is; kernels, copies
 * and memsets complete before their call returns; streams and events order
 * the NCCL work queued on them (emulator_nccl.cc), which completes when the
 * host waits for it.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include <deque>
#include <map>
#include <set>

#include "include/cuda_runtime.h"

namespace emu {

namespace {

/* Live allocations: base address -> bytes. Never destroyed: memory a
 * program keeps until exit stays reachable for LeakSanitizer, as it is on a
 * GPU until the context goes. */
std::map<uintptr_t, size_t> &allocations = *new std::map<uintptr_t, size_t>;
cudaError_t last_error = cudaSuccess;   /* for cudaGetLastError */
int current_device = 0;

/* The allocation holding address (or ending at it, when one_past_end), or end(). */
std::map<uintptr_t, size_t>::const_iterator allocation_at(uintptr_t address, bool one_past_end) {
    auto it = allocations.upper_bound(address);
    if (it == allocations.begin()) return allocations.end();
    --it;
    const uintptr_t end = it->first + it->second;
    if (address > end || (address == end && !one_past_end)) return allocations.end();
    return it;
}

bool is_device_memory(const void *ptr) { return allocation_at((uintptr_t)ptr, false) != allocations.end(); }

}  // namespace

cudaError_t record_error(cudaError_t error) {
    if (error != cudaSuccess) last_error = error;
    return error;
}

void fail(const char *format, ...) {
    va_list args;
    va_start(args, format);
    fprintf(stderr, "cuda emulator: ");
    vfprintf(stderr, format, args);
    fprintf(stderr, "\n");
    va_end(args);
    fflush(stderr);
    abort();
}

int check_device_range(const void *ptr, size_t bytes, const char *what) {
    const uintptr_t address = (uintptr_t)ptr;
    auto it = allocation_at(address, true);
    if (it == allocations.end()) {
        fprintf(stderr, "cuda emulator: %s: %p is not device memory (no cudaMalloc allocation holds it)\n", what,
                ptr);
        return 0;
    }
    if (address + bytes > it->first + it->second) {
        fprintf(stderr,
                "cuda emulator: %s: %zu bytes at %p run %zu bytes past the end of the allocation of %zu bytes at "
                "%#lx\n",
                what, bytes, ptr, (size_t)(address + bytes - (it->first + it->second)), it->second,
                (unsigned long)it->first);
        return 0;
    }
    return 1;
}

void check_kernel_pointer(const void *ptr, const char *kernel, int index) {
    if (!ptr) return;
    char what[256];
    snprintf(what, sizeof what, "kernel %s, argument %d", kernel, index);
    if (!check_device_range(ptr, 0, what)) fail("%s is a host pointer: a GPU cannot read it", what);
}

}  // namespace emu

/* ---- streams and events ------------------------------------------------------ */

struct CUstream_st {
    struct Pending {
        uint64_t sequence;
        std::function<void()> complete;
    };
    std::deque<Pending> pending;
    uint64_t next_sequence;
};
struct CUevent_st {
    CUstream_st *stream;   /* NULL until recorded */
    uint64_t sequence;     /* the work queued on stream before the record */
};

namespace emu {
namespace {

CUstream_st legacy_stream;
std::set<CUstream_st *> &streams = *new std::set<CUstream_st *>{&legacy_stream};

CUstream_st *stream_of(cudaStream_t stream) {
    return stream == NULL || stream == cudaStreamLegacy ? &legacy_stream : stream;
}

/* Runs the completions of the work queued on stream before sequence. */
void complete_until(CUstream_st *stream, uint64_t sequence) {
    while (!stream->pending.empty() && stream->pending.front().sequence < sequence) {
        std::function<void()> complete = std::move(stream->pending.front().complete);
        stream->pending.pop_front();
        complete();
    }
}

void complete_all(CUstream_st *stream) { complete_until(stream, UINT64_MAX); }

}  // namespace

void stream_enqueue(CUstream_st *stream, std::function<void()> complete) {
    CUstream_st *s = stream_of(stream);
    s->pending.push_back(CUstream_st::Pending{s->next_sequence++, std::move(complete)});
}

}  // namespace emu

cudaError_t cudaStreamCreateWithFlags(cudaStream_t *stream, unsigned flags) {
    (void)flags;   /* no stream waits for another implicitly here: every kernel completes before it returns */
    *stream = new CUstream_st();
    emu::streams.insert(*stream);
    return cudaSuccess;
}

cudaError_t cudaStreamDestroy(cudaStream_t stream) {
    if (!emu::streams.count(stream) || stream == &emu::legacy_stream) return emu::record_error(cudaErrorInvalidValue);
    emu::complete_all(stream);
    emu::streams.erase(stream);
    delete stream;
    return cudaSuccess;
}

cudaError_t cudaStreamSynchronize(cudaStream_t stream) {
    emu::complete_all(emu::stream_of(stream));
    return cudaSuccess;
}

cudaError_t cudaEventCreateWithFlags(cudaEvent_t *event, unsigned flags) {
    (void)flags;
    *event = new CUevent_st();
    return cudaSuccess;
}

cudaError_t cudaEventDestroy(cudaEvent_t event) {
    delete event;
    return cudaSuccess;
}

cudaError_t cudaEventRecord(cudaEvent_t event, cudaStream_t stream) {
    CUstream_st *s = emu::stream_of(stream);
    event->stream = s;
    event->sequence = s->next_sequence;
    return cudaSuccess;
}

cudaError_t cudaEventSynchronize(cudaEvent_t event) {
    if (event->stream) emu::complete_until(event->stream, event->sequence);
    return cudaSuccess;
}

cudaError_t cudaStreamWaitEvent(cudaStream_t stream, cudaEvent_t event, unsigned flags) {
    (void)stream;
    (void)flags;
    return cudaEventSynchronize(event);
}

/* ---- devices and memory --------------------------------------------------------- */

using emu::record_error;

cudaError_t cudaGetDeviceCount(int *count) {
    *count = 1;
    return cudaSuccess;
}

cudaError_t cudaGetDevice(int *device) {
    *device = emu::current_device;
    return cudaSuccess;
}

cudaError_t cudaSetDevice(int device) {
    if (device != 0) return record_error(cudaErrorInvalidDevice);
    emu::current_device = device;
    return cudaSuccess;
}

cudaError_t cudaDeviceSynchronize(void) {
    for (CUstream_st *stream : emu::streams) emu::complete_all(stream);
    return cudaSuccess;
}

cudaError_t cudaGetDeviceProperties(struct cudaDeviceProp *properties, int device) {
    if (device != 0) return record_error(cudaErrorInvalidDevice);
    memset(properties, 0, sizeof *properties);
    snprintf(properties->name, sizeof properties->name, "CUDA emulator");
    char host[64] = "";
    gethostname(host, sizeof host - 1);
    const long pid = (long)getpid();
    snprintf(properties->uuid.bytes, sizeof properties->uuid.bytes, "%.7s%08lx", host, pid);
    properties->totalGlobalMem = (size_t)16 << 30;
    properties->multiProcessorCount = 1;
    properties->major = 9;
    return cudaSuccess;
}

cudaError_t cudaMalloc(void **ptr, size_t bytes) {
    *ptr = NULL;
    void *memory = NULL;
    if (posix_memalign(&memory, 256, bytes > 0 ? bytes : 1) != 0) return record_error(cudaErrorMemoryAllocation);
    memset(memory, 0xff, bytes);   /* NaN as fp32 and bf16: a GPU's memory is not zeroed either */
    emu::allocations[(uintptr_t)memory] = bytes;
    *ptr = memory;
    return cudaSuccess;
}

cudaError_t cudaFree(void *ptr) {
    if (!ptr) return cudaSuccess;   /* cudaFree(0) creates the context */
    auto it = emu::allocations.find((uintptr_t)ptr);
    if (it == emu::allocations.end()) {
        fprintf(stderr, "cuda emulator: cudaFree(%p): not the start of a live allocation\n", ptr);
        return record_error(cudaErrorInvalidDevicePointer);
    }
    emu::allocations.erase(it);
    free(ptr);
    return cudaSuccess;
}

cudaError_t cudaMemset(void *ptr, int value, size_t bytes) {
    if (!emu::check_device_range(ptr, bytes, "cudaMemset")) return record_error(cudaErrorInvalidValue);
    memset(ptr, value, bytes);
    return cudaSuccess;
}

cudaError_t cudaMemcpy(void *dst, const void *src, size_t bytes, cudaMemcpyKind kind) {
    const bool dst_on_device = kind == cudaMemcpyHostToDevice || kind == cudaMemcpyDeviceToDevice;
    const bool src_on_device = kind == cudaMemcpyDeviceToHost || kind == cudaMemcpyDeviceToDevice;
    if (kind != cudaMemcpyHostToDevice && kind != cudaMemcpyDeviceToHost && kind != cudaMemcpyDeviceToDevice &&
        kind != cudaMemcpyHostToHost)
        return record_error(cudaErrorInvalidMemcpyDirection);
    if (dst_on_device && !emu::check_device_range(dst, bytes, "cudaMemcpy destination"))
        return record_error(cudaErrorInvalidValue);
    if (src_on_device && !emu::check_device_range(src, bytes, "cudaMemcpy source"))
        return record_error(cudaErrorInvalidValue);
    /* The host side must not be device memory: without unified addressing
     * the copy would read or write the wrong memory. */
    if (!dst_on_device && emu::is_device_memory(dst)) {
        fprintf(stderr, "cuda emulator: cudaMemcpy: the host destination %p is device memory\n", dst);
        return record_error(cudaErrorInvalidValue);
    }
    if (!src_on_device && emu::is_device_memory(src)) {
        fprintf(stderr, "cuda emulator: cudaMemcpy: the host source %p is device memory\n", src);
        return record_error(cudaErrorInvalidValue);
    }
    memmove(dst, src, bytes);
    return cudaSuccess;
}

cudaError_t cudaGetLastError(void) {
    const cudaError_t error = emu::last_error;
    emu::last_error = cudaSuccess;
    return error;
}

const char *cudaGetErrorName(cudaError_t error) {
    switch (error) {
    case cudaSuccess: return "cudaSuccess";
    case cudaErrorInvalidValue: return "cudaErrorInvalidValue";
    case cudaErrorMemoryAllocation: return "cudaErrorMemoryAllocation";
    case cudaErrorInvalidConfiguration: return "cudaErrorInvalidConfiguration";
    case cudaErrorInvalidDevicePointer: return "cudaErrorInvalidDevicePointer";
    case cudaErrorInvalidMemcpyDirection: return "cudaErrorInvalidMemcpyDirection";
    case cudaErrorInvalidDevice: return "cudaErrorInvalidDevice";
    case cudaErrorNoDevice: return "cudaErrorNoDevice";
    case cudaErrorLaunchOutOfResources: return "cudaErrorLaunchOutOfResources";
    }
    return "cudaErrorUnknown";
}

const char *cudaGetErrorString(cudaError_t error) {
    switch (error) {
    case cudaSuccess: return "no error";
    case cudaErrorInvalidValue: return "invalid argument";
    case cudaErrorMemoryAllocation: return "out of memory";
    case cudaErrorInvalidConfiguration: return "invalid configuration argument";
    case cudaErrorInvalidDevicePointer: return "invalid device pointer";
    case cudaErrorInvalidMemcpyDirection: return "invalid copy direction for memcpy";
    case cudaErrorInvalidDevice: return "invalid device ordinal";
    case cudaErrorNoDevice: return "no CUDA-capable device is detected";
    case cudaErrorLaunchOutOfResources: return "too many resources requested for launch";
    }
    return "unknown error";
}

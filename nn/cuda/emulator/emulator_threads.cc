/*
 * emulator_threads.cc - the threads of an emulated kernel launch: the launch
 * checks, the blocks one after another, each thread of a block a fiber
 * (emulator_fibers.h) that runs to its next barrier, and the barriers and
 * shuffles that the device language of cuda_runtime.h calls.
 *
 * Scheduling: a block's threads are visited in thread order (or reversed,
 * DD_CUDA_EMULATOR_ORDER=reverse); each runnable one runs until it waits at
 * a barrier or exits, then the next. A barrier completes when every thread
 * it concerns (the block's or the warp's, those that have not exited) has
 * arrived. A pass over the block in which no thread could run while some
 * wait is a deadlock: the threads wait at different barriers, which a GPU
 * does not define; the emulator aborts and says where they wait.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <vector>

#include "emulator_fibers.h"
#include "include/cuda_runtime.h"

namespace emu {

dim3 grid_dim, block_dim;
uint3 block_idx;

namespace {

enum {
    WARP = 32,
    MAX_BLOCK_THREADS = 1024,
    SHARED_LIMIT = 227 << 10,   /* an H100's dynamic shared memory per block, with the opt-in */
    STACK_BYTES = 256 << 10,
    SHUFFLE_BYTES = 16,
};

enum ThreadState { RUNNABLE, AT_BLOCK_BARRIER, AT_WARP_BARRIER, EXITED };

struct Barrier {
    unsigned generation;
    int arrived, alive;
};

struct EmulatedThread {
    Fiber fiber;
    uint3 index;
    int linear;
    ThreadState state;
    unsigned waited_generation;
};

struct Block {
    std::vector<EmulatedThread> threads;   /* the pool; the first `count` are this block's */
    int count;
    Barrier block_barrier;
    Barrier warp_barriers[MAX_BLOCK_THREADS / WARP];
    unsigned char shuffle_slots[MAX_BLOCK_THREADS][SHUFFLE_BYTES];
    EmulatedThread *running;
    const char *kernel_name;
    void (*body)(void *);
    void *context;
    unsigned char *dynamic_shared;
    size_t dynamic_shared_bytes;
};

Block block;

bool reverse_order() {
    static const int reverse = [] {
        const char *order = getenv("DD_CUDA_EMULATOR_ORDER");
        if (order && strcmp(order, "reverse") != 0 && strcmp(order, "forward") != 0)
            fail("DD_CUDA_EMULATOR_ORDER is '%s'; expected 'forward' or 'reverse'", order);
        return order && strcmp(order, "reverse") == 0;
    }();
    return reverse;
}

EmulatedThread &running_thread() {
    if (!block.running) fail("device code called outside a kernel launch");
    return *block.running;
}

Barrier &warp_barrier_of(const EmulatedThread &thread) { return block.warp_barriers[thread.linear / WARP]; }

/* A barrier that every live thread it concerns has reached opens. */
void open_if_complete(Barrier &barrier) {
    if (barrier.arrived > 0 && barrier.arrived == barrier.alive) {
        barrier.generation++;
        barrier.arrived = 0;
    }
}

/* The running thread arrives at barrier and waits (fiber_yield) until it opens. */
void wait_at(Barrier &barrier, ThreadState state) {
    EmulatedThread &thread = running_thread();
    barrier.arrived++;
    if (barrier.arrived == barrier.alive) {   /* the last one: open, go on */
        open_if_complete(barrier);
        return;
    }
    thread.state = state;
    thread.waited_generation = barrier.generation;
    fiber_yield(&thread.fiber);
    thread.state = RUNNABLE;
}

void thread_entry() {
    EmulatedThread &thread = *block.running;
    fiber_started(&thread.fiber);
    block.body(block.context);
    thread.state = EXITED;
    block.block_barrier.alive--;
    open_if_complete(block.block_barrier);
    Barrier &warp = warp_barrier_of(thread);
    warp.alive--;
    open_if_complete(warp);
    fiber_finish(&thread.fiber);
}

bool can_run(const EmulatedThread &thread) {
    switch (thread.state) {
    case RUNNABLE:
        return true;
    case AT_BLOCK_BARRIER:
        return block.block_barrier.generation != thread.waited_generation;
    case AT_WARP_BARRIER:
        return warp_barrier_of(thread).generation != thread.waited_generation;
    case EXITED:
        return false;
    }
    return false;
}

[[noreturn]] void report_deadlock() {
    int at_block = 0, at_warp = 0, first_block = -1, first_warp = -1;
    for (int t = 0; t < block.count; t++) {
        const EmulatedThread &thread = block.threads[t];
        if (thread.state == AT_BLOCK_BARRIER) {
            at_block++;
            if (first_block < 0) first_block = t;
        } else if (thread.state == AT_WARP_BARRIER) {
            at_warp++;
            if (first_warp < 0) first_warp = t;
        }
    }
    fail("%s, block (%u, %u, %u): deadlock: %d threads wait at __syncthreads (the first: thread %d) and %d at a "
         "warp barrier, __syncwarp or a shuffle (the first: thread %d); %d of %d threads have exited",
         block.kernel_name, block_idx.x, block_idx.y, block_idx.z, at_block, first_block, at_warp, first_warp,
         block.count - block.block_barrier.alive, block.count);
}

void run_block() {
    const int count = block.count;
    block.block_barrier = Barrier{0, 0, count};
    for (int w = 0; w * WARP < count; w++)
        block.warp_barriers[w] = Barrier{0, 0, count - w * WARP < WARP ? count - w * WARP : WARP};
    for (int t = 0; t < count; t++) {
        EmulatedThread &thread = block.threads[t];
        thread.state = RUNNABLE;
        fiber_restart(&thread.fiber, thread_entry);
    }
    if (block.dynamic_shared_bytes > 0) memset(block.dynamic_shared, 0xff, block.dynamic_shared_bytes);
    const bool reverse = reverse_order();
    while (block.block_barrier.alive > 0) {
        bool ran = false;
        for (int i = 0; i < count; i++) {
            EmulatedThread &thread = block.threads[reverse ? count - 1 - i : i];
            if (!can_run(thread)) continue;
            block.running = &thread;
            fiber_enter(&thread.fiber);
            block.running = NULL;
            ran = true;
        }
        if (!ran) report_deadlock();
    }
}

cudaError_t launch_error(cudaError_t error, const char *kernel_name, const char *format, ...)
    __attribute__((format(printf, 3, 4)));
cudaError_t launch_error(cudaError_t error, const char *kernel_name, const char *format, ...) {
    va_list args;
    va_start(args, format);
    fprintf(stderr, "cuda emulator: launch of %s failed: ", kernel_name);
    vfprintf(stderr, format, args);
    fprintf(stderr, "\n");
    va_end(args);
    return record_error(error);
}

}  // namespace

const uint3 &thread_idx() { return running_thread().index; }

int lane() { return running_thread().linear % WARP; }

void sync_block() { wait_at(block.block_barrier, AT_BLOCK_BARRIER); }

void sync_warp(unsigned mask) {
    if (mask != 0xffffffffu) fail("%s: a warp barrier with mask %#x: the emulator has whole warps only",
                                  block.kernel_name, mask);
    wait_at(warp_barrier_of(running_thread()), AT_WARP_BARRIER);
}

void shuffle(unsigned mask, const void *value, size_t bytes, int source_lane, void *out) {
    EmulatedThread &thread = running_thread();
    if (bytes > SHUFFLE_BYTES) fail("%s: a shuffle of %zu bytes", block.kernel_name, bytes);
    memcpy(block.shuffle_slots[thread.linear], value, bytes);
    sync_warp(mask);   /* every lane has written its value */
    const int source = thread.linear / WARP * WARP + source_lane;
    if (source >= block.count || block.threads[source].state == EXITED)
        fail("%s, block (%u, %u, %u), thread %d: a shuffle reads lane %d, which %s", block.kernel_name, block_idx.x,
             block_idx.y, block_idx.z, thread.linear, source_lane,
             source >= block.count ? "the block does not have" : "has exited");
    memcpy(out, block.shuffle_slots[source], bytes);
    sync_warp(mask);   /* every lane has read before the slots are written again */
}

void *dynamic_shared() {
    running_thread();
    return block.dynamic_shared;
}

cudaError_t set_function_attribute(const void *kernel, cudaFuncAttribute attribute, int value) {
    (void)kernel;
    if (attribute != cudaFuncAttributeMaxDynamicSharedMemorySize) return record_error(cudaErrorInvalidValue);
    if (value < 0 || value > SHARED_LIMIT) {
        fprintf(stderr, "cuda emulator: cudaFuncSetAttribute: %d bytes of dynamic shared memory (at most %d)\n",
                value, SHARED_LIMIT);
        return record_error(cudaErrorInvalidValue);
    }
    return cudaSuccess;
}

cudaError_t run_grid(const char *kernel_name, dim3 grid, dim3 block_shape, size_t shared_bytes, void (*body)(void *),
                     void *context) {
    if (block.running) fail("%s launched from device code", kernel_name);
    const unsigned long threads = (unsigned long)block_shape.x * block_shape.y * block_shape.z;
    if (threads == 0 || threads > MAX_BLOCK_THREADS || block_shape.z > 64)
        return launch_error(cudaErrorInvalidConfiguration, kernel_name, "block (%u, %u, %u)", block_shape.x,
                            block_shape.y, block_shape.z);
    if (grid.x == 0 || grid.y == 0 || grid.z == 0 || grid.x > 0x7fffffffu || grid.y > 65535 || grid.z > 65535)
        return launch_error(cudaErrorInvalidConfiguration, kernel_name, "grid (%u, %u, %u)", grid.x, grid.y, grid.z);
    if (shared_bytes > SHARED_LIMIT)
        return launch_error(cudaErrorInvalidValue, kernel_name,
                            "%zu bytes of dynamic shared memory, above the %d a block can have", shared_bytes,
                            SHARED_LIMIT);
    while (block.threads.size() < threads) {
        EmulatedThread thread;
        memset(&thread, 0, sizeof thread);
        if (fiber_create(&thread.fiber, STACK_BYTES) != 0)
            fail("no memory for the stack of emulated thread %zu", block.threads.size());
        block.threads.push_back(thread);
    }
    block.count = (int)threads;
    for (unsigned t = 0; t < threads; t++) {
        EmulatedThread &thread = block.threads[t];
        thread.linear = (int)t;
        thread.index = uint3{t % block_shape.x, t / block_shape.x % block_shape.y, t / (block_shape.x * block_shape.y)};
    }
    block.kernel_name = kernel_name;
    block.body = body;
    block.context = context;
    block.dynamic_shared_bytes = shared_bytes;
    block.dynamic_shared = (unsigned char *)malloc(shared_bytes > 0 ? shared_bytes : 1);
    if (!block.dynamic_shared) fail("no memory for %zu bytes of dynamic shared memory", shared_bytes);
    grid_dim = grid;
    block_dim = block_shape;
    for (unsigned z = 0; z < grid.z; z++)
        for (unsigned y = 0; y < grid.y; y++)
            for (unsigned x = 0; x < grid.x; x++) {
                block_idx = uint3{x, y, z};
                run_block();
            }
    free(block.dynamic_shared);
    block.dynamic_shared = NULL;
    block.kernel_name = NULL;
    return cudaSuccess;
}

}  // namespace emu

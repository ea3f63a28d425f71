/*
 * emulator_fibers.h - fibers for the CUDA emulator: a stack of its own per
 * emulated thread and a switch between a fiber and the scheduler that runs
 * the fibers (emulator_threads.cc). One host thread runs every fiber, one at
 * a time; a fiber runs until it switches back.
 *
 * The switch saves the callee-saved registers on the stack it leaves and
 * loads them from the one it enters (x86-64: a few instructions, no system
 * call; elsewhere ucontext, which is slower). AddressSanitizer is told of
 * every switch, so it checks the fibers' stacks as it checks any other.
 */
#ifndef DD_CUDA_EMULATOR_FIBERS_H
#define DD_CUDA_EMULATOR_FIBERS_H

#include <stddef.h>

#if !defined(__x86_64__)
#include <ucontext.h>
#endif

namespace emu {

struct Fiber {
    void *stack;          /* lowest address of the stack (a guard page below it) */
    size_t stack_bytes;
#if defined(__x86_64__)
    void *stack_pointer;  /* saved while the fiber is switched out */
#else
    ucontext_t context;
#endif
    void *asan_fake_stack;
};

/* Allocates the stack of fiber (stack_bytes, with a guard page below). 0 on
 * success, -1 when the system has no memory for it. */
int fiber_create(Fiber *fiber, size_t stack_bytes);
void fiber_destroy(Fiber *fiber);

/* Switches from the scheduler to fiber. A fiber that has not run yet (or
 * has finished and was restarted with fiber_restart) starts in entry(). */
void fiber_enter(Fiber *fiber);
/* Makes fiber start over in entry() on its next fiber_enter. */
void fiber_restart(Fiber *fiber, void (*entry)(void));
/* Called by the running fiber: back to the scheduler; returns when the
 * scheduler enters this fiber again. */
void fiber_yield(Fiber *fiber);
/* Called by the running fiber as its last act: back to the scheduler for
 * good (until fiber_restart). */
[[noreturn]] void fiber_finish(Fiber *fiber);
/* Called first thing in entry(): completes the switch into the fiber. */
void fiber_started(Fiber *fiber);

}  // namespace emu

#endif /* DD_CUDA_EMULATOR_FIBERS_H */

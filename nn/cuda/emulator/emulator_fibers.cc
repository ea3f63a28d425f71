/*
 * emulator_fibers.cc - the fibers of emulator_fibers.h: stacks from mmap
 * with a guard page, the switch (x86-64 assembly, or ucontext), and the
 * AddressSanitizer annotations of every switch.
 */
#include "emulator_fibers.h"

#include <sys/mman.h>
#include <unistd.h>

#include <stdint.h>
#include <string.h>

#include "include/dd_cuda_emulator.h"

#if defined(__SANITIZE_ADDRESS__)
#define DD_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define DD_ASAN 1
#endif
#endif

#ifdef DD_ASAN
#include <sanitizer/asan_interface.h>
#include <sanitizer/common_interface_defs.h>
#endif

namespace emu {

/* The scheduler's side of every switch. */
#if defined(__x86_64__)
static void *scheduler_stack_pointer;
#else
static ucontext_t scheduler_context;
#endif
#ifdef DD_ASAN
static void *scheduler_fake_stack;
static const void *scheduler_stack_bottom;
static size_t scheduler_stack_bytes;
#endif

#if defined(__x86_64__)
/* dd_emulator_switch(save, load): pushes the callee-saved registers and the
 * SSE and x87 control words, stores the stack pointer in *save, loads load
 * and pops the same from there. A new fiber's stack is laid out by
 * fiber_restart so that the pops and the ret land in its entry. */
extern "C" void dd_emulator_switch(void **save, void *load);
asm(R"(
    .text
    .globl dd_emulator_switch
    .type dd_emulator_switch, @function
dd_emulator_switch:
    pushq %rbp
    pushq %rbx
    pushq %r12
    pushq %r13
    pushq %r14
    pushq %r15
    subq $8, %rsp
    stmxcsr (%rsp)
    fnstcw 4(%rsp)
    movq %rsp, (%rdi)
    movq %rsi, %rsp
    ldmxcsr (%rsp)
    fldcw 4(%rsp)
    addq $8, %rsp
    popq %r15
    popq %r14
    popq %r13
    popq %r12
    popq %rbx
    popq %rbp
    ret
    .size dd_emulator_switch, .-dd_emulator_switch
    .section .note.GNU-stack,"",@progbits
    .text
)");
#endif

int fiber_create(Fiber *fiber, size_t stack_bytes) {
    memset(fiber, 0, sizeof *fiber);
    const size_t page = (size_t)sysconf(_SC_PAGESIZE);
    stack_bytes = (stack_bytes + page - 1) / page * page;
    void *region = mmap(NULL, stack_bytes + page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
                        -1, 0);
    if (region == MAP_FAILED) return -1;
    mprotect(region, page, PROT_NONE);   /* a stack overflow faults at once */
    fiber->stack = (char *)region + page;
    fiber->stack_bytes = stack_bytes;
    return 0;
}

void fiber_destroy(Fiber *fiber) {
    if (!fiber->stack) return;
    const size_t page = (size_t)sysconf(_SC_PAGESIZE);
    munmap((char *)fiber->stack - page, fiber->stack_bytes + page);
    memset(fiber, 0, sizeof *fiber);
}

void fiber_restart(Fiber *fiber, void (*entry)(void)) {
#ifdef DD_ASAN
    /* The frames of the previous run that never returned (the entry's and
     * fiber_finish's, at the top of the stack) leave poison behind; every
     * deeper frame returned and cleaned up after itself. */
    const size_t top_bytes = fiber->stack_bytes < (16u << 10) ? fiber->stack_bytes : (16u << 10);
    ASAN_UNPOISON_MEMORY_REGION((char *)fiber->stack + fiber->stack_bytes - top_bytes, top_bytes);
#endif
#if defined(__x86_64__)
    /* From the top: a zero return address for entry (it never returns; this
     * makes its stack pointer 8 mod 16 as after a call), entry itself for
     * the switch's ret, six registers, the control words. */
    uint64_t *top = (uint64_t *)((char *)fiber->stack + fiber->stack_bytes);
    top = (uint64_t *)((uintptr_t)top & ~(uintptr_t)15);
    uint64_t *sp = top - 9;
    memset(sp, 0, 9 * sizeof *sp);
    top[-2] = (uint64_t)(uintptr_t)entry;
    uint32_t control_words[2] = {0x1f80, 0x037f};   /* MXCSR and x87 defaults */
    memcpy(sp, control_words, sizeof control_words);
    fiber->stack_pointer = sp;
#else
    getcontext(&fiber->context);
    fiber->context.uc_stack.ss_sp = fiber->stack;
    fiber->context.uc_stack.ss_size = fiber->stack_bytes;
    fiber->context.uc_link = NULL;
    makecontext(&fiber->context, entry, 0);
#endif
}

void fiber_enter(Fiber *fiber) {
#ifdef DD_ASAN
    __sanitizer_start_switch_fiber(&scheduler_fake_stack, fiber->stack, fiber->stack_bytes);
#endif
#if defined(__x86_64__)
    dd_emulator_switch(&scheduler_stack_pointer, fiber->stack_pointer);
#else
    swapcontext(&scheduler_context, &fiber->context);
#endif
#ifdef DD_ASAN
    __sanitizer_finish_switch_fiber(scheduler_fake_stack, NULL, NULL);
#endif
}

void fiber_started(Fiber *fiber) {
    (void)fiber;
#ifdef DD_ASAN
    __sanitizer_finish_switch_fiber(NULL, &scheduler_stack_bottom, &scheduler_stack_bytes);
#endif
}

/* From the running fiber back to the scheduler. finishing: the fiber will
 * not run again, so AddressSanitizer may drop its fake stack. */
static void switch_to_scheduler(Fiber *fiber, bool finishing) {
#ifdef DD_ASAN
    __sanitizer_start_switch_fiber(finishing ? NULL : &fiber->asan_fake_stack, scheduler_stack_bottom,
                                   scheduler_stack_bytes);
#else
    (void)finishing;
#endif
#if defined(__x86_64__)
    dd_emulator_switch(&fiber->stack_pointer, scheduler_stack_pointer);
#else
    swapcontext(&fiber->context, &scheduler_context);
#endif
}

void fiber_yield(Fiber *fiber) {
    switch_to_scheduler(fiber, false);
#ifdef DD_ASAN
    __sanitizer_finish_switch_fiber(fiber->asan_fake_stack, &scheduler_stack_bottom, &scheduler_stack_bytes);
#endif
}

void fiber_finish(Fiber *fiber) {
    switch_to_scheduler(fiber, true);
    fail("a finished fiber was entered again");
}

}  // namespace emu

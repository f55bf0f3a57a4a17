// test_platform.c: see include/test_platform.h.
#define _GNU_SOURCE
#include "test_platform.h"

#include <signal.h>
#include <ucontext.h>

// The mask count lives in thread-local storage (initial-exec: a %fs-relative access,
// no call), so a signal handler on the same thread (SIGALRM, SIGTRAP) sees every update. Each access is
// one atomic instruction and a compiler barrier: the allocator's memory accesses never
// move across a mask change, as they would not across `cli`/`popf`.
static _Thread_local unsigned long mask_depth __attribute__((tls_model("initial-exec")));

unsigned long quarry_test_mask_depth(void) {
    return __atomic_load_n(&mask_depth, __ATOMIC_SEQ_CST);
}

unsigned long quarry_test_mask_raise(void) {
    return __atomic_fetch_add(&mask_depth, 1, __ATOMIC_SEQ_CST);
}

void quarry_test_mask_restore(unsigned long saved) {
    __atomic_store_n(&mask_depth, saved, __ATOMIC_SEQ_CST);
}

// The virtual CPU record, likewise: read by the signal handlers (SIGALRM, SIGTRAP) on the
// thread they interrupt, and by every `cpuIndex`.
static _Thread_local void *current_cpu __attribute__((tls_model("initial-exec")));

void *quarry_test_current_cpu(void) {
    return __atomic_load_n(&current_cpu, __ATOMIC_SEQ_CST);
}

void quarry_test_set_current_cpu(void *cpu) {
    __atomic_store_n(&current_cpu, cpu, __ATOMIC_SEQ_CST);
}

#if defined(__x86_64__)

int quarry_test_single_step_supported(void) { return 1; }

// Written in assembly, not inline asm in a C function: `pushfq` writes below %rsp,
// where a C function may keep locals (the red zone).
__asm__(
    "    .text\n"
    "    .globl quarry_test_tf_on\n"
    "    .type quarry_test_tf_on, @function\n"
    "quarry_test_tf_on:\n"
    "    pushfq\n"
    "    orq $0x100, (%rsp)\n"
    "    popfq\n"
    "    ret\n"
    "    .size quarry_test_tf_on, . - quarry_test_tf_on\n"
    "    .globl quarry_test_tf_off\n"
    "    .type quarry_test_tf_off, @function\n"
    "quarry_test_tf_off:\n"
    "    pushfq\n"
    "    andq $~0x100, (%rsp)\n"
    "    popfq\n"
    "    ret\n"
    "    .size quarry_test_tf_off, . - quarry_test_tf_off\n");

unsigned long quarry_test_context_flags(const void *ucontext) {
    if (!ucontext) return 0;
    const ucontext_t *uc = ucontext;
    return (unsigned long)uc->uc_mcontext.gregs[REG_EFL];
}

#else

int quarry_test_single_step_supported(void) { return 0; }
void quarry_test_tf_on(void) {}
void quarry_test_tf_off(void) {}
unsigned long quarry_test_context_flags(const void *ucontext) { (void)ucontext; return 0; }

#endif

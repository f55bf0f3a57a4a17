// test_platform.h: what the host tests' ThreadPlatform (Tests/QuarryTests/ThreadPlatform.swift)
// keeps per thread, in C thread-local storage so that a signal handler on the same thread
// reads it without a call into the Swift runtime: the interrupt-mask nesting count and the
// thread's virtual CPU. And the x86 trap flag (EFLAGS.TF) for the single-step re-entry
// test (Tests/QuarryTests/SingleStepTests.swift); on hosts other than x86_64 the TF
// functions do nothing and `supported` is 0.
#ifndef QUARRY_TEST_PLATFORM_H
#define QUARRY_TEST_PLATFORM_H

#ifdef __cplusplus
extern "C" {
#endif

/// The calling thread's interrupt-mask nesting count (0: "interrupts enabled").
unsigned long quarry_test_mask_depth(void);
/// Increments the count; returns the previous value (`disableInterrupts`).
unsigned long quarry_test_mask_raise(void);
/// Stores a value `quarry_test_mask_raise` returned (`restoreInterrupts`).
void quarry_test_mask_restore(unsigned long saved);

/// The calling thread's virtual CPU record, NULL while the thread is not registered.
void *quarry_test_current_cpu(void);
/// Sets (or, with NULL, clears) the calling thread's virtual CPU record.
void quarry_test_set_current_cpu(void *cpu);

/// 1 when the trap flag can be set from user mode here (x86_64), else 0.
int quarry_test_single_step_supported(void);

/// Sets TF (`pushfq; orq $0x100,(%rsp); popfq`). The first SIGTRAP arrives after the
/// instruction that follows the `popfq` (this function's `ret`), then one after every
/// instruction until `quarry_test_tf_off`'s `popfq` clears the flag.
void quarry_test_tf_on(void);
/// Clears TF (`pushfq; andq $~0x100,(%rsp); popfq`).
void quarry_test_tf_off(void);

/// EFLAGS saved in the signal frame's `ucontext_t` (the interrupted context), 0 if unknown.
unsigned long quarry_test_context_flags(const void *ucontext);

#ifdef __cplusplus
}
#endif

#endif

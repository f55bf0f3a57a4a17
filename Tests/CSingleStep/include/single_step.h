// single_step.h: the x86 trap flag (EFLAGS.TF) for the host's single-step re-entry test
// (Tests/QuarryTests/SingleStepTests.swift), and the test platform's per-thread
// interrupt-mask count, which the SIGTRAP handler reads on the same thread.
// On hosts other than x86_64 the TF functions do nothing and `supported` is 0.
#ifndef QUARRY_SINGLE_STEP_H
#define QUARRY_SINGLE_STEP_H

#ifdef __cplusplus
extern "C" {
#endif

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

/// The calling thread's interrupt-mask nesting count (0: "interrupts enabled").
unsigned long quarry_test_mask_depth(void);
/// Increments the count; returns the previous value (`disableInterrupts`).
unsigned long quarry_test_mask_raise(void);
/// Stores a value `quarry_test_mask_raise` returned (`restoreInterrupts`).
void quarry_test_mask_restore(unsigned long saved);

#ifdef __cplusplus
}
#endif

#endif

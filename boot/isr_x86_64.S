// isr_x86_64.S: 64-bit interrupt entry stubs and the IDT storage; they hand every interrupt to Swift.
// Neighbours: Sources/QuarryKernel/Interrupts.swift (builds the IDT from
// quarry_isr_stub_table, defines quarry_interrupt_dispatch), multiboot_x86_64.S (GDT),
// isr_i686.S (the same stubs for i686).
//
// Frame handed to the dispatcher (lowest address first; struct quarry_interrupt_frame):
//   r15 r14 r13 r12 r11 r10 r9 r8 rdi rsi rbp rbx rdx rcx rax   <- the stub
//   vector, error code          <- the stub (dummy 0 when the CPU pushes none)
//   rip cs rflags rsp ss        <- the CPU (long mode always pushes ss:rsp, and
//                                  aligns rsp to 16 bytes before pushing)
// The stub then saves the x87/SSE state (xmm0-15) with fxsave64 into a 16-byte-aligned
// 512-byte area below the frame (interrupted Swift code may be in the middle of using
// xmm registers), clears DF, and calls
//   quarry_interrupt_dispatch(vector, errorCode, frame)    (edi, esi, rdx)
// with the stack 16-byte aligned. IRQ stubs (the LAPIC timer) send the LAPIC EOI
// after the dispatcher returns; the spurious vector must not, and exceptions have none.
//
// The CPU pushes the frame just below the interrupted code's rsp: code that keeps data
// below rsp (the SysV red zone) would lose it, so every C and Swift file of the kernel
// is built with -mno-red-zone (see the Makefile).

#include "boot_defs.h"

#define GPR_BYTES (15 * 8)              // the general registers the stub pushes

    .section .bss.quarry_idt, "aw", @nobits
    .p2align 4
    .globl quarry_idt
quarry_idt:
    .skip 256 * 16

    .section .data.quarry_idtr, "aw"
    .p2align 3
    .globl quarry_idtr
quarry_idtr:
    .word 256 * 16 - 1
    .quad quarry_idt

    .section .text.quarry_isr, "ax"
    .code64

// Exceptions for which the CPU pushes no error code: push a dummy so the frame is fixed.
.macro ISR_NO_ERROR vector
isr_\vector:
    pushq $0
    pushq $\vector
    jmp isr_common
.endm

// Exceptions 8, 10-14, 17, 21, 29, 30: the CPU already pushed an error code.
.macro ISR_ERROR vector
isr_\vector:
    pushq $\vector
    jmp isr_common
.endm

    ISR_NO_ERROR 0
    ISR_NO_ERROR 1
    ISR_NO_ERROR 2
    ISR_NO_ERROR 3
    ISR_NO_ERROR 4
    ISR_NO_ERROR 5
    ISR_NO_ERROR 6
    ISR_NO_ERROR 7
    ISR_ERROR    8
    ISR_NO_ERROR 9
    ISR_ERROR    10
    ISR_ERROR    11
    ISR_ERROR    12
    ISR_ERROR    13
    ISR_ERROR    14
    ISR_NO_ERROR 15
    ISR_NO_ERROR 16
    ISR_ERROR    17
    ISR_NO_ERROR 18
    ISR_NO_ERROR 19
    ISR_NO_ERROR 20
    ISR_ERROR    21
    ISR_NO_ERROR 22
    ISR_NO_ERROR 23
    ISR_NO_ERROR 24
    ISR_NO_ERROR 25
    ISR_NO_ERROR 26
    ISR_NO_ERROR 27
    ISR_NO_ERROR 28
    ISR_ERROR    29
    ISR_ERROR    30
    ISR_NO_ERROR 31

isr_timer:
    pushq $0
    pushq $QUARRY_VECTOR_TIMER
    jmp irq_common

isr_spurious:
    pushq $0
    pushq $QUARRY_VECTOR_SPURIOUS
    jmp isr_common

// Body shared by both entry paths; \eoi selects whether the LAPIC gets an EOI.
.macro COMMON_BODY eoi
    pushq %rax
    pushq %rcx
    pushq %rdx
    pushq %rbx
    pushq %rbp
    pushq %rsi
    pushq %rdi
    pushq %r8
    pushq %r9
    pushq %r10
    pushq %r11
    pushq %r12
    pushq %r13
    pushq %r14
    pushq %r15
    movq %rsp, %rbx                     // rbx = frame (callee-saved across the call)
    subq $512, %rsp
    andq $-16, %rsp
    fxsave64 (%rsp)
    cld
    movl GPR_BYTES(%rbx), %edi          // vector
    movl GPR_BYTES + 8(%rbx), %esi      // error code
    movq %rbx, %rdx                     // frame
    call quarry_interrupt_dispatch      // rsp is 16-byte aligned here
.if \eoi
    // A 32-bit absolute address would be sign-extended in 64-bit code: go through rax.
    movl $LAPIC_EOI, %eax
    movl $0, (%rax)
.endif
    fxrstor64 (%rsp)
    movq %rbx, %rsp
    popq %r15
    popq %r14
    popq %r13
    popq %r12
    popq %r11
    popq %r10
    popq %r9
    popq %r8
    popq %rdi
    popq %rsi
    popq %rbp
    popq %rbx
    popq %rdx
    popq %rcx
    popq %rax
    addq $16, %rsp                      // vector and error code
    iretq
.endm

isr_common:
    COMMON_BODY 0

irq_common:
    COMMON_BODY 1

    .section .rodata.quarry_isr_stub_table, "a"
    .p2align 3
    .globl quarry_isr_stub_table
quarry_isr_stub_table:                  // order: QUARRY_STUB_* in quarry_support.h
    .quad isr_0, isr_1, isr_2, isr_3, isr_4, isr_5, isr_6, isr_7
    .quad isr_8, isr_9, isr_10, isr_11, isr_12, isr_13, isr_14, isr_15
    .quad isr_16, isr_17, isr_18, isr_19, isr_20, isr_21, isr_22, isr_23
    .quad isr_24, isr_25, isr_26, isr_27, isr_28, isr_29, isr_30, isr_31
    .quad isr_timer
    .quad isr_spurious

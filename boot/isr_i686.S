// isr_i686.S: interrupt entry stubs and the IDT storage; they hand every interrupt to Swift.
// Neighbours: Sources/QuarryKernel/Interrupts.swift (builds the IDT from
// quarry_isr_stub_table, defines quarry_interrupt_dispatch), multiboot_i686.S (GDT).
//
// Frame handed to the dispatcher (lowest address first; struct quarry_interrupt_frame):
//   edi esi ebp esp(ignored) ebx edx ecx eax   <- pushal
//   vector, error code                          <- the stub (dummy 0 when the CPU pushes none)
//   eip cs eflags                               <- the CPU (ring 0 to ring 0: no ss:esp)
// The stub then saves the x87/SSE state with fxsave into a 16-byte-aligned 512-byte
// area below the frame (interrupted Swift code may be in the middle of using xmm
// registers), clears DF, and calls
//   quarry_interrupt_dispatch(vector, errorCode, frame)
// with the stack 16-byte aligned. IRQ stubs (the LAPIC timer) send the LAPIC EOI
// after the dispatcher returns; the spurious vector must not, and exceptions have none.

#include "boot_defs.h"

    .section .bss.quarry_idt, "aw", @nobits
    .p2align 4
    .globl quarry_idt
quarry_idt:
    .skip 256 * 8

    .section .data.quarry_idtr, "aw"
    .p2align 2
    .globl quarry_idtr
quarry_idtr:
    .word 256 * 8 - 1
    .long quarry_idt

    .section .text.quarry_isr, "ax"
    .code32

// Exceptions for which the CPU pushes no error code: push a dummy so the frame is fixed.
.macro ISR_NO_ERROR vector
isr_\vector:
    pushl $0
    pushl $\vector
    jmp isr_common
.endm

// Exceptions 8, 10-14, 17, 21, 29, 30: the CPU already pushed an error code.
.macro ISR_ERROR vector
isr_\vector:
    pushl $\vector
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
    pushl $0
    pushl $QUARRY_VECTOR_TIMER
    jmp irq_common

isr_spurious:
    pushl $0
    pushl $QUARRY_VECTOR_SPURIOUS
    jmp isr_common

// Body shared by both entry paths; \eoi selects whether the LAPIC gets an EOI.
.macro COMMON_BODY eoi
    pushal
    movl %esp, %ebx                     // ebx = frame (callee-saved across the call)
    subl $512, %esp
    andl $-16, %esp
    fxsave (%esp)
    cld
    subl $4, %esp                       // 4 + 3 * 4 bytes: aligned again at the call
    pushl %ebx                          // frame
    pushl 36(%ebx)                      // error code
    pushl 32(%ebx)                      // vector
    call quarry_interrupt_dispatch
    addl $16, %esp
.if \eoi
    movl $0, LAPIC_EOI
.endif
    fxrstor (%esp)
    movl %ebx, %esp
    popal
    addl $8, %esp                       // vector and error code
    iret
.endm

isr_common:
    COMMON_BODY 0

irq_common:
    COMMON_BODY 1

    .section .rodata.quarry_isr_stub_table, "a"
    .p2align 2
    .globl quarry_isr_stub_table
quarry_isr_stub_table:                  // order: QUARRY_STUB_* in quarry_support.h
    .long isr_0, isr_1, isr_2, isr_3, isr_4, isr_5, isr_6, isr_7
    .long isr_8, isr_9, isr_10, isr_11, isr_12, isr_13, isr_14, isr_15
    .long isr_16, isr_17, isr_18, isr_19, isr_20, isr_21, isr_22, isr_23
    .long isr_24, isr_25, isr_26, isr_27, isr_28, isr_29, isr_30, isr_31
    .long isr_timer
    .long isr_spurious

// ap_trampoline_x86_64.S: how an application processor gets from the SIPI to kernel_ap_main in long mode.
// Neighbours: Sources/QuarryKernel/SMP.swift (copies the trampoline to 0x8000 and sends
// INIT-SIPI-SIPI), multiboot_x86_64.S (the GDT, the page tables, quarry_cpu_setup_fpu),
// boot_defs.h (ENABLE_LONG_MODE), isr_x86_64.S (IDT), ap_trampoline_i686.S (the i686 path).
//
// The bytes from quarry_ap_trampoline_start to quarry_ap_trampoline_end are
// position-dependent code for QUARRY_TRAMPOLINE_BASE: every address inside them is
// written as TRAMPOLINE(label). The SIPI (vector 0x08) starts each AP in real mode
// at CS:IP = 0x0800:0000. It loads the kernel's GDT, enters protected mode (32-bit
// code segment 0x18), enables long mode with the boot CPU's page tables (which
// identity-map this page), and far-jumps to quarry_ap_entry64 in the kernel image, which
//   1. takes the next CPU index with `lock xadd` on quarry_ap_started (APs get 1, 2, ...),
//      and parks (cli; hlt) if it is past QUARRY_MAX_CPUS - 1,
//   2. switches to its own stack, quarry_ap_stacks[index - 1],
//   3. sets up x87/SSE exactly as the boot CPU did, points IA32_GS_BASE at its per-CPU
//      slot and loads the shared IDT,
//   4. calls kernel_ap_main(index), which must not return.
// No AP touches a stack before step 2, so APs woken by the same broadcast SIPI can run
// the trampoline at the same time.

#include "boot_defs.h"

#define TRAMPOLINE(label) ((label) - quarry_ap_trampoline_start + QUARRY_TRAMPOLINE_BASE)

#if QUARRY_STACK_SIZE != (1 << 16)
#error "quarry_ap_entry64 computes the stack with shll $16"
#endif
#if QUARRY_PERCPU_SIZE != (1 << 6)
#error "quarry_ap_entry64 computes the per-CPU slot with shll $6"
#endif

    .section .rodata.quarry_ap_trampoline, "a"
    .p2align 4
    .globl quarry_ap_trampoline_start
quarry_ap_trampoline_start:
    .code16
    cli
    cld
    xorw %ax, %ax
    movw %ax, %ds
    lgdtl TRAMPOLINE(trampoline_gdtr)
    movl %cr0, %eax
    orl $CR0_PE, %eax
    movl %eax, %cr0
    ljmpl $QUARRY_GDT_CODE32, $TRAMPOLINE(trampoline_protected)

    .code32
trampoline_protected:
    movw $QUARRY_GDT_DATA, %ax
    movw %ax, %ds
    movw %ax, %es
    movw %ax, %ss
    movw %ax, %fs
    movw %ax, %gs
    ENABLE_LONG_MODE
    ljmp $QUARRY_GDT_CODE, $quarry_ap_entry64   // absolute: the kernel image above 1 MiB

    .p2align 2
trampoline_gdtr:                        // the kernel's GDT (its base is below 4 GiB)
    .word QUARRY_GDT_ENTRIES * 8 - 1
    .long quarry_gdt
    .globl quarry_ap_trampoline_end
quarry_ap_trampoline_end:

    .section .text.quarry_ap_entry, "ax"
    .code64
    .type quarry_ap_entry64, @function
quarry_ap_entry64:
    lgdt quarry_gdtr(%rip)              // the full 64-bit base
    movw $QUARRY_GDT_DATA, %ax
    movw %ax, %ds
    movw %ax, %es
    movw %ax, %ss
    xorl %eax, %eax
    movw %ax, %fs
    movw %ax, %gs                       // loading %gs zeroes its base: set the MSR after

    movl $1, %esi
    lock xaddl %esi, quarry_ap_started(%rip)    // esi = APs before this one
    incl %esi                           // this AP's CPU index: 1, 2, ...
    cmpl $QUARRY_MAX_CPUS, %esi
    jae park

    movl %esi, %eax                     // stack index - 1 spans quarry_ap_stacks +
    shll $16, %eax                      // [(index - 1) * size, index * size): its top is
    leaq quarry_ap_stacks(%rip), %rsp   // quarry_ap_stacks + index * size (size == 1 << 16)
    addq %rax, %rsp

    call quarry_cpu_setup_fpu

    // IA32_GS_BASE = quarry_percpu + index * QUARRY_PERCPU_SIZE: `mov %gs:0` reads index.
    leaq quarry_percpu(%rip), %rax
    movl %esi, %edx
    shll $6, %edx
    addq %rdx, %rax
    movq %rax, %rdx
    shrq $32, %rdx
    movl $MSR_GS_BASE, %ecx
    wrmsr

    lidt quarry_idtr(%rip)

    andq $-16, %rsp
    movl %esi, %edi
    call kernel_ap_main

park:
    cli
    hlt
    jmp park
    .size quarry_ap_entry64, . - quarry_ap_entry64

    .section .bss.quarry_ap, "aw", @nobits
    .p2align 4
quarry_ap_stacks:                       // one stack per AP, for CPU indices 1 ..< QUARRY_MAX_CPUS
    .skip (QUARRY_MAX_CPUS - 1) * QUARRY_STACK_SIZE

    .section .data.quarry_ap_started, "aw"
    .p2align 2
    .globl quarry_ap_started
quarry_ap_started:                      // APs that reached long mode (including parked ones)
    .long 0

// ap_trampoline_i686.S: how an application processor gets from the SIPI to kernel_ap_main.
// Neighbours: Sources/QuarryKernel/SMP.swift (copies the trampoline to 0x8000 and sends
// INIT-SIPI-SIPI), multiboot_i686.S (the GDT and quarry_cpu_setup_fpu), isr_i686.S (IDT).
//
// The bytes from quarry_ap_trampoline_start to quarry_ap_trampoline_end are
// position-dependent code for QUARRY_TRAMPOLINE_BASE: every address inside them is
// written as TRAMPOLINE(label). The SIPI (vector 0x08) starts each AP in real mode
// at CS:IP = 0x0800:0000. It loads the kernel's GDT, enters protected mode and jumps
// to quarry_ap_entry32 in the kernel image, which
//   1. takes the next CPU index with `lock xadd` on quarry_ap_started (APs get 1, 2, ...),
//      and parks (cli; hlt) if it is past QUARRY_MAX_CPUS - 1,
//   2. switches to its own stack, quarry_ap_stacks[index - 1],
//   3. sets up x87/SSE exactly as the boot CPU did, loads its %fs per-CPU segment
//      and the shared IDT,
//   4. calls kernel_ap_main(index), which must not return.

#include "boot_defs.h"

#define TRAMPOLINE(label) ((label) - quarry_ap_trampoline_start + QUARRY_TRAMPOLINE_BASE)

#if QUARRY_STACK_SIZE != (1 << 16)
#error "quarry_ap_entry32 computes the stack with shll $16"
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
    ljmpl $QUARRY_GDT_CODE, $TRAMPOLINE(trampoline_protected)

    .code32
trampoline_protected:
    movw $QUARRY_GDT_DATA, %ax
    movw %ax, %ds
    movw %ax, %es
    movw %ax, %ss
    movw %ax, %fs
    movw %ax, %gs
    movl $quarry_ap_entry32, %eax       // absolute: the kernel image above 1 MiB
    jmp *%eax

    .p2align 2
trampoline_gdtr:                        // the kernel's GDT (its base is a 32-bit linear address)
    .word QUARRY_GDT_ENTRIES * 8 - 1
    .long quarry_gdt
    .globl quarry_ap_trampoline_end
quarry_ap_trampoline_end:

    .section .text.quarry_ap_entry, "ax"
    .code32
    .type quarry_ap_entry32, @function
quarry_ap_entry32:
    movl $1, %esi
    lock xaddl %esi, quarry_ap_started  // esi = APs before this one
    incl %esi                           // this AP's CPU index: 1, 2, ...
    cmpl $QUARRY_MAX_CPUS, %esi
    jae park

    movl %esi, %eax                     // stack index - 1 spans quarry_ap_stacks +
    shll $16, %eax                      // [(index - 1) * size, index * size): its top is
    addl $quarry_ap_stacks, %eax        // quarry_ap_stacks + index * size (size == 1 << 16)
    movl %eax, %esp

    call quarry_cpu_setup_fpu

    leal QUARRY_GDT_PERCPU(, %esi, 8), %eax
    movw %ax, %fs
    lidt quarry_idtr

    andl $-16, %esp
    subl $12, %esp
    pushl %esi
    call kernel_ap_main

park:
    cli
    hlt
    jmp park
    .size quarry_ap_entry32, . - quarry_ap_entry32

    .section .bss.quarry_ap, "aw", @nobits
    .p2align 4
quarry_ap_stacks:                       // one stack per AP, for CPU indices 1 ..< QUARRY_MAX_CPUS
    .skip (QUARRY_MAX_CPUS - 1) * QUARRY_STACK_SIZE

    .section .data.quarry_ap_started, "aw"
    .p2align 2
    .globl quarry_ap_started
quarry_ap_started:                      // APs that reached protected mode (including parked ones)
    .long 0

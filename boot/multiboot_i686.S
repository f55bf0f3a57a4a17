// multiboot_i686.S: the boot CPU's first instructions, from the multiboot loader to kernel_main.
// Neighbours: linker/i686.ld (places .multiboot first, provides __bss_start/__bss_end),
// ap_trampoline_i686.S (the APs' path, which reuses the GDT and quarry_cpu_setup_fpu below),
// isr_i686.S (the IDT stubs), Sources/QuarryKernel/Kernel.swift (kernel_main).
//
// Machine state on entry (multiboot v1): 32-bit protected mode, paging off, flat
// segments from the loader's own GDT (which we must replace), interrupts off,
// EAX = 0x2BADB002, EBX = physical address of the multiboot information.
//
// The GDT: 0x00 null, 0x08 flat code, 0x10 flat data, then one 64-byte data
// segment per CPU at 0x18 + 8 * index whose base is that CPU's quarry_percpu slot.
// Each CPU loads its own selector into %fs once, so `mov %fs:0` is the CPU index.

#include "boot_defs.h"

// Multiboot v1 header. Flags: bit 0 = page-align modules, bit 1 = provide memory map.
#define MULTIBOOT_MAGIC 0x1BADB002
#define MULTIBOOT_FLAGS 0x00000003

    .section .multiboot, "a"
    .p2align 2
    .globl quarry_multiboot_header
quarry_multiboot_header:
    .long MULTIBOOT_MAGIC
    .long MULTIBOOT_FLAGS
    .long -(MULTIBOOT_MAGIC + MULTIBOOT_FLAGS)

    .section .data.quarry_gdt, "aw"
    .p2align 3
    .globl quarry_gdt
quarry_gdt:
    .quad 0                             // 0x00 null
    .quad 0x00CF9A000000FFFF            // 0x08 code: base 0, limit 4 GiB, 32-bit, ring 0
    .quad 0x00CF92000000FFFF            // 0x10 data: base 0, limit 4 GiB, 32-bit, ring 0
    .rept QUARRY_MAX_CPUS
    .quad 0x004092000000003F            // per-CPU data: limit 63 bytes, base set at boot
    .endr
quarry_gdt_end:

    .p2align 2
    .globl quarry_gdtr
quarry_gdtr:
    .word quarry_gdt_end - quarry_gdt - 1
    .long quarry_gdt

    .section .bss.quarry_boot, "aw", @nobits
    .p2align 6
    .globl quarry_percpu
quarry_percpu:                          // QUARRY_MAX_CPUS slots of QUARRY_PERCPU_SIZE bytes
    .skip QUARRY_MAX_CPUS * QUARRY_PERCPU_SIZE
    .p2align 4
boot_stack_bottom:
    .skip QUARRY_STACK_SIZE
boot_stack_top:

    .section .text.quarry_boot, "ax"
    .code32
    .globl _start
    .type _start, @function
_start:
    cli
    cld
    movl %eax, %ebp                     // multiboot magic, kept in callee-saved registers
    movl %ebx, %esi                     // multiboot information

    // Zero .bss ourselves: QEMU and GRUB do, but the kernel should not depend on the
    // loader for it. The arena is a NOLOAD section after .bss and is not touched.
    movl $__bss_start, %edi
    movl $__bss_end, %ecx
    subl %edi, %ecx
    shrl $2, %ecx
    xorl %eax, %eax
    rep stosl

    movl $boot_stack_top, %esp

    // Fill every per-CPU slot's index word and its GDT descriptor's base.
    movl $quarry_percpu, %edx
    movl $(quarry_gdt + QUARRY_GDT_PERCPU), %edi
    xorl %ecx, %ecx
1:  movl %ecx, (%edx)                   // slot.index = i
    movl %edx, %eax
    movw %ax, 2(%edi)                   // base 15:0
    shrl $16, %eax
    movb %al, 4(%edi)                   // base 23:16
    movb %ah, 7(%edi)                   // base 31:24
    addl $QUARRY_PERCPU_SIZE, %edx
    addl $8, %edi
    incl %ecx
    cmpl $QUARRY_MAX_CPUS, %ecx
    jb 1b

    lgdt quarry_gdtr
    ljmp $QUARRY_GDT_CODE, $2f
2:  movw $QUARRY_GDT_DATA, %ax
    movw %ax, %ds
    movw %ax, %es
    movw %ax, %ss
    movw %ax, %gs
    movw $QUARRY_GDT_PERCPU, %ax        // CPU 0's slot
    movw %ax, %fs

    call quarry_cpu_setup_fpu

    // kernel_main(magic, info) with the stack 16-byte aligned at the call (i386 SysV).
    andl $-16, %esp
    subl $8, %esp
    pushl %esi
    pushl %ebp
    call kernel_main

    // kernel_main does not return (it exits QEMU); if it does, stop here.
3:  cli
    hlt
    jmp 3b
    .size _start, . - _start

// Makes x87 and SSE usable on the calling CPU (Swift integer code
// uses xmm registers for copies and x87 for some 64-bit loads):
// CR0.EM = 0 (no emulation), CR0.TS = 0 (no lazy-switch trap), CR0.MP = 1,
// CR0.NE = 1 (native x87 errors), fninit, CR4.OSFXSR | CR4.OSXMMEXCPT.
// Clobbers EAX only. Every CPU calls it before any Swift code runs.
    .globl quarry_cpu_setup_fpu
    .type quarry_cpu_setup_fpu, @function
quarry_cpu_setup_fpu:
    movl %cr0, %eax
    andl $~(CR0_EM | CR0_TS), %eax
    orl $(CR0_MP | CR0_NE), %eax
    movl %eax, %cr0
    fninit
    movl %cr4, %eax
    orl $(CR4_OSFXSR | CR4_OSXMMEXCPT), %eax
    movl %eax, %cr4
    ret
    .size quarry_cpu_setup_fpu, . - quarry_cpu_setup_fpu

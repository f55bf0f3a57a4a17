// multiboot_x86_64.S: the boot CPU's path from the multiboot loader (32-bit) to kernel_main (64-bit).
// Neighbours: linker/x86_64.ld (places .multiboot first, provides the a.out-kludge addresses),
// ap_trampoline_x86_64.S (the APs' path, which reuses the GDT, the page tables and
// quarry_cpu_setup_fpu below), isr_x86_64.S (the IDT stubs), boot_defs.h (ENABLE_LONG_MODE),
// Sources/QuarryKernel/Kernel.swift (kernel_main).
//
// QEMU's -kernel refuses ELF64 multiboot images, so the header sets flag bit 16 (the
// "a.out kludge"): the loader takes the load addresses and the entry point from the
// header, and the Makefile boots `objcopy -O binary` of kernel.elf (build/x86_64/kernel.bin).
//
// Machine state on entry (multiboot v1): 32-bit protected mode, paging off, flat
// segments from the loader's own GDT (which we must replace), interrupts off,
// EAX = 0x2BADB002, EBX = physical address of the multiboot information.
//
// _start (32-bit code) zeroes .bss, builds the page tables, enters long mode and jumps
// to long_mode_entry (64-bit code), which loads the data segments, points IA32_GS_BASE
// at CPU 0's per-CPU slot (so `mov %gs:0` is the CPU index), enables x87/SSE and calls
// kernel_main(magic, info).
//
// Page tables: the first 4 GiB identity-mapped with 2 MiB pages (PML4[0] -> PDPT[0..3]
// -> 4 page directories of 512 entries). That covers the image, the arena, the
// multiboot information, the AP trampoline page and all RAM QEMU puts below 4 GiB. The
// top GiB (0xC0000000-0xFFFFFFFF, the PCI/MMIO hole holding the LAPIC at 0xFEE00000,
// the I/O APIC and the firmware) is mapped uncached (PCD | PWT).
//
// The GDT: 0x00 null, 0x08 64-bit code, 0x10 flat data, 0x18 32-bit code (the APs'
// protected-mode step). There are no per-CPU segments: long mode takes the %gs base
// from the MSR.

#include "boot_defs.h"

#define IDENTITY_MAP_PAGE_DIRECTORIES   4       // 4 x 1 GiB
#define LARGE_PAGES                     (IDENTITY_MAP_PAGE_DIRECTORIES * 512)
#define UNCACHED_FIRST_LARGE_PAGE       (3 * 512)   // 3 GiB / 2 MiB

// Multiboot v1 header. Flags: bit 0 = page-align modules, bit 1 = provide memory map,
// bit 16 = the address fields below are valid (the a.out kludge).
#define MULTIBOOT_MAGIC 0x1BADB002
#define MULTIBOOT_FLAGS 0x00010003

    .section .multiboot, "a"
    .p2align 2
    .globl quarry_multiboot_header
quarry_multiboot_header:
    .long MULTIBOOT_MAGIC
    .long MULTIBOOT_FLAGS
    .long -(MULTIBOOT_MAGIC + MULTIBOOT_FLAGS)
    .long quarry_multiboot_header       // header_addr: where this header is loaded
    .long __kernel_start                // load_addr: the first byte of kernel.bin
    .long __load_end                    // load_end_addr: the last file byte (end of .data)
    .long __kernel_end                  // bss_end_addr: the loader zeroes up to here (.bss, arena)
    .long _start                        // entry_addr

    .section .data.quarry_gdt, "aw"
    .p2align 3
    .globl quarry_gdt
quarry_gdt:
    .quad 0                             // 0x00 null
    .quad 0x00AF9A000000FFFF            // 0x08 code: 64-bit (L = 1, D = 0), ring 0
    .quad 0x00CF92000000FFFF            // 0x10 data: base 0, limit 4 GiB, ring 0
    .quad 0x00CF9A000000FFFF            // 0x18 code: 32-bit, base 0, limit 4 GiB, ring 0
quarry_gdt_end:

    // 10 bytes: lgdt in 32-bit code reads the limit and the low 4 bytes of the base
    // (the GDT lies below 4 GiB), lgdt in 64-bit code reads all of it.
    .p2align 3
    .globl quarry_gdtr
quarry_gdtr:
    .word quarry_gdt_end - quarry_gdt - 1
    .quad quarry_gdt

    .section .bss.quarry_page_tables, "aw", @nobits
    .p2align 12
    .globl quarry_pml4
quarry_pml4:
    .skip 4096
quarry_pdpt:
    .skip 4096
quarry_page_directories:
    .skip IDENTITY_MAP_PAGE_DIRECTORIES * 4096

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
    movl %eax, %ebp                     // multiboot magic, kept in registers the
    movl %ebx, %esi                     // code below leaves alone: multiboot information

    // Zero .bss ourselves (it holds the page tables): the kernel should not depend on
    // the loader for it. The arena is a NOLOAD section after .bss and is not touched.
    movl $__bss_start, %edi
    movl $__bss_end, %ecx
    subl %edi, %ecx
    shrl $2, %ecx
    xorl %eax, %eax
    rep stosl

    movl $boot_stack_top, %esp

    // Every per-CPU slot's index word: slot(i).index = i.
    movl $quarry_percpu, %edx
    xorl %ecx, %ecx
1:  movl %ecx, (%edx)
    addl $QUARRY_PERCPU_SIZE, %edx
    incl %ecx
    cmpl $QUARRY_MAX_CPUS, %ecx
    jb 1b

    // PML4[0] -> PDPT; PDPT[i] -> page directory i (the high halves stay 0 from .bss).
    movl $(quarry_pdpt + PTE_PRESENT + PTE_WRITE), %eax
    movl %eax, quarry_pml4
    movl $(quarry_page_directories + PTE_PRESENT + PTE_WRITE), %eax
    xorl %ecx, %ecx
2:  movl %eax, quarry_pdpt(, %ecx, 8)
    addl $4096, %eax
    incl %ecx
    cmpl $IDENTITY_MAP_PAGE_DIRECTORIES, %ecx
    jb 2b

    // Page directory entry j maps [j * 2 MiB, (j + 1) * 2 MiB) to itself.
    movl $(PTE_PRESENT | PTE_WRITE | PTE_LARGE), %eax
    xorl %ecx, %ecx
3:  movl %eax, %edx
    cmpl $UNCACHED_FIRST_LARGE_PAGE, %ecx
    jb 4f
    orl $(PTE_PCD | PTE_PWT), %edx      // the MMIO hole, LAPIC included: uncached
4:  movl %edx, quarry_page_directories(, %ecx, 8)
    addl $0x200000, %eax
    incl %ecx
    cmpl $LARGE_PAGES, %ecx
    jb 3b

    lgdt quarry_gdtr
    ENABLE_LONG_MODE
    ljmp $QUARRY_GDT_CODE, $long_mode_entry

    .code64
long_mode_entry:
    lgdt quarry_gdtr(%rip)              // again, now with the full 64-bit base
    movw $QUARRY_GDT_DATA, %ax
    movw %ax, %ds
    movw %ax, %es
    movw %ax, %ss
    xorl %eax, %eax
    movw %ax, %fs
    movw %ax, %gs                       // loading %gs zeroes its base: set the MSR after

    // IA32_GS_BASE = CPU 0's slot: `mov %gs:0` reads 0.
    movl $MSR_GS_BASE, %ecx
    movl $quarry_percpu, %eax
    xorl %edx, %edx
    wrmsr

    leaq boot_stack_top(%rip), %rsp
    call quarry_cpu_setup_fpu

    // kernel_main(magic, info) with the stack 16-byte aligned at the call (SysV).
    movl %ebp, %edi
    movl %esi, %esi                     // zero the high halves: they are undefined
    andq $-16, %rsp
    call kernel_main

    // kernel_main does not return (it exits QEMU); if it does, stop here.
5:  cli
    hlt
    jmp 5b
    .size _start, . - _start

// Makes x87 and SSE usable on the calling CPU (Swift integer code
// uses xmm registers for copies, and x86_64 code assumes SSE2):
// CR0.EM = 0 (no emulation), CR0.TS = 0 (no lazy-switch trap), CR0.MP = 1,
// CR0.NE = 1 (native x87 errors), fninit, CR4.OSFXSR | CR4.OSXMMEXCPT.
// Clobbers RAX only. Every CPU calls it before any Swift code runs.
    .globl quarry_cpu_setup_fpu
    .type quarry_cpu_setup_fpu, @function
quarry_cpu_setup_fpu:
    movq %cr0, %rax
    andq $~(CR0_EM | CR0_TS), %rax
    orq $(CR0_MP | CR0_NE), %rax
    movq %rax, %cr0
    fninit
    movq %cr4, %rax
    orq $(CR4_OSFXSR | CR4_OSXMMEXCPT), %rax
    movq %rax, %cr4
    ret
    .size quarry_cpu_setup_fpu, . - quarry_cpu_setup_fpu

// boot_defs.h: constants of the boot assembly files. Those Swift also needs (CPU count,
// per-CPU slot size, trampoline address, vectors) come from quarry_support.h, the one
// table both sides read.
#ifndef QUARRY_BOOT_DEFS_H
#define QUARRY_BOOT_DEFS_H

#include "quarry_support.h"

#define QUARRY_STACK_SIZE   65536       // per CPU (the boot CPU and each AP)

#if defined(__x86_64__)
// GDT selectors (see multiboot_x86_64.S). The per-CPU base is IA32_GS_BASE, not a segment.
#define QUARRY_GDT_CODE     0x08        // 64-bit code (the IDT gates' selector)
#define QUARRY_GDT_DATA     0x10
#define QUARRY_GDT_CODE32   0x18        // 32-bit code: the boot paths' step to long mode
#define QUARRY_GDT_ENTRIES  4
#else
// GDT selectors (see multiboot_i686.S).
#define QUARRY_GDT_CODE     0x08
#define QUARRY_GDT_DATA     0x10
#define QUARRY_GDT_PERCPU   0x18        // + 8 * cpu index
#define QUARRY_GDT_ENTRIES  (3 + QUARRY_MAX_CPUS)
#endif

// Local APIC end-of-interrupt register (the LAPIC stays at its reset address).
#define LAPIC_EOI           0xFEE000B0

#define CR0_PE              (1 << 0)
#define CR0_MP              (1 << 1)
#define CR0_EM              (1 << 2)
#define CR0_TS              (1 << 3)
#define CR0_NE              (1 << 5)
#define CR0_PG              0x80000000
#define CR4_PAE             (1 << 5)
#define CR4_OSFXSR          (1 << 9)
#define CR4_OSXMMEXCPT      (1 << 10)

// Long mode (x86_64 boot paths).
#define MSR_EFER            0xC0000080
#define EFER_LME            (1 << 8)
#define MSR_GS_BASE         0xC0000101

// Page-table entry bits (x86_64 boot paths: identity map with 2 MiB pages).
#define PTE_PRESENT         (1 << 0)
#define PTE_WRITE           (1 << 1)
#define PTE_PWT             (1 << 3)
#define PTE_PCD             (1 << 4)
#define PTE_LARGE           (1 << 7)    // in a page directory entry: a 2 MiB page

#if defined(__x86_64__) && defined(__ASSEMBLER__)
// 32-bit protected mode -> long mode (compatibility mode until the caller's far jump to
// a 64-bit code segment): PAE, CR3 = the identity map built by _start (multiboot_x86_64.S),
// EFER.LME, then paging. Shared by the boot CPU (_start) and the APs (the trampoline,
// which has no stack yet: hence a macro, not a call). Clobbers EAX, ECX, EDX.
.macro ENABLE_LONG_MODE
    movl %cr4, %eax
    orl $CR4_PAE, %eax
    movl %eax, %cr4
    movl $quarry_pml4, %eax
    movl %eax, %cr3
    movl $MSR_EFER, %ecx
    rdmsr
    orl $EFER_LME, %eax
    wrmsr
    movl %cr0, %eax
    orl $(CR0_PG | CR0_PE), %eax
    movl %eax, %cr0
.endm
#endif

#endif

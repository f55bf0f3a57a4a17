// entry_x86_64.S: the C kernel's whole entry, boot CPU and APs, written to the checklist
// of docs/integration.md ("The entry contract"): every line that makes the machine fit
// for Quarry says which item ([mode], [segments], [cpu index], [fpu], [stack],
// [interrupts], [bss]) it serves. Self-contained: no file of boot/ or
// Sources/CQuarrySupport. Neighbours: x86_64.ld (the a.out-kludge addresses), smp.c
// (copies the trampoline to 0x8000, INIT-SIPI-SIPI), main.c (kernel_main, kernel_ap_main).
//
// The loader (multiboot v1) leaves us in 32-bit protected mode, paging off, interrupts
// off, EAX = 0x2BADB002, EBX = the multiboot information. QEMU's -kernel refuses ELF64
// multiboot images, so the header sets flag 16 (the "a.out kludge": the loader takes the
// load addresses from the header) and the Makefile boots `objcopy -O binary` of the ELF.
// [mode] 64-bit long mode, reached below: PAE, a page table, EFER.LME, paging.

#define MAX_CPUS        16              // Quarry's X86Platform.maxCPUs: indices 0 ..< 16
#define PERCPU_SIZE     64              // one cache line per CPU's index word
#define STACK_SIZE      32768           // per CPU
#define TRAMPOLINE_BASE 0x8000          // SIPI vector 0x08: a 4 KiB page below 1 MiB
#define GDT_CODE        0x08            // 64-bit code
#define GDT_DATA        0x10
#define GDT_CODE32      0x18            // 32-bit code: the APs' step through protected mode
#define MSR_EFER        0xC0000080
#define MSR_GS_BASE     0xC0000101

    .section .multiboot, "a"
    .p2align 2
    .globl entry_multiboot_header
entry_multiboot_header:
    .long 0x1BADB002                    // magic
    .long 0x00010000                    // flags: bit 16, the address fields are valid
    .long -(0x1BADB002 + 0x00010000)    // checksum
    .long entry_multiboot_header        // header_addr: where this header is loaded
    .long __kernel_start                // load_addr: the first byte of the binary
    .long __load_end                    // load_end_addr: the end of the file's bytes
    .long __kernel_end                  // bss_end_addr: the loader zeroes up to here
    .long _start                        // entry_addr

    .section .data.entry_gdt, "aw"
    .p2align 3
entry_gdt:
    .quad 0                             // 0x00 null
    .quad 0x00AF9A000000FFFF            // 0x08 [segments] 64-bit code (L = 1), ring 0
    .quad 0x00CF92000000FFFF            // 0x10 [segments] flat data, ring 0
    .quad 0x00CF9A000000FFFF            // 0x18 32-bit flat code (the APs' protected mode)
entry_gdt_end:
    .p2align 3
entry_gdtr:                             // lgdt in 32-bit code reads 6 bytes, in 64-bit 10
    .word entry_gdt_end - entry_gdt - 1
    .quad entry_gdt

    .section .bss.entry_page_tables, "aw", @nobits
    .p2align 12
    .globl entry_pml4
entry_pml4:                             // [mode] PML4[0] -> PDPT[0..3] -> 4 directories:
    .skip 4096                          //   the first 4 GiB identity-mapped, 2 MiB pages
entry_pdpt:
    .skip 4096
entry_directories:
    .skip 4 * 4096

    .section .bss.entry, "aw", @nobits
    .p2align 6
    .globl entry_percpu
entry_percpu:                           // [cpu index] word 0 of slot i holds i
    .skip MAX_CPUS * PERCPU_SIZE
    .p2align 4
entry_stacks:                           // [stack] CPU i's stack is the i-th STACK_SIZE bytes
    .skip MAX_CPUS * STACK_SIZE

    .section .data.entry, "aw"
    .p2align 2
    .globl entry_ap_started
entry_ap_started:                       // APs that reached long mode (smp.c waits on it)
    .long 0

// Long mode from 32-bit protected mode with paging off (boot CPU and APs; the APs have
// no stack yet, hence a macro). Clobbers EAX, ECX, EDX.
.macro ENABLE_LONG_MODE
    movl %cr4, %eax
    orl $(1 << 5), %eax                 // [mode] CR4.PAE
    movl %eax, %cr4
    movl $entry_pml4, %eax              // [mode] CR3: the identity map
    movl %eax, %cr3
    movl $MSR_EFER, %ecx
    rdmsr
    orl $(1 << 8), %eax                 // [mode] EFER.LME
    wrmsr
    movl %cr0, %eax
    orl $0x80000001, %eax               // [mode] CR0.PG | PE: long mode is active
    movl %eax, %cr0
.endm

    .section .text.entry, "ax"
    .code32
    .globl _start
    .type _start, @function
_start:
    cli                                 // [interrupts] off until the kernel has an IDT
    cld                                 // the C ABI expects DF = 0
    movl %eax, %ebp                     // keep the multiboot magic
    movl %ebx, %esi                     // and information

    movl $__bss_start, %edi             // [bss] zero .bss (page tables, the C ABI's
    movl $__bss_end, %ecx               //   "not initialised" state): the loader does
    subl %edi, %ecx                     //   too, but nothing requires a loader to
    shrl $2, %ecx
    xorl %eax, %eax
    rep stosl

    movl $entry_percpu, %edx            // [cpu index] slot i's word = i
    xorl %ecx, %ecx
1:  movl %ecx, (%edx)
    addl $PERCPU_SIZE, %edx
    incl %ecx
    cmpl $MAX_CPUS, %ecx
    jb 1b

    movl $(entry_pdpt + 3), %eax        // [mode] PML4[0] -> PDPT (present, writable)
    movl %eax, entry_pml4
    movl $(entry_directories + 3), %eax // PDPT[i] -> directory i
    xorl %ecx, %ecx
2:  movl %eax, entry_pdpt(, %ecx, 8)
    addl $4096, %eax
    incl %ecx
    cmpl $4, %ecx
    jb 2b
    movl $0x83, %eax                    // directory entry j: 2 MiB page j (present,
    xorl %ecx, %ecx                     //   writable, large) at j * 2 MiB
3:  movl %eax, %edx
    cmpl $(3 * 512), %ecx               // the top GiB (LAPIC at 0xFEE00000, MMIO):
    jb 4f
    orl $0x18, %edx                     //   uncached (PCD | PWT)
4:  movl %edx, entry_directories(, %ecx, 8)
    addl $0x200000, %eax
    incl %ecx
    cmpl $(4 * 512), %ecx
    jb 3b

    lgdt entry_gdtr                     // [segments] our GDT, not the loader's
    ENABLE_LONG_MODE
    ljmp $GDT_CODE, $long_mode          // [mode] into 64-bit code

    .code64
long_mode:
    lgdt entry_gdtr(%rip)               // again, with the full 64-bit base
    movw $GDT_DATA, %ax                 // [segments] flat data
    movw %ax, %ds
    movw %ax, %es
    movw %ax, %ss
    xorl %eax, %eax
    movw %ax, %fs
    movw %ax, %gs                       // [cpu index] loading %gs zeroes its base: the
    movl $MSR_GS_BASE, %ecx             //   MSR comes after. IA32_GS_BASE = &slot 0:
    movl $entry_percpu, %eax            //   `mov %gs:0` reads 0
    xorl %edx, %edx
    wrmsr

    leaq entry_stacks + STACK_SIZE(%rip), %rsp  // [stack] CPU 0's (16-byte aligned)
    call entry_setup_fpu                // [fpu]

    movl %ebp, %edi                     // kernel_main(magic, info) (System V)
    movl %esi, %esi                     // zero the upper halves
    call kernel_main
5:  cli                                 // kernel_main does not return; if it does, stop
    hlt
    jmp 5b
    .size _start, . - _start

// [fpu] x87 and SSE on: Quarry's code uses xmm registers (copies, zeroing). CR0: EM = 0,
// TS = 0, MP = 1, NE = 1; fninit; CR4: OSFXSR | OSXMMEXCPT. Every CPU, before its first
// call into Quarry. Clobbers RAX.
    .type entry_setup_fpu, @function
entry_setup_fpu:
    movq %cr0, %rax
    andq $~((1 << 2) | (1 << 3)), %rax  // clear EM, TS
    orq $((1 << 1) | (1 << 5)), %rax    // set MP, NE
    movq %rax, %cr0
    fninit
    movq %cr4, %rax
    orq $((1 << 9) | (1 << 10)), %rax   // set OSFXSR, OSXMMEXCPT
    movq %rax, %cr4
    ret
    .size entry_setup_fpu, . - entry_setup_fpu

// The AP trampoline: smp.c copies [entry_ap_trampoline_start, entry_ap_trampoline_end) to
// TRAMPOLINE_BASE; a SIPI starts each AP there in real mode (CS:IP = 0x0800:0000). Every
// address inside is written for that copy: T(label). The identity map covers that page.
#define T(label) ((label) - entry_ap_trampoline_start + TRAMPOLINE_BASE)
    .section .rodata.entry_ap_trampoline, "a"
    .p2align 4
    .globl entry_ap_trampoline_start
entry_ap_trampoline_start:
    .code16
    cli                                 // [interrupts]
    cld
    xorw %ax, %ax
    movw %ax, %ds
    lgdtl T(trampoline_gdtr)            // [segments] the boot CPU's GDT
    movl %cr0, %eax
    orl $1, %eax                        // CR0.PE: protected mode (32-bit code segment)
    movl %eax, %cr0
    ljmpl $GDT_CODE32, $T(trampoline_32)
    .code32
trampoline_32:
    movw $GDT_DATA, %ax
    movw %ax, %ds
    movw %ax, %es
    movw %ax, %ss
    ENABLE_LONG_MODE                    // [mode] the boot CPU's page tables
    ljmp $GDT_CODE, $entry_ap64         // into the image (above 1 MiB), 64-bit
    .p2align 2
trampoline_gdtr:
    .word entry_gdt_end - entry_gdt - 1
    .long entry_gdt
    .globl entry_ap_trampoline_end
entry_ap_trampoline_end:

    .section .text.entry, "ax"
    .code64
    .type entry_ap64, @function
entry_ap64:
    lgdt entry_gdtr(%rip)               // the full 64-bit base
    movw $GDT_DATA, %ax                 // [segments]
    movw %ax, %ds
    movw %ax, %es
    movw %ax, %ss
    xorl %eax, %eax
    movw %ax, %fs
    movw %ax, %gs                       // before the MSR write below, never after
    movl $1, %esi
    lock xaddl %esi, entry_ap_started(%rip)    // [cpu index] APs take 1, 2, ... in
    incl %esi                                  //   arrival order: distinct, fixed
    cmpl $MAX_CPUS, %esi
    jae 2f                              // more CPUs than Quarry has records: park
    movl %esi, %eax
    incl %eax
    imull $STACK_SIZE, %eax
    leaq entry_stacks(%rip), %rsp       // [stack] the top of stack `index`
    addq %rax, %rsp
    call entry_setup_fpu                // [fpu] on every CPU
    movl %esi, %eax                     // [cpu index] IA32_GS_BASE = &slot index
    imull $PERCPU_SIZE, %eax
    leaq entry_percpu(%rip), %rdx
    addq %rdx, %rax
    movq %rax, %rdx
    shrq $32, %rdx
    movl $MSR_GS_BASE, %ecx
    wrmsr
    movl %esi, %edi                     // kernel_ap_main(index)
    call kernel_ap_main
2:  cli
    hlt
    jmp 2b
    .size entry_ap64, . - entry_ap64

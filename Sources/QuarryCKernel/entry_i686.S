// entry_i686.S: the C kernel's whole entry, boot CPU and APs, written to the checklist of
// docs/integration.md ("The entry contract"): every line that makes the machine fit for
// Quarry says which item ([mode], [segments], [cpu index], [fpu], [stack], [interrupts],
// [bss]) it serves. Self-contained: no file of boot/ or Sources/CQuarrySupport.
// Neighbours: i686.ld (places .multiboot first, __bss_start/__bss_end), smp.c (copies the
// trampoline to 0x8000 and sends INIT-SIPI-SIPI), main.c (kernel_main, kernel_ap_main).
//
// The loader (multiboot v1) leaves us in 32-bit protected mode, paging off, interrupts
// off, EAX = 0x2BADB002, EBX = the multiboot information: [mode] is already right.

#define MAX_CPUS        16              // Quarry's X86Platform.maxCPUs: indices 0 ..< 16
#define PERCPU_SIZE     64              // one cache line per CPU's index word
#define STACK_SIZE      32768           // per CPU
#define TRAMPOLINE_BASE 0x8000          // SIPI vector 0x08: a 4 KiB page below 1 MiB
#define GDT_CODE        0x08
#define GDT_DATA        0x10
#define GDT_PERCPU      0x18            // + 8 * CPU index
#define GDT_ENTRIES     (3 + MAX_CPUS)

    // Multiboot v1 header (ELF image: no address fields needed), in the first 8 KiB.
    .section .multiboot, "a"
    .p2align 2
    .globl entry_multiboot_header
entry_multiboot_header:
    .long 0x1BADB002                    // magic
    .long 0                             // flags: nothing asked of the loader
    .long -0x1BADB002                   // checksum: magic + flags + checksum == 0

    .section .data.entry_gdt, "aw"
    .p2align 3
entry_gdt:
    .quad 0                             // 0x00 null
    .quad 0x00CF9A000000FFFF            // 0x08 [segments] flat 4 GiB code, ring 0, 32-bit
    .quad 0x00CF92000000FFFF            // 0x10 [segments] flat 4 GiB data, ring 0
    .rept MAX_CPUS                      // 0x18 + 8i [cpu index] a 4-byte data segment per
    .quad 0x0040920000000003            //   CPU; its base (filled in below) is CPU i's word
    .endr
entry_gdt_end:
    .p2align 2
entry_gdtr:
    .word entry_gdt_end - entry_gdt - 1
    .long entry_gdt

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
entry_ap_started:                       // APs that reached protected mode (smp.c waits on it)
    .long 0

    .section .text.entry, "ax"
    .code32
    .globl _start
    .type _start, @function
_start:
    cli                                 // [interrupts] off until the kernel has an IDT
    cld                                 // the C ABI expects DF = 0
    movl %eax, %ebp                     // keep the multiboot magic
    movl %ebx, %esi                     // and information

    movl $__bss_start, %edi             // [bss] zero .bss: Quarry's C ABI starts "not
    movl $__bss_end, %ecx               //   initialised" there (the loader zeroes it too,
    subl %edi, %ecx                     //   but nothing requires a loader to)
    shrl $2, %ecx
    xorl %eax, %eax
    rep stosl

    // [cpu index] slot i's word = i, and descriptor i's base = &slot i.
    movl $entry_percpu, %edx
    movl $(entry_gdt + GDT_PERCPU), %edi
    xorl %ecx, %ecx
1:  movl %ecx, (%edx)                   // the index word
    movl %edx, %eax
    movw %ax, 2(%edi)                   // base 15:0
    shrl $16, %eax
    movb %al, 4(%edi)                   // base 23:16
    movb %ah, 7(%edi)                   // base 31:24
    addl $PERCPU_SIZE, %edx
    addl $8, %edi
    incl %ecx
    cmpl $MAX_CPUS, %ecx
    jb 1b

    lgdt entry_gdtr                     // [segments] our GDT, not the loader's
    ljmp $GDT_CODE, $2f                 // reload CS from it
2:  movw $GDT_DATA, %ax
    movw %ax, %ds
    movw %ax, %es
    movw %ax, %ss
    movw %ax, %gs
    movw $GDT_PERCPU, %ax               // [cpu index] %fs = CPU 0's segment: `mov %fs:0` is 0
    movw %ax, %fs

    movl $(entry_stacks + STACK_SIZE), %esp    // [stack] CPU 0's (16-byte aligned)
    call entry_setup_fpu                // [fpu]

    subl $8, %esp                       // kernel_main(magic, info), the stack 16-byte
    pushl %esi                          //   aligned at the call (i386 System V)
    pushl %ebp
    call kernel_main
3:  cli                                 // kernel_main does not return; if it does, stop
    hlt
    jmp 3b
    .size _start, . - _start

// [fpu] x87 and SSE on: Quarry's code uses xmm registers (copies, zeroing) and x87 (some
// 64-bit loads). CR0: EM = 0 (no emulation), TS = 0 (no trap on first use), MP = 1,
// NE = 1 (native errors); fninit; CR4: OSFXSR (SSE) | OSXMMEXCPT (SSE exceptions).
// Every CPU runs it before its first call into Quarry. Clobbers EAX.
    .type entry_setup_fpu, @function
entry_setup_fpu:
    movl %cr0, %eax
    andl $~((1 << 2) | (1 << 3)), %eax  // clear EM, TS
    orl $((1 << 1) | (1 << 5)), %eax    // set MP, NE
    movl %eax, %cr0
    fninit
    movl %cr4, %eax
    orl $((1 << 9) | (1 << 10)), %eax   // set OSFXSR, OSXMMEXCPT
    movl %eax, %cr4
    ret
    .size entry_setup_fpu, . - entry_setup_fpu

// The AP trampoline: smp.c copies [entry_ap_trampoline_start, entry_ap_trampoline_end) to
// TRAMPOLINE_BASE; a SIPI starts each AP there in real mode (CS:IP = 0x0800:0000). Every
// address inside is written for that copy: T(label).
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
    lgdtl T(trampoline_gdtr)            // [segments] the same GDT as the boot CPU
    movl %cr0, %eax
    orl $1, %eax                        // [mode] CR0.PE: protected mode
    movl %eax, %cr0
    ljmpl $GDT_CODE, $T(trampoline_32)
    .code32
trampoline_32:
    movw $GDT_DATA, %ax                 // [segments] flat data
    movw %ax, %ds
    movw %ax, %es
    movw %ax, %ss
    movw %ax, %gs
    movl $entry_ap32, %eax              // into the image (above 1 MiB): absolute jump
    jmp *%eax
    .p2align 2
trampoline_gdtr:
    .word GDT_ENTRIES * 8 - 1
    .long entry_gdt
    .globl entry_ap_trampoline_end
entry_ap_trampoline_end:

    .section .text.entry, "ax"
    .code32
    .type entry_ap32, @function
entry_ap32:
    movl $1, %esi
    lock xaddl %esi, entry_ap_started   // [cpu index] APs take 1, 2, ... in arrival order:
    incl %esi                           //   distinct, fixed for the CPU's life
    cmpl $MAX_CPUS, %esi
    jae 2f                              // more CPUs than Quarry has records: park
    movl %esi, %eax
    incl %eax
    imull $STACK_SIZE, %eax
    leal entry_stacks(%eax), %esp       // [stack] the top of stack `index`
    call entry_setup_fpu                // [fpu] on every CPU
    leal GDT_PERCPU(, %esi, 8), %eax    // [cpu index] %fs = this CPU's segment
    movw %ax, %fs
    subl $12, %esp                      // kernel_ap_main(index), 16-byte aligned
    pushl %esi
    call kernel_ap_main
2:  cli
    hlt
    jmp 2b
    .size entry_ap32, . - entry_ap32

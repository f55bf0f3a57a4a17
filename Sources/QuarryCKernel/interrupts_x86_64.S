// interrupts_x86_64.S: the C kernel's three interrupt stubs (x86_64). Neighbours:
// interrupts.c (the IDT that points at them, the LAPIC timer), epochs.c (what a tick does).
//
// irq_timer_stub: saves the registers System V lets a call clobber and the SSE state
// (fxsave: Quarry's code uses xmm registers, so a handler that calls Quarry must save
// them), clears DF, calls interrupts_timer_tick() (which sends the EOI), restores, iretq.
// The C is built with -mno-red-zone: the CPU pushes the frame below the interrupted rsp.
// irq_ignore_stub: iretq (the LAPIC spurious vector, stray PIC IRQs).
// irq_fault_stub: an exception: leave QEMU through isa-debug-exit with the failure code.

    .section .text.irq, "ax"
    .code64
    .globl irq_timer_stub
    .type irq_timer_stub, @function
irq_timer_stub:
    pushq %rax
    pushq %rcx
    pushq %rdx
    pushq %rsi
    pushq %rdi
    pushq %r8
    pushq %r9
    pushq %r10
    pushq %r11
    pushq %rbp
    movq %rsp, %rbp
    subq $512, %rsp
    andq $-16, %rsp                     // fxsave needs 512 bytes, 16-byte aligned
    fxsave (%rsp)
    cld
    call interrupts_timer_tick          // the stack is 16-byte aligned at the call
    fxrstor (%rsp)
    movq %rbp, %rsp
    popq %rbp
    popq %r11
    popq %r10
    popq %r9
    popq %r8
    popq %rdi
    popq %rsi
    popq %rdx
    popq %rcx
    popq %rax
    iretq
    .size irq_timer_stub, . - irq_timer_stub

    .globl irq_ignore_stub
    .type irq_ignore_stub, @function
irq_ignore_stub:
    iretq
    .size irq_ignore_stub, . - irq_ignore_stub

    .globl irq_fault_stub
    .type irq_fault_stub, @function
irq_fault_stub:
    movw $0xF4, %dx                     // isa-debug-exit: 0x22 is the failure code
    movb $0x22, %al
    outb %al, %dx
1:  cli
    hlt
    jmp 1b
    .size irq_fault_stub, . - irq_fault_stub

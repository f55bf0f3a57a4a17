// interrupts_i686.S: the C kernel's three interrupt stubs (i686). Neighbours: interrupts.c
// (the IDT that points at them, the LAPIC timer), epochs.c (what a tick does).
//
// irq_timer_stub: saves every register and the SSE state (fxsave: Quarry's code uses xmm
// registers, so a handler that calls Quarry must save them even though this C does not
// use them itself), clears DF, calls interrupts_timer_tick() (which sends the EOI),
// restores, irets. irq_ignore_stub: iret (the LAPIC spurious vector, stray PIC IRQs).
// irq_fault_stub: an exception: leave QEMU through isa-debug-exit with the failure code.

    .section .text.irq, "ax"
    .code32
    .globl irq_timer_stub
    .type irq_timer_stub, @function
irq_timer_stub:
    pushal
    movl %esp, %ebp                     // the frame; %ebp is restored by popal
    subl $512, %esp
    andl $-16, %esp                     // fxsave needs 512 bytes, 16-byte aligned
    fxsave (%esp)
    cld
    call interrupts_timer_tick          // the stack is 16-byte aligned at the call
    fxrstor (%esp)
    movl %ebp, %esp
    popal
    iret
    .size irq_timer_stub, . - irq_timer_stub

    .globl irq_ignore_stub
    .type irq_ignore_stub, @function
irq_ignore_stub:
    iret
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

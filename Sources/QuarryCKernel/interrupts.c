/* interrupts.c: the IDT, the PIC and each CPU's local APIC timer for the C kernel.
 * Neighbours: interrupts.h (the contract), interrupts_<arch>.S (the stubs), epochs.c
 * (epochs_tick, the timer's work), smp.c (the same LAPIC's IPIs).
 */
#include "interrupts.h"

#include "epochs.h"
#include "ports.h"

#define VECTOR_TIMER 0x40
#define VECTOR_SPURIOUS 0xFF
#define LAPIC_BASE 0xFEE00000u
#define LAPIC_EOI 0x0B0u
#define LAPIC_SPURIOUS 0x0F0u
#define LAPIC_TIMER 0x320u
#define LAPIC_TIMER_INITIAL 0x380u
#define LAPIC_TIMER_DIVIDE 0x3E0u
#define LVT_MASKED (1u << 16)
#define LVT_PERIODIC (1u << 17)
/* QEMU's APIC timer counts at 1 GHz; divided by 16, 100000 counts are 1.6 ms. */
#define TIMER_COUNT 100000u

void irq_timer_stub(void);
void irq_ignore_stub(void);
void irq_fault_stub(void);

#if defined(__x86_64__)
struct gate {
    uint16_t offset_low, selector;
    uint8_t ist, type;
    uint16_t offset_middle;
    uint32_t offset_high, reserved;
};
#else
struct gate {
    uint16_t offset_low, selector;
    uint8_t zero, type;
    uint16_t offset_high;
};
#endif

struct __attribute__((packed)) descriptor_register {
    uint16_t limit;
    uintptr_t base;
};

static struct gate idt[256] __attribute__((aligned(16)));

static void set_gate(int vector, void (*stub)(void)) {
    uintptr_t address = (uintptr_t)stub;
    struct gate *g = &idt[vector];
    g->offset_low = (uint16_t)address;
    g->selector = 0x08;                 /* the entry's code segment */
    g->type = 0x8E;                     /* present, ring 0, interrupt gate (IF cleared) */
#if defined(__x86_64__)
    g->ist = 0;
    g->offset_middle = (uint16_t)(address >> 16);
    g->offset_high = (uint32_t)(address >> 32);
    g->reserved = 0;
#else
    g->zero = 0;
    g->offset_high = (uint16_t)(address >> 16);
#endif
}

static volatile uint32_t *lapic(uint32_t reg) { return (volatile uint32_t *)(uintptr_t)(LAPIC_BASE + reg); }

void interrupts_init(void) {
    for (int v = 0; v < 256; v++) set_gate(v, v < 32 ? irq_fault_stub : irq_ignore_stub);
    set_gate(VECTOR_TIMER, irq_timer_stub);
    /* The 8259 PIC: vectors 0x20-0x2F instead of the exceptions', then every line masked. */
    outb(0x20, 0x11);
    outb(0xA0, 0x11);
    outb(0x21, 0x20);
    outb(0xA1, 0x28);
    outb(0x21, 0x04);
    outb(0xA1, 0x02);
    outb(0x21, 0x01);
    outb(0xA1, 0x01);
    outb(0x21, 0xFF);
    outb(0xA1, 0xFF);
}

void interrupts_start_cpu(void) {
    struct descriptor_register idtr = {sizeof idt - 1, (uintptr_t)idt};
    __asm__ volatile("lidt %0" : : "m"(idtr) : "memory");
    *lapic(LAPIC_SPURIOUS) = (1u << 8) | VECTOR_SPURIOUS;  /* software-enable the LAPIC */
    *lapic(LAPIC_TIMER_DIVIDE) = 0x3;                      /* divide by 16 */
    *lapic(LAPIC_TIMER) = LVT_PERIODIC | VECTOR_TIMER;
    *lapic(LAPIC_TIMER_INITIAL) = TIMER_COUNT;
    __asm__ volatile("sti" ::: "memory");
}

void interrupts_stop_cpu(void) {
    __asm__ volatile("cli" ::: "memory");
    *lapic(LAPIC_TIMER) = LVT_MASKED | VECTOR_TIMER;
    *lapic(LAPIC_TIMER_INITIAL) = 0;
}

unsigned this_cpu(void) {
    uint32_t index;
#if defined(__x86_64__)
    __asm__ volatile("movl %%gs:0, %0" : "=r"(index));
#else
    __asm__ volatile("movl %%fs:0, %0" : "=r"(index));
#endif
    return index;
}

/* Called by irq_timer_stub with interrupts off, DF clear and the SSE state saved. */
void interrupts_timer_tick(void);
void interrupts_timer_tick(void) {
    epochs_tick(this_cpu());
    *lapic(LAPIC_EOI) = 0;
}

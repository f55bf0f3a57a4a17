/* interrupts.h: the C kernel's interrupts: one IDT for every CPU (exceptions stop the
 * test, the LAPIC timer runs epochs_tick, the rest is ignored), the 8259 PIC remapped and
 * masked, each CPU's local APIC timer. Neighbours: interrupts.c, interrupts_<arch>.S (the
 * stubs, which save the SSE state), epochs.c (the tick's work).
 */
#ifndef QUARRY_CKERNEL_INTERRUPTS_H
#define QUARRY_CKERNEL_INTERRUPTS_H

#include <stdint.h>

/* Boot CPU, once, interrupts off: builds the IDT, remaps and masks the PIC. */
void interrupts_init(void);
/* Each CPU: loads the IDT, enables its LAPIC and a periodic timer, then `sti`. */
void interrupts_start_cpu(void);
/* Each CPU: `cli`, then its timer stopped. */
void interrupts_stop_cpu(void);
/* This CPU's index, as Quarry reads it (%fs:0 on i686, %gs:0 on x86_64). */
unsigned this_cpu(void);

static inline uintptr_t irq_save(void) {
    uintptr_t flags;
    __asm__ volatile("pushf\n\tpop %0\n\tcli" : "=r"(flags) : : "memory");
    return flags;
}

static inline void irq_restore(uintptr_t flags) {
    __asm__ volatile("push %0\n\tpopf" : : "r"(flags) : "memory", "cc");
}

#endif

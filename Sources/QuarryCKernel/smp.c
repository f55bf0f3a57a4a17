/* smp.c: starting the C kernel's APs: the CPU count from QEMU's fw_cfg, the trampoline
 * copied below 1 MiB, INIT-SIPI-SIPI through the local APIC (the MP specification's
 * sequence). Neighbours: entry_<arch>.S (the trampoline, entry_ap_started, the APs' stacks
 * and per-CPU words), main.c (kernel_ap_main), console.c.
 */
#include "smp.h"

#include "ports.h"

#include <stddef.h>

void *memcpy(void *destination, const void *source, size_t count);

extern const char entry_ap_trampoline_start[], entry_ap_trampoline_end[];
extern uint32_t entry_ap_started;       /* APs past the trampoline (atomic increments) */

#define TRAMPOLINE_BASE 0x8000u
#define LAPIC_BASE 0xFEE00000u          /* identity-mapped (x86_64: uncached) */
#define LAPIC_ICR_LOW 0x300u
#define LAPIC_ICR_HIGH 0x310u
#define ICR_PENDING (1u << 12)
#define ICR_ASSERT (1u << 14)
#define ICR_ALL_BUT_SELF (3u << 18)
#define ICR_INIT (5u << 8)
#define ICR_STARTUP (6u << 8)

static volatile uint32_t *lapic(uint32_t reg) { return (volatile uint32_t *)(uintptr_t)(LAPIC_BASE + reg); }

void smp_delay(unsigned microseconds) {
    for (unsigned i = 0; i < microseconds; i++) outb(0x80, 0);
}

unsigned smp_firmware_cpu_count(void) {
    outw(0x510, 0x0000);                /* fw_cfg signature: "QEMU" */
    uint32_t signature = 0;
    for (int i = 0; i < 4; i++) signature |= (uint32_t)inb(0x511) << (8 * i);
    if (signature != 0x554D4551u) return 1;
    outw(0x510, 0x0005);                /* the CPU count, 16-bit little-endian */
    unsigned count = inb(0x511);
    count |= (unsigned)inb(0x511) << 8;
    if (count < 1) count = 1;
    return count > 16 ? 16 : count;
}

static void send_ipi(uint32_t low) {
    *lapic(LAPIC_ICR_HIGH) = 0;
    *lapic(LAPIC_ICR_LOW) = low;        /* writing the low word sends */
    while (*lapic(LAPIC_ICR_LOW) & ICR_PENDING) cpu_pause();
}

unsigned smp_start_aps(unsigned expected) {
    if (expected <= 1) return 0;
    memcpy((void *)(uintptr_t)TRAMPOLINE_BASE, entry_ap_trampoline_start,
           (size_t)(entry_ap_trampoline_end - entry_ap_trampoline_start));
    send_ipi(ICR_ALL_BUT_SELF | ICR_ASSERT | ICR_INIT);
    smp_delay(10000);
    send_ipi(ICR_ALL_BUT_SELF | ICR_ASSERT | ICR_STARTUP | (TRAMPOLINE_BASE >> 12));
    smp_delay(200);
    if (__atomic_load_n(&entry_ap_started, __ATOMIC_ACQUIRE) < expected - 1)
        send_ipi(ICR_ALL_BUT_SELF | ICR_ASSERT | ICR_STARTUP | (TRAMPOLINE_BASE >> 12));
    for (unsigned waited = 0; waited < 2000; waited++) {
        if (__atomic_load_n(&entry_ap_started, __ATOMIC_ACQUIRE) >= expected - 1) break;
        smp_delay(1000);
    }
    return __atomic_load_n(&entry_ap_started, __ATOMIC_ACQUIRE);
}

/* ports.h: x86 port I/O and pause for the C kernel (COM1, isa-debug-exit, fw_cfg, delays).
 * Neighbours: console.c, smp.c.
 */
#ifndef QUARRY_CKERNEL_PORTS_H
#define QUARRY_CKERNEL_PORTS_H

#include <stdint.h>

static inline void outb(uint16_t port, uint8_t value) {
    __asm__ volatile("outb %0, %1" : : "a"(value), "Nd"(port) : "memory");
}

static inline void outw(uint16_t port, uint16_t value) {
    __asm__ volatile("outw %0, %1" : : "a"(value), "Nd"(port) : "memory");
}

static inline uint8_t inb(uint16_t port) {
    uint8_t value;
    __asm__ volatile("inb %1, %0" : "=a"(value) : "Nd"(port) : "memory");
    return value;
}

static inline void cpu_pause(void) { __asm__ volatile("pause" ::: "memory"); }

#endif

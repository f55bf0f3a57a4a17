// boot_defs.h: constants of the boot assembly files. Those Swift also needs (CPU count,
// per-CPU slot size, trampoline address, vectors) come from quarry_support.h, the one
// table both sides read.
#ifndef QUARRY_BOOT_DEFS_H
#define QUARRY_BOOT_DEFS_H

#include "quarry_support.h"

#define QUARRY_STACK_SIZE   65536       // per CPU (the boot CPU and each AP)

// GDT selectors (see multiboot_i686.S).
#define QUARRY_GDT_CODE     0x08
#define QUARRY_GDT_DATA     0x10
#define QUARRY_GDT_PERCPU   0x18        // + 8 * cpu index
#define QUARRY_GDT_ENTRIES  (3 + QUARRY_MAX_CPUS)

// Local APIC end-of-interrupt register (the LAPIC stays at its reset address).
#define LAPIC_EOI           0xFEE000B0

#define CR0_PE              (1 << 0)
#define CR0_MP              (1 << 1)
#define CR0_EM              (1 << 2)
#define CR0_TS              (1 << 3)
#define CR0_NE              (1 << 5)
#define CR4_OSFXSR          (1 << 9)
#define CR4_OSXMMEXCPT      (1 << 10)

#endif

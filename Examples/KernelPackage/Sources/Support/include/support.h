// support.h: what the example kernel's Swift cannot say: the arena the linker script
// reserves, QEMU's exit port, and the C library functions Quarry's code calls.
// Neighbours: support.c, Kernel/Kernel.swift, Examples/KernelPackage/linker/i686.ld (the arena
// symbols) in the Quarry repository.
#ifndef KERNEL_SUPPORT_H
#define KERNEL_SUPPORT_H

#include <stdint.h>

/// [__quarry_arena_start, __quarry_arena_end): page-aligned, from the linker script.
uintptr_t support_arena_start(void);
uintptr_t support_arena_end(void);

/// Writes `code` to QEMU's isa-debug-exit port (0xf4): QEMU exits with (code << 1) | 1.
/// Where there is no such device, halts with interrupts off.
__attribute__((noreturn)) void support_exit(uint8_t code);

#endif

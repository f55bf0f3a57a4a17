/* console.h: the C kernel's output (COM1), test checks and exit through QEMU's isa-debug-exit.
 * Neighbours: console.c (the implementation), main.c (the checks), libc.c (memset & co).
 */
#ifndef QUARRY_CKERNEL_CONSOLE_H
#define QUARRY_CKERNEL_CONSOLE_H

#include <stddef.h>
#include <stdint.h>

/* COM1: 115200 baud, 8N1, FIFOs on, polled (no interrupts). */
void console_init(void);
void console_putc(char c);
void console_write(const char *text, size_t length);
void console_print(const char *text);
void console_decimal(uint64_t value);
void console_hex(uintptr_t value);

/* One line per check: "PASS name" or "FAIL name: detail" (the Swift kernel's format,
 * which `make qemu-test` reads). */
void check(const char *name, int ok, const char *detail);
/* "FAIL name: got A, expected B" unless got == expected. */
void check_equal(const char *name, uint64_t got, uint64_t expected);

/* Prints "N passed, M failed" and leaves QEMU with status 67 (all passed, at least
 * one check) or 69; halts for good on a machine without isa-debug-exit. */
void finish(void) __attribute__((noreturn));

#endif

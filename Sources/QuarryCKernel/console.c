/* console.c: COM1 output, the check counters and the exit through isa-debug-exit.
 * Neighbours: console.h (the contract), main.c (the checks).
 * Only the boot CPU prints and checks (the APs report through epochs.c's results).
 */
#include "console.h"
#include "ports.h"

#define COM1 0x3F8
#define LINE_STATUS_TRANSMIT_EMPTY 0x20
/* -device isa-debug-exit,iobase=0xf4,iosize=0x04: writing v exits QEMU with (v << 1) | 1. */
#define DEBUG_EXIT_PORT 0xF4
#define EXIT_SUCCESS_CODE 0x21
#define EXIT_FAILURE_CODE 0x22

static unsigned checks_passed, checks_failed;


void console_init(void) {
    outb(COM1 + 1, 0x00); /* no UART interrupts */
    outb(COM1 + 3, 0x80); /* DLAB: the next two writes set the divisor */
    outb(COM1 + 0, 0x01); /* divisor 1: 115200 baud */
    outb(COM1 + 1, 0x00);
    outb(COM1 + 3, 0x03); /* 8N1, DLAB off */
    outb(COM1 + 2, 0xC7); /* FIFOs on and cleared */
    outb(COM1 + 4, 0x0B); /* DTR | RTS | OUT2 */
}

void console_putc(char c) {
    if (c == '\n') console_putc('\r');
    while ((inb(COM1 + 5) & LINE_STATUS_TRANSMIT_EMPTY) == 0) __asm__ volatile("pause");
    outb(COM1, (uint8_t)c);
}

void console_write(const char *text, size_t length) {
    for (size_t i = 0; i < length; i++) console_putc(text[i]);
}

void console_print(const char *text) {
    while (*text) console_putc(*text++);
}

void console_decimal(uint64_t value) {
    char digits[20];
    int n = 0;
    do {
        digits[n++] = (char)('0' + value % 10); /* i686: __umoddi3/__udivdi3 from libgcc */
        value /= 10;
    } while (value != 0);
    while (n > 0) console_putc(digits[--n]);
}

void console_hex(uintptr_t value) {
    console_print("0x");
    for (int shift = (int)sizeof value * 8 - 4; shift >= 0; shift -= 4) {
        console_putc("0123456789abcdef"[(value >> shift) & 0xF]);
    }
}

void check(const char *name, int ok, const char *detail) {
    if (ok) {
        checks_passed++;
        console_print("PASS ");
        console_print(name);
    } else {
        checks_failed++;
        console_print("FAIL ");
        console_print(name);
        console_print(": ");
        console_print(detail);
    }
    console_putc('\n');
}

void check_equal(const char *name, uint64_t got, uint64_t expected) {
    if (got == expected) {
        check(name, 1, "");
        return;
    }
    checks_failed++;
    console_print("FAIL ");
    console_print(name);
    console_print(": got ");
    console_decimal(got);
    console_print(", expected ");
    console_decimal(expected);
    console_putc('\n');
}

void finish(void) {
    console_decimal(checks_passed);
    console_print(" passed, ");
    console_decimal(checks_failed);
    console_print(" failed\n");
    outb(DEBUG_EXIT_PORT, checks_failed == 0 && checks_passed > 0 ? EXIT_SUCCESS_CODE : EXIT_FAILURE_CODE);
    for (;;) __asm__ volatile("cli; hlt");
}

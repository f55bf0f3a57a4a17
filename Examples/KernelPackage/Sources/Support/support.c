// support.c: the example kernel's C: linker symbols, the exit, and memset, memcpy,
// memmove, memcmp (Quarry needs them from the image: docs/integration.md, "Symbols the
// library needs"). Compiled with toolset.json's -ffreestanding -fno-builtin, so these
// loops stay loops and never call themselves.
#include "support.h"

#include <stddef.h>

extern char __quarry_arena_start[], __quarry_arena_end[];

uintptr_t support_arena_start(void) { return (uintptr_t)__quarry_arena_start; }
uintptr_t support_arena_end(void) { return (uintptr_t)__quarry_arena_end; }

void support_exit(uint8_t code) {
    __asm__ volatile("outb %0, %1" : : "a"(code), "Nd"((uint16_t)0xf4));
    for (;;) __asm__ volatile("cli; hlt");
}

void *memset(void *d, int c, size_t n) {
    unsigned char *p = d;
    while (n--) *p++ = (unsigned char)c;
    return d;
}

void *memcpy(void *restrict d, const void *restrict s, size_t n) {
    unsigned char *p = d;
    const unsigned char *q = s;
    while (n--) *p++ = *q++;
    return d;
}

void *memmove(void *d, const void *s, size_t n) {
    unsigned char *p = d;
    const unsigned char *q = s;
    if (p < q) {
        while (n--) *p++ = *q++;
    } else {
        while (n--) p[n] = q[n];
    }
    return d;
}

int memcmp(const void *a, const void *b, size_t n) {
    const unsigned char *p = a, *q = b;
    for (; n; n--, p++, q++) {
        if (*p != *q) return *p < *q ? -1 : 1;
    }
    return 0;
}

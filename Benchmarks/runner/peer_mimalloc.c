/* peer_mimalloc.c: mimalloc through its own entry points (mi_malloc / mi_free). */
#include "bench.h"

#include <mimalloc.h>
#include <stdio.h>

static char token;
static void *setup(size_t size) { (void)size; return &token; }
static void *alloc(size_t size, void *ctx) { (void)ctx; return mi_malloc(size); }
static void release(void *p, void *ctx) { (void)ctx; mi_free(p); }
static const char *describe(void) {
    static char text[32];
    int v = mi_version(); /* 209 is 2.0.9 */
    snprintf(text, sizeof text, "mimalloc %d.%d.%d", v / 100, v / 10 % 10, v % 10);
    return text;
}

const struct bench_allocator bench_peer = {
    .name = "mimalloc", .setup = setup, .alloc = alloc, .free = release, .describe = describe,
};

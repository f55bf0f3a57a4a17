/* peer_glibc.c: glibc's malloc/free (ptmalloc2 with its per-thread tcache), as the system gives it. */
#include "bench.h"

#include <gnu/libc-version.h>
#include <stdlib.h>

static char token;
static void *setup(size_t size) { (void)size; return &token; }
static void *alloc(size_t size, void *ctx) { (void)ctx; return malloc(size); }
static void release(void *p, void *ctx) { (void)ctx; free(p); }
static const char *describe(void) { return gnu_get_libc_version(); }

const struct bench_allocator bench_peer = {
    .name = "glibc", .setup = setup, .alloc = alloc, .free = release, .describe = describe,
};

/* peer_jemalloc.c: jemalloc. Debian builds it without a prefix, so linking -ljemalloc ahead of
 * libc makes malloc/free jemalloc's in this binary; describe() proves it through mallctl. */
#include "bench.h"

#include <jemalloc/jemalloc.h>
#include <stdlib.h>

static char token;
static void *setup(size_t size) { (void)size; return &token; }
static void *alloc(size_t size, void *ctx) { (void)ctx; return malloc(size); }
static void release(void *p, void *ctx) { (void)ctx; free(p); }
static const char *describe(void) {
    const char *version = "jemalloc: mallctl failed (not jemalloc?)";
    size_t len = sizeof version;
    if (mallctl("version", &version, &len, NULL, 0) != 0) return version;
    return version;
}

const struct bench_allocator bench_peer = {
    .name = "jemalloc", .setup = setup, .alloc = alloc, .free = release, .describe = describe,
};

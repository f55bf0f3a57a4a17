/* peer_quarry_malloc.c: Quarry's malloc front (issue 4); every row is "unavailable" until
 * QuarryBench wires the front in (qb_malloc_available() == 1). */
#include "bench.h"
#include "peer_quarry_common.h"

static char token;
static void *setup(size_t size) {
    (void)size;
    return quarry_ready() && qb_malloc_available() ? &token : NULL;
}
static void *alloc(size_t size, void *ctx) { (void)ctx; return qb_malloc((ptrdiff_t)size); }
static void release(void *p, void *ctx) { (void)ctx; qb_free(p); }
static const char *describe(void) {
    return qb_malloc_available() ? "Quarry malloc front (host release build)"
                                 : "Quarry malloc front: not available in this tree";
}

const struct bench_allocator bench_peer = {
    .name = "quarry-malloc", .setup = setup, .alloc = alloc, .free = release,
    .thread_start = quarry_thread_start, .describe = describe,
};

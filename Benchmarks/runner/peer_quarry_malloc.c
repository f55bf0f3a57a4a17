/* peer_quarry_malloc.c: Quarry's malloc front (size classes over slab caches, spans above
 * 32 KiB) through include/quarry.h: quarry_malloc and quarry_free. */
#include "bench.h"
#include "peer_quarry_common.h"

/* Any non-NULL context: the front is the library's one instance. */
static void *setup(size_t size) {
    (void)size;
    return quarry_ready() ? (void *)&bench_peer : NULL;
}
static void *alloc(size_t size, void *ctx) { (void)ctx; return quarry_malloc(size); }
static void release(void *p, void *ctx) { (void)ctx; quarry_free(p); }
static const char *describe(void) { return "Quarry C ABI, quarry_malloc/quarry_free"; }

const struct bench_allocator bench_peer = {
    .name = "quarry-malloc", .setup = setup, .alloc = alloc, .free = release,
    .flags = QUARRY_PEER_FLAGS, .describe = describe,
};

/* peer_quarry_malloc.c: Quarry's malloc front (size classes over slab caches, spans above
 * 32 KiB), through the front handle so no call reads a Swift global. */
#include "bench.h"
#include "peer_quarry_common.h"

static void *setup(size_t size) {
    (void)size;
    return quarry_ready() ? qb_malloc_front() : NULL;
}
static void *alloc(size_t size, void *front) { return qb_malloc(front, (ptrdiff_t)size); }
static void release(void *p, void *front) { qb_free(front, p); }
static const char *describe(void) { return "Quarry MallocFront<BenchPlatform> (host release build)"; }

const struct bench_allocator bench_peer = {
    .name = "quarry-malloc", .setup = setup, .alloc = alloc, .free = release,
    .thread_start = quarry_thread_start, .describe = describe,
};

/* peer_quarry_cache.c: Quarry's cache API: one SlabCache per object size (created in setup). */
#include "bench.h"
#include "peer_quarry_common.h"

static void *setup(size_t size) { return quarry_ready() ? qb_cache_create((ptrdiff_t)size) : NULL; }
static void *alloc(size_t size, void *cache) { (void)size; return qb_cache_alloc(cache); }
static void release(void *p, void *cache) { qb_cache_free(cache, p); }
static void teardown(void *cache) {
    ptrdiff_t leaked = qb_cache_destroy(cache);
    if (leaked) fprintf(stderr, "quarry-cache: %td objects leaked by a workload\n", leaked);
}
static const char *describe(void) { return "Quarry SlabCache<BenchPlatform> (host release build)"; }

const struct bench_allocator bench_peer = {
    .name = "quarry-cache", .setup = setup, .alloc = alloc, .free = release, .teardown = teardown,
    .thread_start = quarry_thread_start, .describe = describe,
};

/* peer_quarry_cache.c: Quarry's cache API through include/quarry.h: one quarry_cache per object
 * size (created in setup), quarry_cache_alloc and quarry_cache_free as a C kernel calls them,
 * and quarry_cache_alloc_bulk/quarry_cache_free_bulk for the burst-bulk workload. */
#include "bench.h"
#include "peer_quarry_common.h"

static void *setup(size_t size) { return quarry_ready() ? quarry_cache_create("bench", size, 0, NULL) : NULL; }
static void *alloc(size_t size, void *cache) { (void)size; return quarry_cache_alloc(cache); }
static void release(void *p, void *cache) { quarry_cache_free(cache, p); }
static void teardown(void *cache) {
    quarry_error error = quarry_cache_destroy(cache);
    if (error != QUARRY_OK) fprintf(stderr, "quarry-cache: quarry_cache_destroy: %s\n", quarry_error_name(error));
}
static size_t alloc_bulk(size_t size, void *cache, size_t n, void **out) {
    (void)size;
    return quarry_cache_alloc_bulk(cache, n, out);
}
static void free_bulk(void *cache, size_t n, void **ptrs) { quarry_cache_free_bulk(cache, n, ptrs); }
static const char *describe(void) { return "Quarry C ABI, quarry_cache_alloc/quarry_cache_free (and _bulk)"; }

const struct bench_allocator bench_peer = {
    .name = "quarry-cache", .setup = setup, .alloc = alloc, .free = release, .teardown = teardown,
    .flags = QUARRY_PEER_FLAGS, .describe = describe, .alloc_bulk = alloc_bulk, .free_bulk = free_bulk,
};

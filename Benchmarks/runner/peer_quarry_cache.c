/* peer_quarry_cache.c: Quarry's cache API through include/quarry.h: one quarry_cache per object
 * size (created in setup), quarry_cache_alloc and quarry_cache_free as a C kernel calls them. */
#include "bench.h"
#include "peer_quarry_common.h"

static void *setup(size_t size) { return quarry_ready() ? quarry_cache_create("bench", size, 0, NULL) : NULL; }
static void *alloc(size_t size, void *cache) { (void)size; return quarry_cache_alloc(cache); }
static void release(void *p, void *cache) { quarry_cache_free(cache, p); }
static void teardown(void *cache) {
    quarry_error error = quarry_cache_destroy(cache);
    if (error != QUARRY_OK) fprintf(stderr, "quarry-cache: quarry_cache_destroy: %s\n", quarry_error_name(error));
}
static const char *describe(void) { return "Quarry C ABI, quarry_cache_alloc/quarry_cache_free"; }

const struct bench_allocator bench_peer = {
    .name = "quarry-cache", .setup = setup, .alloc = alloc, .free = release, .teardown = teardown,
    .flags = QUARRY_PEER_FLAGS, .describe = describe,
};

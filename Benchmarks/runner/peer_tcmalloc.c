/* peer_tcmalloc.c: tcmalloc (gperftools, libtcmalloc_minimal) through tc_malloc / tc_free. */
#include "bench.h"

#include <gperftools/tcmalloc.h>

static char token;
static void *setup(size_t size) { (void)size; return &token; }
static void *alloc(size_t size, void *ctx) { (void)ctx; return tc_malloc(size); }
static void release(void *p, void *ctx) { (void)ctx; tc_free(p); }
static const char *describe(void) { return tc_version(NULL, NULL, NULL); }

const struct bench_allocator bench_peer = {
    .name = "tcmalloc", .setup = setup, .alloc = alloc, .free = release, .describe = describe,
};

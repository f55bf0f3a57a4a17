/* bench.h: the one interface every allocator under test implements for the workloads in bench.c.
 * Neighbours: bench.c (the workloads and main), peer_*.c (one allocator each, each linked into
 * its own binary so that malloc replacements never meet in one process). */
#ifndef QUARRY_BENCH_H
#define QUARRY_BENCH_H

#include <stddef.h>

/* flags */
/* The context must not be shared between threads: the threads workload calls setup in each
 * thread, and the producer-consumer workload (cross-thread free) is skipped. */
#define BENCH_SINGLE_THREADED 1
/* No two calls may overlap (one allocator instance on one CPU): the producer-consumer and
 * threads workloads are skipped. */
#define BENCH_ONE_THREAD 2

struct bench_allocator {
    /* Row name in the CSV ("glibc", "mimalloc", "quarry-cache", ...). */
    const char *name;
    /* Called once per workload with the object size, in the thread that runs it. Returns the
     * context handed to alloc/free (a per-size cache for cache-style allocators, any non-NULL
     * pointer for malloc-style ones), or NULL when this allocator cannot serve: the rows are
     * then reported as unavailable. */
    void *(*setup)(size_t size);
    void *(*alloc)(size_t size, void *ctx);
    void (*free)(void *p, void *ctx);
    /* Optional: undo setup (every object has been freed). */
    void (*teardown)(void *ctx);
    /* Optional: called first in every thread the workloads start (index 0, 1, ...) and with
     * index 0 in the main thread: Quarry registers the thread as that virtual CPU. */
    void (*thread_start)(int index);
    int flags;
    /* Optional: one line about the build (version) printed to stderr at start. */
    const char *(*describe)(void);
    /* Optional, for the burst-bulk workload (n/a without them): n objects at once into out,
     * returning n (or 0 on failure), and n objects freed at once. */
    size_t (*alloc_bulk)(size_t size, void *ctx, size_t n, void **out);
    void (*free_bulk)(void *ctx, size_t n, void **ptrs);
};

/* Each peer_*.c defines exactly this. */
extern const struct bench_allocator bench_peer;

#endif

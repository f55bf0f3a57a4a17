/* peer_floor.c: the floor: the least any allocator behind a function call can do. An intrusive
 * single-threaded free list of fixed-size blocks (pop on allocate, push on free), refilled by
 * bumping through one large mapping. No checks, no statistics, no thread safety: each thread
 * gets its own pool (BENCH_SINGLE_THREADED), and it cannot serve cross-thread frees. */
#include "bench.h"

#include <stdlib.h>
#include <sys/mman.h>

#define FLOOR_REGION (1ul << 30) /* address space per pool; pages are touched only when used */

struct floor_pool {
    void *free;   /* intrusive list: a free block's first word points to the next */
    char *bump;
    char *end;
    size_t size;
    char *base;
};

__attribute__((noinline)) static void *floor_refill(struct floor_pool *p) {
    if (p->bump + p->size > p->end) return NULL;
    void *b = p->bump;
    p->bump += p->size;
    return b;
}

__attribute__((noinline)) void *floor_alloc(size_t size, void *ctx) {
    (void)size;
    struct floor_pool *p = ctx;
    void *b = p->free;
    if (__builtin_expect(b != NULL, 1)) {
        p->free = *(void **)b;
        return b;
    }
    return floor_refill(p);
}

__attribute__((noinline)) void floor_free(void *b, void *ctx) {
    struct floor_pool *p = ctx;
    *(void **)b = p->free;
    p->free = b;
}

static void *setup(size_t size) {
    struct floor_pool *p = calloc(1, sizeof *p);
    char *base = mmap(NULL, FLOOR_REGION, PROT_READ | PROT_WRITE,
                      MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (p == NULL || base == MAP_FAILED) return NULL;
    p->base = p->bump = base;
    p->end = base + FLOOR_REGION;
    p->size = (size + 15) & ~(size_t)15;
    return p;
}

static void teardown(void *ctx) {
    struct floor_pool *p = ctx;
    munmap(p->base, FLOOR_REGION);
    free(p);
}

const struct bench_allocator bench_peer = {
    .name = "floor", .setup = setup, .alloc = floor_alloc, .free = floor_free,
    .teardown = teardown, .flags = BENCH_SINGLE_THREADED,
};

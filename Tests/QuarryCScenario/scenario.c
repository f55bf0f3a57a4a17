/* scenario.c: a C user of quarry.h: caches, bulk calls, the malloc family, statistics,
 * slabinfo and bad input, each result checked. Neighbours: include/quarry.h, QuarryCTests. */
#include "quarry.h"
#include "quarry_c_scenario.h"

typedef void (*function)(void);

/* Casting a function pointer to void * is a common extension (POSIX requires it). */
#define F(name) (const void *)(function)name
const void *const quarry_c_functions[] = {
    F(quarry_init), F(quarry_cache_create), F(quarry_cache_alloc), F(quarry_cache_free),
    F(quarry_cache_shrink), F(quarry_cache_destroy), F(quarry_malloc), F(quarry_free),
    F(quarry_free_sized), F(quarry_free_aligned_sized), F(quarry_calloc), F(quarry_realloc),
    F(quarry_aligned_alloc), F(quarry_posix_memalign), F(quarry_usable_size), F(quarry_shrink),
    F(quarry_cache_stats), F(quarry_heap_stats), F(quarry_slabinfo), F(quarry_last_error),
    F(quarry_error_name), F(quarry_check_invariants), F(quarry_set_error_hook), F(quarry_validate),
    F(quarry_cache_alloc_bulk), F(quarry_cache_free_bulk),
};
const size_t quarry_c_function_count = sizeof quarry_c_functions / sizeof quarry_c_functions[0];

static int failures;

static int hook_calls;
static uint8_t hook_last;
static void count_hook(uint8_t error, quarry_cache *cache, uintptr_t address) {
    (void)cache;
    (void)address;
    hook_calls++;
    hook_last = error;
}
static void (*logger)(const char *);

#define CHECK(cond) do { if (!(cond)) { failures++; logger("check failed: " #cond); } } while (0)

#define CTOR_MAGIC 0x51415259u

static void construct(void *object) { *(uint32_t *)object = CTOR_MAGIC; }

static size_t lines, bytes;
static void count_text(const char *text, size_t length, void *context) {
    CHECK(context == &lines);
    CHECK(length > 0 && text[length] == 0);
    bytes += length;
    if (text[length - 1] == '\n') lines++;
}

static int is_zero(const unsigned char *p, size_t n) {
    for (size_t i = 0; i < n; i++) if (p[i]) return 0;
    return 1;
}

int quarry_c_scenario(void *arena, size_t size, void (*log)(const char *message)) {
    failures = 0;
    logger = log;

    /* Set-up: bad regions are refused. */
    CHECK(quarry_init(0, size) == QUARRY_ERR_ARENA_TOO_SMALL);
    CHECK(quarry_init(arena, 100) == QUARRY_ERR_ARENA_TOO_SMALL);
    CHECK(quarry_last_error() == QUARRY_ERR_ARENA_TOO_SMALL);
    CHECK(quarry_init(arena, size) == QUARRY_OK);

    /* A cache with a constructor. */
    quarry_cache *cache = quarry_cache_create("c-objects", 40, 0, construct);
    CHECK(cache != 0);
    void *objects[100];
    for (int i = 0; i < 100; i++) {
        objects[i] = quarry_cache_alloc(cache);
        CHECK(objects[i] != 0 && ((uintptr_t)objects[i] & 7) == 0);
        CHECK(*(uint32_t *)objects[i] == CTOR_MAGIC);
    }
    quarry_cache_statistics cs;
    CHECK(quarry_cache_stats(cache, &cs) == QUARRY_OK);
    /* A constructor's cache keeps the free link past the caller's 40 bytes (one more
       8-byte granule), so a freed object keeps its constructed state. */
    CHECK(cs.active_objects == 100 && cs.object_size == 48 && cs.requested_size == 40);
    CHECK(cs.name[0] == 'c' && cs.name[9] == 0);
    CHECK(cs.allocations == 100);
    quarry_set_error_hook(count_hook);
    CHECK(quarry_cache_free(cache, (char *)objects[0] + 8) == QUARRY_ERR_INTERIOR_POINTER);
    CHECK(hook_calls == 1 && hook_last == QUARRY_ERR_INTERIOR_POINTER);
    CHECK(quarry_cache_destroy(cache) == QUARRY_ERR_CACHE_NOT_EMPTY);
    for (int i = 0; i < 100; i++) CHECK(quarry_cache_free(cache, objects[i]) == QUARRY_OK);
    CHECK(quarry_cache_free(cache, objects[5]) == QUARRY_ERR_DOUBLE_FREE);
    CHECK(quarry_cache_stats(cache, &cs) == QUARRY_OK && cs.active_objects == 0 && cs.errors == 2);
    CHECK(hook_calls == 2 && hook_last == QUARRY_ERR_DOUBLE_FREE);
    quarry_set_error_hook(0);
    CHECK(cs.errors_by_kind[QUARRY_ERR_DOUBLE_FREE - 16] == 1 && cs.errors_by_kind[QUARRY_ERR_INTERIOR_POINTER - 16] == 1);
    CHECK(cs.allocation_hits + cs.allocation_misses == 100 && cs.free_hits + cs.free_misses == 100);
    CHECK(cs.refills >= 1);
    quarry_cache_shrink(cache);
    CHECK(quarry_cache_destroy(cache) == QUARRY_OK);
    CHECK(quarry_cache_destroy(cache) == QUARRY_ERR_INVALID_CACHE);
    CHECK(quarry_cache_alloc(cache) == 0 && quarry_last_error() == QUARRY_ERR_INVALID_CACHE);
    CHECK(quarry_cache_create("bad", 16, 3, 0) == 0 && quarry_last_error() == QUARRY_ERR_BAD_ALIGNMENT);
    CHECK(quarry_cache_create("zero", 0, 8, 0) == 0 && quarry_last_error() == QUARRY_ERR_ZERO_SIZE);
    CHECK(quarry_cache_alloc(0) == 0 && quarry_last_error() == QUARRY_ERR_INVALID_CACHE);
    int local;
    CHECK(quarry_cache_alloc((quarry_cache *)&local) == 0 && quarry_last_error() == QUARRY_ERR_INVALID_CACHE);

    /* Bulk: a batch bigger than the magazines hold, all constructed and distinct. */
    quarry_cache *bulk = quarry_cache_create("c-bulk", 64, 0, construct);
    CHECK(bulk != 0);
    static void *batch[300];
    CHECK(quarry_cache_alloc_bulk(bulk, 300, batch) == 300);
    for (int i = 0; i < 300; i++) {
        CHECK(batch[i] != 0 && *(uint32_t *)batch[i] == CTOR_MAGIC);
        for (int j = 0; j < i; j++) CHECK(batch[i] != batch[j]);
    }
    /* Misuse in the middle of a batch: refused, counted, the others freed. */
    void *mixed[5] = {batch[0], (char *)batch[1] + 8, 0, batch[0], batch[2]};
    CHECK(quarry_cache_free_bulk(bulk, 5, mixed) == QUARRY_ERR_INTERIOR_POINTER);
    CHECK(quarry_last_error() == QUARRY_ERR_INTERIOR_POINTER);
    CHECK(quarry_cache_stats(bulk, &cs) == QUARRY_OK && cs.active_objects == 298);
    CHECK(cs.errors_by_kind[QUARRY_ERR_INTERIOR_POINTER - 16] == 1 && cs.errors_by_kind[QUARRY_ERR_DOUBLE_FREE - 16] == 1);
    CHECK(quarry_cache_free_bulk(bulk, 1, batch + 1) == QUARRY_OK);
    CHECK(quarry_cache_free_bulk(bulk, 2, batch + 1) == QUARRY_ERR_DOUBLE_FREE);
    CHECK(quarry_cache_free_bulk(bulk, 297, batch + 3) == QUARRY_OK);
    CHECK(quarry_cache_stats(bulk, &cs) == QUARRY_OK && cs.active_objects == 0 && cs.errors == 4);
    CHECK(quarry_cache_alloc_bulk(bulk, 0, batch) == 0);
    CHECK(quarry_cache_alloc_bulk(bulk, 1, 0) == 0 && quarry_last_error() == QUARRY_ERR_INVALID_CACHE);
    CHECK(quarry_cache_alloc_bulk(0, 1, batch) == 0 && quarry_last_error() == QUARRY_ERR_INVALID_CACHE);
    CHECK(quarry_cache_free_bulk(bulk, 0, 0) == QUARRY_OK);
    CHECK(quarry_cache_free_bulk(bulk, 1, 0) == QUARRY_ERR_INVALID_CACHE);
    quarry_check_invariants();
    quarry_shrink();
    CHECK(quarry_cache_destroy(bulk) == QUARRY_OK);

    /* malloc family. */
    char *a = quarry_malloc(100);
    CHECK(a != 0 && ((uintptr_t)a & 15) == 0 && quarry_usable_size(a) == 112);
    for (int i = 0; i < 100; i++) a[i] = (char)i;
    char *b = quarry_realloc(a, 5000);
    CHECK(b != 0 && b != a);
    for (int i = 0; i < 100; i++) CHECK(b[i] == (char)i);
    CHECK(quarry_realloc(b, 4900) == b);
    char *c = quarry_realloc(b, 100000);
    CHECK(c != 0 && ((uintptr_t)c & 4095) == 0 && quarry_usable_size(c) == 25 * 4096);
    for (int i = 0; i < 100; i++) CHECK(c[i] == (char)i);
    CHECK(quarry_free_sized(c, 50) == QUARRY_ERR_SIZE_MISMATCH);
    CHECK(quarry_free_sized(c, 100000) == QUARRY_OK);
    CHECK(quarry_free_sized(c, 100000) == QUARRY_ERR_FREE_PAGE);

    void *z1 = quarry_malloc(0), *z2 = quarry_malloc(0);
    CHECK(z1 != 0 && z2 != 0 && z1 != z2);
    void *z3 = quarry_realloc(z1, 0);
    CHECK(z3 == z1);
    quarry_free(z1);
    quarry_free(z2);
    quarry_free(0);

    unsigned char *zeroed = quarry_calloc(300, 7);
    CHECK(zeroed != 0 && is_zero(zeroed, 2100));
    quarry_free(zeroed);
    CHECK(quarry_calloc(SIZE_MAX / 2, 3) == 0 && quarry_last_error() == QUARRY_ERR_SIZE_TOO_LARGE);
    CHECK(quarry_malloc(SIZE_MAX) == 0 && quarry_last_error() == QUARRY_ERR_SIZE_TOO_LARGE);
    CHECK(quarry_malloc(SIZE_MAX - 4095) == 0 && quarry_last_error() == QUARRY_ERR_SIZE_TOO_LARGE);

    for (size_t align = 1; align <= 65536; align <<= 1) {
        void *p = quarry_aligned_alloc(align, 300);
        CHECK(p != 0 && ((uintptr_t)p & (align - 1)) == 0);
        CHECK(quarry_free_aligned_sized(p, align, 300) == QUARRY_OK);
        void *q = 0;
        int r = quarry_posix_memalign(&q, align, 3000);
        if (align < sizeof(void *)) {
            CHECK(r == QUARRY_EINVAL && q == 0);
        } else {
            CHECK(r == 0 && q != 0 && ((uintptr_t)q & (align - 1)) == 0);
            quarry_free(q);
        }
    }
    CHECK(quarry_aligned_alloc(24, 10) == 0 && quarry_last_error() == QUARRY_ERR_BAD_ALIGNMENT);
    void *untouched = (void *)&local;
    CHECK(quarry_posix_memalign(&untouched, 24, 10) == QUARRY_EINVAL && untouched == (void *)&local);
    CHECK(quarry_posix_memalign(&untouched, 0, 10) == QUARRY_EINVAL);
    CHECK(quarry_posix_memalign(0, 16, 10) == QUARRY_EINVAL);
    CHECK(quarry_posix_memalign(&untouched, 16, SIZE_MAX) == QUARRY_ENOMEM && untouched == (void *)&local);
    CHECK(quarry_posix_memalign(&untouched, 16, size) == QUARRY_ENOMEM);

    /* Bad frees are refused; nothing changes. */
    quarry_heap_statistics before, after;
    void *keep = quarry_malloc(64);
    CHECK(quarry_heap_stats(&before) == QUARRY_OK);
    quarry_free(&local);
    CHECK(quarry_last_error() == QUARRY_ERR_OUTSIDE_ARENA);
    quarry_free((char *)keep + 1);
    CHECK(quarry_last_error() == QUARRY_ERR_MISALIGNED);
    quarry_free((char *)keep + 16);
    CHECK(quarry_last_error() == QUARRY_ERR_INTERIOR_POINTER);
    CHECK(quarry_usable_size(&local) == 0);
    CHECK(quarry_heap_stats(&after) == QUARRY_OK);
    CHECK(after.pages_in_use == before.pages_in_use && after.bump == before.bump);
    CHECK(after.malloc_errors == before.malloc_errors + 3);
    quarry_free(keep);

    /* Statistics and slabinfo. */
    void *big = quarry_malloc(40000);
    CHECK(quarry_heap_stats(&after) == QUARRY_OK && after.live_spans == 1 && after.span_pages == 10);
    lines = bytes = 0;
    quarry_slabinfo(count_text, &lines);
    CHECK(lines >= 4 && bytes > 100);
    quarry_free(big);
    CHECK(quarry_error_name(QUARRY_ERR_DOUBLE_FREE)[0] == 'd');
    CHECK(quarry_error_name((quarry_error)99)[0] == 'u');
    quarry_check_invariants();
    quarry_validation found = { QUARRY_ERR_BUSY, 1, "x" };
    CHECK(quarry_validate(&found) == QUARRY_OK && found.error == QUARRY_OK && found.address == 0 && found.cache[0] == 0);
    CHECK(quarry_validate(0) == QUARRY_OK);

    /* Everything freed: after shrinking, no page is in use. */
    quarry_shrink();
    CHECK(quarry_heap_stats(&after) == QUARRY_OK && after.pages_in_use == 0 && after.live_spans == 0);
    return failures;
}

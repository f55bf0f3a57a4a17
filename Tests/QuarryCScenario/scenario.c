/* scenario.c: a C user of quarry.h: caches, bulk calls, the malloc family, statistics,
 * slabinfo and bad input, each result checked. Neighbours: include/quarry.h, QuarryCTests. */
#include "quarry.h"
#include "quarry_c_scenario.h"

#include <stddef.h>

typedef void (*function)(void);

/* Casting a function pointer to void * is a common extension (POSIX requires it). */
#define F(name) (const void *)(function)name
const void *const quarry_c_functions[] = {
    F(quarry_init), F(quarry_cache_create), F(quarry_cache_alloc), F(quarry_cache_free),
    F(quarry_cache_shrink), F(quarry_cache_destroy), F(quarry_malloc), F(quarry_free),
    F(quarry_free_sized), F(quarry_free_aligned_sized), F(quarry_calloc), F(quarry_realloc),
    F(quarry_aligned_alloc), F(quarry_posix_memalign), F(quarry_usable_size), F(quarry_shrink),
    F(quarry_drain_all), F(quarry_cache_stats), F(quarry_heap_stats), F(quarry_slabinfo), F(quarry_last_error),
    F(quarry_error_name), F(quarry_check_invariants), F(quarry_set_error_hook), F(quarry_validate),
    F(quarry_cache_alloc_bulk), F(quarry_cache_free_bulk),
    F(quarry_cache_create_with), F(quarry_clear_error), F(quarry_init_with),
    F(quarry_epoch_init), F(quarry_epoch_enter), F(quarry_epoch_exit), F(quarry_epoch_retire),
    F(quarry_epoch_retire_block), F(quarry_epoch_poll), F(quarry_epoch_synchronize),
    F(quarry_epoch_stats), F(quarry_epoch_destroy),
#ifdef QUARRY_TESTING
    F(quarry_test_fail_page_request), F(quarry_test_injected_failures),
#endif
};
const size_t quarry_c_function_count = sizeof quarry_c_functions / sizeof quarry_c_functions[0];

static int failures;

static int hook_calls;
static uint8_t hook_last;
static quarry_cache *hook_cache;
static uintptr_t hook_address;
static void count_hook(uint8_t error, quarry_cache *cache, uintptr_t address) {
    hook_calls++;
    hook_last = error;
    hook_cache = cache;
    hook_address = address;
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

/* ---- Cache options, stale handles, the caller's last error, calloc with a zero
 * factor, fault injection (issue 11). ---- */

/* No padding: the versioning rule reads the struct byte by byte. */
_Static_assert(sizeof(quarry_cache_options) == 2 * sizeof(size_t) + 8, "quarry_cache_options has padding");
_Static_assert(offsetof(quarry_cache_options, red_zone) == sizeof(size_t), "struct_size first");

static void options_contracts(void) {
    quarry_cache_options o = QUARRY_CACHE_OPTIONS_INIT;
    quarry_cache_statistics cs;

    /* NULL and zeroed options are the defaults: a 40-byte cache has 40-byte objects. */
    quarry_cache *plain = quarry_cache_create_with("plain", 40, 0, 0, 0);
    CHECK(plain != 0 && quarry_cache_stats(plain, &cs) == QUARRY_OK && cs.object_size == 40);
    CHECK(quarry_cache_destroy(plain) == QUARRY_OK);
    plain = quarry_cache_create_with("plain", 40, 0, 0, &o);
    CHECK(plain != 0 && quarry_cache_stats(plain, &cs) == QUARRY_OK && cs.object_size == 40);
    CHECK(quarry_cache_destroy(plain) == QUARRY_OK);

    /* The size rule. An older caller's struct (struct_size only): what follows is not read. */
    o.red_zone = 64;
    o.struct_size = sizeof(size_t);
    plain = quarry_cache_create_with("old", 40, 0, 0, &o);
    CHECK(plain != 0 && quarry_cache_stats(plain, &cs) == QUARRY_OK && cs.object_size == 40);
    CHECK(quarry_cache_destroy(plain) == QUARRY_OK);
    o.struct_size = sizeof o;
    quarry_cache *zoned = quarry_cache_create_with("zoned", 40, 0, 0, &o);
    CHECK(zoned != 0 && quarry_cache_stats(zoned, &cs) == QUARRY_OK && cs.object_size == 104);
    CHECK(quarry_cache_destroy(zoned) == QUARRY_OK);
    o.red_zone = 0;
    /* A newer caller's struct: zero bytes past ours are fine, any other is refused. */
    struct { quarry_cache_options known; uint64_t future; } newer = { QUARRY_CACHE_OPTIONS_INIT, 0 };
    newer.known.struct_size = sizeof newer;
    plain = quarry_cache_create_with("newer", 40, 0, 0, &newer.known);
    CHECK(plain != 0);
    CHECK(quarry_cache_destroy(plain) == QUARRY_OK);
    newer.future = 1;
    CHECK(quarry_cache_create_with("newer", 40, 0, 0, &newer.known) == 0
          && quarry_last_error() == QUARRY_ERR_BAD_OPTIONS);
    o.struct_size = 0;
    CHECK(quarry_cache_create_with("unset", 40, 0, 0, &o) == 0 && quarry_last_error() == QUARRY_ERR_BAD_OPTIONS);
    o.struct_size = sizeof o;
    o.reserved[1] = 1;
    CHECK(quarry_cache_create_with("reserved", 40, 0, 0, &o) == 0 && quarry_last_error() == QUARRY_ERR_BAD_OPTIONS);
    o.reserved[1] = 0;
    o.red_zone = SIZE_MAX;
    CHECK(quarry_cache_create_with("huge zone", 40, 0, 0, &o) == 0 && quarry_last_error() == QUARRY_ERR_SIZE_TOO_LARGE);
    o.red_zone = 0;

    /* Poison and a red zone: a write past the object is reported when it is freed, a
       write after free when it is handed out again; each through the hook (with the
       cache's handle and the object) and the counters, and neither refuses the call. */
    quarry_set_error_hook(count_hook);
    hook_calls = 0;
    o.poison = 1;
    o.red_zone = 8;
    quarry_cache *debug = quarry_cache_create_with("debug", 40, 0, 0, &o);
    CHECK(debug != 0);
    unsigned char *d = quarry_cache_alloc(debug);
    CHECK(d != 0);
    d[40] = 0;                                  /* one byte past the object */
    CHECK(quarry_cache_free(debug, d) == QUARRY_OK);
    CHECK(hook_calls == 1 && hook_last == QUARRY_ERR_RED_ZONE && hook_cache == debug && hook_address == (uintptr_t)d);
    CHECK(d[8] == 0x6b && d[39] == 0x6b);       /* poisoned (but the link word) */
    d[20] = 1;                                  /* a write after free */
    unsigned char *again = quarry_cache_alloc(debug);
    CHECK(again == d);
    CHECK(hook_calls == 2 && hook_last == QUARRY_ERR_USE_AFTER_FREE && hook_cache == debug);
    CHECK(quarry_cache_stats(debug, &cs) == QUARRY_OK && cs.errors == 2
          && cs.errors_by_kind[QUARRY_ERR_RED_ZONE - 16] == 1 && cs.errors_by_kind[QUARRY_ERR_USE_AFTER_FREE - 16] == 1);
    CHECK(quarry_cache_free(debug, again) == QUARRY_OK && hook_calls == 2);
    CHECK(quarry_cache_destroy(debug) == QUARRY_OK);
    quarry_set_error_hook(0);
    o.poison = 0;
    o.red_zone = 0;

    /* Zero on allocate and on free. */
    o.zero_on_alloc = 1;
    o.zero_on_free = 1;
    quarry_cache *zeroing = quarry_cache_create_with("zeroing", 64, 0, 0, &o);
    unsigned char *z = quarry_cache_alloc(zeroing);
    CHECK(z != 0 && is_zero(z, 64));
    for (int i = 0; i < 64; i++) z[i] = 0xee;
    CHECK(quarry_cache_free(zeroing, z) == QUARRY_OK);
    CHECK(is_zero(z + 8, 56));                   /* the first word holds the free link */
    unsigned char *z2 = quarry_cache_alloc(zeroing);
    CHECK(z2 == z && is_zero(z2, 64));
    CHECK(quarry_cache_free(zeroing, z2) == QUARRY_OK);
    CHECK(quarry_cache_destroy(zeroing) == QUARRY_OK);
    o.zero_on_alloc = o.zero_on_free = 0;

    /* Randomised slots: a new slab's objects do not come out in address order. */
    o.randomize_slots = 1;
    quarry_cache *shuffled = quarry_cache_create_with("shuffled", 64, 0, 0, &o);
    void *objects[32];
    int increasing = 1;
    for (int i = 0; i < 32; i++) {
        objects[i] = quarry_cache_alloc(shuffled);
        CHECK(objects[i] != 0);
        if (i > 0 && (uintptr_t)objects[i] < (uintptr_t)objects[i - 1]) increasing = 0;
    }
    CHECK(!increasing);
    for (int i = 0; i < 32; i++) CHECK(quarry_cache_free(shuffled, objects[i]) == QUARRY_OK);
    CHECK(quarry_cache_destroy(shuffled) == QUARRY_OK);
    o.randomize_slots = 0;

    /* Type stability: freeing writes nothing into the object, and shrinking keeps the slabs. */
    o.type_stable = 1;
    quarry_cache *stable = quarry_cache_create_with("stable", 64, 0, 0, &o);
    unsigned char *t = quarry_cache_alloc(stable);
    CHECK(t != 0);
    for (int i = 0; i < 64; i++) t[i] = (unsigned char)i;
    CHECK(quarry_cache_free(stable, t) == QUARRY_OK);
    int kept = 1;
    for (int i = 0; i < 64; i++) if (t[i] != (unsigned char)i) kept = 0;
    CHECK(kept);
    quarry_shrink();
    CHECK(quarry_cache_stats(stable, &cs) == QUARRY_OK && cs.pages > 0 && cs.slabs_released == 0);
    CHECK(quarry_cache_destroy(stable) == QUARRY_OK);

    /* A stale handle: the next cache lives in the destroyed one's memory, and the old
       handle still names nothing. */
    quarry_cache *first = quarry_cache_create("first", 40, 0, 0);
    CHECK(first != 0 && quarry_cache_destroy(first) == QUARRY_OK);
    quarry_cache *second = quarry_cache_create("second", 40, 0, 0);
    CHECK(second != 0 && second != first);
    CHECK(((uintptr_t)second & ~(uintptr_t)255) == ((uintptr_t)first & ~(uintptr_t)255));   /* same memory */
    quarry_clear_error();
    CHECK(quarry_cache_alloc(first) == 0 && quarry_last_error() == QUARRY_ERR_INVALID_CACHE);
    void *in_second = quarry_cache_alloc(second);
    CHECK(in_second != 0);
    CHECK(quarry_cache_free(first, in_second) == QUARRY_ERR_INVALID_CACHE);
    CHECK(quarry_cache_stats(first, &cs) == QUARRY_ERR_INVALID_CACHE);
    CHECK(quarry_cache_destroy(first) == QUARRY_ERR_INVALID_CACHE);
    CHECK(quarry_cache_free(second, in_second) == QUARRY_OK);
    CHECK(quarry_cache_destroy(second) == QUARRY_OK);

    /* The last error: kept until cleared, left alone by successful calls. */
    CHECK(quarry_cache_alloc(0) == 0 && quarry_last_error() == QUARRY_ERR_INVALID_CACHE);
    void *ok = quarry_malloc(10);
    CHECK(ok != 0 && quarry_last_error() == QUARRY_ERR_INVALID_CACHE);
    quarry_free(ok);
    quarry_clear_error();
    CHECK(quarry_last_error() == QUARRY_OK);

    /* calloc: a zero factor is a smallest block, whatever the other; only an
       overflowing (or too large) product is refused. */
    static const size_t others[] = {0, 1, 5, 4096, SIZE_MAX / 2, SIZE_MAX - 1, SIZE_MAX};
    for (size_t i = 0; i < sizeof others / sizeof others[0]; i++) {
        void *a = quarry_calloc(0, others[i]), *b = quarry_calloc(others[i], 0);
        CHECK(a != 0 && b != 0 && a != b && quarry_usable_size(a) == 8 && quarry_usable_size(b) == 8);
        quarry_free(a);
        quarry_free(b);
    }
    CHECK(quarry_last_error() == QUARRY_OK);
    CHECK(quarry_calloc(SIZE_MAX, 2) == 0 && quarry_last_error() == QUARRY_ERR_SIZE_TOO_LARGE);
    CHECK(quarry_calloc(2, SIZE_MAX) == 0 && quarry_last_error() == QUARRY_ERR_SIZE_TOO_LARGE);
    CHECK(quarry_calloc(1, SIZE_MAX) == 0 && quarry_last_error() == QUARRY_ERR_SIZE_TOO_LARGE);
    quarry_clear_error();

#ifdef QUARRY_TESTING
    /* Fault injection: the next page request (a span) fails once; the reclaim the
     * allocation runs before failing, and its second try, absorb it. */
    size_t injected = quarry_test_injected_failures();
    quarry_heap_statistics hs;
    CHECK(quarry_heap_stats(&hs) == QUARRY_OK);
    uint64_t reclaims = hs.reclaims;
    CHECK(quarry_test_fail_page_request(1) == QUARRY_OK);
    void *span = quarry_malloc(40000);
    CHECK(span != 0 && quarry_test_injected_failures() == injected + 1);
    CHECK(quarry_heap_stats(&hs) == QUARRY_OK && hs.reclaims == reclaims + 1);
    quarry_free(span);
    /* The second request from now: a new cache's first slab, then a span (absorbed too). */
    quarry_cache *late = quarry_cache_create("late", 100, 0, 0);
    CHECK(quarry_test_fail_page_request(2) == QUARRY_OK);
    void *first_slab = quarry_cache_alloc(late);
    CHECK(first_slab != 0);
    span = quarry_malloc(50000);
    CHECK(span != 0 && quarry_test_injected_failures() == injected + 2);
    quarry_free(span);
    CHECK(quarry_test_fail_page_request(1) == QUARRY_OK && quarry_test_fail_page_request(0) == QUARRY_OK);
    span = quarry_malloc(50000);
    CHECK(span != 0 && quarry_test_injected_failures() == injected + 2);
    quarry_free(span);
    CHECK(quarry_cache_free(late, first_slab) == QUARRY_OK && quarry_cache_destroy(late) == QUARRY_OK);
    quarry_clear_error();
#endif
}

/* A fresh instance whose malloc classes poison freed blocks and hand them out zeroed. */
static void malloc_options(void *arena, size_t size) {
    quarry_cache_options o = QUARRY_CACHE_OPTIONS_INIT;
    o.red_zone = 8;
    CHECK(quarry_init_with(arena, size, &o) == QUARRY_ERR_BAD_OPTIONS);
    o.red_zone = 0;
    o.type_stable = 1;
    CHECK(quarry_init_with(arena, size, &o) == QUARRY_ERR_BAD_OPTIONS);
    o.type_stable = 0;
    o.poison = 1;
    o.zero_on_alloc = 1;
    CHECK(quarry_init_with(arena, size, &o) == QUARRY_OK);
    quarry_set_error_hook(count_hook);
    hook_calls = 0;
    unsigned char *m = quarry_malloc(100);
    CHECK(m != 0 && is_zero(m, 100));
    for (int i = 0; i < 100; i++) m[i] = 0xee;
    quarry_free(m);
    CHECK(m[8] == 0x6b && m[111] == 0x6b && hook_calls == 0);   /* the 112-byte class, poisoned */
    m[60] = 0;                                                   /* a write after free */
    unsigned char *again = quarry_malloc(100);
    CHECK(again == m && hook_calls == 1 && hook_last == QUARRY_ERR_USE_AFTER_FREE && hook_address == (uintptr_t)m);
    CHECK(is_zero(again, 100));
    quarry_free(again);
    void *big = quarry_malloc(40000);                            /* a span: no options */
    CHECK(big != 0);
    quarry_free(big);
    quarry_set_error_hook(0);
    quarry_drain_all();
    quarry_heap_statistics h;
    CHECK(quarry_heap_stats(&h) == QUARRY_OK && h.pages_in_use == 0);
    CHECK(quarry_init_with(arena, size, 0) == QUARRY_OK);        /* NULL: the defaults */
    unsigned char *plain = quarry_malloc(100);
    CHECK(plain != 0);
    plain[50] = 0xee;
    quarry_free(plain);
    CHECK(plain[50] == 0xee);                                    /* not poisoned */
}

/* ---- Deferred freeing (issue 15): one thread, so its own read section is the one
 * that blocks the epoch. ---- */

static intptr_t stall_cpu = -2;
static uintptr_t stall_epoch;
static int stall_calls;
static void record_stall(intptr_t cpu, uintptr_t epoch) {
    stall_calls++;
    stall_cpu = cpu;
    stall_epoch = epoch;
}

static void epochs(void) {
    quarry_epoch_statistics es;
    CHECK(quarry_epoch_enter() == QUARRY_ERR_NOT_INITIALIZED);
    CHECK(quarry_epoch_retire_block(0) == QUARRY_ERR_NOT_INITIALIZED);
    CHECK(quarry_epoch_stats(&es) == QUARRY_ERR_NOT_INITIALIZED);
    CHECK(quarry_epoch_poll() == 0);
    quarry_epoch_synchronize();                                  /* no reclaimer: no-op */
    CHECK(quarry_epoch_init(3, 0) == QUARRY_ERR_ZERO_SIZE);
    CHECK(quarry_epoch_init(1 << 20, 0) == QUARRY_ERR_SIZE_TOO_LARGE);
    CHECK(quarry_epoch_init(SIZE_MAX, 0) == QUARRY_ERR_SIZE_TOO_LARGE);
    CHECK(quarry_epoch_init(8, record_stall) == QUARRY_OK);
    CHECK(quarry_epoch_init(8, 0) == QUARRY_ERR_BUSY);
    CHECK(quarry_epoch_stats(&es) == QUARRY_OK && es.capacity == 8 && es.cpus >= 1 && es.pending == 0
          && es.last_stalling_cpu == -1);
    CHECK(quarry_epoch_stats(0) == QUARRY_ERR_INVALID_CACHE);

    /* A cache object and malloc blocks (a class block and a span), retired while this
       CPU reads: still allocated until it leaves and the epoch moves twice. */
    quarry_cache *nodes = quarry_cache_create("c-nodes", 32, 0, 0);
    CHECK(nodes != 0);
    unsigned char *node = quarry_cache_alloc(nodes);
    unsigned char *small = quarry_malloc(100), *large = quarry_malloc(50000);
    CHECK(node != 0 && small != 0 && large != 0);
    node[0] = 0x5a;
    small[0] = 0x5b;
    large[49999] = 0x5c;
    CHECK(quarry_epoch_enter() == QUARRY_OK);
    CHECK(quarry_epoch_enter() == QUARRY_OK);                    /* nests */
    CHECK(quarry_epoch_retire(nodes, node) == QUARRY_OK);
    CHECK(quarry_epoch_retire_block(small) == QUARRY_OK);
    CHECK(quarry_epoch_retire_block(large) == QUARRY_OK);
    CHECK(quarry_epoch_retire(nodes, 0) == QUARRY_OK && quarry_epoch_retire_block(0) == QUARRY_OK);
    CHECK(quarry_epoch_poll() == 0);
    CHECK(node[0] == 0x5a && small[0] == 0x5b && large[49999] == 0x5c);   /* untouched */
    quarry_cache_statistics cs;
    CHECK(quarry_cache_stats(nodes, &cs) == QUARRY_OK && cs.active_objects == 1);
    CHECK(quarry_usable_size(large) == 50000 / 4096 * 4096 + 4096);       /* still live */
    CHECK(quarry_epoch_stats(&es) == QUARRY_OK && es.retired == 3 && es.pending == 3 && es.freed == 0);
    /* Bad retires: nothing retired, the reason as a free would give it. */
    CHECK(quarry_epoch_retire(nodes, node + 8) == QUARRY_ERR_INTERIOR_POINTER);
    CHECK(quarry_epoch_retire(0, node) == QUARRY_ERR_INVALID_CACHE);
    CHECK(quarry_epoch_retire_block(large + 4096) == QUARRY_ERR_INTERIOR_POINTER);
    quarry_epoch_exit();
    quarry_epoch_exit();
    quarry_epoch_synchronize();
    CHECK(quarry_epoch_stats(&es) == QUARRY_OK && es.retired == 3 && es.freed == 3 && es.pending == 0
          && es.advances >= 2 && es.free_errors == 0);
    CHECK(quarry_cache_stats(nodes, &cs) == QUARRY_OK && cs.active_objects == 0);
    CHECK(quarry_usable_size(large) == 0);
    /* Retiring what was freed is a double free; retired twice, the second free is refused. */
    CHECK(quarry_epoch_retire(nodes, node) == QUARRY_ERR_DOUBLE_FREE);
    CHECK(quarry_epoch_retire_block(small) == QUARRY_ERR_DOUBLE_FREE);
    CHECK(quarry_epoch_retire_block(large) == QUARRY_ERR_DOUBLE_FREE);
    node = quarry_cache_alloc(nodes);
    CHECK(quarry_epoch_retire(nodes, node) == QUARRY_OK && quarry_epoch_retire(nodes, node) == QUARRY_OK);
    quarry_epoch_synchronize();
    CHECK(quarry_epoch_stats(&es) == QUARRY_OK && es.free_errors == 1 && es.pending == 0);

    /* The stall: inside its own read section this CPU blocks the epoch, so once its
       backlog (8) is full a retire is refused, reported and the object kept. */
    enum { N = 12 };
    void *held[N];
    int stalled = -1;
    CHECK(quarry_epoch_enter() == QUARRY_OK);
    for (int i = 0; i < N; i++) {
        held[i] = quarry_cache_alloc(nodes);
        quarry_error e = quarry_epoch_retire(nodes, held[i]);
        if (e == QUARRY_ERR_RECLAIM_STALLED && stalled < 0) stalled = i;
        CHECK(e == QUARRY_OK || e == QUARRY_ERR_RECLAIM_STALLED);
        if (e == QUARRY_OK) held[i] = 0;      /* retired; a refused one stays the caller's */
    }
    CHECK(stalled >= 8 && stalled < N && quarry_last_error() == QUARRY_ERR_RECLAIM_STALLED);
    CHECK(stall_calls == N - stalled && stall_cpu >= 0);
    CHECK(quarry_epoch_stats(&es) == QUARRY_OK && es.refused == (uint64_t)(N - stalled) && es.stalls == es.refused
          && es.last_stalling_cpu == stall_cpu && es.pending == 8 && es.high_water == 8);
    CHECK(quarry_epoch_destroy() == QUARRY_ERR_BUSY);
    quarry_epoch_exit();
    for (int i = 0; i < N; i++) if (held[i]) CHECK(quarry_cache_free(nodes, held[i]) == QUARRY_OK);
    /* destroy frees what is still retired, then the reclaimer's own caches. */
    CHECK(quarry_epoch_destroy() == QUARRY_OK);
    CHECK(quarry_cache_stats(nodes, &cs) == QUARRY_OK && cs.active_objects == 0);
    CHECK(quarry_epoch_stats(&es) == QUARRY_ERR_NOT_INITIALIZED);
    CHECK(quarry_epoch_destroy() == QUARRY_ERR_NOT_INITIALIZED);
    CHECK(quarry_cache_destroy(nodes) == QUARRY_OK);
    quarry_check_invariants();
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
    _Alignas(16) int local;   /* 16-aligned: a refused free names the address, not the alignment */
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
    CHECK(quarry_free_sized(c, 100000) == QUARRY_ERR_DOUBLE_FREE);
    /* A double free reports QUARRY_ERR_DOUBLE_FREE whatever the block's size: spans
       (pages given back to the wilderness or to a free run) and class blocks alike. */
    void *span = quarry_malloc(40000), *guard = quarry_malloc(40000);
    quarry_free(span);
    quarry_clear_error();
    quarry_free(span);
    CHECK(quarry_last_error() == QUARRY_ERR_DOUBLE_FREE);
    quarry_free(guard);
    quarry_clear_error();
    quarry_free(guard);
    CHECK(quarry_last_error() == QUARRY_ERR_DOUBLE_FREE);
    CHECK(quarry_usable_size(span) == 0 && quarry_last_error() == QUARRY_ERR_DOUBLE_FREE);

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

    options_contracts();
    quarry_check_invariants();
    epochs();

    /* Everything freed: a reclaim gives pages back; after draining all, none is in use. */
    CHECK(quarry_shrink() > 0);
    quarry_drain_all();
    CHECK(quarry_heap_stats(&after) == QUARRY_OK && after.pages_in_use == 0 && after.live_spans == 0);
    CHECK(after.per_cpu_budget_bytes > 0 && after.per_cpu_charged_bytes == 0 && after.reclaims >= 1);

    malloc_options(arena, size);
    return failures;
}

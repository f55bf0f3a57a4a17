/* main.c: the C example kernel: Quarry used from C through libquarry.a and quarry.h only.
 * Neighbours: entry_<arch>.S (the entry: GDT, %fs or GS_BASE on each CPU's per-CPU word,
 * FPU/SSE, a stack, then kernel_main or kernel_ap_main; docs/integration.md, "The entry
 * contract"), i686.ld / x86_64.ld (the arena), console.c (output, checks, exit), libc.c
 * (memset & co for the library), smp.c (the APs), interrupts.c (IDT, LAPIC timer), epochs.c
 * (deferred freeing on every CPU).
 *
 * Interrupts are off but for the epoch phase. First on the boot CPU alone: calls before
 * quarry_init are refused, caches (constructor, alignment, statistics, bad frees, destroy), a debug cache made
 * with quarry_cache_create_with (poison and a red zone: an overflow and a write after
 * free reported through the error hook; a stale handle refused), the malloc family
 * (malloc, calloc, realloc across classes and into spans, aligned_alloc, posix_memalign,
 * bad alignment, double free), the standard names when the library has them, then every
 * page back after quarry_shrink and quarry_drain_all, and the slabinfo table. Then every
 * CPU QEMU gave (fw_cfg; -smp 4 in make qemu-test) runs epochs.c at once, with its LAPIC
 * timer on (interrupts.c): lock-free tables read in read sections, in thread context and
 * in the timer handler, while all CPUs retire what they replace.
 */
#include "quarry.h"
#include "console.h"
#include "epochs.h"
#include "interrupts.h"
#include "smp.h"

/* The linker script's arena: page-aligned, [__quarry_arena_start, __quarry_arena_end). */
extern char __quarry_arena_start[];
extern char __quarry_arena_end[];

#define MULTIBOOT_MAGIC 0x2BADB002u
#define CTOR_MAGIC 0x51415259u

#if QUARRY_LIBC_NAMES
/* The library's standard names (quarry_libc.o); no <stdlib.h> in a freestanding image. */
void *malloc(size_t size);
void free(void *ptr);
void *calloc(size_t count, size_t size);
void *realloc(void *ptr, size_t size);
int posix_memalign(void **out, size_t alignment, size_t size);
void *aligned_alloc(size_t alignment, size_t size);
#endif

static int in_arena(const void *p) {
    return (const char *)p >= __quarry_arena_start && (const char *)p < __quarry_arena_end;
}

static int aligned(const void *p, size_t alignment) { return ((uintptr_t)p & (alignment - 1)) == 0; }

static void fill(void *p, size_t n, unsigned seed) {
    unsigned char *b = p;
    for (size_t i = 0; i < n; i++) b[i] = (unsigned char)(seed + i * 7);
}

static int intact(const void *p, size_t n, unsigned seed) {
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++) {
        if (b[i] != (unsigned char)(seed + i * 7)) return 0;
    }
    return 1;
}

static int is_zero(const void *p, size_t n) {
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++) {
        if (b[i] != 0) return 0;
    }
    return 1;
}

static void construct(void *object) { *(uint32_t *)object = CTOR_MAGIC; }

static void before_init(void) {
    check("init: malloc before quarry_init is refused",
          quarry_malloc(16) == NULL && quarry_last_error() == QUARRY_ERR_NOT_INITIALIZED,
          "not NULL or not QUARRY_ERR_NOT_INITIALIZED");
    check_equal("init: a too small arena is refused", quarry_init(__quarry_arena_start, 100),
                QUARRY_ERR_ARENA_TOO_SMALL);
}

/* 200 objects of a 200-byte, 64-aligned cache with a constructor. */
static void caches(void) {
    enum { COUNT = 200, SIZE = 200 };
    static void *objects[COUNT];
    quarry_cache *tasks = quarry_cache_create("task", SIZE, 64, construct);
    check("cache: create 'task' (200 bytes, 64-aligned, constructor)", tasks != NULL,
          quarry_error_name(quarry_last_error()));
    if (tasks == NULL) return;
    int placed = 1, constructed = 1;
    for (int i = 0; i < COUNT; i++) {
        objects[i] = quarry_cache_alloc(tasks);
        if (objects[i] == NULL || !in_arena(objects[i]) || !aligned(objects[i], 64)) placed = 0;
        if (objects[i] != NULL) {
            if (*(uint32_t *)objects[i] != CTOR_MAGIC) constructed = 0;
            fill(objects[i], SIZE, (unsigned)i);
        }
    }
    check("cache: 200 objects in the arena, 64-aligned", placed, "NULL, outside or misaligned");
    check("cache: the constructor ran on every new object", constructed, "no magic word");
    int kept = 1;
    for (int i = 0; i < COUNT && placed; i++) {
        if (!intact(objects[i], SIZE, (unsigned)i)) kept = 0;
    }
    check("cache: objects do not overlap (fill patterns intact)", placed && kept, "a pattern changed");

    quarry_cache_statistics s;
    check("cache: statistics", quarry_cache_stats(tasks, &s) == QUARRY_OK && s.active_objects == COUNT
              && s.allocations == COUNT && s.alignment == 64 && s.name[0] == 't',
          "wrong active_objects, allocations, alignment or name");

    quarry_cache *other = quarry_cache_create("other", 200, 64, NULL);
    void *foreign = quarry_cache_alloc(other);
    check_equal("cache: free into the wrong cache refused", quarry_cache_free(tasks, foreign),
                QUARRY_ERR_WRONG_CACHE);
    check_equal("cache: free of an interior pointer refused",
                quarry_cache_free(tasks, (char *)objects[0] + 8), QUARRY_ERR_INTERIOR_POINTER);
    check_equal("cache: destroy while objects are allocated refused", quarry_cache_destroy(tasks),
                QUARRY_ERR_CACHE_NOT_EMPTY);

    int freed = 1;
    for (int i = 0; i < COUNT; i++) {
        /* Objects must go back in their constructed state. */
        *(uint32_t *)objects[i] = CTOR_MAGIC;
        if (quarry_cache_free(tasks, objects[i]) != QUARRY_OK) freed = 0;
    }
    check("cache: every object freed", freed, "a free was refused");
    check_equal("cache: double free refused", quarry_cache_free(tasks, objects[7]), QUARRY_ERR_DOUBLE_FREE);
    check("cache: statistics after the frees", quarry_cache_stats(tasks, &s) == QUARRY_OK
              && s.active_objects == 0 && s.frees == COUNT && s.errors == 3,
          "wrong active_objects, frees or errors");
    check_equal("cache: destroy 'task'", quarry_cache_destroy(tasks), QUARRY_OK);
    check("cache: a destroyed cache is refused",
          quarry_cache_alloc(tasks) == NULL && quarry_last_error() == QUARRY_ERR_INVALID_CACHE,
          "not QUARRY_ERR_INVALID_CACHE");
    quarry_cache_free(other, foreign);
    check_equal("cache: destroy 'other'", quarry_cache_destroy(other), QUARRY_OK);
    check("cache: alignment 3 refused",
          quarry_cache_create("bad", 16, 3, NULL) == NULL && quarry_last_error() == QUARRY_ERR_BAD_ALIGNMENT,
          "not QUARRY_ERR_BAD_ALIGNMENT");
}

/* What the error hook saw (one CPU, so plain variables). */
static uint64_t hook_calls;
static uint8_t hook_error;
static quarry_cache *hook_cache;
static uintptr_t hook_address;

static void record_hook(uint8_t error, quarry_cache *cache, uintptr_t address) {
    hook_calls++;
    hook_error = error;
    hook_cache = cache;
    hook_address = address;
}

/* A cache with poison and a 16-byte red zone: a write one byte past an object is
 * reported when it is freed, a write after free when the object is handed out again. */
static void debug_cache(void) {
    quarry_cache_options options = QUARRY_CACHE_OPTIONS_INIT;
    options.poison = 1;
    options.red_zone = 16;
    quarry_cache *debug = quarry_cache_create_with("debug", 100, 0, NULL, &options);
    check("options: create 'debug' (100 bytes, poison, 16-byte red zone)", debug != NULL,
          quarry_error_name(quarry_last_error()));
    if (debug == NULL) return;
    quarry_cache_statistics s;
    check("options: the red zone is in the stride (104 + 16 bytes)",
          quarry_cache_stats(debug, &s) == QUARRY_OK && s.object_size == 120, "another object size");
    quarry_set_error_hook(record_hook);
    hook_calls = 0;

    unsigned char *p = quarry_cache_alloc(debug);
    check("options: allocate from the debug cache", p != NULL && in_arena(p), "NULL or outside the arena");
    if (p == NULL) return;
    fill(p, 100, 3);
    p[100] = 0;   /* one byte past the object: the red zone */
    check_equal("options: an overflowing object is still freed", quarry_cache_free(debug, p), QUARRY_OK);
    check("options: the overflow is reported: QUARRY_ERR_RED_ZONE, the cache, the object",
          hook_calls == 1 && hook_error == QUARRY_ERR_RED_ZONE && hook_cache == debug && hook_address == (uintptr_t)p,
          "no report, or another error, cache or address");
    check("options: the freed object is poisoned (0x6b)", p[8] == 0x6b && p[99] == 0x6b, "not poisoned");
    p[50] = 1;    /* a write after free */
    unsigned char *q = quarry_cache_alloc(debug);
    check("options: the write after free is reported when the object comes back",
          q == p && hook_calls == 2 && hook_error == QUARRY_ERR_USE_AFTER_FREE && hook_cache == debug,
          "no report, or another object or error");
    check("options: both reports are counted by kind",
          quarry_cache_stats(debug, &s) == QUARRY_OK && s.errors_by_kind[QUARRY_ERR_RED_ZONE - 16] == 1
              && s.errors_by_kind[QUARRY_ERR_USE_AFTER_FREE - 16] == 1,
          "wrong counters");
    quarry_cache_free(debug, q);
    quarry_set_error_hook(NULL);
    check_equal("options: destroy 'debug'", quarry_cache_destroy(debug), QUARRY_OK);

    /* The next cache takes the destroyed one's memory; the old handle names nothing. */
    quarry_cache *next = quarry_cache_create("next", 100, 0, NULL);
    check("handles: a new cache in the destroyed one's memory has another handle",
          next != NULL && next != debug && ((uintptr_t)next & ~(uintptr_t)255) == ((uintptr_t)debug & ~(uintptr_t)255),
          "NULL, the same handle, or other memory");
    check("handles: the destroyed cache's handle is refused",
          quarry_cache_alloc(debug) == NULL && quarry_last_error() == QUARRY_ERR_INVALID_CACHE,
          "not QUARRY_ERR_INVALID_CACHE");
    check_equal("handles: destroy 'next'", quarry_cache_destroy(next), QUARRY_OK);

    quarry_cache_options unset = QUARRY_CACHE_OPTIONS_INIT;
    unset.struct_size = 0;
    check("options: struct_size 0 refused with QUARRY_ERR_BAD_OPTIONS",
          quarry_cache_create_with("unset", 16, 0, NULL, &unset) == NULL && quarry_last_error() == QUARRY_ERR_BAD_OPTIONS,
          "accepted");
    quarry_clear_error();
    check_equal("errors: quarry_clear_error clears this CPU's last error", quarry_last_error(), QUARRY_OK);
}

static void malloc_family(void) {
    /* malloc across the classes and into spans. */
    static const size_t sizes[] = {0, 1, 8, 9, 24, 100, 128, 500, 1500, 4096, 20000, 32768, 40000, 300000};
    enum { N = sizeof sizes / sizeof sizes[0] };
    void *blocks[N];
    int ok = 1;
    for (int i = 0; i < N; i++) {
        blocks[i] = quarry_malloc(sizes[i]);
        size_t alignment = sizes[i] > 8 ? 16 : 8;
        if (blocks[i] == NULL || !in_arena(blocks[i]) || !aligned(blocks[i], alignment)
            || quarry_usable_size(blocks[i]) < sizes[i]) {
            ok = 0;
        } else {
            fill(blocks[i], sizes[i], (unsigned)i);
        }
    }
    check("malloc: 0 B to 300 KB in the arena, aligned, usable size at least the request", ok,
          "NULL, outside the arena, misaligned or too small");
    quarry_heap_statistics h;
    check("malloc: blocks above 32 KiB are spans",
          quarry_heap_stats(&h) == QUARRY_OK && h.live_spans == 2, "live_spans is not 2");
    int kept = 1;
    for (int i = 0; i < N && ok; i++) {
        if (!intact(blocks[i], sizes[i], (unsigned)i)) kept = 0;
        quarry_free(blocks[i]);
    }
    check("malloc: blocks do not overlap (fill patterns intact)", ok && kept, "a pattern changed");

    /* Double free: refused with QUARRY_ERR_DOUBLE_FREE, nothing else changes. */
    void *once = quarry_malloc(48);
    quarry_free(once);
    quarry_heap_statistics before, after;
    quarry_heap_stats(&before);
    quarry_free(once);
    quarry_heap_stats(&after);
    check_equal("free: double free reports QUARRY_ERR_DOUBLE_FREE", quarry_last_error(), QUARRY_ERR_DOUBLE_FREE);
    check("free: the refused free changes no page", after.pages_in_use == before.pages_in_use,
          "pages_in_use changed");
    /* 16-aligned, so that the reason is the address, not the alignment. */
    static _Alignas(16) uint64_t local;
    quarry_free(&local);
    check_equal("free: a pointer outside the arena reports QUARRY_ERR_OUTSIDE_ARENA", quarry_last_error(),
                QUARRY_ERR_OUTSIDE_ARENA);
    const char *name = quarry_error_name(QUARRY_ERR_DOUBLE_FREE);
    check("free: quarry_error_name names the error",
          name[0] == 'd' && name[6] == ' ' && name[7] == 'f' && name[11] == 0, name);

    /* calloc zeroes memory that was dirty, and refuses an overflowing product. */
    unsigned char *dirty = quarry_malloc(2100);
    fill(dirty, 2100, 99);
    quarry_free(dirty);
    unsigned char *zeroed = quarry_calloc(300, 7);
    check("calloc: 300 x 7 bytes, zeroed (over a dirty block)", zeroed != NULL && is_zero(zeroed, 2100),
          "NULL or not zero");
    quarry_free(zeroed);
    check("calloc: SIZE_MAX / 2 x 3 overflows: NULL, QUARRY_ERR_SIZE_TOO_LARGE",
          quarry_calloc(SIZE_MAX / 2, 3) == NULL && quarry_last_error() == QUARRY_ERR_SIZE_TOO_LARGE,
          "not refused");
    void *none = quarry_calloc(0, SIZE_MAX), *none2 = quarry_calloc(SIZE_MAX, 0);
    check("calloc: 0 x SIZE_MAX and SIZE_MAX x 0 give smallest blocks",
          none != NULL && none2 != NULL && quarry_usable_size(none) == 8 && quarry_usable_size(none2) == 8,
          "NULL or not the smallest class");
    quarry_free(none);
    quarry_free(none2);

    /* realloc: grows through classes into a span and back, keeping the bytes. */
    char *r = quarry_realloc(NULL, 24);
    fill(r, 24, 5);
    char *same = quarry_realloc(r, 30);
    check("realloc: within the class stays in place", same == r, "moved");
    r = quarry_realloc(r, 1000);
    int grown = r != NULL && intact(r, 24, 5);
    r = quarry_realloc(r, 100000);
    grown = grown && r != NULL && aligned(r, 4096) && intact(r, 24, 5);
    check("realloc: 24 -> 1000 -> 100000 bytes keeps the contents", grown, "moved bytes differ");
    r = quarry_realloc(r, 10);
    check("realloc: shrinking to 10 bytes keeps the first 10", r != NULL && intact(r, 10, 5), "bytes differ");
    check("realloc: refusal leaves the block alone",
          quarry_realloc(r, SIZE_MAX) == NULL && quarry_last_error() == QUARRY_ERR_SIZE_TOO_LARGE
              && intact(r, 10, 5),
          "not refused or changed");
    quarry_free(r);

    /* aligned_alloc and posix_memalign. */
    int all_aligned = 1;
    for (size_t alignment = 8; alignment <= 16384; alignment <<= 1) {
        void *p = quarry_aligned_alloc(alignment, 300);
        void *q = NULL;
        int e = quarry_posix_memalign(&q, alignment, 3000);
        if (p == NULL || !aligned(p, alignment) || e != 0 || q == NULL || !aligned(q, alignment)) all_aligned = 0;
        quarry_free(p);
        quarry_free(q);
    }
    check("aligned: aligned_alloc and posix_memalign, alignments 8 to 16384", all_aligned, "NULL or misaligned");
    check("aligned: aligned_alloc(24, 10) refused with QUARRY_ERR_BAD_ALIGNMENT",
          quarry_aligned_alloc(24, 10) == NULL && quarry_last_error() == QUARRY_ERR_BAD_ALIGNMENT, "accepted");
    void *untouched = &local;
    check_equal("aligned: posix_memalign(24) returns EINVAL", (uint64_t)quarry_posix_memalign(&untouched, 24, 10),
                QUARRY_EINVAL);
    check("aligned: posix_memalign leaves *out alone on EINVAL", untouched == &local, "*out written");
    check_equal("aligned: posix_memalign(2) (below sizeof(void *)) returns EINVAL",
                (uint64_t)quarry_posix_memalign(&untouched, 2, 10), QUARRY_EINVAL);
    check_equal("aligned: posix_memalign of more than the arena returns ENOMEM",
                (uint64_t)quarry_posix_memalign(&untouched, 16, (size_t)(__quarry_arena_end - __quarry_arena_start)),
                QUARRY_ENOMEM);
}

#if QUARRY_LIBC_NAMES
static void standard_names(void) {
    char *p = malloc(64);
    char *z = calloc(8, 8);
    void *a = aligned_alloc(256, 100);
    void *m = NULL;
    int e = posix_memalign(&m, 64, 100);
    check("libc names: malloc, calloc, aligned_alloc, posix_memalign come from the arena",
          in_arena(p) && in_arena(z) && is_zero(z, 64) && in_arena(a) && aligned(a, 256) && e == 0
              && in_arena(m) && aligned(m, 64),
          "outside the arena, not zeroed or misaligned");
    p = realloc(p, 5000);
    check("libc names: realloc moves into the arena", in_arena(p), "outside the arena");
    check_equal("libc names: posix_memalign(3) returns EINVAL", (uint64_t)posix_memalign(&m, 3, 8), QUARRY_EINVAL);
    free(p);
    free(z);
    free(a);
    free(m);
}
#endif

static size_t slabinfo_lines;

static void to_console(const char *text, size_t length, void *context) {
    (void)context;
    console_write(text, length);
    if (length > 0 && text[length - 1] == '\n') slabinfo_lines++;
}

/* The phase every CPU runs (epochs.c): the APs wait for `go`, run, and count `done`. */
static uint32_t aps_online, go, aps_done;

/* An AP's C entry (entry_<arch>.S: its stack, per-CPU word, FPU/SSE in place, interrupts off). */
void kernel_ap_main(uint32_t index);
void kernel_ap_main(uint32_t index) {
    __atomic_add_fetch(&aps_online, 1, __ATOMIC_RELEASE);
    while (!__atomic_load_n(&go, __ATOMIC_ACQUIRE)) cpu_pause();
    epochs_run(index);
    __atomic_add_fetch(&aps_done, 1, __ATOMIC_RELEASE);
    for (;;) __asm__ volatile("cli; hlt");
}

static void all_cpus(void) {
    unsigned expected = smp_firmware_cpu_count();
    unsigned started = smp_start_aps(expected);
    check_equal("smp: every CPU QEMU gave came up (fw_cfg count - 1 APs)", started, expected - 1);
    while (__atomic_load_n(&aps_online, __ATOMIC_ACQUIRE) < started) cpu_pause();
    interrupts_init();
    epochs_prepare();
    __atomic_store_n(&go, 1, __ATOMIC_RELEASE);
    epochs_run(0);
    while (__atomic_load_n(&aps_done, __ATOMIC_ACQUIRE) < started) cpu_pause();
    epochs_check(1 + started);
}

void kernel_main(uint32_t magic, uint32_t info) {
    (void)info;
    console_init();
#if defined(__x86_64__)
    console_print("Quarry C kernel (x86_64)\n");
#else
    console_print("Quarry C kernel (i686)\n");
#endif
    check("boot: multiboot magic", magic == MULTIBOOT_MAGIC, "EAX was not 0x2BADB002 at entry");
    size_t arena_size = (size_t)(__quarry_arena_end - __quarry_arena_start);
    console_print("arena: ");
    console_hex((uintptr_t)__quarry_arena_start);
    console_print(", ");
    console_decimal(arena_size >> 10);
    console_print(" KiB\n");

    before_init();
    check_equal("init: quarry_init on the linker's arena", quarry_init(__quarry_arena_start, arena_size), QUARRY_OK);
    quarry_heap_statistics h;
    check("init: no page used yet", quarry_heap_stats(&h) == QUARRY_OK && h.pages_in_use == 0 && h.bump == 0,
          "pages in use after quarry_init");

    caches();
    debug_cache();
    malloc_family();
#if QUARRY_LIBC_NAMES
    standard_names();
#endif

    quarry_check_invariants();
    check("invariants: quarry_check_invariants returned (it traps on a broken one)", 1, "");

    /* The table while a few blocks are live, then every page back. */
    void *live[3] = {quarry_malloc(100), quarry_malloc(1000), quarry_malloc(50000)};
    console_print("slabinfo (three malloc blocks live):\n");
    quarry_slabinfo(to_console, NULL);
    check("slabinfo: the callback received the table", slabinfo_lines >= 4, "fewer than 4 lines");
    for (int i = 0; i < 3; i++) quarry_free(live[i]);
    size_t given_back = quarry_shrink();
    check("shrink: a reclaim gives pages back", given_back > 0, "0 pages");
    given_back = quarry_drain_all();
    check("drain all: the class caches' pages come back", given_back > 0, "0 pages");
    check("drain all: every page back, no span live",
          quarry_heap_stats(&h) == QUARRY_OK && h.pages_in_use == 0 && h.live_spans == 0
              && h.malloc_class_caches == 0,
          "pages, spans or class caches left");
    console_print("refusals counted by the malloc front itself (the others are in the caches' errors column): ");
    console_decimal(h.malloc_errors);
    console_putc('\n');
    all_cpus();
    finish();
}

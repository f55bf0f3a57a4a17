/* quarry.h: the C interface of Quarry, a freestanding slab allocator (libquarry.a).
 *
 * Hand-written C11; needs only <stddef.h> and <stdint.h>. The Swift implementation
 * (Sources/QuarryC/CABI.swift) imports this header and declares every function with
 * `@c @implementation`, so the compiler checks each definition against the prototype
 * here; a host test checks that the library exports exactly the functions declared.
 *
 * One global allocator instance, set up by quarry_init. Functions that return a pointer
 * return NULL on failure and set the error that quarry_last_error reports; functions
 * that return quarry_error return it directly (QUARRY_OK is 0). Nothing here allocates
 * outside the arena given to quarry_init.
 *
 * Who may call (the CPU index): Quarry keeps per-CPU state, and a call uses the state of
 * its caller's CPU index, which must not change during the call and must not be used by
 * two callers at once.
 * - Bare metal (libquarry.a): the index is the CPU's (X86Platform: %fs:0 or %gs:0, see
 *   docs/integration.md). Any CPU, and maskable interrupt handlers, may call.
 * - Host (the Linux build, tests and benchmarks): each thread gets its own index on its
 *   first call, kept in thread-local storage until the thread exits, which gives it back
 *   (its cached objects stay with the index, for the next thread). At most 64 threads
 *   hold one at a time; a call from one more thread is refused with
 *   QUARRY_ERR_TOO_MANY_THREADS (NULL, or the error returned) and changes nothing; it
 *   tries again on the thread's next call. Signal handlers must not call Quarry.
 *
 * Standard names: the library built with QUARRY_EXPORT_LIBC_NAMES also defines malloc,
 * free, calloc, realloc, posix_memalign and aligned_alloc (Sources/QuarryLibc), so that
 * the Embedded Swift runtime and C code in the same image allocate from Quarry.
 */
#ifndef QUARRY_H
#define QUARRY_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Why a call was refused. The values are Swift's QuarryError raw values. */
typedef enum quarry_error {
    QUARRY_OK = 0,
    /* Allocation and creation. */
    QUARRY_ERR_ZERO_SIZE = 1,        /* a cache of zero-byte objects */
    QUARRY_ERR_SIZE_TOO_LARGE = 2,   /* above the largest object or the arena; calloc overflow */
    QUARRY_ERR_BAD_ALIGNMENT = 3,    /* zero or not a power of two (caches: or above a page) */
    QUARRY_ERR_OUT_OF_MEMORY = 4,    /* no page left in the arena */
    QUARRY_ERR_ARENA_TOO_SMALL = 5,  /* quarry_init: no room for the metadata and one page */
    QUARRY_ERR_INVALID_CACHE = 6,    /* a quarry_cache pointer that names no live cache */
    QUARRY_ERR_NOT_INITIALIZED = 7,  /* a call before quarry_init */
    QUARRY_ERR_BUSY = 8,             /* a free re-entering Quarry (e.g. from a constructor)
                                        that needs a lock its CPU holds: nothing changed */
    QUARRY_ERR_TOO_MANY_THREADS = 9, /* (host) 64 threads already hold a CPU index */
    QUARRY_ERR_BAD_OPTIONS = 10,     /* an options struct this library cannot read */
    /* Free (the pointer is left alone). */
    QUARRY_ERR_OUTSIDE_ARENA = 16,   /* not in the arena */
    QUARRY_ERR_METADATA_POINTER = 17,/* in the arena's page map or bitmap */
    QUARRY_ERR_FREE_PAGE = 18,       /* in a page nothing owns: quarry_free, never used;
                                        quarry_cache_free, never used or given back */
    QUARRY_ERR_INTERIOR_POINTER = 19,/* inside a block, not at its start */
    QUARRY_ERR_MISALIGNED = 20,      /* not a multiple of 8 */
    QUARRY_ERR_WRONG_CACHE = 21,     /* another cache's object */
    QUARRY_ERR_DOUBLE_FREE = 22,     /* not allocated: freed twice or never handed out
                                        (quarry_free: whatever the block's size) */
    QUARRY_ERR_CORRUPT_FREE_LIST = 23,/* a free-list link was overwritten */
    QUARRY_ERR_CACHE_NOT_EMPTY = 24, /* quarry_cache_destroy: objects still allocated */
    QUARRY_ERR_SIZE_MISMATCH = 25,   /* quarry_free_sized: the size names another class */
    QUARRY_ERR_RED_ZONE = 26,        /* (debug caches) bytes past an object were overwritten */
    QUARRY_ERR_USE_AFTER_FREE = 27,  /* (debug caches) a freed object's poison was overwritten */
    QUARRY_ERR_ACCOUNTING_MISMATCH = 28,/* (quarry_validate) Quarry's own records disagree */
    QUARRY_ERR_RECLAIM_STALLED = 32  /* quarry_epoch_retire*: refused, a CPU stays in a read section */
} quarry_error;

/* errno values returned by quarry_posix_memalign (the Linux numbers). */
#define QUARRY_ENOMEM 12
#define QUARRY_EINVAL 22

/* A cache of fixed-size objects (opaque). */
typedef struct quarry_cache quarry_cache;

/* Runs once on each object when its slab first hands it out; objects must be freed
 * back in their constructed state. */
typedef void (*quarry_ctor)(void *object);

/* Receives slabinfo text, a line at a time (not NUL-terminated). */
typedef void (*quarry_write_fn)(const char *text, size_t length, void *context);

/* A snapshot of one cache (quarry_cache_stats). */
typedef struct quarry_cache_statistics {
    char name[32];              /* NUL-terminated, at most 31 bytes */
    size_t requested_size;      /* size given at creation */
    size_t object_size;         /* stride between objects */
    size_t alignment;
    size_t objects_per_slab;
    size_t pages_per_slab;
    size_t colors;
    size_t active_objects;      /* allocated and not freed */
    size_t total_objects;       /* capacity of the slabs held */
    size_t high_water_objects;
    size_t partial_slabs;
    size_t full_slabs;
    size_t empty_slabs;
    size_t pages;
    uint64_t allocations;
    uint64_t frees;
    uint64_t failures;          /* allocations refused for lack of memory */
    uint64_t slabs_created;
    uint64_t slabs_released;
    uint64_t errors;            /* refused frees and detected corruption */
    /* The per-CPU layer (zero when the cache has none). */
    size_t cached_objects;      /* in magazines, reserves and the depot */
    size_t magazine_capacity;
    uint64_t allocation_hits;   /* served by the loaded magazine */
    uint64_t allocation_misses;
    uint64_t free_hits;
    uint64_t free_misses;
    uint64_t depot_exchanges;
    uint64_t refills;           /* magazines filled from slabs */
    uint64_t flushes;           /* magazines or reserves emptied into slabs */
    uint64_t errors_by_kind[16];/* index: quarry_error - 16 (QUARRY_ERR_OUTSIDE_ARENA ...) */
    /* After a detected corruption: slabs taken out of service (held until the cache is
     * destroyed; counted in the slab and page figures above) and their objects that
     * can never be handed out again. */
    size_t quarantined_slabs;
    size_t leaked_objects;
} quarry_cache_statistics;

/* Called on every misuse or corruption Quarry detects: the error, the cache and the
 * address. `cache` is the handle of a cache made by quarry_cache_create(_with); for a
 * malloc block it is the block's size-class cache, a pointer no quarry_cache_* call
 * accepts (they refuse it with QUARRY_ERR_INVALID_CACHE: compare it, do not use it); it
 * is NULL, with address 0, when the malloc front refused the pointer itself (outside the
 * arena, metadata, a free page, a double free of a span, an interior pointer of a span,
 * another cache's object, a size mismatch). May run on any CPU with interrupts masked
 * and Quarry locks held: it must not allocate or call Quarry. */
typedef void (*quarry_error_hook)(uint8_t error, quarry_cache *cache, uintptr_t address);

/* A snapshot of the whole heap (quarry_heap_stats). */
typedef struct quarry_heap_statistics {
    size_t page_count;          /* data pages in the arena */
    size_t pages_in_use;        /* held by slabs and spans */
    size_t free_run_pages;      /* given back, below the bump pointer */
    size_t bump;                /* pages 0 .. bump-1 have been used */
    size_t high_water;
    size_t metadata_bytes;
    size_t caches;              /* live caches, the cache of caches and malloc classes included */
    size_t malloc_class_caches;
    size_t live_spans;          /* malloc blocks above 32 KiB or aligned beyond a page */
    size_t span_pages;
    uint64_t malloc_errors;     /* refused malloc-front calls counted by the front */
    /* The per-CPU budget: all CPUs' magazines and every depot together hold at most
     * per_cpu_budget_bytes (data bytes / 8), each magazine charged the bytes its rounds
     * can hold plus its own size when it is made. */
    size_t per_cpu_budget_bytes;
    size_t per_cpu_charged_bytes;
    size_t per_cpu_high_water_bytes;
    uint64_t reclaims;          /* quarry_shrink calls, and allocations that would have failed */
} quarry_heap_statistics;

/* Takes over [base, base + size) as the arena; O(1), touches only its first bytes.
 * Calling it again starts a new, empty instance (the old one's blocks are abandoned). */
quarry_error quarry_init(void *base, size_t size);

/* Caches. `name` is copied (at most 31 bytes); `align` 0 means 8; `ctor` may be NULL.
 * A handle names its cache until quarry_cache_destroy; afterwards every call with it is
 * refused with QUARRY_ERR_INVALID_CACHE, even when a new cache lives at the same address
 * (the handle carries a generation; it wraps after 64 creations, so a stale handle can
 * again name a cache created exactly 64 * k caches later in the same memory). */
quarry_cache *quarry_cache_create(const char *name, size_t size, size_t align, quarry_ctor ctor);
void *quarry_cache_alloc(quarry_cache *cache);
/* Refuses (nothing changes) a pointer that is not an object the cache handed out, with
 * the reason; a second free of an object is QUARRY_ERR_DOUBLE_FREE while its slab is
 * the cache's, QUARRY_ERR_FREE_PAGE once the slab was released (the cache then cannot
 * tell its own old object from an address it never owned). */
quarry_error quarry_cache_free(quarry_cache *cache, void *object);
/* Bulk (SLUB's kmem_cache_alloc_bulk / kmem_cache_free_bulk). Interrupt-safe as
 * quarry_cache_alloc and quarry_cache_free; the slot of the calling CPU is claimed once
 * per batch, and what its magazines cannot serve or take moves to or from the slabs under
 * one acquisition of the cache lock, with interrupts masked for the whole batch (split
 * long batches where interrupt latency matters).
 *
 * quarry_cache_alloc_bulk: all or nothing. Fills out[0 .. n-1] with objects and returns
 * n; or returns 0, sets quarry_last_error (QUARRY_ERR_OUT_OF_MEMORY, ...) and sets every
 * out[i] to NULL, having given back the objects it took. n == 0 returns 0 and is no
 * error; out == NULL with n > 0 is QUARRY_ERR_INVALID_CACHE. */
size_t quarry_cache_alloc_bulk(quarry_cache *cache, size_t n, void **out);
/* quarry_cache_free_bulk: frees ptrs[0 .. n-1], each checked exactly as quarry_cache_free
 * checks it (NULL entries are skipped). A refused pointer (a double free, also of a
 * pointer that appears twice in ptrs, an interior pointer, another cache's object, ...)
 * is counted and reported to the error hook, is left untouched, and does not stop the
 * others. Returns QUARRY_OK, or the first error met (also set for quarry_last_error).
 * ptrs == NULL with n > 0 is QUARRY_ERR_INVALID_CACHE. */
quarry_error quarry_cache_free_bulk(quarry_cache *cache, size_t n, void *const *ptrs);
/* Releases the cache's empty slabs; returns the number of pages given back. Objects the
 * CPUs' magazines hold keep their slabs until a reclaim (quarry_shrink) drains them. */
size_t quarry_cache_shrink(quarry_cache *cache);
/* QUARRY_ERR_CACHE_NOT_EMPTY (and nothing changes) while objects are allocated. */
quarry_error quarry_cache_destroy(quarry_cache *cache);

/* Cache options: the safety and debugging features of quarry_cache_create_with, all off
 * by default (docs/benchmarks.md ("Debug options") measures their costs). What is always on (pointer checks,
 * the double-free check, encoded free-list links) needs no option.
 *
 * Versioned by size: set struct_size to sizeof(quarry_cache_options) and zero what you
 * do not set, e.g. with QUARRY_CACHE_OPTIONS_INIT. Later versions add fields in
 * `reserved` and at the end. A library reads only the first struct_size bytes (an older
 * caller's missing fields keep their defaults) and refuses with QUARRY_ERR_BAD_OPTIONS
 * a struct_size below sizeof(size_t), nonzero `reserved` bytes, or nonzero bytes past
 * its own sizeof (a newer caller's options it does not know). A flag is on when nonzero.
 * No padding: 16 bytes on 32-bit targets, 24 on 64-bit ones. */
typedef struct quarry_cache_options {
    size_t struct_size;
    /* Bytes after each object (rounded up to 8), filled with 0xbb and checked on free:
     * a write past the object is QUARRY_ERR_RED_ZONE (error hook and counters; the
     * free still happens). Grows the stride. Too large: QUARRY_ERR_SIZE_TOO_LARGE. */
    size_t red_zone;
    /* Freed objects are filled with 0x6b (but their free-link word) and checked when
     * handed out again: a write after free is QUARRY_ERR_USE_AFTER_FREE (hook and
     * counters; the object is still handed out). Ignored with a constructor or
     * type_stable, which need a freed object's bytes kept. */
    uint8_t poison;
    uint8_t zero_on_alloc;      /* objects are zeroed when handed out (ignored with a constructor) */
    uint8_t zero_on_free;       /* objects are zeroed when freed (ignored with poison or type_stable) */
    /* New slabs hand out their objects in a random order instead of address order. */
    uint8_t randomize_slots;
    /* Type-stable memory (Linux SLAB_TYPESAFE_BY_RCU): the cache's slabs stay with it
     * until destroy and freeing writes nothing into the caller's bytes, so memory that
     * held an object of the cache holds one while the cache lives. */
    uint8_t type_stable;
    uint8_t reserved[3];        /* zero */
} quarry_cache_options;

#define QUARRY_CACHE_OPTIONS_INIT { sizeof(quarry_cache_options), 0, 0, 0, 0, 0, 0, {0, 0, 0} }

/* quarry_cache_create with options; NULL options are the defaults (quarry_cache_create). */
quarry_cache *quarry_cache_create_with(const char *name, size_t size, size_t align, quarry_ctor ctor,
                                       const quarry_cache_options *options);

/* quarry_init with the options of every malloc size-class cache: the heap-wide safety
 * choice. poison, zero_on_alloc, zero_on_free and randomize_slots apply to every block
 * of at most 32 KiB (spans above are pages, with none of them); red_zone and type_stable
 * cannot (a class's stride is its size; malloc memory has no type): nonzero, they are
 * QUARRY_ERR_BAD_OPTIONS, as is an unreadable struct, and nothing is set up. NULL is
 * quarry_init. The error hook receives a malloc block's class cache as a pointer that
 * is not a handle. The other options are per cache: there are no other heap-wide ones. */
quarry_error quarry_init_with(void *base, size_t size, const quarry_cache_options *malloc_options);

/* malloc family. Size 0 gives a unique smallest object (never NULL on success).
 * Blocks are 16-byte aligned (8 for requests of at most 8 bytes): the largest power
 * of two dividing their size class. Requests above 32 KiB are spans: whole pages,
 * page-aligned (4096), their usable size rounded up to pages. */
void *quarry_malloc(size_t size);
/* Frees a block from any function below; NULL is a no-op. A pointer Quarry did not
 * hand out is refused: nothing changes and quarry_last_error says why. A block freed
 * twice is QUARRY_ERR_DOUBLE_FREE whatever its size (unless its memory was handed out
 * again in between: then the second free frees the new block, as with any allocator).
 * An object of a cache from quarry_cache_create is refused with QUARRY_ERR_WRONG_CACHE
 * (free it with quarry_cache_free). */
void quarry_free(void *ptr);
/* C23 free_sized / free_aligned_sized: the size (and alignment) the block was
 * allocated with. A hint naming another size class or span length than the block's
 * is QUARRY_ERR_SIZE_MISMATCH, and the block is not freed; an alignment that is not a
 * power of two is QUARRY_ERR_BAD_ALIGNMENT (not freed). An alignment that is a power
 * of two but not the one allocated with is a mismatch only when, with the size, it
 * names another class (a smaller one often names the same class: then it frees). */
quarry_error quarry_free_sized(void *ptr, size_t size);
quarry_error quarry_free_aligned_sized(void *ptr, size_t alignment, size_t size);
/* count * size zeroed bytes; NULL with QUARRY_ERR_SIZE_TOO_LARGE when the product
 * overflows. A zero count or size (whatever the other, SIZE_MAX too) gives a smallest
 * block, as malloc(0). */
void *quarry_calloc(size_t count, size_t size);
/* realloc(NULL, n) is malloc(n). realloc(p, 0) shrinks p to a smallest object and
 * returns it (never frees and returns NULL): NULL always means failure, p untouched. */
void *quarry_realloc(void *ptr, size_t size);
/* Any power-of-two alignment (C17: size need not be a multiple of it); NULL with
 * QUARRY_ERR_BAD_ALIGNMENT otherwise. */
void *quarry_aligned_alloc(size_t alignment, size_t size);
/* POSIX: 0, QUARRY_EINVAL (alignment not a power of two multiple of sizeof(void *),
 * or out NULL), or QUARRY_ENOMEM; *out is written only on success. */
int quarry_posix_memalign(void **out, size_t alignment, size_t size);
/* Bytes usable at ptr (its size class or whole pages); 0 for a pointer not handed out. */
size_t quarry_usable_size(void *ptr);
/* Gives back what Quarry can take without waiting for another CPU: the calling CPU's
 * magazines, every depot, every empty slab; the other CPUs empty their magazines on
 * their next slow path. Any time, on any CPU, from thread context (or a maskable
 * interrupt handler), while other CPUs allocate and free. An allocation does the same
 * by itself before it fails. Returns the pages in use before minus after. */
size_t quarry_shrink(void);
/* Only when no other CPU or interrupt handler is inside Quarry: empties every CPU's
 * magazines and every depot, releases every empty slab and removes the malloc class
 * caches that hold no block. After everything is freed, no page is in use. Returns
 * the number of pages given back. */
size_t quarry_drain_all(void);

/* Statistics and diagnosis. */
quarry_error quarry_cache_stats(quarry_cache *cache, quarry_cache_statistics *out);
quarry_error quarry_heap_stats(quarry_heap_statistics *out);
/* Writes the slabinfo table through `write`, or to the platform's output when NULL. */
void quarry_slabinfo(quarry_write_fn write, void *context);
/* The error of the calling CPU's (host: thread's) most recent refused call; QUARRY_OK
 * if none since the start or quarry_clear_error. Successful calls leave it alone. One
 * byte per CPU, written with a relaxed atomic store: on bare metal an interrupt handler
 * whose call is refused on the same CPU overwrites it, so a value read after such a
 * handler ran may be the handler's. Decide on return values; use this to say why. */
quarry_error quarry_last_error(void);
/* Sets the calling CPU's (host: thread's) last error back to QUARRY_OK. */
void quarry_clear_error(void);
/* A fixed, NUL-terminated name for `error` ("double free"); "unknown" otherwise. */
const char *quarry_error_name(quarry_error error);
/* Sets the error hook (NULL removes it). */
void quarry_set_error_hook(quarry_error_hook hook);
/* Walks every structure; traps with a message on the first broken invariant. */
void quarry_check_invariants(void);

/* What quarry_validate found first. */
typedef struct quarry_validation {
    quarry_error error;         /* QUARRY_OK: nothing found; else the corruption kind
                                   (QUARRY_ERR_CORRUPT_FREE_LIST, _USE_AFTER_FREE,
                                   _RED_ZONE) or QUARRY_ERR_ACCOUNTING_MISMATCH */
    uintptr_t address;          /* the object, the slab's first byte, or the cache */
    char cache[32];             /* the cache's name, NUL-terminated ("" for the heap) */
} quarry_validation;

/* The check of quarry_check_invariants that reports instead of trapping: every cache's
 * free lists, poison, red zones, slab lists, allocation bitmap and counters, and the
 * heap's page count. Returns the first finding's error (QUARRY_OK when the heap is
 * sound) and, when out is not NULL, fills *out. Slabs quarantined after a detected
 * corruption are not findings. Changes nothing; only when no other CPU or interrupt
 * handler is inside Quarry. QUARRY_ERR_NOT_INITIALIZED before quarry_init. */
quarry_error quarry_validate(quarry_validation *out);

/* Deferred freeing (epoch-based reclamation; Swift: EpochReclaimer). For lock-free
 * structures whose readers take no lock: a reader brackets every access to shared
 * objects with quarry_epoch_enter / quarry_epoch_exit (a read section); a writer that
 * unlinked an object retires it instead of freeing it, and Quarry frees it once every
 * CPU that could have seen it has left its read section (the global epoch has
 * advanced twice). Nothing is written into a retired object until then.
 *
 * One reclaimer per instance, made by quarry_epoch_init; quarry_init abandons it with
 * the old instance. Each CPU's backlog holds at most retired_per_cpu objects (all CPUs
 * together at most 16 x retired_per_cpu on bare metal, 64 x on the host). A retire
 * that finds its CPU's backlog full tries to advance the epoch and free; if a CPU stays
 * inside a read section it is refused with QUARRY_ERR_RECLAIM_STALLED (the caller
 * keeps the object: free it later or retry), counted, and the stall hook runs.
 *
 * Who may call: enter, exit, retire, retire_block, poll and stats on any CPU, also in a
 * maskable interrupt handler (a handler's read section nests inside the interrupted
 * code's); never in an NMI. quarry_epoch_synchronize waits for other CPUs: thread
 * context only, outside any read section. quarry_epoch_init and quarry_epoch_destroy:
 * at quiescence (no other CPU or handler in Quarry). Inside a read section a CPU must
 * not wait for another CPU's progress (a section that never ends stalls every retire). */

/* Called on every stall report: `cpu` is the CPU inside an old read section (-1 when it
 * left just before the scan), `epoch` the global epoch. Runs on the refusing CPU,
 * possibly in an interrupt handler: it must not allocate, wait or call Quarry. */
typedef void (*quarry_epoch_stall_hook)(intptr_t cpu, uintptr_t epoch);

/* A snapshot of the reclaimer (quarry_epoch_stats). Counters are read one by one while
 * other CPUs run: each is exact, the set is not one instant. */
typedef struct quarry_epoch_statistics {
    uint64_t epoch;             /* the global epoch */
    uint64_t advances;          /* times it moved */
    uint64_t retired;           /* objects retired, ever */
    uint64_t freed;             /* retired objects freed back, ever */
    uint64_t refused;           /* retires refused with QUARRY_ERR_RECLAIM_STALLED */
    uint64_t blocked_advances;  /* attempts to advance that a read section blocked */
    uint64_t free_errors;       /* frees of retired objects refused (retired twice) */
    uint64_t stalls;            /* stall reports (one per refused retire) */
    size_t capacity;            /* retired objects each CPU may hold */
    size_t cpus;                /* CPU records (16 bare metal, 64 host) */
    size_t pending;             /* retired, not yet freed (retired - freed) */
    size_t high_water;          /* most objects one CPU held at once */
    intptr_t last_stalling_cpu; /* the CPU the last stall report named; -1: none */
} quarry_epoch_statistics;

/* Makes the instance's reclaimer: retired_per_cpu (at least 4, at most 4096 on 64-bit,
 * 8192 on 32-bit targets; 0 means 256) and the stall hook (NULL: none). Its state comes
 * from two caches of the arena ("quarry_ebr", "quarry_ebr_retired"). QUARRY_ERR_ZERO_SIZE
 * (1 to 3) or QUARRY_ERR_SIZE_TOO_LARGE for the bound, QUARRY_ERR_OUT_OF_MEMORY,
 * QUARRY_ERR_NOT_INITIALIZED before quarry_init, QUARRY_ERR_BUSY when it exists already
 * (quarry_epoch_destroy it first). */
quarry_error quarry_epoch_init(size_t retired_per_cpu, quarry_epoch_stall_hook stall_hook);
/* Enters a read section on the calling CPU: objects retired from now on are not freed
 * before the matching exit. Nests (only the outermost enter announces). Never waits;
 * one locked instruction (xchg), interrupts masked for a few instructions. Returns
 * QUARRY_OK, or QUARRY_ERR_NOT_INITIALIZED without a reclaimer (and the caller is not
 * in a section: it must not call exit); on the host QUARRY_ERR_TOO_MANY_THREADS too. */
quarry_error quarry_epoch_enter(void);
/* Leaves the section the last successful quarry_epoch_enter of this CPU opened, on the
 * same CPU (no migration in between). An exit without an enter traps (ud2). */
void quarry_epoch_exit(void);
/* Retires an object of `cache`, already unlinked from every shared structure: it goes
 * back to the cache (as quarry_cache_free) once no read section can still see it, and
 * stays allocated until then. QUARRY_OK; QUARRY_ERR_RECLAIM_STALLED (kept by the caller);
 * QUARRY_ERR_INVALID_CACHE; for an object the cache did not hand out or already took
 * back, the reason quarry_cache_free would give (nothing retired). Retiring an object
 * twice is a double free: the second free is refused when it comes due (free_errors). */
quarry_error quarry_epoch_retire(quarry_cache *cache, void *object);
/* The same for a malloc block of any size (quarry_malloc & co.): it is freed as
 * quarry_free frees it. NULL is QUARRY_OK and retires nothing. */
quarry_error quarry_epoch_retire_block(void *block);
/* The periodic poll (a timer tick, an idle loop): tries once to advance the epoch and
 * frees the calling CPU's retired objects that are due. Never waits. Returns how many
 * it freed (0 without a reclaimer). */
size_t quarry_epoch_poll(void);
/* The barrier (synchronize_rcu, then the callbacks): returns once every object the
 * calling CPU retired before the call has been freed. Spins while another CPU stays in
 * a read section. Thread context, outside a read section (traps inside one); a no-op
 * without a reclaimer. Objects other CPUs retired are freed by their own CPUs (their
 * retires, polls and barriers). */
void quarry_epoch_synchronize(void);
/* QUARRY_ERR_NOT_INITIALIZED without a reclaimer; QUARRY_ERR_INVALID_CACHE when out is NULL. */
quarry_error quarry_epoch_stats(quarry_epoch_statistics *out);
/* At quiescence, no CPU in a read section: frees every retired object of every CPU,
 * then the reclaimer's own memory and caches. QUARRY_ERR_NOT_INITIALIZED without one;
 * QUARRY_ERR_BUSY (nothing changed) while a CPU is inside a read section. */
quarry_error quarry_epoch_destroy(void);

#ifdef QUARRY_TESTING
/* Test hooks: defined only by a library built with QUARRY_CHECKED (swiftc -D QUARRY_CHECKED;
 * SwiftPM debug builds, so the host tests), declared only when the program defines
 * QUARRY_TESTING. Call them at quiescence (no other call inside Quarry).
 *
 * Makes the after-th page request from now fail as if the arena were full, once
 * (after >= 1); 0 cancels. A request is one new slab or one span (a block above 32 KiB
 * or aligned beyond a page). An allocation reclaims and tries once more before it
 * fails, so a single failed request is absorbed. QUARRY_ERR_NOT_INITIALIZED before
 * quarry_init. */
quarry_error quarry_test_fail_page_request(size_t after);
/* Page requests failed by quarry_test_fail_page_request so far (0 before quarry_init). */
size_t quarry_test_injected_failures(void);
#endif

#ifdef __cplusplus
}
#endif

#endif /* QUARRY_H */

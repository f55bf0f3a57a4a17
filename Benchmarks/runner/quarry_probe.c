/* quarry_probe.c: Quarry's slow paths, start-up cost and memory figures, for callgrind, through
 * include/quarry.h (linked with build/host/libquarry.so, Benchmarks/lib.sh).
 * Neighbours: Benchmarks/instructions.sh (runs it under `valgrind --tool=callgrind` and reads one
 * dump per measured region), report.py.
 *
 *   quarry-probe slowpaths           one callgrind dump per region (CALLGRIND_ZERO_STATS before,
 *                                    CALLGRIND_DUMP_STATS_AT(label) after); "empty" is the cost
 *                                    of the two client requests alone, subtracted by the report
 *   quarry-probe init BYTES          one dump around quarry_init of a BYTES arena
 *   quarry-probe memory BYTES        CSV of metadata and slab figures (no callgrind needed)
 *   quarry-probe classes             CSV of the malloc front's size classes: worst-case rounding
 *                                    waste and the slab shape of each class cache
 *
 * Outside valgrind the client requests are a few no-op instructions. */
#include "quarry.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <valgrind/callgrind.h>

static const size_t probe_sizes[] = {16, 64, 256, 1024};
#define NSIZES (sizeof probe_sizes / sizeof probe_sizes[0])

static void die(const char *what, quarry_error error) {
    fprintf(stderr, "quarry-probe: %s: %s\n", what, quarry_error_name(error));
    exit(2);
}

static void *map_arena(size_t bytes) {
    void *base = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (base == MAP_FAILED) {
        perror("mmap");
        exit(2);
    }
    return base;
}

static void init_or_die(size_t bytes) {
    quarry_error e = quarry_init(map_arena(bytes), bytes);
    if (e != QUARRY_OK) die("quarry_init", e);
}

static quarry_cache *create_or_die(size_t size) {
    quarry_cache *cache = quarry_cache_create("probe", size, 0, NULL);
    if (cache == NULL) die("quarry_cache_create", quarry_last_error());
    return cache;
}

static void *alloc_or_die(quarry_cache *cache) {
    void *p = quarry_cache_alloc(cache);
    if (p == NULL) die("quarry_cache_alloc", quarry_last_error());
    return p;
}

static quarry_cache_statistics stats_or_die(quarry_cache *cache) {
    quarry_cache_statistics s;
    quarry_error e = quarry_cache_stats(cache, &s);
    if (e != QUARRY_OK) die("quarry_cache_stats", e);
    return s;
}

#define REGION(label, stmt)                 \
    do {                                    \
        CALLGRIND_ZERO_STATS;               \
        stmt;                               \
        CALLGRIND_DUMP_STATS_AT(label);     \
    } while (0)

static void slowpaths(void) {
    char label[64];
    init_or_die(1ul << 30);
    REGION("empty", (void)0);
    for (size_t s = 0; s < NSIZES; s++) {
        size_t size = probe_sizes[s];
        quarry_cache *cache;
        snprintf(label, sizeof label, "create-cache/%zu", size);
        REGION(label, cache = quarry_cache_create("probe", size, 0, NULL));
        if (cache == NULL) die("quarry_cache_create", quarry_last_error());
        size_t per_slab = stats_or_die(cache).objects_per_slab;
        void **objects = malloc(sizeof(void *) * (2 * per_slab + 1));
        /* A fresh cache's first allocate: a new slab, its pages from the wilderness. */
        snprintf(label, sizeof label, "new-slab-first-allocate/%zu", size);
        REGION(label, objects[0] = quarry_cache_alloc(cache));
        /* For reference: the next allocate and a free that keep the slab partial. */
        snprintf(label, sizeof label, "partial-allocate/%zu", size);
        REGION(label, objects[1] = quarry_cache_alloc(cache));
        snprintf(label, sizeof label, "partial-free/%zu", size);
        REGION(label, quarry_cache_free(cache, objects[1]));
        objects[1] = alloc_or_die(cache);
        for (size_t i = 2; i < per_slab; i++) objects[i] = alloc_or_die(cache);
        /* The slab is full: the next allocate creates a second slab. */
        snprintf(label, sizeof label, "new-slab-when-full/%zu", size);
        REGION(label, objects[per_slab] = quarry_cache_alloc(cache));
        for (size_t i = per_slab + 1; i < 2 * per_slab; i++) objects[i] = alloc_or_die(cache);
        /* Another cache's slab above these two, so that released pages form a free run
         * below the bump pointer instead of going back to the wilderness. */
        quarry_cache *fence = create_or_die(size);
        void *fenced = alloc_or_die(fence);
        /* Empty the first slab (kept as the cache's one empty-slab reserve), then the second:
         * its last free releases the slab's pages to the page allocator. */
        for (size_t i = 0; i < per_slab; i++) quarry_cache_free(cache, objects[i]);
        for (size_t i = per_slab; i < 2 * per_slab - 1; i++) quarry_cache_free(cache, objects[i]);
        snprintf(label, sizeof label, "free-releases-slab/%zu", size);
        REGION(label, quarry_cache_free(cache, objects[2 * per_slab - 1]));
        /* A new cache's first slab now comes from that free run (the page allocator's bins). */
        quarry_cache *reuse = create_or_die(size);
        void *o;
        snprintf(label, sizeof label, "new-slab-from-free-run/%zu", size);
        REGION(label, o = quarry_cache_alloc(reuse));
        quarry_cache_free(reuse, o);
        quarry_cache_free(fence, fenced);
        snprintf(label, sizeof label, "destroy-cache/%zu", size);
        REGION(label, quarry_cache_destroy(reuse));
        quarry_cache_destroy(fence);
        quarry_cache_destroy(cache);
        free(objects);
    }
    /* Depot refill (a CPU's magazine exchanged with the depot) has no region yet: the C ABI
     * has no call that moves this CPU's magazines to the depot alone (quarry_shrink empties
     * the depot too). */
}

static void init_cost(size_t bytes) {
    void *base = map_arena(bytes);
    quarry_error e;
    char label[64];
    snprintf(label, sizeof label, "initialize/%zu", bytes);
    REGION("empty", (void)0);
    REGION(label, e = quarry_init(base, bytes));
    if (e != QUARRY_OK) die("quarry_init", e);
}

/* CSV: arena_bytes,page_count,metadata_bytes,size,object_size,objects_per_slab,pages_per_slab,colors */
static void memory(size_t bytes) {
    init_or_die(bytes);
    quarry_heap_statistics heap;
    quarry_error e = quarry_heap_stats(&heap);
    if (e != QUARRY_OK) die("quarry_heap_stats", e);
    printf("arena_bytes,page_count,metadata_bytes,size,object_size,objects_per_slab,pages_per_slab,colors\n");
    static const size_t sizes[] = {8, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512, 768, 1024, 2048, 4096};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        quarry_cache *cache = create_or_die(sizes[i]);
        quarry_cache_statistics s = stats_or_die(cache);
        printf("%zu,%zu,%zu,%zu,%zu,%zu,%zu,%zu\n", bytes, heap.page_count, heap.metadata_bytes, sizes[i],
               s.object_size, s.objects_per_slab, s.pages_per_slab, s.colors);
        quarry_cache_destroy(cache);
    }
}

/* The class caches' shapes, read from the slabinfo table (the C ABI's only view of them):
 * the rows named "malloc-<size>", columns name, objsize, align, obj/slab, pg/slab. */
#define MAX_CLASSES 128
static struct class_shape { size_t size, objects_per_slab, pages_per_slab; } shapes[MAX_CLASSES];
static size_t nshapes;

static void slabinfo_line(const char *text, size_t length, void *context) {
    (void)length;
    (void)context;
    size_t size, align, per_slab, pages;
    if (nshapes < MAX_CLASSES &&
        sscanf(text, " malloc-%*s %zu %zu %zu %zu", &size, &align, &per_slab, &pages) == 4)
        shapes[nshapes++] = (struct class_shape){size, per_slab, pages};
}

/* CSV: class,size,smallest_request,worst_waste_bytes,worst_waste_pct,objects_per_slab,
 * pages_per_slab,slab_slack_bytes. The classes are found through quarry_usable_size (the
 * class of a request of one byte more than the class below); the worst request of a class
 * is that one, and its waste is measured against the request. */
static void classes(void) {
    init_or_die(1ul << 30);
    size_t sizes[MAX_CLASSES], n = 0;
    for (size_t request = 1; request <= 32768 && n < MAX_CLASSES; request = sizes[n - 1] + 1) {
        void *p = quarry_malloc(request);
        if (p == NULL) die("quarry_malloc", quarry_last_error());
        sizes[n++] = quarry_usable_size(p);
        quarry_free(p); /* the class cache stays, with its slab */
    }
    quarry_slabinfo(slabinfo_line, NULL);
    printf("class,size,smallest_request,worst_waste_bytes,worst_waste_pct,objects_per_slab,pages_per_slab,slab_slack_bytes\n");
    size_t previous = 0;
    for (size_t i = 0; i < n; i++) {
        const struct class_shape *shape = NULL;
        for (size_t k = 0; k < nshapes; k++)
            if (shapes[k].size == sizes[i]) shape = &shapes[k];
        if (shape == NULL) {
            fprintf(stderr, "quarry-probe: no class cache of %zu bytes in the slabinfo table\n", sizes[i]);
            exit(2);
        }
        size_t request = previous + 1;
        size_t slack = shape->pages_per_slab * 4096 - shape->objects_per_slab * sizes[i];
        printf("%zu,%zu,%zu,%zu,%.2f,%zu,%zu,%zu\n", i, sizes[i], request, sizes[i] - request,
               100.0 * (double)(sizes[i] - request) / (double)request, shape->objects_per_slab,
               shape->pages_per_slab, slack);
        previous = sizes[i];
    }
}

int main(int argc, char **argv) {
    if (argc == 2 && !strcmp(argv[1], "classes")) classes();
    else if (argc == 2 && !strcmp(argv[1], "slowpaths")) slowpaths();
    else if (argc == 3 && !strcmp(argv[1], "init")) init_cost((size_t)strtoull(argv[2], NULL, 0));
    else if (argc == 3 && !strcmp(argv[1], "memory")) memory((size_t)strtoull(argv[2], NULL, 0));
    else {
        fprintf(stderr, "usage: quarry-probe slowpaths | init BYTES | memory BYTES | classes\n");
        return 2;
    }
    return 0;
}

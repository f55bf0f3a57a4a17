/* quarry_probe.c: Quarry's slow paths, start-up cost and memory figures, for callgrind.
 * Neighbours: quarry_bench.h (the QuarryBench C ABI), Benchmarks/instructions.sh (runs it under
 * `valgrind --tool=callgrind` and reads one dump per measured region), report.py.
 *
 *   quarry-probe slowpaths           one callgrind dump per region (CALLGRIND_ZERO_STATS before,
 *                                    CALLGRIND_DUMP_STATS_AT(label) after); "empty" is the cost
 *                                    of the two client requests alone, subtracted by the report
 *   quarry-probe init BYTES          one dump around Quarry.initialize of a BYTES arena
 *   quarry-probe memory BYTES        CSV of metadata and slab figures (no callgrind needed)
 *   quarry-probe classes             CSV of the malloc front's size classes: worst-case rounding
 *                                    waste and the slab shape of each class cache
 *   quarry-probe swiftpair SIZE N    the pair workload written in Swift (qb_cache_pair_loop): run
 *                                    with N and 2N like `bench --count` to count Quarry's pair
 *                                    cost without the C-ABI glue
 *   quarry-probe mallocpair SIZE N   the same through the malloc front (qb_malloc_pair_loop)
 *
 * Outside valgrind the client requests are a few no-op instructions. */
#include "quarry_bench.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <valgrind/callgrind.h>

static const long probe_sizes[] = {16, 64, 256, 1024};
#define NSIZES (sizeof probe_sizes / sizeof probe_sizes[0])

static void *map_arena(size_t bytes) {
    void *base = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (base == MAP_FAILED) {
        perror("mmap");
        exit(2);
    }
    return base;
}

static void init_or_die(size_t bytes) {
    int32_t e = qb_init(map_arena(bytes), (ptrdiff_t)bytes);
    if (e != 0) {
        fprintf(stderr, "quarry-probe: qb_init failed (%d)\n", e);
        exit(2);
    }
}

static void *alloc_or_die(void *cache) {
    void *p = qb_cache_alloc(cache);
    if (p == NULL) {
        fprintf(stderr, "quarry-probe: allocation failed\n");
        exit(2);
    }
    return p;
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
    qb_thread_register(0);
    REGION("empty", (void)0);
    for (size_t s = 0; s < NSIZES; s++) {
        long size = probe_sizes[s];
        void *cache;
        snprintf(label, sizeof label, "create-cache/%ld", size);
        REGION(label, cache = qb_cache_create(size));
        struct qb_cache_info info;
        qb_cache_info(cache, &info);
        void **objects = malloc(sizeof(void *) * (size_t)(2 * info.objects_per_slab + 1));
        /* A fresh cache's first allocate: a new slab, its pages from the wilderness. */
        snprintf(label, sizeof label, "new-slab-first-allocate/%ld", size);
        REGION(label, objects[0] = qb_cache_alloc(cache));
        /* For reference: the next allocate and a free that keep the slab partial. */
        snprintf(label, sizeof label, "partial-allocate/%ld", size);
        REGION(label, objects[1] = qb_cache_alloc(cache));
        snprintf(label, sizeof label, "partial-free/%ld", size);
        REGION(label, qb_cache_free(cache, objects[1]));
        objects[1] = alloc_or_die(cache);
        for (long i = 2; i < info.objects_per_slab; i++) objects[i] = alloc_or_die(cache);
        /* The slab is full: the next allocate creates a second slab. */
        snprintf(label, sizeof label, "new-slab-when-full/%ld", size);
        REGION(label, objects[info.objects_per_slab] = qb_cache_alloc(cache));
        for (long i = info.objects_per_slab + 1; i < 2 * info.objects_per_slab; i++)
            objects[i] = alloc_or_die(cache);
        /* Another cache's slab above these two, so that released pages form a free run
         * below the bump pointer instead of going back to the wilderness. */
        void *fence = qb_cache_create(size);
        void *fenced = alloc_or_die(fence);
        /* Empty the first slab (kept as the cache's one empty-slab reserve), then the second:
         * its last free releases the slab's pages to the page allocator. */
        for (long i = 0; i < info.objects_per_slab; i++) qb_cache_free(cache, objects[i]);
        for (long i = info.objects_per_slab; i < 2 * info.objects_per_slab - 1; i++)
            qb_cache_free(cache, objects[i]);
        snprintf(label, sizeof label, "free-releases-slab/%ld", size);
        REGION(label, qb_cache_free(cache, objects[2 * info.objects_per_slab - 1]));
        /* A new cache's first slab now comes from that free run (the page allocator's bins). */
        void *reuse = qb_cache_create(size);
        void *o;
        snprintf(label, sizeof label, "new-slab-from-free-run/%ld", size);
        REGION(label, o = qb_cache_alloc(reuse));
        qb_cache_free(reuse, o);
        qb_cache_free(fence, fenced);
        snprintf(label, sizeof label, "destroy-cache/%ld", size);
        REGION(label, qb_cache_destroy(reuse));
        qb_cache_destroy(fence);
        qb_cache_destroy(cache);
        free(objects);
    }
    /* Depot refill (a CPU's magazine exchanged with the depot) awaits the per-CPU layer
     * (issue 3): when QuarryBench exports a way to empty this CPU's magazines, measure the
     * first allocate after it here as REGION("depot-refill/<size>", ...). */
}

static void init_cost(size_t bytes) {
    void *base = map_arena(bytes);
    int32_t e;
    char label[64];
    snprintf(label, sizeof label, "initialize/%zu", bytes);
    REGION("empty", (void)0);
    REGION(label, e = qb_init(base, (ptrdiff_t)bytes));
    if (e != 0) {
        fprintf(stderr, "quarry-probe: qb_init failed (%d)\n", e);
        exit(2);
    }
}

/* CSV: arena_bytes,page_count,metadata_bytes,size,object_size,objects_per_slab,pages_per_slab,colors */
static void memory(size_t bytes) {
    init_or_die(bytes);
    struct qb_page_info page;
    qb_page_info(&page);
    printf("arena_bytes,page_count,metadata_bytes,size,object_size,objects_per_slab,pages_per_slab,colors\n");
    static const long sizes[] = {8, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512, 768, 1024, 2048, 4096};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        void *cache = qb_cache_create(sizes[i]);
        struct qb_cache_info info;
        qb_cache_info(cache, &info);
        printf("%zu,%ld,%ld,%ld,%ld,%ld,%ld,%ld\n", bytes, page.page_count, page.metadata_bytes, sizes[i],
               info.object_size, info.objects_per_slab, info.pages_per_slab, info.colors);
        qb_cache_destroy(cache);
    }
}

static int swift_pair(long size, long n) {
    init_or_die(1ul << 30);
    qb_thread_register(0);
    void *cache = qb_cache_create(size);
    return cache != NULL && qb_cache_pair_loop(cache, n) == 0 ? 0 : 2;
}

static int malloc_pair(long size, long n) {
    init_or_die(1ul << 30);
    qb_thread_register(0);
    return qb_malloc_pair_loop(qb_malloc_front(), size, n) == 0 ? 0 : 2;
}

/* CSV: class,size,smallest_request,worst_waste_bytes,worst_waste_pct,objects_per_slab,
 * pages_per_slab,slab_slack_bytes. The worst request of a class is one byte more than the
 * class below; its waste is measured against the request. */
static void classes(void) {
    init_or_die(1ul << 30);
    qb_thread_register(0);
    void *front = qb_malloc_front();
    printf("class,size,smallest_request,worst_waste_bytes,worst_waste_pct,objects_per_slab,pages_per_slab,slab_slack_bytes\n");
    long previous = 0;
    for (ptrdiff_t i = 0; i < qb_size_class_count(); i++) {
        long size = (long)qb_size_class_size(i);
        long request = previous + 1;
        struct qb_cache_info info;
        if (qb_malloc_class_info(front, size, &info) != 0) {
            fprintf(stderr, "quarry-probe: no class cache for %ld bytes\n", size);
            exit(2);
        }
        long slack = info.pages_per_slab * 4096 - info.objects_per_slab * info.object_size;
        printf("%td,%ld,%ld,%ld,%.2f,%ld,%ld,%ld\n", i, size, request, size - request,
               100.0 * (double)(size - request) / (double)request, info.objects_per_slab,
               info.pages_per_slab, slack);
        previous = size;
    }
}

int main(int argc, char **argv) {
    if (argc == 4 && !strcmp(argv[1], "swiftpair")) return swift_pair(atol(argv[2]), atol(argv[3]));
    if (argc == 4 && !strcmp(argv[1], "mallocpair")) return malloc_pair(atol(argv[2]), atol(argv[3]));
    if (argc == 2 && !strcmp(argv[1], "classes")) {
        classes();
        return 0;
    }
    if (argc == 2 && !strcmp(argv[1], "slowpaths")) slowpaths();
    else if (argc == 3 && !strcmp(argv[1], "init")) init_cost((size_t)strtoull(argv[2], NULL, 0));
    else if (argc == 3 && !strcmp(argv[1], "memory")) memory((size_t)strtoull(argv[2], NULL, 0));
    else {
        fprintf(stderr, "usage: quarry-probe slowpaths | init BYTES | memory BYTES | classes | swiftpair SIZE N | mallocpair SIZE N\n");
        return 2;
    }
    return 0;
}

/* quarry_bench.h: the C ABI of Benchmarks/QuarryBench (libQuarryBench.so), for the runner.
 * Each declaration matches an `@c public func` in QuarryBench/Sources/QuarryBench/Exports.swift;
 * the structs and qb_thread_register come from the CQuarryBench target. */
#ifndef QUARRY_BENCH_ABI_H
#define QUARRY_BENCH_ABI_H

#include <stddef.h>
#include <stdint.h>

#include "CQuarryBench.h"

/* Takes over [base, base + size): 0, or a QuarryError raw value. */
int32_t qb_init(void *base, ptrdiff_t size);
/* A cache of `size`-byte objects, or NULL. */
void *qb_cache_create(ptrdiff_t size);
/* Objects still allocated (the cache is then kept), or 0 when destroyed. */
ptrdiff_t qb_cache_destroy(void *cache);
void *qb_cache_alloc(void *cache);
/* 0, or a QuarryError raw value. */
int32_t qb_cache_free(void *cache, void *object);
/* The pair workload run inside Swift (n pairs, one object kept live): 0 or an error. */
int32_t qb_cache_pair_loop(void *cache, ptrdiff_t n);
void qb_cache_info(void *cache, struct qb_cache_info *out);
void qb_page_info(struct qb_page_info *out);
/* The malloc front's handle (NULL before qb_init), passed back to the three calls below. */
void *qb_malloc_front(void);
void *qb_malloc(void *front, ptrdiff_t size);
/* 0, or a QuarryError raw value. */
int32_t qb_free(void *front, void *object);
/* The pair workload through the front, run inside Swift: 0 or an error. */
int32_t qb_malloc_pair_loop(void *front, ptrdiff_t size, ptrdiff_t n);
/* The size classes: how many, and the object size of class `index`. */
ptrdiff_t qb_size_class_count(void);
ptrdiff_t qb_size_class_size(ptrdiff_t index);
/* The shape of the class cache that serves `size`: 0, or an error. */
int32_t qb_malloc_class_info(void *front, ptrdiff_t size, struct qb_cache_info *out);

#endif

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
/* 1 once the malloc front (issue 4) is wired into QuarryBench, else 0. */
int32_t qb_malloc_available(void);
void *qb_malloc(ptrdiff_t size);
void qb_free(void *object);

#endif

/* CQuarryBench: what the host benchmark platform needs from C: the calling thread's
 * virtual CPU (a thread-local registration), and the plain structs the C runner reads.
 * Neighbours: BenchPlatform.swift (reads qb_cpu), Exports.swift (fills the structs),
 * Benchmarks/runner/quarry_bench.h (declares the exported functions for C). */
#ifndef CQUARRYBENCH_H
#define CQUARRYBENCH_H

#include <stddef.h>

/* The virtual CPU of the calling thread (0 until the thread registers). initial-exec:
 * one %fs-relative load, no __tls_get_addr call (the library is loaded at start-up). */
extern _Thread_local int qb_tls_cpu __attribute__((tls_model("initial-exec")));

static inline int qb_cpu(void) { return qb_tls_cpu; }

/* The x86 spin-wait hint, as the kernel's platform uses it in a contended spinlock. */
static inline void qb_pause(void) { __builtin_ia32_pause(); }

/* Registers the calling thread as virtual CPU `cpu` (0 ..< QB_MAX_CPUS). */
void qb_thread_register(int cpu);

#define QB_MAX_CPUS 8

/* Shape of one cache (from Quarry's CacheStatistics). */
struct qb_cache_info {
    long object_size;
    long objects_per_slab;
    long pages_per_slab;
    long colors;
    long slabs;
    long active_objects;
};

/* Page allocator figures (from Quarry's PageStatistics). */
struct qb_page_info {
    long page_count;
    long pages_in_use;
    long metadata_bytes;
};

#endif

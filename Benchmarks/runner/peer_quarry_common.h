/* peer_quarry_common.h: the arena shared by both Quarry peers, which call include/quarry.h.
 * Linked with build/host/libquarry.so (x86_64) or, for the -m32 builds that make budgets
 * counts, build/i686-single-cpu/libquarry.a (Benchmarks/lib.sh). */
#ifndef PEER_QUARRY_COMMON_H
#define PEER_QUARRY_COMMON_H

#include "quarry.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>

/* Address space for the arena; pages are touched only as Quarry's bump pointer reaches
 * them. 4 GiB on 64-bit, 256 MiB in a 32-bit process. */
#define QUARRY_ARENA_BYTES (sizeof(void *) == 8 ? (size_t)1 << 32 : (size_t)256 << 20)

/* The two-thread workloads are not run for Quarry: the i686 library runs on one CPU
 * (SingleCPUPlatform: calls must not overlap); the host library gives each thread its own
 * CPU index (CPlatform) but its two-thread figures have not been measured yet
 * (docs/benchmarks.md, "Method"). */
#define QUARRY_PEER_FLAGS BENCH_ONE_THREAD

static int quarry_ready(void) {
    static int state; /* 0 not yet, 1 ready, -1 failed */
    if (state == 0) {
        void *base = mmap(NULL, QUARRY_ARENA_BYTES, PROT_READ | PROT_WRITE,
                          MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
        quarry_error error = base == MAP_FAILED ? QUARRY_ERR_OUT_OF_MEMORY : quarry_init(base, QUARRY_ARENA_BYTES);
        if (error != QUARRY_OK) fprintf(stderr, "quarry: quarry_init failed: %s\n", quarry_error_name(error));
        state = error == QUARRY_OK ? 1 : -1;
    }
    return state == 1;
}

#endif

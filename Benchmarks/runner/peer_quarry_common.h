/* peer_quarry_common.h: the arena and thread registration shared by both Quarry peers. */
#ifndef PEER_QUARRY_COMMON_H
#define PEER_QUARRY_COMMON_H

#include "quarry_bench.h"

#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>

/* 4 GiB of address space; pages are touched only as Quarry's bump pointer reaches them. */
#define QUARRY_ARENA_BYTES (4ul << 30)

static int quarry_ready(void) {
    static int state; /* 0 not yet, 1 ready, -1 failed */
    if (state == 0) {
        void *base = mmap(NULL, QUARRY_ARENA_BYTES, PROT_READ | PROT_WRITE,
                          MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
        int32_t error = base == MAP_FAILED ? -1 : qb_init(base, (ptrdiff_t)QUARRY_ARENA_BYTES);
        if (error != 0) fprintf(stderr, "quarry: qb_init failed (%d)\n", error);
        state = error == 0 ? 1 : -1;
    }
    return state == 1;
}

static void quarry_thread_start(int index) { qb_thread_register(index); }

#endif

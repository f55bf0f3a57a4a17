/* quarry_libc.c: the standard allocation names over Quarry's C ABI, for bare-metal images.
 * Neighbours: include/quarry.h (the functions called), Sources/QuarryC/CABI.swift (their
 * implementation), docs/integration.md (how to add this object to libquarry.a).
 *
 * With QUARRY_EXPORT_LIBC_NAMES defined, this file defines malloc, free, calloc, realloc,
 * posix_memalign and aligned_alloc, so the Embedded Swift runtime (which allocates with
 * posix_memalign and frees with free) and C code in the same image allocate from Quarry.
 * They are in C, not Swift, because Swift reserves the names `malloc` and `free` for its
 * runtime and may not define them. Build with -ffreestanding -fno-builtin, so the
 * compiler does not treat the bodies as calls to the functions being defined. Without
 * the macro (the host build) the file defines nothing: the process keeps its own malloc.
 *
 * There is no errno here: a failing call returns NULL (or the error number for
 * posix_memalign), and quarry_last_error() says why.
 */
#ifdef QUARRY_EXPORT_LIBC_NAMES

#include "quarry.h"

void *malloc(size_t size) { return quarry_malloc(size); }

void free(void *ptr) { quarry_free(ptr); }

void *calloc(size_t count, size_t size) { return quarry_calloc(count, size); }

void *realloc(void *ptr, size_t size) { return quarry_realloc(ptr, size); }

int posix_memalign(void **out, size_t alignment, size_t size) {
    return quarry_posix_memalign(out, alignment, size);
}

void *aligned_alloc(size_t alignment, size_t size) { return quarry_aligned_alloc(alignment, size); }

#else

/* ISO C forbids an empty translation unit. */
typedef int quarry_libc_names_not_exported;

#endif

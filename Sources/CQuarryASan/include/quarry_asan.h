/* CQuarryASan: AddressSanitizer's manual poisoning, for host builds of Quarry only
 * (QUARRY_ASAN=1, see Package.swift and `make test-asan`). Without ASan these are no-ops.
 * Neighbours: Sources/Quarry/Diagnostics/AddressSanitizer.swift (the only caller). */
#ifndef QUARRY_ASAN_H
#define QUARRY_ASAN_H

#include <stddef.h>

/* Makes [p, p + n) unaddressable: any load or store there is reported by ASan. */
void quarry_asan_poison(void *p, size_t n);
/* Makes [p, p + n) addressable again. */
void quarry_asan_unpoison(void *p, size_t n);
/* 1 when the byte at p is poisoned (always 0 without ASan; for tests). */
int quarry_asan_is_poisoned(const void *p);
/* 1 when this shim was compiled with AddressSanitizer, else 0. */
int quarry_asan_enabled(void);

#endif

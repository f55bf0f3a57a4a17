/* CQuarryASan: see include/quarry_asan.h. */
#include "quarry_asan.h"

#if defined(__has_feature)
#if __has_feature(address_sanitizer)
#define QUARRY_HAVE_ASAN 1
#endif
#endif

#ifdef QUARRY_HAVE_ASAN
#include <sanitizer/asan_interface.h>
void quarry_asan_poison(void *p, size_t n) { __asan_poison_memory_region(p, n); }
void quarry_asan_unpoison(void *p, size_t n) { __asan_unpoison_memory_region(p, n); }
int quarry_asan_is_poisoned(const void *p) { return __asan_address_is_poisoned(p) != 0; }
int quarry_asan_enabled(void) { return 1; }
#else
void quarry_asan_poison(void *p, size_t n) { (void)p; (void)n; }
void quarry_asan_unpoison(void *p, size_t n) { (void)p; (void)n; }
int quarry_asan_is_poisoned(const void *p) { (void)p; return 0; }
int quarry_asan_enabled(void) { return 0; }
#endif

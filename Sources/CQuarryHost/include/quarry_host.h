/* quarry_host.h: the host C library's two per-thread words (thread-local storage), which
 * Swift cannot declare. Neighbours: Sources/QuarryC/CPlatform.swift (HostCPlatform and
 * CCaller, their only users), quarry_host.c (the definitions).
 *
 * Host builds only (SwiftPM target CQuarryHost, and `make host-lib`); the bare-metal
 * library never imports this. The accessors are static inline, so a Swift caller reads a
 * word with its thread-pointer load and no call (initial-exec TLS: the library is loaded
 * with the program, not by dlopen).
 */
#ifndef QUARRY_HOST_H
#define QUARRY_HOST_H

#include <stdint.h>

#define QUARRY_HOST_TLS __attribute__((tls_model("initial-exec"), visibility("hidden")))

/* The CPU index of the calling thread, -1 until it claims one (CCaller.claimCPU). */
extern _Thread_local int32_t quarry_host_thread_cpu QUARRY_HOST_TLS;
/* The error of the calling thread's last refused C call (quarry_last_error). */
extern _Thread_local uint8_t quarry_host_thread_error QUARRY_HOST_TLS;

static inline __attribute__((always_inline)) int32_t quarry_host_cpu(void) { return quarry_host_thread_cpu; }
static inline __attribute__((always_inline)) void quarry_host_set_cpu(int32_t cpu) { quarry_host_thread_cpu = cpu; }
static inline __attribute__((always_inline)) uint8_t quarry_host_error(void) { return quarry_host_thread_error; }
static inline __attribute__((always_inline)) void quarry_host_set_error(uint8_t error) {
    quarry_host_thread_error = error;
}

#endif

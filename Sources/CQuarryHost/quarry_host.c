/* quarry_host.c: the definitions of quarry_host.h's thread-local words. */
#include "quarry_host.h"

_Thread_local int32_t quarry_host_thread_cpu QUARRY_HOST_TLS = -1;
_Thread_local uint8_t quarry_host_thread_error QUARRY_HOST_TLS = 0;

/* cpu.c: the thread-local virtual CPU index behind BenchPlatform.cpuIndex. */
#include "CQuarryBench.h"

_Thread_local int qb_tls_cpu __attribute__((tls_model("initial-exec"))) = 0;

void qb_thread_register(int cpu) { qb_tls_cpu = cpu; }

/* smp.h: the C kernel's other CPUs: how many QEMU gave it, and starting them.
 * Neighbours: smp.c, entry_<arch>.S (the trampoline and the APs' path to kernel_ap_main),
 * main.c (what the CPUs run).
 */
#ifndef QUARRY_CKERNEL_SMP_H
#define QUARRY_CKERNEL_SMP_H

#include "ports.h"

/* The CPU count from QEMU's fw_cfg (1 without it, at most 16). */
unsigned smp_firmware_cpu_count(void);

/* Copies the trampoline to 0x8000, broadcasts INIT, SIPI, SIPI and waits until
 * `expected - 1` APs have reached kernel_ap_main (or about two seconds passed).
 * Returns how many APs arrived. Boot CPU only, once. */
unsigned smp_start_aps(unsigned expected);

/* A delay of about `microseconds` (port 0x80 writes, ~1 us each on PC hardware). */
void smp_delay(unsigned microseconds);

#endif

/* epochs.h: the C kernel's deferred-freeing test on every CPU (epochs.c).
 * Neighbours: main.c (runs the phases), smp.c (starts the APs).
 */
#ifndef QUARRY_CKERNEL_EPOCHS_H
#define QUARRY_CKERNEL_EPOCHS_H

/* Boot CPU, before the others run: the reclaimer, the node cache, the filled tables. */
void epochs_prepare(void);
/* Every CPU at once (cpu: its index): reads in read sections, replaces and retires. */
void epochs_run(unsigned cpu);
/* The LAPIC timer's work on CPU `cpu` (interrupts.c; interrupts off). */
void epochs_tick(unsigned cpu);
/* Boot CPU, after every CPU returned from epochs_run: the checks, then everything freed. */
void epochs_check(unsigned cpus);

#endif

/* quarry_c_scenario.h: a C program written against quarry.h, run by the C ABI tests. */
#ifndef QUARRY_C_SCENARIO_H
#define QUARRY_C_SCENARIO_H

#include <stddef.h>

/* Runs every C ABI function over a fresh instance on [arena, arena + size) (at least
 * 4 MiB), reporting each failed check through `log`. Returns the number of failures. */
int quarry_c_scenario(void *arena, size_t size, void (*log)(const char *message));

/* The address of every function quarry.h declares, taken from C through the header's
 * prototypes: linking this table fails if the library lacks one of them. */
extern const void *const quarry_c_functions[];
extern const size_t quarry_c_function_count;

#endif

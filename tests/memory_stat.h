/* One statistic of guest memory, for the suites that drive guest memory directly. */
#ifndef TESTS_MEMORY_STAT_H
#define TESTS_MEMORY_STAT_H

#include <stdint.h>

struct guest_memory;

/* The value guest_memory_stats gives @key; fails the running test when it gives none. */
uint64_t memory_stat(struct guest_memory *m, const char *key);

#endif

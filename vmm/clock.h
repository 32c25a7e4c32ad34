/* The VMM's one clock for durations and event times: CLOCK_MONOTONIC in nanoseconds. */
#ifndef VMM_CLOCK_H
#define VMM_CLOCK_H

#include <stdint.h>
#include <time.h>

static inline uint64_t clock_monotonic_ns(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (uint64_t)t.tv_sec * 1000000000ull + (uint64_t)t.tv_nsec;
}

#endif

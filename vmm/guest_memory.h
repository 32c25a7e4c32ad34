/*
 * Guest RAM as the VMM sees it: guest-physical regions and the host memory behind them.
 * Every access the VMM makes on the guest's behalf goes through guest_memory_ptr, which
 * refuses any range not wholly inside the guest's RAM.
 */
#ifndef VMM_GUEST_MEMORY_H
#define VMM_GUEST_MEMORY_H

#include <stdint.h>

/* RAM above this address moves above 4 GiB, leaving the usual PC hole for MMIO. */
#define GUEST_MEMORY_LOW_LIMIT 0xc0000000ull
#define GUEST_MEMORY_HIGH_BASE 0x100000000ull
#define GUEST_MEMORY_MAX_REGIONS 2

struct guest_region {
	uint64_t gpa;  /* guest-physical start, page aligned */
	uint64_t size; /* bytes, page aligned */
	uint8_t *hva;  /* host mapping of [gpa, gpa + size) */
};

struct guest_memory {
	struct guest_region region[GUEST_MEMORY_MAX_REGIONS];
	unsigned nregions;
	uint64_t ram_size; /* sum of region sizes */
};

/*
 * Lay out @ram_size bytes of RAM (page multiple) into regions and map host memory for
 * them (anonymous, not reserved, so untouched RAM costs nothing). This is the one place
 * where guest RAM is created. Returns 0 or -errno (message in error_message()).
 */
int guest_memory_create(struct guest_memory *m, uint64_t ram_size);

/* Unmap what guest_memory_create mapped. */
void guest_memory_destroy(struct guest_memory *m);

/* Compute the regions for @ram_size without mapping anything (hva left NULL). */
void guest_memory_layout(struct guest_memory *m, uint64_t ram_size);

/* Host pointer for guest-physical [gpa, gpa + len), or NULL unless the whole range lies in
 * one RAM region (len 0 is refused too). */
void *guest_memory_ptr(const struct guest_memory *m, uint64_t gpa, uint64_t len);

#endif

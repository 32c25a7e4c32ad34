/*
 * The port I/O space of a VM: devices register ranges, the vCPU loop dispatches exits.
 * Registration happens before vCPUs start; dispatch is then read-only and lock-free.
 */
#ifndef VMM_IOPORT_H
#define VMM_IOPORT_H

#include <stdbool.h>
#include <stdint.h>

/*
 * Handle @count accesses of @size bytes each at @port (an offset inside the range is
 * port - base). For writes @data holds count * size bytes; for reads fill them.
 * Returns 0, or -1 when the device refuses the access (reported as a guest error).
 */
typedef int ioport_fn(void *opaque, uint16_t port, bool is_write, uint8_t *data, unsigned size, unsigned count);

#define IOPORT_MAX_RANGES 16

struct ioport_range {
	uint16_t base, len;
	ioport_fn *fn;
	void *opaque;
	const char *name;
};

struct ioport_table {
	struct ioport_range range[IOPORT_MAX_RANGES];
	unsigned n;
};

/* Add a device at [base, base + len). Returns 0, or -EEXIST on overlap, -ENOSPC when full. */
int ioport_register(struct ioport_table *t, uint16_t base, uint16_t len, ioport_fn *fn, void *opaque,
		    const char *name);

/* Dispatch an access. Returns the handler's result, or -2 when no device owns @port. */
int ioport_dispatch(const struct ioport_table *t, uint16_t port, bool is_write, uint8_t *data, unsigned size,
		    unsigned count);

#endif

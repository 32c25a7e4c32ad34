/*
 * The port I/O space of a VM: devices register ranges, the vCPU loop dispatches exits.
 * Registration happens before vCPUs start; dispatch is then read-only and lock-free.
 * The devices themselves are listed once, in ioport_devices (devices/devices.c): the VM
 * attaches each through its descriptor and never names one, as kvmtool's core does not.
 */
#ifndef VMM_IOPORT_H
#define VMM_IOPORT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct vm;

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

struct vm_state;

#define IOPORT_MAX_DEVICES 8

/* A device: how it joins a VM, what it reports and what of it a snapshot keeps. Its state
 * is its own: state_size bytes the VM allocates zeroed for it at attach (vm->device_state,
 * by the device's place in ioport_devices) and frees with the VM; nothing outside the
 * device's file knows its layout. */
struct ioport_device {
	const char *name;
	size_t state_size;
	/* Set up @state from vm->cfg and register the device's ranges in vm->ports. Before
	 * the vCPUs start. 0 or -errno with a message. */
	int (*attach)(struct vm *vm, void *state);
	/* Report the device's statistics as flat dotted keys; NULL when it has none. */
	void (*stats)(const void *state, void (*emit)(void *arg, const char *key, uint64_t value), void *arg);
	/* Put the device's part of the VM's saved state into @s / take it back from @s (a
	 * restored or forked VM, devices attached, vCPUs not running); NULL: nothing to keep. */
	void (*save)(const void *state, struct vm_state *s);
	void (*load)(void *state, const struct vm_state *s);
};

/* Every device of a VM, in the order they attach; NULL-terminated (devices/devices.c). */
extern const struct ioport_device *const ioport_devices[];

/* Attach every device of ioport_devices to @vm, in order, stopping at the first failure,
 * each with its new zeroed state. 0 or that failure's -errno (message set). */
int ioport_attach_devices(struct vm *vm);

/* Free the devices' states (with the VM). */
void ioport_detach_devices(struct vm *vm);

/* Every device's statistics (ioport_device.stats), in the order of ioport_devices. */
void ioport_device_stats(struct vm *vm, void (*emit)(void *arg, const char *key, uint64_t value), void *arg);

/* Every device's part of the saved state (ioport_device.save / load). */
void ioport_save_devices(struct vm *vm, struct vm_state *s);
void ioport_load_devices(struct vm *vm, const struct vm_state *s);

#endif

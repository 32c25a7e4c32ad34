#include "vmm/ioport.h"

#include <assert.h>
#include <errno.h>
#include <stdlib.h>

#include "vmm/error.h"
#include "vmm/vm.h"

int ioport_register(struct ioport_table *t, uint16_t base, uint16_t len, ioport_fn *fn, void *opaque,
		    const char *name)
{
	for (unsigned i = 0; i < t->n; i++) {
		const struct ioport_range *r = &t->range[i];
		if (base < r->base + r->len && r->base < base + len)
			return error_set(EEXIST, "port range of %s overlaps %s", name, r->name);
	}
	if (t->n == IOPORT_MAX_RANGES)
		return error_set(ENOSPC, "no room for the ports of %s", name);
	t->range[t->n++] = (struct ioport_range){base, len, fn, opaque, name};
	return 0;
}

int ioport_dispatch(const struct ioport_table *t, uint16_t port, bool is_write, uint8_t *data, unsigned size,
		    unsigned count)
{
	for (unsigned i = 0; i < t->n; i++) {
		const struct ioport_range *r = &t->range[i];
		if (port >= r->base && port - r->base < r->len)
			return r->fn(r->opaque, port, is_write, data, size, count);
	}
	return -2;
}

int ioport_attach_devices(struct vm *vm)
{
	for (unsigned i = 0; ioport_devices[i]; i++) {
		const struct ioport_device *d = ioport_devices[i];
		assert(i < IOPORT_MAX_DEVICES);
		if (d->state_size && !(vm->device_state[i] = calloc(1, d->state_size)))
			return error_set(ENOMEM, "no memory for the %s", d->name);
		int r = d->attach(vm, vm->device_state[i]);
		if (r)
			return r;
	}
	return 0;
}

void ioport_detach_devices(struct vm *vm)
{
	for (unsigned i = 0; i < IOPORT_MAX_DEVICES; i++) {
		free(vm->device_state[i]);
		vm->device_state[i] = NULL;
	}
}

void ioport_device_stats(struct vm *vm, void (*emit)(void *arg, const char *key, uint64_t value), void *arg)
{
	for (unsigned i = 0; ioport_devices[i]; i++)
		if (ioport_devices[i]->stats && vm->device_state[i])
			ioport_devices[i]->stats(vm->device_state[i], emit, arg);
}

void ioport_save_devices(struct vm *vm, struct vm_state *s)
{
	for (unsigned i = 0; ioport_devices[i]; i++)
		if (ioport_devices[i]->save && vm->device_state[i])
			ioport_devices[i]->save(vm->device_state[i], s);
}

void ioport_load_devices(struct vm *vm, const struct vm_state *s)
{
	for (unsigned i = 0; ioport_devices[i]; i++)
		if (ioport_devices[i]->load && vm->device_state[i])
			ioport_devices[i]->load(vm->device_state[i], s);
}

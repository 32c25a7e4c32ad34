#include "vmm/ioport.h"

#include <errno.h>

#include "vmm/error.h"

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
	for (const struct ioport_device *const *d = ioport_devices; *d; d++) {
		int r = (*d)->attach(vm);
		if (r)
			return r;
	}
	return 0;
}

void ioport_device_stats(struct vm *vm, void (*emit)(void *arg, const char *key, uint64_t value), void *arg)
{
	for (const struct ioport_device *const *d = ioport_devices; *d; d++)
		if ((*d)->stats)
			(*d)->stats(vm, emit, arg);
}

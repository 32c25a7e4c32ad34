/* The identity port: tells the guest which VM of a fork it is (guest/abi.h, ABI_PORT_ID). */
#include <string.h>

#include "guest/abi.h"
#include "vmm/devices/devices.h"
#include "vmm/vm.h"

static int id_port_io(void *opaque, uint16_t port, bool is_write, uint8_t *data, unsigned size, unsigned count)
{
	struct vm *vm = opaque;
	(void)port;
	if (is_write)
		return -1; /* read-only */
	uint32_t v = (uint32_t)atomic_load(&vm->id_value);
	for (unsigned i = 0; i < count; i++)
		memcpy(data + (size_t)i * size, &v, size < 4 ? size : 4);
	return 0;
}

static int id_port_attach(struct vm *vm, void *state)
{
	(void)state;
	atomic_init(&vm->id_value, 0);
	return ioport_register(&vm->ports, ABI_PORT_ID, ABI_PORT_ID_LEN, id_port_io, vm, "identity port");
}

const struct ioport_device id_port_device = {.name = "identity port", .attach = id_port_attach};

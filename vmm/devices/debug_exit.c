/* isa-debug-exit: the guest ends the VM with a status (QEMU's device, same port). */
#include "guest/abi.h"
#include "vmm/devices/devices.h"
#include "vmm/vm.h"

static int debug_exit_io(void *opaque, uint16_t port, bool is_write, uint8_t *data, unsigned size, unsigned count)
{
	struct vm *vm = opaque;
	(void)port;
	if (!is_write) {
		for (unsigned i = 0; i < size * count; i++)
			data[i] = 0xff;
		return 0;
	}
	/* The low byte is the status, as a process exit status is a byte. */
	vm_stop(vm, data[(count - 1) * size]);
	return 0;
}

static int debug_exit_attach(struct vm *vm, void *state)
{
	(void)state;
	return ioport_register(&vm->ports, ABI_PORT_EXIT, ABI_PORT_EXIT_LEN, debug_exit_io, vm, "debug-exit");
}

const struct ioport_device debug_exit_device = {.name = "debug-exit", .attach = debug_exit_attach};

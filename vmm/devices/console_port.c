/*
 * vmm's console port: the guest hands over a whole message (guest/abi.h,
 * abi_console_msg) with one 32-bit write, instead of one exit per byte on COM1.
 * The message is guest memory: its length is read once and both the header and the
 * text must lie inside guest RAM.
 */
#include <string.h>

#include "guest/abi.h"
#include "vmm/devices/console.h"
#include "vmm/devices/devices.h"
#include "vmm/vm.h"

static int console_port_io(void *opaque, uint16_t port, bool is_write, uint8_t *data, unsigned size,
			   unsigned count)
{
	struct vm *vm = opaque;
	(void)port;
	if (!is_write) {
		memset(data, 0xff, (size_t)size * count);
		return 0;
	}
	if (size != 4)
		return -1;
	for (unsigned i = 0; i < count; i++) {
		uint32_t gpa, len;
		memcpy(&gpa, data + 4 * i, 4);
		const uint8_t *hdr = guest_memory_ptr(&vm->mem, gpa, sizeof(struct abi_console_msg));
		if (!hdr)
			return -1;
		memcpy(&len, hdr, sizeof(len));
		if (len > ABI_CONSOLE_MAX)
			return -1;
		if (len == 0)
			continue;
		const uint8_t *text = guest_memory_ptr(&vm->mem, (uint64_t)gpa + sizeof(struct abi_console_msg), len);
		if (!text)
			return -1;
		console_output(&vm->console, text, len);
	}
	return 0;
}

static int console_port_attach(struct vm *vm, void *state)
{
	(void)state;
	return ioport_register(&vm->ports, ABI_PORT_CONSOLE, ABI_PORT_CONSOLE_LEN, console_port_io, vm, "console port");
}

const struct ioport_device console_port_device = {.name = "console port", .attach = console_port_attach};

/* A transmit-only 16550 UART: enough for a guest (ours or any) that writes the console. */
#include <errno.h>
#include <unistd.h>

#include "guest/abi.h"
#include "vmm/devices/console.h"
#include "vmm/devices/devices.h"
#include "vmm/vm.h"
#include "vmm/vm_state.h"

#define UART_THR 0
#define UART_LCR 3
#define UART_LSR 5
#define UART_SCR 7
#define UART_LCR_DLAB 0x80
#define UART_LSR_THRE_TEMT 0x60 /* transmitter empty: the guest may always write */

/* The UART's state (see devices.h for the legend). */
struct serial {
	struct console *console; /* (c) the VM's: where output goes */
	uint8_t lcr;     /* (g) line control; DLAB (bit 7) redirects offsets 0-1 to the divisor */
	uint8_t scratch; /* (g) scratch register, read back as written */
};

static int serial_io(void *opaque, uint16_t port, bool is_write, uint8_t *data, unsigned size, unsigned count)
{
	struct serial *s = opaque;
	unsigned off = port - ABI_PORT_SERIAL;
	if (size != 1)
		return -1;
	if (is_write) {
		if (off == UART_THR && !(s->lcr & UART_LCR_DLAB))
			console_output(s->console, data, count);
		else if (off == UART_LCR)
			s->lcr = data[count - 1];
		else if (off == UART_SCR)
			s->scratch = data[count - 1];
		return 0;
	}
	for (unsigned i = 0; i < count; i++)
		data[i] = off == UART_LSR ? UART_LSR_THRE_TEMT : off == UART_LCR ? s->lcr
						      : off == UART_SCR ? s->scratch : 0;
	return 0;
}

static int serial_attach(struct vm *vm, void *state)
{
	struct serial *s = state;
	s->console = &vm->console;
	return ioport_register(&vm->ports, ABI_PORT_SERIAL, ABI_PORT_SERIAL_LEN, serial_io, s, "serial");
}

static void serial_save(const void *state, struct vm_state *st)
{
	const struct serial *s = state;
	st->serial_lcr = s->lcr;
	st->serial_scratch = s->scratch;
}

static void serial_load(void *state, const struct vm_state *st)
{
	struct serial *s = state;
	s->lcr = st->serial_lcr;
	s->scratch = st->serial_scratch;
}

const struct ioport_device serial_device = {
	.name = "serial",
	.state_size = sizeof(struct serial),
	.attach = serial_attach,
	.save = serial_save,
	.load = serial_load,
};

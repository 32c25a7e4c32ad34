/*
 * The VM's emulated devices, one file each: the serial console (serial.c), vmm's
 * console port (console_port.c), the isa-debug-exit port (debug_exit.c), the test/sync
 * port (test_port.c) and the identity port (id_port.c). Each attaches itself to the VM's
 * port table.
 */
#ifndef VMM_DEVICES_H
#define VMM_DEVICES_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

struct vm;

/* 16550 at ABI_PORT_SERIAL: transmit only, output to a file descriptor. */
struct serial {
	int out_fd;      /* console output */
	uint8_t lcr;     /* line control; DLAB (bit 7) redirects offsets 0-1 to the divisor */
	uint8_t scratch; /* scratch register, read back as written */
};
int serial_attach(struct vm *vm, int out_fd);
/* Write console output (also used by the console port). */
void serial_output(struct serial *s, const uint8_t *data, size_t len);

/* vmm's console port at ABI_PORT_CONSOLE: one exit per message (console_port.c). */
int console_port_attach(struct vm *vm);

/* isa-debug-exit at ABI_PORT_EXIT: a write ends the VM with the value written. */
int debug_exit_attach(struct vm *vm);

/* Test/sync port at ABI_PORT_TEST: counts the guest's ABI_SYNC messages. */
struct test_port {
	atomic_uint_fast64_t messages; /* total writes */
	atomic_uint_fast32_t last;     /* last value written */
	int verbose;                   /* print each message on stderr */
	struct vm *vm;                 /* for events on its monitor */
};
int test_port_attach(struct vm *vm, int verbose);

/* Identity port at ABI_PORT_ID: which VM of a fork this is (id_port.c). */
struct id_port {
	atomic_uint_fast32_t value; /* ABI_ID(generation, index) */
};
int id_port_attach(struct vm *vm);

#endif

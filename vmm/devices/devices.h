/*
 * The VM's emulated devices, one file each: the serial console (serial.c), vmm's
 * console port (console_port.c), the isa-debug-exit port (debug_exit.c), the test/sync
 * port (test_port.c) and the identity port (id_port.c). Each exports one descriptor;
 * devices.c lists them in ioport_devices, which the VM walks to attach them. Each keeps
 * its state in a struct of its own file (ioport_device.state_size), saved and restored
 * through its descriptor: the VM core names no device and knows no device's state. The
 * two console devices write through the VM's console (console.c: standard output and the
 * log), which is the VM's, not a device's.
 *
 * Locking legend: (c) set by the device's attach, before vCPUs start, then constant;
 * (a) atomic; (g) the guest's: written by whichever vCPU thread makes the access, with no
 * lock, as on a real UART a guest racing itself gets what it races for.
 */
#ifndef VMM_DEVICES_H
#define VMM_DEVICES_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "vmm/ioport.h"

struct vm;

/* 16550 at ABI_PORT_SERIAL: transmit only, output to the VM's console (serial.c, console.h). */
extern const struct ioport_device serial_device;

/* vmm's console port at ABI_PORT_CONSOLE: one exit per message (console_port.c). */
extern const struct ioport_device console_port_device;

/* isa-debug-exit at ABI_PORT_EXIT: a write ends the VM with the value written. */
extern const struct ioport_device debug_exit_device;

/* Test/sync port at ABI_PORT_TEST: counts the guest's ABI_SYNC messages; reports
 * vm.test_port_messages and vm.test_port_last (test_port.c). */
extern const struct ioport_device test_port_device;

/* Identity port at ABI_PORT_ID: which VM of a fork this is, vm->id_value (id_port.c). */
extern const struct ioport_device id_port_device;

#endif

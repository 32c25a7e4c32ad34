/* The VM's devices, in the order they attach: the one list of them (ioport.h). */
#include "vmm/devices/devices.h"

#include <stddef.h>

const struct ioport_device *const ioport_devices[] = {
	&serial_device, &console_port_device, &debug_exit_device, &test_port_device, &id_port_device, NULL,
};

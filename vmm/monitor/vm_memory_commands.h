/* Monitor commands on a VM's guest-physical space (vm_memory_commands.c); ctx is the struct vm. */
#ifndef VMM_VM_MEMORY_COMMANDS_H
#define VMM_VM_MEMORY_COMMANDS_H

#include "vmm/monitor/monitor.h"

extern const struct monitor_command vm_memory_commands[];

#endif

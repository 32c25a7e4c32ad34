/* Monitor commands on a VM's guest-physical space (qmp_memory.c); ctx is the struct vm. */
#ifndef VMM_QMP_MEMORY_H
#define VMM_QMP_MEMORY_H

#include "vmm/monitor/monitor.h"

extern const struct monitor_command qmp_memory_commands[];

#endif

/* fork over the monitor (qmp_fork.c); ctx is the struct vm. */
#ifndef VMM_QMP_FORK_H
#define VMM_QMP_FORK_H

#include "vmm/monitor/monitor.h"

extern const struct monitor_command qmp_fork_commands[];

#endif

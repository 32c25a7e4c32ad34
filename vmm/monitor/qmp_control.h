/* The VM's standard monitor commands (qmp_control.c): query-status, stop, cont, quit,
 * query-stats, as the monitor_ops slots of monitor.h; ctx is the struct vm. */
#ifndef VMM_QMP_CONTROL_H
#define VMM_QMP_CONTROL_H

#include "vmm/monitor/monitor.h"

extern const struct monitor_ops qmp_control_ops;

#endif

/*
 * A VM's monitor: the monitor of monitor.h with the VM's commands, by topic —
 * qmp_control.c (query-status, stop, cont, quit, query-stats), qmp_fork.c (fork),
 * qmp_snapshot.c (snapshot-save), qmp_memory.c (the guest-physical space) — and
 * the VM's end said as a SHUTDOWN event.
 */
#ifndef VMM_VM_MONITOR_H
#define VMM_VM_MONITOR_H

#include <stddef.h>

struct vm;

/* The socket @vm's monitor listens on, into @buf (@size bytes): cfg.monitor_path, else the
 * default for its name (its directory made). 0 or -errno with a message. */
int vm_monitor_path(const struct vm *vm, char *buf, size_t size);

/* Open @vm's console log beside its monitor socket (vm_serve_ops.console_start). */
int vm_monitor_console_start(struct vm *vm);

/*
 * Serve @vm's monitor on vm->cfg.monitor_path (NULL: the default socket of vm->cfg.name).
 * Returns 0 or -errno with a message. The monitor runs until vm_monitor_stop.
 */
int vm_monitor_start(struct vm *vm);

/* Say how the VM ended (SHUTDOWN event) and close the monitor. Safe if never started. */
void vm_monitor_stop(struct vm *vm, int status);

/* vm_monitor_console_start, vm_monitor_start and vm_monitor_stop, for vm_serve. */
extern const struct vm_serve_ops vm_monitor_serve_ops;

#endif

/*
 * The VM behind its monitor: the standard commands (query-status, stop, cont, quit,
 * query-stats) and the VM's events (STOP, RESUME, SHUTDOWN), on top of vmm/monitor.c.
 */
#ifndef VMM_VM_MONITOR_H
#define VMM_VM_MONITOR_H

struct vm;

/*
 * Serve @vm's monitor on @path (NULL: the default socket of @name). Returns 0 or -errno
 * with a message. The monitor runs until vm_monitor_stop.
 */
int vm_monitor_start(struct vm *vm, const char *name, const char *path);

/* Say how the VM ended (SHUTDOWN event) and close the monitor. Safe if never started. */
void vm_monitor_stop(struct vm *vm, int status);

#endif

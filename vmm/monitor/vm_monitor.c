#include "vmm/monitor/vm_monitor.h"

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>

#include "vmm/devices/console.h"
#include "vmm/error.h"
#include "vmm/lifecycle/checkpoint.h"
#include "vmm/lifecycle/vm_serve.h"
#include "vmm/monitor/monitor.h"
#include "vmm/monitor/qmp_config.h"
#include "vmm/monitor/qmp_control.h"
#include "vmm/monitor/qmp_fork.h"
#include "vmm/monitor/qmp_memory.h"
#include "vmm/monitor/qmp_snapshot.h"
#include "vmm/vm.h"

int vm_monitor_path(const struct vm *vm, char *buf, size_t size)
{
	if (!vm->cfg.monitor_path)
		return monitor_socket_path(vm->cfg.name, buf, size, true);
	if ((size_t)snprintf(buf, size, "%s", vm->cfg.monitor_path) >= size)
		return error_set(ENAMETOOLONG, "monitor socket path %s is too long", vm->cfg.monitor_path);
	return 0;
}

int vm_monitor_console_start(struct vm *vm)
{
	char sock[PATH_MAX], log[PATH_MAX];
	bool stale;
	/* A live VM of this name keeps its log; this one would not get the socket anyway. */
	int r = vm_monitor_path(vm, sock, sizeof(sock));
	if (!r)
		r = monitor_socket_free(sock, &stale);
	if (r)
		return r;
	r = console_log_path(sock, log, sizeof(log));
	if (!r)
		r = console_open_log(&vm->console, log);
	if (r && vm->cfg.detach)
		return r;
	if (r)
		fprintf(stderr, "vmm: %s\n", error_message());
	return 0;
}

int vm_monitor_start(struct vm *vm)
{
	const char *name = vm->cfg.name;
	char path[PATH_MAX];
	int r = vm_monitor_path(vm, path, sizeof(path));
	if (r)
		return r;
	struct monitor_config cfg = {.name = name, .ops = &qmp_control_ops, .ctx = vm};
	struct monitor *m = NULL;
	r = monitor_create(&m, &cfg);
	if (!r)
		r = monitor_add_commands(m, qmp_fork_commands, vm);
	if (!r)
		r = monitor_add_commands(m, qmp_snapshot_commands, vm);
	if (!r)
		r = monitor_add_commands(m, qmp_memory_commands, vm);
	if (!r)
		r = monitor_add_commands(m, qmp_config_commands, vm);
	if (!r)
		r = monitor_listen(m, path);
	if (r) {
		if (m)
			monitor_destroy(m);
		return r;
	}
	/* Published whole: the vCPUs (running already) and the fork reaper look at it. */
	__atomic_store_n(&vm->monitor, m, __ATOMIC_RELEASE);
	return 0;
}

void vm_monitor_stop(struct vm *vm, int status)
{
	if (!vm->monitor)
		return;
	/* Checkpoints end, and a snapshot being written finishes (and is answered), before the
	 * monitor goes. */
	checkpoint_stop(vm);
	qmp_snapshot_join(vm);
	/* Who ended it: the guest (its exit port, or a verdict on what it did), a quit, a
	 * signal to the VMM, or the VMM's own failure. */
	bool guest = !vm->quit_requested && status < VM_EXIT_VMM_ERROR;
	const char *reason = vm->quit_requested ? "host-qmp-quit"
			     : status > 128 ? "host-signal"
			     : status == VM_EXIT_VMM_ERROR ? "host-error"
			     : status >= VM_EXIT_GUEST_INTERNAL ? "guest-verdict"
								  : "guest-shutdown";
	json_t *data = json_pack("{s:b,s:s,s:i}", "guest", guest, "reason", reason, "status", status);
	/* Taken away under the VM's lock: the fork reaper emits its events holding it. */
	pthread_mutex_lock(&vm->lock);
	struct monitor *m = vm->monitor;
	__atomic_store_n(&vm->monitor, NULL, __ATOMIC_RELEASE);
	pthread_mutex_unlock(&vm->lock);
	monitor_emit_event(m, "SHUTDOWN", data);
	monitor_destroy(m);
}

const struct vm_serve_ops vm_monitor_serve_ops = {
	.console_start = vm_monitor_console_start,
	.monitor_start = vm_monitor_start,
	.monitor_stop = vm_monitor_stop,
};

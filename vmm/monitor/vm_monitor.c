#include "vmm/monitor/vm_monitor.h"

#include <limits.h>
#include <pthread.h>

#include "vmm/lifecycle/checkpoint.h"
#include "vmm/lifecycle/vm_serve.h"
#include "vmm/monitor/monitor.h"
#include "vmm/monitor/qmp_config.h"
#include "vmm/monitor/qmp_control.h"
#include "vmm/monitor/qmp_fork.h"
#include "vmm/monitor/qmp_memory.h"
#include "vmm/monitor/qmp_snapshot.h"
#include "vmm/vm.h"

int vm_monitor_start(struct vm *vm)
{
	const char *name = vm->cfg.name, *path = vm->cfg.monitor_path;
	char def[PATH_MAX];
	if (!path) {
		int r = monitor_socket_path(name, def, sizeof(def), true);
		if (r)
			return r;
		path = def;
	}
	struct monitor_config cfg = {.name = name, .ops = &qmp_control_ops, .ctx = vm};
	struct monitor *m = NULL;
	int r = monitor_create(&m, &cfg);
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
	.monitor_start = vm_monitor_start,
	.monitor_stop = vm_monitor_stop,
};

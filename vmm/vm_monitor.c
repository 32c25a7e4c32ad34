#include "vmm/vm_monitor.h"

#include <errno.h>
#include <limits.h>
#include <string.h>

#include "vmm/error.h"
#include "vmm/monitor.h"
#include "vmm/vm.h"

static int vm_monitor_query_status(void *ctx, enum monitor_run_state *state)
{
	struct vm *vm = ctx;
	if (atomic_load(&vm->stopping_flag))
		*state = MONITOR_RUN_SHUTDOWN;
	else if (vm->user_paused)
		*state = MONITOR_RUN_PAUSED;
	else
		*state = MONITOR_RUN_RUNNING;
	return 0;
}

static int vm_monitor_stop_cmd(struct monitor_call *call, void *ctx)
{
	struct vm *vm = ctx;
	if (vm->user_paused)
		return 0;
	if (!vm_pause(vm))
		return error_set(ESHUTDOWN, "the VM is shutting down");
	vm->user_paused = true;
	monitor_emit_event(monitor_call_monitor(call), "STOP", NULL);
	return 0;
}

static int vm_monitor_cont(struct monitor_call *call, void *ctx)
{
	struct vm *vm = ctx;
	if (!vm->user_paused)
		return 0;
	vm->user_paused = false;
	vm_resume(vm);
	monitor_emit_event(monitor_call_monitor(call), "RESUME", NULL);
	return 0;
}

static int vm_monitor_quit(struct monitor_call *call, void *ctx)
{
	(void)call;
	struct vm *vm = ctx;
	vm->quit_requested = true;
	vm_stop(vm, 0);
	return 0;
}

static void vm_monitor_stat(void *arg, const char *key, uint64_t value)
{
	monitor_stat_set(arg, value, "%s", key);
}

static int vm_monitor_query_stats(void *ctx, json_t *stats)
{
	vm_stats(ctx, vm_monitor_stat, stats);
	return 0;
}

static const struct monitor_ops vm_monitor_ops = {
	.query_status = vm_monitor_query_status,
	.stop = vm_monitor_stop_cmd,
	.cont = vm_monitor_cont,
	.quit = vm_monitor_quit,
	.query_stats = vm_monitor_query_stats,
};

int vm_monitor_start(struct vm *vm, const char *name, const char *path)
{
	char def[PATH_MAX];
	if (!path) {
		int r = monitor_socket_path(name, def, sizeof(def), true);
		if (r)
			return r;
		path = def;
	}
	struct monitor_config cfg = {.name = name, .ops = &vm_monitor_ops, .ctx = vm};
	int r = monitor_create(&vm->monitor, &cfg);
	if (!r)
		r = monitor_listen(vm->monitor, path);
	if (r && vm->monitor) {
		monitor_destroy(vm->monitor);
		vm->monitor = NULL;
	}
	return r;
}

void vm_monitor_stop(struct vm *vm, int status)
{
	if (!vm->monitor)
		return;
	json_t *data = json_pack("{s:b,s:s,s:i}", "guest", !vm->quit_requested, "reason",
				 vm->quit_requested ? "host-qmp-quit" : status < 120 ? "guest-shutdown" : "vmm-verdict",
				 "status", status);
	monitor_emit_event(vm->monitor, "SHUTDOWN", data);
	monitor_destroy(vm->monitor);
	vm->monitor = NULL;
}

/*
 * The VM's run state over the monitor: query-status, stop (STOP event), cont (RESUME),
 * quit, and query-stats. They run on the monitor's thread, which alone writes
 * vm->user_paused and vm->quit_requested.
 */
#include "vmm/monitor/qmp_control.h"

#include <errno.h>

#include "vmm/error.h"
#include "vmm/vm.h"

static int qmp_control_query_status(void *ctx, enum monitor_run_state *state)
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

static int qmp_control_stop(struct monitor_call *call, void *ctx)
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

static int qmp_control_cont(struct monitor_call *call, void *ctx)
{
	struct vm *vm = ctx;
	if (!vm->user_paused)
		return 0;
	vm->user_paused = false;
	vm_resume(vm);
	monitor_emit_event(monitor_call_monitor(call), "RESUME", NULL);
	return 0;
}

static int qmp_control_quit(struct monitor_call *call, void *ctx)
{
	(void)call;
	struct vm *vm = ctx;
	vm->quit_requested = true;
	vm_stop(vm, 0);
	return 0;
}

static void qmp_control_stat(void *arg, const char *key, uint64_t value)
{
	monitor_stat_set(arg, value, "%s", key);
}

static int qmp_control_query_stats(void *ctx, json_t *stats)
{
	vm_stats(ctx, qmp_control_stat, stats);
	return 0;
}

const struct monitor_ops qmp_control_ops = {
	.query_status = qmp_control_query_status,
	.stop = qmp_control_stop,
	.cont = qmp_control_cont,
	.quit = qmp_control_quit,
	.query_stats = qmp_control_query_stats,
};

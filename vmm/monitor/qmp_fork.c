/*
 * fork over the monitor: the VM forks into children (lifecycle/fork.c), each a VM process
 * of its own with its own monitor (NAME.K); a FORK event when they run, FORK_EXIT as each
 * ends. What a child does is said here, not in fork: it drops the parent's monitor and is
 * served as any VM (vm_serve, with a monitor of its own).
 */
#include "vmm/monitor/qmp_fork.h"

#include <errno.h>
#include <pthread.h>

#include "vmm/error.h"
#include "vmm/lifecycle/fork.h"
#include "vmm/lifecycle/vm_serve.h"
#include "vmm/monitor/vm_monitor.h"
#include "vmm/vm.h"

/* In a new child: the monitor it inherited is the parent's (socket, clients, thread). */
static void qmp_fork_child_leave_parent(struct vm *vm)
{
	monitor_abandon(vm->monitor);
	vm->monitor = NULL;
}

static void qmp_fork_child_serve(struct vm *vm)
{
	vm_serve(vm, &vm_monitor_serve_ops);
}

static void qmp_fork_child_exit(struct vm *vm, pid_t pid, int status)
{
	/* Under the VM's lock: vm_monitor_stop takes the monitor away holding it. */
	pthread_mutex_lock(&vm->lock);
	if (vm->monitor)
		monitor_emit_event(vm->monitor, "FORK_EXIT", json_pack("{s:i,s:i}", "pid", (int)pid, "status", status));
	pthread_mutex_unlock(&vm->lock);
}

static const struct fork_ops qmp_fork_ops = {
	.child_leave_parent = qmp_fork_child_leave_parent,
	.child_serve = qmp_fork_child_serve,
	.child_exit = qmp_fork_child_exit,
};

static const struct monitor_arg qmp_fork_args[] = {
	{"count", MONITOR_ARG_INT, false, "how many children (default 1, at most 64)"},
	{NULL, 0, false, NULL},
};

static int qmp_fork(struct monitor_call *call, void *ctx, json_t *args, json_t **ret)
{
	struct vm *vm = ctx;
	json_t *jc = json_object_get(args, "count");
	json_int_t count = jc ? json_integer_value(jc) : 1;
	if (count < 1 || count > FORK_MAX_CHILDREN)
		return error_set(EINVAL, "count must be 1 to %d, not %lld", FORK_MAX_CHILDREN, (long long)count);
	struct fork_result res;
	int r = vm_fork(vm, vm->cfg.name, (unsigned)count, &qmp_fork_ops, &res);
	if (r)
		return r;
	/* Every child asked for: those not running (or never made, pid 0) say why. */
	json_t *children = json_array();
	for (unsigned i = 0; i < res.count; i++)
		json_array_append_new(children, json_pack("{s:s,s:i,s:i,s:I,s:s}", "name", res.child[i].name, "pid",
							  (int)res.child[i].pid, "index", (int)res.child[i].index, "fork-ns",
							  (json_int_t)res.child[i].fork_ns, "status",
							  res.child[i].status ? res.child[i].error : "running"));
	*ret = json_pack("{s:o,s:i,s:I,s:I}", "children", children, "generation", (int)res.generation, "pause-ns",
			 (json_int_t)res.pause_ns, "ready-ns", (json_int_t)res.ready_ns);
	monitor_emit_event(monitor_call_monitor(call), "FORK", json_deep_copy(*ret));
	return 0;
}

const struct monitor_command qmp_fork_commands[] = {
	{"fork", qmp_fork, qmp_fork_args, "fork the running VM into child VMs sharing its memory copy-on-write"},
	{NULL, NULL, NULL, NULL},
};

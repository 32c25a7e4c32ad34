#include "vmm/monitor/vm_monitor.h"

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "vmm/clock.h"
#include "vmm/error.h"
#include "vmm/monitor/monitor.h"
#include "vmm/lifecycle/fork.h"
#include "vmm/lifecycle/snapshot.h"
#include "vmm/monitor/qmp_memory.h"
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

/* ---- snapshot-save: runs in its own thread, the reply deferred until durable ---- */

struct snapshot_job {
	struct vm *vm;
	struct monitor *mon;
	struct monitor_pending *pending;
	char name[64];
	char store[4096];
	uint64_t last_event_ns;
};

static void snapshot_job_progress(void *arg, uint64_t done, uint64_t total)
{
	struct snapshot_job *job = arg;
	uint64_t now = clock_monotonic_ns();
	if (done != total && now - job->last_event_ns < 100000000ull)
		return; /* at most ten progress events a second */
	job->last_event_ns = now;
	monitor_emit_event(job->mon, "SNAPSHOT_PROGRESS",
			   json_pack("{s:s,s:I,s:I}", "name", job->name, "done", (json_int_t)done, "total", (json_int_t)total));
}

static void *snapshot_job_main(void *arg)
{
	struct snapshot_job *job = arg;
	struct snapshot_result res;
	int r = snapshot_save(job->vm, job->store, job->name, snapshot_job_progress, job, &res);
	json_t *ret = NULL;
	if (!r) {
		ret = json_pack("{s:s,s:s,s:s,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:i,s:I,s:I}", "name", job->name,
				"store", job->store, "parent", res.parent, "pages", (json_int_t)res.pages, "listed",
				(json_int_t)res.listed, "unchanged", (json_int_t)res.unchanged, "stored", (json_int_t)res.stored, "shared", (json_int_t)res.shared,
				"zero", (json_int_t)res.zero, "pause-ns", (json_int_t)res.pause_ns, "total-ns",
				(json_int_t)res.total_ns, "prearm-ns", (json_int_t)res.prearm_ns, "prearm-passes",
				(int)res.prearm_passes, "prearm-pages", (json_int_t)res.prearm_pages, "pause-protected",
				(json_int_t)res.pause_protected);
		monitor_emit_event(job->mon, "SNAPSHOT_DONE", json_deep_copy(ret));
	}
	monitor_reply_later(job->pending, r, ret);
	free(job);
	return NULL;
}

static const struct monitor_arg snapshot_save_args[] = {
	{"name", MONITOR_ARG_STRING, true, "the snapshot's name in the store"},
	{"store", MONITOR_ARG_STRING, true, "the store directory (created if missing)"},
	{NULL, 0, false, NULL},
};

static int vm_monitor_snapshot_save(struct monitor_call *call, void *ctx, json_t *args, json_t **ret)
{
	(void)ret;
	struct vm *vm = ctx;
	if (atomic_load(&vm->snapshot_busy))
		return error_set(EBUSY, "a snapshot of this VM is already being taken");
	if (vm->snapshot_thread_started) {
		pthread_join(vm->snapshot_thread, NULL);
		vm->snapshot_thread_started = false;
	}
	struct snapshot_job *job = calloc(1, sizeof(*job));
	if (!job)
		return error_set(ENOMEM, "no memory for a snapshot");
	job->vm = vm;
	job->mon = monitor_call_monitor(call);
	snprintf(job->name, sizeof(job->name), "%s", json_string_value(json_object_get(args, "name")));
	snprintf(job->store, sizeof(job->store), "%s", json_string_value(json_object_get(args, "store")));
	job->pending = monitor_call_defer(call);
	if (!job->pending) {
		free(job);
		return error_set(ENOMEM, "no memory for a snapshot");
	}
	int r = pthread_create(&vm->snapshot_thread, NULL, snapshot_job_main, job);
	if (r) {
		monitor_reply_later(job->pending, -r, NULL);
		free(job);
		return MONITOR_PENDING;
	}
	vm->snapshot_thread_started = true;
	return MONITOR_PENDING;
}

static const struct monitor_arg fork_args[] = {
	{"count", MONITOR_ARG_INT, false, "how many children (default 1, at most 64)"},
	{NULL, 0, false, NULL},
};

static int vm_monitor_fork(struct monitor_call *call, void *ctx, json_t *args, json_t **ret)
{
	struct vm *vm = ctx;
	json_t *jc = json_object_get(args, "count");
	json_int_t count = jc ? json_integer_value(jc) : 1;
	if (count < 1 || count > FORK_MAX_CHILDREN)
		return error_set(EINVAL, "count must be 1 to %d, not %lld", FORK_MAX_CHILDREN, (long long)count);
	struct fork_result res;
	int r = vm_fork(vm, vm->cfg.name, (unsigned)count, &res);
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

static const struct monitor_command vm_monitor_commands[] = {
	{"fork", vm_monitor_fork, fork_args, "fork the running VM into child VMs sharing its memory copy-on-write"},
	{"snapshot-save", vm_monitor_snapshot_save, snapshot_save_args,
	 "snapshot the running VM into a store; answers when the snapshot is durable"},
	{NULL, NULL, NULL, NULL},
};

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
	struct monitor *m = NULL;
	int r = monitor_create(&m, &cfg);
	if (!r)
		r = monitor_add_commands(m, vm_monitor_commands, vm);
	if (!r)
		r = monitor_add_commands(m, qmp_memory_commands, vm);
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
	/* A snapshot being written finishes (and is answered) before the monitor goes. */
	if (vm->snapshot_thread_started) {
		pthread_join(vm->snapshot_thread, NULL);
		vm->snapshot_thread_started = false;
	}
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

/*
 * snapshot-save over the monitor: the snapshot is written by a worker thread of its own,
 * and the call's reply is deferred until the snapshot is durable; SNAPSHOT_PROGRESS
 * events meanwhile (at most ten a second), SNAPSHOT_DONE at the end.
 */
#include "vmm/monitor/qmp_snapshot.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

#include "vmm/clock.h"
#include "vmm/error.h"
#include "vmm/lifecycle/snapshot.h"
#include "vmm/vm.h"

/* Filled by the handler before the worker starts; the worker's alone from then on. */
struct qmp_snapshot_job {
	struct vm *vm;
	struct monitor *mon;
	struct monitor_pending *pending;
	char name[64];
	char store[4096];
	uint64_t last_event_ns;
};

static void qmp_snapshot_progress(void *arg, uint64_t done, uint64_t total)
{
	struct qmp_snapshot_job *job = arg;
	uint64_t now = clock_monotonic_ns();
	if (done != total && now - job->last_event_ns < 100000000ull)
		return; /* at most ten progress events a second */
	job->last_event_ns = now;
	monitor_emit_event(job->mon, "SNAPSHOT_PROGRESS",
			   json_pack("{s:s,s:I,s:I}", "name", job->name, "done", (json_int_t)done, "total", (json_int_t)total));
}

static void *qmp_snapshot_main(void *arg)
{
	struct qmp_snapshot_job *job = arg;
	struct snapshot_result res;
	int r = snapshot_save(job->vm, job->store, job->name, qmp_snapshot_progress, job, &res);
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

static const struct monitor_arg qmp_snapshot_save_args[] = {
	{"name", MONITOR_ARG_STRING, true, "the snapshot's name in the store"},
	{"store", MONITOR_ARG_STRING, true, "the store directory (created if missing)"},
	{NULL, 0, false, NULL},
};

void qmp_snapshot_join(struct vm *vm)
{
	if (vm->snapshot_thread_started) {
		pthread_join(vm->snapshot_thread, NULL);
		vm->snapshot_thread_started = false;
	}
}

static int qmp_snapshot_save(struct monitor_call *call, void *ctx, json_t *args, json_t **ret)
{
	(void)ret;
	struct vm *vm = ctx;
	if (atomic_load(&vm->snapshot_busy))
		return error_set(EBUSY, "a snapshot of this VM is already being taken");
	qmp_snapshot_join(vm);
	struct qmp_snapshot_job *job = calloc(1, sizeof(*job));
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
	int r = pthread_create(&vm->snapshot_thread, NULL, qmp_snapshot_main, job);
	if (r) {
		monitor_reply_later(job->pending, -r, NULL);
		free(job);
		return MONITOR_PENDING;
	}
	vm->snapshot_thread_started = true;
	return MONITOR_PENDING;
}

const struct monitor_command qmp_snapshot_commands[] = {
	{"snapshot-save", qmp_snapshot_save, qmp_snapshot_save_args,
	 "snapshot the running VM into a store; answers when the snapshot is durable"},
	{NULL, NULL, NULL, NULL},
};

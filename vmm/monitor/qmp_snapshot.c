/*
 * snapshot-save over the monitor: the snapshot is written by a worker thread of its own,
 * and the call's reply is deferred until the snapshot is durable; SNAPSHOT_PROGRESS
 * events meanwhile (at most ten a second), SNAPSHOT_DONE at the end. Continuous
 * checkpoints (checkpoint.h) as a job: checkpoint-start, query-jobs, job-cancel.
 */
#include "vmm/monitor/qmp_snapshot.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vmm/clock.h"
#include "vmm/error.h"
#include "vmm/lifecycle/checkpoint.h"
#include "vmm/lifecycle/snapshot.h"
#include "vmm/store/store.h"
#include "vmm/vm.h"

/* Filled by the handler before the worker starts; the worker's alone from then on. */
struct qmp_snapshot_job {
	struct vm *vm;
	struct monitor *mon;
	struct monitor_pending *pending;
	char name[64];
	char store[4096];
	char description[STORE_DESCRIPTION_MAX + 1];
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
	int r = snapshot_save(job->vm, job->store, job->name, job->description, qmp_snapshot_progress, job, &res);
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
	{"description", MONITOR_ARG_STRING, false, "what the snapshot is, kept with it (at most 255 bytes)"},
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
	const char *description = json_string_value(json_object_get(args, "description"));
	if (store_description_check(NULL, description) != 0)
		return -EINVAL;
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
	snprintf(job->description, sizeof(job->description), "%s", description ? description : "");
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

static const struct monitor_arg qmp_checkpoint_start_args[] = {
	{"store", MONITOR_ARG_STRING, true, "the store directory, an absolute path (created if missing)"},
	{"every-ms", MONITOR_ARG_INT, true, "the interval: a checkpoint starts this often (>= 1)"},
	{"keep", MONITOR_ARG_INT, false, "the newest checkpoints kept, older ones deleted (default 0: all)"},
	{"prefix", MONITOR_ARG_STRING, false, "checkpoints are named PREFIX-1, PREFIX-2, ... (default: the VM's name)"},
	{NULL, 0, false, NULL},
};

#define QMP_CHECKPOINT_JOB "checkpoint"
#define QMP_SNAPSHOT_JOB "snapshot" /* the snapshot-save being written */

/* A CHECKPOINT event for each checkpoint made durable. @arg: the VM. */
static void qmp_checkpoint_done(void *arg, const char *name, const struct snapshot_result *res)
{
	struct vm *vm = arg;
	struct monitor *mon = __atomic_load_n(&vm->monitor, __ATOMIC_ACQUIRE);
	if (mon)
		monitor_emit_event(mon, "CHECKPOINT",
				   json_pack("{s:s,s:s,s:I,s:I,s:I,s:I}", "name", name, "parent", res->parent, "listed",
					     (json_int_t)res->listed, "stored", (json_int_t)res->stored, "pause-ns",
					     (json_int_t)res->pause_ns, "total-ns", (json_int_t)res->total_ns));
}

static int qmp_checkpoint_start(struct monitor_call *call, void *ctx, json_t *args, json_t **ret)
{
	(void)call;
	struct vm *vm = ctx;
	struct checkpoint_config cfg = {0};
	json_int_t every = json_integer_value(json_object_get(args, "every-ms"));
	json_int_t keep = json_integer_value(json_object_get(args, "keep"));
	if (every < 1 || keep < 0 || keep > CHECKPOINT_KEEP_MAX)
		return error_set(EINVAL, "every-ms must be at least 1 and keep 0 to %d", CHECKPOINT_KEEP_MAX);
	const char *prefix = json_string_value(json_object_get(args, "prefix"));
	if (!prefix)
		prefix = vm->cfg.name ? vm->cfg.name : "checkpoint";
	if (snprintf(cfg.store, sizeof(cfg.store), "%s", json_string_value(json_object_get(args, "store"))) >=
		    (int)sizeof(cfg.store) ||
	    snprintf(cfg.prefix, sizeof(cfg.prefix), "%s", prefix) >= (int)sizeof(cfg.prefix))
		return error_set(ENAMETOOLONG, "the store path or the prefix is too long");
	cfg.every_ms = (uint64_t)every;
	cfg.keep = (unsigned)keep;
	cfg.done = qmp_checkpoint_done;
	cfg.done_arg = vm;
	int r = checkpoint_start(vm, &cfg);
	if (!r)
		*ret = json_pack("{s:s}", "id", QMP_CHECKPOINT_JOB);
	return r;
}

static const char *qmp_checkpoint_state(enum checkpoint_state s)
{
	/* QEMU's job statuses. */
	return s == CHECKPOINT_RUNNING ? "running" : s == CHECKPOINT_STOPPING ? "aborting" : "concluded";
}

static int qmp_query_jobs(struct monitor_call *call, void *ctx, json_t *args, json_t **ret)
{
	(void)call;
	(void)args;
	struct vm *vm = ctx;
	struct checkpoint_status st;
	checkpoint_status(vm, &st);
	*ret = json_array();
	if (atomic_load(&vm->snapshot_busy))
		json_array_append_new(*ret, json_pack("{s:s,s:s,s:s,s:I,s:I}", "id", QMP_SNAPSHOT_JOB, "type", "snapshot-save",
						      "status", "running", "current-progress",
						      (json_int_t)atomic_load(&vm->snapshot_done), "total-progress",
						      (json_int_t)atomic_load(&vm->snapshot_total)));
	if (st.state == CHECKPOINT_NONE)
		return 0;
	json_t *job = json_pack(
		"{s:s,s:s,s:s,s:I,s:I,s:s,s:s,s:I,s:I,s:I,s:I,s:I,s:I,s:I}", "id", QMP_CHECKPOINT_JOB, "type",
		"checkpoint", "status", qmp_checkpoint_state(st.state), "current-progress", (json_int_t)st.taken,
		"total-progress", (json_int_t)st.taken, "store", st.cfg.store, "prefix", st.cfg.prefix, "every-ms",
		(json_int_t)st.cfg.every_ms, "keep", (json_int_t)st.cfg.keep, "taken", (json_int_t)st.taken, "skipped",
		(json_int_t)st.skipped, "late", (json_int_t)st.late, "deleted", (json_int_t)st.deleted, "max-pause-ns",
		(json_int_t)st.max_pause_ns);
	json_object_set_new(job, "last", st.last[0] ? json_string(st.last) : json_null());
	json_object_set_new(job, "last-total-ns", json_integer((json_int_t)st.last_total_ns));
	if (st.error[0])
		json_object_set_new(job, "error", json_string(st.error));
	json_array_append_new(*ret, job);
	return 0;
}

static const struct monitor_arg qmp_job_cancel_args[] = {
	{"id", MONITOR_ARG_STRING, true, "the job (query-jobs names it)"},
	{NULL, 0, false, NULL},
};

static int qmp_job_cancel(struct monitor_call *call, void *ctx, json_t *args, json_t **ret)
{
	(void)call;
	(void)ret;
	const char *id = json_string_value(json_object_get(args, "id"));
	if (strcmp(id, QMP_SNAPSHOT_JOB) == 0)
		return snapshot_cancel(ctx);
	if (strcmp(id, QMP_CHECKPOINT_JOB) != 0)
		return error_set(ENOENT, "no job '%s' (this VM's jobs are \"" QMP_SNAPSHOT_JOB "\" and \"" QMP_CHECKPOINT_JOB "\")",
				 id);
	return checkpoint_cancel(ctx);
}

const struct monitor_command qmp_snapshot_commands[] = {
	{"snapshot-save", qmp_snapshot_save, qmp_snapshot_save_args,
	 "snapshot the running VM into a store; answers when the snapshot is durable"},
	{"checkpoint-start", qmp_checkpoint_start, qmp_checkpoint_start_args,
	 "take a snapshot every interval while the VM runs, keeping the newest (a job: query-jobs, job-cancel)"},
	{"query-jobs", qmp_query_jobs, NULL, "the VM's jobs (a snapshot being written, continuous checkpoints) and their status"},
	{"job-cancel", qmp_job_cancel, qmp_job_cancel_args,
	 "stop a job: the snapshot being written (nothing of it stored), or the checkpoints (after the one in progress)"},
	{NULL, NULL, NULL, NULL},
};

/* vmm snapshot: a live snapshot of a running VM into a store, through its monitor. */
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "vmm/cli/cmd_client.h"
#include "vmm/cli/progress.h"
#include "vmm/clock.h"
#include "vmm/error.h"
#include "vmm/store/store.h"
#include "vmm/vm.h"

static const struct cli_option snapshot_options[] = {
	{"store", 's', "DIR", CMD_CLIENT_OPT_STORE, "the store to write into (created if missing)"},
	{"as", 0, "SNAPSHOT", CMD_CLIENT_OPT_AS,
	 "the snapshot's name (default NAME-YYYYMMDD-HHMMSS.mmm, UTC); with --every, the checkpoints' prefix (default NAME)"},
	{"description", 'm', "TEXT", CMD_CLIENT_OPT_DESCRIPTION,
	 "what the snapshot is, kept with it and shown by vmm store ls (at most 255 bytes)"},
	{"every", 0, "TIME", CMD_CLIENT_OPT_EVERY, "continuous checkpoints: one every TIME (100ms, 2s, 5m) until --stop"},
	{"keep", 0, "N", CMD_CLIENT_OPT_KEEP, "with --every: keep the newest N checkpoints, delete older ones"},
	{"stop", 0, NULL, CMD_CLIENT_OPT_STOP, "end the continuous checkpoints of NAME"},
	CMD_CLIENT_OPTION_JSON,
	CMD_CLIENT_OPTION_MONITOR,
	CMD_CLIENT_OPTION_HELP,
	{0},
};

static void snapshot_help(FILE *f, const char *verb)
{
	(void)verb;
	fprintf(f, "usage: vmm snapshot [OPTIONS] NAME\n"
		   "       vmm snapshot --every TIME [--keep N] [--as PREFIX] [--store DIR] NAME\n"
		   "       vmm snapshot --stop NAME\n"
		   "Snapshot the running VM NAME into a store without stopping it for long: its vCPUs are\n"
		   "paused while its state is saved and its memory frozen copy-on-write, then it runs on\n"
		   "while the frozen pages are written. Pages already in the store are not written again.\n"
		   "Snapshots are incremental: the next one of the same VM into the same store names this\n"
		   "one as its parent and stores only what the guest wrote since (a VM restored from a\n"
		   "snapshot of the same store, what changed since).\n"
		   "Returns when the snapshot is durable. On a terminal, progress is shown on stderr.\n"
		   "With --every, the VM takes a checkpoint every TIME (PREFIX-1, PREFIX-2, ...) until\n"
		   "vmm snapshot --stop NAME or its end; one that overruns delays the next; --keep N\n"
		   "deletes all but the newest N (vmm store gc frees their pages), save the first\n"
		   "checkpoint (or a later one that lists every page) while the newest read through it\n"
		   "and little was written since: deleting it would rewrite a whole guest's list.\n"
		   "This returns at once.\n"
		   "VMs with mapped files or external pagers, or run with --kernel-zero-fill, cannot be\n"
		   "snapshotted.\n"
		   "The store is --store DIR.\n" CLI_STORE_DEFAULT_HELP
		   "The last two are made at the first snapshot, with their missing folders (mode 0700).\n\n");
	cli_print_options(f, snapshot_options);
	fprintf(f, "\nCtrl-C while the snapshot is written cancels it: nothing of it is stored and the VM\n"
		   "runs on (a second Ctrl-C stops waiting for the VM to say so).\n");
	fprintf(f, "\nExit status: 0 the snapshot is durable (with --every: the checkpoints started; with\n"
		   "--stop: they end after the one in progress), 1 the VM refused (its error is printed),\n"
		   "125 no such VM or bad arguments, 130 cancelled.\n");
}

/* The progress line: a second connection that listens for SNAPSHOT_PROGRESS while the
 * first waits for the answer. Pages all written but no answer yet is the final sync,
 * shown as such: never 100% nor "durable" before the answer came. */
struct snapshot_bar {
	struct qmp_client *events;
	const char *snap;
	char label[160];  /* "snapshot VM -> SNAPSHOT" */
	uint64_t start_ns; /* when snapshot-save was sent: the rate's time base */
	atomic_bool done;
	uint64_t total;    /* bytes, of the last event drawn */
	int drawn;
};

/* Redraw the line in place: back to its start, the line, the rest of the old one cleared. */
static void snapshot_bar_draw(struct snapshot_bar *bar, uint64_t done, enum progress_phase phase)
{
	char line[PROGRESS_LINE_MAX];
	double elapsed = (double)(clock_monotonic_ns() - bar->start_ns) / 1e9;
	progress_line(line, sizeof(line), bar->label, bar->total, done, elapsed, phase);
	fprintf(stderr, "\r%s\033[K", line);
	bar->drawn = 1;
}

static void *snapshot_bar_main(void *arg)
{
	struct snapshot_bar *bar = arg;
	while (!atomic_load(&bar->done)) {
		json_t *ev;
		if (qmp_client_next_event(bar->events, &ev, 100) != 0)
			continue;
		json_t *data = json_object_get(ev, "data");
		if (strcmp(json_string_value(json_object_get(ev, "event")), "SNAPSHOT_PROGRESS") == 0 &&
		    strcmp(json_string_value(json_object_get(data, "name")) ?: "", bar->snap) == 0) {
			/* Pages, in the event: RAM examined so far and in all. */
			uint64_t done = (uint64_t)json_integer_value(json_object_get(data, "done")) * VM_PAGE_SIZE;
			bar->total = (uint64_t)json_integer_value(json_object_get(data, "total")) * VM_PAGE_SIZE;
			snapshot_bar_draw(bar, done, done >= bar->total ? PROGRESS_SYNCING : PROGRESS_WRITING);
		}
		json_decref(ev);
	}
	return NULL;
}

/* Ctrl-C (or SIGTERM, SIGHUP) while a snapshot is written: the VM is asked to stop it
 * (job-cancel) on a connection of its own, and the answer to snapshot-save says how it
 * ended; a second signal gives up waiting. The signals are blocked in every thread and
 * taken by this one. */
struct snapshot_canceller {
	const struct cmd_client_args *a;
	sigset_t signals;
	atomic_bool asked;   /* a signal came: job-cancel is being sent */
	char said[256];      /* job-cancel's error, if it failed: read once answered is set */
	atomic_bool answered;
};

static void *snapshot_canceller_main(void *arg)
{
	struct snapshot_canceller *k = arg;
	int sig;
	if (sigwait(&k->signals, &sig) != 0)
		return NULL;
	/* Said before it is asked: the answer to snapshot-save may come before job-cancel's. */
	atomic_store(&k->asked, true);
	struct qmp_client *c;
	json_t *args = json_pack("{s:s}", "id", "snapshot");
	int r = qmp_client_open(&c, k->a->name, k->a->monitor, CMD_CLIENT_TIMEOUT_MS);
	if (!r) {
		r = qmp_client_execute(c, "job-cancel", args, NULL, CMD_CLIENT_TIMEOUT_MS);
		qmp_client_close(c);
	}
	json_decref(args);
	if (r)
		snprintf(k->said, sizeof(k->said), "%s", error_message());
	atomic_store(&k->answered, true);
	if (sigwait(&k->signals, &sig) == 0) {
		fprintf(stderr, "\nvmm snapshot: stopped waiting; the VM may still be writing the snapshot\n");
		_exit(128 + sig);
	}
	return NULL;
}

/* @dir made absolute: the VM resolves it from its own working directory (a RADOS store
 * is named alike everywhere). */
static int snapshot_abs_store(const char *dir, char *out, size_t size)
{
	if (dir[0] == '/' || store_is_rados(dir))
		return snprintf(out, size, "%s", dir) < (int)size ? 0 : -ENAMETOOLONG;
	char cwd[PATH_MAX];
	if (!getcwd(cwd, sizeof(cwd)))
		return -errno;
	return snprintf(out, size, "%s/%s", cwd, dir) < (int)size ? 0 : -ENAMETOOLONG;
}

/* vmm snapshot --stop NAME: job-cancel, and what the checkpoints came to. */
static int snapshot_stop(const char *verb, const struct cmd_client_args *a)
{
	struct qmp_client *c;
	int status = cmd_client_open(verb, a->name, a->monitor, &c);
	if (status)
		return status;
	json_t *args = json_pack("{s:s}", "id", "checkpoint"), *ret = NULL, *jobs = NULL;
	int r = qmp_client_execute(c, "job-cancel", args, &ret, CMD_CLIENT_TIMEOUT_MS);
	json_decref(args);
	if (!r)
		r = qmp_client_execute(c, "query-jobs", NULL, &jobs, CMD_CLIENT_TIMEOUT_MS);
	qmp_client_close(c);
	json_decref(ret);
	if (r)
		return cmd_client_fail(verb, r);
	json_t *job = json_array_get(jobs, 0);
	if (a->json) {
		cmd_client_print_json(stdout, job);
	} else {
		const char *last = json_string_value(json_object_get(job, "last"));
		printf("checkpoints of %s end after the one in progress: %s taken%s%s\n", a->name ? a->name : "the VM",
		       CLI_COUNT(json_integer_value(json_object_get(job, "taken")), "checkpoint"), last ? ", the last " : "",
		       last ? last : "");
	}
	json_decref(jobs);
	return 0;
}

/* vmm snapshot --every TIME: checkpoint-start into the absolute store @abs. */
static int snapshot_every(const char *verb, const struct cmd_client_args *a, const char *abs)
{
	json_t *args = json_pack("{s:s,s:I,s:I}", "store", abs, "every-ms", (json_int_t)a->every_ms, "keep",
				 (json_int_t)(a->keep_given ? a->keep : 0)), *ret = NULL;
	if (a->as)
		json_object_set_new(args, "prefix", json_string(a->as));
	int status = cmd_client_call(verb, a, "checkpoint-start", args, &ret, CMD_CLIENT_TIMEOUT_MS);
	json_decref(args);
	if (status)
		return status;
	if (a->json) {
		cmd_client_print_json(stdout, ret);
	} else {
		const char *who = a->name ? a->name : "the VM";
		printf("checkpoints of %s every %llu ms into %s as %s-N", who, (unsigned long long)a->every_ms, abs,
		       a->as ? a->as : who);
		if (a->keep_given)
			printf(", the newest %u kept", a->keep);
		printf(": started (vmm snapshot --stop %s ends them)\n", who);
	}
	json_decref(ret);
	return 0;
}

int cmd_snapshot(int argc, char **argv)
{
	const char *verb = "snapshot";
	struct cmd_client_args a;
	int status = cmd_client_parse(verb, "vmm snapshot [OPTIONS] NAME", snapshot_options, true, snapshot_help, argc,
				      argv, &a);
	if (status != CMD_CLIENT_GO_ON)
		return status;
	if ((a.keep_given && !a.every_ms) || (a.stop && (a.every_ms || a.store || a.as))) {
		fprintf(stderr, "vmm snapshot: %s\n",
			a.stop ? "--stop takes no other option but --json and --monitor" : "--keep goes with --every");
		return VM_EXIT_VMM_ERROR;
	}
	if (a.description && (a.every_ms || a.stop)) {
		fprintf(stderr, "vmm snapshot: --description is for one snapshot (checkpoints say 'checkpoint')\n");
		return VM_EXIT_VMM_ERROR;
	}
	if (store_description_check(NULL, a.description) != 0) {
		fprintf(stderr, "vmm snapshot: --description: %s\n", error_message());
		return VM_EXIT_VMM_ERROR;
	}
	if (a.stop)
		return snapshot_stop(verb, &a);
	char deflt[PATH_MAX];
	bool per_user = false;
	const char *store = a.store;
	if (!store) {
		if (cli_default_store(verb, deflt, sizeof(deflt), &per_user) != 0 ||
		    (per_user && cli_make_private_dirs(verb, deflt) != 0)) {
			fprintf(stderr, "%s\n", error_message());
			return VM_EXIT_VMM_ERROR;
		}
		store = deflt;
	}
	char abs[PATH_MAX], snap[80];
	if (snapshot_abs_store(store, abs, sizeof(abs)) != 0) {
		fprintf(stderr, "vmm snapshot: store path %s is too long\n", store);
		return VM_EXIT_VMM_ERROR;
	}
	if (a.every_ms)
		return snapshot_every(verb, &a, abs);
	if (a.as) {
		snprintf(snap, sizeof(snap), "%s", a.as);
	} else {
		/* To the millisecond: two snapshots of one VM never run at once, and each takes
		 * longer than that, so the names a script's snapshots get in a row differ. */
		struct timespec now;
		clock_gettime(CLOCK_REALTIME, &now);
		struct tm tm;
		gmtime_r(&now.tv_sec, &tm);
		char stamp[32];
		strftime(stamp, sizeof(stamp), "%Y%m%d-%H%M%S", &tm);
		snprintf(snap, sizeof(snap), "%s-%s.%03ld", a.name ? a.name : "vm", stamp, now.tv_nsec / 1000000);
	}
	struct qmp_client *c;
	status = cmd_client_open(verb, a.name, a.monitor, &c);
	if (status)
		return status;
	struct snapshot_canceller canceller = {.a = &a};
	sigemptyset(&canceller.signals);
	sigaddset(&canceller.signals, SIGINT);
	sigaddset(&canceller.signals, SIGTERM);
	sigaddset(&canceller.signals, SIGHUP);
	pthread_t canceller_thread;
	if (pthread_sigmask(SIG_BLOCK, &canceller.signals, NULL) != 0 ||
	    pthread_create(&canceller_thread, NULL, snapshot_canceller_main, &canceller) != 0) {
		qmp_client_close(c);
		fprintf(stderr, "vmm snapshot: cannot start the thread that takes Ctrl-C\n");
		return VM_EXIT_VMM_ERROR;
	}
	pthread_detach(canceller_thread);
	struct snapshot_bar bar = {.snap = snap, .start_ns = clock_monotonic_ns()};
	if (a.name)
		snprintf(bar.label, sizeof(bar.label), "snapshot %s -> %s", a.name, snap);
	else
		snprintf(bar.label, sizeof(bar.label), "snapshot %s", snap);
	pthread_t bar_thread;
	bool bar_on = !a.json && isatty(STDERR_FILENO) && cmd_client_open(verb, a.name, a.monitor, &bar.events) == 0;
	if (bar_on && pthread_create(&bar_thread, NULL, snapshot_bar_main, &bar) != 0) {
		qmp_client_close(bar.events);
		bar_on = false;
	}
	json_t *args = json_pack("{s:s,s:s,s:s*}", "name", snap, "store", abs, "description", a.description), *ret = NULL;
	int r = qmp_client_execute(c, "snapshot-save", args, &ret, -1);
	json_decref(args);
	if (bar_on) {
		atomic_store(&bar.done, true);
		pthread_join(bar_thread, NULL);
		qmp_client_close(bar.events);
		if (bar.drawn && !r)
			snapshot_bar_draw(&bar, bar.total, PROGRESS_DONE);
		if (bar.drawn)
			fputc('\n', stderr);
	}
	qmp_client_close(c);
	if (atomic_load(&canceller.asked)) {
		if (r == -EREMOTEIO && strstr(error_message(), "cancelled")) {
			fprintf(stderr, "vmm snapshot: cancelled: nothing of %s was stored; the VM runs on\n", snap);
			return 130;
		}
		if (!r)
			fprintf(stderr, "vmm snapshot: interrupted, but %s was durable already\n", snap);
		else if (atomic_load(&canceller.answered) && canceller.said[0])
			fprintf(stderr, "vmm snapshot: the snapshot could not be cancelled: %s\n", canceller.said);
	}
	if (r)
		return cmd_client_fail(verb, r);
	if (a.json) {
		cmd_client_print_json(stdout, ret);
	} else {
		json_int_t stored = json_integer_value(json_object_get(ret, "stored"));
		const char *parent = json_string_value(json_object_get(ret, "parent"));
		printf("snapshot %s in %s%s%s: %s listed, %lld new (%.1f MiB), %lld already stored; "
		       "paused %.2f ms, durable after %.1f ms\n",
		       snap, abs, parent && *parent ? ", parent " : "", parent && *parent ? parent : "",
		       CLI_COUNT(json_integer_value(json_object_get(ret, "listed")), "page"), (long long)stored,
		       (double)stored * 4096.0 / 1048576.0, (long long)json_integer_value(json_object_get(ret, "shared")),
		       (double)json_integer_value(json_object_get(ret, "pause-ns")) / 1e6,
		       (double)json_integer_value(json_object_get(ret, "total-ns")) / 1e6);
	}
	json_decref(ret);
	return 0;
}

#include "vmm/lifecycle/fork.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "guest/abi.h"
#include "vmm/clock.h"
#include "vmm/error.h"
#include "vmm/lifecycle/checkpoint.h"
#include "vmm/lifecycle/snapshot.h"
#include "vmm/store/rados.h"
#include "vmm/store/store.h"
#include "vmm/vm.h"
#include "vmm/vm_state.h"

/* How long the parent waits for a template it saw end to be reaped (it exits at once). */
#define FORK_TEMPLATE_REAP_TIMEOUT_MS 5000

/* Test hook: a template kills itself right after the fork(2) of its Nth child, before it
 * reports that child, as a template killed half-way would. */
#define FORK_TEST_KILL_ENV "VMM_TEST_FORK_TEMPLATE_KILL"

/*
 * What travels on a fork's two channels, both SOCK_SEQPACKET socket pairs: each send is
 * one message, and a send to a parent that stopped listening fails (MSG_NOSIGNAL) instead
 * of killing the sender with SIGPIPE.
 *   report: the template and, first thing, each of its children -> the parent. Its end of
 *           file means the template is gone and every child it made has said BORN.
 *   ready:  each child -> the parent, once it runs or could not start.
 */
enum fork_msg_kind {
	FORK_MSG_FORKED = 1, /* template: child @index is @pid; its fork(2) took @fork_ns */
	FORK_MSG_FAILED,     /* template: the fork(2) of child @index failed (errno @status); no more */
	FORK_MSG_DONE,       /* template: every child is made */
	FORK_MSG_BORN,       /* child @index exists, as @pid (its first words, before it starts) */
	FORK_MSG_READY,      /* child @index runs (@status 0), or could not start (@status, @error) */
};

struct fork_msg {
	uint32_t kind;
	uint32_t index;
	int32_t pid;
	int32_t status;
	uint64_t fork_ns;
	char error[200];
};

/* One fork, as the maker of the children (the parent itself, or the template) sees it.
 * Descriptors are -1 when absent. */
struct fork_job {
	struct vm *vm;
	const struct fork_ops *ops; /* the caller's: what a child does */
	struct vm_state *state;    /* captured while paused; each child loads it */
	const char *name;
	unsigned first, count;     /* the children's indexes: first .. first + count - 1 */
	unsigned generation;
	int ready_rd, report_rd;   /* the parent's ends: closed in the template and children */
	int ready_wr, report_wr;   /* the children's (and template's) ends */
	int go_rd, go_wr;          /* children start at end of file on go_rd: every child made */
	unsigned kill_after;       /* test hook (FORK_TEST_KILL_ENV), 0: none */
};

/*
 * The process's reaper: it waits for any child in the process's own process group, forked
 * VMs and templates alike, and leaves children in groups of their own to their owners.
 * Locking legend: (r) fork_reap.lock. A fork holds it across fork(2), so a template is
 * known as one before the reaper can take it; children and templates inherit it held and
 * start afresh (fork_reap_reset).
 */
static struct {
	pthread_mutex_t lock;
	pthread_cond_t template_cond; /* signalled when the template is reaped */
	bool running;                 /* (r) a reaper thread is on */
	pid_t template_pid;           /* (r) the template of the fork in progress, 0 none */
	bool template_reaped;         /* (r) and its wait status: */
	int template_status;          /* (r) */
	const struct fork_ops *ops;   /* (r) who hears of a child's end */
} fork_reap = {.lock = PTHREAD_MUTEX_INITIALIZER, .template_cond = PTHREAD_COND_INITIALIZER};

static void fork_close(int *fd)
{
	if (*fd >= 0)
		close(*fd);
	*fd = -1;
}

static void fork_job_close(struct fork_job *job)
{
	fork_close(&job->ready_rd);
	fork_close(&job->ready_wr);
	fork_close(&job->report_rd);
	fork_close(&job->report_wr);
	fork_close(&job->go_rd);
	fork_close(&job->go_wr);
}

/* Send @m; a parent that gave up waiting (closed its end) is no error of the sender's. */
static void fork_send(int fd, const struct fork_msg *m)
{
	while (send(fd, m, sizeof(*m), MSG_NOSIGNAL) < 0 && errno == EINTR)
		;
}

/* Take one message without waiting: 1 taken (kind 0 when malformed), 0 none yet, -1 the
 * channel is at end of file (every sender gone). */
static int fork_recv(int fd, struct fork_msg *m)
{
	ssize_t n;
	do
		n = recv(fd, m, sizeof(*m), MSG_DONTWAIT);
	while (n < 0 && errno == EINTR);
	if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
		return 0;
	if (n <= 0)
		return -1;
	if (n != (ssize_t)sizeof(*m))
		m->kind = 0;
	m->error[sizeof(m->error) - 1] = '\0';
	return 1;
}

/* Mach's fork, before it (the VM paused): ranges inherited "share" become memory the
 * parent and the children share (guest_memory_share_inherited), with KVM's slots in line. */
static int fork_share_inherited(struct vm *vm)
{
	int r = guest_memory_share_inherited(&vm->mem);
	int s = r ? vm_sync_memslots(vm) : 0; /* a failure may have changed regions too */
	return r < 0 ? r : s;
}

/* Mach's fork: entries inherited "none" are not in the child (its guest finds nothing
 * there); "copy" ones are what the kernel's copy-on-write of the process gives (a range
 * shared with earlier forks and now inherited "copy" is copied into the child's own RAM);
 * "share" ones are host-shared memory already (fork_share_inherited). */
static int fork_apply_inheritance(struct vm *vm)
{
	int r = guest_memory_apply_inheritance(&vm->mem);
	return r ? r : vm_sync_memslots(vm);
}

void vm_fork_ready(struct vm *vm, int status, const char *error)
{
	if (vm->ready_fd < 0)
		return;
	struct fork_msg m = {.kind = FORK_MSG_READY, .index = vm->fork_index, .pid = getpid(), .status = status};
	snprintf(m.error, sizeof(m.error), "%s", error ? error : "");
	fork_send(vm->ready_fd, &m);
	close(vm->ready_fd);
	vm->ready_fd = -1;
}

/* In a new child or template: no reaper thread exists here, and the lock may have been
 * copied held. */
static void fork_reap_reset(void)
{
	pthread_mutex_init(&fork_reap.lock, NULL);
	pthread_cond_init(&fork_reap.template_cond, NULL);
	fork_reap.running = false;
	fork_reap.template_pid = 0;
	fork_reap.template_reaped = false;
}

#define FORK_GO_WAIT_MS 30000 /* longest a child waits for its siblings before it starts anyway */

/* A new child's wait until every sibling is made (end of file on @go_rd), at most
 * FORK_GO_WAIT_MS: a stuck template must not hold it for ever. The stop signals are
 * blocked here and no signal thread runs yet, so they are looked for while waiting: one
 * ends the child as it would have ended its VM. */
static void fork_await_go(int go_rd)
{
	uint64_t deadline = clock_monotonic_ns() + FORK_GO_WAIT_MS * 1000000ull;
	while (clock_monotonic_ns() < deadline) {
		struct pollfd p = {go_rd, POLLIN, 0};
		if (poll(&p, 1, 100) > 0)
			return;
		sigset_t pending;
		sigpending(&pending);
		const int stops[] = {SIGTERM, SIGINT, SIGHUP};
		for (unsigned i = 0; i < 3; i++)
			if (sigismember(&pending, stops[i]))
				_exit(128 + stops[i]);
	}
}

/* Child @index's life: say it exists, wait until its siblings are made, become a VM of its
 * own and run until its guest ends. */
static void __attribute__((noreturn)) fork_child_main(struct fork_job *job, unsigned index)
{
	struct vm *vm = job->vm;
	fork_close(&job->ready_rd);
	fork_close(&job->report_rd);
	if (job->report_wr >= 0) {
		/* Before the report channel closes: once the parent sees it at end of file, every
		 * child that exists has said so, even one made just before its template died. */
		struct fork_msg born = {.kind = FORK_MSG_BORN, .index = index, .pid = getpid()};
		fork_send(job->report_wr, &born);
		fork_close(&job->report_wr);
	}
	/* Start only once every sibling is made (or its maker died): running children would
	 * take the CPU from the forks still to come. */
	fork_close(&job->go_wr);
	fork_await_go(job->go_rd);
	fork_close(&job->go_rd);
	fork_reap_reset();

	struct vm_state *state = job->state;
	vm->ready_fd = job->ready_wr;
	vm->fork_index = index;
	vm->children_made = 0; /* its own children are NAME.K.1, NAME.K.2, ... */
	/* The parent's store handle and last snapshot's pin go first (no helper is started for
	 * them); then RADOS connections become the child's own, with its own pins of the
	 * snapshots it reads (a local store's pins are file locks it inherited). */
	snapshot_forked_child(vm);
	int taken = rados_conns_take_over();
	checkpoint_forget(vm);
	job->ops->child_leave_parent(vm); /* the parent's monitor */
	state->id_value = ABI_ID(job->generation, index);
	/* job->name may be this very buffer (a child forking in turn): format apart. */
	static char child_name[80];
	char buf[sizeof(child_name)];
	snprintf(buf, sizeof(buf), "%s.%u", job->name, index);
	memcpy(child_name, buf, sizeof(buf));
	vm->cfg.name = child_name;
	vm->cfg.monitor_path = NULL;
	if (taken != 0 || vm_fork_child_setup(vm, state) != 0 || fork_apply_inheritance(vm) != 0) {
		fprintf(stderr, "vmm: fork child %s: %s\n", child_name, error_message());
		vm_fork_ready(vm, VM_EXIT_VMM_ERROR, error_message());
		_exit(VM_EXIT_VMM_ERROR);
	}
	vm_state_free(state);
	job->ops->child_serve(vm); /* does not return */
	_exit(VM_EXIT_VMM_ERROR);
}

/* A child is known to exist: the parent's guest learns it was forked (generation up). */
static void fork_note_made(struct vm *vm, struct fork_result *res, unsigned i, pid_t pid, unsigned generation)
{
	if (res->child[i].pid)
		return;
	res->child[i].pid = pid;
	if (res->made++ == 0) {
		atomic_store(&vm->id_value, ABI_ID(generation, 0));
		res->generation = generation;
	}
}

/*
 * Make @job's children, one fork(2) each in index order, stopping at the first failure;
 * then let them start. The parent (@res given) records each in @res; the template (@res
 * NULL) reports each on the report channel. Returns how many were made; *@err is the
 * errno of the failed fork(2), 0 when none failed.
 */
static unsigned fork_make_children(struct fork_job *job, struct fork_result *res, int *err)
{
	unsigned made = 0;
	*err = 0;
	for (unsigned i = 0; i < job->count; i++) {
		unsigned k = job->first + i;
		uint64_t f0 = clock_monotonic_ns();
		pid_t pid = fork();
		if (pid == 0)
			fork_child_main(job, k);
		uint64_t fork_ns = clock_monotonic_ns() - f0;
		if (pid < 0) {
			*err = errno;
			if (!res) {
				struct fork_msg m = {.kind = FORK_MSG_FAILED, .index = k, .status = *err};
				fork_send(job->report_wr, &m);
			}
			break;
		}
		made++;
		if (res) {
			res->child[i].fork_ns = fork_ns;
			fork_note_made(job->vm, res, i, pid, job->generation);
			continue;
		}
		if (made == job->kill_after)
			raise(SIGKILL);
		struct fork_msg m = {.kind = FORK_MSG_FORKED, .index = k, .pid = pid, .fork_ns = fork_ns};
		fork_send(job->report_wr, &m);
	}
	fork_close(&job->go_wr); /* the children start */
	fork_close(&job->go_rd);
	return made;
}

/* The template: a single-threaded copy of the parent frozen while it was paused (its
 * domain lock copied held, which no one here takes). Makes the children and exits; they
 * become the parent's, a child subreaper. */
static void __attribute__((noreturn)) fork_template_main(struct fork_job *job)
{
	fork_reap_reset();
	fork_close(&job->ready_rd);
	fork_close(&job->report_rd);
	int go[2];
	if (pipe2(go, O_CLOEXEC) != 0) {
		struct fork_msg m = {.kind = FORK_MSG_FAILED, .index = job->first, .status = errno};
		fork_send(job->report_wr, &m);
		_exit(1);
	}
	job->go_rd = go[0];
	job->go_wr = go[1];
	int err;
	if (fork_make_children(job, NULL, &err) == job->count) {
		struct fork_msg m = {.kind = FORK_MSG_DONE};
		fork_send(job->report_wr, &m);
	}
	_exit(0);
}

static const char *fork_refusal(const struct vm *vm)
{
	const char *why = guest_memory_fork_refusal(&vm->mem);
	if (why)
		return why;
	if (atomic_load(&vm->snapshot_busy))
		return "a snapshot of this VM is being taken; fork it afterwards";
	return NULL;
}

/* What the parent learns of a fork while it waits. */
struct fork_collect {
	bool heard[FORK_MAX_CHILDREN]; /* the child said it runs or why not */
	bool maker_done;               /* the maker said where it stopped: later indexes are free */
	unsigned failed_at;            /* the index whose fork(2) failed, 0 none */
	int fail_errno;
	bool report_open, ready_open;  /* not yet at end of file */
	bool template_ended;           /* the template's end was seen and reaped */
	int template_status;           /* then its wait status */
};

static void fork_take(struct vm *vm, struct fork_result *res, struct fork_collect *fc, const struct fork_msg *m,
		      unsigned generation)
{
	unsigned first = res->child[0].index, i = m->index - first;
	if (m->kind == FORK_MSG_DONE) {
		fc->maker_done = true;
		return;
	}
	if (m->index < first || i >= res->count)
		return;
	switch (m->kind) {
	case FORK_MSG_FORKED:
		res->child[i].fork_ns = m->fork_ns;
		/* fall through */
	case FORK_MSG_BORN:
		if (m->pid > 0)
			fork_note_made(vm, res, i, m->pid, generation);
		break;
	case FORK_MSG_FAILED:
		fc->maker_done = true;
		fc->failed_at = m->index;
		fc->fail_errno = m->status;
		break;
	case FORK_MSG_READY:
		if (m->pid > 0)
			fork_note_made(vm, res, i, m->pid, generation);
		fc->heard[i] = true;
		res->child[i].status = m->status;
		snprintf(res->child[i].error, sizeof(res->child[i].error), "%s", m->error);
		break;
	default:
		break;
	}
}

/* Wait (bounded) until the reaper has taken the template that was seen to end. */
static void fork_wait_template(struct fork_collect *fc)
{
	struct timespec deadline;
	clock_gettime(CLOCK_MONOTONIC, &deadline);
	deadline.tv_sec += FORK_TEMPLATE_REAP_TIMEOUT_MS / 1000;
	pthread_mutex_lock(&fork_reap.lock);
	while (!fork_reap.template_reaped &&
	       pthread_cond_clockwait(&fork_reap.template_cond, &fork_reap.lock, CLOCK_MONOTONIC, &deadline) == 0)
		;
	fc->template_ended = fork_reap.template_reaped;
	fc->template_status = fork_reap.template_status;
	pthread_mutex_unlock(&fork_reap.lock);
}

/*
 * Hear from the maker and every child, until each child made runs or failed, the maker is
 * gone, or the deadline. The report channel is drained before the ready channel: once it
 * is at end of file, every child that exists is known, so the ready channel (drained
 * after) has everything needed to decide whether some child is still to be heard.
 */
static void fork_collect(struct vm *vm, struct fork_result *res, struct fork_collect *fc, int report_rd,
			 int ready_rd, unsigned generation)
{
	uint64_t deadline = clock_monotonic_ns() + FORK_READY_TIMEOUT_MS * 1000000ull;
	struct fork_msg m;
	for (;;) {
		int got;
		while (fc->report_open && (got = fork_recv(report_rd, &m)) != 0) {
			if (got < 0) {
				fc->report_open = false;
				fork_wait_template(fc);
			} else {
				fork_take(vm, res, fc, &m, generation);
			}
		}
		while (fc->ready_open && (got = fork_recv(ready_rd, &m)) != 0) {
			if (got < 0)
				fc->ready_open = false;
			else
				fork_take(vm, res, fc, &m, generation);
		}
		if (!fc->report_open) {
			bool all = true;
			for (unsigned i = 0; i < res->count; i++)
				all &= !res->child[i].pid || fc->heard[i];
			if (all || !fc->ready_open)
				return;
		}
		uint64_t now = clock_monotonic_ns();
		if (now >= deadline)
			return;
		struct pollfd p[2];
		nfds_t n = 0;
		if (fc->report_open)
			p[n++] = (struct pollfd){report_rd, POLLIN, 0};
		if (fc->ready_open)
			p[n++] = (struct pollfd){ready_rd, POLLIN, 0};
		if (poll(p, n, (int)((deadline - now + 999999) / 1000000)) < 0 && errno != EINTR)
			return;
	}
}

/* Why the template stopped before it made a child, for that child's entry. */
static void fork_template_end(const struct fork_collect *fc, char *buf, size_t size)
{
	int st = fc->template_status;
	if (fc->report_open)
		snprintf(buf, size, "not made: no word from the fork's template process within %d s",
			 FORK_READY_TIMEOUT_MS / 1000);
	else if (!fc->template_ended)
		snprintf(buf, size, "not made: the fork's template process ended first");
	else if (WIFSIGNALED(st))
		snprintf(buf, size, "not made: the fork's template process was killed by signal %d (%s) first",
			 WTERMSIG(st), strsignal(WTERMSIG(st)));
	else
		snprintf(buf, size, "not made: the fork's template process exited with status %d first",
			 WIFEXITED(st) ? WEXITSTATUS(st) : -1);
}

/* Give every child its final word, from what was heard. */
static void fork_settle(struct fork_result *res, const struct fork_collect *fc, const char *name)
{
	for (unsigned i = 0; i < res->count; i++) {
		struct fork_child *c = &res->child[i];
		if (fc->heard[i])
			continue;
		c->status = VM_EXIT_VMM_ERROR;
		if (c->pid && fc->ready_open)
			snprintf(c->error, sizeof(c->error), "the child did not say it runs within %d s",
				 FORK_READY_TIMEOUT_MS / 1000);
		else if (c->pid)
			snprintf(c->error, sizeof(c->error), "the child ended before it ran");
		else if (fc->failed_at == c->index)
			snprintf(c->error, sizeof(c->error), "not made: fork(2) failed: %s", strerror(fc->fail_errno));
		else if (fc->failed_at && c->index > fc->failed_at)
			snprintf(c->error, sizeof(c->error), "not made: the fork(2) of %s.%u failed", name, fc->failed_at);
		else
			fork_template_end(fc, c->error, sizeof(c->error));
	}
}

/* The orphans of a template come to the parent only if it is a child subreaper. */
static bool fork_become_subreaper(void)
{
	return prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0;
}

int vm_fork(struct vm *vm, const char *name, unsigned count, const struct fork_ops *ops, struct fork_result *res)
{
	memset(res, 0, sizeof(*res));
	if (count < 1 || count > FORK_MAX_CHILDREN)
		return error_set(EINVAL, "a fork makes 1 to %d children, not %u", FORK_MAX_CHILDREN, count);
	const char *why = fork_refusal(vm);
	if (why)
		return error_set(ENOTSUP, "%s", why);
	uint64_t t0 = clock_monotonic_ns();
	/* More than one child: the parent pauses for the template's fork(2) only. Without
	 * subreaping (it cannot fail on Linux >= 3.4) it makes them itself, paused meanwhile. */
	bool template = count > 1 && fork_become_subreaper();
	const char *kill_env = getenv(FORK_TEST_KILL_ENV);
	struct fork_job job = {
		.vm = vm,
		.ops = ops,
		.name = name,
		.first = vm->children_made + 1,
		.count = count,
		.kill_after = kill_env ? (unsigned)atoi(kill_env) : 0,
		.ready_rd = -1, .ready_wr = -1, .report_rd = -1, .report_wr = -1, .go_rd = -1, .go_wr = -1,
	};
	int ready[2], report[2], go[2];
	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, ready) != 0)
		return error_set_errno(errno, "cannot make the fork's channels");
	job.ready_rd = ready[0];
	job.ready_wr = ready[1];
	int r = 0;
	if (template && socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, report) == 0) {
		job.report_rd = report[0];
		job.report_wr = report[1];
	} else if (!template && pipe2(go, O_CLOEXEC) == 0) {
		job.go_rd = go[0];
		job.go_wr = go[1];
	} else {
		r = error_set_errno(errno, "cannot make the fork's channels");
	}
	res->count = count;
	for (unsigned i = 0; i < count; i++) {
		res->child[i].index = job.first + i;
		snprintf(res->child[i].name, sizeof(res->child[i].name), "%s.%u", name, job.first + i);
	}

	struct vm_state state;
	if (!r && !vm_pause(vm))
		r = error_set(ESHUTDOWN, "the VM is shutting down");
	else if (!r && ((r = fork_share_inherited(vm)) != 0 || (r = vm_state_capture(vm, &state)) != 0))
		vm_resume(vm);
	if (r) {
		fork_job_close(&job);
		return r;
	}
	job.state = &state;
	job.generation = ABI_ID_GENERATION(atomic_load(&vm->id_value)) + 1;
	struct fork_collect fc = {.ready_open = true, .report_open = template, .maker_done = !template};
	pid_t template_pid = 0;
	fflush(NULL); /* buffered output must not be written twice */
	/* The fault thread must be between faults: hold the domain lock across the forks. */
	if ((r = guest_memory_hold_faults(&vm->mem)) != 0) {
		vm_state_free(&state);
		vm_resume(vm);
		fork_job_close(&job);
		return r;
	}
	pthread_mutex_lock(&fork_reap.lock);
	if (template) {
		template_pid = fork();
		if (template_pid == 0)
			fork_template_main(&job);
		if (template_pid < 0)
			r = error_set_errno(errno, "cannot fork the template of the children");
		fork_reap.template_pid = template_pid > 0 ? template_pid : 0;
		fork_reap.template_reaped = false;
	} else {
		int err;
		unsigned made = fork_make_children(&job, res, &err);
		if (made < count) {
			fc.failed_at = job.first + made;
			fc.fail_errno = err;
		}
	}
	pthread_mutex_unlock(&fork_reap.lock);
	guest_memory_release_faults(&vm->mem);
	vm_state_free(&state);
	vm_resume(vm);
	res->pause_ns = clock_monotonic_ns() - t0;

	fork_close(&job.ready_wr);
	fork_close(&job.report_wr);
	if (template_pid < 0) {
		fork_job_close(&job); /* nothing made: the generation stays */
		return r;
	}
	vm_fork_reap(vm, ops);
	fork_collect(vm, res, &fc, job.report_rd, job.ready_rd, job.generation);
	fork_job_close(&job);
	fork_settle(res, &fc, name);
	/* Never give again a number a child may have: with the template gone unheard, any. */
	unsigned last = fc.maker_done ? 0 : job.first + count - 1;
	for (unsigned i = 0; i < count; i++)
		if (res->child[i].pid && res->child[i].index > last)
			last = res->child[i].index;
	if (last > vm->children_made)
		vm->children_made = last;
	res->ready_ns = clock_monotonic_ns() - t0;
	if (!res->made)
		return error_set(fc.fail_errno ? fc.fail_errno : ECHILD, "no child made: %s", res->child[0].error);
	return 0;
}

static void *fork_reaper_main(void *arg)
{
	struct vm *vm = arg;
	for (;;) {
		int st;
		pid_t pid = waitpid(-getpgrp(), &st, 0);
		if (pid < 0 && errno == EINTR)
			continue;
		pthread_mutex_lock(&fork_reap.lock);
		if (pid < 0) {
			/* No child left when that wait began; a fork since then (made holding the
			 * lock) may have found this thread running and started none: look again. */
			pid = waitpid(-getpgrp(), &st, WNOHANG);
			if (pid < 0) {
				fork_reap.running = false;
				pthread_mutex_unlock(&fork_reap.lock);
				return NULL;
			}
			if (pid == 0) {
				pthread_mutex_unlock(&fork_reap.lock);
				continue;
			}
		}
		bool template = pid == fork_reap.template_pid;
		const struct fork_ops *ops = fork_reap.ops;
		if (template) {
			fork_reap.template_pid = 0;
			fork_reap.template_status = st;
			fork_reap.template_reaped = true;
			pthread_cond_broadcast(&fork_reap.template_cond);
		}
		pthread_mutex_unlock(&fork_reap.lock);
		int status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
		if (!template)
			ops->child_exit(vm, pid, status);
	}
}

void vm_fork_reap(struct vm *vm, const struct fork_ops *ops)
{
	pthread_mutex_lock(&fork_reap.lock);
	fork_reap.ops = ops;
	if (!fork_reap.running) {
		pthread_attr_t a;
		pthread_t t;
		pthread_attr_init(&a);
		pthread_attr_setdetachstate(&a, PTHREAD_CREATE_DETACHED);
		fork_reap.running = pthread_create(&t, &a, fork_reaper_main, vm) == 0;
		pthread_attr_destroy(&a);
	}
	pthread_mutex_unlock(&fork_reap.lock);
}

/*
 * The fork reaper (vmm/lifecycle/fork.c) without KVM: which children it takes and
 * announces. Forked VMs live in the VMM's process group; a helper started in a group of
 * its own (the RADOS helper) belongs to whoever started it.
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"
#include "vmm/clock.h"
#include "vmm/lifecycle/fork.h"

#define EXIT_WAIT_MS 3000

static struct {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	pid_t pid[8];
	int status[8];
	unsigned n;
} heard = {.lock = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER};

static void record_exit(struct vm *vm, pid_t pid, int status)
{
	(void)vm;
	pthread_mutex_lock(&heard.lock);
	if (heard.n < 8) {
		heard.pid[heard.n] = pid;
		heard.status[heard.n] = status;
		heard.n++;
	}
	pthread_cond_broadcast(&heard.cond);
	pthread_mutex_unlock(&heard.lock);
}

static const struct fork_ops recording_ops = {.child_exit = record_exit};

/* A child that exits with @status, in our process group (@own_group false) or its own. */
static pid_t start_child(int status, bool own_group)
{
	pid_t pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		if (own_group)
			setpgid(0, 0);
		_exit(status);
	}
	if (own_group)
		setpgid(pid, pid); /* either side may run first; both ask for the same */
	return pid;
}

/* Wait until the reaper has announced @n children, or EXIT_WAIT_MS. */
static unsigned wait_heard(unsigned n)
{
	uint64_t deadline = clock_monotonic_ns() + (uint64_t)EXIT_WAIT_MS * 1000000u;
	pthread_mutex_lock(&heard.lock);
	while (heard.n < n && clock_monotonic_ns() < deadline) {
		struct timespec t;
		clock_gettime(CLOCK_REALTIME, &t);
		t.tv_nsec += 20000000;
		if (t.tv_nsec >= 1000000000) {
			t.tv_sec++;
			t.tv_nsec -= 1000000000;
		}
		pthread_cond_timedwait(&heard.cond, &heard.lock, &t);
	}
	unsigned got = heard.n;
	pthread_mutex_unlock(&heard.lock);
	return got;
}

/* A child of the VMM's group is reaped and announced with its status; a helper in a
 * group of its own is neither: its starter still reaps it, with its own status. */
START_TEST(only_children_of_the_process_group_are_taken)
{
	pid_t helper = start_child(7, true);
	/* The helper is a zombie before the reaper starts, the first thing it could take. */
	siginfo_t info = {0};
	ck_assert_int_eq(waitid(P_PID, (id_t)helper, &info, WEXITED | WNOWAIT), 0);
	pid_t child = start_child(3, false);
	vm_fork_reap(NULL, &recording_ops); /* as vm_fork calls it: once the children exist */
	ck_assert_uint_eq(wait_heard(1), 1);
	ck_assert_int_eq(heard.pid[0], child);
	ck_assert_int_eq(heard.status[0], 3);
	int st = 0;
	ck_assert_int_eq(waitpid(helper, &st, 0), helper);
	ck_assert(WIFEXITED(st));
	ck_assert_int_eq(WEXITSTATUS(st), 7);
	ck_assert_uint_eq(wait_heard(2), 1);
}
END_TEST

/* The reaper that found no child left ends, and the next fork's call starts it again. */
START_TEST(the_reaper_starts_again_for_later_children)
{
	pid_t first = start_child(1, false);
	vm_fork_reap(NULL, &recording_ops);
	ck_assert_uint_eq(wait_heard(1), 1);
	ck_assert_int_eq(heard.pid[0], first);
	pid_t second = start_child(2, false);
	vm_fork_reap(NULL, &recording_ops);
	ck_assert_uint_eq(wait_heard(2), 2);
	ck_assert_int_eq(heard.pid[1], second);
	ck_assert_int_eq(heard.status[1], 2);
}
END_TEST

Suite *fork_suite(void)
{
	Suite *s = suite_create("fork");
	TCase *tc = tcase_create("reaper");
	HARNESS_ADD_TEST(tc, only_children_of_the_process_group_are_taken);
	HARNESS_ADD_TEST(tc, the_reaper_starts_again_for_later_children);
	suite_add_tcase(s, tc);
	return s;
}

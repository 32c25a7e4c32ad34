/* The fault thread's logic, fed by a fake fault source: a pipe of struct uffd_msg. */
#include <errno.h>
#include <pthread.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"
#include "vmm/error.h"
#include "vmm/memory/fault_thread.h"

/* Background work: each call is one step, until the budget is spent. */
struct idle_work {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	unsigned budget, calls;
};

struct recorder {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	struct fault_event ev[16];
	unsigned n;
	int fail_at;      /* 1-based event number to fail, 0 = never */
	int error;        /* errno given to on_error */
	char message[256];
	unsigned errors;
	struct idle_work *work; /* for the idle function, which gets the same argument */
};

static int record(void *arg, const struct fault_event *ev)
{
	struct recorder *r = arg;
	pthread_mutex_lock(&r->lock);
	if (r->n < 16)
		r->ev[r->n] = *ev;
	r->n++;
	int fail = r->fail_at && (int)r->n == r->fail_at;
	pthread_cond_broadcast(&r->cond);
	pthread_mutex_unlock(&r->lock);
	return fail ? error_set(EIO, "pager for object 3 failed at offset 0x5000") : 0;
}

static void on_error(void *arg, int err, const char *message)
{
	struct recorder *r = arg;
	pthread_mutex_lock(&r->lock);
	r->error = err;
	strncpy(r->message, message, sizeof(r->message) - 1);
	r->errors++;
	pthread_cond_broadcast(&r->cond);
	pthread_mutex_unlock(&r->lock);
}

static void wait_for(struct recorder *r, unsigned n, unsigned errors)
{
	pthread_mutex_lock(&r->lock);
	while (r->n < n || r->errors < errors)
		pthread_cond_wait(&r->cond, &r->lock);
	pthread_mutex_unlock(&r->lock);
}

static struct uffd_msg fault_msg(uint64_t addr, uint64_t flags)
{
	struct uffd_msg m;
	memset(&m, 0, sizeof(m));
	m.event = UFFD_EVENT_PAGEFAULT;
	m.arg.pagefault.address = addr;
	m.arg.pagefault.flags = flags;
	return m;
}

START_TEST(faults_reach_the_handler_in_order_with_their_access)
{
	int p[2];
	ck_assert_int_eq(pipe(p), 0);
	struct recorder r = {.lock = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER};
	struct fault_thread ft;
	ck_assert_int_eq(fault_thread_start(&ft, p[0], record, NULL, on_error, &r), 0);
	struct uffd_msg m[3] = {fault_msg(0x7f0000001234, 0), fault_msg(0x7f0000002000, UFFD_PAGEFAULT_FLAG_WRITE),
				fault_msg(0x7f0000003000, UFFD_PAGEFAULT_FLAG_WRITE | UFFD_PAGEFAULT_FLAG_WP)};
	ck_assert_int_eq(write(p[1], m, sizeof(m)), sizeof(m));
	wait_for(&r, 3, 0);
	ck_assert_uint_eq(r.ev[0].address, 0x7f0000001000); /* page aligned */
	ck_assert(!r.ev[0].write && !r.ev[0].wp);
	ck_assert(r.ev[1].write && !r.ev[1].wp);
	ck_assert(r.ev[2].write && r.ev[2].wp);
	fault_thread_stop(&ft);
	ck_assert_uint_eq(ft.events, 3);
	ck_assert_uint_eq(r.errors, 0);
	close(p[0]);
	close(p[1]);
}
END_TEST

START_TEST(other_events_are_counted_not_handled)
{
	int p[2];
	ck_assert_int_eq(pipe(p), 0);
	struct recorder r = {.lock = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER};
	struct fault_thread ft;
	ck_assert_int_eq(fault_thread_start(&ft, p[0], record, NULL, on_error, &r), 0);
	struct uffd_msg m[2] = {fault_msg(0x1000, 0), fault_msg(0x2000, 0)};
	m[0].event = UFFD_EVENT_REMOVE;
	ck_assert_int_eq(write(p[1], m, sizeof(m)), sizeof(m));
	wait_for(&r, 1, 0);
	fault_thread_stop(&ft);
	ck_assert_uint_eq(r.n, 1);
	ck_assert_uint_eq(r.ev[0].address, 0x2000);
	ck_assert_uint_eq(ft.other_events, 1);
	close(p[0]);
	close(p[1]);
}
END_TEST

START_TEST(handler_failure_stops_the_thread_and_reports)
{
	int p[2];
	ck_assert_int_eq(pipe(p), 0);
	struct recorder r = {.lock = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER};
	r.fail_at = 2;
	struct fault_thread ft;
	ck_assert_int_eq(fault_thread_start(&ft, p[0], record, NULL, on_error, &r), 0);
	struct uffd_msg m[3] = {fault_msg(0x1000, 0), fault_msg(0x5000, 0), fault_msg(0x9000, 0)};
	ck_assert_int_eq(write(p[1], m, sizeof(m)), sizeof(m));
	wait_for(&r, 2, 1);
	fault_thread_stop(&ft);
	ck_assert_uint_eq(r.n, 2); /* the third fault is never handled */
	ck_assert_int_eq(r.error, EIO);
	ck_assert_str_eq(r.message, "pager for object 3 failed at offset 0x5000");
	close(p[0]);
	close(p[1]);
}
END_TEST

START_TEST(stop_returns_promptly_with_no_events)
{
	int p[2];
	ck_assert_int_eq(pipe(p), 0);
	struct recorder r = {.lock = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER};
	struct fault_thread ft;
	ck_assert_int_eq(fault_thread_start(&ft, p[0], record, NULL, on_error, &r), 0);
	fault_thread_stop(&ft);
	fault_thread_stop(&ft); /* idempotent */
	ck_assert_uint_eq(r.n, 0);
	ck_assert_uint_eq(r.errors, 0);
	close(p[0]);
	close(p[1]);
}
END_TEST

static bool idle_step(void *arg)
{
	struct idle_work *w = arg;
	pthread_mutex_lock(&w->lock);
	w->calls++;
	bool more = w->budget > 0 && --w->budget > 0;
	pthread_cond_broadcast(&w->cond);
	pthread_mutex_unlock(&w->lock);
	return more;
}

static void wait_calls(struct idle_work *w, unsigned calls)
{
	pthread_mutex_lock(&w->lock);
	while (w->calls < calls)
		pthread_cond_wait(&w->cond, &w->lock);
	pthread_mutex_unlock(&w->lock);
}

static bool idle_through(void *arg)
{
	return idle_step(((struct recorder *)arg)->work);
}

START_TEST(idle_work_runs_until_done_and_again_after_a_wake)
{
	int p[2];
	ck_assert_int_eq(pipe(p), 0);
	struct recorder r = {.lock = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER};
	struct idle_work w = {.lock = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER, .budget = 3};
	r.work = &w;
	struct fault_thread ft;
	ck_assert_int_eq(fault_thread_start(&ft, p[0], record, idle_through, on_error, &r), 0);
	wait_calls(&w, 3); /* three steps, the last saying it is done */
	struct uffd_msg m = fault_msg(0x5000, 0);
	ck_assert_int_eq(write(p[1], &m, sizeof(m)), sizeof(m));
	wait_for(&r, 1, 0); /* faults are still served */
	pthread_mutex_lock(&w.lock);
	w.budget = 2;
	pthread_mutex_unlock(&w.lock);
	fault_thread_wake(&ft);
	wait_calls(&w, 5);
	fault_thread_stop(&ft);
	ck_assert_uint_eq(w.calls, 5); /* done means not called again until woken */
	ck_assert_uint_eq(r.errors, 0);
	close(p[0]);
	close(p[1]);
}
END_TEST

/* Watched fds (a pager's event fd): fd 0 is drained and watched on; fd 1 is left readable
 * and given up (1); fd 2 fails the thread. */
struct watcher {
	struct recorder *r;
	int fds[3];
	unsigned calls[3];
};

static int watch(void *arg, unsigned index)
{
	struct watcher *w = arg;
	pthread_mutex_lock(&w->r->lock);
	w->calls[index]++;
	w->r->n++;
	pthread_cond_broadcast(&w->r->cond);
	pthread_mutex_unlock(&w->r->lock);
	char c;
	if (index == 0)
		ck_assert_int_eq(read(w->fds[0], &c, 1), 1);
	if (index == 2)
		return error_set(EIO, "the external pager sent a lock request outside the object");
	return index == 1;
}

static int record_watcher(void *arg, const struct fault_event *ev)
{
	return record(((struct watcher *)arg)->r, ev);
}

static void on_error_watcher(void *arg, int err, const char *message)
{
	on_error(((struct watcher *)arg)->r, err, message);
}

START_TEST(watched_fds_reach_the_watch_function_until_it_gives_them_up_or_fails)
{
	int p[2], q[3][2];
	ck_assert_int_eq(pipe(p), 0);
	struct recorder r = {.lock = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER};
	struct watcher w = {.r = &r};
	for (int i = 0; i < 3; i++) {
		ck_assert_int_eq(pipe(q[i]), 0);
		w.fds[i] = q[i][0];
	}
	struct fault_thread ft;
	ck_assert_int_eq(fault_thread_start_watching(&ft, p[0], record_watcher, NULL, on_error_watcher, &w, w.fds, 3,
						     watch),
			 0);
	ck_assert_int_eq(write(q[0][1], "a", 1), 1);
	wait_for(&r, 1, 0);
	ck_assert_uint_eq(w.calls[0], 1);
	ck_assert_int_eq(write(q[1][1], "x", 1), 1);
	wait_for(&r, 2, 0);
	ck_assert_uint_eq(w.calls[1], 1);
	/* Still readable, but given up: the fault comes next, not the fd again. */
	struct uffd_msg m = fault_msg(0x5000, 0);
	ck_assert_int_eq(write(p[1], &m, sizeof(m)), sizeof(m));
	wait_for(&r, 3, 0);
	ck_assert_uint_eq(w.calls[1], 1);
	ck_assert_uint_eq(r.ev[2].address, 0x5000); /* the recorder numbers watch calls too */
	ck_assert_int_eq(write(q[2][1], "f", 1), 1);
	wait_for(&r, 4, 1);
	ck_assert_int_eq(r.error, EIO);
	ck_assert_str_eq(r.message, "the external pager sent a lock request outside the object");
	fault_thread_stop(&ft);
	for (int i = 0; i < 3; i++) {
		close(q[i][0]);
		close(q[i][1]);
	}
	close(p[0]);
	close(p[1]);
}
END_TEST

/* Indexes in turn: each watch drains its fd and gives it up when asked to. */
struct reuser {
	struct recorder *r;
	int fd[FAULT_THREAD_WATCH_MAX];
	unsigned calls[FAULT_THREAD_WATCH_MAX];
	bool give_up[FAULT_THREAD_WATCH_MAX];
};

static int reuse_watch(void *arg, unsigned index)
{
	struct reuser *u = arg;
	char c;
	ck_assert_int_eq(read(u->fd[index], &c, 1), 1);
	pthread_mutex_lock(&u->r->lock);
	u->calls[index]++;
	u->r->n++;
	pthread_cond_broadcast(&u->r->cond);
	pthread_mutex_unlock(&u->r->lock);
	return u->give_up[index];
}

static int record_reuser(void *arg, const struct fault_event *ev)
{
	return record(((struct reuser *)arg)->r, ev);
}

static void on_error_reuser(void *arg, int err, const char *message)
{
	on_error(((struct reuser *)arg)->r, err, message);
}

/* A VM mapping and unmapping coherent objects for as long as it runs watches a new event
 * fd each time: an index unwatched or given up is given to the next, and the full table
 * says so. */
START_TEST(watch_indexes_unwatched_or_given_up_are_given_again)
{
	int p[2], q[FAULT_THREAD_WATCH_MAX + 2][2];
	ck_assert_int_eq(pipe(p), 0);
	struct recorder r = {.lock = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER};
	struct reuser u = {.r = &r};
	struct fault_thread ft;
	ck_assert_int_eq(fault_thread_start_watching(&ft, p[0], record_reuser, NULL, on_error_reuser, &u, NULL, 0,
						     reuse_watch),
			 0);
	for (int i = 0; i < FAULT_THREAD_WATCH_MAX + 2; i++)
		ck_assert_int_eq(pipe(q[i]), 0);
	for (int i = 0; i < FAULT_THREAD_WATCH_MAX; i++) {
		u.fd[i] = q[i][0];
		ck_assert_int_eq(fault_thread_watch(&ft, q[i][0]), i);
	}
	ck_assert_int_eq(fault_thread_watch(&ft, q[FAULT_THREAD_WATCH_MAX][0]), -ENOSPC);
	/* Index 3 unwatched: the next fd gets it, and its events reach the watch as index 3. */
	fault_thread_unwatch(&ft, 3);
	u.fd[3] = q[FAULT_THREAD_WATCH_MAX][0];
	ck_assert_int_eq(fault_thread_watch(&ft, q[FAULT_THREAD_WATCH_MAX][0]), 3);
	ck_assert_int_eq(write(q[FAULT_THREAD_WATCH_MAX][1], "a", 1), 1);
	wait_for(&r, 1, 0);
	ck_assert_uint_eq(u.calls[3], 1);
	/* Index 5 given up by its watch: the next fd gets it, once the thread let it go (after
	 * the watch function returned). */
	u.give_up[5] = true;
	ck_assert_int_eq(write(q[5][1], "b", 1), 1);
	wait_for(&r, 2, 0);
	bool free = false;
	for (int i = 0; i < 5000 && !free; i++) {
		pthread_mutex_lock(&ft.watch_lock);
		free = ft.watch_fd[5] < 0;
		pthread_mutex_unlock(&ft.watch_lock);
		struct timespec t = {0, 1000000L};
		nanosleep(&t, NULL);
	}
	ck_assert(free);
	u.give_up[5] = false;
	u.fd[5] = q[FAULT_THREAD_WATCH_MAX + 1][0];
	ck_assert_int_eq(fault_thread_watch(&ft, q[FAULT_THREAD_WATCH_MAX + 1][0]), 5);
	ck_assert_int_eq(write(q[FAULT_THREAD_WATCH_MAX + 1][1], "c", 1), 1);
	wait_for(&r, 3, 0);
	ck_assert_uint_eq(u.calls[5], 2);
	ck_assert_uint_eq(r.errors, 0);
	fault_thread_stop(&ft);
	for (int i = 0; i < FAULT_THREAD_WATCH_MAX + 2; i++) {
		close(q[i][0]);
		close(q[i][1]);
	}
	close(p[0]);
	close(p[1]);
}
END_TEST

Suite *fault_thread_suite(void)
{
	Suite *s = suite_create("fault_thread");
	TCase *tc = tcase_create("fake_source");
	tcase_set_timeout(tc, 30);
	HARNESS_ADD_TEST(tc, faults_reach_the_handler_in_order_with_their_access);
	HARNESS_ADD_TEST(tc, idle_work_runs_until_done_and_again_after_a_wake);
	HARNESS_ADD_TEST(tc, other_events_are_counted_not_handled);
	HARNESS_ADD_TEST(tc, handler_failure_stops_the_thread_and_reports);
	HARNESS_ADD_TEST(tc, stop_returns_promptly_with_no_events);
	HARNESS_ADD_TEST(tc, watched_fds_reach_the_watch_function_until_it_gives_them_up_or_fails);
	HARNESS_ADD_TEST(tc, watch_indexes_unwatched_or_given_up_are_given_again);
	suite_add_tcase(s, tc);
	return s;
}

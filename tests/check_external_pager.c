/*
 * The external pager's client against a fake server (tests/fake_pager.h): every exchange
 * ends by its deadline however the server paces its bytes, a cancel ends a waiting request
 * at once, and nothing past the size the server announced is asked for or believed. Then
 * version 2 against scripted servers: data_unlock granted, refused, never answered; lock
 * requests inside a request, outside any exchange, during a data return; hostile messages.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdint.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "fake_pager.h"
#include "harness.h"
#include "mmu/pager.h"
#include "mmu/vm_domain.h"
#include "mmu/vm_fault.h"
#include "mmu/vm_map.h"
#include "mmu/vm_page.h"
#include "mmu/vm_object.h"
#include "vm_sandbox.h"
#include "pagers/external_pager.h"

#define PS VM_PAGE_SIZE
#define GUARD_S 20 /* a request still waiting this long has hung: not a timing bound */

static struct fake_pager server;
static struct pager *pager;
static int cancel_fd = -1;
static struct vm_sandbox *sb;

static void setup(void)
{
	cancel_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	ck_assert_int_ge(cancel_fd, 0);
	pager = NULL;
	ck_assert_int_eq(vm_sandbox_create(0x100000, 64 * PS, 0, &sb), 0);
}

/* The version-2 tests' (scripted servers, released by script_finish). */
static void v2_teardown(void)
{
	vm_sandbox_destroy(sb);
	if (pager)
		pager_release(pager);
	close(cancel_fd);
}

static void teardown(void)
{
	v2_teardown();
	fake_pager_stop(&server);
}

/* Start the fake server in @mode announcing @size bytes and open the client on it. */
static void open_on(enum fake_pager_mode mode, uint64_t size, unsigned timeout_ms)
{
	fake_pager_start(&server, mode, size);
	struct external_pager_config cfg = {.timeout_ms = timeout_ms, .cancel_fd = cancel_fd};
	struct pager_args args = {.fd = server.fd, .source = &cfg};
	ck_assert_int_eq(pager_open(&external_pager_ops, &args, &pager), 0);
	ck_assert_uint_eq(pager->size, size);
}

struct request {
	vm_offset_t offset;
	int result;
	_Atomic bool done;
};

static void *request_main(void *arg)
{
	struct request *rq = arg;
	void *mo;
	struct pager_reply reply = {0};
	rq->result = pager_create(pager, PS, &mo);
	if (!rq->result)
		rq->result = pager_data_request(pager, mo, rq->offset, PS, VM_PROT_READ, &reply);
	rq->done = true;
	return NULL;
}

/* One data_request of the first page from another thread; @during runs while it waits.
 * Its result, or a failed test when it is still waiting after GUARD_S seconds. */
static int request_with(void (*during)(void))
{
	struct request rq = {.offset = 0};
	pthread_t t;
	ck_assert_int_eq(pthread_create(&t, NULL, request_main, &rq), 0);
	if (during)
		during();
	struct timespec guard;
	clock_gettime(CLOCK_REALTIME, &guard);
	guard.tv_sec += GUARD_S;
	ck_assert_msg(pthread_timedjoin_np(t, NULL, &guard) == 0, "the request still waits after %d s", GUARD_S);
	return rq.result;
}

static void cancel(void)
{
	/* Let the request reach its wait first (a cancel before it is tested below). */
	while (atomic_load(&server.requests) == 0)
		usleep(1000);
	uint64_t one = 1;
	ck_assert_int_eq(write(cancel_fd, &one, sizeof(one)), (ssize_t)sizeof(one));
}

START_TEST(test_a_server_that_drips_its_answer_fails_the_request_by_its_deadline)
{
	/* One byte every 200 ms keeps every single wait short: only a deadline for the whole
	 * exchange ends it (the answer would take 14 minutes). */
	open_on(FAKE_PAGER_DRIP, 16 * PS, 1000);
	ck_assert_int_eq(request_with(NULL), -ETIMEDOUT);
	ck_assert_ptr_nonnull(strstr(external_pager_failure(pager), "did not finish its answer within 1000 ms"));
}
END_TEST

START_TEST(test_a_cancel_ends_a_waiting_request_at_once)
{
	/* The deadline is far beyond the guard: only the cancel can end the wait in time. */
	open_on(FAKE_PAGER_STALL, 16 * PS, 600000);
	ck_assert_int_eq(request_with(cancel), -ECANCELED);
	ck_assert_str_eq(external_pager_failure(pager), "the VM stopped while it waited for the external pager");
	/* Out of step with the server now: later calls fail without waiting. */
	ck_assert_int_eq(request_with(NULL), -EIO);
}
END_TEST

START_TEST(test_a_cancel_before_a_request_sends_nothing_and_keeps_the_connection)
{
	open_on(FAKE_PAGER_SERVE, 16 * PS, 600000);
	uint64_t one = 1;
	ck_assert_int_eq(write(cancel_fd, &one, sizeof(one)), (ssize_t)sizeof(one));
	ck_assert_int_eq(request_with(NULL), -ECANCELED);
	ck_assert_str_eq(external_pager_failure(pager), "");
	ck_assert_int_eq(read(cancel_fd, &one, sizeof(one)), (ssize_t)sizeof(one));
	/* The server saw nothing of the cancelled request: the next one is answered. */
	struct vm_object *obj;
	ck_assert_int_eq(vm_object_create(sb->dom, pager, 0, &obj), KERN_SUCCESS);
	uint8_t c = 0;
	ck_assert_int_eq(vm_object_read(obj, 3 * PS, &c, 1), KERN_SUCCESS);
	ck_assert_int_eq(c, fake_pager_byte(3 * PS));
	ck_assert_uint_eq(atomic_load(&server.requests), 1);
	vm_object_deallocate(obj);
}
END_TEST

START_TEST(test_an_object_larger_than_the_server_announced_is_refused)
{
	open_on(FAKE_PAGER_SERVE, PS, 0);
	struct vm_object *obj;
	ck_assert_int_ne(vm_object_create(sb->dom, pager, 64 * PS, &obj), KERN_SUCCESS);
	ck_assert_int_eq(vm_object_create(sb->dom, pager, 0, &obj), KERN_SUCCESS);
	ck_assert_uint_eq(obj->size, PS);
	vm_object_deallocate(obj);
}
END_TEST

START_TEST(test_nothing_past_the_announced_size_is_asked_for_or_believed)
{
	/*
	 * Server: 1 page.  Request: pages 0..3.
	 *   [0]  asked and provided
	 *   [1..3] never asked: they fail (no zeros the server never gave)
	 */
	open_on(FAKE_PAGER_SERVE, PS, 0);
	struct vm_object *obj;
	ck_assert_int_eq(vm_object_create(sb->dom, pager, 0, &obj), KERN_SUCCESS);
	struct pager_reply reply = {.object = obj, .first = 0, .end = 1, .want = 0};
	ck_assert_int_eq(pager_data_request(pager, obj->mo, 0, 4 * PS, VM_PROT_READ, &reply), 0);
	ck_assert_uint_eq(atomic_load(&server.last_length), PS);
	ck_assert_uint_eq(reply.provided, 1);
	ck_assert_uint_eq(reply.unavailable, 0);
	ck_assert_int_eq(pager_data_request(pager, obj->mo, 2 * PS, PS, VM_PROT_READ, &reply), 0);
	ck_assert_uint_eq(atomic_load(&server.requests), 1);
	static const uint8_t page[PS];
	ck_assert_int_eq(pager_data_return(pager, obj->mo, PS, page, PS), -EINVAL);
	ck_assert_uint_eq(atomic_load(&server.returns), 0);
	vm_object_deallocate(obj);
}
END_TEST

/*
 * Version 2 against scripted servers: each test's script runs in a thread on the server's
 * end of a socketpair, saying exactly what a server would, and notes in `why` the first
 * thing the client did that it did not expect. The client runs in the test's thread on an
 * object of OBJ_PAGES pages mapped shared at page 0 of the sandbox.
 */
#define OBJ_PAGES 16u
#define V2_TIMEOUT_MS 300

struct script {
	int fd;                    /* the server's end */
	int go[2];                 /* the test says "go on" to the script (script_go) */
	bool v2;                   /* HELLO_REPLY says V2 */
	int variant;               /* which misbehaviour (loop tests) */
	bool (*run)(struct script *sc);
	bool ok;
	char why[160];
	uint8_t data[EXTPAGER_MAX_DATA];
	pthread_t thread;
};

static struct script sc;
static struct vm_object *v2obj;

static bool sc_fail(struct script *c, const char *what, const struct extpager_msg *m)
{
	snprintf(c->why, sizeof(c->why), "%s (got type %u offset %llu length %llu flags %#x)", what,
		 m ? m->type : 0, m ? (unsigned long long)m->offset : 0, m ? (unsigned long long)m->length : 0,
		 m ? m->flags : 0);
	return false;
}

/* All @n bytes within GUARD_S, or false. */
static bool sc_io(struct script *c, void *p, size_t n, bool out)
{
	uint8_t *b = p;
	while (n) {
		struct pollfd pf = {c->fd, out ? POLLOUT : POLLIN, 0};
		if (poll(&pf, 1, GUARD_S * 1000) <= 0)
			return false;
		ssize_t r = out ? send(c->fd, b, n, MSG_NOSIGNAL) : recv(c->fd, b, n, 0);
		if (r <= 0)
			return false;
		b += r;
		n -= (size_t)r;
	}
	return true;
}

static bool sc_send(struct script *c, uint32_t type, uint64_t offset, uint64_t length, int32_t error, uint32_t flags)
{
	struct extpager_msg m = {EXTPAGER_MAGIC, type, offset, length, error, flags};
	return sc_io(c, &m, sizeof(m), true);
}

/* DATA_PROVIDED of [offset, offset+length) locked against @lock, page i holding 'a' + i. */
static bool sc_provide(struct script *c, uint64_t offset, uint64_t length, uint32_t lock)
{
	for (uint64_t i = 0; i < length; i++)
		c->data[i] = fake_pager_byte(offset + i);
	return sc_send(c, EXTPAGER_DATA_PROVIDED, offset, length, 0, lock) && sc_io(c, c->data, length, true);
}

/* The next message, which must be of @type (its data, if any, in c->data). */
static bool sc_expect(struct script *c, uint32_t type, struct extpager_msg *m)
{
	if (!sc_io(c, m, sizeof(*m), false))
		return sc_fail(c, "the client sent nothing more", NULL);
	if (m->type == EXTPAGER_DATA_RETURN && (m->length > EXTPAGER_MAX_DATA || !sc_io(c, c->data, m->length, false)))
		return sc_fail(c, "a short DATA_RETURN", m);
	if (m->type != type) {
		char what[48];
		snprintf(what, sizeof(what), "expected type %u", type);
		return sc_fail(c, what, m);
	}
	return true;
}

static bool sc_hello(struct script *c)
{
	struct extpager_msg m;
	if (!sc_expect(c, EXTPAGER_HELLO, &m))
		return false;
	if (m.flags != EXTPAGER_VERSION)
		return sc_fail(c, "HELLO not of version 2", &m);
	return sc_send(c, EXTPAGER_HELLO_REPLY, 0, OBJ_PAGES * PS, 0, EXTPAGER_WRITABLE | (c->v2 ? EXTPAGER_V2 : 0));
}

/* Answer the next DATA_REQUEST with its pages locked against @lock. */
static bool sc_serve(struct script *c, uint32_t lock)
{
	struct extpager_msg m;
	return sc_expect(c, EXTPAGER_DATA_REQUEST, &m) && sc_provide(c, m.offset, m.length, lock) &&
	       sc_send(c, EXTPAGER_REPLY_END, 0, 0, 0, 0);
}

/* Wait for the test's go (script_go). */
static bool sc_wait_go(struct script *c)
{
	struct pollfd pf = {c->go[0], POLLIN, 0};
	char b;
	return poll(&pf, 1, GUARD_S * 1000) == 1 && read(c->go[0], &b, 1) == 1;
}

/* The client's LOCK_COMPLETED for [offset, offset+length), error @error. */
static bool sc_completed(struct script *c, uint64_t offset, uint64_t length, int32_t error)
{
	struct extpager_msg m;
	if (!sc_expect(c, EXTPAGER_LOCK_COMPLETED, &m))
		return false;
	if (m.offset != offset || m.length != length || m.error != error)
		return sc_fail(c, "LOCK_COMPLETED for something else", &m);
	return true;
}

/* A DATA_RETURN of page @page sent as part of a lock request, its first byte @byte. */
static bool sc_locked_return(struct script *c, unsigned page, uint8_t byte)
{
	struct extpager_msg m;
	if (!sc_expect(c, EXTPAGER_DATA_RETURN, &m))
		return false;
	if (m.offset != page * PS || m.length != PS || m.flags != EXTPAGER_RETURN_LOCKED || c->data[0] != byte)
		return sc_fail(c, "not the locked return of the page written", &m);
	return true;
}

static void *sc_main(void *arg)
{
	struct script *c = arg;
	c->ok = sc_hello(c) && c->run(c);
	/* Keep the connection until the client lets go, so that it fails by its own rules. */
	uint8_t b[64];
	struct pollfd pf = {c->fd, POLLIN, 0};
	while (poll(&pf, 1, GUARD_S * 1000) == 1 && recv(c->fd, b, sizeof(b), 0) > 0)
		;
	return NULL;
}

/* Start @run as the server (version 2 unless @v1) and open the client on it, its object
 * mapped shared at page 0. */
static void script_start(bool (*run)(struct script *), bool v1, int variant)
{
	memset(&sc, 0, sizeof(sc));
	sc.run = run;
	sc.v2 = !v1;
	sc.variant = variant;
	int sv[2];
	ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
	ck_assert_int_eq(pipe2(sc.go, O_CLOEXEC), 0);
	sc.fd = sv[1];
	ck_assert_int_eq(pthread_create(&sc.thread, NULL, sc_main, &sc), 0);
	struct external_pager_config cfg = {.timeout_ms = V2_TIMEOUT_MS, .cancel_fd = cancel_fd};
	struct pager_args args = {.fd = sv[0], .source = &cfg};
	ck_assert_int_eq(pager_open(&external_pager_ops, &args, &pager), 0);
	close(sv[0]);
	ck_assert_int_eq(vm_object_create(sb->dom, pager, 0, &v2obj), KERN_SUCCESS);
	vm_addr_t a = 0x100000;
	ck_assert_int_eq(vm_map_enter(sb->map, &a, OBJ_PAGES * PS, false, v2obj, 0, false, VM_PROT_DEFAULT, VM_PROT_ALL,
				      VM_INHERIT_SHARE),
			 KERN_SUCCESS);
}

static void script_go(void)
{
	ck_assert_int_eq(write(sc.go[1], "g", 1), 1);
}

/* Let go of the client and wait for the script: it must have found what it expected. */
static void script_finish(void)
{
	ck_assert_int_eq(vm_map_deallocate(sb->map, 0x100000, OBJ_PAGES * PS), KERN_SUCCESS);
	vm_object_deallocate(v2obj);
	v2obj = NULL;
	pager_release(pager);
	pager = NULL;
	pthread_join(sc.thread, NULL);
	close(sc.fd);
	close(sc.go[0]);
	close(sc.go[1]);
	ck_assert_msg(sc.ok, "the server saw: %s", sc.why);
}

static vm_addr_t page_at(unsigned page)
{
	return 0x100000 + (vm_addr_t)page * PS;
}

static uint8_t v2_read(unsigned page)
{
	uint8_t b = 0;
	ck_assert_int_eq(vm_sandbox_read(sb, page_at(page), &b, 1), KERN_SUCCESS);
	return b;
}

/* Page 2 read (supplied read-only), then written: DATA_UNLOCK, granted by a LOCK_REQUEST. */
static bool run_grant(struct script *c)
{
	struct extpager_msg m;
	if (!sc_serve(c, VM_PROT_WRITE) || !sc_expect(c, EXTPAGER_DATA_UNLOCK, &m))
		return false;
	if (m.offset != 2 * PS || m.length != PS || !(m.flags & VM_PROT_WRITE))
		return sc_fail(c, "DATA_UNLOCK of something else", &m);
	return sc_send(c, EXTPAGER_LOCK_REQUEST, 2 * PS, PS, 0, VM_PROT_NONE) && sc_completed(c, 2 * PS, PS, 0) &&
	       sc_send(c, EXTPAGER_REPLY_END, 0, 0, 0, 0);
}

START_TEST(test_v2_a_write_to_a_page_supplied_read_only_is_granted_through_data_unlock)
{
	script_start(run_grant, false, 0);
	ck_assert_uint_eq(v2_read(2), fake_pager_byte(2 * PS));
	ck_assert_uint_eq(pmap_flat_prot(sb->flat, page_at(2)), VM_PROT_READ);
	kern_return_t kr = vm_sandbox_write(sb, page_at(2), "W", 1);
	ck_assert_msg(kr == KERN_SUCCESS, "%d: %s", kr, external_pager_failure(pager));
	ck_assert_uint_eq(pmap_flat_prot(sb->flat, page_at(2)) & VM_PROT_WRITE, VM_PROT_WRITE);
	ck_assert_uint_eq(v2_read(2), 'W');
	ck_assert_str_eq(external_pager_failure(pager), "");
	script_finish();
}
END_TEST

/* Refused with EACCES; the connection goes on: page 4 is served after. */
static bool run_refuse(struct script *c)
{
	struct extpager_msg m;
	return sc_serve(c, VM_PROT_WRITE) && sc_expect(c, EXTPAGER_DATA_UNLOCK, &m) &&
	       sc_send(c, EXTPAGER_DATA_ERROR, m.offset, m.length, EACCES, 0) &&
	       sc_send(c, EXTPAGER_REPLY_END, 0, 0, 0, 0) && sc_serve(c, VM_PROT_NONE);
}

START_TEST(test_v2_a_refused_unlock_fails_the_write_and_keeps_the_connection)
{
	script_start(run_refuse, false, 0);
	ck_assert_uint_eq(v2_read(2), fake_pager_byte(2 * PS));
	ck_assert_int_eq(vm_fault(sb->map, page_at(2), VM_PROT_WRITE, NULL), KERN_PROTECTION_FAILURE);
	ck_assert_uint_eq(v2_read(2), fake_pager_byte(2 * PS));
	ck_assert_str_eq(external_pager_failure(pager), "");
	ck_assert_uint_eq(v2_read(4), fake_pager_byte(4 * PS));
	script_finish();
}
END_TEST

/* Never answers the DATA_UNLOCK. */
static bool run_silent_unlock(struct script *c)
{
	struct extpager_msg m;
	return sc_serve(c, VM_PROT_WRITE) && sc_expect(c, EXTPAGER_DATA_UNLOCK, &m);
}

START_TEST(test_v2_an_unanswered_unlock_fails_the_fault_by_its_deadline_with_one_line)
{
	script_start(run_silent_unlock, false, 0);
	ck_assert_uint_eq(v2_read(2), fake_pager_byte(2 * PS));
	ck_assert_int_eq(vm_fault(sb->map, page_at(2), VM_PROT_WRITE, NULL), KERN_MEMORY_ERROR);
	ck_assert_str_eq(external_pager_failure(pager), "the external pager did not finish its answer within 300 ms");
	ck_assert_int_eq(vm_fault(sb->map, page_at(5), VM_PROT_READ, NULL), KERN_MEMORY_ERROR);
	script_finish();
}
END_TEST

/* Page 0 written (supplied writable); the request for page 5 is answered only after a
 * LOCK_REQUEST flushing page 0, whose modified data must come back first. */
static bool run_lock_inside_request(struct script *c)
{
	struct extpager_msg m;
	return sc_serve(c, VM_PROT_NONE) && sc_expect(c, EXTPAGER_DATA_REQUEST, &m) &&
	       sc_send(c, EXTPAGER_LOCK_REQUEST, 0, PS, 0, EXTPAGER_LOCK_FLUSH | EXTPAGER_LOCK_CLEAN) &&
	       sc_locked_return(c, 0, 'W') && sc_completed(c, 0, PS, 0) && sc_provide(c, m.offset, m.length, 0) &&
	       sc_send(c, EXTPAGER_REPLY_END, 0, 0, 0, 0);
}

START_TEST(test_v2_a_lock_request_in_the_middle_of_a_request_is_done_there)
{
	script_start(run_lock_inside_request, false, 0);
	ck_assert_int_eq(vm_sandbox_write(sb, page_at(0), "W", 1), KERN_SUCCESS);
	ck_assert_uint_eq(v2_read(5), fake_pager_byte(5 * PS));
	ck_assert(!vm_page_resident(v2obj, 0));
	ck_assert_uint_eq(pmap_flat_prot(sb->flat, page_at(0)), 0);
	script_finish();
}
END_TEST

/* Page 1 written; then, on its own, a LOCK_REQUEST cleaning it and locking it read-only. */
static bool run_unsolicited(struct script *c)
{
	return sc_serve(c, VM_PROT_NONE) && sc_wait_go(c) &&
	       sc_send(c, EXTPAGER_LOCK_REQUEST, PS, PS, 0, EXTPAGER_LOCK_CLEAN | VM_PROT_WRITE) &&
	       sc_locked_return(c, 1, 'U') && sc_completed(c, PS, PS, 0);
}

START_TEST(test_v2_a_lock_request_outside_any_exchange_turns_the_event_fd_readable_and_service_does_it)
{
	script_start(run_unsolicited, false, 0);
	ck_assert_int_eq(vm_sandbox_write(sb, page_at(1), "U", 1), KERN_SUCCESS);
	int efd = vm_object_pager_event_fd(v2obj);
	ck_assert_int_ge(efd, 0);
	struct pollfd pf = {efd, POLLIN, 0};
	ck_assert_int_eq(poll(&pf, 1, 0), 0);
	script_go();
	ck_assert_int_eq(poll(&pf, 1, GUARD_S * 1000), 1);
	ck_assert_int_eq(vm_object_pager_service(v2obj), 0);
	ck_assert_uint_eq(pmap_flat_prot(sb->flat, page_at(1)), VM_PROT_READ);
	ck_assert(vm_page_resident(v2obj, 1));
	ck_assert_str_eq(external_pager_failure(pager), "");
	script_finish();
}
END_TEST

/* A LOCK_REQUEST during the answer to a DATA_RETURN (page 3 cleaned): kept, done at service. */
static bool run_lock_during_return(struct script *c)
{
	struct extpager_msg m;
	return sc_serve(c, VM_PROT_NONE) && sc_expect(c, EXTPAGER_DATA_RETURN, &m) &&
	       sc_send(c, EXTPAGER_LOCK_REQUEST, 3 * PS, PS, 0, EXTPAGER_LOCK_FLUSH) &&
	       sc_send(c, EXTPAGER_RETURN_REPLY, m.offset, 0, 0, 0) && sc_completed(c, 3 * PS, PS, 0);
}

START_TEST(test_v2_a_lock_request_during_a_data_return_is_kept_for_service)
{
	script_start(run_lock_during_return, false, 0);
	ck_assert_int_eq(vm_sandbox_write(sb, page_at(3), "R", 1), KERN_SUCCESS);
	ck_assert_int_eq(vm_object_clean(v2obj, 0, OBJ_PAGES * PS), KERN_SUCCESS);
	ck_assert(vm_page_resident(v2obj, 3));
	struct pollfd pf = {vm_object_pager_event_fd(v2obj), POLLIN, 0};
	ck_assert_int_eq(poll(&pf, 1, GUARD_S * 1000), 1);
	ck_assert_int_eq(vm_object_pager_service(v2obj), 0);
	ck_assert(!vm_page_resident(v2obj, 3));
	script_finish();
}
END_TEST

/* Page 0 written; the request for page 5 is answered by a LOCK_REQUEST cleaning page 0,
 * and the server hangs up before the data can come back. */
static bool run_close_during_lock(struct script *c)
{
	struct extpager_msg m;
	bool ok = sc_serve(c, VM_PROT_NONE) && sc_expect(c, EXTPAGER_DATA_REQUEST, &m) &&
		  sc_send(c, EXTPAGER_LOCK_REQUEST, 0, PS, 0, EXTPAGER_LOCK_CLEAN);
	shutdown(c->fd, SHUT_RDWR);
	return ok;
}

START_TEST(test_v2_a_failure_while_doing_a_lock_request_keeps_its_own_words)
{
	script_start(run_close_during_lock, false, 0);
	ck_assert_int_eq(vm_sandbox_write(sb, page_at(0), "W", 1), KERN_SUCCESS);
	ck_assert_int_eq(vm_fault(sb->map, page_at(5), VM_PROT_READ, NULL), KERN_MEMORY_ERROR);
	ck_assert_str_eq(external_pager_failure(pager), "the external pager closed the connection");
	/* Its bytes went nowhere: the page stays, modified. */
	ck_assert(vm_page_resident(v2obj, 0));
	script_finish();
}
END_TEST

/* What a hostile server says instead of answering the request for page 0. */
static const struct {
	uint32_t type;
	uint64_t offset, length;
	uint32_t flags;
	bool v1;
} hostile[] = {
	{EXTPAGER_LOCK_REQUEST, OBJ_PAGES * PS, PS, EXTPAGER_LOCK_FLUSH, false},       /* outside the object */
	{EXTPAGER_LOCK_REQUEST, (OBJ_PAGES - 1) * PS, 2 * PS, 0, false},               /* running past it */
	{EXTPAGER_LOCK_REQUEST, 100, PS, EXTPAGER_LOCK_FLUSH, false},                  /* unaligned */
	{EXTPAGER_LOCK_REQUEST, 0, 0, EXTPAGER_LOCK_FLUSH, false},                     /* empty */
	{EXTPAGER_LOCK_REQUEST, 0, PS, 0x8000, false},                                 /* unknown bits */
	{EXTPAGER_LOCK_COMPLETED, 0, PS, 0, false},                                    /* a lie: never asked */
	{EXTPAGER_DATA_UNLOCK, 0, PS, VM_PROT_WRITE, false},                           /* the client's message */
	{EXTPAGER_CHANGE_ATTRIBUTES, 0, 3, 0, false},                                  /* cluster not pages */
	{EXTPAGER_LOCK_REQUEST, 0, PS, EXTPAGER_LOCK_FLUSH, true},                     /* from a version-1 server */
	{EXTPAGER_DATA_PROVIDED, 0, PS, 0x10, false},                                  /* a lock value of no access */
};

static bool run_hostile(struct script *c)
{
	struct extpager_msg m;
	if (!sc_expect(c, EXTPAGER_DATA_REQUEST, &m))
		return false;
	if (!sc_send(c, hostile[c->variant].type, hostile[c->variant].offset, hostile[c->variant].length, 0,
		     hostile[c->variant].flags))
		return false;
	if (hostile[c->variant].type == EXTPAGER_DATA_PROVIDED)
		(void)sc_io(c, c->data, PS, true);
	return true;
}

START_TEST(test_v2_a_hostile_server_fails_the_fault_with_one_line_and_nothing_done)
{
	script_start(run_hostile, hostile[_i].v1, _i);
	ck_assert_int_eq(vm_fault(sb->map, page_at(0), VM_PROT_READ, NULL), KERN_MEMORY_ERROR);
	ck_assert_str_eq(external_pager_failure(pager),
			 "the external pager answered with a malformed or unexpected message");
	ck_assert(!vm_page_resident(v2obj, 0));
	script_finish();
}
END_TEST

/* A request answered by CHANGE_ATTRIBUTES first: later faults take the cluster it gives. */
static bool run_attributes(struct script *c)
{
	struct extpager_msg m;
	return sc_expect(c, EXTPAGER_DATA_REQUEST, &m) && sc_send(c, EXTPAGER_CHANGE_ATTRIBUTES, 0, 4 * PS, 0, 0) &&
	       sc_provide(c, m.offset, m.length, 0) && sc_send(c, EXTPAGER_REPLY_END, 0, 0, 0, 0) &&
	       sc_serve(c, VM_PROT_NONE);
}

START_TEST(test_v2_change_attributes_sets_the_objects_cluster)
{
	script_start(run_attributes, false, 0);
	ck_assert_uint_eq(v2_read(9), fake_pager_byte(9 * PS));
	ck_assert_uint_eq(v2obj->cluster, 4);
	struct vm_fault_info info;
	ck_assert_int_eq(vm_fault(sb->map, page_at(1), VM_PROT_READ, &info), KERN_SUCCESS);
	ck_assert_uint_eq(info.entered, 4);
	script_finish();
}
END_TEST

Suite *external_pager_suite(void)
{
	Suite *s = suite_create("external_pager");
	TCase *tc = tcase_create("protocol");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 2 * GUARD_S);
	HARNESS_ADD_TEST(tc, test_a_server_that_drips_its_answer_fails_the_request_by_its_deadline);
	HARNESS_ADD_TEST(tc, test_a_cancel_ends_a_waiting_request_at_once);
	HARNESS_ADD_TEST(tc, test_a_cancel_before_a_request_sends_nothing_and_keeps_the_connection);
	HARNESS_ADD_TEST(tc, test_an_object_larger_than_the_server_announced_is_refused);
	HARNESS_ADD_TEST(tc, test_nothing_past_the_announced_size_is_asked_for_or_believed);
	suite_add_tcase(s, tc);
	TCase *v2 = tcase_create("version2");
	tcase_add_checked_fixture(v2, setup, v2_teardown);
	tcase_set_timeout(v2, 2 * GUARD_S);
	HARNESS_ADD_TEST(v2, test_v2_a_write_to_a_page_supplied_read_only_is_granted_through_data_unlock);
	HARNESS_ADD_TEST(v2, test_v2_a_refused_unlock_fails_the_write_and_keeps_the_connection);
	HARNESS_ADD_TEST(v2, test_v2_an_unanswered_unlock_fails_the_fault_by_its_deadline_with_one_line);
	HARNESS_ADD_TEST(v2, test_v2_a_lock_request_in_the_middle_of_a_request_is_done_there);
	HARNESS_ADD_TEST(v2, test_v2_a_lock_request_outside_any_exchange_turns_the_event_fd_readable_and_service_does_it);
	HARNESS_ADD_TEST(v2, test_v2_a_lock_request_during_a_data_return_is_kept_for_service);
	HARNESS_ADD_TEST(v2, test_v2_a_failure_while_doing_a_lock_request_keeps_its_own_words);
	HARNESS_ADD_LOOP_TEST(v2, test_v2_a_hostile_server_fails_the_fault_with_one_line_and_nothing_done, 0,
			      sizeof(hostile) / sizeof(hostile[0]));
	HARNESS_ADD_TEST(v2, test_v2_change_attributes_sets_the_objects_cluster);
	suite_add_tcase(s, v2);
	return s;
}

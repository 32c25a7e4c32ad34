/*
 * The external pager's client against a fake server (tests/fake_pager.h): every exchange
 * ends by its deadline however the server paces its bytes, a cancel ends a waiting request
 * at once, and nothing past the size the server announced is asked for or believed.
 */
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "fake_pager.h"
#include "harness.h"
#include "mmu/pager.h"
#include "mmu/vm_domain.h"
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

static void teardown(void)
{
	vm_sandbox_destroy(sb);
	if (pager)
		pager_release(pager);
	fake_pager_stop(&server);
	close(cancel_fd);
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
	return s;
}

/*
 * Guest memory's mapped files and external pagers on real userfaultfd, without KVM: host
 * threads touch guest memory through its host mapping, so their faults take a vCPU's path
 * (userfaultfd, the fault thread, vm_fault, the pager). A suite of its own because it needs
 * userfaultfd, which the layout suite (check_guest_memory.c) does not.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "fake_pager.h"
#include "harness.h"
#include "pagers/external_pager.h"
#include "vmm/error.h"
#include "vmm/memory/guest_memory.h"

#define PS VM_PAGE_SIZE
#define RAM_SIZE (2ull << 20)
#define FILE_GPA (16ull << 20)
#define FILE_PAGES 3

static struct guest_memory mem;
static struct guest_memory_config cfg;
static char path[64];
static atomic_int errors, last_error;

static void on_error(void *arg, int err, const char *message)
{
	(void)arg;
	fprintf(stderr, "fault thread (expected by some tests): %s\n", message);
	atomic_store(&last_error, err);
	atomic_fetch_add(&errors, 1);
}

static void setup(void)
{
	memset(&mem, 0, sizeof(mem));
	memset(&cfg, 0, sizeof(cfg));
	cfg.ram_size = RAM_SIZE;
	atomic_store(&errors, 0);
	atomic_store(&last_error, 0);
	strcpy(path, "/tmp/vmm-shared-XXXXXX");
	int fd = mkstemp(path);
	ck_assert_int_ge(fd, 0);
	static char bytes[FILE_PAGES * PS];
	memset(bytes, 'F', sizeof(bytes));
	ck_assert_int_eq(write(fd, bytes, sizeof(bytes)), (ssize_t)sizeof(bytes));
	close(fd);
	error_clear();
}

static void teardown(void)
{
	guest_memory_destroy(&mem);
	unlink(path);
}

static void map_file(const char *file, enum guest_map_mode mode, bool external, uint64_t size)
{
	cfg.files[cfg.nfiles++] = (struct guest_file_map){.path = file, .gpa = FILE_GPA, .mode = mode,
							    .external = external, .size = size};
}

static void start(void)
{
	ck_assert_msg(guest_memory_create(&mem, &cfg) == 0, "%s", error_message());
	ck_assert_int_eq(guest_memory_start(&mem, on_error, NULL), 0);
}

static off_t file_size(void)
{
	struct stat st;
	ck_assert_int_eq(stat(path, &st), 0);
	return st.st_size;
}

/* Another process cuts the file short while the guest has it mapped. */
static void truncate_file(off_t size)
{
	int fd = open(path, O_WRONLY);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(ftruncate(fd, size), 0);
	close(fd);
}

START_TEST(test_a_mapping_larger_than_its_external_pager_is_refused_naming_both_sizes)
{
	struct fake_pager server;
	fake_pager_listen(&server, FAKE_PAGER_SERVE, PS);
	map_file(server.path, GUEST_MAP_RO, true, 64 * PS);
	ck_assert_int_ne(guest_memory_create(&mem, &cfg), 0);
	const char *msg = error_message();
	ck_assert_msg(strstr(msg, server.path) && strstr(msg, "4096 bytes") && strstr(msg, "262144"), "%s", msg);
	ck_assert_uint_eq(atomic_load(&server.requests), 0);
	fake_pager_stop(&server);
}
END_TEST

/* A "pager" that listens and never accepts, its backlog full: creating guest memory gives
 * up on it with one line instead of waiting in connect for ever. */
START_TEST(test_a_pager_that_never_accepts_is_given_up_on)
{
	char dir[] = "/tmp/vmm-backlog-XXXXXX", sock[96];
	ck_assert_ptr_nonnull(mkdtemp(dir));
	snprintf(sock, sizeof(sock), "%s/pager.sock", dir);
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	strcpy(sa.sun_path, sock);
	int listener = socket(AF_UNIX, SOCK_STREAM, 0);
	ck_assert_int_ge(listener, 0);
	ck_assert_int_eq(bind(listener, (struct sockaddr *)&sa, sizeof(sa)), 0);
	ck_assert_int_eq(listen(listener, 0), 0);
	int fill[8], nfill = 0;
	for (; nfill < 8; nfill++) {
		fill[nfill] = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0);
		if (connect(fill[nfill], (struct sockaddr *)&sa, sizeof(sa)) != 0) {
			close(fill[nfill]);
			break;
		}
	}
	ck_assert_int_lt(nfill, 8); /* the backlog is full */
	map_file(sock, GUEST_MAP_RO, true, 16 * PS);
	alarm(20);
	ck_assert_int_eq(guest_memory_create(&mem, &cfg), -ETIMEDOUT);
	alarm(0);
	ck_assert_msg(strstr(error_message(), sock) && strstr(error_message(), "accepts no connection"), "%s",
		      error_message());
	for (int i = 0; i < nfill; i++)
		close(fill[i]);
	close(listener);
	unlink(sock);
	rmdir(dir);
}
END_TEST

static void *read_guest(void *arg)
{
	(void)arg;
	(void)*(volatile uint8_t *)(mem.base + FILE_GPA);
	return NULL;
}

START_TEST(test_a_cancel_frees_a_fault_waiting_on_a_stalled_pager_without_failing_the_vm)
{
	struct fake_pager server;
	fake_pager_listen(&server, FAKE_PAGER_STALL, 16 * PS);
	map_file(server.path, GUEST_MAP_RO, true, 16 * PS);
	start();
	pthread_t reader;
	ck_assert_int_eq(pthread_create(&reader, NULL, read_guest, NULL), 0);
	while (atomic_load(&server.requests) == 0)
		usleep(1000);
	/* The fault thread waits on the pager with the domain lock held: what a stop needs. */
	guest_memory_cancel(&mem);
	pthread_join(reader, NULL);
	ck_assert_int_eq(guest_memory_sync(&mem), 0);
	/* Given way, not failed: the VM's verdict is the stop's, and the write-back ran. */
	ck_assert_int_eq(atomic_load(&last_error), ECANCELED);
	ck_assert(!mem.failed);
	ck_assert_str_eq(external_pager_failure(mem.held[0].pager), "the VM stopped while it waited for the external pager");
	guest_memory_destroy(&mem);
	fake_pager_stop(&server);
}
END_TEST

struct busy_stats {
	int busy;   /* mem.stats_busy, -1 when absent */
	bool faults; /* mem.faults was reported */
};

static void busy_emit(void *arg, const char *key, uint64_t value)
{
	struct busy_stats *b = arg;
	if (strcmp(key, "mem.stats_busy") == 0)
		b->busy = (int)value;
	if (strcmp(key, "mem.faults") == 0)
		b->faults = true;
}

/* A fault waiting on a stalled pager holds guest memory: the monitor's calls give up after
 * a moment instead of waiting with it (the monitor must stay free to take quit). */
START_TEST(test_monitor_calls_do_not_wait_behind_a_stalled_pager)
{
	struct fake_pager server;
	fake_pager_listen(&server, FAKE_PAGER_STALL, 16 * PS);
	map_file(server.path, GUEST_MAP_RO, true, 16 * PS);
	start();
	struct busy_stats b = {-1, false};
	guest_memory_stats(&mem, busy_emit, &b);
	ck_assert_int_eq(b.busy, 0);
	ck_assert(b.faults);
	pthread_t reader;
	ck_assert_int_eq(pthread_create(&reader, NULL, read_guest, NULL), 0);
	while (atomic_load(&server.requests) == 0)
		usleep(1000);
	b = (struct busy_stats){-1, false};
	guest_memory_stats(&mem, busy_emit, &b);
	ck_assert_int_eq(b.busy, 1);
	ck_assert(!b.faults);
	uint8_t byte;
	ck_assert_int_eq(guest_memory_vm_read(&mem, 0, &byte, 1), -EBUSY);
	ck_assert_ptr_nonnull(strstr(error_message(), "guest memory is busy"));
	guest_memory_cancel(&mem);
	pthread_join(reader, NULL);
	ck_assert_int_eq(guest_memory_sync(&mem), 0);
	guest_memory_destroy(&mem);
	fake_pager_stop(&server);
}
END_TEST

START_TEST(test_pages_the_guest_only_read_are_never_written_back)
{
	map_file(path, GUEST_MAP_SHARED, false, 0);
	start();
	for (unsigned i = 0; i < FILE_PAGES; i++)
		ck_assert_int_eq(*(volatile uint8_t *)(mem.base + FILE_GPA + i * PS), 'F');
	truncate_file(100);
	ck_assert_msg(guest_memory_sync(&mem) == 0, "%s", error_message());
	ck_assert_int_eq(file_size(), 100);
	ck_assert_int_eq(atomic_load(&errors), 0);
}
END_TEST

START_TEST(test_write_back_never_regrows_a_file_cut_short_and_says_so)
{
	map_file(path, GUEST_MAP_SHARED, false, 0);
	start();
	mem.base[FILE_GPA + 10] = 'w';          /* within what will be left */
	mem.base[FILE_GPA + 2 * PS + 10] = 'x'; /* past it */
	truncate_file(100);
	ck_assert_int_ne(guest_memory_sync(&mem), 0);
	const char *msg = error_message();
	ck_assert_msg(strstr(msg, path) && strstr(msg, "shrank from 12288 to 100 bytes"), "%s", msg);
	ck_assert_int_eq(file_size(), 100);
	int fd = open(path, O_RDONLY);
	char c = 0;
	ck_assert_int_eq(pread(fd, &c, 1, 10), 1);
	close(fd);
	ck_assert_int_eq(c, 'w');
}
END_TEST

Suite *guest_memory_pagers_suite(void)
{
	Suite *s = suite_create("guest_memory_pagers");
	harness_requires(HARNESS_UFFD);
	TCase *tc = tcase_create("pagers");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 60);
	HARNESS_ADD_TEST(tc, test_a_mapping_larger_than_its_external_pager_is_refused_naming_both_sizes);
	HARNESS_ADD_TEST(tc, test_a_cancel_frees_a_fault_waiting_on_a_stalled_pager_without_failing_the_vm);
	HARNESS_ADD_TEST(tc, test_monitor_calls_do_not_wait_behind_a_stalled_pager);
	HARNESS_ADD_TEST(tc, test_a_pager_that_never_accepts_is_given_up_on);
	HARNESS_ADD_TEST(tc, test_pages_the_guest_only_read_are_never_written_back);
	HARNESS_ADD_TEST(tc, test_write_back_never_regrows_a_file_cut_short_and_says_so);
	suite_add_tcase(s, tc);
	return s;
}

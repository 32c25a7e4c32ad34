/*
 * Guest memory under a limit, paged out to a swap file that fails under it, on real
 * userfaultfd without KVM: the test thread touches guest RAM through its host mapping, so
 * its faults take the path a vCPU's take (userfaultfd, the fault thread, vm_fault, the
 * default pager). A page lost from the swap file, and page-outs failing until the limit
 * cannot be kept, each stop the VM (the fault thread's error callback) with one line;
 * neither reads as zeros nor goes on silently. Page-outs failing for a while within the
 * limit are said once and counted, and the VM goes on.
 */
#include <fcntl.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"
#include "memory_stat.h"
#include "vmm/error.h"
#include "vmm/memory/guest_memory.h"

#define RAM_SIZE (8ull << 20)
#define RAM_PAGES (RAM_SIZE / VM_PAGE_SIZE)
#define LIMIT (1ull << 20) /* 256 pages; the core keeps one cluster of room below it */
#define CLUSTER 4u

static struct guest_memory mem;
static char swap_path[64];
static atomic_int errors;
static char message[1024];

static void on_error(void *arg, int err, const char *msg)
{
	(void)arg;
	(void)err;
	snprintf(message, sizeof(message), "%s", msg);
	atomic_fetch_add(&errors, 1);
}

static int nerrors(void)
{
	return atomic_load(&errors);
}

/* Guest memory under LIMIT, faults bringing in @cluster pages (1: no read-ahead either). */
static void setup_with_cluster(unsigned cluster)
{
	strcpy(swap_path, "/tmp/vmm-swap-XXXXXX");
	int fd = mkstemp(swap_path);
	ck_assert_int_ge(fd, 0);
	close(fd);
	atomic_store(&errors, 0);
	message[0] = '\0';
	memset(&mem, 0, sizeof(mem));
	struct guest_memory_config cfg = {
		.ram_size = RAM_SIZE, .mem_limit = LIMIT, .swap_path = swap_path, .cluster = cluster};
	ck_assert_msg(guest_memory_create(&mem, &cfg) == 0, "%s", error_message());
	ck_assert_int_eq(guest_memory_start(&mem, on_error, NULL), 0);
}

static void setup(void)
{
	setup_with_cluster(CLUSTER);
}

static void teardown(void)
{
	guest_memory_destroy(&mem);
	unlink(swap_path);
}

/* The first word of guest page @page, as the guest sees it. */
static volatile uint64_t *word(uint64_t page)
{
	return (volatile uint64_t *)(mem.base + page * VM_PAGE_SIZE);
}

static void touch(uint64_t first, uint64_t end)
{
	for (uint64_t p = first; p < end; p++)
		*word(p) = p + 1;
}

/* Make the swap file refuse every write from now on, as a full disk does: /dev/full in its
 * place. Returns a descriptor of the real file, for swap_recover. */
static int swap_fill(void)
{
	int saved = dup(mem.swap_fd), full = open("/dev/full", O_RDWR | O_CLOEXEC);
	ck_assert_int_ge(saved, 0);
	ck_assert_int_ge(full, 0);
	ck_assert_int_eq(dup2(full, mem.swap_fd), mem.swap_fd);
	close(full);
	return saved;
}

static void swap_recover(int saved)
{
	ck_assert_int_eq(dup2(saved, mem.swap_fd), mem.swap_fd);
	close(saved);
}

/* What the code under test says on stderr while @fn runs, in @out. */
static void capture_stderr(void (*fn)(void), char *out, size_t size)
{
	FILE *tmp = tmpfile();
	ck_assert_ptr_nonnull(tmp);
	fflush(stderr);
	int saved = dup(2);
	ck_assert_int_eq(dup2(fileno(tmp), 2), 2);
	fn();
	fflush(stderr);
	ck_assert_int_eq(dup2(saved, 2), 2);
	close(saved);
	size_t n = (size_t)pread(fileno(tmp), out, size - 1, 0);
	out[n < size ? n : 0] = '\0';
	fclose(tmp);
}

static unsigned count(const char *text, const char *what)
{
	unsigned n = 0;
	for (const char *p = text; (p = strstr(p, what)); p++)
		n++;
	return n;
}

START_TEST(a_page_lost_from_the_swap_file_stops_the_vm_naming_it)
{
	touch(0, RAM_PAGES);
	ck_assert_uint_gt(memory_stat(&mem, "mem.pageouts"), RAM_PAGES / 2);
	/* Cut, then grown again as a later page-out grows it: the lost pages read as a hole. */
	ck_assert_int_eq(truncate(swap_path, 0), 0);
	ck_assert_int_eq(truncate(swap_path, RAM_SIZE), 0);
	(void)*word(0);
	ck_assert_int_eq(nerrors(), 1);
	char want[256];
	snprintf(want, sizeof(want), "KERN_MEMORY_ERROR in object 1 at offset 0x0: swap file %s: page at byte 0x",
		 swap_path);
	ck_assert_msg(strstr(message, "guest read of guest-physical 0x0 (RAM) failed: ") == message, "%s", message);
	ck_assert_msg(strstr(message, want), "%s", message);
	ck_assert_msg(strstr(message, "is not what was written there: the file was changed or cut short"), "%s",
		      message);
	ck_assert_uint_eq(memory_stat(&mem, "mem.memory_errors"), 1);
}
END_TEST

static void touch_all_on_a_full_disk(void)
{
	int saved = swap_fill();
	touch(0, RAM_PAGES); /* goes on (at the kernel's zero pages) once the VM stopped */
	swap_recover(saved);
}

START_TEST(page_outs_failing_beyond_the_limit_stop_the_vm)
{
	char err[4096];
	capture_stderr(touch_all_on_a_full_disk, err, sizeof(err));
	ck_assert_int_eq(nerrors(), 1);
	char want[256];
	snprintf(want, sizeof(want), "resident, page-out failed: No space left on device (swap file %s)", swap_path);
	ck_assert_msg(strstr(message, "guest memory cannot be kept under its limit of 256 pages: ") == message, "%s",
		      message);
	ck_assert_msg(strstr(message, want), "%s", message);
	ck_assert_uint_gt(memory_stat(&mem, "mem.pageout_errors"), 0);
	ck_assert_uint_le(memory_stat(&mem, "mem.resident_peak"), LIMIT / VM_PAGE_SIZE + CLUSTER);
	/* At most once before the stop, however many pages failed. */
	ck_assert_msg(count(err, "page-out failed") <= 1, "%s", err);
}
END_TEST

static void fail_for_a_while_within_the_limit(void)
{
	/* Up to the limit one page a fault, with no read-ahead (whose clean pages, reclaimed
	 * without the pager, would take the place of the written ones as the first to go: how
	 * far it reads depends on timing): the last page finds the core's own limit full and
	 * a written page's page-out refused, but the limit holds. */
	uint64_t within = LIMIT / VM_PAGE_SIZE;
	int saved = swap_fill();
	for (uint64_t p = within; p-- > 0;)
		touch(p, p + 1);
	/* The last fault's page-outs run after its page is in (the guest goes on meanwhile):
	 * the statistics take the domain lock, so they wait for them, before swap comes back. */
	ck_assert_uint_gt(memory_stat(&mem, "mem.pageout_errors"), 0);
	swap_recover(saved);
	touch(within, RAM_PAGES);
}

START_TEST(page_outs_failing_within_the_limit_are_said_once_and_the_vm_goes_on)
{
	teardown();
	setup_with_cluster(1);
	char err[4096];
	capture_stderr(fail_for_a_while_within_the_limit, err, sizeof(err));
	ck_assert_msg(nerrors() == 0, "%s", message);
	ck_assert_msg(count(err, "vmm: page-out failed: No space left on device") == 1, "%s", err);
	ck_assert_uint_gt(memory_stat(&mem, "mem.pageout_errors"), 0);
	ck_assert_uint_gt(memory_stat(&mem, "mem.pageouts"), RAM_PAGES / 2);
	for (uint64_t p = 0; p < RAM_PAGES; p++)
		ck_assert_uint_eq(*word(p), p + 1);
	ck_assert_int_eq(nerrors(), 0);
}
END_TEST

Suite *guest_memory_swap_suite(void)
{
	Suite *s = suite_create("guest_memory_swap");
	harness_requires(HARNESS_UFFD);
	TCase *tc = tcase_create("swap");
	tcase_add_checked_fixture(tc, setup, teardown);
	HARNESS_ADD_TEST(tc, a_page_lost_from_the_swap_file_stops_the_vm_naming_it);
	HARNESS_ADD_TEST(tc, page_outs_failing_beyond_the_limit_stop_the_vm);
	HARNESS_ADD_TEST(tc, page_outs_failing_within_the_limit_are_said_once_and_the_vm_goes_on);
	suite_add_tcase(s, tc);
	return s;
}

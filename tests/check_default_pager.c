/* The default pager: zero fill without swap; with a swap file, page-outs served back. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"
#include "mmu/pager.h"
#include "mmu/vm_domain.h"
#include "mmu/vm_object.h"
#include "mmu/vm_page.h"
#include "pagers/default_pager.h"

#define PS VM_PAGE_SIZE

static struct vm_domain *dom;
static struct vm_object *target; /* where replies land */
static int swapfd = -1;

static void setup(void)
{
	ck_assert_int_eq(vm_domain_create(&dom), 0);
	ck_assert_int_eq(vm_object_allocate(dom, 64 * PS, &target), KERN_SUCCESS);
	FILE *tmp = tmpfile();
	ck_assert_ptr_nonnull(tmp);
	swapfd = dup(fileno(tmp));
	fclose(tmp);
}

static void teardown(void)
{
	vm_object_deallocate(target);
	vm_domain_destroy(dom);
	close(swapfd);
}

static struct pager *open_default(int fd)
{
	struct pager *p;
	struct pager_args args = {.fd = fd};
	ck_assert_int_eq(pager_open(&default_pager_ops, &args, &p), 0);
	ck_assert_str_eq(p->ops->name, "default");
	return p;
}

/* Ask for page @page of @mo; returns the reply (the page, if provided, is in target). */
static struct pager_reply request(struct pager *p, void *mo, uint64_t page)
{
	struct pager_reply r = {.object = target, .first = page, .end = page + 1, .want = page};
	ck_assert_int_eq(pager_data_request(p, mo, page * PS, PS, VM_PROT_READ, &r), 0);
	ck_assert(r.want_answered);
	return r;
}

static void page_of(uint8_t *buf, char c)
{
	memset(buf, c, PS);
}

/* Page @page of @mo now holds @c everywhere (a page-out). */
static void put_page(struct pager *p, void *mo, uint64_t page, char c)
{
	uint8_t buf[PS];
	page_of(buf, c);
	ck_assert_int_eq(pager_data_return(p, mo, page * PS, buf, PS), 0);
}

START_TEST(test_without_swap_every_page_is_zero_fill_and_page_outs_are_refused)
{
	struct pager *p = open_default(-1);
	void *mo;
	ck_assert_int_eq(pager_create(p, 64 * PS, &mo), 0);
	struct pager_reply r = request(p, mo, 3);
	ck_assert(r.want_unavailable);
	uint8_t buf[PS];
	page_of(buf, 'x');
	ck_assert_int_eq(pager_data_return(p, mo, 0, buf, PS), -ENOSPC);
	pager_terminate(p, mo);
	pager_release(p);
}
END_TEST

START_TEST(test_a_returned_page_is_served_back)
{
	struct pager *p = open_default(swapfd);
	void *mo;
	ck_assert_int_eq(pager_create(p, 64 * PS, &mo), 0);
	uint8_t buf[PS];
	page_of(buf, 'q');
	ck_assert_int_eq(pager_data_return(p, mo, 5 * PS, buf, PS), 0);
	struct pager_reply r = request(p, mo, 5);
	ck_assert(!r.want_unavailable);
	ck_assert_uint_eq(r.provided, 1);
	struct vm_page *pg = vm_page_lookup(target, 5);
	ck_assert_ptr_nonnull(pg);
	ck_assert_mem_eq(pg->data, buf, PS);
	ck_assert(request(p, mo, 6).want_unavailable);
	pager_terminate(p, mo);
	pager_release(p);
}
END_TEST

START_TEST(test_memory_objects_are_independent)
{
	struct pager *p = open_default(swapfd);
	void *a, *b;
	ck_assert_int_eq(pager_create(p, 64 * PS, &a), 0);
	ck_assert_int_eq(pager_create(p, 64 * PS, &b), 0);
	put_page(p, a, 0, 'a');
	put_page(p, b, 0, 'b');
	request(p, a, 0);
	ck_assert_uint_eq(vm_page_lookup(target, 0)->data[0], 'a');
	ck_assert(request(p, b, 1).want_unavailable);
	pager_terminate(p, a);
	pager_terminate(p, b);
	pager_release(p);
}
END_TEST

START_TEST(test_slots_of_rewritten_pages_and_terminated_objects_are_reused)
{
	struct pager *p = open_default(swapfd);
	void *a, *b;
	ck_assert_int_eq(pager_create(p, 64 * PS, &a), 0);
	for (int round = 0; round < 3; round++)
		for (uint64_t i = 0; i < 4; i++)
			put_page(p, a, i + 40, (char)round);
	pager_terminate(p, a);
	ck_assert_int_eq(pager_create(p, 64 * PS, &b), 0);
	for (uint64_t i = 0; i < 4; i++)
		put_page(p, b, i, 'b');
	struct stat st;
	ck_assert_int_eq(fstat(swapfd, &st), 0);
	ck_assert_int_eq(st.st_size, 4 * PS);
	pager_terminate(p, b);
	pager_release(p);
}
END_TEST

/*
 * The swap file cut short behind the pager's back, then grown again by a later page-out:
 * the slots cut off read back as a hole (zeros of full length) or not at all (beyond the
 * end). Either way the page is lost, and that is an error, never a zero page.
 *   slots: 0 'a' | 1 'b' | 2 'c' | 3 'd'  --cut-->  0 hole | 1 hole | 2 'z'  (3 beyond the end)
 */
START_TEST(test_a_swap_file_cut_short_is_an_error_not_zeros)
{
	struct pager *p = open_default(swapfd);
	void *mo;
	ck_assert_int_eq(pager_create(p, 64 * PS, &mo), 0);
	for (uint64_t i = 0; i < 4; i++)
		put_page(p, mo, i, (char)('a' + i));
	ck_assert_int_eq(ftruncate(swapfd, 0), 0);
	put_page(p, mo, 2, 'z');
	ck_assert_int_eq(request(p, mo, 0).error, -EIO); /* a hole */
	struct pager_reply lost = request(p, mo, 3);     /* beyond the end */
	ck_assert_int_eq(lost.error, -EIO);
	ck_assert_uint_eq(lost.provided, 0);
	ck_assert(!lost.want_unavailable);
	ck_assert_ptr_null(vm_page_lookup(target, 0));
	ck_assert_str_eq(default_pager_failure(p), "page at byte 0x3000 is missing: the file was cut short");
	struct pager_reply r = request(p, mo, 2);
	ck_assert_int_eq(r.error, 0);
	ck_assert_uint_eq(vm_page_lookup(target, 2)->data[0], 'z');
	ck_assert_str_eq(default_pager_failure(p), "");
	pager_terminate(p, mo);
	pager_release(p);
}
END_TEST

START_TEST(test_a_slot_changed_behind_the_pagers_back_is_an_error)
{
	struct pager *p = open_default(swapfd);
	void *mo;
	ck_assert_int_eq(pager_create(p, 64 * PS, &mo), 0);
	put_page(p, mo, 7, 'q');
	put_page(p, mo, 8, 'r');
	ck_assert_int_eq(pwrite(swapfd, "x", 1, PS + 100), 1); /* page 8's slot */
	ck_assert_int_eq(request(p, mo, 8).error, -EIO);
	ck_assert_str_eq(default_pager_failure(p),
			 "page at byte 0x1000 is not what was written there: the file was changed or cut short");
	ck_assert_int_eq(request(p, mo, 7).error, 0);
	pager_terminate(p, mo);
	pager_release(p);
}
END_TEST

/* A page-out the file refuses (a full disk) leaves nothing behind: the page is not taken,
 * its slot is not kept, and a later request knows it holds nothing for the page. */
START_TEST(test_a_refused_page_out_is_passed_on_and_keeps_nothing)
{
	int full = open("/dev/full", O_RDWR | O_CLOEXEC);
	ck_assert_int_ge(full, 0);
	struct pager *p = open_default(full);
	void *mo;
	ck_assert_int_eq(pager_create(p, 64 * PS, &mo), 0);
	uint8_t buf[PS];
	page_of(buf, 'f');
	ck_assert_int_eq(pager_data_return(p, mo, 4 * PS, buf, PS), -ENOSPC);
	ck_assert(request(p, mo, 4).want_unavailable);
	pager_terminate(p, mo);
	pager_release(p);
	close(full);
}
END_TEST

/* Page @page of @mo read back into @buf through a fresh object: 0, or the reply's error
 * (-ENOENT when the pager holds nothing). Without Check's macros: forked children use it. */
static int read_back(struct pager *p, void *mo, uint64_t page, uint8_t *buf)
{
	struct vm_object *o;
	if (vm_object_allocate(dom, 64 * PS, &o) != KERN_SUCCESS)
		return -ENOMEM;
	struct pager_reply r = {.object = o, .first = page, .end = page + 1, .want = page};
	int err = pager_data_request(p, mo, page * PS, PS, VM_PROT_READ, &r);
	struct vm_page *pg = vm_page_lookup(o, page);
	if (!err)
		err = r.error ? r.error : r.want_unavailable || !pg ? -ENOENT : 0;
	if (!err)
		memcpy(buf, pg->data, PS);
	vm_object_deallocate(o);
	return err;
}

/* Pages [first, first + n) of @mo hold @c + their offset from @first: 0, or 1 + the first
 * that does not. */
static int holds(struct pager *p, void *mo, uint64_t first, uint64_t n, char c)
{
	uint8_t buf[PS], want[PS];
	for (uint64_t i = 0; i < n; i++) {
		page_of(want, (char)(c + i));
		if (read_back(p, mo, first + i, buf) != 0 || memcmp(buf, want, PS) != 0)
			return (int)(1 + first + i);
	}
	return 0;
}

static int put_pages(struct pager *p, void *mo, uint64_t first, uint64_t n, char c)
{
	uint8_t buf[PS];
	for (uint64_t i = 0; i < n; i++) {
		page_of(buf, (char)(c + i));
		if (pager_data_return(p, mo, (first + i) * PS, buf, PS) != 0)
			return -1;
	}
	return 0;
}

/*
 * A fork(2) of the process (as vmm fork does) shares the swap file: the child rewrites some
 * of the pages paged out before the fork and pages out new ones, then the parent does the
 * same to the same pages, reusing a slot it freed before the fork. Each then reads its own
 * pages, and the ones it left alone as they were before the fork: no slot either wrote was
 * one the other reads.
 */
START_TEST(test_after_a_fork_parent_and_child_page_out_to_one_file_and_each_reads_its_own)
{
	struct pager *p = open_default(swapfd);
	void *mo, *gone;
	ck_assert_int_eq(pager_create(p, 64 * PS, &mo), 0);
	ck_assert_int_eq(put_pages(p, mo, 0, 8, 'a'), 0);
	ck_assert_int_eq(pager_create(p, 64 * PS, &gone), 0);
	put_page(p, gone, 0, 'g');
	pager_terminate(p, gone); /* its slot is free: the parent's to reuse */
	ck_assert_int_eq(default_pager_share_slots(p), 0);
	int to_parent[2], to_child[2];
	ck_assert_int_eq(pipe(to_parent), 0);
	ck_assert_int_eq(pipe(to_child), 0);
	pid_t pid = fork();
	ck_assert_int_ge(pid, 0);
	char go = 0;
	if (pid == 0) {
		default_pager_forked_child(p);
		int bad = put_pages(p, mo, 0, 4, 'c') || put_pages(p, mo, 10, 4, 'C') ? 100 : 0;
		if (write(to_parent[1], "w", 1) != 1 || read(to_child[0], &go, 1) != 1)
			_exit(101);
		if (!bad)
			bad = holds(p, mo, 0, 4, 'c');
		if (!bad)
			bad = holds(p, mo, 4, 4, 'a' + 4);
		if (!bad)
			bad = holds(p, mo, 10, 4, 'C');
		_exit(bad);
	}
	ck_assert_int_eq(read(to_parent[0], &go, 1), 1); /* the child wrote */
	void *fresh;
	ck_assert_int_eq(pager_create(p, 64 * PS, &fresh), 0);
	ck_assert_int_eq(put_pages(p, fresh, 0, 1, 'f'), 0);
	ck_assert_int_eq(put_pages(p, mo, 0, 8, 'p'), 0);
	ck_assert_int_eq(put_pages(p, mo, 10, 4, 'P'), 0);
	ck_assert_int_eq(write(to_child[1], "v", 1), 1);
	ck_assert_int_eq(holds(p, mo, 0, 8, 'p'), 0);
	ck_assert_int_eq(holds(p, mo, 10, 4, 'P'), 0);
	ck_assert_int_eq(holds(p, fresh, 0, 1, 'f'), 0);
	int st;
	ck_assert_int_eq(waitpid(pid, &st, 0), pid);
	ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0, "the child's page %d is not its own (status 0x%x)",
		      WIFEXITED(st) ? WEXITSTATUS(st) - 1 : -1, st);
	/* 9 slots before the fork; after it the parent's first page-out reused the one freed
	 * before, and every other took a new slot: the child's 8, the parent's 12. */
	struct stat sb;
	ck_assert_int_eq(fstat(swapfd, &sb), 0);
	ck_assert_int_eq(sb.st_size, (9 + 8 + 12) * PS);
	pager_terminate(p, fresh);
	pager_terminate(p, mo);
	pager_release(p);
	close(to_parent[0]);
	close(to_parent[1]);
	close(to_child[0]);
	close(to_child[1]);
}
END_TEST

Suite *default_pager_suite(void)
{
	Suite *s = suite_create("default_pager");
	TCase *tc = tcase_create("swap");
	tcase_add_checked_fixture(tc, setup, teardown);
	HARNESS_ADD_TEST(tc, test_without_swap_every_page_is_zero_fill_and_page_outs_are_refused);
	HARNESS_ADD_TEST(tc, test_a_returned_page_is_served_back);
	HARNESS_ADD_TEST(tc, test_memory_objects_are_independent);
	HARNESS_ADD_TEST(tc, test_slots_of_rewritten_pages_and_terminated_objects_are_reused);
	HARNESS_ADD_TEST(tc, test_a_swap_file_cut_short_is_an_error_not_zeros);
	HARNESS_ADD_TEST(tc, test_a_slot_changed_behind_the_pagers_back_is_an_error);
	HARNESS_ADD_TEST(tc, test_a_refused_page_out_is_passed_on_and_keeps_nothing);
	HARNESS_ADD_TEST(tc, test_after_a_fork_parent_and_child_page_out_to_one_file_and_each_reads_its_own);
	suite_add_tcase(s, tc);
	return s;
}

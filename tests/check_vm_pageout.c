/* Page-out under a resident limit: least recently used first, clean pages dropped, dirty
 * ones returned to their pager, all of them back intact on the next fault. */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"
#include "mmu/vm_domain.h"
#include "mmu/vm_map.h"
#include "mmu/vm_pageout.h"
#include "vm_sandbox.h"

#define PS VM_PAGE_SIZE
#define BASE 0x800000u
#define PAGES 16u

static struct vm_sandbox *sb;

static vm_addr_t at(unsigned page)
{
	return BASE + (vm_addr_t)page * PS;
}

static void start(unsigned flags, unsigned pages)
{
	ck_assert_int_eq(vm_sandbox_create(BASE, PAGES * PS, flags, &sb), 0);
	vm_addr_t a = BASE;
	ck_assert_int_eq(vm_map_allocate(sb->map, &a, pages * PS, false), KERN_SUCCESS);
}

static void stats(struct vm_statistics *st)
{
	vm_domain_statistics(sb->dom, st);
}

/* Fill page @p with a pattern of its own through the guest. */
static void scribble(unsigned p)
{
	uint8_t buf[PS];
	for (size_t i = 0; i < PS; i++)
		buf[i] = (uint8_t)(p * 31 + i);
	ck_assert_int_eq(vm_sandbox_write(sb, at(p), buf, PS), KERN_SUCCESS);
}

static void check_scribble(unsigned p)
{
	uint8_t buf[PS];
	ck_assert_int_eq(vm_sandbox_read(sb, at(p), buf, PS), KERN_SUCCESS);
	for (size_t i = 0; i < PS; i++)
		ck_assert_uint_eq(buf[i], (uint8_t)(p * 31 + i));
}

START_TEST(test_clean_pages_are_dropped_oldest_first)
{
	start(VM_SANDBOX_SWAP, 8);
	uint8_t c;
	for (unsigned p = 0; p < 8; p++)
		ck_assert_int_eq(vm_sandbox_read(sb, at(p), &c, 1), KERN_SUCCESS);
	vm_domain_set_limit(sb->dom, 4);
	struct vm_statistics st;
	stats(&st);
	ck_assert_uint_eq(st.resident_count, 4);
	ck_assert_uint_eq(st.reclaims, 4);
	ck_assert_uint_eq(st.pageouts, 0);
	for (unsigned p = 0; p < 8; p++)
		ck_assert_uint_eq(pmap_flat_prot(sb->flat, at(p)) != 0, p >= 4);
	vm_sandbox_destroy(sb);
}
END_TEST

START_TEST(test_dirty_pages_go_to_swap_and_come_back_intact)
{
	start(VM_SANDBOX_SWAP, 8);
	for (unsigned p = 0; p < 8; p++)
		scribble(p);
	vm_domain_set_limit(sb->dom, 2);
	struct vm_statistics st;
	stats(&st);
	ck_assert_uint_eq(st.pageouts, 6);
	ck_assert_uint_eq(st.resident_count, 2);
	for (unsigned p = 0; p < 8; p++)
		check_scribble(p);
	stats(&st);
	ck_assert_uint_ge(st.pageins, 6);
	ck_assert_uint_le(st.resident_count, 2);
	vm_map_check(sb->map);
	vm_sandbox_destroy(sb);
}
END_TEST

START_TEST(test_without_swap_dirty_anonymous_pages_stay)
{
	start(0, 4);
	scribble(0);
	scribble(1);
	uint8_t c;
	ck_assert_int_eq(vm_sandbox_read(sb, at(2), &c, 1), KERN_SUCCESS);
	vm_domain_set_limit(sb->dom, 1);
	struct vm_statistics st;
	stats(&st);
	ck_assert_uint_eq(st.reclaims, 1); /* the clean zero page */
	ck_assert_uint_eq(st.pageout_failures, 2);
	ck_assert_uint_eq(st.resident_count, 2);
	check_scribble(0);
	check_scribble(1);
	vm_sandbox_destroy(sb);
}
END_TEST

START_TEST(test_recently_used_pages_outlive_older_ones)
{
	start(VM_SANDBOX_SWAP, 4);
	for (unsigned p = 0; p < 4; p++)
		scribble(p);
	uint8_t c;
	ck_assert_int_eq(vm_map_read(sb->map, at(0), &c, 1), KERN_SUCCESS); /* page 0 is now the newest */
	vm_domain_set_limit(sb->dom, 3);
	ck_assert_uint_eq(pmap_flat_prot(sb->flat, at(1)), 0);
	ck_assert_uint_ne(pmap_flat_prot(sb->flat, at(0)), 0);
	vm_sandbox_destroy(sb);
}
END_TEST

START_TEST(test_the_faulting_page_survives_a_limit_smaller_than_its_cluster)
{
	start(VM_SANDBOX_SWAP, 16);
	ck_assert_int_eq(vm_map_set_attr(sb->map, BASE, 16 * PS, VM_ATTR_CLUSTER, 16), KERN_SUCCESS);
	vm_domain_set_limit(sb->dom, 1);
	uint8_t c = 7;
	ck_assert_int_eq(vm_sandbox_write(sb, at(9), &c, 1), KERN_SUCCESS);
	ck_assert_uint_ne(pmap_flat_prot(sb->flat, at(9)), 0);
	struct vm_statistics st;
	stats(&st);
	ck_assert_uint_eq(st.resident_count, 1);
	ck_assert_uint_eq(st.resident_peak, 16);
	vm_sandbox_destroy(sb);
}
END_TEST

START_TEST(test_a_paged_out_page_written_again_is_paged_out_again)
{
	start(VM_SANDBOX_SWAP, 2);
	scribble(0);
	vm_domain_begin(sb->dom);
	ck_assert_uint_eq(vm_pageout_scan(sb->dom, 1), 1);
	uint8_t buf[PS];
	memset(buf, 0xee, PS);
	ck_assert_int_eq(vm_sandbox_write(sb, at(0) + PS / 2, buf, PS / 2), KERN_SUCCESS);
	vm_domain_begin(sb->dom);
	ck_assert_uint_eq(vm_pageout_scan(sb->dom, 1), 1);
	ck_assert_int_eq(vm_sandbox_read(sb, at(0), buf, PS), KERN_SUCCESS);
	ck_assert_uint_eq(buf[0], 0);
	ck_assert_uint_eq(buf[1], 1);
	ck_assert_uint_eq(buf[PS - 1], 0xee);
	struct vm_statistics st;
	stats(&st);
	ck_assert_uint_eq(st.pageouts, 2);
	vm_sandbox_destroy(sb);
}
END_TEST

/* Pages paged out, then the swap file cut and grown again under them (as a later page-out
 * grows it): a fault on a lost page is a memory error, not a zero page. */
START_TEST(test_a_page_lost_from_a_cut_swap_file_is_a_memory_error)
{
	start(VM_SANDBOX_SWAP, 8);
	for (unsigned p = 0; p < 8; p++)
		scribble(p);
	vm_domain_set_limit(sb->dom, 2);
	ck_assert_int_eq(ftruncate(sb->swapfd, 0), 0);
	ck_assert_int_eq(ftruncate(sb->swapfd, 8 * PS), 0);
	uint8_t c;
	ck_assert_int_eq(vm_sandbox_read(sb, at(0), &c, 1), KERN_MEMORY_ERROR);
	struct vm_statistics st;
	stats(&st);
	ck_assert_uint_eq(st.memory_errors, 1);
	check_scribble(7); /* resident, untouched by the cut */
	vm_sandbox_destroy(sb);
}
END_TEST

/* A swap file that refuses writes (a full disk): the pages stay, and the refusals are
 * counted with their cause for the VMM to report. */
START_TEST(test_page_outs_the_pager_refuses_are_counted_with_their_error)
{
	start(VM_SANDBOX_SWAP, 8);
	int full = open("/dev/full", O_RDWR | O_CLOEXEC);
	ck_assert_int_ge(full, 0);
	ck_assert_int_eq(dup2(full, sb->swapfd), sb->swapfd);
	close(full);
	for (unsigned p = 0; p < 8; p++)
		scribble(p);
	vm_domain_set_limit(sb->dom, 2);
	struct vm_statistics st;
	stats(&st);
	ck_assert_uint_ge(st.pageout_errors, 6); /* pages given one more turn may be tried again */
	ck_assert_uint_eq(st.pageout_failures, st.pageout_errors);
	ck_assert_uint_eq(st.resident_count, 8);
	ck_assert_int_eq(sb->dom->pageout_error, -ENOSPC);
	for (unsigned p = 0; p < 8; p++)
		check_scribble(p);
	vm_sandbox_destroy(sb);
}
END_TEST

Suite *vm_pageout_suite(void)
{
	Suite *s = suite_create("vm_pageout");
	TCase *tc = tcase_create("limit");
	HARNESS_ADD_TEST(tc, test_clean_pages_are_dropped_oldest_first);
	HARNESS_ADD_TEST(tc, test_dirty_pages_go_to_swap_and_come_back_intact);
	HARNESS_ADD_TEST(tc, test_without_swap_dirty_anonymous_pages_stay);
	HARNESS_ADD_TEST(tc, test_recently_used_pages_outlive_older_ones);
	HARNESS_ADD_TEST(tc, test_the_faulting_page_survives_a_limit_smaller_than_its_cluster);
	HARNESS_ADD_TEST(tc, test_a_paged_out_page_written_again_is_paged_out_again);
	HARNESS_ADD_TEST(tc, test_a_page_lost_from_a_cut_swap_file_is_a_memory_error);
	HARNESS_ADD_TEST(tc, test_page_outs_the_pager_refuses_are_counted_with_their_error);
	suite_add_tcase(s, tc);
	return s;
}

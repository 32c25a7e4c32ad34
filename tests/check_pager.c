/*
 * The pager interface's other direction (pager.h): pages supplied locked, data_unlock asked
 * by a fault that needs what the lock forbids, lock_request taking pages back (clean,
 * flush, new locks), change_attributes. Against an in-process test pager that answers as
 * each test scripts it.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "mmu/pager.h"
#include "mmu/vm_domain.h"
#include "mmu/vm_fault.h"
#include "mmu/vm_map.h"
#include "mmu/vm_object.h"
#include "mmu/vm_page.h"
#include "vm_sandbox.h"

#define PS VM_PAGE_SIZE
#define BASE 0x400000u
#define PAGES 16u

/* How the lock pager answers data_unlock. */
enum lp_unlock {
	LP_GRANT,        /* lowers the lock to none */
	LP_REFUSE,       /* -EACCES */
	LP_SILENT,       /* returns 0 without a word */
	LP_FAIL,         /* -EIO */
	LP_FLUSH_GRANT,  /* flushes the page and supplies it unlocked next time */
};

/* Page n holds byte n + 1 + generation; supplied locked against @supply_lock. */
struct lp_state {
	enum lp_unlock unlock;
	vm_prot_t supply_lock;
	unsigned requests, unlocks, returns;
	bool refuse_returns;      /* data_return fails with -EIO */
	/* Called with each data_request's reply once its pages are provided, or NULL. */
	void (*after_request)(struct pager_reply *reply, vm_offset_t offset, vm_size_t length);
	vm_prot_t last_desired;
	vm_offset_t last_unlock_offset;
	uint8_t returned[PAGES];  /* first byte of the last data returned for each page, 0 = none */
	uint8_t generation;
	/* service: one lock request to make */
	vm_offset_t svc_offset;
	vm_size_t svc_size;
	unsigned svc_flags;
	vm_prot_t svc_lock;
	int svc_result;
};

static int lp_open(struct pager *p, const struct pager_args *args)
{
	(void)args;
	p->priv = calloc(1, sizeof(struct lp_state));
	p->max_prot = VM_PROT_ALL;
	return p->priv ? 0 : -ENOMEM;
}

static void lp_close(struct pager *p)
{
	free(p->priv);
}

static int lp_create(struct pager *p, uint64_t size, void **mo)
{
	(void)size;
	*mo = p->priv;
	return 0;
}

static int lp_request(struct pager *p, void *mo, vm_offset_t offset, vm_size_t length, vm_prot_t access,
		      struct pager_reply *reply)
{
	(void)p;
	(void)access;
	struct lp_state *t = mo;
	t->requests++;
	uint8_t page[PS];
	for (vm_offset_t at = offset; at < offset + length; at += PS) {
		memset(page, (int)(at / PS + 1 + t->generation), PS);
		pager_data_provided_locked(reply, at, page, PS, t->supply_lock);
	}
	if (t->after_request)
		t->after_request(reply, offset, length);
	return 0;
}

static int lp_return(struct pager *p, void *mo, vm_offset_t offset, const void *data, vm_size_t length)
{
	(void)p;
	struct lp_state *t = mo;
	if (t->refuse_returns)
		return -EIO;
	for (vm_size_t i = 0; i < length; i += PS) {
		t->returns++;
		t->returned[(offset + i) / PS] = ((const uint8_t *)data)[i];
	}
	return 0;
}

static int lp_unlock(struct pager *p, void *mo, vm_offset_t offset, vm_size_t length, vm_prot_t desired,
		     struct pager_reply *reply)
{
	(void)p;
	struct lp_state *t = mo;
	t->unlocks++;
	t->last_desired = desired;
	t->last_unlock_offset = offset;
	switch (t->unlock) {
	case LP_GRANT: return pager_lock_request(reply, offset, length, 0, VM_PROT_NONE);
	case LP_REFUSE: return -EACCES;
	case LP_SILENT: return 0;
	case LP_FAIL: return -EIO;
	case LP_FLUSH_GRANT:
		t->supply_lock = VM_PROT_NONE;
		return pager_lock_request(reply, offset, length, PAGER_LOCK_FLUSH, VM_PROT_NONE);
	}
	return -EIO;
}

static int lp_service(struct pager *p, void *mo, struct pager_reply *reply)
{
	(void)p;
	struct lp_state *t = mo;
	t->svc_result = pager_lock_request(reply, t->svc_offset, t->svc_size, t->svc_flags, t->svc_lock);
	return 0;
}

static const struct pager_ops lock_pager_ops = {
	.name = "lock-test",
	.open = lp_open,
	.close = lp_close,
	.create = lp_create,
	.data_request = lp_request,
	.data_return = lp_return,
	.data_unlock = lp_unlock,
	.service = lp_service,
};

static struct vm_sandbox *sb;
static struct vm_object *obj; /* the test's reference */
static struct lp_state *lp;

static void setup(void)
{
	ck_assert_int_eq(vm_sandbox_create(BASE, PAGES * PS, 0, &sb), 0);
	struct pager *p;
	ck_assert_int_eq(pager_open(&lock_pager_ops, NULL, &p), 0);
	lp = p->priv;
	ck_assert_int_eq(vm_object_create(sb->dom, p, PAGES * PS, &obj), KERN_SUCCESS);
	pager_release(p);
}

static void teardown(void)
{
	vm_object_deallocate(obj);
	vm_sandbox_destroy(sb);
}

static vm_addr_t at(unsigned page)
{
	return BASE + (vm_addr_t)page * PS;
}

/* Map the object shared (writes go to it) or copy-on-write over the whole sandbox. */
static void map_object(bool copy)
{
	vm_addr_t a = at(0);
	ck_assert_int_eq(vm_map_enter(sb->map, &a, PAGES * PS, false, obj, 0, copy, VM_PROT_DEFAULT, VM_PROT_ALL,
				      VM_INHERIT_SHARE),
			 KERN_SUCCESS);
}

/* Make the pager take [page, page+n) back as service would: its lock_request's result. */
static int lock_request(unsigned page, unsigned n, unsigned flags, vm_prot_t lock)
{
	lp->svc_offset = page * PS;
	lp->svc_size = n * PS;
	lp->svc_flags = flags;
	lp->svc_lock = lock;
	lp->svc_result = 1;
	ck_assert_int_eq(vm_object_pager_service(obj), 0);
	vm_object_check(obj);
	return lp->svc_result;
}

static uint8_t read_byte(unsigned page)
{
	uint8_t b = 0;
	ck_assert_int_eq(vm_sandbox_read(sb, at(page), &b, 1), KERN_SUCCESS);
	return b;
}

START_TEST(test_a_page_supplied_read_only_is_entered_read_only_and_a_read_asks_nothing)
{
	lp->supply_lock = VM_PROT_WRITE;
	map_object(false);
	ck_assert_uint_eq(read_byte(3), 4);
	ck_assert_uint_eq(pmap_flat_prot(sb->flat, at(3)), VM_PROT_READ);
	ck_assert_uint_eq(lp->unlocks, 0);
	vm_object_check(obj);
}
END_TEST

START_TEST(test_a_write_to_a_page_supplied_read_only_asks_data_unlock_and_a_grant_lets_it_write)
{
	lp->supply_lock = VM_PROT_WRITE;
	map_object(false);
	ck_assert_uint_eq(read_byte(3), 4);
	ck_assert_int_eq(vm_sandbox_write(sb, at(3), "x", 1), KERN_SUCCESS);
	ck_assert_uint_eq(lp->unlocks, 1);
	ck_assert_uint_eq(lp->last_unlock_offset, 3 * PS);
	ck_assert_uint_eq(lp->last_desired & VM_PROT_WRITE, VM_PROT_WRITE);
	ck_assert_uint_eq(pmap_flat_prot(sb->flat, at(3)) & VM_PROT_WRITE, VM_PROT_WRITE);
	ck_assert_uint_eq(read_byte(3), 'x');
	/* Granted once: the next write asks nothing. */
	ck_assert_int_eq(vm_sandbox_write(sb, at(3), "y", 1), KERN_SUCCESS);
	ck_assert_uint_eq(lp->unlocks, 1);
	vm_object_check(obj);
}
END_TEST

START_TEST(test_a_first_touch_write_of_a_locked_page_asks_once)
{
	lp->supply_lock = VM_PROT_WRITE;
	map_object(false);
	ck_assert_int_eq(vm_sandbox_write(sb, at(5), "w", 1), KERN_SUCCESS);
	ck_assert_uint_eq(lp->requests, 1);
	ck_assert_uint_eq(lp->unlocks, 1);
	ck_assert_uint_eq(read_byte(5), 'w');
}
END_TEST

/* Every way a pager may fail to grant: the write fails with its code and changes nothing. */
START_TEST(test_a_write_the_pager_does_not_grant_fails_and_the_page_keeps_its_bytes)
{
	static const struct {
		enum lp_unlock how;
		kern_return_t kr;
	} cases[] = {
		{LP_REFUSE, KERN_PROTECTION_FAILURE},
		{LP_SILENT, KERN_MEMORY_ERROR},
		{LP_FAIL, KERN_MEMORY_ERROR},
	};
	lp->supply_lock = VM_PROT_WRITE;
	lp->unlock = cases[_i].how;
	map_object(false);
	ck_assert_uint_eq(read_byte(2), 3);
	ck_assert_int_eq(vm_fault(sb->map, at(2), VM_PROT_WRITE, NULL), cases[_i].kr);
	ck_assert_uint_eq(lp->unlocks, 1);
	ck_assert_uint_eq(pmap_flat_prot(sb->flat, at(2)), VM_PROT_READ);
	ck_assert_uint_eq(read_byte(2), 3);
	vm_object_check(obj);
}
END_TEST

START_TEST(test_an_unlock_answered_by_a_flush_supplies_the_page_again_writable)
{
	lp->supply_lock = VM_PROT_WRITE;
	lp->unlock = LP_FLUSH_GRANT;
	map_object(false);
	ck_assert_uint_eq(read_byte(1), 2);
	lp->generation = 10; /* the pager's copy changed meanwhile */
	ck_assert_int_eq(vm_fault(sb->map, at(1), VM_PROT_WRITE, NULL), KERN_SUCCESS);
	ck_assert_uint_eq(lp->requests, 2);
	ck_assert_uint_eq(pmap_flat_prot(sb->flat, at(1)) & VM_PROT_WRITE, VM_PROT_WRITE);
	ck_assert_uint_eq(read_byte(1), 12);
	vm_object_check(obj);
}
END_TEST

START_TEST(test_a_copy_on_write_mapping_of_a_locked_page_copies_it_without_asking)
{
	lp->supply_lock = VM_PROT_WRITE;
	map_object(true);
	ck_assert_int_eq(vm_sandbox_write(sb, at(4), "c", 1), KERN_SUCCESS);
	ck_assert_uint_eq(lp->unlocks, 0);
	ck_assert_uint_eq(read_byte(4), 'c');
}
END_TEST

START_TEST(test_a_page_locked_against_reading_asks_for_a_read)
{
	lp->supply_lock = VM_PROT_ALL;
	map_object(false);
	ck_assert_uint_eq(read_byte(6), 7);
	ck_assert_uint_eq(lp->unlocks, 1);
	ck_assert_uint_eq(lp->last_desired & VM_PROT_READ, VM_PROT_READ);
}
END_TEST

START_TEST(test_locked_pages_of_the_cluster_are_entered_as_their_lock_allows)
{
	lp->supply_lock = VM_PROT_WRITE;
	map_object(false);
	ck_assert_int_eq(vm_map_set_attr(sb->map, at(0), PAGES * PS, VM_ATTR_CLUSTER, 4), KERN_SUCCESS);
	ck_assert_int_eq(vm_fault(sb->map, at(0), VM_PROT_WRITE, NULL), KERN_SUCCESS);
	ck_assert_uint_eq(lp->unlocks, 1);
	ck_assert_uint_eq(pmap_flat_prot(sb->flat, at(0)) & VM_PROT_WRITE, VM_PROT_WRITE);
	for (unsigned i = 1; i < 4; i++)
		ck_assert_uint_eq(pmap_flat_prot(sb->flat, at(i)), VM_PROT_READ);
	vm_object_check(obj);
}
END_TEST

START_TEST(test_a_flush_returns_modified_pages_drops_all_and_a_read_brings_them_back)
{
	map_object(false);
	ck_assert_int_eq(vm_sandbox_write(sb, at(0), "A", 1), KERN_SUCCESS);
	ck_assert_uint_eq(read_byte(1), 2);
	ck_assert_int_eq(vm_sandbox_write(sb, at(2), "C", 1), KERN_SUCCESS);
	unsigned requests = lp->requests;
	ck_assert_int_eq(lock_request(0, 4, PAGER_LOCK_FLUSH | PAGER_LOCK_CLEAN, VM_PROT_NONE), 0);
	ck_assert_uint_eq(lp->returns, 2);
	ck_assert_uint_eq(lp->returned[0], 'A');
	ck_assert_uint_eq(lp->returned[2], 'C');
	for (unsigned i = 0; i < 4; i++) {
		ck_assert(!vm_page_resident(obj, i));
		ck_assert_uint_eq(pmap_flat_prot(sb->flat, at(i)), 0);
	}
	ck_assert_uint_eq(read_byte(0), 1);
	ck_assert_uint_eq(lp->requests, requests + 1);
	vm_object_check(obj);
}
END_TEST

START_TEST(test_a_flush_without_clean_discards_modifications)
{
	map_object(false);
	ck_assert_int_eq(vm_sandbox_write(sb, at(3), "Z", 1), KERN_SUCCESS);
	ck_assert_int_eq(lock_request(3, 1, PAGER_LOCK_FLUSH, VM_PROT_NONE), 0);
	ck_assert_uint_eq(lp->returns, 0);
	ck_assert_uint_eq(read_byte(3), 4);
}
END_TEST

START_TEST(test_a_flush_whose_data_the_pager_refuses_keeps_the_page_modified)
{
	map_object(false);
	ck_assert_int_eq(vm_sandbox_write(sb, at(6), "K", 1), KERN_SUCCESS);
	lp->refuse_returns = true;
	ck_assert_int_eq(lock_request(6, 1, PAGER_LOCK_FLUSH | PAGER_LOCK_CLEAN, VM_PROT_WRITE), -EIO);
	ck_assert(vm_page_resident(obj, 6));
	ck_assert_uint_eq(read_byte(6), 'K');
	ck_assert_uint_eq(pmap_flat_prot(sb->flat, at(6)), VM_PROT_READ);
	lp->refuse_returns = false;
	ck_assert_int_eq(lock_request(6, 1, PAGER_LOCK_FLUSH | PAGER_LOCK_CLEAN, VM_PROT_NONE), 0);
	ck_assert_uint_eq(lp->returned[6], 'K');
	ck_assert(!vm_page_resident(obj, 6));
}
END_TEST

START_TEST(test_a_clean_returns_modified_pages_and_keeps_them_read_only)
{
	map_object(false);
	ck_assert_int_eq(vm_sandbox_write(sb, at(1), "B", 1), KERN_SUCCESS);
	ck_assert_int_eq(lock_request(0, PAGES, PAGER_LOCK_CLEAN, VM_PROT_NONE), 0);
	ck_assert_uint_eq(lp->returns, 1);
	ck_assert_uint_eq(lp->returned[1], 'B');
	ck_assert(vm_page_resident(obj, 1));
	ck_assert_uint_eq(pmap_flat_prot(sb->flat, at(1)), VM_PROT_READ);
	/* Clean now: a second clean returns nothing; a new write makes it modified again. */
	ck_assert_int_eq(lock_request(0, PAGES, PAGER_LOCK_CLEAN, VM_PROT_NONE), 0);
	ck_assert_uint_eq(lp->returns, 1);
	ck_assert_int_eq(vm_sandbox_write(sb, at(1), "b", 1), KERN_SUCCESS);
	ck_assert_int_eq(lock_request(0, PAGES, PAGER_LOCK_CLEAN, VM_PROT_NONE), 0);
	ck_assert_uint_eq(lp->returns, 2);
	ck_assert_uint_eq(lp->returned[1], 'b');
}
END_TEST

START_TEST(test_a_new_lock_lowers_the_mapping_at_once_and_the_next_write_asks_again)
{
	map_object(false);
	ck_assert_int_eq(vm_sandbox_write(sb, at(7), "q", 1), KERN_SUCCESS);
	ck_assert_uint_eq(pmap_flat_prot(sb->flat, at(7)) & VM_PROT_WRITE, VM_PROT_WRITE);
	ck_assert_int_eq(lock_request(7, 1, PAGER_LOCK_CLEAN, VM_PROT_WRITE), 0);
	ck_assert_uint_eq(pmap_flat_prot(sb->flat, at(7)), VM_PROT_READ);
	ck_assert_uint_eq(read_byte(7), 'q');
	ck_assert_uint_eq(lp->unlocks, 0);
	ck_assert_int_eq(vm_sandbox_write(sb, at(7), "r", 1), KERN_SUCCESS);
	ck_assert_uint_eq(lp->unlocks, 1);
	ck_assert_uint_eq(read_byte(7), 'r');
	vm_object_check(obj);
}
END_TEST

START_TEST(test_a_read_lock_takes_the_mapping_away_and_the_next_read_asks)
{
	map_object(false);
	ck_assert_uint_eq(read_byte(8), 9);
	ck_assert_int_eq(lock_request(8, 1, 0, VM_PROT_READ), 0);
	ck_assert_uint_eq(pmap_flat_prot(sb->flat, at(8)), 0);
	ck_assert(vm_page_resident(obj, 8));
	ck_assert_uint_eq(read_byte(8), 9);
	ck_assert_uint_eq(lp->unlocks, 1);
	ck_assert_uint_eq(lp->last_desired & VM_PROT_READ, VM_PROT_READ);
	vm_object_check(obj);
}
END_TEST

START_TEST(test_a_lock_request_outside_the_object_or_with_bad_bits_does_nothing)
{
	map_object(false);
	ck_assert_int_eq(vm_sandbox_write(sb, at(0), "k", 1), KERN_SUCCESS);
	ck_assert_int_eq(lock_request(PAGES - 1, 2, PAGER_LOCK_FLUSH, VM_PROT_NONE), -EINVAL);
	ck_assert_int_eq(lock_request(0, 1, 0x80, VM_PROT_NONE), -EINVAL);
	ck_assert_int_eq(lock_request(0, 1, PAGER_LOCK_FLUSH, 0x10), -EINVAL);
	lp->svc_offset = 1;
	ck_assert_int_eq(vm_object_pager_service(obj), 0);
	ck_assert(vm_page_resident(obj, 0));
	ck_assert_uint_eq(read_byte(0), 'k');
}
END_TEST

/* Pages provided, then taken back in the same answer. */
static void flush_provided(struct pager_reply *reply, vm_offset_t offset, vm_size_t length)
{
	ck_assert_int_eq(pager_lock_request(reply, offset, length, PAGER_LOCK_FLUSH, VM_PROT_NONE), 0);
}

START_TEST(test_pages_provided_then_flushed_in_the_same_answer_fail_the_fault_rather_than_read_zero)
{
	lp->after_request = flush_provided;
	map_object(false);
	ck_assert_int_eq(vm_fault(sb->map, at(3), VM_PROT_READ, NULL), KERN_MEMORY_ERROR);
	ck_assert(!vm_page_resident(obj, 3));
	ck_assert_uint_eq(pmap_flat_prot(sb->flat, at(3)), 0);
}
END_TEST

/* change_attributes from inside data_request. */
static void change_attributes(struct pager_reply *reply, vm_offset_t offset, vm_size_t length)
{
	(void)offset;
	(void)length;
	ck_assert_int_eq(pager_change_attributes(reply, true, VM_COPY_NONE, 4), 0);
	ck_assert_int_eq(pager_change_attributes(reply, true, VM_COPY_NONE, VM_CLUSTER_MAX + 1), -EINVAL);
}

START_TEST(test_change_attributes_sets_the_objects_cluster_and_copy_strategy)
{
	lp->after_request = change_attributes;
	map_object(false);
	struct vm_fault_info info;
	ck_assert_int_eq(vm_fault(sb->map, at(9), VM_PROT_READ, &info), KERN_SUCCESS);
	ck_assert_uint_eq(info.entered, 1); /* the entry's cluster of one, before the pager spoke */
	ck_assert_uint_eq(obj->cluster, 4);
	ck_assert_int_eq(obj->copy_strategy, VM_COPY_NONE);
	ck_assert(obj->may_cache);
	ck_assert_int_eq(vm_fault(sb->map, at(1), VM_PROT_READ, &info), KERN_SUCCESS);
	ck_assert_uint_eq(info.entered, 4);
	ck_assert_uint_eq(lp->requests, 2);
}
END_TEST

Suite *pager_suite(void)
{
	Suite *s = suite_create("pager");
	TCase *tc = tcase_create("lock");
	tcase_add_checked_fixture(tc, setup, teardown);
	HARNESS_ADD_TEST(tc, test_a_page_supplied_read_only_is_entered_read_only_and_a_read_asks_nothing);
	HARNESS_ADD_TEST(tc, test_a_write_to_a_page_supplied_read_only_asks_data_unlock_and_a_grant_lets_it_write);
	HARNESS_ADD_TEST(tc, test_a_first_touch_write_of_a_locked_page_asks_once);
	HARNESS_ADD_LOOP_TEST(tc, test_a_write_the_pager_does_not_grant_fails_and_the_page_keeps_its_bytes, 0, 3);
	HARNESS_ADD_TEST(tc, test_an_unlock_answered_by_a_flush_supplies_the_page_again_writable);
	HARNESS_ADD_TEST(tc, test_a_copy_on_write_mapping_of_a_locked_page_copies_it_without_asking);
	HARNESS_ADD_TEST(tc, test_a_page_locked_against_reading_asks_for_a_read);
	HARNESS_ADD_TEST(tc, test_locked_pages_of_the_cluster_are_entered_as_their_lock_allows);
	HARNESS_ADD_TEST(tc, test_a_flush_returns_modified_pages_drops_all_and_a_read_brings_them_back);
	HARNESS_ADD_TEST(tc, test_a_flush_without_clean_discards_modifications);
	HARNESS_ADD_TEST(tc, test_a_flush_whose_data_the_pager_refuses_keeps_the_page_modified);
	HARNESS_ADD_TEST(tc, test_a_clean_returns_modified_pages_and_keeps_them_read_only);
	HARNESS_ADD_TEST(tc, test_a_new_lock_lowers_the_mapping_at_once_and_the_next_write_asks_again);
	HARNESS_ADD_TEST(tc, test_a_read_lock_takes_the_mapping_away_and_the_next_read_asks);
	HARNESS_ADD_TEST(tc, test_a_lock_request_outside_the_object_or_with_bad_bits_does_nothing);
	HARNESS_ADD_TEST(tc, test_pages_provided_then_flushed_in_the_same_answer_fail_the_fault_rather_than_read_zero);
	HARNESS_ADD_TEST(tc, test_change_attributes_sets_the_objects_cluster_and_copy_strategy);
	suite_add_tcase(s, tc);
	return s;
}

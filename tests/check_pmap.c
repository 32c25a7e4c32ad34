/* The pmap boundary: one writer or many readers, bytes kept when the last mapping goes,
 * modified bits, range operations over the flat backend. */
#include <string.h>

#include "harness.h"
#include "mmu/pmap.h"
#include "mmu/pmap_flat.h"
#include "mmu/vm_domain.h"
#include "mmu/vm_object.h"
#include "mmu/vm_page.h"

#define BASE 0x10000u
#define SIZE (64 * VM_PAGE_SIZE)

struct two_pmaps {
	struct vm_domain *dom;
	struct vm_object *obj;
	struct pmap_flat *fa, *fb;
	struct pmap a, b;
};

static void setup(struct two_pmaps *t, const struct pmap_ops *ops)
{
	ck_assert_int_eq(vm_domain_create(&t->dom), 0);
	ck_assert_int_eq(vm_object_allocate(t->dom, SIZE, &t->obj), KERN_SUCCESS);
	ck_assert_int_eq(pmap_flat_create(BASE, SIZE, &t->fa), 0);
	ck_assert_int_eq(pmap_flat_create(BASE, SIZE, &t->fb), 0);
	pmap_init(&t->a, t->dom, ops, t->fa);
	pmap_init(&t->b, t->dom, ops, t->fb);
}

static void teardown(struct two_pmaps *t)
{
	pmap_fini(&t->a);
	pmap_fini(&t->b);
	vm_object_deallocate(t->obj);
	vm_domain_destroy(t->dom);
	pmap_flat_destroy(t->fa);
	pmap_flat_destroy(t->fb);
}

/* A resident page of the object filled with @byte. */
static struct vm_page *page_with(struct two_pmaps *t, uint64_t pindex, uint8_t byte)
{
	struct vm_page *p = vm_object_zero_page(t->obj, pindex);
	ck_assert_ptr_nonnull(p);
	ck_assert_int_eq(vm_page_buffer(p), 0);
	memset(p->data, byte, VM_PAGE_SIZE);
	return p;
}

/* A resident page its pager would not need back. */
static struct vm_page *clean_page(struct two_pmaps *t, uint64_t pindex)
{
	struct vm_page *p = page_with(t, pindex, 0);
	p->flags &= ~VM_PAGE_DIRTY;
	return p;
}

static kern_return_t no_fault(void *arg, vm_addr_t va, vm_prot_t access)
{
	(void)arg;
	(void)va;
	(void)access;
	return KERN_PROTECTION_FAILURE;
}

START_TEST(test_entering_a_page_copies_its_bytes_and_drops_the_buffer)
{
	struct two_pmaps t;
	setup(&t, &pmap_flat_ops);
	struct vm_page *p = page_with(&t, 0, 0x5a);
	ck_assert_int_eq(pmap_enter(&t.a, BASE, p, VM_PROT_READ, 0), 0);
	ck_assert_ptr_null(p->data);
	ck_assert_uint_eq(t.fa->mem[0], 0x5a);
	ck_assert_uint_eq(pmap_flat_prot(t.fa, BASE), VM_PROT_READ);
	struct vm_statistics st;
	vm_domain_statistics(t.dom, &st);
	ck_assert_uint_eq(st.buffer_count, 0);
	ck_assert_uint_eq(st.mapped_count, 1);
	teardown(&t);
}
END_TEST

START_TEST(test_a_replaced_page_is_removed_before_the_new_one_is_entered)
{
	struct two_pmaps t;
	setup(&t, &pmap_flat_ops);
	struct vm_page *first = page_with(&t, 0, 1), *second = page_with(&t, 1, 2);
	ck_assert_int_eq(pmap_enter(&t.a, BASE, first, VM_PROT_READ, 0), 0);
	ck_assert_int_eq(pmap_enter(&t.a, BASE, second, VM_PROT_READ, 0), 0);
	ck_assert_uint_eq(t.fa->removes, 1);
	ck_assert_uint_eq(t.fa->enters, 2);
	ck_assert_uint_eq(t.fa->mem[0], 2);
	ck_assert_ptr_nonnull(first->data); /* it kept its bytes */
	ck_assert_uint_eq(first->data[0], 1);
	teardown(&t);
}
END_TEST

START_TEST(test_entering_writable_removes_every_other_mapping)
{
	struct two_pmaps t;
	setup(&t, &pmap_flat_ops);
	struct vm_page *p = page_with(&t, 0, 1);
	ck_assert_int_eq(pmap_enter(&t.a, BASE, p, VM_PROT_READ, 0), 0);
	ck_assert_int_eq(pmap_enter(&t.b, BASE + VM_PAGE_SIZE, p, VM_PROT_READ, 0), 0);
	ck_assert_int_eq(pmap_enter(&t.a, BASE + 2 * VM_PAGE_SIZE, p, VM_PROT_DEFAULT, 0), 0);
	ck_assert_ptr_null(pmap_lookup(&t.a, BASE));
	ck_assert_ptr_null(pmap_lookup(&t.b, BASE + VM_PAGE_SIZE));
	ck_assert_uint_eq(pmap_flat_prot(t.fb, BASE + VM_PAGE_SIZE), 0);
	ck_assert_ptr_eq(p->pv, pmap_lookup(&t.a, BASE + 2 * VM_PAGE_SIZE));
	ck_assert_ptr_null(p->pv->next);
	teardown(&t);
}
END_TEST

START_TEST(test_entering_read_only_downgrades_the_writer_and_shows_its_writes)
{
	struct two_pmaps t;
	setup(&t, &pmap_flat_ops);
	struct vm_page *p = page_with(&t, 3, 0);
	ck_assert_int_eq(pmap_enter(&t.a, BASE, p, VM_PROT_DEFAULT, 0), 0);
	ck_assert_int_eq(pmap_flat_access(t.fa, BASE + 10, "guest", 5, VM_PROT_WRITE, no_fault, NULL), KERN_SUCCESS);
	ck_assert_int_eq(pmap_enter(&t.b, BASE, p, VM_PROT_READ, 0), 0);
	ck_assert_uint_eq(pmap_flat_prot(t.fa, BASE), VM_PROT_READ);
	ck_assert_mem_eq(t.fb->mem + 10, "guest", 5);
	ck_assert(p->flags & VM_PAGE_DIRTY);
	/* The old writer cannot write any more: its next write would fault. */
	ck_assert_int_eq(pmap_flat_access(t.fa, BASE, "x", 1, VM_PROT_WRITE, no_fault, NULL), KERN_PROTECTION_FAILURE);
	teardown(&t);
}
END_TEST

START_TEST(test_removing_the_last_mapping_keeps_the_bytes_in_a_buffer)
{
	struct two_pmaps t;
	setup(&t, &pmap_flat_ops);
	struct vm_page *p = page_with(&t, 1, 0);
	ck_assert_int_eq(pmap_enter(&t.a, BASE, p, VM_PROT_DEFAULT, 0), 0);
	ck_assert_int_eq(pmap_flat_access(t.fa, BASE, "kept", 4, VM_PROT_WRITE, no_fault, NULL), KERN_SUCCESS);
	ck_assert_int_eq(pmap_remove(&t.a, BASE, BASE + SIZE, NULL), 0);
	ck_assert_ptr_nonnull(p->data);
	ck_assert_mem_eq(p->data, "kept", 4);
	ck_assert_ptr_null(p->pv);
	teardown(&t);
}
END_TEST

START_TEST(test_removing_pages_of_a_dying_object_keeps_nothing)
{
	struct two_pmaps t;
	setup(&t, &pmap_flat_ops);
	struct vm_page *p = page_with(&t, 1, 9);
	ck_assert_int_eq(pmap_enter(&t.a, BASE, p, VM_PROT_DEFAULT, 0), 0);
	uint64_t reads = t.fa->reads;
	ck_assert_int_eq(pmap_remove(&t.a, BASE, BASE + SIZE, t.obj), 0);
	ck_assert_uint_eq(t.fa->reads, reads);
	ck_assert_ptr_null(p->data);
	vm_page_free(p);
	teardown(&t);
}
END_TEST

START_TEST(test_modified_bits_make_pages_dirty_only_when_written)
{
	struct two_pmaps t;
	setup(&t, &pmap_flat_ops);
	struct vm_page *clean = clean_page(&t, 0), *written = clean_page(&t, 1);
	ck_assert_int_eq(pmap_enter(&t.a, BASE, clean, VM_PROT_DEFAULT, 0), 0);
	ck_assert_int_eq(pmap_enter(&t.a, BASE + VM_PAGE_SIZE, written, VM_PROT_DEFAULT, 0), 0);
	ck_assert_int_eq(pmap_flat_access(t.fa, BASE + VM_PAGE_SIZE, "w", 1, VM_PROT_WRITE, no_fault, NULL),
			 KERN_SUCCESS);
	ck_assert(!pmap_page_dirty(clean));
	ck_assert(pmap_page_dirty(written));
	teardown(&t);
}
END_TEST

START_TEST(test_without_modified_bits_every_writable_page_is_dirty)
{
	struct two_pmaps t;
	setup(&t, &pmap_flat_ops_nomod);
	struct vm_page *p = clean_page(&t, 0), *ro = clean_page(&t, 1);
	ck_assert_int_eq(pmap_enter(&t.a, BASE, p, VM_PROT_DEFAULT, 0), 0);
	ck_assert_int_eq(pmap_enter(&t.a, BASE + VM_PAGE_SIZE, ro, VM_PROT_READ, 0), 0);
	ck_assert(pmap_page_dirty(p));
	ck_assert(!pmap_page_dirty(ro));
	teardown(&t);
}
END_TEST

START_TEST(test_range_removal_touches_only_entered_pages_in_runs)
{
	struct two_pmaps t;
	setup(&t, &pmap_flat_ops);
	for (int i = 0; i < 3; i++)
		ck_assert_int_eq(pmap_enter(&t.a, BASE + i * VM_PAGE_SIZE, page_with(&t, i, 1), VM_PROT_READ, 0), 0);
	ck_assert_int_eq(pmap_enter(&t.a, BASE + 9 * VM_PAGE_SIZE, page_with(&t, 9, 1), VM_PROT_READ, 0), 0);
	/* A range of 2^40 bytes costs what its four mappings cost: two runs, two calls. */
	ck_assert_int_eq(pmap_remove(&t.a, 0, (vm_addr_t)1 << 40, NULL), 0);
	ck_assert_uint_eq(t.fa->removes, 2);
	ck_assert_uint_eq(hmap_count(&t.a.pv), 0);
	teardown(&t);
}
END_TEST

START_TEST(test_protect_lowers_and_never_raises)
{
	struct two_pmaps t;
	setup(&t, &pmap_flat_ops);
	ck_assert_int_eq(pmap_enter(&t.a, BASE, page_with(&t, 0, 1), VM_PROT_READ, 0), 0);
	ck_assert_int_eq(pmap_enter(&t.a, BASE + VM_PAGE_SIZE, page_with(&t, 1, 1), VM_PROT_ALL, 0), 0);
	ck_assert_int_eq(pmap_protect(&t.a, BASE, BASE + 2 * VM_PAGE_SIZE, VM_PROT_READ | VM_PROT_WRITE), 0);
	ck_assert_uint_eq(pmap_flat_prot(t.fa, BASE), VM_PROT_READ);
	ck_assert_uint_eq(pmap_flat_prot(t.fa, BASE + VM_PAGE_SIZE), VM_PROT_READ | VM_PROT_WRITE);
	ck_assert_int_eq(pmap_protect(&t.a, BASE, BASE + 2 * VM_PAGE_SIZE, VM_PROT_NONE), 0);
	ck_assert_uint_eq(hmap_count(&t.a.pv), 0);
	teardown(&t);
}
END_TEST

START_TEST(test_same_bytes_entry_retags_without_copying)
{
	struct two_pmaps t;
	setup(&t, &pmap_flat_ops);
	struct vm_page *old = page_with(&t, 0, 7);
	ck_assert_int_eq(pmap_enter(&t.a, BASE, old, VM_PROT_READ, 0), 0);
	struct vm_page *copy = vm_object_cow_page(t.obj, 1, old, false);
	uint64_t enters = t.fa->enters;
	ck_assert_int_eq(pmap_enter(&t.a, BASE, copy, VM_PROT_DEFAULT, PMAP_ENTER_SAME_BYTES), 0);
	ck_assert_uint_eq(t.fa->enters, enters);
	ck_assert_uint_eq(pmap_flat_prot(t.fa, BASE), VM_PROT_DEFAULT);
	/* The old page lost its only mapping and kept its bytes. */
	ck_assert_ptr_nonnull(old->data);
	ck_assert_uint_eq(old->data[0], 7);
	ck_assert_ptr_eq(pmap_lookup(&t.a, BASE)->page, copy);
	teardown(&t);
}
END_TEST

Suite *pmap_suite(void)
{
	Suite *s = suite_create("pmap");
	TCase *tc = tcase_create("mappings");
	HARNESS_ADD_TEST(tc, test_entering_a_page_copies_its_bytes_and_drops_the_buffer);
	HARNESS_ADD_TEST(tc, test_a_replaced_page_is_removed_before_the_new_one_is_entered);
	HARNESS_ADD_TEST(tc, test_entering_writable_removes_every_other_mapping);
	HARNESS_ADD_TEST(tc, test_entering_read_only_downgrades_the_writer_and_shows_its_writes);
	HARNESS_ADD_TEST(tc, test_removing_the_last_mapping_keeps_the_bytes_in_a_buffer);
	HARNESS_ADD_TEST(tc, test_removing_pages_of_a_dying_object_keeps_nothing);
	HARNESS_ADD_TEST(tc, test_modified_bits_make_pages_dirty_only_when_written);
	HARNESS_ADD_TEST(tc, test_without_modified_bits_every_writable_page_is_dirty);
	HARNESS_ADD_TEST(tc, test_range_removal_touches_only_entered_pages_in_runs);
	HARNESS_ADD_TEST(tc, test_protect_lowers_and_never_raises);
	HARNESS_ADD_TEST(tc, test_same_bytes_entry_retags_without_copying);
	suite_add_tcase(s, tc);
	return s;
}

/* Memory objects: shadow chains, lookup through them, collapse and bypass, eager copies. */
#include <string.h>

#include "harness.h"
#include "mmu/pager.h"
#include "mmu/vm_domain.h"
#include "mmu/vm_map.h"
#include "mmu/vm_object.h"
#include "mmu/vm_page.h"
#include "mmu/vm_pageout.h"
#include "vm_sandbox.h"

#define PS VM_PAGE_SIZE
#define NPAGES 8

static struct vm_domain *dom;

static void setup(void)
{
	ck_assert_int_eq(vm_domain_create(&dom), 0);
}

static void teardown(void)
{
	struct vm_statistics st;
	vm_domain_statistics(dom, &st);
	ck_assert_uint_eq(st.objects_live, 0);
	vm_domain_destroy(dom);
}

static struct vm_object *new_object(void)
{
	struct vm_object *o;
	ck_assert_int_eq(vm_object_allocate(dom, NPAGES * PS, &o), KERN_SUCCESS);
	return o;
}

/* Write @byte over page @page of @obj through a throw-away shared mapping. */
static void put(struct vm_object *obj, unsigned page, char byte)
{
	struct vm_map *m;
	vm_addr_t at = 0;
	char buf[PS];
	memset(buf, byte, PS);
	ck_assert_int_eq(vm_map_create(dom, 0, obj->size, NULL, NULL, &m), KERN_SUCCESS);
	ck_assert_int_eq(vm_map_enter(m, &at, obj->size, false, obj, 0, false, VM_PROT_DEFAULT, VM_PROT_ALL,
				      VM_INHERIT_SHARE),
			 KERN_SUCCESS);
	ck_assert_int_eq(vm_map_write(m, page * PS, buf, PS), KERN_SUCCESS);
	vm_map_destroy(m);
}

static char get(struct vm_object *obj, unsigned page)
{
	char c;
	ck_assert_int_eq(vm_object_read(obj, page * PS + 100, &c, 1), KERN_SUCCESS);
	return c;
}

/* Freeze @obj behind a new object; the caller keeps its reference to @obj. */
static struct vm_object *shadow_of(struct vm_object *obj, unsigned offset_pages, unsigned pages)
{
	vm_object_reference(obj);
	struct vm_object *s = obj;
	vm_offset_t off = offset_pages * PS;
	ck_assert_int_eq(vm_object_shadow(&s, &off, pages * PS), KERN_SUCCESS);
	ck_assert_ptr_eq(s->shadow, obj);
	return s;
}

/* C with 'c' in pages 0-2, B shadowing it with 'b' in page 1, A shadowing B with 'a' in 2.
 * The caller holds one reference to each. */
static void build_abc(struct vm_object **a, struct vm_object **b, struct vm_object **c)
{
	*c = new_object();
	for (unsigned i = 0; i < 3; i++)
		put(*c, i, 'c');
	*b = shadow_of(*c, 0, NPAGES);
	put(*b, 1, 'b');
	*a = shadow_of(*b, 0, NPAGES);
	put(*a, 2, 'a');
}

START_TEST(test_reads_fall_through_the_chain_to_the_first_object_with_the_page)
{
	/* A -> B -> C */
	struct vm_object *a, *b, *c;
	build_abc(&a, &b, &c);
	ck_assert_int_eq(get(a, 0), 'c');
	ck_assert_int_eq(get(a, 1), 'b');
	ck_assert_int_eq(get(a, 2), 'a');
	ck_assert_int_eq(get(a, 3), 0);
	ck_assert_uint_eq(vm_object_depth(a), 3);
	struct vm_lookup l;
	ck_assert_int_eq(vm_object_lookup(a, 1, 1, 2, VM_PROT_READ, false, &l), KERN_SUCCESS);
	ck_assert_ptr_eq(l.object, b);
	ck_assert_uint_eq(l.depth, 1);
	ck_assert_int_eq(vm_object_lookup(a, 5, 5, 6, VM_PROT_READ, false, &l), KERN_SUCCESS);
	ck_assert_ptr_null(l.page);
	vm_object_check(a);
	vm_object_deallocate(a);
	vm_object_deallocate(b);
	vm_object_deallocate(c);
}
END_TEST

START_TEST(test_a_shadow_offset_shifts_the_pages_it_sees)
{
	/* S -> C at offset 2 pages: S's page 0 is C's page 2 */
	struct vm_object *c = new_object();
	put(c, 2, 'x');
	put(c, 3, 'y');
	struct vm_object *s = shadow_of(c, 2, 4);
	ck_assert_int_eq(get(s, 0), 'x');
	ck_assert_int_eq(get(s, 1), 'y');
	ck_assert_uint_eq(s->size, 4 * PS);
	vm_object_deallocate(s);
	vm_object_deallocate(c);
}
END_TEST

START_TEST(test_dropping_the_last_other_reference_collapses_the_chain)
{
	/* A -> B -> C  =>  A -> C  =>  A */
	struct vm_object *a, *b, *c;
	build_abc(&a, &b, &c);
	vm_object_deallocate(b); /* only A holds B now: B folds into A */
	ck_assert_ptr_eq(a->shadow, c);
	ck_assert_uint_eq(vm_object_depth(a), 2);
	vm_object_deallocate(c);
	ck_assert_ptr_null(a->shadow);
	struct vm_statistics st;
	vm_domain_statistics(dom, &st);
	ck_assert_uint_eq(st.object_collapses, 2);
	ck_assert_uint_eq(st.objects_live, 1);
	ck_assert_int_eq(get(a, 0), 'c');
	ck_assert_int_eq(get(a, 1), 'b');
	ck_assert_int_eq(get(a, 2), 'a');
	ck_assert_uint_eq(hmap_count(&a->pages), 3);
	vm_object_check(a);
	vm_object_deallocate(a);
}
END_TEST

START_TEST(test_a_shadow_that_covers_its_backing_object_bypasses_it)
{
	/* A -> B -> C, B also held elsewhere; A has every page B has  =>  A -> C, B -> C */
	struct vm_object *a, *b, *c;
	build_abc(&a, &b, &c);
	put(a, 1, 'A'); /* B's only page, covered */
	vm_object_collapse(a);
	ck_assert_ptr_eq(a->shadow, c);
	ck_assert_ptr_eq(b->shadow, c);
	struct vm_statistics st;
	vm_domain_statistics(dom, &st);
	ck_assert_uint_eq(st.object_bypasses, 1);
	ck_assert_int_eq(get(a, 0), 'c');
	ck_assert_int_eq(get(a, 1), 'A');
	ck_assert_int_eq(get(b, 1), 'b');
	vm_object_check(a);
	vm_object_check(b);
	vm_object_deallocate(a);
	vm_object_deallocate(b);
	vm_object_deallocate(c);
}
END_TEST

START_TEST(test_no_bypass_while_the_backing_object_has_a_page_the_shadow_lacks)
{
	/* A -> B -> C, B held elsewhere, A lacks B's page 1: stays A -> B -> C */
	struct vm_object *a, *b, *c;
	build_abc(&a, &b, &c);
	vm_object_collapse(a);
	ck_assert_ptr_eq(a->shadow, b);
	ck_assert_int_eq(get(a, 1), 'b');
	vm_object_deallocate(a);
	vm_object_deallocate(b);
	vm_object_deallocate(c);
}
END_TEST

START_TEST(test_collapse_brings_back_pages_the_backing_object_paged_out)
{
	/* A -> B (B's page 4 paged out to swap)  =>  A, with page 4 resident again */
	struct vm_sandbox *sb;
	ck_assert_int_eq(vm_sandbox_create(0, PS, VM_SANDBOX_SWAP, &sb), 0);
	struct vm_domain *saved = dom;
	dom = sb->dom;
	struct vm_object *b = new_object();
	put(b, 4, 'p');
	struct vm_page *p = vm_page_lookup(b, 4);
	ck_assert_ptr_nonnull(p);
	vm_domain_begin(dom);
	ck_assert_int_eq(vm_pageout_page(p), 0);
	ck_assert_ptr_null(vm_page_lookup(b, 4));
	ck_assert_uint_eq(hmap_count(&b->paged), 1);
	struct vm_object *a = shadow_of(b, 0, NPAGES);
	vm_object_deallocate(b);
	ck_assert_ptr_null(a->shadow);
	ck_assert_ptr_nonnull(vm_page_lookup(a, 4));
	ck_assert_int_eq(get(a, 4), 'p');
	vm_object_deallocate(a);
	dom = saved;
	vm_sandbox_destroy(sb);
}
END_TEST

/*
 * Every combination of: B held elsewhere or not, A covering B's pages or not, B's page
 * paged out or resident. The chain starts as A -> B -> C:
 *   B held by A alone             A -> B -> C  =>  A -> C      (collapse)
 *   B held elsewhere, A covers B   A -> B -> C  =>  A -> C      (bypass; B -> C stays)
 *   B held elsewhere, A does not   A -> B -> C                 (nothing)
 * and A reads the same bytes before and after in every case.
 */
START_TEST(test_collapse_and_bypass_over_every_combination)
{
	bool held = _i & 1, covers = _i & 2, paged = _i & 4;
	struct vm_sandbox *sb;
	ck_assert_int_eq(vm_sandbox_create(0, PS, VM_SANDBOX_SWAP, &sb), 0);
	struct vm_domain *saved = dom;
	dom = sb->dom;
	struct vm_object *a, *b, *c;
	build_abc(&a, &b, &c);
	if (covers)
		put(a, 1, 'A');
	if (paged) {
		vm_domain_begin(dom);
		ck_assert_int_eq(vm_pageout_page(vm_page_lookup(b, 1)), 0);
	}
	char before[4];
	for (unsigned p = 0; p < 4; p++)
		before[p] = get(a, p);
	if (!held)
		vm_object_deallocate(b); /* collapses on the spot */
	else
		vm_object_collapse(a);
	struct vm_statistics st;
	vm_domain_statistics(dom, &st);
	bool shortened = !held || covers;
	ck_assert_ptr_eq(a->shadow, shortened ? c : b);
	ck_assert_uint_eq(st.object_collapses, !held);
	ck_assert_uint_eq(st.object_bypasses, held && covers);
	for (unsigned p = 0; p < 4; p++)
		ck_assert_int_eq(get(a, p), before[p]);
	vm_object_check(a);
	if (held) {
		ck_assert_int_eq(get(b, 1), 'b');
		vm_object_deallocate(b);
	}
	vm_object_deallocate(a);
	vm_object_deallocate(c);
	dom = saved;
	vm_sandbox_destroy(sb);
}
END_TEST

START_TEST(test_repeated_snapshots_keep_the_chain_short)
{
	/* top -> frozen, 64 times, each frozen object released after one write */
	struct vm_object *top = new_object();
	put(top, 0, 0);
	for (int i = 0; i < 64; i++) {
		struct vm_object *frozen = top;
		top = shadow_of(frozen, 0, NPAGES);
		vm_object_deallocate(frozen); /* our handle; top's link keeps it */
		put(top, (unsigned)i % NPAGES, (char)i);
		ck_assert_uint_le(vm_object_depth(top), 2);
	}
	for (unsigned p = 0; p < NPAGES; p++)
		ck_assert_int_eq(get(top, p), 56 + (int)p);
	vm_object_deallocate(top);
}
END_TEST

START_TEST(test_an_eager_copy_does_not_see_later_writes)
{
	/* A -> C copied slowly into N: N has no shadow */
	struct vm_object *c = new_object();
	put(c, 0, 'c');
	struct vm_object *a = shadow_of(c, 0, NPAGES), *n;
	put(a, 1, 'a');
	ck_assert_int_eq(vm_object_copy_slowly(a, 0, 4 * PS, &n), KERN_SUCCESS);
	ck_assert_ptr_null(n->shadow);
	put(a, 0, 'z');
	ck_assert_int_eq(get(n, 0), 'c');
	ck_assert_int_eq(get(n, 1), 'a');
	ck_assert_int_eq(get(n, 2), 0);
	ck_assert_uint_eq(hmap_count(&n->pages), 2); /* zero pages are left out */
	vm_object_deallocate(n);
	vm_object_deallocate(a);
	vm_object_deallocate(c);
}
END_TEST

START_TEST(test_chain_introspection_lists_each_object_top_first)
{
	/* A -> B -> C */
	struct vm_object *a, *b, *c;
	build_abc(&a, &b, &c);
	struct vm_object_info info[4];
	ck_assert_uint_eq(vm_object_chain(a, info, 4), 3);
	ck_assert_uint_eq(info[0].id, a->id);
	ck_assert_uint_eq(info[0].shadow_id, b->id);
	ck_assert_uint_eq(info[1].shadow_id, c->id);
	ck_assert_uint_eq(info[2].shadow_id, 0);
	ck_assert_uint_eq(info[2].resident_count, 3);
	ck_assert_uint_eq(info[1].shadow_count, 1);
	ck_assert_ptr_null(info[0].pager_name);
	ck_assert(info[0].internal);
	vm_object_deallocate(a);
	vm_object_deallocate(b);
	vm_object_deallocate(c);
}
END_TEST

START_TEST(test_out_of_range_and_empty_objects_are_refused)
{
	struct vm_object *o;
	ck_assert_int_eq(vm_object_allocate(dom, 0, &o), KERN_INVALID_ARGUMENT);
	ck_assert_int_eq(vm_object_allocate(dom, 100, &o), KERN_INVALID_ARGUMENT);
	o = new_object();
	char buf[2];
	ck_assert_int_eq(vm_object_read(o, NPAGES * PS - 1, buf, 2), KERN_INVALID_ARGUMENT);
	ck_assert_int_eq(vm_object_create(dom, NULL, PS, &o), KERN_INVALID_ARGUMENT);
	vm_object_deallocate(o);
}
END_TEST

Suite *vm_object_suite(void)
{
	Suite *s = suite_create("vm_object");
	TCase *tc = tcase_create("chains");
	tcase_add_checked_fixture(tc, setup, teardown);
	HARNESS_ADD_TEST(tc, test_reads_fall_through_the_chain_to_the_first_object_with_the_page);
	HARNESS_ADD_TEST(tc, test_a_shadow_offset_shifts_the_pages_it_sees);
	HARNESS_ADD_TEST(tc, test_dropping_the_last_other_reference_collapses_the_chain);
	HARNESS_ADD_TEST(tc, test_a_shadow_that_covers_its_backing_object_bypasses_it);
	HARNESS_ADD_TEST(tc, test_no_bypass_while_the_backing_object_has_a_page_the_shadow_lacks);
	HARNESS_ADD_TEST(tc, test_collapse_brings_back_pages_the_backing_object_paged_out);
	HARNESS_ADD_LOOP_TEST(tc, test_collapse_and_bypass_over_every_combination, 0, 8);
	HARNESS_ADD_TEST(tc, test_repeated_snapshots_keep_the_chain_short);
	HARNESS_ADD_TEST(tc, test_an_eager_copy_does_not_see_later_writes);
	HARNESS_ADD_TEST(tc, test_chain_introspection_lists_each_object_top_first);
	HARNESS_ADD_TEST(tc, test_out_of_range_and_empty_objects_are_refused);
	suite_add_tcase(s, tc);
	return s;
}

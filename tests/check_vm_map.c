/* Address maps: the Mach calls with Mach's errors, splitting and merging, fork, copies. */
#include <string.h>

#include "harness.h"
#include "mmu/pager.h"
#include "mmu/vm_domain.h"
#include "mmu/vm_map.h"
#include "mmu/vm_object.h"
#include "vm_sandbox.h"

#define PS VM_PAGE_SIZE
#define BASE 0x200000u
#define PAGES 32u

static struct vm_sandbox *sb;
static struct vm_map *map;

static void setup(void)
{
	ck_assert_int_eq(vm_sandbox_create(BASE, PAGES * PS, 0, &sb), 0);
	map = sb->map;
}

static void teardown(void)
{
	vm_sandbox_destroy(sb);
}

static vm_addr_t at(unsigned page)
{
	return BASE + (vm_addr_t)page * PS;
}

static void alloc_fixed(unsigned page, unsigned n)
{
	vm_addr_t a = at(page);
	ck_assert_int_eq(vm_map_allocate(map, &a, n * PS, false), KERN_SUCCESS);
}

static void poke(struct vm_map *m, vm_addr_t a, char c)
{
	ck_assert_int_eq(vm_map_write(m, a, &c, 1), KERN_SUCCESS);
}

static char peek(struct vm_map *m, vm_addr_t a)
{
	char c;
	ck_assert_int_eq(vm_map_read(m, a, &c, 1), KERN_SUCCESS);
	return c;
}

static unsigned regions(struct vm_map *m)
{
	unsigned n = 0;
	vm_addr_t a = 0;
	struct vm_region_info r;
	while (vm_map_region(m, &a, &r) == KERN_SUCCESS) {
		n++;
		a = r.end;
	}
	return n;
}

START_TEST(test_allocate_anywhere_takes_the_lowest_free_range)
{
	alloc_fixed(0, 2);
	alloc_fixed(5, 1);
	vm_addr_t a = 12345;
	ck_assert_int_eq(vm_map_allocate(map, &a, 3 * PS, true), KERN_SUCCESS);
	ck_assert_uint_eq(a, at(2));
	ck_assert_int_eq(vm_map_allocate(map, &a, 3 * PS, true), KERN_SUCCESS);
	ck_assert_uint_eq(a, at(6));
	ck_assert_int_eq(vm_map_allocate(map, &a, PAGES * PS, true), KERN_NO_SPACE);
}
END_TEST

START_TEST(test_allocate_fixed_refuses_used_unaligned_and_outside_ranges)
{
	alloc_fixed(4, 4);
	vm_addr_t a = at(6);
	ck_assert_int_eq(vm_map_allocate(map, &a, 4 * PS, false), KERN_NO_SPACE);
	a = at(1) + 1;
	ck_assert_int_eq(vm_map_allocate(map, &a, PS, false), KERN_INVALID_ARGUMENT);
	a = at(1);
	ck_assert_int_eq(vm_map_allocate(map, &a, PS + 1, false), KERN_INVALID_ARGUMENT);
	a = at(PAGES - 1);
	ck_assert_int_eq(vm_map_allocate(map, &a, 2 * PS, false), KERN_INVALID_ADDRESS);
	a = BASE - PS;
	ck_assert_int_eq(vm_map_allocate(map, &a, PS, false), KERN_INVALID_ADDRESS);
	a = ~(vm_addr_t)0 - PS + 1;
	ck_assert_int_eq(vm_map_allocate(map, &a, 2 * PS, false), KERN_INVALID_ARGUMENT);
	a = at(9);
	ck_assert_int_eq(vm_map_allocate(map, &a, 0, false), KERN_SUCCESS);
	ck_assert_uint_eq(a, 0);
	ck_assert_uint_eq(regions(map), 1);
}
END_TEST

START_TEST(test_new_memory_reads_zero_and_deallocate_accepts_holes)
{
	alloc_fixed(0, 2);
	alloc_fixed(4, 2);
	ck_assert_int_eq(peek(map, at(1) + 77), 0);
	poke(map, at(1), 'x');
	ck_assert_int_eq(vm_map_deallocate(map, at(1), 4 * PS), KERN_SUCCESS);
	ck_assert_uint_eq(regions(map), 2);
	char c;
	ck_assert_int_eq(vm_map_read(map, at(1), &c, 1), KERN_INVALID_ADDRESS);
	ck_assert_int_eq(vm_map_deallocate(map, at(0), PS + 5), KERN_INVALID_ARGUMENT);
	ck_assert_int_eq(vm_map_deallocate(map, at(PAGES), PS), KERN_INVALID_ADDRESS);
	/* Reallocated memory is new zero memory. */
	alloc_fixed(1, 1);
	ck_assert_int_eq(peek(map, at(1)), 0);
}
END_TEST

START_TEST(test_protect_above_the_maximum_fails_and_changes_nothing)
{
	alloc_fixed(0, 4);
	ck_assert_int_eq(vm_map_protect(map, at(2), 2 * PS, true, VM_PROT_READ), KERN_SUCCESS);
	/* Pages 0-1 could be made read/write/execute, 2-3 cannot: nothing changes. */
	ck_assert_int_eq(vm_map_protect(map, at(0), 4 * PS, false, VM_PROT_ALL), KERN_PROTECTION_FAILURE);
	vm_addr_t a = at(0);
	struct vm_region_info r;
	ck_assert_int_eq(vm_map_region(map, &a, &r), KERN_SUCCESS);
	ck_assert_uint_eq(r.protection, VM_PROT_DEFAULT);
	ck_assert_uint_eq(r.end, at(2));
	/* The maximum cannot be raised again either. */
	ck_assert_int_eq(vm_map_protect(map, at(2), PS, true, VM_PROT_DEFAULT), KERN_PROTECTION_FAILURE);
	ck_assert_int_eq(vm_map_protect(map, at(0), PS, false, 8), KERN_INVALID_ARGUMENT);
	ck_assert_int_eq(vm_map_protect(map, at(3), 2 * PS, false, VM_PROT_READ), KERN_INVALID_ADDRESS);
}
END_TEST

START_TEST(test_lowering_the_maximum_lowers_the_current_protection)
{
	alloc_fixed(0, 1);
	ck_assert_int_eq(vm_map_protect(map, at(0), PS, true, VM_PROT_READ), KERN_SUCCESS);
	vm_addr_t a = at(0);
	struct vm_region_info r;
	ck_assert_int_eq(vm_map_region(map, &a, &r), KERN_SUCCESS);
	ck_assert_uint_eq(r.protection, VM_PROT_READ);
	ck_assert_uint_eq(r.max_protection, VM_PROT_READ);
	char c = 1;
	ck_assert_int_eq(vm_map_write(map, at(0), &c, 1), KERN_PROTECTION_FAILURE);
	ck_assert_int_eq(vm_sandbox_write(sb, at(0), &c, 1), KERN_PROTECTION_FAILURE);
}
END_TEST

START_TEST(test_entries_split_on_partial_changes_and_merge_back)
{
	alloc_fixed(0, 6);
	ck_assert_uint_eq(regions(map), 1);
	ck_assert_int_eq(vm_map_protect(map, at(2), 2 * PS, false, VM_PROT_READ), KERN_SUCCESS);
	ck_assert_uint_eq(regions(map), 3);
	ck_assert_int_eq(vm_map_inherit(map, at(1), PS, VM_INHERIT_SHARE), KERN_SUCCESS);
	ck_assert_uint_eq(regions(map), 4);
	ck_assert_int_eq(vm_map_protect(map, at(0), 6 * PS, false, VM_PROT_DEFAULT), KERN_SUCCESS);
	ck_assert_int_eq(vm_map_inherit(map, at(0), 6 * PS, VM_INHERIT_COPY), KERN_SUCCESS);
	ck_assert_uint_eq(regions(map), 1);
	vm_map_check(map);
}
END_TEST

START_TEST(test_touched_entries_merge_only_with_contiguous_object_offsets)
{
	alloc_fixed(0, 4);
	poke(map, at(0), 'a'); /* the entry gets its object */
	ck_assert_int_eq(vm_map_protect(map, at(1), PS, false, VM_PROT_READ), KERN_SUCCESS);
	ck_assert_uint_eq(regions(map), 3);
	ck_assert_int_eq(vm_map_protect(map, at(1), PS, false, VM_PROT_DEFAULT), KERN_SUCCESS);
	ck_assert_uint_eq(regions(map), 1);
	ck_assert_int_eq(peek(map, at(0)), 'a');
	vm_map_check(map);
}
END_TEST

START_TEST(test_fork_applies_share_copy_and_none)
{
	alloc_fixed(0, 3);
	poke(map, at(0), 's');
	poke(map, at(1), 'c');
	poke(map, at(2), 'n');
	ck_assert_int_eq(vm_map_inherit(map, at(0), PS, VM_INHERIT_SHARE), KERN_SUCCESS);
	ck_assert_int_eq(vm_map_inherit(map, at(2), PS, VM_INHERIT_NONE), KERN_SUCCESS);
	struct vm_map *child;
	ck_assert_int_eq(vm_map_fork(map, NULL, NULL, &child), KERN_SUCCESS);
	ck_assert_int_eq(peek(child, at(0)), 's');
	ck_assert_int_eq(peek(child, at(1)), 'c');
	char c;
	ck_assert_int_eq(vm_map_read(child, at(2), &c, 1), KERN_INVALID_ADDRESS);
	/* Shared: both see each other's writes. Copied: neither does. */
	poke(child, at(0), 'S');
	poke(map, at(1), 'P');
	poke(child, at(1), 'C');
	ck_assert_int_eq(peek(map, at(0)), 'S');
	ck_assert_int_eq(peek(map, at(1)), 'P');
	ck_assert_int_eq(peek(child, at(1)), 'C');
	vm_map_check(map);
	vm_map_check(child);
	vm_map_destroy(child);
}
END_TEST

START_TEST(test_copy_strategy_none_copies_at_fork_time)
{
	alloc_fixed(0, 2);
	poke(map, at(0), 'e');
	ck_assert_int_eq(vm_map_set_attr(map, at(0), 2 * PS, VM_ATTR_COPY_STRATEGY, VM_COPY_NONE), KERN_SUCCESS);
	struct vm_map *child;
	ck_assert_int_eq(vm_map_fork(map, NULL, NULL, &child), KERN_SUCCESS);
	struct vm_statistics st;
	vm_domain_statistics(sb->dom, &st);
	ck_assert_uint_eq(st.object_copies, 1);
	ck_assert_uint_eq(st.object_shadows, 0);
	vm_addr_t a = at(0);
	struct vm_region_info r;
	ck_assert_int_eq(vm_map_region(child, &a, &r), KERN_SUCCESS);
	ck_assert(!r.needs_copy);
	ck_assert_uint_eq(r.resident_count, 1); /* the zero page was left out */
	ck_assert_int_eq(peek(child, at(0)), 'e');
	vm_map_destroy(child);
}
END_TEST

START_TEST(test_vm_copy_into_shared_memory_is_seen_by_the_sharer)
{
	alloc_fixed(0, 2);
	poke(map, at(0), 'v');
	ck_assert_int_eq(vm_map_inherit(map, at(1), PS, VM_INHERIT_SHARE), KERN_SUCCESS);
	struct vm_map *child;
	ck_assert_int_eq(vm_map_fork(map, NULL, NULL, &child), KERN_SUCCESS);
	ck_assert_int_eq(vm_map_copy(map, at(0), PS, at(1)), KERN_SUCCESS);
	ck_assert_int_eq(peek(child, at(1)), 'v');
	vm_map_check(map);
	vm_map_check(child);
	vm_map_destroy(child);
}
END_TEST

START_TEST(test_vm_map_shares_or_copies_an_object)
{
	struct vm_object *obj;
	ck_assert_int_eq(vm_object_allocate(sb->dom, 4 * PS, &obj), KERN_SUCCESS);
	vm_addr_t shared = 0, copied = 0;
	ck_assert_int_eq(vm_map_enter(map, &shared, 2 * PS, true, obj, 2 * PS, false, VM_PROT_DEFAULT, VM_PROT_ALL,
				      VM_INHERIT_SHARE),
			 KERN_SUCCESS);
	poke(map, shared + PS, 'o');
	char c;
	ck_assert_int_eq(vm_object_read(obj, 3 * PS, &c, 1), KERN_SUCCESS);
	ck_assert_int_eq(c, 'o');
	ck_assert_int_eq(vm_map_enter(map, &copied, 4 * PS, true, obj, 0, true, VM_PROT_DEFAULT, VM_PROT_ALL,
				      VM_INHERIT_COPY),
			 KERN_SUCCESS);
	ck_assert_int_eq(peek(map, copied + 3 * PS), 'o');
	poke(map, copied + 3 * PS, 'x');
	ck_assert_int_eq(peek(map, shared + PS), 'o');
	vm_object_deallocate(obj);
	vm_map_check(map);
}
END_TEST

START_TEST(test_vm_map_refuses_bad_offsets_protections_and_frozen_objects)
{
	struct vm_object *obj;
	ck_assert_int_eq(vm_object_allocate(sb->dom, 2 * PS, &obj), KERN_SUCCESS);
	vm_addr_t a = 0;
	ck_assert_int_eq(vm_map_enter(map, &a, 2 * PS, true, obj, PS, false, VM_PROT_DEFAULT, VM_PROT_ALL, 0),
			 KERN_INVALID_ARGUMENT);
	ck_assert_int_eq(vm_map_enter(map, &a, PS, true, obj, 1, false, VM_PROT_DEFAULT, VM_PROT_ALL, 0),
			 KERN_INVALID_ARGUMENT);
	ck_assert_int_eq(vm_map_enter(map, &a, PS, true, obj, 0, false, VM_PROT_ALL, VM_PROT_READ, 0),
			 KERN_PROTECTION_FAILURE);
	ck_assert_int_eq(vm_map_enter(map, &a, PS, true, obj, 0, false, VM_PROT_READ, VM_PROT_READ, 9),
			 KERN_INVALID_ARGUMENT);
	/* Once a lazy copy froze it, the object may be shared read-only but not writable. */
	ck_assert_int_eq(vm_map_enter(map, &a, PS, true, obj, 0, true, VM_PROT_DEFAULT, VM_PROT_ALL, 0), KERN_SUCCESS);
	ck_assert_int_eq(vm_map_enter(map, &a, PS, true, obj, 0, false, VM_PROT_DEFAULT, VM_PROT_ALL, 0),
			 KERN_PROTECTION_FAILURE);
	ck_assert_int_eq(vm_map_enter(map, &a, PS, true, obj, 0, false, VM_PROT_READ, VM_PROT_READ, 0), KERN_SUCCESS);
	vm_object_deallocate(obj);
}
END_TEST

START_TEST(test_vm_copy_behaves_as_memmove_and_is_lazy)
{
	alloc_fixed(0, 8);
	for (unsigned i = 0; i < 4; i++)
		poke(map, at(i), (char)('0' + i));
	struct vm_statistics before, after;
	vm_domain_statistics(sb->dom, &before);
	ck_assert_int_eq(vm_map_copy(map, at(0), 4 * PS, at(2)), KERN_SUCCESS);
	vm_domain_statistics(sb->dom, &after);
	ck_assert_uint_eq(after.cow_faults, before.cow_faults); /* nothing copied yet */
	for (unsigned i = 0; i < 4; i++)
		ck_assert_int_eq(peek(map, at(2 + i)), '0' + (int)i);
	ck_assert_int_eq(peek(map, at(0)), '0');
	poke(map, at(2), 'w');
	ck_assert_int_eq(peek(map, at(0)), '0');
	vm_map_check(map);
}
END_TEST

START_TEST(test_vm_copy_needs_a_readable_source_and_writable_destination)
{
	alloc_fixed(0, 4);
	ck_assert_int_eq(vm_map_protect(map, at(2), 2 * PS, false, VM_PROT_READ), KERN_SUCCESS);
	ck_assert_int_eq(vm_map_copy(map, at(0), 2 * PS, at(2)), KERN_PROTECTION_FAILURE);
	ck_assert_int_eq(vm_map_copy(map, at(2), 4 * PS, at(0)), KERN_INVALID_ADDRESS);
	ck_assert_int_eq(vm_map_copy(map, at(0) + 1, PS, at(2)), KERN_INVALID_ARGUMENT);
}
END_TEST

START_TEST(test_read_and_write_take_bytes_across_pages_and_fail_whole)
{
	alloc_fixed(0, 3);
	char in[2 * PS], out[2 * PS];
	for (size_t i = 0; i < sizeof(in); i++)
		in[i] = (char)(i * 13);
	ck_assert_int_eq(vm_map_write(map, at(0) + 100, in, sizeof(in)), KERN_SUCCESS);
	ck_assert_int_eq(vm_map_read(map, at(0) + 100, out, sizeof(out)), KERN_SUCCESS);
	ck_assert_mem_eq(in, out, sizeof(in));
	/* Running into a hole: nothing is written. */
	ck_assert_int_eq(vm_map_write(map, at(2), in, 2 * PS), KERN_INVALID_ADDRESS);
	ck_assert_int_eq(peek(map, at(2) + 5), in[2 * PS - 100 + 5]);
	ck_assert_int_eq(vm_map_read(map, at(0), out, 0), KERN_SUCCESS);
	ck_assert_int_eq(vm_map_read(map, ~(vm_addr_t)0, out, 2), KERN_INVALID_ARGUMENT);
}
END_TEST

START_TEST(test_region_describes_the_entry_at_or_above_an_address)
{
	alloc_fixed(3, 2);
	poke(map, at(4), 1);
	vm_addr_t a = at(0);
	struct vm_region_info r;
	ck_assert_int_eq(vm_map_region(map, &a, &r), KERN_SUCCESS);
	ck_assert_uint_eq(a, at(3));
	ck_assert_uint_eq(r.end, at(5));
	ck_assert_uint_eq(r.protection, VM_PROT_DEFAULT);
	ck_assert_uint_eq(r.max_protection, VM_PROT_ALL);
	ck_assert_uint_eq(r.inheritance, VM_INHERIT_COPY);
	ck_assert_uint_eq(r.resident_count, 1);
	ck_assert_uint_eq(r.depth, 1);
	ck_assert_uint_ne(r.object_id, 0);
	ck_assert(!r.shared);
	a = at(5);
	ck_assert_int_eq(vm_map_region(map, &a, &r), KERN_INVALID_ADDRESS);
}
END_TEST

START_TEST(test_attributes_are_validated_split_entries_and_are_reported)
{
	alloc_fixed(0, 4);
	ck_assert_int_eq(vm_map_set_attr(map, at(0), 2 * PS, VM_ATTR_CLUSTER, 16), KERN_SUCCESS);
	ck_assert_int_eq(vm_map_set_attr(map, at(0), PS, VM_ATTR_CLUSTER, 0), KERN_INVALID_ARGUMENT);
	ck_assert_int_eq(vm_map_set_attr(map, at(0), PS, VM_ATTR_CLUSTER, VM_CLUSTER_MAX + 1), KERN_INVALID_ARGUMENT);
	ck_assert_int_eq(vm_map_set_attr(map, at(0), PS, VM_ATTR_CACHE, 7), KERN_INVALID_ARGUMENT);
	ck_assert_int_eq(vm_map_set_attr(map, at(3), PS, VM_ATTR_CACHE, VM_CACHE_UNCACHED), KERN_SUCCESS);
	ck_assert_int_eq(vm_map_set_attr(map, at(3), 2 * PS, VM_ATTR_CACHE, VM_CACHE_UNCACHED), KERN_INVALID_ADDRESS);
	vm_addr_t a = at(0);
	struct vm_region_info r;
	ck_assert_int_eq(vm_map_region(map, &a, &r), KERN_SUCCESS);
	ck_assert_uint_eq(r.attr.cluster, 16);
	ck_assert_uint_eq(r.end, at(2));
	a = at(3);
	ck_assert_int_eq(vm_map_region(map, &a, &r), KERN_SUCCESS);
	ck_assert_uint_eq(r.attr.cache, VM_CACHE_UNCACHED);
	ck_assert_uint_eq(regions(map), 3);
}
END_TEST

START_TEST(test_a_snapshot_keeps_its_bytes_and_can_be_mapped_back)
{
	alloc_fixed(0, 2);
	poke(map, at(0), 'a');
	poke(map, at(1), 'b');
	struct vm_map_copy *snap;
	ck_assert_int_eq(vm_map_copyin(map, at(0), 2 * PS, &snap), KERN_SUCCESS);
	poke(map, at(0), 'A');
	char c;
	ck_assert_int_eq(vm_map_copy_read(snap, 0, &c, 1), KERN_SUCCESS);
	ck_assert_int_eq(c, 'a');
	vm_addr_t out = 0;
	ck_assert_int_eq(vm_map_copyout(map, &out, true, snap), KERN_SUCCESS);
	ck_assert_uint_eq(out, at(2));
	ck_assert_int_eq(peek(map, out + PS), 'b');
	ck_assert_int_eq(vm_map_copy_overwrite(map, at(0), snap), KERN_SUCCESS);
	ck_assert_int_eq(peek(map, at(0)), 'a');
	vm_map_copy_discard(snap);
	ck_assert_int_eq(peek(map, out), 'a');
	vm_map_check(map);
}
END_TEST

START_TEST(test_a_snapshot_needs_a_mapped_readable_range)
{
	alloc_fixed(0, 2);
	struct vm_map_copy *snap;
	ck_assert_int_eq(vm_map_copyin(map, at(0), 3 * PS, &snap), KERN_INVALID_ADDRESS);
	ck_assert_int_eq(vm_map_protect(map, at(1), PS, false, VM_PROT_NONE), KERN_SUCCESS);
	ck_assert_int_eq(vm_map_copyin(map, at(0), 2 * PS, &snap), KERN_PROTECTION_FAILURE);
	ck_assert_int_eq(vm_map_copyin(map, at(0), 0, &snap), KERN_INVALID_ARGUMENT);
}
END_TEST

/* What vm_map_copy_pages gave: page numbers (offset / PS) and their first bytes. */
struct seen {
	unsigned n;
	unsigned page[PAGES];
	char first[PAGES];
	unsigned stop_after; /* 0 = never */
};

static int collect(void *arg, vm_offset_t offset, const void *bytes)
{
	struct seen *s = arg;
	ck_assert_uint_lt(s->n, PAGES);
	ck_assert_uint_eq(offset % PS, 0);
	s->page[s->n] = (unsigned)(offset / PS);
	s->first[s->n++] = *(const char *)bytes;
	return s->stop_after && s->n == s->stop_after;
}

START_TEST(test_copy_pages_gives_the_pages_with_data_in_order_paged_out_ones_too)
{
	struct vm_sandbox *box;
	ck_assert_int_eq(vm_sandbox_create(BASE, PAGES * PS, VM_SANDBOX_SWAP, &box), 0);
	vm_addr_t a = at(0);
	ck_assert_int_eq(vm_map_allocate(box->map, &a, 16 * PS, false), KERN_SUCCESS);
	ck_assert_int_eq(vm_sandbox_write(box, at(6), "6", 1), KERN_SUCCESS);
	ck_assert_int_eq(vm_sandbox_write(box, at(1), "1", 1), KERN_SUCCESS);
	ck_assert_int_eq(vm_sandbox_write(box, at(5), "5", 1), KERN_SUCCESS);
	/* Page 5 goes to swap: the hand passes 1 (oldest by position) and 5, keeps 6 (in use). */
	vm_domain_set_limit(box->dom, 2);
	vm_domain_set_limit(box->dom, 0);
	struct vm_statistics st;
	vm_domain_statistics(box->dom, &st);
	ck_assert_uint_ge(st.pageouts, 1);
	struct vm_map_copy *snap;
	ck_assert_int_eq(vm_map_copyin(box->map, at(0), 16 * PS, &snap), KERN_SUCCESS);
	uint64_t packed = st.packed_count;
	struct seen s = {0};
	ck_assert_int_eq(vm_map_copy_pages(snap, NULL, collect, &s), KERN_SUCCESS);
	ck_assert_uint_eq(s.n, 3); /* the 13 untouched pages are not read one by one */
	ck_assert_uint_eq(s.page[0], 1);
	ck_assert_uint_eq(s.page[1], 5);
	ck_assert_uint_eq(s.page[2], 6);
	ck_assert_int_eq(s.first[0], '1');
	ck_assert_int_eq(s.first[1], '5');
	ck_assert_int_eq(s.first[2], '6');
	vm_domain_statistics(box->dom, &st);
	ck_assert_uint_ge(st.pageins, 1);
	ck_assert_uint_ge(st.packed_count, packed - 1); /* read in place, not unpacked */
	vm_map_copy_discard(snap);
	vm_map_check(box->map);
	vm_sandbox_destroy(box);
}
END_TEST

START_TEST(test_copy_pages_above_a_parent_gives_only_what_changed_since)
{
	alloc_fixed(0, 16);
	for (unsigned p = 0; p < 4; p++)
		poke(map, at(p), (char)('a' + p));
	struct vm_map_copy *parent, *child;
	ck_assert_int_eq(vm_map_copyin(map, at(0), 16 * PS, &parent), KERN_SUCCESS);
	/*   child's top T -> parent's frozen F: T gets 2 (copied on write) and 10 (new). */
	poke(map, at(2), 'C');
	poke(map, at(10), 'N');
	char zero;
	ck_assert_int_eq(vm_sandbox_read(sb, at(12), &zero, 1), KERN_SUCCESS); /* zero fill, never written */
	ck_assert_int_eq(vm_map_copyin(map, at(0), 16 * PS, &child), KERN_SUCCESS);
	struct seen s = {0};
	ck_assert_int_eq(vm_map_copy_pages(child, parent->pieces[0].object, collect, &s), KERN_SUCCESS);
	ck_assert_uint_eq(s.n, 2);
	ck_assert_uint_eq(s.page[0], 2);
	ck_assert_int_eq(s.first[0], 'C');
	ck_assert_uint_eq(s.page[1], 10);
	ck_assert_int_eq(s.first[1], 'N');
	/* Down to the bottom: the parent's pages too, the child's version where it has one. */
	memset(&s, 0, sizeof(s));
	ck_assert_int_eq(vm_map_copy_pages(child, NULL, collect, &s), KERN_SUCCESS);
	ck_assert_uint_eq(s.n, 5);
	const char want[] = {'a', 'b', 'C', 'd', 'N'};
	for (unsigned i = 0; i < 5; i++)
		ck_assert_int_eq(s.first[i], want[i]);
	/* A callback that says stop ends it. */
	memset(&s, 0, sizeof(s));
	s.stop_after = 1;
	ck_assert_int_eq(vm_map_copy_pages(child, NULL, collect, &s), KERN_ABORTED);
	ck_assert_uint_eq(s.n, 1);
	vm_map_copy_discard(child);
	vm_map_copy_discard(parent);
	vm_map_check(map);
}
END_TEST

Suite *vm_map_suite(void)
{
	Suite *s = suite_create("vm_map");
	TCase *tc = tcase_create("calls");
	tcase_add_checked_fixture(tc, setup, teardown);
	HARNESS_ADD_TEST(tc, test_allocate_anywhere_takes_the_lowest_free_range);
	HARNESS_ADD_TEST(tc, test_allocate_fixed_refuses_used_unaligned_and_outside_ranges);
	HARNESS_ADD_TEST(tc, test_new_memory_reads_zero_and_deallocate_accepts_holes);
	HARNESS_ADD_TEST(tc, test_protect_above_the_maximum_fails_and_changes_nothing);
	HARNESS_ADD_TEST(tc, test_lowering_the_maximum_lowers_the_current_protection);
	HARNESS_ADD_TEST(tc, test_entries_split_on_partial_changes_and_merge_back);
	HARNESS_ADD_TEST(tc, test_touched_entries_merge_only_with_contiguous_object_offsets);
	HARNESS_ADD_TEST(tc, test_fork_applies_share_copy_and_none);
	HARNESS_ADD_TEST(tc, test_copy_strategy_none_copies_at_fork_time);
	HARNESS_ADD_TEST(tc, test_vm_copy_into_shared_memory_is_seen_by_the_sharer);
	HARNESS_ADD_TEST(tc, test_vm_map_shares_or_copies_an_object);
	HARNESS_ADD_TEST(tc, test_vm_map_refuses_bad_offsets_protections_and_frozen_objects);
	HARNESS_ADD_TEST(tc, test_vm_copy_behaves_as_memmove_and_is_lazy);
	HARNESS_ADD_TEST(tc, test_vm_copy_needs_a_readable_source_and_writable_destination);
	HARNESS_ADD_TEST(tc, test_read_and_write_take_bytes_across_pages_and_fail_whole);
	HARNESS_ADD_TEST(tc, test_region_describes_the_entry_at_or_above_an_address);
	HARNESS_ADD_TEST(tc, test_attributes_are_validated_split_entries_and_are_reported);
	HARNESS_ADD_TEST(tc, test_a_snapshot_keeps_its_bytes_and_can_be_mapped_back);
	HARNESS_ADD_TEST(tc, test_a_snapshot_needs_a_mapped_readable_range);
	HARNESS_ADD_TEST(tc, test_copy_pages_gives_the_pages_with_data_in_order_paged_out_ones_too);
	HARNESS_ADD_TEST(tc, test_copy_pages_above_a_parent_gives_only_what_changed_since);
	suite_add_tcase(s, tc);
	return s;
}

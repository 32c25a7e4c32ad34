/* Fault resolution: zero fill, pager requests with clustering, copy-on-write into the top
 * object, what the pmap is told, and errors for what is not allowed. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"
#include "mmu/pager.h"
#include "mmu/vm_domain.h"
#include "mmu/vm_fault.h"
#include "mmu/vm_map.h"
#include "mmu/vm_object.h"
#include "mmu/vm_page.h"
#include "vm_sandbox.h"
#include "pagers/file_pager.h"

#define PS VM_PAGE_SIZE
#define BASE 0x400000u
#define PAGES 64u

/* A pager whose page n holds byte n+1, or that fails as told. */
/* TP_SPARSE: data for every 16th page, data_unavailable for the rest (a snapshot of a
 * mostly empty guest). */
enum tp_mode { TP_DATA, TP_ERROR, TP_SILENT, TP_UNAVAILABLE, TP_SPARSE };
struct tp_state {
	enum tp_mode mode;
	unsigned requests;
	uint64_t pages_asked; /* pages of every request, added up */
	vm_offset_t last_offset;
	vm_size_t last_length;
};

static int tp_open(struct pager *p, const struct pager_args *args)
{
	(void)args;
	p->priv = calloc(1, sizeof(struct tp_state));
	p->max_prot = VM_PROT_ALL;
	return p->priv ? 0 : -ENOMEM;
}

static void tp_close(struct pager *p)
{
	free(p->priv);
}

static int tp_create(struct pager *p, uint64_t size, void **mo)
{
	(void)size;
	*mo = p->priv;
	return 0;
}

static int tp_request(struct pager *p, void *mo, vm_offset_t offset, vm_size_t length, vm_prot_t access,
		      struct pager_reply *reply)
{
	(void)p;
	(void)access;
	struct tp_state *t = mo;
	t->requests++;
	t->pages_asked += length / PS;
	t->last_offset = offset;
	t->last_length = length;
	uint8_t page[VM_PAGE_SIZE];
	for (vm_offset_t at = offset; at < offset + length; at += PS) {
		switch (t->mode) {
		case TP_DATA:
			memset(page, (int)(at / PS + 1), PS);
			pager_data_provided(reply, at, page, PS);
			break;
		case TP_ERROR:
			pager_data_error(reply, at, PS, -EIO);
			break;
		case TP_UNAVAILABLE:
			pager_data_unavailable(reply, at, PS);
			break;
		case TP_SPARSE:
			memset(page, (int)(at / PS + 1), PS);
			if ((at / PS) % 16 == 0)
				pager_data_provided(reply, at, page, PS);
			else
				pager_data_unavailable(reply, at, PS);
			break;
		case TP_SILENT:
			break;
		}
	}
	return 0;
}

static const struct pager_ops test_pager_ops = {
	.name = "test",
	.open = tp_open,
	.close = tp_close,
	.create = tp_create,
	.data_request = tp_request,
};

static struct vm_sandbox *sb;

static void setup(void)
{
	ck_assert_int_eq(vm_sandbox_create(BASE, PAGES * PS, 0, &sb), 0);
}

static void teardown(void)
{
	vm_sandbox_destroy(sb);
}

static vm_addr_t at(unsigned page)
{
	return BASE + (vm_addr_t)page * PS;
}

static void alloc(unsigned page, unsigned n)
{
	vm_addr_t a = at(page);
	ck_assert_int_eq(vm_map_allocate(sb->map, &a, n * PS, false), KERN_SUCCESS);
}

/* Map a test-pager object of @pages pages at page 0; returns its state. */
static struct tp_state *map_test_object(unsigned pages, enum tp_mode mode)
{
	struct pager *p;
	struct vm_object *obj;
	ck_assert_int_eq(pager_open(&test_pager_ops, NULL, &p), 0);
	struct tp_state *t = p->priv;
	t->mode = mode;
	ck_assert_int_eq(vm_object_create(sb->dom, p, pages * PS, &obj), KERN_SUCCESS);
	pager_release(p);
	vm_addr_t a = at(0);
	ck_assert_int_eq(vm_map_enter(sb->map, &a, pages * PS, false, obj, 0, false, VM_PROT_DEFAULT, VM_PROT_ALL,
				      VM_INHERIT_COPY),
			 KERN_SUCCESS);
	vm_object_deallocate(obj);
	return t;
}

START_TEST(test_first_touch_zero_fills_into_the_top_object_writable)
{
	alloc(0, 4);
	struct vm_fault_info info;
	ck_assert_int_eq(vm_fault(sb->map, at(1) + 9, VM_PROT_READ, &info), KERN_SUCCESS);
	ck_assert_uint_eq(info.zero_fills, 1);
	ck_assert_uint_eq(info.entered, 1);
	ck_assert_uint_eq(info.depth, 0);
	ck_assert_uint_eq(info.prot, VM_PROT_DEFAULT);
	ck_assert_uint_eq(pmap_flat_prot(sb->flat, at(1)), VM_PROT_DEFAULT);
	uint8_t zero[PS] = {0};
	ck_assert_mem_eq(sb->flat->mem + PS, zero, PS);
	struct vm_statistics st;
	vm_domain_statistics(sb->dom, &st);
	ck_assert_uint_eq(st.faults, 1);
	ck_assert_uint_eq(st.zero_fill_count, 1);
	ck_assert_uint_eq(st.mapped_count, 1);
	ck_assert_uint_eq(st.buffer_count, 0); /* the pmap holds the page, no second copy */
	ck_assert_uint_eq(st.lookups, 1);
	ck_assert_uint_eq(st.hits, 0);
	/* The page is resident now: a read through vm_read finds it. */
	char c;
	ck_assert_int_eq(vm_map_read(sb->map, at(1), &c, 1), KERN_SUCCESS);
	vm_domain_statistics(sb->dom, &st);
	ck_assert_uint_eq(st.lookups, 2);
	ck_assert_uint_eq(st.hits, 1);
}
END_TEST

START_TEST(test_protection_violations_are_errors_not_crashes)
{
	alloc(0, 1);
	ck_assert_int_eq(vm_map_protect(sb->map, at(0), PS, false, VM_PROT_READ), KERN_SUCCESS);
	ck_assert_int_eq(vm_fault(sb->map, at(0), VM_PROT_WRITE, NULL), KERN_PROTECTION_FAILURE);
	ck_assert_int_eq(vm_fault(sb->map, at(0), VM_PROT_EXECUTE, NULL), KERN_PROTECTION_FAILURE);
	ck_assert_int_eq(vm_fault(sb->map, at(5), VM_PROT_READ, NULL), KERN_INVALID_ADDRESS);
	ck_assert_int_eq(vm_fault(sb->map, at(0), VM_PROT_NONE, NULL), KERN_INVALID_ARGUMENT);
	ck_assert_int_eq(vm_fault(sb->map, at(0), 8, NULL), KERN_INVALID_ARGUMENT);
	ck_assert_uint_eq(pmap_flat_prot(sb->flat, at(0)), 0);
	struct vm_statistics st;
	vm_domain_statistics(sb->dom, &st);
	ck_assert_uint_eq(st.protection_failures, 2);
	ck_assert_int_eq(vm_fault(sb->map, at(0), VM_PROT_READ, NULL), KERN_SUCCESS);
	ck_assert_uint_eq(pmap_flat_prot(sb->flat, at(0)), VM_PROT_READ);
}
END_TEST

/* Fault page @page of @pages allocated ones whose cluster attribute is @cluster. */
static void cluster_fault(unsigned pages, unsigned cluster, unsigned page, vm_prot_t access,
			  struct vm_fault_info *info)
{
	alloc(0, pages);
	ck_assert_int_eq(vm_map_set_attr(sb->map, at(0), pages * PS, VM_ATTR_CLUSTER, cluster), KERN_SUCCESS);
	ck_assert_int_eq(vm_fault(sb->map, at(page), access, info), KERN_SUCCESS);
}

START_TEST(test_a_fault_enters_its_whole_cluster)
{
	struct vm_fault_info info;
	cluster_fault(20, 8, 10, VM_PROT_WRITE, &info);
	ck_assert_uint_eq(info.start, at(8));
	ck_assert_uint_eq(info.end, at(16));
	ck_assert_uint_eq(info.entered, 8);
	for (unsigned p = 0; p < 20; p++)
		ck_assert_uint_eq(pmap_flat_prot(sb->flat, at(p)) != 0, p >= 8 && p < 16);
	ck_assert_uint_eq(sb->flat->updates, 1);
}
END_TEST

START_TEST(test_the_cluster_stops_at_the_entry)
{
	struct vm_fault_info info;
	cluster_fault(3, 16, 1, VM_PROT_READ, &info);
	ck_assert_uint_eq(info.entered, 3);
	ck_assert_uint_eq(info.end, at(3));
}
END_TEST

START_TEST(test_pager_requests_ask_for_the_run_of_missing_pages_in_the_cluster)
{
	struct tp_state *t = map_test_object(16, TP_DATA);
	ck_assert_int_eq(vm_map_set_attr(sb->map, at(0), 16 * PS, VM_ATTR_CLUSTER, 8), KERN_SUCCESS);
	struct vm_fault_info info;
	ck_assert_int_eq(vm_fault(sb->map, at(3), VM_PROT_READ, &info), KERN_SUCCESS);
	ck_assert_uint_eq(t->requests, 1);
	ck_assert_uint_eq(t->last_offset, 0);
	ck_assert_uint_eq(t->last_length, 8 * PS);
	ck_assert_uint_eq(info.pageins, 8);
	ck_assert_uint_eq(info.entered, 8);
	ck_assert_uint_eq(sb->flat->mem[5 * PS], 6);
	/* Page 12 after 9 was brought in: the run starts after it. */
	uint8_t c;
	ck_assert_int_eq(vm_map_read(sb->map, at(9), &c, 1), KERN_SUCCESS);
	ck_assert_int_eq(vm_fault(sb->map, at(12), VM_PROT_READ, &info), KERN_SUCCESS);
	ck_assert_uint_eq(t->last_offset, 10 * PS);
	ck_assert_uint_eq(t->last_length, 6 * PS);
}
END_TEST

static int count_page(void *arg, vm_offset_t offset, const void *bytes)
{
	unsigned *n = arg;
	ck_assert_uint_eq(((const uint8_t *)bytes)[0], offset / PS + 1);
	(*n)++;
	return 0;
}

/* Enumerating an external pager's object (a snapshot written into another store) asks the
 * pager for each page at most twice (the first cluster, then each run it had no data for):
 * a page it has no data for does not make the next request start over with the rest of the
 * range, once per page (544 pages asked here, and quadratic in the range: a snapshot of a
 * restored, mostly empty guest into a fresh store took seconds). */
START_TEST(test_enumerating_a_sparse_pager_object_asks_for_each_page_at_most_twice)
{
	struct tp_state *t = map_test_object(PAGES, TP_SPARSE);
	struct vm_map_entry *e = vm_map_lookup_entry(sb->map, at(0));
	ck_assert_ptr_nonnull(e);
	unsigned found = 0;
	vm_domain_lock(sb->dom);
	ck_assert_int_eq(vm_object_enumerate(e->object, 0, PAGES * PS, NULL, count_page, &found, 0), KERN_SUCCESS);
	vm_domain_unlock(sb->dom);
	ck_assert_uint_eq(found, PAGES / 16);
	ck_assert_msg(t->pages_asked <= 2 * PAGES, "%llu pages asked of a %u-page object in %u requests",
		      (unsigned long long)t->pages_asked, PAGES, t->requests);
}
END_TEST

START_TEST(test_pager_errors_become_memory_errors)
{
	struct tp_state *t = map_test_object(4, TP_ERROR);
	ck_assert_int_eq(vm_fault(sb->map, at(1), VM_PROT_READ, NULL), KERN_MEMORY_ERROR);
	t->mode = TP_SILENT;
	ck_assert_int_eq(vm_fault(sb->map, at(1), VM_PROT_READ, NULL), KERN_MEMORY_FAILURE);
	char c;
	ck_assert_int_eq(vm_map_read(sb->map, at(1), &c, 1), KERN_MEMORY_FAILURE);
	struct vm_statistics st;
	vm_domain_statistics(sb->dom, &st);
	ck_assert_uint_eq(st.memory_errors, 2);
	t->mode = TP_UNAVAILABLE;
	struct vm_fault_info info;
	ck_assert_int_eq(vm_fault(sb->map, at(1), VM_PROT_READ, &info), KERN_SUCCESS);
	ck_assert_uint_eq(info.zero_fills, 1);
}
END_TEST

/* The backend copies a fault's cluster in at update(): when that fails, so does the fault
 * (the caller must not take the page for present), and the next fault is unaffected. */
START_TEST(test_a_failed_pmap_update_fails_the_fault)
{
	alloc(0, 4);
	sb->flat->update_error = -ENOMEM;
	struct vm_fault_info info;
	ck_assert_int_eq(vm_fault(sb->map, at(0), VM_PROT_WRITE, &info), KERN_MEMORY_ERROR);
	ck_assert_uint_eq(sb->flat->updates, 1);
	/* An earlier failure stays the fault's own. */
	ck_assert_int_eq(vm_fault(sb->map, at(8), VM_PROT_READ, NULL), KERN_INVALID_ADDRESS);
	sb->flat->update_error = 0;
	ck_assert_int_eq(vm_fault(sb->map, at(1), VM_PROT_WRITE, NULL), KERN_SUCCESS);
	ck_assert_uint_eq(sb->flat->updates, 3);
}
END_TEST

/* Pages 0 ("parent") and, with @pages 2, 1 ("second") written, then frozen into a snapshot:
 * the entry copies on its next write. */
static struct vm_map_copy *freeze_written(unsigned pages)
{
	static const char *const words[] = {"parent", "second"};
	alloc(0, pages);
	for (unsigned p = 0; p < pages; p++)
		ck_assert_int_eq(vm_sandbox_write(sb, at(p), words[p], 6), KERN_SUCCESS);
	struct vm_map_copy *snap;
	ck_assert_int_eq(vm_map_copyin(sb->map, at(0), pages * PS, &snap), KERN_SUCCESS);
	return snap;
}

/* A restored guest: freeze_written(@pages), mapped back at page 4, copying up on read. */
static struct vm_map_copy *restore_copying_on_read(unsigned pages)
{
	struct vm_map_copy *snap = freeze_written(pages);
	vm_addr_t a = at(4);
	ck_assert_int_eq(vm_map_copyout(sb->map, &a, false, snap), KERN_SUCCESS);
	ck_assert_int_eq(vm_map_set_attr(sb->map, at(4), pages * PS, VM_ATTR_COPY_ON_READ, 1), KERN_SUCCESS);
	return snap;
}

START_TEST(test_reading_a_backing_page_maps_it_read_only_and_a_write_copies_it_up)
{
	struct vm_map_copy *snap = freeze_written(2);
	ck_assert_uint_eq(pmap_flat_prot(sb->flat, at(0)), VM_PROT_READ);
	struct vm_fault_info info;
	uint64_t enters = sb->flat->enters, protects = sb->flat->protects;
	ck_assert_int_eq(vm_fault(sb->map, at(0), VM_PROT_WRITE, &info), KERN_SUCCESS);
	ck_assert_uint_eq(info.cow, 1);
	ck_assert_uint_eq(info.depth, 1);
	ck_assert_uint_eq(info.prot, VM_PROT_DEFAULT);
	/* The bytes in the pmap are already the copy's: only the protection changed. */
	ck_assert_uint_eq(sb->flat->enters, enters);
	ck_assert_uint_eq(sb->flat->protects, protects + 1);
	ck_assert_int_eq(vm_sandbox_write(sb, at(0), "child!", 6), KERN_SUCCESS);
	char buf[6];
	ck_assert_int_eq(vm_map_copy_read(snap, 0, buf, 6), KERN_SUCCESS);
	ck_assert_mem_eq(buf, "parent", 6);
	vm_addr_t a = at(0);
	struct vm_region_info r;
	ck_assert_int_eq(vm_map_region(sb->map, &a, &r), KERN_SUCCESS);
	ck_assert_uint_eq(r.depth, 2);
	ck_assert(!r.needs_copy);
	struct vm_statistics st;
	vm_domain_statistics(sb->dom, &st);
	ck_assert_uint_eq(st.cow_faults, 1);
	ck_assert_uint_eq(st.object_shadows, 1);
	/* Once the top object has every page of the frozen one, it bypasses it. */
	ck_assert_int_eq(vm_sandbox_write(sb, at(1), "again!", 6), KERN_SUCCESS);
	a = at(0);
	ck_assert_int_eq(vm_map_region(sb->map, &a, &r), KERN_SUCCESS);
	ck_assert_uint_eq(r.depth, 1);
	vm_domain_statistics(sb->dom, &st);
	ck_assert_uint_eq(st.object_bypasses, 1);
	vm_map_copy_discard(snap);
	vm_map_check(sb->map);
}
END_TEST

/* Map a host-resident test-pager object copy-on-write over pages [0, 8), its offset in the
 * object @offset (BASE: object offsets are addresses, as a restored guest's are). The
 * object is returned with the caller's reference, as guest memory keeps one. */
static struct vm_object *map_host_resident(vm_offset_t offset)
{
	struct pager *p;
	struct vm_object *obj;
	ck_assert_int_eq(pager_open(&test_pager_ops, NULL, &p), 0);
	p->host_resident = true;
	p->max_prot = VM_PROT_READ | VM_PROT_EXECUTE; /* read-only, as a snapshot: copied lazily */
	ck_assert_int_eq(vm_object_create(sb->dom, p, BASE + PAGES * PS, &obj), KERN_SUCCESS);
	pager_release(p);
	vm_addr_t a = at(0);
	ck_assert_int_eq(vm_map_enter(sb->map, &a, 8 * PS, false, obj, offset, true, VM_PROT_DEFAULT, VM_PROT_ALL,
				      VM_INHERIT_COPY),
			 KERN_SUCCESS);
	return obj;
}

START_TEST(test_pages_of_a_host_resident_pager_are_entered_flagged_only_read_only_at_their_offset)
{
	struct vm_object *obj = map_host_resident(BASE);
	for (unsigned i = 0; i < 8; i++)
		ck_assert_int_eq(vm_fault(sb->map, at(i), VM_PROT_READ, NULL), KERN_SUCCESS);
	ck_assert_uint_eq(sb->flat->host_resident_enters, 8);
	ck_assert_uint_eq(pmap_flat_prot(sb->flat, at(3)), VM_PROT_READ);
	/* A write copies the page up into the guest's own object: entered as its own. */
	uint64_t enters = sb->flat->host_resident_enters;
	ck_assert_int_eq(vm_sandbox_write(sb, at(3), "mine", 4), KERN_SUCCESS);
	ck_assert_uint_eq(sb->flat->host_resident_enters, enters);
	char buf[4];
	ck_assert_int_eq(vm_sandbox_read(sb, at(3), buf, 4), KERN_SUCCESS);
	ck_assert_mem_eq(buf, "mine", 4);
	vm_map_check(sb->map);
	vm_object_deallocate(obj);
}
END_TEST

START_TEST(test_pages_of_a_host_resident_pager_elsewhere_than_their_offset_are_not_flagged)
{
	struct vm_object *obj = map_host_resident(0);
	ck_assert_int_eq(vm_fault(sb->map, at(0), VM_PROT_READ, NULL), KERN_SUCCESS);
	ck_assert_uint_gt(sb->flat->enters, 0);
	ck_assert_uint_eq(sb->flat->host_resident_enters, 0);
	char b;
	ck_assert_int_eq(vm_sandbox_read(sb, at(0), &b, 1), KERN_SUCCESS);
	ck_assert_int_eq(b, 1); /* the pager's page 0, not a zero fill */
	vm_map_check(sb->map);
	vm_object_deallocate(obj);
}
END_TEST

START_TEST(test_forked_maps_copy_on_write_independently)
{
	alloc(0, 1);
	ck_assert_int_eq(vm_sandbox_write(sb, at(0), "same", 4), KERN_SUCCESS);
	struct pmap_flat *cflat;
	ck_assert_int_eq(pmap_flat_create(BASE, PAGES * PS, &cflat), 0);
	struct vm_map *child;
	ck_assert_int_eq(vm_map_fork(sb->map, &pmap_flat_ops, cflat, &child), KERN_SUCCESS);
	char buf[4];
	ck_assert_int_eq(pmap_flat_access(cflat, at(0), buf, 4, VM_PROT_READ, vm_fault_handler, child), KERN_SUCCESS);
	ck_assert_mem_eq(buf, "same", 4);
	ck_assert_int_eq(pmap_flat_access(cflat, at(0), "kid_", 4, VM_PROT_WRITE, vm_fault_handler, child),
			 KERN_SUCCESS);
	ck_assert_int_eq(vm_sandbox_write(sb, at(0), "dad_", 4), KERN_SUCCESS);
	ck_assert_int_eq(pmap_flat_access(cflat, at(0), buf, 4, VM_PROT_READ, vm_fault_handler, child), KERN_SUCCESS);
	ck_assert_mem_eq(buf, "kid_", 4);
	ck_assert_int_eq(vm_sandbox_read(sb, at(0), buf, 4), KERN_SUCCESS);
	ck_assert_mem_eq(buf, "dad_", 4);
	/* The child copied; then it had every page, bypassed the frozen object, and the parent,
	 * its only holder, took it back without a copy. */
	struct vm_statistics st;
	vm_domain_statistics(sb->dom, &st);
	ck_assert_uint_eq(st.cow_faults, 1);
	ck_assert_uint_eq(st.object_bypasses, 1);
	vm_map_check(sb->map);
	vm_map_check(child);
	vm_map_destroy(child);
	pmap_flat_destroy(cflat);
}
END_TEST

START_TEST(test_cluster_pages_written_elsewhere_are_left_alone)
{
	struct vm_object *obj;
	ck_assert_int_eq(vm_object_allocate(sb->dom, 4 * PS, &obj), KERN_SUCCESS);
	struct pmap_flat *oflat;
	ck_assert_int_eq(pmap_flat_create(BASE, PAGES * PS, &oflat), 0);
	struct vm_map *other;
	ck_assert_int_eq(vm_map_create(sb->dom, BASE, BASE + PAGES * PS, &pmap_flat_ops, oflat, &other), KERN_SUCCESS);
	vm_addr_t a = at(0), b = at(0);
	ck_assert_int_eq(vm_map_enter(sb->map, &a, 4 * PS, false, obj, 0, false, VM_PROT_DEFAULT, VM_PROT_ALL, 0),
			 KERN_SUCCESS);
	ck_assert_int_eq(vm_map_enter(other, &b, 4 * PS, false, obj, 0, false, VM_PROT_DEFAULT, VM_PROT_ALL, 0),
			 KERN_SUCCESS);
	ck_assert_int_eq(pmap_flat_access(oflat, at(1), "o", 1, VM_PROT_WRITE, vm_fault_handler, other), KERN_SUCCESS);
	ck_assert_int_eq(vm_map_set_attr(sb->map, at(0), 4 * PS, VM_ATTR_CLUSTER, 4), KERN_SUCCESS);
	struct vm_fault_info info;
	ck_assert_int_eq(vm_fault(sb->map, at(2), VM_PROT_READ, &info), KERN_SUCCESS);
	ck_assert_uint_eq(pmap_flat_prot(sb->flat, at(1)), 0);
	ck_assert_uint_eq(pmap_flat_prot(oflat, at(1)), VM_PROT_DEFAULT);
	ck_assert_uint_eq(info.entered, 3);
	/* A real fault takes it: the other map loses write access, the bytes move over. */
	char c;
	ck_assert_int_eq(vm_sandbox_read(sb, at(1), &c, 1), KERN_SUCCESS);
	ck_assert_int_eq(c, 'o');
	ck_assert_uint_eq(pmap_flat_prot(oflat, at(1)), VM_PROT_READ);
	vm_object_deallocate(obj);
	vm_map_destroy(other);
	pmap_flat_destroy(oflat);
}
END_TEST

/* Pages 0..@n-1 allocated and each written ("w") by the guest: packed, one fault each. */
static void written_pages(unsigned n)
{
	alloc(0, n);
	for (unsigned p = 0; p < n; p++)
		ck_assert_int_eq(vm_sandbox_write(sb, at(p), "w", 1), KERN_SUCCESS);
}

START_TEST(test_a_faulted_page_is_packed_and_comes_back_whole_when_looked_at)
{
	alloc(0, 4);
	ck_assert_int_eq(vm_sandbox_write(sb, at(1), "hello", 5), KERN_SUCCESS);
	struct vm_statistics st;
	vm_domain_statistics(sb->dom, &st);
	/* Its mapping is all there is: no struct, no pv entry, no buffer. */
	ck_assert_uint_eq(st.packed_count, 1);
	ck_assert_uint_eq(st.mapped_count, 1);
	ck_assert_uint_eq(st.buffer_count, 0);
	ck_assert_uint_eq(hmap_count(&sb->map->pmap.pv), 0);
	ck_assert_uint_eq(sb->map->pmap.nbound, 1);
	ck_assert_uint_eq(pmap_entered(&sb->map->pmap, at(1)), VM_PROT_DEFAULT);
	ck_assert_uint_eq(pmap_entered(&sb->map->pmap, at(2)), VM_PROT_NONE);
	char buf[5];
	ck_assert_int_eq(vm_map_read(sb->map, at(1), buf, 5), KERN_SUCCESS);
	ck_assert_mem_eq(buf, "hello", 5);
	vm_map_check(sb->map);
	/* Unpacked to be read, packed again when the read was over. */
	vm_domain_statistics(sb->dom, &st);
	ck_assert_uint_eq(st.packed_count, 1);
	ck_assert_uint_eq(st.resident_count, 1);
	ck_assert_uint_eq(hmap_count(&sb->map->pmap.pv), 0);
	/* A lookup from outside gets a full page with its mapping. */
	struct pv_entry *pv = pmap_lookup(&sb->map->pmap, at(1));
	ck_assert_ptr_nonnull(pv);
	ck_assert_uint_eq(pv->page->pindex, 1);
	ck_assert_ptr_eq(pv->page->pv, pv);
	vm_domain_statistics(sb->dom, &st);
	ck_assert_uint_eq(st.packed_count, 0);
	vm_map_check(sb->map);
}
END_TEST

START_TEST(test_protecting_packed_pages_changes_them_in_place_in_one_backend_call)
{
	written_pages(4);
	uint64_t protects = sb->flat->protects;
	ck_assert_int_eq(vm_map_protect(sb->map, at(0), 4 * PS, false, VM_PROT_READ), KERN_SUCCESS);
	ck_assert_uint_eq(sb->flat->protects, protects + 1);
	struct vm_statistics st;
	vm_domain_statistics(sb->dom, &st);
	ck_assert_uint_eq(st.packed_count, 4);
	for (unsigned p = 0; p < 4; p++)
		ck_assert_uint_eq(pmap_flat_prot(sb->flat, at(p)), VM_PROT_READ);
	ck_assert_int_eq(vm_sandbox_write(sb, at(2), "x", 1), KERN_PROTECTION_FAILURE);
	ck_assert_int_eq(vm_map_protect(sb->map, at(0), 4 * PS, false, VM_PROT_DEFAULT), KERN_SUCCESS);
	ck_assert_int_eq(vm_sandbox_write(sb, at(2), "x", 1), KERN_SUCCESS);
	char c;
	ck_assert_int_eq(vm_map_read(sb->map, at(3), &c, 1), KERN_SUCCESS);
	ck_assert_int_eq(c, 'w');
	ck_assert_int_eq(vm_map_read(sb->map, at(2), &c, 1), KERN_SUCCESS);
	ck_assert_int_eq(c, 'x');
	vm_map_check(sb->map);
}
END_TEST

START_TEST(test_lowering_packed_pages_without_modified_bits_marks_each_writer_modified)
{
	/* A pmap without modified bits (the VMM's): lowering a writable mapping must take its
	 * page for modified. Pages 0-39 written, 40-47 only read (clean zero pages, mapped
	 * writable), 48-63 not resident; 8-15 read-only already; page 20 full for the call. */
	vm_sandbox_destroy(sb);
	ck_assert_int_eq(vm_sandbox_create(BASE, PAGES * PS, VM_SANDBOX_NOMOD, &sb), 0);
	alloc(0, PAGES);
	for (unsigned p = 0; p < 40; p++)
		ck_assert_int_eq(vm_sandbox_write(sb, at(p), "w", 1), KERN_SUCCESS);
	char c;
	for (unsigned p = 40; p < 48; p++)
		ck_assert_int_eq(vm_sandbox_read(sb, at(p), &c, 1), KERN_SUCCESS);
	ck_assert_int_eq(vm_map_protect(sb->map, at(8), 8 * PS, false, VM_PROT_READ), KERN_SUCCESS);
	const struct vm_object *obj = vm_map_lookup_entry(sb->map, at(0))->object;
	ck_assert_ptr_eq(vm_map_lookup_entry(sb->map, at(47))->object, obj);
	uint64_t first = vm_map_lookup_entry(sb->map, at(0))->offset / PS;
	for (unsigned p = 40; p < 48; p++)
		ck_assert_uint_eq(vm_page_state(obj, first + p) & (VM_PS_DIRTY | VM_PS_PROT), VM_PROT_DEFAULT);
	ck_assert_ptr_nonnull(pmap_lookup(&sb->map->pmap, at(20)));

	uint64_t protects = sb->flat->protects;
	vm_domain_begin(sb->dom);
	ck_assert_int_eq(pmap_protect(&sb->map->pmap, at(0), at(PAGES), VM_PROT_READ), 0);
	vm_domain_end(sb->dom);
	/* One call per run of pages that changed: 0-7, 16-19, 21-47, and page 20 apart. */
	ck_assert_uint_eq(sb->flat->protects - protects, 4);
	for (unsigned p = 0; p < PAGES; p++) {
		ck_assert_uint_eq(pmap_flat_prot(sb->flat, at(p)), p < 48 ? VM_PROT_READ : VM_PROT_NONE);
		if (p < 48)
			ck_assert_msg(vm_page_state(obj, first + p) & VM_PS_DIRTY, "page %u", p);
	}
	vm_map_check(sb->map);
}
END_TEST

START_TEST(test_deallocating_packed_pages_frees_them_in_one_backend_call)
{
	written_pages(8);
	uint64_t removes = sb->flat->removes, reads = sb->flat->reads;
	ck_assert_int_eq(vm_map_deallocate(sb->map, at(0), 8 * PS), KERN_SUCCESS);
	ck_assert_uint_eq(sb->flat->removes, removes + 1);
	ck_assert_uint_eq(sb->flat->reads, reads); /* bytes nobody will see are not read back */
	struct vm_statistics st;
	vm_domain_statistics(sb->dom, &st);
	ck_assert_uint_eq(st.resident_count, 0);
	ck_assert_uint_eq(st.packed_count, 0);
	ck_assert_uint_eq(st.mapped_count, 0);
	ck_assert_uint_eq(sb->map->pmap.nbound, 0);
}
END_TEST

START_TEST(test_a_page_two_maps_share_stays_full_until_one_lets_go)
{
	alloc(0, 1);
	ck_assert_int_eq(vm_sandbox_write(sb, at(0), "both", 4), KERN_SUCCESS);
	ck_assert_int_eq(vm_map_inherit(sb->map, at(0), PS, VM_INHERIT_SHARE), KERN_SUCCESS);
	struct pmap_flat *cflat;
	ck_assert_int_eq(pmap_flat_create(BASE, PAGES * PS, &cflat), 0);
	struct vm_map *child;
	ck_assert_int_eq(vm_map_fork(sb->map, &pmap_flat_ops, cflat, &child), KERN_SUCCESS);
	char buf[4];
	ck_assert_int_eq(pmap_flat_access(cflat, at(0), buf, 4, VM_PROT_READ, vm_fault_handler, child), KERN_SUCCESS);
	ck_assert_mem_eq(buf, "both", 4);
	struct vm_statistics st;
	vm_domain_statistics(sb->dom, &st);
	ck_assert_uint_eq(st.packed_count, 0); /* two mappings: a full page with two pv entries */
	ck_assert_uint_eq(st.mapped_count, 1);
	vm_map_check(sb->map);
	vm_map_check(child);
	vm_map_destroy(child);
	pmap_flat_destroy(cflat);
	ck_assert_int_eq(vm_sandbox_read(sb, at(0), buf, 4), KERN_SUCCESS);
	ck_assert_int_eq(vm_map_read(sb->map, at(0), buf, 4), KERN_SUCCESS);
	ck_assert_mem_eq(buf, "both", 4);
	vm_domain_statistics(sb->dom, &st);
	ck_assert_uint_eq(st.packed_count, 1);
	vm_map_check(sb->map);
}
END_TEST

START_TEST(test_copy_on_read_copies_a_backing_page_up_and_maps_it_writable)
{
	struct vm_map_copy *snap = restore_copying_on_read(2);
	ck_assert_int_eq(vm_map_set_attr(sb->map, at(4), 2 * PS, VM_ATTR_CLUSTER, 2), KERN_SUCCESS);
	struct vm_statistics st0, st;
	vm_domain_statistics(sb->dom, &st0);
	char buf[6];
	ck_assert_int_eq(vm_sandbox_read(sb, at(4), buf, 6), KERN_SUCCESS);
	ck_assert_mem_eq(buf, "parent", 6);
	/* Both pages of the cluster were copied up and entered writable. */
	vm_domain_statistics(sb->dom, &st);
	ck_assert_uint_eq(st.faults, st0.faults + 1);
	ck_assert_uint_eq(st.cow_faults, st0.cow_faults + 2);
	ck_assert_uint_eq(pmap_flat_prot(sb->flat, at(4)), VM_PROT_DEFAULT);
	ck_assert_uint_eq(pmap_flat_prot(sb->flat, at(5)), VM_PROT_DEFAULT);
	/* So a write takes no second fault, and the frozen object keeps its bytes. */
	ck_assert_int_eq(vm_sandbox_write(sb, at(4), "child!", 6), KERN_SUCCESS);
	vm_domain_statistics(sb->dom, &st);
	ck_assert_uint_eq(st.faults, st0.faults + 1);
	ck_assert_int_eq(vm_map_copy_read(snap, 0, buf, 6), KERN_SUCCESS);
	ck_assert_mem_eq(buf, "parent", 6);
	ck_assert_int_eq(vm_map_read(sb->map, at(5), buf, 6), KERN_SUCCESS);
	ck_assert_mem_eq(buf, "second", 6);
	vm_addr_t a = at(4);
	struct vm_region_info r;
	ck_assert_int_eq(vm_map_region(sb->map, &a, &r), KERN_SUCCESS);
	ck_assert(r.attr.copy_on_read);
	ck_assert_uint_eq(r.resident_count, 2);
	vm_map_copy_discard(snap);
	vm_map_check(sb->map);
}
END_TEST

START_TEST(test_copy_on_read_leaves_entries_that_cannot_be_written_alone)
{
	struct vm_map_copy *snap = restore_copying_on_read(1);
	ck_assert_int_eq(vm_map_protect(sb->map, at(4), PS, false, VM_PROT_READ), KERN_SUCCESS);
	struct vm_fault_info info;
	ck_assert_int_eq(vm_fault(sb->map, at(4), VM_PROT_READ, &info), KERN_SUCCESS);
	ck_assert_uint_eq(info.cow, 0);
	ck_assert_uint_eq(info.prot, VM_PROT_READ);
	ck_assert_int_eq(vm_map_set_attr(sb->map, at(4), PS, VM_ATTR_COPY_ON_READ, 2), KERN_INVALID_ARGUMENT);
	vm_map_copy_discard(snap);
	vm_map_check(sb->map);
}
END_TEST

START_TEST(test_copy_on_read_frees_clean_pages_their_pager_can_give_again)
{
	char path[] = "/tmp/check_vm_fault_XXXXXX";
	int fd = mkstemp(path);
	ck_assert_int_ge(fd, 0);
	unlink(path);
	uint8_t page[PS];
	for (unsigned p = 0; p < 4; p++) {
		memset(page, 'a' + p, PS);
		ck_assert_int_eq(pwrite(fd, page, PS, (off_t)(p * PS)), (ssize_t)PS);
	}
	struct pager *fp;
	struct pager_args args = {.fd = fd};
	ck_assert_int_eq(pager_open(&file_pager_ops, &args, &fp), 0);
	close(fd);
	struct vm_object *file;
	ck_assert_int_eq(vm_object_create(sb->dom, fp, 0, &file), KERN_SUCCESS);
	pager_release(fp);
	vm_addr_t a = at(8);
	ck_assert_int_eq(vm_map_enter(sb->map, &a, 4 * PS, false, file, 0, true, VM_PROT_DEFAULT, VM_PROT_ALL,
				      VM_INHERIT_COPY),
			 KERN_SUCCESS);
	ck_assert_int_eq(vm_map_set_attr(sb->map, at(8), 4 * PS, VM_ATTR_COPY_ON_READ, 1), KERN_SUCCESS);
	ck_assert_int_eq(vm_map_set_attr(sb->map, at(8), 4 * PS, VM_ATTR_CLUSTER, 4), KERN_SUCCESS);
	char c;
	ck_assert_int_eq(vm_sandbox_read(sb, at(9), &c, 1), KERN_SUCCESS);
	ck_assert_int_eq(c, 'b');
	struct vm_object_info fi;
	vm_object_info(file, &fi);
	ck_assert_uint_eq(fi.stats.pageins, 4);
	ck_assert_uint_eq(fi.resident_count, 0); /* copied up, then given back to the pager */
	for (unsigned p = 0; p < 4; p++) {
		ck_assert_uint_eq(pmap_flat_prot(sb->flat, at(8 + p)), VM_PROT_DEFAULT);
		ck_assert_int_eq(vm_sandbox_read(sb, at(8 + p), &c, 1), KERN_SUCCESS);
		ck_assert_int_eq(c, 'a' + (int)p);
	}
	struct vm_statistics st;
	vm_domain_statistics(sb->dom, &st);
	ck_assert_uint_eq(st.cow_faults, 4);
	ck_assert_uint_eq(st.faults, 1);
	vm_object_deallocate(file);
	vm_map_check(sb->map);
}
END_TEST

/* Pages 0-3 written "a" to "d", then frozen (vm_map_copyin): the copy. */
static struct vm_map_copy *freeze_abcd(void)
{
	alloc(0, 4);
	for (unsigned p = 0; p < 4; p++)
		ck_assert_int_eq(vm_sandbox_write(sb, at(p), "abcd" + p, 1), KERN_SUCCESS);
	struct vm_map_copy *snap;
	ck_assert_int_eq(vm_map_copyin(sb->map, at(0), 4 * PS, &snap), KERN_SUCCESS);
	return snap;
}

START_TEST(test_a_collapse_moves_packed_pages_up_without_unpacking_them)
{
	/*   T -> F (frozen by the snapshot; its pages packed, mapped read-only here) */
	struct vm_map_copy *snap = freeze_abcd();
	ck_assert_int_eq(vm_sandbox_write(sb, at(0), "A", 1), KERN_SUCCESS);
	struct vm_statistics st0, st;
	vm_domain_statistics(sb->dom, &st0);
	ck_assert_uint_eq(st0.packed_count, 4);
	/*   the snapshot goes: T -> F  =>  T, F's pages move up into T still packed */
	vm_map_copy_discard(snap);
	vm_domain_statistics(sb->dom, &st);
	ck_assert_uint_eq(st.object_collapses, st0.object_collapses + 1);
	ck_assert_uint_eq(st.packed_count, 4);
	ck_assert_uint_eq(hmap_count(&sb->map->pmap.pv), 0);
	ck_assert_uint_eq(sb->map->pmap.nbound, 1);
	vm_map_check(sb->map);
	char buf[4];
	for (unsigned p = 0; p < 4; p++)
		ck_assert_int_eq(vm_map_read(sb->map, at(p), buf + p, 1), KERN_SUCCESS);
	ck_assert_mem_eq(buf, "Abcd", 4);
	/* Still read-only where F had them: a write copies nothing now, it just takes the page. */
	ck_assert_int_eq(vm_sandbox_write(sb, at(3), "D", 1), KERN_SUCCESS);
	vm_domain_statistics(sb->dom, &st);
	ck_assert_uint_eq(st.cow_faults, st0.cow_faults);
	vm_map_check(sb->map);
}
END_TEST

/* The pages of the chain from @top down to its base, as "index:first byte" pairs. */
static int list_page(void *arg, vm_offset_t offset, const void *bytes)
{
	char *out = arg;
	size_t n = strlen(out);
	snprintf(out + n, 64, "%u:%c ", (unsigned)(offset / PS), *(const char *)bytes ? *(const char *)bytes : '0');
	return 0;
}

static void above_base(struct vm_object *top, char *out)
{
	out[0] = 0;
	ck_assert_int_eq(vm_object_enumerate(top, 0, top->size, vm_object_base_below(top), list_page, out, 0),
			 KERN_SUCCESS);
}

/* "abcd" in four pages, frozen by a snapshot whose object is kept as the base (one
 * reference, which the caller drops). */
static struct vm_object *base_abcd(void)
{
	struct vm_map_copy *snap = freeze_abcd();
	struct vm_object *base = snap->pieces[0].object;
	vm_object_reference(base);
	vm_object_set_base(base, true);
	vm_map_copy_discard(snap);
	return base;
}

/* What guest memory does with snapshots (vm_object.h, snapshot bases): the frozen object of
 * a stored snapshot stays as the base; the next snapshot lists only what was written since
 * and, once stored, is merged down into the base. */
START_TEST(test_a_snapshot_base_marks_what_was_written_since_and_takes_the_next_snapshot_in)
{
	struct vm_object *base = base_abcd();
	struct vm_map_copy *snap;

	/* A write copies the page up; the base's copy is freed at once. */
	ck_assert_int_eq(vm_sandbox_write(sb, at(0), "A", 1), KERN_SUCCESS);
	struct vm_statistics st;
	vm_domain_statistics(sb->dom, &st);
	ck_assert_uint_eq(st.base_pages_freed, 1);
	ck_assert_uint_eq(base->resident_count, 3);
	struct vm_map_entry *e = vm_map_lookup_entry(sb->map, at(0));
	char list[256];
	above_base(e->object, list);
	ck_assert_str_eq(list, "0:A ");

	/* The next snapshot: T frozen over the base; a write meanwhile goes above T. */
	ck_assert_int_eq(vm_map_copyin(sb->map, at(0), 4 * PS, &snap), KERN_SUCCESS);
	struct vm_object *frozen = snap->pieces[0].object;
	ck_assert_int_eq(vm_sandbox_write(sb, at(1), "B", 1), KERN_SUCCESS);
	above_base(frozen, list);
	ck_assert_str_eq(list, "0:A ");
	/* Stored: T's pages move down into the base, T (now empty) folds into the top. */
	ck_assert_int_eq(vm_object_merge_into_base(frozen), KERN_SUCCESS);
	ck_assert_uint_eq(frozen->resident_count, 0);
	vm_map_copy_discard(snap);
	e = vm_map_lookup_entry(sb->map, at(0));
	ck_assert_ptr_eq(e->object->shadow, base);
	vm_domain_statistics(sb->dom, &st);
	ck_assert_uint_eq(st.base_merges, 1);
	ck_assert_uint_eq(st.base_pages_freed, 2);
	above_base(e->object, list);
	ck_assert_str_eq(list, "1:B ");

	/* A page written all zero over a base is listed: the stored snapshot has other bytes. */
	static const char zero[PS];
	ck_assert_int_eq(vm_sandbox_write(sb, at(3), zero, PS), KERN_SUCCESS);
	above_base(e->object, list);
	ck_assert_str_eq(list, "1:B 3:0 ");
	char buf[4];
	ck_assert_int_eq(vm_map_read(sb->map, at(0), buf, 1), KERN_SUCCESS);
	ck_assert_int_eq(vm_map_read(sb->map, at(1), buf + 1, 1), KERN_SUCCESS);
	ck_assert_int_eq(vm_map_read(sb->map, at(2), buf + 2, 1), KERN_SUCCESS);
	ck_assert_int_eq(vm_map_read(sb->map, at(3), buf + 3, 1), KERN_SUCCESS);
	ck_assert_mem_eq(buf, "ABc", 3);
	ck_assert_int_eq(buf[3], 0);
	vm_map_check(sb->map);
	vm_object_set_base(base, false);
	vm_object_deallocate(base);
	vm_map_check(sb->map);
}
END_TEST

/* A write during the snapshot over every page the frozen object has lets the top bypass it
 * (found on KVM: the guest rewrote its few pages while they were stored): the base then has
 * two shadows, yet takes the snapshot in, and the next one lists only what the top has. */
START_TEST(test_a_base_takes_in_a_frozen_object_every_reader_bypassed)
{
	struct vm_object *base = base_abcd();
	struct vm_map_copy *snap;
	ck_assert_int_eq(vm_sandbox_write(sb, at(0), "A", 1), KERN_SUCCESS);
	/* The next snapshot freezes T (page 0); a write to page 0 then covers all of T. */
	ck_assert_int_eq(vm_map_copyin(sb->map, at(0), 4 * PS, &snap), KERN_SUCCESS);
	struct vm_object *frozen = snap->pieces[0].object;
	ck_assert_int_eq(vm_sandbox_write(sb, at(0), "X", 1), KERN_SUCCESS);
	struct vm_map_entry *e = vm_map_lookup_entry(sb->map, at(0));
	ck_assert_ptr_eq(e->object->shadow, base);
	ck_assert_uint_eq(base->shadow_count, 2);
	ck_assert_uint_eq(frozen->shadow_count, 0);
	struct vm_statistics st;
	vm_domain_statistics(sb->dom, &st);
	uint64_t merges = st.base_merges;
	ck_assert_int_eq(vm_object_merge_into_base(frozen), KERN_SUCCESS);
	vm_domain_statistics(sb->dom, &st);
	ck_assert_uint_eq(st.base_merges, merges + 1);
	vm_map_copy_discard(snap);
	ck_assert_uint_eq(base->shadow_count, 1);
	char list[256];
	above_base(e->object, list);
	ck_assert_str_eq(list, "0:X ");
	char buf[4];
	for (unsigned p = 0; p < 4; p++)
		ck_assert_int_eq(vm_map_read(sb->map, at(p), buf + p, 1), KERN_SUCCESS);
	ck_assert_mem_eq(buf, "Xbcd", 4);
	vm_map_check(sb->map);

	/* Another reader of the base that lacks one of the frozen object's pages: refused. */
	ck_assert_int_eq(vm_map_copyin(sb->map, at(0), 4 * PS, &snap), KERN_SUCCESS);
	frozen = snap->pieces[0].object;
	vm_offset_t off = 0;
	struct vm_object *other = base;
	vm_object_reference(base);
	ck_assert_int_eq(vm_object_shadow(&other, &off, 4 * PS), KERN_SUCCESS);
	ck_assert_int_eq(vm_sandbox_write(sb, at(0), "Y", 1), KERN_SUCCESS);
	ck_assert_uint_eq(frozen->shadow_count, 0);
	ck_assert_uint_eq(base->shadow_count, 3);
	ck_assert_int_eq(vm_object_merge_into_base(frozen), KERN_INVALID_ARGUMENT);
	vm_object_deallocate(other);
	ck_assert_int_eq(vm_object_merge_into_base(frozen), KERN_SUCCESS);
	vm_map_copy_discard(snap);
	for (unsigned p = 0; p < 4; p++)
		ck_assert_int_eq(vm_map_read(sb->map, at(p), buf + p, 1), KERN_SUCCESS);
	ck_assert_mem_eq(buf, "Ybcd", 4);
	vm_object_set_base(base, false);
	vm_object_deallocate(base);
	vm_map_check(sb->map);
}
END_TEST

START_TEST(test_only_a_base_with_one_shadow_takes_a_merge)
{
	alloc(0, 2);
	ck_assert_int_eq(vm_sandbox_write(sb, at(0), "a", 1), KERN_SUCCESS);
	struct vm_map_copy *snap;
	ck_assert_int_eq(vm_map_copyin(sb->map, at(0), 2 * PS, &snap), KERN_SUCCESS);
	ck_assert_int_eq(vm_sandbox_write(sb, at(1), "b", 1), KERN_SUCCESS);
	struct vm_map_entry *e = vm_map_lookup_entry(sb->map, at(0));
	/* Not a base. */
	ck_assert_int_eq(vm_object_merge_into_base(e->object), KERN_INVALID_ARGUMENT);
	/* A base with a second shadow. */
	struct vm_object *frozen = snap->pieces[0].object;
	vm_object_set_base(frozen, true);
	vm_offset_t off = 0;
	struct vm_object *other = frozen;
	vm_object_reference(frozen);
	ck_assert_int_eq(vm_object_shadow(&other, &off, 2 * PS), KERN_SUCCESS);
	ck_assert_int_eq(vm_object_merge_into_base(e->object), KERN_INVALID_ARGUMENT);
	vm_object_deallocate(other);
	ck_assert_int_eq(vm_object_merge_into_base(e->object), KERN_SUCCESS);
	vm_object_set_base(frozen, false);
	vm_map_copy_discard(snap);
	char c;
	ck_assert_int_eq(vm_map_read(sb->map, at(1), &c, 1), KERN_SUCCESS);
	ck_assert_int_eq(c, 'b');
	vm_map_check(sb->map);
}
END_TEST

Suite *vm_fault_suite(void)
{
	Suite *s = suite_create("vm_fault");
	TCase *tc = tcase_create("faults");
	tcase_add_checked_fixture(tc, setup, teardown);
	HARNESS_ADD_TEST(tc, test_first_touch_zero_fills_into_the_top_object_writable);
	HARNESS_ADD_TEST(tc, test_protection_violations_are_errors_not_crashes);
	HARNESS_ADD_TEST(tc, test_a_fault_enters_its_whole_cluster);
	HARNESS_ADD_TEST(tc, test_the_cluster_stops_at_the_entry);
	HARNESS_ADD_TEST(tc, test_pager_requests_ask_for_the_run_of_missing_pages_in_the_cluster);
	HARNESS_ADD_TEST(tc, test_enumerating_a_sparse_pager_object_asks_for_each_page_at_most_twice);
	HARNESS_ADD_TEST(tc, test_pager_errors_become_memory_errors);
	HARNESS_ADD_TEST(tc, test_a_failed_pmap_update_fails_the_fault);
	HARNESS_ADD_TEST(tc, test_reading_a_backing_page_maps_it_read_only_and_a_write_copies_it_up);
	HARNESS_ADD_TEST(tc, test_a_snapshot_base_marks_what_was_written_since_and_takes_the_next_snapshot_in);
	HARNESS_ADD_TEST(tc, test_only_a_base_with_one_shadow_takes_a_merge);
	HARNESS_ADD_TEST(tc, test_a_base_takes_in_a_frozen_object_every_reader_bypassed);
	HARNESS_ADD_TEST(tc, test_forked_maps_copy_on_write_independently);
	HARNESS_ADD_TEST(tc, test_pages_of_a_host_resident_pager_are_entered_flagged_only_read_only_at_their_offset);
	HARNESS_ADD_TEST(tc, test_pages_of_a_host_resident_pager_elsewhere_than_their_offset_are_not_flagged);
	HARNESS_ADD_TEST(tc, test_cluster_pages_written_elsewhere_are_left_alone);
	HARNESS_ADD_TEST(tc, test_a_faulted_page_is_packed_and_comes_back_whole_when_looked_at);
	HARNESS_ADD_TEST(tc, test_protecting_packed_pages_changes_them_in_place_in_one_backend_call);
	HARNESS_ADD_TEST(tc, test_lowering_packed_pages_without_modified_bits_marks_each_writer_modified);
	HARNESS_ADD_TEST(tc, test_deallocating_packed_pages_frees_them_in_one_backend_call);
	HARNESS_ADD_TEST(tc, test_a_page_two_maps_share_stays_full_until_one_lets_go);
	HARNESS_ADD_TEST(tc, test_copy_on_read_copies_a_backing_page_up_and_maps_it_writable);
	HARNESS_ADD_TEST(tc, test_copy_on_read_leaves_entries_that_cannot_be_written_alone);
	HARNESS_ADD_TEST(tc, test_copy_on_read_frees_clean_pages_their_pager_can_give_again);
	HARNESS_ADD_TEST(tc, test_a_collapse_moves_packed_pages_up_without_unpacking_them);
	suite_add_tcase(s, tc);
	return s;
}

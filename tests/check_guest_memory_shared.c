/*
 * Restored guest memory shared host-wide through a segment, on real userfaultfd without
 * KVM: the test thread touches guest RAM through its host mapping, so its faults take a
 * vCPU's path (userfaultfd, the fault thread, vm_fault, the snapshot pager, the pmap).
 * Several guest memories restored from one snapshot source and one segment stand for the
 * VMs of one host: the first to touch a page brings it in for all, the others find it
 * there (no call to the source), every VM reads the same physical page (pagemap), and a
 * write stays in the VM that made it, known to its core (a snapshot of it keeps it).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include "harness.h"
#include "memory_stat.h"
#include "mmu/pager.h"
#include "pagers/snapshot_pager.h"
#include "vmm/error.h"
#include "vmm/memory/guest_memory.h"
#include "vmm/memory/segment.h"

#define PS VM_PAGE_SIZE
#define RAM_SIZE (8ull << 20)
#define RAM_PAGES (RAM_SIZE / PS)
#define NVM 3

/* The snapshot: page i holds its number and a byte of its own; every fifth page is zero. */
static bool snap_zero(uint64_t i)
{
	return i % 5 == 4;
}

static void snap_bytes(uint64_t i, uint8_t *page)
{
	memset(page, (int)(i * 7 + 1), PS);
	memcpy(page, &i, sizeof(i));
}

static atomic_ulong source_calls; /* for pages that are not zero (how often the core asks
				      for a zero page depends on its clustering) */

static int snap_page(void *arg, uint64_t pindex, const void **data)
{
	(void)arg;
	static _Thread_local uint8_t page[PS];
	if (snap_zero(pindex)) {
		*data = NULL;
		return 0;
	}
	atomic_fetch_add(&source_calls, 1);
	snap_bytes(pindex, page);
	*data = page;
	return 0;
}

static atomic_ulong prefetch_calls, prefetch_pages; /* the pager's runs announced */

static void snap_prefetch(void *arg, uint64_t first, uint64_t n)
{
	(void)arg;
	ck_assert_uint_lt(first + n - 1, RAM_PAGES);
	atomic_fetch_add(&prefetch_calls, 1);
	atomic_fetch_add(&prefetch_pages, n);
}

static struct segment seg;
static struct pager *pager[NVM];
static struct guest_memory vm[NVM];
static atomic_int errors;

static void on_error(void *arg, int err, const char *message)
{
	(void)arg;
	(void)err;
	fprintf(stderr, "guest_memory_shared: unexpected fault failure: %s\n", message);
	atomic_fetch_add(&errors, 1);
}

/* A segment of @size bytes under a key of this test's own (the VMs of these tests are in
 * one process: they share the one struct, as VMs of one host share the memfd). */
static void make_segment(uint64_t size)
{
	uint8_t key[SEGMENT_KEY_BYTES];
	ck_assert_int_eq(getrandom(key, sizeof(key), 0), (ssize_t)sizeof(key));
	ck_assert_msg(segment_open(&seg, key, size) == 0, "%s", error_message());
	ck_assert(!seg.joined);
}

static void setup(void)
{
	atomic_store(&source_calls, 0);
	atomic_store(&prefetch_calls, 0);
	atomic_store(&prefetch_pages, 0);
	atomic_store(&errors, 0);
	memset(pager, 0, sizeof(pager));
	for (int i = 0; i < NVM; i++)
		guest_memory_init(&vm[i]);
	make_segment(RAM_SIZE);
	error_clear();
}

static void teardown(void)
{
	for (int i = 0; i < NVM; i++) {
		guest_memory_destroy(&vm[i]);
		if (pager[i])
			pager_release(pager[i]);
	}
	segment_close(&seg);
}

/* Restore VM @i from the snapshot over the segment (@segment false: without it), with a
 * memory limit of @limit bytes (0: none). */
static void restore(int i, bool segment, uint64_t limit)
{
	struct snapshot_source src = {.page = snap_page, .prefetch = snap_prefetch, .size = RAM_SIZE};
	struct pager_args args = {.fd = segment ? seg.fd : -1, .source = &src};
	ck_assert_int_eq(pager_open(&snapshot_pager_ops, &args, &pager[i]), 0);
	struct guest_memory_config cfg = {.ram_size = RAM_SIZE, .ram_pager = pager[i], .ram_segment = segment ? &seg : NULL,
					  .mem_limit = limit, .cluster = 16};
	ck_assert_msg(guest_memory_create(&vm[i], &cfg) == 0, "%s", error_message());
	ck_assert_int_eq(guest_memory_start(&vm[i], on_error, NULL), 0);
}

static uint8_t *ram(int i)
{
	uint8_t *p = guest_memory_ptr(&vm[i], 0, RAM_SIZE);
	ck_assert_ptr_nonnull(p);
	return p;
}

/* VM @i reads every page and finds the snapshot's bytes. */
static void read_all_and_check(int i)
{
	uint8_t *p = ram(i);
	uint8_t want[PS];
	for (uint64_t k = 0; k < RAM_PAGES; k++) {
		if (snap_zero(k))
			memset(want, 0, PS);
		else
			snap_bytes(k, want);
		ck_assert_msg(memcmp(p + k * PS, want, PS) == 0, "VM %d page %llu is not the snapshot's", i,
			      (unsigned long long)k);
	}
}

/* The pagemap entry of host address @p (root sees frame numbers). */
static uint64_t pagemap(const void *p)
{
	int fd = open("/proc/self/pagemap", O_RDONLY);
	ck_assert_int_ge(fd, 0);
	uint64_t e = 0;
	ck_assert_int_eq(pread(fd, &e, sizeof(e), (off_t)((uintptr_t)p / PS * sizeof(e))), (ssize_t)sizeof(e));
	close(fd);
	return e;
}

#define PM_PRESENT (1ull << 63)
#define PM_FILE (1ull << 61)
#define PM_PFN(e) ((e) & ((1ull << 55) - 1))

static uint64_t segment_pages(void)
{
	struct stat st;
	ck_assert_int_eq(fstat(seg.fd, &st), 0);
	return (uint64_t)st.st_blocks * 512 / PS;
}

static uint64_t nonzero_pages(void)
{
	uint64_t n = 0;
	for (uint64_t k = 0; k < RAM_PAGES; k++)
		n += !snap_zero(k);
	return n;
}

START_TEST(test_the_first_vm_brings_pages_in_for_all_and_the_others_map_the_same_host_pages)
{
	for (int i = 0; i < NVM; i++)
		restore(i, true, 0);
	read_all_and_check(0);
	ck_assert_uint_eq(atomic_load(&source_calls), nonzero_pages());
	/* The pager announced its runs to the source, a cluster at a time, not page by page. */
	ck_assert_uint_gt(atomic_load(&prefetch_calls), 0);
	ck_assert_uint_lt(atomic_load(&prefetch_calls), RAM_PAGES / 2);
	ck_assert_uint_ge(atomic_load(&prefetch_pages), nonzero_pages());
	/* Once in the segment, and only the pages that are not zero. */
	ck_assert_uint_eq(segment_pages(), nonzero_pages());
	for (int i = 1; i < NVM; i++) {
		read_all_and_check(i);
		ck_assert_uint_eq(memory_stat(&vm[i], "mem.segment_filled"), 0);
		ck_assert_uint_eq(memory_stat(&vm[i], "mem.segment_found"), nonzero_pages());
		ck_assert_uint_gt(memory_stat(&vm[i], "mem.shared_pages"), 0);
		ck_assert_uint_eq(memory_stat(&vm[i], "mem.segment_pages"), nonzero_pages());
		ck_assert_uint_eq(memory_stat(&vm[i], "mem.segment_holders"), 1); /* one process */
	}
	/* The others never asked the source for a page the segment holds. */
	ck_assert_uint_eq(atomic_load(&source_calls), nonzero_pages());
	ck_assert_uint_eq(segment_pages(), nonzero_pages());
	/* One physical page behind every VM's view of a page. */
	bool root = geteuid() == 0;
	for (uint64_t k = 0; k < RAM_PAGES; k += 97) {
		if (snap_zero(k))
			continue;
		uint64_t e0 = pagemap(ram(0) + k * PS);
		ck_assert_msg((e0 & PM_PRESENT) && (e0 & PM_FILE), "page %llu of VM 0 is not the segment's",
			      (unsigned long long)k);
		for (int i = 1; i < NVM; i++) {
			uint64_t e = pagemap(ram(i) + k * PS);
			ck_assert_msg((e & PM_PRESENT) && (e & PM_FILE), "page %llu of VM %d is not the segment's",
				      (unsigned long long)k, i);
			if (root)
				ck_assert_uint_eq(PM_PFN(e), PM_PFN(e0));
		}
	}
	ck_assert_int_eq(atomic_load(&errors), 0);
}
END_TEST

/* The host-wide description of the first entry's snapshot object (guest_memory_vm_region). */
static void find_host_object(void *arg, const struct guest_memory_entry *e)
{
	struct guest_memory_object *out = arg;
	for (unsigned i = 0; i < e->nchain && !out->host_shared; i++)
		if (e->chain[i].host_shared)
			*out = e->chain[i];
}

START_TEST(test_the_shared_object_says_how_many_map_it_and_what_the_host_holds)
{
	for (int i = 0; i < 2; i++)
		restore(i, true, 0);
	read_all_and_check(0);
	struct guest_memory_object o = {0};
	uint64_t objects;
	ck_assert_int_eq(guest_memory_vm_region(&vm[1], find_host_object, &o, &objects), 0);
	ck_assert(o.host_shared);
	ck_assert_str_eq(o.pager, "snapshot");
	ck_assert_uint_eq(o.host_mappers, 1); /* one process holds it for both */
	ck_assert_uint_eq(o.host_resident, nonzero_pages());
	/* Without the segment, nothing is shared. */
	restore(2, false, 0);
	struct guest_memory_object none = {0};
	ck_assert_int_eq(guest_memory_vm_region(&vm[2], find_host_object, &none, &objects), 0);
	ck_assert(!none.host_shared);
	ck_assert_int_eq(atomic_load(&errors), 0);
}
END_TEST

/* Collects what a snapshot of a VM would store. */
struct collected {
	uint64_t n;
	uint64_t pindex[64];
	uint8_t first_byte[64];
};

static int collect(void *arg, const uint64_t *pindex, const uint8_t (*bytes)[VM_PAGE_SIZE], unsigned n,
		   uint64_t examined)
{
	(void)examined;
	struct collected *c = arg;
	for (unsigned i = 0; i < n; i++) {
		if (c->n < 64) {
			c->pindex[c->n] = pindex[i];
			c->first_byte[c->n] = bytes[i][8];
		}
		c->n++;
	}
	return 0;
}

START_TEST(test_a_write_stays_in_its_vm_and_its_snapshot_keeps_it)
{
	for (int i = 0; i < 2; i++)
		restore(i, true, 0);
	read_all_and_check(0);
	read_all_and_check(1);
	/* VM 1 writes a page it has read (mapped from the segment) and one it never touched
	 * (after a fresh restore of VM 2's kind: page 3000 is beyond what VM 0 read? no, all
	 * were read: write one VM 1 has mapped, then one dropped from it by nobody). */
	uint8_t *p1 = ram(1);
	p1[10 * PS + 8] = 0xee;
	p1[11 * PS + 8] = 0xdd;
	ck_assert_uint_eq(p1[10 * PS + 8], 0xee);
	/* VM 0 and the segment still hold the snapshot's bytes. */
	ck_assert_uint_eq(ram(0)[10 * PS + 8], (uint8_t)(10 * 7 + 1));
	uint8_t b;
	ck_assert_int_eq(pread(seg.fd, &b, 1, 10 * PS + 8), 1);
	ck_assert_uint_eq(b, (uint8_t)(10 * 7 + 1));
	/* The written page is VM 1's own now. */
	uint64_t e = pagemap(p1 + 10 * PS);
	ck_assert(e & PM_PRESENT);
	ck_assert(!(e & PM_FILE));
	/* A VM restored afterwards sees the snapshot, not VM 1's write. */
	restore(2, true, 0);
	read_all_and_check(2);
	/* VM 1's core knows of its writes: a snapshot of it since the restore stores exactly
	 * those two pages, with the written bytes. */
	struct guest_memory_prearm pa;
	guest_memory_prearm(&vm[1], 2, 0, &pa); /* as a live snapshot does, ahead of its pause */
	ck_assert_msg(pa.error == 0, "%s", error_message());
	struct guest_memory_frozen f = {0};
	uint64_t protected;
	ck_assert_msg(guest_memory_freeze(&vm[1], &f, &protected) == 0, "%s", error_message());
	struct collected c = {0};
	ck_assert_msg(guest_memory_frozen_pages(&vm[1], &f, GUEST_MEMORY_SINCE_RESTORE, 256, collect, &c) == 0, "%s", error_message());
	guest_memory_frozen_discard(&vm[1], &f);
	ck_assert_uint_eq(c.n, 2);
	ck_assert_uint_eq(c.pindex[0], 10);
	ck_assert_uint_eq(c.first_byte[0], 0xee);
	ck_assert_uint_eq(c.pindex[1], 11);
	ck_assert_uint_eq(c.first_byte[1], 0xdd);
	/* After the freeze, a write to a page of the frozen state faults again and stays VM 1's. */
	p1[10 * PS + 8] = 0xcc;
	ck_assert_uint_eq(ram(0)[10 * PS + 8], (uint8_t)(10 * 7 + 1));
	ck_assert_int_eq(atomic_load(&errors), 0);
}
END_TEST

START_TEST(test_a_write_to_a_page_never_mapped_here_copies_the_snapshot_page)
{
	restore(0, true, 0);
	read_all_and_check(0); /* the segment holds everything */
	restore(1, true, 0);
	uint8_t *p1 = ram(1);
	/* First touch is a write: the rest of the page is still the snapshot's. */
	p1[20 * PS + 100] = 0x5a;
	uint8_t want[PS];
	snap_bytes(20, want);
	want[100] = 0x5a;
	ck_assert_int_eq(memcmp(p1 + 20 * PS, want, PS), 0);
	ck_assert_uint_eq(ram(0)[20 * PS + 100], (uint8_t)(20 * 7 + 1));
	ck_assert(!(pagemap(p1 + 20 * PS) & PM_FILE));
	ck_assert_int_eq(atomic_load(&errors), 0);
}
END_TEST

START_TEST(test_under_a_memory_limit_pages_dropped_and_brought_back_stay_right)
{
	restore(0, true, 1ull << 20); /* 256 pages of 2048 */
	read_all_and_check(0);
	uint8_t *p = ram(0);
	for (uint64_t k = 0; k < RAM_PAGES; k += 3)
		p[k * PS + 8] = (uint8_t)(k ^ 0x55);
	for (uint64_t k = 0; k < RAM_PAGES; k++) {
		uint8_t want = snap_zero(k) ? 0 : (uint8_t)(k * 7 + 1);
		if (k % 3 == 0)
			want = (uint8_t)(k ^ 0x55);
		ck_assert_msg(p[k * PS + 8] == want, "page %llu", (unsigned long long)k);
	}
	ck_assert_uint_le(memory_stat(&vm[0], "mem.resident_pages"), 256);
	/* The segment keeps each page once whatever this VM dropped, and none of its writes. */
	ck_assert_uint_eq(segment_pages(), nonzero_pages());
	ck_assert_int_eq(atomic_load(&errors), 0);
}
END_TEST

START_TEST(test_a_segment_too_small_is_refused_and_without_one_ram_is_private)
{
	segment_close(&seg);
	make_segment(RAM_SIZE / 2);
	struct snapshot_source src = {.page = snap_page, .prefetch = snap_prefetch, .size = RAM_SIZE};
	struct pager_args args = {.fd = seg.fd, .source = &src};
	struct pager *p = NULL;
	ck_assert_int_eq(pager_open(&snapshot_pager_ops, &args, &p), -EINVAL);
	restore(0, false, 0);
	read_all_and_check(0);
	ck_assert_uint_eq(segment_pages(), 0);
	ck_assert(!(pagemap(ram(0)) & PM_FILE));
	ck_assert_uint_eq(memory_stat(&vm[0], "mem.shared_pages"), 0);
	ck_assert_int_eq(atomic_load(&errors), 0);
}
END_TEST

START_TEST(test_memory_allocated_where_the_segment_was_mapped_reads_zero)
{
	restore(0, true, 0);
	restore(1, true, 0);
	read_all_and_check(0); /* the segment holds the top half too */
	ck_assert_int_eq(guest_memory_deallocate(&vm[1], RAM_SIZE / 2, RAM_SIZE / 2), 0);
	uint64_t gpa = RAM_SIZE / 2;
	ck_assert_msg(guest_memory_allocate(&vm[1], &gpa, RAM_SIZE / 2, false) == 0, "%s", error_message());
	const uint8_t *p = guest_memory_ptr(&vm[1], RAM_SIZE / 2, RAM_SIZE / 2);
	ck_assert_ptr_nonnull(p);
	for (uint64_t off = 0; off < RAM_SIZE / 2; off += PS)
		ck_assert_msg(p[off + 8] == 0, "allocated page at 0x%llx shows the snapshot",
			      (unsigned long long)(RAM_SIZE / 2 + off));
	ck_assert_int_eq(atomic_load(&errors), 0);
}
END_TEST

Suite *guest_memory_shared_suite(void)
{
	Suite *s = suite_create("guest_memory_shared");
	harness_requires(HARNESS_UFFD | HARNESS_UFFD_SHARE);
	TCase *tc = tcase_create("shared");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 60);
	HARNESS_ADD_TEST(tc, test_the_first_vm_brings_pages_in_for_all_and_the_others_map_the_same_host_pages);
	HARNESS_ADD_TEST(tc, test_the_shared_object_says_how_many_map_it_and_what_the_host_holds);
	HARNESS_ADD_TEST(tc, test_a_write_stays_in_its_vm_and_its_snapshot_keeps_it);
	HARNESS_ADD_TEST(tc, test_a_write_to_a_page_never_mapped_here_copies_the_snapshot_page);
	HARNESS_ADD_TEST(tc, test_under_a_memory_limit_pages_dropped_and_brought_back_stay_right);
	HARNESS_ADD_TEST(tc, test_a_segment_too_small_is_refused_and_without_one_ram_is_private);
	HARNESS_ADD_TEST(tc, test_memory_allocated_where_the_segment_was_mapped_reads_zero);
	suite_add_tcase(s, tc);
	return s;
}

/*
 * The userfaultfd pmap's write-protection tracking, on real guest memory without KVM: host
 * threads touch guest RAM through its host mapping, so their faults take the very path a
 * vCPU's take (userfaultfd, the fault thread, vm_fault, pmap_uffd). A pre-arm protects RAM
 * while a writer runs; the freeze that follows (vm_map_copyin) protects only what was
 * written since, and nothing written after the freeze reaches the frozen copy.
 */
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/utsname.h>
#include <time.h>

#include "harness.h"
#include "mmu/vm_domain.h"
#include "mmu/vm_fault.h"
#include "mmu/vm_map.h"
#include "vmm/error.h"
#include "vmm/memory/guest_memory.h"

#define RAM_SIZE (8ull << 20)
#define RAM_PAGES (RAM_SIZE / VM_PAGE_SIZE)

static struct guest_memory mem;
static atomic_int fault_errors;

static void on_error(void *arg, int err, const char *message)
{
	(void)arg;
	(void)err;
	fprintf(stderr, "fault thread: %s\n", message);
	atomic_fetch_add(&fault_errors, 1);
}

static void setup(void)
{
	struct guest_memory_config cfg = {.ram_size = RAM_SIZE};
	atomic_store(&fault_errors, 0);
	ck_assert_msg(guest_memory_create(&mem, &cfg) == 0, "%s", error_message());
	ck_assert_int_eq(guest_memory_start(&mem, on_error, NULL), 0);
}

static void teardown(void)
{
	guest_memory_destroy(&mem);
}

/* The first word of guest page @page, as the guest sees it. */
static volatile uint64_t *word(uint64_t page)
{
	return (volatile uint64_t *)(mem.base + page * VM_PAGE_SIZE);
}

static uint64_t unguarded(void)
{
	vm_domain_lock(mem.dom);
	uint64_t n = pmap_uffd_unguarded(&mem.pmap, 0, RAM_SIZE);
	vm_domain_unlock(mem.dom);
	return n;
}

/* Freeze all of RAM as a snapshot does with the vCPUs paused; *protected: pages it had to
 * write-protect. */
static struct vm_map_copy *freeze(uint64_t *protected)
{
	struct vm_map_copy *copy = NULL;
	vm_domain_lock(mem.dom);
	uint64_t before = mem.pmap.stats.protected_pages;
	ck_assert_int_eq(vm_map_copyin(mem.map, 0, RAM_SIZE, &copy), KERN_SUCCESS);
	ck_assert_int_eq(pmap_uffd_flush(&mem.pmap), 0);
	*protected = mem.pmap.stats.protected_pages - before;
	vm_domain_unlock(mem.dom);
	return copy;
}

static uint64_t frozen_word(const struct vm_map_copy *copy, uint64_t page)
{
	uint64_t v;
	vm_domain_lock(mem.dom);
	ck_assert_int_eq(vm_map_copy_read(copy, page * VM_PAGE_SIZE, &v, sizeof(v)), KERN_SUCCESS);
	vm_domain_unlock(mem.dom);
	return v;
}

static void discard(struct vm_map_copy *copy)
{
	vm_domain_lock(mem.dom);
	vm_map_copy_discard(copy);
	vm_domain_unlock(mem.dom);
}

START_TEST(prearmed_pages_take_writes_and_the_freeze_protects_only_those)
{
	for (uint64_t p = 0; p < RAM_PAGES; p++)
		*word(p) = p + 1;
	struct guest_memory_prearm arm;
	guest_memory_prearm(&mem, 1, 0, &arm);
	ck_assert_int_eq(arm.error, 0);
	ck_assert_uint_eq(arm.passes, 1);
	ck_assert_uint_eq(arm.armed, RAM_PAGES);
	ck_assert_uint_eq(arm.left, 0);
	ck_assert_uint_eq(unguarded(), 0);

	/* Writes to pre-armed pages go through at once, without a fault of the core. */
	struct vm_statistics before, after;
	vm_domain_lock(mem.dom);
	vm_domain_statistics(mem.dom, &before);
	vm_domain_unlock(mem.dom);
	uint64_t unguards = mem.pmap.stats.unguards;
	*word(5) = 500;
	*word(6) = 600;
	*word(6) = 601;
	vm_domain_lock(mem.dom);
	vm_domain_statistics(mem.dom, &after);
	ck_assert_uint_eq(mem.pmap.stats.unguards - unguards, 2);
	vm_domain_unlock(mem.dom);
	ck_assert_uint_eq(after.faults, before.faults);
	ck_assert_uint_eq(unguarded(), 2);

	uint64_t protected;
	struct vm_map_copy *copy = freeze(&protected);
	ck_assert_uint_eq(protected, 2);
	ck_assert_uint_eq(unguarded(), 0);

	/* After the freeze, writes are copies on write: the copy keeps the bytes of the freeze. */
	*word(5) = 501;
	*word(7) = 701;
	ck_assert_uint_eq(*word(5), 501);
	ck_assert_uint_eq(*word(7), 701);
	ck_assert_uint_eq(frozen_word(copy, 5), 500);
	ck_assert_uint_eq(frozen_word(copy, 6), 601);
	ck_assert_uint_eq(frozen_word(copy, 7), 8);
	ck_assert_uint_eq(frozen_word(copy, 8), 9);
	discard(copy);
	ck_assert_int_eq(atomic_load(&fault_errors), 0);
}
END_TEST

START_TEST(untouched_and_removed_pages_count_as_protected)
{
	/* Nothing entered: a pre-arm marks everything (the kernel has nothing to protect). */
	struct guest_memory_prearm arm;
	guest_memory_prearm(&mem, 2, 0, &arm);
	ck_assert_uint_eq(arm.passes, 1);
	ck_assert_uint_eq(unguarded(), 0);
	/* Entered writable by a fault: no longer protected; removed: protected again. */
	*word(3) = 1;
	ck_assert_uint_eq(unguarded(), GUEST_MEMORY_DEFAULT_CLUSTER);
	vm_domain_lock(mem.dom);
	ck_assert_int_eq(vm_map_deallocate(mem.map, 0, GUEST_MEMORY_DEFAULT_CLUSTER * VM_PAGE_SIZE), KERN_SUCCESS);
	ck_assert_int_eq(pmap_uffd_flush(&mem.pmap), 0);
	vm_domain_unlock(mem.dom);
	ck_assert_uint_eq(unguarded(), 0);
}
END_TEST

START_TEST(forgetting_takes_no_page_for_protected)
{
	struct guest_memory_prearm arm;
	guest_memory_prearm(&mem, 1, 0, &arm);
	ck_assert_uint_eq(unguarded(), 0);
	vm_domain_lock(mem.dom);
	pmap_uffd_forget(&mem.pmap);
	vm_domain_unlock(mem.dom);
	ck_assert_uint_eq(unguarded(), RAM_PAGES);
}
END_TEST

/* A stand-in for a vCPU: writes a generation number into every page, round after round,
 * and stops between two writes when asked (the snapshot's pause). */
struct writer {
	pthread_t thread;
	atomic_bool stop, pause_req, paused;
	atomic_uint_fast64_t rounds; /* rounds done */
};

static void *writer_main(void *arg)
{
	struct writer *w = arg;
	for (uint64_t g = 1; !atomic_load(&w->stop); g++) {
		for (uint64_t p = 0; p < RAM_PAGES; p++) {
			if (atomic_load(&w->pause_req)) {
				atomic_store(&w->paused, true);
				while (atomic_load(&w->pause_req))
					sched_yield();
				atomic_store(&w->paused, false);
			}
			*word(p) = g << 32 | p;
		}
		atomic_store(&w->rounds, g);
	}
	return NULL;
}

/* Wait until @w has done @n more whole rounds. */
static void wait_rounds(struct writer *w, uint64_t n)
{
	uint64_t until = atomic_load(&w->rounds) + n;
	while (atomic_load(&w->rounds) < until) {
		struct timespec t = {0, 1000000L};
		nanosleep(&t, NULL);
	}
}

START_TEST(writes_racing_the_prearm_never_reach_the_frozen_copy)
{
	static uint64_t expected[RAM_PAGES];
	struct writer w = {.rounds = 0};
	ck_assert_int_eq(pthread_create(&w.thread, NULL, writer_main, &w), 0);
	wait_rounds(&w, 1);
	for (int snap = 0; snap < 4; snap++) {
		struct guest_memory_prearm arm;
		guest_memory_prearm(&mem, 3, 16, &arm);
		ck_assert_int_eq(arm.error, 0);
		/* Pause, look at what the "guest" has, freeze, resume. */
		atomic_store(&w.pause_req, true);
		while (!atomic_load(&w.paused))
			sched_yield();
		for (uint64_t p = 0; p < RAM_PAGES; p++)
			expected[p] = *word(p);
		uint64_t protected;
		struct vm_map_copy *copy = freeze(&protected);
		ck_assert_uint_le(protected, RAM_PAGES);
		atomic_store(&w.pause_req, false);
		wait_rounds(&w, 2); /* every frozen page written over at least once */
		for (uint64_t p = 0; p < RAM_PAGES; p++)
			ck_assert_msg(frozen_word(copy, p) == expected[p], "snapshot %d page %llu: frozen 0x%llx, expected 0x%llx", snap,
				      (unsigned long long)p, (unsigned long long)frozen_word(copy, p),
				      (unsigned long long)expected[p]);
		discard(copy);
	}
	atomic_store(&w.stop, true);
	pthread_join(w.thread, NULL);
	ck_assert_int_eq(atomic_load(&fault_errors), 0);
}
END_TEST

/* A cluster the kernel will not copy in (here: into a range never registered with the
 * userfaultfd) fails the fault itself, with the pmap's reason as the thread's message: the
 * caller need not ask the pmap afterwards, and the failure is reported once. */
START_TEST(a_copy_the_kernel_refuses_fails_the_fault)
{
	const size_t size = 16 * VM_PAGE_SIZE;
	struct uffd u;
	ck_assert_int_eq(uffd_open(&u, 0), 0);
	uint8_t *base = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	ck_assert_ptr_ne(base, MAP_FAILED);
	struct pmap_uffd p;
	ck_assert_int_eq(pmap_uffd_init(&p, &u, base, size), 0);
	struct vm_domain *dom;
	ck_assert_int_eq(vm_domain_create(&dom), 0);
	struct vm_map *map;
	ck_assert_int_eq(vm_map_create(dom, 0, size, &pmap_uffd_ops, &p, &map), KERN_SUCCESS);
	vm_addr_t at = 0;
	ck_assert_int_eq(vm_map_allocate(map, &at, size, false), KERN_SUCCESS);
	error_clear();
	vm_domain_lock(dom);
	ck_assert_int_eq(vm_fault(map, 0, VM_PROT_READ | VM_PROT_WRITE, NULL), KERN_MEMORY_ERROR);
	ck_assert_int_eq(pmap_uffd_flush(&p), 0);
	vm_domain_unlock(dom);
	ck_assert_msg(strstr(error_message(), "cannot fill guest pages at 0x0"), "message: %s", error_message());
	vm_map_destroy(map);
	vm_domain_destroy(dom);
	pmap_uffd_fini(&p);
	munmap(base, size);
	uffd_close(&u);
}
END_TEST

/* The ranges the pmap knows, as [start, end) in pages, in @r's order. */
static void expect_ranges(const struct pmap_uffd_ranges *r, unsigned n, const uint64_t (*want)[2])
{
	ck_assert_uint_eq(r->n, n);
	for (unsigned i = 0; i < n; i++)
		ck_assert_msg(r->range[i].start == want[i][0] * VM_PAGE_SIZE && r->range[i].end == want[i][1] * VM_PAGE_SIZE,
			      "range %u: [%llu, %llu) pages", i, (unsigned long long)(r->range[i].start / VM_PAGE_SIZE),
			      (unsigned long long)(r->range[i].end / VM_PAGE_SIZE));
}

/*
 * Pages:  read-only [0, 8)   segment [16, 24)       forget [2, 4) and [20, 28)
 *      => read-only [0, 2) [4, 8)   segment [16, 20)
 * With all eight read-only slots in use, a cut in the middle of one keeps the piece below.
 */
START_TEST(forgetting_a_range_cuts_it_out_of_the_read_only_and_segment_ranges)
{
	const uint64_t P = VM_PAGE_SIZE;
	struct pmap_uffd p;
	ck_assert_int_eq(pmap_uffd_init(&p, &mem.uffd, mem.base, RAM_SIZE), 0);
	ck_assert_int_eq(pmap_uffd_add_readonly(&p, 0, 8 * P), 0);
	ck_assert_int_eq(pmap_uffd_add_segment(&p, 16 * P, 24 * P), 0);
	pmap_uffd_forget_range(&p, 2 * P, 4 * P);
	pmap_uffd_forget_range(&p, 20 * P, 28 * P);
	expect_ranges(&p.readonly, 2, (const uint64_t[][2]){{0, 2}, {4, 8}});
	expect_ranges(&p.segment, 1, (const uint64_t[][2]){{16, 20}});
	pmap_uffd_forget_range(&p, 0, 32 * P);
	expect_ranges(&p.readonly, 0, NULL);
	expect_ranges(&p.segment, 0, NULL);
	for (uint64_t i = 0; i < 8; i++)
		ck_assert_int_eq(pmap_uffd_add_readonly(&p, 10 * i * P, (10 * i + 8) * P), 0);
	pmap_uffd_forget_range(&p, 2 * P, 4 * P);
	ck_assert_uint_eq(p.readonly.n, 8);
	ck_assert_uint_eq(p.readonly.range[0].start, 0);
	ck_assert_uint_eq(p.readonly.range[0].end, 2 * P);
	pmap_uffd_fini(&p);
}
END_TEST

/* The probe of UFFDIO_CONTINUE_MODE_WP says what the running kernel is: Linux 6.4 and
 * later map a page write-protected in one step, earlier ones refuse the mode (and sharing
 * restored pages host-wide is then left off, with the reason). */
START_TEST(continue_write_protected_is_known_from_linux_6_4_on)
{
	struct utsname u;
	unsigned major = 0, minor = 0;
	ck_assert_int_eq(uname(&u), 0);
	ck_assert_int_eq(sscanf(u.release, "%u.%u", &major, &minor), 2);
	bool want = major > 6 || (major == 6 && minor >= 4);
	ck_assert_msg(uffd_can_continue_wp(&mem.uffd) == want, "kernel %s", u.release);
	int r = guest_memory_can_map_segments();
	if (want)
		ck_assert_msg(r == 0, "kernel %s: %s", u.release, error_message());
	else
		ck_assert_msg(r == -EOPNOTSUPP && strstr(error_message(), "UFFDIO_CONTINUE_MODE_WP, Linux 6.4"), "%s",
			      error_message());
}
END_TEST

Suite *pmap_uffd_suite(void)
{
	Suite *s = suite_create("pmap_uffd");
	harness_requires(HARNESS_UFFD);
	TCase *tc = tcase_create("guest_ram");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 60);
	HARNESS_ADD_TEST(tc, prearmed_pages_take_writes_and_the_freeze_protects_only_those);
	HARNESS_ADD_TEST(tc, untouched_and_removed_pages_count_as_protected);
	HARNESS_ADD_TEST(tc, forgetting_takes_no_page_for_protected);
	HARNESS_ADD_TEST(tc, writes_racing_the_prearm_never_reach_the_frozen_copy);
	HARNESS_ADD_TEST(tc, a_copy_the_kernel_refuses_fails_the_fault);
	HARNESS_ADD_TEST(tc, forgetting_a_range_cuts_it_out_of_the_read_only_and_segment_ranges);
	HARNESS_ADD_TEST(tc, continue_write_protected_is_known_from_linux_6_4_on);
	suite_add_tcase(s, tc);
	return s;
}

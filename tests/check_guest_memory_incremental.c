/*
 * Incremental snapshots of live guest memory, on real userfaultfd without KVM: the test
 * thread writes guest RAM through its host mapping (its faults take a vCPU's path) and
 * takes snapshots as a live snapshot does (pre-arm, freeze, list the frozen pages, keep
 * the frozen RAM as the next one's base). Each snapshot after the first lists exactly the
 * pages written since the last one kept, with the bytes they held at its freeze; the chain
 * of listings, laid over each other as a restore reads them, is guest memory at each
 * freeze, page for page; pages written between snapshots are held once, the chain stays
 * two objects deep. Under a memory limit (pages paged out of the base and of the top) too.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "memory_stat.h"
#include "vmm/error.h"
#include "vmm/memory/guest_memory.h"

#define PS VM_PAGE_SIZE
#define RAM_SIZE (4ull << 20)
#define RAM_PAGES (RAM_SIZE / PS)
#define ROUNDS 6

static struct guest_memory mem;
static int errors;

static void on_error(void *arg, int err, const char *message)
{
	(void)arg;
	(void)err;
	fprintf(stderr, "guest_memory_incremental: unexpected fault failure: %s\n", message);
	__atomic_add_fetch(&errors, 1, __ATOMIC_SEQ_CST);
}

static uint64_t now[RAM_PAGES], stored[RAM_PAGES];
static bool written[RAM_PAGES];

/* Guest memory of RAM_SIZE, under a limit of @limit bytes (0: none), all zero. */
static void start(uint64_t limit)
{
	memset(now, 0, sizeof(now));
	memset(written, 0, sizeof(written));
	guest_memory_init(&mem);
	struct guest_memory_config cfg = {.ram_size = RAM_SIZE, .mem_limit = limit, .cluster = 16};
	ck_assert_msg(guest_memory_create(&mem, &cfg) == 0, "%s", error_message());
	ck_assert_int_eq(guest_memory_start(&mem, on_error, NULL), 0);
	errors = 0;
}

static void teardown(void)
{
	guest_memory_destroy(&mem);
}

/* Page contents by tag: 0 is the zero page; any other fills the page with its low byte
 * (made odd) after the tag itself. */
static void fill(uint8_t *page, uint64_t tag)
{
	memset(page, tag ? (int)(tag | 1) : 0, PS);
	if (tag)
		memcpy(page, &tag, sizeof(tag));
}

static uint64_t tag_of(const uint8_t *page)
{
	uint64_t tag;
	memcpy(&tag, page, sizeof(tag));
	uint8_t want[PS];
	fill(want, tag);
	ck_assert_msg(memcmp(page, want, PS) == 0, "a page holds bytes no write put there (tag 0x%llx)",
		      (unsigned long long)tag);
	return tag;
}

/* The test's model (now, stored, written above): what each page holds now, what the chain
 * of kept listings gives for it, whether it was written since the last snapshot kept. */

static void write_page(uint64_t k, uint64_t tag)
{
	uint8_t *p = guest_memory_ptr(&mem, k * PS, PS);
	ck_assert_ptr_nonnull(p);
	fill(p, tag);
	now[k] = tag;
	written[k] = true;
}

/* A listing: page -> tag, in the order given. */
struct listing {
	uint64_t n;
	uint64_t pindex[RAM_PAGES];
	uint64_t tag[RAM_PAGES];
};

static int collect(void *arg, const uint64_t *pindex, const uint8_t (*bytes)[VM_PAGE_SIZE], unsigned n,
		   uint64_t examined)
{
	(void)examined;
	struct listing *l = arg;
	for (unsigned i = 0; i < n; i++) {
		ck_assert_uint_lt(l->n, RAM_PAGES);
		ck_assert(l->n == 0 || pindex[i] > l->pindex[l->n - 1]);
		l->pindex[l->n] = pindex[i];
		l->tag[l->n++] = tag_of(bytes[i]);
	}
	return 0;
}

static struct listing listed;

/*
 * One snapshot: pre-arm, freeze, then @during pages written meanwhile (as the guest runs on
 * while the store is written), list the frozen pages since the last kept base (all of them
 * for the first), check the listing against the model, then keep it (@keep) or let it go
 * as a failed snapshot does.
 */
static void snapshot(bool first, unsigned during, uint64_t round, bool keep)
{
	static uint64_t at_freeze[RAM_PAGES];
	static bool written_before[RAM_PAGES];
	struct guest_memory_prearm pa;
	guest_memory_prearm(&mem, 2, 0, &pa);
	ck_assert_msg(pa.error == 0, "%s", error_message());
	struct guest_memory_frozen f = {0};
	uint64_t protected;
	ck_assert_msg(guest_memory_freeze(&mem, &f, &protected) == 0, "%s", error_message());
	memcpy(at_freeze, now, sizeof(now));
	memcpy(written_before, written, sizeof(written));
	if (keep)
		memset(written, 0, sizeof(written));
	for (unsigned i = 0; i < during; i++)
		write_page((round * 131 + i * 17) % RAM_PAGES, round << 40 | 0xd00000 | i);

	ck_assert(first || guest_memory_has_base(&mem));
	listed.n = 0;
	ck_assert_msg(guest_memory_frozen_pages(&mem, &f, first ? GUEST_MEMORY_SINCE_NOTHING : GUEST_MEMORY_SINCE_BASE,
						 64, collect, &listed) == 0,
		      "%s", error_message());
	/* Exactly the pages written since the last kept snapshot, as they were at the freeze. */
	uint64_t want = 0;
	for (uint64_t k = 0; k < RAM_PAGES; k++)
		want += first ? at_freeze[k] != 0 : written_before[k];
	for (uint64_t i = 0; listed.n != want && !first && i < listed.n; i++)
		if (!written_before[listed.pindex[i]])
			fprintf(stderr, "guest_memory_incremental: round %llu lists page %llu, not written since\n",
				(unsigned long long)round, (unsigned long long)listed.pindex[i]);
	ck_assert_uint_eq(listed.n, want);
	for (uint64_t i = 0; i < listed.n; i++) {
		uint64_t k = listed.pindex[i];
		ck_assert_msg(first || written_before[k], "page %llu is listed but was not written since",
			      (unsigned long long)k);
		ck_assert_uint_eq(listed.tag[i], at_freeze[k]);
	}
	if (!keep) {
		guest_memory_frozen_discard(&mem, &f);
		memcpy(written, written_before, sizeof(written));
		for (unsigned i = 0; i < during; i++)
			written[(round * 131 + i * 17) % RAM_PAGES] = true;
		return;
	}
	/* Laid over its parent, the listing is memory at the freeze. */
	if (first)
		memset(stored, 0, sizeof(stored));
	for (uint64_t i = 0; i < listed.n; i++)
		stored[listed.pindex[i]] = listed.tag[i];
	ck_assert_int_eq(memcmp(stored, at_freeze, sizeof(stored)), 0);
	ck_assert_msg(guest_memory_frozen_keep(&mem, &f) == 0, "%s", error_message());
	ck_assert_uint_eq(f.n, 0);
	ck_assert(guest_memory_has_base(&mem));
}

/* Every page of guest memory holds what the model says. */
static void check_memory(void)
{
	const uint8_t *p = guest_memory_ptr(&mem, 0, RAM_SIZE);
	ck_assert_ptr_nonnull(p);
	for (uint64_t k = 0; k < RAM_PAGES; k++)
		ck_assert_msg(tag_of(p + k * PS) == now[k], "page %llu does not hold what was written last",
			      (unsigned long long)k);
}

/* Loop index: 0 without a memory limit, 1 under one a quarter of RAM (page-out to swap). */
START_TEST(test_each_snapshot_lists_exactly_what_was_written_since_the_last_one_kept)
{
	bool limited = _i == 1;
	start(limited ? RAM_SIZE / 4 : 0);
	/* The first snapshot lists every page written (three in four). */
	for (uint64_t k = 0; k < RAM_PAGES; k++)
		if (k % 4 != 3)
			write_page(k, 1ull << 40 | k);
	snapshot(true, 8, 1, true);

	uint64_t seed = 12345;
	for (uint64_t round = 2; round < 2 + ROUNDS; round++) {
		if (round == 4) {
			/* Everything rewritten: the base's copies are let go as the guest copies them up,
			 * so memory holds each page once, not twice. */
			for (uint64_t k = 0; k < RAM_PAGES; k++)
				write_page(k, round << 40 | k | 0x10000);
			if (!limited)
				ck_assert_uint_le(memory_stat(&mem, "mem.resident_pages"), RAM_PAGES + 64);
		} else {
			for (unsigned i = 0; i < 300; i++) {
				seed = seed * 6364136223846793005ull + 1442695040888963407ull;
				uint64_t k = (seed >> 33) % RAM_PAGES;
				write_page(k, round << 40 | (uint64_t)i << 20 | k);
			}
			write_page(round * 7, 0); /* a page written all zero is listed (the base has bytes there) */
			write_page(3, 0);         /* one that never held anything but zero: listed too */
		}
		/* The fourth is a snapshot that fails: the next one lists what it would have too. */
		snapshot(false, 8, round, round != 5);
	}
	check_memory();
	ck_assert_uint_ge(memory_stat(&mem, "mem.base_merges"), ROUNDS - 2);
	ck_assert_uint_gt(memory_stat(&mem, "mem.base_pages_freed"), 0);
	ck_assert_uint_eq(memory_stat(&mem, "mem.base_objects"), 1);
	/* The guest's chain: its own object over the base, no deeper. */
	ck_assert_uint_le(memory_stat(&mem, "mem.objects"), 2);
	if (limited)
		ck_assert_uint_gt(memory_stat(&mem, "mem.pageouts"), 0);
	ck_assert_int_eq(errors, 0);
}
END_TEST

static void count_bases(void *arg, const struct guest_memory_entry *e)
{
	unsigned *n = arg;
	for (unsigned i = 0; i < e->nchain; i++)
		*n += e->chain[i].base;
}

START_TEST(test_an_unchanged_guest_lists_nothing)
{
	start(0);
	for (uint64_t k = 0; k < RAM_PAGES; k += 3)
		write_page(k, 7ull << 40 | k);
	snapshot(true, 0, 1, true);
	/* The map shows the stored snapshot's memory as the base of the next. */
	unsigned bases = 0;
	uint64_t objects;
	ck_assert_int_eq(guest_memory_vm_region(&mem, count_bases, &bases, &objects), 0);
	ck_assert_uint_eq(bases, 1);
	snapshot(false, 0, 2, true);
	ck_assert_uint_eq(listed.n, 0);
	snapshot(false, 0, 3, true);
	ck_assert_uint_eq(listed.n, 0);
	check_memory();
	ck_assert_int_eq(errors, 0);
}
END_TEST

START_TEST(test_memory_allocated_or_deallocated_lets_the_base_go)
{
	start(0);
	write_page(5, 9ull << 40);
	snapshot(true, 0, 1, true);
	ck_assert(!guest_memory_layout_changed(&mem));
	uint64_t gpa = 0;
	ck_assert_msg(guest_memory_allocate(&mem, &gpa, 1 << 20, true) == 0, "%s", error_message());
	/* A region made since would let the parent's bytes show through where it has none. */
	ck_assert(!guest_memory_has_base(&mem));
	ck_assert(guest_memory_layout_changed(&mem));
	ck_assert_uint_eq(memory_stat(&mem, "mem.base_objects"), 0);
	check_memory();
	ck_assert_int_eq(errors, 0);
}
END_TEST

Suite *guest_memory_incremental_suite(void)
{
	Suite *s = suite_create("guest_memory_incremental");
	harness_requires(HARNESS_UFFD);
	TCase *tc = tcase_create("incremental");
	tcase_add_checked_fixture(tc, NULL, teardown);
	tcase_set_timeout(tc, 60);
	HARNESS_ADD_LOOP_TEST(tc, test_each_snapshot_lists_exactly_what_was_written_since_the_last_one_kept, 0, 2);
	HARNESS_ADD_TEST(tc, test_an_unchanged_guest_lists_nothing);
	HARNESS_ADD_TEST(tc, test_memory_allocated_or_deallocated_lets_the_base_go);
	suite_add_tcase(s, tc);
	return s;
}

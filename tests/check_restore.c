/*
 * What a restore takes from the store before and while its guest runs (vmm/lifecycle/
 * restore.c), without KVM: a recorded working set brought into the host-wide segment in
 * bulk, each page checked against its hash; pages another restore brought in are skipped;
 * a damaged page is left to the guest's fault; the snapshot's pages and nothing else land
 * in the segment.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"
#include "store_pages.h"
#include "vmm/error.h"
#include "vmm/lifecycle/restore.h"

#define PAGES 4096u /* 16 MiB of RAM: the least a guest runs in */

static char dir[64];

/* A store holding snapshot "ws" of a 16 MiB guest: the known pages, a state that parses. */
static void setup(void)
{
	strcpy(dir, "/tmp/vmm-restore-XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(dir));
	store_pages_write_guest(dir, "ws", PAGES);
	error_clear();
}

static void teardown(void)
{
	char cmd[128];
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	ck_assert_int_eq(system(cmd), 0);
}

/* Wait for @r's loader to end (a guard, not a timing bound). */
static void wait_loaded(struct restore *r)
{
	for (int i = 0; i < 20000 && !atomic_load(&r->load_done); i++) {
		struct timespec t = {0, 1000000};
		nanosleep(&t, NULL);
	}
	ck_assert(atomic_load(&r->load_done));
}

/* Which pages the segment of @r holds, into @held (PAGES bytes). */
static void segment_held(struct restore *r, unsigned char *held)
{
	void *seg = mmap(NULL, PAGES * 4096ull, PROT_READ, MAP_SHARED, r->segment.fd, 0);
	ck_assert_ptr_ne(seg, MAP_FAILED);
	ck_assert_int_eq(mincore(seg, PAGES * 4096ull, held), 0);
	for (uint64_t p = 0; p < PAGES; p++)
		if (held[p] & 1)
			ck_assert_msg(memcmp((uint8_t *)seg + p * 4096, store_pages_make(p, 1, store_pages_kind(p)), 4096) == 0,
				      "page %llu of the segment is not the snapshot's", (unsigned long long)p);
	munmap(seg, PAGES * 4096ull);
}

/* The working set: every 7th page, out of order, with a repeat and one beyond the snapshot. */
static uint64_t working_set(uint64_t *ws)
{
	uint64_t n = 0;
	for (uint64_t p = PAGES; p-- > 0;)
		if (p % 7 == 0)
			ws[n++] = p;
	ws[n++] = 14;
	ws[n++] = PAGES + 5;
	return n;
}

START_TEST(a_working_set_is_brought_into_the_segment_in_bulk)
{
	struct restore r;
	ck_assert_msg(restore_open(&r, dir, "ws", NULL, true) == 0, "%s", error_message());
	ck_assert_int_ge(r.segment.fd, 0);
	uint64_t ws[PAGES];
	uint64_t n = working_set(ws);
	ck_assert_int_eq(restore_load_working_set(&r, ws, n), 0);
	wait_loaded(&r);
	/* Exactly the working set's pages that are not zero (zero pages are never held). */
	unsigned char held[PAGES];
	segment_held(&r, held);
	uint64_t want = 0;
	for (uint64_t p = 0; p < PAGES; p++) {
		bool in = p % 7 == 0 && store_pages_kind(p) != 0;
		want += in;
		ck_assert_msg((held[p] & 1) == in, "page %llu: held %d", (unsigned long long)p, held[p] & 1);
	}
	ck_assert_uint_eq(atomic_load(&r.loaded), want);

	/* A second restore of the snapshot on this host finds them there: it writes none. */
	struct restore again;
	ck_assert_msg(restore_open(&again, dir, "ws", NULL, true) == 0, "%s", error_message());
	ck_assert_int_eq(restore_load_working_set(&again, ws, n), 0);
	wait_loaded(&again);
	ck_assert_uint_eq(atomic_load(&again.loaded), 0);
	restore_close(&again);
	restore_close(&r);
}
END_TEST

START_TEST(a_damaged_page_is_left_to_the_guests_fault)
{
	/* The stored bytes of page 1 (slot 0 of the pack: the first unique page written) flipped. */
	char path[128];
	snprintf(path, sizeof(path), "%s/packs/00000001.pack", dir);
	FILE *f = fopen(path, "r+b");
	ck_assert_ptr_nonnull(f);
	ck_assert_int_eq(fseek(f, 100, SEEK_SET), 0);
	ck_assert_int_eq(fputc(0x55, f), 0x55);
	fclose(f);
	struct restore r;
	ck_assert_msg(restore_open(&r, dir, "ws", NULL, true) == 0, "%s", error_message());
	uint64_t ws[] = {1, 2, 4, 5};
	ck_assert_int_eq(restore_load_working_set(&r, ws, 4), 0);
	wait_loaded(&r);
	unsigned char held[PAGES];
	segment_held(&r, held); /* every page held is the snapshot's own */
	ck_assert_uint_eq(atomic_load(&r.loaded), 3);
	ck_assert_int_eq(held[1] & 1, 0);
	restore_close(&r);
}
END_TEST

START_TEST(a_private_restore_loads_nothing)
{
	struct restore r;
	ck_assert_msg(restore_open(&r, dir, "ws", NULL, false) == 0, "%s", error_message());
	uint64_t ws[] = {1, 2};
	ck_assert_int_eq(restore_load_working_set(&r, ws, 2), 0);
	ck_assert(!r.loader_started);
	restore_close(&r);
}
END_TEST

Suite *restore_suite(void)
{
	Suite *s = suite_create("restore");
	harness_requires(HARNESS_UFFD | HARNESS_UFFD_SHARE);
	TCase *tc = tcase_create("restore");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 60);
	HARNESS_ADD_TEST(tc, a_working_set_is_brought_into_the_segment_in_bulk);
	HARNESS_ADD_TEST(tc, a_damaged_page_is_left_to_the_guests_fault);
	HARNESS_ADD_TEST(tc, a_private_restore_loads_nothing);
	suite_add_tcase(s, tc);
	return s;
}

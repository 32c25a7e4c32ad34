/* The deduplicating page store: XXH3 keys confirmed by memcmp, collisions, zero pages, refs. */
#include <errno.h>
#include <stdint.h>
#include <string.h>

#include "harness.h"
#include "mmu/page_store.h"
#include "mmu/vm_param.h"

static uint8_t page_a[VM_PAGE_SIZE], page_b[VM_PAGE_SIZE], zero_page[VM_PAGE_SIZE];

static void fill(uint8_t *p, uint8_t seed)
{
	for (size_t i = 0; i < VM_PAGE_SIZE; i++)
		p[i] = (uint8_t)(seed + i * 7);
}

static struct page_store *store_new(page_store_hash_t *hash)
{
	struct page_store *s;
	ck_assert_int_eq(page_store_create(hash, &s), 0);
	fill(page_a, 1);
	fill(page_b, 2);
	return s;
}

static struct page_store_stats stats_of(const struct page_store *s)
{
	struct page_store_stats st;
	page_store_stats(s, &st);
	return st;
}

/* Every page lands under one key: every distinct page collides with the others. */
static uint64_t constant_hash(const void *data, size_t len)
{
	(void)data;
	(void)len;
	return 42;
}

START_TEST(test_identical_pages_are_stored_once_with_two_references)
{
	struct page_store *s = store_new(NULL);
	page_ref_t r1, r2;
	ck_assert_int_eq(page_store_insert(s, page_a, &r1), 0);
	ck_assert_int_eq(page_store_insert(s, page_a, &r2), 0);
	ck_assert_uint_eq(r1, r2);
	ck_assert_uint_eq(page_store_refcount(s, r1), 2);
	struct page_store_stats st = stats_of(s);
	ck_assert_uint_eq(st.unique_pages, 1);
	ck_assert_uint_eq(st.hits, 1);
	ck_assert_uint_eq(st.references, 2);
	page_store_destroy(s);
}
END_TEST

START_TEST(test_stored_bytes_are_a_copy_and_page_aligned)
{
	struct page_store *s = store_new(NULL);
	page_ref_t r;
	ck_assert_int_eq(page_store_insert(s, page_a, &r), 0);
	uint8_t expect[VM_PAGE_SIZE];
	memcpy(expect, page_a, VM_PAGE_SIZE);
	page_a[0] ^= 0xff; /* the caller's buffer changes; the store's does not */
	const uint8_t *got = page_store_lookup(s, r);
	ck_assert_ptr_nonnull(got);
	ck_assert_int_eq(((uintptr_t)got) % VM_PAGE_SIZE, 0);
	ck_assert_mem_eq(got, expect, VM_PAGE_SIZE);
	page_store_destroy(s);
}
END_TEST

START_TEST(test_zero_pages_are_never_stored)
{
	struct page_store *s = store_new(NULL);
	page_ref_t r = 99;
	ck_assert_int_eq(page_store_insert(s, zero_page, &r), 0);
	ck_assert_uint_eq(r, PAGE_STORE_ZERO);
	struct page_store_stats st = stats_of(s);
	ck_assert_uint_eq(st.zero_pages, 1);
	ck_assert_uint_eq(st.unique_pages, 0);
	ck_assert_mem_eq(page_store_lookup(s, PAGE_STORE_ZERO), zero_page, VM_PAGE_SIZE);
	ck_assert_int_eq(page_store_release(s, PAGE_STORE_ZERO), 0);
	/* A page zero but for its last byte is not zero. */
	uint8_t almost[VM_PAGE_SIZE] = {0};
	almost[VM_PAGE_SIZE - 1] = 1;
	ck_assert_int_eq(page_store_insert(s, almost, &r), 0);
	ck_assert_uint_ne(r, PAGE_STORE_ZERO);
	page_store_destroy(s);
}
END_TEST

START_TEST(test_different_pages_with_the_same_hash_are_both_kept_and_counted)
{
	struct page_store *s = store_new(constant_hash);
	page_ref_t ra, rb, ra2;
	ck_assert_int_eq(page_store_insert(s, page_a, &ra), 0);
	ck_assert_int_eq(page_store_insert(s, page_b, &rb), 0);
	ck_assert_uint_ne(ra, rb);
	ck_assert_mem_eq(page_store_lookup(s, ra), page_a, VM_PAGE_SIZE);
	ck_assert_mem_eq(page_store_lookup(s, rb), page_b, VM_PAGE_SIZE);
	/* A later insert of A still finds A (memcmp), after one colliding candidate. */
	ck_assert_int_eq(page_store_insert(s, page_a, &ra2), 0);
	ck_assert_uint_eq(ra2, ra);
	struct page_store_stats st = stats_of(s);
	ck_assert_uint_eq(st.collisions, 2); /* B met A; A met B first (newest first) */
	ck_assert_uint_eq(st.unique_pages, 2);
	page_store_destroy(s);
}
END_TEST

START_TEST(test_releasing_a_colliding_page_keeps_the_others_findable)
{
	struct page_store *s = store_new(constant_hash);
	uint8_t pages[3][VM_PAGE_SIZE];
	page_ref_t r[3], found;
	for (int i = 0; i < 3; i++) {
		fill(pages[i], (uint8_t)(10 + i));
		ck_assert_int_eq(page_store_insert(s, pages[i], &r[i]), 0);
	}
	/* Chain under the key: 2 -> 1 -> 0. Drop the middle, then the head. */
	ck_assert_int_eq(page_store_release(s, r[1]), 0);
	ck_assert_int_eq(page_store_find(s, pages[1], &found), -ENOENT);
	ck_assert_ptr_null(page_store_lookup(s, r[1]));
	ck_assert_int_eq(page_store_release(s, r[2]), 0);
	ck_assert_int_eq(page_store_find(s, pages[0], &found), 0);
	ck_assert_uint_eq(found, r[0]);
	page_store_destroy(s);
}
END_TEST

START_TEST(test_the_last_release_frees_the_page_and_its_slot_is_reused)
{
	struct page_store *s = store_new(NULL);
	page_ref_t r, r2;
	ck_assert_int_eq(page_store_insert(s, page_a, &r), 0);
	ck_assert_int_eq(page_store_retain(s, r), 0);
	ck_assert_int_eq(page_store_release(s, r), 0);
	ck_assert_ptr_nonnull(page_store_lookup(s, r));
	ck_assert_int_eq(page_store_release(s, r), 0);
	ck_assert_ptr_null(page_store_lookup(s, r));
	ck_assert_int_eq(page_store_release(s, r), -ENOENT);
	ck_assert_int_eq(page_store_retain(s, r), -ENOENT);
	ck_assert_int_eq(page_store_insert(s, page_b, &r2), 0);
	ck_assert_uint_eq(r2, r);
	ck_assert_mem_eq(page_store_lookup(s, r2), page_b, VM_PAGE_SIZE);
	page_store_destroy(s);
}
END_TEST

START_TEST(test_find_adds_no_reference)
{
	struct page_store *s = store_new(NULL);
	page_ref_t r, found;
	ck_assert_int_eq(page_store_find(s, page_a, &found), -ENOENT);
	ck_assert_int_eq(page_store_insert(s, page_a, &r), 0);
	ck_assert_int_eq(page_store_find(s, page_a, &found), 0);
	ck_assert_uint_eq(found, r);
	ck_assert_uint_eq(page_store_refcount(s, r), 1);
	struct page_store_stats st = stats_of(s);
	ck_assert_uint_eq(st.lookups, 2);
	ck_assert_uint_eq(st.lookup_hits, 1);
	page_store_destroy(s);
}
END_TEST

START_TEST(test_thousands_of_pages_with_repeats_dedup_exactly)
{
	struct page_store *s = store_new(NULL);
	enum { N = 3000, DISTINCT = 700 };
	static page_ref_t refs[N];
	uint8_t p[VM_PAGE_SIZE] = {0};
	for (int i = 0; i < N; i++) {
		memcpy(p, &(int){i % DISTINCT + 1}, sizeof(int));
		ck_assert_int_eq(page_store_insert(s, p, &refs[i]), 0);
		ck_assert_uint_eq(refs[i], refs[i % DISTINCT]);
	}
	struct page_store_stats st = stats_of(s);
	ck_assert_uint_eq(st.unique_pages, DISTINCT);
	ck_assert_uint_eq(st.references, N);
	for (int i = 0; i < N; i++)
		ck_assert_int_eq(page_store_release(s, refs[i]), 0);
	st = stats_of(s);
	ck_assert_uint_eq(st.unique_pages, 0);
	ck_assert_uint_eq(st.references, 0);
	page_store_destroy(s);
}
END_TEST

/* Insert keys a page by hashing it in the pass that copies it; find hashes with the library.
 * Every inserted page must be found again: pages one byte apart at each stripe and block
 * border of XXH3's loop, and random pages read from an address that is not 16-byte aligned. */
START_TEST(test_insert_and_find_agree_on_every_page)
{
	struct page_store *s = store_new(NULL);
	static const size_t flips[] = {0, 15, 16, 63, 64, 1023, 1024, 2047, 3071, 3072, 4031, 4032, 4095};
	enum { NFLIPS = sizeof(flips) / sizeof(flips[0]), NRANDOM = 500 };
	static uint8_t buf[VM_PAGE_SIZE + 1];
	uint8_t *unaligned = buf + 1, copy[VM_PAGE_SIZE];
	uint64_t x = 0x9e3779b97f4a7c15ull;
	for (int i = 0; i < NFLIPS + NRANDOM; i++) {
		if (i < NFLIPS) {
			fill(unaligned, 3);
			unaligned[flips[i]] ^= 0x80;
		} else {
			for (size_t b = 0; b < VM_PAGE_SIZE; b++) {
				x ^= x << 13, x ^= x >> 7, x ^= x << 17;
				unaligned[b] = (uint8_t)x;
			}
		}
		page_ref_t inserted, found;
		ck_assert_int_eq(page_store_insert(s, unaligned, &inserted), 0);
		memcpy(copy, unaligned, VM_PAGE_SIZE);
		ck_assert_int_eq(page_store_find(s, copy, &found), 0);
		ck_assert_uint_eq(found, inserted);
		ck_assert_mem_eq(page_store_lookup(s, inserted), copy, VM_PAGE_SIZE);
	}
	struct page_store_stats st = stats_of(s);
	ck_assert_uint_eq(st.unique_pages, NFLIPS + NRANDOM);
	ck_assert_uint_eq(st.collisions, 0);
	page_store_destroy(s);
}
END_TEST

Suite *page_store_suite(void)
{
	Suite *s = suite_create("page_store");
	TCase *tc = tcase_create("dedup");
	HARNESS_ADD_TEST(tc, test_identical_pages_are_stored_once_with_two_references);
	HARNESS_ADD_TEST(tc, test_stored_bytes_are_a_copy_and_page_aligned);
	HARNESS_ADD_TEST(tc, test_zero_pages_are_never_stored);
	HARNESS_ADD_TEST(tc, test_different_pages_with_the_same_hash_are_both_kept_and_counted);
	HARNESS_ADD_TEST(tc, test_releasing_a_colliding_page_keeps_the_others_findable);
	HARNESS_ADD_TEST(tc, test_the_last_release_frees_the_page_and_its_slot_is_reused);
	HARNESS_ADD_TEST(tc, test_find_adds_no_reference);
	HARNESS_ADD_TEST(tc, test_thousands_of_pages_with_repeats_dedup_exactly);
	HARNESS_ADD_TEST(tc, test_insert_and_find_agree_on_every_page);
	suite_add_tcase(s, tc);
	return s;
}

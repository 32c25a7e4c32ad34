/* Pooled items and the hash table under every O(1) lookup of the core. */
#include <stdint.h>
#include <stdlib.h>
#include <sys/mman.h>

#include "harness.h"
#include "mmu/hmap.h"
#include "mmu/pool.h"
#include "mmu/vm_param.h"

START_TEST(test_page_items_are_page_aligned_and_distinct)
{
	struct pool p;
	pool_init(&p, VM_PAGE_SIZE, 64 << 10);
	void *items[40];
	for (int i = 0; i < 40; i++) {
		items[i] = pool_alloc(&p);
		ck_assert_ptr_nonnull(items[i]);
		ck_assert_int_eq((uintptr_t)items[i] % VM_PAGE_SIZE, 0);
		for (int j = 0; j < i; j++)
			ck_assert_ptr_ne(items[i], items[j]);
	}
	ck_assert_uint_eq(p.in_use, 40);
	ck_assert_uint_ge(p.capacity, 40);
	pool_fini(&p);
}
END_TEST

START_TEST(test_freed_items_are_reused_before_the_pool_grows)
{
	struct pool p;
	pool_init(&p, 48, 4096);
	void *a = pool_alloc(&p);
	size_t cap = p.capacity;
	pool_free(&p, a);
	ck_assert_ptr_eq(pool_alloc(&p), a);
	ck_assert_uint_eq(p.capacity, cap);
	ck_assert_uint_eq(p.in_use, 1);
	pool_fini(&p);
}
END_TEST

/* Pages of @p's newest chunk [base, base + bytes) the kernel has made resident. */
static size_t resident_pages(void *base, size_t bytes)
{
	unsigned char vec[512];
	ck_assert_uint_le(bytes / VM_PAGE_SIZE, sizeof(vec));
	ck_assert_int_eq(mincore(base, bytes, vec), 0);
	size_t n = 0;
	for (size_t i = 0; i < bytes / VM_PAGE_SIZE; i++)
		n += vec[i] & 1;
	return n;
}

START_TEST(test_a_new_chunk_is_touched_only_as_far_as_items_are_handed_out)
{
	struct pool p;
	pool_init(&p, VM_PAGE_SIZE, 2u << 20);
	char *a = pool_alloc(&p), *b = pool_alloc(&p), *c = pool_alloc(&p);
	ck_assert_ptr_nonnull(a);
	/* Handed out in address order from the start of the chunk. */
	ck_assert_ptr_eq(b, a + VM_PAGE_SIZE);
	ck_assert_ptr_eq(c, b + VM_PAGE_SIZE);
	a[0] = b[0] = c[0] = 1;
	/* The three items and the chunk's last page (its header): not 512 pages. */
	ck_assert_uint_le(resident_pages(a, 2u << 20), 4);
	ck_assert_uint_eq(p.capacity, p.chunk_items);
	ck_assert_uint_eq(p.nfree, 0);
	pool_fini(&p);
}
END_TEST

START_TEST(test_items_freed_then_new_come_from_the_free_list_then_the_chunk)
{
	struct pool p;
	pool_init(&p, 64, 4096);
	char *a = pool_alloc(&p), *b = pool_alloc(&p);
	pool_free(&p, a);
	ck_assert_ptr_eq(pool_alloc(&p), a);
	ck_assert_ptr_eq(pool_alloc(&p), b + 64);
	/* Every item of the chunk, then a second chunk. */
	for (size_t i = 3; i < p.chunk_items; i++)
		ck_assert_ptr_nonnull(pool_alloc(&p));
	ck_assert_uint_eq(p.capacity, p.chunk_items);
	ck_assert_ptr_nonnull(pool_alloc(&p));
	ck_assert_uint_eq(p.capacity, 2 * p.chunk_items);
	ck_assert_uint_eq(p.in_use, p.chunk_items + 1);
	pool_fini(&p);
}
END_TEST

START_TEST(test_hmap_shrinks_when_mostly_empty_and_keeps_the_rest)
{
	struct hmap h;
	hmap_init(&h);
	enum { N = 4096 };
	for (uintptr_t k = 0; k < N; k++)
		ck_assert_int_eq(hmap_put(&h, k, (void *)(k + 1)), 0);
	size_t big = h.cap;
	for (uintptr_t k = 0; k < N - 10; k++)
		ck_assert_ptr_eq(hmap_del(&h, k), (void *)(k + 1));
	ck_assert_uint_le(h.cap, big / 16);
	for (uintptr_t k = N - 10; k < N; k++)
		ck_assert_ptr_eq(hmap_get(&h, k), (void *)(k + 1));
	ck_assert_uint_eq(hmap_count(&h), 10);
	hmap_fini(&h);
}
END_TEST

START_TEST(test_hmap_keeps_every_key_through_deletes)
{
	struct hmap h;
	hmap_init(&h);
	enum { N = 5000 };
	for (uintptr_t k = 0; k < N; k++)
		ck_assert_int_eq(hmap_put(&h, k * 4096, (void *)(k + 1)), 0);
	/* Delete every third key: backward shifting must keep the rest reachable. */
	for (uintptr_t k = 0; k < N; k += 3)
		ck_assert_ptr_eq(hmap_del(&h, k * 4096), (void *)(k + 1));
	for (uintptr_t k = 0; k < N; k++)
		ck_assert_ptr_eq(hmap_get(&h, k * 4096), k % 3 ? (void *)(k + 1) : NULL);
	ck_assert_uint_eq(hmap_count(&h), N - (N + 2) / 3);
	size_t cursor = 0, seen = 0;
	uint64_t key;
	void *val;
	while (hmap_next(&h, &cursor, &key, &val)) {
		ck_assert_ptr_eq(val, (void *)(uintptr_t)(key / 4096 + 1));
		seen++;
	}
	ck_assert_uint_eq(seen, hmap_count(&h));
	hmap_fini(&h);
}
END_TEST

START_TEST(test_hmap_put_replaces_the_value_of_a_present_key)
{
	struct hmap h;
	hmap_init(&h);
	ck_assert_int_eq(hmap_put(&h, 7, (void *)1), 0);
	ck_assert_int_eq(hmap_put(&h, 7, (void *)2), 0);
	ck_assert_uint_eq(hmap_count(&h), 1);
	ck_assert_ptr_eq(hmap_get(&h, 7), (void *)2);
	ck_assert_ptr_null(hmap_del(&h, 8));
	hmap_fini(&h);
}
END_TEST

Suite *pool_suite(void)
{
	Suite *s = suite_create("pool");
	TCase *tc = tcase_create("pool and hmap");
	HARNESS_ADD_TEST(tc, test_page_items_are_page_aligned_and_distinct);
	HARNESS_ADD_TEST(tc, test_freed_items_are_reused_before_the_pool_grows);
	HARNESS_ADD_TEST(tc, test_a_new_chunk_is_touched_only_as_far_as_items_are_handed_out);
	HARNESS_ADD_TEST(tc, test_items_freed_then_new_come_from_the_free_list_then_the_chunk);
	HARNESS_ADD_TEST(tc, test_hmap_shrinks_when_mostly_empty_and_keeps_the_rest);
	HARNESS_ADD_TEST(tc, test_hmap_keeps_every_key_through_deletes);
	HARNESS_ADD_TEST(tc, test_hmap_put_replaces_the_value_of_a_present_key);
	suite_add_tcase(s, tc);
	return s;
}

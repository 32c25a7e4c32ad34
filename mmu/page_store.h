/*
 * The page store: a content-addressed, reference-counted set of 4 KiB pages, deduplicated.
 *
 * Pages are keyed by XXH3-64 of their bytes; every key hit is confirmed with memcmp, so two
 * different pages with the same hash (a collision) are both kept, chained under the key,
 * and counted. All-zero pages are never stored: they get the reference PAGE_STORE_ZERO.
 * Page bytes live in pooled page-aligned memory. Inserting, looking up by reference and
 * releasing are O(1) expected.
 *
 * The hash function can be replaced (tests force collisions with a constant hash).
 * Locking: none; the owner serializes calls with a lock (a vm_domain's store: the domain
 * lock). Page bytes are written with non-temporal stores on x86; passing that lock is what
 * makes them visible to another thread.
 */
#ifndef MMU_PAGE_STORE_H
#define MMU_PAGE_STORE_H

#include <stddef.h>
#include <stdint.h>

#define PAGE_STORE_ZERO 0u /* the reference of the all-zero page, never stored */

typedef uint32_t page_ref_t;
typedef uint64_t page_store_hash_t(const void *data, size_t len);

struct page_store;

struct page_store_stats {
	uint64_t inserts;      /* page_store_insert calls */
	uint64_t hits;         /* inserts that found the same bytes already stored (dedup) */
	uint64_t collisions;   /* inserts that met a stored page with the same hash and other bytes */
	uint64_t zero_pages;   /* inserts of all-zero pages (not stored) */
	uint64_t unique_pages; /* pages stored now */
	uint64_t references;   /* references held now, over all stored pages */
	uint64_t lookups;      /* page_store_find calls */
	uint64_t lookup_hits;  /* finds that matched */
};

/* A new empty store hashing with @hash (NULL: XXH3_64bits). 0 or -ENOMEM. */
int page_store_create(page_store_hash_t *hash, struct page_store **out);

/* Free the store and every page in it, referenced or not. */
void page_store_destroy(struct page_store *store);

/* Add a reference to the 4 KiB page at @page: the stored copy with the same bytes if there
 * is one, else a new copy. *ref receives its reference (PAGE_STORE_ZERO for a zero page).
 * 0, or -ENOMEM (nothing changed). */
int page_store_insert(struct page_store *store, const void *page, page_ref_t *ref);

/* The reference of the stored page with @page's bytes, without adding a reference:
 * 0 and *ref, or -ENOENT. A zero page is always found (PAGE_STORE_ZERO). */
int page_store_find(struct page_store *store, const void *page, page_ref_t *ref);

/* The bytes of @ref (read-only, valid until its last reference is released), a shared
 * zero page for PAGE_STORE_ZERO, or NULL when @ref names no stored page. */
const void *page_store_lookup(const struct page_store *store, page_ref_t ref);

/* Add one reference to stored page @ref. 0, or -ENOENT when @ref names no stored page. */
int page_store_retain(struct page_store *store, page_ref_t ref);

/* Drop one reference; the page is freed with its last one. PAGE_STORE_ZERO is a no-op.
 * 0, or -ENOENT when @ref names no stored page. */
int page_store_release(struct page_store *store, page_ref_t ref);

/* References held on @ref (0 for an unknown or the zero reference). */
uint32_t page_store_refcount(const struct page_store *store, page_ref_t ref);

/* A copy of the counters. */
void page_store_stats(const struct page_store *store, struct page_store_stats *stats);

/* True when the 4 KiB page at @page is all zero. */
int page_store_is_zero(const void *page);

#endif

/*
 * A hash table from 64-bit keys to non-NULL pointers: open addressing, linear probing,
 * deletion by backward shift (no tombstones). Lookups, inserts and deletes are O(1)
 * expected. Used for an object's pages (page number -> vm_page), a pmap's mappings
 * (page number -> pv entry), existence sets and the page store's index.
 *
 * Locking: none; a table belongs to the structure that embeds it. Legend: (h) the
 * embedding structure's lock covers every field.
 */
#ifndef MMU_HMAP_H
#define MMU_HMAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct hmap {
	uint64_t *keys; /* (h) slot keys */
	void **vals;    /* (h) slot values, NULL = empty slot */
	size_t cap;     /* (h) slots, 0 or a power of two */
	size_t count;   /* (h) occupied slots */
};

/* An empty table (allocates nothing). */
void hmap_init(struct hmap *h);

/* Free the slots. The values are the caller's. */
void hmap_fini(struct hmap *h);

/* The value stored under @key, or NULL. */
void *hmap_get(const struct hmap *h, uint64_t key);

/* Store @val (non-NULL) under @key, replacing any value. 0, or -ENOMEM (table unchanged). */
int hmap_put(struct hmap *h, uint64_t key, void *val);

/* Remove @key; returns the value it had, or NULL. A table of more than 512 slots left less than 1/8 full
 * shrinks.
 * Invalidates iteration cursors. */
void *hmap_del(struct hmap *h, uint64_t key);

/* Iterate: start with *cursor = 0; each call yields one entry and returns true, false at
 * the end. The table must not change while iterating. @key or @val may be NULL. */
bool hmap_next(const struct hmap *h, size_t *cursor, uint64_t *key, void **val);

static inline size_t hmap_count(const struct hmap *h)
{
	return h->count;
}

#endif

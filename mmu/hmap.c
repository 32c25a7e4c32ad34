/* Open-addressing hash table, u64 -> pointer. See hmap.h. */
#include "mmu/hmap.h"

#include <assert.h>
#include <errno.h>
#include <stdlib.h>

/* Tables this small never shrink: a fault's cluster passes through an object's table. */
#define HMAP_SHRINK_MIN 512u

static inline size_t hmap_slot(const struct hmap *h, uint64_t key)
{
	/* Fibonacci hashing: page numbers are dense, so mix them before masking. */
	return (size_t)((key * 0x9E3779B97F4A7C15ull) >> 32) & (h->cap - 1);
}

void hmap_init(struct hmap *h)
{
	h->keys = NULL;
	h->vals = NULL;
	h->cap = 0;
	h->count = 0;
}

void hmap_fini(struct hmap *h)
{
	free(h->keys);
	free(h->vals);
	hmap_init(h);
}

void *hmap_get(const struct hmap *h, uint64_t key)
{
	if (h->count == 0)
		return NULL;
	for (size_t i = hmap_slot(h, key);; i = (i + 1) & (h->cap - 1)) {
		if (!h->vals[i])
			return NULL;
		if (h->keys[i] == key)
			return h->vals[i];
	}
}

static int hmap_resize(struct hmap *h, size_t cap)
{
	uint64_t *keys = malloc(cap * sizeof(*keys));
	void **vals = calloc(cap, sizeof(*vals));
	if (!keys || !vals) {
		free(keys);
		free(vals);
		return -ENOMEM;
	}
	struct hmap old = *h;
	h->keys = keys;
	h->vals = vals;
	h->cap = cap;
	for (size_t i = 0; i < old.cap; i++) {
		if (!old.vals[i])
			continue;
		size_t j = hmap_slot(h, old.keys[i]);
		while (h->vals[j])
			j = (j + 1) & (cap - 1);
		h->keys[j] = old.keys[i];
		h->vals[j] = old.vals[i];
	}
	free(old.keys);
	free(old.vals);
	return 0;
}

int hmap_put(struct hmap *h, uint64_t key, void *val)
{
	assert(val);
	/* Keep the load at most 3/4 so that probe runs stay short. */
	if ((h->count + 1) * 4 > h->cap * 3) {
		int err = hmap_resize(h, h->cap ? h->cap * 2 : 16);
		if (err)
			return err;
	}
	size_t i = hmap_slot(h, key);
	while (h->vals[i]) {
		if (h->keys[i] == key) {
			h->vals[i] = val;
			return 0;
		}
		i = (i + 1) & (h->cap - 1);
	}
	h->keys[i] = key;
	h->vals[i] = val;
	h->count++;
	return 0;
}

void *hmap_del(struct hmap *h, uint64_t key)
{
	if (h->count == 0)
		return NULL;
	size_t mask = h->cap - 1;
	size_t i = hmap_slot(h, key);
	while (h->vals[i] && h->keys[i] != key)
		i = (i + 1) & mask;
	void *val = h->vals[i];
	if (!val)
		return NULL;
	/* Backward shift: pull later members of the probe run into the hole. */
	size_t hole = i;
	for (size_t j = (i + 1) & mask; h->vals[j]; j = (j + 1) & mask) {
		size_t home = hmap_slot(h, h->keys[j]);
		/* Move j into the hole unless its home lies cyclically in (hole, j]. */
		bool stays = hole <= j ? (hole < home && home <= j) : (hole < home || home <= j);
		if (stays)
			continue;
		h->keys[hole] = h->keys[j];
		h->vals[hole] = h->vals[j];
		hole = j;
	}
	h->vals[hole] = NULL;
	h->count--;
	/* Give memory back after a burst (a range of pages unpacked and packed again); a table
	 * that cannot shrink just stays as it is. */
	if (h->cap > HMAP_SHRINK_MIN && h->count * 8 < h->cap)
		(void)hmap_resize(h, h->cap / 2);
	return val;
}

bool hmap_next(const struct hmap *h, size_t *cursor, uint64_t *key, void **val)
{
	for (size_t i = *cursor; i < h->cap; i++) {
		if (!h->vals[i])
			continue;
		if (key)
			*key = h->keys[i];
		if (val)
			*val = h->vals[i];
		*cursor = i + 1;
		return true;
	}
	*cursor = h->cap;
	return false;
}

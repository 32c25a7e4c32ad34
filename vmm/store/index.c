/* The page index: hash -> where such bytes are stored, on mmu/hmap. See store_impl.h. */
#include "vmm/store/store_impl.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

static inline struct index_entry *index_entry(const struct index *ix, uint32_t i)
{
	return i ? &ix->e[i] : NULL;
}

static inline bool index_is(const struct index_entry *e, uint64_t hash, uint32_t pack, uint32_t slot)
{
	return e->hash == hash && e->pack == pack && e->slot == slot;
}

struct index_entry *index_add(struct index *ix, uint64_t hash, uint32_t pack, uint32_t slot)
{
	/* Manifests list their pages in order, mostly the pages of manifests indexed before
	 * them in the same order: the entry after the one met last is tried first, which
	 * spares the hash table's look-up (two cache misses in a large index). */
	uint32_t guess = ix->met + 1;
	if (guess <= ix->n && index_is(&ix->e[guess], hash, pack, slot)) {
		ix->met = guess;
		return &ix->e[guess];
	}
	uint32_t last = 0;
	for (uint32_t i = (uint32_t)(uintptr_t)hmap_get(&ix->heads, hash); i; i = ix->e[i].next) {
		if (ix->e[i].pack == pack && ix->e[i].slot == slot) {
			ix->met = i;
			return &ix->e[i];
		}
		last = i;
	}
	if (ix->n + 1 >= ix->cap) {
		if (ix->cap >= UINT32_MAX / 2)
			return NULL; /* entry numbers are 32-bit: 16 TiB of unique pages */
		uint32_t cap = ix->cap ? ix->cap * 2 : 1024;
		struct index_entry *e = realloc(ix->e, cap * sizeof(*e));
		if (!e)
			return NULL;
		ix->e = e;
		ix->cap = cap;
	}
	uint32_t i = ix->n + 1;
	ix->e[i] = (struct index_entry){.hash = hash, .pack = pack, .slot = slot};
	/* Appended to its hash's chain: entries of one hash are met in the order they came. */
	if (last)
		ix->e[last].next = i;
	else if (hmap_put(&ix->heads, hash, (void *)(uintptr_t)i) != 0)
		return NULL;
	ix->n = ix->met = i;
	return &ix->e[i];
}

struct index_entry *index_first(const struct index *ix, uint64_t hash)
{
	return index_entry(ix, (uint32_t)(uintptr_t)hmap_get(&ix->heads, hash));
}

struct index_entry *index_next(const struct index *ix, const struct index_entry *e)
{
	return index_entry(ix, e->next);
}

struct index_entry *index_entries(const struct index *ix, size_t *n)
{
	*n = ix->n;
	return ix->n ? &ix->e[1] : NULL;
}

int index_live_pages(const struct index *ix, struct hmap *live)
{
	hmap_init(live);
	/* Entries come in runs of one pack (a manifest's pages, a pack written in one go): one
	 * look-up per run. */
	uint32_t pack = 0;
	uintptr_t count = 0;
	for (uint32_t i = 1; i <= ix->n; i++) {
		const struct index_entry *e = &ix->e[i];
		if (!e->refs)
			continue;
		if (count && e->pack == pack) {
			count++;
			continue;
		}
		if (count && hmap_put(live, pack, (void *)count) != 0)
			goto nomem;
		pack = e->pack;
		count = (uintptr_t)hmap_get(live, pack) + 1;
	}
	if (count && hmap_put(live, pack, (void *)count) != 0)
		goto nomem;
	return 0;
nomem:
	hmap_fini(live);
	return -ENOMEM;
}

void index_free(struct index *ix)
{
	hmap_fini(&ix->heads);
	free(ix->e);
	memset(ix, 0, sizeof(*ix));
}

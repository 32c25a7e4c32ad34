/* The page index: hash -> where such bytes are stored. See store_impl.h. */
#include "vmm/store/store_impl.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define INDEX_EMPTY PACK_ID_RESERVED

static int index_grow(struct index *ix)
{
	size_t cap = ix->cap ? ix->cap * 2 : 1024;
	struct index_entry *e = malloc(cap * sizeof(*e));
	if (!e)
		return -ENOMEM;
	for (size_t i = 0; i < cap; i++)
		e[i].pack = INDEX_EMPTY;
	for (size_t i = 0; i < ix->cap; i++) {
		if (ix->e[i].pack == INDEX_EMPTY)
			continue;
		size_t j = ix->e[i].hash & (cap - 1);
		while (e[j].pack != INDEX_EMPTY)
			j = (j + 1) & (cap - 1);
		e[j] = ix->e[i];
	}
	free(ix->e);
	ix->e = e;
	ix->cap = cap;
	return 0;
}

/* The entry for exactly (hash, pack, slot), added if missing. NULL when out of memory. */
struct index_entry *index_add(struct index *ix, uint64_t hash, uint32_t pack, uint32_t slot)
{
	if ((ix->n + 1) * 4 > ix->cap * 3 && index_grow(ix) != 0)
		return NULL;
	size_t j = hash & (ix->cap - 1);
	for (; ix->e[j].pack != INDEX_EMPTY; j = (j + 1) & (ix->cap - 1))
		if (ix->e[j].hash == hash && ix->e[j].pack == pack && ix->e[j].slot == slot)
			return &ix->e[j];
	ix->e[j] = (struct index_entry){.hash = hash, .pack = pack, .slot = slot};
	ix->n++;
	return &ix->e[j];
}

/* Iterate over the entries with @hash: start with *pos = SIZE_MAX. */
struct index_entry *index_next(const struct index *ix, uint64_t hash, size_t *pos)
{
	if (!ix->cap)
		return NULL;
	size_t j = *pos == SIZE_MAX ? hash & (ix->cap - 1) : (*pos + 1) & (ix->cap - 1);
	for (; ix->e[j].pack != INDEX_EMPTY; j = (j + 1) & (ix->cap - 1)) {
		if (ix->e[j].hash == hash) {
			*pos = j;
			return &ix->e[j];
		}
	}
	return NULL;
}

void index_free(struct index *ix)
{
	free(ix->e);
	memset(ix, 0, sizeof(*ix));
}

/* store_writer_*: a new snapshot, its pages deduplicated against the store. See store.h. */
#include "vmm/store/store_impl.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "mmu/page_store.h"
#include "vmm/error.h"

struct store_writer {
	struct store *s;
	struct manifest_header hdr;
	void *state;
	struct manifest_entry *entries;
	size_t cap;
	struct pack_out pack;   /* the new pages */
	struct index local;     /* the pages appended by this writer */
	struct store_snapshot *parent; /* open for reading, or NULL: pages equal to its are not listed */
	struct store_write_stats stats;
};

int store_writer_begin(struct store *s, const char *name, const char *parent, uint64_t page_count,
		       const void *state, size_t state_len, struct store_writer **out)
{
	if (!store_name_valid(name))
		return error_set(EINVAL, "'%s' cannot name a snapshot (1-63 of A-Z a-z 0-9 . _ -, not starting with '.')",
				 name);
	if (parent && parent[0] && !store_name_valid(parent))
		return error_set(EINVAL, "'%s' cannot name a parent snapshot", parent);
	if (state_len > STORE_STATE_MAX)
		return error_set(EINVAL, "snapshot state of %zu bytes is over the limit", state_len);
	int r = store_writable(s);
	if (r)
		return r;
	if (s->writer_active)
		return error_set(EBUSY, "store %s already has a snapshot being written by this process", s->dir);
	r = store_hold(s);
	if (r)
		return r;
	struct store_writer *w = NULL;
	if (store_has_snapshot(s, name))
		r = error_set(EEXIST, "snapshot '%s' already exists in %s", name, s->dir);
	else if (parent && parent[0] && !store_has_snapshot(s, parent))
		r = error_set(ENOENT, "parent snapshot '%s' is not in %s", parent, s->dir);
	else
		r = store_refresh_index(s); /* what is stored already, for dedup */
	if (!r && !(w = calloc(1, sizeof(*w))))
		r = error_set(ENOMEM, "no memory for a snapshot writer");
	if (!r && (r = pack_out_init(&w->pack, s)) == 0 && state_len && !(w->state = malloc(state_len)))
		r = error_set(ENOMEM, "no memory for the snapshot state");
	if (!r && parent && parent[0])
		r = store_snapshot_open(s, parent, &w->parent);
	if (r) {
		if (w) {
			pack_out_close(&w->pack, false);
			free(w->state);
			free(w);
		}
		store_release(s);
		return r;
	}
	w->s = s;
	w->hdr.page_count = page_count;
	w->hdr.state_len = (uint32_t)state_len;
	snprintf(w->hdr.name, sizeof(w->hdr.name), "%s", name);
	snprintf(w->hdr.parent, sizeof(w->hdr.parent), "%s", parent ? parent : "");
	if (state_len)
		memcpy(w->state, state, state_len);
	s->writer_active = true;
	*out = w;
	return 0;
}

/* Find stored bytes equal to @data under @hash in @ix. 1 found, 0 not, <0 error. */
static int writer_match(struct store_writer *w, const struct index *ix, uint64_t hash, const void *data,
			struct manifest_entry *e)
{
	uint8_t buf[STORE_PAGE];
	for (const struct index_entry *ie = index_first(ix, hash); ie; ie = index_next(ix, ie)) {
		const void *bytes = buf;
		int r = ie->pack == w->pack.id ? pack_out_page(&w->pack, ie->slot, buf, &bytes)
					       : store_read_page(w->s, ie->pack, ie->slot, buf);
		/* An index kept from an earlier hold may name a slot a gc emptied and a later
		 * writer's pack of the same number does not have: no match, the page is stored. */
		if (r && ix == &w->s->index && w->s->keep_index) {
			error_clear();
			continue;
		}
		if (r)
			return r;
		if (memcmp(bytes, data, STORE_PAGE) == 0) {
			e->pack = ie->pack;
			e->slot = ie->slot;
			return 1;
		}
		w->stats.collisions++;
	}
	return 0;
}

int store_description_check(const char *source, const char *description)
{
	if (source && !store_text_valid(source, STORE_SOURCE_MAX + 1))
		return error_set(EINVAL, "a snapshot's source VM is at most %d characters, none a control character",
				 STORE_SOURCE_MAX);
	if (description && !store_text_valid(description, STORE_DESCRIPTION_MAX + 1))
		return error_set(EINVAL, "a snapshot's description is at most %d bytes, none a control character",
				 STORE_DESCRIPTION_MAX);
	return 0;
}

int store_writer_describe(struct store_writer *w, const char *source, const char *description)
{
	int r = store_description_check(source, description);
	if (r)
		return r;
	snprintf(w->hdr.source, sizeof(w->hdr.source), "%s", source ? source : "");
	snprintf(w->hdr.description, sizeof(w->hdr.description), "%s", description ? description : "");
	return 0;
}

int store_writer_add(struct store_writer *w, uint64_t pindex, const void *data)
{
	if (pindex >= w->hdr.page_count || (w->hdr.entry_count && pindex <= w->entries[w->hdr.entry_count - 1].pindex))
		return error_set(EINVAL, "snapshot page 0x%llx out of order or beyond %llu pages",
				 (unsigned long long)pindex, (unsigned long long)w->hdr.page_count);
	if (w->hdr.entry_count == w->cap) {
		size_t cap = w->cap ? w->cap * 2 : 4096;
		struct manifest_entry *e = realloc(w->entries, cap * sizeof(*e));
		if (!e)
			return error_set(ENOMEM, "no memory for snapshot entries");
		w->entries = e;
		w->cap = cap;
	}
	bool zero = page_store_is_zero(data);
	uint64_t hash = zero ? 0 : w->s->hash(data, STORE_PAGE);
	if (w->parent) {
		/* The same bytes as the parent's: unlisted, the page falls through to it. Only a
		 * page the parent recorded under the same hash is read back and compared. */
		const void *stored;
		uint64_t was_hash;
		int r = store_snapshot_page(w->parent, pindex, &stored, &was_hash);
		if (r)
			return r;
		bool same = !stored ? zero : !zero && was_hash == hash;
		if (same && stored) {
			uint8_t was[STORE_PAGE];
			bool was_stored;
			r = store_snapshot_copy(w->parent, pindex, was, &was_stored, &was_hash);
			if (r)
				return r;
			same = memcmp(was, data, STORE_PAGE) == 0;
		}
		if (same) {
			w->stats.unchanged++;
			return 0;
		}
	}
	struct manifest_entry *e = &w->entries[w->hdr.entry_count];
	*e = (struct manifest_entry){.pindex = pindex};
	w->stats.pages++;
	if (zero) {
		e->pack = STORE_ZERO_PACK;
		w->stats.zero++;
		w->hdr.entry_count++;
		return 0;
	}
	e->hash = hash;
	int r = writer_match(w, &w->s->index, e->hash, data, e);
	if (r == 0)
		r = writer_match(w, &w->local, e->hash, data, e);
	if (r < 0)
		return r;
	if (r == 1) {
		w->stats.shared++;
		w->hdr.entry_count++;
		return 0;
	}
	r = pack_out_append(&w->pack, data, &e->pack, &e->slot);
	if (r)
		return r;
	if (!index_add(&w->local, e->hash, e->pack, e->slot))
		return error_set(ENOMEM, "no memory to index new pages");
	w->stats.stored++;
	w->hdr.entry_count++;
	return 0;
}

void store_writer_stats(const struct store_writer *w, struct store_write_stats *out)
{
	*out = w->stats;
}

static void writer_free(struct store_writer *w, bool discard_pack)
{
	w->s->writer_active = false;
	if (w->parent)
		store_snapshot_close(w->parent);
	pack_out_close(&w->pack, discard_pack);
	index_free(&w->local);
	free(w->entries);
	free(w->state);
	store_release(w->s);
	free(w);
}

void store_writer_abort(struct store_writer *w)
{
	writer_free(w, true);
}

/*
 * The entries a complete manifest of @w lists: its own over those its parent chain reads
 * to, each page once, in order, zero pages left out (in a complete manifest no entry means
 * zero). *out (free it) and *n. 0, or -errno (a damaged parent chunk: the delta is kept).
 */
static int writer_flatten(const struct store_writer *w, struct manifest_entry **out, uint64_t *n)
{
	const struct store_snapshot *p = w->parent;
	uint64_t total = w->hdr.entry_count;
	for (unsigned d = 0; d < p->depth; d++) {
		int r = manifest_check_all(&p->chain[d]);
		if (r)
			return r;
		total += p->chain[d].nentries;
	}
	struct manifest_layer *layers = calloc(p->depth + 1, sizeof(*layers)); /* ours, then the chain's */
	struct manifest_entry *merged = malloc((total ? total : 1) * sizeof(*merged));
	if (!layers || !merged) {
		free(layers);
		free(merged);
		return error_set(ENOMEM, "no memory to merge snapshot entries");
	}
	layers[0] = (struct manifest_layer){w->entries, w->hdr.entry_count, 0};
	for (unsigned d = 0; d < p->depth; d++)
		layers[d + 1] = (struct manifest_layer){p->chain[d].entries, p->chain[d].nentries, 0};
	*n = manifest_merge(layers, p->depth + 1, true, merged);
	free(layers);
	*out = merged;
	return 0;
}

int store_writer_commit(struct store_writer *w)
{
	return store_writer_commit_stats(w, NULL);
}

int store_writer_commit_stats(struct store_writer *w, struct store_write_stats *out)
{
	/* A long chain of deltas (restore, snapshot, restore, ...) is cut: this one complete. */
	if (w->parent && store_snapshot_depth(w->parent) >= STORE_FLATTEN_DEPTH) {
		struct manifest_entry *merged = NULL;
		uint64_t n = 0;
		if (writer_flatten(w, &merged, &n) == 0) {
			free(w->entries);
			w->entries = merged;
			w->cap = n;
			w->hdr.entry_count = n;
			w->hdr.flags |= MANIFEST_COMPLETE;
		}
	}
	int r = pack_out_finish(&w->pack);
	if (!r) {
		struct timespec now;
		clock_gettime(CLOCK_REALTIME, &now);
		w->hdr.created_ns = (uint64_t)now.tv_sec * 1000000000ull + (uint64_t)now.tv_nsec;
		r = manifest_write(w->s, &w->hdr, w->state, w->entries, true);
	}
	if (!r)
		store_index_written(w->s, &w->local, &w->pack, w->hdr.name);
	if (!r && out) {
		*out = w->stats;
		out->entries = w->hdr.entry_count;
		out->base = !w->parent || (w->hdr.flags & MANIFEST_COMPLETE);
	}
	writer_free(w, r != 0);
	return r;
}

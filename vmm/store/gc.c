/* store_gc and store_delete. See store.h. */
#include "vmm/store/store_impl.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "vmm/error.h"

struct relocation {
	uint32_t old_pack, old_slot, new_pack, new_slot;
};

static int cmp_reloc(const void *a, const void *b)
{
	const struct relocation *x = a, *y = b;
	if (x->old_pack != y->old_pack)
		return x->old_pack < y->old_pack ? -1 : 1;
	return x->old_slot < y->old_slot ? -1 : x->old_slot > y->old_slot;
}

struct gc_moves {
	const struct relocation *rel; /* sorted */
	size_t nrel;
};

/* Rewrite manifest @name if it refers to pages that moved. */
static int gc_rewrite(struct store *s, const char *name, void *arg)
{
	const struct gc_moves *mv = arg;
	const struct relocation *rel = mv->rel;
	size_t nrel = mv->nrel;
	struct manifest m;
	int r = manifest_load(s, name, &m);
	if (r)
		return r;
	size_t bytes = m.nentries * sizeof(struct manifest_entry);
	struct manifest_entry *e = bytes ? malloc(bytes) : NULL;
	if (bytes && !e) {
		manifest_unload(&m);
		return error_set(ENOMEM, "no memory to rewrite %s", name);
	}
	if (bytes)
		memcpy(e, m.entries, bytes);
	bool changed = false;
	for (uint64_t k = 0; k < m.nentries; k++) {
		struct relocation key = {e[k].pack, e[k].slot, 0, 0};
		const struct relocation *hit = nrel ? bsearch(&key, rel, nrel, sizeof(key), cmp_reloc) : NULL;
		if (hit) {
			e[k].pack = hit->new_pack;
			e[k].slot = hit->new_slot;
			changed = true;
		}
	}
	if (changed) {
		struct manifest_header h;
		manifest_header_copy(&m, &h);
		r = manifest_write(s, &h, m.state, e, false);
	}
	free(e);
	manifest_unload(&m);
	return r;
}

/* One gc, step by step: which packs go, where their live pages went. */
struct gc {
	struct store *s;
	uint64_t *freed;          /* bytes given back (the caller's) */
	struct hmap live;         /* pack id -> its pages some manifest refers to (as a pointer) */
	uint32_t *old;            /* packs to delete: unused, or partly used and copied; sorted */
	size_t nold;
	struct relocation *rel;   /* the live pages of those packs and their slots in @out */
	size_t nrel, cap;
	struct pack_out out;      /* the new pack they are copied to */
};

/* Take the store alone (it fails at once while a writer holds it), sweep the pins of VMs
 * that are gone and index every manifest: a damaged one stops gc, which would lose its
 * pages. 0 with the store held (store_release), or -errno with a message. */
static int gc_begin(struct store *s)
{
	int r = store_writable(s);
	if (r)
		return r;
	if (s->holds)
		return error_set(EBUSY, "store %s is in use by a snapshot writer; try again later", s->dir);
	r = store_hold_alone(s, false);
	if (r)
		return r;
	r = s->backend->pinned(s, NULL, NULL, 0);
	/* Other processes may have committed snapshots since this store was opened. */
	if (!r)
		r = store_reindex(s);
	if (!r && s->damaged)
		r = error_set(EIO, "store %s has %u damaged manifest%s; gc would lose their pages (see vmm store verify)",
			      s->dir, s->damaged, s->damaged == 1 ? "" : "s");
	if (r)
		store_release(s);
	return r;
}

/* One entry of the packs folder: a pack not wholly used goes. */
static int gc_choose_pack(struct store *s, const char *entry, void *arg)
{
	struct gc *g = arg;
	uint32_t id;
	uint64_t size;
	if (!pack_name_id(entry, &id) || s->backend->stat(s, STORE_PACKS, entry, false, NULL, &size) != 0) {
		error_clear();
		return 0;
	}
	uint64_t used = (uintptr_t)hmap_get(&g->live, id);
	if (used && used * STORE_PAGE == size)
		return 0; /* wholly used: stays */
	uint32_t *p = realloc(g->old, (g->nold + 1) * sizeof(*p));
	if (!p)
		return error_set(ENOMEM, "no memory for gc");
	g->old = p;
	g->old[g->nold++] = id;
	*g->freed += size - used * STORE_PAGE;
	return 0;
}

static int cmp_id(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
	return x < y ? -1 : x > y;
}

/* Step 1: which packs go: those no manifest uses, and those partly used (their live
 * pages move). */
static int gc_choose_packs(struct gc *g)
{
	if (index_live_pages(&g->s->index, &g->live) != 0)
		return error_set(ENOMEM, "no memory for gc");
	int r = store_each_entry(g->s, STORE_PACKS, gc_choose_pack, g);
	if (!r && g->nold)
		qsort(g->old, g->nold, sizeof(*g->old), cmp_id);
	return r;
}

/* Step 2: copy the live pages of the packs that go into one new pack, durable. */
static int gc_move_pages(struct gc *g)
{
	uint8_t buf[STORE_PAGE];
	size_t n;
	const struct index_entry *e = index_entries(&g->s->index, &n);
	int r = 0;
	for (size_t k = 0; !r && k < n; k++) {
		if (!e[k].refs || !g->nold || !bsearch(&e[k].pack, g->old, g->nold, sizeof(*g->old), cmp_id))
			continue;
		if (g->nrel == g->cap) {
			size_t cap = g->cap ? g->cap * 2 : 1024;
			struct relocation *p = realloc(g->rel, cap * sizeof(*p));
			if (!p)
				return error_set(ENOMEM, "no memory for gc");
			g->rel = p;
			g->cap = cap;
		}
		struct relocation *rl = &g->rel[g->nrel];
		r = store_read_page(g->s, e[k].pack, e[k].slot, buf);
		if (!r)
			r = pack_out_append(&g->out, buf, &rl->new_pack, &rl->new_slot);
		if (!r) {
			rl->old_pack = e[k].pack;
			rl->old_slot = e[k].slot;
			g->nrel++;
		}
	}
	return r ? r : pack_out_finish(&g->out);
}

/* Step 3: point every manifest at the new pack (each rewrite is atomic). */
static int gc_rewrite_manifests(struct gc *g)
{
	if (!g->nrel)
		return 0;
	qsort(g->rel, g->nrel, sizeof(*g->rel), cmp_reloc);
	struct gc_moves mv = {g->rel, g->nrel};
	return store_each_name(g->s, gc_rewrite, &mv);
}

/* One entry of the snapshots folder: an unfinished manifest goes; *arg keeps the last
 * failure's errno. */
static int gc_remove_temporary(struct store *s, const char *entry, void *arg)
{
	int *err = arg;
	int r = manifest_is_temporary(entry) ? s->backend->remove(s, STORE_SNAPSHOTS, entry) : 0;
	if (r && r != -ENOENT)
		*err = -r;
	return 0;
}

/* Step 4, once nothing refers to them: remove the packs that go and the unfinished
 * manifests of interrupted writers. */
static int gc_remove_packs(struct gc *g)
{
	struct store *s = g->s;
	int r = 0;
	for (size_t k = 0; k < g->nold; k++) {
		char name[16];
		pack_file_name(g->old[k], name);
		r = s->backend->remove(s, STORE_PACKS, name);
		if (r && r != -ENOENT)
			return r;
	}
	r = g->nold ? s->backend->flush(s, STORE_PACKS) : 0;
	if (r)
		return r;
	int err = 0;
	r = store_each_entry(s, STORE_SNAPSHOTS, gc_remove_temporary, &err);
	if (r || err)
		r = error_set_errno(r ? -r : err, "cannot remove unfinished manifests in %s/snapshots", s->dir);
	if (!r && s->backend->sweep && (r = s->backend->sweep(s)) != 0)
		r = error_set(-r, "cannot remove unfinished manifests in %s/snapshots: %s", s->dir, error_message());
	return r;
}

int store_gc(struct store *s, uint64_t *freed)
{
	*freed = 0;
	int r = gc_begin(s);
	if (r)
		return r;
	struct gc g = {.s = s, .freed = freed};
	hmap_init(&g.live);
	r = pack_out_init(&g.out, s);
	if (!r)
		r = gc_choose_packs(&g);
	if (!r)
		r = gc_move_pages(&g);
	if (!r)
		r = gc_rewrite_manifests(&g);
	/* Only then may the old packs go. */
	if (!r)
		r = gc_remove_packs(&g);
	/* A failed gc leaves its new pack unreferenced (or referenced: then the old ones stay). */
	pack_out_close(&g.out, r != 0 && g.nrel == 0);
	store_release(s);
	hmap_fini(&g.live);
	free(g.rel);
	free(g.old);
	return r;
}

/* A snapshot being deleted and the deltas naming it as their parent, which absorb it. */
struct delete_plan {
	const char *name;          /* the snapshot deleted */
	struct manifest doomed;    /* its manifest, every entry checked (loaded when it has children) */
	struct manifest *children; /* theirs, every entry checked */
	size_t nchildren, cap;
};

/* One snapshot of the store: a delta naming the deleted one as parent joins the plan, every
 * entry checked. A complete one names its parent for the record only and needs none of its
 * pages; one whose head cannot be read is damaged already (verify names it) and is left. */
static int delete_find_child(struct store *s, const char *name, void *arg)
{
	struct delete_plan *dp = arg;
	struct manifest m;
	if (manifest_open(s, name, &m) != 0) {
		error_clear();
		return 0;
	}
	int r = 0;
	if ((m.hdr->flags & MANIFEST_COMPLETE) || strcmp(m.hdr->parent, dp->name) != 0)
		goto skip;
	if ((r = manifest_check_all(&m)) != 0) {
		r = error_set(-r, "cannot delete snapshot '%s': %s", dp->name, error_message());
		goto skip;
	}
	if (dp->nchildren == dp->cap) {
		size_t cap = dp->cap ? dp->cap * 2 : 8;
		struct manifest *c = realloc(dp->children, cap * sizeof(*c));
		if (!c) {
			r = error_set(ENOMEM, "no memory to delete snapshot '%s'", dp->name);
			goto skip;
		}
		dp->children = c;
		dp->cap = cap;
	}
	dp->children[dp->nchildren++] = m;
	return 0;
skip:
	manifest_unload(&m);
	return r;
}

/* What absorbing cannot mend is refused before anything is written: the deleted snapshot
 * damaged, a child of another size, a loop. *most is raised to the entries of the largest
 * merge. */
static int delete_check_plan(struct store *s, struct delete_plan *dp, uint64_t *most)
{
	const struct manifest *x = &dp->doomed;
	int r = manifest_load(s, dp->name, &dp->doomed);
	if (r)
		return error_set(-r, "cannot delete snapshot '%s': %s", dp->name, error_message());
	for (size_t i = 0; i < dp->nchildren; i++) {
		const struct manifest *c = &dp->children[i];
		if (c->hdr->page_count != x->hdr->page_count)
			return error_set(EIO, "cannot delete snapshot '%s': its child '%s' describes %llu pages, it %llu",
					 dp->name, c->hdr->name, (unsigned long long)c->hdr->page_count,
					 (unsigned long long)x->hdr->page_count);
		if (!(x->hdr->flags & MANIFEST_COMPLETE) && strcmp(x->hdr->parent, c->hdr->name) == 0)
			return error_set(EIO, "cannot delete snapshot '%s': it and its child '%s' name each other as parent",
					 dp->name, c->hdr->name);
		if (c->nentries + x->nentries > *most)
			*most = c->nentries + x->nentries;
	}
	return 0;
}

/*
 * Child @c of the deleted snapshot @x absorbs it: @c's manifest is rewritten (aside, then
 * renamed over it: manifest_write) as @c's entries laid over @x's, merged in @buf (room for
 * both), naming @x's parent. @c then reads every page as before: a page @c lists is its own,
 * one only @x lists (a zero entry too) is @x's, and one neither lists falls through to @x's
 * parent, as it did through @x. When nothing is below @x (it is complete, or has no parent)
 * the result is complete, or has no parent, too, and leaves zero entries out (no entry then
 * means zero). No page bytes are copied: the entries name the same packs and slots.
 */
static int delete_absorb(struct store *s, const struct manifest *c, const struct manifest *x,
			 struct manifest_entry *buf)
{
	bool complete = x->hdr->flags & MANIFEST_COMPLETE;
	struct manifest_layer layers[2] = {{c->entries, c->nentries, 0}, {x->entries, x->nentries, 0}};
	struct manifest_header h;
	manifest_header_copy(c, &h);
	h.entry_count = manifest_merge(layers, 2, complete || !x->hdr->parent[0], buf);
	h.flags |= x->hdr->flags & MANIFEST_COMPLETE;
	/* A complete manifest names its parent for the record only: never itself. */
	snprintf(h.parent, sizeof(h.parent), "%s", strcmp(x->hdr->parent, h.name) ? x->hdr->parent : "");
	return manifest_write(s, &h, c->state, buf, false);
}

/*
 * Delete snapshot @dp->name, its children absorbing it first. Crash safety (kill -9 at any
 * moment): each child's new manifest is written aside, synced and renamed over the old one
 * (and the folder synced) before the next; only when every child is rewritten and durable
 * is the deleted manifest unlinked, and the folder synced. Whatever moment a crash comes,
 * each child is either still the old manifest, naming the deleted snapshot, which is still
 * there, or the new one, which reads the same pages and no longer needs it (it names the
 * deleted one's parent, which that one needed, or nothing). The pages the new manifests
 * name are the ones the old chain named, all durable. A leftover ".NAME.tmp" of a write cut
 * short is harmless: gc removes it. Deleting again finishes the job.
 */
static int delete_into_children(struct store *s, struct delete_plan *dp)
{
	uint64_t most = 1;
	int r = dp->nchildren ? delete_check_plan(s, dp, &most) : 0;
	struct manifest_entry *buf = NULL;
	/* Allocated once, before anything is written: out of memory changes nothing. */
	if (!r && dp->nchildren && !(buf = malloc(most * sizeof(*buf))))
		r = error_set(ENOMEM, "no memory to merge the %llu entries of snapshot '%s' into its children",
			      (unsigned long long)dp->doomed.nentries, dp->name);
	for (size_t i = 0; !r && i < dp->nchildren; i++)
		if ((r = delete_absorb(s, &dp->children[i], &dp->doomed, buf)) != 0)
			r = error_set(-r, "cannot delete snapshot '%s': %s", dp->name, error_message());
	free(buf);
	char file[STORE_NAME_MAX + 8];
	snprintf(file, sizeof(file), "%s.snap", dp->name);
	if (!r && (r = s->backend->remove(s, STORE_SNAPSHOTS, file)) == -ENOENT)
		r = error_set(ENOENT, "cannot remove %s/snapshots/%s: it is gone", s->dir, file);
	if (!r)
		r = s->backend->flush(s, STORE_SNAPSHOTS);
	return r;
}

int store_delete(struct store *s, const char *name)
{
	int r = store_writable(s);
	if (r)
		return r;
	if (!store_name_valid(name) || !store_has_snapshot(s, name))
		return error_set(ENOENT, "no snapshot '%s' in %s", name, s->dir);
	/* Alone: no gc rewrites a manifest back into place, no writer is making a child of it,
	 * and no restore pins it meanwhile. */
	if (s->holds)
		return error_set(EBUSY, "store %s is in use by this process; cannot delete from it now", s->dir);
	r = store_hold_alone(s, true);
	if (r)
		return r;
	struct delete_plan dp = {.name = name};
	char holder[256];
	/* A VM restored from it, or whose last snapshot it is, reads its pages as they are. */
	if ((r = s->backend->pinned(s, name, holder, sizeof(holder))) > 0)
		r = error_set(EBUSY, "snapshot '%s' is in use by %s, which runs from it; stop that VM (and its forks) first",
			      name, holder);
	if (!r)
		r = store_each_name(s, delete_find_child, &dp);
	if (!r)
		r = delete_into_children(s, &dp);
	for (size_t i = 0; i < dp.nchildren; i++)
		manifest_unload(&dp.children[i]);
	free(dp.children);
	manifest_unload(&dp.doomed);
	store_release(s);
	return r;
}

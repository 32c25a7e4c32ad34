/* store_gc and store_delete. See store.h. */
#include "vmm/store/store_impl.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "vmm/error.h"

struct relocation {
	uint32_t old_pack, old_slot, new_slot;
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
	uint32_t new_pack;
};

/* Rewrite manifest @name if it refers to pages that moved. */
static int gc_rewrite(struct store *s, const char *name, void *arg)
{
	const struct gc_moves *mv = arg;
	const struct relocation *rel = mv->rel;
	size_t nrel = mv->nrel;
	uint32_t new_pack = mv->new_pack;
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
		struct relocation key = {e[k].pack, e[k].slot, 0};
		const struct relocation *hit = nrel ? bsearch(&key, rel, nrel, sizeof(key), cmp_reloc) : NULL;
		if (hit) {
			e[k].pack = new_pack;
			e[k].slot = hit->new_slot;
			changed = true;
		}
	}
	if (changed) {
		struct manifest_header h = *m.hdr;
		r = manifest_write(s, &h, m.state, e);
	}
	free(e);
	manifest_unload(&m);
	return r;
}

/* Remove every entry of @fd's folder matching @pred; returns -errno on the first failure. */
static int remove_matching(int dirfd, bool (*pred)(const char *name))
{
	int fd = dup(dirfd);
	DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
	if (!d) {
		if (fd >= 0)
			close(fd);
		return -errno;
	}
	rewinddir(d);
	struct dirent *de;
	int r = 0;
	while ((de = readdir(d)))
		if (pred(de->d_name) && unlinkat(dirfd, de->d_name, 0) != 0 && errno != ENOENT)
			r = -errno;
	closedir(d);
	return r;
}

static bool is_temporary_manifest(const char *name)
{
	return name[0] == '.' && strstr(name, ".tmp") != NULL;
}

int store_gc(struct store *s, uint64_t *freed)
{
	*freed = 0;
	int r = store_writable(s);
	if (r)
		return r;
	if (s->holds || flock(s->lock_fd, LOCK_EX | LOCK_NB) != 0)
		return error_set(EBUSY, "store %s is in use by a snapshot writer; try again later", s->dir);
	s->holds = 1; /* exclusive: store_release unlocks */
	r = store_pinned(s, NULL, NULL, 0); /* sweeps the pins of VMs that are gone */
	/* Other processes may have committed snapshots since this store was opened. */
	if (!r)
		r = store_reindex(s);
	if (r) {
		store_release(s);
		return r;
	}
	if (s->damaged) {
		uint32_t damaged = s->damaged;
		store_release(s);
		return error_set(EIO, "store %s has %u damaged manifests; gc would lose their pages (see vmm store verify)",
				 s->dir, damaged);
	}
	struct relocation *rel = NULL;
	size_t nrel = 0, cap = 0;
	uint32_t *old = NULL; /* packs to delete: unused, or partly used and copied */
	size_t nold = 0;
	struct hmap live; /* pack id -> its pages some manifest refers to */
	hmap_init(&live);
	struct pack_out out;
	r = pack_out_init(&out, s);
	if (!r && index_live_pages(&s->index, &live) != 0)
		r = error_set(ENOMEM, "no memory for gc");
	if (r)
		goto out;

	/* Which packs go: those no manifest uses, and those partly used (their live pages move). */
	int fd = dup(s->packs_fd);
	DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
	if (!d) {
		if (fd >= 0)
			close(fd);
		r = error_set_errno(errno, "cannot read %s/packs", s->dir);
		goto out;
	}
	rewinddir(d);
	struct dirent *de;
	uint32_t id;
	while ((de = readdir(d))) {
		struct stat st;
		if (!pack_name_id(de->d_name, &id) || fstatat(s->packs_fd, de->d_name, &st, 0) != 0)
			continue;
		uint64_t used = (uintptr_t)hmap_get(&live, id);
		if (used && used * STORE_PAGE == (uint64_t)st.st_size)
			continue; /* wholly used: stays */
		uint32_t *p = realloc(old, (nold + 1) * sizeof(*p));
		if (!p) {
			r = error_set(ENOMEM, "no memory for gc");
			break;
		}
		old = p;
		old[nold++] = id;
		*freed += (uint64_t)st.st_size - used * STORE_PAGE;
	}
	closedir(d);
	if (r)
		goto out;

	/* Copy the live pages of the packs that go into one new pack. */
	uint8_t buf[STORE_PAGE];
	size_t nentries;
	struct index_entry *entries = index_entries(&s->index, &nentries);
	for (size_t k = 0; !r && k < nentries; k++) {
		struct index_entry *ie = &entries[k];
		if (!ie->refs)
			continue;
		bool moving = false;
		for (size_t j = 0; j < nold && !moving; j++)
			moving = ie->pack == old[j];
		if (!moving)
			continue;
		if (nrel == cap) {
			cap = cap ? cap * 2 : 1024;
			struct relocation *p = realloc(rel, cap * sizeof(*p));
			if (!p) {
				r = error_set(ENOMEM, "no memory for gc");
				break;
			}
			rel = p;
		}
		r = store_read_page(s, ie->pack, ie->slot, buf);
		if (!r)
			r = pack_out_append(&out, buf, &rel[nrel].new_slot);
		if (!r) {
			rel[nrel].old_pack = ie->pack;
			rel[nrel++].old_slot = ie->slot;
		}
	}
	if (!r)
		r = pack_out_finish(&out);
	if (r)
		goto out;

	/* Point every manifest at the new pack (each rewrite is atomic), ... */
	if (nrel) {
		qsort(rel, nrel, sizeof(*rel), cmp_reloc);
		struct gc_moves mv = {rel, nrel, out.id};
		r = store_each_name(s, gc_rewrite, &mv);
		if (r)
			goto out;
	}
	/* ... and only then may the old packs go. */
	for (size_t k = 0; k < nold; k++) {
		char name[16];
		pack_file_name(old[k], name);
		if (unlinkat(s->packs_fd, name, 0) != 0 && errno != ENOENT) {
			r = error_set_errno(errno, "cannot remove %s/packs/%s", s->dir, name);
			goto out;
		}
	}
	if (nold)
		r = store_fsync_dir(s->packs_fd, "the packs folder");
	if (!r && remove_matching(s->snaps_fd, is_temporary_manifest) != 0)
		r = error_set_errno(errno, "cannot remove unfinished manifests in %s/snapshots", s->dir);
out:
	/* A failed gc leaves its new pack unreferenced (or referenced: then the old ones stay). */
	pack_out_close(&out, r != 0 && nrel == 0);
	store_release(s);
	hmap_fini(&live);
	free(rel);
	free(old);
	return r;
}

struct delete_check {
	const char *name;
	char child[STORE_NAME_MAX + 1];
};

static int find_child(struct store *s, const char *name, void *arg)
{
	struct delete_check *dc = arg;
	struct manifest m;
	if (manifest_open(s, name, &m) != 0)
		return 0;
	/* A complete child names its parent for the record only: it needs none of its pages. */
	if (!(m.hdr->flags & MANIFEST_COMPLETE) && strcmp(m.hdr->parent, dc->name) == 0 && !dc->child[0])
		snprintf(dc->child, sizeof(dc->child), "%s", name);
	manifest_unload(&m);
	return 0;
}

int store_delete(struct store *s, const char *name)
{
	int r = store_writable(s);
	if (r)
		return r;
	if (!store_name_valid(name) || !store_has_snapshot(s, name))
		return error_set(ENOENT, "no snapshot '%s' in %s", name, s->dir);
	/* Alone: no gc rewrites the manifest back into place, no writer is making a child of
	 * it, and no restore pins it meanwhile. */
	if (s->holds)
		return error_set(EBUSY, "store %s is in use by this process; cannot delete from it now", s->dir);
	r = store_lock(s, LOCK_EX);
	if (r)
		return r;
	s->holds = 1; /* store_release unlocks */
	struct delete_check dc = {.name = name};
	char holder[256];
	r = store_each_name(s, find_child, &dc);
	if (!r && dc.child[0])
		r = error_set(EBUSY, "snapshot '%s' is the parent of '%s'; delete that first", name, dc.child);
	if (!r && (r = store_pinned(s, name, holder, sizeof(holder))) > 0)
		r = error_set(EBUSY, "snapshot '%s' is in use by %s, restored from it; stop that VM (and its forks) first",
			      name, holder);
	char file[STORE_NAME_MAX + 8];
	snprintf(file, sizeof(file), "%s.snap", name);
	if (!r && unlinkat(s->snaps_fd, file, 0) != 0)
		r = error_set_errno(errno, "cannot remove %s/snapshots/%s", s->dir, file);
	if (!r)
		r = store_fsync_dir(s->snaps_fd, "the snapshots folder");
	store_release(s);
	return r;
}

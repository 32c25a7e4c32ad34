/* The store: open and close, the lock, folder walks, packs read back, the index built. See
 * store.h and store_impl.h. */
#include "vmm/store/store_impl.h"

#include <errno.h>
#include <limits.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <xxhash.h>

#include "vmm/clock.h"
#include "vmm/error.h"
#include "vmm/file_io.h"

bool store_is_rados(const char *where)
{
	return strncmp(where, STORE_RADOS_SCHEME, strlen(STORE_RADOS_SCHEME)) == 0;
}

/* Whether @c may be in a pool's or a namespace's name. */
static bool store_rados_char(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '_' ||
	       c == '-';
}

/* "rados:POOL[/NAMESPACE]" split and checked: pool and namespace ("" when none) into
 * @pool and @ns (STORE_RADOS_NAME_MAX + 1 bytes each). 0 or -EINVAL with a message. */
int store_rados_parse(const char *where, char *pool, char *ns)
{
	const char *p = where + strlen(STORE_RADOS_SCHEME), *slash = strchr(p, '/');
	size_t plen = slash ? (size_t)(slash - p) : strlen(p);
	const char *n = slash ? slash + 1 : "";
	bool ok = plen > 0 && plen <= STORE_RADOS_NAME_MAX && strlen(n) <= STORE_RADOS_NAME_MAX &&
		  (!slash || (*n && n[strlen(n) - 1] != '/'));
	for (size_t i = 0; ok && i < plen; i++)
		ok = store_rados_char(p[i]);
	for (size_t i = 0; ok && n[i]; i++)
		ok = store_rados_char(n[i]) || (n[i] == '/' && n[i + 1] != '/' && i > 0);
	if (!ok)
		return error_set(EINVAL, "'%s' is not a RADOS store: rados:POOL[/NAMESPACE], each 1-%d of A-Z a-z 0-9 . _ - "
					 "(and / between parts of the namespace)",
				 where, STORE_RADOS_NAME_MAX);
	memcpy(pool, p, plen);
	pool[plen] = 0;
	strcpy(ns, n);
	return 0;
}

int store_locate(const char *where, char *out, size_t len)
{
	if (store_is_rados(where)) {
		char pool[STORE_RADOS_NAME_MAX + 1], ns[STORE_RADOS_NAME_MAX + 1];
		int r = store_rados_parse(where, pool, ns);
		if (!r && snprintf(out, len, "%s%s/%s", STORE_RADOS_SCHEME, pool, ns) >= (int)len)
			r = error_set(ENAMETOOLONG, "RADOS store name %s is too long", where);
		return r;
	}
	char real[PATH_MAX];
	if (!realpath(where, real))
		return error_set_errno(errno, "no store at %s", where);
	if (snprintf(out, len, "%s", real) >= (int)len)
		return error_set(ENAMETOOLONG, "store path %s is too long", real);
	return 0;
}

bool store_text_valid(const char *text, size_t size)
{
	const char *end = memchr(text, '\0', size);
	if (!end)
		return false;
	for (const char *p = text; p < end; p++)
		if ((unsigned char)*p < 0x20 || *p == 0x7f)
			return false;
	return true;
}

bool store_name_valid(const char *name)
{
	size_t n = strlen(name);
	if (n == 0 || n > STORE_NAME_MAX || name[0] == '.')
		return false;
	for (size_t i = 0; i < n; i++) {
		char c = name[i];
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
		      c == '_' || c == '-'))
			return false;
	}
	return true;
}

/* Read stored page (pack, slot) into @buf. */
int store_read_page(struct store *s, uint32_t pack, uint32_t slot, void *buf)
{
	char name[16];
	pack_file_name(pack, name);
	return s->backend->read(s, STORE_PACKS, name, (uint64_t)slot * STORE_PAGE, buf, STORE_PAGE);
}

/* Hold the store lock (shared; see the locking comment). 0 or -errno. */
int store_hold(struct store *s)
{
	if (s->holds++)
		return 0;
	int r = s->backend->lock(s, false, true);
	if (r)
		s->holds = 0;
	return r;
}

int store_hold_alone(struct store *s, bool wait)
{
	if (s->holds)
		return error_set(EBUSY, "store %s is in use by this process; try again later", s->dir);
	int r = s->backend->lock(s, true, wait);
	if (!r)
		s->holds = 1;
	return r;
}

/* Drop what the index and the open packs say about the store: they may go stale. */
static void store_forget(struct store *s)
{
	index_free(&s->index);
	s->indexed = false;
	s->index_stale = false;
	s->nmanifests = 0;
	s->damaged = 0;
	hmap_fini(&s->index_manifests);
	hmap_init(&s->index_manifests);
	hmap_fini(&s->index_packs);
	hmap_init(&s->index_packs);
	s->backend->forget(s);
}

/* Undo one store_hold (or gc's exclusive hold); the last one unlocks and forgets (a kept
 * index is only marked stale; the packs are closed all the same, as a gc may replace
 * them). */
void store_release(struct store *s)
{
	if (--s->holds)
		return;
	s->backend->unlock(s);
	if (s->keep_index && s->indexed) {
		s->index_stale = true;
		s->backend->forget(s);
		return;
	}
	store_forget(s);
}

void store_set_pack_reads(struct store *s)
{
	s->read_packs = true;
}

void store_set_pack_pages(struct store *s, uint32_t pages)
{
	s->pack_pages = pages ? pages : PACK_PAGES_MAX;
}

void store_set_manifest_part(struct store *s, uint32_t bytes)
{
	s->manifest_part = bytes && bytes < 4096 ? 4096 : bytes;
}

void store_keep_index(struct store *s)
{
	s->keep_index = true;
}

bool store_is_at(struct store *s, const char *dir)
{
	return s->backend->is_at(s, dir);
}

/* What file @entry of folder @f is (store_backend.stat), 0 when it cannot be told. */
static uint64_t store_file_tag(struct store *s, enum store_folder f, const char *entry, bool contents)
{
	uint64_t tag = 0;
	if (s->backend->stat(s, f, entry, contents, &tag, NULL) != 0)
		error_clear();
	return tag;
}

/* Count @m's references in the index (each manifest counts once per stored page). */
static int store_index_manifest(struct store *s, const struct manifest *m)
{
	uint32_t id = ++s->nmanifests;
	for (uint64_t i = 0; i < m->nentries; i++) {
		const struct manifest_entry *e = &m->entries[i];
		if (e->pack == STORE_ZERO_PACK)
			continue;
		struct index_entry *ie = index_add(&s->index, e->hash, e->pack, e->slot);
		if (!ie)
			return error_set(ENOMEM, "no memory to index the store");
		if (ie->last_manifest != id) {
			ie->last_manifest = id;
			ie->refs++;
		}
	}
	return 0;
}

int store_each_entry(struct store *s, enum store_folder f, store_entry_fn *fn, void *arg)
{
	return s->backend->each(s, f, fn, arg);
}

struct each_name {
	store_entry_fn *fn;
	void *arg;
};

static int each_name_entry(struct store *s, const char *entry, void *arg)
{
	struct each_name *en = arg;
	char name[STORE_NAME_MAX + 1];
	return manifest_file_name(entry, name) ? en->fn(s, name, en->arg) : 0;
}

/* Call @fn for each snapshot name in the store, in directory order. Stops at an error. */
int store_each_name(struct store *s, store_entry_fn *fn, void *arg)
{
	struct each_name en = {fn, arg};
	return store_each_entry(s, STORE_SNAPSHOTS, each_name_entry, &en);
}

/* The tag of manifest @name (store_file_tag). */
static uint64_t store_manifest_tag(struct store *s, const char *name)
{
	char file[STORE_NAME_MAX + 8];
	snprintf(file, sizeof(file), "%s.snap", name);
	return store_file_tag(s, STORE_SNAPSHOTS, file, true);
}

/* Index one manifest (with a kept index: one not indexed yet); a damaged one is skipped
 * (and counted), so the rest stay usable. */
static int store_index_one(struct store *s, const char *name, void *arg)
{
	(void)arg;
	uint64_t tag = s->keep_index ? store_manifest_tag(s, name) : 0;
	if (tag && hmap_get(&s->index_manifests, tag))
		return 0;
	struct manifest m;
	if (manifest_load(s, name, &m) != 0) {
		s->damaged++;
		return 0;
	}
	int r = store_index_manifest(s, &m);
	manifest_unload(&m);
	if (!r && tag && hmap_put(&s->index_manifests, tag, (void *)1) < 0)
		r = error_set(ENOMEM, "no memory to index the store");
	return r;
}

struct pack_tags {
	uint64_t known;  /* packs indexed before that are still there, unchanged */
	bool changed;    /* one is there changed */
};

/* One entry of the packs folder, for a kept index: a pack indexed before must be the same
 * file; one not seen before is recorded. */
static int store_pack_tag(struct store *s, const char *entry, void *arg)
{
	struct pack_tags *t = arg;
	uint32_t id;
	if (!pack_name_id(entry, &id))
		return 0;
	uint64_t tag = store_file_tag(s, STORE_PACKS, entry, false);
	uint64_t was = (uint64_t)(uintptr_t)hmap_get(&s->index_packs, id);
	if (was) {
		t->known += was == tag;
		t->changed |= was != tag;
		return 0;
	}
	return tag && hmap_put(&s->index_packs, id, (void *)(uintptr_t)tag) < 0 ? error_set(ENOMEM, "no memory to index the store")
										 : 0;
}

/* (Re)build the index from every manifest; the lock must be held. */
int store_reindex(struct store *s)
{
	store_forget(s);
	struct pack_tags t = {0};
	int r = s->keep_index ? store_each_entry(s, STORE_PACKS, store_pack_tag, &t) : 0;
	if (!r)
		r = store_each_name(s, store_index_one, NULL);
	if (r) {
		store_forget(s);
		return r;
	}
	s->indexed = true;
	return 0;
}

/* The index, built if this hold of the lock has none yet (a kept one is rebuilt: its
 * reference counts may be out of date). */
int store_need_index(struct store *s)
{
	return s->indexed && !s->index_stale ? 0 : store_reindex(s);
}

int store_refresh_index(struct store *s)
{
	if (!s->indexed || !s->index_stale)
		return store_need_index(s);
	uint64_t before = hmap_count(&s->index_packs);
	struct pack_tags t = {0};
	int r = store_each_entry(s, STORE_PACKS, store_pack_tag, &t);
	if (r || t.changed || t.known != before)
		return store_reindex(s); /* a gc moved pages: what the index says may point nowhere */
	r = store_each_name(s, store_index_one, NULL);
	if (r) {
		store_forget(s);
		return r;
	}
	s->index_stale = false;
	return 0;
}

void store_index_written(struct store *s, const struct index *local, const struct pack_out *packs, const char *name)
{
	if (!s->keep_index || !s->indexed)
		return;
	size_t n;
	const struct index_entry *e = index_entries(local, &n);
	bool ok = true;
	uint32_t id = ++s->nmanifests;
	for (size_t i = 0; i < n && ok; i++) {
		struct index_entry *ie = index_add(&s->index, e[i].hash, e[i].pack, e[i].slot);
		ok = ie != NULL;
		if (ok) {
			ie->last_manifest = id;
			ie->refs++;
		}
	}
	for (unsigned i = 0; i <= packs->ndone && ok; i++) {
		uint32_t pack = i < packs->ndone ? packs->done[i] : packs->id;
		char file[16];
		pack_file_name(pack, file);
		uint64_t tag = pack ? store_file_tag(s, STORE_PACKS, file, false) : 0;
		if (tag)
			ok = hmap_put(&s->index_packs, pack, (void *)(uintptr_t)tag) == 0;
	}
	uint64_t tag = store_manifest_tag(s, name);
	if (ok && tag)
		ok = hmap_put(&s->index_manifests, tag, (void *)1) == 0;
	/* Out of memory: the next writer reads everything again. */
	if (!ok)
		s->indexed = false;
}

static uint64_t store_xxh3(const void *data, size_t len)
{
	return XXH3_64bits(data, len);
}

/* Open (@create: make) the store at @dir; @read_only: create nothing, write nothing. */
static int store_open_at(const char *dir, bool create, bool read_only, store_hash_fn *hash, struct store **out)
{
	struct store *s = calloc(1, sizeof(*s));
	if (!s)
		return error_set(ENOMEM, "no memory for the store");
	hmap_init(&s->index_manifests);
	hmap_init(&s->index_packs);
	s->hash = hash;
	s->read_only = read_only;
	s->pack_pages = PACK_PAGES_MAX;
	s->dir = strdup(dir);
	int r = !s->dir		      ? error_set(ENOMEM, "no memory for the store")
		: store_is_rados(dir) ? store_rados_open(s, create, read_only)
				      : store_dir_open(s, create, read_only);
	if (r) {
		store_close(s);
		return r;
	}
	*out = s;
	return 0;
}

int store_open(const char *dir, bool create, struct store **out)
{
	return store_open_at(dir, create, false, store_xxh3, out);
}

int store_open_hashed(const char *dir, bool create, store_hash_fn *hash, struct store **out)
{
	return store_open_at(dir, create, false, hash, out);
}

int store_open_read(const char *dir, struct store **out)
{
	return store_open_at(dir, false, true, store_xxh3, out);
}

void store_close(struct store *s)
{
	if (!s)
		return;
	if (s->backend)
		s->backend->close(s);
	index_free(&s->index);
	hmap_fini(&s->index_manifests);
	hmap_fini(&s->index_packs);
	free(s->dir);
	free(s);
}

bool store_has_snapshot(struct store *s, const char *name)
{
	if (!store_name_valid(name))
		return false;
	char file[STORE_NAME_MAX + 8];
	snprintf(file, sizeof(file), "%s.snap", name);
	return s->backend->exists(s, STORE_SNAPSHOTS, file);
}

int store_writable(struct store *s)
{
	return s->read_only ? error_set(EROFS, "store %s is open for reading only", s->dir) : 0;
}

struct disk_usage {
	enum store_folder folder;
	uint64_t *sum;
};

/* One entry of a store folder: a file's bytes added to *arg. */
static int disk_usage_add(struct store *s, const char *entry, void *arg)
{
	struct disk_usage *u = arg;
	uint64_t size = 0;
	if (entry[0] != '.' && s->backend->stat(s, u->folder, entry, false, NULL, &size) == 0)
		*u->sum += size;
	error_clear();
	return 0;
}

int store_disk_usage(struct store *s, uint64_t *pack_bytes, uint64_t *manifest_bytes)
{
	*pack_bytes = *manifest_bytes = 0;
	struct disk_usage packs = {STORE_PACKS, pack_bytes}, snaps = {STORE_SNAPSHOTS, manifest_bytes};
	int r = store_each_entry(s, STORE_PACKS, disk_usage_add, &packs);
	if (!r)
		r = store_each_entry(s, STORE_SNAPSHOTS, disk_usage_add, &snaps);
	/* The message names the store rather than the folder, as it always has. */
	return r ? error_set_errno(-r, "cannot read %s", s->dir) : 0;
}

#include "vmm/store.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <xxhash.h>

#include "mmu/page_store.h"
#include "vmm/error.h"

/* ---- on-disk format (little-endian, x86-64 only) ----------------------------------- */

#define MANIFEST_MAGIC "VMMSNAP1"
#define TRAILER_MAGIC "VMMSEND1"
#define MANIFEST_VERSION 1u
#define STORE_MAX_DEPTH 1024u
#define WRITE_BATCH_PAGES 256u

struct manifest_header {
	char magic[8];        /* MANIFEST_MAGIC */
	uint32_t version;     /* MANIFEST_VERSION */
	uint32_t header_size; /* sizeof(struct manifest_header) */
	uint64_t created_ns;  /* CLOCK_REALTIME at commit */
	uint64_t page_count;  /* pages of guest memory described */
	uint64_t entry_count; /* struct manifest_entry that follow the state */
	uint32_t state_len;   /* bytes of opaque VMM state after the header */
	uint32_t reserved;    /* 0 */
	char name[64];        /* this snapshot, NUL-terminated */
	char parent[64];      /* its parent, or "" */
};

struct manifest_entry {
	uint64_t pindex; /* page number, strictly increasing */
	uint64_t hash;   /* XXH3-64 of the bytes; 0 for zero pages */
	uint32_t pack;   /* pack id, or STORE_ZERO_PACK */
	uint32_t slot;   /* page number in the pack; 0 for zero pages */
};

struct manifest_trailer {
	uint64_t checksum; /* XXH3-64 of every byte before the trailer */
	char magic[8];     /* TRAILER_MAGIC */
};

_Static_assert(sizeof(struct manifest_header) == 176, "manifest header layout");
_Static_assert(sizeof(struct manifest_entry) == 24, "manifest entry layout");
_Static_assert(sizeof(struct manifest_trailer) == 16, "manifest trailer layout");

static uint64_t pad8(uint64_t n)
{
	return (n + 7) & ~7ull;
}

/* A manifest mapped from disk, every field checked. */
struct manifest {
	void *map;
	size_t size;
	const struct manifest_header *hdr;
	const uint8_t *state;
	const struct manifest_entry *entries;
	uint64_t nentries;
};

/* ---- the page index: hash -> where the bytes are --------------------------------------- */

#define INDEX_EMPTY 0xfffffffeu

struct index_entry {
	uint64_t hash;
	uint32_t pack;          /* INDEX_EMPTY: free slot */
	uint32_t slot;
	uint32_t refs;          /* manifests referring to it */
	uint32_t last_manifest; /* the manifest that counted last (1-based) */
};

struct index {
	struct index_entry *e;
	size_t cap; /* power of two, or 0 */
	size_t n;
};

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
static struct index_entry *index_add(struct index *ix, uint64_t hash, uint32_t pack, uint32_t slot)
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
static struct index_entry *index_next(const struct index *ix, uint64_t hash, size_t *pos)
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

/* ---- the store ------------------------------------------------------------------------- */

struct store {
	char *dir;
	store_hash_fn *hash;      /* XXH3_64bits, or a test's */
	int dir_fd, packs_fd, snaps_fd, lock_fd;
	struct index index;       /* every page any manifest refers to */
	uint32_t nmanifests;      /* manifests indexed */
	int *pack_fds;            /* open packs by id (-1: not open), for reading back */
	uint32_t pack_fds_cap;
	bool writer_active;
	uint32_t damaged;         /* manifests that could not be indexed (verify names them) */
};

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

static int fsync_dir(int fd, const char *what)
{
	if (fsync(fd) != 0)
		return error_set_errno(errno, "cannot sync %s", what);
	return 0;
}

/* Pack id from a file name "%08x.pack"; false for anything else. */
static bool pack_name_id(const char *name, uint32_t *id)
{
	if (strlen(name) != 13 || strcmp(name + 8, ".pack") != 0)
		return false;
	uint32_t v = 0;
	for (int i = 0; i < 8; i++) {
		char c = name[i];
		unsigned d = c >= '0' && c <= '9' ? (unsigned)(c - '0') : c >= 'a' && c <= 'f' ? (unsigned)(c - 'a' + 10) : 16;
		if (d > 15)
			return false;
		v = v << 4 | d;
	}
	if (v == STORE_ZERO_PACK || v == INDEX_EMPTY)
		return false;
	*id = v;
	return true;
}

/* Snapshot name from a file name "NAME.snap"; false for anything else (temporaries too). */
static bool snap_file_name(const char *file, char name[STORE_NAME_MAX + 1])
{
	size_t n = strlen(file);
	if (n < 6 || n - 5 > STORE_NAME_MAX || strcmp(file + n - 5, ".snap") != 0)
		return false;
	memcpy(name, file, n - 5);
	name[n - 5] = '\0';
	return store_name_valid(name);
}

static int store_pack_fd(struct store *s, uint32_t id)
{
	if (id >= s->pack_fds_cap) {
		uint32_t cap = id + 64;
		int *fds = realloc(s->pack_fds, cap * sizeof(int));
		if (!fds)
			return error_set(ENOMEM, "no memory for the pack table");
		for (uint32_t i = s->pack_fds_cap; i < cap; i++)
			fds[i] = -1;
		s->pack_fds = fds;
		s->pack_fds_cap = cap;
	}
	if (s->pack_fds[id] < 0) {
		char name[16];
		snprintf(name, sizeof(name), "%08x.pack", id);
		int fd = openat(s->packs_fd, name, O_RDONLY | O_CLOEXEC);
		if (fd < 0)
			return error_set_errno(errno, "%s/packs/%s", s->dir, name);
		s->pack_fds[id] = fd;
	}
	return s->pack_fds[id];
}

/* Read stored page (pack, slot) into @buf. */
static int store_read_page(struct store *s, uint32_t pack, uint32_t slot, void *buf)
{
	int fd = store_pack_fd(s, pack);
	if (fd < 0)
		return fd;
	ssize_t n = pread(fd, buf, STORE_PAGE, (off_t)slot * STORE_PAGE);
	if (n != STORE_PAGE)
		return error_set(EIO, "%s/packs/%08x.pack: page %u is missing (file too short)", s->dir, pack, slot);
	return 0;
}

/* ---- manifests ---------------------------------------------------------------------------- */

static void manifest_unload(struct manifest *m)
{
	if (m->map)
		munmap(m->map, m->size);
	memset(m, 0, sizeof(*m));
}

/*
 * Map and check the manifest at @path (shown in errors); @expect_name: the name its file
 * gives it. Checks are complete: sizes, magic numbers, names, order of entries, checksum.
 */
static int manifest_load_fd(int fd, const char *path, const char *expect_name, struct manifest *m)
{
	memset(m, 0, sizeof(*m));
	struct stat st;
	if (fstat(fd, &st) != 0)
		return error_set_errno(errno, "%s", path);
	uint64_t size = (uint64_t)st.st_size;
	if (size < sizeof(struct manifest_header) + sizeof(struct manifest_trailer))
		return error_set(EIO, "%s: truncated manifest (%llu bytes)", path, (unsigned long long)size);
	void *map = mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
	if (map == MAP_FAILED)
		return error_set_errno(errno, "%s: cannot map", path);
	m->map = map;
	m->size = size;
	const struct manifest_header *h = map;
	int r = 0;
	if (memcmp(h->magic, MANIFEST_MAGIC, 8) != 0)
		r = error_set(EIO, "%s: not a vmm snapshot manifest (bad magic)", path);
	else if (h->version != MANIFEST_VERSION)
		r = error_set(EIO, "%s: manifest version %u; this vmm reads version %u", path, h->version,
			      MANIFEST_VERSION);
	else if (h->header_size != sizeof(*h) || h->reserved != 0)
		r = error_set(EIO, "%s: malformed manifest header", path);
	else if (memchr(h->name, 0, sizeof(h->name)) == NULL || memchr(h->parent, 0, sizeof(h->parent)) == NULL ||
		 !store_name_valid(h->name) || (h->parent[0] && !store_name_valid(h->parent)))
		r = error_set(EIO, "%s: malformed snapshot or parent name", path);
	else if (expect_name && strcmp(h->name, expect_name) != 0)
		r = error_set(EIO, "%s: manifest names snapshot '%s', not '%s'", path, h->name, expect_name);
	else if (strcmp(h->name, h->parent) == 0)
		r = error_set(EIO, "%s: snapshot is its own parent", path);
	else if (h->state_len > STORE_STATE_MAX || h->page_count > (1ull << 40) || h->entry_count > h->page_count)
		r = error_set(EIO, "%s: manifest sizes out of range", path);
	if (r)
		goto err;
	uint64_t entries_off = sizeof(*h) + pad8(h->state_len);
	uint64_t want = entries_off + h->entry_count * sizeof(struct manifest_entry) + sizeof(struct manifest_trailer);
	if (want != size) {
		r = error_set(EIO, "%s: manifest is %llu bytes, its header says %llu (truncated or damaged)", path,
			      (unsigned long long)size, (unsigned long long)want);
		goto err;
	}
	const struct manifest_trailer *t = (const void *)((const uint8_t *)map + size - sizeof(*t));
	if (memcmp(t->magic, TRAILER_MAGIC, 8) != 0 || t->checksum != XXH3_64bits(map, size - sizeof(*t))) {
		r = error_set(EIO, "%s: manifest checksum does not match (damaged)", path);
		goto err;
	}
	m->hdr = h;
	m->state = (const uint8_t *)map + sizeof(*h);
	m->entries = (const void *)((const uint8_t *)map + entries_off);
	m->nentries = h->entry_count;
	for (uint64_t i = 0; i < m->nentries; i++) {
		const struct manifest_entry *e = &m->entries[i];
		if (e->pindex >= h->page_count || (i && e->pindex <= m->entries[i - 1].pindex) ||
		    (e->pack == STORE_ZERO_PACK && (e->slot || e->hash)) || e->pack == INDEX_EMPTY) {
			r = error_set(EIO, "%s: entry %llu (page 0x%llx) is malformed", path, (unsigned long long)i,
				      (unsigned long long)e->pindex);
			goto err;
		}
	}
	return 0;
err:
	manifest_unload(m);
	return r;
}

static int manifest_load(struct store *s, const char *name, struct manifest *m)
{
	char file[STORE_NAME_MAX + 8], path[4096];
	snprintf(file, sizeof(file), "%s.snap", name);
	snprintf(path, sizeof(path), "%s/snapshots/%s", s->dir, file);
	int fd = openat(s->snaps_fd, file, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		if (errno == ENOENT)
			return error_set(ENOENT, "no snapshot '%s' in %s", name, s->dir);
		return error_set_errno(errno, "%s", path);
	}
	int r = manifest_load_fd(fd, path, name, m);
	close(fd);
	return r;
}

static int write_all(int fd, const void *p, size_t n)
{
	const uint8_t *b = p;
	while (n) {
		ssize_t w = write(fd, b, n);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return -(w < 0 ? errno : EIO);
		b += w;
		n -= (size_t)w;
	}
	return 0;
}

/* Write a manifest atomically: temporary file, fsync, rename, fsync of the folder. */
static int manifest_write(struct store *s, const struct manifest_header *h, const void *state,
			  const struct manifest_entry *entries)
{
	char tmp[STORE_NAME_MAX + 16], file[STORE_NAME_MAX + 8];
	snprintf(tmp, sizeof(tmp), ".%s.tmp", h->name);
	snprintf(file, sizeof(file), "%s.snap", h->name);
	int fd = openat(s->snaps_fd, tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0)
		return error_set_errno(errno, "cannot create %s/snapshots/%s", s->dir, tmp);
	static const uint8_t zeros[8];
	XXH3_state_t *xs = XXH3_createState();
	int r = xs ? 0 : -ENOMEM;
	if (!r)
		XXH3_64bits_reset(xs);
	const void *parts[4] = {h, state, zeros, entries};
	size_t lens[4] = {sizeof(*h), h->state_len, pad8(h->state_len) - h->state_len,
			  h->entry_count * sizeof(struct manifest_entry)};
	for (int i = 0; i < 4 && !r; i++) {
		if (!lens[i])
			continue;
		XXH3_64bits_update(xs, parts[i], lens[i]);
		r = write_all(fd, parts[i], lens[i]);
	}
	struct manifest_trailer t;
	if (!r) {
		t.checksum = XXH3_64bits_digest(xs);
		memcpy(t.magic, TRAILER_MAGIC, 8);
		r = write_all(fd, &t, sizeof(t));
	}
	XXH3_freeState(xs);
	if (!r && fsync(fd) != 0)
		r = -errno;
	close(fd);
	if (!r && renameat(s->snaps_fd, tmp, s->snaps_fd, file) != 0)
		r = -errno;
	if (r) {
		unlinkat(s->snaps_fd, tmp, 0);
		return error_set(-r, "cannot write %s/snapshots/%s: %s", s->dir, file, strerror(-r));
	}
	return fsync_dir(s->snaps_fd, "the snapshots folder");
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

/* Call @fn for each snapshot name in the store, in directory order. Stops at an error. */
static int store_each_name(struct store *s, int (*fn)(struct store *s, const char *name, void *arg), void *arg)
{
	int fd = dup(s->snaps_fd);
	DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
	if (!d) {
		if (fd >= 0)
			close(fd);
		return error_set_errno(errno, "cannot read %s/snapshots", s->dir);
	}
	rewinddir(d);
	int r = 0;
	struct dirent *de;
	char name[STORE_NAME_MAX + 1];
	while (!r && (de = readdir(d)))
		if (snap_file_name(de->d_name, name))
			r = fn(s, name, arg);
	closedir(d);
	return r;
}

/* Index one manifest; a damaged one is skipped (and counted), so the rest stay usable. */
static int store_index_one(struct store *s, const char *name, void *arg)
{
	(void)arg;
	struct manifest m;
	if (manifest_load(s, name, &m) != 0) {
		s->damaged++;
		return 0;
	}
	int r;
	r = store_index_manifest(s, &m);
	manifest_unload(&m);
	return r;
}

static int open_dir_at(int at, const char *name, bool create, const char *what, const char *top)
{
	if (create && mkdirat(at, name, 0755) != 0 && errno != EEXIST)
		return error_set_errno(errno, "cannot create %s/%s", top, what);
	int fd = openat(at, name, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return error_set_errno(errno, "%s/%s is not a usable store folder", top, what);
	return fd;
}

static uint64_t store_xxh3(const void *data, size_t len)
{
	return XXH3_64bits(data, len);
}

int store_open(const char *dir, bool create, struct store **out)
{
	return store_open_hashed(dir, create, store_xxh3, out);
}

int store_open_hashed(const char *dir, bool create, store_hash_fn *hash, struct store **out)
{
	struct store *s = calloc(1, sizeof(*s));
	if (!s)
		return error_set(ENOMEM, "no memory for the store");
	s->hash = hash;
	s->dir_fd = s->packs_fd = s->snaps_fd = s->lock_fd = -1;
	s->dir = strdup(dir);
	int r = 0;
	if (!s->dir) {
		r = error_set(ENOMEM, "no memory for the store");
		goto err;
	}
	if (create && mkdir(dir, 0755) != 0 && errno != EEXIST) {
		r = error_set_errno(errno, "cannot create store %s", dir);
		goto err;
	}
	s->dir_fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (s->dir_fd < 0) {
		r = error_set_errno(errno, errno == ENOENT ? "no store at %s" : "cannot open store %s", dir);
		goto err;
	}
	if ((s->packs_fd = open_dir_at(s->dir_fd, "packs", create, "packs", dir)) < 0 ||
	    (s->snaps_fd = open_dir_at(s->dir_fd, "snapshots", create, "snapshots", dir)) < 0) {
		r = -EINVAL;
		goto err;
	}
	s->lock_fd = openat(s->dir_fd, "lock", O_RDWR | O_CREAT | O_CLOEXEC, 0644);
	if (s->lock_fd < 0) {
		r = error_set_errno(errno, "cannot open %s/lock", dir);
		goto err;
	}
	if (create) {
		r = fsync_dir(s->dir_fd, "the store folder");
		if (r)
			goto err;
	}
	r = store_each_name(s, store_index_one, NULL);
	if (r)
		goto err;
	*out = s;
	return 0;
err:
	store_close(s);
	return r;
}

void store_close(struct store *s)
{
	if (!s)
		return;
	for (uint32_t i = 0; i < s->pack_fds_cap; i++)
		if (s->pack_fds[i] >= 0)
			close(s->pack_fds[i]);
	free(s->pack_fds);
	int fds[4] = {s->dir_fd, s->packs_fd, s->snaps_fd, s->lock_fd};
	for (int i = 0; i < 4; i++)
		if (fds[i] >= 0)
			close(fds[i]);
	free(s->index.e);
	free(s->dir);
	free(s);
}

bool store_has_snapshot(struct store *s, const char *name)
{
	if (!store_name_valid(name))
		return false;
	char file[STORE_NAME_MAX + 8];
	snprintf(file, sizeof(file), "%s.snap", name);
	return faccessat(s->snaps_fd, file, F_OK, 0) == 0;
}

/* ---- writing ------------------------------------------------------------------------------ */

/* A pack being appended to: created on the first page, written in batches. */
struct pack_out {
	struct store *s;
	uint32_t id;       /* 0 until created */
	int fd;
	uint32_t pages;    /* pages appended (written or batched) */
	uint32_t flushed;  /* pages written to the file */
	uint8_t *batch;    /* pages appended but not yet written */
};

static int pack_out_init(struct pack_out *p, struct store *s)
{
	*p = (struct pack_out){.s = s, .fd = -1};
	p->batch = malloc((size_t)WRITE_BATCH_PAGES * STORE_PAGE);
	return p->batch ? 0 : error_set(ENOMEM, "no memory for a pack writer");
}

static int pack_out_flush(struct pack_out *p)
{
	uint32_t n = p->pages - p->flushed;
	if (!n)
		return 0;
	int r = write_all(p->fd, p->batch, (size_t)n * STORE_PAGE);
	if (r)
		return error_set(-r, "cannot write pack %08x.pack in %s: %s", p->id, p->s->dir, strerror(-r));
	p->flushed = p->pages;
	return 0;
}

/* Create the next pack file (ids only grow; O_EXCL settles races between writers). */
static int pack_out_create(struct pack_out *p)
{
	struct store *s = p->s;
	uint32_t max = 0, id;
	int fd = dup(s->packs_fd);
	DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
	if (!d) {
		if (fd >= 0)
			close(fd);
		return error_set_errno(errno, "cannot read %s/packs", s->dir);
	}
	rewinddir(d);
	struct dirent *de;
	while ((de = readdir(d)))
		if (pack_name_id(de->d_name, &id) && id > max)
			max = id;
	closedir(d);
	for (id = max + 1; id < INDEX_EMPTY; id++) {
		char name[16];
		snprintf(name, sizeof(name), "%08x.pack", id);
		p->fd = openat(s->packs_fd, name, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
		if (p->fd >= 0) {
			p->id = id;
			return 0;
		}
		if (errno != EEXIST)
			return error_set_errno(errno, "cannot create %s/packs/%s", s->dir, name);
	}
	return error_set(ENOSPC, "no pack id left in %s", s->dir);
}

static int pack_out_append(struct pack_out *p, const void *data, uint32_t *slot)
{
	int r;
	if (!p->id && (r = pack_out_create(p)) != 0)
		return r;
	if (p->pages == INDEX_EMPTY - 1)
		return error_set(EFBIG, "pack %08x.pack in %s is full", p->id, p->s->dir);
	if (p->pages - p->flushed == WRITE_BATCH_PAGES && (r = pack_out_flush(p)) != 0)
		return r;
	memcpy(p->batch + (size_t)(p->pages - p->flushed) * STORE_PAGE, data, STORE_PAGE);
	*slot = p->pages++;
	return 0;
}

/* The bytes of page @slot of this pack, for comparison: from the batch or the file. */
static int pack_out_page(struct pack_out *p, uint32_t slot, uint8_t *buf, const void **bytes)
{
	if (slot >= p->flushed) {
		*bytes = p->batch + (size_t)(slot - p->flushed) * STORE_PAGE;
		return 0;
	}
	if (pread(p->fd, buf, STORE_PAGE, (off_t)slot * STORE_PAGE) != STORE_PAGE)
		return error_set(EIO, "cannot read back pack %08x.pack in %s", p->id, p->s->dir);
	*bytes = buf;
	return 0;
}

/* Make the pack durable: written, synced, and its name synced in the folder. */
static int pack_out_finish(struct pack_out *p)
{
	if (!p->id)
		return 0;
	int r = pack_out_flush(p);
	if (!r && fsync(p->fd) != 0)
		r = error_set_errno(errno, "cannot sync pack %08x.pack in %s", p->id, p->s->dir);
	if (!r)
		r = fsync_dir(p->s->packs_fd, "the packs folder");
	return r;
}

/* Free the writer's resources; with @discard also remove the pack file. */
static void pack_out_close(struct pack_out *p, bool discard)
{
	if (p->fd >= 0)
		close(p->fd);
	if (discard && p->id) {
		char name[16];
		snprintf(name, sizeof(name), "%08x.pack", p->id);
		unlinkat(p->s->packs_fd, name, 0);
	}
	free(p->batch);
	p->fd = -1;
	p->batch = NULL;
}

struct store_writer {
	struct store *s;
	struct manifest_header hdr;
	void *state;
	struct manifest_entry *entries;
	size_t cap;
	struct pack_out pack;   /* the new pages */
	struct index local;     /* the pages appended by this writer */
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
	if (s->writer_active)
		return error_set(EBUSY, "store %s already has a snapshot being written by this process", s->dir);
	if (flock(s->lock_fd, LOCK_SH) != 0)
		return error_set_errno(errno, "cannot lock %s/lock", s->dir);
	int r = 0;
	struct store_writer *w = NULL;
	if (store_has_snapshot(s, name))
		r = error_set(EEXIST, "snapshot '%s' already exists in %s", name, s->dir);
	else if (parent && parent[0] && !store_has_snapshot(s, parent))
		r = error_set(ENOENT, "parent snapshot '%s' is not in %s", parent, s->dir);
	else if (!(w = calloc(1, sizeof(*w))))
		r = error_set(ENOMEM, "no memory for a snapshot writer");
	else if ((r = pack_out_init(&w->pack, s)) == 0 && state_len && !(w->state = malloc(state_len)))
		r = error_set(ENOMEM, "no memory for the snapshot state");
	if (r) {
		if (w) {
			pack_out_close(&w->pack, false);
			free(w);
		}
		flock(s->lock_fd, LOCK_UN);
		return r;
	}
	w->s = s;
	memcpy(w->hdr.magic, MANIFEST_MAGIC, 8);
	w->hdr.version = MANIFEST_VERSION;
	w->hdr.header_size = sizeof(w->hdr);
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
	size_t pos = SIZE_MAX;
	struct index_entry *ie;
	while ((ie = index_next(ix, hash, &pos))) {
		const void *bytes = buf;
		int r = ie->pack == w->pack.id ? pack_out_page(&w->pack, ie->slot, buf, &bytes)
					       : store_read_page(w->s, ie->pack, ie->slot, buf);
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
	struct manifest_entry *e = &w->entries[w->hdr.entry_count];
	*e = (struct manifest_entry){.pindex = pindex};
	w->stats.pages++;
	if (page_store_is_zero(data)) {
		e->pack = STORE_ZERO_PACK;
		w->stats.zero++;
		w->hdr.entry_count++;
		return 0;
	}
	e->hash = w->s->hash(data, STORE_PAGE);
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
	r = pack_out_append(&w->pack, data, &e->slot);
	if (r)
		return r;
	e->pack = w->pack.id;
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
	flock(w->s->lock_fd, LOCK_UN);
	pack_out_close(&w->pack, discard_pack);
	free(w->local.e);
	free(w->entries);
	free(w->state);
	free(w);
}

void store_writer_abort(struct store_writer *w)
{
	writer_free(w, true);
}

int store_writer_commit(struct store_writer *w)
{
	int r = pack_out_finish(&w->pack);
	if (!r) {
		struct timespec now;
		clock_gettime(CLOCK_REALTIME, &now);
		w->hdr.created_ns = (uint64_t)now.tv_sec * 1000000000ull + (uint64_t)now.tv_nsec;
		r = manifest_write(w->s, &w->hdr, w->state, w->entries);
	}
	if (r) {
		writer_free(w, true);
		return r;
	}
	/* The snapshot is durable: index it so later writers share its pages. */
	struct manifest m = {.hdr = &w->hdr, .entries = w->entries, .nentries = w->hdr.entry_count};
	r = store_index_manifest(w->s, &m);
	writer_free(w, false);
	return r;
}

/* ---- reading -------------------------------------------------------------------------------- */

struct mapped_pack {
	uint32_t id;
	const uint8_t *map;
	uint64_t pages;
};

struct store_snapshot {
	char dir[4096];
	unsigned depth;
	struct manifest chain[STORE_MAX_DEPTH]; /* [0] is the snapshot, then its parents */
	struct mapped_pack *packs;              /* sorted by id */
	size_t npacks;
};

static int cmp_pack(const void *a, const void *b)
{
	const struct mapped_pack *x = a, *y = b;
	return x->id < y->id ? -1 : x->id > y->id;
}

/* Map every pack of the store read-only (mappings are cheap; pages load on first use). */
static int snapshot_map_packs(struct store *s, struct store_snapshot *snap)
{
	int fd = dup(s->packs_fd);
	DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
	if (!d) {
		if (fd >= 0)
			close(fd);
		return error_set_errno(errno, "cannot read %s/packs", s->dir);
	}
	rewinddir(d);
	struct dirent *de;
	int r = 0;
	size_t cap = 0;
	uint32_t id;
	while (!r && (de = readdir(d))) {
		if (!pack_name_id(de->d_name, &id))
			continue;
		int pfd = openat(s->packs_fd, de->d_name, O_RDONLY | O_CLOEXEC);
		struct stat st;
		if (pfd < 0 || fstat(pfd, &st) != 0) {
			r = error_set_errno(errno, "%s/packs/%s", s->dir, de->d_name);
			if (pfd >= 0)
				close(pfd);
			break;
		}
		uint64_t pages = (uint64_t)st.st_size / STORE_PAGE;
		void *map = NULL;
		if (pages) {
			map = mmap(NULL, pages * STORE_PAGE, PROT_READ, MAP_SHARED, pfd, 0);
			if (map == MAP_FAILED)
				r = error_set_errno(errno, "%s/packs/%s: cannot map", s->dir, de->d_name);
		}
		close(pfd);
		if (r)
			break;
		if (snap->npacks == cap) {
			cap = cap ? cap * 2 : 16;
			struct mapped_pack *p = realloc(snap->packs, cap * sizeof(*p));
			if (!p) {
				if (map)
					munmap(map, pages * STORE_PAGE);
				r = error_set(ENOMEM, "no memory for the pack table");
				break;
			}
			snap->packs = p;
		}
		snap->packs[snap->npacks++] = (struct mapped_pack){id, map, pages};
	}
	closedir(d);
	if (snap->npacks)
		qsort(snap->packs, snap->npacks, sizeof(snap->packs[0]), cmp_pack);
	return r;
}

int store_snapshot_open(struct store *s, const char *name, struct store_snapshot **out)
{
	if (!store_name_valid(name))
		return error_set(EINVAL, "'%s' cannot name a snapshot", name);
	struct store_snapshot *snap = calloc(1, sizeof(*snap));
	if (!snap)
		return error_set(ENOMEM, "no memory to open a snapshot");
	snprintf(snap->dir, sizeof(snap->dir), "%s", s->dir);
	int r = 0;
	const char *next = name;
	while (next && next[0]) {
		if (snap->depth == STORE_MAX_DEPTH) {
			r = error_set(ELOOP, "snapshot '%s' has more than %u ancestors (or a parent loop)", name,
				      STORE_MAX_DEPTH);
			break;
		}
		struct manifest *m = &snap->chain[snap->depth];
		r = manifest_load(s, next, m);
		if (r) {
			if (r == -ENOENT && snap->depth)
				r = error_set(ENOENT, "snapshot '%s' names parent '%s', which is not in %s",
					      snap->chain[snap->depth - 1].hdr->name, next, s->dir);
			break;
		}
		snap->depth++;
		if (m->hdr->page_count != snap->chain[0].hdr->page_count) {
			r = error_set(EIO, "snapshot '%s' describes %llu pages but its parent '%s' %llu", name,
				      (unsigned long long)snap->chain[0].hdr->page_count, m->hdr->name,
				      (unsigned long long)m->hdr->page_count);
			break;
		}
		next = m->hdr->parent;
	}
	if (!r)
		r = snapshot_map_packs(s, snap);
	if (r) {
		store_snapshot_close(snap);
		return r;
	}
	*out = snap;
	return 0;
}

void store_snapshot_close(struct store_snapshot *snap)
{
	if (!snap)
		return;
	for (unsigned i = 0; i < snap->depth; i++)
		manifest_unload(&snap->chain[i]);
	for (size_t i = 0; i < snap->npacks; i++)
		if (snap->packs[i].map)
			munmap((void *)snap->packs[i].map, snap->packs[i].pages * STORE_PAGE);
	free(snap->packs);
	free(snap);
}

static const struct manifest_entry *manifest_find(const struct manifest *m, uint64_t pindex)
{
	size_t lo = 0, hi = m->nentries;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (m->entries[mid].pindex < pindex)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo < m->nentries && m->entries[lo].pindex == pindex ? &m->entries[lo] : NULL;
}

int store_snapshot_page(const struct store_snapshot *snap, uint64_t pindex, const void **data, uint64_t *hash)
{
	*data = NULL;
	*hash = 0;
	for (unsigned i = 0; i < snap->depth; i++) {
		const struct manifest_entry *e = manifest_find(&snap->chain[i], pindex);
		if (!e)
			continue;
		if (e->pack == STORE_ZERO_PACK)
			return 0;
		struct mapped_pack key = {.id = e->pack};
		const struct mapped_pack *p =
			snap->npacks ? bsearch(&key, snap->packs, snap->npacks, sizeof(key), cmp_pack) : NULL;
		if (!p || e->slot >= p->pages)
			return error_set(EIO, "%s/snapshots/%s.snap: page 0x%llx is in pack %08x slot %u, which is missing",
					 snap->dir, snap->chain[i].hdr->name, (unsigned long long)pindex, e->pack,
					 e->slot);
		*data = p->map + (size_t)e->slot * STORE_PAGE;
		*hash = e->hash;
		return 0;
	}
	return 0;
}

uint64_t store_snapshot_page_count(const struct store_snapshot *snap)
{
	return snap->chain[0].hdr->page_count;
}

const void *store_snapshot_state(const struct store_snapshot *snap, size_t *len)
{
	*len = snap->chain[0].hdr->state_len;
	return snap->chain[0].state;
}

const char *store_snapshot_parent(const struct store_snapshot *snap)
{
	return snap->chain[0].hdr->parent;
}

unsigned store_snapshot_depth(const struct store_snapshot *snap)
{
	return snap->depth;
}

static int store_reindex(struct store *s)
{
	free(s->index.e);
	memset(&s->index, 0, sizeof(s->index));
	s->nmanifests = 0;
	s->damaged = 0;
	for (uint32_t i = 0; i < s->pack_fds_cap; i++) {
		if (s->pack_fds[i] >= 0)
			close(s->pack_fds[i]);
		s->pack_fds[i] = -1;
	}
	return store_each_name(s, store_index_one, NULL);
}

/* ---- list, verify, gc ------------------------------------------------------------------------ */

struct name_list {
	char (*names)[STORE_NAME_MAX + 1];
	size_t n, cap;
};

static int collect_name(struct store *s, const char *name, void *arg)
{
	struct name_list *l = arg;
	if (l->n == l->cap) {
		size_t cap = l->cap ? l->cap * 2 : 32;
		void *p = realloc(l->names, cap * sizeof(*l->names));
		if (!p)
			return error_set(ENOMEM, "no memory to list %s", s->dir);
		l->names = p;
		l->cap = cap;
	}
	snprintf(l->names[l->n++], STORE_NAME_MAX + 1, "%s", name);
	return 0;
}

static int cmp_name(const void *a, const void *b)
{
	return strcmp(a, b);
}

static int store_names(struct store *s, struct name_list *l)
{
	memset(l, 0, sizeof(*l));
	int r = store_each_name(s, collect_name, l);
	if (r) {
		free(l->names);
		return r;
	}
	if (l->n)
		qsort(l->names, l->n, sizeof(*l->names), cmp_name);
	return 0;
}

int store_list(struct store *s, void (*fn)(void *arg, const struct store_info *info), void *arg)
{
	struct name_list l;
	int r = store_names(s, &l);
	for (size_t i = 0; !r && i < l.n; i++) {
		struct manifest m;
		r = manifest_load(s, l.names[i], &m);
		if (r)
			break;
		struct store_info info = {
			.created_ns = m.hdr->created_ns,
			.size = m.hdr->page_count * STORE_PAGE,
			.entries = m.nentries,
			.manifest_bytes = m.size,
		};
		snprintf(info.name, sizeof(info.name), "%s", m.hdr->name);
		snprintf(info.parent, sizeof(info.parent), "%s", m.hdr->parent);
		/* A page listed twice in one manifest is counted once. */
		for (uint64_t k = 0; k < m.nentries; k++) {
			const struct manifest_entry *e = &m.entries[k];
			if (e->pack == STORE_ZERO_PACK)
				continue;
			struct index_entry *ie = index_add(&s->index, e->hash, e->pack, e->slot);
			if (!ie) {
				r = error_set(ENOMEM, "no memory to list %s", s->dir);
				break;
			}
			if (ie->last_manifest == UINT32_MAX)
				continue;
			ie->last_manifest = UINT32_MAX;
			if (ie->refs > 1)
				info.shared_bytes += STORE_PAGE;
			else
				info.unique_bytes += STORE_PAGE;
		}
		for (uint64_t k = 0; k < m.nentries; k++) {
			const struct manifest_entry *e = &m.entries[k];
			if (e->pack != STORE_ZERO_PACK)
				index_add(&s->index, e->hash, e->pack, e->slot)->last_manifest = 0;
		}
		manifest_unload(&m);
		if (!r)
			fn(arg, &info);
	}
	free(l.names);
	return r;
}

static void report(void (*fn)(void *, bool, const char *), void *arg, bool problem, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
static void report(void (*fn)(void *, bool, const char *), void *arg, bool problem, const char *fmt, ...)
{
	char line[1024];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	fn(arg, problem, line);
}

long store_verify(struct store *s, void (*fn)(void *arg, bool problem, const char *line), void *arg,
		  struct store_verify_stats *stats)
{
	memset(stats, 0, sizeof(*stats));
	struct name_list l;
	int r = store_reindex(s); /* other processes may have written since the store was opened */
	if (!r)
		r = store_names(s, &l);
	if (r)
		return r;
	long problems = 0;
	uint8_t buf[STORE_PAGE];
	for (size_t i = 0; i < l.n; i++) {
		struct manifest m;
		stats->snapshots++;
		if (manifest_load(s, l.names[i], &m) != 0) {
			report(fn, arg, true, "%s", error_message());
			problems++;
			continue;
		}
		if (m.hdr->parent[0]) {
			struct store_snapshot *snap;
			if (store_snapshot_open(s, m.hdr->name, &snap) != 0) {
				report(fn, arg, true, "%s", error_message());
				problems++;
			} else {
				store_snapshot_close(snap);
			}
		}
		for (uint64_t k = 0; k < m.nentries; k++) {
			const struct manifest_entry *e = &m.entries[k];
			if (e->pack == STORE_ZERO_PACK)
				continue;
			stats->pages_checked++;
			if (store_read_page(s, e->pack, e->slot, buf) != 0) {
				report(fn, arg, true, "%s/snapshots/%s.snap: page 0x%llx: %s", s->dir, m.hdr->name,
				       (unsigned long long)e->pindex, error_message());
				problems++;
			} else if (s->hash(buf, STORE_PAGE) != e->hash) {
				report(fn, arg, true,
				       "%s/snapshots/%s.snap: page 0x%llx: bytes in pack %08x slot %u do not match their hash (damaged)",
				       s->dir, m.hdr->name, (unsigned long long)e->pindex, e->pack, e->slot);
				problems++;
			}
		}
		manifest_unload(&m);
	}
	free(l.names);

	/* Leftovers of interrupted writers: notes, not damage. */
	int fd = dup(s->packs_fd);
	DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
	if (d) {
		rewinddir(d);
		struct dirent *de;
		uint32_t id;
		while ((de = readdir(d))) {
			if (!pack_name_id(de->d_name, &id))
				continue;
			stats->packs++;
			bool used = false;
			for (size_t k = 0; k < s->index.cap && !used; k++)
				used = s->index.e[k].pack == id && s->index.e[k].refs;
			if (!used) {
				stats->leftovers++;
				report(fn, arg, false, "%s/packs/%s: no snapshot refers to it (vmm store gc removes it)", s->dir,
				       de->d_name);
			}
		}
		closedir(d);
	}
	fd = dup(s->snaps_fd);
	d = fd >= 0 ? fdopendir(fd) : NULL;
	if (d) {
		rewinddir(d);
		struct dirent *de;
		char name[STORE_NAME_MAX + 1];
		while ((de = readdir(d))) {
			if (de->d_name[0] == '.' && strstr(de->d_name, ".tmp")) {
				stats->leftovers++;
				report(fn, arg, false, "%s/snapshots/%s: unfinished manifest of an interrupted write (gc removes it)",
				       s->dir, de->d_name);
			} else if (strcmp(de->d_name, ".") && strcmp(de->d_name, "..") && !snap_file_name(de->d_name, name)) {
				report(fn, arg, false, "%s/snapshots/%s: not a manifest (ignored)", s->dir, de->d_name);
			}
		}
		closedir(d);
	}
	return problems;
}

/* ---- gc ---------------------------------------------------------------------------------------- */

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

/* Pages of pack @id that some manifest refers to. */
static uint64_t index_live_pages(const struct index *ix, uint32_t id)
{
	uint64_t live = 0;
	for (size_t k = 0; k < ix->cap; k++)
		live += ix->e[k].pack == id && ix->e[k].refs;
	return live;
}

int store_gc(struct store *s, uint64_t *freed)
{
	*freed = 0;
	if (s->writer_active || flock(s->lock_fd, LOCK_EX | LOCK_NB) != 0)
		return error_set(EBUSY, "store %s is in use by a snapshot writer; try again later", s->dir);
	/* Other processes may have committed snapshots since this store was opened. */
	int r = store_reindex(s);
	if (r) {
		flock(s->lock_fd, LOCK_UN);
		return r;
	}
	if (s->damaged) {
		flock(s->lock_fd, LOCK_UN);
		return error_set(EIO, "store %s has %u damaged manifests; gc would lose their pages (see vmm store verify)",
				 s->dir, s->damaged);
	}
	struct relocation *rel = NULL;
	size_t nrel = 0, cap = 0;
	uint32_t *old = NULL; /* packs to delete: unused, or partly used and copied */
	size_t nold = 0;
	struct pack_out out;
	r = pack_out_init(&out, s);
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
		uint64_t live = index_live_pages(&s->index, id);
		if (live && live * STORE_PAGE == (uint64_t)st.st_size)
			continue; /* wholly used: stays */
		uint32_t *p = realloc(old, (nold + 1) * sizeof(*p));
		if (!p) {
			r = error_set(ENOMEM, "no memory for gc");
			break;
		}
		old = p;
		old[nold++] = id;
		*freed += (uint64_t)st.st_size - live * STORE_PAGE;
	}
	closedir(d);
	if (r)
		goto out;

	/* Copy the live pages of the packs that go into one new pack. */
	uint8_t buf[STORE_PAGE];
	for (size_t k = 0; !r && k < s->index.cap; k++) {
		struct index_entry *ie = &s->index.e[k];
		if (ie->pack == INDEX_EMPTY || !ie->refs)
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
		snprintf(name, sizeof(name), "%08x.pack", old[k]);
		if (unlinkat(s->packs_fd, name, 0) != 0 && errno != ENOENT) {
			r = error_set_errno(errno, "cannot remove %s/packs/%s", s->dir, name);
			goto out;
		}
	}
	if (nold)
		r = fsync_dir(s->packs_fd, "the packs folder");
	if (!r && remove_matching(s->snaps_fd, is_temporary_manifest) != 0)
		r = error_set_errno(errno, "cannot remove unfinished manifests in %s/snapshots", s->dir);
	if (!r)
		r = store_reindex(s);
out:
	/* A failed gc leaves its new pack unreferenced (or referenced: then the old ones stay). */
	pack_out_close(&out, r != 0 && nrel == 0);
	flock(s->lock_fd, LOCK_UN);
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
	if (manifest_load(s, name, &m) != 0)
		return 0;
	if (strcmp(m.hdr->parent, dc->name) == 0 && !dc->child[0])
		snprintf(dc->child, sizeof(dc->child), "%s", name);
	manifest_unload(&m);
	return 0;
}

int store_delete(struct store *s, const char *name)
{
	if (!store_name_valid(name) || !store_has_snapshot(s, name))
		return error_set(ENOENT, "no snapshot '%s' in %s", name, s->dir);
	struct delete_check dc = {.name = name};
	int r = store_each_name(s, find_child, &dc);
	if (r)
		return r;
	if (dc.child[0])
		return error_set(EBUSY, "snapshot '%s' is the parent of '%s'; delete that first", name, dc.child);
	char file[STORE_NAME_MAX + 8];
	snprintf(file, sizeof(file), "%s.snap", name);
	if (unlinkat(s->snaps_fd, file, 0) != 0)
		return error_set_errno(errno, "cannot remove %s/snapshots/%s", s->dir, file);
	r = fsync_dir(s->snaps_fd, "the snapshots folder");
	return r ? r : store_reindex(s);
}

int store_disk_usage(struct store *s, uint64_t *pack_bytes, uint64_t *manifest_bytes)
{
	*pack_bytes = *manifest_bytes = 0;
	int fds[2] = {s->packs_fd, s->snaps_fd};
	uint64_t *sums[2] = {pack_bytes, manifest_bytes};
	for (int i = 0; i < 2; i++) {
		int fd = dup(fds[i]);
		DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
		if (!d) {
			if (fd >= 0)
				close(fd);
			return error_set_errno(errno, "cannot read %s", s->dir);
		}
		rewinddir(d);
		struct dirent *de;
		while ((de = readdir(d))) {
			struct stat st;
			if (de->d_name[0] != '.' && fstatat(fds[i], de->d_name, &st, 0) == 0 && S_ISREG(st.st_mode))
				*sums[i] += (uint64_t)st.st_size;
		}
		closedir(d);
	}
	return 0;
}

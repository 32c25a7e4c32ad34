#include "vmm/store.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdatomic.h>
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
#include "vmm/clock.h"
#include "vmm/error.h"
#include "vmm/file_io.h"

/* ---- on-disk format (little-endian, x86-64 only) ----------------------------------- */

/*
 * A manifest, version 2:
 *
 *   header       struct manifest_header
 *   state        state_len bytes of the VMM's opaque state, zero-padded to 8
 *   pack table   pack_count uint32 ids of the packs the entries use, increasing, zero-padded to 8
 *   entries      entry_count struct manifest_entry, page numbers strictly increasing
 *   chunk table  one struct manifest_chunk per chunk_entries entries (the last chunk may be short)
 *   trailer      struct manifest_trailer
 *
 * Opening a manifest checks the head (header, state, pack table) and the chunk table
 * against the trailer's checksums: no work in proportion to the pages listed but for the
 * chunk table (16 bytes per 512 entries). A chunk of entries is checked against its
 * checksum, and entry by entry, the first time a reader looks a page up in it (restore),
 * or all at once where every entry is used (verify, gc, list, a writer's index).
 * Magic and version keep their place in every version: an older or newer file is refused
 * by its version number.
 */
#define MANIFEST_MAGIC "VMMSNAP1" /* the file's kind, the same in every version */
#define TRAILER_MAGIC "VMMSEND2"
#define MANIFEST_VERSION 2u
#define MANIFEST_CHUNK 512u          /* entries per chunk in the manifests written here */
#define MANIFEST_CHUNK_MAX (1u << 20) /* most entries per chunk a reader accepts */
#define STORE_MAX_DEPTH 1024u
/* A snapshot whose parent is read through this many manifests is written complete (see
 * MANIFEST_COMPLETE): no page is ever looked up through more. */
#define STORE_FLATTEN_DEPTH 8u
/* Manifest flag: it lists every non-zero page itself (its parent's entries merged in, no
 * bytes copied); readers stop at it, and the parent it names is lineage only. */
#define MANIFEST_COMPLETE 1u
#define WRITE_BATCH_PAGES 256u

struct manifest_header {
	char magic[8];          /* MANIFEST_MAGIC */
	uint32_t version;       /* MANIFEST_VERSION */
	uint32_t header_size;   /* sizeof(struct manifest_header) */
	uint64_t created_ns;    /* CLOCK_REALTIME at commit */
	uint64_t page_count;    /* pages of guest memory described */
	uint64_t entry_count;   /* struct manifest_entry in the entries */
	uint32_t state_len;     /* bytes of opaque VMM state after the header */
	uint32_t pack_count;    /* pack ids in the pack table */
	uint32_t chunk_entries; /* entries per chunk: a power of two */
	uint32_t flags;         /* MANIFEST_COMPLETE, or 0 */
	char name[64];          /* this snapshot, NUL-terminated */
	char parent[64];        /* its parent, or "" */
};

struct manifest_entry {
	uint64_t pindex; /* page number, strictly increasing */
	uint64_t hash;   /* XXH3-64 of the bytes; 0 for zero pages */
	uint32_t pack;   /* pack id (one of the pack table's), or STORE_ZERO_PACK */
	uint32_t slot;   /* page number in the pack; 0 for zero pages */
};

struct manifest_chunk {
	uint64_t first_pindex; /* page number of the chunk's first entry; strictly increasing */
	uint64_t checksum;     /* XXH3-64 of the chunk's entries */
};

struct manifest_trailer {
	uint64_t head_checksum;   /* XXH3-64 of header, state and pack table, padding included */
	uint64_t chunks_checksum; /* XXH3-64 of the chunk table */
	char magic[8];            /* TRAILER_MAGIC */
};

_Static_assert(sizeof(struct manifest_header) == 184, "manifest header layout");
_Static_assert(sizeof(struct manifest_entry) == 24, "manifest entry layout");
_Static_assert(sizeof(struct manifest_chunk) == 16, "manifest chunk layout");
_Static_assert(sizeof(struct manifest_trailer) == 24, "manifest trailer layout");

static uint64_t pad8(uint64_t n)
{
	return (n + 7) & ~7ull;
}

/* Where the parts of a manifest lie, from its header's counts (checked: in range). */
struct manifest_layout {
	uint64_t packs_off, entries_off, chunks_off, trailer_off, size;
	uint64_t nchunks;
};

static void manifest_layout(const struct manifest_header *h, struct manifest_layout *l)
{
	l->packs_off = sizeof(*h) + pad8(h->state_len);
	l->entries_off = l->packs_off + pad8((uint64_t)h->pack_count * sizeof(uint32_t));
	l->nchunks = (h->entry_count + h->chunk_entries - 1) / h->chunk_entries;
	l->chunks_off = l->entries_off + h->entry_count * sizeof(struct manifest_entry);
	l->trailer_off = l->chunks_off + l->nchunks * sizeof(struct manifest_chunk);
	l->size = l->trailer_off + sizeof(struct manifest_trailer);
}

/*
 * A manifest mapped from disk. Everything but the entries is checked when it is opened;
 * chunks of entries are checked on first use (checked[k] then becomes 1, atomically: the
 * snapshot pager looks pages up from several threads).
 */
struct manifest {
	void *map;
	size_t size;
	const char *dir;                    /* the store's folder, for messages */
	const struct manifest_header *hdr;
	const uint8_t *state;
	const uint32_t *packs;              /* the pack table: pack_count ids */
	const struct manifest_entry *entries;
	uint64_t nentries;
	const struct manifest_chunk *chunks;
	uint64_t nchunks;
	uint8_t *checked;                   /* per chunk: 1 once its entries are known good */
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

static void index_free(struct index *ix)
{
	free(ix->e);
	memset(ix, 0, sizeof(*ix));
}

/* ---- the store ------------------------------------------------------------------------- */

/*
 * Locking: STORE/lock is held shared while pages are being referred to or looked for
 * (a writer, a snapshot being opened, verify, list, rm) and alone by gc, which moves
 * pages and removes packs. A handle counts its holds and takes the flock on the first
 * only (a second flock on the same file would convert gc's exclusive lock).
 * The index of stored pages is built while the lock is held and dropped with it: after
 * that, another process's gc may have moved what it points to.
 */
struct store {
	char *dir;
	store_hash_fn *hash;      /* XXH3_64bits, or a test's */
	int dir_fd, packs_fd, snaps_fd;
	int lock_fd;              /* -1: opened read-only and the store has no lock file */
	bool read_only;           /* store_open_read: no writer, gc or rm */
	unsigned holds;           /* nested holds of the lock by this handle */
	bool indexed;             /* index is built (only while held) */
	struct index index;       /* every page any readable manifest refers to */
	uint32_t nmanifests;      /* manifests indexed */
	uint32_t damaged;         /* manifests that could not be indexed (verify names them) */
	int *pack_fds;            /* open packs by id (-1: not open), for reading back */
	uint32_t pack_fds_cap;
	bool writer_active;
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

/* Open @name in the store's folder @at (@sub names it in messages: "packs") through
 * file_open_regular: a FIFO or device left in a store is refused, never waited on. */
static int store_open_file(struct store *s, int at, const char *sub, const char *name, int flags, mode_t mode)
{
	char shown[4200];
	snprintf(shown, sizeof(shown), "%s/%s%s%s", s->dir, sub, *sub ? "/" : "", name);
	return file_open_regular(at, name, flags, mode, 0, "store file", shown);
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
		int fd = store_open_file(s, s->packs_fd, "packs", name, O_RDONLY, 0);
		if (fd < 0)
			return fd;
		s->pack_fds[id] = fd;
	}
	return s->pack_fds[id];
}

static void store_close_packs(struct store *s)
{
	for (uint32_t i = 0; i < s->pack_fds_cap; i++) {
		if (s->pack_fds[i] >= 0)
			close(s->pack_fds[i]);
		s->pack_fds[i] = -1;
	}
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

/* Take the store lock (@op: LOCK_SH or LOCK_EX), waiting at most STORE_LOCK_WAIT_S for
 * the process holding it: a gc or a writer ends, a stuck one must not hang its callers.
 * 0, -EBUSY when the time ran out, or -errno; with a message. */
static int store_lock(struct store *s, int op)
{
	struct timespec nap = {0, 1000000};
	uint64_t deadline = clock_monotonic_ns() + STORE_LOCK_WAIT_S * 1000000000ull;
	for (;;) {
		if (flock(s->lock_fd, op | LOCK_NB) == 0)
			return 0;
		if (errno != EWOULDBLOCK && errno != EINTR)
			return error_set_errno(errno, "cannot lock %s/lock", s->dir);
		if (clock_monotonic_ns() >= deadline)
			return error_set(EBUSY, "store %s is locked by another process (a gc or a snapshot being written) for over %d s; try again later",
					 s->dir, STORE_LOCK_WAIT_S);
		nanosleep(&nap, NULL);
		if (nap.tv_nsec < 50000000)
			nap.tv_nsec *= 2;
	}
}

/* Hold the store lock (shared; see the locking comment). 0 or -errno. */
static int store_hold(struct store *s)
{
	if (s->holds++ || s->lock_fd < 0)
		return 0;
	int r = store_lock(s, LOCK_SH);
	if (r)
		s->holds = 0;
	return r;
}

/* Drop what the index and the open packs say about the store: they may go stale. */
static void store_forget(struct store *s)
{
	index_free(&s->index);
	s->indexed = false;
	s->nmanifests = 0;
	s->damaged = 0;
	store_close_packs(s);
}

/* Undo one store_hold (or gc's exclusive hold); the last one unlocks and forgets. */
static void store_release(struct store *s)
{
	if (--s->holds)
		return;
	if (s->lock_fd >= 0)
		flock(s->lock_fd, LOCK_UN);
	store_forget(s);
}

/* ---- manifests ---------------------------------------------------------------------------- */

static void manifest_unload(struct manifest *m)
{
	if (m->map)
		munmap(m->map, m->size);
	free(m->checked);
	memset(m, 0, sizeof(*m));
}

/* Where @id is, or would go, among the @n increasing @ids. */
static uint32_t pack_table_place(const uint32_t *ids, uint32_t n, uint32_t id)
{
	uint32_t lo = 0, hi = n;
	while (lo < hi) {
		uint32_t mid = lo + (hi - lo) / 2;
		if (ids[mid] < id)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

static bool pack_table_has(const uint32_t *ids, uint32_t n, uint32_t id)
{
	uint32_t at = pack_table_place(ids, n, id);
	return at < n && ids[at] == id;
}

/*
 * Map @fd, the manifest at @path (shown in errors), and check everything but the entries:
 * sizes, magic numbers, version, names (@expect_name: the name its file gives it), the
 * head's and the chunk table's checksums, the pack table and the chunk table. Work in
 * proportion to the state, the packs and the chunks, never to the pages.
 */
static int manifest_open_fd(int fd, const char *path, const char *expect_name, const char *dir, struct manifest *m)
{
	memset(m, 0, sizeof(*m));
	m->dir = dir;
	struct stat st;
	if (fstat(fd, &st) != 0)
		return error_set_errno(errno, "%s", path);
	uint64_t size = (uint64_t)st.st_size;
	if (size < 12)
		return error_set(EIO, "%s: truncated manifest (%llu bytes)", path, (unsigned long long)size);
	void *map = mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
	if (map == MAP_FAILED)
		return error_set_errno(errno, "%s: cannot map", path);
	m->map = map;
	m->size = size;
	const struct manifest_header *h = map;
	struct manifest_layout l;
	int r = 0;
	if (memcmp(h->magic, MANIFEST_MAGIC, 8) != 0)
		r = error_set(EIO, "%s: not a vmm snapshot manifest (bad magic)", path);
	else if (h->version != MANIFEST_VERSION)
		r = error_set(EIO, "%s: manifest version %u; this vmm reads version %u", path, h->version,
			      MANIFEST_VERSION);
	else if (size < sizeof(*h) + sizeof(struct manifest_trailer))
		r = error_set(EIO, "%s: truncated manifest (%llu bytes)", path, (unsigned long long)size);
	else if (h->header_size != sizeof(*h) || (h->flags & ~MANIFEST_COMPLETE) || h->chunk_entries == 0 ||
		 h->chunk_entries > MANIFEST_CHUNK_MAX || (h->chunk_entries & (h->chunk_entries - 1)))
		r = error_set(EIO, "%s: malformed manifest header", path);
	else if (h->state_len > STORE_STATE_MAX || h->page_count > (1ull << 40) || h->entry_count > h->page_count ||
		 h->pack_count > h->entry_count)
		r = error_set(EIO, "%s: manifest sizes out of range", path);
	if (r)
		goto err;
	manifest_layout(h, &l);
	if (l.size != size) {
		r = error_set(EIO, "%s: manifest is %llu bytes, its header says %llu (truncated or damaged)", path,
			      (unsigned long long)size, (unsigned long long)l.size);
		goto err;
	}
	const uint8_t *base = map;
	const struct manifest_trailer *t = (const void *)(base + l.trailer_off);
	if (memcmp(t->magic, TRAILER_MAGIC, 8) != 0)
		r = error_set(EIO, "%s: manifest trailer is damaged", path);
	else if (t->head_checksum != XXH3_64bits(base, l.entries_off))
		r = error_set(EIO, "%s: manifest header and state do not match their checksum (damaged)", path);
	else if (t->chunks_checksum != XXH3_64bits(base + l.chunks_off, l.trailer_off - l.chunks_off))
		r = error_set(EIO, "%s: manifest chunk table does not match its checksum (damaged)", path);
	else if (memchr(h->name, 0, sizeof(h->name)) == NULL || memchr(h->parent, 0, sizeof(h->parent)) == NULL ||
		 !store_name_valid(h->name) || (h->parent[0] && !store_name_valid(h->parent)))
		r = error_set(EIO, "%s: malformed snapshot or parent name", path);
	else if (expect_name && strcmp(h->name, expect_name) != 0)
		r = error_set(EIO, "%s: manifest names snapshot '%s', not '%s'", path, h->name, expect_name);
	else if (strcmp(h->name, h->parent) == 0)
		r = error_set(EIO, "%s: snapshot is its own parent", path);
	if (r)
		goto err;
	m->hdr = h;
	m->state = base + sizeof(*h);
	m->packs = (const void *)(base + l.packs_off);
	m->entries = (const void *)(base + l.entries_off);
	m->nentries = h->entry_count;
	m->chunks = (const void *)(base + l.chunks_off);
	m->nchunks = l.nchunks;
	for (uint32_t i = 0; i < h->pack_count; i++) {
		uint32_t id = m->packs[i];
		if ((i && id <= m->packs[i - 1]) || id == STORE_ZERO_PACK || id == INDEX_EMPTY) {
			r = error_set(EIO, "%s: pack table entry %u (%08x) is malformed", path, i, id);
			goto err;
		}
	}
	for (uint64_t k = 0; k < m->nchunks; k++) {
		uint64_t first = m->chunks[k].first_pindex;
		if (first >= h->page_count || (k && first <= m->chunks[k - 1].first_pindex)) {
			r = error_set(EIO, "%s: chunk %llu of the chunk table is malformed", path, (unsigned long long)k);
			goto err;
		}
	}
	m->checked = calloc(m->nchunks ? m->nchunks : 1, 1);
	if (!m->checked) {
		r = error_set(ENOMEM, "no memory for %s", path);
		goto err;
	}
	return 0;
err:
	manifest_unload(m);
	return r;
}

static void manifest_path(const struct manifest *m, char *path, size_t len)
{
	snprintf(path, len, "%s/snapshots/%s.snap", m->dir, m->hdr->name);
}

/* Entries of chunk @k: the first, and how many. */
static const struct manifest_entry *manifest_chunk_entries(const struct manifest *m, uint64_t k, uint64_t *n)
{
	uint64_t first = k * m->hdr->chunk_entries;
	uint64_t left = m->nentries - first;
	*n = left < m->hdr->chunk_entries ? left : m->hdr->chunk_entries;
	return m->entries + first;
}

/*
 * Check chunk @k of @m once: its checksum, then each entry (page in range, strictly after
 * the one before and before the next chunk's first, a pack of the pack table or a proper
 * zero entry). Safe from several threads at once (the check is idempotent). 0 or -EIO
 * with a message naming the manifest and the entries.
 */
static int manifest_check_chunk(const struct manifest *m, uint64_t k)
{
	if (__atomic_load_n(&m->checked[k], __ATOMIC_ACQUIRE))
		return 0;
	uint64_t n;
	const struct manifest_entry *e = manifest_chunk_entries(m, k, &n);
	uint64_t first = k * m->hdr->chunk_entries;
	uint64_t limit = k + 1 < m->nchunks ? m->chunks[k + 1].first_pindex : m->hdr->page_count;
	char path[4200];
	if (XXH3_64bits(e, n * sizeof(*e)) != m->chunks[k].checksum) {
		manifest_path(m, path, sizeof(path));
		return error_set(EIO, "%s: manifest entries %llu-%llu do not match their checksum (damaged)", path,
				 (unsigned long long)first, (unsigned long long)(first + n - 1));
	}
	for (uint64_t i = 0; i < n; i++) {
		bool ok = e[i].pindex < limit && (i ? e[i].pindex > e[i - 1].pindex : e[i].pindex == m->chunks[k].first_pindex);
		if (e[i].pack == STORE_ZERO_PACK)
			ok = ok && e[i].slot == 0 && e[i].hash == 0;
		else
			ok = ok && pack_table_has(m->packs, m->hdr->pack_count, e[i].pack);
		if (!ok) {
			manifest_path(m, path, sizeof(path));
			return error_set(EIO, "%s: entry %llu (page 0x%llx) is malformed", path,
					 (unsigned long long)(first + i), (unsigned long long)e[i].pindex);
		}
	}
	__atomic_store_n(&m->checked[k], 1, __ATOMIC_RELEASE);
	return 0;
}

/* Check every chunk of @m; the first damage found is the error. */
static int manifest_check_all(const struct manifest *m)
{
	for (uint64_t k = 0; k < m->nchunks; k++) {
		int r = manifest_check_chunk(m, k);
		if (r)
			return r;
	}
	return 0;
}

/*
 * The entry of @m for page @pindex (*e NULL when @m lists none): a binary search of the
 * chunk table, a check of that chunk the first time, then a direct index when the chunk
 * is dense or a binary search in it. 0 or -EIO with a message.
 */
static int manifest_find(const struct manifest *m, uint64_t pindex, const struct manifest_entry **out)
{
	*out = NULL;
	uint64_t lo = 0, hi = m->nchunks;
	while (lo < hi) {
		uint64_t mid = lo + (hi - lo) / 2;
		if (m->chunks[mid].first_pindex <= pindex)
			lo = mid + 1;
		else
			hi = mid;
	}
	if (lo == 0)
		return 0; /* before the first entry (or no entries) */
	uint64_t k = lo - 1, n;
	int r = manifest_check_chunk(m, k);
	if (r)
		return r;
	const struct manifest_entry *e = manifest_chunk_entries(m, k, &n);
	uint64_t guess = pindex - e[0].pindex;
	if (guess < n && e[guess].pindex == pindex) {
		*out = &e[guess];
		return 0;
	}
	lo = 0;
	hi = n;
	while (lo < hi) {
		uint64_t mid = lo + (hi - lo) / 2;
		if (e[mid].pindex < pindex)
			lo = mid + 1;
		else
			hi = mid;
	}
	if (lo < n && e[lo].pindex == pindex)
		*out = &e[lo];
	return 0;
}

/* Open manifest @name of @s (see manifest_open_fd): entries are checked later. */
static int manifest_open(struct store *s, const char *name, struct manifest *m)
{
	char file[STORE_NAME_MAX + 8], path[4200];
	snprintf(file, sizeof(file), "%s.snap", name);
	int fd = store_open_file(s, s->snaps_fd, "snapshots", file, O_RDONLY, 0);
	if (fd < 0)
		return fd == -ENOENT ? error_set(ENOENT, "no snapshot '%s' in %s", name, s->dir) : fd;
	snprintf(path, sizeof(path), "%s/snapshots/%s", s->dir, file);
	int r = manifest_open_fd(fd, path, name, s->dir, m);
	close(fd);
	return r;
}

/* Open manifest @name and check all its entries. */
static int manifest_load(struct store *s, const char *name, struct manifest *m)
{
	int r = manifest_open(s, name, m);
	if (!r && (r = manifest_check_all(m)) != 0)
		manifest_unload(m);
	return r;
}

/* The distinct packs @e uses, increasing, in *ids (free it). 0 or -ENOMEM. */
static int manifest_pack_table(const struct manifest_entry *e, uint64_t n, uint32_t **ids, uint32_t *count)
{
	uint32_t *t = NULL, cnt = 0, cap = 0, last = STORE_ZERO_PACK;
	for (uint64_t i = 0; i < n; i++) {
		uint32_t id = e[i].pack;
		if (id == STORE_ZERO_PACK || id == last)
			continue; /* pages of one pack come in runs */
		last = id;
		uint32_t lo = pack_table_place(t, cnt, id);
		if (lo < cnt && t[lo] == id)
			continue;
		if (cnt == cap) {
			cap = cap ? cap * 2 : 16;
			uint32_t *p = realloc(t, cap * sizeof(*p));
			if (!p) {
				free(t);
				return -ENOMEM;
			}
			t = p;
		}
		memmove(t + lo + 1, t + lo, (cnt - lo) * sizeof(*t));
		t[lo] = id;
		cnt++;
	}
	*ids = t;
	*count = cnt;
	return 0;
}

/*
 * Write manifest @h (magic, version, counts and chunking are filled in here) with @state
 * and @entries atomically: temporary file, fsync, rename, fsync of the folder.
 */
static int manifest_write(struct store *s, struct manifest_header *h, const void *state,
			  const struct manifest_entry *entries)
{
	char tmp[STORE_NAME_MAX + 16], file[STORE_NAME_MAX + 8];
	snprintf(tmp, sizeof(tmp), ".%s.tmp", h->name);
	snprintf(file, sizeof(file), "%s.snap", h->name);
	memcpy(h->magic, MANIFEST_MAGIC, 8);
	h->version = MANIFEST_VERSION;
	h->header_size = sizeof(*h);
	h->chunk_entries = MANIFEST_CHUNK;
	uint32_t *packs = NULL;
	struct manifest_chunk *chunks = NULL;
	XXH3_state_t *xs = NULL;
	struct manifest_layout l;
	int fd = -1;
	int r = manifest_pack_table(entries, h->entry_count, &packs, &h->pack_count);
	if (!r) {
		manifest_layout(h, &l);
		chunks = malloc(l.nchunks ? l.nchunks * sizeof(*chunks) : 1);
		xs = XXH3_createState();
		r = chunks && xs ? 0 : -ENOMEM;
	}
	if (r) {
		r = error_set(-r, "no memory to write %s/snapshots/%s", s->dir, file);
		goto out;
	}
	for (uint64_t k = 0; k < l.nchunks; k++) {
		uint64_t first = k * MANIFEST_CHUNK, n = h->entry_count - first;
		n = n < MANIFEST_CHUNK ? n : MANIFEST_CHUNK;
		chunks[k].first_pindex = entries[first].pindex;
		chunks[k].checksum = XXH3_64bits(&entries[first], n * sizeof(*entries));
	}
	static const uint8_t zeros[8];
	const void *parts[7] = {h, state, zeros, packs, zeros, entries, chunks};
	size_t lens[7] = {sizeof(*h),
			  h->state_len,
			  pad8(h->state_len) - h->state_len,
			  h->pack_count * sizeof(uint32_t),
			  l.entries_off - l.packs_off - h->pack_count * sizeof(uint32_t),
			  h->entry_count * sizeof(*entries),
			  l.nchunks * sizeof(*chunks)};
	struct manifest_trailer t = {.chunks_checksum = XXH3_64bits(chunks, lens[6])};
	memcpy(t.magic, TRAILER_MAGIC, 8);
	XXH3_64bits_reset(xs);
	for (int i = 0; i < 5; i++)
		if (lens[i])
			XXH3_64bits_update(xs, parts[i], lens[i]);
	t.head_checksum = XXH3_64bits_digest(xs);

	fd = store_open_file(s, s->snaps_fd, "snapshots", tmp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	if (fd < 0) {
		r = fd;
		goto out;
	}
	for (int i = 0; i < 7 && !r; i++)
		if (lens[i])
			r = file_write_all(fd, parts[i], lens[i]);
	if (!r)
		r = file_write_all(fd, &t, sizeof(t));
	if (!r && fsync(fd) != 0)
		r = -errno;
	close(fd);
	if (!r && renameat(s->snaps_fd, tmp, s->snaps_fd, file) != 0)
		r = -errno;
	if (r) {
		unlinkat(s->snaps_fd, tmp, 0);
		r = error_set(-r, "cannot write %s/snapshots/%s: %s", s->dir, file, strerror(-r));
		goto out;
	}
	r = fsync_dir(s->snaps_fd, "the snapshots folder");
out:
	XXH3_freeState(xs);
	free(chunks);
	free(packs);
	return r;
}

int store_manifest_seal(void *image, size_t len)
{
	struct manifest_header *h = image;
	if (len < sizeof(*h) + sizeof(struct manifest_trailer) || h->chunk_entries == 0 ||
	    h->state_len > STORE_STATE_MAX || h->entry_count > (1ull << 40) || h->pack_count > (1u << 30))
		return -EINVAL;
	struct manifest_layout l;
	manifest_layout(h, &l);
	if (l.size != len)
		return -EINVAL;
	uint8_t *base = image;
	struct manifest_chunk *chunks = (void *)(base + l.chunks_off);
	const struct manifest_entry *entries = (const void *)(base + l.entries_off);
	for (uint64_t k = 0; k < l.nchunks; k++) {
		uint64_t first = k * h->chunk_entries, n = h->entry_count - first;
		n = n < h->chunk_entries ? n : h->chunk_entries;
		chunks[k].checksum = XXH3_64bits(&entries[first], n * sizeof(*entries));
	}
	struct manifest_trailer *t = (void *)(base + l.trailer_off);
	t->chunks_checksum = XXH3_64bits(chunks, l.nchunks * sizeof(*chunks));
	t->head_checksum = XXH3_64bits(base, l.entries_off);
	return 0;
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

/* Call @fn for each entry of the store's folder @dirfd (@sub names it in messages), in
 * directory order. Stops at the first error @fn returns. */
static int store_each_entry(struct store *s, int dirfd, const char *sub,
			    int (*fn)(struct store *s, const char *entry, void *arg), void *arg)
{
	int fd = dup(dirfd);
	DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
	if (!d) {
		if (fd >= 0)
			close(fd);
		return error_set_errno(errno, "cannot read %s/%s", s->dir, sub);
	}
	rewinddir(d);
	int r = 0;
	struct dirent *de;
	while (!r && (de = readdir(d)))
		r = fn(s, de->d_name, arg);
	closedir(d);
	return r;
}

struct each_name {
	int (*fn)(struct store *s, const char *name, void *arg);
	void *arg;
};

static int each_name_entry(struct store *s, const char *entry, void *arg)
{
	struct each_name *en = arg;
	char name[STORE_NAME_MAX + 1];
	return snap_file_name(entry, name) ? en->fn(s, name, en->arg) : 0;
}

/* Call @fn for each snapshot name in the store, in directory order. Stops at an error. */
static int store_each_name(struct store *s, int (*fn)(struct store *s, const char *name, void *arg), void *arg)
{
	struct each_name en = {fn, arg};
	return store_each_entry(s, s->snaps_fd, "snapshots", each_name_entry, &en);
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
	int r = store_index_manifest(s, &m);
	manifest_unload(&m);
	return r;
}

/* (Re)build the index from every manifest; the lock must be held. */
static int store_reindex(struct store *s)
{
	store_forget(s);
	int r = store_each_name(s, store_index_one, NULL);
	if (r) {
		store_forget(s);
		return r;
	}
	s->indexed = true;
	return 0;
}

/* The index, built if this hold of the lock has none yet. */
static int store_need_index(struct store *s)
{
	return s->indexed ? 0 : store_reindex(s);
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

/* Open (@create: make) the store at @dir; @read_only: create nothing, write nothing. */
static int store_open_at(const char *dir, bool create, bool read_only, store_hash_fn *hash, struct store **out)
{
	struct store *s = calloc(1, sizeof(*s));
	if (!s)
		return error_set(ENOMEM, "no memory for the store");
	s->hash = hash;
	s->read_only = read_only;
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
	if (read_only) {
		s->lock_fd = store_open_file(s, s->dir_fd, "", "lock", O_RDONLY, 0);
		if (s->lock_fd == -ENOENT) {
			s->lock_fd = -1;
			error_clear();
		} else if (s->lock_fd < 0) {
			r = s->lock_fd;
			goto err;
		}
	} else {
		s->lock_fd = store_open_file(s, s->dir_fd, "", "lock", O_RDWR | O_CREAT, 0644);
		if (s->lock_fd < 0) {
			r = s->lock_fd;
			goto err;
		}
	}
	if (create) {
		r = fsync_dir(s->dir_fd, "the store folder");
		if (r)
			goto err;
	}
	*out = s;
	return 0;
err:
	store_close(s);
	return r;
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
	store_close_packs(s);
	free(s->pack_fds);
	int fds[4] = {s->dir_fd, s->packs_fd, s->snaps_fd, s->lock_fd};
	for (int i = 0; i < 4; i++)
		if (fds[i] >= 0)
			close(fds[i]);
	index_free(&s->index);
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

static int store_writable(struct store *s)
{
	return s->read_only ? error_set(EROFS, "store %s is open for reading only", s->dir) : 0;
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
	int r = file_write_all(p->fd, p->batch, (size_t)n * STORE_PAGE);
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

struct mapped_pack {
	uint32_t id;
	const uint8_t *map;
	uint64_t pages;
};

struct store_snapshot {
	char *dir;
	int pin_fd;              /* the pin held while open (store_snapshot_open_pinned), or -1 */
	unsigned depth;
	struct manifest *chain;  /* [0] is the snapshot, then its parents */
	struct mapped_pack *packs; /* those the chain's pack tables name, sorted by id */
	size_t npacks;
};

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
		r = store_need_index(s); /* what is stored already, for dedup */
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
	bool zero = page_store_is_zero(data);
	if (w->parent) {
		/* The same bytes as the parent's: unlisted, the page falls through to it. */
		uint8_t was[STORE_PAGE];
		bool was_stored;
		uint64_t was_hash;
		int r = store_snapshot_copy(w->parent, pindex, was, &was_stored, &was_hash);
		if (r)
			return r;
		if (was_stored ? memcmp(was, data, STORE_PAGE) == 0 : zero) {
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
	if (w->parent)
		store_snapshot_close(w->parent);
	pack_out_close(&w->pack, discard_pack);
	free(w->local.e);
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
	uint64_t *at = calloc(p->depth + 1, sizeof(*at)); /* a cursor per list: [0] ours, then the chain's */
	struct manifest_entry *merged = malloc((total ? total : 1) * sizeof(*merged));
	if (!at || !merged) {
		free(at);
		free(merged);
		return error_set(ENOMEM, "no memory to merge snapshot entries");
	}
	uint64_t count = 0;
	for (;;) {
		/* The lowest page any list has next; the first list having it (ours, then the
		 * nearest parent) says what it is, the others' entries for it are older. */
		const struct manifest_entry *best = NULL;
		for (unsigned k = 0; k <= p->depth; k++) {
			const struct manifest_entry *e = k ? p->chain[k - 1].entries : w->entries;
			uint64_t len = k ? p->chain[k - 1].nentries : w->hdr.entry_count;
			if (at[k] < len && (!best || e[at[k]].pindex < best->pindex))
				best = &e[at[k]];
		}
		if (!best)
			break;
		uint64_t pindex = best->pindex;
		for (unsigned k = 0; k <= p->depth; k++) {
			const struct manifest_entry *e = k ? p->chain[k - 1].entries : w->entries;
			uint64_t len = k ? p->chain[k - 1].nentries : w->hdr.entry_count;
			if (at[k] < len && e[at[k]].pindex == pindex)
				at[k]++;
		}
		if (best->pack != STORE_ZERO_PACK)
			merged[count++] = *best;
	}
	free(at);
	*out = merged;
	*n = count;
	return 0;
}

int store_writer_commit(struct store_writer *w)
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
		r = manifest_write(w->s, &w->hdr, w->state, w->entries);
	}
	writer_free(w, r != 0);
	return r;
}

/* ---- pins --------------------------------------------------------------------------------------- */

/*
 * A running VM restored from a snapshot reads that snapshot's pages for as long as it
 * lives, and names it as the parent of its own snapshots: it pins it. A pin is a file
 * pins/NAME@PID-SEQ holding the holder's description ("VM 'web' (pid 42)"), locked shared
 * (flock) by the holder for as long as it holds the snapshot open. The lock, not the file,
 * is the pin: it goes with the holder's last descriptor (a forked child VM inherits it),
 * also under kill -9. A pin file whose lock can be taken alone is stale and is removed by
 * the next delete or gc. Files are renamed into place already locked, so a pin is never
 * seen unlocked while its holder lives.
 */

#define PINS_DIR "pins"

/* Open (@create: make) the store's pins folder. The fd, -ENOENT when there is none and
 * @create is false, or -errno with a message. */
static int pins_dir(struct store *s, bool create)
{
	if (create && mkdirat(s->dir_fd, PINS_DIR, 0755) != 0 && errno != EEXIST)
		return error_set_errno(errno, "cannot create %s/" PINS_DIR, s->dir);
	int fd = openat(s->dir_fd, PINS_DIR, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return errno == ENOENT && !create ? -ENOENT : error_set_errno(errno, "cannot open %s/" PINS_DIR, s->dir);
	return fd;
}

/* Pin snapshot @name for @holder; *fd is the pin's descriptor to close when done, or -1
 * when the store cannot be written by this user (who then cannot delete from it either).
 * 0 or -errno with a message. */
static int store_pin(struct store *s, const char *name, const char *holder, int *fd)
{
	static atomic_uint seq;
	*fd = -1;
	int dir = pins_dir(s, true);
	if (dir == -EACCES || dir == -EROFS || dir == -EPERM) {
		error_clear();
		return 0;
	}
	if (dir < 0)
		return dir;
	char file[STORE_NAME_MAX + 64], tmp[sizeof(file) + 8];
	unsigned n = atomic_fetch_add(&seq, 1);
	snprintf(file, sizeof(file), "%s@%d-%u", name, (int)getpid(), n);
	snprintf(tmp, sizeof(tmp), ".%s.tmp", file);
	int r = store_open_file(s, dir, PINS_DIR, tmp, O_RDWR | O_CREAT | O_TRUNC, 0644);
	if (r >= 0) {
		int pin = r;
		r = flock(pin, LOCK_SH | LOCK_NB) != 0 ? -errno : file_write_all(pin, holder, strlen(holder));
		if (!r && renameat(dir, tmp, dir, file) != 0)
			r = -errno;
		if (r) {
			unlinkat(dir, tmp, 0);
			close(pin);
			r = error_set(-r, "cannot pin snapshot '%s' in %s/" PINS_DIR ": %s", name, s->dir, strerror(-r));
		} else {
			*fd = pin;
		}
	}
	close(dir);
	return r < 0 ? r : 0;
}

struct pin_scan {
	int dir;
	const char *name;       /* the snapshot whose pins are looked for, NULL: sweep all */
	char holder[256];       /* a live pin's holder, "" when none was found */
};

/* One entry of the pins folder: a stale pin is removed, a live one of scan->name is told. */
static int pin_scan_entry(struct store *s, const char *entry, void *arg)
{
	struct pin_scan *ps = arg;
	const char *at = strrchr(entry, '@');
	bool temporary = entry[0] == '.';
	if (!at || (ps->name && (temporary || (size_t)(at - entry) != strlen(ps->name) ||
				 strncmp(entry, ps->name, (size_t)(at - entry)) != 0)))
		return 0;
	int fd = store_open_file(s, ps->dir, PINS_DIR, entry, O_RDONLY, 0);
	if (fd < 0) {
		error_clear(); /* gone meanwhile, or no pin: not ours to judge */
		return 0;
	}
	if (flock(fd, LOCK_EX | LOCK_NB) == 0) {
		unlinkat(ps->dir, entry, 0);
	} else if (ps->name && !temporary) {
		ssize_t n = pread(fd, ps->holder, sizeof(ps->holder) - 1, 0);
		ps->holder[n > 0 ? n : 0] = '\0';
		for (char *c = ps->holder; *c; c++)
			if (*c < ' ' || *c > '~')
				*c = '?'; /* the holder's words are quoted in one line of text */
		if (!ps->holder[0])
			snprintf(ps->holder, sizeof(ps->holder), "process %.*s", (int)strcspn(at + 1, "-"), at + 1);
	}
	close(fd);
	return ps->holder[0] ? 1 : 0;
}

/* Look for a live pin of snapshot @name (NULL: none, only sweep), removing the stale pins
 * met on the way. 1 with its holder in @holder, 0 when none, or -errno with a message. The
 * caller holds the store lock alone, so no pin is being made meanwhile. */
static int store_pinned(struct store *s, const char *name, char *holder, size_t len)
{
	struct pin_scan ps = {.name = name};
	ps.dir = pins_dir(s, false);
	if (ps.dir == -ENOENT)
		return 0;
	if (ps.dir < 0)
		return ps.dir;
	int r = store_each_entry(s, ps.dir, PINS_DIR, pin_scan_entry, &ps);
	close(ps.dir);
	if (r > 0 && holder)
		snprintf(holder, len, "%s", ps.holder);
	return r;
}

/* ---- reading -------------------------------------------------------------------------------- */


static int cmp_pack(const void *a, const void *b)
{
	const struct mapped_pack *x = a, *y = b;
	return x->id < y->id ? -1 : x->id > y->id;
}

/* A pack id and the first manifest of the chain naming it. */
struct pack_need {
	uint32_t id;
	unsigned depth;
};

static int cmp_need(const void *a, const void *b)
{
	const struct pack_need *x = a, *y = b;
	if (x->id != y->id)
		return x->id < y->id ? -1 : 1;
	return x->depth < y->depth ? -1 : x->depth > y->depth;
}

/*
 * Map read-only the packs the chain's pack tables name (pages load on first use). Mapped
 * while the lock is held, they stay readable for the snapshot's life even if a gc moves
 * their pages and removes them afterwards.
 */
static int snapshot_map_packs(struct store *s, struct store_snapshot *snap)
{
	size_t n = 0;
	for (unsigned i = 0; i < snap->depth; i++)
		n += snap->chain[i].hdr->pack_count;
	if (!n)
		return 0;
	struct pack_need *need = malloc(n * sizeof(*need));
	snap->packs = malloc(n * sizeof(*snap->packs));
	if (!need || !snap->packs) {
		free(need);
		return error_set(ENOMEM, "no memory for the pack table");
	}
	n = 0;
	for (unsigned i = 0; i < snap->depth; i++)
		for (uint32_t k = 0; k < snap->chain[i].hdr->pack_count; k++)
			need[n++] = (struct pack_need){snap->chain[i].packs[k], i};
	qsort(need, n, sizeof(*need), cmp_need);
	int r = 0;
	for (size_t k = 0; k < n && !r; k++) {
		if (k && need[k].id == need[k - 1].id)
			continue;
		char name[16];
		snprintf(name, sizeof(name), "%08x.pack", need[k].id);
		int fd = store_open_file(s, s->packs_fd, "packs", name, O_RDONLY, 0);
		struct stat st;
		if (fd < 0 || fstat(fd, &st) != 0) {
			r = fd < 0 ? fd : -errno;
			r = error_set(-r, "%s (snapshot '%s' needs it)", fd < 0 ? error_message() : strerror(-r),
				      snap->chain[need[k].depth].hdr->name);
			if (fd >= 0)
				close(fd);
			break;
		}
		uint64_t pages = (uint64_t)st.st_size / STORE_PAGE;
		void *map = NULL;
		if (pages) {
			map = mmap(NULL, pages * STORE_PAGE, PROT_READ, MAP_SHARED, fd, 0);
			if (map == MAP_FAILED)
				r = error_set_errno(errno, "%s/packs/%s: cannot map", s->dir, name);
		}
		close(fd);
		if (!r)
			snap->packs[snap->npacks++] = (struct mapped_pack){need[k].id, map, pages};
	}
	free(need);
	return r;
}

int store_snapshot_open_pinned(struct store *s, const char *name, const char *holder, struct store_snapshot **out)
{
	if (!store_name_valid(name))
		return error_set(EINVAL, "'%s' cannot name a snapshot", name);
	struct store_snapshot *snap = calloc(1, sizeof(*snap));
	if (!snap || !(snap->dir = strdup(s->dir))) {
		free(snap);
		return error_set(ENOMEM, "no memory to open a snapshot");
	}
	snap->pin_fd = -1;
	/* Held until the packs are mapped: gc cannot move pages between. A delete holds the
	 * lock alone, so it runs wholly before this open or sees the pin made here. */
	int r = store_hold(s);
	if (r) {
		store_snapshot_close(snap);
		return r;
	}
	if (holder && (r = store_pin(s, name, holder, &snap->pin_fd)) != 0) {
		store_release(s);
		store_snapshot_close(snap);
		return r;
	}
	unsigned cap = 0;
	const char *next = name;
	while (next && next[0]) {
		if (snap->depth == STORE_MAX_DEPTH) {
			r = error_set(ELOOP, "snapshot '%s' has more than %u ancestors (or a parent loop)", name,
				      STORE_MAX_DEPTH);
			break;
		}
		if (snap->depth == cap) {
			cap = cap ? cap * 2 : 4;
			struct manifest *c = realloc(snap->chain, cap * sizeof(*c));
			if (!c) {
				r = error_set(ENOMEM, "no memory to open a snapshot");
				break;
			}
			snap->chain = c;
		}
		struct manifest *m = &snap->chain[snap->depth];
		r = manifest_open(s, next, m);
		if (r) {
			if (r == -ENOENT && snap->depth)
				r = error_set(ENOENT, "snapshot '%s' names parent '%s', which is not in %s",
					      snap->chain[snap->depth - 1].hdr->name, next, s->dir);
			break;
		}
		m->dir = snap->dir;
		snap->depth++;
		if (m->hdr->page_count != snap->chain[0].hdr->page_count) {
			r = error_set(EIO, "snapshot '%s' describes %llu pages but its parent '%s' %llu", name,
				      (unsigned long long)snap->chain[0].hdr->page_count, m->hdr->name,
				      (unsigned long long)m->hdr->page_count);
			break;
		}
		next = m->hdr->flags & MANIFEST_COMPLETE ? NULL : m->hdr->parent;
	}
	if (!r)
		r = snapshot_map_packs(s, snap);
	store_release(s);
	if (r) {
		store_snapshot_close(snap);
		return r;
	}
	*out = snap;
	return 0;
}

int store_snapshot_open(struct store *s, const char *name, struct store_snapshot **out)
{
	return store_snapshot_open_pinned(s, name, NULL, out);
}

void store_snapshot_close(struct store_snapshot *snap)
{
	if (!snap)
		return;
	/* Closing releases the pin's lock; the file is left for the next delete or gc to sweep,
	 * since a forked child may share the lock through this very descriptor. */
	if (snap->pin_fd >= 0)
		close(snap->pin_fd);
	for (unsigned i = 0; i < snap->depth; i++)
		manifest_unload(&snap->chain[i]);
	for (size_t i = 0; i < snap->npacks; i++)
		if (snap->packs[i].map)
			munmap((void *)snap->packs[i].map, snap->packs[i].pages * STORE_PAGE);
	free(snap->packs);
	free(snap->chain);
	free(snap->dir);
	free(snap);
}

int store_snapshot_page(const struct store_snapshot *snap, uint64_t pindex, const void **data, uint64_t *hash)
{
	*data = NULL;
	*hash = 0;
	for (unsigned i = 0; i < snap->depth; i++) {
		const struct manifest_entry *e;
		int r = manifest_find(&snap->chain[i], pindex, &e);
		if (r)
			return r;
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

/* The read of a mapped store file in progress on this thread, if any: where SIGBUS goes. */
static _Thread_local sigjmp_buf *store_bus_jump;
static pthread_once_t store_bus_once = PTHREAD_ONCE_INIT;

static void store_on_sigbus(int sig, siginfo_t *info, void *context)
{
	(void)info;
	(void)context;
	if (store_bus_jump)
		siglongjmp(*store_bus_jump, 1);
	signal(sig, SIG_DFL); /* not ours: the access, retried, takes the default action */
}

static void store_bus_install(void)
{
	/* SA_NODEFER: the handler leaves by siglongjmp, which restores no signal mask. */
	struct sigaction sa = {.sa_sigaction = store_on_sigbus, .sa_flags = SA_SIGINFO | SA_NODEFER};
	sigemptyset(&sa.sa_mask);
	sigaction(SIGBUS, &sa, NULL);
}

int store_snapshot_copy(const struct store_snapshot *snap, uint64_t pindex, void *buf, bool *stored, uint64_t *hash)
{
	pthread_once(&store_bus_once, store_bus_install);
	sigjmp_buf jump;
	if (sigsetjmp(jump, 0)) {
		store_bus_jump = NULL;
		/* Nothing mapped is read here: that may be what faulted. */
		return error_set(EIO, "store %s: page 0x%llx cannot be read: a file of the store was truncated under the "
				 "running VM", snap->dir, (unsigned long long)pindex);
	}
	store_bus_jump = &jump;
	const void *data = NULL;
	int r = store_snapshot_page(snap, pindex, &data, hash);
	if (!r && data)
		memcpy(buf, data, STORE_PAGE);
	store_bus_jump = NULL;
	if (!r && !data)
		memset(buf, 0, STORE_PAGE);
	*stored = !r && data;
	return r;
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

/* Tell @fn about manifest @m: its sizes, and its pack bytes shared or not (index built). */
static int store_list_one(struct store *s, const struct manifest *m, void (*fn)(void *arg, const struct store_info *info),
			  void *arg)
{
	struct store_info info = {
		.created_ns = m->hdr->created_ns,
		.size = m->hdr->page_count * STORE_PAGE,
		.entries = m->nentries,
		.manifest_bytes = m->size,
	};
	snprintf(info.name, sizeof(info.name), "%s", m->hdr->name);
	snprintf(info.parent, sizeof(info.parent), "%s", m->hdr->parent);
	/* A page listed twice in one manifest is counted once. */
	for (uint64_t k = 0; k < m->nentries; k++) {
		const struct manifest_entry *e = &m->entries[k];
		if (e->pack == STORE_ZERO_PACK)
			continue;
		struct index_entry *ie = index_add(&s->index, e->hash, e->pack, e->slot);
		if (!ie)
			return error_set(ENOMEM, "no memory to list %s", s->dir);
		if (ie->last_manifest == UINT32_MAX)
			continue;
		ie->last_manifest = UINT32_MAX;
		if (ie->refs > 1)
			info.shared_bytes += STORE_PAGE;
		else
			info.unique_bytes += STORE_PAGE;
	}
	for (uint64_t k = 0; k < m->nentries; k++) {
		const struct manifest_entry *e = &m->entries[k];
		if (e->pack != STORE_ZERO_PACK)
			index_add(&s->index, e->hash, e->pack, e->slot)->last_manifest = 0;
	}
	fn(arg, &info);
	return 0;
}

int store_list(struct store *s, void (*fn)(void *arg, const struct store_info *info), void *arg)
{
	struct name_list l;
	int r = store_hold(s);
	if (r)
		return r;
	r = store_need_index(s);
	if (!r)
		r = store_names(s, &l);
	if (r) {
		store_release(s);
		return r;
	}
	for (size_t i = 0; !r && i < l.n; i++) {
		struct manifest m;
		r = manifest_load(s, l.names[i], &m);
		if (!r) {
			r = store_list_one(s, &m, fn, arg);
			manifest_unload(&m);
		}
	}
	free(l.names);
	store_release(s);
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

/* Check manifest @name and every page it lists; returns the problems found. */
static long verify_manifest(struct store *s, const char *name, void (*fn)(void *, bool, const char *), void *arg,
			    struct store_verify_stats *stats)
{
	struct manifest m;
	if (manifest_open(s, name, &m) != 0) {
		report(fn, arg, true, "%s", error_message());
		return 1;
	}
	long problems = 0;
	if (m.hdr->parent[0]) {
		struct store_snapshot *snap;
		if (store_snapshot_open(s, m.hdr->name, &snap) != 0) {
			report(fn, arg, true, "%s", error_message());
			problems++;
		} else {
			store_snapshot_close(snap);
		}
	}
	uint8_t buf[STORE_PAGE];
	for (uint64_t k = 0; k < m.nchunks; k++) {
		if (manifest_check_chunk(&m, k) != 0) {
			report(fn, arg, true, "%s", error_message());
			problems++;
			continue;
		}
		uint64_t n;
		const struct manifest_entry *e = manifest_chunk_entries(&m, k, &n);
		for (uint64_t i = 0; i < n; i++) {
			if (e[i].pack == STORE_ZERO_PACK)
				continue;
			stats->pages_checked++;
			if (store_read_page(s, e[i].pack, e[i].slot, buf) != 0) {
				report(fn, arg, true, "%s/snapshots/%s.snap: page 0x%llx: %s", s->dir, m.hdr->name,
				       (unsigned long long)e[i].pindex, error_message());
				problems++;
			} else if (s->hash(buf, STORE_PAGE) != e[i].hash) {
				report(fn, arg, true,
				       "%s/snapshots/%s.snap: page 0x%llx: bytes in pack %08x slot %u do not match their hash (damaged)",
				       s->dir, m.hdr->name, (unsigned long long)e[i].pindex, e[i].pack, e[i].slot);
				problems++;
			}
		}
	}
	manifest_unload(&m);
	return problems;
}

/* Report the leftovers of interrupted writers and foreign files: notes, not damage. */
static void verify_leftovers(struct store *s, void (*fn)(void *, bool, const char *), void *arg,
			     struct store_verify_stats *stats)
{
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
	} else if (fd >= 0) {
		close(fd);
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
	} else if (fd >= 0) {
		close(fd);
	}
}

long store_verify(struct store *s, void (*fn)(void *arg, bool problem, const char *line), void *arg,
		  struct store_verify_stats *stats)
{
	memset(stats, 0, sizeof(*stats));
	struct name_list l;
	int r = store_hold(s);
	if (r)
		return r;
	r = store_reindex(s); /* other processes may have written since this hold began */
	if (!r)
		r = store_names(s, &l);
	if (r) {
		store_release(s);
		return r;
	}
	long problems = 0;
	for (size_t i = 0; i < l.n; i++) {
		stats->snapshots++;
		problems += verify_manifest(s, l.names[i], fn, arg, stats);
	}
	free(l.names);
	verify_leftovers(s, fn, arg, stats);
	store_release(s);
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
out:
	/* A failed gc leaves its new pack unreferenced (or referenced: then the old ones stay). */
	pack_out_close(&out, r != 0 && nrel == 0);
	store_release(s);
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
		r = fsync_dir(s->snaps_fd, "the snapshots folder");
	store_release(s);
	return r;
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

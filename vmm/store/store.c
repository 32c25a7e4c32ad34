/* The store: open and close, the lock, folder walks, packs read back, the index built. See
 * store.h and store_impl.h. */
#include "vmm/store/store_impl.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <xxhash.h>

#include "vmm/clock.h"
#include "vmm/error.h"
#include "vmm/file_io.h"

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

int store_fsync_dir(int fd, const char *what)
{
	if (fsync(fd) != 0)
		return error_set_errno(errno, "cannot sync %s", what);
	return 0;
}

/* Open @name in the store's folder @at (@sub names it in messages: "packs") through
 * file_open_regular: a FIFO or device left in a store is refused, never waited on. */
int store_open_file(struct store *s, int at, const char *sub, const char *name, int flags, mode_t mode)
{
	char shown[4200];
	snprintf(shown, sizeof(shown), "%s/%s%s%s", s->dir, sub, *sub ? "/" : "", name);
	return file_open_regular(at, name, flags, mode, 0, "store file", shown);
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
		pack_file_name(id, name);
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
int store_read_page(struct store *s, uint32_t pack, uint32_t slot, void *buf)
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
int store_lock(struct store *s, int op)
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
int store_hold(struct store *s)
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
	s->index_stale = false;
	s->nmanifests = 0;
	s->damaged = 0;
	hmap_fini(&s->index_manifests);
	hmap_init(&s->index_manifests);
	hmap_fini(&s->index_packs);
	hmap_init(&s->index_packs);
	store_close_packs(s);
}

/* Undo one store_hold (or gc's exclusive hold); the last one unlocks and forgets (a kept
 * index is only marked stale; the packs are closed all the same, as a gc may replace
 * them). */
void store_release(struct store *s)
{
	if (--s->holds)
		return;
	if (s->lock_fd >= 0)
		flock(s->lock_fd, LOCK_UN);
	if (s->keep_index && s->indexed) {
		s->index_stale = true;
		store_close_packs(s);
		return;
	}
	store_forget(s);
}

void store_keep_index(struct store *s)
{
	s->keep_index = true;
}

bool store_is_at(struct store *s, const char *dir)
{
	struct stat a, b;
	return stat(dir, &a) == 0 && fstat(s->dir_fd, &b) == 0 && a.st_dev == b.st_dev && a.st_ino == b.st_ino;
}

/* What file @entry of folder @dirfd is, in 64 bits (never 0): another file gets another
 * tag; with @contents, so does the same file changed (for manifests, which are only ever
 * replaced; a pack grows while its writer appends, and gc replaces packs, never rewrites
 * them). 0 when it cannot be looked at. */
static uint64_t store_file_tag(int dirfd, const char *entry, bool contents)
{
	struct stat st;
	if (fstatat(dirfd, entry, &st, AT_SYMLINK_NOFOLLOW) != 0)
		return 0;
	uint64_t v[5] = {st.st_dev, st.st_ino};
	if (contents) {
		v[2] = (uint64_t)st.st_size;
		v[3] = (uint64_t)st.st_mtim.tv_sec;
		v[4] = (uint64_t)st.st_mtim.tv_nsec;
	}
	return XXH3_64bits(v, sizeof(v)) | 1;
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
int store_each_entry(struct store *s, int dirfd, const char *sub, store_entry_fn *fn, void *arg)
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
	return store_each_entry(s, s->snaps_fd, "snapshots", each_name_entry, &en);
}

/* The tag of manifest @name (store_file_tag). */
static uint64_t store_manifest_tag(struct store *s, const char *name)
{
	char file[STORE_NAME_MAX + 8];
	snprintf(file, sizeof(file), "%s.snap", name);
	return store_file_tag(s->snaps_fd, file, true);
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
	uint64_t tag = store_file_tag(s->packs_fd, entry, false);
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
	int r = s->keep_index ? store_each_entry(s, s->packs_fd, "packs", store_pack_tag, &t) : 0;
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
	int r = store_each_entry(s, s->packs_fd, "packs", store_pack_tag, &t);
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

void store_index_written(struct store *s, const struct index *local, uint32_t pack, const char *name)
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
	char file[16];
	pack_file_name(pack, file);
	uint64_t pack_tag = n ? store_file_tag(s->packs_fd, file, false) : 0, tag = store_manifest_tag(s, name);
	if (ok && pack_tag)
		ok = hmap_put(&s->index_packs, pack, (void *)(uintptr_t)pack_tag) == 0;
	if (ok && tag)
		ok = hmap_put(&s->index_manifests, tag, (void *)1) == 0;
	/* Out of memory: the next writer reads everything again. */
	if (!ok)
		s->indexed = false;
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
	hmap_init(&s->index_manifests);
	hmap_init(&s->index_packs);
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
		r = store_fsync_dir(s->dir_fd, "the store folder");
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
	return faccessat(s->snaps_fd, file, F_OK, 0) == 0;
}

int store_writable(struct store *s)
{
	return s->read_only ? error_set(EROFS, "store %s is open for reading only", s->dir) : 0;
}

struct disk_usage {
	int dirfd;
	uint64_t *sum;
};

/* One entry of a store folder: a regular file's bytes added to *arg. */
static int disk_usage_add(struct store *s, const char *entry, void *arg)
{
	struct disk_usage *u = arg;
	struct stat st;
	(void)s;
	if (entry[0] != '.' && fstatat(u->dirfd, entry, &st, 0) == 0 && S_ISREG(st.st_mode))
		*u->sum += (uint64_t)st.st_size;
	return 0;
}

int store_disk_usage(struct store *s, uint64_t *pack_bytes, uint64_t *manifest_bytes)
{
	*pack_bytes = *manifest_bytes = 0;
	struct disk_usage packs = {s->packs_fd, pack_bytes}, snaps = {s->snaps_fd, manifest_bytes};
	int r = store_each_entry(s, s->packs_fd, "packs", disk_usage_add, &packs);
	if (!r)
		r = store_each_entry(s, s->snaps_fd, "snapshots", disk_usage_add, &snaps);
	/* The message names the store rather than the folder, as it always has. */
	return r ? error_set_errno(-r, "cannot read %s", s->dir) : 0;
}

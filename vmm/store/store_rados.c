/*
 * A store in a RADOS pool (store_impl.h's backend), through a connection of its own
 * (vmm/store/rados.h). In namespace NAMESPACE of POOL, the objects are
 *   packs/NNNNNNNN.pack   as a folder's packs (appended to, at most PACK_PAGES_MAX pages)
 *   snapshots/NAME.snap   manifests, each written whole in one atomic write_full (a new one
 *                         created exclusively: two hosts never replace each other's); one
 *                         larger than a RADOS write (s->manifest_part, RADOS_DATA_MAX) is
 *                         a parts head instead (struct store_rados_parts), written last,
 *                         naming its parts:
 *   snapshots/.part-NAME.snap-TAG-I   the I-th piece of such a manifest, written before its
 *                         head (TAG: that write's, so a replacement never touches the parts
 *                         the head it replaces names); hidden from the folder's listing, and
 *                         removed after their head, or by gc when no head names them
 *   lock                  the store lock: a RADOS lock, shared or exclusive, held as long as
 *                         this handle holds it and renewed by the helper meanwhile; a dead
 *                         host's lapses within RADOS_LOCK_DURATION_MS
 *   pins/NAME             a pin: a shared RADOS lock per holder, described by the holder
 * A write is durable when RADOS acknowledges it, so nothing needs syncing. Packs are read a
 * page (or a run of pages) at a time, never mapped: a restore reads only what it needs.
 */
#include "vmm/store/store_impl.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>
#include <xxhash.h>

#include "vmm/clock.h"
#include "vmm/error.h"
#include "vmm/store/rados.h"

#define STORE_RADOS_PINS_MAX 64 /* pins one handle holds at once */

struct store_rados_pin {
	char oid[STORE_NAME_MAX + 8];
	char cookie[48];
	bool used;
};

struct store_rados {
	struct rados_conn *c;
	char name[STORE_RADOS_NAME_MAX * 2 + 16]; /* store_locate's name */
	char lock_cookie[48];
	struct store_rados_pin pins[STORE_RADOS_PINS_MAX];
};

/*
 * A manifest in parts: the head object holds this record, the bytes are the parts' in
 * order, each part_bytes long but the last. Read whole and checked (sizes, then the XXH3-64
 * of the bytes joined) before it counts as the manifest; anything else is damage.
 */
#define STORE_RADOS_PARTS_MAGIC "VMMPARTS"
#define STORE_RADOS_PARTS_VERSION 1u
#define STORE_RADOS_PARTS_TOTAL_MAX (4ull << 30) /* a manifest of 170 million pages */
#define STORE_RADOS_PART_PREFIX ".part-"

struct store_rados_parts {
	char magic[8];
	uint32_t version;
	uint32_t nparts;
	uint64_t total;      /* bytes of the manifest */
	uint64_t part_bytes; /* 4096 .. RADOS_DATA_MAX */
	uint64_t tag;        /* names the parts */
	uint64_t hash;       /* XXH3-64 of the manifest's bytes */
};

struct store_file {
	struct store *s;
	char oid[STORE_NAME_MAX + 16];
};

static const char *const folder_prefix[] = {"packs/", "snapshots/", "pins/"};

static struct store_rados *store_rados_of(const struct store *s)
{
	return s->priv;
}

/* The object of file @name in folder @f into @oid. */
static void store_rados_oid(enum store_folder f, const char *name, char *oid, size_t len)
{
	snprintf(oid, len, "%s%s", folder_prefix[f], name);
}

static int store_rados_lock(struct store *s, bool exclusive, bool wait)
{
	struct store_rados *r = store_rados_of(s);
	char desc[96];
	snprintf(desc, sizeof(desc), "vmm (pid %d)%s", (int)getpid(), exclusive ? ", gc or delete" : "");
	int err = rados_conn_lock(r->c, "lock", exclusive, r->lock_cookie, desc, wait ? STORE_LOCK_WAIT_S * 1000u : 0);
	if (err == -EBUSY && !wait)
		return error_set(EBUSY, "store %s is in use by a snapshot writer; try again later (%s)", s->dir,
				 error_message());
	if (err == -EBUSY)
		return error_set(EBUSY, "store %s is locked by another process (a gc or a snapshot being written) for over "
					"%d s; try again later (%s)",
				 s->dir, STORE_LOCK_WAIT_S, error_message());
	return err;
}

static void store_rados_unlock(struct store *s)
{
	if (rados_conn_unlock(store_rados_of(s)->c, "lock", store_rados_of(s)->lock_cookie) != 0)
		error_clear(); /* lost already: nothing is held */
}

static void store_rados_forget(struct store *s)
{
	(void)s; /* nothing is kept open */
}

struct store_rados_names {
	char **v;
	size_t n, cap;
	size_t skip; /* the prefix's length */
	bool failed;
};

static void store_rados_collect(void *arg, const char *oid)
{
	struct store_rados_names *l = arg;
	if (l->failed)
		return;
	if (l->n == l->cap) {
		size_t cap = l->cap ? l->cap * 2 : 64;
		char **v = realloc(l->v, cap * sizeof(*v));
		if (!v) {
			l->failed = true;
			return;
		}
		l->v = v;
		l->cap = cap;
	}
	if (!(l->v[l->n] = strdup(oid + l->skip)))
		l->failed = true;
	else
		l->n++;
}

static void store_rados_names_free(struct store_rados_names *l)
{
	for (size_t i = 0; i < l->n; i++)
		free(l->v[i]);
	free(l->v);
}

/* The names are gathered first: @fn may stop the walk, a listing may not be cut short. */
static int store_rados_each(struct store *s, enum store_folder f, store_entry_fn *fn, void *arg)
{
	struct store_rados_names l = {.skip = strlen(folder_prefix[f])};
	int r = rados_conn_list(store_rados_of(s)->c, folder_prefix[f], store_rados_collect, &l);
	if (!r && l.failed)
		r = error_set(ENOMEM, "no memory to list %s", s->dir);
	for (size_t i = 0; i < l.n && !r; i++) {
		bool part = f == STORE_SNAPSHOTS && strncmp(l.v[i], STORE_RADOS_PART_PREFIX, strlen(STORE_RADOS_PART_PREFIX)) == 0;
		if (!part)
			r = fn(s, l.v[i], arg);
	}
	store_rados_names_free(&l);
	return r;
}

static int store_rados_stat(struct store *s, enum store_folder f, const char *name, bool contents, uint64_t *tag,
			    uint64_t *size)
{
	char oid[STORE_NAME_MAX + 16];
	store_rados_oid(f, name, oid, sizeof(oid));
	uint64_t sz = 0, mtime = 0;
	int r = rados_conn_stat(store_rados_of(s)->c, oid, &sz, &mtime);
	if (r == -ENOENT)
		error_clear();
	if (r)
		return r;
	/* A pack keeps its name while it grows: without @contents it is told by name only (a
	 * gc never rewrites a pack, it makes new ones and removes the old). */
	uint64_t v[3] = {XXH3_64bits(oid, strlen(oid)), contents ? sz : 0, contents ? mtime : 0};
	if (tag)
		*tag = XXH3_64bits(v, sizeof(v)) | 1;
	if (size)
		*size = sz;
	return 0;
}

static bool store_rados_exists(struct store *s, enum store_folder f, const char *name)
{
	bool there = store_rados_stat(s, f, name, false, NULL, NULL) == 0;
	error_clear();
	return there;
}

static int store_rados_read(struct store *s, enum store_folder f, const char *name, uint64_t off, void *buf,
			    size_t len)
{
	char oid[STORE_NAME_MAX + 16];
	store_rados_oid(f, name, oid, sizeof(oid));
	size_t got = 0;
	int r = rados_conn_read(store_rados_of(s)->c, oid, off, buf, len, &got);
	if (!r && got != len)
		r = error_set(EIO, "%s/%s: %zu bytes at %llu are missing (object too short)", s->dir, oid, len - got,
			      (unsigned long long)off);
	return r;
}

/* The object of part @i of manifest file @name written with @tag. */
static void store_rados_part_oid(const char *name, uint64_t tag, uint32_t i, char *oid, size_t len)
{
	snprintf(oid, len, "%s%s%s-%016llx-%u", folder_prefix[STORE_SNAPSHOTS], STORE_RADOS_PART_PREFIX, name,
		 (unsigned long long)tag, i);
}

/* Whether parts head @h holds together: 0, or -EIO with a message naming @name. */
static int store_rados_parts_check(const struct store *s, const char *name, const struct store_rados_parts *h)
{
	bool ok = h->version == STORE_RADOS_PARTS_VERSION && h->part_bytes >= 4096 && h->part_bytes <= RADOS_DATA_MAX &&
		  h->total > 0 && h->total <= STORE_RADOS_PARTS_TOTAL_MAX &&
		  h->nparts == (h->total + h->part_bytes - 1) / h->part_bytes;
	return ok ? 0
		  : error_set(EIO, "%s/snapshots/%s: a manifest in parts whose head does not hold together "
				   "(version %u, %u parts of %llu bytes for %llu)",
			      s->dir, name, h->version, h->nparts, (unsigned long long)h->part_bytes,
			      (unsigned long long)h->total);
}

/* Manifest file @name, whose head is @h: its parts joined and checked. */
static int store_rados_view_parts(struct store *s, const char *name, const struct store_rados_parts *h,
				  struct store_view *v)
{
	int r = store_rados_parts_check(s, name, h);
	if (r)
		return r;
	uint8_t *data = malloc(h->total);
	if (!data)
		return error_set(ENOMEM, "%s/snapshots/%s: no memory for %llu bytes", s->dir, name,
				 (unsigned long long)h->total);
	for (uint32_t i = 0; !r && i < h->nparts; i++) {
		char oid[STORE_NAME_MAX + 96];
		store_rados_part_oid(name, h->tag, i, oid, sizeof(oid));
		uint64_t off = (uint64_t)i * h->part_bytes;
		size_t n = (size_t)(h->total - off < h->part_bytes ? h->total - off : h->part_bytes), got = 0;
		r = rados_conn_read(store_rados_of(s)->c, oid, 0, data + off, n, &got);
		if (r == -ENOENT)
			r = error_set(EIO, "%s/snapshots/%s: part %u of %u is missing (%s)", s->dir, name, i, h->nparts,
				      oid + strlen(folder_prefix[STORE_SNAPSHOTS]));
		else if (!r && got != n)
			r = error_set(EIO, "%s/snapshots/%s: part %u of %u is %zu bytes short", s->dir, name, i, h->nparts,
				      n - got);
	}
	if (!r && XXH3_64bits(data, h->total) != h->hash)
		r = error_set(EIO, "%s/snapshots/%s: its parts are not the bytes its head was written with", s->dir, name);
	if (r) {
		free(data);
		return r;
	}
	*v = (struct store_view){data, h->total};
	return 0;
}

/* Manifests are read whole into memory; packs are read a page at a time (-ENOTSUP). */
static int store_rados_view(struct store *s, enum store_folder f, const char *name, struct store_view *v)
{
	*v = (struct store_view){0};
	if (f == STORE_PACKS)
		return -ENOTSUP;
	uint64_t size;
	int r = store_rados_stat(s, f, name, true, NULL, &size);
	if (r == -ENOENT)
		return error_set(ENOENT, "%s/%s%s: No such file or directory", s->dir, folder_prefix[f], name);
	if (r || !size)
		return r;
	uint8_t *data = size <= RADOS_DATA_MAX * 4ull ? malloc(size) : NULL;
	if (!data)
		return error_set(ENOMEM, "%s/%s%s: no memory for %llu bytes", s->dir, folder_prefix[f], name,
				 (unsigned long long)size);
	for (uint64_t off = 0; !r && off < size; off += RADOS_DATA_MAX) {
		size_t n = size - off < RADOS_DATA_MAX ? (size_t)(size - off) : RADOS_DATA_MAX;
		r = store_rados_read(s, f, name, off, data + off, n);
	}
	struct store_rados_parts h;
	if (!r && f == STORE_SNAPSHOTS && size == sizeof(h) && memcmp(data, STORE_RADOS_PARTS_MAGIC, 8) == 0) {
		memcpy(&h, data, sizeof(h));
		free(data);
		return store_rados_view_parts(s, name, &h, v);
	}
	if (r) {
		free(data);
		return r;
	}
	*v = (struct store_view){data, size};
	return 0;
}

static void store_rados_unview(struct store_view *v)
{
	free((void *)v->data);
	*v = (struct store_view){0};
}

/* The parts head manifest file @name holds now, if it is one: 1 (in *h), 0 not, -errno. */
static int store_rados_head(struct store *s, const char *name, struct store_rados_parts *h)
{
	uint64_t size = 0;
	int r = store_rados_stat(s, STORE_SNAPSHOTS, name, false, NULL, &size);
	if (r == -ENOENT || (!r && size != sizeof(*h)))
		return 0;
	if (!r)
		r = store_rados_read(s, STORE_SNAPSHOTS, name, 0, h, sizeof(*h));
	if (r == -ENOENT) {
		error_clear();
		return 0;
	}
	return r ? r : memcmp(h->magic, STORE_RADOS_PARTS_MAGIC, 8) == 0 && store_rados_parts_check(s, name, h) == 0;
}

/* The backend's stat: a manifest in parts is as large as its parts joined. */
static int store_rados_stat_joined(struct store *s, enum store_folder f, const char *name, bool contents,
				   uint64_t *tag, uint64_t *size)
{
	int r = store_rados_stat(s, f, name, contents, tag, size);
	struct store_rados_parts h;
	if (!r && size && f == STORE_SNAPSHOTS && *size == sizeof(h)) {
		if (store_rados_head(s, name, &h) > 0)
			*size = h.total;
		error_clear(); /* a head that cannot be read now is named when it is opened */
	}
	return r;
}

/* Remove the parts of head @h of file @name: what cannot be, gc removes. */
static void store_rados_remove_parts(struct store *s, const char *name, const struct store_rados_parts *h)
{
	for (uint32_t i = 0; i < h->nparts; i++) {
		char oid[STORE_NAME_MAX + 96];
		store_rados_part_oid(name, h->tag, i, oid, sizeof(oid));
		if (rados_conn_remove(store_rados_of(s)->c, oid) != 0)
			error_clear();
	}
}

/* Manifest file @name of @len bytes at @data, too large for one write: its parts, written
 * as new objects, and in *h the head naming them, which the caller writes (the one atomic
 * step). 0, or -errno with a message and none of the parts left. */
static int store_rados_put_parts(struct store *s, const char *name, const uint8_t *data, size_t len,
				 struct store_rados_parts *h)
{
	uint64_t part = s->manifest_part ? s->manifest_part : RADOS_DATA_MAX;
	/* Random, so that two writers (of two hosts) never name the same parts. */
	uint64_t tag = 0, seed[2] = {clock_monotonic_ns(), (uint64_t)getpid()};
	if (getrandom(&tag, sizeof(tag), 0) != (ssize_t)sizeof(tag))
		tag = XXH3_64bits(seed, sizeof(seed));
	*h = (struct store_rados_parts){.version = STORE_RADOS_PARTS_VERSION, .nparts = (uint32_t)((len + part - 1) / part),
					.total = len, .part_bytes = part, .tag = tag, .hash = XXH3_64bits(data, len)};
	memcpy(h->magic, STORE_RADOS_PARTS_MAGIC, 8);
	int r = store_rados_parts_check(s, name, h);
	uint32_t written = 0;
	for (; !r && written < h->nparts; written++) {
		char oid[STORE_NAME_MAX + 96];
		store_rados_part_oid(name, h->tag, written, oid, sizeof(oid));
		uint64_t off = (uint64_t)written * part;
		r = rados_conn_write_full(store_rados_of(s)->c, oid, data + off, len - off < part ? len - off : part, true);
	}
	if (r) {
		struct store_rados_parts cut = *h;
		cut.nparts = written;
		store_rados_remove_parts(s, name, &cut);
	}
	return r;
}

/* One atomic write_full: the pieces joined first. A manifest too large for one goes in
 * parts, its head written last; one replacing a head in parts has those parts go after. */
static int store_rados_write(struct store *s, enum store_folder f, const char *name, const struct iovec *iov,
			     unsigned n, bool exclusive)
{
	char oid[STORE_NAME_MAX + 16];
	store_rados_oid(f, name, oid, sizeof(oid));
	size_t len = 0;
	for (unsigned i = 0; i < n; i++)
		len += iov[i].iov_len;
	uint64_t part = s->manifest_part ? s->manifest_part : RADOS_DATA_MAX;
	bool parts = f == STORE_SNAPSHOTS && len > part;
	if (len > RADOS_DATA_MAX && !parts)
		return error_set(EFBIG, "%s/%s: %zu bytes are more than one RADOS write takes (%u)", s->dir, oid, len,
				 RADOS_DATA_MAX);
	if (parts && len > STORE_RADOS_PARTS_TOTAL_MAX)
		return error_set(EFBIG, "%s/%s: a manifest of %zu bytes is more than a RADOS store keeps (%llu)", s->dir,
				 oid, len, STORE_RADOS_PARTS_TOTAL_MAX);
	uint8_t *data = malloc(len ? len : 1);
	if (!data)
		return error_set(ENOMEM, "no memory to write %s/%s", s->dir, oid);
	size_t at = 0;
	for (unsigned i = 0; i < n; i++) {
		if (!iov[i].iov_len)
			continue; /* an empty piece may have no address */
		memcpy(data + at, iov[i].iov_base, iov[i].iov_len);
		at += iov[i].iov_len;
	}
	struct store_rados_parts old, h;
	int had = f == STORE_SNAPSHOTS && !exclusive ? store_rados_head(s, name, &old) : 0;
	int r = had < 0 ? had : 0;
	bool put = !r && parts && (r = store_rados_put_parts(s, name, data, len, &h)) == 0;
	if (!r)
		r = rados_conn_write_full(store_rados_of(s)->c, oid, parts ? (const void *)&h : data,
					  parts ? sizeof(h) : len, exclusive);
	free(data);
	if (r && put) {
		char why[512];
		snprintf(why, sizeof(why), "%s", error_message());
		store_rados_remove_parts(s, name, &h); /* the head was not written: its parts go */
		error_set(-r, "%s", why);
	}
	if (r == -EEXIST)
		return error_set(EEXIST, "%s/%s exists already", s->dir, oid);
	if (!r && had > 0 && !(parts && old.tag == h.tag))
		store_rados_remove_parts(s, name, &old);
	return r;
}

static int store_rados_remove(struct store *s, enum store_folder f, const char *name)
{
	char oid[STORE_NAME_MAX + 16];
	store_rados_oid(f, name, oid, sizeof(oid));
	struct store_rados_parts h;
	int had = f == STORE_SNAPSHOTS ? store_rados_head(s, name, &h) : 0;
	if (had < 0)
		return had;
	int r = rados_conn_remove(store_rados_of(s)->c, oid);
	if (r == -ENOENT)
		error_clear();
	if (!r && had > 0)
		store_rados_remove_parts(s, name, &h); /* after their head: never a head without them */
	return r;
}

/* The parts head @entry names, gathered as store_rados_collect gathers names. */
static int store_rados_sweep_head(struct store *s, const char *entry, void *arg)
{
	struct store_rados_parts h;
	int had = store_rados_head(s, entry, &h);
	for (uint32_t i = 0; had > 0 && i < h.nparts; i++) {
		char oid[STORE_NAME_MAX + 96];
		store_rados_part_oid(entry, h.tag, i, oid, sizeof(oid));
		store_rados_collect(arg, oid);
	}
	return had < 0 ? had : 0;
}

static int store_rados_name_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* gc, the store held alone: remove the parts no head names (an upload cut short, a head
 * removed or replaced before its parts were). */
static int store_rados_sweep(struct store *s)
{
	size_t skip = strlen(folder_prefix[STORE_SNAPSHOTS]);
	struct store_rados_names named = {.skip = skip}, l = {.skip = skip};
	int r = store_rados_each(s, STORE_SNAPSHOTS, store_rados_sweep_head, &named);
	char prefix[64];
	snprintf(prefix, sizeof(prefix), "%s%s", folder_prefix[STORE_SNAPSHOTS], STORE_RADOS_PART_PREFIX);
	if (!r)
		r = rados_conn_list(store_rados_of(s)->c, prefix, store_rados_collect, &l);
	if (!r && (named.failed || l.failed))
		r = error_set(ENOMEM, "no memory to sweep %s", s->dir);
	if (named.n)
		qsort(named.v, named.n, sizeof(*named.v), store_rados_name_cmp);
	for (size_t i = 0; !r && i < l.n; i++) {
		if (named.n && bsearch(&l.v[i], named.v, named.n, sizeof(*named.v), store_rados_name_cmp))
			continue;
		char oid[STORE_NAME_MAX + 96];
		snprintf(oid, sizeof(oid), "%s%s", folder_prefix[STORE_SNAPSHOTS], l.v[i]);
		if ((r = rados_conn_remove(store_rados_of(s)->c, oid)) == -ENOENT) {
			error_clear();
			r = 0;
		}
	}
	store_rados_names_free(&named);
	store_rados_names_free(&l);
	return r;
}

static int store_rados_flush(struct store *s, enum store_folder f)
{
	(void)s;
	(void)f;
	return 0; /* every acknowledged change is durable */
}

static int store_rados_create(struct store *s, enum store_folder f, const char *name, struct store_file **out)
{
	struct store_file *file = calloc(1, sizeof(*file));
	if (!file)
		return error_set(ENOMEM, "no memory for a store file");
	file->s = s;
	store_rados_oid(f, name, file->oid, sizeof(file->oid));
	int r = rados_conn_write_full(store_rados_of(s)->c, file->oid, "", 0, true);
	if (r) {
		if (r == -EEXIST)
			error_clear();
		free(file);
		return r;
	}
	*out = file;
	return 0;
}

static int store_rados_append(struct store_file *file, const void *data, size_t len)
{
	return rados_conn_append(store_rados_of(file->s)->c, file->oid, data, len);
}

static int store_rados_read_back(struct store_file *file, uint64_t off, void *buf, size_t len)
{
	size_t got = 0;
	int r = rados_conn_read(store_rados_of(file->s)->c, file->oid, off, buf, len, &got);
	if (!r && got != len)
		r = error_set(EIO, "cannot read back %s/%s", file->s->dir, file->oid);
	return r;
}

static int store_rados_finish(struct store_file *file)
{
	(void)file;
	return 0; /* every append was durable when acknowledged */
}

static void store_rados_discard(struct store_file *file, bool remove)
{
	if (!file)
		return;
	if (remove && rados_conn_remove(store_rados_of(file->s)->c, file->oid) != 0)
		error_clear(); /* a leftover gc removes */
	free(file);
}

static int store_rados_pin(struct store *s, const char *name, const char *holder, int *token)
{
	struct store_rados *r = store_rados_of(s);
	*token = -1;
	int slot = 0;
	while (slot < STORE_RADOS_PINS_MAX && r->pins[slot].used)
		slot++;
	if (slot == STORE_RADOS_PINS_MAX)
		return error_set(EMFILE, "cannot pin snapshot '%s' in %s: this handle holds %d pins already", name, s->dir,
				 STORE_RADOS_PINS_MAX);
	struct store_rados_pin *p = &r->pins[slot];
	snprintf(p->oid, sizeof(p->oid), "pins/%s", name);
	snprintf(p->cookie, sizeof(p->cookie), "pin-%d-%d", (int)getpid(), slot);
	int err = rados_conn_lock(r->c, p->oid, false, p->cookie, holder, STORE_LOCK_WAIT_S * 1000u);
	if (err)
		return error_set(-err, "cannot pin snapshot '%s' in %s: %s", name, s->dir, error_message());
	rados_conn_share_with_forks(r->c, p->oid, p->cookie); /* a forked VM runs from it too */
	p->used = true;
	*token = slot;
	return 0;
}

static void store_rados_unpin(struct store *s, int token)
{
	struct store_rados *r = store_rados_of(s);
	if (token < 0 || token >= STORE_RADOS_PINS_MAX || !r->pins[token].used)
		return;
	if (rados_conn_unlock(r->c, r->pins[token].oid, r->pins[token].cookie) != 0)
		error_clear(); /* lost already */
	r->pins[token].used = false;
}

struct store_rados_pinned {
	char *holder;
	size_t len;
	bool found;
};

static void store_rados_locker(void *arg, const struct rados_locker *l)
{
	struct store_rados_pinned *p = arg;
	if (p->found)
		return;
	p->found = true;
	if (p->holder)
		snprintf(p->holder, p->len, "%s", l->description[0] ? l->description : l->client);
	for (char *c = p->holder; c && *c; c++)
		if (*c < ' ' || *c > '~')
			*c = '?'; /* the holder's words are quoted in one line of text */
}

/* Pins lapse with their holders (the lock's lease): there is nothing stale to sweep. */
static int store_rados_pinned(struct store *s, const char *name, char *holder, size_t len)
{
	if (!name)
		return 0;
	char oid[STORE_NAME_MAX + 8];
	snprintf(oid, sizeof(oid), "pins/%s", name);
	struct store_rados_pinned p = {.holder = holder, .len = len};
	int r = rados_conn_lockers(store_rados_of(s)->c, oid, store_rados_locker, &p);
	if (r == -ENOENT) {
		error_clear();
		return 0;
	}
	return r ? r : p.found;
}

static bool store_rados_is_at(struct store *s, const char *where)
{
	char name[sizeof(store_rados_of(s)->name)];
	bool same = store_is_rados(where) && store_locate(where, name, sizeof(name)) == 0 &&
		    strcmp(name, store_rados_of(s)->name) == 0;
	error_clear();
	return same;
}

static void store_rados_close(struct store *s)
{
	struct store_rados *r = store_rados_of(s);
	if (!r)
		return;
	rados_conn_close(r->c);
	free(r);
	s->priv = NULL;
}

static const struct store_backend store_rados_backend = {
	.lock = store_rados_lock,
	.unlock = store_rados_unlock,
	.forget = store_rados_forget,
	.each = store_rados_each,
	.exists = store_rados_exists,
	.stat = store_rados_stat_joined,
	.view = store_rados_view,
	.unview = store_rados_unview,
	.read = store_rados_read,
	.write = store_rados_write,
	.remove = store_rados_remove,
	.sweep = store_rados_sweep,
	.flush = store_rados_flush,
	.create = store_rados_create,
	.append = store_rados_append,
	.read_back = store_rados_read_back,
	.finish = store_rados_finish,
	.discard = store_rados_discard,
	.pin = store_rados_pin,
	.unpin = store_rados_unpin,
	.pinned = store_rados_pinned,
	.is_at = store_rados_is_at,
	.close = store_rados_close,
};

int store_rados_open(struct store *s, bool create, bool read_only)
{
	(void)create;    /* a pool is made by its cluster's administrator; a namespace needs no making */
	(void)read_only; /* writes are refused above (store_writable) */
	char pool[STORE_RADOS_NAME_MAX + 1], ns[STORE_RADOS_NAME_MAX + 1];
	int r = store_rados_parse(s->dir, pool, ns);
	if (r)
		return r;
	struct store_rados *d = calloc(1, sizeof(*d));
	if (!d)
		return error_set(ENOMEM, "no memory for the store");
	snprintf(d->name, sizeof(d->name), "%s%s/%s", STORE_RADOS_SCHEME, pool, ns);
	static unsigned handles;
	snprintf(d->lock_cookie, sizeof(d->lock_cookie), "store-%d-%u", (int)getpid(),
		 __atomic_add_fetch(&handles, 1, __ATOMIC_RELAXED));
	r = rados_conn_open(pool, ns, NULL, getenv("VMM_RADOS_CLIENT"), &d->c);
	if (r) {
		free(d);
		return error_set(-r, "cannot open store %s: %s", s->dir, error_message());
	}
	s->priv = d;
	s->backend = &store_rados_backend;
	return 0;
}

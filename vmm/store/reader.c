/* store_snapshot_*: a snapshot and its parents open for reading (restore). See store.h. */
#include "vmm/store/store_impl.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#include "vmm/error.h"

/* Pages of packs read rather than mapped, fetched a run at a time by store_snapshot_prefetch
 * and kept for the page calls that follow: direct-mapped by page number. */
struct snapshot_cache {
	pthread_mutex_t lock;
	uint64_t key[STORE_PREFETCH_PAGES];        /* (lock) page number + 1, 0: empty */
	uint8_t page[STORE_PREFETCH_PAGES][STORE_PAGE]; /* (lock) */
};

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
		pack_file_name(need[k].id, name);
		struct store_view v = {0};
		uint64_t size = 0;
		r = s->read_packs ? -ENOTSUP : s->backend->view(s, STORE_PACKS, name, &v);
		/* A backend that reads packs a page at a time (no mapping): there it must be. */
		if (r == -ENOTSUP) {
			error_clear();
			r = s->backend->stat(s, STORE_PACKS, name, false, NULL, &size);
			if (r == -ENOENT)
				r = error_set(ENOENT, "%s/packs/%s: No such file or directory", s->dir, name);
		} else {
			size = v.size;
		}
		if (r) {
			r = error_set(-r, "%s (snapshot '%s' needs it)", error_message(),
				      snap->chain[need[k].depth].hdr->name);
			break;
		}
		snap->packs[snap->npacks++] = (struct mapped_pack){need[k].id, v.data, size / STORE_PAGE, v};
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
	snap->pin_token = -1;
	snap->backend = s->backend;
	snap->store = s;
	/* Held until the packs are mapped: gc cannot move pages between. A delete holds the
	 * lock alone, so it runs wholly before this open or sees the pin made here. */
	int r = store_hold(s);
	if (r) {
		store_snapshot_close(snap);
		return r;
	}
	if (holder && (r = s->backend->pin(s, name, holder, &snap->pin_token)) != 0) {
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
	for (size_t i = 0; !r && !snap->cache && i < snap->npacks; i++) {
		if (snap->packs[i].map || !snap->packs[i].pages)
			continue;
		if (!(snap->cache = calloc(1, sizeof(*snap->cache))))
			r = error_set(ENOMEM, "no memory for the pages of snapshot '%s'", name);
		else
			pthread_mutex_init(&snap->cache->lock, NULL);
	}
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
	if (snap->pin_token >= 0)
		snap->backend->unpin(snap->store, snap->pin_token);
	for (unsigned i = 0; i < snap->depth; i++)
		manifest_unload(&snap->chain[i]);
	for (size_t i = 0; i < snap->npacks; i++)
		snap->backend->unview(&snap->packs[i].view);
	if (snap->cache) {
		pthread_mutex_destroy(&snap->cache->lock);
		free(snap->cache);
	}
	free(snap->packs);
	free(snap->chain);
	free(snap->dir);
	free(snap);
}

/* Where page @pindex of @snap is: *p its pack and *e its entry, both NULL for a zero page
 * (or one beyond the snapshot). 0 or -EIO with a message. */
static int snapshot_locate(const struct store_snapshot *snap, uint64_t pindex, const struct mapped_pack **p,
			   const struct manifest_entry **e)
{
	*p = NULL;
	*e = NULL;
	for (unsigned i = 0; i < snap->depth; i++) {
		int r = manifest_find(&snap->chain[i], pindex, e);
		if (r)
			return r;
		if (!*e)
			continue;
		if ((*e)->pack == STORE_ZERO_PACK) {
			*e = NULL;
			return 0;
		}
		struct mapped_pack key = {.id = (*e)->pack};
		*p = snap->npacks ? bsearch(&key, snap->packs, snap->npacks, sizeof(key), cmp_pack) : NULL;
		if (!*p || (*e)->slot >= (*p)->pages)
			return error_set(EIO, "%s/snapshots/%s.snap: page 0x%llx is in pack %08x slot %u, which is missing",
					 snap->dir, snap->chain[i].hdr->name, (unsigned long long)pindex, (*e)->pack,
					 (*e)->slot);
		return 0;
	}
	return 0;
}


/* Whether the cache holds page @pindex, copied into @buf when not NULL. */
static bool snapshot_cached(const struct store_snapshot *snap, uint64_t pindex, uint8_t *buf)
{
	struct snapshot_cache *c = snap->cache;
	if (!c)
		return false;
	size_t k = pindex % STORE_PREFETCH_PAGES;
	pthread_mutex_lock(&c->lock);
	bool there = c->key[k] == pindex + 1;
	if (there && buf)
		memcpy(buf, c->page[k], STORE_PAGE);
	pthread_mutex_unlock(&c->lock);
	return there;
}

int store_snapshot_page(const struct store_snapshot *snap, uint64_t pindex, const void **data, uint64_t *hash)
{
	*data = NULL;
	*hash = 0;
	const struct mapped_pack *p;
	const struct manifest_entry *e;
	int r = snapshot_locate(snap, pindex, &p, &e);
	if (r || !e)
		return r;
	*hash = e->hash;
	if (p->map) {
		*data = p->map + (size_t)e->slot * STORE_PAGE;
		return 0;
	}
	/* Read, not mapped: into this thread's buffer, good until its next call. */
	static _Thread_local uint8_t page[STORE_PAGE];
	*data = page;
	if (snapshot_cached(snap, pindex, page))
		return 0;
	char name[16];
	pack_file_name(p->id, name);
	r = snap->store->backend->read(snap->store, STORE_PACKS, name, (uint64_t)e->slot * STORE_PAGE, page, STORE_PAGE);
	if (r)
		*data = NULL;
	return r ? error_set(-r, "snapshot '%s', page 0x%llx: %s", snap->chain[0].hdr->name, (unsigned long long)pindex,
			     error_message())
		 : 0;
}

/* A page of a prefetch: where it is and which page it is. */
struct prefetch_page {
	uint32_t pack, slot;
	uint64_t pindex;
};

static int cmp_prefetch(const void *a, const void *b)
{
	const struct prefetch_page *x = a, *y = b;
	if (x->pack != y->pack)
		return x->pack < y->pack ? -1 : 1;
	return x->slot < y->slot ? -1 : x->slot > y->slot;
}

/* Read the @n pages of @v (one pack, consecutive slots) in one read into the cache. */
static void snapshot_fetch_run(struct store_snapshot *snap, const struct prefetch_page *v, size_t n, uint8_t *buf)
{
	char name[16];
	pack_file_name(v[0].pack, name);
	if (snap->store->backend->read(snap->store, STORE_PACKS, name, (uint64_t)v[0].slot * STORE_PAGE, buf,
				       n * STORE_PAGE) != 0) {
		error_clear(); /* the page calls say what is wrong */
		return;
	}
	struct snapshot_cache *c = snap->cache;
	pthread_mutex_lock(&c->lock);
	for (size_t i = 0; i < n; i++) {
		size_t k = v[i].pindex % STORE_PREFETCH_PAGES;
		c->key[k] = v[i].pindex + 1;
		memcpy(c->page[k], buf + i * STORE_PAGE, STORE_PAGE);
	}
	pthread_mutex_unlock(&c->lock);
}

void store_snapshot_prefetch(struct store_snapshot *snap, uint64_t first, uint64_t n)
{
	if (!snap->cache)
		return; /* every pack is mapped */
	if (n > STORE_PREFETCH_PAGES)
		n = STORE_PREFETCH_PAGES;
	struct prefetch_page *v = malloc(n * sizeof(*v));
	uint8_t *buf = malloc(n * STORE_PAGE);
	size_t m = 0;
	for (uint64_t pindex = first; v && buf && pindex < first + n; pindex++) {
		const struct mapped_pack *p;
		const struct manifest_entry *e;
		if (snapshot_locate(snap, pindex, &p, &e) != 0) {
			error_clear();
			continue;
		}
		if (e && !p->map && !snapshot_cached(snap, pindex, NULL))
			v[m++] = (struct prefetch_page){e->pack, e->slot, pindex};
	}
	if (m)
		qsort(v, m, sizeof(*v), cmp_prefetch);
	for (size_t i = 0; i < m;) {
		size_t run = 1;
		while (i + run < m && v[i + run].pack == v[i].pack && v[i + run].slot == v[i].slot + run)
			run++;
		snapshot_fetch_run(snap, v + i, run, buf);
		i += run;
	}
	free(v);
	free(buf);
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

int store_snapshot_identity(const struct store_snapshot *snap, uint8_t out[STORE_IDENTITY_BYTES])
{
	/* Per manifest of the chain: its page count and the checksum of its chunk table, which
	 * covers every entry's page number and XXH3-64 (the bytes a restore checks each page
	 * against). The head (VM state, names, pack ids) does not make the pages differ. */
	uint64_t *words = malloc(2 * (size_t)snap->depth * sizeof(*words));
	if (!words)
		return error_set(ENOMEM, "no memory for a snapshot's identity");
	for (unsigned d = 0; d < snap->depth; d++) {
		const struct manifest *m = &snap->chain[d];
		const struct manifest_trailer *t =
			(const void *)((const uint8_t *)m->view.data + m->view.size - sizeof(struct manifest_trailer));
		words[2 * d] = m->hdr->page_count;
		words[2 * d + 1] = t->chunks_checksum;
	}
	XXH128_canonical_t c;
	XXH128_canonicalFromHash(&c, XXH3_128bits(words, 2 * (size_t)snap->depth * sizeof(*words)));
	free(words);
	memcpy(out, c.digest, STORE_IDENTITY_BYTES);
	return 0;
}

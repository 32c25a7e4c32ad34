/* store_list and store_verify. See store.h. */
#include "vmm/store/store_impl.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "vmm/error.h"

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
		.manifest_bytes = m->view.size,
	};
	snprintf(info.name, sizeof(info.name), "%s", m->hdr->name);
	snprintf(info.parent, sizeof(info.parent), "%s", m->hdr->parent);
	snprintf(info.source, sizeof(info.source), "%s", m->source);
	snprintf(info.description, sizeof(info.description), "%s", m->description);
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

/* What verify_leftovers reports through, and the index's pack use. */
struct leftovers {
	void (*fn)(void *, bool, const char *);
	void *arg;
	struct store_verify_stats *stats;
	struct hmap live; /* pack id -> its pages some manifest refers to */
};

static int leftover_pack(struct store *s, const char *entry, void *arg)
{
	struct leftovers *lo = arg;
	uint32_t id;
	if (!pack_name_id(entry, &id))
		return 0;
	lo->stats->packs++;
	if (!hmap_get(&lo->live, id)) {
		lo->stats->leftovers++;
		report(lo->fn, lo->arg, false, "%s/packs/%s: no snapshot refers to it (vmm store gc removes it)", s->dir,
		       entry);
	}
	return 0;
}

static int leftover_manifest(struct store *s, const char *entry, void *arg)
{
	struct leftovers *lo = arg;
	char name[STORE_NAME_MAX + 1];
	if (manifest_is_temporary(entry)) {
		lo->stats->leftovers++;
		report(lo->fn, lo->arg, false, "%s/snapshots/%s: unfinished manifest of an interrupted write (gc removes it)",
		       s->dir, entry);
	} else if (strcmp(entry, ".") && strcmp(entry, "..") && !manifest_file_name(entry, name)) {
		report(lo->fn, lo->arg, false, "%s/snapshots/%s: not a manifest (ignored)", s->dir, entry);
	}
	return 0;
}

/* Report the leftovers of interrupted writers and foreign files: notes, not damage. A
 * folder that cannot be read has none to report (its manifests were reported already).
 * 0, or -ENOMEM with a message. */
static int verify_leftovers(struct store *s, void (*fn)(void *, bool, const char *), void *arg,
			    struct store_verify_stats *stats)
{
	struct leftovers lo = {.fn = fn, .arg = arg, .stats = stats};
	if (index_live_pages(&s->index, &lo.live) != 0)
		return error_set(ENOMEM, "no memory to verify %s", s->dir);
	if (store_each_entry(s, STORE_PACKS, leftover_pack, &lo) != 0)
		error_clear();
	if (store_each_entry(s, STORE_SNAPSHOTS, leftover_manifest, &lo) != 0)
		error_clear();
	hmap_fini(&lo.live);
	return 0;
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
	r = verify_leftovers(s, fn, arg, stats);
	store_release(s);
	return r ? r : problems;
}

/* One manifest: read and checked, or written atomically. See format.h and store_impl.h. */
#include "vmm/store/store_impl.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>
#include <xxhash.h>

#include "vmm/error.h"
#include "vmm/file_io.h"

void manifest_unload(struct manifest *m)
{
	if (m->unview)
		m->unview(&m->view);
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
 * Check the manifest at @path (shown in errors), whose bytes m->view holds, everything but
 * the entries: sizes, magic numbers, version, names (@expect_name: the name its file gives
 * it), the head's and the chunk table's checksums, the pack table and the chunk table. Work
 * in proportion to the state, the packs and the chunks, never to the pages.
 */
static int manifest_check_view(const char *path, const char *expect_name, struct manifest *m)
{
	uint64_t size = m->view.size;
	if (size < 12)
		return error_set(EIO, "%s: truncated manifest (%llu bytes)", path, (unsigned long long)size);
	const void *map = m->view.data;
	const struct manifest_header *h = map;
	struct manifest_layout l;
	int r = 0;
	if (memcmp(h->magic, MANIFEST_MAGIC, 8) != 0)
		r = error_set(EIO, "%s: not a vmm snapshot manifest (bad magic)", path);
	else if (h->version != MANIFEST_VERSION && h->version != 2)
		r = error_set(EIO, "%s: manifest version %u; this vmm reads versions 2 and %u", path, h->version,
			      MANIFEST_VERSION);
	else if (size < MANIFEST_HEADER_V2_SIZE + sizeof(struct manifest_trailer))
		r = error_set(EIO, "%s: truncated manifest (%llu bytes)", path, (unsigned long long)size);
	else if (h->header_size != (h->version == 2 ? MANIFEST_HEADER_V2_SIZE : sizeof(*h)))
		r = error_set(EIO, "%s: malformed manifest header", path);
	else if (size < h->header_size + sizeof(struct manifest_trailer))
		r = error_set(EIO, "%s: truncated manifest (%llu bytes)", path, (unsigned long long)size);
	else if ((h->flags & ~MANIFEST_COMPLETE) || h->chunk_entries == 0 ||
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
	else if (h->version > 2 && (!store_text_valid(h->source, sizeof(h->source)) ||
				    !store_text_valid(h->description, sizeof(h->description))))
		r = error_set(EIO, "%s: malformed snapshot source or description", path);
	if (r)
		goto err;
	m->hdr = h;
	m->source = h->version > 2 ? h->source : "";
	m->description = h->version > 2 ? h->description : "";
	m->state = base + h->header_size;
	m->packs = (const void *)(base + l.packs_off);
	m->entries = (const void *)(base + l.entries_off);
	m->nentries = h->entry_count;
	m->chunks = (const void *)(base + l.chunks_off);
	m->nchunks = l.nchunks;
	for (uint32_t i = 0; i < h->pack_count; i++) {
		uint32_t id = m->packs[i];
		if ((i && id <= m->packs[i - 1]) || id == STORE_ZERO_PACK || id == PACK_ID_RESERVED) {
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
const struct manifest_entry *manifest_chunk_entries(const struct manifest *m, uint64_t k, uint64_t *n)
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
int manifest_check_chunk(const struct manifest *m, uint64_t k)
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
int manifest_check_all(const struct manifest *m)
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
int manifest_find(const struct manifest *m, uint64_t pindex, const struct manifest_entry **out)
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

/* Open manifest @name of @s (see manifest_check_view): entries are checked later. */
int manifest_open(struct store *s, const char *name, struct manifest *m)
{
	char file[STORE_NAME_MAX + 8], path[4200];
	snprintf(file, sizeof(file), "%s.snap", name);
	memset(m, 0, sizeof(*m));
	m->dir = s->dir;
	int r = s->backend->view(s, STORE_SNAPSHOTS, file, &m->view);
	if (r)
		return r == -ENOENT ? error_set(ENOENT, "no snapshot '%s' in %s", name, s->dir) : r;
	m->unview = s->backend->unview;
	snprintf(path, sizeof(path), "%s/snapshots/%s", s->dir, file);
	return manifest_check_view(path, name, m); /* unloads on failure */
}

/* Open manifest @name and check all its entries. */
int manifest_load(struct store *s, const char *name, struct manifest *m)
{
	int r = manifest_open(s, name, m);
	if (!r && (r = manifest_check_all(m)) != 0)
		manifest_unload(m);
	return r;
}

uint64_t manifest_merge(struct manifest_layer *layers, unsigned nlayers, bool drop_zero, struct manifest_entry *out)
{
	uint64_t count = 0;
	for (;;) {
		/* The lowest page any layer has next; the first layer having it (the one on top)
		 * says what it is, the others' entries for it are covered. */
		const struct manifest_entry *best = NULL;
		for (unsigned k = 0; k < nlayers; k++) {
			const struct manifest_layer *l = &layers[k];
			if (l->next < l->count && (!best || l->entries[l->next].pindex < best->pindex))
				best = &l->entries[l->next];
		}
		if (!best)
			return count;
		uint64_t pindex = best->pindex;
		for (unsigned k = 0; k < nlayers; k++) {
			struct manifest_layer *l = &layers[k];
			if (l->next < l->count && l->entries[l->next].pindex == pindex)
				l->next++;
		}
		if (!drop_zero || best->pack != STORE_ZERO_PACK)
			out[count++] = *best;
	}
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
 * and @entries atomically and durably (store_backend.write); @exclusive: a new snapshot,
 * refused when its name is taken meanwhile.
 */
int manifest_write(struct store *s, struct manifest_header *h, const void *state,
		   const struct manifest_entry *entries, bool exclusive)
{
	char file[STORE_NAME_MAX + 8];
	snprintf(file, sizeof(file), "%s.snap", h->name);
	memcpy(h->magic, MANIFEST_MAGIC, 8);
	h->version = MANIFEST_VERSION;
	h->header_size = sizeof(*h);
	h->chunk_entries = MANIFEST_CHUNK;
	uint32_t *packs = NULL;
	struct manifest_chunk *chunks = NULL;
	XXH3_state_t *xs = NULL;
	struct manifest_layout l;
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

	struct iovec iov[8];
	unsigned n = 0;
	for (int i = 0; i < 7; i++)
		iov[n++] = (struct iovec){(void *)parts[i], lens[i]};
	iov[n++] = (struct iovec){&t, sizeof(t)};
	r = s->backend->write(s, STORE_SNAPSHOTS, file, iov, n, exclusive);
out:
	XXH3_freeState(xs);
	free(chunks);
	free(packs);
	return r;
}

void manifest_header_copy(const struct manifest *m, struct manifest_header *out)
{
	memset(out, 0, sizeof(*out));
	memcpy(out, m->hdr, MANIFEST_HEADER_V2_SIZE);
	snprintf(out->source, sizeof(out->source), "%s", m->source);
	snprintf(out->description, sizeof(out->description), "%s", m->description);
}

int store_manifest_seal(void *image, size_t len)
{
	struct manifest_header *h = image;
	if (len < MANIFEST_HEADER_V2_SIZE + sizeof(struct manifest_trailer) ||
	    (h->header_size != MANIFEST_HEADER_V2_SIZE && h->header_size != sizeof(*h)) ||
	    len < h->header_size + sizeof(struct manifest_trailer) || h->chunk_entries == 0 ||
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


/* Snapshot name from a file name "NAME.snap"; false for anything else (temporaries too). */
bool manifest_file_name(const char *file, char name[STORE_NAME_MAX + 1])
{
	size_t n = strlen(file);
	if (n < 6 || n - 5 > STORE_NAME_MAX || strcmp(file + n - 5, ".snap") != 0)
		return false;
	memcpy(name, file, n - 5);
	name[n - 5] = '\0';
	return store_name_valid(name);
}

bool manifest_is_temporary(const char *file)
{
	return file[0] == '.' && strstr(file, ".tmp") != NULL;
}

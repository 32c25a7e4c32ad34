/* The deduplicating page store. See page_store.h. */
#include "mmu/page_store.h"

#include <assert.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>
#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#include "mmu/hmap.h"
#include "mmu/pool.h"
#include "mmu/vm_param.h"

struct ps_entry {
	uint64_t hash;   /* (s) key of the bytes */
	uint8_t *data;   /* (s) the page, NULL when the slot is free */
	uint32_t refs;   /* (s) references held */
	page_ref_t next; /* (s) next entry with the same hash, or next free slot */
};

struct page_store {
	page_store_hash_t *hash;  /* (c) */
	struct pool pages;        /* (s) page bytes */
	struct hmap index;        /* (s) hash -> first entry reference (as a pointer) */
	struct ps_entry *entries; /* (s) indexed by reference; [0] is the zero page's */
	uint32_t nentries;        /* (s) slots in use or free */
	uint32_t cap;             /* (s) slots allocated */
	page_ref_t free;          /* (s) free slot list, 0 = none */
	struct page_store_stats stats; /* (s) */
};

static const uint8_t page_store_zero[VM_PAGE_SIZE] __attribute__((aligned(64)));

static uint64_t page_store_xxh3(const void *data, size_t len)
{
	return XXH3_64bits(data, len);
}

/* Copy a new page into the store. Stored pages are written once and read seldom, so on x86
 * the copy streams past the cache (no read-for-ownership of the cold destination). No fence
 * per page (it would wait for the page to reach memory): the storing thread always sees its
 * own stores, and another thread gets here only through the owner's lock, whose locked
 * instructions drain write-combining buffers. */
static void page_store_copy(void *dst, const void *src)
{
#if defined(__SSE2__)
	__m128i *o = dst;
	const __m128i *in = src;
	for (size_t k = 0; k < VM_PAGE_SIZE / 16; k += 4) {
		__m128i a = _mm_loadu_si128(in + k), b = _mm_loadu_si128(in + k + 1);
		__m128i c = _mm_loadu_si128(in + k + 2), d = _mm_loadu_si128(in + k + 3);
		_mm_stream_si128(o + k, a);
		_mm_stream_si128(o + k + 1, b);
		_mm_stream_si128(o + k + 2, c);
		_mm_stream_si128(o + k + 3, d);
	}
#else
	memcpy(dst, src, VM_PAGE_SIZE);
#endif
}

int page_store_is_zero(const void *page)
{
	const uint64_t *w = page;
	uint64_t acc = 0;
	/* Or blocks together and stop at the first non-zero block: most pages differ early. */
	for (size_t i = 0; i < VM_PAGE_SIZE / 8; i += 8) {
		acc = w[i] | w[i + 1] | w[i + 2] | w[i + 3] | w[i + 4] | w[i + 5] | w[i + 6] | w[i + 7];
		if (acc)
			return 0;
	}
	return 1;
}

int page_store_create(page_store_hash_t *hash, struct page_store **out)
{
	struct page_store *s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	s->hash = hash ? hash : page_store_xxh3;
	pool_init(&s->pages, VM_PAGE_SIZE, 2u << 20);
	hmap_init(&s->index);
	s->nentries = 1; /* slot 0 is PAGE_STORE_ZERO */
	*out = s;
	return 0;
}

void page_store_destroy(struct page_store *s)
{
	if (!s)
		return;
	pool_fini(&s->pages);
	hmap_fini(&s->index);
	free(s->entries);
	free(s);
}

static struct ps_entry *page_store_entry(const struct page_store *s, page_ref_t ref)
{
	if (ref == PAGE_STORE_ZERO || ref >= s->nentries || !s->entries[ref].data)
		return NULL;
	return &s->entries[ref];
}

/* The stored page with @page's bytes among the chain starting at @head, or 0; with @count,
 * counts a collision when a page with the same hash but other bytes was met. */
static page_ref_t page_store_match(struct page_store *s, page_ref_t head, const void *page, bool count)
{
	page_ref_t ref = head;
	bool collided = false;
	for (; ref; ref = s->entries[ref].next) {
		if (memcmp(s->entries[ref].data, page, VM_PAGE_SIZE) == 0)
			break;
		collided = true;
	}
	if (collided && count)
		s->stats.collisions++;
	return ref;
}

static page_ref_t page_store_head(const struct page_store *s, uint64_t hash)
{
	return (page_ref_t)(uintptr_t)hmap_get(&s->index, hash);
}

static page_ref_t page_store_slot(struct page_store *s)
{
	if (s->free) {
		page_ref_t ref = s->free;
		s->free = s->entries[ref].next;
		return ref;
	}
	if (s->nentries >= s->cap) {
		uint32_t cap = s->cap ? s->cap * 2 : 1024;
		struct ps_entry *e = realloc(s->entries, cap * sizeof(*e));
		if (!e)
			return 0;
		memset(e + s->cap, 0, (cap - s->cap) * sizeof(*e));
		s->entries = e;
		s->cap = cap;
	}
	return s->nentries++;
}

int page_store_insert(struct page_store *s, const void *page, page_ref_t *ref)
{
	s->stats.inserts++;
	if (page_store_is_zero(page)) {
		s->stats.zero_pages++;
		*ref = PAGE_STORE_ZERO;
		return 0;
	}
	uint64_t hash = s->hash(page, VM_PAGE_SIZE);
	page_ref_t head = page_store_head(s, hash);
	page_ref_t hit = page_store_match(s, head, page, true);
	if (hit) {
		s->entries[hit].refs++;
		s->stats.hits++;
		s->stats.references++;
		*ref = hit;
		return 0;
	}
	page_ref_t r = page_store_slot(s);
	uint8_t *data = r ? pool_alloc(&s->pages) : NULL;
	if (!data) {
		if (r) {
			s->entries[r].next = s->free;
			s->free = r;
		}
		return -ENOMEM;
	}
	if (hmap_put(&s->index, hash, (void *)(uintptr_t)r) < 0) {
		pool_free(&s->pages, data);
		s->entries[r].next = s->free;
		s->free = r;
		return -ENOMEM;
	}
	page_store_copy(data, page);
	s->entries[r] = (struct ps_entry){.hash = hash, .data = data, .refs = 1, .next = head};
	s->stats.unique_pages++;
	s->stats.references++;
	*ref = r;
	return 0;
}

int page_store_find(struct page_store *s, const void *page, page_ref_t *ref)
{
	s->stats.lookups++;
	if (page_store_is_zero(page)) {
		s->stats.lookup_hits++;
		*ref = PAGE_STORE_ZERO;
		return 0;
	}
	page_ref_t hit = page_store_match(s, page_store_head(s, s->hash(page, VM_PAGE_SIZE)), page, false);
	if (!hit)
		return -ENOENT;
	s->stats.lookup_hits++;
	*ref = hit;
	return 0;
}

const void *page_store_lookup(const struct page_store *s, page_ref_t ref)
{
	if (ref == PAGE_STORE_ZERO)
		return page_store_zero;
	struct ps_entry *e = page_store_entry(s, ref);
	return e ? e->data : NULL;
}

int page_store_retain(struct page_store *s, page_ref_t ref)
{
	if (ref == PAGE_STORE_ZERO)
		return 0;
	struct ps_entry *e = page_store_entry(s, ref);
	if (!e)
		return -ENOENT;
	e->refs++;
	s->stats.references++;
	return 0;
}

int page_store_release(struct page_store *s, page_ref_t ref)
{
	if (ref == PAGE_STORE_ZERO)
		return 0;
	struct ps_entry *e = page_store_entry(s, ref);
	if (!e)
		return -ENOENT;
	assert(e->refs > 0);
	s->stats.references--;
	if (--e->refs)
		return 0;
	/* Unlink from the hash chain; the head moves in the index when it is the one going. */
	page_ref_t head = page_store_head(s, e->hash);
	if (head == ref) {
		if (e->next)
			hmap_put(&s->index, e->hash, (void *)(uintptr_t)e->next); /* replaces: no allocation */
		else
			hmap_del(&s->index, e->hash);
	} else {
		page_ref_t p = head;
		while (s->entries[p].next != ref)
			p = s->entries[p].next;
		s->entries[p].next = e->next;
	}
	pool_free(&s->pages, e->data);
	e->data = NULL;
	e->next = s->free;
	s->free = ref;
	s->stats.unique_pages--;
	return 0;
}

uint32_t page_store_refcount(const struct page_store *s, page_ref_t ref)
{
	struct ps_entry *e = page_store_entry(s, ref);
	return e ? e->refs : 0;
}

void page_store_stats(const struct page_store *s, struct page_store_stats *stats)
{
	*stats = s->stats;
}

/* The deduplicating page store. See page_store.h. */
#include "mmu/page_store.h"

#include <assert.h>
#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#define XXH_STATIC_LINKING_ONLY /* XXH3_generateSecret_fromSeed */
#include <xxhash.h>
#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#include "mmu/hmap.h"
#include "mmu/pool.h"
#include "mmu/vm_param.h"

#define PAGE_STORE_SECRET_SIZE 192 /* XXH3's default secret, XXH_SECRET_DEFAULT_SIZE */

struct ps_entry {
	uint64_t hash;   /* (s) key of the bytes */
	uint8_t *data;   /* (s) the page, NULL when the slot is free */
	uint32_t refs;   /* (s) references held */
	page_ref_t next; /* (s) next entry with the same hash, or next free slot */
};

struct page_store {
	page_store_hash_t *hash;  /* (c) */
	bool fused;               /* (c) the key is XXH3 and page_store_xxh3_copy computes it */
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

/* XXH3's 64-bit hash (xxHash 0.8, default secret, seed 0) of one 4 KiB page, computed in the
 * pass that copies the page to @dst: the page is read once instead of twice (hash, then copy).
 * The copy streams past the cache (stored pages are written once and read seldom, so no
 * read-for-ownership of the cold destination). No fence per page (it would wait for the page
 * to reach memory): the storing thread always sees its own stores, and another thread gets
 * here only through the owner's lock, whose locked instructions drain write-combining buffers.
 *
 * This is XXH3's long-input loop specialised to 4096 bytes: 64 stripes of 64 bytes in blocks
 * of 16, the accumulators scrambled after each full block; the last block is one stripe
 * short and ends with the page's last stripe under its own secret offset. The first
 * page_store_create compares it with the library, and stores hash with the library if they
 * ever differ. */
#if defined(__SSE2__)
#define PS_XXH_PRIME32_1 0x9E3779B1u
#define PS_XXH_PRIME32_2 0x85EBCA77u
#define PS_XXH_PRIME32_3 0xC2B2AE3Du
#define PS_XXH_PRIME64_1 0x9E3779B185EBCA87ull
#define PS_XXH_PRIME64_2 0xC2B2AE3D27D4EB4Full
#define PS_XXH_PRIME64_3 0x165667B19E3779F9ull
#define PS_XXH_PRIME64_4 0x85EBCA77C2B2AE63ull
#define PS_XXH_PRIME64_5 0x27D4EB2F165667C5ull
#define PS_XXH_STRIPE 64
#define PS_XXH_STRIPES_PER_BLOCK ((PAGE_STORE_SECRET_SIZE - PS_XXH_STRIPE) / 8)
#define PS_XXH_LAST_STRIPE_SECRET (PAGE_STORE_SECRET_SIZE - PS_XXH_STRIPE - 7)
#define PS_XXH_MERGE_SECRET 11

static uint64_t page_store_read64(const uint8_t *p)
{
	uint64_t v;
	memcpy(&v, p, sizeof(v));
	return v;
}

static uint64_t page_store_mul_fold(uint64_t a, uint64_t b)
{
	unsigned __int128 r = (unsigned __int128)a * b;
	return (uint64_t)r ^ (uint64_t)(r >> 64);
}

/* One 16-byte lane of a stripe: @acc after reading @data under @key. */
static inline __m128i page_store_xxh3_lane(__m128i acc, __m128i data, __m128i key)
{
	__m128i dk = _mm_xor_si128(data, key);
	__m128i product = _mm_mul_epu32(dk, _mm_shuffle_epi32(dk, _MM_SHUFFLE(0, 3, 0, 1)));
	return _mm_add_epi64(product, _mm_add_epi64(acc, _mm_shuffle_epi32(data, _MM_SHUFFLE(1, 0, 3, 2))));
}

/* One 16-byte lane of the scramble that ends a block. */
static inline __m128i page_store_xxh3_scramble(__m128i acc, __m128i key)
{
	const __m128i prime = _mm_set1_epi32((int)PS_XXH_PRIME32_1);
	__m128i dk = _mm_xor_si128(_mm_xor_si128(acc, _mm_srli_epi64(acc, 47)), key);
	__m128i hi = _mm_shuffle_epi32(dk, _MM_SHUFFLE(0, 3, 0, 1));
	return _mm_add_epi64(_mm_mul_epu32(dk, prime), _mm_slli_epi64(_mm_mul_epu32(hi, prime), 32));
}

static uint64_t page_store_xxh3_copy(void *dst, const void *src, const uint8_t *secret)
{
	/* The four accumulators are named, not an array, so that they stay in registers. */
	__m128i acc0 = _mm_set_epi64x((long long)PS_XXH_PRIME64_1, PS_XXH_PRIME32_3);
	__m128i acc1 = _mm_set_epi64x((long long)PS_XXH_PRIME64_3, (long long)PS_XXH_PRIME64_2);
	__m128i acc2 = _mm_set_epi64x(PS_XXH_PRIME32_2, (long long)PS_XXH_PRIME64_4);
	__m128i acc3 = _mm_set_epi64x(PS_XXH_PRIME32_1, (long long)PS_XXH_PRIME64_5);
	const __m128i *in = src;
	__m128i *out = dst;
	const unsigned nstripes = VM_PAGE_SIZE / PS_XXH_STRIPE;
	for (unsigned s = 0; s < nstripes; s++, in += 4, out += 4) {
		unsigned n = s % PS_XXH_STRIPES_PER_BLOCK;
		const __m128i *key =
			(const __m128i *)(secret + (s == nstripes - 1 ? PS_XXH_LAST_STRIPE_SECRET : n * 8));
		__m128i d0 = _mm_loadu_si128(in), d1 = _mm_loadu_si128(in + 1);
		__m128i d2 = _mm_loadu_si128(in + 2), d3 = _mm_loadu_si128(in + 3);
		_mm_stream_si128(out, d0);
		_mm_stream_si128(out + 1, d1);
		_mm_stream_si128(out + 2, d2);
		_mm_stream_si128(out + 3, d3);
		acc0 = page_store_xxh3_lane(acc0, d0, _mm_loadu_si128(key));
		acc1 = page_store_xxh3_lane(acc1, d1, _mm_loadu_si128(key + 1));
		acc2 = page_store_xxh3_lane(acc2, d2, _mm_loadu_si128(key + 2));
		acc3 = page_store_xxh3_lane(acc3, d3, _mm_loadu_si128(key + 3));
		if (n == PS_XXH_STRIPES_PER_BLOCK - 1 && s != nstripes - 1) {
			const __m128i *sk = (const __m128i *)(secret + PAGE_STORE_SECRET_SIZE - PS_XXH_STRIPE);
			acc0 = page_store_xxh3_scramble(acc0, _mm_loadu_si128(sk));
			acc1 = page_store_xxh3_scramble(acc1, _mm_loadu_si128(sk + 1));
			acc2 = page_store_xxh3_scramble(acc2, _mm_loadu_si128(sk + 2));
			acc3 = page_store_xxh3_scramble(acc3, _mm_loadu_si128(sk + 3));
		}
	}
	__m128i acc[4] = {acc0, acc1, acc2, acc3};
	uint64_t a[8];
	memcpy(a, acc, sizeof(a));
	uint64_t h = (uint64_t)VM_PAGE_SIZE * PS_XXH_PRIME64_1;
	for (int i = 0; i < 4; i++) {
		const uint8_t *k = secret + PS_XXH_MERGE_SECRET + 16 * i;
		h += page_store_mul_fold(a[2 * i] ^ page_store_read64(k), a[2 * i + 1] ^ page_store_read64(k + 8));
	}
	h ^= h >> 37;
	h *= 0x165667919E3779F9ull;
	return h ^ (h >> 32);
}
#endif

/* XXH3's default secret, and whether page_store_xxh3_copy agrees with the library: the
 * same for every store, worked out at the first page_store_create. */
static struct {
	_Alignas(16) uint8_t secret[PAGE_STORE_SECRET_SIZE];
	bool fused;
} page_store_xxh3_state;
static pthread_once_t page_store_xxh3_once = PTHREAD_ONCE_INIT;

/* Copy @src to @dst and return the store's key of it. */
static uint64_t page_store_hash_copy(const struct page_store *s, void *dst, const void *src)
{
#if defined(__SSE2__)
	uint64_t hash = page_store_xxh3_copy(dst, src, page_store_xxh3_state.secret);
	return s->fused ? hash : s->hash(src, VM_PAGE_SIZE);
#else
	memcpy(dst, src, VM_PAGE_SIZE);
	return s->hash(src, VM_PAGE_SIZE);
#endif
}

/* True when page_store_xxh3_copy agrees with the library (checked on one patterned page). */
static bool page_store_fused_agrees(const uint8_t *secret)
{
#if defined(__SSE2__)
	_Alignas(16) uint8_t page[VM_PAGE_SIZE];
	_Alignas(16) uint8_t copy[VM_PAGE_SIZE];
	for (size_t i = 0; i < VM_PAGE_SIZE; i++)
		page[i] = (uint8_t)(i * 131 + (i >> 8));
	return page_store_xxh3_copy(copy, page, secret) == XXH3_64bits(page, VM_PAGE_SIZE) &&
	       memcmp(copy, page, VM_PAGE_SIZE) == 0;
#else
	(void)secret;
	return false;
#endif
}

static void page_store_xxh3_init(void)
{
	XXH3_generateSecret_fromSeed(page_store_xxh3_state.secret, 0); /* seed 0: the default secret itself */
	page_store_xxh3_state.fused = page_store_fused_agrees(page_store_xxh3_state.secret);
}

int page_store_is_zero(const void *page)
{
	/* Or 64-byte blocks together and stop at the first non-zero one: most pages differ early.
	 * The page may be unaligned: words are read with memcpy, which compiles to plain loads. */
	const uint8_t *p = page;
	for (size_t i = 0; i < VM_PAGE_SIZE; i += 64) {
		uint64_t w[8];
		memcpy(w, p + i, sizeof(w));
		if (w[0] | w[1] | w[2] | w[3] | w[4] | w[5] | w[6] | w[7])
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
	pthread_once(&page_store_xxh3_once, page_store_xxh3_init);
	s->fused = !hash && page_store_xxh3_state.fused;
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
	/* The page is copied as it is hashed, into a page that is given back if it is a repeat:
	 * one pass over it for new pages; a repeat costs a wasted write instead of a second read. */
	page_ref_t r = page_store_slot(s);
	uint8_t *data = r ? pool_alloc(&s->pages) : NULL;
	uint64_t hash = data ? page_store_hash_copy(s, data, page) : s->hash(page, VM_PAGE_SIZE);
	page_ref_t head = page_store_head(s, hash);
	page_ref_t hit = page_store_match(s, head, page, true);
	if (hit || !data || hmap_put(&s->index, hash, (void *)(uintptr_t)r) < 0) {
		if (data)
			pool_free(&s->pages, data);
		if (r) {
			s->entries[r].next = s->free;
			s->free = r;
		}
		if (!hit)
			return -ENOMEM;
		s->entries[hit].refs++;
		s->stats.hits++;
		s->stats.references++;
		*ref = hit;
		return 0;
	}
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

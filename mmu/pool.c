/* Fixed-size item pools in page-aligned chunks. See pool.h. */
#include "mmu/pool.h"

#include <assert.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/mman.h>

#include "mmu/vm_param.h"

#if defined(__SANITIZE_ADDRESS__)
#define POOL_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define POOL_ASAN 1
#endif
#endif
#ifdef POOL_ASAN
#include <sanitizer/asan_interface.h>
#define POOL_POISON(p, n) ASAN_POISON_MEMORY_REGION((p), (n))
#define POOL_UNPOISON(p, n) ASAN_UNPOISON_MEMORY_REGION((p), (n))
#else
#define POOL_POISON(p, n) ((void)(p), (void)(n))
#define POOL_UNPOISON(p, n) ((void)(p), (void)(n))
#endif

/* The chunk header sits in the chunk's last bytes, so that page-sized items stay aligned. */
struct pool_chunk {
	struct pool_chunk *next;
	size_t bytes;
};

void pool_init(struct pool *pool, size_t item_size, size_t chunk_bytes)
{
	pool->item_size = (item_size + 15) & ~(size_t)15;
	size_t min = pool->item_size + sizeof(struct pool_chunk);
	if (chunk_bytes < min)
		chunk_bytes = min;
	chunk_bytes = (chunk_bytes + VM_PAGE_MASK) & ~(size_t)VM_PAGE_MASK;
	pool->chunk_items = (chunk_bytes - sizeof(struct pool_chunk)) / pool->item_size;
	pool->free = NULL;
	pool->nfree = pool->free_cap = 0;
	pool->bump = pool->bump_end = NULL;
	pool->chunks = NULL;
	pool->in_use = 0;
	pool->capacity = 0;
}

void pool_fini(struct pool *pool)
{
	struct pool_chunk *c = pool->chunks;
	while (c) {
		struct pool_chunk *next = c->next;
		size_t bytes = c->bytes;
		void *base = (char *)c + sizeof(*c) - bytes;
		POOL_UNPOISON(base, bytes);
		munmap(base, bytes);
		c = next;
	}
	free(pool->free);
	pool->chunks = NULL;
	pool->free = NULL;
	pool->nfree = pool->free_cap = 0;
	pool->bump = pool->bump_end = NULL;
	pool->in_use = 0;
	pool->capacity = 0;
}

#define POOL_HUGE ((size_t)2 << 20)

/* Chunks of whole huge pages are aligned to them and, with @huge, offered to transparent
 * huge pages: one TLB entry then covers 512 page buffers. */
static char *pool_map(size_t bytes, bool huge)
{
	if (bytes % POOL_HUGE) {
		char *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		return p == MAP_FAILED ? NULL : p;
	}
	char *raw = mmap(NULL, bytes + POOL_HUGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (raw == MAP_FAILED)
		return NULL;
	char *base = (char *)(((uintptr_t)raw + POOL_HUGE - 1) & ~(uintptr_t)(POOL_HUGE - 1));
	if (base > raw)
		munmap(raw, (size_t)(base - raw));
	if (base + bytes < raw + bytes + POOL_HUGE)
		munmap(base + bytes, (size_t)(raw + bytes + POOL_HUGE - (base + bytes)));
	if (huge)
		madvise(base, bytes, MADV_HUGEPAGE);
	return base;
}

static int pool_grow(struct pool *pool)
{
	/* Room on the stack for every item there will be, so that pool_free never fails. */
	size_t cap = pool->capacity + pool->chunk_items;
	if (cap > pool->free_cap) {
		void **v = realloc(pool->free, cap * sizeof(*v));
		if (!v)
			return -1;
		pool->free = v;
		pool->free_cap = cap;
	}
	size_t bytes = ((pool->chunk_items * pool->item_size + sizeof(struct pool_chunk)) + VM_PAGE_MASK) &
		       ~(size_t)VM_PAGE_MASK;
	char *base = pool_map(bytes, pool->chunks != NULL);
	if (!base)
		return -1;
	struct pool_chunk *c = (struct pool_chunk *)(base + bytes - sizeof(*c));
	c->next = pool->chunks;
	c->bytes = bytes;
	pool->chunks = c;
	pool->bump = base;
	pool->bump_end = base + pool->chunk_items * pool->item_size;
	POOL_POISON(base, pool->chunk_items * pool->item_size);
	pool->capacity += pool->chunk_items;
	return 0;
}

void *pool_alloc(struct pool *pool)
{
	void *item;
	if (pool->nfree) {
		item = pool->free[--pool->nfree];
	} else {
		if (pool->bump == pool->bump_end && pool_grow(pool) < 0)
			return NULL;
		item = pool->bump;
		pool->bump += pool->item_size;
	}
	POOL_UNPOISON(item, pool->item_size);
	pool->in_use++;
	return item;
}

void pool_free(struct pool *pool, void *item)
{
	assert(item && pool->in_use > 0 && pool->nfree < pool->free_cap);
	POOL_POISON(item, pool->item_size);
	pool->free[pool->nfree++] = item;
	pool->in_use--;
}

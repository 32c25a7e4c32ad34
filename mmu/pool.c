/* Fixed-size item pools in page-aligned chunks. See pool.h. */
#include "mmu/pool.h"

#include <assert.h>
#include <stdint.h>
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
	pool->chunks = NULL;
	pool->free = NULL;
	pool->in_use = 0;
	pool->capacity = 0;
}

static int pool_grow(struct pool *pool)
{
	size_t bytes = ((pool->chunk_items * pool->item_size + sizeof(struct pool_chunk)) + VM_PAGE_MASK) &
		       ~(size_t)VM_PAGE_MASK;
	char *base = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (base == MAP_FAILED)
		return -1;
	struct pool_chunk *c = (struct pool_chunk *)(base + bytes - sizeof(*c));
	c->next = pool->chunks;
	c->bytes = bytes;
	pool->chunks = c;
	/* Push in reverse so that items are handed out in address order. */
	for (size_t i = pool->chunk_items; i-- > 0;) {
		void **item = (void **)(base + i * pool->item_size);
		*item = pool->free;
		pool->free = item;
	}
	for (size_t i = 0; i < pool->chunk_items; i++)
		POOL_POISON(base + i * pool->item_size, pool->item_size);
	pool->capacity += pool->chunk_items;
	return 0;
}

void *pool_alloc(struct pool *pool)
{
	if (!pool->free && pool_grow(pool) < 0)
		return NULL;
	void **item = pool->free;
	POOL_UNPOISON(item, pool->item_size);
	pool->free = *item;
	pool->in_use++;
#ifndef POOL_ASAN
	/* The next item's link is read on the next allocation: fetch its line now. */
	if (pool->free)
		__builtin_prefetch(pool->free, 1);
#endif
	return item;
}

void pool_free(struct pool *pool, void *item)
{
	assert(item && pool->in_use > 0);
	void **p = item;
	*p = pool->free;
	pool->free = p;
	pool->in_use--;
	POOL_POISON((char *)item + sizeof(void *), pool->item_size - sizeof(void *));
}

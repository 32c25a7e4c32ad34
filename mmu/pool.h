/*
 * Fixed-size item pools carved out of page-aligned chunks (mmap), so that page buffers and
 * small bookkeeping structs never cost one malloc each. Items of VM_PAGE_SIZE bytes are
 * page-aligned. Freed items go on a free list and are reused first; then items are carved
 * from the newest chunk in address order (a bump pointer), so a chunk's memory is touched
 * only as far as items were ever handed out; chunks go back to the system only when the pool
 * is destroyed. The free list is a stack of pointers beside the items, so allocating and
 * freeing never touch an item's (possibly cold) memory. Chunks of whole 2 MiB after a
 * pool's first are aligned and offered to transparent huge pages (fewer TLB misses over page
 * buffers); the first is not, so that a pool that stays small costs only the pages it uses.
 * Under AddressSanitizer items not handed out are poisoned.
 *
 * Locking: none; a pool belongs to one vm_domain (or page store) and shares its lock.
 */
#ifndef MMU_POOL_H
#define MMU_POOL_H

#include <stddef.h>

struct pool_chunk;

struct pool {
	size_t item_size;          /* (c) bytes per item, a multiple of 16 */
	size_t chunk_items;        /* (c) items per chunk */
	void **free;               /* (p) stack of freed items */
	size_t nfree, free_cap;    /* (p) */
	char *bump, *bump_end;     /* (p) items of the newest chunk never handed out */
	struct pool_chunk *chunks; /* (p) every chunk, newest first */
	size_t in_use;             /* (p) items handed out */
	size_t capacity;           /* (p) items in all chunks */
};

/* Set up @pool for items of @item_size bytes (rounded up to 16), @chunk_bytes per chunk
 * (rounded up to a page, at least one item). Allocates nothing yet. */
void pool_init(struct pool *pool, size_t item_size, size_t chunk_bytes);

/* Unmap every chunk. Items still in use become invalid. */
void pool_fini(struct pool *pool);

/* An item (contents undefined), or NULL when the system refuses memory. O(1) amortized. */
void *pool_alloc(struct pool *pool);

/* Give @item (from pool_alloc on @pool) back. O(1). */
void pool_free(struct pool *pool, void *item);

#endif

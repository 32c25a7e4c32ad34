/*
 * The core side of the pmap boundary: mappings (pv entries) and the page states of
 * vm_page.h. The backend only ever sees whole-page enters, protection changes, removals and
 * reads. See pmap.h.
 */
#include "mmu/pmap.h"

#include <assert.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "mmu/pager.h"
#include "mmu/vm_domain.h"
#include "mmu/vm_object.h"
#include "mmu/vm_page.h"

static const uint8_t pmap_zero_page[VM_PAGE_SIZE] __attribute__((aligned(64)));

static inline uint64_t pmap_key(vm_addr_t va)
{
	return va >> VM_PAGE_SHIFT;
}

void pmap_init(struct pmap *pmap, struct vm_domain *dom, const struct pmap_ops *ops, void *arg)
{
	pmap->ops = ops;
	pmap->arg = arg;
	pmap->dom = dom;
	hmap_init(&pmap->pv);
	pmap->bound = NULL;
	pmap->nbound = pmap->bound_cap = 0;
}

/* ---- bindings: where packed pages are mapped ------------------------------------------ */

int pmap_bind(struct pmap *pmap, struct vm_object *obj, vm_addr_t va, uint64_t pindex)
{
	assert(!obj->bind_pmap && obj->packed_count == 0);
	vm_addr_t off = vm_ptoa(pindex);
	/* The binding's range [va - off, + size) must not wrap. */
	if (va < off || va - off > UINT64_MAX - obj->size)
		return -1;
	va -= off;
	if (pmap->nbound == pmap->bound_cap) {
		size_t cap = pmap->bound_cap ? pmap->bound_cap * 2 : 4;
		struct vm_object **v = realloc(pmap->bound, cap * sizeof(*v));
		if (!v)
			return -ENOMEM;
		pmap->bound = v;
		pmap->bound_cap = cap;
	}
	pmap->bound[pmap->nbound++] = obj;
	obj->bind_pmap = pmap;
	obj->bind_va = va;
	return 0;
}

void pmap_unbind(struct vm_object *obj)
{
	struct pmap *pmap = obj->bind_pmap;
	assert(pmap && obj->packed_count == 0);
	size_t i = 0;
	while (pmap->bound[i] != obj)
		i++;
	pmap->bound[i] = pmap->bound[--pmap->nbound];
	obj->bind_pmap = NULL;
}

/* The page number in bound object @obj of @va, or false when its binding does not cover @va. */
static bool pmap_bound_index(const struct vm_object *obj, vm_addr_t va, uint64_t *pindex)
{
	if (va < obj->bind_va || va - obj->bind_va >= obj->size)
		return false;
	*pindex = vm_atop(va - obj->bind_va);
	return true;
}

/* The packed page entered at @va: its object and page number, or false. */
static bool pmap_packed_at(const struct pmap *pmap, vm_addr_t va, struct vm_object **objp, uint64_t *pindex)
{
	for (size_t i = 0; i < pmap->nbound; i++)
		if (pmap_bound_index(pmap->bound[i], va, pindex) && (vm_page_state(pmap->bound[i], *pindex) & VM_PS_PROT)) {
			*objp = pmap->bound[i];
			return true;
		}
	return false;
}

int pmap_pack(struct vm_page *page)
{
	struct pv_entry *pv = page->pv;
	struct pmap *pmap = pv->pmap;
	struct vm_object *obj = page->object;
	assert(!pv->next);
	if (obj->bind_pmap) {
		if (obj->bind_pmap != pmap || obj->bind_va + vm_ptoa(page->pindex) != pv->va)
			return -1;
	} else if (pmap_bind(pmap, obj, pv->va, page->pindex) < 0) {
		return -1;
	}
	struct pv_entry *was = hmap_del(&pmap->pv, pmap_key(pv->va));
	assert(was == pv);
	(void)was;
	page->pv = NULL;
	pool_free(&pmap->dom->pv_pool, pv);
	return 0;
}

int pmap_unpack(struct vm_page *page, vm_prot_t prot)
{
	struct vm_object *obj = page->object;
	struct pmap *pmap = obj->bind_pmap;
	assert(pmap && !page->pv && prot);
	struct pv_entry *pv = pool_alloc(&pmap->dom->pv_pool);
	if (!pv)
		return -ENOMEM;
	*pv = (struct pv_entry){.page = page, .pmap = pmap, .va = obj->bind_va + vm_ptoa(page->pindex), .prot = prot};
	if (hmap_put(&pmap->pv, pmap_key(pv->va), pv) < 0) {
		pool_free(&pmap->dom->pv_pool, pv);
		return -ENOMEM;
	}
	page->pv = pv;
	return 0;
}

struct pv_entry *pmap_pv(const struct pmap *pmap, vm_addr_t va)
{
	return hmap_get(&pmap->pv, pmap_key(va));
}

struct pv_entry *pmap_lookup(struct pmap *pmap, vm_addr_t va)
{
	struct pv_entry *pv = pmap_pv(pmap, va);
	struct vm_object *obj;
	uint64_t pindex;
	if (pv || !pmap_packed_at(pmap, va, &obj, &pindex))
		return pv;
	return vm_page_lookup(obj, pindex)->pv;
}

vm_prot_t pmap_entered(const struct pmap *pmap, vm_addr_t va)
{
	struct pv_entry *pv = pmap_pv(pmap, va);
	struct vm_object *obj;
	uint64_t pindex;
	if (pv)
		return pv->prot;
	return pmap_packed_at(pmap, va, &obj, &pindex) ? vm_page_state(obj, pindex) & VM_PS_PROT : VM_PROT_NONE;
}

/* Test and clear the modified bit of the writable mapping at @va. */
static bool pmap_modified(struct pmap *pmap, vm_addr_t va)
{
	return pmap->ops->clear_modify ? pmap->ops->clear_modify(pmap->arg, va) : true;
}

void pmap_packed_read(struct vm_object *obj, uint64_t pindex, void *dst)
{
	struct pmap *pmap = obj->bind_pmap;
	uint8_t *slot = vm_page_state_slot(obj, pindex, false);
	vm_addr_t va = obj->bind_va + vm_ptoa(pindex);
	assert(pmap && slot && (*slot & VM_PS_PROT));
	if ((*slot & VM_PROT_WRITE) && pmap_modified(pmap, va))
		*slot |= VM_PS_DIRTY;
	pmap->ops->read(pmap->arg, va, dst);
}

/* Fold a writable mapping's modified bit into the page's VM_PAGE_DIRTY. */
static void pv_collect_modify(struct pv_entry *pv)
{
	if ((pv->prot & VM_PROT_WRITE) && pmap_modified(pv->pmap, pv->va))
		pv->page->flags |= VM_PAGE_DIRTY;
}

static struct pv_entry *pv_writer(const struct vm_page *page)
{
	for (struct pv_entry *pv = page->pv; pv; pv = pv->next)
		if (pv->prot & VM_PROT_WRITE)
			return pv;
	return NULL;
}

/* Take @pv out of its page's list and its pmap's table (the backend is not told). */
static void pv_detach(struct pv_entry *pv)
{
	struct vm_page *page = pv->page;
	struct pv_entry **pp = &page->pv;
	while (*pp != pv)
		pp = &(*pp)->next;
	*pp = pv->next;
	struct pv_entry *was = hmap_del(&pv->pmap->pv, pmap_key(pv->va));
	assert(was == pv);
	(void)was;
	if (!page->pv)
		pv->pmap->dom->stats.mapped_count--;
	vm_page_enqueue(page);
}

static void pv_unlink(struct pv_entry *pv)
{
	pv_detach(pv);
	pool_free(&pv->pmap->dom->pv_pool, pv);
}

/* Give a page about to lose its last mapping @pv a buffer with the bytes @pv holds. */
static int pv_keep_bytes(struct pv_entry *pv)
{
	struct vm_page *page = pv->page;
	if (page->data || page->pv != pv || pv->next)
		return 0;
	struct vm_domain *dom = pv->pmap->dom;
	uint8_t *buf = pool_alloc(&dom->data_pool);
	if (!buf)
		return -ENOMEM;
	pv->pmap->ops->read(pv->pmap->arg, pv->va, buf);
	page->data = buf;
	dom->stats.buffer_count++;
	return 0;
}

/* Remove one mapping from the backend and the tables; @keep: keep the bytes if it was the
 * page's last mapping. */
static int pv_remove(struct pv_entry *pv, bool keep)
{
	pv_collect_modify(pv);
	if (keep) {
		int err = pv_keep_bytes(pv);
		if (err)
			return err;
	}
	pv->pmap->ops->remove(pv->pmap->arg, pv->va, pv->va + VM_PAGE_SIZE);
	pv_unlink(pv);
	return 0;
}

static void pv_set_prot(struct pv_entry *pv, vm_prot_t prot)
{
	assert(prot != VM_PROT_NONE);
	if ((pv->prot & VM_PROT_WRITE) && !(prot & VM_PROT_WRITE))
		pv_collect_modify(pv);
	pv->pmap->ops->protect(pv->pmap->arg, pv->va, pv->va + VM_PAGE_SIZE, prot);
	pv->prot = prot;
}

/* Take write access away from @pv; a write-only mapping is removed (keeping the bytes). */
static int pv_stop_writer(struct pv_entry *pv)
{
	vm_prot_t p = pv->prot & ~VM_PROT_WRITE;
	if (p == VM_PROT_NONE)
		return pv_remove(pv, true);
	pv_set_prot(pv, p);
	return 0;
}

static int pv_compare(const void *a, const void *b)
{
	const struct pv_entry *x = *(struct pv_entry *const *)a, *y = *(struct pv_entry *const *)b;
	return x->va < y->va ? -1 : x->va > y->va;
}

/* The mappings in [start, end), in address order: walk the range or the table, whichever is
 * smaller, so huge sparse ranges cost no more than the mappings there are. *out is the
 * caller's to free. 0 or -ENOMEM. */
static int pmap_collect(const struct pmap *pmap, vm_addr_t start, vm_addr_t end, struct pv_entry ***out, size_t *n)
{
	*n = 0;
	*out = NULL;
	size_t count = hmap_count(&pmap->pv);
	if (count == 0 || end <= start)
		return 0;
	uint64_t pages = pmap_key(end - start);
	size_t cap = pages < count ? (size_t)pages : count;
	struct pv_entry **v = malloc(cap * sizeof(*v));
	if (!v)
		return -ENOMEM;
	*out = v;
	if (pages <= count) {
		for (vm_addr_t va = start; va < end; va += VM_PAGE_SIZE) {
			struct pv_entry *pv = hmap_get(&pmap->pv, pmap_key(va));
			if (pv)
				v[(*n)++] = pv;
		}
		return 0;
	}
	size_t cursor = 0;
	void *val;
	while (hmap_next(&pmap->pv, &cursor, NULL, &val)) {
		struct pv_entry *pv = val;
		if (pv->va >= start && pv->va < end)
			v[(*n)++] = pv;
	}
	qsort(v, *n, sizeof(*v), pv_compare);
	return 0;
}

/* Backend calls for a sequence of pages in address order: one call per run of adjacent
 * pages that get the same protection (VM_PROT_NONE: removed). */
struct pmap_batch {
	struct pmap *pmap;
	vm_addr_t start, end; /* the run so far, empty when equal */
	vm_prot_t prot;
};

static void pmap_batch_flush(struct pmap_batch *b)
{
	if (b->start == b->end)
		return;
	if (b->prot == VM_PROT_NONE)
		b->pmap->ops->remove(b->pmap->arg, b->start, b->end);
	else
		b->pmap->ops->protect(b->pmap->arg, b->start, b->end, b->prot);
	b->start = b->end;
}

/* Add the @n pages from @va, all to get @prot. */
static void pmap_batch_add_pages(struct pmap_batch *b, vm_addr_t va, unsigned n, vm_prot_t prot)
{
	if (b->start != b->end && b->end == va && b->prot == prot) {
		b->end += n * VM_PAGE_SIZE;
		return;
	}
	pmap_batch_flush(b);
	b->start = va;
	b->end = va + n * VM_PAGE_SIZE;
	b->prot = prot;
}

static void pmap_batch_add(struct pmap_batch *b, vm_addr_t va, vm_prot_t prot)
{
	pmap_batch_add_pages(b, va, 1, prot);
}

/* One backend call per run of adjacent pages of @v[0..n) that get protection @newprot[i]
 * (NULL: all removed). */
static void pmap_backend_runs(struct pmap *pmap, struct pv_entry **v, const vm_prot_t *newprot, size_t n)
{
	struct pmap_batch b = {.pmap = pmap};
	for (size_t i = 0; i < n; i++)
		pmap_batch_add(&b, v[i]->va, newprot ? newprot[i] : VM_PROT_NONE);
	pmap_batch_flush(&b);
}

/* Eight state bytes at a time (pmap_packed_lower8). */
#define PMAP_BYTES(x) ((uint64_t)(x) * 0x0101010101010101ull)
#define PMAP_HIGH_BITS PMAP_BYTES(0x80)
_Static_assert(VM_PS_DIRTY == VM_PROT_WRITE << 2, "a lowered writer's DIRTY bit is its WRITE bit shifted");

/* The high bit of each byte of @x that is not zero. */
static inline uint64_t pmap_bytes_nonzero(uint64_t x)
{
	return (((x & ~PMAP_HIGH_BITS) + ~PMAP_HIGH_BITS) | x) & PMAP_HIGH_BITS;
}

/*
 * The common case of pmap_packed_change, eight pages at once: lower the packed pages among
 * the 8 state bytes at @slot (pages from @va) to at most @prot (not VM_PROT_NONE), marking
 * those that lose write access modified (for a backend without modified bits). Bytes of
 * pages not resident, full or already within @prot do not change. False (nothing done) when
 * one of them would be left without access: the caller goes page by page.
 */
static bool pmap_packed_lower8(struct pmap_batch *b, uint8_t *slot, vm_addr_t va, vm_prot_t prot)
{
	uint64_t w;
	memcpy(&w, slot, sizeof(w));
	uint64_t lower = w & PMAP_BYTES(VM_PS_PROT & ~prot);
	if (!lower)
		return true;
	uint64_t packed = pmap_bytes_nonzero(w & PMAP_BYTES(VM_PS_PROT));
	if (packed & ~pmap_bytes_nonzero(w & PMAP_BYTES(VM_PS_PROT & prot)))
		return false;
	uint64_t nw = w & ~lower;
	if (!(prot & VM_PROT_WRITE))
		nw |= (w & PMAP_BYTES(VM_PROT_WRITE)) << 2;
	memcpy(slot, &nw, sizeof(nw));
	uint64_t changed = pmap_bytes_nonzero(lower), newprot = nw & PMAP_BYTES(VM_PS_PROT);
	if (changed == PMAP_HIGH_BITS && newprot == PMAP_BYTES(newprot & VM_PS_PROT)) {
		pmap_batch_add_pages(b, va, 8, (vm_prot_t)(newprot & VM_PS_PROT));
		return true;
	}
	for (unsigned k = 0; k < 8; k++)
		if (changed & (0x80ull << (8 * k)))
			pmap_batch_add(b, va + k * VM_PAGE_SIZE, (vm_prot_t)((newprot >> (8 * k)) & VM_PS_PROT));
	return true;
}

/*
 * The packed pages in [start, end) get at most @prot (VM_PROT_NONE: removed) where they can
 * stay packed: lowered in place, or removed with their bytes when they belong to @discard.
 * The others (left without access, bytes to keep) are unpacked for the caller's pass over
 * full pages.
 */
static void pmap_packed_change(struct pmap *pmap, vm_addr_t start, vm_addr_t end, const struct vm_object *discard,
			       vm_prot_t prot)
{
	const uint64_t leaf_pages = (uint64_t)1 << VM_PS_LEAF_SHIFT;
	bool modify_bits = pmap->ops->clear_modify != NULL;
	struct pmap_batch b = {.pmap = pmap};
	/* Backwards: unbinding object i moves the last one, already done, into its place. */
	for (size_t i = pmap->nbound; i-- > 0;) {
		struct vm_object *obj = pmap->bound[i];
		vm_addr_t bend = obj->bind_va + obj->size;
		if (end <= obj->bind_va || start >= bend)
			continue;
		vm_addr_t lo = start > obj->bind_va ? start : obj->bind_va, hi = end < bend ? end : bend;
		uint64_t idx = vm_atop(lo - obj->bind_va), last = vm_atop(hi - obj->bind_va);
		/* Straight over the state table's leaves: a freeze lowers every page of a whole
		 * guest, a byte each. Leaves never move, whatever is unpacked or freed below. */
		while (idx < last && obj->packed_count) {
			uint64_t leaf_end;
			uint8_t *leaf = vm_page_state_leaf(obj, idx, last, &leaf_end);
			if (!leaf) {
				idx = leaf_end;
				continue;
			}
			for (; idx < leaf_end && obj->packed_count; idx++) {
				uint8_t *slot = &leaf[idx & (leaf_pages - 1)];
				/* Lowering without modified bits to collect: eight pages at a time. */
				while (prot != VM_PROT_NONE && !modify_bits && !(idx & 7) && idx + 8 <= leaf_end &&
				       pmap_packed_lower8(&b, slot, obj->bind_va + vm_ptoa(idx), prot)) {
					idx += 8;
					slot += 8;
				}
				if (idx >= leaf_end)
					break;
				vm_prot_t old = *slot & VM_PS_PROT, p = old & prot;
				if (p == old) /* not packed (0, or a full page's byte), or nothing to lower */
					continue;
				vm_addr_t va = obj->bind_va + vm_ptoa(idx);
				if (p == VM_PROT_NONE) {
					if (obj != discard) {
						vm_page_lookup(obj, idx);
						continue;
					}
					pmap_batch_add(&b, va, VM_PROT_NONE);
					vm_page_free_packed(obj, idx);
					continue;
				}
				uint8_t st = *slot;
				if ((old & VM_PROT_WRITE) && !(p & VM_PROT_WRITE) && (!modify_bits || pmap_modified(pmap, va)))
					st |= VM_PS_DIRTY;
				*slot = (uint8_t)((st & ~VM_PS_PROT) | p);
				pmap_batch_add(&b, va, p);
			}
		}
	}
	pmap_batch_flush(&b);
}

int pmap_remove(struct pmap *pmap, vm_addr_t start, vm_addr_t end, const struct vm_object *discard)
{
	if (!pmap->ops)
		return 0;
	pmap_packed_change(pmap, start, end, discard, VM_PROT_NONE);
	size_t n, done = 0;
	struct pv_entry **v;
	int err = pmap_collect(pmap, start, end, &v, &n);
	if (err)
		return err;
	/* One at a time, so that a page mapped twice in the range keeps its bytes once: the
	 * second of its mappings is then its last. */
	for (; done < n; done++) {
		struct pv_entry *pv = v[done];
		pv_collect_modify(pv);
		if (pv->page->object != discard && (err = pv_keep_bytes(pv)) < 0)
			break;
		pv_detach(pv);
	}
	pmap_backend_runs(pmap, v, NULL, done);
	for (size_t i = 0; i < done; i++)
		pool_free(&pmap->dom->pv_pool, v[i]);
	free(v);
	return err;
}

int pmap_protect(struct pmap *pmap, vm_addr_t start, vm_addr_t end, vm_prot_t prot)
{
	if (!pmap->ops)
		return 0;
	if (prot == VM_PROT_NONE)
		return pmap_remove(pmap, start, end, NULL);
	pmap_packed_change(pmap, start, end, NULL, prot);
	size_t n, m = 0;
	struct pv_entry **v;
	int err = pmap_collect(pmap, start, end, &v, &n);
	if (err || n == 0) {
		free(v);
		return err;
	}
	vm_prot_t *newprot = malloc(n * sizeof(*newprot));
	if (!newprot) {
		free(v);
		return -ENOMEM;
	}
	for (size_t i = 0; i < n; i++) {
		struct pv_entry *pv = v[i];
		vm_prot_t p = pv->prot & prot;
		if (p == pv->prot)
			continue;
		if (p == VM_PROT_NONE) {
			/* A mapping left with no access at all is a removal. */
			err = pv_remove(pv, true);
			if (err)
				break;
			continue;
		}
		if ((pv->prot & VM_PROT_WRITE) && !(p & VM_PROT_WRITE))
			pv_collect_modify(pv);
		pv->prot = p;
		newprot[m] = p;
		v[m++] = pv;
	}
	pmap_backend_runs(pmap, v, newprot, m);
	free(newprot);
	free(v);
	return err;
}

const void *pmap_page_bytes(struct vm_page *page, void *scratch)
{
	if (page->data)
		return page->data;
	if (!page->pv) {
		assert(page->flags & VM_PAGE_ZERO);
		return pmap_zero_page;
	}
	/* A writable mapping is the only one; any reader holds the same bytes. */
	struct pv_entry *pv = page->pv;
	pv_collect_modify(pv);
	pv->pmap->ops->read(pv->pmap->arg, pv->va, scratch);
	return scratch;
}

/* What the backend may know of @page entered at @va with @prot (enter()'s flags). */
static unsigned pmap_backend_flags(const struct vm_page *page, vm_addr_t va, vm_prot_t prot)
{
	const struct pager *pager = page->object->pager;
	if (!(prot & VM_PROT_WRITE) && !(page->flags & VM_PAGE_ZERO) && pager && pager->host_resident &&
	    vm_ptoa(page->pindex) == va)
		return PMAP_BACKEND_HOST_RESIDENT;
	return 0;
}

int pmap_enter(struct pmap *pmap, vm_addr_t va, struct vm_page *page, vm_prot_t prot, unsigned flags)
{
	if (!pmap->ops)
		return 0;
	assert(prot != VM_PROT_NONE && vm_page_aligned(va));
	struct pv_entry *old = pmap_lookup(pmap, va);
	if (old && old->page == page) {
		if (old->prot == prot)
			return 0;
		if (prot & VM_PROT_WRITE) {
			/* Becoming the writer: this mapping already holds the bytes; drop the readers. */
			for (struct pv_entry *pv = page->pv, *next; pv; pv = next) {
				next = pv->next;
				if (pv != old)
					pv_remove(pv, false);
			}
		}
		pv_set_prot(old, prot);
		return 0;
	}

	struct pv_entry *pv = pool_alloc(&pmap->dom->pv_pool);
	if (!pv)
		return -ENOMEM;
	*pv = (struct pv_entry){.page = page, .pmap = pmap, .va = va, .prot = prot};
	if (hmap_put(&pmap->pv, pmap_key(va), pv) < 0) {
		pool_free(&pmap->dom->pv_pool, pv);
		return -ENOMEM;
	}
	/* hmap_put replaced @old in the table; take it out of its page's list by hand. */
	int err = 0;
	if (old) {
		pv_collect_modify(old);
		err = pv_keep_bytes(old);
		if (err) {
			hmap_put(&pmap->pv, pmap_key(va), old); /* replaces: cannot fail */
			pool_free(&pmap->dom->pv_pool, pv);
			return err;
		}
		struct pv_entry **pp = &old->page->pv;
		while (*pp != old)
			pp = &(*pp)->next;
		*pp = old->next;
		if (!old->page->pv)
			pmap->dom->stats.mapped_count--;
		if (!(flags & PMAP_ENTER_SAME_BYTES))
			pmap->ops->remove(pmap->arg, va, va + VM_PAGE_SIZE);
		pool_free(&pmap->dom->pv_pool, old);
	}

	if (flags & PMAP_ENTER_SAME_BYTES) {
		/* va holds these bytes already (copied from the page entered there). */
		assert(old && !page->pv);
		pmap->ops->protect(pmap->arg, va, va + VM_PAGE_SIZE, prot);
	} else {
		/* Readers and writers never mix: stop a writer elsewhere before reading the bytes. */
		struct pv_entry *w = pv_writer(page);
		if (w && (err = pv_stop_writer(w)) < 0) {
			hmap_del(&pmap->pv, pmap_key(va));
			pool_free(&pmap->dom->pv_pool, pv);
			return err;
		}
		uint8_t scratch[VM_PAGE_SIZE] __attribute__((aligned(64)));
		const void *src = (page->flags & VM_PAGE_ZERO) ? NULL : pmap_page_bytes(page, scratch);
		err = pmap->ops->enter(pmap->arg, va, src, prot, pmap_backend_flags(page, va, prot));
		if (err) {
			hmap_del(&pmap->pv, pmap_key(va));
			pool_free(&pmap->dom->pv_pool, pv);
			return err;
		}
		if (prot & VM_PROT_WRITE)
			for (struct pv_entry *o = page->pv, *next; o; o = next) {
				next = o->next;
				pv_remove(o, false);
			}
	}
	if (!page->pv)
		pmap->dom->stats.mapped_count++;
	pv->next = page->pv;
	page->pv = pv;
	vm_page_drop_buffer(page);
	page->flags &= ~VM_PAGE_ZERO;
	vm_page_enqueue(page);
	return 0;
}

int pmap_page_remove_others(struct vm_page *page, const struct pv_entry *keep)
{
	struct pv_entry *w = pv_writer(page);
	if (w && w != keep) {
		int err = pv_stop_writer(w);
		if (err)
			return err;
	}
	for (struct pv_entry *pv = page->pv, *next; pv; pv = next) {
		next = pv->next;
		if (pv == keep)
			continue;
		int err = pv_remove(pv, true);
		if (err)
			return err;
	}
	return 0;
}

int pmap_page_protect(struct vm_page *page, vm_prot_t prot)
{
	if (prot == VM_PROT_NONE)
		return pmap_page_remove_others(page, NULL);
	for (struct pv_entry *pv = page->pv, *next; pv; pv = next) {
		next = pv->next;
		vm_prot_t p = pv->prot & prot;
		if (p == pv->prot)
			continue;
		if (p == VM_PROT_NONE) {
			int err = pv_remove(pv, true);
			if (err)
				return err;
		} else {
			pv_set_prot(pv, p);
		}
	}
	return 0;
}

void pmap_page_discard(struct vm_page *page)
{
	while (page->pv) {
		struct pv_entry *pv = page->pv;
		pv->pmap->ops->remove(pv->pmap->arg, pv->va, pv->va + VM_PAGE_SIZE);
		pv_unlink(pv);
	}
}

bool pmap_page_dirty(struct vm_page *page)
{
	struct pv_entry *w = pv_writer(page);
	if (w)
		pv_collect_modify(w);
	return page->flags & VM_PAGE_DIRTY;
}

int pmap_update(struct pmap *pmap)
{
	return pmap->ops && pmap->ops->update ? pmap->ops->update(pmap->arg) : 0;
}

void pmap_fini(struct pmap *pmap)
{
	int err = pmap_remove(pmap, 0, ~VM_PAGE_MASK, NULL);
	assert(err == 0 && hmap_count(&pmap->pv) == 0 && pmap->nbound == 0);
	(void)err;
	hmap_fini(&pmap->pv);
	free(pmap->bound);
	pmap->bound = NULL;
	pmap->bound_cap = 0;
}

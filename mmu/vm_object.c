/*
 * Memory objects: creation, references, shadow chains (shadow, lookup, collapse, bypass),
 * reading and eager copies, write-back. See vm_object.h.
 */
#include "mmu/vm_object.h"

#include <assert.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "mmu/page_store.h"
#include "mmu/pager.h"
#include "mmu/pmap.h"
#include "mmu/vm_domain.h"
#include "mmu/vm_page.h"

/* No chain is ever this deep: collapse keeps them short, and a loop would be endless. */
#define VM_OBJECT_DEPTH_MAX (1u << 20)

static struct vm_object *vm_object_new(struct vm_domain *dom, vm_size_t size, bool internal)
{
	struct vm_object *obj = calloc(1, sizeof(*obj));
	if (!obj)
		return NULL;
	obj->dom = dom;
	obj->id = dom->next_object_id++;
	obj->size = size;
	obj->internal = internal;
	obj->copy_strategy = VM_COPY_DELAY;
	obj->ref_count = 1;
	hmap_init(&obj->pages);
	hmap_init(&obj->paged);
	obj->all_next = dom->objects;
	if (dom->objects)
		dom->objects->all_prev = obj;
	dom->objects = obj;
	dom->stats.objects_live++;
	return obj;
}

/* Unlink and free an object that has no pages, references or shadow left. */
static void vm_object_free(struct vm_object *obj)
{
	struct vm_domain *dom = obj->dom;
	assert(obj->resident_count == 0 && !obj->shadow && !obj->shadowers);
	assert(!obj->bind_pmap);
	vm_page_states_free(obj);
	hmap_fini(&obj->pages);
	if (dom->hand_object == obj) {
		dom->hand_object = obj->all_next;
		dom->hand_pindex = 0;
	}
	hmap_fini(&obj->paged);
	if (obj->all_prev)
		obj->all_prev->all_next = obj->all_next;
	else
		dom->objects = obj->all_next;
	if (obj->all_next)
		obj->all_next->all_prev = obj->all_prev;
	dom->stats.objects_live--;
	free(obj);
}

kern_return_t vm_object_allocate(struct vm_domain *dom, vm_size_t size, struct vm_object **out)
{
	if (size == 0 || !vm_page_aligned(size))
		return KERN_INVALID_ARGUMENT;
	struct vm_object *obj = vm_object_new(dom, size, true);
	if (!obj)
		return KERN_RESOURCE_SHORTAGE;
	*out = obj;
	return KERN_SUCCESS;
}

kern_return_t vm_object_create(struct vm_domain *dom, struct pager *pager, vm_size_t size, struct vm_object **out)
{
	if (!pager)
		return KERN_INVALID_ARGUMENT;
	if (size == 0)
		size = (pager->size + VM_PAGE_MASK) & ~VM_PAGE_MASK;
	if (size == 0 || !vm_page_aligned(size))
		return KERN_INVALID_ARGUMENT;
	struct vm_object *obj = vm_object_new(dom, size, false);
	if (!obj)
		return KERN_RESOURCE_SHORTAGE;
	int err = pager_create(pager, size, &obj->mo);
	if (err) {
		vm_object_free(obj);
		return err == -ENOMEM ? KERN_RESOURCE_SHORTAGE : KERN_MEMORY_FAILURE;
	}
	pager->refs++;
	obj->pager = pager;
	*out = obj;
	return KERN_SUCCESS;
}

void vm_object_reference(struct vm_object *obj)
{
	assert(obj->ref_count > 0);
	obj->ref_count++;
}

/* Make @obj shadow @backing at @offset; @obj takes over one reference to @backing. */
static void vm_object_link_shadow(struct vm_object *obj, struct vm_object *backing, vm_offset_t offset)
{
	assert(!obj->shadow && backing != obj);
	obj->shadow = backing;
	obj->shadow_offset = offset;
	if (!backing)
		return;
	backing->shadow_count++;
	obj->sib_prev = NULL;
	obj->sib_next = backing->shadowers;
	if (backing->shadowers)
		backing->shadowers->sib_prev = obj;
	backing->shadowers = obj;
}

/* Undo vm_object_link_shadow; returns the backing object, whose reference the caller now holds. */
static struct vm_object *vm_object_unlink_shadow(struct vm_object *obj)
{
	struct vm_object *backing = obj->shadow;
	if (!backing)
		return NULL;
	if (obj->sib_prev)
		obj->sib_prev->sib_next = obj->sib_next;
	else
		backing->shadowers = obj->sib_next;
	if (obj->sib_next)
		obj->sib_next->sib_prev = obj->sib_prev;
	obj->sib_prev = obj->sib_next = NULL;
	backing->shadow_count--;
	obj->shadow = NULL;
	obj->shadow_offset = 0;
	return backing;
}

/* The resident pages of @obj as full pages (packed ones are unpacked), collected so that
 * the object may change while they are used. */
static struct vm_page **vm_object_page_list(struct vm_object *obj, size_t *n)
{
	*n = 0;
	struct vm_page **v = malloc((obj->resident_count + 1) * sizeof(*v));
	if (!v)
		return NULL;
	for (uint64_t idx = 0; vm_page_next(obj, &idx, vm_atop(obj->size)); idx++)
		v[(*n)++] = vm_page_lookup(obj, idx);
	return v;
}

/* The page numbers held by @obj's pager (internal objects), collected likewise. */
static uint64_t *vm_object_paged_list(const struct vm_object *obj, size_t *n)
{
	*n = 0;
	uint64_t *v = malloc((hmap_count(&obj->paged) + 1) * sizeof(*v));
	if (!v)
		return NULL;
	size_t cursor = 0;
	uint64_t key;
	while (hmap_next(&obj->paged, &cursor, &key, NULL))
		v[(*n)++] = key;
	return v;
}

/* Whether @obj's pager may have page @pindex: an external pager is asked for every page;
 * an internal object's pager holds only what page-out gave it. */
static bool vm_object_pager_has(const struct vm_object *obj, uint64_t pindex)
{
	if (!obj->pager)
		return false;
	if (!obj->internal)
		return pindex < vm_atop(obj->size);
	return hmap_get(&obj->paged, pindex) != NULL;
}

/* Whether @obj itself has page @pindex (resident or with its pager). */
static bool vm_object_has(const struct vm_object *obj, uint64_t pindex)
{
	return vm_page_resident(obj, pindex) || vm_object_pager_has(obj, pindex);
}

/* Write back modified pages to an external pager that takes data; free every page. */
static void vm_object_terminate(struct vm_object *obj)
{
	struct vm_domain *dom = obj->dom;
	assert(obj->ref_count == 0 && obj->direct_refs == 0 && obj->frozen_refs == 0 && obj->shadow_count == 0);
	if (!obj->internal && obj->pager && obj->pager->ops->data_return)
		vm_object_clean(obj, 0, obj->size);
	/* Mappings exist only through entries whose chains hold a reference: none are packed. */
	assert(obj->packed_count == 0);
	for (uint64_t idx = 0; vm_page_next(obj, &idx, vm_atop(obj->size)); idx++) {
		struct vm_page *p = vm_page_lookup(obj, idx);
		assert(!p->pv);
		vm_page_free(p);
	}
	if (obj->pager) {
		if (obj->mo)
			pager_terminate(obj->pager, obj->mo);
		pager_release(obj->pager);
		obj->pager = NULL;
	}
	(void)dom;
}

void vm_object_deallocate(struct vm_object *obj)
{
	while (obj) {
		assert(obj->ref_count > 0);
		if (--obj->ref_count > 0) {
			/* Only the one shadow holds it now: let that shadow absorb it. */
			if (obj->ref_count == 1 && obj->shadow_count == 1 && obj->internal)
				vm_object_collapse(obj->shadowers);
			return;
		}
		vm_object_terminate(obj);
		struct vm_object *backing = vm_object_unlink_shadow(obj);
		vm_object_free(obj);
		obj = backing;
	}
}

kern_return_t vm_object_shadow(struct vm_object **objp, vm_offset_t *offsetp, vm_size_t length)
{
	struct vm_object *source = *objp;
	assert(source->direct_refs == 0);
	assert(*offsetp + length <= source->size);
	struct vm_object *obj = vm_object_new(source->dom, length, true);
	if (!obj)
		return KERN_RESOURCE_SHORTAGE;
	vm_object_link_shadow(obj, source, *offsetp);
	source->dom->stats.object_shadows++;
	*objp = obj;
	*offsetp = 0;
	return KERN_SUCCESS;
}

unsigned vm_object_depth(const struct vm_object *obj)
{
	unsigned depth = 0;
	for (; obj; obj = obj->shadow) {
		depth++;
		assert(depth < VM_OBJECT_DEPTH_MAX);
	}
	return depth;
}

/* Pages @obj has or its pager holds: an upper bound of what it can cover. */
static uint64_t vm_object_page_count(const struct vm_object *obj)
{
	return obj->resident_count + hmap_count(&obj->paged);
}

/*
 * Ask @obj's pager for the run of missing pages around @pindex within [lo, hi) (obj's page
 * numbers). *unavailable: the pager has no data for @pindex (look further down the chain);
 * then *unavailable_end (when not NULL) is where the run of pages from @pindex that the
 * pager said it has no data for ends (at least @pindex + 1).
 */
static kern_return_t vm_object_pagein_run(struct vm_object *obj, uint64_t pindex, uint64_t lo, uint64_t hi,
					  vm_prot_t access, bool *unavailable, uint64_t *unavailable_end)
{
	struct vm_domain *dom = obj->dom;
	uint64_t a = pindex, b = pindex + 1;
	while (a > lo && !vm_page_resident(obj, a - 1) && vm_object_pager_has(obj, a - 1))
		a--;
	while (b < hi && !vm_page_resident(obj, b) && vm_object_pager_has(obj, b))
		b++;
	struct pager_reply r = {.object = obj, .first = a, .end = b, .want = pindex};
	dom->stats.pager_requests++;
	int err = pager_data_request(obj->pager, obj->mo, vm_ptoa(a), vm_ptoa(b - a), access, &r);
	*unavailable = false;
	if (err == -ENOMEM)
		return KERN_RESOURCE_SHORTAGE;
	if (err || r.error)
		return KERN_MEMORY_ERROR;
	if (!r.want_answered)
		return vm_page_resident(obj, pindex) ? KERN_SUCCESS : KERN_MEMORY_FAILURE;
	if (r.want_unavailable) {
		*unavailable = true;
		hmap_del(&obj->paged, pindex);
		if (unavailable_end)
			*unavailable_end = r.unavailable_end;
	} else if (!vm_page_resident(obj, pindex)) {
		/* Provided, then taken back by a lock request in the same answer: the data is
		 * not here, and zeros must not stand in for it. */
		return KERN_MEMORY_ERROR;
	}
	return KERN_SUCCESS;
}

static kern_return_t vm_object_pagein(struct vm_object *obj, uint64_t pindex, uint64_t lo, uint64_t hi,
				      vm_prot_t access, bool *unavailable)
{
	return vm_object_pagein_run(obj, pindex, lo, hi, access, unavailable, NULL);
}

/* A page lock as the core keeps it: what cannot be read cannot be written either (a
 * mapping has no write-only form). */
static uint8_t vm_object_lock_value(vm_prot_t lock)
{
	lock &= VM_PROT_ALL;
	return (uint8_t)(lock & VM_PROT_READ ? lock | VM_PROT_WRITE : lock);
}

int vm_object_page_provided(struct vm_object *obj, uint64_t pindex, const void *data, vm_prot_t lock)
{
	if (pindex >= vm_atop(obj->size))
		return -EINVAL;
	if (vm_page_resident(obj, pindex))
		return 0;
	struct vm_page *p = vm_page_alloc(obj, pindex);
	if (!p)
		return -ENOMEM;
	if (vm_page_fill(p, data) < 0) {
		vm_page_free(p);
		return -ENOMEM;
	}
	p->lock = vm_object_lock_value(lock);
	obj->dom->stats.pageins++;
	obj->stats.pageins++;
	return 0;
}

kern_return_t vm_object_lookup(struct vm_object *top, uint64_t pindex, uint64_t lo, uint64_t hi,
			       vm_prot_t access, bool resident_only, struct vm_lookup *out)
{
	struct vm_domain *dom = top->dom;
	struct vm_object *obj = top;
	unsigned depth = 0;
	for (;;) {
		dom->stats.lookups++;
		struct vm_page *p = vm_page_lookup(obj, pindex);
		if (!p && vm_object_pager_has(obj, pindex)) {
			if (resident_only)
				return KERN_MEMORY_FAILURE;
			bool unavailable;
			uint64_t size = vm_atop(obj->size);
			kern_return_t kr = vm_object_pagein(obj, pindex, lo, hi < size ? hi : size, access, &unavailable);
			if (kr != KERN_SUCCESS)
				return kr;
			if (!unavailable)
				p = vm_page_lookup(obj, pindex);
		} else if (p) {
			dom->stats.hits++;
		}
		if (p) {
			*out = (struct vm_lookup){.page = p, .object = obj, .pindex = pindex, .depth = depth};
			return KERN_SUCCESS;
		}
		if (!obj->shadow)
			break;
		uint64_t delta = vm_atop(obj->shadow_offset);
		pindex += delta;
		lo += delta;
		hi += delta;
		obj = obj->shadow;
		assert(++depth < VM_OBJECT_DEPTH_MAX);
	}
	*out = (struct vm_lookup){.page = NULL, .object = obj, .pindex = pindex, .depth = depth};
	return KERN_SUCCESS;
}

/* Bring back the pages @obj's pager holds that are not resident, but for those @above (NULL:
 * none), shadowing @obj at page @off for @n pages, has or cannot see: a collapse or merge
 * moves resident pages only. KERN_SUCCESS, or the first failure (some brought back). */
static kern_return_t vm_object_pagein_paged(struct vm_object *obj, const struct vm_object *above, uint64_t off,
					    uint64_t n)
{
	size_t np;
	uint64_t *paged = vm_object_paged_list(obj, &np);
	if (!paged)
		return KERN_RESOURCE_SHORTAGE;
	kern_return_t kr = KERN_SUCCESS;
	for (size_t i = 0; i < np && kr == KERN_SUCCESS; i++) {
		uint64_t idx = paged[i];
		if (vm_page_resident(obj, idx) ||
		    (above && (idx < off || idx >= off + n || vm_object_has(above, idx - off))))
			continue;
		bool unavailable;
		kr = vm_object_pagein(obj, idx, idx, idx + 1, VM_PROT_READ, &unavailable);
	}
	free(paged);
	return kr;
}

/*
 * Collapse: @obj's backing object is referenced by @obj alone, so its pages move up into
 * @obj (those @obj already has, and those outside @obj's window, are freed) and @obj
 * shadows what it shadowed.       obj -> B -> S   =>   obj -> S
 * Returns false when it could not finish (out of memory, a pager failed); the chain is
 * then still valid, with some pages already moved up.
 */
static bool vm_object_collapse_one(struct vm_object *obj)
{
	struct vm_object *b = obj->shadow;
	uint64_t off = vm_atop(obj->shadow_offset), n = vm_atop(obj->size);
	assert(b->ref_count == 1 && b->shadow_count == 1 && b->internal);

	/* Pages B paged out that obj needs come back first: obj cannot take B's pager. */
	if (vm_object_pagein_paged(b, obj, off, n) != KERN_SUCCESS)
		return false;

	/* Packed pages move up as they are, where obj's binding maps them at the same address;
	 * the others are unpacked by the list below. */
	for (uint64_t idx = off; b->packed_count && vm_page_next(b, &idx, off + n); idx++)
		if ((vm_page_state(b, idx) & VM_PS_PROT) && !vm_object_has(obj, idx - off))
			(void)vm_page_move_packed(b, idx, obj, idx - off);
	size_t npages;
	struct vm_page **pages = vm_object_page_list(b, &npages);
	if (!pages)
		return false;
	for (size_t i = 0; i < npages; i++) {
		struct vm_page *p = pages[i];
		if (p->pindex < off || p->pindex >= off + n || vm_object_has(obj, p->pindex - off)) {
			/* Hidden from every chain: obj (B's only holder) has its own or cannot see it. */
			assert(!p->pv);
			vm_page_free(p);
			continue;
		}
		if (vm_page_rename(p, obj, p->pindex - off) < 0) {
			free(pages);
			return false;
		}
		/* B's pager goes away with B: obj's pager does not have these bytes. */
		p->flags |= VM_PAGE_DIRTY;
	}
	free(pages);

	vm_offset_t offset = obj->shadow_offset + b->shadow_offset;
	struct vm_object *s = vm_object_unlink_shadow(b); /* B's reference to S passes to obj */
	vm_object_unlink_shadow(obj);
	vm_object_link_shadow(obj, s, offset);
	b->ref_count = 0;
	vm_object_terminate(b);
	vm_object_free(b);
	obj->dom->stats.object_collapses++;
	return true;
}

/*
 * Bypass: @obj has (resident or with its pager) every page its backing object B could give
 * it, so it shadows B's shadow directly; B loses obj's reference and lives on for its other
 * holders.          obj -> B -> S   =>   obj -> S   (B -> S kept for the others)
 */
static bool vm_object_bypass_one(struct vm_object *obj)
{
	struct vm_object *b = obj->shadow;
	uint64_t off = vm_atop(obj->shadow_offset), n = vm_atop(obj->size);
	if (!b->internal || vm_object_page_count(obj) < obj->bypass_mark)
		return false;
	uint64_t uncovered = 0;
	for (uint64_t idx = off; vm_page_next(b, &idx, off + n); idx++)
		if (!vm_object_has(obj, idx - off))
			uncovered++;
	size_t cursor = 0;
	uint64_t idx;
	while (hmap_next(&b->paged, &cursor, &idx, NULL))
		if (idx >= off && idx < off + n && !vm_page_resident(b, idx) && !vm_object_has(obj, idx - off))
			uncovered++;
	if (uncovered) {
		/* Each new page of obj covers at most one: retry after it grew by a quarter. */
		uint64_t have = vm_object_page_count(obj);
		obj->bypass_mark = have + (uncovered > have / 4 ? uncovered : have / 4);
		return false;
	}
	vm_offset_t offset = obj->shadow_offset + b->shadow_offset;
	struct vm_object *s = b->shadow;
	vm_object_unlink_shadow(obj);
	if (s)
		vm_object_reference(s);
	vm_object_link_shadow(obj, s, offset);
	obj->bypass_mark = 0;
	obj->dom->stats.object_bypasses++;
	vm_object_deallocate(b);
	return true;
}

void vm_object_set_base(struct vm_object *obj, bool base)
{
	assert(!base || obj->internal);
	obj->base = base;
}

const struct vm_object *vm_object_base_below(const struct vm_object *obj)
{
	for (; obj; obj = obj->shadow)
		if (obj->base)
			return obj;
	return NULL;
}

void vm_object_base_drop_page(struct vm_page *page)
{
	assert(page->object->base && !page->pv);
	hmap_del(&page->object->paged, page->pindex);
	vm_page_free(page);
}

/* Make room in base @b for page @pindex coming from above: its own copy (hidden from every
 * chain, see vm_object_set_base) and what its pager holds of it go. */
static void vm_object_base_forget(struct vm_object *b, uint64_t pindex)
{
	if (vm_page_resident(b, pindex))
		vm_object_base_drop_page(vm_page_lookup(b, pindex));
	else
		hmap_del(&b->paged, pindex);
}

/* Whether @s, a shadow of @b, has page @bidx of @b, or does not see it (outside its window). */
static bool vm_object_hides(const struct vm_object *s, uint64_t bidx)
{
	uint64_t soff = vm_atop(s->shadow_offset);
	return bidx < soff || bidx >= soff + vm_atop(s->size) || vm_object_has(s, bidx - soff);
}

/* Whether every object but @obj that shadows @b has each page @obj has (resident or with
 * its pager): none reads one of them through @b. Work in proportion to @obj's pages. */
static bool vm_object_covered_beside(const struct vm_object *b, const struct vm_object *obj)
{
	uint64_t n = vm_atop(obj->size), off = vm_atop(obj->shadow_offset);
	for (const struct vm_object *s = b->shadowers; s; s = s->sib_next) {
		if (s == obj)
			continue;
		for (uint64_t idx = 0; vm_page_next(obj, &idx, n); idx++)
			if (!vm_object_hides(s, idx + off))
				return false;
		size_t cursor = 0;
		uint64_t idx;
		while (hmap_next(&obj->paged, &cursor, &idx, NULL))
			if (idx < n && !vm_object_hides(s, idx + off))
				return false;
	}
	return true;
}

kern_return_t vm_object_merge_into_base(struct vm_object *obj)
{
	struct vm_object *b = obj->shadow;
	if (!b || !b->base || !obj->internal)
		return KERN_INVALID_ARGUMENT;
	if (b->shadow_count != 1) {
		/* The objects that read through obj bypassed it (vm_object_bypass_one), each with
		 * its own copy of every page obj has: wherever B is read, it reads as obj did. */
		if (obj->shadow_count || !vm_object_covered_beside(b, obj))
			return KERN_INVALID_ARGUMENT;
		obj->dom->stats.base_merges++;
		return KERN_SUCCESS;
	}
	uint64_t off = vm_atop(obj->shadow_offset), n = vm_atop(obj->size);
	assert(off + n <= vm_atop(b->size));

	/* Pages obj's pager holds come back first: B cannot take obj's pager. */
	kern_return_t kr = vm_object_pagein_paged(obj, NULL, 0, 0);
	if (kr != KERN_SUCCESS)
		return kr;
	hmap_fini(&obj->paged);
	hmap_init(&obj->paged);

	/* Packed pages move down as they are (B is bound at the same addresses); the others,
	 * and packed ones that cannot, by the list below. */
	for (uint64_t idx = 0; obj->packed_count && vm_page_next(obj, &idx, n); idx++) {
		if (!(vm_page_state(obj, idx) & VM_PS_PROT) || (vm_page_state(obj, idx) & VM_PS_FULL))
			continue;
		vm_object_base_forget(b, idx + off);
		if (vm_page_move_packed(obj, idx, b, idx + off) == -ENOMEM)
			return KERN_RESOURCE_SHORTAGE;
	}
	size_t npages;
	struct vm_page **pages = vm_object_page_list(obj, &npages);
	if (!pages)
		return KERN_RESOURCE_SHORTAGE;
	for (size_t i = 0; i < npages; i++) {
		struct vm_page *p = pages[i];
		vm_object_base_forget(b, p->pindex + off);
		if (vm_page_rename(p, b, p->pindex + off) < 0) {
			free(pages);
			return KERN_RESOURCE_SHORTAGE;
		}
		/* B's pager (swap) does not have these bytes. */
		p->flags |= VM_PAGE_DIRTY;
	}
	free(pages);
	obj->dom->stats.base_merges++;
	return KERN_SUCCESS;
}

void vm_object_collapse(struct vm_object *obj)
{
	while (obj->shadow) {
		struct vm_object *b = obj->shadow;
		if (!b->internal)
			return;
		bool done = b->ref_count == 1 ? vm_object_collapse_one(obj) : vm_object_bypass_one(obj);
		if (!done)
			return;
	}
}

kern_return_t vm_object_read(struct vm_object *obj, vm_offset_t offset, void *buf, vm_size_t len)
{
	if (!obj) {
		memset(buf, 0, len);
		return KERN_SUCCESS;
	}
	if (offset + len < offset || offset + len > obj->size)
		return KERN_INVALID_ARGUMENT;
	uint8_t *out = buf;
	uint8_t scratch[VM_PAGE_SIZE] __attribute__((aligned(64)));
	while (len > 0) {
		uint64_t pindex = vm_atop(offset);
		vm_size_t in = offset & VM_PAGE_MASK, n = VM_PAGE_SIZE - in;
		if (n > len)
			n = len;
		struct vm_lookup l;
		kern_return_t kr = vm_object_lookup(obj, pindex, pindex, pindex + 1, VM_PROT_READ, false, &l);
		if (kr != KERN_SUCCESS)
			return kr;
		if (l.page) {
			const uint8_t *bytes = pmap_page_bytes(l.page, scratch);
			memcpy(out, bytes + in, n);
			vm_page_activate(l.page);
		} else {
			memset(out, 0, n);
		}
		out += n;
		offset += n;
		len -= n;
	}
	return KERN_SUCCESS;
}

/* Add @idx (a page number of the copy) to the candidate list @v (grown as needed). */
static int vm_object_candidate(uint64_t **v, size_t *n, size_t *cap, uint64_t idx)
{
	if (*n == *cap) {
		size_t c = *cap ? *cap * 2 : 64;
		uint64_t *nv = realloc(*v, c * sizeof(**v));
		if (!nv)
			return -ENOMEM;
		*v = nv;
		*cap = c;
	}
	(*v)[(*n)++] = idx;
	return 0;
}

/* Page numbers of the copy [offset, offset+size) of @src that some object of the chain may
 * have: resident pages and pager pages in each object's window; every page of an external
 * object's window. */
static int vm_object_copy_candidates(struct vm_object *src, vm_offset_t offset, vm_size_t size,
				     const struct vm_object *stop, uint64_t **out, size_t *n)
{
	uint64_t *v = NULL;
	size_t cap = 0;
	*n = 0;
	uint64_t first = vm_atop(offset), count = vm_atop(size);
	for (struct vm_object *obj = src; obj && obj != stop; obj = obj->shadow) {
		if (!obj->internal && obj->pager) {
			uint64_t end = vm_atop(obj->size);
			for (uint64_t i = first; i < end && i < first + count; i++)
				if (vm_object_candidate(&v, n, &cap, i - first) < 0)
					goto nomem;
		}
		for (uint64_t idx = first; vm_page_next(obj, &idx, first + count); idx++)
			if (vm_object_candidate(&v, n, &cap, idx - first) < 0)
				goto nomem;
		size_t cursor = 0;
		uint64_t idx;
		while (hmap_next(&obj->paged, &cursor, &idx, NULL))
			if (idx >= first && idx < first + count && vm_object_candidate(&v, n, &cap, idx - first) < 0)
				goto nomem;
		first += vm_atop(obj->shadow_offset);
	}
	*out = v;
	return 0;
nomem:
	free(v);
	return -ENOMEM;
}

kern_return_t vm_object_copy_slowly(struct vm_object *src, vm_offset_t offset, vm_size_t size,
				    struct vm_object **out)
{
	struct vm_object *copy;
	if (offset + size < offset || offset + size > src->size)
		return KERN_INVALID_ARGUMENT;
	kern_return_t kr = vm_object_allocate(src->dom, size, &copy);
	if (kr != KERN_SUCCESS)
		return kr;
	uint64_t *cand;
	size_t n;
	if (vm_object_copy_candidates(src, offset, size, NULL, &cand, &n) < 0) {
		vm_object_deallocate(copy);
		return KERN_RESOURCE_SHORTAGE;
	}
	uint64_t base = vm_atop(offset);
	for (size_t i = 0; i < n; i++) {
		uint64_t idx = cand[i];
		if (vm_page_resident(copy, idx))
			continue;
		struct vm_lookup l;
		kr = vm_object_lookup(src, base + idx, base + idx, base + idx + 1, VM_PROT_READ, false, &l);
		if (kr != KERN_SUCCESS)
			break;
		if (!l.page || (l.page->flags & VM_PAGE_ZERO))
			continue;
		if (!vm_object_cow_page(copy, idx, l.page, true)) {
			kr = KERN_RESOURCE_SHORTAGE;
			break;
		}
	}
	free(cand);
	if (kr != KERN_SUCCESS) {
		vm_object_deallocate(copy);
		return kr;
	}
	src->dom->stats.object_copies++;
	*out = copy;
	return KERN_SUCCESS;
}

static int vm_object_index_compare(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

/* Whether some object of the chain from @obj down has page @idx (resident or with its pager). */
static bool vm_object_chain_has(const struct vm_object *obj, uint64_t idx)
{
	for (; obj; obj = obj->shadow) {
		/* A base's snapshot may have any page (vm_object_set_base). */
		if (obj->base || vm_object_has(obj, idx))
			return true;
		idx += vm_atop(obj->shadow_offset);
	}
	return false;
}

/* The bytes of page @idx of the chain from @obj down to @stop (excluded), from the first
 * object that has it (paged back in if its pager holds it), or NULL: no object above
 * @stop has data for it, or it is a zero fill never written. *below, *below_idx: the rest of
 * the chain under that object. *err: a pager failure. */
/* Pages of one object its pager said it has no data for, [lo, hi): an enumeration asks
 * again for none of them (a sparse snapshot would otherwise be asked for the rest of the
 * range once per zero page). */
struct vm_object_unavailable {
	const struct vm_object *obj;
	uint64_t lo, hi;
};

static const void *vm_object_data_above(struct vm_object *obj, uint64_t idx, uint64_t hi, const struct vm_object *stop,
					void *scratch, const struct vm_object **below, uint64_t *below_idx,
					struct vm_object_unavailable *known, kern_return_t *err)
{
	*err = KERN_SUCCESS;
	for (; obj && obj != stop; obj = obj->shadow) {
		*below = obj->shadow;
		*below_idx = idx + vm_atop(obj->shadow_offset);
		uint8_t state = vm_page_state(obj, idx);
		if (state & VM_PS_PROT) {
			pmap_packed_read(obj, idx, scratch);
			return scratch;
		}
		bool known_unavailable = known->obj == obj && idx >= known->lo && idx < known->hi;
		if (!state && !known_unavailable && vm_object_pager_has(obj, idx)) {
			bool unavailable;
			uint64_t size = vm_atop(obj->size), run_end = idx + 1;
			*err = vm_object_pagein_run(obj, idx, idx, hi < size ? hi : size, VM_PROT_READ, &unavailable,
						    &run_end);
			if (*err != KERN_SUCCESS)
				return NULL;
			if (unavailable)
				*known = (struct vm_object_unavailable){obj, idx, run_end};
			state = unavailable ? 0 : vm_page_state(obj, idx);
		}
		if (state) {
			struct vm_page *p = hmap_get(&obj->pages, idx);
			return (p->flags & VM_PAGE_ZERO) ? NULL : pmap_page_bytes(p, scratch);
		}
		idx += vm_atop(obj->shadow_offset);
		hi += vm_atop(obj->shadow_offset);
	}
	return NULL;
}

kern_return_t vm_object_enumerate(struct vm_object *obj, vm_offset_t offset, vm_size_t size,
				  const struct vm_object *stop, vm_object_page_fn *fn, void *arg, vm_offset_t base)
{
	if (!obj)
		return KERN_SUCCESS;
	if (offset + size < offset || offset + size > obj->size || !vm_page_aligned(offset) || !vm_page_aligned(size))
		return KERN_INVALID_ARGUMENT;
	uint64_t *cand;
	size_t n;
	if (vm_object_copy_candidates(obj, offset, size, stop, &cand, &n) < 0)
		return KERN_RESOURCE_SHORTAGE;
	if (n)
		qsort(cand, n, sizeof(*cand), vm_object_index_compare);
	uint64_t first = vm_atop(offset), end = first + vm_atop(size);
	uint8_t scratch[VM_PAGE_SIZE] __attribute__((aligned(64)));
	kern_return_t kr = KERN_SUCCESS;
	struct vm_object_unavailable known = {.obj = NULL};
	for (size_t i = 0; i < n && kr == KERN_SUCCESS; i++) {
		if (i > 0 && cand[i] == cand[i - 1])
			continue;
		const struct vm_object *below = NULL;
		uint64_t below_idx = 0;
		const void *bytes =
			vm_object_data_above(obj, first + cand[i], end, stop, scratch, &below, &below_idx, &known, &kr);
		/* Zero over nothing reads as it would without the page (one the guest only read). */
		if (!bytes || (page_store_is_zero(bytes) && !vm_object_chain_has(below, below_idx)))
			continue;
		if (fn(arg, base + vm_ptoa(cand[i]), bytes) != 0)
			kr = KERN_ABORTED;
	}
	free(cand);
	return kr;
}

/* Give modified @p back to its object's pager, writers stopped first (a write after the copy
 * faults and marks it again). 0, -ENOMEM, or the pager's -errno (the page stays modified). */
static int vm_object_return_page(struct vm_object *obj, struct vm_page *p)
{
	if (pmap_page_protect(p, VM_PROT_READ | VM_PROT_EXECUTE) < 0)
		return -ENOMEM;
	if (!pmap_page_dirty(p))
		return 0;
	uint8_t scratch[VM_PAGE_SIZE] __attribute__((aligned(64)));
	int err = pager_data_return(obj->pager, obj->mo, vm_ptoa(p->pindex), pmap_page_bytes(p, scratch), VM_PAGE_SIZE);
	if (err < 0)
		return err;
	p->flags &= ~VM_PAGE_DIRTY;
	obj->stats.pageouts++;
	obj->dom->stats.pageouts++;
	return 0;
}

kern_return_t vm_object_clean(struct vm_object *obj, vm_offset_t offset, vm_size_t size)
{
	if (!obj->pager || obj->internal || !obj->pager->ops->data_return)
		return KERN_SUCCESS;
	size_t n;
	struct vm_page **v = vm_object_page_list(obj, &n);
	if (!v)
		return KERN_RESOURCE_SHORTAGE;
	kern_return_t kr = KERN_SUCCESS;
	for (size_t i = 0; i < n; i++) {
		struct vm_page *p = v[i];
		vm_offset_t at = vm_ptoa(p->pindex);
		if (at < offset || at >= offset + size)
			continue;
		int err = vm_object_return_page(obj, p);
		if (err < 0)
			kr = err == -ENOMEM ? KERN_RESOURCE_SHORTAGE : KERN_MEMORY_ERROR;
	}
	free(v);
	return kr;
}

int vm_object_lock_request(struct vm_object *obj, vm_offset_t offset, vm_size_t size, unsigned flags, vm_prot_t lock)
{
	int result = 0;
	uint64_t idx = vm_atop(offset), end = vm_atop(offset + size);
	for (; vm_page_next(obj, &idx, end); idx++) {
		struct vm_page *p = vm_page_lookup(obj, idx);
		int err = flags & PAGER_LOCK_CLEAN ? vm_object_return_page(obj, p) : 0;
		if (err < 0)
			result = err == -ENOMEM ? -ENOMEM : -EIO;
		/* Flushing a page whose return failed would lose the only copy of its bytes. */
		if ((flags & PAGER_LOCK_FLUSH) && !err) {
			/* Mach: without should_return, the modified bytes are the pager's to lose. */
			pmap_page_discard(p);
			vm_page_free(p);
			continue;
		}
		p->lock = vm_object_lock_value(lock);
		vm_prot_t allowed = VM_PROT_ALL & ~(vm_prot_t)p->lock;
		if (p->lock && pmap_page_protect(p, allowed & VM_PROT_READ ? allowed : VM_PROT_NONE) < 0)
			result = -ENOMEM;
	}
	return result;
}

kern_return_t vm_object_data_unlock(struct vm_object *obj, uint64_t pindex, vm_prot_t access)
{
	assert(obj->pager); /* only a pager locks pages, and objects with pages never lose theirs */
	struct pager_reply r = {.object = obj, .first = pindex, .end = pindex + 1, .want = pindex};
	int err = pager_data_unlock(obj->pager, obj->mo, vm_ptoa(pindex), VM_PAGE_SIZE, access, &r);
	if (err == -EACCES)
		return KERN_PROTECTION_FAILURE;
	if (err == -ENOMEM)
		return KERN_RESOURCE_SHORTAGE;
	return err ? KERN_MEMORY_ERROR : KERN_SUCCESS;
}

int vm_object_pager_event_fd(struct vm_object *obj)
{
	return obj->pager ? pager_event_fd(obj->pager, obj->mo) : -1;
}

int vm_object_pager_service(struct vm_object *obj)
{
	if (!obj->pager || !obj->pager->ops->service)
		return 0;
	struct pager_reply r = {.object = obj, .first = 0, .end = vm_atop(obj->size), .want = UINT64_MAX};
	vm_domain_begin(obj->dom);
	int err = obj->pager->ops->service(obj->pager, obj->mo, &r);
	vm_domain_end(obj->dom);
	return err;
}

struct vm_page *vm_object_cow_page(struct vm_object *obj, uint64_t pindex, struct vm_page *src, bool copy)
{
	struct vm_page *p = vm_page_alloc(obj, pindex);
	if (!p)
		return NULL;
	if (copy && src && !(src->flags & VM_PAGE_ZERO)) {
		uint8_t scratch[VM_PAGE_SIZE] __attribute__((aligned(64)));
		if (vm_page_fill(p, pmap_page_bytes(src, scratch)) < 0) {
			vm_page_free(p);
			return NULL;
		}
	}
	p->flags |= VM_PAGE_DIRTY;
	obj->stats.cow_pages++;
	return p;
}

struct vm_page *vm_object_zero_page(struct vm_object *obj, uint64_t pindex)
{
	struct vm_page *p = vm_page_alloc(obj, pindex);
	if (!p)
		return NULL;
	obj->stats.zero_fills++;
	obj->dom->stats.zero_fill_count++;
	return p;
}

void vm_object_info(const struct vm_object *obj, struct vm_object_info *info)
{
	*info = (struct vm_object_info){
		.id = obj->id,
		.size = obj->size,
		.internal = obj->internal,
		.copy_strategy = obj->copy_strategy,
		.ref_count = obj->ref_count,
		.direct_refs = obj->direct_refs,
		.frozen_refs = obj->frozen_refs,
		.shadow_count = obj->shadow_count,
		.shadow_id = obj->shadow ? obj->shadow->id : 0,
		.shadow_offset = obj->shadow_offset,
		.resident_count = obj->resident_count,
		.paged_count = hmap_count(&obj->paged),
		.pager_name = obj->pager ? obj->pager->ops->name : NULL,
		.base = obj->base,
		.stats = obj->stats,
	};
}

unsigned vm_object_chain(const struct vm_object *obj, struct vm_object_info *out, unsigned max)
{
	unsigned depth = 0;
	for (; obj; obj = obj->shadow, depth++) {
		assert(depth < VM_OBJECT_DEPTH_MAX);
		if (depth < max)
			vm_object_info(obj, &out[depth]);
	}
	return depth;
}

static void vm_object_check_page(const struct vm_object *obj, uint64_t idx, const struct vm_page *p)
{
	assert(p && p->object == obj && p->pindex == idx && idx < vm_atop(obj->size));
	/* Bytes live in exactly one place: a buffer, the mappings, or nowhere (zero). */
	assert(!(p->data && p->pv));
	assert(!(p->flags & VM_PAGE_ZERO) || (!p->data && !p->pv));
	assert(p->data || p->pv || (p->flags & VM_PAGE_ZERO));
	unsigned mappings = 0, writers = 0;
	for (const struct pv_entry *pv = p->pv; pv; pv = pv->next) {
		assert(pv->page == p && pmap_pv(pv->pmap, pv->va) == pv && pv->prot);
		mappings++;
		writers += (pv->prot & VM_PROT_WRITE) != 0;
	}
	assert(writers == 0 || mappings == 1);
	(void)mappings;
	(void)writers;
}

void vm_object_check(const struct vm_object *obj)
{
	unsigned depth = 0;
	for (; obj; obj = obj->shadow) {
		assert(++depth < VM_OBJECT_DEPTH_MAX);
		assert(obj->ref_count > 0);
		assert(obj->direct_refs + obj->frozen_refs <= obj->ref_count);
		/* A frozen object has no writers. */
		assert(obj->direct_refs == 0 || (obj->shadow_count == 0 && obj->frozen_refs == 0));
		assert(obj->shadow != obj);
		if (obj->shadow) {
			assert(obj->shadow_offset + obj->size <= obj->shadow->size);
			assert(obj->shadow->shadow_count > 0);
		}
		unsigned shadowers = 0;
		for (const struct vm_object *s = obj->shadowers; s; s = s->sib_next) {
			assert(s->shadow == obj);
			shadowers++;
		}
		assert(shadowers == obj->shadow_count);
		assert(obj->internal || hmap_count(&obj->paged) == 0);
		uint64_t resident = 0, packed = 0;
		for (uint64_t idx = 0; vm_page_next(obj, &idx, vm_atop(obj->size)); idx++, resident++) {
			uint8_t state = vm_page_state(obj, idx);
			if (state & VM_PS_FULL) {
				assert(!(state & (VM_PS_PROT | VM_PS_DIRTY)));
				vm_object_check_page(obj, idx, hmap_get(&obj->pages, idx));
				continue;
			}
			/* Packed: mapped where the binding says, and nothing else is mapped there. */
			assert((state & VM_PS_PROT) && obj->bind_pmap);
			assert(!pmap_pv(obj->bind_pmap, obj->bind_va + vm_ptoa(idx)));
			packed++;
		}
		assert(resident == obj->resident_count && packed == obj->packed_count);
		assert(hmap_count(&obj->pages) == resident - packed);
		assert(!obj->bind_pmap == !packed);
		(void)resident;
		(void)packed;
	}
}

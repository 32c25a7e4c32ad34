/* Resident pages: state tables, full pages, packing, the pack queue. See vm_page.h. */
#include "mmu/vm_page.h"

#include <assert.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "mmu/pmap.h"
#include "mmu/vm_domain.h"
#include "mmu/vm_object.h"

#define VM_PS_LEAF ((uint64_t)1 << VM_PS_LEAF_SHIFT)

static uint64_t vm_page_leaves(const struct vm_object *obj)
{
	return (vm_atop(obj->size) + VM_PS_LEAF - 1) >> VM_PS_LEAF_SHIFT;
}

uint8_t vm_page_state(const struct vm_object *obj, uint64_t pindex)
{
	uint64_t leaf = pindex >> VM_PS_LEAF_SHIFT;
	if (!obj->states || leaf >= vm_page_leaves(obj) || !obj->states[leaf])
		return 0;
	return obj->states[leaf][pindex & (VM_PS_LEAF - 1)];
}

uint8_t *vm_page_state_slot(struct vm_object *obj, uint64_t pindex, bool grow)
{
	assert(pindex < vm_atop(obj->size));
	uint64_t leaf = pindex >> VM_PS_LEAF_SHIFT;
	if (!obj->states) {
		if (!grow || !(obj->states = calloc(vm_page_leaves(obj), sizeof(*obj->states))))
			return NULL;
	}
	if (!obj->states[leaf]) {
		if (!grow || !(obj->states[leaf] = calloc(VM_PS_LEAF, 1)))
			return NULL;
	}
	return &obj->states[leaf][pindex & (VM_PS_LEAF - 1)];
}

uint8_t *vm_page_state_leaf(const struct vm_object *obj, uint64_t pindex, uint64_t end, uint64_t *leaf_end)
{
	*leaf_end = (pindex | (VM_PS_LEAF - 1)) + 1;
	if (*leaf_end > end)
		*leaf_end = end;
	return obj->states ? obj->states[pindex >> VM_PS_LEAF_SHIFT] : NULL;
}

bool vm_page_next(const struct vm_object *obj, uint64_t *pindex, uint64_t end)
{
	if (!obj->states)
		return false;
	uint64_t size = vm_atop(obj->size);
	if (end > size)
		end = size;
	for (uint64_t i = *pindex; i < end;) {
		uint64_t leaf_end;
		const uint8_t *leaf = vm_page_state_leaf(obj, i, end, &leaf_end);
		if (!leaf) {
			i = leaf_end;
			continue;
		}
		/* Eight states at a time: most of a sparse leaf is zero. */
		while (i < leaf_end && (i & 7))
			if (leaf[i++ & (VM_PS_LEAF - 1)])
				goto found;
		for (; i + 8 <= leaf_end; i += 8) {
			uint64_t w;
			memcpy(&w, leaf + (i & (VM_PS_LEAF - 1)), sizeof(w));
			if (w)
				break;
		}
		for (; i < leaf_end; i++)
			if (leaf[i & (VM_PS_LEAF - 1)]) {
				i++;
				goto found;
			}
		continue;
found:
		*pindex = i - 1;
		return true;
	}
	return false;
}

uint64_t vm_page_count_resident(const struct vm_object *obj, uint64_t first, uint64_t end)
{
	uint64_t size = vm_atop(obj->size), n = 0;
	if (end > size)
		end = size;
	if (!obj->states || first >= end)
		return 0;
	if (first == 0 && end == size)
		return obj->resident_count;
	const uint64_t low7 = 0x7f7f7f7f7f7f7f7full;
	for (uint64_t i = first; i < end;) {
		uint64_t leaf_end;
		const uint8_t *leaf = vm_page_state_leaf(obj, i, end, &leaf_end);
		if (!leaf) {
			i = leaf_end;
			continue;
		}
		for (; i < leaf_end && (i & 7); i++)
			n += leaf[i & (VM_PS_LEAF - 1)] != 0;
		for (; i + 8 <= leaf_end; i += 8) {
			uint64_t w;
			memcpy(&w, leaf + (i & (VM_PS_LEAF - 1)), sizeof(w));
			/* High bit of each byte: set when the byte is not zero. */
			uint64_t nonzero = (((w & low7) + low7) | w) & ~low7;
			n += (uint64_t)__builtin_popcountll(nonzero);
		}
		for (; i < leaf_end; i++)
			n += leaf[i & (VM_PS_LEAF - 1)] != 0;
	}
	return n;
}

void vm_page_states_free(struct vm_object *obj)
{
	assert(obj->resident_count == 0);
	if (!obj->states)
		return;
	for (uint64_t l = 0; l < vm_page_leaves(obj); l++)
		free(obj->states[l]);
	free(obj->states);
	obj->states = NULL;
}

static void vm_page_dequeue(struct vm_page *p)
{
	if (!(p->flags & VM_PAGE_QUEUED))
		return;
	struct vm_domain *dom = p->object->dom;
	if (p->q_prev)
		p->q_prev->q_next = p->q_next;
	else
		dom->pack_queue = p->q_next;
	if (p->q_next)
		p->q_next->q_prev = p->q_prev;
	p->q_prev = p->q_next = NULL;
	p->flags &= ~VM_PAGE_QUEUED;
}

void vm_page_enqueue(struct vm_page *p)
{
	if (p->flags & VM_PAGE_QUEUED)
		return;
	struct vm_domain *dom = p->object->dom;
	p->q_prev = NULL;
	p->q_next = dom->pack_queue;
	if (dom->pack_queue)
		dom->pack_queue->q_prev = p;
	dom->pack_queue = p;
	p->flags |= VM_PAGE_QUEUED;
}

/* A struct for page @pindex of @obj, whose state byte is *slot: in the table, queued. */
static struct vm_page *vm_page_new_full(struct vm_object *obj, uint64_t pindex, uint8_t *slot)
{
	struct vm_domain *dom = obj->dom;
	struct vm_page *p = pool_alloc(&dom->page_pool);
	if (!p)
		return NULL;
	memset(p, 0, sizeof(*p));
	p->object = obj;
	p->pindex = pindex;
	if (hmap_put(&obj->pages, pindex, p) < 0) {
		pool_free(&dom->page_pool, p);
		return NULL;
	}
	*slot = (uint8_t)((*slot & VM_PS_REF) | VM_PS_FULL);
	vm_page_enqueue(p);
	return p;
}

static void vm_page_count(struct vm_object *obj, int delta)
{
	struct vm_domain *dom = obj->dom;
	obj->resident_count += (uint64_t)(int64_t)delta;
	dom->stats.resident_count += (uint64_t)(int64_t)delta;
	if (dom->stats.resident_count > dom->stats.resident_peak)
		dom->stats.resident_peak = dom->stats.resident_count;
}

struct vm_page *vm_page_alloc(struct vm_object *obj, uint64_t pindex)
{
	struct vm_domain *dom = obj->dom;
	assert(pindex < vm_atop(obj->size));
	uint8_t *slot = vm_page_state_slot(obj, pindex, true);
	if (!slot)
		return NULL;
	assert(*slot == 0);
	struct vm_page *p = vm_page_new_full(obj, pindex, slot);
	if (!p)
		return NULL;
	p->flags |= VM_PAGE_ZERO;
	p->epoch = dom->epoch;
	vm_page_count(obj, 1);
	return p;
}

/* Release @p's struct (the page itself lives on packed, or is gone). */
static void vm_page_release_full(struct vm_page *p)
{
	struct vm_page *was = hmap_del(&p->object->pages, p->pindex);
	assert(was == p);
	(void)was;
	vm_page_dequeue(p);
	pool_free(&p->object->dom->page_pool, p);
}

void vm_page_free(struct vm_page *p)
{
	struct vm_object *obj = p->object;
	assert(!p->pv);
	vm_page_drop_buffer(p);
	*vm_page_state_slot(obj, p->pindex, false) = 0;
	vm_page_release_full(p);
	vm_page_count(obj, -1);
}

void vm_page_free_packed(struct vm_object *obj, uint64_t pindex)
{
	uint8_t *slot = vm_page_state_slot(obj, pindex, false);
	assert(slot && (*slot & VM_PS_PROT) && !(*slot & VM_PS_FULL));
	*slot = 0;
	obj->dom->stats.mapped_count--;
	obj->dom->stats.packed_count--;
	vm_page_count(obj, -1);
	if (--obj->packed_count == 0)
		pmap_unbind(obj);
}

int vm_page_move_packed(struct vm_object *from, uint64_t idx, struct vm_object *to, uint64_t pindex)
{
	uint8_t *src = vm_page_state_slot(from, idx, false);
	assert(src && (*src & VM_PS_PROT) && from->bind_pmap);
	vm_addr_t va = from->bind_va + vm_ptoa(idx);
	if (to->bind_pmap && (to->bind_pmap != from->bind_pmap || to->bind_va + vm_ptoa(pindex) != va))
		return -1;
	uint8_t *dst = vm_page_state_slot(to, pindex, true);
	if (!dst)
		return -ENOMEM;
	assert(*dst == 0);
	if (!to->bind_pmap && pmap_bind(from->bind_pmap, to, va, pindex) != 0)
		return -1;
	*dst = *src | VM_PS_DIRTY;
	*src = 0;
	from->resident_count--;
	to->resident_count++;
	to->packed_count++;
	if (--from->packed_count == 0)
		pmap_unbind(from);
	return 0;
}

/* Unpack packed page @pindex of @obj: a full page mapped where the binding says. */
static struct vm_page *vm_page_unpack(struct vm_object *obj, uint64_t pindex, uint8_t *slot)
{
	uint8_t state = *slot;
	assert((state & VM_PS_PROT) && !(state & VM_PS_FULL));
	struct vm_page *p = vm_page_new_full(obj, pindex, slot);
	/* Callers hold page pointers across lookups that cannot fail: a host that refuses a
	 * hundred bytes here leaves no way to keep the page's state. */
	if (!p || pmap_unpack(p, state & VM_PS_PROT) < 0)
		abort();
	p->flags = (state & VM_PS_DIRTY ? VM_PAGE_DIRTY : 0) | (p->flags & VM_PAGE_QUEUED);
	p->epoch = obj->dom->epoch - 1;
	obj->dom->stats.packed_count--;
	if (--obj->packed_count == 0)
		pmap_unbind(obj);
	return p;
}

struct vm_page *vm_page_lookup(struct vm_object *obj, uint64_t pindex)
{
	uint8_t state = vm_page_state(obj, pindex);
	if (state & VM_PS_FULL)
		return hmap_get(&obj->pages, pindex);
	if (!state)
		return NULL;
	return vm_page_unpack(obj, pindex, vm_page_state_slot(obj, pindex, false));
}

int vm_page_rename(struct vm_page *p, struct vm_object *obj, uint64_t pindex)
{
	uint8_t *to = vm_page_state_slot(obj, pindex, true);
	if (!to)
		return -ENOMEM;
	assert(*to == 0);
	if (hmap_put(&obj->pages, pindex, p) < 0)
		return -ENOMEM;
	uint8_t *from = vm_page_state_slot(p->object, p->pindex, false);
	*to = *from;
	*from = 0;
	hmap_del(&p->object->pages, p->pindex);
	vm_page_count(p->object, -1);
	vm_page_count(obj, 1);
	p->object = obj;
	p->pindex = pindex;
	vm_page_enqueue(p);
	return 0;
}

void vm_page_activate(struct vm_page *p)
{
	struct vm_domain *dom = p->object->dom;
	if (p->epoch != dom->epoch)
		vm_page_reference(p->object, p->pindex);
	p->epoch = dom->epoch;
}

void vm_page_reference(struct vm_object *obj, uint64_t pindex)
{
	uint8_t *slot = vm_page_state_slot(obj, pindex, false);
	assert(slot && *slot);
	*slot |= VM_PS_REF;
}

int vm_page_fill(struct vm_page *p, const void *src)
{
	assert(!p->pv && !p->data && (p->flags & VM_PAGE_ZERO));
	struct vm_domain *dom = p->object->dom;
	p->data = pool_alloc(&dom->data_pool);
	if (!p->data)
		return -ENOMEM;
	dom->stats.buffer_count++;
	if (src)
		memcpy(p->data, src, VM_PAGE_SIZE);
	else
		memset(p->data, 0, VM_PAGE_SIZE);
	p->flags &= ~VM_PAGE_ZERO;
	return 0;
}

int vm_page_buffer(struct vm_page *p)
{
	assert(!p->pv);
	return p->data ? 0 : vm_page_fill(p, NULL);
}

void vm_page_drop_buffer(struct vm_page *p)
{
	if (!p->data)
		return;
	struct vm_domain *dom = p->object->dom;
	pool_free(&dom->data_pool, p->data);
	p->data = NULL;
	dom->stats.buffer_count--;
}

/* Pack full page @p if its bytes live only in one mapping its object's binding covers. */
static void vm_page_pack(struct vm_page *p)
{
	struct vm_object *obj = p->object;
	if (p->data || !p->pv || p->pv->next || p->lock)
		return;
	vm_prot_t prot = p->pv->prot;
	if (pmap_pack(p) < 0)
		return;
	uint8_t *slot = vm_page_state_slot(obj, p->pindex, false);
	*slot = (uint8_t)((*slot & VM_PS_REF) | prot | (p->flags & VM_PAGE_DIRTY ? VM_PS_DIRTY : 0));
	obj->packed_count++;
	obj->dom->stats.packed_count++;
	vm_page_release_full(p);
}

void vm_page_pack_queued(struct vm_domain *dom)
{
	while (dom->pack_queue) {
		struct vm_page *p = dom->pack_queue;
		vm_page_dequeue(p);
		vm_page_pack(p);
	}
}

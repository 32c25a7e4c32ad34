/* Resident pages: allocation, the per-object table, the resident queue. See vm_page.h. */
#include "mmu/vm_page.h"

#include <assert.h>
#include <errno.h>
#include <string.h>

#include "mmu/vm_domain.h"
#include "mmu/vm_object.h"

static void vm_page_lru_unlink(struct vm_domain *dom, struct vm_page *p)
{
	if (p->lru_prev)
		p->lru_prev->lru_next = p->lru_next;
	else
		dom->lru_head = p->lru_next;
	if (p->lru_next)
		p->lru_next->lru_prev = p->lru_prev;
	else
		dom->lru_tail = p->lru_prev;
	p->lru_prev = p->lru_next = NULL;
}

static void vm_page_lru_append(struct vm_domain *dom, struct vm_page *p)
{
	p->lru_prev = dom->lru_tail;
	p->lru_next = NULL;
	if (dom->lru_tail)
		dom->lru_tail->lru_next = p;
	else
		dom->lru_head = p;
	dom->lru_tail = p;
	p->epoch = dom->epoch;
}

struct vm_page *vm_page_alloc(struct vm_object *obj, uint64_t pindex)
{
	struct vm_domain *dom = obj->dom;
	assert(!vm_page_lookup(obj, pindex));
	assert(pindex < vm_atop(obj->size));
	struct vm_page *p = pool_alloc(&dom->page_pool);
	if (!p)
		return NULL;
	memset(p, 0, sizeof(*p));
	p->object = obj;
	p->pindex = pindex;
	p->flags = VM_PAGE_ZERO;
	if (hmap_put(&obj->pages, pindex, p) < 0) {
		pool_free(&dom->page_pool, p);
		return NULL;
	}
	vm_page_lru_append(dom, p);
	if (++dom->stats.resident_count > dom->stats.resident_peak)
		dom->stats.resident_peak = dom->stats.resident_count;
	return p;
}

void vm_page_free(struct vm_page *p)
{
	struct vm_object *obj = p->object;
	struct vm_domain *dom = obj->dom;
	assert(!p->pv);
	struct vm_page *was = hmap_del(&obj->pages, p->pindex);
	assert(was == p);
	(void)was;
	vm_page_drop_buffer(p);
	vm_page_lru_unlink(dom, p);
	dom->stats.resident_count--;
	pool_free(&dom->page_pool, p);
}

struct vm_page *vm_page_lookup(const struct vm_object *obj, uint64_t pindex)
{
	return hmap_get(&obj->pages, pindex);
}

int vm_page_rename(struct vm_page *p, struct vm_object *obj, uint64_t pindex)
{
	assert(!vm_page_lookup(obj, pindex));
	if (hmap_put(&obj->pages, pindex, p) < 0)
		return -ENOMEM;
	hmap_del(&p->object->pages, p->pindex);
	p->object = obj;
	p->pindex = pindex;
	return 0;
}

void vm_page_activate(struct vm_page *p)
{
	struct vm_domain *dom = p->object->dom;
	if (dom->lru_tail != p) {
		vm_page_lru_unlink(dom, p);
		vm_page_lru_append(dom, p);
	}
	p->epoch = dom->epoch;
}

int vm_page_buffer(struct vm_page *p)
{
	assert(!p->pv);
	if (p->data)
		return 0;
	assert(p->flags & VM_PAGE_ZERO);
	struct vm_domain *dom = p->object->dom;
	p->data = pool_alloc(&dom->data_pool);
	if (!p->data)
		return -ENOMEM;
	dom->stats.buffer_count++;
	if (p->flags & VM_PAGE_ZERO)
		memset(p->data, 0, VM_PAGE_SIZE);
	p->flags &= ~VM_PAGE_ZERO;
	return 0;
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

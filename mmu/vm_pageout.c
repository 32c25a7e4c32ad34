/* Page-out under a resident limit, least recently used first. See vm_pageout.h. */
#include "mmu/vm_pageout.h"

#include <errno.h>

#include "mmu/pager.h"
#include "mmu/pmap.h"
#include "mmu/vm_domain.h"
#include "mmu/vm_object.h"
#include "mmu/vm_page.h"

/* Anonymous objects get their memory object from the default pager when first needed. */
static int vm_pageout_pager(struct vm_object *obj)
{
	struct pager *dp = obj->dom->default_pager;
	if (obj->pager)
		return 0;
	if (!obj->internal || !dp)
		return -ENOSPC;
	int err = pager_create(dp, obj->size, &obj->mo);
	if (err)
		return err;
	dp->refs++;
	obj->pager = dp;
	return 0;
}

int vm_pageout_page(struct vm_page *page)
{
	struct vm_object *obj = page->object;
	struct vm_domain *dom = obj->dom;
	/* Stop writers first: a write after the bytes are copied would be lost. */
	if (pmap_page_protect(page, VM_PROT_READ | VM_PROT_EXECUTE) < 0)
		return -ENOMEM;
	if (pmap_page_dirty(page)) {
		int err = vm_pageout_pager(obj);
		if (err)
			return err;
		uint8_t scratch[VM_PAGE_SIZE] __attribute__((aligned(64)));
		const void *bytes = pmap_page_bytes(page, scratch);
		err = pager_data_return(obj->pager, obj->mo, vm_ptoa(page->pindex), bytes, VM_PAGE_SIZE);
		if (err) {
			/* Kept for the domain's user: page-outs refused one by one must not go on
			 * unseen while resident memory grows past its limit. */
			dom->stats.pageout_errors++;
			dom->pageout_error = err;
			return err;
		}
		if (obj->internal && hmap_put(&obj->paged, page->pindex, (void *)1) < 0)
			return -ENOMEM; /* the pager has a copy, but we could not note it: keep ours */
		dom->stats.pageouts++;
		obj->stats.pageouts++;
	} else {
		dom->stats.reclaims++;
	}
	pmap_page_discard(page);
	vm_page_free(page);
	return 0;
}

uint64_t vm_pageout_scan(struct vm_domain *dom, uint64_t target)
{
	/* Each page once, plus one visit per reference taken away. */
	uint64_t freed = 0, budget = dom->stats.resident_count;
	struct vm_object *obj = dom->hand_object;
	uint64_t idx = obj ? dom->hand_pindex : 0;
	if (!obj)
		obj = dom->objects;
	for (uint64_t seen = 0; obj && freed < target && seen < budget && dom->stats.resident_count;) {
		if (!vm_page_next(obj, &idx, vm_atop(obj->size))) {
			obj = obj->all_next ? obj->all_next : dom->objects;
			idx = 0;
			continue;
		}
		uint64_t at = idx++;
		seen++;
		uint8_t *slot = vm_page_state_slot(obj, at, false);
		struct vm_page *p = (*slot & VM_PS_FULL) ? hmap_get(&obj->pages, at) : NULL;
		if (p && p->epoch == dom->epoch)
			continue; /* used by the operation in progress */
		if (*slot & VM_PS_REF) {
			*slot &= (uint8_t)~VM_PS_REF;
			dom->stats.reactivations++;
			budget++;
			continue;
		}
		if (vm_pageout_page(p ? p : vm_page_lookup(obj, at)) == 0) {
			freed++;
		} else {
			/* Keep it, out of this turn's way. */
			dom->stats.pageout_failures++;
			vm_page_reference(obj, at);
		}
	}
	dom->hand_object = obj;
	dom->hand_pindex = idx;
	return freed;
}

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
		if (err)
			return err;
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
	uint64_t freed = 0, budget = dom->stats.resident_count;
	struct vm_page *p = dom->lru_head;
	for (uint64_t seen = 0; p && freed < target && seen < budget; seen++) {
		struct vm_page *next = p->lru_next;
		if (p->epoch != dom->epoch) {
			if (vm_pageout_page(p) == 0) {
				freed++;
			} else {
				/* Keep it, out of this scan's way. */
				dom->stats.pageout_failures++;
				vm_page_activate(p);
			}
		}
		p = next;
	}
	return freed;
}

/*
 * Fault resolution. vm_fault_page finds (and for writes, copies up) one page; vm_fault
 * enters it and the other pages of its cluster into the map's pmap. See vm_fault.h.
 */
#include "mmu/vm_fault.h"

#include <assert.h>
#include <errno.h>

#include "mmu/pager.h"
#include "mmu/pmap.h"
#include "mmu/vm_domain.h"
#include "mmu/vm_map.h"
#include "mmu/vm_object.h"
#include "mmu/vm_page.h"

/* How one page is to be installed. */
struct vm_fault_page {
	struct vm_page *page;  /* the page (never NULL on success) */
	vm_prot_t prot;        /* protection to enter it with */
	unsigned flags;        /* PMAP_ENTER_* */
	unsigned depth;        /* where it was found */
	bool zero_fill, cow, fresh; /* fresh: allocated by this call */
	struct vm_page *drop;  /* a snapshot base's page copied up: freed once entered */
};

static kern_return_t vm_fault_kr(int err)
{
	return err == -ENOMEM ? KERN_RESOURCE_SHORTAGE : KERN_FAILURE;
}

/* The access a fault for @access needs to page @l of @top's chain: a page below the top is
 * only read (a write copies it up); every access reads (a mapping has no write-only or
 * execute-only form). */
static vm_prot_t vm_fault_needs(const struct vm_lookup *l, const struct vm_object *top, vm_prot_t access)
{
	return l->object == top ? access | VM_PROT_READ : VM_PROT_READ;
}

/*
 * Resolve the page at @va of entry @e for @access: the entry's needs-copy and object must
 * already be settled for writes. Reads of pages below the top object give them read-only;
 * writes copy them into the top object. @neighbor: best effort for a cluster page (never ask
 * a pager; KERN_MEMORY_FAILURE = skip it). @enter: the page is going to be entered at @va
 * (so a copy may reuse the bytes the pmap holds there).
 */
static kern_return_t vm_fault_page(struct vm_map *map, struct vm_map_entry *e, vm_addr_t va, vm_prot_t access,
				   uint64_t lo, uint64_t hi, bool neighbor, bool enter, struct vm_fault_page *out)
{
	struct vm_object *top = e->object;
	uint64_t idx = vm_atop(e->offset + (va - e->start));
	struct vm_lookup l;
	kern_return_t kr = vm_object_lookup(top, idx, lo, hi, access, neighbor, &l);
	if (kr == KERN_SUCCESS && l.page && (l.page->lock & vm_fault_needs(&l, top, access))) {
		/* Its pager kept rights to it (pager.h): ask, then look again, for the answer may
		 * have taken the page away or left it locked (a pager that did not answer). */
		if (neighbor)
			return KERN_MEMORY_FAILURE;
		vm_prot_t needs = vm_fault_needs(&l, top, access);
		map->dom->stats.data_unlocks++;
		kr = vm_object_data_unlock(l.object, l.pindex, needs);
		if (kr == KERN_SUCCESS)
			kr = vm_object_lookup(top, idx, lo, hi, access, false, &l);
		if (kr == KERN_SUCCESS && l.page && (l.page->lock & vm_fault_needs(&l, top, access)))
			kr = KERN_MEMORY_ERROR;
	}
	if (kr != KERN_SUCCESS)
		return kr;
	*out = (struct vm_fault_page){.page = l.page, .prot = e->protection, .depth = l.depth};
	if (!l.page) {
		/* Nothing in the chain has it: zero-fill into the top object (harmless even when that
		 * object is frozen: every view of the page is zero). */
		out->page = vm_object_zero_page(top, idx);
		if (!out->page)
			return KERN_RESOURCE_SHORTAGE;
		out->zero_fill = out->fresh = true;
		out->depth = 0;
	} else if (l.object != top) {
		if (!(access & VM_PROT_WRITE)) {
			out->prot &= ~VM_PROT_WRITE;
		} else {
			assert(!e->needs_copy);
			struct vm_page *src = l.page;
			struct pv_entry *pv = enter ? pmap_lookup(&map->pmap, va) : NULL;
			bool same = pv && pv->page == src;
			/* Other holders of the top object may have @src mapped where they should now see
			 * the copy (Mach: pmap_page_protect(old page, none)). */
			if (top->ref_count > 1 && pmap_page_remove_others(src, same ? pv : NULL) < 0)
				return KERN_RESOURCE_SHORTAGE;
			if (!same && !enter && pmap_remove(&map->pmap, va, va + VM_PAGE_SIZE, NULL) < 0)
				return KERN_RESOURCE_SHORTAGE;
			out->page = vm_object_cow_page(top, idx, src, !same);
			if (!out->page)
				return KERN_RESOURCE_SHORTAGE;
			/* Copied up on read: a clean page its pager can give again need not stay. */
			if (e->attr.copy_on_read && !same && !src->pv && !(src->flags & VM_PAGE_DIRTY) &&
			    !l.object->internal && l.object->pager)
				vm_page_free(src);
			/* A base's page no chain sees any more (vm_object_set_base): once the copy is
			 * entered over it, nothing needs its bytes. */
			else if (l.object->base && l.object->shadow_count == 1)
				out->drop = src;
			out->flags = same ? PMAP_ENTER_SAME_BYTES : 0;
			out->cow = out->fresh = true;
			map->dom->stats.cow_faults++;
		}
	}
	if (e->needs_copy)
		out->prot &= ~VM_PROT_WRITE;
	/* A read of a page others map stays a read: readers share, writers would steal it. */
	if (!(access & VM_PROT_WRITE) && out->page->pv && !(out->page->pv->va == va && out->page->pv->pmap == &map->pmap &&
							     !out->page->pv->next))
		out->prot &= ~VM_PROT_WRITE;
	/* A pmap without modified bits takes every page entered writable for written: a read
	 * of a page whose pager takes data back (a shared file) stays a read, so that only a
	 * write, which faults again, makes it dirty and sends it back. */
	const struct vm_object *owner = out->page->object;
	if (!(access & VM_PROT_WRITE) && map->pmap.ops && !map->pmap.ops->clear_modify && !owner->internal &&
	    owner->pager && owner->pager->ops->data_return)
		out->prot &= ~VM_PROT_WRITE;
	/* What its pager forbids is entered forbidden, so that such an access faults and asks. */
	out->prot &= ~(vm_prot_t)out->page->lock;
	return KERN_SUCCESS;
}

/* Settle what a write needs: a private object (needs-copy resolved) and an object at all. */
static kern_return_t vm_fault_prepare(struct vm_map *map, struct vm_map_entry *e, vm_prot_t access)
{
	kern_return_t kr = KERN_SUCCESS;
	if ((access & VM_PROT_WRITE) && e->needs_copy)
		kr = vm_map_entry_resolve_copy(map, e);
	if (kr == KERN_SUCCESS && !e->object)
		kr = vm_map_entry_instantiate(map, e);
	return kr;
}

kern_return_t vm_fault_resolve(struct vm_map *map, vm_addr_t va, vm_prot_t access, struct vm_page **pagep)
{
	struct vm_map_entry *e = vm_map_lookup_entry(map, va);
	if (!e)
		return KERN_INVALID_ADDRESS;
	if ((e->protection & access) != access)
		return KERN_PROTECTION_FAILURE;
	kern_return_t kr = vm_fault_prepare(map, e, access);
	if (kr != KERN_SUCCESS)
		return kr;
	va = vm_trunc_page(va);
	uint64_t idx = vm_atop(e->offset + (va - e->start));
	struct vm_fault_page fp;
	kr = vm_fault_page(map, e, va, access, idx, idx + 1, false, false, &fp);
	if (kr != KERN_SUCCESS)
		return kr;
	vm_page_activate(fp.page);
	*pagep = fp.page;
	return KERN_SUCCESS;
}

/* Enter a resolved page; a fresh copy that could not be entered is taken back. */
static kern_return_t vm_fault_enter(struct vm_map *map, vm_addr_t va, struct vm_fault_page *fp)
{
	int err = pmap_enter(&map->pmap, va, fp->page, fp->prot, fp->flags);
	if (err) {
		if (fp->fresh && !fp->page->pv && (fp->flags & PMAP_ENTER_SAME_BYTES))
			vm_page_free(fp->page);
		return vm_fault_kr(err);
	}
	vm_page_activate(fp->page);
	if (fp->drop && !fp->drop->pv) {
		vm_object_base_drop_page(fp->drop);
		map->dom->stats.base_pages_freed++;
	}
	return KERN_SUCCESS;
}

/* Best effort for a page of the cluster that is not entered yet: resident pages and zero
 * fills only, read access (writable where the top object has it and nobody else maps it),
 * or copied up as by a write on a copy-on-read entry (@access). */
static void vm_fault_neighbor(struct vm_map *map, struct vm_map_entry *e, vm_addr_t va, vm_prot_t access, uint64_t lo,
			      uint64_t hi, struct vm_fault_info *info)
{
	struct vm_fault_page fp;
	if (vm_fault_page(map, e, va, access, lo, hi, true, true, &fp) != KERN_SUCCESS)
		return;
	if (fp.page->pv) {
		for (struct pv_entry *pv = fp.page->pv; pv; pv = pv->next)
			if (pv->prot & VM_PROT_WRITE)
				return; /* someone else is writing it: leave it to a real fault */
		fp.prot &= ~VM_PROT_WRITE;
	}
	if (fp.prot == VM_PROT_NONE || vm_fault_enter(map, va, &fp) != KERN_SUCCESS)
		return;
	/* Only the faulting page is pinned against this fault's own page-out. */
	fp.page->epoch = map->dom->epoch - 1;
	map->dom->stats.cluster_pages++;
	info->entered++;
	info->zero_fills += fp.zero_fill;
	info->cow += fp.cow;
}

static kern_return_t vm_fault_locked(struct vm_map *map, vm_addr_t addr, vm_prot_t access, struct vm_fault_info *info)
{
	struct vm_domain *dom = map->dom;
	*info = (struct vm_fault_info){0};
	if (access == VM_PROT_NONE || (access & ~VM_PROT_ALL))
		return KERN_INVALID_ARGUMENT;
	struct vm_map_entry *e = vm_map_lookup_entry(map, addr);
	if (!e)
		return KERN_INVALID_ADDRESS;
	if ((e->protection & access) != access) {
		dom->stats.protection_failures++;
		return KERN_PROTECTION_FAILURE;
	}
	dom->stats.faults++;
	/* Copy on read (vm_map.h): the read resolves as a write would, its cluster likewise. */
	vm_prot_t neighbor_access = VM_PROT_READ;
	if (e->attr.copy_on_read && (e->protection & VM_PROT_WRITE)) {
		access |= VM_PROT_WRITE;
		neighbor_access |= VM_PROT_WRITE;
	}
	kern_return_t kr = vm_fault_prepare(map, e, access);
	if (kr != KERN_SUCCESS)
		return kr;
	e->object->stats.faults++;

	/* The cluster: the aligned run of @cluster pages around the address, within the entry. */
	vm_addr_t va = vm_trunc_page(addr);
	vm_size_t csize = vm_ptoa(e->object->cluster ? e->object->cluster : e->attr.cluster);
	vm_addr_t cstart = va - (va % csize), cend = cstart + csize;
	if (cstart < e->start)
		cstart = e->start;
	if (cend > e->end || cend < cstart)
		cend = e->end;
	uint64_t lo = vm_atop(e->offset + (cstart - e->start)), hi = vm_atop(e->offset + (cend - e->start));
	info->start = cstart;
	info->end = cend;

	uint64_t pageins = dom->stats.pageins;
	struct vm_fault_page fp;
	kr = vm_fault_page(map, e, va, access, lo, hi, false, true, &fp);
	if (kr == KERN_SUCCESS)
		kr = vm_fault_enter(map, va, &fp);
	if (kr != KERN_SUCCESS) {
		if (kr == KERN_MEMORY_ERROR || kr == KERN_MEMORY_FAILURE)
			dom->stats.memory_errors++;
		if (kr == KERN_PROTECTION_FAILURE)
			dom->stats.protection_failures++;
		return kr;
	}
	*info = (struct vm_fault_info){.start = cstart, .end = cend, .prot = fp.prot, .depth = fp.depth,
				       .entered = 1, .zero_fills = fp.zero_fill, .cow = fp.cow};
	if (map->pmap.ops)
		for (vm_addr_t v = cstart; v < cend; v += VM_PAGE_SIZE)
			if (v != va && !pmap_entered(&map->pmap, v))
				vm_fault_neighbor(map, e, v, neighbor_access, lo, hi, info);
	/* The faulting page is the most recently used, so page-out keeps it longest. */
	vm_page_activate(fp.page);
	info->pageins = (unsigned)(dom->stats.pageins - pageins);
	if (fp.cow && e->object->shadow &&
	    e->object->resident_count + hmap_count(&e->object->paged) >= e->object->bypass_mark)
		vm_object_collapse(e->object);
	return KERN_SUCCESS;
}

kern_return_t vm_fault(struct vm_map *map, vm_addr_t addr, vm_prot_t access, struct vm_fault_info *info)
{
	struct vm_fault_info scratch;
	vm_domain_begin(map->dom);
	kern_return_t kr = vm_fault_locked(map, addr, access, info ? info : &scratch);
	/* A backend may put the cluster in only now (pmap.h): if that fails, the fault has
	 * failed, or the caller would take the page for present when it is not. The backend
	 * said why in its own words; Mach's code for "the data could not be delivered". */
	if (pmap_update(&map->pmap) != 0 && kr == KERN_SUCCESS)
		kr = KERN_MEMORY_ERROR;
	vm_domain_end(map->dom);
	return kr;
}

kern_return_t vm_fault_handler(void *map, vm_addr_t addr, vm_prot_t access)
{
	return vm_fault(map, addr, access, NULL);
}

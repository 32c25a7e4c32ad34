/*
 * Fault resolution (Mach's vm_fault): given (map, address, access), find the page, make it
 * resident (zero fill, pager data_request with the entry's cluster or the one its pager set,
 * data_unlock when the pager locked the page against the access, copy-on-write into the
 * top object) and enter it, with the pages of its cluster, into the map's pmap.
 *
 * How the VMM learns what to install: through the map's pmap backend (pmap.h). For every
 * page of the cluster, enter(va, src, prot) says "copy these 4096 bytes in" (src NULL:
 * zero-fill) and whether the page is writable or read-only (copy-on-write pending);
 * protect(va, va+4K, prot) says "the bytes already there stay, change the protection" (a
 * write to a page shared copy-on-write). update() closes the batch; its failure (a page
 * the backend could not put in) is the fault's: KERN_MEMORY_ERROR.
 *
 * Errors are results, never crashes: KERN_INVALID_ADDRESS (nothing mapped there),
 * KERN_PROTECTION_FAILURE (access not allowed), KERN_INVALID_ARGUMENT (bad access bits),
 * KERN_MEMORY_ERROR (a pager failed, or did not unlock a page it locked, or the pmap
 * backend's update), KERN_PROTECTION_FAILURE also when a pager refused to unlock a page
 * (pager.h: data_unlock), KERN_RESOURCE_SHORTAGE.
 * kern_return_errno (kern_return.h) turns them into -errno.
 * Locking: the domain lock is held.
 */
#ifndef MMU_VM_FAULT_H
#define MMU_VM_FAULT_H

#include "mmu/vm_param.h"

struct vm_map;

/* What one fault did (plain data). */
struct vm_fault_info {
	vm_addr_t start, end;  /* the cluster considered */
	vm_prot_t prot;        /* protection given to the faulting page */
	unsigned depth;        /* chain depth the page was found at (0 = top object) */
	unsigned entered;      /* pages entered into the pmap, the faulting one included */
	unsigned zero_fills;   /* pages zero-filled */
	unsigned cow;          /* pages copied on write */
	unsigned pageins;      /* pages provided by a pager */
};

/* Resolve a fault at @addr for @access (VM_PROT_* bits, not none). @info may be NULL. */
kern_return_t vm_fault(struct vm_map *map, vm_addr_t addr, vm_prot_t access, struct vm_fault_info *info);

struct vm_page;

/* Resolve the page at @addr for @access without entering it (vm_read/vm_write, not counted as
 * a fault): for a write, the page is in the top object, copied up if needed, and mappings
 * of the page it replaced at @addr are gone. KERN_* as vm_fault. */
kern_return_t vm_fault_resolve(struct vm_map *map, vm_addr_t addr, vm_prot_t access, struct vm_page **pagep);

/* vm_fault with a generic signature (@map is a struct vm_map *), for emulated MMUs such as
 * pmap_flat_access. */
kern_return_t vm_fault_handler(void *map, vm_addr_t addr, vm_prot_t access);

#endif

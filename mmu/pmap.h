/*
 * The pmap boundary: how the core puts pages where the guest sees them.
 *
 * Mach's pmap layer is the hardware page table. Here a backend implements struct pmap_ops
 * over something that holds guest-physical memory: the tests' flat buffer (pmap_flat.h),
 * or the VMM's guest RAM (userfaultfd: enter = UFFDIO_COPY, protect = UFFDIO_WRITEPROTECT,
 * remove = MADV_DONTNEED, read = memcpy out of guest RAM). The backend holds bytes, not
 * pointers: entering a page copies it in, so a page entered into a pmap is held by it (the
 * core drops its own buffer; see vm_page.h) and read back with the read slot when needed.
 *
 * Backend contract (all addresses page-aligned, ranges [start, end)):
 *   enter(va, src, prot, flags)
 *                          make va hold the page at src (NULL = zeros) with prot. The core
 *                          calls it only where nothing is entered (it removes a page it
 *                          replaces first), so UFFDIO_COPY never meets a present page.
 *                          PMAP_BACKEND_HOST_RESIDENT in flags: the page is read-only here
 *                          and its bytes are also at offset va of the host-wide segment of
 *                          its object's pager (pager.h, host_resident): a backend that maps
 *                          that segment may map the page from there instead of copying src
 *                          (which it must still accept as the bytes). 0 or -errno (then
 *                          nothing is entered).
 *   protect(start,end,p)   set the protection of the entered pages in the range to p (raise
 *                          or lower; the bytes stay). Every page in the range is entered.
 *   remove(start, end)     drop whatever is entered in the range.
 *   read(va, dst)          copy the 4 KiB entered at va to dst.
 *   clear_modify(va)       optional: test and clear "written since entered or since the last
 *                          call". NULL: every page entered writable counts as modified.
 *   update()               optional: the enters of one fault are complete (Mach's
 *                          pmap_update). A backend may stage enters until then (to copy a
 *                          cluster at once); the other slots act at once, so a backend that
 *                          stages must flush before acting on an overlapping address.
 *                          0, or -errno: the first failure since the last update() of a
 *                          staged enter or of a slot that cannot report one itself
 *                          (protect, remove); the failure is then forgotten.
 * Each call runs with the domain lock held and must not call into mmu/.
 *
 * Core side: struct pmap wraps a backend and keeps the mappings so that it can find every
 * mapping of a page and every page of a range. A full page's mappings are pv entries (page,
 * va, protection) in the pmap's table. A packed page (vm_page.h) has one mapping and no pv
 * entry: its object is bound to the pmap (at most one pmap per object), and page i of the
 * object is at bind_va + i pages there, with the protection in its state byte. Bindings of
 * several objects may cover the same addresses (a shadow and its backing object through one
 * entry); at most one page is entered at an address. An object is bound while it has packed
 * pages. pmap_lookup unpacks what it finds; pmap_entered only looks.
 */
#ifndef MMU_PMAP_H
#define MMU_PMAP_H

#include <stdbool.h>

#include "mmu/hmap.h"
#include "mmu/vm_param.h"

struct vm_domain;
struct vm_object;
struct vm_page;

typedef int pmap_enter_t(void *arg, vm_addr_t va, const void *src, vm_prot_t prot, unsigned flags);
typedef void pmap_protect_t(void *arg, vm_addr_t start, vm_addr_t end, vm_prot_t prot);
typedef void pmap_remove_t(void *arg, vm_addr_t start, vm_addr_t end);
typedef void pmap_read_t(void *arg, vm_addr_t va, void *dst);
typedef bool pmap_clear_modify_t(void *arg, vm_addr_t va);
typedef int pmap_update_t(void *arg);

struct pmap_ops {
	pmap_enter_t *enter;               /* copy a page in with a protection */
	pmap_protect_t *protect;           /* change protection of entered pages */
	pmap_remove_t *remove;             /* drop a range */
	pmap_read_t *read;                 /* copy an entered page out */
	pmap_clear_modify_t *clear_modify; /* optional: test-and-clear the modified bit */
	pmap_update_t *update;             /* optional: end of a batch */
};

/* One mapping of a page. */
struct pv_entry {
	struct vm_page *page;    /* (d) */
	struct pmap *pmap;       /* (d) */
	vm_addr_t va;            /* (d) */
	vm_prot_t prot;          /* (d) as entered in the backend */
	struct pv_entry *next;   /* (d) the page's next mapping */
};

struct pmap {
	const struct pmap_ops *ops; /* (c) backend, or NULL: nothing is ever entered */
	void *arg;                  /* (c) backend state */
	struct vm_domain *dom;      /* (c) */
	struct hmap pv;             /* (d) page number of va -> struct pv_entry */
	struct vm_object **bound;   /* (d) objects bound here (they have packed pages mapped here) */
	size_t nbound, bound_cap;   /* (d) */
};

/* Backend enter flags (enter() above) */
#define PMAP_BACKEND_HOST_RESIDENT 0x1u

/* pmap_enter flags */
#define PMAP_ENTER_SAME_BYTES 0x1u /* va holds these very bytes already (copy-on-write of the
				      page entered there): only retag and change protection */

/* Set up the core side of a pmap over backend @ops/@arg (NULL ops: nothing is ever entered).
 * vm_map_create does this for every map. */
void pmap_init(struct pmap *pmap, struct vm_domain *dom, const struct pmap_ops *ops, void *arg);

/* Remove every mapping (pages keep their bytes) and free the table. */
void pmap_fini(struct pmap *pmap);

/* The mapping at @va (a packed page there is unpacked), or NULL. */
struct pv_entry *pmap_lookup(struct pmap *pmap, vm_addr_t va);

/* The full page's mapping at @va, or NULL (nothing, or a packed page). Changes nothing. */
struct pv_entry *pmap_pv(const struct pmap *pmap, vm_addr_t va);

/* The protection of whatever is entered at @va (full or packed page), 0 = nothing. */
vm_prot_t pmap_entered(const struct pmap *pmap, vm_addr_t va);

/* For vm_page.c and vm_object.c. Pack: full page @page's one mapping becomes its object's binding (the
 * object is bound to that pmap if it was not bound yet) and its pv entry is freed. 0, or -1
 * when the mapping is not where the object's binding has (or could have) it.
 * Unpack: give @page (just made full from packed, protection @prot) its pv entry back.
 * 0 or -ENOMEM. Unbind: @obj has no packed pages left. Packed read: copy the bytes of packed
 * page @pindex of @obj to @dst (4 KiB), noting a modification (VM_PS_DIRTY); unpacks nothing. */
int pmap_pack(struct vm_page *page);
void pmap_packed_read(struct vm_object *obj, uint64_t pindex, void *dst);
int pmap_unpack(struct vm_page *page, vm_prot_t prot);
void pmap_unbind(struct vm_object *obj);

/* Bind @obj (unbound) to @pmap so that its page @pindex is at @va. 0, or -1 when that
 * binding's range would wrap, or -ENOMEM. */
int pmap_bind(struct pmap *pmap, struct vm_object *obj, vm_addr_t va, uint64_t pindex);

/* Enter @page at @va with @prot, replacing what is there; keeps one writer or many readers
 * (entering writable removes the page's other mappings; entering read-only downgrades a
 * writable one). 0 or -errno (-ENOMEM, or the backend's). A pmap without ops: 0, nothing. */
int pmap_enter(struct pmap *pmap, vm_addr_t va, struct vm_page *page, vm_prot_t prot, unsigned flags);

/* Remove the mappings in [start, end). Pages of @discard (may be NULL) that lose their last
 * mapping lose their bytes (the caller is about to free them); other such pages get a buffer.
 * 0, or -ENOMEM (some mappings may be gone; pages keep their bytes). */
int pmap_remove(struct pmap *pmap, vm_addr_t start, vm_addr_t end, const struct vm_object *discard);

/* Lower the mappings in [start, end) to at most @prot (VM_PROT_NONE removes them).
 * 0 or -ENOMEM (as pmap_remove). */
int pmap_protect(struct pmap *pmap, vm_addr_t start, vm_addr_t end, vm_prot_t prot);

/* Tell the backend the enters of a fault are complete. 0, or the backend's -errno (see
 * update() above: its pages may not all be in); 0 without an update slot. */
int pmap_update(struct pmap *pmap);

/* The current bytes of @page: its buffer, a shared zero page, or a copy read from a mapping
 * into @scratch (4 KiB). Notes modifications seen in a writable mapping (VM_PAGE_DIRTY). */
const void *pmap_page_bytes(struct vm_page *page, void *scratch);

/* Lower every mapping of @page to at most @prot; VM_PROT_NONE removes them, and the page
 * gets a buffer with its bytes. 0 or -ENOMEM (nothing removed). */
int pmap_page_protect(struct vm_page *page, vm_prot_t prot);

/* Remove every mapping of @page but @keep (may be NULL: all); the page keeps its bytes
 * (in @keep, or a buffer). 0 or -ENOMEM. */
int pmap_page_remove_others(struct vm_page *page, const struct pv_entry *keep);

/* Remove every mapping of @page, which is about to be freed: its bytes are not kept. */
void pmap_page_discard(struct vm_page *page);

/* Whether @page is modified (VM_PAGE_DIRTY, after collecting its writable mapping's
 * modified bit). */
bool pmap_page_dirty(struct vm_page *page);

#endif

/*
 * Resident pages. A vm_page is one page of one object. Its bytes are in exactly one of:
 *   - a buffer from the domain's pool (data != NULL, no mappings),
 *   - its mappings in pmaps (pv != NULL, data == NULL): all mappings hold the same bytes;
 *     if one is writable it is the only one (one writer or many readers),
 *   - nowhere: the page is all zero (VM_PAGE_ZERO, no buffer, no mapping).
 * So a page mapped into guest RAM costs no second copy; pmap.c moves pages between states.
 *
 * Pages sit on the domain's resident queue in order of last use; page-out takes the oldest.
 */
#ifndef MMU_VM_PAGE_H
#define MMU_VM_PAGE_H

#include <stdbool.h>
#include <stdint.h>

struct vm_object;
struct pv_entry;

#define VM_PAGE_DIRTY 0x1u /* its pager (or zero fill) cannot reproduce these bytes */
#define VM_PAGE_ZERO 0x2u  /* all zero, held nowhere */

struct vm_page {
	struct vm_object *object;   /* (d) owner */
	uint64_t pindex;            /* (d) page number in the owner */
	uint8_t *data;              /* (d) pool buffer, or NULL (see above) */
	struct pv_entry *pv;        /* (d) mappings, see pmap.h */
	struct vm_page *lru_prev;   /* (d) resident queue */
	struct vm_page *lru_next;   /* (d) */
	uint64_t epoch;             /* (d) operation that used it last */
	unsigned flags;             /* (d) VM_PAGE_* */
};

/* A new all-zero page @pindex of @obj (not resident there before), most recently used.
 * NULL when out of memory. */
struct vm_page *vm_page_alloc(struct vm_object *obj, uint64_t pindex);

/* Remove @page from its object and free it. It must have no mappings. */
void vm_page_free(struct vm_page *page);

/* The resident page @pindex of @obj, or NULL. O(1). */
struct vm_page *vm_page_lookup(const struct vm_object *obj, uint64_t pindex);

/* Move @page to @obj as page @pindex (collapse). 0 or -ENOMEM (nothing changed). */
int vm_page_rename(struct vm_page *page, struct vm_object *obj, uint64_t pindex);

/* Mark @page most recently used by the current operation. */
void vm_page_activate(struct vm_page *page);

/* Give an unmapped @page a buffer; a zero page's buffer is zeroed. 0 or -ENOMEM. */
int vm_page_buffer(struct vm_page *page);

/* Drop @page's buffer (its bytes now live elsewhere: a mapping). */
void vm_page_drop_buffer(struct vm_page *page);

#endif

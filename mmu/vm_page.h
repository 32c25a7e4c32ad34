/*
 * Resident pages. Every resident page of an object has a state byte in the object's page
 * state table (dense, by page number, in leaves allocated on first use), and is either
 *   - packed: the common case of the VMM, a page whose bytes live only in one mapping, at
 *     the address its object's binding gives it (pmap.h): the state byte is all there is
 *     (protection of that mapping, modified, referenced); no struct, no table slot;
 *   - full: a struct vm_page in the object's table (VM_PS_FULL), for every other case.
 * A full page's bytes are in exactly one of:
 *   - a buffer from the domain's pool (data != NULL, no mappings),
 *   - its mappings in pmaps (pv != NULL, data == NULL): all mappings hold the same bytes;
 *     if one is writable it is the only one (one writer or many readers),
 *   - nowhere: the page is all zero (VM_PAGE_ZERO, no buffer, no mapping).
 * A packed page is unpacked into a full one whenever the core looks at it (vm_page_lookup,
 * pmap_lookup), so the rest of the core sees only full pages. Full pages that are touched
 * go on the domain's pack queue; at the end of each operation (vm_domain_end) those that
 * fit the packed form are packed again.
 *
 * Page-out is a clock over the state tables (vm_pageout.h): a page used again after it
 * became resident gets VM_PS_REF, which buys it one more turn of the clock hand.
 */
#ifndef MMU_VM_PAGE_H
#define MMU_VM_PAGE_H

#include <stdbool.h>
#include <stdint.h>

struct vm_domain;
struct vm_object;
struct pv_entry;

#define VM_PAGE_DIRTY 0x1u  /* its pager (or zero fill) cannot reproduce these bytes */
#define VM_PAGE_ZERO 0x2u   /* all zero, held nowhere */
#define VM_PAGE_QUEUED 0x4u /* on the domain's pack queue */

/* Page state bytes. 0 = not resident. */
#define VM_PS_PROT 0x07u  /* packed: protection of its one mapping (never 0 when packed) */
#define VM_PS_DIRTY 0x08u /* packed: VM_PAGE_DIRTY */
#define VM_PS_REF 0x10u   /* used again since it became resident or the clock last passed */
#define VM_PS_FULL 0x20u  /* a struct vm_page holds it */

#define VM_PS_LEAF_SHIFT 12u /* pages per leaf of a state table: 4096 (4 KiB of states) */

struct vm_page {
	struct vm_object *object;   /* (d) owner */
	uint64_t pindex;            /* (d) page number in the owner */
	uint8_t *data;              /* (d) pool buffer, or NULL (see above) */
	struct pv_entry *pv;        /* (d) mappings, see pmap.h */
	struct vm_page *q_prev;     /* (d) pack queue, if VM_PAGE_QUEUED */
	struct vm_page *q_next;     /* (d) */
	uint64_t epoch;             /* (d) operation that used it last */
	unsigned flags;             /* (d) VM_PAGE_* */
	uint8_t lock;               /* (d) VM_PROT_* its pager forbids without data_unlock (Mach's
				       page_lock; pager.h); a locked page is never packed */
};

/* The state byte of page @pindex of @obj (0: not resident). */
uint8_t vm_page_state(const struct vm_object *obj, uint64_t pindex);

/* Whether page @pindex of @obj is resident (full or packed). O(1), unpacks nothing. */
static inline bool vm_page_resident(const struct vm_object *obj, uint64_t pindex)
{
	return vm_page_state(obj, pindex) != 0;
}

/* The state byte of page @pindex of @obj, its leaf allocated if @grow; NULL when there is no
 * leaf (not @grow) or no memory for one. Leaves never move while the object lives. */
uint8_t *vm_page_state_slot(struct vm_object *obj, uint64_t pindex, bool grow);

/* The leaf of @obj's state table holding page @pindex (NULL when it has none), and in
 * *leaf_end the end of the pages it holds from @pindex on, at most @end (> @pindex, within
 * the object). For walks over many states; leaves never move while the object lives. */
uint8_t *vm_page_state_leaf(const struct vm_object *obj, uint64_t pindex, uint64_t end, uint64_t *leaf_end);

/* The first resident page of @obj in [*pindex, end) into *pindex; false when none. */
bool vm_page_next(const struct vm_object *obj, uint64_t *pindex, uint64_t end);

/* How many pages of @obj in [first, end) are resident. Eight states at a time. */
uint64_t vm_page_count_resident(const struct vm_object *obj, uint64_t first, uint64_t end);

/* Free @obj's state table (every page must be gone). */
void vm_page_states_free(struct vm_object *obj);

/* A new all-zero page @pindex of @obj (not resident there before), used by the current
 * operation. NULL when out of memory. */
struct vm_page *vm_page_alloc(struct vm_object *obj, uint64_t pindex);

/* Remove @page from its object and free it. It must have no mappings. */
void vm_page_free(struct vm_page *page);

/* Forget packed page @pindex of @obj, whose mapping the caller has just removed from the
 * backend and whose bytes are not wanted (its object is about to terminate). */
void vm_page_free_packed(struct vm_object *obj, uint64_t pindex);

/* Move packed page @idx of @from to @to as page @pindex (collapse), still packed: @to's
 * binding must put it at the same address (@to is bound so if it was not). The page is
 * marked modified (its old object's pager goes away). 0, or -1 (not possible: the caller
 * unpacks it instead), or -ENOMEM. */
int vm_page_move_packed(struct vm_object *from, uint64_t idx, struct vm_object *to, uint64_t pindex);

/* The resident page @pindex of @obj as a full page (unpacked if it was packed), or NULL.
 * O(1). Unpacking takes a little memory; the host refusing it aborts. */
struct vm_page *vm_page_lookup(struct vm_object *obj, uint64_t pindex);

/* Move @page to @obj as page @pindex (collapse). 0 or -ENOMEM (nothing changed). */
int vm_page_rename(struct vm_page *page, struct vm_object *obj, uint64_t pindex);

/* Mark @page used by the current operation (referenced, if it was resident before). */
void vm_page_activate(struct vm_page *page);

/* Mark resident page @pindex of @obj referenced (the page-out clock passes it once more). */
void vm_page_reference(struct vm_object *obj, uint64_t pindex);

/* Give an unmapped @page a buffer; a zero page's buffer is zeroed. 0 or -ENOMEM. */
int vm_page_buffer(struct vm_page *page);

/* Give zero page @page (no buffer, no mapping) a buffer holding the 4 KiB at @src.
 * 0 or -ENOMEM. */
int vm_page_fill(struct vm_page *page, const void *src);

/* Drop @page's buffer (its bytes now live elsewhere: a mapping). */
void vm_page_drop_buffer(struct vm_page *page);

/* Put @page on its domain's pack queue (it may fit the packed form at the operation's end). */
void vm_page_enqueue(struct vm_page *page);

/* Pack every queued page that fits the packed form; called at the end of an operation. */
void vm_page_pack_queued(struct vm_domain *dom);

#endif

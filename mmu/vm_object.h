/*
 * Memory objects (Mach's vm_object): a size, resident pages, an optional pager, and an
 * optional shadow: the object this one copies on write from, at shadow_offset. A read falls
 * through the chain to the first object that has the page (resident, or from its pager);
 * a write lands in the top object. Objects are reference counted.
 *
 * Freezing: an object that others copy from (it has shadows, or frozen references from
 * needs-copy map entries and copies) must not change, so it has no writers: the counts
 * below keep "direct_refs > 0" and "shadow_count + frozen_refs > 0" exclusive (asserted).
 *
 * Keeping chains short: when the backing object of O is referenced only by O, the two
 * collapse into one (its pages move up, O shadows what it shadowed); when O already has
 * every page its backing object B could give it, O bypasses B and shadows B's shadow.
 * Both happen when references drop and on vm_object_collapse; both are counted.
 *
 * Internal (anonymous) objects get a memory object from the domain's default pager at their
 * first page-out and remember which pages it holds (existence set); external objects (a
 * file) ask their pager for every page that is not resident. An external object's pager may
 * keep rights to the pages it supplies (page locks) and take them back (pager.h:
 * data_unlock, lock_request); nothing else about the object changes for it.
 */
#ifndef MMU_VM_OBJECT_H
#define MMU_VM_OBJECT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "mmu/hmap.h"
#include "mmu/vm_param.h"

struct pager;
struct vm_domain;
struct vm_page;

/* Per-object counters. */
struct vm_object_stats {
	uint64_t faults;    /* faults resolved with this object on top */
	uint64_t pageins;   /* pages its pager provided */
	uint64_t pageouts;  /* pages returned to its pager */
	uint64_t cow_pages; /* pages copied into it (on write, or eager copies) */
	uint64_t zero_fills;/* pages zero-filled into it */
};

struct vm_object {
	struct vm_domain *dom;        /* (c) */
	uint64_t id;                  /* (c) unique in the domain, for introspection */
	uint64_t size;                /* (c) bytes, a page multiple */
	bool internal;                /* (c) anonymous: pager made on first page-out */
	enum vm_copy_strategy copy_strategy; /* (d) how copies of it are made */
	unsigned ref_count;           /* (d) every reference */
	unsigned direct_refs;         /* (d) of which: map entries that may write into it */
	unsigned frozen_refs;         /* (d) of which: needs-copy entries, copies, read-only maps */
	struct vm_object *shadow;     /* (d) backing object (one reference), or NULL */
	uint64_t shadow_offset;       /* (d) our offset 0 is this offset in the shadow */
	unsigned shadow_count;        /* (d) objects whose shadow this is */
	struct vm_object *shadowers;  /* (d) first of those objects */
	struct vm_object *sib_prev;   /* (d) list of the objects sharing our shadow */
	struct vm_object *sib_next;   /* (d) */
	uint8_t **states;             /* (d) page state table (vm_page.h), leaves made on first use */
	uint64_t resident_count;      /* (d) resident pages, full and packed */
	uint64_t packed_count;        /* (d) of which packed */
	struct pmap *bind_pmap;       /* (d) where its packed pages are mapped (pmap.h), or NULL */
	vm_addr_t bind_va;            /* (d) address of its page 0 there */
	struct hmap pages;            /* (d) page number -> struct vm_page, full pages */
	struct hmap paged;            /* (d) internal: page numbers its pager holds */
	struct pager *pager;          /* (d) memory manager (one reference), or NULL */
	void *mo;                     /* (d) the pager's memory object */
	uint64_t bypass_mark;         /* (d) pages it had at the last failed bypass */
	bool base;                    /* (d) a snapshot base (vm_object_set_base) */
	unsigned cluster;             /* (d) most pages a fault asks its pager for, set by the
					 pager (pager_change_attributes); 0 = the map entry's */
	bool may_cache;               /* (d) the pager's word (carried: no object cache) */
	struct vm_object_stats stats; /* (d) */
	struct vm_object *all_prev;   /* (d) domain's object list */
	struct vm_object *all_next;   /* (d) */
};

/* Plain-data description of one object (introspection). */
struct vm_object_info {
	uint64_t id;
	uint64_t size;
	bool internal;
	enum vm_copy_strategy copy_strategy;
	unsigned ref_count, direct_refs, frozen_refs, shadow_count;
	uint64_t shadow_id;       /* 0 = no shadow */
	uint64_t shadow_offset;
	uint64_t resident_count;  /* pages resident */
	uint64_t paged_count;     /* pages its pager holds (internal objects) */
	const char *pager_name;   /* NULL = no pager */
	bool base;                /* a snapshot base (vm_object_set_base) */
	struct vm_object_stats stats;
};

/* A new internal (anonymous, zero-filled) object of @size bytes (page multiple, > 0), one
 * reference. KERN_SUCCESS, KERN_INVALID_ARGUMENT, KERN_RESOURCE_SHORTAGE. */
kern_return_t vm_object_allocate(struct vm_domain *dom, vm_size_t size, struct vm_object **out);

/* A new external object of @size bytes (0 = the pager's size) served by @pager, which
 * creates a memory object for it; one reference. KERN_SUCCESS, KERN_INVALID_ARGUMENT,
 * KERN_RESOURCE_SHORTAGE, KERN_MEMORY_FAILURE (the pager refused). */
kern_return_t vm_object_create(struct vm_domain *dom, struct pager *pager, vm_size_t size,
			       struct vm_object **out);

/* Add a reference. */
void vm_object_reference(struct vm_object *obj);

/* Drop a reference. The last one terminates the object: modified pages go back to an
 * external pager, the memory object is terminated, the shadow is released. When only a
 * shadow is left holding @obj, that shadow absorbs it (collapse). */
void vm_object_deallocate(struct vm_object *obj);

/* Freeze *objp behind a new internal object of @length bytes that shadows it at *offsetp:
 * the caller's reference moves to the new object's shadow link, *objp becomes the new
 * object (one reference) and *offsetp 0. The old object must have no writers.
 * KERN_SUCCESS or KERN_RESOURCE_SHORTAGE (nothing changed). */
kern_return_t vm_object_shadow(struct vm_object **objp, vm_offset_t *offsetp, vm_size_t length);

/* Shorten @obj's chain: collapse and bypass while possible. */
void vm_object_collapse(struct vm_object *obj);

/* Objects in @obj's chain, itself included. */
unsigned vm_object_depth(const struct vm_object *obj);

/* Where page @pindex of @top comes from, resolving through the chain. */
struct vm_lookup {
	struct vm_page *page;     /* the page, or NULL: zero (no object has it) */
	struct vm_object *object; /* its object */
	uint64_t pindex;          /* its page number there */
	unsigned depth;           /* 0 = top */
};

/* Resolve page @pindex of @top: resident pages first, else the pager of each object that may
 * have it (asked for the run of missing pages within [lo, hi), top's page numbers, around
 * @pindex), else the shadow. With @resident_only no pager is asked: KERN_MEMORY_FAILURE
 * when one would be. KERN_SUCCESS (out->page NULL = zero), KERN_MEMORY_ERROR,
 * KERN_RESOURCE_SHORTAGE. */
kern_return_t vm_object_lookup(struct vm_object *top, uint64_t pindex, uint64_t lo, uint64_t hi,
			       vm_prot_t access, bool resident_only, struct vm_lookup *out);

/* Copy @len bytes at @offset of @obj (through its chain and pagers) to @buf; @obj NULL
 * (memory not touched yet) reads zero.
 * KERN_SUCCESS, KERN_INVALID_ARGUMENT (out of range), KERN_MEMORY_ERROR, ...SHORTAGE. */
kern_return_t vm_object_read(struct vm_object *obj, vm_offset_t offset, void *buf, vm_size_t len);

/* A new internal object holding a copy of [offset, offset+size) of @src as it is now (pages
 * copied, zero pages left out): Mach's vm_object_copy_slowly. */
kern_return_t vm_object_copy_slowly(struct vm_object *src, vm_offset_t offset, vm_size_t size,
				    struct vm_object **out);

/* Return modified resident pages in [offset, offset+size) to the pager (kept resident,
 * now clean). Objects without a pager that takes data: nothing to do.
 * KERN_SUCCESS or KERN_MEMORY_ERROR (a page the pager refused stays modified). */
kern_return_t vm_object_clean(struct vm_object *obj, vm_offset_t offset, vm_size_t size);

/* Called for each page by vm_object_enumerate: its offset and its 4 KiB (valid during the
 * call). Non-zero stops the enumeration. */
typedef int vm_object_page_fn(void *arg, vm_offset_t offset, const void *bytes);

/*
 * Call @fn for every page of [offset, offset+size) of @obj (NULL: none) whose data lives in
 * an object of its chain above @stop (NULL: down to the bottom), in ascending order, with
 * offsets @base + (page offset - @offset): resident pages (in a buffer or mapped; read in
 * place, nothing is unpacked), pages paged out to a pager (paged back in, clustered up to the
 * end of the range) and every page an external pager serves. Pages that read as zero (no
 * object has them, or zero-filled and never written) and pages that fall through to @stop
 * are skipped. For a snapshot: stop = the object the previous snapshot stored (what a
 * restored guest shadows) gives only what changed since. Cost: the pages the chain holds,
 * not the size. A page whose bytes are all zero where nothing below its object has the page
 * (a zero fill the guest only read) is skipped too: it reads the same without it.
 * KERN_SUCCESS, KERN_ABORTED (@fn said stop), KERN_INVALID_ARGUMENT,
 * KERN_MEMORY_ERROR / KERN_MEMORY_FAILURE (a pager failed), KERN_RESOURCE_SHORTAGE.
 */
kern_return_t vm_object_enumerate(struct vm_object *obj, vm_offset_t offset, vm_size_t size,
				  const struct vm_object *stop, vm_object_page_fn *fn, void *arg, vm_offset_t base);

/*
 * Snapshot bases. A base is an internal object whose contents a snapshot has stored: the
 * snapshot's holder keeps one reference to it only to mark where the pages written since
 * begin, so that the next snapshot lists just the pages above it (vm_object_enumerate's
 * @stop) and names the stored one as its parent. The holder promises never to read a base
 * but through the objects above it, which lets the core
 *  - free a base's page as soon as a write copied it up (the store has its bytes and no
 *    chain can see them any more), while the base has one shadow: pages written since a
 *    snapshot are then held once, not twice;
 *  - move the pages of the object just above a base down into it once the next snapshot
 *    is stored (vm_object_merge_into_base): the base becomes that snapshot at the cost of
 *    the pages written in between, not of every page the guest has;
 *  - take a base below a zero page as holding that page (vm_object_enumerate lists the
 *    zero page: the stored snapshot may have other bytes there).
 * The holder's reference keeps a base from collapsing into its shadow; the mark goes with
 * vm_object_set_base(obj, false) before that reference is dropped.
 */
void vm_object_set_base(struct vm_object *obj, bool base);

/* The first base in @obj's chain (@obj included), or NULL. */
const struct vm_object *vm_object_base_below(const struct vm_object *obj);

/*
 * @obj's backing object B is a base that only @obj shadows: move @obj's pages (and those
 * its pager holds, brought back in first) down into B, replacing B's; @obj is left empty
 * over B, reading exactly as before, and B now reads as @obj did. Counted as a merge.
 * Where B has other shadows, which all have every page @obj has (they bypassed @obj while
 * it was frozen, and nothing shadows @obj any more), nothing moves: B reads as @obj did
 * wherever it is read, and @obj as before. Also counted as a merge.
 * KERN_SUCCESS; KERN_INVALID_ARGUMENT (B is not such a base); KERN_RESOURCE_SHORTAGE or a
 * pager's failure, with some pages moved already (the chain still reads the same).
 */
kern_return_t vm_object_merge_into_base(struct vm_object *obj);

/* For vm_fault: free @page of a base, copied up and entered above it (no mapping left);
 * what the base's pager holds of it goes too. */
void vm_object_base_drop_page(struct vm_page *page);

/* Copy on write: a new page @pindex of @obj holding @src's bytes (@src NULL: zero), counted.
 * Without @copy the page gets no bytes yet: the caller enters it over the very mapping of
 * @src it copies (PMAP_ENTER_SAME_BYTES) or frees it. NULL: out of memory. */
struct vm_page *vm_object_cow_page(struct vm_object *obj, uint64_t pindex, struct vm_page *src, bool copy);

/* A new zero-filled page @pindex of @obj (counted as a zero fill). NULL: out of memory. */
struct vm_page *vm_object_zero_page(struct vm_object *obj, uint64_t pindex);

/* For pager.c: insert page @pindex of @obj with the 4 KiB at @data, clean, locked against
 * @lock (pager.h), unless it is resident already. 0, or -ENOMEM. */
int vm_object_page_provided(struct vm_object *obj, uint64_t pindex, const void *data, vm_prot_t lock);

/* For pager.c (pager_lock_request): on the resident pages of [offset, offset+size) of @obj
 * (page aligned, within it) do @flags (PAGER_LOCK_CLEAN, PAGER_LOCK_FLUSH) and lock those that
 * stay against @lock (mappings lowered to what the lock leaves). 0, -EIO (a modified page
 * its pager refused stays, modified and locked, even when asked to flush), -ENOMEM (some
 * pages not done). */
int vm_object_lock_request(struct vm_object *obj, vm_offset_t offset, vm_size_t size, unsigned flags, vm_prot_t lock);

/* For vm_fault: page @pindex of @obj is locked against some of @access; ask its pager to
 * unlock it (data_unlock). KERN_SUCCESS: the pager answered (the page may be unlocked, or
 * gone: look it up again); KERN_PROTECTION_FAILURE: refused; KERN_MEMORY_ERROR: the pager
 * failed; KERN_RESOURCE_SHORTAGE. */
kern_return_t vm_object_data_unlock(struct vm_object *obj, uint64_t pindex, vm_prot_t access);

/* The fd that turns readable while @obj's pager has messages of its own to act on
 * (pager.h), or -1. */
int vm_object_pager_event_fd(struct vm_object *obj);

/* Act on the messages @obj's pager has of its own (lock requests, attributes): a top-level
 * operation, domain lock held. 0 (nothing to do included) or the pager's -errno. */
int vm_object_pager_service(struct vm_object *obj);

/* Describe @obj. */
void vm_object_info(const struct vm_object *obj, struct vm_object_info *info);

/* Describe @obj's chain, top first: fills up to @max entries, returns the depth. */
unsigned vm_object_chain(const struct vm_object *obj, struct vm_object_info *out, unsigned max);

/* Assert @obj's invariants (and its chain's): counts, page ownership, no loop. */
void vm_object_check(const struct vm_object *obj);

#endif

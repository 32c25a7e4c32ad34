/*
 * The guest-physical address space of one VM (Mach's vm_map): sorted, non-overlapping
 * entries [start, end) -> (object, offset) with protection, maximum protection,
 * inheritance and attributes. Entries split when part of a range changes and merge again
 * with neighbours that became alike.
 *
 * The calls follow Mach's (vm_allocate, vm_deallocate, vm_protect, vm_inherit, vm_map,
 * vm_copy, vm_read, vm_write, vm_region) and return kern_return_t:
 *   KERN_INVALID_ARGUMENT    unaligned address or size (every call but read/write, which
 *                            take bytes), a range that wraps, unknown protection or
 *                            inheritance bits, bad attribute values, zero size where
 *                            Mach refuses it. Unlike Mach, which rounds, we refuse
 *                            unaligned ranges: a guest-physical layout that is off by part
 *                            of a page is a caller's bug.
 *   KERN_INVALID_ADDRESS     range outside the map, or (protect, inherit, copy, read,
 *                            write, copyin) not wholly mapped
 *   KERN_NO_SPACE            allocate/map: a fixed range is in use, or no room anywhere
 *   KERN_PROTECTION_FAILURE  protection above the maximum; read/write/copy without the
 *                            access; shared writable mapping of an object that cannot
 *                            take writes (read-only pager, frozen object)
 *   KERN_RESOURCE_SHORTAGE   out of memory
 *   KERN_MEMORY_ERROR        a pager failed while data was read
 * A call that fails changes nothing visible (ranges are checked before they change).
 *
 * Locking: the domain lock (vm_domain.h) is held for every call.
 */
#ifndef MMU_VM_MAP_H
#define MMU_VM_MAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "mmu/pmap.h"
#include "mmu/vm_param.h"

struct vm_domain;
struct vm_object;

/* Entry attributes (Mach: copy strategy, clustering, caching). */
struct vm_attr {
	enum vm_copy_strategy copy_strategy; /* how copies of the entry are made */
	unsigned cluster;                    /* pages one fault resolves, 1..VM_CLUSTER_MAX */
	enum vm_cache_mode cache;            /* caching (carried, reported) */
	bool copy_on_read;                   /* a read through a copy-on-write chain copies up */
};

enum vm_attr_kind {
	VM_ATTR_COPY_STRATEGY, /* value: enum vm_copy_strategy */
	VM_ATTR_CLUSTER,       /* value: 1..VM_CLUSTER_MAX pages */
	VM_ATTR_CACHE,         /* value: enum vm_cache_mode */
	VM_ATTR_COPY_ON_READ,  /* value: 0 or 1, see below */
};

/*
 * Copy on read (VM_ATTR_COPY_ON_READ = 1): for entries whose pmap makes a private copy of
 * every page it enters anyway (the VMM's UFFDIO_COPY), entering a backing object's page
 * read-only to defer copy-on-write buys nothing and costs a second fault at the first write
 * (and, in KVM, the slow path of host read-only pages). A read fault of such a writable
 * entry resolves as a write would: a pending copy is settled (the object is shadowed), the
 * page found below the top object is copied into it and entered writable, counted as a
 * copy-on-write fault (cow_faults), and the pages of its cluster likewise; the backing
 * object keeps its bytes (a clean page of an object whose pager can give it again, e.g. a
 * snapshot pager's, is freed once copied: its pager keeps the bytes). Pagers are asked
 * with write access. Entries that cannot be written fault as usual.
 */

struct vm_map_entry {
	vm_addr_t start, end;        /* (d) */
	struct vm_object *object;    /* (d) one reference, or NULL: zero memory not touched yet */
	vm_offset_t offset;          /* (d) of start in the object */
	vm_prot_t protection;        /* (d) current */
	vm_prot_t max_protection;    /* (d) */
	vm_inherit_t inheritance;    /* (d) */
	bool needs_copy;             /* (d) object is frozen: shadow it before the first write */
	struct vm_attr attr;         /* (d) */
};

struct vm_map {
	struct vm_domain *dom;          /* (c) */
	vm_addr_t min, max;             /* (c) the map covers [min, max) */
	struct vm_map_entry *entries;   /* (d) sorted by address */
	size_t nentries, cap;           /* (d) */
	size_t hint;                    /* (d) entry of the last lookup */
	struct pmap pmap;               /* (d) where pages are entered */
	struct vm_attr default_attr;    /* (d) attributes of new entries */
	vm_size_t size;                 /* (d) bytes mapped */
};

/* What vm_region tells about one entry (plain data). */
struct vm_region_info {
	vm_addr_t start, end;
	vm_prot_t protection, max_protection;
	vm_inherit_t inheritance;
	bool needs_copy;
	bool shared;                      /* the object has other references */
	struct vm_attr attr;
	const struct vm_object *object;   /* valid while the domain lock is held; NULL = untouched */
	uint64_t object_id;               /* 0 = untouched */
	vm_offset_t offset;
	uint64_t resident_count;          /* pages resident in the top object within the entry */
	unsigned depth;                   /* objects in the chain */
};

/* A frozen copy of a range (Mach's vm_map_copy_t): pieces, each a frozen object reference.
 * Made by vm_map_copyin; used by copyout/overwrite; freed by vm_map_copy_discard. */
struct vm_map_copy_piece {
	vm_size_t offset, size;   /* (d) in the copy */
	struct vm_object *object; /* (d) frozen reference, or NULL: zero */
	vm_offset_t obj_offset;   /* (d) */
	struct vm_attr attr;      /* (d) */
};
struct vm_map_copy {
	struct vm_domain *dom;           /* (c) */
	vm_size_t size;                  /* (c) */
	size_t npieces;                  /* (c) */
	struct vm_map_copy_piece *pieces;/* (d) */
};

/* A new empty map of [min, max) (page-aligned, min < max) over the pmap backend @ops/@arg
 * (NULL ops: no pmap). KERN_SUCCESS, KERN_INVALID_ARGUMENT, KERN_RESOURCE_SHORTAGE. */
kern_return_t vm_map_create(struct vm_domain *dom, vm_addr_t min, vm_addr_t max, const struct pmap_ops *ops,
			    void *arg, struct vm_map **out);

/* Remove every entry (pmap included) and free the map. */
void vm_map_destroy(struct vm_map *map);

/* vm_allocate: zero-filled memory, read/write, maximum all, inheritance copy. @anywhere:
 * the lowest free range at or above the map's start (*addr ignored); else exactly *addr.
 * Size 0: KERN_SUCCESS, *addr = 0. */
kern_return_t vm_map_allocate(struct vm_map *map, vm_addr_t *addr, vm_size_t size, bool anywhere);

/* vm_deallocate: unmap [addr, addr+size); holes are fine. Size 0: KERN_SUCCESS. */
kern_return_t vm_map_deallocate(struct vm_map *map, vm_addr_t addr, vm_size_t size);

/* vm_protect: set the current (or, with @set_max, the maximum, lowering the current with
 * it) protection of [addr, addr+size). Raising above the maximum: KERN_PROTECTION_FAILURE. */
kern_return_t vm_map_protect(struct vm_map *map, vm_addr_t addr, vm_size_t size, bool set_max, vm_prot_t prot);

/* vm_inherit: set the inheritance of [addr, addr+size). */
kern_return_t vm_map_inherit(struct vm_map *map, vm_addr_t addr, vm_size_t size, vm_inherit_t inheritance);

/* vm_map: map [offset, offset+size) of @obj (NULL: anonymous zero memory) at *addr (or
 * anywhere). @copy: the entry gets a copy of @obj as it is now: lazy (copy on write) when
 * the caller's is the only other reference or nobody can write @obj (the object is then
 * frozen and refuses shared writable mappings while the copy lives), else eager. Without
 * @copy the entry shares @obj. A reference is taken either way; the caller keeps its own. */
kern_return_t vm_map_enter(struct vm_map *map, vm_addr_t *addr, vm_size_t size, bool anywhere,
			   struct vm_object *obj, vm_offset_t offset, bool copy, vm_prot_t cur, vm_prot_t max,
			   vm_inherit_t inheritance);

/* vm_copy: make [dst, dst+size) a copy of [src, src+size) as it is now (ranges may overlap).
 * src must be readable, dst writable. Lazy where the destination is private to the map. */
kern_return_t vm_map_copy(struct vm_map *map, vm_addr_t src, vm_size_t size, vm_addr_t dst);

/* vm_read / vm_write: copy bytes out of / into the map (any alignment). The range must be
 * mapped with read / write access. Pages are resolved as by a fault but not entered. */
kern_return_t vm_map_read(struct vm_map *map, vm_addr_t addr, void *buf, vm_size_t len);
kern_return_t vm_map_write(struct vm_map *map, vm_addr_t addr, const void *buf, vm_size_t len);

/* vm_region: describe the entry containing *addr or the first above it; *addr becomes its
 * start. KERN_INVALID_ADDRESS when there is none. */
kern_return_t vm_map_region(struct vm_map *map, vm_addr_t *addr, struct vm_region_info *info);

/* Set attribute @kind to @value on [addr, addr+size) (wholly mapped). */
kern_return_t vm_map_set_attr(struct vm_map *map, vm_addr_t addr, vm_size_t size, enum vm_attr_kind kind,
			      unsigned value);

/* Attribute @kind of entries made from now on (allocate, map, fork keeps the parent's). */
kern_return_t vm_map_set_default_attr(struct vm_map *map, enum vm_attr_kind kind, unsigned value);

/* Fork: a new map over pmap @ops/@arg with the parent's layout, each entry given by its
 * inheritance: share (same object), copy (copy-on-write copy), none (left out). */
kern_return_t vm_map_fork(struct vm_map *parent, const struct pmap_ops *ops, void *arg, struct vm_map **child);

/* vm_msync: return modified pages of [addr, addr+size) to their pagers (file write-back). */
kern_return_t vm_map_msync(struct vm_map *map, vm_addr_t addr, vm_size_t size);

/* Collapse the chains of the entries in [addr, addr+size) (holes are fine). */
kern_return_t vm_map_collapse(struct vm_map *map, vm_addr_t addr, vm_size_t size);

/* Freeze [addr, addr+size) (wholly mapped, readable) into a copy: a snapshot. */
kern_return_t vm_map_copyin(struct vm_map *map, vm_addr_t addr, vm_size_t size, struct vm_map_copy **out);

/* Map @copy (not consumed) at *addr (or anywhere) as new read/write entries. */
kern_return_t vm_map_copyout(struct vm_map *map, vm_addr_t *addr, bool anywhere, const struct vm_map_copy *copy);

/* Make [dst, dst+copy->size) (wholly mapped, writable) hold @copy (not consumed). */
kern_return_t vm_map_copy_overwrite(struct vm_map *map, vm_addr_t dst, const struct vm_map_copy *copy);

/* Copy @len bytes at @offset of @copy into @buf. */
kern_return_t vm_map_copy_read(const struct vm_map_copy *copy, vm_offset_t offset, void *buf, vm_size_t len);

/* Called by vm_map_copy_pages for each page: its offset in the copy and its 4 KiB (valid
 * during the call only). Non-zero stops the enumeration. */
typedef int vm_map_copy_page_fn(void *arg, vm_offset_t offset, const void *bytes);

/*
 * Enumerate the pages of frozen copy @copy whose data lives in an object of its chains above
 * object @stop (NULL: down to the bottom), each piece in ascending offset order: resident
 * pages (read in place, in a buffer or from their one mapping), pages paged out to swap
 * (paged back in) and pages of external objects; pages that read as zero because no object
 * has them, zero pages over nothing (zero fills, written or not) and pages that fall through
 * to @stop are skipped (vm_object_enumerate). This is what a snapshot stores: a first snapshot of a
 * 1 GiB guest reads the pages it has, not 1 GiB; a snapshot of a guest restored from S (whose
 * top object shadows S's object) passes S's object as @stop and gets what changed since.
 * The caller holds the domain lock; a page-out may run at the end (vm_domain_end).
 * KERN_SUCCESS, KERN_ABORTED (@fn said stop), KERN_MEMORY_ERROR / KERN_MEMORY_FAILURE,
 * KERN_RESOURCE_SHORTAGE.
 */
kern_return_t vm_map_copy_pages(const struct vm_map_copy *copy, const struct vm_object *stop,
				vm_map_copy_page_fn *fn, void *arg);

/* Release @copy's references and free it (NULL is fine). */
void vm_map_copy_discard(struct vm_map_copy *copy);

/* The entry containing @addr, or NULL. O(log n), O(1) when it is the last one found. */
struct vm_map_entry *vm_map_lookup_entry(struct vm_map *map, vm_addr_t addr);

/* Make an entry with needs_copy writable: shadow its object (or take it over when nobody
 * else holds it). KERN_SUCCESS or KERN_RESOURCE_SHORTAGE. */
kern_return_t vm_map_entry_resolve_copy(struct vm_map *map, struct vm_map_entry *entry);

/* Give an entry without object its own anonymous object. */
kern_return_t vm_map_entry_instantiate(struct vm_map *map, struct vm_map_entry *entry);

/* Assert the map's invariants (order, references, pmap consistency). */
void vm_map_check(struct vm_map *map);

#endif

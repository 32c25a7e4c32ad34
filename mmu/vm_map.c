/*
 * Address maps: entries, the Mach calls, fork and copies. See vm_map.h.
 *
 * Entries live in a sorted array; a range operation first checks the whole range, then
 * clips the entries at its ends (split), changes the entries inside, and merges neighbours
 * that became alike (simplify).
 */
#include "mmu/vm_map.h"

#include <assert.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "mmu/pager.h"
#include "mmu/vm_domain.h"
#include "mmu/vm_fault.h"
#include "mmu/vm_object.h"
#include "mmu/vm_page.h"

/* ---- references held by entries ---------------------------------------------------------
 * An entry's reference is a writer's (direct_refs: no needs-copy, may be made writable), a
 * frozen one's (frozen_refs: needs-copy) or a read-only sharer's (neither). */

static void entry_attach(const struct vm_map_entry *e)
{
	if (!e->object)
		return;
	if (e->needs_copy)
		e->object->frozen_refs++;
	else if (e->max_protection & VM_PROT_WRITE)
		e->object->direct_refs++;
}

static void entry_detach(const struct vm_map_entry *e)
{
	if (!e->object)
		return;
	if (e->needs_copy)
		e->object->frozen_refs--;
	else if (e->max_protection & VM_PROT_WRITE)
		e->object->direct_refs--;
}

/* Take a reference for a new entry @e (a copy of another's fields). */
static void entry_ref(const struct vm_map_entry *e)
{
	if (!e->object)
		return;
	vm_object_reference(e->object);
	entry_attach(e);
}

static void entry_unref(struct vm_map_entry *e)
{
	if (!e->object)
		return;
	entry_detach(e);
	struct vm_object *obj = e->object;
	e->object = NULL;
	vm_object_deallocate(obj);
}

/* ---- the entry array ------------------------------------------------------------------- */

static int vm_map_insert_at(struct vm_map *map, size_t i, const struct vm_map_entry *e)
{
	if (map->nentries == map->cap) {
		size_t cap = map->cap ? map->cap * 2 : 8;
		struct vm_map_entry *v = realloc(map->entries, cap * sizeof(*v));
		if (!v)
			return -ENOMEM;
		map->entries = v;
		map->cap = cap;
	}
	memmove(&map->entries[i + 1], &map->entries[i], (map->nentries - i) * sizeof(*e));
	map->entries[i] = *e;
	map->nentries++;
	return 0;
}

static void vm_map_remove_at(struct vm_map *map, size_t i)
{
	memmove(&map->entries[i], &map->entries[i + 1], (map->nentries - i - 1) * sizeof(map->entries[0]));
	map->nentries--;
	if (map->hint >= map->nentries)
		map->hint = 0;
}

/* Index of the first entry ending above @addr (nentries when none). */
static size_t vm_map_search(const struct vm_map *map, vm_addr_t addr)
{
	size_t lo = 0, hi = map->nentries;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (map->entries[mid].end <= addr)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

struct vm_map_entry *vm_map_lookup_entry(struct vm_map *map, vm_addr_t addr)
{
	if (map->hint < map->nentries) {
		struct vm_map_entry *h = &map->entries[map->hint];
		if (addr >= h->start && addr < h->end)
			return h;
	}
	size_t i = vm_map_search(map, addr);
	if (i == map->nentries || map->entries[i].start > addr)
		return NULL;
	map->hint = i;
	return &map->entries[i];
}

/* Split the entry containing @addr so that an entry starts at @addr. 0 or -ENOMEM. */
static int vm_map_clip(struct vm_map *map, vm_addr_t addr)
{
	size_t i = vm_map_search(map, addr);
	if (i == map->nentries)
		return 0;
	struct vm_map_entry *e = &map->entries[i];
	if (e->start >= addr)
		return 0;
	struct vm_map_entry tail = *e;
	tail.start = addr;
	tail.offset += addr - e->start;
	if (vm_map_insert_at(map, i + 1, &tail) < 0)
		return -ENOMEM;
	e = &map->entries[i];
	e->end = addr;
	entry_ref(&tail);
	return 0;
}

static bool vm_attr_equal(const struct vm_attr *a, const struct vm_attr *b)
{
	return a->copy_strategy == b->copy_strategy && a->cluster == b->cluster && a->cache == b->cache &&
	       a->copy_on_read == b->copy_on_read;
}

static bool vm_map_mergeable(const struct vm_map_entry *a, const struct vm_map_entry *b)
{
	if (a->end != b->start || a->protection != b->protection || a->max_protection != b->max_protection ||
	    a->inheritance != b->inheritance || a->needs_copy != b->needs_copy || !vm_attr_equal(&a->attr, &b->attr))
		return false;
	if (!a->object && !b->object)
		return true;
	return a->object == b->object && a->offset + (a->end - a->start) == b->offset;
}

/* Merge alike neighbours among the entries touching [start, end]. */
static void vm_map_simplify(struct vm_map *map, vm_addr_t start, vm_addr_t end)
{
	size_t i = vm_map_search(map, start ? start - 1 : 0);
	if (i == 0)
		i = 1;
	while (i < map->nentries && map->entries[i - 1].start <= end) {
		struct vm_map_entry *a = &map->entries[i - 1], *b = &map->entries[i];
		if (!vm_map_mergeable(a, b)) {
			i++;
			continue;
		}
		a->end = b->end;
		entry_unref(b);
		vm_map_remove_at(map, i);
	}
}

/* ---- checks shared by the calls -------------------------------------------------------- */

/* An aligned, non-wrapping range inside the map. */
static kern_return_t vm_map_check_range(const struct vm_map *map, vm_addr_t addr, vm_size_t size)
{
	if (!vm_page_aligned(addr) || !vm_page_aligned(size) || addr + size < addr)
		return KERN_INVALID_ARGUMENT;
	if (addr < map->min || addr + size > map->max)
		return KERN_INVALID_ADDRESS;
	return KERN_SUCCESS;
}

/* [start, end) wholly mapped, each entry allowing @access; first problem in address order. */
static kern_return_t vm_map_check_mapped(struct vm_map *map, vm_addr_t start, vm_addr_t end, vm_prot_t access)
{
	vm_addr_t at = start;
	for (size_t i = vm_map_search(map, start); at < end; i++) {
		if (i == map->nentries || map->entries[i].start > at)
			return KERN_INVALID_ADDRESS;
		if ((map->entries[i].protection & access) != access)
			return KERN_PROTECTION_FAILURE;
		at = map->entries[i].end;
	}
	return KERN_SUCCESS;
}

/* The checks of a call on a wholly mapped range [addr, addr+size) allowing @access. */
static kern_return_t vm_map_check_call(struct vm_map *map, vm_addr_t addr, vm_size_t size, vm_prot_t access)
{
	kern_return_t kr = vm_map_check_range(map, addr, size);
	if (kr == KERN_SUCCESS && size)
		kr = vm_map_check_mapped(map, addr, addr + size, access);
	return kr;
}

/* Clip at both ends of [start, end); *first and *last receive the index range inside. */
static kern_return_t vm_map_clip_range(struct vm_map *map, vm_addr_t start, vm_addr_t end, size_t *first, size_t *last)
{
	if (vm_map_clip(map, start) < 0 || vm_map_clip(map, end) < 0)
		return KERN_RESOURCE_SHORTAGE;
	*first = vm_map_search(map, start);
	*last = *first;
	while (*last < map->nentries && map->entries[*last].start < end)
		(*last)++;
	return KERN_SUCCESS;
}

/* The lowest free range of @size at or above the map's start. */
static kern_return_t vm_map_find_space(const struct vm_map *map, vm_size_t size, vm_addr_t *addr)
{
	vm_addr_t at = map->min;
	for (size_t i = 0; i < map->nentries; i++) {
		if (map->entries[i].start >= at && map->entries[i].start - at >= size)
			break;
		at = map->entries[i].end;
	}
	if (at > map->max || map->max - at < size)
		return KERN_NO_SPACE;
	*addr = at;
	return KERN_SUCCESS;
}

static bool vm_map_range_free(const struct vm_map *map, vm_addr_t start, vm_addr_t end)
{
	size_t i = vm_map_search(map, start);
	return i == map->nentries || map->entries[i].start >= end;
}

/* Place a new entry over [*addr, *addr+size): anywhere or fixed (then it must be free). */
static kern_return_t vm_map_place(struct vm_map *map, vm_addr_t *addr, vm_size_t size, bool anywhere)
{
	if (size == 0 || !vm_page_aligned(size))
		return KERN_INVALID_ARGUMENT;
	if (anywhere)
		return vm_map_find_space(map, size, addr);
	kern_return_t kr = vm_map_check_range(map, *addr, size);
	if (kr != KERN_SUCCESS)
		return kr;
	return vm_map_range_free(map, *addr, *addr + size) ? KERN_SUCCESS : KERN_NO_SPACE;
}

/* Insert @e (its reference already taken) and merge it with its neighbours. */
static kern_return_t vm_map_insert(struct vm_map *map, struct vm_map_entry *e)
{
	if (vm_map_insert_at(map, vm_map_search(map, e->start), e) < 0) {
		entry_unref(e);
		return KERN_RESOURCE_SHORTAGE;
	}
	map->size += e->end - e->start;
	vm_map_simplify(map, e->start, e->end);
	return KERN_SUCCESS;
}

static bool vm_prot_valid(vm_prot_t p)
{
	return (p & ~VM_PROT_ALL) == 0;
}

static bool vm_inherit_valid(vm_inherit_t i)
{
	return i == VM_INHERIT_SHARE || i == VM_INHERIT_COPY || i == VM_INHERIT_NONE;
}

/* ---- creation ---------------------------------------------------------------------------- */

kern_return_t vm_map_create(struct vm_domain *dom, vm_addr_t min, vm_addr_t max, const struct pmap_ops *ops,
			    void *arg, struct vm_map **out)
{
	if (!vm_page_aligned(min) || !vm_page_aligned(max) || min >= max)
		return KERN_INVALID_ARGUMENT;
	struct vm_map *map = calloc(1, sizeof(*map));
	if (!map)
		return KERN_RESOURCE_SHORTAGE;
	map->dom = dom;
	map->min = min;
	map->max = max;
	map->default_attr = (struct vm_attr){.copy_strategy = VM_COPY_DELAY, .cluster = 1, .cache = VM_CACHE_WRITEBACK};
	pmap_init(&map->pmap, dom, ops, arg);
	*out = map;
	return KERN_SUCCESS;
}

/* Remove the entries of [start, end) (clipped already): pmap first, then references. */
static kern_return_t vm_map_delete(struct vm_map *map, size_t first, size_t last)
{
	for (size_t i = first; i < last; i++) {
		struct vm_map_entry *e = &map->entries[i];
		/* Pages of an object this entry alone holds die with it: no need to keep bytes. */
		const struct vm_object *discard = e->object && e->object->ref_count == 1 && e->object->internal
							  ? e->object
							  : NULL;
		if (pmap_remove(&map->pmap, e->start, e->end, discard) < 0)
			return KERN_RESOURCE_SHORTAGE;
	}
	for (size_t i = first; i < last; i++) {
		map->size -= map->entries[i].end - map->entries[i].start;
		entry_unref(&map->entries[i]);
	}
	if (last > first)
		memmove(&map->entries[first], &map->entries[last], (map->nentries - last) * sizeof(map->entries[0]));
	map->nentries -= last - first;
	map->hint = 0;
	return KERN_SUCCESS;
}

void vm_map_destroy(struct vm_map *map)
{
	if (!map)
		return;
	vm_domain_begin(map->dom);
	kern_return_t kr = vm_map_delete(map, 0, map->nentries);
	assert(kr == KERN_SUCCESS);
	(void)kr;
	pmap_fini(&map->pmap);
	free(map->entries);
	free(map);
}

/* ---- the Mach calls ------------------------------------------------------------------------ */

/* Wrap a call: begin/end the domain operation (page-out runs at the end). */
#define VM_MAP_CALL(map, expr)                      \
	do {                                        \
		vm_domain_begin((map)->dom);        \
		kern_return_t kr_ = (expr);         \
		vm_domain_end((map)->dom);          \
		return kr_;                         \
	} while (0)

static struct vm_map_entry vm_map_new_entry(const struct vm_map *map, vm_addr_t start, vm_size_t size)
{
	return (struct vm_map_entry){
		.start = start,
		.end = start + size,
		.protection = VM_PROT_DEFAULT,
		.max_protection = VM_PROT_ALL,
		.inheritance = VM_INHERIT_DEFAULT,
		.attr = map->default_attr,
	};
}

static kern_return_t vm_map_deallocate_locked(struct vm_map *map, vm_addr_t addr, vm_size_t size)
{
	kern_return_t kr = vm_map_check_range(map, addr, size);
	if (kr != KERN_SUCCESS || size == 0)
		return kr;
	size_t first, last;
	kr = vm_map_clip_range(map, addr, addr + size, &first, &last);
	if (kr != KERN_SUCCESS)
		return kr;
	return vm_map_delete(map, first, last);
}

kern_return_t vm_map_deallocate(struct vm_map *map, vm_addr_t addr, vm_size_t size)
{
	VM_MAP_CALL(map, vm_map_deallocate_locked(map, addr, size));
}

static kern_return_t vm_map_protect_locked(struct vm_map *map, vm_addr_t addr, vm_size_t size, bool set_max,
					   vm_prot_t prot)
{
	if (!vm_prot_valid(prot))
		return KERN_INVALID_ARGUMENT;
	kern_return_t kr = vm_map_check_call(map, addr, size, VM_PROT_NONE);
	if (kr != KERN_SUCCESS || size == 0)
		return kr;
	vm_addr_t end = addr + size;
	for (size_t i = vm_map_search(map, addr); i < map->nentries && map->entries[i].start < end; i++)
		if ((prot & map->entries[i].max_protection) != prot)
			return KERN_PROTECTION_FAILURE;
	size_t first, last;
	kr = vm_map_clip_range(map, addr, end, &first, &last);
	if (kr != KERN_SUCCESS)
		return kr;
	for (size_t i = first; i < last; i++) {
		struct vm_map_entry *e = &map->entries[i];
		entry_detach(e);
		if (set_max) {
			e->max_protection = prot;
			e->protection &= prot;
		} else {
			e->protection = prot;
		}
		entry_attach(e);
		/* Lowering takes effect at once; raising waits for the next fault. */
		if (pmap_protect(&map->pmap, e->start, e->end, e->protection) < 0)
			kr = KERN_RESOURCE_SHORTAGE;
	}
	vm_map_simplify(map, addr, end);
	return kr;
}

kern_return_t vm_map_protect(struct vm_map *map, vm_addr_t addr, vm_size_t size, bool set_max, vm_prot_t prot)
{
	VM_MAP_CALL(map, vm_map_protect_locked(map, addr, size, set_max, prot));
}

/* Set a field of every entry in a wholly mapped range (inheritance, attributes). */
static kern_return_t vm_map_set_field(struct vm_map *map, vm_addr_t addr, vm_size_t size,
				      void (*set)(struct vm_map_entry *, unsigned), unsigned value)
{
	kern_return_t kr = vm_map_check_call(map, addr, size, VM_PROT_NONE);
	if (kr != KERN_SUCCESS || size == 0)
		return kr;
	vm_addr_t end = addr + size;
	size_t first, last;
	kr = vm_map_clip_range(map, addr, end, &first, &last);
	if (kr != KERN_SUCCESS)
		return kr;
	for (size_t i = first; i < last; i++)
		set(&map->entries[i], value);
	vm_map_simplify(map, addr, end);
	return KERN_SUCCESS;
}

static void set_inheritance(struct vm_map_entry *e, unsigned v)
{
	e->inheritance = v;
}

kern_return_t vm_map_inherit(struct vm_map *map, vm_addr_t addr, vm_size_t size, vm_inherit_t inheritance)
{
	if (!vm_inherit_valid(inheritance))
		return KERN_INVALID_ARGUMENT;
	return vm_map_set_field(map, addr, size, set_inheritance, inheritance);
}

static bool vm_attr_valid(enum vm_attr_kind kind, unsigned value)
{
	switch (kind) {
	case VM_ATTR_COPY_STRATEGY: return value == VM_COPY_DELAY || value == VM_COPY_NONE;
	case VM_ATTR_CLUSTER: return value >= 1 && value <= VM_CLUSTER_MAX;
	case VM_ATTR_CACHE: return value <= VM_CACHE_UNCACHED;
	case VM_ATTR_COPY_ON_READ: return value <= 1;
	}
	return false;
}

static void vm_attr_set(struct vm_attr *a, enum vm_attr_kind kind, unsigned value)
{
	switch (kind) {
	case VM_ATTR_COPY_STRATEGY: a->copy_strategy = value; break;
	case VM_ATTR_CLUSTER: a->cluster = value; break;
	case VM_ATTR_CACHE: a->cache = value; break;
	case VM_ATTR_COPY_ON_READ: a->copy_on_read = value; break;
	}
}

static void set_copy_strategy(struct vm_map_entry *e, unsigned v)
{
	vm_attr_set(&e->attr, VM_ATTR_COPY_STRATEGY, v);
}

static void set_cluster(struct vm_map_entry *e, unsigned v)
{
	vm_attr_set(&e->attr, VM_ATTR_CLUSTER, v);
}

static void set_cache(struct vm_map_entry *e, unsigned v)
{
	vm_attr_set(&e->attr, VM_ATTR_CACHE, v);
}

static void set_copy_on_read(struct vm_map_entry *e, unsigned v)
{
	vm_attr_set(&e->attr, VM_ATTR_COPY_ON_READ, v);
}

kern_return_t vm_map_set_attr(struct vm_map *map, vm_addr_t addr, vm_size_t size, enum vm_attr_kind kind,
			      unsigned value)
{
	static void (*const setters[])(struct vm_map_entry *, unsigned) = {
		[VM_ATTR_COPY_STRATEGY] = set_copy_strategy,
		[VM_ATTR_CLUSTER] = set_cluster,
		[VM_ATTR_CACHE] = set_cache,
		[VM_ATTR_COPY_ON_READ] = set_copy_on_read,
	};
	if ((unsigned)kind > VM_ATTR_COPY_ON_READ || !vm_attr_valid(kind, value))
		return KERN_INVALID_ARGUMENT;
	return vm_map_set_field(map, addr, size, setters[kind], value);
}

kern_return_t vm_map_set_default_attr(struct vm_map *map, enum vm_attr_kind kind, unsigned value)
{
	if ((unsigned)kind > VM_ATTR_COPY_ON_READ || !vm_attr_valid(kind, value))
		return KERN_INVALID_ARGUMENT;
	vm_attr_set(&map->default_attr, kind, value);
	return KERN_SUCCESS;
}

/* ---- objects behind entries ---------------------------------------------------------------- */

kern_return_t vm_map_entry_instantiate(struct vm_map *map, struct vm_map_entry *e)
{
	(void)map;
	if (e->object)
		return KERN_SUCCESS;
	struct vm_object *obj;
	kern_return_t kr = vm_object_allocate(map->dom, e->end - e->start, &obj);
	if (kr != KERN_SUCCESS)
		return kr;
	e->object = obj;
	e->offset = 0;
	e->needs_copy = false;
	entry_attach(e);
	return KERN_SUCCESS;
}

kern_return_t vm_map_entry_resolve_copy(struct vm_map *map, struct vm_map_entry *e)
{
	(void)map;
	if (!e->needs_copy)
		return KERN_SUCCESS;
	struct vm_object *obj = e->object;
	entry_detach(e);
	e->needs_copy = false;
	if (!obj || (obj->ref_count == 1 && obj->internal)) {
		/* Nobody else holds it: take it over instead of shadowing it. */
		entry_attach(e);
		return KERN_SUCCESS;
	}
	kern_return_t kr = vm_object_shadow(&e->object, &e->offset, e->end - e->start);
	if (kr != KERN_SUCCESS)
		e->needs_copy = true;
	entry_attach(e);
	return kr;
}

/* Whether every reference to @obj comes from entries of @map (no one else can see it). */
static bool vm_map_owns(const struct vm_map *map, const struct vm_object *obj)
{
	unsigned refs = 0;
	for (size_t i = 0; i < map->nentries; i++)
		refs += map->entries[i].object == obj;
	return refs == obj->ref_count;
}

/* Freeze @obj, held by entries of @map alone: they all copy on their next write. */
static kern_return_t vm_map_freeze(struct vm_map *map, struct vm_object *obj)
{
	for (size_t i = 0; i < map->nentries; i++) {
		struct vm_map_entry *e = &map->entries[i];
		if (e->object != obj || e->needs_copy)
			continue;
		if (pmap_protect(&map->pmap, e->start, e->end, e->protection & ~VM_PROT_WRITE) < 0)
			return KERN_RESOURCE_SHORTAGE;
		entry_detach(e);
		e->needs_copy = true;
		entry_attach(e);
	}
	return KERN_SUCCESS;
}

/* Whether @obj can never be written: frozen references to it stay true without freezing. */
static bool vm_object_read_only(const struct vm_object *obj)
{
	return !obj->internal && obj->pager && !(obj->pager->max_prot & VM_PROT_WRITE);
}

/*
 * A frozen reference to the memory of entry @e for a new holder (a fork's child, a copy):
 * the same object when it can be frozen (nobody can write it, or only entries of this map,
 * which then copy on their next write), else an eager copy. *needs_copy tells which.
 */
static kern_return_t vm_map_entry_copy(struct vm_map *map, struct vm_map_entry *e, struct vm_object **objp,
				       vm_offset_t *offp, bool *needs_copy)
{
	struct vm_object *obj = e->object;
	*objp = NULL;
	*offp = 0;
	*needs_copy = false;
	if (!obj)
		return KERN_SUCCESS;
	bool lazy = e->needs_copy || (e->attr.copy_strategy == VM_COPY_DELAY && vm_object_read_only(obj));
	if (!lazy && e->attr.copy_strategy == VM_COPY_DELAY && obj->internal && vm_map_owns(map, obj)) {
		kern_return_t kr = vm_map_freeze(map, obj);
		if (kr != KERN_SUCCESS)
			return kr;
		lazy = true;
	}
	if (!lazy)
		return vm_object_copy_slowly(obj, e->offset, e->end - e->start, objp);
	vm_object_reference(obj);
	*objp = obj;
	*offp = e->offset;
	*needs_copy = true;
	return KERN_SUCCESS;
}

static kern_return_t vm_map_enter_locked(struct vm_map *map, vm_addr_t *addr, vm_size_t size, bool anywhere,
					 struct vm_object *obj, vm_offset_t offset, bool copy, vm_prot_t cur,
					 vm_prot_t max, vm_inherit_t inheritance)
{
	if (!vm_prot_valid(cur) || !vm_prot_valid(max) || !vm_inherit_valid(inheritance) || !vm_page_aligned(offset))
		return KERN_INVALID_ARGUMENT;
	if ((cur & max) != cur)
		return KERN_PROTECTION_FAILURE;
	if (obj && (offset + size < offset || offset + size > obj->size))
		return KERN_INVALID_ARGUMENT;
	vm_addr_t at = *addr;
	kern_return_t kr = vm_map_place(map, &at, size, anywhere);
	if (kr != KERN_SUCCESS)
		return kr;
	struct vm_map_entry e = vm_map_new_entry(map, at, size);
	e.protection = cur;
	e.max_protection = max;
	e.inheritance = inheritance;
	if (obj) {
		e.attr.copy_strategy = obj->copy_strategy;
		if (!copy && (max & VM_PROT_WRITE)) {
			/* A shared writer must be able to write into the object itself. */
			if ((obj->pager && !(obj->pager->max_prot & VM_PROT_WRITE)) || obj->shadow_count ||
			    obj->frozen_refs)
				return KERN_PROTECTION_FAILURE;
		}
		/* A lazy copy freezes the object: only when the caller's is the one other reference
		 * (it then cannot map it shared and writable while the copy lives) or nobody can
		 * write it anyway. */
		bool lazy = obj->copy_strategy == VM_COPY_DELAY &&
			    ((obj->internal && obj->ref_count == 1) || vm_object_read_only(obj));
		if (copy && !lazy) {
			kr = vm_object_copy_slowly(obj, offset, size, &e.object);
			if (kr != KERN_SUCCESS)
				return kr;
		} else {
			vm_object_reference(obj);
			e.object = obj;
			e.offset = offset;
			e.needs_copy = copy;
		}
		entry_attach(&e);
	}
	kr = vm_map_insert(map, &e);
	if (kr == KERN_SUCCESS)
		*addr = at;
	return kr;
}

kern_return_t vm_map_allocate(struct vm_map *map, vm_addr_t *addr, vm_size_t size, bool anywhere)
{
	if (size == 0) {
		*addr = 0;
		return KERN_SUCCESS;
	}
	return vm_map_enter_locked(map, addr, size, anywhere, NULL, 0, false, VM_PROT_DEFAULT, VM_PROT_ALL,
				   VM_INHERIT_DEFAULT);
}

kern_return_t vm_map_enter(struct vm_map *map, vm_addr_t *addr, vm_size_t size, bool anywhere,
			   struct vm_object *obj, vm_offset_t offset, bool copy, vm_prot_t cur, vm_prot_t max,
			   vm_inherit_t inheritance)
{
	VM_MAP_CALL(map, vm_map_enter_locked(map, addr, size, anywhere, obj, offset, copy, cur, max, inheritance));
}

/* ---- fork ------------------------------------------------------------------------------------ */

static kern_return_t vm_map_fork_entry(struct vm_map *parent, struct vm_map_entry *e, struct vm_map *child)
{
	struct vm_map_entry c = *e;
	kern_return_t kr = KERN_SUCCESS;
	switch (e->inheritance) {
	case VM_INHERIT_NONE:
		return KERN_SUCCESS;
	case VM_INHERIT_SHARE:
		/* Both must write into one object: settle a pending copy and an untouched entry. */
		kr = vm_map_entry_resolve_copy(parent, e);
		if (kr == KERN_SUCCESS)
			kr = vm_map_entry_instantiate(parent, e);
		if (kr != KERN_SUCCESS)
			return kr;
		c = *e;
		entry_ref(&c);
		break;
	case VM_INHERIT_COPY:
		kr = vm_map_entry_copy(parent, e, &c.object, &c.offset, &c.needs_copy);
		if (kr != KERN_SUCCESS)
			return kr;
		entry_attach(&c);
		break;
	}
	if (vm_map_insert_at(child, child->nentries, &c) < 0) {
		entry_unref(&c);
		return KERN_RESOURCE_SHORTAGE;
	}
	child->size += c.end - c.start;
	return KERN_SUCCESS;
}

static kern_return_t vm_map_fork_locked(struct vm_map *parent, const struct pmap_ops *ops, void *arg,
					struct vm_map **out)
{
	struct vm_map *child;
	kern_return_t kr = vm_map_create(parent->dom, parent->min, parent->max, ops, arg, &child);
	if (kr != KERN_SUCCESS)
		return kr;
	child->default_attr = parent->default_attr;
	for (size_t i = 0; i < parent->nentries && kr == KERN_SUCCESS; i++)
		kr = vm_map_fork_entry(parent, &parent->entries[i], child);
	if (kr != KERN_SUCCESS) {
		vm_map_destroy(child);
		return kr;
	}
	vm_map_simplify(child, child->min, child->max);
	*out = child;
	return KERN_SUCCESS;
}

kern_return_t vm_map_fork(struct vm_map *parent, const struct pmap_ops *ops, void *arg, struct vm_map **child)
{
	VM_MAP_CALL(parent, vm_map_fork_locked(parent, ops, arg, child));
}

/* ---- copies ------------------------------------------------------------------------------------ */

void vm_map_copy_discard(struct vm_map_copy *copy)
{
	if (!copy)
		return;
	for (size_t i = 0; i < copy->npieces; i++) {
		struct vm_object *obj = copy->pieces[i].object;
		if (obj) {
			obj->frozen_refs--;
			vm_object_deallocate(obj);
		}
	}
	free(copy->pieces);
	free(copy);
}

static kern_return_t vm_map_copyin_locked(struct vm_map *map, vm_addr_t addr, vm_size_t size,
					  struct vm_map_copy **out)
{
	if (size == 0)
		return KERN_INVALID_ARGUMENT;
	kern_return_t kr = vm_map_check_call(map, addr, size, VM_PROT_READ);
	if (kr != KERN_SUCCESS)
		return kr;
	struct vm_map_copy *copy = calloc(1, sizeof(*copy));
	size_t first, last;
	if (!copy || vm_map_clip_range(map, addr, addr + size, &first, &last) != KERN_SUCCESS ||
	    !(copy->pieces = calloc(last - first, sizeof(*copy->pieces)))) {
		free(copy);
		return KERN_RESOURCE_SHORTAGE;
	}
	copy->dom = map->dom;
	copy->size = size;
	for (size_t i = first; i < last && kr == KERN_SUCCESS; i++) {
		struct vm_map_entry *e = &map->entries[i];
		struct vm_map_copy_piece *p = &copy->pieces[copy->npieces];
		bool frozen;
		kr = vm_map_entry_copy(map, e, &p->object, &p->obj_offset, &frozen);
		if (kr != KERN_SUCCESS)
			break;
		p->offset = e->start - addr;
		p->size = e->end - e->start;
		p->attr = e->attr;
		if (p->object)
			p->object->frozen_refs++;
		copy->npieces++;
	}
	vm_map_simplify(map, addr, addr + size);
	if (kr != KERN_SUCCESS) {
		vm_map_copy_discard(copy);
		return kr;
	}
	*out = copy;
	return KERN_SUCCESS;
}

kern_return_t vm_map_copyin(struct vm_map *map, vm_addr_t addr, vm_size_t size, struct vm_map_copy **out)
{
	VM_MAP_CALL(map, vm_map_copyin_locked(map, addr, size, out));
}

/* An entry over piece @p of a copy at @start: a frozen reference, copied on the first write. */
static void vm_map_piece_entry(struct vm_map_entry *e, const struct vm_map_copy_piece *p, vm_offset_t skip)
{
	e->object = p->object;
	e->offset = p->obj_offset + skip;
	e->needs_copy = p->object != NULL;
	entry_ref(e);
}

kern_return_t vm_map_copyout(struct vm_map *map, vm_addr_t *addr, bool anywhere, const struct vm_map_copy *copy)
{
	vm_addr_t at = *addr;
	kern_return_t kr = vm_map_place(map, &at, copy->size, anywhere);
	if (kr != KERN_SUCCESS)
		return kr;
	for (size_t i = 0; i < copy->npieces && kr == KERN_SUCCESS; i++) {
		const struct vm_map_copy_piece *p = &copy->pieces[i];
		struct vm_map_entry e = vm_map_new_entry(map, at + p->offset, p->size);
		e.attr = p->attr;
		vm_map_piece_entry(&e, p, 0);
		kr = vm_map_insert(map, &e);
	}
	if (kr != KERN_SUCCESS) {
		vm_map_deallocate_locked(map, at, copy->size);
		return kr;
	}
	*addr = at;
	return KERN_SUCCESS;
}

static kern_return_t vm_map_write_locked(struct vm_map *map, vm_addr_t addr, const void *buf, vm_size_t len);

/* Overwrite entry @e (inside the destination) from the piece of @copy it lies in. */
static kern_return_t vm_map_overwrite_entry(struct vm_map *map, size_t i, vm_addr_t dst, const struct vm_map_copy *copy)
{
	struct vm_map_entry *e = &map->entries[i];
	vm_size_t at = e->start - dst;
	size_t k = 0;
	while (copy->pieces[k].offset + copy->pieces[k].size <= at)
		k++;
	const struct vm_map_copy_piece *p = &copy->pieces[k];
	struct vm_object *obj = e->object;
	if (!obj || e->needs_copy || obj->ref_count == 1) {
		/* The entry's memory is its own: swap in the copy's object. */
		const struct vm_object *discard = obj && obj->ref_count == 1 && obj->internal ? obj : NULL;
		if (pmap_remove(&map->pmap, e->start, e->end, discard) < 0)
			return KERN_RESOURCE_SHORTAGE;
		entry_unref(e);
		vm_map_piece_entry(e, p, at - p->offset);
		return KERN_SUCCESS;
	}
	/* Shared with others who must see the new bytes: copy them in. */
	uint8_t buf[VM_PAGE_SIZE] __attribute__((aligned(64)));
	for (vm_addr_t va = e->start; va < e->end; va += VM_PAGE_SIZE) {
		kern_return_t kr = vm_map_copy_read(copy, va - dst, buf, VM_PAGE_SIZE);
		if (kr == KERN_SUCCESS)
			kr = vm_map_write_locked(map, va, buf, VM_PAGE_SIZE);
		if (kr != KERN_SUCCESS)
			return kr;
		e = &map->entries[i];
	}
	return KERN_SUCCESS;
}

static kern_return_t vm_map_overwrite_locked(struct vm_map *map, vm_addr_t dst, const struct vm_map_copy *copy)
{
	kern_return_t kr = vm_map_check_call(map, dst, copy->size, VM_PROT_WRITE);
	if (kr != KERN_SUCCESS)
		return kr;
	size_t first, last;
	for (size_t k = 0; k < copy->npieces; k++)
		if (vm_map_clip(map, dst + copy->pieces[k].offset) < 0)
			return KERN_RESOURCE_SHORTAGE;
	kr = vm_map_clip_range(map, dst, dst + copy->size, &first, &last);
	for (size_t i = first; i < last && kr == KERN_SUCCESS; i++)
		kr = vm_map_overwrite_entry(map, i, dst, copy);
	vm_map_simplify(map, dst, dst + copy->size);
	return kr;
}

kern_return_t vm_map_copy_overwrite(struct vm_map *map, vm_addr_t dst, const struct vm_map_copy *copy)
{
	VM_MAP_CALL(map, vm_map_overwrite_locked(map, dst, copy));
}

kern_return_t vm_map_copy_read(const struct vm_map_copy *copy, vm_offset_t offset, void *buf, vm_size_t len)
{
	if (offset + len < offset || offset + len > copy->size)
		return KERN_INVALID_ARGUMENT;
	uint8_t *out = buf;
	for (size_t k = 0; k < copy->npieces && len > 0; k++) {
		const struct vm_map_copy_piece *p = &copy->pieces[k];
		if (offset >= p->offset + p->size)
			continue;
		vm_size_t skip = offset - p->offset, n = p->size - skip;
		if (n > len)
			n = len;
		kern_return_t kr = vm_object_read(p->object, p->obj_offset + skip, out, n);
		if (kr != KERN_SUCCESS)
			return kr;
		out += n;
		offset += n;
		len -= n;
	}
	return KERN_SUCCESS;
}

kern_return_t vm_map_copy_pages(const struct vm_map_copy *copy, const struct vm_object *stop,
				vm_map_copy_page_fn *fn, void *arg)
{
	kern_return_t kr = KERN_SUCCESS;
	vm_domain_begin(copy->dom);
	for (size_t k = 0; k < copy->npieces && kr == KERN_SUCCESS; k++) {
		const struct vm_map_copy_piece *p = &copy->pieces[k];
		kr = vm_object_enumerate(p->object, p->obj_offset, p->size, stop, fn, arg, p->offset);
	}
	vm_domain_end(copy->dom);
	return kr;
}

static kern_return_t vm_map_copy_locked(struct vm_map *map, vm_addr_t src, vm_size_t size, vm_addr_t dst)
{
	kern_return_t kr = vm_map_check_range(map, src, size);
	if (kr == KERN_SUCCESS)
		kr = vm_map_check_range(map, dst, size);
	if (kr == KERN_SUCCESS)
		kr = vm_map_check_call(map, src, size, VM_PROT_READ);
	if (kr == KERN_SUCCESS)
		kr = vm_map_check_call(map, dst, size, VM_PROT_WRITE);
	if (kr != KERN_SUCCESS || size == 0)
		return kr;
	struct vm_map_copy *copy;
	kr = vm_map_copyin_locked(map, src, size, &copy);
	if (kr != KERN_SUCCESS)
		return kr;
	kr = vm_map_overwrite_locked(map, dst, copy);
	vm_map_copy_discard(copy);
	return kr;
}

kern_return_t vm_map_copy(struct vm_map *map, vm_addr_t src, vm_size_t size, vm_addr_t dst)
{
	VM_MAP_CALL(map, vm_map_copy_locked(map, src, size, dst));
}

/* ---- read and write ---------------------------------------------------------------------------- */

/* A byte range [addr, addr+len) inside the map, wholly mapped with @access. */
static kern_return_t vm_map_check_bytes(struct vm_map *map, vm_addr_t addr, vm_size_t len, vm_prot_t access)
{
	if (addr + len < addr)
		return KERN_INVALID_ARGUMENT;
	if (addr < map->min || addr + len > map->max)
		return KERN_INVALID_ADDRESS;
	vm_addr_t end = addr + len;
	vm_addr_t rend = end & VM_PAGE_MASK ? vm_trunc_page(end) + VM_PAGE_SIZE : end;
	return vm_map_check_mapped(map, vm_trunc_page(addr), rend, access);
}

static kern_return_t vm_map_read_locked(struct vm_map *map, vm_addr_t addr, void *buf, vm_size_t len)
{
	kern_return_t kr = vm_map_check_bytes(map, addr, len, VM_PROT_READ);
	uint8_t *out = buf;
	while (kr == KERN_SUCCESS && len > 0) {
		struct vm_map_entry *e = vm_map_lookup_entry(map, addr);
		vm_size_t n = e->end - addr;
		if (n > len)
			n = len;
		kr = vm_object_read(e->object, e->offset + (addr - e->start), out, n);
		out += n;
		addr += n;
		len -= n;
	}
	return kr;
}

kern_return_t vm_map_read(struct vm_map *map, vm_addr_t addr, void *buf, vm_size_t len)
{
	VM_MAP_CALL(map, vm_map_read_locked(map, addr, buf, len));
}

static kern_return_t vm_map_write_locked(struct vm_map *map, vm_addr_t addr, const void *buf, vm_size_t len)
{
	kern_return_t kr = vm_map_check_bytes(map, addr, len, VM_PROT_WRITE);
	const uint8_t *in = buf;
	while (kr == KERN_SUCCESS && len > 0) {
		vm_size_t off = addr & VM_PAGE_MASK, n = VM_PAGE_SIZE - off;
		if (n > len)
			n = len;
		struct vm_page *page;
		kr = vm_fault_resolve(map, addr, VM_PROT_WRITE, &page);
		if (kr != KERN_SUCCESS)
			break;
		/* The bytes change under every mapping: take the page back from them first. */
		if (pmap_page_protect(page, VM_PROT_NONE) < 0 || vm_page_buffer(page) < 0) {
			kr = KERN_RESOURCE_SHORTAGE;
			break;
		}
		memcpy(page->data + off, in, n);
		page->flags |= VM_PAGE_DIRTY;
		in += n;
		addr += n;
		len -= n;
	}
	return kr;
}

kern_return_t vm_map_write(struct vm_map *map, vm_addr_t addr, const void *buf, vm_size_t len)
{
	VM_MAP_CALL(map, vm_map_write_locked(map, addr, buf, len));
}

/* ---- introspection and maintenance --------------------------------------------------------------- */

kern_return_t vm_map_region(struct vm_map *map, vm_addr_t *addr, struct vm_region_info *info)
{
	size_t i = vm_map_search(map, *addr);
	if (i == map->nentries)
		return KERN_INVALID_ADDRESS;
	const struct vm_map_entry *e = &map->entries[i];
	*info = (struct vm_region_info){
		.start = e->start,
		.end = e->end,
		.protection = e->protection,
		.max_protection = e->max_protection,
		.inheritance = e->inheritance,
		.needs_copy = e->needs_copy,
		.attr = e->attr,
		.object = e->object,
		.offset = e->offset,
	};
	if (e->object) {
		const struct vm_object *obj = e->object;
		info->shared = obj->ref_count > 1;
		info->object_id = obj->id;
		info->depth = vm_object_depth(obj);
		uint64_t first = vm_atop(e->offset);
		info->resident_count = vm_page_count_resident(obj, first, first + vm_atop(e->end - e->start));
	}
	*addr = e->start;
	return KERN_SUCCESS;
}

static kern_return_t vm_map_msync_locked(struct vm_map *map, vm_addr_t addr, vm_size_t size)
{
	kern_return_t kr = vm_map_check_call(map, addr, size, VM_PROT_NONE);
	for (size_t i = vm_map_search(map, addr); kr == KERN_SUCCESS && i < map->nentries; i++) {
		const struct vm_map_entry *e = &map->entries[i];
		if (e->start >= addr + size)
			break;
		if (!e->object || e->needs_copy)
			continue;
		vm_addr_t s = e->start > addr ? e->start : addr, t = e->end < addr + size ? e->end : addr + size;
		kr = vm_object_clean(e->object, e->offset + (s - e->start), t - s);
	}
	return kr;
}

kern_return_t vm_map_msync(struct vm_map *map, vm_addr_t addr, vm_size_t size)
{
	VM_MAP_CALL(map, vm_map_msync_locked(map, addr, size));
}

kern_return_t vm_map_collapse(struct vm_map *map, vm_addr_t addr, vm_size_t size)
{
	kern_return_t kr = vm_map_check_range(map, addr, size);
	if (kr != KERN_SUCCESS)
		return kr;
	vm_domain_begin(map->dom);
	for (size_t i = vm_map_search(map, addr); i < map->nentries && map->entries[i].start < addr + size; i++)
		if (map->entries[i].object)
			vm_object_collapse(map->entries[i].object);
	vm_domain_end(map->dom);
	return KERN_SUCCESS;
}

/* The mapping at @va with @prot must show page @pindex of @page_obj, the page the entry's
 * chain resolves to, no more writable than the entry and the page's place allow. */
static void vm_map_check_mapping(struct vm_map *map, vm_addr_t va, vm_prot_t prot, const struct vm_object *page_obj,
				 uint64_t pindex)
{
	const struct vm_map_entry *e = NULL;
	size_t i = vm_map_search(map, va);
	assert(i < map->nentries && map->entries[i].start <= va);
	e = &map->entries[i];
	assert(e->object && (prot & ~e->protection) == 0);
	const struct vm_object *obj = e->object;
	uint64_t idx = vm_atop(e->offset + (va - e->start));
	unsigned depth = 0;
	while (!vm_page_resident(obj, idx)) {
		/* A page its object's pager holds is not resident, so it cannot be mapped. */
		assert(!hmap_get(&obj->paged, idx) && (obj->internal || !obj->pager));
		idx += vm_atop(obj->shadow_offset);
		obj = obj->shadow;
		assert(obj);
		depth++;
	}
	assert(obj == page_obj && idx == pindex);
	assert(!(prot & VM_PROT_WRITE) || (depth == 0 && !e->needs_copy));
	(void)depth;
	(void)page_obj;
	(void)pindex;
}

void vm_map_check(struct vm_map *map)
{
	vm_size_t size = 0;
	for (size_t i = 0; i < map->nentries; i++) {
		const struct vm_map_entry *e = &map->entries[i];
		assert(e->start < e->end && vm_page_aligned(e->start) && vm_page_aligned(e->end));
		assert(e->start >= map->min && e->end <= map->max);
		assert(i == 0 || map->entries[i - 1].end <= e->start);
		assert((e->protection & ~e->max_protection) == 0);
		assert(e->attr.cluster >= 1 && e->attr.cluster <= VM_CLUSTER_MAX);
		size += e->end - e->start;
		if (e->object) {
			assert(e->offset + (e->end - e->start) <= e->object->size);
			vm_object_check(e->object);
		} else {
			assert(!e->needs_copy);
		}
	}
	assert(size == map->size);
	(void)size;
	size_t cursor = 0;
	void *val;
	while (hmap_next(&map->pmap.pv, &cursor, NULL, &val)) {
		const struct pv_entry *pv = val;
		vm_map_check_mapping(map, pv->va, pv->prot, pv->page->object, pv->page->pindex);
	}
	for (size_t b = 0; b < map->pmap.nbound; b++) {
		const struct vm_object *obj = map->pmap.bound[b];
		assert(obj->bind_pmap == &map->pmap && obj->packed_count > 0);
		for (uint64_t idx = 0; vm_page_next(obj, &idx, vm_atop(obj->size)); idx++) {
			uint8_t state = vm_page_state(obj, idx);
			if (state & VM_PS_PROT)
				vm_map_check_mapping(map, obj->bind_va + vm_ptoa(idx), state & VM_PS_PROT, obj, idx);
		}
	}
}

/*
 * The guest-physical address space over the monitor: query-memory (Mach's vm_region made
 * visible: every map entry, its object's shadow chain, residency and pager) and the Mach
 * calls vm-allocate, vm-deallocate, vm-protect, vm-inherit, vm-read, vm-write, vm-map,
 * vm-copy, vm-region, vm-statistics, vm-set-attributes, and vm-export / vm-unexport (a range
 * of RAM made an object other VMs map). Errors name the Mach code (KERN_*),
 * so a client sees what Mach would have said.
 */
#include "vmm/monitor/qmp_memory.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "vmm/monitor/base64.h"
#include "vmm/monitor/monitor.h"
#include "vmm/monitor/vm_monitor.h"
#include "vmm/error.h"
#include "vmm/lifecycle/restore.h"
#include "vmm/vm.h"

/* The help texts below state the bound in words; MONITOR_DATA_MAX is the one that counts. */
_Static_assert(MONITOR_DATA_MAX == 64u << 10, "the vm-read and vm-write help says 64 KiB");

static void prot_string(vm_prot_t p, char out[4])
{
	out[0] = p & VM_PROT_READ ? 'r' : '-';
	out[1] = p & VM_PROT_WRITE ? 'w' : '-';
	out[2] = p & VM_PROT_EXECUTE ? 'x' : '-';
	out[3] = '\0';
}

/* "rwx", "r-x", "rw", "" ...: any of r, w, x, each at most once, and dashes. */
static int prot_parse(const char *text, vm_prot_t *p)
{
	*p = VM_PROT_NONE;
	for (const char *s = text; *s; s++) {
		vm_prot_t bit = *s == 'r' ? VM_PROT_READ : *s == 'w' ? VM_PROT_WRITE : *s == 'x' ? VM_PROT_EXECUTE : 0;
		if (*s == '-')
			continue;
		if (!bit || (*p & bit))
			return error_set(EINVAL, "protection '%s': use letters r, w, x (and -), each once", text);
		*p |= bit;
	}
	return 0;
}

static const char *const inherit_names[] = {"share", "copy", "none"};
static const char *const strategy_names[] = {"delay", "none"};
static const char *const cache_names[] = {"writeback", "writethrough", "uncached"};

/* The index of @text in @names (@n of them), or -EINVAL with "@what 'TEXT': use @choices". */
static int name_index(const char *const *names, int n, const char *text, const char *what, const char *choices)
{
	for (int i = 0; i < n; i++)
		if (strcmp(text, names[i]) == 0)
			return i;
	return error_set(EINVAL, "%s '%s': use %s", what, text, choices);
}

/* Optional string argument @key, one of @names: its index, @dflt when absent, or -EINVAL. */
static int arg_name(json_t *args, const char *key, const char *const *names, int n, int dflt, const char *choices)
{
	const char *text = json_string_value(json_object_get(args, key));
	return text ? name_index(names, n, text, key, choices) : dflt;
}

static const char *region_kind(const struct guest_memory *m, vm_addr_t gpa)
{
	const struct guest_region *g = guest_memory_region(m, gpa);
	static const char *const kinds[] = {[GUEST_REGION_RAM] = "ram", [GUEST_REGION_FILE] = "file",
					    [GUEST_REGION_EXTERNAL] = "external", [GUEST_REGION_SNAPSHOT] = "snapshot",
					    [GUEST_REGION_HOST_SHARED] = "shared-with-forks"};
	return g ? kinds[g->kind] : "none";
}

static json_t *object_json(const struct guest_memory_object *o)
{
	json_t *host = o->host_shared ? json_pack("{s:I,s:I}", "mappers", (json_int_t)o->host_mappers, "resident",
						  (json_int_t)o->host_resident)
				      : json_null();
	return json_pack("{s:I,s:I,s:b,s:s,s:I,s:I,s:I,s:I,s:I,s:o,s:I,s:I,s:I,s:I,s:I,s:b,s:o}", "id", (json_int_t)o->id,
			 "size", (json_int_t)o->size, "internal", o->internal, "copy-strategy",
			 strategy_names[o->copy_strategy], "ref-count", (json_int_t)o->ref_count, "shadow-count",
			 (json_int_t)o->shadow_count, "shadow-offset", (json_int_t)o->shadow_offset, "resident",
			 (json_int_t)o->resident, "paged", (json_int_t)o->paged, "pager",
			 o->pager ? json_string(o->pager) : json_null(), "faults", (json_int_t)o->faults, "pageins",
			 (json_int_t)o->pageins, "pageouts", (json_int_t)o->pageouts, "cow-pages", (json_int_t)o->cow_pages,
			 "zero-fills", (json_int_t)o->zero_fills, "snapshot-base", o->base, "host", host);
}

/* The answer of every call here when guest memory is not a Mach map. */
static int not_mapped(void)
{
	return error_set(ENOTSUP, "this VM's RAM is not in a map (--kernel-zero-fill)");
}

/* query-memory's answer as guest_memory_vm_region describes the map. */
struct query_memory {
	const struct guest_memory *m;
	json_t *entries;
	uint64_t resident;
};

/* One map entry as query-memory and vm-region show it. */
static json_t *entry_json(const struct guest_memory *m, const struct guest_memory_entry *e)
{
	char prot[4], maxprot[4];
	prot_string(e->protection, prot);
	prot_string(e->max_protection, maxprot);
	json_t *chain = json_array();
	for (unsigned i = 0; i < e->nchain; i++)
		json_array_append_new(chain, object_json(&e->chain[i]));
	return json_pack("{s:I,s:I,s:I,s:s,s:s,s:s,s:s,s:b,s:b,s:s,s:i,s:s,s:I,s:I,s:i,s:o}", "start", (json_int_t)e->start,
			 "end", (json_int_t)e->end, "size", (json_int_t)(e->end - e->start), "region",
			 region_kind(m, e->start), "protection", prot, "max-protection", maxprot, "inheritance",
			 e->inheritance <= VM_INHERIT_NONE ? inherit_names[e->inheritance] : "?", "needs-copy", e->needs_copy,
			 "shared", e->shared, "copy-strategy", strategy_names[e->copy_strategy], "cluster", (int)e->cluster,
			 "cache", cache_names[e->cache], "offset", (json_int_t)e->offset, "resident", (json_int_t)e->resident,
			 "depth", (int)e->depth, "chain", chain);
}

static void query_memory_entry(void *arg, const struct guest_memory_entry *e)
{
	struct query_memory *q = arg;
	q->resident += e->resident;
	json_array_append_new(q->entries, entry_json(q->m, e));
}

static int query_memory(struct monitor_call *call, void *ctx, json_t *args, json_t **ret)
{
	(void)call;
	(void)args;
	struct vm *vm = ctx;
	if (!guest_memory_mapped(&vm->mem))
		return not_mapped();
	struct query_memory q = {.m = &vm->mem, .entries = json_array()};
	uint64_t objects;
	int r = guest_memory_vm_region(&vm->mem, query_memory_entry, &q, &objects);
	if (r) {
		json_decref(q.entries);
		return r;
	}
	*ret = json_pack("{s:o,s:I,s:I,s:I}", "entries", q.entries, "resident-pages", (json_int_t)q.resident, "objects",
			 (json_int_t)objects, "page-size", (json_int_t)VM_PAGE_SIZE);
	return 0;
}

static uint64_t arg_u64(json_t *args, const char *key)
{
	json_int_t v = json_integer_value(json_object_get(args, key));
	return (uint64_t)v;
}

/* Integer argument @key (0 when absent): -EINVAL with a message when negative. */
static int arg_unsigned(json_t *args, const char *key, uint64_t *out)
{
	json_int_t v = json_integer_value(json_object_get(args, key));
	if (v < 0)
		return error_set(EINVAL, "%s must not be negative", key);
	*out = (uint64_t)v;
	return 0;
}

static int arg_range(json_t *args, uint64_t *addr, uint64_t *size)
{
	json_int_t a = json_integer_value(json_object_get(args, "addr")), s = json_integer_value(json_object_get(args, "size"));
	if (a < 0 || s < 0)
		return error_set(EINVAL, "addr and size must not be negative");
	*addr = (uint64_t)a;
	*size = (uint64_t)s;
	return 0;
}

/* A change of the regions: allocate, deallocate, map or export. */
struct layout_op {
	enum { LAYOUT_ALLOCATE, LAYOUT_DEALLOCATE, LAYOUT_DISCARD, LAYOUT_MAP, LAYOUT_EXPORT } kind;
	uint64_t addr, size;                       /* addr: in, and out where anywhere; size: map's too */
	bool anywhere;
	const struct guest_memory_map_request *map; /* LAYOUT_MAP */
	struct guest_export *export;               /* LAYOUT_EXPORT: made here */
	const char *socket;                        /* LAYOUT_EXPORT: its path */
};

/* Change the regions (and KVM's slots) with the vCPUs paused. */
static int layout_change(struct vm *vm, struct layout_op *op)
{
	int r = !guest_memory_mapped(&vm->mem) ? not_mapped()
		: atomic_load(&vm->snapshot_busy)
			? error_set(EBUSY, "a snapshot is being taken; change the memory layout afterwards")
		: !vm_pause(vm) ? error_set(ESHUTDOWN, "the VM is shutting down")
				: 0;
	if (r) {
		/* Refused before guest memory saw it: what vm-map opened for it goes now. */
		if (op->kind == LAYOUT_MAP && op->map->release)
			op->map->release(op->map->owner);
		return r;
	}
	r = op->kind == LAYOUT_ALLOCATE     ? guest_memory_allocate(&vm->mem, &op->addr, op->size, op->anywhere)
		: op->kind == LAYOUT_DEALLOCATE ? guest_memory_deallocate(&vm->mem, op->addr, op->size)
		: op->kind == LAYOUT_DISCARD    ? guest_memory_discard(&vm->mem, op->addr, op->size)
		: op->kind == LAYOUT_EXPORT     ? guest_export_start(op->export, &vm->mem, op->addr, op->size, op->socket)
						: guest_memory_vm_map(&vm->mem, &op->addr, op->anywhere, op->map);
	int s = vm_sync_memslots(vm);
	vm_resume(vm);
	return r ? r : s;
}

/* layout_change answered with where and how much: {addr, size}. */
static int layout_change_answer(struct vm *vm, struct layout_op *op, json_t **ret)
{
	int r = layout_change(vm, op);
	if (!r)
		*ret = json_pack("{s:I,s:I}", "addr", (json_int_t)op->addr, "size", (json_int_t)op->size);
	return r;
}

static int vm_allocate_cmd(struct monitor_call *call, void *ctx, json_t *args, json_t **ret)
{
	(void)call;
	struct vm *vm = ctx;
	struct layout_op op = {.kind = LAYOUT_ALLOCATE, .size = arg_u64(args, "size"), .addr = arg_u64(args, "addr"),
			       .anywhere = !json_object_get(args, "addr")};
	return layout_change_answer(vm, &op, ret);
}

static int vm_deallocate_cmd(struct monitor_call *call, void *ctx, json_t *args, json_t **ret)
{
	(void)call;
	(void)ret;
	struct vm *vm = ctx;
	struct layout_op op = {.kind = json_is_true(json_object_get(args, "discard")) ? LAYOUT_DISCARD : LAYOUT_DEALLOCATE};
	if (arg_range(args, &op.addr, &op.size))
		return -EINVAL;
	return layout_change(vm, &op);
}

static int vm_protect_cmd(struct monitor_call *call, void *ctx, json_t *args, json_t **ret)
{
	(void)call;
	(void)ret;
	struct vm *vm = ctx;
	uint64_t addr, size;
	vm_prot_t prot;
	if (arg_range(args, &addr, &size) || prot_parse(json_string_value(json_object_get(args, "protection")), &prot))
		return -EINVAL;
	json_t *max = json_object_get(args, "set-maximum");
	if (!guest_memory_mapped(&vm->mem))
		return not_mapped();
	return guest_memory_vm_protect(&vm->mem, addr, size, max && json_is_true(max), prot);
}

static int vm_inherit_cmd(struct monitor_call *call, void *ctx, json_t *args, json_t **ret)
{
	(void)call;
	(void)ret;
	struct vm *vm = ctx;
	uint64_t addr, size;
	if (arg_range(args, &addr, &size))
		return -EINVAL;
	int inh = arg_name(args, "inheritance", inherit_names, 3, 0, "share, copy or none");
	if (inh < 0)
		return inh;
	if (!guest_memory_mapped(&vm->mem))
		return not_mapped();
	return guest_memory_vm_inherit(&vm->mem, addr, size, (vm_inherit_t)inh);
}

static int vm_read_cmd(struct monitor_call *call, void *ctx, json_t *args, json_t **ret)
{
	(void)call;
	struct vm *vm = ctx;
	uint64_t addr, size;
	if (arg_range(args, &addr, &size))
		return -EINVAL;
	if (size > MONITOR_DATA_MAX)
		return error_set(EINVAL, "vm-read moves at most %u bytes at a time, not %llu", MONITOR_DATA_MAX,
				 (unsigned long long)size);
	if (!guest_memory_mapped(&vm->mem))
		return not_mapped();
	static uint8_t buf[MONITOR_DATA_MAX];
	static char text[(MONITOR_DATA_MAX + 2) / 3 * 4 + 1];
	int r = guest_memory_vm_read(&vm->mem, addr, buf, size);
	if (r)
		return r;
	base64_encode(buf, size, text);
	*ret = json_pack("{s:I,s:I,s:s}", "addr", (json_int_t)addr, "size", (json_int_t)size, "data", text);
	return 0;
}

static int vm_write_cmd(struct monitor_call *call, void *ctx, json_t *args, json_t **ret)
{
	(void)call;
	(void)ret;
	struct vm *vm = ctx;
	json_int_t a = json_integer_value(json_object_get(args, "addr"));
	if (a < 0)
		return error_set(EINVAL, "addr must not be negative");
	static uint8_t buf[MONITOR_DATA_MAX];
	long n = base64_decode(json_string_value(json_object_get(args, "data")), buf, sizeof(buf));
	if (n < 0)
		return error_set(EINVAL, "data is not base64 of at most %u bytes", MONITOR_DATA_MAX);
	if (!guest_memory_mapped(&vm->mem))
		return not_mapped();
	return guest_memory_vm_write(&vm->mem, (uint64_t)a, buf, (uint64_t)n);
}

static const char *const object_kinds[] = {"file", "pager", "snapshot"};

/* A stored snapshot opened for vm-map, let go once guest memory is done with it. */
static void snapshot_release(void *owner)
{
	restore_close(owner);
	free(owner);
}

/*
 * The object of vm-map's "object": "snapshot": snapshot @name of the store at q->path, its
 * pages served (each checked against its hash) by a snapshot pager kept in @q, and pinned
 * in the store for the VM while mapped. @label (128 bytes) names it in messages. 0, or
 * -EINVAL with Mach's KERN_INVALID_ARGUMENT and the reason (-ENOMEM: KERN_RESOURCE_SHORTAGE).
 */
static int snapshot_object(const struct vm *vm, const char *name, struct guest_memory_map_request *q, char *label)
{
	if (!name)
		return error_set(EINVAL, "vm_map of a snapshot: KERN_INVALID_ARGUMENT: name it (snapshot) in the store at path");
	struct restore *r = malloc(sizeof(*r));
	char holder[128];
	snprintf(holder, sizeof(holder), "VM '%s' (pid %d)", vm->cfg.name ? vm->cfg.name : "?", (int)getpid());
	if (!r)
		return error_set(ENOMEM, "vm_map of snapshot '%s': KERN_RESOURCE_SHORTAGE", name);
	if (restore_open(r, q->path, name, holder, false) != 0) {
		free(r);
		return error_set(EINVAL, "vm_map of snapshot '%s' in %s: KERN_INVALID_ARGUMENT: %s", name, q->path,
				 error_message());
	}
	snprintf(label, 128, "snapshot '%s' in %s", name, q->path);
	q->path = label;
	q->pager = r->pager;
	q->owner = r;
	q->release = snapshot_release;
	return 0;
}

/* Optional protection argument @key ("rwx" letters), @dflt when absent. */
static int arg_prot(json_t *args, const char *key, vm_prot_t dflt, vm_prot_t *p)
{
	const char *text = json_string_value(json_object_get(args, key));
	*p = dflt;
	return text ? prot_parse(text, p) : 0;
}

static int vm_map_cmd(struct monitor_call *call, void *ctx, json_t *args, json_t **ret)
{
	(void)call;
	struct vm *vm = ctx;
	struct guest_memory_map_request q = {.path = json_string_value(json_object_get(args, "path"))};
	struct layout_op op = {.kind = LAYOUT_MAP, .anywhere = !json_object_get(args, "addr"), .map = &q};
	json_t *copy = json_object_get(args, "copy");
	int kind = arg_name(args, "object", object_kinds, 3, 0, "file, pager or snapshot");
	int inh = arg_name(args, "inheritance", inherit_names, 3, VM_INHERIT_COPY, "share, copy or none");
	if (kind < 0 || inh < 0 || arg_unsigned(args, "addr", &op.addr) || arg_unsigned(args, "size", &q.size) ||
	    arg_unsigned(args, "offset", &q.offset) || arg_prot(args, "protection", VM_PROT_DEFAULT, &q.cur) ||
	    arg_prot(args, "max-protection", VM_PROT_ALL, &q.max))
		return -EINVAL;
	static const enum guest_region_kind kinds[] = {GUEST_REGION_FILE, GUEST_REGION_EXTERNAL, GUEST_REGION_SNAPSHOT};
	q.kind = kinds[kind];
	q.inheritance = (vm_inherit_t)inh;
	q.copy = !copy || json_is_true(copy);
	op.size = q.size;
	char label[128];
	int r = q.kind == GUEST_REGION_SNAPSHOT
			? snapshot_object(vm, json_string_value(json_object_get(args, "snapshot")), &q, label)
			: 0;
	return r ? r : layout_change_answer(vm, &op, ret);
}

/* The default socket of vm-export number @n (monitor_export_path). */
static int export_socket_path(const struct vm *vm, unsigned n, char *buf, size_t size)
{
	char mon[sizeof(((struct guest_export *)0)->path)];
	if (vm_monitor_path(vm, mon, sizeof(mon)) != 0 || monitor_export_path(mon, n, buf, size) != 0)
		return error_set(EINVAL, "vm_export: KERN_INVALID_ARGUMENT: %s; give a socket", error_message());
	return 0;
}

static int vm_export_cmd(struct monitor_call *call, void *ctx, json_t *args, json_t **ret)
{
	(void)call;
	struct vm *vm = ctx;
	struct layout_op op = {.kind = LAYOUT_EXPORT, .socket = json_string_value(json_object_get(args, "socket"))};
	if (arg_range(args, &op.addr, &op.size))
		return -EINVAL;
	unsigned slot = 0;
	while (slot < VM_MAX_EXPORTS && vm->exports[slot])
		slot++;
	if (slot == VM_MAX_EXPORTS)
		return error_set(ENOMEM, "vm_export of [0x%llx, +0x%llx): KERN_RESOURCE_SHORTAGE: this VM exports its maximum of %d ranges",
				 (unsigned long long)op.addr, (unsigned long long)op.size, VM_MAX_EXPORTS);
	char path[sizeof(((struct guest_export *)0)->path)];
	if (!op.socket) {
		if (export_socket_path(vm, vm->exports_made + 1, path, sizeof(path)) != 0)
			return -EINVAL;
		op.socket = path;
	}
	if (!(op.export = calloc(1, sizeof(*op.export))))
		return error_set(ENOMEM, "vm_export: KERN_RESOURCE_SHORTAGE");
	int r = layout_change(vm, &op);
	if (r) {
		free(op.export);
		return r;
	}
	vm->exports[slot] = op.export;
	vm->exports_made++;
	*ret = json_pack("{s:s,s:I,s:I}", "socket", op.export->path, "addr", (json_int_t)op.addr, "size",
			 (json_int_t)op.size);
	return 0;
}

static int vm_unexport_cmd(struct monitor_call *call, void *ctx, json_t *args, json_t **ret)
{
	(void)call;
	(void)ret;
	struct vm *vm = ctx;
	uint64_t addr = 0;
	if (arg_unsigned(args, "addr", &addr))
		return -EINVAL;
	for (unsigned i = 0; i < VM_MAX_EXPORTS; i++) {
		if (vm->exports[i] && vm->exports[i]->gpa == addr && vm->exports[i]->listening) {
			guest_export_unlisten(vm->exports[i]);
			return 0;
		}
	}
	return error_set(EINVAL, "vm_unexport at 0x%llx: KERN_INVALID_ARGUMENT: no range exported there",
			 (unsigned long long)addr);
}

static int vm_copy_cmd(struct monitor_call *call, void *ctx, json_t *args, json_t **ret)
{
	(void)call;
	(void)ret;
	struct vm *vm = ctx;
	uint64_t src = 0, size = 0, dst = 0;
	if (arg_unsigned(args, "source", &src) || arg_unsigned(args, "size", &size) || arg_unsigned(args, "dest", &dst))
		return -EINVAL;
	if (!guest_memory_mapped(&vm->mem))
		return not_mapped();
	return guest_memory_vm_copy(&vm->mem, src, size, dst);
}

static int vm_region_cmd(struct monitor_call *call, void *ctx, json_t *args, json_t **ret)
{
	(void)call;
	struct vm *vm = ctx;
	uint64_t addr;
	if (arg_unsigned(args, "addr", &addr))
		return -EINVAL;
	if (!guest_memory_mapped(&vm->mem))
		return not_mapped();
	static struct guest_memory_entry e; /* a chain of objects: too big for the stack */
	int r = guest_memory_vm_region_at(&vm->mem, &addr, &e);
	if (r)
		return r;
	*ret = entry_json(&vm->mem, &e);
	return 0;
}

/* A statistic, or null when the VM cannot know it (GUEST_MEMORY_STAT_UNKNOWN). */
static json_t *stat_json(uint64_t v)
{
	return v == GUEST_MEMORY_STAT_UNKNOWN ? json_null() : json_integer((json_int_t)v);
}

static int vm_statistics_cmd(struct monitor_call *call, void *ctx, json_t *args, json_t **ret)
{
	(void)call;
	(void)args;
	struct vm *vm = ctx;
	if (!guest_memory_mapped(&vm->mem))
		return not_mapped();
	struct guest_memory_vm_statistics st;
	int r = guest_memory_vm_statistics(&vm->mem, &st);
	if (r)
		return r;
	*ret = json_pack("{s:o,s:o,s:o,s:o,s:o,s:o,s:o,s:o,s:o,s:o,s:o,s:o,s:o}", "pagesize", stat_json(st.pagesize),
			 "free_count", stat_json(st.free_count), "active_count", stat_json(st.active_count),
			 "inactive_count", stat_json(st.inactive_count), "wire_count", stat_json(st.wire_count),
			 "zero_fill_count", stat_json(st.zero_fill_count), "reactivations", stat_json(st.reactivations),
			 "pageins", stat_json(st.pageins), "pageouts", stat_json(st.pageouts), "faults", stat_json(st.faults),
			 "cow_faults", stat_json(st.cow_faults), "lookups", stat_json(st.lookups), "hits", stat_json(st.hits));
	return 0;
}

static int vm_set_attributes_cmd(struct monitor_call *call, void *ctx, json_t *args, json_t **ret)
{
	(void)call;
	(void)ret;
	struct vm *vm = ctx;
	uint64_t addr, size;
	json_t *cluster = json_object_get(args, "cluster");
	struct guest_memory_attributes a = {
		.copy_strategy = arg_name(args, "copy-strategy", strategy_names, 2, GUEST_MEMORY_ATTR_KEEP, "delay or none"),
		.cache = arg_name(args, "cache", cache_names, 3, GUEST_MEMORY_ATTR_KEEP, "writeback, writethrough or uncached")};
	if (a.copy_strategy < GUEST_MEMORY_ATTR_KEEP || a.cache < GUEST_MEMORY_ATTR_KEEP || arg_range(args, &addr, &size))
		return -EINVAL;
	json_int_t c = json_integer_value(cluster);
	if (cluster && (c < 1 || c > VM_CLUSTER_MAX))
		return error_set(EINVAL, "cluster %lld: pages one fault brings in, 1 to %u", (long long)c, VM_CLUSTER_MAX);
	a.cluster = cluster ? (int)c : GUEST_MEMORY_ATTR_KEEP;
	if (!guest_memory_mapped(&vm->mem))
		return not_mapped();
	return guest_memory_vm_set_attributes(&vm->mem, addr, size, &a);
}

/* The page-aligned range most calls take. */
#define ARG_ALIGNED_RANGE                                                         \
	{"addr", MONITOR_ARG_INT, true, "guest-physical address, page aligned"}, \
	{"size", MONITOR_ARG_INT, true, "bytes, page aligned"}

static const struct monitor_arg deallocate_args[] = {
	ARG_ALIGNED_RANGE,
	{"discard", MONITOR_ARG_BOOL, false,
	 "true: remove it even where a shared mapping's changes cannot be written back (they are lost)"},
	{NULL, 0, false, NULL},
};
static const struct monitor_arg read_args[] = {
	{"addr", MONITOR_ARG_INT, true, "guest-physical address (any alignment)"},
	{"size", MONITOR_ARG_INT, true, "bytes (at most 64 KiB)"},
	{NULL, 0, false, NULL},
};
static const struct monitor_arg allocate_args[] = {
	{"size", MONITOR_ARG_INT, true, "bytes, page aligned"},
	{"addr", MONITOR_ARG_INT, false, "where (default: the lowest free range)"},
	{NULL, 0, false, NULL},
};
static const struct monitor_arg protect_args[] = {
	ARG_ALIGNED_RANGE,
	{"protection", MONITOR_ARG_STRING, true, "any of r, w, x (e.g. \"r-x\")"},
	{"set-maximum", MONITOR_ARG_BOOL, false, "set the maximum protection (lowering the current with it)"},
	{NULL, 0, false, NULL},
};
static const struct monitor_arg inherit_args[] = {
	ARG_ALIGNED_RANGE,
	{"inheritance", MONITOR_ARG_STRING, true, "share, copy or none"},
	{NULL, 0, false, NULL},
};
static const struct monitor_arg write_args[] = {
	{"addr", MONITOR_ARG_INT, true, "guest-physical address (any alignment)"},
	{"data", MONITOR_ARG_STRING, true, "the bytes, base64 (at most 64 KiB)"},
	{NULL, 0, false, NULL},
};

static const struct monitor_arg map_args[] = {
	{"path", MONITOR_ARG_STRING, true, "the host file, the external pager's unix socket, or the store"},
	{"object", MONITOR_ARG_STRING, false,
	 "file (default: the file pager), pager (an external pager) or snapshot (a stored snapshot's RAM)"},
	{"snapshot", MONITOR_ARG_STRING, false, "with object snapshot: the snapshot's name in the store"},
	{"size", MONITOR_ARG_INT, true, "bytes, page aligned"},
	{"addr", MONITOR_ARG_INT, false, "where (default: the lowest free range)"},
	{"offset", MONITOR_ARG_INT, false, "in the object, page aligned (default 0)"},
	{"protection", MONITOR_ARG_STRING, false, "any of r, w, x (default \"rw\")"},
	{"max-protection", MONITOR_ARG_STRING, false, "any of r, w, x (default \"rwx\"); without w KVM's slot is read-only"},
	{"inheritance", MONITOR_ARG_STRING, false, "share, copy (default) or none"},
	{"copy", MONITOR_ARG_BOOL, false, "map a copy, guest writes staying in the VM (default true); false: share the object, writes reach it"},
	{NULL, 0, false, NULL},
};
static const struct monitor_arg export_args[] = {
	ARG_ALIGNED_RANGE,
	{"socket", MONITOR_ARG_STRING, false,
	 "the unix socket to serve it on (default: beside the monitor's, NAME.export-N.sock)"},
	{NULL, 0, false, NULL},
};
static const struct monitor_arg unexport_args[] = {
	{"addr", MONITOR_ARG_INT, true, "where the exported range starts"},
	{NULL, 0, false, NULL},
};
static const struct monitor_arg copy_args[] = {
	{"source", MONITOR_ARG_INT, true, "guest-physical address, page aligned"},
	{"size", MONITOR_ARG_INT, true, "bytes, page aligned"},
	{"dest", MONITOR_ARG_INT, true, "guest-physical address, page aligned"},
	{NULL, 0, false, NULL},
};
static const struct monitor_arg region_args[] = {
	{"addr", MONITOR_ARG_INT, true, "guest-physical address: the entry there, or the next one above"},
	{NULL, 0, false, NULL},
};
static const struct monitor_arg attributes_args[] = {
	ARG_ALIGNED_RANGE,
	{"cluster", MONITOR_ARG_INT, false, "pages one fault brings in, 1 to 256"},
	{"copy-strategy", MONITOR_ARG_STRING, false, "delay (copy on write) or none (copy at once)"},
	{"cache", MONITOR_ARG_STRING, false, "writeback, writethrough or uncached"},
	{NULL, 0, false, NULL},
};

const struct monitor_command qmp_memory_commands[] = {
	{"query-memory", query_memory, NULL,
	 "the guest-physical map: entries, protections, inheritance, each object's shadow chain, residency and pager"},
	{"vm-allocate", vm_allocate_cmd, allocate_args, "vm_allocate: new zero-filled guest RAM"},
	{"vm-deallocate", vm_deallocate_cmd, deallocate_args, "vm_deallocate: remove a range of guest memory, RAM or mapped objects (shared changes written back first)"},
	{"vm-protect", vm_protect_cmd, protect_args, "vm_protect: set the (maximum) protection of a range"},
	{"vm-inherit", vm_inherit_cmd, inherit_args, "vm_inherit: what a fork gives child VMs of a range"},
	{"vm-read", vm_read_cmd, read_args, "vm_read: bytes of guest memory (base64, at most 64 KiB)"},
	{"vm-write", vm_write_cmd, write_args, "vm_write: put bytes into guest memory"},
	{"vm-map", vm_map_cmd, map_args,
	 "vm_map: map a host file, an external pager's object or a stored snapshot's RAM into guest memory"},
	{"vm-export", vm_export_cmd, export_args,
	 "make a range of RAM a memory object other VMs map (vm-map object pager at the socket answered)"},
	{"vm-unexport", vm_unexport_cmd, unexport_args,
	 "remove an exported range's socket: no new mappers (those mapped stay until this VM ends)"},
	{"vm-copy", vm_copy_cmd, copy_args, "vm_copy: copy a range of guest memory, copy-on-write"},
	{"vm-region", vm_region_cmd, region_args, "vm_region: the map entry at an address, or the next one above"},
	{"vm-statistics", vm_statistics_cmd, NULL, "vm_statistics: Mach's counters, by Mach's names (null: not known)"},
	{"vm-set-attributes", vm_set_attributes_cmd, attributes_args,
	 "vm_set_attributes: cluster size, copy strategy and cache mode of a range"},
	{NULL, NULL, NULL, NULL},
};

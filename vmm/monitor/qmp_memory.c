/*
 * The guest-physical address space over the monitor: query-memory (Mach's vm_region made
 * visible: every map entry, its object's shadow chain, residency and pager) and the Mach
 * calls vm-allocate, vm-deallocate, vm-protect, vm-inherit, vm-read, vm-write. Errors name
 * the Mach code (KERN_*), so a client sees what Mach would have said.
 */
#include "vmm/monitor/qmp_memory.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "vmm/monitor/base64.h"
#include "vmm/error.h"
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

static const char *region_kind(const struct guest_memory *m, vm_addr_t gpa)
{
	const struct guest_region *g = guest_memory_region(m, gpa);
	return !g ? "none" : g->kind == GUEST_REGION_RAM ? "ram" : g->kind == GUEST_REGION_FILE ? "file" : "external";
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

/* query-memory's answer as guest_memory_vm_region describes the map. */
struct query_memory {
	const struct guest_memory *m;
	json_t *entries;
	uint64_t resident;
};

static void query_memory_entry(void *arg, const struct guest_memory_entry *e)
{
	struct query_memory *q = arg;
	char prot[4], maxprot[4];
	prot_string(e->protection, prot);
	prot_string(e->max_protection, maxprot);
	json_t *chain = json_array();
	for (unsigned i = 0; i < e->nchain; i++)
		json_array_append_new(chain, object_json(&e->chain[i]));
	q->resident += e->resident;
	json_array_append_new(
		q->entries,
		json_pack("{s:I,s:I,s:I,s:s,s:s,s:s,s:s,s:b,s:b,s:s,s:i,s:s,s:I,s:I,s:i,s:o}", "start", (json_int_t)e->start,
			  "end", (json_int_t)e->end, "size", (json_int_t)(e->end - e->start), "region",
			  region_kind(q->m, e->start), "protection", prot, "max-protection", maxprot, "inheritance",
			  e->inheritance <= VM_INHERIT_NONE ? inherit_names[e->inheritance] : "?", "needs-copy",
			  e->needs_copy, "shared", e->shared, "copy-strategy", strategy_names[e->copy_strategy], "cluster",
			  (int)e->cluster, "cache", cache_names[e->cache], "offset", (json_int_t)e->offset, "resident",
			  (json_int_t)e->resident, "depth", (int)e->depth, "chain", chain));
}

static int query_memory(struct monitor_call *call, void *ctx, json_t *args, json_t **ret)
{
	(void)call;
	(void)args;
	struct vm *vm = ctx;
	if (!guest_memory_mapped(&vm->mem))
		return error_set(ENOTSUP, "this VM's RAM is not in a map (--kernel-zero-fill)");
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

static int arg_range(json_t *args, uint64_t *addr, uint64_t *size)
{
	json_int_t a = json_integer_value(json_object_get(args, "addr")), s = json_integer_value(json_object_get(args, "size"));
	if (a < 0 || s < 0)
		return error_set(EINVAL, "addr and size must not be negative");
	*addr = (uint64_t)a;
	*size = (uint64_t)s;
	return 0;
}

/* Change the regions (and KVM's slots) with the vCPUs paused. */
static int layout_change(struct vm *vm, bool allocate, uint64_t *addr, uint64_t size, bool anywhere)
{
	if (atomic_load(&vm->snapshot_busy))
		return error_set(EBUSY, "a snapshot is being taken; change the memory layout afterwards");
	if (!vm_pause(vm))
		return error_set(ESHUTDOWN, "the VM is shutting down");
	int r = allocate ? guest_memory_allocate(&vm->mem, addr, size, anywhere)
			 : guest_memory_deallocate(&vm->mem, *addr, size);
	int s = vm_sync_memslots(vm);
	vm_resume(vm);
	return r ? r : s;
}

static int vm_allocate_cmd(struct monitor_call *call, void *ctx, json_t *args, json_t **ret)
{
	(void)call;
	struct vm *vm = ctx;
	uint64_t size = arg_u64(args, "size"), addr = arg_u64(args, "addr");
	bool anywhere = !json_object_get(args, "addr");
	if (!guest_memory_mapped(&vm->mem))
		return error_set(ENOTSUP, "this VM's RAM is not in a map (--kernel-zero-fill)");
	int r = layout_change(vm, true, &addr, size, anywhere);
	if (r)
		return r;
	*ret = json_pack("{s:I,s:I}", "addr", (json_int_t)addr, "size", (json_int_t)size);
	return 0;
}

static int vm_deallocate_cmd(struct monitor_call *call, void *ctx, json_t *args, json_t **ret)
{
	(void)call;
	(void)ret;
	struct vm *vm = ctx;
	uint64_t addr, size;
	if (arg_range(args, &addr, &size))
		return -EINVAL;
	if (!guest_memory_mapped(&vm->mem))
		return error_set(ENOTSUP, "this VM's RAM is not in a map (--kernel-zero-fill)");
	return layout_change(vm, false, &addr, size, false);
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
		return error_set(ENOTSUP, "this VM's RAM is not in a map (--kernel-zero-fill)");
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
	const char *name = json_string_value(json_object_get(args, "inheritance"));
	vm_inherit_t inh = 3;
	for (vm_inherit_t i = 0; i < 3; i++)
		if (strcmp(name, inherit_names[i]) == 0)
			inh = i;
	if (inh == 3)
		return error_set(EINVAL, "inheritance '%s': use share, copy or none", name);
	if (!guest_memory_mapped(&vm->mem))
		return error_set(ENOTSUP, "this VM's RAM is not in a map (--kernel-zero-fill)");
	return guest_memory_vm_inherit(&vm->mem, addr, size, inh);
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
		return error_set(ENOTSUP, "this VM's RAM is not in a map (--kernel-zero-fill)");
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
		return error_set(ENOTSUP, "this VM's RAM is not in a map (--kernel-zero-fill)");
	return guest_memory_vm_write(&vm->mem, (uint64_t)a, buf, (uint64_t)n);
}

static const struct monitor_arg range_args[] = {
	{"addr", MONITOR_ARG_INT, true, "guest-physical address, page aligned"},
	{"size", MONITOR_ARG_INT, true, "bytes, page aligned"},
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
	{"addr", MONITOR_ARG_INT, true, "guest-physical address, page aligned"},
	{"size", MONITOR_ARG_INT, true, "bytes, page aligned"},
	{"protection", MONITOR_ARG_STRING, true, "any of r, w, x (e.g. \"r-x\")"},
	{"set-maximum", MONITOR_ARG_BOOL, false, "set the maximum protection (lowering the current with it)"},
	{NULL, 0, false, NULL},
};
static const struct monitor_arg inherit_args[] = {
	{"addr", MONITOR_ARG_INT, true, "guest-physical address, page aligned"},
	{"size", MONITOR_ARG_INT, true, "bytes, page aligned"},
	{"inheritance", MONITOR_ARG_STRING, true, "share, copy or none"},
	{NULL, 0, false, NULL},
};
static const struct monitor_arg write_args[] = {
	{"addr", MONITOR_ARG_INT, true, "guest-physical address (any alignment)"},
	{"data", MONITOR_ARG_STRING, true, "the bytes, base64 (at most 64 KiB)"},
	{NULL, 0, false, NULL},
};

const struct monitor_command qmp_memory_commands[] = {
	{"query-memory", query_memory, NULL,
	 "the guest-physical map: entries, protections, inheritance, each object's shadow chain, residency and pager"},
	{"vm-allocate", vm_allocate_cmd, allocate_args, "vm_allocate: new zero-filled guest RAM"},
	{"vm-deallocate", vm_deallocate_cmd, range_args, "vm_deallocate: remove guest RAM"},
	{"vm-protect", vm_protect_cmd, protect_args, "vm_protect: set the (maximum) protection of a range"},
	{"vm-inherit", vm_inherit_cmd, inherit_args, "vm_inherit: what a fork gives child VMs of a range"},
	{"vm-read", vm_read_cmd, read_args, "vm_read: bytes of guest memory (base64, at most 64 KiB)"},
	{"vm-write", vm_write_cmd, write_args, "vm_write: put bytes into guest memory"},
	{NULL, NULL, NULL, NULL},
};

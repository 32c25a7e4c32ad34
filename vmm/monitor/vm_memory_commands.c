/*
 * The guest-physical address space over the monitor: query-memory (Mach's vm_region made
 * visible: every map entry, its object's shadow chain, residency and pager) and the Mach
 * calls vm-allocate, vm-deallocate, vm-protect, vm-inherit, vm-read, vm-write. Errors name
 * the Mach code (KERN_*), so a client sees what Mach would have said.
 */
#include "vmm/monitor/vm_memory_commands.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "mmu/vm_domain.h"
#include "mmu/vm_map.h"
#include "mmu/vm_object.h"
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

static json_t *object_json(const struct vm_object_info *o)
{
	return json_pack("{s:I,s:I,s:b,s:s,s:I,s:I,s:I,s:I,s:I,s:o,s:I,s:I,s:I,s:I,s:I}", "id", (json_int_t)o->id, "size",
			 (json_int_t)o->size, "internal", o->internal, "copy-strategy", strategy_names[o->copy_strategy],
			 "ref-count", (json_int_t)o->ref_count, "shadow-count", (json_int_t)o->shadow_count,
			 "shadow-offset", (json_int_t)o->shadow_offset, "resident", (json_int_t)o->resident_count,
			 "paged", (json_int_t)o->paged_count, "pager",
			 o->pager_name ? json_string(o->pager_name) : json_null(), "faults", (json_int_t)o->stats.faults,
			 "pageins", (json_int_t)o->stats.pageins, "pageouts", (json_int_t)o->stats.pageouts, "cow-pages",
			 (json_int_t)o->stats.cow_pages, "zero-fills", (json_int_t)o->stats.zero_fills);
}

static int query_memory(struct monitor_call *call, void *ctx, json_t *args, json_t **ret)
{
	(void)call;
	(void)args;
	struct vm *vm = ctx;
	struct guest_memory *m = &vm->mem;
	if (!m->map)
		return error_set(ENOTSUP, "this VM's RAM is not in a map (--kernel-zero-fill)");
	json_t *entries = json_array();
	uint64_t resident = 0;
	vm_domain_lock(m->dom);
	vm_addr_t addr = 0;
	struct vm_region_info ri;
	while (vm_map_region(m->map, &addr, &ri) == KERN_SUCCESS) {
		char prot[4], maxprot[4];
		prot_string(ri.protection, prot);
		prot_string(ri.max_protection, maxprot);
		json_t *chain = json_array();
		if (ri.object) {
			struct vm_object_info infos[64];
			unsigned depth = vm_object_chain(ri.object, infos, 64);
			for (unsigned i = 0; i < depth && i < 64; i++)
				json_array_append_new(chain, object_json(&infos[i]));
		}
		resident += ri.resident_count;
		json_array_append_new(
			entries,
			json_pack("{s:I,s:I,s:I,s:s,s:s,s:s,s:s,s:b,s:b,s:s,s:i,s:s,s:I,s:I,s:i,s:o}", "start",
				  (json_int_t)ri.start, "end", (json_int_t)ri.end, "size", (json_int_t)(ri.end - ri.start),
				  "region", region_kind(m, ri.start), "protection", prot, "max-protection", maxprot,
				  "inheritance", ri.inheritance <= VM_INHERIT_NONE ? inherit_names[ri.inheritance] : "?",
				  "needs-copy", ri.needs_copy, "shared", ri.shared, "copy-strategy",
				  strategy_names[ri.attr.copy_strategy], "cluster", (int)ri.attr.cluster, "cache",
				  cache_names[ri.attr.cache], "offset", (json_int_t)ri.offset, "resident",
				  (json_int_t)ri.resident_count, "depth", (int)ri.depth, "chain", chain));
		addr = ri.end;
	}
	struct vm_statistics st;
	vm_domain_statistics(m->dom, &st);
	vm_domain_unlock(m->dom);
	*ret = json_pack("{s:o,s:I,s:I,s:I}", "entries", entries, "resident-pages", (json_int_t)resident, "objects",
			 (json_int_t)st.objects_live, "page-size", (json_int_t)VM_PAGE_SIZE);
	return 0;
}

/* A Mach call's failure as an error naming its code. */
static int kern_error(const char *call, kern_return_t kr, uint64_t addr, uint64_t size)
{
	return error_set(kr == KERN_INVALID_ADDRESS ? EFAULT : kr == KERN_PROTECTION_FAILURE ? EACCES : EINVAL,
			 "%s of [0x%llx, +0x%llx): %s", call, (unsigned long long)addr, (unsigned long long)size,
			 kern_return_name(kr));
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
	if (!vm->mem.map)
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
	if (!vm->mem.map)
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
	if (!vm->mem.map)
		return error_set(ENOTSUP, "this VM's RAM is not in a map (--kernel-zero-fill)");
	vm_domain_lock(vm->mem.dom);
	kern_return_t kr = vm_map_protect(vm->mem.map, addr, size, max && json_is_true(max), prot);
	int r = pmap_uffd_flush(&vm->mem.pmap);
	vm_domain_unlock(vm->mem.dom);
	return kr != KERN_SUCCESS ? kern_error("vm_protect", kr, addr, size) : r;
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
	if (!vm->mem.map)
		return error_set(ENOTSUP, "this VM's RAM is not in a map (--kernel-zero-fill)");
	vm_domain_lock(vm->mem.dom);
	kern_return_t kr = vm_map_inherit(vm->mem.map, addr, size, inh);
	vm_domain_unlock(vm->mem.dom);
	return kr != KERN_SUCCESS ? kern_error("vm_inherit", kr, addr, size) : 0;
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
	if (!vm->mem.map)
		return error_set(ENOTSUP, "this VM's RAM is not in a map (--kernel-zero-fill)");
	static uint8_t buf[MONITOR_DATA_MAX];
	static char text[(MONITOR_DATA_MAX + 2) / 3 * 4 + 1];
	vm_domain_lock(vm->mem.dom);
	kern_return_t kr = vm_map_read(vm->mem.map, addr, buf, size);
	int r = pmap_uffd_flush(&vm->mem.pmap);
	vm_domain_unlock(vm->mem.dom);
	if (kr != KERN_SUCCESS)
		return kern_error("vm_read", kr, addr, size);
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
	if (!vm->mem.map)
		return error_set(ENOTSUP, "this VM's RAM is not in a map (--kernel-zero-fill)");
	vm_domain_lock(vm->mem.dom);
	kern_return_t kr = n ? vm_map_write(vm->mem.map, (uint64_t)a, buf, (vm_size_t)n) : KERN_SUCCESS;
	int r = pmap_uffd_flush(&vm->mem.pmap);
	vm_domain_unlock(vm->mem.dom);
	return kr != KERN_SUCCESS ? kern_error("vm_write", kr, (uint64_t)a, (uint64_t)n) : r;
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

const struct monitor_command vm_memory_commands[] = {
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

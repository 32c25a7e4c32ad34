#include "vmm/snapshot.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "mmu/page_store.h"
#include "mmu/vm_domain.h"
#include "mmu/vm_map.h"
#include "vmm/error.h"
#include "vmm/store.h"
#include "vmm/vm.h"
#include "vmm/vm_state.h"

#define SNAPSHOT_BATCH 64 /* pages read per hold of the domain lock */

static uint64_t now_ns(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (uint64_t)t.tv_sec * 1000000000ull + (uint64_t)t.tv_nsec;
}

/* The frozen RAM of a VM: one copy per RAM region. */
struct snapshot_copies {
	struct vm_map_copy *copy[GUEST_MEMORY_MAX_REGIONS];
	struct guest_region region[GUEST_MEMORY_MAX_REGIONS]; /* as they were at the freeze */
	unsigned n;
};

static void snapshot_discard(struct vm *vm, struct snapshot_copies *c)
{
	vm_domain_lock(vm->mem.dom);
	for (unsigned i = 0; i < c->n; i++)
		vm_map_copy_discard(c->copy[i]);
	vm_domain_unlock(vm->mem.dom);
	c->n = 0;
}

/* Pause, capture the state, freeze RAM, resume: the only part the guest waits for. */
static int snapshot_freeze(struct vm *vm, struct vm_state *state, struct snapshot_copies *c, uint64_t *pause_ns)
{
	uint64_t t0 = now_ns();
	if (!vm_pause(vm))
		return error_set(ESHUTDOWN, "the VM is shutting down");
	int r = vm_state_capture(vm, state);
	if (!r) {
		vm_domain_lock(vm->mem.dom);
		for (unsigned i = 0; i < vm->mem.nregions && !r; i++) {
			const struct guest_region *g = &vm->mem.region[i];
			kern_return_t kr = vm_map_copyin(vm->mem.map, g->gpa, g->size, &c->copy[c->n]);
			if (kr != KERN_SUCCESS)
				r = error_set(ENOMEM, "cannot freeze guest RAM at 0x%llx: %s", (unsigned long long)g->gpa,
					      kern_return_name(kr));
			else
				c->region[c->n++] = *g;
		}
		int pr = pmap_uffd_flush(&vm->mem.pmap);
		if (!r && pr)
			r = pr;
		vm_domain_unlock(vm->mem.dom);
	}
	vm_resume(vm);
	*pause_ns = now_ns() - t0;
	if (r) {
		vm_state_free(state);
		snapshot_discard(vm, c);
	}
	return r;
}

/*
 * Write every page of the frozen RAM that differs from the parent (all non-zero pages
 * when there is none) to @w, in page order.
 */
static int snapshot_write_pages(struct vm *vm, struct snapshot_copies *c, struct store_snapshot *parent,
				struct store_writer *w, snapshot_progress_fn *progress, void *arg, uint64_t total)
{
	static _Thread_local uint8_t batch[SNAPSHOT_BATCH][VM_PAGE_SIZE];
	uint64_t done = 0, last_report = 0;
	for (unsigned i = 0; i < c->n; i++) {
		const struct guest_region *g = &c->region[i];
		for (uint64_t off = 0; off < g->size; off += SNAPSHOT_BATCH * VM_PAGE_SIZE) {
			unsigned n = (g->size - off) / VM_PAGE_SIZE < SNAPSHOT_BATCH ? (unsigned)((g->size - off) / VM_PAGE_SIZE)
										: SNAPSHOT_BATCH;
			kern_return_t kr = KERN_SUCCESS;
			vm_domain_lock(vm->mem.dom);
			for (unsigned k = 0; k < n && kr == KERN_SUCCESS; k++)
				kr = vm_map_copy_read(c->copy[i], off + k * VM_PAGE_SIZE, batch[k], VM_PAGE_SIZE);
			vm_domain_unlock(vm->mem.dom);
			if (kr != KERN_SUCCESS)
				return error_set(EIO, "cannot read frozen guest RAM at 0x%llx: %s",
						 (unsigned long long)(g->gpa + off), kern_return_name(kr));
			for (unsigned k = 0; k < n; k++) {
				uint64_t pindex = (g->gpa + off) / VM_PAGE_SIZE + k;
				const void *theirs = NULL;
				uint64_t hash;
				if (parent) {
					int r = store_snapshot_page(parent, pindex, &theirs, &hash);
					if (r)
						return r;
				}
				bool zero = page_store_is_zero(batch[k]);
				bool same = theirs ? memcmp(theirs, batch[k], VM_PAGE_SIZE) == 0 : zero;
				if (!same) {
					int r = store_writer_add(w, pindex, batch[k]);
					if (r)
						return r;
				}
			}
			done += n;
			if (progress && (done - last_report >= 4096 || done == total)) {
				progress(arg, done, total);
				last_report = done;
			}
		}
	}
	return 0;
}

/* The parent of a snapshot of @vm in store @dir: the snapshot @vm was restored from, when
 * it lives in the same store. */
static const char *snapshot_parent(const struct vm *vm, const char *dir)
{
	char real[PATH_MAX];
	if (!vm->origin_name[0] || !realpath(dir, real))
		return NULL;
	return strcmp(real, vm->origin_store) == 0 ? vm->origin_name : NULL;
}

int snapshot_save(struct vm *vm, const char *dir, const char *name, snapshot_progress_fn *progress, void *arg,
		  struct snapshot_result *res)
{
	uint64_t t0 = now_ns();
	memset(res, 0, sizeof(*res));
	for (unsigned i = 0; i < vm->mem.nregions; i++)
		if (vm->mem.region[i].kind != GUEST_REGION_RAM)
			return error_set(ENOTSUP, "snapshots of VMs with mapped files or external pagers are not supported");
	if (vm->mem.kernel_ram)
		return error_set(ENOTSUP, "snapshots need RAM served by the default pager (not --kernel-zero-fill)");
	if (atomic_exchange(&vm->snapshot_busy, true))
		return error_set(EBUSY, "a snapshot of this VM is already being taken");

	struct store *store = NULL;
	struct store_snapshot *parent = NULL;
	struct store_writer *w = NULL;
	struct snapshot_copies copies = {.n = 0};
	struct vm_state state = {0};
	uint8_t *blob = NULL;
	size_t blob_len = 0;
	int r = store_open(dir, true, &store);
	if (r)
		goto out;
	if (!store_name_valid(name)) {
		r = error_set(EINVAL, "'%s' cannot name a snapshot (1-63 of A-Z a-z 0-9 . _ -, not starting with '.')", name);
		goto out;
	}
	if (store_has_snapshot(store, name)) {
		r = error_set(EEXIST, "snapshot '%s' already exists in %s", name, dir);
		goto out;
	}
	const char *parent_name = snapshot_parent(vm, dir);
	if (parent_name && (r = store_snapshot_open(store, parent_name, &parent)) != 0)
		goto out;
	snprintf(res->parent, sizeof(res->parent), "%s", parent_name ? parent_name : "");

	r = snapshot_freeze(vm, &state, &copies, &res->pause_ns);
	if (r)
		goto out;
	r = vm_state_serialize(&state, &blob, &blob_len);
	if (r)
		goto out;
	r = store_writer_begin(store, name, parent_name, vm->mem.span / VM_PAGE_SIZE, blob, blob_len, &w);
	if (r)
		goto out;
	for (unsigned i = 0; i < copies.n; i++)
		res->pages += copies.region[i].size / VM_PAGE_SIZE;
	r = snapshot_write_pages(vm, &copies, parent, w, progress, arg, res->pages);
	struct store_write_stats ws;
	store_writer_stats(w, &ws);
	res->listed = ws.pages;
	res->stored = ws.stored;
	res->shared = ws.shared;
	res->zero = ws.zero;
	if (r) {
		store_writer_abort(w);
		goto out;
	}
	r = store_writer_commit(w);
out:
	if (copies.n)
		snapshot_discard(vm, &copies);
	free(blob);
	vm_state_free(&state);
	store_snapshot_close(parent);
	store_close(store);
	atomic_store(&vm->snapshot_busy, false);
	res->total_ns = now_ns() - t0;
	return r;
}

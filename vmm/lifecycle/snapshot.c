#include "vmm/lifecycle/snapshot.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "mmu/page_store.h"
#include "mmu/vm_domain.h"
#include "mmu/vm_map.h"
#include "mmu/vm_object.h"
#include "vmm/clock.h"
#include "vmm/error.h"
#include "vmm/store/store.h"
#include "vmm/vm.h"
#include "vmm/lifecycle/vm_state.h"

#define SNAPSHOT_CHUNK 1024u /* pages gathered per hold of the domain lock (4 MiB) */
#define SNAPSHOT_PREARM_PASSES 3    /* passes of the pre-arm at most */
#define SNAPSHOT_PREARM_ENOUGH 256u /* pages written during a pre-arm pass that the pause may protect */

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

/* Pause, capture the state, freeze RAM, resume: the only part the guest waits for. The
 * freeze write-protects only the pages not protected already (written since the pre-arm);
 * *protected counts them. */
static int snapshot_freeze(struct vm *vm, struct vm_state *state, struct snapshot_copies *c, uint64_t *pause_ns,
			   uint64_t *protected)
{
	uint64_t t0 = clock_monotonic_ns();
	if (!vm_pause(vm))
		return error_set(ESHUTDOWN, "the VM is shutting down");
	int r = vm_state_capture(vm, state);
	if (!r) {
		vm_domain_lock(vm->mem.dom);
		uint64_t protected_before = vm->mem.pmap.stats.protected_pages;
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
		*protected = vm->mem.pmap.stats.protected_pages - protected_before;
		vm_domain_unlock(vm->mem.dom);
	}
	vm_resume(vm);
	*pause_ns = clock_monotonic_ns() - t0;
	if (r) {
		vm_state_free(state);
		snapshot_discard(vm, c);
	}
	return r;
}

/* Pages gathered under the domain lock, written to the store without it. */
struct snapshot_batch {
	uint8_t (*bytes)[VM_PAGE_SIZE];
	uint64_t *pindex;
	unsigned n;
	uint64_t first_pindex; /* page number of the chunk's offset 0 */
};

static int snapshot_collect(void *arg, vm_offset_t offset, const void *bytes)
{
	struct snapshot_batch *b = arg;
	memcpy(b->bytes[b->n], bytes, VM_PAGE_SIZE);
	b->pindex[b->n++] = b->first_pindex + offset / VM_PAGE_SIZE;
	return 0;
}

/*
 * Write the pages of the frozen RAM whose data lives above @stop (every page the guest has,
 * when @stop is NULL) to @w, in page order, a chunk at a time: the domain lock is held only
 * while a chunk is gathered, so the guest's faults (its copy-on-writes of frozen pages
 * above all) are served while the store is written.
 */
static int snapshot_write_pages(struct vm *vm, struct snapshot_copies *c, const struct vm_object *stop,
				struct store_writer *w, snapshot_progress_fn *progress, void *arg, uint64_t total)
{
	struct snapshot_batch b = {.bytes = malloc(SNAPSHOT_CHUNK * VM_PAGE_SIZE),
				   .pindex = malloc(SNAPSHOT_CHUNK * sizeof(uint64_t))};
	int r = b.bytes && b.pindex ? 0 : error_set(ENOMEM, "no memory for the snapshot writer");
	uint64_t done = 0;
	for (unsigned i = 0; i < c->n && !r; i++) {
		const struct vm_map_copy *copy = c->copy[i];
		for (size_t k = 0; k < copy->npieces && !r; k++) {
			const struct vm_map_copy_piece *p = &copy->pieces[k];
			for (vm_size_t off = 0; off < p->size && !r; off += SNAPSHOT_CHUNK * VM_PAGE_SIZE) {
				vm_size_t len = p->size - off < SNAPSHOT_CHUNK * VM_PAGE_SIZE ? p->size - off
											 : SNAPSHOT_CHUNK * VM_PAGE_SIZE;
				b.n = 0;
				b.first_pindex = (c->region[i].gpa + p->offset + off) / VM_PAGE_SIZE;
				vm_domain_lock(vm->mem.dom);
				vm_domain_begin(vm->mem.dom);
				kern_return_t kr = vm_object_enumerate(p->object, p->obj_offset + off, len, stop,
								       snapshot_collect, &b, 0);
				vm_domain_end(vm->mem.dom);
				int fr = pmap_uffd_flush(&vm->mem.pmap);
				vm_domain_unlock(vm->mem.dom);
				if (kr != KERN_SUCCESS)
					r = error_set(EIO, "cannot read frozen guest RAM at 0x%llx: %s",
						      (unsigned long long)(c->region[i].gpa + p->offset + off), kern_return_name(kr));
				else
					r = fr;
				for (unsigned n = 0; n < b.n && !r; n++)
					r = store_writer_add(w, b.pindex[n], b.bytes[n]);
				done += len / VM_PAGE_SIZE;
				if (progress)
					progress(arg, done, total);
			}
		}
	}
	free(b.bytes);
	free(b.pindex);
	return r;
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
	uint64_t t0 = clock_monotonic_ns();
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

	/* Most of the write protection, before the pause: the guest runs meanwhile. */
	uint64_t t_arm = clock_monotonic_ns();
	struct guest_memory_prearm arm;
	guest_memory_prearm(&vm->mem, SNAPSHOT_PREARM_PASSES, SNAPSHOT_PREARM_ENOUGH, &arm);
	res->prearm_ns = clock_monotonic_ns() - t_arm;
	res->prearm_passes = arm.passes;
	res->prearm_pages = arm.armed;
	r = snapshot_freeze(vm, &state, &copies, &res->pause_ns, &res->pause_protected);
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
	r = snapshot_write_pages(vm, &copies, parent ? vm->mem.ram_object : NULL, w, progress, arg, res->pages);
	struct store_write_stats ws;
	store_writer_stats(w, &ws);
	res->listed = ws.pages;
	res->unchanged = ws.unchanged;
	res->stored = ws.stored;
	res->shared = ws.shared;
	res->zero = ws.zero;
	if (r) {
		store_writer_abort(w);
		goto out;
	}
	r = store_writer_commit(w);
	if (!r) {
		atomic_fetch_add(&vm->snapshots.count, 1);
		atomic_fetch_add(&vm->snapshots.pages_listed, ws.pages);
		atomic_fetch_add(&vm->snapshots.pages_stored, ws.stored);
		atomic_fetch_add(&vm->snapshots.pages_shared, ws.shared);
		atomic_fetch_add(&vm->snapshots.pages_zero, ws.zero);
		atomic_fetch_add(&vm->snapshots.collisions, ws.collisions);
		atomic_store(&vm->snapshots.last_pause_ns, res->pause_ns);
		atomic_store(&vm->snapshots.last_prearm_ns, res->prearm_ns);
		atomic_store(&vm->snapshots.last_pause_protected, res->pause_protected);
		atomic_store(&vm->snapshots.last_total_ns, clock_monotonic_ns() - t0);
	}
out:
	if (copies.n)
		snapshot_discard(vm, &copies);
	free(blob);
	vm_state_free(&state);
	store_snapshot_close(parent);
	store_close(store);
	atomic_store(&vm->snapshot_busy, false);
	res->total_ns = clock_monotonic_ns() - t0;
	return r;
}

#include "vmm/lifecycle/snapshot.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "vmm/clock.h"
#include "vmm/error.h"
#include "vmm/store/store.h"
#include "vmm/vm.h"
#include "vmm/vm_state.h"

#define SNAPSHOT_CHUNK 1024u /* pages gathered per hold of the domain lock (4 MiB) */
#define SNAPSHOT_PREARM_PASSES 3    /* passes of the pre-arm at most */
#define SNAPSHOT_PREARM_ENOUGH 256u /* pages written during a pre-arm pass that the pause may protect */

/* Pause, capture the state, freeze RAM, resume: the only part the guest waits for. The
 * freeze write-protects only the pages not protected already (written since the pre-arm);
 * *protected counts them. */
static int snapshot_freeze(struct vm *vm, struct vm_state *state, struct guest_memory_frozen *c, uint64_t *pause_ns,
			   uint64_t *protected)
{
	uint64_t t0 = clock_monotonic_ns();
	if (!vm_pause(vm))
		return error_set(ESHUTDOWN, "the VM is shutting down");
	int r = vm_state_capture(vm, state);
	if (!r)
		r = guest_memory_freeze(&vm->mem, c, protected);
	vm_resume(vm);
	*pause_ns = clock_monotonic_ns() - t0;
	if (r) {
		vm_state_free(state);
		guest_memory_frozen_discard(&vm->mem, c);
	}
	return r;
}

/* Where the frozen pages go: the store, and how far along it is. */
struct snapshot_sink {
	struct vm *vm;
	struct store_writer *w;
	snapshot_progress_fn *progress;
	void *arg;
	uint64_t done, total;
};

static int snapshot_add_pages(void *arg, const uint64_t *pindex, const uint8_t (*bytes)[VM_PAGE_SIZE], unsigned n,
			      uint64_t examined)
{
	struct snapshot_sink *s = arg;
	int r = 0;
	for (unsigned i = 0; i < n && !r; i++)
		r = store_writer_add(s->w, pindex[i], bytes[i]);
	s->done += examined;
	atomic_store(&s->vm->snapshot_done, s->done);
	if (s->progress)
		s->progress(s->arg, s->done, s->total);
	if (!r && atomic_load(&s->vm->snapshot_cancel))
		r = error_set(ECANCELED, "snapshot cancelled (job-cancel): nothing of it was stored");
	return r;
}

/*
 * Write the pages of the frozen RAM (only those the parent lacks: @since) to @w, in page
 * order, a chunk at a time: the domain lock is held only while a chunk is gathered, so the
 * guest's faults (its copy-on-writes of frozen pages above all) are served while the store
 * is written.
 */
static int snapshot_write_pages(struct vm *vm, struct guest_memory_frozen *c, enum guest_memory_since since,
				struct store_writer *w, snapshot_progress_fn *progress, void *arg, uint64_t total)
{
	struct snapshot_sink sink = {.vm = vm, .w = w, .progress = progress, .arg = arg, .total = total};
	atomic_store(&vm->snapshot_total, total);
	return guest_memory_frozen_pages(&vm->mem, c, since, SNAPSHOT_CHUNK, snapshot_add_pages, &sink);
}

/* The parent of a snapshot of @vm into the store at @real (store_locate), and in *since
 * which pages the snapshot lists: the last snapshot the VM stored there and keeps as its
 * base (what was written since), else the snapshot it was restored from there (what
 * changed since the restore, while its RAM is laid out as restored), else none. */
static const char *snapshot_parent(struct vm *vm, const char *real, enum guest_memory_since *since)
{
	if (vm->base_name[0] && strcmp(real, vm->base_store) == 0 && guest_memory_has_base(&vm->mem)) {
		*since = GUEST_MEMORY_SINCE_BASE;
		return vm->base_name;
	}
	if (vm->origin_name[0] && strcmp(real, vm->origin_store) == 0 && !guest_memory_layout_changed(&vm->mem)) {
		*since = GUEST_MEMORY_SINCE_RESTORE;
		return vm->origin_name;
	}
	*since = GUEST_MEMORY_SINCE_NOTHING;
	return NULL;
}

/* The last snapshot is no longer the parent of the next: its pin goes, its name is forgotten. */
static void snapshot_unpin_base(struct vm *vm)
{
	store_snapshot_close(vm->base_snap);
	vm->base_snap = NULL;
	vm->base_store[0] = vm->base_name[0] = 0;
}

/* The store at @dir for a snapshot of @vm: the one its last snapshot went to while @dir is
 * still that folder, kept open with its index (store_keep_index: the next snapshot reads
 * only the manifests written since, not the whole store), else opened (made if missing)
 * and kept instead. 0 or -errno with a message. */
static int snapshot_store(struct vm *vm, const char *dir, struct store **out)
{
	if (vm->store && store_is_at(vm->store, dir)) {
		*out = vm->store;
		return 0;
	}
	int r = store_open(dir, true, out);
	if (r)
		return r;
	store_keep_index(*out);
	/* The pinned base was opened from the store let go: it goes first (a RADOS pin is a
	 * lock of that store's connection). The next snapshot there lists every page again;
	 * the base objects stay, for the next one kept. */
	snapshot_unpin_base(vm);
	store_close(vm->store);
	vm->store = *out;
	return 0;
}

void snapshot_forked_child(struct vm *vm)
{
	snapshot_unpin_base(vm); /* before its store: a RADOS pin is a lock of that store's connection */
	store_close(vm->store);
	vm->store = NULL;
}

/* Let the last kept base go: the next snapshot lists every page. */
static void snapshot_forget_base(struct vm *vm)
{
	guest_memory_release_base(&vm->mem);
	snapshot_unpin_base(vm);
}

/*
 * Snapshot @name, just stored in @store (at @real), becomes @vm's base: its frozen RAM
 * @c is kept (guest_memory_frozen_keep) and the snapshot pinned for the VM, so that the
 * next snapshot into this store names it as parent and lists only the pages written
 * since, and the snapshot cannot be deleted (and another made under its name) meanwhile.
 * When that cannot be, the next snapshot lists every page; this one stands either way.
 */
static void snapshot_keep(struct vm *vm, struct store *store, const char *real, const char *name,
			  struct guest_memory_frozen *c)
{
	char holder[128];
	snprintf(holder, sizeof(holder), "VM '%s' (pid %d)", vm->cfg.name ? vm->cfg.name : "", (int)getpid());
	struct store_snapshot *snap = NULL;
	if (strlen(real) >= sizeof(vm->base_store) || store_snapshot_open_pinned(store, name, holder, &snap) != 0 ||
	    guest_memory_frozen_keep(&vm->mem, c) != 0) {
		store_snapshot_close(snap);
		snapshot_forget_base(vm);
		error_clear();
		return;
	}
	store_snapshot_close(vm->base_snap);
	vm->base_snap = snap;
	snprintf(vm->base_store, sizeof(vm->base_store), "%s", real);
	snprintf(vm->base_name, sizeof(vm->base_name), "%s", name);
}

int snapshot_save(struct vm *vm, const char *dir, const char *name, const char *description,
		  snapshot_progress_fn *progress, void *arg, struct snapshot_result *res)
{
	uint64_t t0 = clock_monotonic_ns();
	memset(res, 0, sizeof(*res));
	int r = store_description_check(vm->cfg.name, description);
	if (!r)
		r = guest_memory_can_freeze(&vm->mem);
	if (r)
		return r;
	if (atomic_exchange(&vm->snapshot_busy, true))
		return error_set(EBUSY, "a snapshot of this VM is already being taken");
	atomic_store(&vm->snapshot_cancel, false);
	atomic_store(&vm->snapshot_done, 0);
	atomic_store(&vm->snapshot_total, 0);

	struct store *store = NULL;
	struct store_snapshot *parent = NULL;
	struct store_writer *w = NULL;
	struct guest_memory_frozen copies = {.n = 0};
	struct vm_state state = {0};
	char real[PATH_MAX];
	uint8_t *blob = NULL;
	size_t blob_len = 0;
	r = snapshot_store(vm, dir, &store);
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
	if ((r = store_locate(dir, real, sizeof(real))) != 0)
		goto out;
	enum guest_memory_since since;
	const char *parent_name = snapshot_parent(vm, real, &since);
	r = parent_name ? store_snapshot_open(store, parent_name, &parent) : 0;
	if (r && since == GUEST_MEMORY_SINCE_BASE) {
		/* The base cannot be read (damaged from outside): this one lists every page. */
		snapshot_forget_base(vm);
		error_clear();
		parent_name = snapshot_parent(vm, real, &since);
		r = parent_name ? store_snapshot_open(store, parent_name, &parent) : 0;
	}
	if (r)
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
	r = store_writer_begin(store, name, parent_name, guest_memory_span(&vm->mem) / VM_PAGE_SIZE, blob, blob_len, &w);
	if (r)
		goto out;
	r = store_writer_describe(w, vm->cfg.name, description);
	if (r) {
		store_writer_abort(w);
		goto out;
	}
	for (unsigned i = 0; i < copies.n; i++)
		res->pages += copies.region[i].size / VM_PAGE_SIZE;
	r = snapshot_write_pages(vm, &copies, since, w, progress, arg, res->pages);
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
	r = store_writer_commit_stats(w, &ws);
	if (!r) {
		res->entries = ws.entries;
		res->base = ws.base;
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
		snapshot_keep(vm, store, real, name, &copies);
	}
out:
	if (copies.n)
		guest_memory_frozen_discard(&vm->mem, &copies);
	free(blob);
	vm_state_free(&state);
	store_snapshot_close(parent);
	atomic_store(&vm->snapshot_busy, false);
	res->total_ns = clock_monotonic_ns() - t0;
	return r;
}

int snapshot_cancel(struct vm *vm)
{
	if (!atomic_load(&vm->snapshot_busy))
		return error_set(ENOENT, "no snapshot of this VM is being taken");
	atomic_store(&vm->snapshot_cancel, true);
	return 0;
}

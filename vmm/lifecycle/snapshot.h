/*
 * Live snapshots of a running VM into a store (vmm/store.h).
 *
 * The vCPUs are paused only while the VM's state is captured and its RAM is frozen: each
 * RAM entry's object is frozen and shadowed by a new one (vm_map_copyin), its pages
 * write-protected in guest RAM. Most of that write protection is done before the pause,
 * with the guest running (guest_memory_prearm): the pause protects only what the guest
 * wrote since. The guest then runs on while the frozen pages are written to the store; a
 * guest write to a frozen page is a copy-on-write fault, so the snapshot sees memory
 * exactly as it was at the pause.
 *
 * Snapshots are incremental. When one is durable its frozen RAM is kept as the base of the
 * next (guest_memory_frozen_keep) and the snapshot stays pinned for the VM: the next
 * snapshot into the same store names it as parent and lists only the pages written since,
 * so it costs what the guest wrote, not what it holds. A VM restored from snapshot S of
 * the same store makes a first snapshot whose parent is S and which lists only the pages
 * that differ from S. Into another store, a snapshot lists every page.
 */
#ifndef VMM_SNAPSHOT_H
#define VMM_SNAPSHOT_H

#include <stdbool.h>
#include <stdint.h>

struct vm;

struct snapshot_result {
	char parent[64];       /* "" for a snapshot without parent */
	uint64_t pages;        /* pages of guest RAM examined */
	uint64_t listed;       /* pages the manifest lists (differing from the parent) */
	uint64_t unchanged;    /* pages the guest had copied up that still equal the parent's */
	uint64_t stored;       /* of which new to the store (bytes appended) */
	uint64_t shared;       /* of which already stored (dedup) */
	uint64_t zero;         /* of which zero */
	uint64_t entries;      /* the manifest's entries as written (a cut chain's complete list) */
	bool base;             /* the manifest reads through no other: no parent, or complete */
	uint64_t prearm_ns;    /* write-protecting guest RAM ahead of the pause (guest running) */
	unsigned prearm_passes; /* passes of it over guest RAM */
	uint64_t prearm_pages; /* pages it write-protected */
	uint64_t pause_ns;     /* how long the vCPUs were paused */
	uint64_t pause_protected; /* pages write-protected during the pause (written since the pre-arm) */
	uint64_t total_ns;     /* from the request to durability */
};

/* Called from the writing thread with pages written so far and in all. */
typedef void snapshot_progress_fn(void *arg, uint64_t done, uint64_t total);

/*
 * Snapshot @vm into the store at @dir (created if missing) as @name, recording the VM's
 * name as its source and @description (NULL: none; store_writer_describe's limits, checked
 * before anything is done). Returns once the
 * snapshot is durable, or -errno with a message (nothing is left visible in the store).
 * One snapshot at a time per VM (-EBUSY). Not from a vCPU or the fault thread. While it
 * writes, vm->snapshot_done/total say how far it is; snapshot_cancel stops it.
 */
int snapshot_save(struct vm *vm, const char *dir, const char *name, const char *description,
		  snapshot_progress_fn *progress, void *arg, struct snapshot_result *res);

/* Ask the snapshot of @vm being taken to stop before it becomes durable: it then fails
 * with -ECANCELED ("snapshot cancelled..."), nothing of it visible in the store, the VM
 * running on. -ENOENT with a message when none is being taken. Any thread. */
int snapshot_cancel(struct vm *vm);

/* In a forked child: the parent's store handle, and the pin of the parent's last snapshot,
 * are let go (the handle's lock is the parent's; a RADOS pin is taken through it). The
 * child's next snapshot opens a store of its own and lists every page. */
void snapshot_forked_child(struct vm *vm);

#endif

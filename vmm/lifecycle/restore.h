/*
 * What a restore needs from the store: the snapshot (manifests and packs mapped), its VM
 * state, and a snapshot pager serving its pages, each checked against its recorded
 * XXH3-64 before the guest sees it (a damaged pack stops the VM with a clear error
 * instead of feeding it wrong bytes).
 *
 * The snapshot's pages are kept host-wide in a segment (vmm/memory/segment.h) keyed by what
 * the pages are (store_snapshot_identity): every VM on this host restored from the same
 * snapshot, from any store, maps the same resident copy, and only the first to touch a page
 * reads it from the store.
 */
#ifndef VMM_RESTORE_H
#define VMM_RESTORE_H

#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "vmm/memory/segment.h"
#include "vmm/vm_state.h"

struct store;
struct store_snapshot;
struct pager;

struct restore {
	struct store *store;
	struct store_snapshot *snap;
	struct vm_state state;
	struct pager *pager;            /* snapshot pager over snap, one reference */
	struct segment segment;         /* its pages host-wide (fd -1: private, see share_error) */
	char share_error[256];          /* why the pages are not shared, "" when they are or
					   sharing was not asked for */
	char store_real[PATH_MAX];      /* the store's one name (store_locate) */
	char name[64];
	/* restore_load_working_set's thread: */
	pthread_t loader;
	bool loader_started;
	atomic_bool loader_stop;        /* restore_close asks it to end */
	uint64_t *load;                 /* the pages to bring in, sorted, each once */
	uint64_t nload;
	atomic_ullong loaded;           /* pages it wrote into the segment */
	atomic_bool load_done;          /* it has ended */
};

/* Open snapshot @name of the store at @dir for restoring, pinned for @holder (the VM, in
 * words: "VM 'web' (pid 42)") until restore_close or the end of the process: the store
 * refuses to delete it meanwhile. With @share, its pages are kept in the host-wide segment
 * (joined or made); a segment that cannot be had leaves them private and says why in
 * share_error (the restore goes on). 0 or -errno with a message naming the damaged file or
 * what is missing. */
int restore_open(struct restore *r, const char *dir, const char *name, const char *holder, bool share);

/*
 * A cold restore's recorded working set, brought into the host-wide segment in bulk
 * (REAP-style) rather than a fault at a time: its pages (@pages, @n of them, any order,
 * those beyond the snapshot ignored) sorted, fetched a run at a time
 * (store_snapshot_prefetch: one read per pack for a store that reads its packs), each
 * checked against its hash and written into the segment, where the guest's faults then
 * find them (no call to the store). On a thread of its own, so that the guest starts
 * meanwhile; pages the segment holds already (another VM brought them) are skipped; a page
 * that cannot be read or checked is left to the guest's fault, which reports it.
 * restore_close waits for the thread. Without a segment (a private restore): nothing to do.
 * 0, or -errno with a message when the thread cannot start.
 */
int restore_load_working_set(struct restore *r, const uint64_t *pages, uint64_t n);

/* Release what restore_open made (the pager's objects keep their own references). */
void restore_close(struct restore *r);

#endif

/*
 * What a restore needs from the store: the snapshot (manifests and packs mapped), its VM
 * state, and a snapshot pager serving its pages, each checked against its recorded
 * XXH3-64 before the guest sees it (a damaged pack stops the VM with a clear error
 * instead of feeding it wrong bytes).
 */
#ifndef VMM_RESTORE_H
#define VMM_RESTORE_H

#include <limits.h>
#include <stdint.h>

#include "vmm/vm_state.h"

struct store;
struct store_snapshot;
struct pager;

struct restore {
	struct store *store;
	struct store_snapshot *snap;
	struct vm_state state;
	struct pager *pager;            /* snapshot pager over snap, one reference */
	char store_real[PATH_MAX];      /* realpath of the store */
	char name[64];
};

/* Open snapshot @name of the store at @dir for restoring, pinned for @holder (the VM, in
 * words: "VM 'web' (pid 42)") until restore_close or the end of the process: the store
 * refuses to delete it meanwhile. 0 or -errno with a message naming the damaged file or
 * what is missing. */
int restore_open(struct restore *r, const char *dir, const char *name, const char *holder);

/* Release what restore_open made (the pager's objects keep their own references). */
void restore_close(struct restore *r);

#endif

/*
 * The snapshot pager: a memory object whose pages come from a stored snapshot. The pager
 * knows nothing of files: it is opened (pager_args.source) on a struct snapshot_source
 * whose page() call gives a page's bytes or says it is zero. Read-only: it takes no data
 * back, so its objects are mapped copy-on-write (a restored guest's writes land in the
 * object that shadows it).
 */
#ifndef PAGERS_SNAPSHOT_PAGER_H
#define PAGERS_SNAPSHOT_PAGER_H

#include <stdint.h>

#include "mmu/pager.h"

struct snapshot_source {
	/* The bytes of page @pindex (*data NULL: zero), valid for the pager's life.
	 * 0, or -errno: the request fails with that error (KERN_MEMORY_ERROR for the fault). */
	int (*page)(void *arg, uint64_t pindex, const void **data);
	void *arg;
	uint64_t size; /* bytes the snapshot describes (page multiple) */
};

extern const struct pager_ops snapshot_pager_ops;

#endif

/*
 * The snapshot pager: a memory object whose pages come from a stored snapshot. The pager
 * knows nothing of files: it is opened (pager_args.source) on a struct snapshot_source
 * whose page() call gives a page's bytes or says it is zero. Read-only: it takes no data
 * back, so its objects are mapped copy-on-write (a restored guest's writes land in the
 * object that shadows it).
 *
 * Opened with pager_args.fd on a host-wide segment (a memfd at least size bytes long that
 * other VMM processes restoring the same snapshot share; vmm/memory/segment.h), it keeps
 * the snapshot's pages there: a page the segment holds is given from it without asking the
 * source, and a page the source gives is written there first (whole, at its own offset;
 * zero pages never), so the snapshot is resident once per host (pager.h: host_resident).
 * The segment must hold nothing but this snapshot's pages; the caller keeps its descriptor
 * open while the pager lives. A segment shorter than the snapshot is refused (-EINVAL).
 */
#ifndef PAGERS_SNAPSHOT_PAGER_H
#define PAGERS_SNAPSHOT_PAGER_H

#include <stdint.h>

#include "mmu/pager.h"

struct snapshot_source {
	/* The bytes of page @pindex (*data NULL: zero), valid until the next call.
	 * 0, or -errno: the request fails with that error (KERN_MEMORY_ERROR for the fault). */
	int (*page)(void *arg, uint64_t pindex, const void **data);
	/* Optional: pages [@first, @first + @n) are about to be asked for, one by one: a source
	 * that fetches from afar brings them in at once. Advice only (its failure is the page
	 * calls' to report). */
	void (*prefetch)(void *arg, uint64_t first, uint64_t n);
	void *arg;
	uint64_t size; /* bytes the snapshot describes (page multiple) */
};

extern const struct pager_ops snapshot_pager_ops;

struct snapshot_pager_stats {
	uint64_t found;       /* pages given from the segment (brought in by any VM) */
	uint64_t filled;      /* pages this pager put into the segment */
	uint64_t fill_errors; /* pages it could not put there (given privately instead) */
};

/* What a pager of snapshot_pager_ops did with its segment (all zero without one). */
void snapshot_pager_stats(const struct pager *pager, struct snapshot_pager_stats *out);

#endif

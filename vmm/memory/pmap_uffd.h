/*
 * The VMM's pmap backend (mmu/pmap.h): guest RAM is one host mapping of the whole
 * guest-physical space, registered with userfaultfd and given to KVM as memory slots.
 * Entering a page copies it in with UFFDIO_COPY (which also wakes the vCPU waiting on it),
 * write-protection is uffd write-protect, removal is MADV_DONTNEED.
 *
 * Enters of one fault are staged and copied in runs of consecutive pages at update()
 * (one ioctl per run: the round trip, not the copy, is what a fault costs here).
 * Every call runs on the fault thread or with the domain lock held (pmap.h's contract).
 * A failure of a staged copy, a write-protect or a drop is kept (error) until update()
 * reports it through the fault (vm_fault: KERN_MEMORY_ERROR), or pmap_uffd_flush.
 * Field legend: (c) constant after init, (d) domain lock.
 *
 * Write protection is tracked per page: a bit says the page is *guarded*, i.e. a guest
 * write to it cannot go through without a userfaultfd fault (it is write-protected, or not
 * present at all: a registered range is only ever filled through this backend). Lowering
 * protection write-protects only the pages that are not guarded, so that the guarding
 * can be done ahead of time while the guest runs (pmap_uffd_prearm): a snapshot's freeze
 * then only protects what the guest wrote since. The bits may err towards "not guarded"
 * (costing a redundant ioctl), never the other way: every page of a registered range must
 * be installed, protected and dropped through this backend, else pmap_uffd_forget first.
 * A page the core maps writable may be guarded (pre-armed); the guest's write then faults
 * and the fault path lifts the protection (pmap_uffd_unguard) without asking the core.
 *
 * Segment ranges (pmap_uffd_add_segment) are mapped MAP_PRIVATE from a host-wide shmem
 * segment at offset = guest-physical address, and registered for missing *and* minor
 * faults: a page not mapped here faults whether or not the segment holds it, so the rule
 * above holds there too. A page the core enters read-only with PMAP_BACKEND_HOST_RESIDENT
 * is mapped from the segment (UFFDIO_CONTINUE, write-protected): every VM mapping the
 * segment reads the one host page, and a guest write faults, then the kernel copies the
 * page into this VM's private memory once the core lets the write through. Every other
 * page is copied in as elsewhere and stays private (UFFDIO_COPY into a private mapping never
 * touches the segment).
 */
#ifndef VMM_PMAP_UFFD_H
#define VMM_PMAP_UFFD_H

#include <stdint.h>

#include "mmu/pmap.h"
#include "vmm/memory/uffd.h"

struct pmap_uffd_stats {
	uint64_t copies;       /* UFFDIO_COPY calls */
	uint64_t pages_copied; /* pages they filled */
	uint64_t zero_pages;   /* of which from the zero page */
	uint64_t replaced;     /* pages removed first because something was there */
	uint64_t protects;     /* write-protect changes (UFFDIO_WRITEPROTECT calls) */
	uint64_t protected_pages; /* pages those write-protected */
	uint64_t guarded_skips;   /* pages a lowering of protection found guarded already */
	uint64_t prearmed_pages;  /* pages pmap_uffd_prearm write-protected (runs of pages not
				     guarded, the never entered ones of a first pre-arm included) */
	uint64_t unguards;        /* pre-armed pages written by the guest (pmap_uffd_unguard) */
	uint64_t removes;      /* MADV_DONTNEED calls */
	uint64_t continues;    /* UFFDIO_CONTINUE calls (segment ranges) */
	uint64_t pages_continued;    /* pages they mapped from a segment */
	uint64_t continue_fallbacks; /* runs a segment could not give, copied in instead */
};

/* A few guest-physical ranges, [start, end) each (pmap_uffd_add_readonly, _add_segment). */
struct pmap_uffd_ranges {
	struct {
		vm_addr_t start, end;
	} range[8];
	unsigned n;
};

struct pmap_uffd {
	struct uffd *uffd;      /* (c) */
	uint8_t *base;          /* (c) host address of guest-physical 0 */
	uint64_t size;          /* (c) bytes of guest-physical space behind base */
	uint8_t *stage;         /* (d) bytes of the staged run, VM_CLUSTER_MAX pages */
	const uint8_t *zero;    /* (c) VM_CLUSTER_MAX zero pages, the source of zero fills */
	bool zero_mapped;       /* (d) zero is in the page tables */
	vm_addr_t run_start;    /* (d) first page of the staged run */
	unsigned run_pages;     /* (d) 0: nothing staged */
	vm_prot_t run_prot;     /* (d) */
	bool run_zero;          /* (d) the run is all zero pages (not staged in @stage) */
	bool run_shared;        /* (d) the run is mapped from the segment (staged all the same) */
	int error;              /* (d) first failure of a staged copy, reported at update */
	struct pmap_uffd_ranges readonly; /* (d) ranges KVM maps read-only to the guest (added as they are mapped) */
	struct pmap_uffd_ranges segment;  /* (d) ranges mapped from a host-wide segment */
	uint64_t *guarded;      /* (d) bit per page of [0, size): guarded (see above); lazily
				   backed, so untouched parts cost nothing and read "not guarded" */
	size_t guarded_bytes;   /* (c) */
	struct pmap_uffd_stats stats; /* (d) */
};

extern const struct pmap_ops pmap_uffd_ops;

/* Set up a backend over [base, base + size) registered with @uffd. 0 or -ENOMEM. */
int pmap_uffd_init(struct pmap_uffd *p, struct uffd *uffd, uint8_t *base, uint64_t size);
void pmap_uffd_fini(struct pmap_uffd *p);

/*
 * Declare [start, end) read-only to the guest at the KVM level (a read-only memory slot):
 * the guest cannot write there whatever the host mapping allows, so its pages are entered
 * host-writable. Host read-only mappings send every guest access through KVM's slow path
 * (measured 6-8 us a page here); write-protection is kept for pages where it means
 * copy-on-write. At most 8 ranges. 0 or -ENOSPC.
 */
int pmap_uffd_add_readonly(struct pmap_uffd *p, vm_addr_t start, vm_addr_t end);

/* Declare [start, end) mapped from a host-wide segment at offset = address (see above).
 * At most 8 ranges. 0 or -ENOSPC. */
int pmap_uffd_add_segment(struct pmap_uffd *p, vm_addr_t start, vm_addr_t end);

/* Copy the staged run in now; 0 or the first error since the last call (or update()).
 * What update() does at the end of a fault, for the core's calls that end without one
 * (vm_map_protect, vm_map_read, vm_map_copyin...): guest_memory makes it after each. */
int pmap_uffd_flush(struct pmap_uffd *p);

/*
 * Pre-arm ahead of a freeze: write-protect the pages of [start, end) (one registered range)
 * that are not guarded, in runs, @max_pages of them at most, while the guest runs on; the
 * core's protections do not change. *next is where to go on (@end when the range is done);
 * *armed counts the pages protected. Domain lock held (hold it for bounded steps: the
 * guest's faults wait for it). 0, or -errno with a message (the pages of the failed run
 * stay not guarded).
 */
int pmap_uffd_prearm(struct pmap_uffd *p, vm_addr_t start, vm_addr_t end, uint64_t max_pages, vm_addr_t *next,
		     uint64_t *armed);

/* How many pages of [start, end) are not guarded (what a freeze there would still protect). */
uint64_t pmap_uffd_unguarded(const struct pmap_uffd *p, vm_addr_t start, vm_addr_t end);

/*
 * A write-protect fault at @va on a page the core maps writable: the protection was put
 * there ahead of a freeze (pmap_uffd_prearm), or is left from a race with one. Lift it and
 * wake the faulting thread. 0 or -errno with a message.
 */
int pmap_uffd_unguard(struct pmap_uffd *p, vm_addr_t va);

/* Take no page for guarded any more (a forked child's copy of guest RAM lost its
 * write-protection with its registration). */
void pmap_uffd_forget(struct pmap_uffd *p);

/*
 * [start, end) stops being guest memory (vm_deallocate; nothing entered there any more,
 * the core removed it): forget all the backend knows of it, so that memory made there
 * later starts as at init: not read-only to the guest (else its copy-on-write pages would
 * be entered without write-protection), not from a segment, not guarded. A read-only or
 * segment range cut in its middle keeps the piece below the cut, and the piece above it
 * where there is room for one more range (else that piece is forgotten too: its pages are
 * then write-protected and copied, slower but right). Domain lock held.
 */
void pmap_uffd_forget_range(struct pmap_uffd *p, vm_addr_t start, vm_addr_t end);

#endif

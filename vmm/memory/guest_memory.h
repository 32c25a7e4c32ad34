/*
 * Guest memory: the guest-physical address space as a Mach vm_map (mmu/), made real for
 * KVM. One host mapping covers guest-physical [0, span); every region of the layout (RAM,
 * mapped files) is a map entry backed by a memory object, a KVM memory slot, and a range
 * registered with userfaultfd. A guest touch of a missing page becomes a userfaultfd
 * event, then vm_fault on the map, whose pmap backend (pmap_uffd) copies the answer in.
 *
 * Every access the VMM makes on the guest's behalf goes through guest_memory_ptr (bounds:
 * wholly inside one region) or guest_memory_write (through the map).
 *
 * This is the one door to mmu/ for the rest of vmm/: the snapshot, the fork, the VM's saved
 * state and the monitor's Mach calls ask for named operations here (guest_memory_freeze,
 * guest_memory_vm_protect, ...) and never name the map, its objects, the domain lock or the
 * pmap. Each operation takes the domain lock, calls into mmu/, puts what the call staged
 * into guest RAM (pmap_uffd_flush; a fault does that itself and fails with it) and lets the
 * lock go, in this file only. Mach's codes become -errno by kern_return_errno, and each
 * failure has a one-line message naming the code.
 */
#ifndef VMM_GUEST_MEMORY_H
#define VMM_GUEST_MEMORY_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "mmu/vm_param.h"
#include "vmm/memory/fault_thread.h"
#include "vmm/memory/pmap_uffd.h"
#include "vmm/memory/uffd.h"
#include "vmm/memory/working_set.h"

/* RAM above this address moves above 4 GiB, leaving the usual PC hole for MMIO. */
#define GUEST_MEMORY_LOW_LIMIT 0xc0000000ull
#define GUEST_MEMORY_HIGH_BASE 0x100000000ull
#define GUEST_MEMORY_MAX_FILES 8
#define GUEST_MEMORY_MAX_REGIONS 32             /* RAM pieces (vm-allocate, splits) and files */
#define GUEST_MEMORY_WINDOW (1ull << 40)        /* guest-physical space the map covers (host VA reserved) */
#define GUEST_MEMORY_MAX_GPA GUEST_MEMORY_WINDOW
#define GUEST_MEMORY_READAHEAD 8 /* clusters brought in ahead of a guest walking through memory */
#define GUEST_MEMORY_DEFAULT_CLUSTER 64u        /* pages per fault, see README (measured) */
#define GUEST_MEMORY_LATENCY_BUCKETS 32         /* log2 of nanoseconds */
#define GUEST_MEMORY_MAX_BASES 64               /* objects a stored snapshot's RAM is kept as */

enum guest_region_kind {
	GUEST_REGION_RAM,      /* anonymous: zero fill, page-out to swap */
	GUEST_REGION_FILE,     /* a host file through the file pager */
	GUEST_REGION_EXTERNAL, /* an external pager process (path: its unix socket) */
	GUEST_REGION_SNAPSHOT, /* a stored snapshot's RAM through a pager its caller opened
				  (guest_memory_vm_map; path names it) */
	GUEST_REGION_HOST_SHARED, /* RAM inherited "share" by forks: a memfd mapped MAP_SHARED by
				     this VM and its forks, left to the kernel (no userfaultfd, no
				     pager; guest_memory_share_inherited) */
};
enum guest_map_mode {
	GUEST_MAP_PRIVATE, /* the guest may write; writes stay in the VM (copy-on-write) */
	GUEST_MAP_RO,      /* the guest may only read */
	GUEST_MAP_SHARED,  /* guest writes reach the file (written back at a clean shutdown) */
};

struct guest_file_map {
	const char *path;         /* the file, or the external pager's socket */
	uint64_t gpa;
	enum guest_map_mode mode;
	bool external;            /* served by an external pager at @path */
	uint64_t size;            /* external: bytes mapped (page multiple) */
};

struct guest_ram_range {
	uint64_t gpa, size;
};

struct guest_memory_config {
	uint64_t ram_size;       /* bytes, page multiple */
	unsigned nram;           /* explicit RAM layout (restore) instead of the one from ram_size */
	struct guest_ram_range ram[GUEST_MEMORY_MAX_REGIONS];
	uint64_t mem_limit;      /* resident guest pages at most this many bytes; 0 = no limit */
	const char *swap_path;   /* swap file for page-out; NULL: an unnamed file in /var/tmp */
	unsigned cluster;        /* pages one fault resolves; 0 = GUEST_MEMORY_DEFAULT_CLUSTER */
	struct pager *ram_pager; /* RAM's contents (restore): copy-on-write of an object of this
				    pager, offsets = guest-physical addresses; NULL: zero fill */
	struct segment *ram_segment; /* with ram_pager: the host-wide segment that pager keeps
				    its pages in (snapshot_pager.h), shared with the other VMs
				    restoring the same snapshot; NULL: none (see guest_memory_create) */
	bool kernel_zero_fill;   /* RAM is left to the kernel's own zero fill: not in the map, no
				    pager, no statistics for it, no limit (a benchmark baseline) */
	unsigned nfiles;
	struct guest_file_map files[GUEST_MEMORY_MAX_FILES];
};

struct guest_region {
	uint64_t gpa;                /* guest-physical start, page aligned */
	uint64_t size;               /* bytes, page aligned */
	enum guest_region_kind kind;
	enum guest_map_mode mode;    /* files, external */
	const char *path;            /* files; external: the socket; snapshot: its name */
	uint64_t file_size;          /* files: bytes in the file */
	struct pager *pager;         /* files, external, snapshot: its pager (referenced by held[]) */
	uint8_t *hva;                /* host mapping of [gpa, gpa + size) */
	unsigned slot;               /* KVM memory slot */
	bool from_segment;           /* RAM mapped from the host-wide segment (guest_memory_create) */
};

/* The guest may only read @g: KVM's slot for it is read-only (RAM never is). */
static inline bool guest_region_read_only(const struct guest_region *g)
{
	return g->kind != GUEST_REGION_RAM && g->mode == GUEST_MAP_RO;
}

struct vm_domain;
struct vm_map;
struct vm_object;
struct pager;

/* Called once, from the fault thread, when a fault cannot be served: the VM must stop.
 * @err: EACCES when the guest broke the map's rules (a write to memory it may only read),
 * else the host's failure (a pager, the userfaultfd). */
typedef void guest_memory_error_fn(void *arg, int err, const char *message);

/* What guest memory keeps for a mapped region while its pager serves guest memory: until
 * no region maps it and no object uses it (guest_memory_deallocate), or guest_memory_destroy
 * after the map. */
struct guest_memory_held {
	struct pager *serves;         /* the pager of the regions it is kept for */
	struct pager *pager;          /* one reference, released; NULL: the owner's */
	char *path;                   /* copied (guest_memory_vm_map), freed; NULL: the caller's */
	void (*release)(void *owner); /* the owner's end (GUEST_REGION_SNAPSHOT), or NULL */
	void *owner;
};

/* Locking legend: (c) constant after create; (d) domain lock; (f) the fault thread only
 * (once it runs); (p) changed only with the VM paused and the domain lock held (regions);
 * (a) atomic. */
struct guest_memory {
	struct guest_region region[GUEST_MEMORY_MAX_REGIONS]; /* (p) sorted by gpa */
	unsigned nregions;                                     /* (p) */
	uint64_t ram_size;                                     /* (c) */
	uint8_t *base;                                         /* (c) host address of gpa 0 */
	uint64_t span;                                         /* (p) end of the highest region */
	struct vm_domain *dom;                                 /* (c) NULL: plain memory (tests) */
	struct vm_map *map;                                    /* (d) */
	struct guest_memory_held held[GUEST_MEMORY_MAX_REGIONS]; /* (p) what the mapped regions need kept */
	struct pager *watched[FAULT_THREAD_WATCH_MAX];         /* (p) pagers whose own messages the fault
								  thread watches, by its watch index */
	unsigned nwatched;                                     /* (p) */
	unsigned nheld;                                        /* (p) */
	struct pager *swap;                                    /* (c) default pager, or NULL */
	struct vm_object *ram_object;                          /* (c) restore: the snapshot's object, one reference */
	struct segment *segment;                               /* (c) cfg.ram_segment when RAM is mapped from it, else NULL */
	int swap_fd;                                           /* (c) -1 when none */
	const char *swap_path;                                 /* (c) cfg.swap_path (the caller's), NULL: unnamed */
	uint64_t limit_pages;                                  /* (c) most pages resident while page-out works, 0 = no limit */
	uint64_t pageout_errors_seen;                          /* (d) the domain's pageout_errors at the last look */
	bool pageout_error_said;                               /* (d) a refused page-out was reported on stderr */
	struct uffd uffd;                                      /* (c) */
	struct pmap_uffd pmap;                                 /* (d) */
	struct fault_thread faults;                            /* (c) */
	guest_memory_error_fn *on_error;                       /* (c) */
	void *on_error_arg;                                    /* (c) */
	bool failed;                                           /* (f) a fault could not be served */
	int cancel_fd;                                         /* (c) eventfd: readable once the VM stops, so
								  pager waits give way (guest_memory_cancel) */
	bool kernel_ram;                                       /* (c) cfg.kernel_zero_fill */
	uint64_t latency[GUEST_MEMORY_LATENCY_BUCKETS];        /* (d) faults by service time */
	uint64_t wp_faults;                                    /* (d) write-protect faults */
	uint64_t uffd_faults;                                  /* (d) userfaultfd faults served */
	uint64_t prefaults;                                    /* (d) pages brought in before the guest ran */
	vm_addr_t readahead_at;                                /* (f) where a fault continues the last one's cluster */
	uint64_t readahead_pages;                              /* (d) pages brought in ahead of sequential faults */
	struct working_set recorded;                           /* (d) with recording: pages faulted in, in order */
	uint64_t recorded_cap;                                 /* (d) room in recorded.pages */
	bool recording;                                        /* (c) guest_memory_record_working_set */
	struct working_set prefetch;                           /* (c) guest_memory_set_prefetch's list */
	uint64_t prefetch_next;                                /* (d) its next entry to bring in */
	atomic_bool prefetch_go;                               /* (a) guest_memory_prefetch_start was called */
	uint64_t prefetched_pages;                             /* (d) pages brought in from the list */
	struct vm_object *snapshot_base[GUEST_MEMORY_MAX_BASES]; /* (d) the last stored snapshot's RAM
								  (guest_memory_frozen_keep), one reference each */
	unsigned nsnapshot_base;                               /* (d) */
	atomic_bool layout_changed;                            /* (a) RAM allocated or deallocated, or an object
							  mapped (guest_memory_vm_map), since create */
};

/* Guest memory with nothing in it yet (no file descriptor): guest_memory_destroy may be
 * called on it, and guest_memory_place or guest_memory_create fills it. */
void guest_memory_init(struct guest_memory *m);

/*
 * Lay out @cfg: RAM regions (below 3 GiB, the rest above 4 GiB) and the file regions,
 * checked for alignment, overlap and existence. No memory is mapped (hva NULL).
 * 0 or -errno with a one-line message.
 */
int guest_memory_layout(struct guest_memory *m, const struct guest_memory_config *cfg);

/*
 * guest_memory_layout, then the host addresses: the guest-physical window reserved and each
 * region opened in it (hva set), which is all KVM's memory slots need. guest_memory_create
 * goes on from there. 0 or -errno with a message (nothing left mapped).
 */
int guest_memory_place(struct guest_memory *m, const struct guest_memory_config *cfg);

/*
 * Build guest memory for @cfg (placed first, unless guest_memory_place did it): the host
 * mapping, the Mach domain and map with one entry per region (files through the file
 * pager, page-out to swap under a limit), userfaultfd with the pmap over it. Guest memory
 * reads as zero until written. 0 or -errno with a message.
 *
 * With a segment (cfg.ram_segment), each RAM region that lies within it is mapped from it
 * (MAP_PRIVATE at offset = guest-physical address): the snapshot's pages are then resident
 * once per host, mapped read-only by every VM restoring it, and a guest write copies one
 * page into this VM's own memory (pmap_uffd.h). The restored guest's reads are no longer
 * copied up into its own object (they stay the snapshot object's, read-only). Where the
 * userfaultfd cannot serve shmem (Linux before 5.19), RAM stays private as without one.
 *
 * Under a limit, the swap file is opened first (without waiting, so a FIFO cannot block)
 * and must be a regular file: anything else (a FIFO, /dev/null, /dev/full, a directory) is
 * refused with -EINVAL, "cannot use PATH as the swap file: not a regular file". A named
 * file is emptied. While the guest runs (guest_memory_start):
 *  - a page read back from swap short or other than written (the file cut short or
 *    changed) fails its fault: the VM stops, the line naming the object, the offset and
 *    the swap file; it never reads as zeros;
 *  - a page-out swap refuses (ENOSPC, EIO, EFBIG...) leaves the page resident and is
 *    counted (mem.pageout_errors); the first is said once on stderr and the VM goes on
 *    while resident memory stays within the limit (the core keeps one cluster of room
 *    under it); a fault whose page-outs were refused with more resident than the limit
 *    stops the VM, "guest memory cannot be kept under its limit of N pages: ...".
 */
int guest_memory_create(struct guest_memory *m, const struct guest_memory_config *cfg);

/*
 * Whether this host's userfaultfd can serve RAM mapped from a host-wide segment
 * (cfg.ram_segment): shmem missing, minor and write-protect faults, and mapping a page from
 * the segment write-protected at once (Linux 6.4). 0, or -errno with a message saying what
 * the kernel lacks; guest_memory_create then leaves RAM private, so a restore should not
 * fill a segment for nothing.
 */
int guest_memory_can_map_segments(void);

/* Start serving faults; @on_error is called if one cannot be served. 0 or -errno. */
int guest_memory_start(struct guest_memory *m, guest_memory_error_fn *on_error, void *arg);

/* Whether the fault thread can watch one more external pager (FAULT_THREAD_WATCH_MAX at
 * once; an index let go is given again). */
bool guest_memory_can_watch(const struct guest_memory *m);

/* From now on (before guest_memory_start), keep the RAM pages the guest's faults bring in,
 * in the order it touched them, for guest_memory_save_working_set. */
void guest_memory_record_working_set(struct guest_memory *m);

/* Record no more (a forked child: the parent records its own working set). */
void guest_memory_stop_recording(struct guest_memory *m);

/* Write what was recorded to @path (working_set_write). 0 or -errno with a message. */
int guest_memory_save_working_set(struct guest_memory *m, const char *path);

/* Take @ws (recorded by a guest of this RAM size) as the pages guest_memory_prefetch_start
 * brings in; @name names it in errors. 0, or -EINVAL with a message when its RAM size is
 * not this guest's or a page is not in its RAM (@ws is then left to the caller). */
int guest_memory_set_prefetch(struct guest_memory *m, struct working_set *ws, const char *name);

/* From now on, the fault thread brings the prefetch list's pages in, in order, as guest
 * reads would, a cluster at a time whenever no fault of the guest waits; pages already in
 * are skipped, and a page it cannot bring in ends the list (the guest's own fault there
 * reports why). No-op without a list. */
void guest_memory_prefetch_start(struct guest_memory *m);

/*
 * In a child made by fork(2) while the domain lock was held by the forking thread: a new
 * userfaultfd over the inherited RAM (pages present at fork are shared copy-on-write with
 * the parent by the kernel), the write-protection of copy-on-write pages put back, the
 * domain lock fresh. Then guest_memory_start. 0 or -errno with a message.
 */
int guest_memory_reattach(struct guest_memory *m);

/* What guest_memory_prearm did. */
struct guest_memory_prearm {
	unsigned passes;  /* passes over guest RAM */
	uint64_t armed;   /* pages write-protected, over all passes */
	uint64_t left;    /* pages not protected after the last pass (written meanwhile) */
	int error;        /* 0, or the -errno that ended it (with a message) */
};

#define GUEST_MEMORY_PREARM_STEP 4096u /* pages protected per hold of the domain lock (16 MiB) */

/*
 * Ahead of a freeze of guest RAM (a snapshot), with the guest running: write-protect its
 * RAM (pmap_uffd_prearm), GUEST_MEMORY_PREARM_STEP pages per hold of the domain lock so its
 * faults are served in between. A guest write to a page so protected faults and is let
 * through at once; the core's protections do not change. Another pass protects what was
 * written during the last one, while that was more than @enough pages, @passes at most.
 * The freeze that follows then protects only what was written since. Best effort: a
 * failure ends it (out->error), the freeze protects what is left. Not from the fault thread.
 */
void guest_memory_prearm(struct guest_memory *m, unsigned passes, uint64_t enough, struct guest_memory_prearm *out);

/* Stop serving faults (every vCPU must be stopped first). */
void guest_memory_stop(struct guest_memory *m);

/*
 * The VM is stopping: a pager request that waits now (the fault thread's, holding the
 * domain lock) or starts later fails at once with -ECANCELED instead of waiting for its
 * deadline, and a fault failed so ends the fault thread without counting as the guest's
 * or the host's failure. Any thread, any time (also before create: nothing to do).
 */
void guest_memory_cancel(struct guest_memory *m);

/*
 * At the end, every vCPU stopped: stop serving faults, let pagers be waited for again (each
 * exchange within its deadline; see guest_memory_cancel), and write modified pages of
 * shared file regions back to their files and pagers. 0 or -errno with one line naming
 * the file (and, when it shrank meanwhile, by how much).
 */
int guest_memory_sync(struct guest_memory *m);

/* Release everything guest_memory_create made. */
void guest_memory_destroy(struct guest_memory *m);

/* Host pointer for guest-physical [gpa, gpa + len), or NULL unless the whole range lies in
 * one region (len 0 is refused too). Touching it may fault pages in (not from the fault
 * thread itself). */
void *guest_memory_ptr(const struct guest_memory *m, uint64_t gpa, uint64_t len);

/* Write @len bytes at @gpa through the map (plain memory: memcpy). 0 or -errno. */
int guest_memory_write(struct guest_memory *m, uint64_t gpa, const void *src, uint64_t len);

/*
 * Bring [gpa, gpa + len) of RAM into the guest's host memory now, as a guest write would
 * (with its cluster), so that the guest takes no fault for pages it is sure to touch first
 * (the image the loader wrote). Before the vCPUs run; a no-op where the kernel fills RAM.
 * 0 or -errno with a message.
 */
int guest_memory_prefault(struct guest_memory *m, uint64_t gpa, uint64_t len);

/* The region containing @gpa, or NULL. */
const struct guest_region *guest_memory_region(const struct guest_memory *m, uint64_t gpa);

/* Every region, in address order (*n of them): valid until the layout changes (which
 * happens only with the VM paused: guest_memory_allocate, guest_memory_deallocate). */
const struct guest_region *guest_memory_regions(const struct guest_memory *m, unsigned *n);

/* Bytes of RAM the guest was made with (cfg.ram_size; vm-allocate does not change it). */
uint64_t guest_memory_ram_size(const struct guest_memory *m);

/* The end of the highest region: guest-physical addresses in use are below it. */
uint64_t guest_memory_span(const struct guest_memory *m);

/* Whether guest memory is a Mach map (false before guest_memory_create), so that the map's
 * operations below (guest_memory_vm_*, guest_memory_freeze...) can be asked of it. */
bool guest_memory_mapped(const struct guest_memory *m);

/* The RAM regions, in address order, into @ram (*n of them); returns their bytes added up
 * (vm-allocate and vm-deallocate change it). With the VM paused. */
uint64_t guest_memory_ram_ranges(const struct guest_memory *m, struct guest_ram_range ram[GUEST_MEMORY_MAX_REGIONS],
				 unsigned *n);

/*
 * vm_allocate on the guest-physical space at run time: new zero-filled RAM at *gpa (or
 * anywhere, *gpa set), mapped read/write, served like the rest. The caller has the VM
 * paused and gives the new region a KVM memory slot (its slot field is set here).
 * 0 or -errno with a message (the Mach code named).
 */
int guest_memory_allocate(struct guest_memory *m, uint64_t *gpa, uint64_t size, bool anywhere);

/*
 * Mach's vm_deallocate at run time: [gpa, gpa + size) stops existing for the guest, whatever
 * backs it (RAM, a mapped file, an external pager's object, a stored snapshot's RAM); a
 * later access there is one outside guest memory. Holes are fine. In order, at one hold of
 * the domain lock:
 *  - the guest's changes to shared writable mappings within the range are written back to
 *    their files and pagers (as guest_memory_sync);
 *  - the map entries go (vm_map_deallocate): an object nothing else holds ends, an
 *    external pager's with its modified pages returned (data_return) and terminate;
 *  - the host range is reserved again as at the start, out of the userfaultfd, and the
 *    pmap forgets it (pmap_uffd_forget_range): memory allocated there later starts clean;
 *  - the regions shrink or split (a mapped region cut in its middle leaves two regions of
 *    the same object); the fault thread stops watching a pager no region maps any more.
 * What a mapping kept (its pager reference, its path, a stored snapshot's pin: the owner's
 * release) is let go once no region maps its pager and no object uses it (an object a
 * vm_copy of the mapping still reads through keeps it until that goes too).
 * The caller has the VM paused and brings the KVM slots in line with the regions.
 * 0, or -errno (kern_return_errno) with "vm_deallocate of [0xADDR, +0xSIZE): KERN_...[: why]",
 * the map unchanged:
 *   KERN_INVALID_ARGUMENT   unaligned address or size; a range that wraps
 *   KERN_INVALID_ADDRESS    beyond the guest-physical window
 *   KERN_RESOURCE_SHORTAGE  a cut would make more than GUEST_MEMORY_MAX_REGIONS regions
 *   KERN_MEMORY_ERROR       a shared mapping's changes could not be written back (why, as
 *                           guest_memory_sync says it): nothing is removed, so that they
 *                           stay readable; guest_memory_discard removes the range all the same
 * -EBUSY as GUEST_MEMORY_MONITOR_WAIT_MS. The pmap's -errno when pages could not be dropped:
 * the range is gone all the same.
 */
int guest_memory_deallocate(struct guest_memory *m, uint64_t gpa, uint64_t size);

/* guest_memory_deallocate without writing a shared mapping's changes back: for a mapping
 * whose pager is gone or whose file cannot take them, which guest_memory_deallocate refuses
 * to remove. The changes not written back are lost. */
int guest_memory_discard(struct guest_memory *m, uint64_t gpa, uint64_t size);

/*
 * Mach's calls on the guest-physical space, for the monitor (vm-protect, vm-inherit,
 * vm-read, vm-write): vm_map_protect (@set_max: the maximum protection), vm_map_inherit,
 * vm_map_read into @buf, vm_map_write from @buf (@size 0: nothing to write). Guest memory
 * must be mapped (guest_memory_mapped). 0, or -errno (kern_return_errno) with the message
 * "vm_protect of [0xADDR, +0xSIZE): KERN_...", or the pmap's failure to put pages in.
 */
int guest_memory_vm_protect(struct guest_memory *m, uint64_t addr, uint64_t size, bool set_max, vm_prot_t prot);
/* Longest a monitor call (the Mach calls above, vm_region, statistics) waits for guest
 * memory held by a fault that waits on a slow pager: then -EBUSY "guest memory is busy"
 * (statistics: mem.stats_busy 1 and the figures kept under the lock left out). */
#define GUEST_MEMORY_MONITOR_WAIT_MS 500

/* Longest guest_memory_create waits for an external pager's socket to accept it. */
#define GUEST_MEMORY_CONNECT_WAIT_MS 2000
int guest_memory_vm_inherit(struct guest_memory *m, uint64_t addr, uint64_t size, vm_inherit_t inheritance);
int guest_memory_vm_read(struct guest_memory *m, uint64_t addr, void *buf, uint64_t size);
int guest_memory_vm_write(struct guest_memory *m, uint64_t addr, const void *buf, uint64_t size);

/* What guest_memory_vm_map maps: a memory object and Mach's vm_map arguments past it. */
struct guest_memory_map_request {
	enum guest_region_kind kind; /* GUEST_REGION_FILE (the file pager), _EXTERNAL or _SNAPSHOT */
	const char *path;            /* the host file, the external pager's unix socket, or (snapshot)
					what names the object in messages */
	struct pager *pager;         /* GUEST_REGION_SNAPSHOT: the pager, held by @owner */
	void (*release)(void *owner); /* GUEST_REGION_SNAPSHOT: ends @owner (and its pager reference);
					 guest memory calls it once done with the pager: at
					 guest_memory_destroy after the map, or before a failed call returns */
	void *owner;
	uint64_t offset;             /* in the object, page aligned */
	uint64_t size;               /* bytes, page aligned, not 0; offset + size within the object */
	bool copy;                   /* the guest gets a copy of the object as it is now (its writes
					stay in the VM); else it shares it (writes reach the file/pager) */
	vm_prot_t cur, max;          /* protection and maximum protection */
	vm_inherit_t inheritance;
};

/*
 * Mach's vm_map at run time: map [offset, offset + size) of a memory object (@q: a host
 * file, an external pager's object, or a stored snapshot's RAM whose pager the caller
 * opened and hands over with @q->owner) into the
 * guest-physical space at *gpa (or anywhere: the lowest free range, *gpa set), a new region
 * served like the mapped files of the start (the host mapping opened in the reserved
 * window, registered with the userfaultfd; the caller has the VM paused and gives it a KVM
 * memory slot, its slot field set here: read-only when @q->max has no write). The file is
 * opened read/write only for a shared writable mapping; a copy, or a mapping without write,
 * asks the pager for no write-back. The snapshot base is let go (the layout changed).
 * 0, or -errno (kern_return_errno) with the message "vm_map of PATH at [0xADDR, +0xSIZE):
 * KERN_...[: why]":
 *   KERN_INVALID_ARGUMENT    unaligned address, offset or size; size 0; unknown kind,
 *                            protection or inheritance bits; no path (or, for a snapshot,
 *                            no pager); a file that cannot be opened or is not a regular
 *                            file with data, a pager that cannot be reached or refuses (the
 *                            reason after the code); offset + size beyond the object
 *   KERN_PROTECTION_FAILURE  cur above max; a shared writable mapping of an object that
 *                            cannot take writes (a file opened read-only, a read-only pager,
 *                            a stored snapshot)
 *   KERN_INVALID_ADDRESS     a fixed range beyond the guest-physical window
 *   KERN_NO_SPACE            a fixed range in use, or no room anywhere
 *   KERN_RESOURCE_SHORTAGE   guest memory has GUEST_MEMORY_MAX_REGIONS regions already, or
 *                            holds as many mapped objects (deallocated mappings whose objects
 *                            RAM copied from them still reads through: guest_memory_deallocate)
 * -ENOTSUP when RAM is left to the kernel (not in the map), -EBUSY as GUEST_MEMORY_MONITOR_WAIT_MS.
 * On failure nothing changed (a pager opened for the call is let go, @q->owner released).
 */
int guest_memory_vm_map(struct guest_memory *m, uint64_t *gpa, bool anywhere, const struct guest_memory_map_request *q);

/*
 * Mach's vm_copy on the guest-physical space: [dst, dst + size) becomes a copy of
 * [src, src + size) as it is now, copy-on-write (vm_map_copy: later writes to either side
 * are not seen by the other). Within one map, so no layout change. 0, or -errno with
 * "vm_copy of [0xSRC, +0xSIZE) to 0xDST: KERN_...": KERN_INVALID_ARGUMENT (unaligned,
 * wrapping), KERN_INVALID_ADDRESS (beyond the window, or not wholly mapped),
 * KERN_PROTECTION_FAILURE (source not readable, destination not writable).
 */
int guest_memory_vm_copy(struct guest_memory *m, uint64_t src, uint64_t size, uint64_t dst);

#define GUEST_MEMORY_CHAIN_MAX 64 /* objects of a shadow chain guest_memory_vm_region describes */

/* One object of a map entry's shadow chain, as guest_memory_vm_region describes it. */
struct guest_memory_object {
	uint64_t id, size;
	bool internal;                       /* anonymous memory (no pager of its own) */
	enum vm_copy_strategy copy_strategy;
	unsigned ref_count, shadow_count;
	uint64_t shadow_offset;
	uint64_t resident, paged;            /* pages resident, pages its pager holds */
	const char *pager;                   /* its pager's name, NULL: none */
	uint64_t faults, pageins, pageouts, cow_pages, zero_fills;
	bool base;                           /* the last stored snapshot's RAM (guest_memory_frozen_keep) */
	bool host_shared;                    /* resident once per host (the restored snapshot's segment): */
	uint64_t host_mappers;               /*   processes mapping it now, this one included */
	uint64_t host_resident;              /*   its pages resident on this host */
};

/* One entry of the guest-physical map (Mach's vm_region), with its object's chain. */
struct guest_memory_entry {
	vm_addr_t start, end;
	vm_prot_t protection, max_protection;
	vm_inherit_t inheritance;
	bool needs_copy, shared;
	enum vm_copy_strategy copy_strategy; /* the entry's attributes */
	unsigned cluster;
	enum vm_cache_mode cache;
	uint64_t offset;                     /* in its object */
	uint64_t resident;                   /* pages resident in its top object within it */
	unsigned depth;                      /* objects in its chain */
	unsigned nchain;                     /* of which described in chain[], top first */
	struct guest_memory_object chain[GUEST_MEMORY_CHAIN_MAX];
};

/* Called for each entry by guest_memory_vm_region, with the domain lock held: it may look
 * at the regions (guest_memory_region) but ask for no operation that takes the lock. */
typedef void guest_memory_entry_fn(void *arg, const struct guest_memory_entry *e);

/* Describe every entry of the map to @fn, in address order, then set *objects to the
 * objects alive in the domain (all at one hold of the lock). Guest memory must be mapped.
 * 0, or -EBUSY (see GUEST_MEMORY_MONITOR_WAIT_MS). */
int guest_memory_vm_region(struct guest_memory *m, guest_memory_entry_fn *fn, void *arg, uint64_t *objects);

/*
 * Mach's vm_region for one address (GNU Mach's codes): describe into @e the entry containing
 * *addr, or else the first one above it, and set *addr to its start. 0, or -errno with
 * "vm_region at 0xADDR: KERN_...": KERN_INVALID_ADDRESS (*addr beyond the guest-physical
 * window), KERN_NO_SPACE (no entry at or above *addr); -EBUSY (GUEST_MEMORY_MONITOR_WAIT_MS).
 */
int guest_memory_vm_region_at(struct guest_memory *m, uint64_t *addr, struct guest_memory_entry *e);

#define GUEST_MEMORY_STAT_UNKNOWN UINT64_MAX /* a vm_statistics field this VM cannot know */

/*
 * Mach's struct vm_statistics, field by field, for this VM's guest memory (its domain):
 *   pagesize         VM_PAGE_SIZE
 *   free_count       under a memory limit, pages that may still come in before page-out
 *                    starts (limit - resident); without one GUEST_MEMORY_STAT_UNKNOWN: the
 *                    host's free memory bounds it, which the VM does not own
 *   active_count     resident pages (one page-out clock, not two queues: all are active)
 *   inactive_count   0: there is no inactive queue (the clock's reference bit plays its part)
 *   wire_count       0: no page is wired (any may be paged out under a limit)
 *   zero_fill_count, pageins, pageouts, faults, cow_faults, lookups, hits: the core's
 *                    counters of those names (vm_domain.h)
 *   reactivations    pages the page-out clock found used again and spared
 * 0, or -EBUSY (GUEST_MEMORY_MONITOR_WAIT_MS).
 */
struct guest_memory_vm_statistics {
	uint64_t pagesize, free_count, active_count, inactive_count, wire_count, zero_fill_count, reactivations,
		pageins, pageouts, faults, cow_faults, lookups, hits;
};
int guest_memory_vm_statistics(struct guest_memory *m, struct guest_memory_vm_statistics *out);

#define GUEST_MEMORY_ATTR_KEEP (-1) /* guest_memory_attributes: leave this attribute as it is */

/* The attributes guest_memory_vm_set_attributes sets; GUEST_MEMORY_ATTR_KEEP for each left alone. */
struct guest_memory_attributes {
	int cluster;       /* pages one fault resolves, 1..VM_CLUSTER_MAX */
	int copy_strategy; /* enum vm_copy_strategy */
	int cache;         /* enum vm_cache_mode */
};

/*
 * Mach's vm_set_attributes (vm_map_set_attr): set the cluster size, copy strategy and cache
 * mode of the entries of [addr, addr + size) (wholly mapped). Faults from now on use the
 * new cluster; copies made from now on the new strategy. Every value is checked before any
 * changes. 0, or -errno with "vm_set_attributes of [0xADDR, +0xSIZE): KERN_...":
 * KERN_INVALID_ARGUMENT (unaligned, a value out of range, nothing to set),
 * KERN_INVALID_ADDRESS (not wholly mapped); -EBUSY (GUEST_MEMORY_MONITOR_WAIT_MS).
 */
int guest_memory_vm_set_attributes(struct guest_memory *m, uint64_t addr, uint64_t size,
				   const struct guest_memory_attributes *a);

/* A map entry's protections and inheritance: what a saved VM state keeps of the map. */
struct guest_map_entry {
	vm_addr_t start, end;
	vm_prot_t protection, max_protection;
	vm_inherit_t inheritance;
};

/* The map's entries in address order into @e (*n of them, at most @max). 0, or -E2BIG with
 * the message "the map has more than MAX entries; a snapshot keeps at most that many". */
int guest_memory_entries(struct guest_memory *m, struct guest_map_entry *e, unsigned max, unsigned *n);

/* Give the map the protections (maximum, then current) and inheritance of entries @e of a
 * saved VM state (untrusted), after guest_memory_create with its RAM ranges. 0, -EINVAL with
 * "VM state's map entry I does not fit the restored memory: KERN_...", or the pmap's -errno. */
int guest_memory_apply_entries(struct guest_memory *m, const struct guest_map_entry *e, unsigned n);

struct vm_map_copy;

/* Guest RAM frozen by guest_memory_freeze: one copy per RAM region. */
struct guest_memory_frozen {
	struct vm_map_copy *copy[GUEST_MEMORY_MAX_REGIONS];   /* the frozen objects (mmu's) */
	struct guest_region region[GUEST_MEMORY_MAX_REGIONS]; /* as they were at the freeze */
	unsigned n;
};

/* Whether guest_memory_freeze can take @m's RAM: 0, or -ENOTSUP with a message (mapped
 * files or external pagers, RAM left to the kernel's zero fill). */
int guest_memory_can_freeze(const struct guest_memory *m);

/*
 * Freeze every RAM region (vm_map_copyin: its object frozen and shadowed, its pages
 * write-protected in guest RAM) into @f, at one hold of the domain lock; the vCPUs must be
 * paused. *protected: pages it had to write-protect (not pre-armed: guest_memory_prearm).
 * 0 or -errno with a message; on failure @f holds the regions frozen before it, for
 * guest_memory_frozen_discard.
 */
int guest_memory_freeze(struct guest_memory *m, struct guest_memory_frozen *f, uint64_t *protected);

/* Let the frozen copies go (the chains collapse back as the guest writes); f->n becomes 0. */
void guest_memory_frozen_discard(struct guest_memory *m, struct guest_memory_frozen *f);

/* Called by guest_memory_frozen_pages without the domain lock with @n pages gathered:
 * page @pindex[i] of guest-physical space holds @bytes[i]; @examined pages of frozen RAM
 * were looked at for them. Nonzero stops the walk and is returned. */
typedef int guest_memory_pages_fn(void *arg, const uint64_t *pindex, const uint8_t (*bytes)[VM_PAGE_SIZE],
				  unsigned n, uint64_t examined);

/* Which pages of frozen RAM a snapshot lists: what the parent it names does not have. */
enum guest_memory_since {
	GUEST_MEMORY_SINCE_NOTHING, /* every page (no parent) */
	GUEST_MEMORY_SINCE_RESTORE, /* those above the object the VM was restored from */
	GUEST_MEMORY_SINCE_BASE,    /* those above the last stored snapshot (guest_memory_frozen_keep) */
};

/* Whether a base is kept (guest_memory_frozen_keep): GUEST_MEMORY_SINCE_BASE can be asked. */
bool guest_memory_has_base(struct guest_memory *m);

/* Whether RAM was allocated or deallocated, or an object mapped, since create: then
 * GUEST_MEMORY_SINCE_RESTORE cannot be asked (a region made or cut since would let the
 * restored snapshot's bytes show through where the guest has none). With the VM paused or from the thread that changes
 * the layout. */
bool guest_memory_layout_changed(const struct guest_memory *m);

/*
 * Hand the pages of @f the guest has to @fn, in page order, @chunk pages of frozen RAM
 * looked at per hold of the domain lock, so that the guest's faults (its copy-on-writes of
 * frozen pages above all) are served in between. @since: which pages (see above).
 * 0, @fn's nonzero, or -errno with a message.
 */
int guest_memory_frozen_pages(struct guest_memory *m, const struct guest_memory_frozen *f, enum guest_memory_since since,
			      unsigned chunk, guest_memory_pages_fn *fn, void *arg);

/*
 * The snapshot of @f is stored: instead of letting the frozen copies go (as
 * guest_memory_frozen_discard), keep them as the base of the next snapshot (mmu's snapshot
 * bases, vm_object.h), so that it lists only the pages written from now on
 * (GUEST_MEMORY_SINCE_BASE). Where a base is kept already, the pages written since it move
 * down into it: the cost is the pages written in between, and the guest's chains stay two
 * objects deep. Pages written after this are held once (the base's copy is freed when the
 * guest copies a page up). f->n becomes 0. 0, or -errno with a message when no base could
 * be kept (the copies are let go and the next snapshot lists every page).
 */
int guest_memory_frozen_keep(struct guest_memory *m, struct guest_memory_frozen *f);

/* Keep no base: the next snapshot lists every page (its parent is not the last one). */
void guest_memory_release_base(struct guest_memory *m);

/* Why @m cannot be forked (a sentence), or NULL: mapped files or external pagers. */
const char *guest_memory_fork_refusal(const struct guest_memory *m);

/*
 * Before a fork (the VM paused): every range of RAM inherited "share" becomes host memory
 * shared by this process and its forks (Mach's VM_INHERIT_SHARE across VMs): its bytes go
 * into a memfd mapped MAP_SHARED where the range was, a region of kind
 * GUEST_REGION_HOST_SHARED that the kernel serves (fork(2) keeps it shared, KVM maps it in
 * each VM: a write is seen by all at once). The map keeps an entry there, inherited "share",
 * without access (the guest reaches the memory through KVM, vm-read and vm-write through
 * the region), so that nothing else is allocated there and "none" still leaves it out of
 * later forks, and "copy" makes it each later child's own again
 * (guest_memory_apply_inheritance). Such memory is not paged out (it is not counted under a
 * memory limit) and not snapshotted. The caller brings KVM's slots in line. The number of
 * ranges made shared (0: nothing changed), or -errno with a message (the range that failed
 * is RAM as it was).
 */
int guest_memory_share_inherited(struct guest_memory *m);

/* Copy [gpa, gpa + size) of guest memory, through the map, into @fd from offset 0 (@out;
 * zero pages left holes), or back from it (!@out). 0 or -errno with a message. */
int guest_memory_copy_range(struct guest_memory *m, uint64_t gpa, uint64_t size, int fd, bool out);

/*
 * Hold the fault thread between faults until guest_memory_release_faults (the domain lock
 * held): what fork(2) of the VMM needs, so that the child's copy of the core is consistent
 * (guest_memory_reattach starts the child's lock afresh). Nothing else of guest memory may
 * be asked meanwhile by this thread. The swap file, if any, is made ready to be shared by
 * the processes of the fork (default_pager_share_slots). 0, or -errno with a message and
 * nothing held.
 */
int guest_memory_hold_faults(struct guest_memory *m);
void guest_memory_release_faults(struct guest_memory *m);

/* Mach's fork in the child: the entries inherited "none" stop existing (as
 * guest_memory_deallocate), and a range shared with forks (guest_memory_share_inherited)
 * whose entry is inherited "copy" now becomes RAM of the child's own holding what it held;
 * the caller brings the KVM slots in line. 0 or -errno with a message. */
int guest_memory_apply_inheritance(struct guest_memory *m);

/* Report every statistic as a flat dotted key and a number (mem.*, object.<id>.*, dedup.*).
 * The fault-latency histogram is mem.fault_latency_ns.lt_N (faults served in less than N
 * ns, N = 2, 4, ... 2^32), every bucket each time, empty ones as 0. */
void guest_memory_stats(struct guest_memory *m, void (*emit)(void *arg, const char *key, uint64_t value),
			void *arg);

#endif

/*
 * userfaultfd: the host half of demand paging. Guest RAM registered here faults to the
 * VMM's fault thread instead of being filled by the kernel; the thread answers with
 * uffd_copy (data), uffd_zeropage or uffd_wake. Only vmm/ uses this.
 */
#ifndef VMM_UFFD_H
#define VMM_UFFD_H

#include <linux/userfaultfd.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Newer than the Linux 6.1 headers this project builds with. */
#ifndef UFFD_FEATURE_WP_UNPOPULATED
#define UFFD_FEATURE_WP_UNPOPULATED (1 << 13) /* Linux 6.4: WP also covers unpopulated anonymous memory */
#endif
#ifndef UFFDIO_CONTINUE_MODE_WP
#define UFFDIO_CONTINUE_MODE_WP (1 << 1) /* Linux 6.4: map the page write-protected */
#endif

/* What a registration catches (uffd_register). */
#define UFFD_CATCH_MISSING 0x1u /* pages absent (anonymous memory; a segment's holes) */
#define UFFD_CATCH_WP 0x2u      /* writes to write-protected pages */
#define UFFD_CATCH_MINOR 0x4u   /* a segment's pages present in it but not mapped here (shmem) */
/* The features a userfaultfd needs for memory mapped from a shmem segment (MAP_PRIVATE of a
 * memfd): missing and minor faults there, write-protection there (Linux 5.19). */
#define UFFD_SEGMENT_FEATURES (UFFD_FEATURE_MISSING_SHMEM | UFFD_FEATURE_MINOR_SHMEM | UFFD_FEATURE_WP_HUGETLBFS_SHMEM)

struct uffd {
	int fd;            /* -1 when closed */
	uint64_t features; /* UFFD_FEATURE_* granted by UFFDIO_API */
	uint64_t ioctls;   /* UFFDIO_* ioctls of the last registration */
};

/*
 * Open a userfaultfd through /dev/userfaultfd (USERFAULTFD_IOC_NEW), falling back to the
 * userfaultfd(2) syscall, and negotiate @features (all must be granted; optional ones can be
 * asked for with uffd_open again). The fd sees faults taken by KVM (not user-mode-only).
 * Returns 0 or -errno with a message that says how to enable userfaultfd.
 */
int uffd_open(struct uffd *u, uint64_t features);

void uffd_close(struct uffd *u);

/* Register [addr, addr + len) for the faults in @catch (UFFD_CATCH_*). */
int uffd_register(struct uffd *u, void *addr, size_t len, unsigned catch);

/*
 * Fill missing pages [dst, dst + len) with a copy of @src and wake the faulting threads.
 * @wp installs them write-protected. Returns 0; or -EEXIST when a page is already present,
 * with *done = bytes filled before it (that page and the rest are untouched); or -errno.
 */
int uffd_copy(struct uffd *u, void *dst, const void *src, size_t len, bool wp, size_t *done);

/*
 * Map the pages [dst, dst + len) from the file behind this private mapping (they are in its
 * page cache: a minor fault, or filled since a missing one) and wake the faulting threads;
 * @wp maps them write-protected. The guest then reads the file's page; a write copies it.
 * Returns 0; or -EEXIST when a page is mapped already, with *done = bytes mapped before it;
 * or -errno (-EFAULT: a page is not in the file).
 */
int uffd_continue(struct uffd *u, void *dst, size_t len, bool wp, size_t *done);

/*
 * Whether @u's kernel takes UFFDIO_CONTINUE_MODE_WP (Linux 6.4), which memory mapped from a
 * segment needs: without it a page mapped from the segment could be written by another
 * vCPU between the mapping and its write-protection, unseen (pmap_uffd.h). Asked of a page
 * no userfaultfd registered: a kernel that knows the mode refuses with ENOENT (no such
 * range), one that does not with EINVAL (the mode) before it looks.
 */
bool uffd_can_continue_wp(struct uffd *u);

/* Map the shared zero page over missing pages [dst, dst + len) and wake. */
int uffd_zeropage(struct uffd *u, void *dst, size_t len);

/* Wake threads waiting on [addr, addr + len) (after the pages were filled another way). */
int uffd_wake(struct uffd *u, void *addr, size_t len);

/* Write-protect (@protect) or unprotect-and-wake [addr, addr + len). */
int uffd_writeprotect(struct uffd *u, void *addr, size_t len, bool protect);

#endif

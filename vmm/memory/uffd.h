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

/* Register [addr, addr + len) for missing-page faults and, with @wp, write-protect faults. */
int uffd_register(struct uffd *u, void *addr, size_t len, bool wp);

/*
 * Fill missing pages [dst, dst + len) with a copy of @src and wake the faulting threads.
 * @wp installs them write-protected. Returns 0; or -EEXIST when a page is already present,
 * with *done = bytes filled before it (that page and the rest are untouched); or -errno.
 */
int uffd_copy(struct uffd *u, void *dst, const void *src, size_t len, bool wp, size_t *done);

/* Map the shared zero page over missing pages [dst, dst + len) and wake. */
int uffd_zeropage(struct uffd *u, void *dst, size_t len);

/* Wake threads waiting on [addr, addr + len) (after the pages were filled another way). */
int uffd_wake(struct uffd *u, void *addr, size_t len);

/* Write-protect (@protect) or unprotect-and-wake [addr, addr + len). */
int uffd_writeprotect(struct uffd *u, void *addr, size_t len, bool protect);

#endif

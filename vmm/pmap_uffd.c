#include "vmm/pmap_uffd.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "vmm/error.h"

#define PMAP_UFFD_RUN_BYTES (VM_CLUSTER_MAX * VM_PAGE_SIZE)

int pmap_uffd_init(struct pmap_uffd *p, struct uffd *uffd, uint8_t *base, uint64_t size)
{
	memset(p, 0, sizeof(*p));
	p->uffd = uffd;
	p->base = base;
	p->size = size;
	p->stage = aligned_alloc(VM_PAGE_SIZE, PMAP_UFFD_RUN_BYTES);
	/* The source of zero fills, mapped to the shared zero page up front: read by the kernel
	 * page by page it would cost a page fault each. */
	p->zero = mmap(NULL, PMAP_UFFD_RUN_BYTES, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
	if (p->zero == MAP_FAILED)
		p->zero = NULL;
	if (!p->stage || !p->zero) {
		pmap_uffd_fini(p);
		return -ENOMEM;
	}
	return 0;
}

void pmap_uffd_fini(struct pmap_uffd *p)
{
	free(p->stage);
	if (p->zero)
		munmap((void *)p->zero, PMAP_UFFD_RUN_BYTES);
	p->stage = NULL;
	p->zero = NULL;
}

int pmap_uffd_add_readonly(struct pmap_uffd *p, vm_addr_t start, vm_addr_t end)
{
	if (p->nreadonly == sizeof(p->readonly) / sizeof(p->readonly[0]))
		return -ENOSPC;
	p->readonly[p->nreadonly].start = start;
	p->readonly[p->nreadonly++].end = end;
	return 0;
}

/* True when the guest can only read [start, end) (it lies in one read-only slot). */
static bool pmap_uffd_guest_readonly(const struct pmap_uffd *p, vm_addr_t start, vm_addr_t end)
{
	for (unsigned i = 0; i < p->nreadonly; i++)
		if (start >= p->readonly[i].start && end <= p->readonly[i].end)
			return true;
	return false;
}

static void pmap_uffd_drop(struct pmap_uffd *p, vm_addr_t start, vm_addr_t end)
{
	if (madvise(p->base + start, end - start, MADV_DONTNEED) != 0 && !p->error)
		p->error = error_set_errno(errno, "cannot drop guest pages [0x%llx, 0x%llx)",
					   (unsigned long long)start, (unsigned long long)end);
	p->stats.removes++;
}

/* Copy [src, src + len) to guest-physical @va; pages already there are replaced. */
static void pmap_uffd_copy(struct pmap_uffd *p, vm_addr_t va, const uint8_t *src, size_t len, bool wp)
{
	size_t off = 0;
	while (off < len) {
		size_t done;
		int r = uffd_copy(p->uffd, p->base + va + off, src + off, len - off, wp, &done);
		p->stats.copies++;
		p->stats.pages_copied += done / VM_PAGE_SIZE;
		off += done;
		if (r == -EEXIST) {
			/* Something is there (the core replaces it, or bytes the VMM wrote before the
			 * guest ran): drop that page and go on. */
			pmap_uffd_drop(p, va + off, va + off + VM_PAGE_SIZE);
			p->stats.replaced++;
		} else if (r) {
			if (!p->error)
				p->error = error_set(-r, "cannot fill guest pages at 0x%llx: %s",
						     (unsigned long long)(va + off), strerror(-r));
			return;
		}
	}
}

/* Copy the staged run in; a failure is kept in p->error for update() to report. */
static void pmap_uffd_flush_run(struct pmap_uffd *p)
{
	if (!p->run_pages)
		return;
	size_t len = (size_t)p->run_pages * VM_PAGE_SIZE;
	bool wp = !(p->run_prot & VM_PROT_WRITE) && !pmap_uffd_guest_readonly(p, p->run_start, p->run_start + len);
	pmap_uffd_copy(p, p->run_start, p->run_zero ? p->zero : p->stage, len, wp);
	if (p->run_zero)
		p->stats.zero_pages += p->run_pages;
	p->run_pages = 0;
}

int pmap_uffd_flush(struct pmap_uffd *p)
{
	pmap_uffd_flush_run(p);
	int r = p->error;
	p->error = 0;
	return r;
}

static int pmap_uffd_enter(void *arg, vm_addr_t va, const void *src, vm_prot_t prot)
{
	struct pmap_uffd *p = arg;
	if (va >= p->size)
		return -EFAULT;
	bool zero = src == NULL;
	bool extends = p->run_pages && p->run_pages < VM_CLUSTER_MAX &&
		       va == p->run_start + p->run_pages * VM_PAGE_SIZE && prot == p->run_prot && zero == p->run_zero;
	if (!extends) {
		pmap_uffd_flush_run(p);
		p->run_start = va;
		p->run_prot = prot;
		p->run_zero = zero;
	}
	if (!zero)
		memcpy(p->stage + (size_t)p->run_pages * VM_PAGE_SIZE, src, VM_PAGE_SIZE);
	p->run_pages++;
	return 0;
}

static void pmap_uffd_remove(void *arg, vm_addr_t start, vm_addr_t end)
{
	struct pmap_uffd *p = arg;
	pmap_uffd_flush_run(p);
	pmap_uffd_drop(p, start, end);
}

static void pmap_uffd_protect(void *arg, vm_addr_t start, vm_addr_t end, vm_prot_t prot)
{
	struct pmap_uffd *p = arg;
	pmap_uffd_flush_run(p);
	if (!(prot & VM_PROT_READ)) {
		pmap_uffd_drop(p, start, end);
		return;
	}
	if (pmap_uffd_guest_readonly(p, start, end))
		return; /* KVM keeps the guest from writing; the host mapping stays writable */
	int r = uffd_writeprotect(p->uffd, p->base + start, end - start, !(prot & VM_PROT_WRITE));
	p->stats.protects++;
	if (r && !p->error)
		p->error = error_set(-r, "cannot change protection of guest pages [0x%llx, 0x%llx): %s",
				     (unsigned long long)start, (unsigned long long)end, strerror(-r));
}

static void pmap_uffd_read(void *arg, vm_addr_t va, void *dst)
{
	struct pmap_uffd *p = arg;
	pmap_uffd_flush_run(p);
	/* Entered pages are present: this never faults (which would wait on this very thread). */
	memcpy(dst, p->base + va, VM_PAGE_SIZE);
}

static void pmap_uffd_update(void *arg)
{
	struct pmap_uffd *p = arg;
	pmap_uffd_flush_run(p);
}

const struct pmap_ops pmap_uffd_ops = {
	.enter = pmap_uffd_enter,
	.protect = pmap_uffd_protect,
	.remove = pmap_uffd_remove,
	.read = pmap_uffd_read,
	.clear_modify = NULL, /* every page entered writable counts as modified */
	.update = pmap_uffd_update,
};

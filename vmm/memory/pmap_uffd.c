#include "vmm/memory/pmap_uffd.h"

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
	/* The source of zero fills; mapped to the shared zero page at the first (see
	 * pmap_uffd_flush_run), not here: populating it takes 0.15 ms, and guest start-up
	 * waits for this thread. */
	p->zero = mmap(NULL, PMAP_UFFD_RUN_BYTES, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p->zero == MAP_FAILED)
		p->zero = NULL;
	/* 32 MiB of address space for a 1 TiB window; only the words of pages ever marked get
	 * memory (all zero: nothing is taken for guarded at first). */
	size_t words = (size_t)((size >> VM_PAGE_SHIFT) + 63) / 64;
	p->guarded_bytes = (words * sizeof(uint64_t) + VM_PAGE_SIZE - 1) & ~(size_t)VM_PAGE_MASK;
	p->guarded = mmap(NULL, p->guarded_bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
			  -1, 0);
	if (p->guarded == MAP_FAILED)
		p->guarded = NULL;
	if (!p->stage || !p->zero || !p->guarded) {
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
	if (p->guarded)
		munmap(p->guarded, p->guarded_bytes);
	p->stage = NULL;
	p->zero = NULL;
	p->guarded = NULL;
}

/* ---- guarded pages (see pmap_uffd.h) --------------------------------------------------- */

/* Mark the pages of [start, end) guarded or not. Words that do not change are not written
 * (a write would give an untouched part of the bitmap memory). */
static void pmap_uffd_mark(struct pmap_uffd *p, vm_addr_t start, vm_addr_t end, bool guarded)
{
	if (end > p->size)
		end = p->size;
	uint64_t pn = start >> VM_PAGE_SHIFT, last = end >> VM_PAGE_SHIFT;
	while (pn < last) {
		uint64_t bit = pn % 64, n = last - pn < 64 - bit ? last - pn : 64 - bit;
		uint64_t mask = (n == 64 ? ~0ull : (1ull << n) - 1) << bit;
		uint64_t *w = &p->guarded[pn / 64];
		uint64_t v = guarded ? *w | mask : *w & ~mask;
		if (v != *w)
			*w = v;
		pn += n;
	}
}

/* The first page of [pn, last) whose bit is @guarded, or @last. */
static uint64_t pmap_uffd_scan(const struct pmap_uffd *p, uint64_t pn, uint64_t last, bool guarded)
{
	while (pn < last) {
		uint64_t w = p->guarded[pn / 64];
		w = (guarded ? w : ~w) & (~0ull << (pn % 64));
		if (w) {
			uint64_t at = (pn & ~63ull) + (uint64_t)__builtin_ctzll(w);
			return at < last ? at : last;
		}
		pn = (pn | 63) + 1;
	}
	return last;
}

/* Write-protect [start, end) and mark it guarded; a failure is kept in p->error and leaves
 * the bits alone. */
static int pmap_uffd_wp(struct pmap_uffd *p, vm_addr_t start, vm_addr_t end)
{
	int r = uffd_writeprotect(p->uffd, p->base + start, end - start, true);
	p->stats.protects++;
	if (r) {
		if (!p->error)
			p->error = error_set(-r, "cannot write-protect guest pages [0x%llx, 0x%llx): %s",
					     (unsigned long long)start, (unsigned long long)end, strerror(-r));
		return r;
	}
	p->stats.protected_pages += (end - start) >> VM_PAGE_SHIFT;
	pmap_uffd_mark(p, start, end, true);
	return 0;
}

static int pmap_uffd_ranges_add(struct pmap_uffd_ranges *r, vm_addr_t start, vm_addr_t end)
{
	if (r->n == sizeof(r->range) / sizeof(r->range[0]))
		return -ENOSPC;
	r->range[r->n].start = start;
	r->range[r->n++].end = end;
	return 0;
}

/* Take [start, end) out of @r's ranges (see pmap_uffd_forget_range: a range cut in its
 * middle keeps its upper piece only while there is room). */
static void pmap_uffd_ranges_cut(struct pmap_uffd_ranges *r, vm_addr_t start, vm_addr_t end)
{
	for (unsigned i = 0; i < r->n; i++) {
		vm_addr_t s = r->range[i].start, e = r->range[i].end;
		if (end <= s || e <= start)
			continue;
		if (start > s && end < e) {
			r->range[i].end = start;
			(void)pmap_uffd_ranges_add(r, end, e);
		} else if (start > s) {
			r->range[i].end = start;
		} else if (end < e) {
			r->range[i].start = end;
		} else {
			r->range[i--] = r->range[--r->n];
		}
	}
}

/* True when [start, end) lies within one of @r's ranges. */
static bool pmap_uffd_ranges_cover(const struct pmap_uffd_ranges *r, vm_addr_t start, vm_addr_t end)
{
	for (unsigned i = 0; i < r->n; i++)
		if (start >= r->range[i].start && end <= r->range[i].end)
			return true;
	return false;
}

int pmap_uffd_add_segment(struct pmap_uffd *p, vm_addr_t start, vm_addr_t end)
{
	return pmap_uffd_ranges_add(&p->segment, start, end);
}

int pmap_uffd_add_readonly(struct pmap_uffd *p, vm_addr_t start, vm_addr_t end)
{
	return pmap_uffd_ranges_add(&p->readonly, start, end);
}

/* True when the guest can only read [start, end) (it lies in one read-only slot). */
static bool pmap_uffd_guest_readonly(const struct pmap_uffd *p, vm_addr_t start, vm_addr_t end)
{
	return pmap_uffd_ranges_cover(&p->readonly, start, end);
}

static void pmap_uffd_drop(struct pmap_uffd *p, vm_addr_t start, vm_addr_t end)
{
	bool gone = madvise(p->base + start, end - start, MADV_DONTNEED) == 0;
	if (!gone && !p->error)
		p->error = error_set_errno(errno, "cannot drop guest pages [0x%llx, 0x%llx)",
					   (unsigned long long)start, (unsigned long long)end);
	/* Not present, the pages fault whatever the access until entered again. */
	pmap_uffd_mark(p, start, end, gone);
	p->stats.removes++;
}

/*
 * Put [va, va + len) in from @src, or with @shared from the segment mapped there (see
 * pmap_uffd.h); pages already there are replaced. A page the segment cannot give (not in
 * it after all, memory not mapped from one) is copied from @src instead: the guest then
 * holds it privately, which is always right, only not shared.
 */
static void pmap_uffd_fill(struct pmap_uffd *p, vm_addr_t va, const uint8_t *src, size_t len, bool wp, bool shared)
{
	size_t off = 0;
	while (off < len) {
		size_t done;
		int r;
		if (shared) {
			r = uffd_continue(p->uffd, p->base + va + off, len - off, wp, &done);
			p->stats.continues++;
			p->stats.pages_continued += done / VM_PAGE_SIZE;
		} else {
			r = uffd_copy(p->uffd, p->base + va + off, src + off, len - off, wp, &done);
			p->stats.copies++;
			p->stats.pages_copied += done / VM_PAGE_SIZE;
		}
		pmap_uffd_mark(p, va + off, va + off + done, wp);
		off += done;
		if (r == -EEXIST) {
			/* Something is there (the core replaces it, bytes the VMM wrote before the
			 * guest ran, or a segment page the kernel mapped by itself): drop that page
			 * and go on. */
			pmap_uffd_drop(p, va + off, va + off + VM_PAGE_SIZE);
			p->stats.replaced++;
		} else if (r && shared) {
			shared = false;
			p->stats.continue_fallbacks++;
		} else if (r) {
			if (!p->error)
				p->error = error_set(-r, "cannot fill guest pages at 0x%llx: %s",
						     (unsigned long long)(va + off), strerror(-r));
			return;
		}
	}
}

/* Copy the staged run in; a failure is kept in p->error for update() (or pmap_uffd_flush)
 * to report. */
static void pmap_uffd_flush_run(struct pmap_uffd *p)
{
	if (!p->run_pages)
		return;
	size_t len = (size_t)p->run_pages * VM_PAGE_SIZE;
	bool wp = !(p->run_prot & VM_PROT_WRITE) && !pmap_uffd_guest_readonly(p, p->run_start, p->run_start + len);
	/* The zero source in page tables at once: read by the kernel page by page it would
	 * cost a page fault each. Without MADV_POPULATE_READ (Linux 5.14) it is just slower. */
	if (p->run_zero && !p->zero_mapped) {
		(void)madvise((void *)p->zero, PMAP_UFFD_RUN_BYTES, MADV_POPULATE_READ);
		p->zero_mapped = true;
	}
	pmap_uffd_fill(p, p->run_start, p->run_zero ? p->zero : p->stage, len, wp, p->run_shared);
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

static int pmap_uffd_enter(void *arg, vm_addr_t va, const void *src, vm_prot_t prot, unsigned flags)
{
	struct pmap_uffd *p = arg;
	if (va >= p->size)
		return -EFAULT;
	bool zero = src == NULL;
	bool shared = (flags & PMAP_BACKEND_HOST_RESIDENT) && !zero &&
		      pmap_uffd_ranges_cover(&p->segment, va, va + VM_PAGE_SIZE);
	bool extends = p->run_pages && p->run_pages < VM_CLUSTER_MAX &&
		       va == p->run_start + p->run_pages * VM_PAGE_SIZE && prot == p->run_prot && zero == p->run_zero &&
		       shared == p->run_shared;
	if (!extends) {
		pmap_uffd_flush_run(p);
		p->run_start = va;
		p->run_prot = prot;
		p->run_zero = zero;
		p->run_shared = shared;
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
	if (prot & VM_PROT_WRITE) {
		/* Unprotecting also wakes the threads waiting on a write-protect fault there. */
		int r = uffd_writeprotect(p->uffd, p->base + start, end - start, false);
		p->stats.protects++;
		pmap_uffd_mark(p, start, end, false);
		if (r && !p->error)
			p->error = error_set(-r, "cannot unprotect guest pages [0x%llx, 0x%llx): %s",
					     (unsigned long long)start, (unsigned long long)end, strerror(-r));
		return;
	}
	/* Only the runs not guarded yet: a freeze after a pre-arm protects what the guest wrote
	 * since, not the whole of its memory again. */
	uint64_t pn = start >> VM_PAGE_SHIFT, last = end >> VM_PAGE_SHIFT;
	while (pn < last) {
		uint64_t a = pmap_uffd_scan(p, pn, last, false);
		p->stats.guarded_skips += a - pn;
		if (a == last)
			break;
		pn = pmap_uffd_scan(p, a, last, true);
		pmap_uffd_wp(p, a << VM_PAGE_SHIFT, pn << VM_PAGE_SHIFT);
	}
}

static void pmap_uffd_read(void *arg, vm_addr_t va, void *dst)
{
	struct pmap_uffd *p = arg;
	pmap_uffd_flush_run(p);
	/* Entered pages are present: this never faults (which would wait on this very thread). */
	memcpy(dst, p->base + va, VM_PAGE_SIZE);
}

/* The end of a fault: what it staged goes in, and its failure (or that of a protect or
 * remove since) becomes the fault's (pmap.h). */
static int pmap_uffd_update(void *arg)
{
	return pmap_uffd_flush(arg);
}

int pmap_uffd_prearm(struct pmap_uffd *p, vm_addr_t start, vm_addr_t end, uint64_t max_pages, vm_addr_t *next,
		     uint64_t *armed)
{
	pmap_uffd_flush_run(p); /* staged pages are not in yet: their bits say so only once they are */
	uint64_t pn = start >> VM_PAGE_SHIFT, last = (end < p->size ? end : p->size) >> VM_PAGE_SHIFT, n = 0;
	int r = 0;
	while (pn < last && n < max_pages) {
		uint64_t a = pmap_uffd_scan(p, pn, last, false);
		if (a == last) {
			pn = last;
			break;
		}
		uint64_t b = pmap_uffd_scan(p, a, last, true);
		if (b - a > max_pages - n)
			b = a + (max_pages - n);
		r = pmap_uffd_wp(p, a << VM_PAGE_SHIFT, b << VM_PAGE_SHIFT);
		if (r) {
			r = p->error;
			p->error = 0;
			pn = a;
			break;
		}
		n += b - a;
		pn = b;
	}
	p->stats.prearmed_pages += n;
	*next = pn << VM_PAGE_SHIFT;
	*armed = n;
	return r;
}

uint64_t pmap_uffd_unguarded(const struct pmap_uffd *p, vm_addr_t start, vm_addr_t end)
{
	uint64_t pn = start >> VM_PAGE_SHIFT, last = (end < p->size ? end : p->size) >> VM_PAGE_SHIFT, n = 0;
	while (pn < last) {
		uint64_t a = pmap_uffd_scan(p, pn, last, false);
		pn = pmap_uffd_scan(p, a, last, true);
		n += pn - a;
	}
	return n;
}

int pmap_uffd_unguard(struct pmap_uffd *p, vm_addr_t va)
{
	pmap_uffd_flush_run(p);
	int r = uffd_writeprotect(p->uffd, p->base + va, VM_PAGE_SIZE, false);
	p->stats.protects++;
	p->stats.unguards++;
	pmap_uffd_mark(p, va, va + VM_PAGE_SIZE, false);
	if (r)
		return error_set(-r, "cannot unprotect guest page 0x%llx: %s", (unsigned long long)va, strerror(-r));
	return 0;
}

void pmap_uffd_forget(struct pmap_uffd *p)
{
	/* A private anonymous mapping reads zero again after MADV_DONTNEED. */
	if (madvise(p->guarded, p->guarded_bytes, MADV_DONTNEED) != 0)
		memset(p->guarded, 0, p->guarded_bytes);
}

void pmap_uffd_forget_range(struct pmap_uffd *p, vm_addr_t start, vm_addr_t end)
{
	pmap_uffd_flush_run(p);
	pmap_uffd_ranges_cut(&p->readonly, start, end);
	pmap_uffd_ranges_cut(&p->segment, start, end);
	pmap_uffd_mark(p, start, end, false);
}

const struct pmap_ops pmap_uffd_ops = {
	.enter = pmap_uffd_enter,
	.protect = pmap_uffd_protect,
	.remove = pmap_uffd_remove,
	.read = pmap_uffd_read,
	.clear_modify = NULL, /* every page entered writable counts as modified */
	.update = pmap_uffd_update,
};

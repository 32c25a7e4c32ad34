/* The flat-buffer pmap backend. See pmap_flat.h. */
#include "mmu/pmap_flat.h"

#include <assert.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

static inline size_t flat_page(const struct pmap_flat *f, vm_addr_t va)
{
	return (size_t)((va - f->base) >> VM_PAGE_SHIFT);
}

/* Clip [start, end) to the buffer; false when nothing is left. */
static bool flat_clip(const struct pmap_flat *f, vm_addr_t *start, vm_addr_t *end)
{
	if (*start < f->base)
		*start = f->base;
	if (*end > f->base + f->size || *end < *start)
		*end = f->base + f->size;
	return *start < *end;
}

static int flat_enter(void *arg, vm_addr_t va, const void *src, vm_prot_t prot, unsigned flags)
{
	struct pmap_flat *f = arg;
	if (flags & PMAP_BACKEND_HOST_RESIDENT)
		f->host_resident_enters++;
	if (va < f->base || va >= f->base + f->size)
		return -EFAULT;
	size_t i = flat_page(f, va);
	uint8_t *dst = f->mem + (va - f->base);
	if (src)
		memcpy(dst, src, VM_PAGE_SIZE);
	else
		memset(dst, 0, VM_PAGE_SIZE);
	f->prot[i] = (uint8_t)prot;
	f->modified[i] = 0;
	f->enters++;
	return 0;
}

static void flat_protect(void *arg, vm_addr_t start, vm_addr_t end, vm_prot_t prot)
{
	struct pmap_flat *f = arg;
	f->protects++;
	if (!flat_clip(f, &start, &end))
		return;
	for (size_t i = flat_page(f, start); i < flat_page(f, end); i++) {
		assert(f->prot[i]); /* the core protects only what it entered */
		f->prot[i] = (uint8_t)prot;
	}
}

static void flat_remove(void *arg, vm_addr_t start, vm_addr_t end)
{
	struct pmap_flat *f = arg;
	f->removes++;
	if (!flat_clip(f, &start, &end))
		return;
	size_t a = flat_page(f, start), b = flat_page(f, end);
	memset(f->prot + a, 0, b - a);
	memset(f->modified + a, 0, b - a);
	/* Poison the bytes so that a read of a removed page is noticed. */
	memset(f->mem + (start - f->base), 0xA5, end - start);
}

static void flat_read(void *arg, vm_addr_t va, void *dst)
{
	struct pmap_flat *f = arg;
	assert(va >= f->base && va < f->base + f->size && f->prot[flat_page(f, va)]);
	memcpy(dst, f->mem + (va - f->base), VM_PAGE_SIZE);
	f->reads++;
}

static bool flat_clear_modify(void *arg, vm_addr_t va)
{
	struct pmap_flat *f = arg;
	size_t i = flat_page(f, va);
	bool m = f->modified[i];
	f->modified[i] = 0;
	return m;
}

static int flat_update(void *arg)
{
	struct pmap_flat *f = arg;
	f->updates++;
	return f->update_error;
}

const struct pmap_ops pmap_flat_ops = {
	.enter = flat_enter,
	.protect = flat_protect,
	.remove = flat_remove,
	.read = flat_read,
	.clear_modify = flat_clear_modify,
	.update = flat_update,
};

const struct pmap_ops pmap_flat_ops_nomod = {
	.enter = flat_enter,
	.protect = flat_protect,
	.remove = flat_remove,
	.read = flat_read,
};

int pmap_flat_create(vm_addr_t base, vm_size_t size, struct pmap_flat **out)
{
	if (!vm_page_aligned(base) || !vm_page_aligned(size) || size == 0 || base + size < base)
		return -EINVAL;
	struct pmap_flat *f = calloc(1, sizeof(*f));
	size_t pages = (size_t)vm_atop(size);
	if (f) {
		f->mem = malloc(size);
		f->prot = calloc(pages, 1);
		f->modified = calloc(pages, 1);
	}
	if (!f || !f->mem || !f->prot || !f->modified) {
		pmap_flat_destroy(f);
		return -ENOMEM;
	}
	f->base = base;
	f->size = size;
	*out = f;
	return 0;
}

void pmap_flat_destroy(struct pmap_flat *f)
{
	if (!f)
		return;
	free(f->mem);
	free(f->prot);
	free(f->modified);
	free(f);
}

vm_prot_t pmap_flat_prot(const struct pmap_flat *f, vm_addr_t va)
{
	if (va < f->base || va >= f->base + f->size)
		return 0;
	return f->prot[flat_page(f, va)];
}

kern_return_t pmap_flat_access(struct pmap_flat *f, vm_addr_t va, void *buf, vm_size_t len, vm_prot_t access,
			       pmap_flat_fault_t *fault, void *arg)
{
	uint8_t *b = buf;
	while (len > 0) {
		vm_addr_t page = vm_trunc_page(va);
		vm_size_t n = page + VM_PAGE_SIZE - va;
		if (n > len)
			n = len;
		for (int tries = 0; (pmap_flat_prot(f, page) & access) != access; tries++) {
			if (tries == 2)
				return KERN_FAILURE;
			kern_return_t kr = fault(arg, page, access);
			if (kr != KERN_SUCCESS)
				return kr;
		}
		if (va < f->base || va + n > f->base + f->size)
			return KERN_FAILURE;
		uint8_t *mem = f->mem + (va - f->base);
		if (access & VM_PROT_WRITE) {
			memcpy(mem, b, n);
			f->modified[flat_page(f, page)] = 1;
		} else {
			memcpy(b, mem, n);
		}
		va += n;
		b += n;
		len -= n;
	}
	return KERN_SUCCESS;
}

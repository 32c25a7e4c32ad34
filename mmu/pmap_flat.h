/*
 * A pmap backend over one flat buffer: the "guest RAM" of the tests, benchmarks and fuzzer.
 * It covers [base, base + size); each page has a protection (0 = nothing entered) and a
 * modified bit. pmap_flat_access emulates the guest's MMU: an access to a page not entered
 * with enough protection calls a fault handler (vm_fault_handler) and retries.
 *
 * Two ops tables: pmap_flat_ops tracks modified bits (clear_modify); pmap_flat_ops_nomod
 * leaves that slot NULL (the core then treats every writable page as modified).
 */
#ifndef MMU_PMAP_FLAT_H
#define MMU_PMAP_FLAT_H

#include <stddef.h>
#include <stdint.h>

#include "mmu/pmap.h"
#include "mmu/vm_param.h"

struct pmap_flat {
	vm_addr_t base;     /* (c) */
	vm_size_t size;     /* (c) bytes, page multiple */
	uint8_t *mem;       /* (d) the bytes */
	uint8_t *prot;      /* (d) per page: vm_prot_t entered, 0 = none */
	uint8_t *modified;  /* (d) per page: written since entered / last clear */
	uint64_t enters, protects, removes, reads, updates; /* (d) backend calls seen */
	uint64_t host_resident_enters; /* (d) enters flagged PMAP_BACKEND_HOST_RESIDENT */
	int update_error;   /* (d) what update() returns: 0, or a -errno a test makes it fail with */
};

extern const struct pmap_ops pmap_flat_ops;
extern const struct pmap_ops pmap_flat_ops_nomod;

/* A flat pmap of [base, base+size) (page-aligned). 0 and *out, or -ENOMEM / -EINVAL.
 * pmap_flat_destroy frees it (NULL is fine); its map must be gone first. */
int pmap_flat_create(vm_addr_t base, vm_size_t size, struct pmap_flat **out);
void pmap_flat_destroy(struct pmap_flat *flat);

typedef kern_return_t pmap_flat_fault_t(void *arg, vm_addr_t va, vm_prot_t access);

/* Emulated guest access of @len bytes at @va: read into @buf (@access VM_PROT_READ or
 * VM_PROT_EXECUTE) or write from @buf (VM_PROT_WRITE). Pages not entered with @access get
 * @fault(@arg, page, access) and are retried. KERN_SUCCESS, the fault's error, or
 * KERN_FAILURE when a successful fault still left the page inaccessible. */
kern_return_t pmap_flat_access(struct pmap_flat *flat, vm_addr_t va, void *buf, vm_size_t len, vm_prot_t access,
			       pmap_flat_fault_t *fault, void *arg);

/* The protection entered at @va (0 = none, or outside). */
vm_prot_t pmap_flat_prot(const struct pmap_flat *flat, vm_addr_t va);

#endif

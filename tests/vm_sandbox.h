/*
 * A sandbox machine without KVM: one domain and one map over a flat pmap (the "guest RAM"),
 * optionally with a swap file for the default pager. Guest reads and writes go through the
 * flat pmap and fault through vm_fault exactly as the VMM's vCPUs will. Used by the tests,
 * the benchmark (tools/bench_mmu.c) and the fuzzer (tools/fuzz_vm_map.c): it lives with
 * its users, not in mmu/, since it puts a pager (the default pager) under the core.
 */
#ifndef TESTS_VM_SANDBOX_H
#define TESTS_VM_SANDBOX_H

#include "mmu/pmap_flat.h"
#include "mmu/vm_param.h"

struct pager;
struct vm_domain;
struct vm_map;

#define VM_SANDBOX_SWAP 0x1u  /* default pager with an unlinked temporary swap file */
#define VM_SANDBOX_NOMOD 0x2u /* a pmap without modified bits */

struct vm_sandbox {
	struct vm_domain *dom;   /* (c) */
	struct vm_map *map;      /* (c) covering [base, base+size) */
	struct pmap_flat *flat;  /* (c) its pmap */
	struct pager *swap;      /* (c) the default pager, or NULL */
	int swapfd;              /* (c) -1 without swap */
};

/* A sandbox covering [base, base+size) (page-aligned). 0 or -errno. */
int vm_sandbox_create(vm_addr_t base, vm_size_t size, unsigned flags, struct vm_sandbox **out);

/* Destroy the map, then the domain (which must hold nothing else). */
void vm_sandbox_destroy(struct vm_sandbox *sb);

/* Guest access of @len bytes at @addr through the pmap, faulting as needed. */
kern_return_t vm_sandbox_read(struct vm_sandbox *sb, vm_addr_t addr, void *buf, vm_size_t len);
kern_return_t vm_sandbox_write(struct vm_sandbox *sb, vm_addr_t addr, const void *buf, vm_size_t len);

#endif

/* A KVM-less machine for tests, benchmarks and fuzzing. See vm_sandbox.h. */
#include "vm_sandbox.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "mmu/pager.h"
#include "mmu/vm_domain.h"
#include "mmu/vm_fault.h"
#include "mmu/vm_map.h"
#include "pagers/default_pager.h"

int vm_sandbox_create(vm_addr_t base, vm_size_t size, unsigned flags, struct vm_sandbox **out)
{
	struct vm_sandbox *sb = calloc(1, sizeof(*sb));
	if (!sb)
		return -ENOMEM;
	sb->swapfd = -1;
	int err = vm_domain_create(&sb->dom);
	if (!err)
		err = pmap_flat_create(base, size, &sb->flat);
	if (!err && vm_map_create(sb->dom, base, base + size,
				  (flags & VM_SANDBOX_NOMOD) ? &pmap_flat_ops_nomod : &pmap_flat_ops, sb->flat,
				  &sb->map) != KERN_SUCCESS)
		err = -ENOMEM;
	if (!err && (flags & VM_SANDBOX_SWAP)) {
		FILE *tmp = tmpfile();
		sb->swapfd = tmp ? dup(fileno(tmp)) : -1;
		if (tmp)
			fclose(tmp);
		struct pager_args args = {.fd = sb->swapfd};
		err = sb->swapfd < 0 ? -errno : pager_open(&default_pager_ops, &args, &sb->swap);
		if (!err)
			vm_domain_set_default_pager(sb->dom, sb->swap);
	}
	if (err) {
		vm_sandbox_destroy(sb);
		return err;
	}
	*out = sb;
	return 0;
}

void vm_sandbox_destroy(struct vm_sandbox *sb)
{
	if (!sb)
		return;
	vm_map_destroy(sb->map);
	if (sb->swap)
		pager_release(sb->swap);
	vm_domain_destroy(sb->dom);
	pmap_flat_destroy(sb->flat);
	if (sb->swapfd >= 0)
		close(sb->swapfd);
	free(sb);
}

kern_return_t vm_sandbox_read(struct vm_sandbox *sb, vm_addr_t addr, void *buf, vm_size_t len)
{
	return pmap_flat_access(sb->flat, addr, buf, len, VM_PROT_READ, vm_fault_handler, sb->map);
}

kern_return_t vm_sandbox_write(struct vm_sandbox *sb, vm_addr_t addr, const void *buf, vm_size_t len)
{
	return pmap_flat_access(sb->flat, addr, (void *)buf, len, VM_PROT_WRITE, vm_fault_handler, sb->map);
}

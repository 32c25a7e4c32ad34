/* The PVH boot protocol: start info in guest memory and the vCPUs' entry state. */
#ifndef VMM_BOOT_H
#define VMM_BOOT_H

#include <linux/kvm.h>
#include <stdint.h>

#include "vmm/memory/guest_memory.h"

/* Guest memory the boot information occupies (no image segment may overlap it). */
#define BOOT_INFO_GPA 0x7000ull
#define BOOT_INFO_LEN 0x1000ull

/*
 * Write the PVH start info, the memory map of @mem and @cmdline into guest memory at
 * BOOT_INFO_GPA. Returns 0 with *start_info = its address, or -E2BIG if the command line
 * does not fit (ABI_CMDLINE_MAX).
 */
int boot_write_start_info(struct guest_memory *mem, const char *cmdline, uint64_t *start_info);

/*
 * PVH entry state of vCPU @index of @ncpus: 32-bit protected mode, flat segments, paging
 * off, ebx = start info; edi/esi/ecx carry the vmm extension (guest/abi.h).
 * @sregs must hold KVM's current values (KVM_GET_SREGS); the fields PVH defines are set.
 */
void boot_vcpu_state(struct kvm_regs *regs, struct kvm_sregs *sregs, uint64_t entry, uint64_t start_info,
		     unsigned index, unsigned ncpus);

#endif

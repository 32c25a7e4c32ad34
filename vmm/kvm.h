/*
 * The KVM device and one VM: opening /dev/kvm, memory slots, vCPU file descriptors.
 * Only vmm/ includes this; mmu/ and pagers/ never see KVM.
 */
#ifndef VMM_KVM_H
#define VMM_KVM_H

#include <linux/kvm.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define KVM_CPUID_MAX_ENTRIES 256

struct kvm {
	int dev_fd;                /* /dev/kvm */
	int vm_fd;                 /* KVM_CREATE_VM */
	size_t run_size;           /* mmap size of each vCPU's struct kvm_run */
	unsigned max_vcpus;        /* KVM_CAP_MAX_VCPUS */
	struct kvm_cpuid2 *cpuid;  /* KVM_GET_SUPPORTED_CPUID, given to every vCPU (fetched for the first) */
	struct kvm_stats *stats;   /* the VM's binary statistics (kvm_open_stats), or NULL */
};

/* Open /dev/kvm (@path, normally "/dev/kvm") and create an empty VM.
 * Returns 0 or -errno with a message that says how to fix a missing or locked device. */
int kvm_open(struct kvm *k, const char *path);

/* The VM's statistics in k->stats (left NULL where KVM has none). Not part of kvm_open:
 * they are not needed to start a guest, and making them takes up to 0.3 ms here. */
void kvm_open_stats(struct kvm *k);

/* Close the VM and the device. Safe on a zeroed or partly opened struct. */
void kvm_close(struct kvm *k);

/* Map [gpa, gpa + size) of guest-physical memory to host memory @hva in memory slot @slot;
 * @readonly: guest writes exit to the VMM (KVM_EXIT_MMIO) instead. */
int kvm_set_memory(struct kvm *k, unsigned slot, uint64_t gpa, uint64_t size, void *hva, bool readonly);

/* Give the vCPUs created from now on @n entries of CPUID (a restored VM's, as it ran
 * before) instead of the host-supported table. 0 or -errno with a message. */
int kvm_use_cpuid(struct kvm *k, const struct kvm_cpuid_entry2 *entries, unsigned n);

/* Create vCPU @index with the host-supported CPUID (or kvm_use_cpuid's), with the vCPU's
 * own APIC id; returns its fd and maps its kvm_run.
 * Not concurrently with another kvm_vcpu_create on @k. */
int kvm_vcpu_create(struct kvm *k, unsigned index, int *fd, struct kvm_run **run);

#endif

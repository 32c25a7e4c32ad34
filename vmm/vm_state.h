/*
 * Everything of a VM that is not guest memory, as one blob: its shape (RAM size, vCPUs),
 * the state of each vCPU and of each device. Taken while the vCPUs are paused; stored in
 * a snapshot's manifest (opaque to the store); loaded into a new VM by restore and fork.
 * A blob read from disk is untrusted: vm_state_parse checks every field.
 */
#ifndef VMM_VM_STATE_H
#define VMM_VM_STATE_H

#include <stddef.h>
#include <stdint.h>

#include "vmm/memory/guest_memory.h"
#include "vmm/kvm.h"
#include "vmm/vcpu_state.h"

struct vm;

#define VM_STATE_MAX_ENTRIES 256

struct vm_state {
	uint64_t ram_size;          /* bytes of RAM */
	unsigned nram;              /* the RAM regions, in address order */
	struct guest_ram_range ram[GUEST_MEMORY_MAX_REGIONS];
	unsigned nentries;          /* the map's entries: protections and inheritance to restore */
	struct vm_state_entry {
		uint64_t start, end;
		uint32_t protection, max_protection, inheritance, reserved;
	} entry[VM_STATE_MAX_ENTRIES];
	unsigned ncpus;
	unsigned ncpuid;            /* the CPUID the vCPUs were given (before their APIC ids) */
	struct kvm_cpuid_entry2 cpuid[KVM_CPUID_MAX_ENTRIES];
	uint32_t id_value;          /* identity port */
	uint8_t serial_lcr, serial_scratch;
	uint64_t test_messages;     /* test port counters */
	uint32_t test_last;
	struct vcpu_state *vcpus;   /* ncpus of them (vm_state_free frees them) */
};

/* Capture @vm's state; its vCPUs must be paused. 0 or -errno with a message. */
int vm_state_capture(struct vm *vm, struct vm_state *s);

/* Serialize @s into a new buffer (*blob, free() it). 0 or -ENOMEM. */
int vm_state_serialize(const struct vm_state *s, uint8_t **blob, size_t *len);

/* Parse a blob (untrusted). 0, or -EINVAL with a message saying what is wrong. */
int vm_state_parse(const uint8_t *blob, size_t len, struct vm_state *s);

/* Give @vm's map the protections and inheritance of @s's entries (after its memory is
 * created with @s's RAM ranges). 0 or -errno with a message. */
int vm_state_apply_map(struct vm *vm, const struct vm_state *s);

/* Load @s into @vm (created with the same RAM size and vCPU count, not running yet):
 * vm_state_apply_vcpus then vm_state_apply_devices. 0 or -errno with a message. */
int vm_state_apply(struct vm *vm, const struct vm_state *s);

/* Only the vCPUs' part of vm_state_apply (needs nothing but the vCPUs). */
int vm_state_apply_vcpus(struct vm *vm, const struct vm_state *s);

/* Only the devices' part of vm_state_apply (after the devices are attached). */
void vm_state_apply_devices(struct vm *vm, const struct vm_state *s);

void vm_state_free(struct vm_state *s);

#endif

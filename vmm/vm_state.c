#include "vmm/vm_state.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "guest/abi.h"
#include "vmm/error.h"
#include "vmm/vcpu.h"
#include "vmm/vm.h"

#define VM_STATE_MAGIC 0x3254535453564d56ull /* "VMVSTST2" */

struct vm_state_header {
	uint64_t magic;
	uint64_t ram_size;
	uint32_t nram;              /* followed by nram (gpa, size) pairs, nentries map entries, ncpuid */
	uint32_t nentries;          /* CPUID entries, then the vCPUs */
	uint32_t ncpus;
	uint32_t ncpuid;
	uint32_t id_value;
	uint32_t test_last;
	uint64_t test_messages;
	uint8_t serial_lcr, serial_scratch;
	uint8_t reserved[6];        /* zero */
};
/* No padding: every byte written is a field's (none is left to whatever the stack held). */
_Static_assert(sizeof(struct vm_state_header) == 56, "vm_state_header has padding");

int vm_state_capture(struct vm *vm, struct vm_state *s)
{
	memset(s, 0, sizeof(*s));
	s->ram_size = guest_memory_ram_ranges(&vm->mem, s->ram, &s->nram); /* vm-allocate and vm-deallocate change it */
	struct guest_map_entry e[VM_STATE_MAX_ENTRIES];
	int r = guest_memory_entries(&vm->mem, e, VM_STATE_MAX_ENTRIES, &s->nentries);
	for (unsigned i = 0; i < s->nentries; i++)
		s->entry[i] = (struct vm_state_entry){e[i].start, e[i].end, e[i].protection, e[i].max_protection,
						      e[i].inheritance, 0};
	if (r)
		return r;
	s->ncpus = vm->cfg.ncpus;
	/* The table the vCPUs were made from: a restored VM runs with the CPU it had. */
	if (vm->kvm.cpuid) {
		s->ncpuid = vm->kvm.cpuid->nent;
		memcpy(s->cpuid, vm->kvm.cpuid->entries, s->ncpuid * sizeof(s->cpuid[0]));
	}
	s->id_value = (uint32_t)atomic_load(&vm->id_value);
	ioport_save_devices(vm, s);
	s->vcpus = calloc(s->ncpus, sizeof(*s->vcpus));
	if (!s->vcpus)
		return error_set(ENOMEM, "no memory for the vCPU states");
	unsigned xsave = vcpu_state_xsave_size(vm->kvm.dev_fd);
	for (unsigned i = 0; i < s->ncpus; i++) {
		r = vcpu_state_save(vm->vcpus[i].fd, xsave, &s->vcpus[i]);
		if (r) {
			vm_state_free(s);
			return r;
		}
	}
	return 0;
}

int vm_state_serialize(const struct vm_state *s, uint8_t **blob, size_t *len)
{
	size_t n = sizeof(struct vm_state_header) + s->nram * sizeof(s->ram[0]) + s->nentries * sizeof(s->entry[0]) +
		   s->ncpuid * sizeof(s->cpuid[0]);
	for (unsigned i = 0; i < s->ncpus; i++)
		n += vcpu_state_size(&s->vcpus[i]);
	uint8_t *b = malloc(n), *p = b;
	if (!b)
		return error_set(ENOMEM, "no memory for the VM state");
	struct vm_state_header h = {
		.magic = VM_STATE_MAGIC,
		.ram_size = s->ram_size,
		.nram = s->nram,
		.nentries = s->nentries,
		.ncpus = s->ncpus,
		.ncpuid = s->ncpuid,
		.id_value = s->id_value,
		.test_messages = s->test_messages,
		.test_last = s->test_last,
		.serial_lcr = s->serial_lcr,
		.serial_scratch = s->serial_scratch,
	};
	memcpy(p, &h, sizeof(h));
	p += sizeof(h);
	memcpy(p, s->ram, s->nram * sizeof(s->ram[0]));
	p += s->nram * sizeof(s->ram[0]);
	memcpy(p, s->entry, s->nentries * sizeof(s->entry[0]));
	p += s->nentries * sizeof(s->entry[0]);
	memcpy(p, s->cpuid, s->ncpuid * sizeof(s->cpuid[0]));
	p += s->ncpuid * sizeof(s->cpuid[0]);
	for (unsigned i = 0; i < s->ncpus; i++) {
		vcpu_state_write(&s->vcpus[i], p);
		p += vcpu_state_size(&s->vcpus[i]);
	}
	*blob = b;
	*len = n;
	return 0;
}

int vm_state_parse(const uint8_t *blob, size_t len, struct vm_state *s)
{
	memset(s, 0, sizeof(*s));
	struct vm_state_header h;
	if (len < sizeof(h))
		return error_set(EINVAL, "VM state is truncated (%zu bytes)", len);
	memcpy(&h, blob, sizeof(h));
	if (h.magic != VM_STATE_MAGIC)
		return error_set(EINVAL, "VM state has an unknown format");
	static const uint8_t zero[sizeof(h.reserved)];
	if (memcmp(h.reserved, zero, sizeof(zero)) != 0)
		return error_set(EINVAL, "VM state uses fields this vmm does not know");
	if (h.ncpus < 1 || h.ncpus > ABI_MAX_CPUS)
		return error_set(EINVAL, "VM state has %u vCPUs (1 to %d allowed)", h.ncpus, ABI_MAX_CPUS);
	if (h.ram_size < ABI_MIN_RAM || h.ram_size > (1ull << 40) || (h.ram_size & 4095))
		return error_set(EINVAL, "VM state has an impossible RAM size (%llu bytes)", (unsigned long long)h.ram_size);
	if (h.nram < 1 || h.nram > GUEST_MEMORY_MAX_REGIONS || len - sizeof(h) < h.nram * sizeof(s->ram[0]))
		return error_set(EINVAL, "VM state has %u RAM ranges (1 to %d allowed)", h.nram, GUEST_MEMORY_MAX_REGIONS);
	s->nram = h.nram;
	memcpy(s->ram, blob + sizeof(h), h.nram * sizeof(s->ram[0]));
	size_t entries_off = sizeof(h) + h.nram * sizeof(s->ram[0]);
	if (h.nentries > VM_STATE_MAX_ENTRIES || len - entries_off < h.nentries * sizeof(s->entry[0]))
		return error_set(EINVAL, "VM state has %u map entries (at most %d)", h.nentries, VM_STATE_MAX_ENTRIES);
	s->nentries = h.nentries;
	memcpy(s->entry, blob + entries_off, h.nentries * sizeof(s->entry[0]));
	size_t cpuid_off = entries_off + h.nentries * sizeof(s->entry[0]);
	if (h.ncpuid < 1 || h.ncpuid > KVM_CPUID_MAX_ENTRIES || len - cpuid_off < h.ncpuid * sizeof(s->cpuid[0]))
		return error_set(EINVAL, "VM state has %u CPUID entries (1 to %d allowed)", h.ncpuid, KVM_CPUID_MAX_ENTRIES);
	s->ncpuid = h.ncpuid;
	memcpy(s->cpuid, blob + cpuid_off, h.ncpuid * sizeof(s->cpuid[0]));
	uint64_t total = 0;
	for (unsigned i = 0; i < s->nram; i++)
		total += s->ram[i].size;
	if (total != h.ram_size)
		return error_set(EINVAL, "VM state's RAM ranges add up to %llu bytes, not %llu", (unsigned long long)total,
				 (unsigned long long)h.ram_size);
	s->ram_size = h.ram_size;
	s->ncpus = h.ncpus;
	s->id_value = h.id_value;
	s->serial_lcr = h.serial_lcr;
	s->serial_scratch = h.serial_scratch;
	s->test_messages = h.test_messages;
	s->test_last = h.test_last;
	s->vcpus = calloc(s->ncpus, sizeof(*s->vcpus));
	if (!s->vcpus)
		return error_set(ENOMEM, "no memory for the vCPU states");
	size_t off = cpuid_off + s->ncpuid * sizeof(s->cpuid[0]);
	for (unsigned i = 0; i < s->ncpus; i++) {
		size_t used;
		int r = vcpu_state_read(blob + off, len - off, &s->vcpus[i], &used);
		if (r) {
			vm_state_free(s);
			return error_set(EINVAL, "VM state of vCPU %u: %s", i, error_message());
		}
		off += used;
	}
	if (off != len) {
		vm_state_free(s);
		return error_set(EINVAL, "VM state has %zu bytes of trailing garbage", len - off);
	}
	return 0;
}

int vm_state_apply_map(struct vm *vm, const struct vm_state *s)
{
	struct guest_map_entry e[VM_STATE_MAX_ENTRIES];
	for (unsigned i = 0; i < s->nentries; i++)
		e[i] = (struct guest_map_entry){s->entry[i].start, s->entry[i].end, s->entry[i].protection,
						s->entry[i].max_protection, s->entry[i].inheritance};
	return guest_memory_apply_entries(&vm->mem, e, s->nentries);
}

int vm_state_apply_vcpus(struct vm *vm, const struct vm_state *s)
{
	if (s->ncpus != vm->cfg.ncpus)
		return error_set(EINVAL, "VM state is for %u vCPUs, not %u", s->ncpus, vm->cfg.ncpus);
	for (unsigned i = 0; i < s->ncpus; i++) {
		int r = vcpu_state_load(vm->vcpus[i].fd, &s->vcpus[i]);
		if (r)
			return error_set(-r, "vCPU %u: %s", i, error_message());
	}
	return 0;
}

int vm_state_apply(struct vm *vm, const struct vm_state *s)
{
	int r = vm_state_apply_vcpus(vm, s);
	if (!r)
		vm_state_apply_devices(vm, s);
	return r;
}

void vm_state_apply_devices(struct vm *vm, const struct vm_state *s)
{
	atomic_store(&vm->id_value, s->id_value);
	ioport_load_devices(vm, s);
}

void vm_state_free(struct vm_state *s)
{
	free(s->vcpus);
	s->vcpus = NULL;
}

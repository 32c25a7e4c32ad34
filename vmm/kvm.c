#include "vmm/kvm.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include "vmm/error.h"
#include "vmm/kvm_stats.h"


static int kvm_open_error(int err, const char *path)
{
	const char *fix = "";
	if (err == ENOENT || err == ENODEV || err == ENXIO)
		fix = " (load the kvm module: modprobe kvm_intel or kvm_amd, and enable virtualization in the firmware)";
	else if (err == EACCES || err == EPERM)
		fix = " (add your user to the group that owns it, usually 'kvm', or run as root)";
	return error_set(err, "cannot open %s: %s%s", path, strerror(err), fix);
}

int kvm_open(struct kvm *k, const char *path)
{
	memset(k, 0, sizeof(*k));
	k->vm_fd = -1;
	k->dev_fd = open(path, O_RDWR | O_CLOEXEC);
	if (k->dev_fd < 0)
		return kvm_open_error(errno, path);

	int r;
	int api = ioctl(k->dev_fd, KVM_GET_API_VERSION, 0);
	if (api < 0) {
		r = error_set_errno(errno, "%s is not a KVM device (KVM_GET_API_VERSION failed)", path);
		goto err_close;
	}
	if (api != KVM_API_VERSION) {
		r = error_set(ENOTSUP, "%s speaks KVM API %d, not %d", path, api, KVM_API_VERSION);
		goto err_close;
	}
	if (ioctl(k->dev_fd, KVM_CHECK_EXTENSION, KVM_CAP_IMMEDIATE_EXIT) <= 0) {
		r = error_set(ENOTSUP, "KVM lacks KVM_CAP_IMMEDIATE_EXIT (Linux 4.11 or later is needed)");
		goto err_close;
	}
	int max = ioctl(k->dev_fd, KVM_CHECK_EXTENSION, KVM_CAP_MAX_VCPUS);
	k->max_vcpus = max > 0 ? (unsigned)max : 1;
	int run_size = ioctl(k->dev_fd, KVM_GET_VCPU_MMAP_SIZE, 0);
	if (run_size <= 0) {
		r = error_set_errno(errno, "KVM_GET_VCPU_MMAP_SIZE failed");
		goto err_close;
	}
	k->run_size = (size_t)run_size;

	k->vm_fd = ioctl(k->dev_fd, KVM_CREATE_VM, 0);
	if (k->vm_fd < 0) {
		r = error_set_errno(errno, "cannot create a KVM virtual machine");
		goto err_close;
	}
	/* Intel needs three pages for its real-mode TSS; they sit in the hole below 4 GiB. */
	(void)ioctl(k->vm_fd, KVM_SET_TSS_ADDR, 0xfffbd000ul);
	return 0;

err_close:
	kvm_close(k);
	return r;
}

void kvm_open_stats(struct kvm *k)
{
	if (!k->stats)
		k->stats = kvm_stats_open(k->vm_fd);
}

void kvm_close(struct kvm *k)
{
	kvm_stats_close(k->stats);
	if (k->vm_fd >= 0)
		close(k->vm_fd);
	if (k->dev_fd > 0)
		close(k->dev_fd);
	free(k->cpuid);
	memset(k, 0, sizeof(*k));
	k->vm_fd = -1;
}

int kvm_set_memory(struct kvm *k, unsigned slot, uint64_t gpa, uint64_t size, void *hva, bool readonly)
{
	struct kvm_userspace_memory_region region = {
		.slot = slot,
		.flags = readonly ? KVM_MEM_READONLY : 0,
		.guest_phys_addr = gpa,
		.memory_size = size,
		.userspace_addr = (uint64_t)(uintptr_t)hva,
	};
	if (ioctl(k->vm_fd, KVM_SET_USER_MEMORY_REGION, &region) != 0)
		return error_set_errno(errno, "cannot %s KVM memory slot %u [0x%llx, 0x%llx)", size ? "set" : "delete", slot,
				       (unsigned long long)gpa, (unsigned long long)(gpa + size));
	return 0;
}

/* CPUID of vCPU @index: the host-supported table with this vCPU's APIC id. */
static void kvm_cpuid_for_vcpu(struct kvm_cpuid2 *c, unsigned index)
{
	for (unsigned i = 0; i < c->nent; i++) {
		struct kvm_cpuid_entry2 *e = &c->entries[i];
		if (e->function == 1)
			e->ebx = (e->ebx & 0x00ffffffu) | (index << 24);
		else if (e->function == 0xb || e->function == 0x1f)
			e->edx = index;
	}
}

/* The host-supported CPUID table, fetched for the first vCPU (it takes a while here: the
 * VM's creation and memory slots need not wait for it). */
static int kvm_supported_cpuid(struct kvm *k)
{
	if (k->cpuid)
		return 0;
	struct kvm_cpuid2 *c = calloc(1, sizeof(*c) + KVM_CPUID_MAX_ENTRIES * sizeof(c->entries[0]));
	if (!c)
		return error_set(ENOMEM, "no memory for the CPUID table");
	c->nent = KVM_CPUID_MAX_ENTRIES;
	if (ioctl(k->dev_fd, KVM_GET_SUPPORTED_CPUID, c) != 0) {
		int err = errno;
		free(c);
		return error_set_errno(err, "KVM_GET_SUPPORTED_CPUID failed");
	}
	k->cpuid = c;
	return 0;
}

int kvm_use_cpuid(struct kvm *k, const struct kvm_cpuid_entry2 *entries, unsigned n)
{
	if (n > KVM_CPUID_MAX_ENTRIES)
		return error_set(EINVAL, "a CPUID table of %u entries (at most %d)", n, KVM_CPUID_MAX_ENTRIES);
	struct kvm_cpuid2 *c = calloc(1, sizeof(*c) + n * sizeof(c->entries[0]));
	if (!c)
		return error_set(ENOMEM, "no memory for the CPUID table");
	c->nent = n;
	memcpy(c->entries, entries, n * sizeof(c->entries[0]));
	free(k->cpuid);
	k->cpuid = c;
	return 0;
}

int kvm_vcpu_create(struct kvm *k, unsigned index, int *fd, struct kvm_run **run)
{
	int r = kvm_supported_cpuid(k);
	if (r)
		return r;
	int vfd = ioctl(k->vm_fd, KVM_CREATE_VCPU, (unsigned long)index);
	if (vfd < 0)
		return error_set_errno(errno, "cannot create vCPU %u", index);
	kvm_cpuid_for_vcpu(k->cpuid, index);
	if (ioctl(vfd, KVM_SET_CPUID2, k->cpuid) != 0) {
		int err = errno;
		close(vfd);
		return error_set_errno(err, "cannot set the CPUID of vCPU %u", index);
	}
	void *p = mmap(NULL, k->run_size, PROT_READ | PROT_WRITE, MAP_SHARED, vfd, 0);
	if (p == MAP_FAILED) {
		int err = errno;
		close(vfd);
		return error_set_errno(err, "cannot map the run area of vCPU %u", index);
	}
	*fd = vfd;
	*run = p;
	return 0;
}

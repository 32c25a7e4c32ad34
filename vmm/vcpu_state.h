/*
 * The architectural state of one vCPU, saved from KVM and loaded into another vCPU (of
 * this VM, a restored VM or a forked one), and its serialized form. A serialized state is
 * untrusted input on load (it comes from a snapshot file): every size is checked.
 */
#ifndef VMM_VCPU_STATE_H
#define VMM_VCPU_STATE_H

#include <linux/kvm.h>
#include <stddef.h>
#include <stdint.h>

#define VCPU_STATE_MAX_MSRS 32
#define VCPU_STATE_XSAVE_MAX 16384 /* bytes of XSAVE area kept (KVM_CAP_XSAVE2 size) */

struct vcpu_state {
	struct kvm_regs regs;
	struct kvm_sregs sregs;
	struct kvm_vcpu_events events;
	struct kvm_debugregs debugregs;
	struct kvm_xcrs xcrs;
	uint32_t xsave_size;                          /* bytes used in xsave, 0 = not saved */
	uint8_t xsave[VCPU_STATE_XSAVE_MAX] __attribute__((aligned(64)));
	uint32_t nmsrs;
	struct kvm_msr_entry msrs[VCPU_STATE_MAX_MSRS];
};

/* Read the state of the vCPU @fd (not running: paused or its own thread). @xsave_size:
 * bytes of XSAVE area this host uses (vcpu_state_xsave_size). 0 or -errno with a message. */
int vcpu_state_save(int fd, unsigned xsave_size, struct vcpu_state *s);

/* Load @s into the vCPU @fd (before it runs). 0 or -errno with a message. */
int vcpu_state_load(int fd, const struct vcpu_state *s);

/* Bytes of XSAVE area on this host for @kvm_fd (/dev/kvm): KVM_CAP_XSAVE2, else 4096. */
unsigned vcpu_state_xsave_size(int kvm_fd);

/* Serialized size of @s (vcpu_state_write writes exactly this many bytes). */
size_t vcpu_state_size(const struct vcpu_state *s);

/* Serialize @s into @buf (vcpu_state_size bytes). */
void vcpu_state_write(const struct vcpu_state *s, uint8_t *buf);

/* Parse a state from [buf, buf + len); *used receives the bytes it took. 0, or -EINVAL
 * with a message when the bytes are not a state this vmm can load. */
int vcpu_state_read(const uint8_t *buf, size_t len, struct vcpu_state *s, size_t *used);

#endif

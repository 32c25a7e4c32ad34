#include "vmm/vcpu_state.h"

#include <errno.h>
#include <string.h>
#include <sys/ioctl.h>

#include "vmm/error.h"

#define VCPU_STATE_MAGIC 0x31534356u /* "VCS1" */

/* MSRs a guest may have changed that sregs does not carry. Those KVM cannot read here are
 * left out of the state (and so are not restored either). */
static const uint32_t vcpu_state_msr_list[] = {
	0x00000010, /* IA32_TSC */
	0x00000174, /* IA32_SYSENTER_CS */
	0x00000175, /* IA32_SYSENTER_ESP */
	0x00000176, /* IA32_SYSENTER_EIP */
	0x00000277, /* IA32_PAT */
	0x000001a0, /* IA32_MISC_ENABLE */
	0xc0000081, /* STAR */
	0xc0000082, /* LSTAR */
	0xc0000083, /* CSTAR */
	0xc0000084, /* SFMASK */
	0xc0000102, /* KERNEL_GS_BASE */
	0xc0000103, /* TSC_AUX */
};

unsigned vcpu_state_xsave_size(int kvm_fd)
{
	int n = ioctl(kvm_fd, KVM_CHECK_EXTENSION, KVM_CAP_XSAVE2);
	if (n <= 0)
		return sizeof(struct kvm_xsave);
	return (unsigned)n > VCPU_STATE_XSAVE_MAX ? 0 : (unsigned)n;
}

_Static_assert(sizeof(vcpu_state_msr_list) / sizeof(vcpu_state_msr_list[0]) <= VCPU_STATE_MAX_MSRS,
	       "a state holds every MSR saved");

/* A KVM_GET_MSRS / KVM_SET_MSRS argument with room for every MSR a state holds. */
union vcpu_state_msrs {
	struct kvm_msrs hdr;
	uint8_t bytes[sizeof(struct kvm_msrs) + VCPU_STATE_MAX_MSRS * sizeof(struct kvm_msr_entry)];
};

int vcpu_state_save(int fd, unsigned xsave_size, struct vcpu_state *s)
{
	memset(s, 0, sizeof(*s));
	if (ioctl(fd, KVM_GET_REGS, &s->regs) != 0 || ioctl(fd, KVM_GET_SREGS, &s->sregs) != 0 ||
	    ioctl(fd, KVM_GET_VCPU_EVENTS, &s->events) != 0)
		return error_set_errno(errno, "cannot read the vCPU registers");
	/* Optional parts: a host without them gives a state without them. */
	if (ioctl(fd, KVM_GET_DEBUGREGS, &s->debugregs) != 0)
		memset(&s->debugregs, 0, sizeof(s->debugregs));
	if (ioctl(fd, KVM_GET_XCRS, &s->xcrs) != 0)
		memset(&s->xcrs, 0, sizeof(s->xcrs));
	if (xsave_size) {
		unsigned long req = xsave_size > sizeof(struct kvm_xsave) ? KVM_GET_XSAVE2 : KVM_GET_XSAVE;
		if (ioctl(fd, req, s->xsave) == 0)
			s->xsave_size = xsave_size;
	}
	/* All MSRs in one call; KVM stops at one it does not know: keep what came, skip that
	 * one, ask again for the rest. */
	const size_t count = sizeof(vcpu_state_msr_list) / sizeof(vcpu_state_msr_list[0]);
	union vcpu_state_msrs m;
	for (size_t i = 0; i < count;) {
		memset(&m, 0, sizeof(m));
		m.hdr.nmsrs = (uint32_t)(count - i);
		for (size_t k = i; k < count; k++)
			m.hdr.entries[k - i].index = vcpu_state_msr_list[k];
		int n = ioctl(fd, KVM_GET_MSRS, &m);
		if (n < 0)
			n = 0;
		for (int k = 0; k < n && s->nmsrs < VCPU_STATE_MAX_MSRS; k++)
			s->msrs[s->nmsrs++] = m.hdr.entries[k];
		i += (size_t)n + 1;
	}
	return 0;
}

int vcpu_state_load(int fd, const struct vcpu_state *s)
{
	if (ioctl(fd, KVM_SET_SREGS, &s->sregs) != 0 || ioctl(fd, KVM_SET_REGS, &s->regs) != 0)
		return error_set_errno(errno, "cannot load the vCPU registers");
	if (s->xsave_size && ioctl(fd, KVM_SET_XSAVE, s->xsave) != 0)
		return error_set_errno(errno, "cannot load the vCPU's FPU and vector state");
	if ((s->xcrs.nr_xcrs && ioctl(fd, KVM_SET_XCRS, &s->xcrs) != 0))
		return error_set_errno(errno, "cannot load the vCPU's XCR registers");
	(void)ioctl(fd, KVM_SET_DEBUGREGS, &s->debugregs);
	union vcpu_state_msrs msrs;
	memset(&msrs, 0, sizeof(msrs));
	msrs.hdr.nmsrs = s->nmsrs;
	memcpy(msrs.hdr.entries, s->msrs, s->nmsrs * sizeof(s->msrs[0]));
	int n = ioctl(fd, KVM_SET_MSRS, &msrs);
	if (n != (int)s->nmsrs)
		return error_set(EINVAL, "cannot load MSR 0x%x of the vCPU", n >= 0 && (unsigned)n < s->nmsrs ? s->msrs[n].index : 0);
	/* Events last: they may depend on the registers (pending exceptions). */
	struct kvm_vcpu_events ev = s->events;
	ev.flags &= KVM_VCPUEVENT_VALID_NMI_PENDING | KVM_VCPUEVENT_VALID_SHADOW;
	if (ioctl(fd, KVM_SET_VCPU_EVENTS, &ev) != 0)
		return error_set_errno(errno, "cannot load the vCPU's pending events");
	return 0;
}

/* Serialized form: magic, the size of each kernel structure (an ABI check), the
 * structures, the XSAVE area, the MSRs. Native endianness: snapshots stay on x86-64. */
struct vcpu_state_header {
	uint32_t magic;
	uint16_t regs_size, sregs_size, events_size, debugregs_size, xcrs_size;
	uint16_t nmsrs;
	uint32_t xsave_size;
};

size_t vcpu_state_size(const struct vcpu_state *s)
{
	return sizeof(struct vcpu_state_header) + sizeof(s->regs) + sizeof(s->sregs) + sizeof(s->events) +
	       sizeof(s->debugregs) + sizeof(s->xcrs) + s->xsave_size + s->nmsrs * sizeof(s->msrs[0]);
}

void vcpu_state_write(const struct vcpu_state *s, uint8_t *buf)
{
	struct vcpu_state_header h = {
		.magic = VCPU_STATE_MAGIC,
		.regs_size = sizeof(s->regs),
		.sregs_size = sizeof(s->sregs),
		.events_size = sizeof(s->events),
		.debugregs_size = sizeof(s->debugregs),
		.xcrs_size = sizeof(s->xcrs),
		.nmsrs = (uint16_t)s->nmsrs,
		.xsave_size = s->xsave_size,
	};
	const void *parts[] = {&h, &s->regs, &s->sregs, &s->events, &s->debugregs, &s->xcrs, s->xsave, s->msrs};
	size_t sizes[] = {sizeof(h), sizeof(s->regs), sizeof(s->sregs), sizeof(s->events), sizeof(s->debugregs),
			  sizeof(s->xcrs), s->xsave_size, s->nmsrs * sizeof(s->msrs[0])};
	for (size_t i = 0; i < sizeof(parts) / sizeof(parts[0]); i++) {
		memcpy(buf, parts[i], sizes[i]);
		buf += sizes[i];
	}
}

int vcpu_state_read(const uint8_t *buf, size_t len, struct vcpu_state *s, size_t *used)
{
	memset(s, 0, sizeof(*s));
	struct vcpu_state_header h;
	if (len < sizeof(h))
		return error_set(EINVAL, "vCPU state is truncated");
	memcpy(&h, buf, sizeof(h));
	if (h.magic != VCPU_STATE_MAGIC || h.regs_size != sizeof(s->regs) || h.sregs_size != sizeof(s->sregs) ||
	    h.events_size != sizeof(s->events) || h.debugregs_size != sizeof(s->debugregs) ||
	    h.xcrs_size != sizeof(s->xcrs))
		return error_set(EINVAL, "vCPU state was saved by an incompatible vmm or kernel");
	if (h.nmsrs > VCPU_STATE_MAX_MSRS || h.xsave_size > VCPU_STATE_XSAVE_MAX)
		return error_set(EINVAL, "vCPU state has out-of-range sizes");
	s->xsave_size = h.xsave_size;
	s->nmsrs = h.nmsrs;
	size_t need = vcpu_state_size(s);
	if (len < need)
		return error_set(EINVAL, "vCPU state is truncated");
	buf += sizeof(h);
	void *parts[] = {&s->regs, &s->sregs, &s->events, &s->debugregs, &s->xcrs, s->xsave, s->msrs};
	size_t sizes[] = {sizeof(s->regs), sizeof(s->sregs), sizeof(s->events), sizeof(s->debugregs), sizeof(s->xcrs),
			  s->xsave_size, s->nmsrs * sizeof(s->msrs[0])};
	for (size_t i = 0; i < sizeof(parts) / sizeof(parts[0]); i++) {
		memcpy(parts[i], buf, sizes[i]);
		buf += sizes[i];
	}
	if (s->xcrs.nr_xcrs > KVM_MAX_XCRS)
		return error_set(EINVAL, "vCPU state has out-of-range XCR count");
	*used = need;
	return 0;
}

#include "vmm/vcpu.h"

#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "vmm/boot.h"
#include "vmm/clock.h"
#include "vmm/error.h"
#include "vmm/kvm_stats.h"
#include "vmm/vm.h"

#define VCPU_KICK_SIGNAL SIGUSR1

static void vcpu_kick_handler(int sig)
{
	(void)sig; /* interrupting KVM_RUN is all a kick needs */
}

int vcpu_signals_init(void)
{
	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = vcpu_kick_handler;
	sigemptyset(&sa.sa_mask);
	if (sigaction(VCPU_KICK_SIGNAL, &sa, NULL) != 0)
		return error_set_errno(errno, "cannot install the vCPU kick handler");
	return 0;
}

int vcpu_create(struct vcpu *c, struct vm *vm, unsigned index)
{
	memset(c, 0, sizeof(*c));
	c->vm = vm;
	c->index = index;
	c->fd = -1;
	atomic_init(&c->report_regs, false);
	int r = kvm_vcpu_create(&vm->kvm, index, &c->fd, &c->run);
	if (r)
		return r;
	c->stats = kvm_stats_open(c->fd);
	return 0;
}

int vcpu_set_boot_state(struct vcpu *c, uint64_t entry, uint64_t start_info)
{
	struct kvm_regs regs;
	struct kvm_sregs sregs;
	if (ioctl(c->fd, KVM_GET_SREGS, &sregs) != 0)
		return error_set_errno(errno, "cannot read the registers of vCPU %u", c->index);
	boot_vcpu_state(&regs, &sregs, entry, start_info, c->index, c->vm->cfg.ncpus);
	if (ioctl(c->fd, KVM_SET_SREGS, &sregs) != 0 || ioctl(c->fd, KVM_SET_REGS, &regs) != 0)
		return error_set_errno(errno, "cannot set the boot registers of vCPU %u", c->index);
	return 0;
}

/* Print a verdict line and the vCPU's registers on stderr. */
static void vcpu_report(struct vcpu *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void vcpu_report(struct vcpu *c, const char *fmt, ...)
{
	char what[256];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(what, sizeof(what), fmt, ap);
	va_end(ap);

	struct kvm_regs r;
	struct kvm_sregs s;
	if (ioctl(c->fd, KVM_GET_REGS, &r) != 0 || ioctl(c->fd, KVM_GET_SREGS, &s) != 0) {
		fprintf(stderr, "vmm: vCPU %u: %s (registers unavailable: %s)\n", c->index, what, strerror(errno));
		return;
	}
	const char *mode = !(s.cr0 & 1) ? "real" : (s.efer & 0x400) ? (s.cs.l ? "64-bit" : "compat") : "32-bit";
	fprintf(stderr,
		"vmm: vCPU %u: %s\n"
		"  rip %016llx rsp %016llx rflags %08llx cpl %u %s mode\n"
		"  rax %016llx rbx %016llx rcx %016llx rdx %016llx\n"
		"  rsi %016llx rdi %016llx rbp %016llx r8  %016llx\n"
		"  r9  %016llx r10 %016llx r11 %016llx r12 %016llx\n"
		"  r13 %016llx r14 %016llx r15 %016llx\n"
		"  cr0 %08llx cr2 %016llx cr3 %016llx cr4 %08llx efer %llx\n",
		c->index, what, r.rip, r.rsp, r.rflags, s.cs.dpl, mode, r.rax, r.rbx, r.rcx, r.rdx, r.rsi, r.rdi,
		r.rbp, r.r8, r.r9, r.r10, r.r11, r.r12, r.r13, r.r14, r.r15, s.cr0, s.cr2, s.cr3, s.cr4, s.efer);
}

/* Reach verdict @status; the vCPU that reaches it first reports, the others stay quiet. */
#define vcpu_verdict(c, status, ...)                       \
	do {                                               \
		if (vm_stop((c)->vm, (status)))            \
			vcpu_report((c), __VA_ARGS__);     \
	} while (0)

static void vcpu_exit_io(struct vcpu *c)
{
	struct kvm_run *run = c->run;
	bool is_write = run->io.direction == KVM_EXIT_IO_OUT;
	uint8_t *data = (uint8_t *)run + run->io.data_offset;
	/* KVM places the data inside the run area; refuse anything else. */
	if (run->io.data_offset >= c->vm->kvm.run_size ||
	    (uint64_t)run->io.size * run->io.count > c->vm->kvm.run_size - run->io.data_offset) {
		vcpu_verdict(c, VM_EXIT_GUEST_INTERNAL, "KVM reported port I/O data outside the run area");
		return;
	}
	int r = ioport_dispatch(&c->vm->ports, run->io.port, is_write, data, run->io.size, run->io.count);
	if (r == -2)
		vcpu_verdict(c, VM_EXIT_BAD_ACCESS, "guest %s port 0x%x (%u bytes): no device there",
			     is_write ? "wrote" : "read", run->io.port, run->io.size);
	else if (r != 0)
		vcpu_verdict(c, VM_EXIT_BAD_ACCESS, "guest %s port 0x%x with a %u-byte access the device refuses",
			     is_write ? "wrote" : "read", run->io.port, run->io.size);
}

/* Copy @len bytes (an access KVM decoded: 1, 2, 4 or 8, or less at a page's end) between
 * @to and @from; an aligned access is one move, as the guest's own would be. */
static void vcpu_copy_access(void *to, const void *from, unsigned len)
{
	switch (len) {
	case 1: *(volatile uint8_t *)to = *(const volatile uint8_t *)from; break;
	case 2: *(volatile uint16_t *)to = *(const volatile uint16_t *)from; break;
	case 4: *(volatile uint32_t *)to = *(const volatile uint32_t *)from; break;
	case 8: *(volatile uint64_t *)to = *(const volatile uint64_t *)from; break;
	default: memcpy(to, from, len); break;
	}
}

/*
 * There are no MMIO devices: KVM exits so for a guest-physical address it could not map.
 * In guest memory whose KVM slot is still being made (a VM starts before all of its are,
 * see vm_memslots_settle), the access waits for the slots and is done here, on the host's
 * mapping of the guest's memory (a missing page faults in to the fault thread as the
 * guest's own access would). Anything else is the guest's error: a write to a read-only
 * mapping, or an address outside guest memory.
 */
static void vcpu_exit_mmio(struct vcpu *c)
{
	struct kvm_run *run = c->run;
	uint64_t gpa = run->mmio.phys_addr;
	unsigned len = run->mmio.len;
	bool write = run->mmio.is_write;
	const struct guest_region *g = guest_memory_region(&c->vm->mem, gpa);
	if (g && !(write && guest_region_read_only(g)) && len <= sizeof(run->mmio.data) &&
	    gpa + len <= g->gpa + g->size) {
		if (vm_memslots_settle(c->vm) != 0) { /* the VM is stopped already, and said why */
			vcpu_verdict(c, VM_EXIT_VMM_ERROR, "%s", error_message());
			return;
		}
		uint8_t *host = g->hva + (gpa - g->gpa);
		if (write)
			vcpu_copy_access(host, run->mmio.data, len);
		else
			vcpu_copy_access(run->mmio.data, host, len);
		atomic_fetch_add(&c->vm->memslot_wait_accesses, 1);
		return;
	}
	vcpu_verdict(c, VM_EXIT_BAD_ACCESS, "guest %s guest-physical 0x%llx (%u bytes): %s%s",
		     write ? "wrote" : "read", (unsigned long long)gpa, len,
		     g ? "read-only mapping of " : "outside guest memory", g ? (g->path ? g->path : "RAM") : "");
}

static void vcpu_exit(struct vcpu *c)
{
	struct kvm_run *run = c->run;
	switch (run->exit_reason) {
	case KVM_EXIT_IO:
		vcpu_exit_io(c);
		break;
	case KVM_EXIT_MMIO:
		vcpu_exit_mmio(c);
		break;
	case KVM_EXIT_HLT:
		vcpu_verdict(c, VM_EXIT_NO_PROGRESS, "guest stopped making progress: halted with nothing to wake it");
		break;
	case KVM_EXIT_SHUTDOWN:
		vcpu_verdict(c, VM_EXIT_TRIPLE_FAULT, "guest triple fault (shutdown)");
		break;
	case KVM_EXIT_FAIL_ENTRY:
		vcpu_verdict(c, VM_EXIT_GUEST_INTERNAL, "KVM could not enter the guest (hardware reason 0x%llx)",
			     (unsigned long long)run->fail_entry.hardware_entry_failure_reason);
		break;
	case KVM_EXIT_INTERNAL_ERROR:
		vcpu_verdict(c, VM_EXIT_GUEST_INTERNAL, "KVM internal error (suberror %u)", run->internal.suberror);
		break;
	case KVM_EXIT_INTR:
		break;
	default:
		vcpu_verdict(c, VM_EXIT_GUEST_INTERNAL, "unexpected KVM exit reason %u", run->exit_reason);
		break;
	}
}

static void *vcpu_thread(void *arg)
{
	struct vcpu *c = arg;
	sigset_t kick;
	sigemptyset(&kick);
	sigaddset(&kick, VCPU_KICK_SIGNAL);
	pthread_sigmask(SIG_UNBLOCK, &kick, NULL);
	if (pthread_getcpuclockid(pthread_self(), &c->cpu_clock) == 0)
		atomic_store_explicit(&c->cpu_clock_set, true, memory_order_release);

	while (!atomic_load(&c->vm->stopping_flag)) {
		if (atomic_load(&c->vm->pause_count)) {
			vm_park(c->vm);
			/* A kick for the pause is consumed; one for a stop sets it again. */
			__atomic_store_n(&c->run->immediate_exit, 0, __ATOMIC_SEQ_CST);
			continue;
		}
		if (!atomic_load(&c->vm->first_run_ns)) {
			unsigned long long zero = 0;
			if (atomic_compare_exchange_strong(&c->vm->first_run_ns, &zero, clock_monotonic_ns())) {
				pthread_mutex_lock(&c->vm->lock); /* vm_await_first_run waits for it */
				pthread_cond_broadcast(&c->vm->stopped_cond);
				pthread_mutex_unlock(&c->vm->lock);
			}
		}
		if (ioctl(c->fd, KVM_RUN, 0) != 0) {
			if (errno == EINTR || errno == EAGAIN)
				continue;
			vcpu_verdict(c, VM_EXIT_VMM_ERROR, "KVM_RUN failed: %s", strerror(errno));
			break;
		}
		c->exits++;
		vcpu_exit(c);
	}
	if (atomic_load(&c->report_regs))
		vcpu_report(c, "stopped here");
	pthread_mutex_lock(&c->vm->lock);
	c->vm->running_threads--;
	pthread_cond_broadcast(&c->vm->park_cond);
	pthread_mutex_unlock(&c->vm->lock);
	return NULL;
}

int vcpu_start(struct vcpu *c)
{
	int r = pthread_create(&c->thread, NULL, vcpu_thread, c);
	if (r != 0)
		return error_set_errno(r, "cannot start the thread of vCPU %u", c->index);
	c->started = true;
	return 0;
}

uint64_t vcpu_cpu_time_ns(struct vcpu *c)
{
	/* The clock, not c->thread: vm_wait joins the thread while the monitor may ask, and a
	 * dead thread's clock only fails to read. */
	struct timespec t;
	if (!atomic_load_explicit(&c->cpu_clock_set, memory_order_acquire) || clock_gettime(c->cpu_clock, &t) != 0)
		return 0;
	return (uint64_t)t.tv_sec * 1000000000ull + (uint64_t)t.tv_nsec;
}

void vcpu_kick(struct vcpu *c)
{
	if (!c->started)
		return;
	/* immediate_exit covers a kick that lands just before KVM_RUN is entered. */
	__atomic_store_n(&c->run->immediate_exit, 1, __ATOMIC_SEQ_CST);
	pthread_kill(c->thread, VCPU_KICK_SIGNAL);
}

void vcpu_destroy(struct vcpu *c)
{
	if (c->started)
		pthread_join(c->thread, NULL);
	c->started = false;
	if (c->run)
		munmap(c->run, c->vm->kvm.run_size);
	kvm_stats_freeze(c->stats); /* its figures stay readable; vm_destroy frees them */
	if (c->fd >= 0)
		close(c->fd);
	c->run = NULL;
	c->fd = -1;
}

/*
 * vCPU threads: each runs KVM_RUN in a loop and turns exits into device calls or a
 * verdict on the VM. A vCPU is only ever touched by its own thread once started.
 */
#ifndef VMM_VCPU_H
#define VMM_VCPU_H

#include <linux/kvm.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <time.h>

struct vm;
struct kvm_stats;

/* Legend: (c) set before the vCPU thread starts, then constant; (v) the vCPU thread's own,
 * read by others as a statistic (a torn read is a stale count, never a wrong one: 64-bit). */
struct vcpu {
	struct vm *vm;            /* (c) */
	unsigned index;           /* (c) */
	int fd;                   /* (c) KVM vCPU fd, -1 when not created */
	struct kvm_run *run;      /* (c) shared with KVM */
	pthread_t thread;         /* (c) valid when started */
	bool started;             /* (c) */
	atomic_bool report_regs;  /* print registers when leaving the run loop (timeout) */
	uint64_t exits;           /* (v) exits seen, owned by the vCPU thread */
	clockid_t cpu_clock;      /* (v) the thread's CPU-time clock, read once cpu_clock_set */
	atomic_bool cpu_clock_set; /* (v) set (release) when the thread starts, read (acquire) by others */
	struct kvm_stats *stats;  /* (c) KVM's statistics of this vCPU, or NULL: opened before it runs
				     (a vCPU ioctl waits while the vCPU is in the guest) */
};

/* Create vCPU @index of @vm: its KVM descriptor, run area and statistics; its registers as
 * KVM makes them (vcpu_set_boot_state or vm_state_apply set them). */
int vcpu_create(struct vcpu *c, struct vm *vm, unsigned index);

/* Put @c in its PVH boot state: entry @entry, start info @start_info. */
int vcpu_set_boot_state(struct vcpu *c, uint64_t entry, uint64_t start_info);

/* Start the vCPU's thread. */
int vcpu_start(struct vcpu *c);

/* The CPU time the thread of @c has used, in ns: 0 before it runs and once it has ended
 * (its clock is gone). Any thread, without a lock: the thread is never joined under it. */
uint64_t vcpu_cpu_time_ns(struct vcpu *c);

/* Make the vCPU leave KVM_RUN promptly (it then sees the VM stopping). Any thread. */
void vcpu_kick(struct vcpu *c);

/* Wait for the vCPU's thread, then close the vCPU; its statistics stay readable (frozen)
 * until vm_destroy frees them. */
void vcpu_destroy(struct vcpu *c);

/* Install the no-op signal handler that kicks use. Call once before vcpu_start. */
int vcpu_signals_init(void);

#endif

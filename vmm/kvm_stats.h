/*
 * KVM's own binary statistics (KVM_GET_STATS_FD) of a VM or a vCPU, read by the names the
 * kernel gives them. Histograms are reported as their sum over buckets.
 */
#ifndef VMM_KVM_STATS_H
#define VMM_KVM_STATS_H

#include <stdint.h>

struct kvm_stats;

/* Open the statistics of the VM or vCPU @fd. NULL when KVM has none (old kernels). */
struct kvm_stats *kvm_stats_open(int fd);
void kvm_stats_close(struct kvm_stats *s);

/* Read the figures one last time and close the descriptor: later reads report those
 * (a vCPU's statistics outlive its descriptor, for the figures printed at exit). */
void kvm_stats_freeze(struct kvm_stats *s);

/* Report each statistic as "@prefix<name>" through @emit. 0 or -errno. */
int kvm_stats_read(struct kvm_stats *s, const char *prefix,
		   void (*emit)(void *arg, const char *key, uint64_t value), void *arg);

#endif

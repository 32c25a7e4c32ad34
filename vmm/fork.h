/*
 * Fork of a running VM into child VMs without going through disk: the VMM process forks.
 * The kernel shares every guest page between parent and children copy-on-write, so a
 * child costs memory only for the pages it writes; each child is a VM of its own (its own
 * KVM VM built from the saved vCPU state, its own fault thread and userfaultfd, its own
 * monitor socket "NAME.K"). The guest learns which VM it is from the identity port
 * (guest/abi.h): the generation goes up in all of them, the index is 0 in the parent and
 * K in child K, like fork(2)'s return value.
 */
#ifndef VMM_FORK_H
#define VMM_FORK_H

#include <stdint.h>
#include <sys/types.h>

struct vm;

#define FORK_MAX_CHILDREN 64

struct fork_child {
	pid_t pid;
	unsigned index;       /* K: children of a VM are numbered 1, 2, ... over all its forks */
	char name[80];        /* NAME.K: its monitor's name */
	uint64_t fork_ns;     /* the fork(2) call that made it */
	int status;           /* 0: running; else it failed to start (exit status) */
	char error[200];      /* why it failed */
};

/* What a forked child tells its parent once it runs (or why it could not). */
struct fork_ready {
	unsigned index;       /* which child */
	int status;
	char error[200];
};
_Static_assert(sizeof(struct fork_ready) <= 512, "one atomic pipe write (PIPE_BUF)");

/* A forked child: tell the parent it runs (status 0) or why it failed; closes the pipe. */
void vm_fork_ready(struct vm *vm, int status, const char *error);

struct fork_result {
	unsigned count;
	unsigned generation;  /* the identity generation after the fork */
	uint64_t pause_ns;    /* how long the parent's vCPUs were paused */
	struct fork_child child[FORK_MAX_CHILDREN];
};

/*
 * Fork @vm (named @name) into @count children. Called on the monitor's thread. Refuses VMs
 * whose memory the kernel cannot share by itself (mapped files, external pagers, a swap
 * file) and VMs with a snapshot in progress. Returns 0 in the parent; never returns in a
 * child. -errno with a message when nothing was forked.
 */
int vm_fork(struct vm *vm, const char *name, unsigned count, struct fork_result *res);

/* Reap forked children as they end, announcing each (FORK_EXIT event). Idempotent. */
void vm_fork_reap(struct vm *vm);

#endif

/*
 * Fork of a running VM into child VMs without going through disk: the VMM process forks.
 * The kernel shares every guest page between parent and children copy-on-write, so a
 * child costs memory only for the pages it writes; each child is a VM of its own (its own
 * KVM VM built from the saved vCPU state, its own fault thread and userfaultfd, its own
 * monitor socket "NAME.K"). The guest learns which VM it is from the identity port
 * (guest/abi.h): the generation goes up in all of them, the index is 0 in the parent and
 * K in child K, like fork(2)'s return value.
 *
 * The parent's guest is paused for one fork(2) whatever the count: to make more than one
 * child, the paused parent forks a single-threaded *template* (a copy frozen at the pause)
 * and resumes at once; the template forks the children, tells the parent their pids and
 * exits. The parent is a child subreaper, so the children, orphaned when the template
 * exits, become its children: it reaps them and announces each (FORK_EXIT), never the
 * template. The children wait until the last of them is made before they start, so they
 * do not take the CPU from the forks still to come.
 *
 * The reaper takes every child in the process's own process group (forked VMs and
 * templates inherit it); a child of another kind is started in a process group of its own
 * (the RADOS helper, vmm/store/rados.c) and reaped by whoever started it, never announced
 * as a forked VM. One VM per process forks.
 */
#ifndef VMM_FORK_H
#define VMM_FORK_H

#include <stdint.h>
#include <sys/types.h>

struct vm;

#define FORK_MAX_CHILDREN 64

/* How long a fork waits for every child to say it runs, in all, before it answers. */
#define FORK_READY_TIMEOUT_MS 60000

struct fork_child {
	pid_t pid;            /* 0: never made (see error) */
	unsigned index;       /* K: children of a VM are numbered 1, 2, ... over all its forks */
	char name[80];        /* NAME.K: its monitor's name */
	uint64_t fork_ns;     /* the fork(2) call that made it (0 when unknown) */
	int status;           /* 0: running; else it failed to start (exit status) or was never made */
	char error[200];      /* why it failed */
};

/* A forked child: tell the parent it runs (status 0) or why it failed; closes the channel. */
void vm_fork_ready(struct vm *vm, int status, const char *error);

struct fork_result {
	unsigned count;       /* children asked for: every one is listed, made or not */
	unsigned made;        /* of which made by fork(2) */
	unsigned generation;  /* the identity generation after the fork */
	uint64_t pause_ns;    /* how long the parent's vCPUs were paused */
	uint64_t ready_ns;    /* from the call until every child ran or failed */
	struct fork_child child[FORK_MAX_CHILDREN];
};

/*
 * What the caller of vm_fork (the monitor) does with the processes fork makes: fork knows
 * neither the monitor nor how a VM process is served, and calls these instead.
 */
struct fork_ops {
	/* In a new child, before it becomes a VM of its own: let go of what is the parent's
	 * (its monitor: vm->monitor). Only the forking thread exists in the child. */
	void (*child_leave_parent)(struct vm *vm);
	/* Run the child, a VM of its own now, until its guest ends; must not return. */
	void (*child_serve)(struct vm *vm);
	/* A child ended with exit status @status (reaper thread; never the template). */
	void (*child_exit)(struct vm *vm, pid_t pid, int status);
};

/*
 * Fork @vm (named @name) into @count children (1..FORK_MAX_CHILDREN), @ops (which must
 * outlive the process's children) saying what the children do and who hears of their end.
 * Called on the monitor's thread; returns once every child made runs or failed (at most
 * FORK_READY_TIMEOUT_MS after the fork). Refuses VMs whose memory the kernel cannot share
 * by itself (mapped files, external pagers, a swap file) and VMs with a snapshot in
 * progress. Children are numbered on from the VM's earlier forks (vm->children_made);
 * numbers of children that may have been made are never given again. Returns 0 when at
 * least one child was made, every child in @res (those not made with the reason); never
 * returns in a child. -errno with a message when no child was made.
 */
int vm_fork(struct vm *vm, const char *name, unsigned count, const struct fork_ops *ops, struct fork_result *res);

/* Reap forked children as they end, announcing each (@ops->child_exit), in a thread that
 * lives while the process has children in its process group. Idempotent. */
void vm_fork_reap(struct vm *vm, const struct fork_ops *ops);

#endif

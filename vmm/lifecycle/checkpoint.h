/*
 * Continuous checkpoints: a job of the VM that takes a snapshot (snapshot.h) every
 * interval while the VM runs, into one store, named PREFIX-1, PREFIX-2, ... and keeps the
 * newest N (older ones deleted from the store; a child absorbs what it needed of them, see
 * store_delete, and the thinning below). Snapshots are incremental, so each costs what the guest wrote since the
 * one before.
 *
 * Pacing: a checkpoint starts every interval after the last one started; one that takes
 * longer than the interval delays the next (it starts as soon as the last is durable: no
 * pile-up, never two at once). A snapshot taken meanwhile by other means (snapshot-save)
 * makes that round skip. The job ends on job-cancel (after the checkpoint in progress), when
 * the VM stops, or at the first failure (said in its status): a store that cannot be written
 * is not retried every interval behind the user's back.
 */
#ifndef VMM_CHECKPOINT_H
#define VMM_CHECKPOINT_H

#include <limits.h>
#include <stdbool.h>
#include <stdint.h>

#include "vmm/store/store.h"

struct vm;

#define CHECKPOINT_PREFIX_MAX 48
#define CHECKPOINT_KEEP_MAX 10000

struct snapshot_result;

/* Called from the job's thread after each checkpoint is durable. */
typedef void checkpoint_done_fn(void *arg, const char *name, const struct snapshot_result *res);

struct checkpoint_config {
	char store[PATH_MAX];               /* absolute */
	char prefix[CHECKPOINT_PREFIX_MAX]; /* names are PREFIX-N */
	uint64_t every_ms;                  /* >= 1 */
	unsigned keep;                      /* newest kept, 0 = all */
	checkpoint_done_fn *done;           /* or NULL */
	void *done_arg;
};

enum checkpoint_state {
	CHECKPOINT_NONE,      /* never started */
	CHECKPOINT_RUNNING,
	CHECKPOINT_STOPPING,  /* cancelled: ends after the checkpoint in progress */
	CHECKPOINT_CONCLUDED, /* ended (error says whether by a failure) */
};

struct checkpoint_status {
	enum checkpoint_state state;
	struct checkpoint_config cfg;
	uint64_t taken;          /* checkpoints made durable */
	uint64_t skipped;        /* rounds skipped: another snapshot was being taken */
	uint64_t late;           /* checkpoints that started late: the one before overran */
	uint64_t deleted;        /* older checkpoints deleted (--keep) */
	uint64_t last_total_ns;  /* the last checkpoint, request to durable */
	uint64_t max_pause_ns;   /* the longest guest pause of all */
	char last[80];           /* the last checkpoint's name, "" before the first */
	char error[256];         /* why it ended, "" when it did not fail */
};

/*
 * Thinning (--keep N). The job deletes the checkpoints older than the newest N, oldest
 * first; a deleted one's child absorbs its list (store_delete), which costs the two lists.
 * That is cheap for a delta, whose list holds what the guest wrote in its interval, but
 * not for a base, a checkpoint that reads through no other (the first of a fresh VM, or
 * one whose chain was cut complete): its list names every page of the guest, and its
 * child absorbing it would rewrite a whole guest's list at every checkpoint. So a base
 * beyond the newest N whose child is a delta stays until that child lists at least
 * 1/CHECKPOINT_BASE_SHARE of its entries (the deltas deleted meanwhile are absorbed into
 * that child: it holds what was written since the base); then it is absorbed. A
 * checkpoint's cost stays in proportion to what the guest wrote since the one before, and
 * the store holds the newest N plus at most that one older base. Its pages are needed by
 * the N anyway.
 */
#define CHECKPOINT_BASE_SHARE 8
/* Room in the job's list: N, the new one, a deferred base and one more base (a chain cut
 * complete beyond N) while the first is absorbed. */
#define CHECKPOINT_KEPT_CAP(keep) ((size_t)(keep) + 3)

struct checkpoint_kept {
	char name[STORE_NAME_MAX + 1];
	uint64_t entries; /* its manifest's entries; with deltas absorbed, an estimate from above */
	bool base;        /* it reads through no other snapshot */
};

/* Told of each deletion: @r 0, or -errno with the message set (the checkpoint stays in the
 * store but leaves the list). */
typedef void checkpoint_deleted_fn(void *arg, const char *name, int r);

/* Thin @kept (*n checkpoints of store @s, oldest first, each the parent of the next; room
 * for @cap) down to the newest @keep as above, through @fn. When the list is full a base
 * is absorbed however little was written since it. */
void checkpoint_thin(struct store *s, struct checkpoint_kept *kept, unsigned *n, unsigned cap, unsigned keep,
		     checkpoint_deleted_fn *fn, void *arg);

/* Start the job on @vm with @cfg (checked: -EINVAL with a message for a bad prefix, an
 * interval of 0, keep over CHECKPOINT_KEEP_MAX). -EBUSY while one runs. The first
 * checkpoint is taken at once. Monitor thread. 0 or -errno with a message. */
int checkpoint_start(struct vm *vm, const struct checkpoint_config *cfg);

/* Ask the job to end after the checkpoint in progress; returns at once. -ENOENT with a
 * message when none runs. Any thread. */
int checkpoint_cancel(struct vm *vm);

/* The job's status (state CHECKPOINT_NONE when none was started). Any thread. */
void checkpoint_status(struct vm *vm, struct checkpoint_status *out);

/* End the job, if any, and wait for it (the VM is stopping). */
void checkpoint_stop(struct vm *vm);

/* In a forked child: the parent's job is not the child's (its thread is not there). */
void checkpoint_forget(struct vm *vm);

#endif

/*
 * Continuous checkpoints: a job of the VM that takes a snapshot (snapshot.h) every
 * interval while the VM runs, into one store, named PREFIX-1, PREFIX-2, ... and keeps the
 * newest N (older ones deleted from the store; a child absorbs what it needed of them, see
 * store_delete). Snapshots are incremental, so each costs what the guest wrote since the
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

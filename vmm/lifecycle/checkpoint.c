/* Continuous checkpoints of a running VM. See checkpoint.h. */
#include "vmm/lifecycle/checkpoint.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "vmm/clock.h"
#include "vmm/error.h"
#include "vmm/lifecycle/snapshot.h"
#include "vmm/store/store.h"
#include "vmm/vm.h"

struct checkpoint_job {
	struct vm *vm;                 /* (c) */
	pthread_t thread;              /* (c) */
	pthread_mutex_t lock;
	pthread_cond_t cond;           /* signalled on cancel (CLOCK_MONOTONIC waits) */
	bool cancel;                   /* (lock) */
	struct checkpoint_status st;   /* (lock) */
	uint64_t next_index;           /* (job thread) N of the next PREFIX-N */
	struct checkpoint_kept *kept;  /* (job thread) checkpoints kept, oldest first: room for
				        * CHECKPOINT_KEPT_CAP(cfg.keep) */
	unsigned nkept;                /* (job thread) */
	struct store *deleter;         /* (job thread) the store, for deleting old ones; NULL: keep all */
};

/* Wait until @until_ns (monotonic) or a cancel; true when cancelled. */
static bool checkpoint_sleep(struct checkpoint_job *job, uint64_t until_ns)
{
	pthread_mutex_lock(&job->lock);
	while (!job->cancel && clock_monotonic_ns() < until_ns) {
		struct timespec ts = {.tv_sec = (time_t)(until_ns / 1000000000ull), .tv_nsec = (long)(until_ns % 1000000000ull)};
		pthread_cond_timedwait(&job->cond, &job->lock, &ts);
	}
	bool cancel = job->cancel;
	pthread_mutex_unlock(&job->lock);
	return cancel;
}

void checkpoint_thin(struct store *s, struct checkpoint_kept *kept, unsigned *n, unsigned cap, unsigned keep,
		     checkpoint_deleted_fn *fn, void *arg)
{
	unsigned i = 0;
	while (*n > keep && i < *n - keep) {
		struct checkpoint_kept *k = &kept[i], *child = &kept[i + 1]; /* i < *n - keep: one is newer */
		bool deferred = k->base && !child->base &&
				(uint64_t)child->entries * CHECKPOINT_BASE_SHARE < k->entries;
		if (deferred && *n < cap) {
			i++;
			continue;
		}
		int r = store_delete(s, k->name);
		if (!r && !child->base) {
			child->entries += k->entries;
			child->base = k->base;
		}
		fn(arg, k->name, r);
		error_clear();
		memmove(k, k + 1, (*n - i - 1) * sizeof(*k));
		(*n)--;
	}
}

static void checkpoint_deleted(void *arg, const char *name, int r)
{
	(void)name;
	struct checkpoint_job *job = arg;
	pthread_mutex_lock(&job->lock);
	if (r)
		snprintf(job->st.error, sizeof(job->st.error), "an older checkpoint was kept: %s", error_message());
	else
		job->st.deleted++;
	pthread_mutex_unlock(&job->lock);
}

/* One checkpoint: 0 taken, 1 skipped (another snapshot was being taken), -errno failed. */
static int checkpoint_take(struct checkpoint_job *job)
{
	const struct checkpoint_config *cfg = &job->st.cfg;
	for (;;) {
		char name[STORE_NAME_MAX + 1];
		snprintf(name, sizeof(name), "%s-%llu", cfg->prefix, (unsigned long long)job->next_index++);
		struct snapshot_result res;
		int r = snapshot_save(job->vm, cfg->store, name, "checkpoint", NULL, NULL, &res);
		if (r == -EEXIST) {
			error_clear(); /* a name left by an earlier run: the next number */
			continue;
		}
		if (r == -EBUSY || r == -ECANCELED) {
			error_clear(); /* another snapshot was being taken, or this one was cancelled */
			return 1;
		}
		if (r)
			return r;
		pthread_mutex_lock(&job->lock);
		job->st.taken++;
		job->st.last_total_ns = res.total_ns;
		if (res.pause_ns > job->st.max_pause_ns)
			job->st.max_pause_ns = res.pause_ns;
		snprintf(job->st.last, sizeof(job->st.last), "%s", name);
		pthread_mutex_unlock(&job->lock);
		if (cfg->done)
			cfg->done(cfg->done_arg, name, &res);
		if (job->deleter) { /* keeping them all, the job lists none */
			struct checkpoint_kept *k = &job->kept[job->nkept++];
			snprintf(k->name, sizeof(k->name), "%s", name);
			k->entries = res.entries;
			k->base = res.base;
			checkpoint_thin(job->deleter, job->kept, &job->nkept, CHECKPOINT_KEPT_CAP(cfg->keep), cfg->keep,
					checkpoint_deleted, job);
		}
		return 0;
	}
}

static void *checkpoint_main(void *arg)
{
	struct checkpoint_job *job = arg;
	uint64_t every = job->st.cfg.every_ms * 1000000ull, next = clock_monotonic_ns();
	int r = 0;
	while (!checkpoint_sleep(job, next)) {
		uint64_t start = clock_monotonic_ns();
		r = checkpoint_take(job);
		if (r < 0)
			break;
		pthread_mutex_lock(&job->lock);
		job->st.skipped += r == 1;
		next = start + every;
		if (clock_monotonic_ns() > next) {
			job->st.late++;
			next = clock_monotonic_ns();
		}
		pthread_mutex_unlock(&job->lock);
		r = 0;
	}
	pthread_mutex_lock(&job->lock);
	if (r < 0)
		snprintf(job->st.error, sizeof(job->st.error), "checkpoint %s-%llu failed: %s", job->st.cfg.prefix,
			 (unsigned long long)job->next_index - 1, error_message());
	job->st.state = CHECKPOINT_CONCLUDED;
	pthread_mutex_unlock(&job->lock);
	return NULL;
}

static void checkpoint_free(struct checkpoint_job *job)
{
	if (!job)
		return;
	store_close(job->deleter);
	free(job->kept);
	pthread_cond_destroy(&job->cond);
	pthread_mutex_destroy(&job->lock);
	free(job);
}

/* @vm's job, under the VM's lock. */
static struct checkpoint_job *checkpoint_of(struct vm *vm)
{
	pthread_mutex_lock(&vm->lock);
	struct checkpoint_job *job = vm->checkpoint;
	pthread_mutex_unlock(&vm->lock);
	return job;
}

static int checkpoint_check(const struct checkpoint_config *cfg)
{
	char name[STORE_NAME_MAX + 32];
	snprintf(name, sizeof(name), "%s-%u", cfg->prefix, UINT32_MAX);
	if (!cfg->prefix[0] || strlen(name) > STORE_NAME_MAX || !store_name_valid(name))
		return error_set(EINVAL, "'%s' cannot begin checkpoint names (1-%d of A-Z a-z 0-9 . _ -, not starting with '.')",
				 cfg->prefix, STORE_NAME_MAX - 11);
	if (!cfg->every_ms)
		return error_set(EINVAL, "checkpoints need an interval of at least 1 ms");
	if (cfg->keep > CHECKPOINT_KEEP_MAX)
		return error_set(EINVAL, "checkpoints keep at most %d (0: all)", CHECKPOINT_KEEP_MAX);
	if (cfg->store[0] != '/' && !store_is_rados(cfg->store))
		return error_set(EINVAL, "the checkpoints' store must be an absolute path or rados:POOL[/NAMESPACE], not %s",
				 cfg->store);
	return 0;
}

int checkpoint_start(struct vm *vm, const struct checkpoint_config *cfg)
{
	int r = checkpoint_check(cfg);
	if (r)
		return r;
	struct checkpoint_job *old = checkpoint_of(vm);
	if (old) {
		struct checkpoint_status st;
		checkpoint_status(vm, &st);
		if (st.state != CHECKPOINT_CONCLUDED)
			return error_set(EBUSY, "checkpoints of this VM are being taken already (every %llu ms into %s)",
					 (unsigned long long)st.cfg.every_ms, st.cfg.store);
	}
	struct checkpoint_job *job = calloc(1, sizeof(*job));
	if (!job)
		return error_set(ENOMEM, "no memory for checkpoints");
	pthread_mutex_init(&job->lock, NULL);
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&job->cond, &ca);
	pthread_condattr_destroy(&ca);
	job->vm = vm;
	job->st.state = CHECKPOINT_RUNNING;
	job->st.cfg = *cfg;
	job->next_index = 1;
	job->kept = calloc(CHECKPOINT_KEPT_CAP(cfg->keep), sizeof(job->kept[0]));
	if (!job->kept) {
		checkpoint_free(job);
		return error_set(ENOMEM, "no memory for checkpoints");
	}
	if (cfg->keep && (r = store_open(cfg->store, true, &job->deleter)) != 0) {
		checkpoint_free(job);
		return r;
	}
	if ((r = pthread_create(&job->thread, NULL, checkpoint_main, job)) != 0) {
		checkpoint_free(job);
		return error_set(r, "cannot start the checkpoint thread: %s", strerror(r));
	}
	if (old) {
		pthread_join(old->thread, NULL);
		checkpoint_free(old);
	}
	pthread_mutex_lock(&vm->lock);
	vm->checkpoint = job;
	pthread_mutex_unlock(&vm->lock);
	return 0;
}

int checkpoint_cancel(struct vm *vm)
{
	struct checkpoint_job *job = checkpoint_of(vm);
	if (job) {
		pthread_mutex_lock(&job->lock);
		bool running = job->st.state == CHECKPOINT_RUNNING;
		if (running) {
			job->cancel = true;
			job->st.state = CHECKPOINT_STOPPING;
			pthread_cond_broadcast(&job->cond);
		}
		pthread_mutex_unlock(&job->lock);
		if (running)
			return 0;
	}
	return error_set(ENOENT, "no checkpoints of this VM are being taken");
}

void checkpoint_status(struct vm *vm, struct checkpoint_status *out)
{
	struct checkpoint_job *job = checkpoint_of(vm);
	if (!job) {
		*out = (struct checkpoint_status){.state = CHECKPOINT_NONE};
		return;
	}
	pthread_mutex_lock(&job->lock);
	*out = job->st;
	pthread_mutex_unlock(&job->lock);
}

void checkpoint_stop(struct vm *vm)
{
	(void)checkpoint_cancel(vm);
	error_clear();
	pthread_mutex_lock(&vm->lock);
	struct checkpoint_job *job = vm->checkpoint;
	vm->checkpoint = NULL;
	pthread_mutex_unlock(&vm->lock);
	if (!job)
		return;
	pthread_join(job->thread, NULL);
	checkpoint_free(job);
}

void checkpoint_forget(struct vm *vm)
{
	vm->checkpoint = NULL;
}

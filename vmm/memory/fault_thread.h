/*
 * The fault thread: waits on a userfaultfd (or, in tests, any fd that yields struct
 * uffd_msg records), a stop pipe and any watched fds (a pager's event fd: the pager has
 * something to do of its own, pager.h), and hands every page fault to a handler and every
 * watched fd that turns readable to the watch function.
 * The handler resolves the fault (copy data in, zero-fill, wake) or fails it; a failure
 * stops the thread and is reported through on_error so the VM can reach a verdict. When
 * no fault waits, the thread does background work in small steps (an idle function) while
 * there is some: a fault waits for one step at most.
 */
#ifndef VMM_FAULT_THREAD_H
#define VMM_FAULT_THREAD_H

#include <linux/userfaultfd.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

struct fault_event {
	uint64_t address; /* host virtual address that faulted (page aligned) */
	bool write;       /* a write access */
	bool wp;          /* a write-protect fault (the page is present but protected) */
};

/*
 * Resolve one fault. Returns 0 when the faulting thread was woken (or will be), or
 * -errno with error_message() set: the thread then stops and calls on_error.
 */
typedef int fault_handler_fn(void *arg, const struct fault_event *ev);
typedef void fault_error_fn(void *arg, int err, const char *message);

/* Watched fd @index turned readable: do what it announces. 0; 1: stop watching it (it
 * will stay readable with nothing to do); or -errno with error_message() set: the thread
 * then stops and calls on_error. */
typedef int fault_watch_fn(void *arg, unsigned index);

#define FAULT_THREAD_WATCH_MAX 8

/* One small step of background work; true while more remains (false: called again only
 * after fault_thread_wake). */
typedef bool fault_idle_fn(void *arg);

/* Legend: (c) set by fault_thread_start, then constant; (t) the fault thread's own, read by
 * others only after fault_thread_stop has joined it; (w) under watch_lock. */
struct fault_thread {
	int fd;                   /* (c) event source */
	int stop_pipe[2];         /* (c) write end: stop request */
	fault_handler_fn *handle; /* (c) */
	fault_idle_fn *idle;      /* (c) NULL: none */
	fault_error_fn *on_error; /* (c) */
	void *arg;                /* (c) */
	fault_watch_fn *watch;    /* (c) NULL: nothing watched */
	pthread_mutex_t watch_lock; /* guards nwatch, watch_fd and watch_gen */
	unsigned nwatch;          /* (w) indexes used so far */
	int watch_fd[FAULT_THREAD_WATCH_MAX]; /* (w) -1: not watched (free for the next) */
	unsigned watch_gen[FAULT_THREAD_WATCH_MAX]; /* (w) bumped when an index is given again */
	pthread_t thread;
	bool started;
	uint64_t events;          /* (t) page faults handled (owned by the thread) */
	uint64_t other_events;    /* (t) non-fault events seen and ignored */
};

/* Start a thread reading @fd (@idle: NULL, or called first once no fault waits). Returns 0
 * or -errno with a message. */
int fault_thread_start(struct fault_thread *ft, int fd, fault_handler_fn *handle, fault_idle_fn *idle,
		       fault_error_fn *on_error, void *arg);

/* fault_thread_start, also watching @nwatch fds (at most FAULT_THREAD_WATCH_MAX; -1
 * entries are skipped) for @watch, called with their index in @fds. */
int fault_thread_start_watching(struct fault_thread *ft, int fd, fault_handler_fn *handle, fault_idle_fn *idle,
				fault_error_fn *on_error, void *arg, const int *fds, unsigned nwatch,
				fault_watch_fn *watch);

/* Watch @fd too, from now on, for the watch function given at the start (with the index
 * returned: the lowest no fd is watched at, one given up or unwatched before included).
 * The index, or -errno with a message (-ENOSPC: FAULT_THREAD_WATCH_MAX are watched;
 * -EINVAL: no watch function). A watch function's answer 1 about an index's earlier fd
 * never stops the watch of the fd given that index again. */
int fault_thread_watch(struct fault_thread *ft, int fd);

/* Watch watched fd @index no more (its owner is about to close it): from the thread's next
 * look on, which this call brings about, it is not polled. A call of the watch function
 * for it may still be under way, or follow once: the watch function must tell. */
void fault_thread_unwatch(struct fault_thread *ft, unsigned index);

/* There may be background work again: the idle function is called once no fault waits. */
void fault_thread_wake(struct fault_thread *ft);

/* Ask the thread to stop, wait for it, close the stop pipe. Safe if never started. */
void fault_thread_stop(struct fault_thread *ft);

/* Parse one uffd_msg; returns false for events that are not page faults. */
bool fault_event_from_msg(const struct uffd_msg *m, struct fault_event *ev);

#endif

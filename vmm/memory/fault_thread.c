#include "vmm/memory/fault_thread.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <string.h>
#include <unistd.h>

#include "vmm/error.h"

#define FAULT_BATCH 64
#define FAULT_THREAD_STOP 's' /* bytes on the stop pipe */
#define FAULT_THREAD_WAKE 'w'

/* Read what the stop pipe holds: true when it asks the thread to stop. */
static bool fault_thread_stop_asked(struct fault_thread *ft)
{
	char b[16];
	ssize_t n = read(ft->stop_pipe[0], b, sizeof(b));
	if (n < 0)
		return errno != EINTR && errno != EAGAIN;
	return n == 0 || memchr(b, FAULT_THREAD_STOP, (size_t)n) != NULL;
}

bool fault_event_from_msg(const struct uffd_msg *m, struct fault_event *ev)
{
	if (m->event != UFFD_EVENT_PAGEFAULT)
		return false;
	ev->address = m->arg.pagefault.address & ~4095ull;
	ev->write = (m->arg.pagefault.flags & UFFD_PAGEFAULT_FLAG_WRITE) != 0;
	ev->wp = (m->arg.pagefault.flags & UFFD_PAGEFAULT_FLAG_WP) != 0;
	return true;
}

static void *fault_thread_main(void *arg)
{
	struct fault_thread *ft = arg;
	struct pollfd fds[2 + FAULT_THREAD_WATCH_MAX] = {{ft->fd, POLLIN, 0}, {ft->stop_pipe[0], POLLIN, 0}};
	struct uffd_msg msgs[FAULT_BATCH];
	bool idle_work = ft->idle != NULL;
	for (;;) {
		/* The watched fds as they are now: fault_thread_watch adds, and wakes us to look. */
		unsigned gen[FAULT_THREAD_WATCH_MAX];
		pthread_mutex_lock(&ft->watch_lock);
		unsigned nwatch = ft->nwatch;
		for (unsigned i = 0; i < nwatch; i++) {
			fds[2 + i] = (struct pollfd){ft->watch_fd[i], POLLIN, 0};
			gen[i] = ft->watch_gen[i];
		}
		pthread_mutex_unlock(&ft->watch_lock);
		int ready = poll(fds, 2 + nwatch, idle_work ? 0 : -1);
		if (ready < 0) {
			if (errno == EINTR)
				continue;
			ft->on_error(ft->arg, errno, "fault thread: poll failed");
			return NULL;
		}
		if (ready == 0) {
			idle_work = ft->idle(ft->arg);
			continue;
		}
		if (fds[1].revents) {
			if (fault_thread_stop_asked(ft))
				return NULL;
			idle_work = ft->idle != NULL;
		}
		for (unsigned i = 0; i < nwatch; i++) {
			if (fds[2 + i].fd < 0 || !fds[2 + i].revents)
				continue;
			int r = ft->watch(ft->arg, i);
			if (r < 0) {
				ft->on_error(ft->arg, -r, error_message());
				return NULL;
			}
			if (r > 0) {
				/* Given up: unless the index went to another fd meanwhile. */
				pthread_mutex_lock(&ft->watch_lock);
				if (ft->watch_gen[i] == gen[i])
					ft->watch_fd[i] = -1;
				pthread_mutex_unlock(&ft->watch_lock);
			}
		}
		if (!fds[0].revents)
			continue;
		if (fds[0].revents & (POLLERR | POLLNVAL)) {
			ft->on_error(ft->arg, EIO, "fault thread: the userfaultfd failed");
			return NULL;
		}
		ssize_t n = read(ft->fd, msgs, sizeof(msgs));
		if (n < 0) {
			if (errno == EAGAIN || errno == EINTR)
				continue;
			ft->on_error(ft->arg, errno, "fault thread: cannot read the userfaultfd");
			return NULL;
		}
		if (n == 0) {
			/* End of a test's fake source. */
			return NULL;
		}
		for (size_t i = 0; i < (size_t)n / sizeof(msgs[0]); i++) {
			struct fault_event ev;
			if (!fault_event_from_msg(&msgs[i], &ev)) {
				ft->other_events++;
				continue;
			}
			ft->events++;
			int r = ft->handle(ft->arg, &ev);
			if (r) {
				ft->on_error(ft->arg, -r, error_message());
				return NULL;
			}
		}
	}
}

int fault_thread_start(struct fault_thread *ft, int fd, fault_handler_fn *handle, fault_idle_fn *idle,
		       fault_error_fn *on_error, void *arg)
{
	return fault_thread_start_watching(ft, fd, handle, idle, on_error, arg, NULL, 0, NULL);
}

int fault_thread_start_watching(struct fault_thread *ft, int fd, fault_handler_fn *handle, fault_idle_fn *idle,
				fault_error_fn *on_error, void *arg, const int *fds, unsigned nwatch,
				fault_watch_fn *watch)
{
	memset(ft, 0, sizeof(*ft));
	pthread_mutex_init(&ft->watch_lock, NULL);
	if (nwatch > FAULT_THREAD_WATCH_MAX)
		return error_set(EINVAL, "the fault thread watches at most %d fds", FAULT_THREAD_WATCH_MAX);
	ft->watch = watch;
	ft->nwatch = nwatch;
	for (unsigned i = 0; i < nwatch; i++)
		ft->watch_fd[i] = fds[i];
	ft->fd = fd;
	ft->handle = handle;
	ft->idle = idle;
	ft->on_error = on_error;
	ft->arg = arg;
	if (pipe2(ft->stop_pipe, O_CLOEXEC) != 0)
		return error_set_errno(errno, "cannot create the fault thread's stop pipe");
	int r = pthread_create(&ft->thread, NULL, fault_thread_main, ft);
	if (r != 0) {
		close(ft->stop_pipe[0]);
		close(ft->stop_pipe[1]);
		return error_set_errno(r, "cannot start the fault thread");
	}
	ft->started = true;
	return 0;
}

int fault_thread_watch(struct fault_thread *ft, int fd)
{
	if (!ft->watch)
		return error_set(EINVAL, "this fault thread has no watch function");
	pthread_mutex_lock(&ft->watch_lock);
	unsigned i = 0;
	while (i < ft->nwatch && ft->watch_fd[i] >= 0)
		i++;
	int index = i < FAULT_THREAD_WATCH_MAX ? (int)i : -ENOSPC;
	if (index >= 0) {
		ft->watch_fd[i] = fd;
		ft->watch_gen[i]++;
		if (i == ft->nwatch)
			ft->nwatch++;
	}
	pthread_mutex_unlock(&ft->watch_lock);
	if (index < 0)
		return error_set(ENOSPC, "the fault thread watches at most %d fds", FAULT_THREAD_WATCH_MAX);
	fault_thread_wake(ft);
	return index;
}

void fault_thread_unwatch(struct fault_thread *ft, unsigned index)
{
	pthread_mutex_lock(&ft->watch_lock);
	if (index < ft->nwatch)
		ft->watch_fd[index] = -1;
	pthread_mutex_unlock(&ft->watch_lock);
	fault_thread_wake(ft);
}

void fault_thread_wake(struct fault_thread *ft)
{
	char c = FAULT_THREAD_WAKE;
	if (ft->started)
		while (write(ft->stop_pipe[1], &c, 1) < 0 && errno == EINTR)
			;
}

void fault_thread_stop(struct fault_thread *ft)
{
	if (!ft->started)
		return;
	char c = FAULT_THREAD_STOP;
	while (write(ft->stop_pipe[1], &c, 1) < 0 && errno == EINTR)
		;
	pthread_join(ft->thread, NULL);
	close(ft->stop_pipe[0]);
	close(ft->stop_pipe[1]);
	ft->started = false;
}

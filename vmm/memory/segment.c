/* Host-wide shared memory segments and their rendezvous. See segment.h. */
#include "vmm/memory/segment.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "vmm/clock.h"
#include "vmm/error.h"

#define SEGMENT_STEP_NS 1000000000ull /* one socket operation */
#define SEGMENT_OPEN_NS 2000000000ull /* a whole open, or a takeover */
#define SEGMENT_ROUNDS 8              /* connect-or-bind attempts of one open or takeover */
#define SEGMENT_BACKLOG 64
#define SEGMENT_MAX_FDS 4             /* descriptors one message may bring in (the rest: closed) */
#define SEGMENT_SEALS (F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL)

void segment_init(struct segment *s)
{
	memset(s, 0, sizeof(*s));
	s->fd = -1;
	s->stop_fd = -1;
	s->listen_fd = -1;
	s->conn_fd = -1;
}

static struct segment_msg segment_msg_make(uint16_t type, uint64_t size, uint64_t value)
{
	struct segment_msg m = {
		.magic = SEGMENT_MAGIC, .version = SEGMENT_VERSION, .type = type, .size = size, .value = value};
	return m;
}

static uint64_t segment_deadline(uint64_t end)
{
	uint64_t step = clock_monotonic_ns() + SEGMENT_STEP_NS;
	return step < end ? step : end;
}

/*
 * Wait until @fd (-1: none) has one of @events, @stop_fd (-1: none) is readable, or the
 * monotonic clock reaches @deadline. Returns 0 (fd ready), -ECANCELED (stop asked),
 * -ETIMEDOUT, or -errno of poll.
 */
static int segment_wait(int fd, short events, int stop_fd, uint64_t deadline)
{
	for (;;) {
		uint64_t now = clock_monotonic_ns();
		if (now >= deadline)
			return -ETIMEDOUT;
		struct pollfd p[2] = {{stop_fd, POLLIN, 0}, {fd, events, 0}};
		int n = poll(p, 2, (int)((deadline - now + 999999) / 1000000));
		if (n < 0 && errno != EINTR)
			return -errno;
		if (n > 0 && p[0].revents)
			return -ECANCELED;
		if (n > 0 && p[1].revents)
			return 0;
	}
}

/* Sleep @ms (cut short at @end); -ECANCELED if a stop was asked, else 0. */
static int segment_sleep(int stop_fd, unsigned ms, uint64_t end)
{
	uint64_t until = clock_monotonic_ns() + (uint64_t)ms * 1000000;
	int r = segment_wait(-1, 0, stop_fd, until < end ? until : end);
	return r == -ECANCELED ? r : 0;
}

/* Send @m with @fd (-1: none) without blocking or SIGPIPE. 0 or -errno. */
static int segment_send(int sock, struct segment_msg m, int fd)
{
	union {
		struct cmsghdr h;
		char buf[CMSG_SPACE(sizeof(int))];
	} ctl;
	struct iovec iov = {&m, sizeof(m)};
	struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1};
	if (fd >= 0) {
		memset(&ctl, 0, sizeof(ctl));
		mh.msg_control = ctl.buf;
		mh.msg_controllen = sizeof(ctl.buf);
		struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN(sizeof(int));
		memcpy(CMSG_DATA(c), &fd, sizeof(int));
	}
	ssize_t n;
	do
		n = sendmsg(sock, &mh, MSG_DONTWAIT | MSG_NOSIGNAL);
	while (n < 0 && errno == EINTR);
	if (n < 0)
		return -errno;
	return n == (ssize_t)sizeof(m) ? 0 : -EIO;
}

/*
 * Receive one record from @sock without blocking. Descriptors it brings are closed, except
 * the first when @fd is not NULL (*fd: it, or -1); *nfds counts them all (more than
 * SEGMENT_MAX_FDS count as SEGMENT_MAX_FDS + 1). Returns the record's length (a record
 * longer than a message gives sizeof(*m) + 1), 0 at end of file, or -errno.
 */
static ssize_t segment_recv(int sock, struct segment_msg *m, int *fd, unsigned *nfds)
{
	union {
		struct cmsghdr h;
		char buf[CMSG_SPACE(sizeof(int) * SEGMENT_MAX_FDS)];
	} ctl;
	char data[sizeof(*m) + 1];
	struct iovec iov = {data, sizeof(data)};
	struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl.buf, .msg_controllen = sizeof(ctl.buf)};
	if (fd)
		*fd = -1;
	*nfds = 0;
	ssize_t n;
	do
		n = recvmsg(sock, &mh, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
	while (n < 0 && errno == EINTR);
	if (n < 0)
		return -errno;
	for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c)) {
		if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
			continue;
		size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
		for (size_t i = 0; i < count; i++) {
			int got;
			memcpy(&got, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
			if (fd && *fd < 0)
				*fd = got;
			else
				close(got);
			(*nfds)++;
		}
	}
	/* The kernel dropped what did not fit: more than we take. */
	if (mh.msg_flags & MSG_CTRUNC)
		*nfds = SEGMENT_MAX_FDS + 1;
	memcpy(m, data, sizeof(*m) < (size_t)n ? sizeof(*m) : (size_t)n);
	return n;
}

static bool segment_msg_is(const struct segment_msg *m, ssize_t n, uint16_t type)
{
	return n == (ssize_t)sizeof(*m) && m->magic == SEGMENT_MAGIC && m->version == SEGMENT_VERSION &&
	       m->type == type;
}

/* Make the memfd: @size bytes of zeros, sealed against resizing. */
static int segment_create(uint64_t size, int *out)
{
	int fd = memfd_create("vmm-segment", MFD_CLOEXEC | MFD_ALLOW_SEALING);
	if (fd < 0)
		return error_set_errno(errno, "cannot create a shared segment (memfd_create)");
	int r = 0;
	if (ftruncate(fd, (off_t)size) != 0)
		r = error_set_errno(errno, "cannot size a shared segment to %llu bytes", (unsigned long long)size);
	else if (fcntl(fd, F_ADD_SEALS, SEGMENT_SEALS) != 0)
		r = error_set_errno(errno, "cannot seal a shared segment");
	if (r) {
		close(fd);
		return r;
	}
	*out = fd;
	return 0;
}

/*
 * Connect to the name (waiting while the listener's backlog is full, until @end) and check
 * who listens. Returns 0 with *conn, -ECONNREFUSED when nobody listens (no message), or
 * -errno with a message.
 */
static int segment_connect(const struct segment *s, int stop_fd, uint64_t end, int *conn)
{
	int c = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (c < 0)
		return error_set_errno(errno, "cannot make a socket to find the shared segment");
	for (unsigned ms = 1;; ms = ms < 64 ? 2 * ms : ms) {
		if (connect(c, (const struct sockaddr *)&s->addr, s->addr_len) == 0)
			break;
		int err = errno;
		if (err == EAGAIN) { /* the backlog is full: the listener is slow or stuck */
			if (clock_monotonic_ns() >= end) {
				close(c);
				return error_set(ETIMEDOUT, "the shared segment's listener does not accept connections");
			}
			if (segment_sleep(stop_fd, ms, end) == -ECANCELED) {
				close(c);
				return -ECANCELED;
			}
			continue;
		}
		if (err == EINTR)
			continue;
		close(c);
		if (err == ECONNREFUSED || err == ENOENT)
			return -ECONNREFUSED;
		if (err == EPROTOTYPE)
			return error_set(EPROTO, "the shared segment's name is held by a socket of another type");
		return error_set_errno(err, "cannot connect to the shared segment's listener");
	}
	struct ucred cred;
	socklen_t len = sizeof(cred);
	if (getsockopt(c, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0) {
		int err = errno;
		close(c);
		return error_set_errno(err, "cannot tell who holds the shared segment (SO_PEERCRED)");
	}
	if (cred.uid != geteuid()) {
		close(c);
		return error_set(EACCES, "the shared segment for this snapshot is held by another user's process (uid %u, pid %d)",
				 (unsigned)cred.uid, (int)cred.pid);
	}
	*conn = c;
	return 0;
}

/* Check the descriptor a listener offered (@st: its fstat). 0, or -EPROTO with a message. */
static int segment_check_fd(const struct segment *s, int fd, struct stat *st)
{
	if (fstat(fd, st) != 0)
		return error_set_errno(errno, "cannot stat the shared segment offered");
	if (!S_ISREG(st->st_mode))
		return error_set(EPROTO, "the shared segment offered is not a regular file");
	if ((uint64_t)st->st_size != s->size)
		return error_set(EPROTO, "the shared segment offered has %lld bytes, not %llu", (long long)st->st_size,
				 (unsigned long long)s->size);
	int seals = fcntl(fd, F_GET_SEALS);
	if (seals < 0)
		return error_set(EPROTO, "the shared segment offered cannot be sealed (not a memfd)");
	/* Without these another process could cut the file under our mappings (SIGBUS). */
	if ((seals & SEGMENT_SEALS) != SEGMENT_SEALS)
		return error_set(EPROTO, "the shared segment offered is not sealed against resizing (seals 0x%x)", seals);
	/* The segment is filled as it is used: a write seal would fail the first fill. */
	if (seals & (F_SEAL_WRITE | F_SEAL_FUTURE_WRITE))
		return error_set(EPROTO, "the shared segment offered is sealed against writes (seals 0x%x)", seals);
	int flags = fcntl(fd, F_GETFL);
	if (flags < 0 || (flags & O_ACCMODE) != O_RDWR)
		return error_set(EPROTO, "the shared segment offered is not open for reading and writing");
	return 0;
}

/*
 * Wait (until @end, a second at most) for the listener's offer on @conn and check it.
 * Returns 0 with *fd and *st, -EAGAIN when the listener hung up without answering (it was
 * closing, or turned us away; no message), -ECANCELED, or -errno with a message.
 */
static int segment_take_offer(const struct segment *s, int conn, int stop_fd, uint64_t end, int *fd, struct stat *st)
{
	int r = segment_wait(conn, POLLIN, stop_fd, segment_deadline(end));
	if (r == -ETIMEDOUT)
		return error_set(ETIMEDOUT, "the shared segment's listener did not answer in time");
	if (r == -ECANCELED)
		return r;
	if (r)
		return error_set_errno(-r, "cannot wait for the shared segment's listener");
	struct segment_msg m;
	unsigned nfds;
	int got;
	ssize_t n = segment_recv(conn, &m, &got, &nfds);
	if (n == 0 || n == -ECONNRESET)
		return -EAGAIN;
	if (n < 0)
		return error_set_errno((int)-n, "cannot receive the shared segment");
	if (n == (ssize_t)sizeof(m) && m.magic == SEGMENT_MAGIC && m.version != SEGMENT_VERSION)
		r = error_set(EPROTO, "the shared segment's listener speaks protocol version %u, not %u", m.version,
			      SEGMENT_VERSION);
	else if (!segment_msg_is(&m, n, SEGMENT_MSG_OFFER))
		r = error_set(EPROTO, "the shared segment's listener answered with something that is not a segment offer");
	else if (nfds != 1)
		r = error_set(EPROTO, "the shared segment's listener sent %s", nfds ? "more than one descriptor" : "no descriptor");
	else if (m.size != s->size)
		r = error_set(EPROTO, "the shared segment's listener offers %llu bytes, not %llu", (unsigned long long)m.size,
			      (unsigned long long)s->size);
	else
		r = segment_check_fd(s, got, st);
	if (r) {
		if (got >= 0)
			close(got);
		return r;
	}
	*fd = got;
	return 0;
}

/* Bind the name and listen. 0 with *out, -EADDRINUSE (no message), or -errno with a message. */
static int segment_listen(const struct segment *s, int *out)
{
	int l = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (l < 0)
		return error_set_errno(errno, "cannot make a socket to share the segment");
	if (bind(l, (const struct sockaddr *)&s->addr, s->addr_len) != 0 || listen(l, SEGMENT_BACKLOG) != 0) {
		int err = errno;
		close(l);
		if (err == EADDRINUSE)
			return -EADDRINUSE;
		return error_set_errno(err, "cannot listen for other holders of the shared segment");
	}
	*out = l;
	return 0;
}

/* The message for a rendezvous that did not settle in its rounds; @last: what ended the last. */
static int segment_unsettled(int last)
{
	if (last == -EADDRINUSE)
		return error_set(ETIMEDOUT, "the shared segment's name is held by a socket that accepts no connections");
	return error_set(ETIMEDOUT, "the shared segment's listener closes connections without an answer");
}

/*
 * Hold our own memfd again in the rendezvous: register with the listener if it offers the
 * same memfd, else bind the name. Used by the thread when the listener went away, and by
 * segment_reattach. Sets s->conn_fd or s->listen_fd (under lock) and returns 0; or returns
 * -errno with a message, neither set (an orphan).
 */
static int segment_rejoin(struct segment *s, int stop_fd)
{
	uint64_t end = clock_monotonic_ns() + SEGMENT_OPEN_NS;
	int last = -EAGAIN;
	for (unsigned round = 0; round < SEGMENT_ROUNDS; round++) {
		/* The old listener may still be closing, or another holder binding: give them time. */
		if (round && segment_sleep(stop_fd, 1u << round, end) == -ECANCELED)
			return -ECANCELED;
		int conn = -1, offered = -1, l = -1;
		int r = segment_connect(s, stop_fd, end, &conn);
		if (r == 0) {
			struct stat st;
			r = segment_take_offer(s, conn, stop_fd, end, &offered, &st);
			if (r == 0) {
				close(offered);
				if (st.st_dev != s->dev || st.st_ino != s->ino) {
					close(conn);
					return error_set(ESTALE, "another shared segment took this one's name: "
								 "this process keeps its memory without the rendezvous");
				}
				pthread_mutex_lock(&s->lock);
				s->conn_fd = conn;
				pthread_cond_broadcast(&s->cond);
				pthread_mutex_unlock(&s->lock);
				return 0;
			}
			close(conn);
			if (r != -EAGAIN)
				return r;
			last = r;
			continue;
		}
		if (r != -ECONNREFUSED)
			return r;
		r = segment_listen(s, &l);
		if (r == 0) {
			pthread_mutex_lock(&s->lock);
			s->listen_fd = l;
			pthread_cond_broadcast(&s->cond);
			pthread_mutex_unlock(&s->lock);
			return 0;
		}
		if (r != -EADDRINUSE)
			return r;
		last = r;
	}
	return segment_unsettled(last);
}

/* Drop holder connection @i of the listener (a record removed before its descriptor is
 * closed: a fork child never finds a closed number in the table). */
static void segment_drop_conn(struct segment *s, unsigned i)
{
	pthread_mutex_lock(&s->lock);
	int c = s->conns[i];
	s->conns[i] = s->conns[--s->nconns];
	pthread_mutex_unlock(&s->lock);
	close(c);
}

/* Accept every pending connection: a process of our euid gets the offer and is registered. */
static void segment_accept(struct segment *s)
{
	for (;;) {
		int c = accept4(s->listen_fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
		if (c < 0) {
			if (errno == EINTR || errno == ECONNABORTED)
				continue;
			/* Out of descriptors, the connection stays queued and poll says so again at
			 * once: wait a little rather than spin. */
			if (errno != EAGAIN)
				segment_sleep(s->stop_fd, 100, UINT64_MAX);
			return;
		}
		struct ucred cred;
		socklen_t len = sizeof(cred);
		if (getsockopt(c, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0 || cred.uid != geteuid() ||
		    s->nconns == SEGMENT_MAX_HOLDERS ||
		    segment_send(c, segment_msg_make(SEGMENT_MSG_OFFER, s->size, 0), s->fd) != 0) {
			close(c);
			continue;
		}
		pthread_mutex_lock(&s->lock);
		s->conns[s->nconns++] = c;
		pthread_mutex_unlock(&s->lock);
	}
}

/* A holder's connection is readable (@revents): answer its question, or drop it at its end. */
static void segment_serve_conn(struct segment *s, unsigned i, short revents)
{
	struct segment_msg m;
	unsigned nfds;
	ssize_t n = segment_recv(s->conns[i], &m, NULL, &nfds);
	if (n == -EAGAIN && !(revents & (POLLHUP | POLLERR)))
		return;
	if (n <= 0) {
		segment_drop_conn(s, i);
		return;
	}
	if (segment_msg_is(&m, n, SEGMENT_MSG_ASK_HOLDERS)) {
		unsigned holders = s->nconns + 1;
		/* A holder that does not read its answers loses them, never blocks us. */
		segment_send(s->conns[i], segment_msg_make(SEGMENT_MSG_HOLDERS, s->size, holders), -1);
	}
}

/* Our connection to the listener is readable (@revents): an answer, or the listener's end. */
static void segment_serve_listener(struct segment *s, short revents)
{
	struct segment_msg m;
	unsigned nfds;
	ssize_t n = segment_recv(s->conn_fd, &m, NULL, &nfds);
	if (n == -EAGAIN && !(revents & (POLLHUP | POLLERR)))
		return;
	if (n > 0) {
		if (segment_msg_is(&m, n, SEGMENT_MSG_HOLDERS)) {
			pthread_mutex_lock(&s->lock);
			s->answer = m.value > UINT32_MAX ? UINT32_MAX : (unsigned)m.value;
			s->answers++;
			pthread_cond_broadcast(&s->cond);
			pthread_mutex_unlock(&s->lock);
		}
		return;
	}
	pthread_mutex_lock(&s->lock);
	int c = s->conn_fd;
	s->conn_fd = -1;
	pthread_cond_broadcast(&s->cond);
	pthread_mutex_unlock(&s->lock);
	close(c);
	/* Failing, we are an orphan: the thread then only waits to be stopped. */
	segment_rejoin(s, s->stop_fd);
}

static void *segment_thread(void *arg)
{
	struct segment *s = arg;
	pthread_mutex_lock(&s->lock);
	s->serving = true;
	pthread_cond_broadcast(&s->cond);
	pthread_mutex_unlock(&s->lock);
	for (;;) {
		struct pollfd *p = s->pfds;
		nfds_t n = 0;
		p[n++] = (struct pollfd){s->stop_fd, POLLIN, 0};
		unsigned nconns = s->nconns;
		if (s->listen_fd >= 0) {
			p[n++] = (struct pollfd){s->listen_fd, POLLIN, 0};
			for (unsigned i = 0; i < nconns; i++)
				p[n++] = (struct pollfd){s->conns[i], POLLIN, 0};
		} else if (s->conn_fd >= 0) {
			p[n++] = (struct pollfd){s->conn_fd, POLLIN, 0};
		}
		if (poll(p, n, -1) < 0) {
			if (errno == EINTR)
				continue;
			segment_sleep(s->stop_fd, 100, UINT64_MAX);
			continue;
		}
		if (p[0].revents)
			return NULL;
		if (s->listen_fd >= 0) {
			/* Downwards: dropping connection i moves the last one, already served, into i. */
			for (unsigned i = nconns; i-- > 0;)
				if (p[2 + i].revents)
					segment_serve_conn(s, i, p[2 + i].revents);
			if (p[1].revents)
				segment_accept(s);
		} else if (s->conn_fd >= 0 && p[1].revents) {
			segment_serve_listener(s, p[1].revents);
		}
	}
}

/* Close this process's copies of the rendezvous sockets, those in @s and any the thread of
 * the process we were forked from had made but not yet recorded (found by their name). */
static void segment_close_sockets(struct segment *s)
{
	for (unsigned i = 0; i < s->nconns; i++)
		close(s->conns[i]);
	s->nconns = 0;
	if (s->listen_fd >= 0)
		close(s->listen_fd);
	if (s->conn_fd >= 0)
		close(s->conn_fd);
	s->listen_fd = s->conn_fd = -1;
	if (s->pid == getpid())
		return;
	DIR *d = opendir("/proc/self/fd");
	if (!d)
		return;
	struct dirent *e;
	while ((e = readdir(d))) {
		char *endp;
		long fd = strtol(e->d_name, &endp, 10);
		if (*endp || endp == e->d_name || fd == dirfd(d))
			continue;
		struct sockaddr_un a;
		socklen_t len = sizeof(a);
		bool ours = getsockname((int)fd, (struct sockaddr *)&a, &len) == 0 && len == s->addr_len &&
			    memcmp(&a, &s->addr, len) == 0;
		len = sizeof(a);
		ours = ours || (getpeername((int)fd, (struct sockaddr *)&a, &len) == 0 && len == s->addr_len &&
				memcmp(&a, &s->addr, len) == 0);
		if (ours)
			close((int)fd);
	}
	closedir(d);
}

/*
 * Start the thread in this process (s->stop_fd made) and wait until it has started. A
 * fork(2) soon after must not copy a thread still in its start-up: a sanitizer's runtime
 * allocates there under a lock of its own, which the child would find taken for ever.
 * Returns 0 or -errno with a message.
 */
static int segment_start(struct segment *s)
{
	s->pid = getpid();
	s->serving = false;
	int r = pthread_create(&s->thread, NULL, segment_thread, s);
	if (r != 0)
		return error_set_errno(r, "cannot start the shared segment's thread");
	s->running = true;
	pthread_mutex_lock(&s->lock);
	while (!s->serving)
		pthread_cond_wait(&s->cond, &s->lock);
	pthread_mutex_unlock(&s->lock);
	return 0;
}

/* Locks, tables and the stop eventfd of a segment being opened or reattached. */
static int segment_prepare(struct segment *s)
{
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_mutex_init(&s->lock, NULL);
	pthread_cond_init(&s->cond, &ca);
	pthread_condattr_destroy(&ca);
	if (!s->conns)
		s->conns = calloc(SEGMENT_MAX_HOLDERS, sizeof(*s->conns));
	if (!s->pfds)
		s->pfds = calloc(2 + SEGMENT_MAX_HOLDERS, sizeof(*s->pfds));
	if (!s->conns || !s->pfds)
		return error_set(ENOMEM, "no memory for a shared segment");
	s->stop_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (s->stop_fd < 0)
		return error_set_errno(errno, "cannot make the shared segment's stop event");
	return 0;
}

/* Undo everything but the thread (stopped or absent), leaving @s as segment_init does. */
static void segment_release(struct segment *s)
{
	segment_close_sockets(s);
	if (s->stop_fd >= 0)
		close(s->stop_fd);
	if (s->fd >= 0)
		close(s->fd);
	free(s->conns);
	free(s->pfds);
	/* A fork child's copy may be locked by a thread it does not have: not destroyed. */
	if (s->pid == getpid()) {
		pthread_cond_destroy(&s->cond);
		pthread_mutex_destroy(&s->lock);
	}
	segment_init(s);
}

int segment_open(struct segment *s, const uint8_t key[SEGMENT_KEY_BYTES], uint64_t size)
{
	segment_init(s);
	if (size == 0 || size > INT64_MAX)
		return error_set(EINVAL, "a shared segment of %llu bytes is not possible", (unsigned long long)size);
	s->size = size;
	s->pid = getpid();
	s->opened = true;
	s->addr.sun_family = AF_UNIX;
	int len = snprintf(s->addr.sun_path + 1, sizeof(s->addr.sun_path) - 1, "vmm-segment-%u-", (unsigned)geteuid());
	for (unsigned i = 0; i < SEGMENT_KEY_BYTES; i++)
		len += snprintf(s->addr.sun_path + 1 + len, sizeof(s->addr.sun_path) - 1 - (size_t)len, "%02x", key[i]);
	/* Abstract: a leading NUL, and no terminating one (the length says where it ends). */
	s->addr_len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + (size_t)len);

	int r = segment_prepare(s);
	uint64_t end = clock_monotonic_ns() + SEGMENT_OPEN_NS;
	int memfd = -1, last = -EAGAIN;
	for (unsigned round = 0; r == 0 && round < SEGMENT_ROUNDS; round++) {
		/* A race lost, or a listener closing as we came: the next round finds the winner. */
		if (round)
			segment_sleep(-1, 1u << round, end);
		int conn = -1, offered = -1;
		struct stat st;
		r = segment_connect(s, -1, end, &conn);
		if (r == 0) {
			r = segment_take_offer(s, conn, -1, end, &offered, &st);
			if (r == 0) {
				s->fd = offered;
				s->conn_fd = conn;
				s->joined = true;
				break;
			}
			close(conn);
		} else if (r == -ECONNREFUSED) {
			if (memfd < 0 && (r = segment_create(size, &memfd)) != 0)
				break;
			r = segment_listen(s, &s->listen_fd);
			if (r == 0) {
				s->fd = memfd;
				memfd = -1;
				break;
			}
		}
		if (r == -EAGAIN || r == -EADDRINUSE) {
			last = r;
			r = 0;
			if (round + 1 == SEGMENT_ROUNDS || clock_monotonic_ns() >= end)
				r = segment_unsettled(last);
		}
	}
	if (memfd >= 0)
		close(memfd);
	struct stat st;
	if (r == 0 && fstat(s->fd, &st) != 0)
		r = error_set_errno(errno, "cannot stat the shared segment");
	if (r == 0) {
		s->dev = st.st_dev;
		s->ino = st.st_ino;
		r = segment_start(s);
	}
	if (r)
		segment_release(s);
	return r;
}

int segment_reattach(struct segment *s)
{
	if (!s->opened)
		return error_set(EBADF, "no shared segment to hold again");
	if (s->pid == getpid())
		return 0;
	/* What the parent's thread left in the child's copy (its lock taken, its sockets) is
	 * the parent's business: the child starts afresh with its own. */
	s->running = false;
	segment_close_sockets(s);
	if (s->stop_fd >= 0)
		close(s->stop_fd);
	s->stop_fd = -1;
	s->answers = 0;
	s->answer = 0;
	s->pid = getpid();
	int r = segment_prepare(s);
	if (r == 0)
		r = segment_rejoin(s, -1);
	/* An orphan still gets its thread: segment_close then works the same way. */
	if (s->stop_fd >= 0) {
		int started = segment_start(s);
		if (r == 0)
			r = started;
	}
	return r;
}

unsigned segment_holders(struct segment *s)
{
	if (!s->opened || !s->running || s->pid != getpid())
		return 0;
	unsigned holders = 0;
	pthread_mutex_lock(&s->lock);
	if (s->listen_fd >= 0) {
		holders = s->nconns + 1;
	} else if (s->conn_fd >= 0 &&
		   segment_send(s->conn_fd, segment_msg_make(SEGMENT_MSG_ASK_HOLDERS, s->size, 0), -1) == 0) {
		uint64_t seen = s->answers, deadline = clock_monotonic_ns() + SEGMENT_STEP_NS;
		struct timespec ts = {(time_t)(deadline / 1000000000), (long)(deadline % 1000000000)};
		while (s->answers == seen && s->conn_fd >= 0)
			if (pthread_cond_timedwait(&s->cond, &s->lock, &ts) == ETIMEDOUT)
				break;
		if (s->answers != seen)
			holders = s->answer;
		else if (s->listen_fd >= 0) /* the listener went and we took its place */
			holders = s->nconns + 1;
	}
	pthread_mutex_unlock(&s->lock);
	return holders;
}

uint64_t segment_resident_pages(const struct segment *s)
{
	struct stat st;
	if (s->fd < 0 || !s->opened || fstat(s->fd, &st) != 0)
		return 0;
	return (uint64_t)st.st_blocks / 8; /* 512-byte blocks */
}

void segment_close(struct segment *s)
{
	if (!s->opened) {
		segment_init(s);
		return;
	}
	if (s->running && s->pid == getpid()) {
		uint64_t one = 1;
		while (write(s->stop_fd, &one, sizeof(one)) < 0 && errno == EINTR)
			;
		pthread_join(s->thread, NULL);
	}
	segment_release(s);
}

/*
 * The external pager's client: forwards data_request, data_unlock and data_return to a
 * pager process over a unix socket (protocol in external_pager.h), checks every answer, and
 * does the lock requests the server sends of its own accord.
 */
#include "pagers/external_pager.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <stdio.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define EP_PENDING_MAX 16 /* lock requests kept while a DATA_RETURN is answered (external_pager.h); more: -EIO */

struct ep_conn {
	int fd;             /* owned */
	int cancel_fd;      /* owned dup of the config's, or -1 */
	unsigned timeout_ms;
	uint64_t size;      /* object size the server announced */
	uint64_t deadline;  /* CLOCK_MONOTONIC ns by which the exchange in progress must end */
	bool writable;
	bool v2;            /* the server speaks version 2 (lock requests, data_unlock) */
	bool in_lock;       /* doing a LOCK_REQUEST: data returned goes RETURN_LOCKED */
	bool broken;        /* a failure left the stream out of step: every later call fails */
	char why[96];       /* external_pager_failure's words */
	uint8_t *buf;       /* EXTPAGER_MAX_DATA bytes for incoming data */
	int pending_fd;     /* owned eventfd: readable while @pending holds messages */
	int event_fd;       /* owned epoll fd over the socket and @pending_fd (event_fd slot) */
	unsigned npending;  /* messages the server sent during a DATA_RETURN, to do at service */
	struct extpager_msg pending[EP_PENDING_MAX];
};

static uint64_t ep_now_ns(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec;
}

/* Start an exchange with the server: its deadline runs from now. -ECANCELED (nothing sent,
 * the stream still in step) when the cancel fd is already readable. */
static int ep_begin(struct ep_conn *c)
{
	c->deadline = ep_now_ns() + (uint64_t)c->timeout_ms * 1000000u;
	struct pollfd p = {c->cancel_fd, POLLIN, 0};
	return c->cancel_fd >= 0 && poll(&p, 1, 0) > 0 ? -ECANCELED : 0;
}

/* Wait until the socket is readable (or writable) or the exchange's deadline passes; a
 * readable cancel fd ends the wait at once. A server that drips its answer resets nothing:
 * the deadline is the exchange's, not the wait's. */
static int ep_wait(struct ep_conn *c, short events)
{
	struct pollfd p[2] = {{c->fd, events, 0}, {c->cancel_fd, POLLIN, 0}};
	for (;;) {
		uint64_t now = ep_now_ns();
		if (now >= c->deadline)
			return -ETIMEDOUT;
		/* Rounded up: a wait never ends before the deadline it is for. */
		int ms = (int)((c->deadline - now + 999999u) / 1000000u);
		int n = poll(p, c->cancel_fd >= 0 ? 2 : 1, ms);
		if (n > 0 && p[1].revents)
			return -ECANCELED;
		if (n > 0)
			return 0;
		if (n < 0 && errno != EINTR)
			return -errno;
	}
}

static int ep_send(struct ep_conn *c, const void *p, size_t n)
{
	const uint8_t *b = p;
	while (n) {
		int r = ep_wait(c, POLLOUT);
		if (r)
			return r;
		ssize_t w = send(c->fd, b, n, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (w < 0 && (errno == EINTR || errno == EAGAIN))
			continue;
		if (w <= 0)
			return w < 0 ? -errno : -EPIPE;
		b += w;
		n -= (size_t)w;
	}
	return 0;
}

static int ep_recv(struct ep_conn *c, void *p, size_t n)
{
	uint8_t *b = p;
	while (n) {
		int r = ep_wait(c, POLLIN);
		if (r)
			return r;
		ssize_t got = recv(c->fd, b, n, MSG_DONTWAIT);
		if (got < 0 && (errno == EINTR || errno == EAGAIN))
			continue;
		if (got <= 0)
			return got < 0 ? -errno : -EPIPE; /* EOF: the pager is gone */
		b += got;
		n -= (size_t)got;
	}
	return 0;
}

static int ep_send_msg(struct ep_conn *c, uint32_t type, uint64_t offset, uint64_t length, uint32_t flags,
		       const void *data)
{
	struct extpager_msg m = {EXTPAGER_MAGIC, type, offset, length, 0, flags};
	int r = ep_send(c, &m, sizeof(m));
	if (!r && data)
		r = ep_send(c, data, (size_t)length);
	return r;
}

static int ep_send_completed(struct ep_conn *c, const struct extpager_msg *q, int err)
{
	struct extpager_msg m = {EXTPAGER_MAGIC, EXTPAGER_LOCK_COMPLETED, q->offset, q->length, -err, 0};
	return ep_send(c, &m, sizeof(m));
}

static int ep_recv_msg(struct ep_conn *c, struct extpager_msg *m)
{
	int r = ep_recv(c, m, sizeof(*m));
	if (r)
		return r;
	if (m->magic != EXTPAGER_MAGIC || m->type < EXTPAGER_HELLO || m->type > EXTPAGER_CHANGE_ATTRIBUTES)
		return -EIO;
	return 0;
}

const char *external_pager_failure(const struct pager *p)
{
	const struct ep_conn *c = p->priv;
	return c->broken ? c->why : "";
}

/* Any failure leaves the stream out of step with the server: the connection is done. */
static int ep_fail(struct ep_conn *c, int err)
{
	if (c->broken)
		return err; /* the first failure's words stand: later ones follow from it */
	c->broken = true;
	switch (err) {
	case -EPIPE:
	case -ECONNRESET: snprintf(c->why, sizeof(c->why), "the external pager closed the connection"); break;
	case -ETIMEDOUT:
		snprintf(c->why, sizeof(c->why), "the external pager did not finish its answer within %u ms", c->timeout_ms);
		break;
	case -ECANCELED:
		snprintf(c->why, sizeof(c->why), "the VM stopped while it waited for the external pager");
		break;
	case -EIO: snprintf(c->why, sizeof(c->why), "the external pager answered with a malformed or unexpected message"); break;
	default: snprintf(c->why, sizeof(c->why), "the connection to the external pager failed: %s", strerror(-err));
	}
	return err;
}

static void ep_free(struct ep_conn *c)
{
	if (c->fd >= 0)
		close(c->fd);
	if (c->cancel_fd >= 0)
		close(c->cancel_fd);
	if (c->pending_fd >= 0)
		close(c->pending_fd);
	if (c->event_fd >= 0)
		close(c->event_fd);
	free(c->buf);
	free(c);
}

/* The event fd: an epoll set over the socket (the server sent something of its own) and
 * the pending eventfd (a lock request kept for service). 0 or -errno. */
static int ep_events(struct ep_conn *c)
{
	c->pending_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	c->event_fd = epoll_create1(EPOLL_CLOEXEC);
	if (c->pending_fd < 0 || c->event_fd < 0)
		return -errno;
	struct epoll_event ev = {.events = EPOLLIN};
	if (epoll_ctl(c->event_fd, EPOLL_CTL_ADD, c->fd, &ev) != 0 ||
	    epoll_ctl(c->event_fd, EPOLL_CTL_ADD, c->pending_fd, &ev) != 0)
		return -errno;
	return 0;
}

static int ep_open(struct pager *pager, const struct pager_args *args)
{
	if (!args || args->fd < 0)
		return -EINVAL;
	struct ep_conn *c = calloc(1, sizeof(*c));
	if (!c)
		return -ENOMEM;
	c->pending_fd = c->event_fd = -1;
	const struct external_pager_config *cfg = args->source;
	c->timeout_ms = cfg && cfg->timeout_ms ? cfg->timeout_ms : EXTPAGER_TIMEOUT_MS;
	c->buf = malloc(EXTPAGER_MAX_DATA);
	c->fd = fcntl(args->fd, F_DUPFD_CLOEXEC, 0);
	int r = !c->buf ? -ENOMEM : c->fd < 0 ? -errno : 0;
	c->cancel_fd = cfg && cfg->cancel_fd >= 0 ? fcntl(cfg->cancel_fd, F_DUPFD_CLOEXEC, 0) : -1;
	if (!r && cfg && cfg->cancel_fd >= 0 && c->cancel_fd < 0)
		r = -errno;
	if (!r)
		r = ep_events(c);
	struct extpager_msg m;
	if (!r)
		r = ep_begin(c);
	if (!r)
		r = ep_send_msg(c, EXTPAGER_HELLO, 0, 0, EXTPAGER_VERSION, NULL);
	if (!r)
		r = ep_recv_msg(c, &m);
	if (!r && (m.type != EXTPAGER_HELLO_REPLY || m.length == 0 || m.length > (1ull << 46) ||
		   (m.flags & ~(EXTPAGER_WRITABLE | EXTPAGER_V2))))
		r = -EPROTO;
	if (r) {
		ep_free(c);
		return r;
	}
	c->size = m.length;
	c->writable = m.flags & EXTPAGER_WRITABLE;
	c->v2 = m.flags & EXTPAGER_V2;
	pager->priv = c;
	pager->size = c->size;
	pager->max_prot = c->writable ? VM_PROT_ALL : VM_PROT_READ | VM_PROT_EXECUTE;
	return 0;
}

static void ep_close(struct pager *pager)
{
	ep_free(pager->priv);
}

/* The object's end: whole pages, the last one's tail past the announced size reading as
 * the server gives it (zero, by the protocol). */
static uint64_t ep_end(const struct ep_conn *c)
{
	return (c->size + VM_PAGE_MASK) & ~(uint64_t)VM_PAGE_MASK;
}

static int ep_create(struct pager *pager, uint64_t size, void **mo)
{
	struct ep_conn *c = pager->priv;
	/* Pages past the announced size have no data: a larger object would ask for them and
	 * get errors (or, believed, zeros) at run time instead of a refusal now. */
	if (size > ep_end(c))
		return -EINVAL;
	*mo = c;
	return 0;
}

/* Whether [offset, offset+length) is whole pages of at most @max bytes within [lo, hi). */
static bool ep_in_range(uint64_t offset, uint64_t length, uint64_t max, uint64_t lo, uint64_t hi)
{
	return vm_page_aligned(offset) && vm_page_aligned(length) && length > 0 && length <= max && offset >= lo &&
	       offset < hi && length <= hi - offset;
}

/* Keep message @m for service: the core holds pages across the exchange in progress. */
static int ep_keep(struct ep_conn *c, const struct extpager_msg *m)
{
	if (c->npending == EP_PENDING_MAX)
		return -EIO; /* a server flooding lock requests it never lets us answer */
	c->pending[c->npending++] = *m;
	uint64_t one = 1;
	return write(c->pending_fd, &one, sizeof(one)) == sizeof(one) ? 0 : -errno;
}

/*
 * Act on @m if it is a message the server may send of its own accord (LOCK_REQUEST,
 * CHANGE_ATTRIBUTES): with @reply (the core's, for the whole object or the call in
 * progress) do it now, answering LOCK_COMPLETED; without, keep it for service.
 * 1: not such a message (the caller's to judge); 0: done or kept; -errno: the connection
 * failed (-EIO: malformed, outside the object, or a version-1 server sending it).
 */
static int ep_unsolicited(struct ep_conn *c, const struct extpager_msg *m, struct pager_reply *reply)
{
	if (m->type != EXTPAGER_LOCK_REQUEST && m->type != EXTPAGER_CHANGE_ATTRIBUTES)
		return 1;
	if (!c->v2)
		return -EIO;
	if (m->type == EXTPAGER_CHANGE_ATTRIBUTES) {
		if (!vm_page_aligned(m->length) || m->length > EXTPAGER_MAX_DATA ||
		    (m->flags & ~(EXTPAGER_MAY_CACHE | EXTPAGER_COPY_NONE)))
			return -EIO;
		if (!reply)
			return ep_keep(c, m);
		return pager_change_attributes(reply, m->flags & EXTPAGER_MAY_CACHE,
					       m->flags & EXTPAGER_COPY_NONE ? VM_COPY_NONE : VM_COPY_DELAY,
					       (unsigned)vm_atop(m->length)) ? -EIO : 0;
	}
	if (!ep_in_range(m->offset, m->length, UINT64_MAX, 0, ep_end(c)) ||
	    (m->flags & ~(EXTPAGER_LOCK_VALUE | EXTPAGER_LOCK_CLEAN | EXTPAGER_LOCK_FLUSH)))
		return -EIO;
	if (!reply)
		return ep_keep(c, m);
	unsigned flags = (m->flags & EXTPAGER_LOCK_CLEAN ? PAGER_LOCK_CLEAN : 0) |
			 (m->flags & EXTPAGER_LOCK_FLUSH ? PAGER_LOCK_FLUSH : 0);
	c->in_lock = true;
	int r = pager_lock_request(reply, m->offset, m->length, flags, m->flags & EXTPAGER_LOCK_VALUE);
	c->in_lock = false;
	if (c->broken)
		return -EIO; /* returning its data failed: ep_fail said why */
	if (r == -EINVAL)
		return -EIO; /* within what the server announced, but past our object */
	return ep_send_completed(c, m, r);
}

/* The next message of the exchange in progress that is not one the server sent of its own
 * accord (those are done with @reply, or kept without). 0 or -errno (not yet failed). */
static int ep_recv_answer(struct ep_conn *c, struct pager_reply *reply, struct extpager_msg *m)
{
	for (;;) {
		int r = ep_recv_msg(c, m);
		if (!r)
			r = ep_unsolicited(c, m, reply);
		if (r)
			return r == 1 ? 0 : r;
	}
}

/* Begin an exchange by sending a question of @type: 0, or -errno (the connection failed,
 * or a cancel came before anything was sent). */
static int ep_ask(struct ep_conn *c, uint32_t type, uint64_t offset, uint64_t length, uint32_t flags)
{
	int r = ep_begin(c);
	if (r)
		return r;
	r = ep_send_msg(c, type, offset, length, flags, NULL);
	return r ? ep_fail(c, r) : 0;
}

static int ep_data_request(struct pager *pager, void *mo, vm_offset_t offset, vm_size_t length, vm_prot_t access,
			   struct pager_reply *reply)
{
	(void)pager;
	struct ep_conn *c = mo;
	if (c->broken)
		return -EIO;
	/* Past the announced end nothing is asked, nor believed: those pages fail. */
	uint64_t end = ep_end(c);
	if (offset + length > end) {
		vm_size_t past = offset >= end ? length : (vm_size_t)(offset + length - end);
		pager_data_error(reply, offset + length - past, past, -EIO);
		length -= past;
		if (!length)
			return 0;
	}
	int r = ep_ask(c, EXTPAGER_DATA_REQUEST, offset, length, access);
	if (r)
		return r;
	for (;;) {
		struct extpager_msg m;
		r = ep_recv_answer(c, reply, &m);
		if (r)
			return ep_fail(c, r);
		if (m.type == EXTPAGER_REPLY_END)
			return 0;
		if (!ep_in_range(m.offset, m.length, EXTPAGER_MAX_DATA, offset, offset + length))
			return ep_fail(c, -EIO);
		switch (m.type) {
		case EXTPAGER_DATA_PROVIDED:
			/* A version-1 server's flags mean nothing; a version-2 one's are a lock value. */
			if (c->v2 && (m.flags & ~EXTPAGER_LOCK_VALUE))
				return ep_fail(c, -EIO);
			r = ep_recv(c, c->buf, (size_t)m.length);
			if (r)
				return ep_fail(c, r);
			pager_data_provided_locked(reply, m.offset, c->buf, m.length, c->v2 ? m.flags : VM_PROT_NONE);
			break;
		case EXTPAGER_DATA_UNAVAILABLE:
			pager_data_unavailable(reply, m.offset, m.length);
			break;
		case EXTPAGER_DATA_ERROR:
			pager_data_error(reply, m.offset, m.length, m.error > 0 && m.error < 4096 ? -m.error : -EIO);
			break;
		default:
			return ep_fail(c, -EIO);
		}
	}
}

static int ep_data_unlock(struct pager *pager, void *mo, vm_offset_t offset, vm_size_t length, vm_prot_t access,
			  struct pager_reply *reply)
{
	(void)pager;
	struct ep_conn *c = mo;
	if (c->broken)
		return -EIO;
	if (!c->v2)
		return -EACCES; /* it never locks a page: nothing to ask */
	int r = ep_ask(c, EXTPAGER_DATA_UNLOCK, offset, length, access);
	if (r)
		return r;
	int refused = 0;
	for (;;) {
		struct extpager_msg m;
		r = ep_recv_answer(c, reply, &m);
		if (r)
			return ep_fail(c, r);
		if (m.type == EXTPAGER_REPLY_END)
			return refused;
		if (m.type != EXTPAGER_DATA_ERROR || !ep_in_range(m.offset, m.length, UINT64_MAX, offset, offset + length))
			return ep_fail(c, -EIO);
		if (!refused)
			refused = m.error == EACCES ? -EACCES : m.error > 0 && m.error < 4096 ? -m.error : -EIO;
	}
}

static int ep_data_return(struct pager *pager, void *mo, vm_offset_t offset, const void *data, vm_size_t length)
{
	(void)pager;
	struct ep_conn *c = mo;
	if (!c->writable)
		return -EROFS;
	if (c->broken)
		return -EIO;
	if (offset >= ep_end(c) || length > ep_end(c) - offset)
		return -EINVAL; /* the core never holds such pages: create refused a larger object */
	for (vm_size_t done = 0; done < length;) {
		vm_size_t n = length - done < EXTPAGER_MAX_DATA ? length - done : EXTPAGER_MAX_DATA;
		const uint8_t *bytes = (const uint8_t *)data + done;
		if (c->in_lock) {
			/* Part of a LOCK_REQUEST's answer, within its exchange: the server takes it. */
			int r = ep_send_msg(c, EXTPAGER_DATA_RETURN, offset + done, n, EXTPAGER_RETURN_LOCKED, bytes);
			if (r)
				return ep_fail(c, r);
			done += n;
			continue;
		}
		int r = ep_begin(c);
		if (r)
			return r;
		r = ep_send_msg(c, EXTPAGER_DATA_RETURN, offset + done, n, 0, bytes);
		struct extpager_msg m;
		if (!r)
			r = ep_recv_answer(c, NULL, &m);
		if (!r && m.type != EXTPAGER_RETURN_REPLY)
			r = -EIO;
		if (r)
			return ep_fail(c, r);
		if (m.error)
			return m.error > 0 && m.error < 4096 ? -m.error : -EIO;
		done += n;
	}
	return 0;
}

static void ep_terminate(struct pager *pager, void *mo)
{
	(void)pager;
	struct ep_conn *c = mo;
	if (!c->broken && ep_begin(c) == 0)
		(void)ep_send_msg(c, EXTPAGER_TERMINATE, 0, 0, 0, NULL);
}

static int ep_event_fd(struct pager *pager, void *mo)
{
	(void)pager;
	const struct ep_conn *c = mo;
	return c->v2 ? c->event_fd : -1; /* a version-1 server sends nothing of its own */
}

/* Do the lock requests kept during DATA_RETURNs, then every message the socket holds: each
 * must be one the server may send of its own accord, whole within the deadline. */
static int ep_service(struct pager *pager, void *mo, struct pager_reply *reply)
{
	(void)pager;
	struct ep_conn *c = mo;
	if (c->broken)
		return -EIO;
	uint64_t count;
	if (read(c->pending_fd, &count, sizeof(count)) < 0 && errno != EAGAIN)
		return ep_fail(c, -errno);
	for (unsigned i = 0; i < c->npending; i++) {
		int r = ep_begin(c);
		if (!r)
			r = ep_unsolicited(c, &c->pending[i], reply);
		if (r) {
			c->npending = 0;
			return ep_fail(c, r);
		}
	}
	c->npending = 0;
	for (;;) {
		struct pollfd p = {c->fd, POLLIN, 0};
		int n = poll(&p, 1, 0);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return n < 0 ? ep_fail(c, -errno) : 0;
		int r = ep_begin(c);
		if (r)
			return r;
		struct extpager_msg m;
		r = ep_recv_msg(c, &m);
		if (!r)
			r = ep_unsolicited(c, &m, reply);
		if (r)
			return ep_fail(c, r == 1 ? -EIO : r);
	}
}

int external_pager_io(int fd, void *p, size_t n, bool out)
{
	uint8_t *b = p;
	while (n) {
		ssize_t r = out ? send(fd, b, n, MSG_NOSIGNAL) : recv(fd, b, n, 0);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return -1;
		b += r;
		n -= (size_t)r;
	}
	return 0;
}

int external_pager_send_msg(int fd, uint32_t type, uint64_t offset, uint64_t length, int32_t error, uint32_t flags)
{
	struct extpager_msg m = {EXTPAGER_MAGIC, type, offset, length, error, flags};
	return external_pager_io(fd, &m, sizeof(m), true);
}

int external_pager_listen(const char *path, int backlog)
{
	struct sockaddr_un addr = {.sun_family = AF_UNIX};
	if (strlen(path) >= sizeof(addr.sun_path))
		return -ENAMETOOLONG;
	strcpy(addr.sun_path, path);
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	unlink(path);
	if (bind(fd, (struct sockaddr *)&addr, sizeof(addr)) != 0 || listen(fd, backlog) != 0) {
		int err = errno;
		close(fd);
		return -err;
	}
	return fd;
}

const struct pager_ops external_pager_ops = {
	.name = "external",
	.open = ep_open,
	.close = ep_close,
	.create = ep_create,
	.data_request = ep_data_request,
	.data_return = ep_data_return,
	.terminate = ep_terminate,
	.data_unlock = ep_data_unlock,
	.event_fd = ep_event_fd,
	.service = ep_service,
};

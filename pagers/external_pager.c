/*
 * The external pager's client: forwards data_request and data_return to a pager process
 * over a unix socket (protocol in external_pager.h) and checks every answer.
 */
#include "pagers/external_pager.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

struct ep_conn {
	int fd;          /* owned */
	uint64_t size;   /* object size the server announced */
	bool writable;
	bool broken;     /* a failure left the stream out of step: every later call fails */
	int failure;     /* the -errno that broke it */
	uint8_t *buf;    /* EXTPAGER_MAX_DATA bytes for incoming data */
};

/* Wait until @fd is readable (or writable), at most EXTPAGER_TIMEOUT_MS. */
static int ep_wait(int fd, short events)
{
	struct pollfd p = {fd, events, 0};
	for (;;) {
		int n = poll(&p, 1, EXTPAGER_TIMEOUT_MS);
		if (n > 0)
			return 0;
		if (n == 0)
			return -ETIMEDOUT;
		if (errno != EINTR)
			return -errno;
	}
}

static int ep_send(struct ep_conn *c, const void *p, size_t n)
{
	const uint8_t *b = p;
	while (n) {
		int r = ep_wait(c->fd, POLLOUT);
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
		int r = ep_wait(c->fd, POLLIN);
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

static int ep_recv_msg(struct ep_conn *c, struct extpager_msg *m)
{
	int r = ep_recv(c, m, sizeof(*m));
	if (r)
		return r;
	if (m->magic != EXTPAGER_MAGIC || m->type < EXTPAGER_HELLO || m->type > EXTPAGER_TERMINATE)
		return -EIO;
	return 0;
}

/* Any failure leaves the stream out of step with the server: the connection is done. */
static int ep_fail(struct ep_conn *c, int err)
{
	c->broken = true;
	c->failure = err;
	return err;
}

const char *external_pager_failure(const struct pager *p)
{
	const struct ep_conn *c = p->priv;
	if (!c->broken)
		return "";
	switch (c->failure) {
	case -EPIPE:
	case -ECONNRESET: return "the external pager closed the connection";
	case -ETIMEDOUT: return "the external pager did not answer within 10 s";
	case -EIO: return "the external pager answered with a malformed or unexpected message";
	default: return "the connection to the external pager failed";
	}
}

static int ep_open(struct pager *pager, const struct pager_args *args)
{
	if (!args || args->fd < 0)
		return -EINVAL;
	struct ep_conn *c = calloc(1, sizeof(*c));
	if (!c)
		return -ENOMEM;
	c->buf = malloc(EXTPAGER_MAX_DATA);
	c->fd = fcntl(args->fd, F_DUPFD_CLOEXEC, 0);
	int r = !c->buf ? -ENOMEM : c->fd < 0 ? -errno : 0;
	struct extpager_msg m;
	if (!r)
		r = ep_send_msg(c, EXTPAGER_HELLO, 0, 0, EXTPAGER_VERSION, NULL);
	if (!r)
		r = ep_recv_msg(c, &m);
	if (!r && (m.type != EXTPAGER_HELLO_REPLY || m.length == 0 || m.length > (1ull << 46) ||
		   (m.flags & ~EXTPAGER_WRITABLE)))
		r = -EPROTO;
	if (r) {
		if (c->fd >= 0)
			close(c->fd);
		free(c->buf);
		free(c);
		return r;
	}
	c->size = m.length;
	c->writable = m.flags & EXTPAGER_WRITABLE;
	pager->priv = c;
	pager->size = c->size;
	pager->max_prot = c->writable ? VM_PROT_ALL : VM_PROT_READ | VM_PROT_EXECUTE;
	return 0;
}

static void ep_close(struct pager *pager)
{
	struct ep_conn *c = pager->priv;
	close(c->fd);
	free(c->buf);
	free(c);
}

static int ep_create(struct pager *pager, uint64_t size, void **mo)
{
	(void)size;
	*mo = pager->priv;
	return 0;
}

static int ep_data_request(struct pager *pager, void *mo, vm_offset_t offset, vm_size_t length, vm_prot_t access,
			   struct pager_reply *reply)
{
	(void)pager;
	struct ep_conn *c = mo;
	if (c->broken)
		return -EIO;
	int r = ep_send_msg(c, EXTPAGER_DATA_REQUEST, offset, length, access, NULL);
	if (r)
		return ep_fail(c, r);
	for (;;) {
		struct extpager_msg m;
		r = ep_recv_msg(c, &m);
		if (r)
			return ep_fail(c, r);
		if (m.type == EXTPAGER_REPLY_END)
			return 0;
		bool in_request = vm_page_aligned(m.offset) && vm_page_aligned(m.length) && m.length > 0 &&
				  m.length <= EXTPAGER_MAX_DATA && m.offset >= offset &&
				  m.offset - offset < length && m.length <= length - (m.offset - offset);
		if (!in_request)
			return ep_fail(c, -EIO);
		switch (m.type) {
		case EXTPAGER_DATA_PROVIDED:
			r = ep_recv(c, c->buf, (size_t)m.length);
			if (r)
				return ep_fail(c, r);
			pager_data_provided(reply, m.offset, c->buf, m.length);
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

static int ep_data_return(struct pager *pager, void *mo, vm_offset_t offset, const void *data, vm_size_t length)
{
	(void)pager;
	struct ep_conn *c = mo;
	if (!c->writable)
		return -EROFS;
	if (c->broken)
		return -EIO;
	for (vm_size_t done = 0; done < length;) {
		vm_size_t n = length - done < EXTPAGER_MAX_DATA ? length - done : EXTPAGER_MAX_DATA;
		int r = ep_send_msg(c, EXTPAGER_DATA_RETURN, offset + done, n, 0, (const uint8_t *)data + done);
		struct extpager_msg m;
		if (!r)
			r = ep_recv_msg(c, &m);
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
	if (!c->broken)
		(void)ep_send_msg(c, EXTPAGER_TERMINATE, 0, 0, 0, NULL);
}

const struct pager_ops external_pager_ops = {
	.name = "external",
	.open = ep_open,
	.close = ep_close,
	.create = ep_create,
	.data_request = ep_data_request,
	.data_return = ep_data_return,
	.terminate = ep_terminate,
};

/*
 * The coherent server of netmemory.h. Each client owes at most NETMEMORY_ASKED lock
 * requests; the head of the queue counts those it waits for in its `waiting`.
 */
#include "pagers/netmemory.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "pagers/external_pager.h"

static uint64_t netmemory_now_ms(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (uint64_t)t.tv_sec * 1000u + (uint64_t)t.tv_nsec / 1000000u;
}

static int netmemory_send(struct netmemory *s, int c, uint32_t type, uint64_t offset, uint64_t length, int32_t error,
			  uint32_t flags)
{
	return external_pager_send_msg(s->clients[c].fd, type, offset, length, error, flags);
}

/* Forget client @c held page @page. */
static void netmemory_forget(struct netmemory *s, int c, uint64_t page)
{
	s->readers[page] &= ~(1u << c);
	if (s->writer[page] == c)
		s->writer[page] = -1;
}

/* Close client @c and forget what it held and owed; @why (NULL: say nothing) is logged. */
static void netmemory_drop(struct netmemory *s, int c, const char *why)
{
	struct netmemory_client *cl = &s->clients[c];
	if (cl->fd < 0)
		return;
	if (why)
		fprintf(stderr, "%s: client %u %s: dropped\n", s->name, cl->id, why);
	close(cl->fd);
	cl->fd = -1;
	for (uint64_t p = 0; p < s->npages; p++)
		netmemory_forget(s, c, p);
	/* What it owed the head op is owed no more. */
	for (unsigned i = 0; i < cl->nasked; i++)
		if (cl->asked[i].for_op && s->op_count && s->ops[s->op_head].waiting)
			s->ops[s->op_head].waiting--;
	cl->nasked = 0;
}

/* Ask client @c to do a lock request on page @page; @for_op: the head op waits for it. */
static void netmemory_ask(struct netmemory *s, int c, uint64_t page, uint32_t flags, bool for_op)
{
	struct netmemory_client *cl = &s->clients[c];
	if (cl->nasked == NETMEMORY_ASKED) {
		netmemory_drop(s, c, "owes too many lock requests");
		return;
	}
	if (netmemory_send(s, c, EXTPAGER_LOCK_REQUEST, page * VM_PAGE_SIZE, VM_PAGE_SIZE, 0, flags) != 0) {
		netmemory_drop(s, c, "cannot be sent a lock request");
		return;
	}
	cl->asked[cl->nasked++] = (struct netmemory_asked){page * VM_PAGE_SIZE, VM_PAGE_SIZE, for_op};
	if (for_op)
		s->ops[s->op_head].waiting++;
}

/* Send the lock requests the head op needs before it can be answered. */
static void netmemory_start(struct netmemory *s, struct netmemory_op *op)
{
	op->started = true;
	op->deadline = netmemory_now_ms() + s->deadline_ms;
	bool write = op->kind == NETMEMORY_OP_UNLOCK || (op->access & VM_PROT_WRITE);
	for (uint64_t p = op->offset / VM_PAGE_SIZE; p < (op->offset + op->length) / VM_PAGE_SIZE; p++) {
		for (int c = 0; c < NETMEMORY_CLIENTS; c++) {
			if (c == op->client || s->clients[c].fd < 0)
				continue;
			if (s->writer[p] == c) {
				/* Its bytes come back either way: flushed for a writer, kept read-only for a reader. */
				netmemory_ask(s, c, p,
					      write ? EXTPAGER_LOCK_FLUSH | EXTPAGER_LOCK_CLEAN
						    : EXTPAGER_LOCK_CLEAN | VM_PROT_WRITE,
					      true);
				if (s->clients[c].fd >= 0) {
					s->writer[p] = -1;
					if (!write)
						s->readers[p] |= 1u << c;
				}
			} else if (write && (s->readers[p] & (1u << c))) {
				netmemory_ask(s, c, p, EXTPAGER_LOCK_FLUSH, true);
				s->readers[p] &= ~(1u << c);
			}
		}
	}
}

/* Every lock request the head op needed is done: answer it. The file holds every byte a
 * writer gave back. */
static void netmemory_finish(struct netmemory *s, struct netmemory_op *op)
{
	int c = op->client;
	struct netmemory_client *cl = &s->clients[c];
	if (cl->fd < 0)
		return;
	uint64_t first = op->offset / VM_PAGE_SIZE, end = (op->offset + op->length) / VM_PAGE_SIZE;
	if (op->kind == NETMEMORY_OP_UNLOCK) {
		for (uint64_t p = first; p < end; p++) {
			s->readers[p] &= ~(1u << c);
			s->writer[p] = c;
		}
		/* The grant; its LOCK_COMPLETED comes before the client reads REPLY_END. */
		if (cl->nasked == NETMEMORY_ASKED ||
		    netmemory_send(s, c, EXTPAGER_LOCK_REQUEST, op->offset, op->length, 0, 0) ||
		    netmemory_send(s, c, EXTPAGER_REPLY_END, 0, 0, 0, 0)) {
			netmemory_drop(s, c, "cannot be sent its grant");
			return;
		}
		cl->asked[cl->nasked++] = (struct netmemory_asked){op->offset, op->length, false};
		return;
	}
	bool write = op->access & VM_PROT_WRITE;
	ssize_t got = pread(s->file_fd, s->buf, op->length, (off_t)op->offset);
	if (got < 0)
		got = 0;
	memset(s->buf + got, 0, op->length - (size_t)got); /* past the file's end: zero */
	for (uint64_t p = first; p < end; p++) {
		if (write || s->writer[p] == c) {
			s->readers[p] &= ~(1u << c);
			s->writer[p] = c;
		} else {
			s->readers[p] |= 1u << c;
		}
	}
	/* One message per run of equal locks. */
	int r = 0;
	for (uint64_t p = first; p < end && !r;) {
		uint32_t lock = s->writer[p] == c ? 0 : VM_PROT_WRITE;
		uint64_t q = p + 1;
		while (q < end && (s->writer[q] == c ? 0 : VM_PROT_WRITE) == lock)
			q++;
		r = netmemory_send(s, c, EXTPAGER_DATA_PROVIDED, p * VM_PAGE_SIZE, (q - p) * VM_PAGE_SIZE, 0, lock) ||
		    external_pager_io(cl->fd, s->buf + (p - first) * VM_PAGE_SIZE, (q - p) * VM_PAGE_SIZE, true);
		p = q;
	}
	if (r || netmemory_send(s, c, EXTPAGER_REPLY_END, 0, 0, 0, 0))
		netmemory_drop(s, c, "cannot be sent its pages");
}

static bool netmemory_enqueue(struct netmemory *s, int c, enum netmemory_op_kind kind, const struct extpager_msg *m)
{
	if (s->op_count == NETMEMORY_OPS)
		return false;
	s->ops[(s->op_head + s->op_count++) % NETMEMORY_OPS] = (struct netmemory_op){
		.kind = kind, .client = c, .offset = m->offset, .length = m->length, .access = m->flags};
	return true;
}

/* Whether [offset, offset+length) is whole pages within the object, at most one message. */
static bool netmemory_in_object(const struct netmemory *s, const struct extpager_msg *m)
{
	return vm_page_aligned(m->offset) && vm_page_aligned(m->length) && m->length > 0 &&
	       m->length <= EXTPAGER_MAX_DATA && m->offset < s->npages * VM_PAGE_SIZE &&
	       m->length <= s->npages * VM_PAGE_SIZE - m->offset;
}

/* One message from client @c. */
static void netmemory_message(struct netmemory *s, int c)
{
	struct netmemory_client *cl = &s->clients[c];
	struct extpager_msg m;
	if (external_pager_io(cl->fd, &m, sizeof(m), false) != 0) {
		netmemory_drop(s, c, "went away");
		return;
	}
	if (m.magic != EXTPAGER_MAGIC) {
		netmemory_drop(s, c, "sent garbage");
		return;
	}
	switch (m.type) {
	case EXTPAGER_HELLO:
		if (m.flags < 2) {
			netmemory_drop(s, c, "speaks version 1 (no lock requests)");
			return;
		}
		if (netmemory_send(s, c, EXTPAGER_HELLO_REPLY, 0, s->size, 0, EXTPAGER_WRITABLE | EXTPAGER_V2))
			netmemory_drop(s, c, "cannot be answered");
		return;
	case EXTPAGER_DATA_REQUEST:
	case EXTPAGER_DATA_UNLOCK:
		if (!netmemory_in_object(s, &m) ||
		    !netmemory_enqueue(s, c, m.type == EXTPAGER_DATA_UNLOCK ? NETMEMORY_OP_UNLOCK : NETMEMORY_OP_REQUEST, &m))
			netmemory_drop(s, c, "sent a request outside the object, or too many");
		return;
	case EXTPAGER_DATA_RETURN: {
		if (!netmemory_in_object(s, &m) || external_pager_io(cl->fd, s->buf, m.length, false) != 0) {
			netmemory_drop(s, c, "sent a bad DATA_RETURN");
			return;
		}
		int32_t err = 0;
		if (pwrite(s->file_fd, s->buf, m.length, (off_t)m.offset) != (ssize_t)m.length)
			err = EIO;
		if (!(m.flags & EXTPAGER_RETURN_LOCKED) && netmemory_send(s, c, EXTPAGER_RETURN_REPLY, m.offset, 0, err, 0))
			netmemory_drop(s, c, "cannot be answered");
		return;
	}
	case EXTPAGER_LOCK_COMPLETED:
		for (unsigned i = 0; i < cl->nasked; i++) {
			if (cl->asked[i].offset != m.offset || cl->asked[i].length != m.length)
				continue;
			if (cl->asked[i].for_op && s->op_count && s->ops[s->op_head].waiting)
				s->ops[s->op_head].waiting--;
			cl->asked[i] = cl->asked[--cl->nasked];
			return;
		}
		netmemory_drop(s, c, "completed a lock request never sent (a lie)");
		return;
	case EXTPAGER_TERMINATE:
		netmemory_drop(s, c, "terminated the object");
		return;
	default:
		netmemory_drop(s, c, "sent a message a client does not send");
	}
}

static void netmemory_accept(struct netmemory *s)
{
	int fd = accept4(s->listen_fd, NULL, NULL, SOCK_CLOEXEC);
	if (fd < 0)
		return;
	/* Guest memory is never another user's to read or write (as the monitor's check). */
	struct ucred cred;
	socklen_t len = sizeof(cred);
	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0 || (cred.uid != geteuid() && cred.uid != 0)) {
		fprintf(stderr, "%s: a client of another user refused\n", s->name);
		close(fd);
		return;
	}
	for (int c = 0; c < NETMEMORY_CLIENTS; c++) {
		if (s->clients[c].fd >= 0)
			continue;
		/* A client that stops in the middle of a message is as late as one that never answers. */
		struct timeval tv = {s->deadline_ms / 1000, (s->deadline_ms % 1000) * 1000};
		setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
		setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
		s->clients[c] = (struct netmemory_client){.fd = fd, .id = s->next_id++};
		fprintf(stderr, "%s: client %u connected\n", s->name, s->clients[c].id);
		return;
	}
	fprintf(stderr, "%s: more than %d clients: refused\n", s->name, NETMEMORY_CLIENTS);
	close(fd);
}

/* Drive the queue: start the head op, answer it once its lock requests are done, or drop
 * the clients that let its deadline pass. The poll timeout until then (-1: none). */
static int netmemory_step(struct netmemory *s)
{
	while (s->op_count) {
		struct netmemory_op *op = &s->ops[s->op_head];
		if (s->clients[op->client].fd < 0) {
			s->op_head = (s->op_head + 1) % NETMEMORY_OPS, s->op_count--;
			continue;
		}
		if (!op->started)
			netmemory_start(s, op);
		if (op->waiting == 0) {
			netmemory_finish(s, op);
			s->op_head = (s->op_head + 1) % NETMEMORY_OPS, s->op_count--;
			continue;
		}
		uint64_t now = netmemory_now_ms();
		if (now < op->deadline)
			return (int)(op->deadline - now);
		for (int c = 0; c < NETMEMORY_CLIENTS; c++)
			for (unsigned i = 0; s->clients[c].fd >= 0 && i < s->clients[c].nasked; i++)
				if (s->clients[c].asked[i].for_op)
					netmemory_drop(s, c, "did not answer a lock request in time");
		op->waiting = 0;
	}
	return -1;
}

int netmemory_init(struct netmemory *s, const char *name, int file_fd, uint64_t size, unsigned deadline_ms)
{
	memset(s, 0, sizeof(*s));
	s->name = name;
	s->file_fd = file_fd;
	s->size = size;
	s->npages = (size + VM_PAGE_SIZE - 1) / VM_PAGE_SIZE;
	s->deadline_ms = deadline_ms ? deadline_ms : NETMEMORY_DEADLINE_MS;
	s->listen_fd = -1;
	s->next_id = 1;
	s->writer = malloc(s->npages * sizeof(*s->writer));
	s->readers = calloc(s->npages, sizeof(*s->readers));
	s->buf = malloc(EXTPAGER_MAX_DATA);
	if (!s->writer || !s->readers || !s->buf) {
		netmemory_destroy(s);
		return -ENOMEM;
	}
	for (uint64_t p = 0; p < s->npages; p++)
		s->writer[p] = -1;
	for (int c = 0; c < NETMEMORY_CLIENTS; c++)
		s->clients[c].fd = -1;
	return 0;
}

int netmemory_listen(struct netmemory *s, const char *path)
{
	int fd = external_pager_listen(path, 8);
	if (fd < 0)
		return fd;
	if (chmod(path, 0600) != 0) {
		int err = errno;
		close(fd);
		unlink(path);
		return -err;
	}
	netmemory_unlisten(s);
	s->listen_fd = fd;
	return 0;
}

void netmemory_unlisten(struct netmemory *s)
{
	if (s->listen_fd >= 0)
		close(s->listen_fd);
	s->listen_fd = -1;
}

int netmemory_run(struct netmemory *s, int stop_fd)
{
	struct pollfd pfd[NETMEMORY_CLIENTS + 2];
	for (;;) {
		int timeout = netmemory_step(s);
		pfd[0] = (struct pollfd){stop_fd, POLLIN, 0};
		pfd[1] = (struct pollfd){s->listen_fd, POLLIN, 0};
		for (int c = 0; c < NETMEMORY_CLIENTS; c++)
			pfd[c + 2] = (struct pollfd){s->clients[c].fd, POLLIN, 0};
		int n = poll(pfd, NETMEMORY_CLIENTS + 2, timeout);
		if (n < 0 && errno != EINTR)
			return -errno;
		if (n <= 0)
			continue;
		if (pfd[0].revents)
			return 0;
		if (pfd[1].revents)
			netmemory_accept(s);
		for (int c = 0; c < NETMEMORY_CLIENTS; c++)
			if (pfd[c + 2].revents && s->clients[c].fd >= 0)
				netmemory_message(s, c);
	}
}

void netmemory_destroy(struct netmemory *s)
{
	for (int c = 0; c < NETMEMORY_CLIENTS; c++)
		if (s->writer && s->readers)
			netmemory_drop(s, c, NULL);
	netmemory_unlisten(s);
	free(s->writer);
	free(s->readers);
	free(s->buf);
	s->writer = NULL;
	s->readers = NULL;
	s->buf = NULL;
}

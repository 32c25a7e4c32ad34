/*
 * coherent_pager: one memory object (a file) served to many VMs at once over the external
 * pager protocol, version 2 (pagers/external_pager.h), kept coherent as Mach's netmemory
 * server kept it: each page has either many readers, who hold it locked against writing,
 * or one writer. A write (a DATA_REQUEST for write, or a DATA_UNLOCK) first takes the page
 * back from every other holder (LOCK_REQUEST flush + clean: a writer's bytes come back);
 * a read while another client writes the page first makes that writer a reader
 * (LOCK_REQUEST clean + lock write). So the value one VM writes is the value another reads
 * next.
 *
 * usage: coherent_pager [--deadline-ms N] SOCKET FILE
 *   --deadline-ms N  how long a client may take to answer a lock request (default 2000);
 *                    one that does not is dropped (logged). Keep it below the clients'
 *                    own exchange deadline (EXTPAGER_TIMEOUT_MS): a client waiting for its
 *                    own answer waits while the server waits for the others.
 *
 * One thread, one poll loop. Requests are done one at a time in arrival order (a queue):
 * the one at the head sends its lock requests and waits for their LOCK_COMPLETEDs while
 * every client's messages go on being read, so a client that is itself waiting for an
 * answer (and does lock requests inline, as the client must) never deadlocks with us.
 * A client that lies (a LOCK_COMPLETED for nothing asked), breaks the protocol, or is
 * version 1 (it cannot be asked for pages back) is dropped.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "pagers/external_pager.h"

#define COHERENT_CLIENTS 32 /* readers are a bit mask */
#define COHERENT_OPS 256    /* requests waiting their turn */
#define COHERENT_ASKED 64   /* lock requests one client may owe us */

enum coherent_pager_op_kind { OP_REQUEST, OP_UNLOCK };

struct coherent_pager_op {
	enum coherent_pager_op_kind kind;
	int client;              /* who asked */
	uint64_t offset, length; /* bytes */
	uint32_t access;
	bool started;            /* its lock requests are sent */
	unsigned waiting;        /* LOCK_COMPLETEDs still owed for it */
	uint64_t deadline;       /* ms, CLOCK_MONOTONIC: by then they must be in */
};

/* A lock request sent to a client and not completed yet. */
struct coherent_pager_asked {
	uint64_t offset, length;
	bool for_op; /* counted in the head op's waiting (else a grant, owed all the same) */
};

struct coherent_pager_client {
	int fd; /* -1: free slot */
	unsigned id;
	unsigned nasked;
	struct coherent_pager_asked asked[COHERENT_ASKED];
};

static int file_fd;
static uint64_t obj_size, npages;
static unsigned deadline_ms = 2000;
static int *writer;        /* per page: the client writing it, or -1 */
static uint32_t *readers;  /* per page: the clients reading it */
static struct coherent_pager_client clients[COHERENT_CLIENTS];
static struct coherent_pager_op ops[COHERENT_OPS];
static unsigned op_head, op_count;
static unsigned next_id = 1;
static uint8_t buf[EXTPAGER_MAX_DATA];

static uint64_t coherent_pager_now_ms(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (uint64_t)t.tv_sec * 1000u + (uint64_t)t.tv_nsec / 1000000u;
}

static int coherent_pager_send(int c, uint32_t type, uint64_t offset, uint64_t length, int32_t error, uint32_t flags)
{
	return external_pager_send_msg(clients[c].fd, type, offset, length, error, flags);
}

static void coherent_pager_drop(int c, const char *why);

/* Ask client @c to do a lock request on page @page; @for_op: the head op waits for it. */
static void coherent_pager_ask(int c, uint64_t page, uint32_t flags, bool for_op)
{
	struct coherent_pager_client *cl = &clients[c];
	if (cl->nasked == COHERENT_ASKED) {
		coherent_pager_drop(c, "owes too many lock requests");
		return;
	}
	if (coherent_pager_send(c, EXTPAGER_LOCK_REQUEST, page * VM_PAGE_SIZE, VM_PAGE_SIZE, 0, flags) != 0) {
		coherent_pager_drop(c, "cannot be sent a lock request");
		return;
	}
	cl->asked[cl->nasked++] = (struct coherent_pager_asked){page * VM_PAGE_SIZE, VM_PAGE_SIZE, for_op};
	if (for_op)
		ops[op_head].waiting++;
}

/* Forget client @c held page @page. */
static void coherent_pager_forget(int c, uint64_t page)
{
	readers[page] &= ~(1u << c);
	if (writer[page] == c)
		writer[page] = -1;
}

/* Send the lock requests the head op needs before it can be answered. */
static void coherent_pager_start(struct coherent_pager_op *op)
{
	op->started = true;
	op->deadline = coherent_pager_now_ms() + deadline_ms;
	bool write = op->kind == OP_UNLOCK || (op->access & VM_PROT_WRITE);
	for (uint64_t p = op->offset / VM_PAGE_SIZE; p < (op->offset + op->length) / VM_PAGE_SIZE; p++) {
		for (int c = 0; c < COHERENT_CLIENTS; c++) {
			if (c == op->client || clients[c].fd < 0)
				continue;
			if (writer[p] == c) {
				/* Its bytes come back either way: flushed for a writer, kept read-only for a reader. */
				coherent_pager_ask(c, p,
					     write ? EXTPAGER_LOCK_FLUSH | EXTPAGER_LOCK_CLEAN : EXTPAGER_LOCK_CLEAN | VM_PROT_WRITE,
					     true);
				if (clients[c].fd >= 0) {
					writer[p] = -1;
					if (!write)
						readers[p] |= 1u << c;
				}
			} else if (write && (readers[p] & (1u << c))) {
				coherent_pager_ask(c, p, EXTPAGER_LOCK_FLUSH, true);
				readers[p] &= ~(1u << c);
			}
		}
	}
}

/* Every lock request the head op needed is done: answer it. The file holds every byte a
 * writer gave back. */
static void coherent_pager_finish(struct coherent_pager_op *op)
{
	int c = op->client;
	if (clients[c].fd < 0)
		return;
	uint64_t first = op->offset / VM_PAGE_SIZE, end = (op->offset + op->length) / VM_PAGE_SIZE;
	if (op->kind == OP_UNLOCK) {
		for (uint64_t p = first; p < end; p++) {
			readers[p] &= ~(1u << c);
			writer[p] = c;
		}
		/* The grant; its LOCK_COMPLETED comes before the client reads REPLY_END. */
		struct coherent_pager_client *cl = &clients[c];
		if (cl->nasked == COHERENT_ASKED || coherent_pager_send(c, EXTPAGER_LOCK_REQUEST, op->offset, op->length, 0, 0) ||
		    coherent_pager_send(c, EXTPAGER_REPLY_END, 0, 0, 0, 0)) {
			coherent_pager_drop(c, "cannot be sent its grant");
			return;
		}
		cl->asked[cl->nasked++] = (struct coherent_pager_asked){op->offset, op->length, false};
		return;
	}
	bool write = op->access & VM_PROT_WRITE;
	ssize_t got = pread(file_fd, buf, op->length, (off_t)op->offset);
	if (got < 0)
		got = 0;
	memset(buf + got, 0, op->length - (size_t)got); /* past the file's end: zero */
	for (uint64_t p = first; p < end; p++) {
		if (write || writer[p] == c) {
			readers[p] &= ~(1u << c);
			writer[p] = c;
		} else {
			readers[p] |= 1u << c;
		}
	}
	/* One message per run of equal locks. */
	int r = 0;
	for (uint64_t p = first; p < end && !r;) {
		uint32_t lock = writer[p] == c ? 0 : VM_PROT_WRITE;
		uint64_t q = p + 1;
		while (q < end && (writer[q] == c ? 0 : VM_PROT_WRITE) == lock)
			q++;
		r = coherent_pager_send(c, EXTPAGER_DATA_PROVIDED, p * VM_PAGE_SIZE, (q - p) * VM_PAGE_SIZE, 0, lock) ||
		    external_pager_io(clients[c].fd, buf + (p - first) * VM_PAGE_SIZE, (q - p) * VM_PAGE_SIZE, true);
		p = q;
	}
	if (r || coherent_pager_send(c, EXTPAGER_REPLY_END, 0, 0, 0, 0))
		coherent_pager_drop(c, "cannot be sent its pages");
}

static void coherent_pager_drop(int c, const char *why)
{
	struct coherent_pager_client *cl = &clients[c];
	if (cl->fd < 0)
		return;
	fprintf(stderr, "coherent_pager: client %u %s: dropped\n", cl->id, why);
	close(cl->fd);
	cl->fd = -1;
	for (uint64_t p = 0; p < npages; p++)
		coherent_pager_forget(c, p);
	/* What it owed the head op is owed no more. */
	for (unsigned i = 0; i < cl->nasked; i++)
		if (cl->asked[i].for_op && op_count && ops[op_head].waiting)
			ops[op_head].waiting--;
	cl->nasked = 0;
}

static bool coherent_pager_enqueue(int c, enum coherent_pager_op_kind kind, const struct extpager_msg *m)
{
	if (op_count == COHERENT_OPS)
		return false;
	ops[(op_head + op_count++) % COHERENT_OPS] =
		(struct coherent_pager_op){.kind = kind, .client = c, .offset = m->offset, .length = m->length, .access = m->flags};
	return true;
}

/* Whether [offset, offset+length) is whole pages within the object, at most one message. */
static bool coherent_pager_in_object(const struct extpager_msg *m)
{
	return vm_page_aligned(m->offset) && vm_page_aligned(m->length) && m->length > 0 &&
	       m->length <= EXTPAGER_MAX_DATA && m->offset < npages * VM_PAGE_SIZE &&
	       m->length <= npages * VM_PAGE_SIZE - m->offset;
}

/* One message from client @c. */
static void coherent_pager_message(int c)
{
	struct coherent_pager_client *cl = &clients[c];
	struct extpager_msg m;
	if (external_pager_io(cl->fd, &m, sizeof(m), false) != 0) {
		coherent_pager_drop(c, "went away");
		return;
	}
	if (m.magic != EXTPAGER_MAGIC) {
		coherent_pager_drop(c, "sent garbage");
		return;
	}
	switch (m.type) {
	case EXTPAGER_HELLO:
		if (m.flags < 2) {
			coherent_pager_drop(c, "speaks version 1 (no lock requests)");
			return;
		}
		if (coherent_pager_send(c, EXTPAGER_HELLO_REPLY, 0, obj_size, 0, EXTPAGER_WRITABLE | EXTPAGER_V2))
			coherent_pager_drop(c, "cannot be answered");
		return;
	case EXTPAGER_DATA_REQUEST:
	case EXTPAGER_DATA_UNLOCK:
		if (!coherent_pager_in_object(&m) ||
		    !coherent_pager_enqueue(c, m.type == EXTPAGER_DATA_UNLOCK ? OP_UNLOCK : OP_REQUEST, &m))
			coherent_pager_drop(c, "sent a request outside the object, or too many");
		return;
	case EXTPAGER_DATA_RETURN: {
		if (!coherent_pager_in_object(&m) || external_pager_io(cl->fd, buf, m.length, false) != 0) {
			coherent_pager_drop(c, "sent a bad DATA_RETURN");
			return;
		}
		int32_t err = 0;
		if (pwrite(file_fd, buf, m.length, (off_t)m.offset) != (ssize_t)m.length)
			err = EIO;
		if (!(m.flags & EXTPAGER_RETURN_LOCKED) && coherent_pager_send(c, EXTPAGER_RETURN_REPLY, m.offset, 0, err, 0))
			coherent_pager_drop(c, "cannot be answered");
		return;
	}
	case EXTPAGER_LOCK_COMPLETED:
		for (unsigned i = 0; i < cl->nasked; i++) {
			if (cl->asked[i].offset != m.offset || cl->asked[i].length != m.length)
				continue;
			if (cl->asked[i].for_op && op_count && ops[op_head].waiting)
				ops[op_head].waiting--;
			cl->asked[i] = cl->asked[--cl->nasked];
			return;
		}
		coherent_pager_drop(c, "completed a lock request never sent (a lie)");
		return;
	case EXTPAGER_TERMINATE:
		coherent_pager_drop(c, "terminated the object");
		return;
	default:
		coherent_pager_drop(c, "sent a message a client does not send");
	}
}

static void coherent_pager_accept(int lfd)
{
	int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
	if (fd < 0)
		return;
	for (int c = 0; c < COHERENT_CLIENTS; c++) {
		if (clients[c].fd >= 0)
			continue;
		/* A client that stops in the middle of a message is as late as one that never answers. */
		struct timeval tv = {deadline_ms / 1000, (deadline_ms % 1000) * 1000};
		setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
		setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
		clients[c] = (struct coherent_pager_client){.fd = fd, .id = next_id++};
		fprintf(stderr, "coherent_pager: client %u connected\n", clients[c].id);
		return;
	}
	fprintf(stderr, "coherent_pager: more than %d clients: refused\n", COHERENT_CLIENTS);
	close(fd);
}

/* Drive the queue: start the head op, answer it once its lock requests are done, or drop
 * the clients that let its deadline pass. The poll timeout until then (-1: none). */
static int coherent_pager_step(void)
{
	while (op_count) {
		struct coherent_pager_op *op = &ops[op_head];
		if (clients[op->client].fd < 0) {
			op_head = (op_head + 1) % COHERENT_OPS, op_count--;
			continue;
		}
		if (!op->started)
			coherent_pager_start(op);
		if (op->waiting == 0) {
			coherent_pager_finish(op);
			op_head = (op_head + 1) % COHERENT_OPS, op_count--;
			continue;
		}
		uint64_t now = coherent_pager_now_ms();
		if (now < op->deadline)
			return (int)(op->deadline - now);
		for (int c = 0; c < COHERENT_CLIENTS; c++)
			for (unsigned i = 0; clients[c].fd >= 0 && i < clients[c].nasked; i++)
				if (clients[c].asked[i].for_op)
					coherent_pager_drop(c, "did not answer a lock request in time");
		op->waiting = 0;
	}
	return -1;
}

static void usage(int status)
{
	fprintf(status ? stderr : stdout, "usage: coherent_pager [--deadline-ms N] SOCKET FILE\n");
	if (!status)
		printf("Serve FILE to many VMs at once as one coherent memory object (external pager protocol 2).\n"
		       "  --deadline-ms N  time a client has to answer a lock request (default 2000)\n"
		       "  -h, --help       show this help\n");
	exit(status);
}

int main(int argc, char **argv)
{
	int i = 1;
	for (; i < argc && argv[i][0] == '-'; i++) {
		if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0)
			usage(0);
		else if (i + 1 < argc && strcmp(argv[i], "--deadline-ms") == 0)
			deadline_ms = (unsigned)atoi(argv[++i]);
		else
			usage(2);
	}
	if (argc - i != 2 || deadline_ms == 0)
		usage(2);
	const char *sock_path = argv[i], *file = argv[i + 1];
	file_fd = open(file, O_RDWR | O_CLOEXEC);
	struct stat st;
	if (file_fd < 0 || fstat(file_fd, &st) != 0 || st.st_size == 0) {
		fprintf(stderr, "coherent_pager: cannot serve %s: %s\n", file, file_fd < 0 ? strerror(errno) : "empty");
		return 1;
	}
	obj_size = (uint64_t)st.st_size;
	npages = (obj_size + VM_PAGE_SIZE - 1) / VM_PAGE_SIZE;
	writer = malloc(npages * sizeof(*writer));
	readers = calloc(npages, sizeof(*readers));
	if (!writer || !readers) {
		fprintf(stderr, "coherent_pager: out of memory\n");
		return 1;
	}
	for (uint64_t p = 0; p < npages; p++)
		writer[p] = -1;
	int lfd = external_pager_listen(sock_path, 8);
	if (lfd < 0) {
		fprintf(stderr, "coherent_pager: cannot listen on %s: %s\n", sock_path, strerror(-lfd));
		return 1;
	}
	signal(SIGPIPE, SIG_IGN);
	for (int c = 0; c < COHERENT_CLIENTS; c++)
		clients[c].fd = -1;
	fprintf(stderr, "coherent_pager: serving %s (%llu bytes) on %s\n", file, (unsigned long long)obj_size, sock_path);
	struct pollfd pfd[COHERENT_CLIENTS + 1];
	for (;;) {
		int timeout = coherent_pager_step();
		pfd[0] = (struct pollfd){lfd, POLLIN, 0};
		for (int c = 0; c < COHERENT_CLIENTS; c++)
			pfd[c + 1] = (struct pollfd){clients[c].fd, POLLIN, 0};
		int n = poll(pfd, COHERENT_CLIENTS + 1, timeout);
		if (n < 0 && errno != EINTR)
			return 1;
		if (n <= 0)
			continue;
		if (pfd[0].revents)
			coherent_pager_accept(lfd);
		for (int c = 0; c < COHERENT_CLIENTS; c++)
			if (pfd[c + 1].revents && clients[c].fd >= 0)
				coherent_pager_message(c);
	}
}

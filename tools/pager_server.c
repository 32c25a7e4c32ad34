/*
 * pager_server: an external pager that serves a file over a unix socket, speaking the
 * protocol of pagers/external_pager.h. vmm maps it with --pager SOCKET@GPA,SIZE.
 *
 * usage: pager_server [--read-only] [--fail-after N] [--garbage-after N] [--hang-after N]
 *                     SOCKET FILE
 *   --read-only      refuse DATA_RETURN (the object is read-only)
 *   --fail-after N   exit (as if killed) when request N+1 arrives   } fault injection,
 *   --garbage-after N answer request N+1 with garbage               } for tests
 *   --hang-after N   stop answering at request N+1
 * Clients are served one at a time, each until it disconnects.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "pagers/external_pager.h"

static int file_fd;
static uint64_t file_size;
static int read_only;
static long fail_after = -1, garbage_after = -1, hang_after = -1;
static long requests;
static uint8_t buf[EXTPAGER_MAX_DATA];

static int io_all(int fd, void *p, size_t n, int write_it)
{
	return external_pager_io(fd, p, n, write_it);
}

static int reply(int fd, uint32_t type, uint64_t offset, uint64_t length, int32_t error, uint32_t flags)
{
	return external_pager_send_msg(fd, type, offset, length, error, flags);
}

/* Answer one data request: file bytes, zero past the end of the file. */
static int serve_request(int fd, const struct extpager_msg *m)
{
	requests++;
	if (fail_after >= 0 && requests > fail_after)
		_exit(9);
	if (hang_after >= 0 && requests > hang_after)
		for (;;)
			pause();
	if (garbage_after >= 0 && requests > garbage_after) {
		memset(buf, 0xa5, 64);
		return io_all(fd, buf, 64, 1);
	}
	if (!vm_page_aligned(m->offset) || !vm_page_aligned(m->length) || m->length == 0 ||
	    m->length > EXTPAGER_MAX_DATA)
		return reply(fd, EXTPAGER_DATA_ERROR, m->offset, VM_PAGE_SIZE, EINVAL, 0) ||
		       reply(fd, EXTPAGER_REPLY_END, 0, 0, 0, 0);
	uint64_t n = m->offset >= file_size ? 0 : file_size - m->offset;
	if (n > m->length)
		n = m->length;
	uint64_t data = (n + VM_PAGE_SIZE - 1) & ~(VM_PAGE_SIZE - 1);
	if (data) {
		memset(buf + n, 0, data - n);
		ssize_t got = pread(file_fd, buf, n, (off_t)m->offset);
		if (got != (ssize_t)n)
			return reply(fd, EXTPAGER_DATA_ERROR, m->offset, m->length, EIO, 0) ||
			       reply(fd, EXTPAGER_REPLY_END, 0, 0, 0, 0);
		if (reply(fd, EXTPAGER_DATA_PROVIDED, m->offset, data, 0, 0) || io_all(fd, buf, data, 1))
			return -1;
	}
	if (data < m->length && reply(fd, EXTPAGER_DATA_UNAVAILABLE, m->offset + data, m->length - data, 0, 0))
		return -1;
	return reply(fd, EXTPAGER_REPLY_END, 0, 0, 0, 0);
}

static int serve_return(int fd, const struct extpager_msg *m)
{
	if (m->length > EXTPAGER_MAX_DATA || io_all(fd, buf, (size_t)m->length, 0))
		return -1;
	int32_t err = 0;
	if (read_only) {
		err = EROFS;
	} else if (m->offset < file_size) {
		uint64_t n = file_size - m->offset < m->length ? file_size - m->offset : m->length;
		if (pwrite(file_fd, buf, n, (off_t)m->offset) != (ssize_t)n)
			err = errno ? errno : EIO;
	}
	return reply(fd, EXTPAGER_RETURN_REPLY, m->offset, 0, err, 0);
}

static void serve_client(int fd)
{
	struct extpager_msg m;
	while (io_all(fd, &m, sizeof(m), 0) == 0 && m.magic == EXTPAGER_MAGIC) {
		int r = 0;
		switch (m.type) {
		case EXTPAGER_HELLO:
			r = reply(fd, EXTPAGER_HELLO_REPLY, 0, file_size, 0, read_only ? 0 : EXTPAGER_WRITABLE);
			break;
		case EXTPAGER_DATA_REQUEST:
			r = serve_request(fd, &m);
			break;
		case EXTPAGER_DATA_RETURN:
			r = serve_return(fd, &m);
			break;
		case EXTPAGER_TERMINATE:
			fsync(file_fd);
			return;
		default:
			return;
		}
		if (r)
			return;
	}
}

/* The usage line: on stdout with status 0 when asked for (--help), else on stderr with 2. */
static void usage(int status)
{
	fprintf(status ? stderr : stdout,
		"usage: pager_server [--read-only] [--fail-after N] [--garbage-after N] [--hang-after N] SOCKET FILE\n");
	if (!status)
		printf("Serve FILE as an external pager on the unix socket SOCKET (vmm run --pager SOCKET@GPA,SIZE).\n"
		       "  --read-only        refuse DATA_RETURN (the object is read-only)\n"
		       "  --fail-after N     exit (as if killed) when request N+1 arrives\n"
		       "  --garbage-after N  answer request N+1 with garbage\n"
		       "  --hang-after N     stop answering at request N+1\n"
		       "  -h, --help         show this help\n");
	exit(status);
}

int main(int argc, char **argv)
{
	int i = 1;
	for (; i < argc && argv[i][0] == '-'; i++) {
		if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0)
			usage(0);
		else if (strcmp(argv[i], "--read-only") == 0)
			read_only = 1;
		else if (i + 1 < argc && strcmp(argv[i], "--fail-after") == 0)
			fail_after = atol(argv[++i]);
		else if (i + 1 < argc && strcmp(argv[i], "--garbage-after") == 0)
			garbage_after = atol(argv[++i]);
		else if (i + 1 < argc && strcmp(argv[i], "--hang-after") == 0)
			hang_after = atol(argv[++i]);
		else
			usage(2);
	}
	if (argc - i != 2)
		usage(2);
	const char *sock_path = argv[i], *file = argv[i + 1];
	file_fd = open(file, read_only ? O_RDONLY : O_RDWR);
	struct stat st;
	if (file_fd < 0 || fstat(file_fd, &st) != 0 || st.st_size == 0) {
		fprintf(stderr, "pager_server: cannot serve %s: %s\n", file, file_fd < 0 ? strerror(errno) : "empty");
		return 1;
	}
	file_size = (uint64_t)st.st_size;
	int lfd = external_pager_listen(sock_path, 4);
	if (lfd < 0) {
		fprintf(stderr, "pager_server: cannot listen on %s: %s\n", sock_path, strerror(-lfd));
		return 1;
	}
	signal(SIGPIPE, SIG_IGN);
	fprintf(stderr, "pager_server: serving %s (%llu bytes) on %s\n", file, (unsigned long long)file_size, sock_path);
	for (;;) {
		int fd = accept(lfd, NULL, NULL);
		if (fd < 0) {
			if (errno == EINTR)
				continue;
			return 1;
		}
		serve_client(fd);
		close(fd);
	}
}

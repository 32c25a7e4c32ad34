/*
 * Host-wide shared segments: independent processes (fork(2) children that close what they
 * inherited) meet through the rendezvous. Every test draws a fresh random key, so tests
 * never meet each other or a real VM. Every wait on another process has a deadline (a
 * guard against a broken build hanging the run, never a timing assertion).
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"
#include "vmm/error.h"
#include "vmm/memory/segment.h"

#define WAIT_MS 10000 /* any wait on another process */
#define SIZE (64u << 10)
#define SEALS (F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL)

static void random_key(uint8_t key[SEGMENT_KEY_BYTES])
{
	ck_assert_int_eq(getrandom(key, SEGMENT_KEY_BYTES, 0), SEGMENT_KEY_BYTES);
}

/* The rendezvous name segment.h documents, without its leading NUL. */
static void key_name(const uint8_t key[SEGMENT_KEY_BYTES], uid_t uid, char *name, size_t len)
{
	int n = snprintf(name, len, "vmm-segment-%u-", (unsigned)uid);
	for (unsigned i = 0; i < SEGMENT_KEY_BYTES; i++)
		n += snprintf(name + n, len - (size_t)n, "%02x", key[i]);
}

static void sleep_ms(unsigned ms)
{
	struct timespec t = {ms / 1000, (long)(ms % 1000) * 1000000};
	nanosleep(&t, NULL);
}

static unsigned count_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	ck_assert_ptr_nonnull(d);
	unsigned n = 0;
	while (readdir(d))
		n++;
	closedir(d);
	return n;
}

/* Read exactly @n bytes within @ms; false at end of file or when time runs out. */
static bool read_within(int fd, void *buf, size_t n, int ms)
{
	size_t done = 0;
	while (done < n) {
		struct pollfd p = {fd, POLLIN, 0};
		int r = poll(&p, 1, ms);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return false;
		ssize_t got = read(fd, (char *)buf + done, n - done);
		if (got < 0 && errno == EINTR)
			continue;
		if (got <= 0)
			return false;
		done += (size_t)got;
	}
	return true;
}

static void write_all(int fd, const void *buf, size_t n)
{
	while (n) {
		ssize_t w = write(fd, buf, n);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return;
		buf = (const char *)buf + w;
		n -= (size_t)w;
	}
}

/* Reap @pid, killing it if it has not ended within @ms. Returns its wait status. */
static int reap(pid_t pid, int ms)
{
	int status = 0;
	for (int waited = 0; waited < ms; waited += 5) {
		if (waitpid(pid, &status, WNOHANG) == pid)
			return status;
		sleep_ms(5);
	}
	kill(pid, SIGKILL);
	waitpid(pid, &status, 0);
	return status;
}

/* In a child: close every descriptor above 2 but @a and @b, as a process started afresh
 * would have none of the test process's (its segments' sockets above all). */
static void close_inherited(int a, int b)
{
	int lo = a < b ? a : b, hi = a < b ? b : a;
	close_range(3, (unsigned)lo - 1, 0);
	close_range((unsigned)lo + 1, (unsigned)hi - 1, 0);
	close_range((unsigned)hi + 1, ~0u, 0);
}

/* ---- peers: other VMM processes holding a segment, driven through two pipes ---------- */

enum peer_mode {
	PEER_OPEN,            /* an independent process: segment_open */
	PEER_REATTACH,        /* a fork child of the test process: segment_reattach of its copy */
	PEER_CLOSE_INHERITED, /* a fork child of the test process: segment_close of its copy */
};

enum peer_op { PEER_WRITE = 'w', PEER_READ = 'r', PEER_HOLDERS = 'h', PEER_RESIDENT = 'p', PEER_QUIT = 'q' };

struct peer_cmd {
	int op;
	uint64_t off;
	uint8_t byte;
};

struct peer_reply {
	int64_t r;      /* the open's (or reattach's) result; later: the command's */
	int64_t joined;
	int64_t seals;
	uint64_t dev, ino, size;
};

struct peer {
	pid_t pid;
	int cmd, reply;
};

static void peer_main(int cmd, int reply, enum peer_mode mode, const uint8_t *key, struct segment *s)
{
	struct segment own;
	struct peer_reply rep = {0};
	if (mode == PEER_OPEN) {
		close_inherited(cmd, reply);
		s = &own;
		rep.r = segment_open(s, key, SIZE);
	} else if (mode == PEER_REATTACH) {
		rep.r = segment_reattach(s);
	} else {
		segment_close(s);
	}
	struct stat st;
	if (s->fd >= 0 && fstat(s->fd, &st) == 0) {
		rep.dev = st.st_dev;
		rep.ino = st.st_ino;
		rep.size = (uint64_t)st.st_size;
		rep.seals = fcntl(s->fd, F_GET_SEALS);
	}
	rep.joined = s->joined;
	write_all(reply, &rep, sizeof(rep));
	struct peer_cmd c;
	while (read_within(cmd, &c, sizeof(c), -1)) {
		memset(&rep, 0, sizeof(rep));
		switch (c.op) {
		case PEER_WRITE:
			rep.r = pwrite(s->fd, &c.byte, 1, (off_t)c.off);
			break;
		case PEER_READ: {
			uint8_t b = 0;
			rep.r = pread(s->fd, &b, 1, (off_t)c.off) == 1 ? b : -1;
			break;
		}
		case PEER_HOLDERS:
			rep.r = segment_holders(s);
			break;
		case PEER_RESIDENT:
			rep.r = (int64_t)segment_resident_pages(s);
			break;
		case PEER_QUIT:
			segment_close(s);
			write_all(reply, &rep, sizeof(rep));
			_exit(0);
		}
		write_all(reply, &rep, sizeof(rep));
	}
	_exit(0); /* the test process went away */
}

/* Start a peer; returns what its open (or reattach, or close) gave. @s: the test process's
 * segment, for the modes that use the fork child's copy of it. */
static struct peer_reply peer_start(struct peer *p, enum peer_mode mode, const uint8_t *key, struct segment *s)
{
	int c[2], r[2];
	ck_assert_int_eq(pipe(c), 0);
	ck_assert_int_eq(pipe(r), 0);
	p->pid = fork();
	ck_assert_int_ge(p->pid, 0);
	if (p->pid == 0) {
		close(c[1]);
		close(r[0]);
		peer_main(c[0], r[1], mode, key, s);
	}
	close(c[0]);
	close(r[1]);
	p->cmd = c[1];
	p->reply = r[0];
	struct peer_reply rep;
	ck_assert_msg(read_within(p->reply, &rep, sizeof(rep), WAIT_MS), "a peer did not report its open");
	return rep;
}

static int64_t peer_call(struct peer *p, int op, uint64_t off, uint8_t byte)
{
	struct peer_cmd c = {.op = op, .off = off, .byte = byte};
	write_all(p->cmd, &c, sizeof(c));
	struct peer_reply rep;
	ck_assert_msg(read_within(p->reply, &rep, sizeof(rep), WAIT_MS), "a peer did not answer '%c'", op);
	return rep.r;
}

/* The peer closes its segment and exits. */
static void peer_end(struct peer *p)
{
	peer_call(p, PEER_QUIT, 0, 0);
	ck_assert_int_eq(reap(p->pid, WAIT_MS), 0);
	close(p->cmd);
	close(p->reply);
}

static void peer_kill(struct peer *p)
{
	kill(p->pid, SIGKILL);
	waitpid(p->pid, NULL, 0);
	close(p->cmd);
	close(p->reply);
}

/* Poll @p's holder count until it is @want (it takes the peers a moment to settle). */
static void peer_wait_holders(struct peer *p, int64_t want)
{
	int64_t got = -1;
	for (int waited = 0; waited < WAIT_MS; waited += 20) {
		got = peer_call(p, PEER_HOLDERS, 0, 0);
		if (got == want)
			return;
		sleep_ms(20);
	}
	ck_abort_msg("a peer counts %lld holders, not %lld", (long long)got, (long long)want);
}

static void wait_holders(struct segment *s, unsigned want)
{
	unsigned got = 0;
	for (int waited = 0; waited < WAIT_MS; waited += 20) {
		got = segment_holders(s);
		if (got == want)
			return;
		sleep_ms(20);
	}
	ck_abort_msg("%u holders counted, not %u", got, want);
}

static struct stat fd_stat(int fd)
{
	struct stat st;
	ck_assert_int_eq(fstat(fd, &st), 0);
	return st;
}

static int byte_at(int fd, uint64_t off)
{
	uint8_t b = 0;
	ck_assert_int_eq(pread(fd, &b, 1, (off_t)off), 1);
	return b;
}

static void put_byte(int fd, uint64_t off, uint8_t b)
{
	ck_assert_int_eq(pwrite(fd, &b, 1, (off_t)off), 1);
}

/* Whether /proc/net/unix lists the abstract name of @key (-1: cannot tell). */
static int name_listed(const uint8_t key[SEGMENT_KEY_BYTES])
{
	char name[96], line[512];
	name[0] = '@';
	key_name(key, geteuid(), name + 1, sizeof(name) - 1);
	FILE *f = fopen("/proc/net/unix", "r");
	if (!f)
		return -1;
	int found = 0;
	while (fgets(line, sizeof(line), f))
		if (strstr(line, name))
			found = 1;
	fclose(f);
	return found;
}

/* ---- the tests -------------------------------------------------------------------------- */

START_TEST(two_processes_share_one_segment)
{
	uint8_t key[SEGMENT_KEY_BYTES];
	random_key(key);
	struct segment s;
	ck_assert_int_eq(segment_open(&s, key, SIZE), 0);
	ck_assert(!s.joined);
	ck_assert_uint_eq(s.size, SIZE);
	struct stat st = fd_stat(s.fd);
	ck_assert_int_eq(st.st_size, SIZE);
	ck_assert_int_eq(fcntl(s.fd, F_GET_SEALS) & SEALS, SEALS);
	ck_assert_int_eq(fcntl(s.fd, F_GETFL) & O_ACCMODE, O_RDWR);

	struct peer p;
	struct peer_reply rep = peer_start(&p, PEER_OPEN, key, NULL);
	ck_assert_int_eq(rep.r, 0);
	ck_assert_int_eq(rep.joined, 1);
	ck_assert_uint_eq(rep.dev, st.st_dev);
	ck_assert_uint_eq(rep.ino, st.st_ino);
	ck_assert_uint_eq(rep.size, SIZE);
	ck_assert_int_eq(rep.seals & SEALS, SEALS);

	put_byte(s.fd, 12345, 0xab);
	ck_assert_int_eq(peer_call(&p, PEER_READ, 12345, 0), 0xab);
	ck_assert_int_eq(peer_call(&p, PEER_WRITE, 5 * 4096, 0xcd), 1);
	ck_assert_int_eq(byte_at(s.fd, 5 * 4096), 0xcd);
	ck_assert_uint_ge(segment_resident_pages(&s), 2);
	ck_assert_int_eq(peer_call(&p, PEER_RESIDENT, 0, 0), (int64_t)segment_resident_pages(&s));
	peer_end(&p);
	segment_close(&s);
	ck_assert_int_eq(s.fd, -1);
}
END_TEST

START_TEST(different_keys_give_different_segments)
{
	uint8_t k1[SEGMENT_KEY_BYTES], k2[SEGMENT_KEY_BYTES];
	random_key(k1);
	random_key(k2);
	struct segment a, b;
	ck_assert_int_eq(segment_open(&a, k1, SIZE), 0);
	ck_assert_int_eq(segment_open(&b, k2, SIZE), 0);
	ck_assert(!a.joined && !b.joined);
	ck_assert_uint_ne(fd_stat(a.fd).st_ino, fd_stat(b.fd).st_ino);
	put_byte(a.fd, 0, 1);
	ck_assert_int_eq(byte_at(b.fd, 0), 0);
	segment_close(&a);
	segment_close(&b);
}
END_TEST

/* Nothing in /dev/shm or /tmp names the segment or its key. */
static void assert_no_file_for(const uint8_t key[SEGMENT_KEY_BYTES])
{
	char hex[2 * SEGMENT_KEY_BYTES + 1];
	for (unsigned i = 0; i < SEGMENT_KEY_BYTES; i++)
		snprintf(hex + 2 * i, 3, "%02x", key[i]);
	const char *dirs[] = {"/dev/shm", "/tmp"};
	for (unsigned i = 0; i < 2; i++) {
		DIR *d = opendir(dirs[i]);
		if (!d)
			continue;
		struct dirent *e;
		while ((e = readdir(d)))
			ck_assert_msg(!strstr(e->d_name, "vmm-segment") && !strstr(e->d_name, hex), "%s/%s was left behind",
				      dirs[i], e->d_name);
		closedir(d);
	}
}

START_TEST(kill_9_of_every_holder_leaves_nothing_behind)
{
	uint8_t key[SEGMENT_KEY_BYTES];
	random_key(key);
	struct peer a, b;
	struct peer_reply ra = peer_start(&a, PEER_OPEN, key, NULL);
	struct peer_reply rb = peer_start(&b, PEER_OPEN, key, NULL);
	ck_assert_int_eq(ra.r, 0);
	ck_assert_int_eq(rb.r, 0);
	ck_assert(!ra.joined && rb.joined);
	ck_assert_int_eq(peer_call(&a, PEER_WRITE, 0, 0x11), 1);
	ck_assert_int_eq(peer_call(&b, PEER_WRITE, 8192, 0x22), 1);
	ck_assert_int_ne(name_listed(key), 0);
	peer_kill(&a);
	peer_kill(&b);
	ck_assert_int_ne(name_listed(key), 1); /* reaped: their sockets are gone */
	assert_no_file_for(key);

	struct segment s;
	ck_assert_int_eq(segment_open(&s, key, SIZE), 0);
	ck_assert(!s.joined);
	ck_assert_uint_ne(fd_stat(s.fd).st_ino, ra.ino);
	ck_assert_uint_eq(segment_resident_pages(&s), 0);
	ck_assert_int_eq(byte_at(s.fd, 0), 0);
	ck_assert_int_eq(byte_at(s.fd, 8192), 0);
	segment_close(&s);
	ck_assert_int_ne(name_listed(key), 1);
	assert_no_file_for(key);
}
END_TEST

/*
 *   A (listener) <- B, C           kill -9 A
 *   B or C binds the name, the other registers with it (same memfd)
 *   a later opener joins them: same memfd, three holders
 */
START_TEST(holders_take_over_when_the_listener_dies)
{
	uint8_t key[SEGMENT_KEY_BYTES];
	random_key(key);
	struct peer a, b, c;
	ck_assert_int_eq(peer_start(&a, PEER_OPEN, key, NULL).r, 0);
	struct peer_reply rb = peer_start(&b, PEER_OPEN, key, NULL);
	struct peer_reply rc = peer_start(&c, PEER_OPEN, key, NULL);
	ck_assert_int_eq(rb.r, 0);
	ck_assert_int_eq(rc.r, 0);
	ck_assert(rb.joined && rc.joined);
	ck_assert_int_eq(peer_call(&b, PEER_WRITE, 4096, 0x5a), 1);
	peer_wait_holders(&b, 3);
	peer_kill(&a);
	peer_wait_holders(&b, 2);
	peer_wait_holders(&c, 2);

	struct segment s;
	ck_assert_int_eq(segment_open(&s, key, SIZE), 0);
	ck_assert(s.joined);
	ck_assert_uint_eq(fd_stat(s.fd).st_ino, rb.ino);
	ck_assert_int_eq(byte_at(s.fd, 4096), 0x5a);
	ck_assert_uint_eq(segment_holders(&s), 3);
	peer_end(&b);
	peer_end(&c);
	segment_close(&s);
}
END_TEST

/* ---- hostile listeners: a process that binds the name itself ---------------------------- */

enum hostile_kind {
	HOSTILE_VALID,         /* a correct listener of our own: the protocol as documented */
	HOSTILE_UNSEALED,      /* a memfd of the right size, not sealed */
	HOSTILE_WRONG_SIZE,    /* sealed, twice the size (the offer says the right one) */
	HOSTILE_WRITE_SEALED,  /* sealed against writes too */
	HOSTILE_READ_ONLY,     /* the memfd reopened read-only */
	HOSTILE_PIPE,          /* a pipe for the memfd */
	HOSTILE_NO_FD,         /* the offer without a descriptor */
	HOSTILE_TWO_FDS,       /* the offer with two memfds */
	HOSTILE_GARBAGE,       /* a few random bytes */
	HOSTILE_GARBAGE_FD,    /* a wrong magic, with a valid memfd */
	HOSTILE_OLD_VERSION,   /* another protocol version, with a valid memfd */
	HOSTILE_HUGE,          /* a 64 KiB record, with a valid memfd */
	HOSTILE_SILENT,        /* accepts and never answers */
	HOSTILE_HANG_UP,       /* accepts and closes at once */
	HOSTILE_KINDS
};

static const struct {
	int err;
	const char *says;
} hostile_expect[HOSTILE_KINDS] = {
	[HOSTILE_VALID] = {0, ""},
	[HOSTILE_UNSEALED] = {EPROTO, "not sealed against resizing"},
	[HOSTILE_WRONG_SIZE] = {EPROTO, "has 131072 bytes, not 65536"},
	[HOSTILE_WRITE_SEALED] = {EPROTO, "sealed against writes"},
	[HOSTILE_READ_ONLY] = {EPROTO, "not open for reading and writing"},
	[HOSTILE_PIPE] = {EPROTO, "not a regular file"},
	[HOSTILE_NO_FD] = {EPROTO, "no descriptor"},
	[HOSTILE_TWO_FDS] = {EPROTO, "more than one descriptor"},
	[HOSTILE_GARBAGE] = {EPROTO, "not a segment offer"},
	[HOSTILE_GARBAGE_FD] = {EPROTO, "not a segment offer"},
	[HOSTILE_OLD_VERSION] = {EPROTO, "protocol version 7"},
	[HOSTILE_HUGE] = {EPROTO, "not a segment offer"},
	[HOSTILE_SILENT] = {ETIMEDOUT, "did not answer"},
	[HOSTILE_HANG_UP] = {ETIMEDOUT, "without an answer"},
};

static int hostile_memfd(uint64_t size, int seals)
{
	int fd = memfd_create("hostile", MFD_CLOEXEC | MFD_ALLOW_SEALING);
	if (fd < 0 || ftruncate(fd, (off_t)size) != 0 || (seals && fcntl(fd, F_ADD_SEALS, seals) != 0))
		_exit(3);
	return fd;
}

static void hostile_send(int c, const void *data, size_t len, const int *fds, unsigned nfds)
{
	union {
		struct cmsghdr h;
		char buf[CMSG_SPACE(2 * sizeof(int))];
	} ctl;
	memset(&ctl, 0, sizeof(ctl));
	struct iovec iov = {(void *)data, len};
	struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1};
	if (nfds) {
		mh.msg_control = ctl.buf;
		mh.msg_controllen = CMSG_SPACE(nfds * sizeof(int));
		struct cmsghdr *h = CMSG_FIRSTHDR(&mh);
		h->cmsg_level = SOL_SOCKET;
		h->cmsg_type = SCM_RIGHTS;
		h->cmsg_len = CMSG_LEN(nfds * sizeof(int));
		memcpy(CMSG_DATA(h), fds, nfds * sizeof(int));
	}
	sendmsg(c, &mh, MSG_NOSIGNAL);
}

/* Answer one accepted connection the way @kind says. */
static void hostile_answer(int c, enum hostile_kind kind)
{
	struct segment_msg m = {SEGMENT_MAGIC, SEGMENT_VERSION, SEGMENT_MSG_OFFER, SIZE, 0};
	int fds[2] = {-1, -1}, p[2];
	unsigned nfds = 1;
	static char huge[64 << 10];
	const void *data = &m;
	size_t len = sizeof(m);
	switch (kind) {
	case HOSTILE_VALID:
		fds[0] = hostile_memfd(SIZE, SEALS);
		break;
	case HOSTILE_UNSEALED:
		fds[0] = hostile_memfd(SIZE, 0);
		break;
	case HOSTILE_WRONG_SIZE:
		fds[0] = hostile_memfd(2 * SIZE, SEALS);
		break;
	case HOSTILE_WRITE_SEALED:
		fds[0] = hostile_memfd(SIZE, SEALS | F_SEAL_WRITE);
		break;
	case HOSTILE_READ_ONLY: {
		char path[64];
		int rw = hostile_memfd(SIZE, SEALS);
		snprintf(path, sizeof(path), "/proc/self/fd/%d", rw);
		fds[0] = open(path, O_RDONLY | O_CLOEXEC);
		close(rw);
		break;
	}
	case HOSTILE_PIPE:
		if (pipe(p) != 0)
			_exit(3);
		fds[0] = p[0];
		close(p[1]);
		break;
	case HOSTILE_NO_FD:
		nfds = 0;
		break;
	case HOSTILE_TWO_FDS:
		fds[0] = hostile_memfd(SIZE, SEALS);
		fds[1] = hostile_memfd(SIZE, SEALS);
		nfds = 2;
		break;
	case HOSTILE_GARBAGE:
		data = "\x01\x02garbage";
		len = 9;
		nfds = 0;
		break;
	case HOSTILE_GARBAGE_FD:
		m.magic = 0xdeadbeef;
		fds[0] = hostile_memfd(SIZE, SEALS);
		break;
	case HOSTILE_OLD_VERSION:
		m.version = 7;
		fds[0] = hostile_memfd(SIZE, SEALS);
		break;
	case HOSTILE_HUGE:
		memcpy(huge, &m, sizeof(m));
		data = huge;
		len = sizeof(huge);
		fds[0] = hostile_memfd(SIZE, SEALS);
		break;
	case HOSTILE_SILENT:
		return;
	case HOSTILE_HANG_UP:
	case HOSTILE_KINDS:
		close(c);
		return;
	}
	hostile_send(c, data, len, fds, nfds);
	for (unsigned i = 0; i < 2; i++)
		if (fds[i] >= 0)
			close(fds[i]);
}

/* A child that binds @key's name (for the test process's euid) as user @uid (0: as is) and
 * answers every connection as @kind says, until *ctl (its pipe) is closed. */
static pid_t hostile_start(const uint8_t key[SEGMENT_KEY_BYTES], enum hostile_kind kind, uid_t uid, int *ctl)
{
	int c[2], ready[2];
	ck_assert_int_eq(pipe(c), 0);
	ck_assert_int_eq(pipe(ready), 0);
	struct sockaddr_un a = {.sun_family = AF_UNIX};
	key_name(key, geteuid(), a.sun_path + 1, sizeof(a.sun_path) - 1);
	socklen_t alen = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + strlen(a.sun_path + 1));
	pid_t pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		close(c[1]);
		close(ready[0]);
		close_inherited(c[0], ready[1]);
		if (uid && (setgid(uid) != 0 || setuid(uid) != 0))
			_exit(2);
		int l = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
		if (l < 0 || bind(l, (struct sockaddr *)&a, alen) != 0 || listen(l, 16) != 0)
			_exit(2);
		write_all(ready[1], "r", 1);
		for (;;) {
			struct pollfd p[2] = {{c[0], POLLIN, 0}, {l, POLLIN, 0}};
			if (poll(p, 2, -1) < 0)
				continue;
			if (p[0].revents)
				_exit(0);
			int conn = accept4(l, NULL, NULL, SOCK_CLOEXEC);
			if (conn >= 0)
				hostile_answer(conn, kind); /* kept open (but for HANG_UP) until we exit */
		}
	}
	close(c[0]);
	close(ready[1]);
	char r;
	ck_assert_msg(read_within(ready[0], &r, 1, WAIT_MS), "the hostile listener did not start");
	close(ready[0]);
	*ctl = c[1];
	return pid;
}

static void hostile_end(pid_t pid, int ctl)
{
	close(ctl);
	reap(pid, WAIT_MS);
}

START_TEST(hostile_listeners_are_refused_cleanly)
{
	enum hostile_kind kind = (enum hostile_kind)_i;
	uint8_t key[SEGMENT_KEY_BYTES];
	random_key(key);
	int ctl;
	pid_t pid = hostile_start(key, kind, 0, &ctl);
	unsigned fds = count_fds();
	struct segment s;
	error_clear();
	int r = segment_open(&s, key, SIZE);
	if (hostile_expect[kind].err == 0) {
		ck_assert_msg(r == 0, "kind %d: %s", kind, error_message());
		ck_assert(s.joined);
		segment_close(&s);
	} else {
		ck_assert_msg(r == -hostile_expect[kind].err, "kind %d: %d, not %d (%s)", kind, r, -hostile_expect[kind].err,
			      error_message());
		ck_assert_msg(strstr(error_message(), hostile_expect[kind].says), "kind %d: \"%s\" does not say \"%s\"",
			      kind, error_message(), hostile_expect[kind].says);
		ck_assert_int_eq(s.fd, -1);
		segment_close(&s);
	}
	ck_assert_uint_eq(count_fds(), fds);
	hostile_end(pid, ctl);
}
END_TEST

START_TEST(a_listener_of_another_user_is_refused)
{
	if (geteuid() != 0) {
		printf("SKIP: segment: a_listener_of_another_user_is_refused needs root (to setuid a listener)\n");
		return;
	}
	uint8_t key[SEGMENT_KEY_BYTES];
	random_key(key);
	int ctl;
	pid_t pid = hostile_start(key, HOSTILE_VALID, 65534, &ctl);
	unsigned fds = count_fds();
	struct segment s;
	int r = segment_open(&s, key, SIZE);
	ck_assert_int_eq(r, -EACCES);
	ck_assert_msg(strstr(error_message(), "held by another user's process (uid 65534"), "%s", error_message());
	ck_assert_int_eq(s.fd, -1);
	ck_assert_uint_eq(count_fds(), fds);
	hostile_end(pid, ctl);
}
END_TEST

START_TEST(holders_are_counted)
{
	uint8_t key[SEGMENT_KEY_BYTES];
	random_key(key);
	struct peer p1, p2;
	ck_assert_int_eq(peer_start(&p1, PEER_OPEN, key, NULL).r, 0);
	struct segment s;
	ck_assert_int_eq(segment_open(&s, key, SIZE), 0);
	ck_assert(s.joined);
	ck_assert_int_eq(peer_start(&p2, PEER_OPEN, key, NULL).r, 0);
	peer_wait_holders(&p1, 3);            /* the listener's own count */
	ck_assert_uint_eq(segment_holders(&s), 3); /* a holder asks the listener */
	ck_assert_int_eq(peer_call(&p2, PEER_HOLDERS, 0, 0), 3);
	peer_kill(&p2);
	peer_wait_holders(&p1, 2);
	wait_holders(&s, 2);
	segment_close(&s);
	peer_wait_holders(&p1, 1);
	peer_end(&p1);
}
END_TEST

START_TEST(a_fork_child_reattaches_and_keeps_the_segment)
{
	uint8_t key[SEGMENT_KEY_BYTES];
	random_key(key);
	struct segment s;
	ck_assert_int_eq(segment_open(&s, key, SIZE), 0);
	ck_assert_uint_eq(segment_holders(&s), 1);
	put_byte(s.fd, 0, 0x77);
	struct stat st = fd_stat(s.fd);

	struct peer child, later;
	struct peer_reply rc = peer_start(&child, PEER_REATTACH, key, &s);
	ck_assert_int_eq(rc.r, 0);
	ck_assert_uint_eq(rc.ino, st.st_ino);
	wait_holders(&s, 2);
	ck_assert_int_eq(peer_call(&child, PEER_HOLDERS, 0, 0), 2);

	/* The listener closes: the child takes over and later openers find its segment. */
	segment_close(&s);
	peer_wait_holders(&child, 1);
	struct peer_reply rl = peer_start(&later, PEER_OPEN, key, NULL);
	ck_assert_int_eq(rl.r, 0);
	ck_assert_int_eq(rl.joined, 1);
	ck_assert_uint_eq(rl.ino, st.st_ino);
	ck_assert_int_eq(peer_call(&later, PEER_READ, 0, 0), 0x77);
	peer_wait_holders(&child, 2);
	peer_end(&later);
	peer_end(&child);
}
END_TEST

START_TEST(a_fork_child_of_a_holder_registers_with_the_listener)
{
	uint8_t key[SEGMENT_KEY_BYTES];
	random_key(key);
	struct peer listener, child;
	ck_assert_int_eq(peer_start(&listener, PEER_OPEN, key, NULL).r, 0);
	struct segment s;
	ck_assert_int_eq(segment_open(&s, key, SIZE), 0);
	ck_assert(s.joined);
	struct peer_reply rc = peer_start(&child, PEER_REATTACH, key, &s);
	ck_assert_int_eq(rc.r, 0);
	peer_wait_holders(&listener, 3);
	ck_assert_int_eq(peer_call(&child, PEER_HOLDERS, 0, 0), 3);
	/* The child's copy of our connection is closed: ours still counts, and ends alone. */
	segment_close(&s);
	peer_wait_holders(&listener, 2);
	peer_end(&child);
	peer_wait_holders(&listener, 1);
	peer_end(&listener);
}
END_TEST

START_TEST(close_in_a_fork_child_leaves_the_parent_serving)
{
	uint8_t key[SEGMENT_KEY_BYTES];
	random_key(key);
	struct segment s;
	ck_assert_int_eq(segment_open(&s, key, SIZE), 0);
	struct peer child, later;
	ck_assert_int_eq(peer_start(&child, PEER_CLOSE_INHERITED, key, &s).r, 0);
	struct peer_reply rl = peer_start(&later, PEER_OPEN, key, NULL);
	ck_assert_int_eq(rl.r, 0);
	ck_assert_int_eq(rl.joined, 1);
	ck_assert_uint_eq(rl.ino, fd_stat(s.fd).st_ino);
	wait_holders(&s, 2); /* the child is not one */
	peer_end(&child);
	peer_end(&later);
	segment_close(&s);
}
END_TEST

START_TEST(close_is_harmless_when_not_open)
{
	struct segment s;
	memset(&s, 0, sizeof(s)); /* fd 0 is not ours to close */
	int flags = fcntl(0, F_GETFD);
	segment_close(&s);
	ck_assert_int_eq(fcntl(0, F_GETFD), flags);
	ck_assert_int_eq(s.fd, -1);
	segment_init(&s);
	segment_close(&s);
	segment_close(&s);
	ck_assert_uint_eq(segment_holders(&s), 0);
	ck_assert_uint_eq(segment_resident_pages(&s), 0);
	ck_assert_int_eq(segment_reattach(&s), -EBADF);

	uint8_t key[SEGMENT_KEY_BYTES];
	random_key(key);
	unsigned fds = count_fds();
	ck_assert_int_eq(segment_open(&s, key, 0), -EINVAL);
	ck_assert_int_eq(s.fd, -1);
	ck_assert_int_eq(segment_open(&s, key, SIZE), 0);
	ck_assert_int_eq(segment_reattach(&s), 0); /* the opening process: nothing to do */
	segment_close(&s);
	segment_close(&s);
	ck_assert_int_eq(s.fd, -1);
	ck_assert_uint_eq(count_fds(), fds);
}
END_TEST

Suite *segment_suite(void)
{
	Suite *s = suite_create("segment");
	TCase *tc = tcase_create("rendezvous");
	tcase_set_timeout(tc, 60);
	HARNESS_ADD_TEST(tc, two_processes_share_one_segment);
	HARNESS_ADD_TEST(tc, different_keys_give_different_segments);
	HARNESS_ADD_TEST(tc, kill_9_of_every_holder_leaves_nothing_behind);
	HARNESS_ADD_TEST(tc, holders_take_over_when_the_listener_dies);
	HARNESS_ADD_LOOP_TEST(tc, hostile_listeners_are_refused_cleanly, 0, HOSTILE_KINDS);
	HARNESS_ADD_TEST(tc, a_listener_of_another_user_is_refused);
	HARNESS_ADD_TEST(tc, holders_are_counted);
	HARNESS_ADD_TEST(tc, a_fork_child_reattaches_and_keeps_the_segment);
	HARNESS_ADD_TEST(tc, a_fork_child_of_a_holder_registers_with_the_listener);
	HARNESS_ADD_TEST(tc, close_in_a_fork_child_leaves_the_parent_serving);
	HARNESS_ADD_TEST(tc, close_is_harmless_when_not_open);
	suite_add_tcase(s, tc);
	return s;
}

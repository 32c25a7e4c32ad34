/*
 * The RADOS client: a helper process per connection, spoken to in frames (rados.h). Every
 * answer is checked before it is believed; anything wrong stops the helper and leaves the
 * connection down, with the reason kept for the calls that follow.
 */
#include "vmm/store/rados.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "vmm/clock.h"
#include "vmm/error.h"
#include "vmm/store/rados_frame.h"

#define RADOS_HELPER_FD 3          /* where the helper finds its socket */
#define RADOS_CLOSE_WAIT_MS 10000u /* for the helper to unlock and exit once told to */
#define RADOS_DETAIL_MAX 1024u     /* bytes of the helper's words in an error reply */
#define RADOS_KEEP_BUFFER (1u << 20) /* frame buffers larger than this are freed after a call */
#define RADOS_OID_SHOWN 96         /* bytes of an object name in a message */
#define RADOS_RECONNECT_GAP_MS 10000u /* between two tries at a new helper for a connection down */

extern char **environ;

/*
 * Field tags: (c) constant once opened; (m) under lock; (f) the process's connection list
 * (rados_conns.lock), and closed in a fork child.
 */
struct rados_conn {
	char *where;               /* (c) "POOL/NAMESPACE" or "POOL", for messages */
	pid_t owner;               /* (c) the process that opened it (a fork child's copy: the child) */
	pid_t helper;              /* (m) the helper's pid; 0 once reaped */
	int fd;                    /* (m)(f) our end of the socket; -1 once down */
	unsigned timeout_ms;       /* (m) */
	unsigned lock_duration_ms; /* (m) */
	unsigned long long call_ms; /* (m) the deadline of the exchange in progress, from its start */
	char client[64];           /* (c) "client.4123" */
	char down[256];            /* (m) why fd is -1 */
	pthread_mutex_t lock;      /* one exchange at a time */
	struct rados_frame out, in; /* (m) */
	char name[RADOS_NAME_MAX + 1], cookie[RADOS_NAME_MAX + 1], description[RADOS_NAME_MAX + 1]; /* (m) replies' strings */
	struct rados_conn *next;   /* (f) */
	/* What a new helper needs after the last one died (rados_reconnect). */
	char *pool, *nspace, *conf, *client_id; /* (c) conf and client_id NULL when not given */
	struct rados_held *held;   /* (m) the locks taken and not yet unlocked */
	size_t nheld, held_cap;    /* (m) */
	bool helper_died;          /* (m) down because the helper ended (not stopped by us) */
	uint64_t last_try_ns;      /* (m) the last reconnect tried, 0 none */
	unsigned reconnects;       /* (m) helpers started after the first */
	bool forked;               /* (m) a fork child's copy, given no helper of its own yet */
};

/* A lock the connection holds, to take again through a new helper. */
struct rados_held {
	char *oid, *cookie, *description;
	bool exclusive;
	bool forks; /* a fork child takes it too (rados_conn_share_with_forks) */
	bool lost;  /* a new helper could not take it again: its unlock says -ENOLCK */
};

/* Every connection this process opened: a fork child closes their sockets. */
static struct {
	pthread_mutex_t lock;
	struct rados_conn *first;
	pthread_once_t atfork_once;
} rados_conns = {PTHREAD_MUTEX_INITIALIZER, NULL, PTHREAD_ONCE_INIT};

static void rados_atfork_prepare(void)
{
	pthread_mutex_lock(&rados_conns.lock);
}

static void rados_atfork_parent(void)
{
	pthread_mutex_unlock(&rados_conns.lock);
}

static void rados_held_free(struct rados_held *h);

/* The child must not speak on its parent's streams (its frames would interleave with the
 * parent's) nor keep them open (the helper would not see the parent end). Each connection
 * becomes the child's, down as if its helper had died: its first call starts a helper of
 * its own (rados_reconnect), which takes again, as the child's, the shared locks shared with
 * forks (a pin then holds for the child too, as a local store's file lock does). The
 * others stay the parent's alone. The connection's lock may have been held by a thread
 * that is not here: made anew. */
static void rados_atfork_child(void)
{
	for (struct rados_conn *c = rados_conns.first; c; c = c->next) {
		if (c->fd >= 0)
			close(c->fd);
		c->fd = -1;
		c->owner = getpid();
		c->helper = 0;
		c->helper_died = true;
		c->last_try_ns = 0;
		c->forked = true;
		snprintf(c->down, sizeof(c->down), "forked: the child starts a helper of its own");
		pthread_mutex_init(&c->lock, NULL);
		size_t kept = 0;
		for (size_t i = 0; i < c->nheld; i++) {
			if (c->held[i].forks && !c->held[i].exclusive)
				c->held[kept++] = c->held[i];
			else
				rados_held_free(&c->held[i]);
		}
		c->nheld = kept;
	}
	pthread_mutex_unlock(&rados_conns.lock);
}

static void rados_atfork_install(void)
{
	pthread_atfork(rados_atfork_prepare, rados_atfork_parent, rados_atfork_child);
}

/* "rados WHERE: [OID: ]cannot VERB: [WHY: ]strerror(err)" as this thread's error; -err. */
static int __attribute__((format(printf, 5, 6)))
rados_fail(const struct rados_conn *c, const char *oid, const char *verb, int err, const char *why_fmt, ...)
{
	char why[RADOS_DETAIL_MAX + 64] = "";
	if (why_fmt) {
		va_list ap;
		va_start(ap, why_fmt);
		vsnprintf(why, sizeof(why), why_fmt, ap);
		va_end(ap);
	}
	/* An object name can be 2 KiB long: shown in part then. */
	int shown = oid ? (int)strnlen(oid, RADOS_OID_SHOWN + 1) : 0;
	const char *cut = shown > RADOS_OID_SHOWN ? "..." : "";
	shown = shown > RADOS_OID_SHOWN ? RADOS_OID_SHOWN : shown;
	return error_set_errno(err, "rados %s: %.*s%s%scannot %s%s%s", c->where, shown, oid ? oid : "", cut,
			       oid ? ": " : "", verb, why[0] ? ": " : "", why);
}

/* "exited with status 3" or "was killed by signal 9 (Killed)" for wait status @st. */
static void rados_describe_status(int st, char *buf, size_t len)
{
	if (WIFEXITED(st))
		snprintf(buf, len, "exited with status %d", WEXITSTATUS(st));
	else if (WIFSIGNALED(st))
		snprintf(buf, len, "was killed by signal %d (%s)", WTERMSIG(st), strsignal(WTERMSIG(st)));
	else
		snprintf(buf, len, "ended (wait status %#x)", (unsigned)st);
}

/*
 * Wait at most @ms for the helper to exit, then kill it, and reap it. Its wait status, or
 * -1 when another reaper took it first (the fork reaper leaves the helper's process group
 * alone; a program embedding the store might not). The helper is gone either way.
 */
static int rados_reap(struct rados_conn *c, unsigned ms)
{
	if (c->helper <= 0)
		return -1;
	uint64_t deadline = clock_monotonic_ns() + (uint64_t)ms * 1000000u;
	long pause_ns = 1000000;
	int st = -1;
	for (;;) {
		pid_t r = waitpid(c->helper, &st, WNOHANG);
		if (r == c->helper || (r < 0 && errno != EINTR))
			break;
		if (clock_monotonic_ns() >= deadline) {
			kill(c->helper, SIGKILL);
			while ((r = waitpid(c->helper, &st, 0)) < 0 && errno == EINTR)
				;
			break;
		}
		struct timespec t = {0, pause_ns};
		nanosleep(&t, NULL);
		if (pause_ns < 20000000)
			pause_ns *= 2;
	}
	c->helper = 0;
	return st;
}

/* Take the connection down: the socket closed, the helper killed and reaped, @why kept for
 * the calls that follow. */
static void rados_stop(struct rados_conn *c, const char *why)
{
	if (c->fd >= 0)
		close(c->fd);
	c->fd = -1;
	if (c->helper > 0) {
		kill(c->helper, SIGKILL);
		rados_reap(c, 0);
	}
	snprintf(c->down, sizeof(c->down), "%s", why);
	c->helper_died = false;
}

/* The helper said something malformed: stop it; -EPROTO with a message naming @what. */
static int __attribute__((format(printf, 4, 5)))
rados_malformed(struct rados_conn *c, const char *oid, const char *verb, const char *what_fmt, ...)
{
	char what[160];
	va_list ap;
	va_start(ap, what_fmt);
	vsnprintf(what, sizeof(what), what_fmt, ap);
	va_end(ap);
	char why[256];
	snprintf(why, sizeof(why), "the helper (pid %d) answered %s; stopped it", (int)c->helper, what);
	rados_stop(c, why);
	return rados_fail(c, oid, verb, EPROTO, "%s", why);
}

/* A transfer failed with @r (rados_frame_send/recv): stop the helper, say why. */
static int rados_lost(struct rados_conn *c, const char *oid, const char *verb, int r)
{
	char why[256], how[96];
	int err = EPIPE;
	pid_t pid = c->helper;
	switch (r) {
	case -ETIMEDOUT:
		err = ETIMEDOUT;
		snprintf(why, sizeof(why), "no answer from the helper (pid %d) within %llu ms; stopped it", (int)pid,
			 c->call_ms);
		break;
	case -EMSGSIZE:
		return rados_malformed(c, oid, verb, "a frame length outside 4..%u bytes", RADOS_FRAME_MAX);
	case -EPROTO:
		return rados_malformed(c, oid, verb, "a frame cut short by the end of its stream");
	case -ENOMEM:
		err = ENOMEM;
		snprintf(why, sizeof(why), "no memory for the helper's answer");
		break;
	case RADOS_FRAME_EOF:
	case -EPIPE:
	case -ECONNRESET:
		/* It closed its end: it is exiting, or has. */
		if (c->fd >= 0)
			close(c->fd);
		c->fd = -1;
		int st = rados_reap(c, 1000);
		if (st == -1)
			snprintf(how, sizeof(how), "ended");
		else
			rados_describe_status(st, how, sizeof(how));
		snprintf(why, sizeof(why), "the helper (pid %d) %s", (int)pid, how);
		rados_stop(c, why);
		c->helper_died = true;
		return rados_fail(c, oid, verb, err, "%s", why);
	default:
		err = -r;
		snprintf(why, sizeof(why), "cannot talk to the helper (pid %d): %s", (int)pid, strerror(-r));
		break;
	}
	rados_stop(c, why);
	return rados_fail(c, oid, verb, err, "%s", why);
}

/* Control characters of the helper's words become '?': they end up on a terminal. */
static void rados_printable(char *s)
{
	for (; *s; s++)
		if ((unsigned char)*s < 0x20 || *s == 0x7f)
			*s = '?';
}

/*
 * Receive the reply to @op by @deadline_ns into c->in and check its header. 0: the reply's
 * fields follow in c->in; -errno from RADOS with the message (the connection stays up);
 * anything wrong with the reply stops the helper (-EPROTO, -ETIMEDOUT, -EPIPE).
 */
static int rados_receive(struct rados_conn *c, const char *oid, const char *verb, uint32_t op, uint64_t deadline_ns)
{
	int r = rados_frame_recv(c->fd, &c->in, deadline_ns);
	if (r)
		return rados_lost(c, oid, verb, r);
	uint32_t got_op, status;
	if (!rados_frame_get_u32(&c->in, &got_op) || !rados_frame_get_u32(&c->in, &status))
		return rados_malformed(c, oid, verb, "a reply shorter than its header");
	if (got_op != op)
		return rados_malformed(c, oid, verb, "a reply to request %u instead of %u", got_op, op);
	int32_t st = (int32_t)status;
	if (st == 0)
		return 0;
	if (st > 0 || st < -4095)
		return rados_malformed(c, oid, verb, "status %d, not 0 or -errno", st);
	char detail[RADOS_DETAIL_MAX + 1];
	if (!rados_frame_get_str(&c->in, detail, sizeof(detail)) || !rados_frame_end(&c->in))
		return rados_malformed(c, oid, verb, "an error reply with a malformed detail");
	rados_printable(detail);
	return rados_fail(c, oid, verb, -st, detail[0] ? "%s" : NULL, detail);
}

/* Send the request built in c->out and receive its reply (rados_receive); the deadline is
 * the connection's timeout plus @extra_ms (a lock's wait). */
static int rados_exchange(struct rados_conn *c, const char *oid, const char *verb, unsigned extra_ms)
{
	uint32_t op;
	if (rados_frame_finish(&c->out) != 0)
		return rados_fail(c, oid, verb, ENOMEM, "no memory for the request");
	memcpy(&op, c->out.buf + RADOS_FRAME_HEADER, sizeof(op));
	c->call_ms = (unsigned long long)c->timeout_ms + extra_ms;
	uint64_t deadline = clock_monotonic_ns() + c->call_ms * 1000000u;
	int r = rados_frame_send(c->fd, &c->out, deadline);
	/* A helper that has closed its end may have said why first: read that. */
	if (r && r != -EPIPE && r != -ECONNRESET)
		return rados_lost(c, oid, verb, r);
	return rados_receive(c, oid, verb, op, deadline);
}

/* A reply with no fields after its header, or ones read all: exactly the frame. */
static int rados_expect_end(struct rados_conn *c, const char *oid, const char *verb)
{
	if (!rados_frame_end(&c->in))
		return rados_malformed(c, oid, verb, "a reply of the wrong size");
	return 0;
}

/* @s as the @what of a request: -EINVAL when NULL (or empty unless @may_be_empty),
 * -ENAMETOOLONG over RADOS_NAME_MAX; with a message. */
static int rados_check_name(const struct rados_conn *c, const char *oid, const char *verb, const char *what,
			    const char *s, bool may_be_empty)
{
	if (!s || (!may_be_empty && !*s))
		return rados_fail(c, oid, verb, EINVAL, "no %s given", what);
	if (strlen(s) > RADOS_NAME_MAX)
		return rados_fail(c, oid, verb, ENAMETOOLONG, "%s of %zu bytes (at most %u)", what, strlen(s),
				  RADOS_NAME_MAX);
	return 0;
}

/* Start request @op in c->out, about @oid when not NULL (its first field). */
static void rados_request(struct rados_conn *c, uint32_t op, const char *oid)
{
	rados_frame_begin(&c->out, op);
	if (oid)
		rados_frame_put_str(&c->out, oid);
}

static int rados_reconnect(struct rados_conn *c, const char *verb);

/* The index of lock @oid/@cookie among those @c holds, c->nheld when not held. Under c->lock. */
static size_t rados_held_find(const struct rados_conn *c, const char *oid, const char *cookie)
{
	size_t i = 0;
	while (i < c->nheld && (strcmp(c->held[i].oid, oid) != 0 || strcmp(c->held[i].cookie, cookie) != 0))
		i++;
	return i;
}

/* Forget held lock @i. Under c->lock. */
static void rados_held_drop(struct rados_conn *c, size_t i)
{
	rados_held_free(&c->held[i]);
	c->held[i] = c->held[--c->nheld];
}

/* Remember a lock taken, for a new helper to take again (a lock taken again is kept once).
 * Under c->lock. Out of memory, it is not remembered: the lock is held all the same (the
 * call that took it succeeded), only a helper's death would lose it. */
static void rados_held_add(struct rados_conn *c, const char *oid, bool exclusive, const char *cookie,
			   const char *description)
{
	if (rados_held_find(c, oid, cookie) < c->nheld)
		return;
	if (c->nheld == c->held_cap) {
		size_t cap = c->held_cap ? 2 * c->held_cap : 8;
		struct rados_held *h = realloc(c->held, cap * sizeof(*h));
		if (!h)
			return;
		c->held = h;
		c->held_cap = cap;
	}
	struct rados_held *h = &c->held[c->nheld];
	*h = (struct rados_held){.oid = strdup(oid), .cookie = strdup(cookie), .description = strdup(description),
				 .exclusive = exclusive};
	if (!h->oid || !h->cookie || !h->description)
		rados_held_free(h);
	else
		c->nheld++;
}

/* Begin a call: check @oid (when not NULL), that this process owns @c and that it is up
 * (a connection down gets a new helper: rados_reconnect); then hold its lock
 * (rados_call_end releases it) and start request @op about @oid. 0 or -errno with a
 * message. */
static int rados_call_begin(struct rados_conn *c, uint32_t op, const char *oid, const char *verb)
{
	if (oid) {
		int r = rados_check_name(c, oid[0] ? oid : NULL, verb, "object name", oid, false);
		if (r)
			return r;
	}
	if (c->owner != getpid())
		return rados_fail(c, oid, verb, EBADF, "the connection belongs to process %d (a fork child opens its own)",
				  (int)c->owner);
	pthread_mutex_lock(&c->lock);
	if (c->fd < 0) {
		int r = c->helper_died ? rados_reconnect(c, verb)
				       : rados_fail(c, oid, verb, EPIPE, "the connection is down: %s", c->down);
		if (r) {
			pthread_mutex_unlock(&c->lock);
			return r;
		}
	}
	rados_request(c, op, oid);
	return 0;
}

/* Whether a call failed (@r) because the helper ended under it: a read may be asked again
 * of a new one. A helper stopped for its answers or its silence is not tried again. */
static bool rados_helper_lost(const struct rados_conn *c, int r)
{
	return r && c->fd < 0 && c->helper_died;
}

static void rados_call_end(struct rados_conn *c)
{
	rados_frame_trim(&c->out, RADOS_KEEP_BUFFER);
	rados_frame_trim(&c->in, RADOS_KEEP_BUFFER);
	pthread_mutex_unlock(&c->lock);
}

/* End a call whose request is built: exchange it, expect a reply without fields. */
static int rados_call_simple(struct rados_conn *c, const char *oid, const char *verb, unsigned extra_ms)
{
	int r = rados_exchange(c, oid, verb, extra_ms);
	if (!r)
		r = rados_expect_end(c, oid, verb);
	rados_call_end(c);
	return r;
}

/* ---- opening ------------------------------------------------------------------------ */

/* The helper's path into @path: $VMM_RADOS, else vmm-rados or rados_server beside this
 * process's executable. 0 or -errno with a message. */
static int rados_helper_path(const struct rados_conn *c, char *path, size_t len)
{
	const char *verb = "start the helper";
	const char *env = getenv("VMM_RADOS");
	if (env && *env) {
		if (strlen(env) >= len)
			return rados_fail(c, NULL, verb, ENAMETOOLONG, "VMM_RADOS is %zu bytes long", strlen(env));
		strcpy(path, env);
		return 0;
	}
	char exe[PATH_MAX];
	ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
	if (n < 0)
		return rados_fail(c, NULL, verb, errno, "cannot read /proc/self/exe to find this program's folder");
	exe[n] = '\0';
	char *slash = strrchr(exe, '/');
	if (slash)
		*slash = '\0';
	static const char *const names[] = {"vmm-rados", "rados_server"};
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		if ((size_t)snprintf(path, len, "%s/%s", exe, names[i]) >= len)
			return rados_fail(c, NULL, verb, ENAMETOOLONG, "this program's folder has a %zu-byte path",
					  strlen(exe));
		if (access(path, X_OK) == 0)
			return 0;
	}
	return rados_fail(c, NULL, verb, ENOENT, "neither %s/vmm-rados nor %s/rados_server is there (VMM_RADOS names another)",
			  exe, exe);
}

/* Start the helper at @path on a new socketpair: its fd 3 the other end, stdin and stdout
 * /dev/null, stderr ours, signals at their defaults, in a process group of its own (a ^C
 * at the terminal is for vmm, which then closes the socket; the fork reaper leaves it to
 * rados_reap). 0 or -errno with a message. */
static int rados_spawn(struct rados_conn *c, const char *path)
{
	const char *verb = "start the helper";
	int sv[2];
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0)
		return rados_fail(c, NULL, verb, errno, "socketpair");
	if (sv[1] == RADOS_HELPER_FD) {
		/* dup2 onto itself would leave close-on-exec set. */
		int moved = fcntl(sv[1], F_DUPFD_CLOEXEC, RADOS_HELPER_FD + 1);
		int err = errno;
		close(sv[1]);
		if (moved < 0) {
			close(sv[0]);
			return rados_fail(c, NULL, verb, err, "fcntl");
		}
		sv[1] = moved;
	}
	posix_spawn_file_actions_t fa;
	posix_spawnattr_t attr;
	sigset_t none, defaults;
	sigemptyset(&none);
	sigemptyset(&defaults);
	const int reset[] = {SIGPIPE, SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGCHLD, SIGUSR1, SIGUSR2, SIGALRM};
	for (size_t i = 0; i < sizeof(reset) / sizeof(reset[0]); i++)
		sigaddset(&defaults, reset[i]);
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_adddup2(&fa, sv[1], RADOS_HELPER_FD);
	posix_spawn_file_actions_addopen(&fa, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
	posix_spawn_file_actions_addopen(&fa, STDOUT_FILENO, "/dev/null", O_WRONLY, 0);
	posix_spawnattr_init(&attr);
	posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
	posix_spawnattr_setpgroup(&attr, 0);
	posix_spawnattr_setsigmask(&attr, &none);
	posix_spawnattr_setsigdefault(&attr, &defaults);
	char *argv[] = {(char *)path, NULL};
	pid_t pid;
	int r = posix_spawn(&pid, path, &fa, &attr, argv, environ);
	posix_spawn_file_actions_destroy(&fa);
	posix_spawnattr_destroy(&attr);
	close(sv[1]);
	if (r != 0) {
		close(sv[0]);
		return rados_fail(c, NULL, verb, r, "%s", path);
	}
	c->fd = sv[0];
	c->helper = pid;
	return 0;
}

/* Open the pool through the helper just started (OPEN): c->client set. Under c->lock.
 * 0 or -errno with a message (the helper stopped). */
static int rados_hello(struct rados_conn *c, const char *verb)
{
	rados_frame_begin(&c->out, RADOS_OP_OPEN);
	rados_frame_put_str(&c->out, c->pool);
	rados_frame_put_str(&c->out, c->nspace);
	rados_frame_put_str(&c->out, c->conf ? c->conf : "");
	rados_frame_put_str(&c->out, c->client_id ? c->client_id : "");
	int r = rados_exchange(c, NULL, verb, 0);
	if (!r && (!rados_frame_get_str(&c->in, c->client, sizeof(c->client)) || !c->client[0]))
		r = rados_malformed(c, NULL, verb, "OPEN without a client name");
	if (!r)
		r = rados_expect_end(c, NULL, verb);
	rados_printable(c->client);
	return r;
}

/* A copy of @s into *@out (NULL stays NULL): false when out of memory. */
static bool rados_keep(const char *s, char **out)
{
	*out = s ? strdup(s) : NULL;
	return !s || *out;
}

int rados_conn_open(const char *pool, const char *nspace, const char *conf, const char *client_id,
		    struct rados_conn **out)
{
	*out = NULL;
	nspace = nspace ? nspace : "";
	struct rados_conn *c = calloc(1, sizeof(*c));
	size_t where_len = (pool ? strlen(pool) : 0) + strlen(nspace) + 8;
	char *where = malloc(where_len);
	if (!c || !where) {
		free(c);
		free(where);
		return error_set(ENOMEM, "rados %s: cannot connect: no memory", pool ? pool : "");
	}
	snprintf(where, where_len, "%s%s%s", pool ? pool : "", nspace[0] ? "/" : "", nspace);
	c->where = where;
	if (!rados_keep(pool ? pool : "", &c->pool) || !rados_keep(nspace, &c->nspace) || !rados_keep(conf, &c->conf) ||
	    !rados_keep(client_id, &c->client_id)) {
		rados_conn_close(c);
		return error_set(ENOMEM, "rados %s: cannot connect: no memory", where);
	}
	c->owner = getpid();
	c->fd = -1;
	c->timeout_ms = RADOS_TIMEOUT_MS;
	c->lock_duration_ms = RADOS_LOCK_DURATION_MS;
	pthread_mutex_init(&c->lock, NULL);

	const char *verb = "connect";
	char path[PATH_MAX];
	int r = rados_check_name(c, NULL, verb, "pool", pool, false);
	if (!r)
		r = rados_check_name(c, NULL, verb, "namespace", nspace, true);
	if (!r && conf)
		r = rados_check_name(c, NULL, verb, "configuration file", conf, false);
	if (!r && client_id)
		r = rados_check_name(c, NULL, verb, "client id", client_id, false);
	if (!r)
		r = rados_helper_path(c, path, sizeof(path));
	pthread_once(&rados_conns.atfork_once, rados_atfork_install);
	/* Held from before the helper exists: a fork meanwhile must not inherit its socket
	 * unlisted. */
	pthread_mutex_lock(&rados_conns.lock);
	if (!r)
		r = rados_spawn(c, path);
	if (!r) {
		c->next = rados_conns.first;
		rados_conns.first = c;
	}
	pthread_mutex_unlock(&rados_conns.lock);
	if (r) {
		rados_conn_close(c);
		return r;
	}

	pthread_mutex_lock(&c->lock);
	r = rados_hello(c, verb);
	rados_call_end(c);
	if (r) {
		rados_conn_close(c);
		return r;
	}
	*out = c;
	return 0;
}

/* Take again, through the new helper, each lock @c held: shared ones as they were; an
 * exclusive one only if the dead helper's has expired meanwhile, else it is lost. Under
 * c->lock. */
static void rados_retake_locks(struct rados_conn *c)
{
	for (size_t i = 0; i < c->nheld && c->fd >= 0; i++) {
		struct rados_held *h = &c->held[i];
		if (h->lost)
			continue;
		rados_request(c, RADOS_OP_LOCK, h->oid);
		rados_frame_put_u32(&c->out, h->exclusive);
		rados_frame_put_str(&c->out, h->cookie);
		rados_frame_put_str(&c->out, h->description);
		rados_frame_put_u32(&c->out, 0);
		rados_frame_put_u32(&c->out, c->lock_duration_ms);
		int r = rados_exchange(c, h->oid, "lock again", 0);
		if (!r)
			r = rados_expect_end(c, h->oid, "lock again");
		h->lost = r != 0;
	}
}

/*
 * A connection down because its helper ended (crashed, killed, out of memory): start a new
 * helper, open the pool again and take its locks again (rados_retake_locks).
 * Tried at most once per RADOS_RECONNECT_GAP_MS, so that a cluster that is away costs a
 * caller its deadline once, not every call. Under c->lock. 0 or -errno with a message.
 */
static int rados_reconnect(struct rados_conn *c, const char *verb)
{
	uint64_t now = clock_monotonic_ns();
	if (c->last_try_ns && now - c->last_try_ns < RADOS_RECONNECT_GAP_MS * 1000000ull)
		return rados_fail(c, NULL, verb, EPIPE, "the connection is down: %s", c->down);
	c->last_try_ns = now;
	char down[sizeof(c->down)], path[PATH_MAX];
	snprintf(down, sizeof(down), "%s", c->down);
	int r = rados_helper_path(c, path, sizeof(path));
	if (!r) {
		pthread_mutex_lock(&rados_conns.lock);
		r = rados_spawn(c, path);
		pthread_mutex_unlock(&rados_conns.lock);
	}
	if (!r)
		r = rados_hello(c, "connect again");
	if (r) {
		/* The new helper's failure without its "rados WHERE: " and its errno's words,
		 * which the message of this call ends with. */
		char failed[200];
		const char *m = error_message();
		size_t skip = strlen("rados ") + strlen(c->where) + 2, tail = strlen(strerror(-r)) + 2;
		if (strncmp(m, "rados ", 6) == 0 && strlen(m) > skip + tail)
			snprintf(failed, sizeof(failed), "%.*s", (int)(strlen(m) - skip - tail), m + skip);
		else
			snprintf(failed, sizeof(failed), "%s", m);
		char why[sizeof(c->down)];
		snprintf(why, sizeof(why), "%.100s; a new helper failed too: %.120s", down, failed);
		rados_stop(c, why);
		c->helper_died = true; /* tried again after the gap */
		return rados_fail(c, NULL, verb, -r, "the connection is down: %s", why);
	}
	c->reconnects++;
	c->forked = false; /* a fork child's copy has its own helper now */
	rados_retake_locks(c);
	return 0;
}

static void rados_held_free(struct rados_held *h)
{
	free(h->oid);
	free(h->cookie);
	free(h->description);
}

void rados_conn_share_with_forks(struct rados_conn *c, const char *oid, const char *cookie)
{
	pthread_mutex_lock(&c->lock);
	size_t i = rados_held_find(c, oid, cookie);
	if (i < c->nheld && !c->held[i].exclusive)
		c->held[i].forks = true;
	pthread_mutex_unlock(&c->lock);
}

int rados_conns_take_over(void)
{
	int r = 0;
	pthread_mutex_lock(&rados_conns.lock);
	for (struct rados_conn *c = rados_conns.first; c && !r; c = c->next) {
		pthread_mutex_lock(&c->lock);
		if (c->forked && c->nheld) {
			pthread_mutex_unlock(&rados_conns.lock); /* rados_spawn takes it */
			r = rados_reconnect(c, "take its parent's pins");
			for (size_t i = 0; !r && i < c->nheld; i++)
				if (c->held[i].lost)
					r = rados_fail(c, c->held[i].oid, "take its parent's pins", ENOLCK,
						       "the lock could not be taken again");
			pthread_mutex_unlock(&c->lock);
			pthread_mutex_lock(&rados_conns.lock);
			continue;
		}
		pthread_mutex_unlock(&c->lock);
	}
	pthread_mutex_unlock(&rados_conns.lock);
	return r;
}

void rados_conn_close(struct rados_conn *c)
{
	if (!c)
		return;
	pthread_mutex_lock(&rados_conns.lock);
	for (struct rados_conn **p = &rados_conns.first; *p; p = &(*p)->next) {
		if (*p == c) {
			*p = c->next;
			break;
		}
	}
	pthread_mutex_unlock(&rados_conns.lock);
	/* In a fork child the helper is the parent's, and the lock may have been held by a
	 * thread that does not exist here. */
	if (c->owner == getpid()) {
		if (c->fd >= 0)
			close(c->fd);
		c->fd = -1;
		rados_reap(c, RADOS_CLOSE_WAIT_MS);
		pthread_mutex_destroy(&c->lock);
	}
	rados_frame_free(&c->out);
	rados_frame_free(&c->in);
	for (size_t i = 0; i < c->nheld; i++)
		rados_held_free(&c->held[i]);
	free(c->held);
	free(c->pool);
	free(c->nspace);
	free(c->conf);
	free(c->client_id);
	free(c->where);
	free(c);
}

void rados_conn_set_timeout(struct rados_conn *c, unsigned ms)
{
	pthread_mutex_lock(&c->lock);
	c->timeout_ms = ms ? ms : RADOS_TIMEOUT_MS;
	pthread_mutex_unlock(&c->lock);
}

void rados_conn_set_lock_duration(struct rados_conn *c, unsigned ms)
{
	pthread_mutex_lock(&c->lock);
	c->lock_duration_ms = ms == 0 ? RADOS_LOCK_DURATION_MS : ms < 1000 ? 1000 : ms;
	pthread_mutex_unlock(&c->lock);
}

const char *rados_conn_client(const struct rados_conn *c)
{
	return c->client;
}

pid_t rados_conn_helper_pid(const struct rados_conn *c)
{
	return c->helper;
}

/* ---- objects -------------------------------------------------------------------------- */

static int rados_read_once(struct rados_conn *c, const char *oid, uint64_t offset, void *buf, size_t len, size_t *got)
{
	const char *verb = "read";
	*got = 0;
	if (len > UINT64_MAX - offset)
		return rados_fail(c, oid, verb, EINVAL, "%zu bytes at %llu run past the largest offset", len,
				  (unsigned long long)offset);
	int r = rados_call_begin(c, RADOS_OP_READ, oid, verb);
	if (r)
		return r;
	size_t done = 0;
	do {
		uint32_t ask = len - done > RADOS_DATA_MAX ? RADOS_DATA_MAX : (uint32_t)(len - done);
		if (done)
			rados_request(c, RADOS_OP_READ, oid);
		rados_frame_put_u64(&c->out, offset + done);
		rados_frame_put_u32(&c->out, ask);
		r = rados_exchange(c, oid, verb, 0);
		if (r)
			break;
		const uint8_t *p;
		size_t n;
		if (!rados_frame_get_bytes(&c->in, ask, &p, &n) || !rados_frame_end(&c->in)) {
			r = rados_malformed(c, oid, verb, "a read reply that is malformed or longer than asked");
			break;
		}
		memcpy((uint8_t *)buf + done, p, n);
		done += n;
		if (n < ask)
			break;
	} while (done < len);
	rados_call_end(c);
	if (!r)
		*got = done;
	return r;
}

int rados_conn_read(struct rados_conn *c, const char *oid, uint64_t offset, void *buf, size_t len, size_t *got)
{
	int r = rados_read_once(c, oid, offset, buf, len, got);
	if (rados_helper_lost(c, r))
		r = rados_read_once(c, oid, offset, buf, len, got); /* reads are asked again of a new helper */
	return r;
}

static int rados_read_extents_once(struct rados_conn *c, const char *oid, const struct rados_extent *ext, size_t n,
				   void *buf)
{
	const char *verb = "read extents";
	if (n > RADOS_EXTENTS_MAX)
		return rados_fail(c, oid, verb, EINVAL, "%zu ranges (at most %u)", n, RADOS_EXTENTS_MAX);
	uint64_t total = 0;
	for (size_t i = 0; i < n; i++) {
		if (ext[i].off > UINT64_MAX - ext[i].len)
			return rados_fail(c, oid, verb, EINVAL, "range %zu runs past the largest offset", i);
		total += ext[i].len;
	}
	if (total > RADOS_DATA_MAX)
		return rados_fail(c, oid, verb, EINVAL, "%llu bytes in all (at most %u)", (unsigned long long)total,
				  RADOS_DATA_MAX);
	int r = rados_call_begin(c, RADOS_OP_READ_EXTENTS, oid, verb);
	if (r)
		return r;
	rados_frame_put_u32(&c->out, (uint32_t)n);
	for (size_t i = 0; i < n; i++) {
		rados_frame_put_u64(&c->out, ext[i].off);
		rados_frame_put_u32(&c->out, ext[i].len);
	}
	r = rados_exchange(c, oid, verb, 0);
	const uint8_t *p;
	size_t got;
	if (!r && (!rados_frame_get_bytes(&c->in, total, &p, &got) || got != total || !rados_frame_end(&c->in)))
		r = rados_malformed(c, oid, verb, "a reply that is malformed or not the %llu bytes asked",
				    (unsigned long long)total);
	if (!r && total)
		memcpy(buf, p, total);
	rados_call_end(c);
	return r;
}

int rados_conn_read_extents(struct rados_conn *c, const char *oid, const struct rados_extent *ext, size_t n,
			    void *buf)
{
	int r = rados_read_extents_once(c, oid, ext, n, buf);
	if (rados_helper_lost(c, r))
		r = rados_read_extents_once(c, oid, ext, n, buf);
	return r;
}

/* A write of @len bytes of @data as request @op (after its oid, @flag when not -1). */
static int rados_write(struct rados_conn *c, uint32_t op, const char *verb, const char *oid, int64_t flag,
		       const void *data, size_t len)
{
	if (len > RADOS_DATA_MAX)
		return rados_fail(c, oid, verb, EFBIG, "%zu bytes (at most %u in one write)", len, RADOS_DATA_MAX);
	int r = rados_call_begin(c, op, oid, verb);
	if (r)
		return r;
	if (flag >= 0)
		rados_frame_put_u32(&c->out, (uint32_t)flag);
	rados_frame_put_bytes(&c->out, data, len);
	return rados_call_simple(c, oid, verb, 0);
}

int rados_conn_write_full(struct rados_conn *c, const char *oid, const void *data, size_t len, bool exclusive)
{
	return rados_write(c, RADOS_OP_WRITE_FULL, exclusive ? "create" : "write", oid, exclusive, data, len);
}

int rados_conn_append(struct rados_conn *c, const char *oid, const void *data, size_t len)
{
	return rados_write(c, RADOS_OP_APPEND, "append to", oid, -1, data, len);
}

static int rados_stat_once(struct rados_conn *c, const char *oid, uint64_t *size, uint64_t *mtime_ns)
{
	const char *verb = "stat";
	int r = rados_call_begin(c, RADOS_OP_STAT, oid, verb);
	if (r)
		return r;
	r = rados_exchange(c, oid, verb, 0);
	if (!r && (!rados_frame_get_u64(&c->in, size) || !rados_frame_get_u64(&c->in, mtime_ns)))
		r = rados_malformed(c, oid, verb, "a stat reply without size and time");
	if (!r)
		r = rados_expect_end(c, oid, verb);
	rados_call_end(c);
	return r;
}

int rados_conn_stat(struct rados_conn *c, const char *oid, uint64_t *size, uint64_t *mtime_ns)
{
	int r = rados_stat_once(c, oid, size, mtime_ns);
	if (rados_helper_lost(c, r))
		r = rados_stat_once(c, oid, size, mtime_ns);
	return r;
}

int rados_conn_remove(struct rados_conn *c, const char *oid)
{
	const char *verb = "remove";
	int r = rados_call_begin(c, RADOS_OP_REMOVE, oid, verb);
	if (r)
		return r;
	return rados_call_simple(c, oid, verb, 0);
}

int rados_conn_list(struct rados_conn *c, const char *prefix, void (*fn)(void *arg, const char *oid), void *arg)
{
	const char *verb = "list objects";
	prefix = prefix ? prefix : "";
	int r = rados_check_name(c, NULL, verb, "prefix", prefix, true);
	if (!r)
		r = rados_call_begin(c, RADOS_OP_LIST, NULL, verb);
	if (r)
		return r;
	rados_frame_put_str(&c->out, prefix);
	r = rados_exchange(c, NULL, verb, 0);
	while (!r) {
		uint32_t more, n;
		if (!rados_frame_get_u32(&c->in, &more) || !rados_frame_get_u32(&c->in, &n) || more > 1) {
			r = rados_malformed(c, NULL, verb, "a list reply with a malformed header");
			break;
		}
		for (uint32_t i = 0; i < n && !r; i++) {
			if (!rados_frame_get_str(&c->in, c->name, sizeof(c->name)) || !c->name[0])
				r = rados_malformed(c, NULL, verb, "a list reply with a malformed name");
			else
				fn(arg, c->name);
		}
		if (!r)
			r = rados_expect_end(c, NULL, verb);
		if (r || !more)
			break;
		/* Each frame of a long listing has its own deadline. */
		c->call_ms = c->timeout_ms;
		uint64_t deadline = clock_monotonic_ns() + c->call_ms * 1000000u;
		r = rados_receive(c, NULL, verb, RADOS_OP_LIST, deadline);
	}
	rados_call_end(c);
	return r;
}

/* ---- locks ------------------------------------------------------------------------------ */

int rados_conn_lock(struct rados_conn *c, const char *oid, bool exclusive, const char *cookie,
		    const char *description, unsigned wait_ms)
{
	const char *verb = exclusive ? "lock exclusively" : "lock shared";
	int r = rados_check_name(c, oid, verb, "cookie", cookie, false);
	if (!r)
		r = rados_check_name(c, oid, verb, "description", description ? description : "", true);
	if (!r)
		r = rados_call_begin(c, RADOS_OP_LOCK, oid, verb);
	if (r)
		return r;
	rados_frame_put_u32(&c->out, exclusive);
	rados_frame_put_str(&c->out, cookie);
	rados_frame_put_str(&c->out, description ? description : "");
	rados_frame_put_u32(&c->out, wait_ms);
	rados_frame_put_u32(&c->out, c->lock_duration_ms);
	r = rados_exchange(c, oid, verb, wait_ms);
	if (!r)
		r = rados_expect_end(c, oid, verb);
	if (!r)
		rados_held_add(c, oid, exclusive, cookie, description ? description : "");
	rados_call_end(c);
	return r;
}

/* A fork child's copy given no helper yet holds its locks only on paper (the parent's
 * helper holds them): letting one go forgets it, with no helper started for that. 1 when
 * so, -ENOENT (with a message) when it holds no such lock, 0 when the call must go to a
 * helper. */
static int rados_unlock_forked(struct rados_conn *c, const char *oid, const char *cookie)
{
	pthread_mutex_lock(&c->lock);
	size_t i = rados_held_find(c, oid, cookie);
	int r = !c->forked ? 0
		: i < c->nheld ? 1
			       : rados_fail(c, oid, "unlock", ENOENT, "this process does not hold it");
	if (r == 1)
		rados_held_drop(c, i);
	pthread_mutex_unlock(&c->lock);
	return r;
}

int rados_conn_unlock(struct rados_conn *c, const char *oid, const char *cookie)
{
	const char *verb = "unlock";
	int r = rados_check_name(c, oid, verb, "cookie", cookie, false);
	if (!r && (r = rados_unlock_forked(c, oid, cookie)) != 0)
		return r < 0 ? r : 0;
	if (!r)
		r = rados_call_begin(c, RADOS_OP_UNLOCK, oid, verb);
	if (r)
		return r;
	size_t i = rados_held_find(c, oid, cookie);
	if (i < c->nheld && c->held[i].lost) {
		r = rados_fail(c, oid, verb, ENOLCK, "the lock went with the helper that held it, and %s could not take it again",
			       c->client);
	} else {
		rados_frame_put_str(&c->out, cookie);
		r = rados_exchange(c, oid, verb, 0);
		if (!r)
			r = rados_expect_end(c, oid, verb);
	}
	/* Unlocked, or known lost: forgotten. A helper lost meanwhile: taken again with the rest. */
	if (i < c->nheld && !rados_helper_lost(c, r))
		rados_held_drop(c, i);
	rados_call_end(c);
	return r;
}

int rados_conn_lockers(struct rados_conn *c, const char *oid, void (*fn)(void *arg, const struct rados_locker *l),
		       void *arg)
{
	const char *verb = "list lockers";
	int r = rados_call_begin(c, RADOS_OP_LOCKERS, oid, verb);
	if (r)
		return r;
	r = rados_exchange(c, oid, verb, 0);
	uint32_t n = 0;
	if (!r && !rados_frame_get_u32(&c->in, &n))
		r = rados_malformed(c, oid, verb, "a lockers reply without a count");
	for (uint32_t i = 0; i < n && !r; i++) {
		uint32_t exclusive;
		if (!rados_frame_get_str(&c->in, c->name, sizeof(c->name)) ||
		    !rados_frame_get_str(&c->in, c->cookie, sizeof(c->cookie)) ||
		    !rados_frame_get_str(&c->in, c->description, sizeof(c->description)) ||
		    !rados_frame_get_u32(&c->in, &exclusive) || exclusive > 1) {
			r = rados_malformed(c, oid, verb, "a malformed locker");
			break;
		}
		rados_printable(c->name);
		rados_printable(c->cookie);
		rados_printable(c->description);
		struct rados_locker l = {c->name, c->cookie, c->description, exclusive == 1};
		fn(arg, &l);
	}
	if (!r)
		r = rados_expect_end(c, oid, verb);
	rados_call_end(c);
	return r;
}

/*
 * The monitor's server: the listening socket, the one thread that owns every client,
 * their input and output, the events it broadcasts, and the monitor's life cycle.
 */
#include "vmm/monitor/monitor_impl.h"

#include <assert.h>
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "vmm/error.h"

/* The monitor whose server thread this is: events emitted from a handler go out at once. */
static _Thread_local struct monitor *monitor_self;

/* ---- client output -------------------------------------------------------------------- */

void client_append(struct monitor_client *c, const char *line, size_t len)
{
	if (c->dead)
		return;
	size_t queued = c->out_len - c->out_off;
	if (queued + len > MONITOR_OUTPUT_MAX) {
		/* It does not read: holding more would let one client eat the VMM's memory. */
		c->dead = c->dropped = true;
		return;
	}
	if (c->out_off && c->out_len + len > c->out_cap) {
		memmove(c->out, c->out + c->out_off, queued);
		c->out_off = 0;
		c->out_len = queued;
	}
	if (c->out_len + len + 1 > c->out_cap) {
		size_t cap = c->out_cap ? c->out_cap : 4096;
		while (cap < c->out_len + len + 1)
			cap *= 2;
		char *out = realloc(c->out, cap);
		if (!out) {
			c->dead = c->dropped = true;
			return;
		}
		c->out = out;
		c->out_cap = cap;
	}
	memcpy(c->out + c->out_len, line, len);
	c->out_len += len;
	c->out[c->out_len] = '\0';
}

/* Send what the socket takes now; never blocks. */
void client_flush(struct monitor_client *c)
{
	while (c->fd >= 0 && !c->dead && c->out_off < c->out_len) {
		ssize_t n = send(c->fd, c->out + c->out_off, c->out_len - c->out_off, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno != EAGAIN && errno != EWOULDBLOCK)
				c->dead = c->dropped = true; /* EPIPE, ECONNRESET: gone mid-reply */
			return;
		}
		c->out_off += (size_t)n;
	}
	if (c->out_off == c->out_len)
		c->out_off = c->out_len = 0;
}

/* ---- clients ------------------------------------------------------------------------------ */

/* Free room at the end of @c's input buffer, moving what is buffered to the front when full. */
size_t client_room(struct monitor_client *c)
{
	if (c->in_start + c->in_len == MONITOR_IN_SIZE && c->in_start) {
		memmove(c->in, c->in + c->in_start, c->in_len);
		c->in_start = 0;
	}
	return MONITOR_IN_SIZE - c->in_start - c->in_len;
}

struct monitor_client *client_new(struct monitor *mon, int fd)
{
	struct monitor_client *c = calloc(1, sizeof(*c));
	if (!c || !(c->in = malloc(MONITOR_IN_SIZE))) {
		free(c);
		return NULL;
	}
	c->fd = fd;
	client_append(c, mon->greeting, mon->greeting_len);
	return c;
}

void client_free(struct monitor_client *c)
{
	if (c->fd >= 0)
		close(c->fd);
	free(c->in);
	free(c->out);
	free(c);
}

/* ---- server thread ---------------------------------------------------------------------- */

void monitor_wake(struct monitor *mon)
{
	uint64_t one = 1;
	/* A full counter already means "wake up": EAGAIN is harmless. */
	if (write(mon->wake_fd, &one, sizeof(one)) < 0 && errno != EAGAIN)
		return;
}

/* Broadcast the events emitted so far to every negotiated client. (t) */
static void monitor_drain_events(struct monitor *mon)
{
	pthread_mutex_lock(&mon->lock);
	struct monitor_event *e = mon->events;
	mon->events = NULL;
	mon->events_tail = &mon->events;
	mon->nevents = 0;
	pthread_mutex_unlock(&mon->lock);
	while (e) {
		struct monitor_event *next = e->next;
		for (unsigned i = 0; i < mon->nclients; i++)
			if (mon->clients[i]->negotiated)
				client_append(mon->clients[i], e->line, e->len);
		atomic_fetch_add(&mon->events_sent, 1);
		free(e);
		e = next;
	}
}

/* Deliver the deferred replies completed so far, then what their clients sent meanwhile. (t) */
static void monitor_drain_done(struct monitor *mon)
{
	pthread_mutex_lock(&mon->lock);
	struct monitor_pending *p = mon->done;
	mon->done = NULL;
	pthread_mutex_unlock(&mon->lock);
	while (p) {
		struct monitor_pending *next = p->next;
		for (unsigned i = 0; i < mon->nclients; i++) {
			struct monitor_client *c = mon->clients[i];
			if (c->waiting != p)
				continue;
			c->waiting = NULL;
			if (p->line)
				client_append(c, p->line, p->len);
			else
				c->dead = c->dropped = true; /* out of memory: it would wait for ever */
			client_process(mon, c);
			break;
		}
		json_decref(p->id);
		free(p->line);
		free(p);
		p = next;
	}
}

/* Send one error line to a peer we will not serve, and close it. */
static void monitor_refuse(struct monitor *mon, int fd, const char *desc)
{
	/* Counted first: once the peer has read its refusal, the statistics show it. */
	atomic_fetch_add(&mon->clients_refused, 1);
	size_t len;
	char *line = monitor_encode(monitor_error_reply("GenericError", desc, NULL), &len);
	if (line && send(fd, line, len, MSG_NOSIGNAL | MSG_DONTWAIT) < 0) {
		/* best effort: the peer is being turned away either way */
	}
	free(line);
	close(fd);
}

static void monitor_accept(struct monitor *mon)
{
	for (;;) {
		int fd = accept4(mon->listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0) {
			if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM)
				mon->accept_paused = true; /* the listen socket stays readable: wait for a close */
			return;
		}
		struct ucred cred;
		socklen_t len = sizeof(cred);
		char desc[160];
		if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0) {
			monitor_refuse(mon, fd, "cannot check the credentials of this connection");
			continue;
		}
		if (cred.uid != geteuid() && cred.uid != 0) {
			snprintf(desc, sizeof(desc), "permission denied: uid %u may not use the monitor of uid %u",
				 (unsigned)cred.uid, (unsigned)geteuid());
			monitor_refuse(mon, fd, desc);
			continue;
		}
		if (mon->nclients == MONITOR_MAX_CLIENTS) {
			snprintf(desc, sizeof(desc), "too many monitor clients (at most %d)", MONITOR_MAX_CLIENTS);
			monitor_refuse(mon, fd, desc);
			continue;
		}
		struct monitor_client *c = client_new(mon, fd);
		if (!c) {
			monitor_refuse(mon, fd, "out of memory");
			continue;
		}
		mon->clients[mon->nclients++] = c;
		atomic_fetch_add(&mon->nclients_now, 1);
		atomic_fetch_add(&mon->clients_accepted, 1);
	}
}

static void client_read(struct monitor *mon, struct monitor_client *c)
{
	size_t room = client_room(c);
	ssize_t n = recv(c->fd, c->in + c->in_start + c->in_len, room, MSG_DONTWAIT);
	if (n < 0) {
		if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
			c->dead = c->dropped = true;
		return;
	}
	if (n == 0)
		c->eof = true;
	c->in_len += (size_t)n;
	client_process(mon, c);
}

/* Close the clients that are dead, or done: input ended, nothing pending or queued. (t) */
static void monitor_reap(struct monitor *mon)
{
	unsigned kept = 0;
	for (unsigned i = 0; i < mon->nclients; i++) {
		struct monitor_client *c = mon->clients[i];
		bool done = c->eof && !c->waiting && c->out_len == c->out_off;
		if (c->dead || done) {
			if (c->dropped)
				atomic_fetch_add(&mon->clients_dropped, 1);
			client_free(c);
			atomic_fetch_sub(&mon->nclients_now, 1);
			mon->accept_paused = false;
		} else {
			mon->clients[kept++] = c;
		}
	}
	mon->nclients = kept;
}

static void *monitor_thread(void *arg)
{
	struct monitor *mon = arg;
	monitor_self = mon;
	struct pollfd fds[2 + MONITOR_MAX_CLIENTS];
	while (!atomic_load(&mon->stop)) {
		fds[0] = (struct pollfd){.fd = mon->wake_fd, .events = POLLIN};
		fds[1] = (struct pollfd){.fd = mon->accept_paused ? -1 : mon->listen_fd, .events = POLLIN};
		for (unsigned i = 0; i < mon->nclients; i++) {
			struct monitor_client *c = mon->clients[i];
			short ev = 0;
			if (!c->waiting && !c->eof)
				ev |= POLLIN;
			if (c->out_len > c->out_off)
				ev |= POLLOUT;
			fds[2 + i] = (struct pollfd){.fd = c->fd, .events = ev};
		}
		unsigned n = mon->nclients;
		if (poll(fds, 2 + n, -1) < 0)
			continue; /* EINTR: signals are blocked here, but be safe */
		if (fds[0].revents & POLLIN) {
			uint64_t v;
			if (read(mon->wake_fd, &v, sizeof(v)) < 0 && errno != EAGAIN)
				break;
			monitor_drain_events(mon);
			monitor_drain_done(mon);
		}
		for (unsigned i = 0; i < n; i++) {
			struct monitor_client *c = mon->clients[i];
			short re = fds[2 + i].revents;
			if (re & POLLIN)
				client_read(mon, c);
			else if (re & (POLLHUP | POLLERR))
				c->dead = c->dropped = true; /* gone for good: its replies have nowhere to go */
			if (re & POLLOUT)
				client_flush(c);
		}
		if (fds[1].revents & POLLIN)
			monitor_accept(mon);
		/* Output queued this round (replies, events, greetings) goes out now if it can. */
		for (unsigned i = 0; i < mon->nclients; i++)
			client_flush(mon->clients[i]);
		monitor_reap(mon);
	}
	/* Last words, e.g. the reply to quit: whatever the sockets take without blocking. */
	monitor_drain_events(mon);
	for (unsigned i = 0; i < mon->nclients; i++)
		client_flush(mon->clients[i]);
	return NULL;
}

/* ---- life cycle --------------------------------------------------------------------------- */

int monitor_create(struct monitor **out, const struct monitor_config *cfg)
{
	struct monitor *mon = calloc(1, sizeof(*mon));
	if (!mon)
		return error_set(ENOMEM, "out of memory for the monitor");
	mon->cfg = *cfg;
	mon->listen_fd = -1;
	mon->events_tail = &mon->events;
	pthread_mutex_init(&mon->lock, NULL);
	mon->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (mon->wake_fd < 0) {
		int err = errno;
		monitor_destroy(mon);
		return error_set_errno(err, "cannot make the monitor's eventfd");
	}
	json_t *greeting = json_pack("{s:{s:o,s:[]}}", "QMP", "version", monitor_version_json(), "capabilities");
	mon->greeting = monitor_encode(greeting, &mon->greeting_len);
	if (!mon->greeting) {
		monitor_destroy(mon);
		return error_set(ENOMEM, "out of memory for the monitor");
	}
	monitor_builtin_add(mon);
	*out = mon;
	return 0;
}


int monitor_socket_owner(const char *path, pid_t *pid)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	int r = connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0 ? 0 : -errno;
	struct ucred cred = {0};
	socklen_t len = sizeof(cred);
	if (r == 0 && getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) == 0)
		*pid = cred.pid;
	close(fd);
	return r;
}

/* Bind and listen on a fresh name beside @path, mode 0600, then link it in as @path. */
static int monitor_bind(struct monitor *mon, const char *path)
{
	static atomic_uint seq;
	char tmp[MONITOR_SUN_PATH_MAX];
	const char *slash = strrchr(path, '/');
	int dirlen = slash ? (int)(slash - path) : 1;
	int n = snprintf(tmp, sizeof(tmp), "%.*s/.vmm-%d-%u.tmp", dirlen, slash ? path : ".", (int)getpid(),
			 atomic_fetch_add(&seq, 1));
	if (n < 0 || (size_t)n >= sizeof(tmp))
		return error_set(ENAMETOOLONG, "monitor socket directory of '%s' is too long for a unix socket", path);
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	memcpy(sa.sun_path, tmp, (size_t)n + 1);
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return error_set_errno(errno, "cannot make the monitor socket");
	unlink(tmp);
	int r;
	/* The name appears at @path only once it is 0600 and listening: no window with
	 * looser permissions, and a concurrent starter loses cleanly at link(). */
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
		r = error_set_errno(errno, "cannot bind the monitor socket in '%.*s'", dirlen, slash ? path : ".");
		goto err_close;
	}
	if (chmod(tmp, 0600) != 0 || listen(fd, 16) != 0) {
		r = error_set_errno(errno, "cannot set up the monitor socket %s", tmp);
		goto err_unlink;
	}
	int linked = link(tmp, path);
	if (linked != 0 && (errno == EPERM || errno == EOPNOTSUPP))
		linked = rename(tmp, path); /* a file system without hard links: no race guard */
	if (linked != 0) {
		if (errno == EEXIST)
			r = error_set(EADDRINUSE, "monitor socket %s was taken by another VM while starting", path);
		else
			r = error_set_errno(errno, "cannot create the monitor socket %s", path);
		goto err_unlink;
	}
	unlink(tmp);
	struct stat st;
	if (lstat(path, &st) == 0) {
		mon->dev = st.st_dev;
		mon->ino = st.st_ino;
	}
	mon->listen_fd = fd;
	return 0;
err_unlink:
	unlink(tmp);
err_close:
	close(fd);
	return r;
}

int monitor_socket_free(const char *path, bool *stale)
{
	*stale = false;
	struct stat st;
	if (lstat(path, &st) == 0) {
		if (!S_ISSOCK(st.st_mode))
			return error_set(EEXIST, "%s exists and is not a socket: not replacing it", path);
		pid_t pid = 0;
		int r = monitor_socket_owner(path, &pid);
		if (r == 0)
			return error_set(EADDRINUSE, "monitor socket %s is in use by a running VM (pid %d)", path, (int)pid);
		if (r != -ECONNREFUSED)
			return error_set_errno(-r, "cannot tell whether monitor socket %s is in use", path);
		*stale = true;
	} else if (errno != ENOENT) {
		return error_set_errno(errno, "cannot look at monitor socket path %s", path);
	}
	return 0;
}

int monitor_listen(struct monitor *mon, const char *path)
{
	if (mon->listening)
		return error_set(EBUSY, "the monitor already listens on %s", mon->path);
	if (!*path || strlen(path) >= sizeof(mon->path))
		return error_set(ENAMETOOLONG, "monitor socket path '%s' is empty or too long (at most %zu bytes)", path,
				 sizeof(mon->path) - 1);
	bool stale;
	int r = monitor_socket_free(path, &stale);
	if (r)
		return r;
	if (stale && unlink(path) != 0 && errno != ENOENT)
		return error_set_errno(errno, "cannot remove the stale monitor socket %s", path);
	r = monitor_bind(mon, path);
	if (r)
		return r;
	snprintf(mon->path, sizeof(mon->path), "%s", path);
	sigset_t all, old;
	sigfillset(&all);
	/* Signals (SIGINT, the vCPU kick) are for the VMM's own threads, never this one. */
	pthread_sigmask(SIG_SETMASK, &all, &old);
	r = pthread_create(&mon->thread, NULL, monitor_thread, mon);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (r) {
		unlink(mon->path);
		mon->path[0] = '\0';
		close(mon->listen_fd);
		mon->listen_fd = -1;
		return error_set_errno(r, "cannot start the monitor thread");
	}
	mon->listening = true;
	return 0;
}

void monitor_destroy(struct monitor *mon)
{
	if (!mon)
		return;
	assert(monitor_self != mon);
	if (mon->listening) {
		atomic_store(&mon->stop, true);
		monitor_wake(mon);
		pthread_join(mon->thread, NULL);
		struct stat st;
		/* Only our own socket: another VM may have replaced a path someone removed. */
		if (lstat(mon->path, &st) == 0 && st.st_dev == mon->dev && st.st_ino == mon->ino)
			unlink(mon->path);
	}
	for (unsigned i = 0; i < mon->nclients; i++)
		client_free(mon->clients[i]);
	if (mon->listen_fd >= 0)
		close(mon->listen_fd);
	if (mon->wake_fd >= 0)
		close(mon->wake_fd);
	for (struct monitor_event *e = mon->events, *next; e; e = next) {
		next = e->next;
		free(e);
	}
	struct monitor_pending *lists[2] = {mon->outstanding, mon->done};
	for (int l = 0; l < 2; l++)
		for (struct monitor_pending *p = lists[l], *next; p; p = next) {
			next = p->next;
			json_decref(p->id);
			free(p->line);
			free(p);
		}
	free(mon->greeting);
	pthread_mutex_destroy(&mon->lock);
	free(mon);
}

void monitor_abandon(struct monitor *mon)
{
	if (!mon)
		return;
	/* Only the forking thread exists now: no server thread to stop, no lock holder to
	 * wait for, and the socket is the parent's to remove. */
	mon->listening = false;
	monitor_self = NULL;
	pthread_mutex_init(&mon->lock, NULL);
	monitor_destroy(mon);
}

/* ---- events ---------------------------------------------------------------------------------- */

int monitor_emit_event(struct monitor *mon, const char *name, json_t *data)
{
	if (!name || !*name || (data && !json_is_object(data))) {
		json_decref(data);
		return -EINVAL;
	}
	struct timespec now;
	clock_gettime(CLOCK_REALTIME, &now);
	json_t *msg = json_pack("{s:s,s:o,s:{s:I,s:I}}", "event", name, "data", data ? data : json_object(),
				"timestamp", "seconds", (json_int_t)now.tv_sec, "microseconds",
				(json_int_t)(now.tv_nsec / 1000));
	size_t len;
	char *line = monitor_encode(msg, &len);
	if (line && len > MONITOR_EVENT_MAX) {
		free(line);
		atomic_fetch_add(&mon->events_dropped, 1);
		return -EMSGSIZE;
	}
	struct monitor_event *e = line ? malloc(sizeof(*e) + len + 1) : NULL;
	if (!e) {
		free(line);
		atomic_fetch_add(&mon->events_dropped, 1);
		return -ENOMEM;
	}
	e->next = NULL;
	e->len = len;
	memcpy(e->line, line, len + 1);
	free(line);
	pthread_mutex_lock(&mon->lock);
	bool full = mon->nevents == MONITOR_EVENT_QUEUE_MAX;
	if (!full) {
		*mon->events_tail = e;
		mon->events_tail = &e->next;
		mon->nevents++;
	}
	pthread_mutex_unlock(&mon->lock);
	if (full) {
		free(e);
		atomic_fetch_add(&mon->events_dropped, 1);
		return -ENOBUFS;
	}
	if (monitor_self == mon)
		monitor_drain_events(mon); /* from a handler: before its reply, as QEMU orders them */
	else
		monitor_wake(mon);
	return 0;
}

unsigned monitor_client_count(struct monitor *mon)
{
	return atomic_load(&mon->nclients_now);
}

/* ---- sessions without a socket ------------------------------------------------------------ */

struct monitor_session {
	struct monitor *mon;
	struct monitor_client *c;
};

struct monitor_session *monitor_session_open(struct monitor *mon)
{
	if (mon->listening)
		return NULL;
	struct monitor_session *s = malloc(sizeof(*s));
	if (!s)
		return NULL;
	s->mon = mon;
	s->c = client_new(mon, -1);
	if (!s->c) {
		free(s);
		return NULL;
	}
	return s;
}

size_t monitor_session_feed(struct monitor_session *s, const void *buf, size_t len)
{
	struct monitor_client *c = s->c;
	size_t taken = 0;
	while (taken < len && !c->dead) {
		size_t room = client_room(c);
		if (!room)
			break; /* a deferred command holds a full buffer */
		size_t n = len - taken < room ? len - taken : room;
		memcpy(c->in + c->in_start + c->in_len, (const char *)buf + taken, n);
		c->in_len += n;
		taken += n;
		client_process(s->mon, c);
	}
	return taken;
}

void monitor_session_eof(struct monitor_session *s)
{
	s->c->eof = true;
	client_process(s->mon, s->c);
}

char *monitor_session_output(struct monitor_session *s, size_t *len)
{
	struct monitor_client *c = s->c;
	if (c->dropped)
		return NULL;
	size_t n = c->out_len - c->out_off;
	char *out = malloc(n + 1);
	if (!out)
		return NULL;
	if (n)
		memcpy(out, c->out + c->out_off, n);
	out[n] = '\0';
	c->out_off = c->out_len = 0;
	*len = n;
	return out;
}

void monitor_session_close(struct monitor_session *s)
{
	if (!s)
		return;
	client_free(s->c);
	free(s);
}


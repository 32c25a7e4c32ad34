#include "vmm/monitor/qmp_client.h"

#include "guest/abi.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "vmm/error.h"
#include "vmm/monitor/monitor.h"

struct qmp_client {
	int fd;
	char *buf;              /* received bytes not yet parsed: buf[0 .. len) */
	size_t len, cap;
	size_t scanned;         /* leading bytes of buf known to hold no newline */
	json_t *greeting;
	json_t *events;         /* array: events received while waiting for a reply */
	json_int_t next_id;
	char error_class[64];
	char path[108];
};

/* Milliseconds left until @deadline (CLOCK_MONOTONIC ms; negative = none) for poll(). */
static int qmp_client_left(long long deadline)
{
	if (deadline < 0)
		return -1;
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	long long now = (long long)t.tv_sec * 1000 + t.tv_nsec / 1000000;
	return deadline > now ? (int)(deadline - now) : 0;
}

static long long qmp_client_deadline(int timeout_ms)
{
	if (timeout_ms < 0)
		return -1;
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (long long)t.tv_sec * 1000 + t.tv_nsec / 1000000 + timeout_ms;
}

/* Wait for @events on the socket until @deadline: 0, or -ETIMEDOUT / -errno. */
static int qmp_client_wait(struct qmp_client *c, short events, long long deadline)
{
	for (;;) {
		struct pollfd p = {.fd = c->fd, .events = events};
		int n = poll(&p, 1, qmp_client_left(deadline));
		if (n > 0)
			return 0;
		if (n == 0)
			return error_set(ETIMEDOUT, "no answer from the monitor at %s in time", c->path);
		if (errno != EINTR)
			return error_set_errno(errno, "cannot wait for the monitor at %s", c->path);
	}
}

static int qmp_client_send(struct qmp_client *c, json_t *msg, long long deadline)
{
	char *s = json_dumps(msg, JSON_COMPACT);
	if (!s)
		return error_set(ENOMEM, "cannot encode a request to the monitor");
	size_t len = strlen(s);
	if (len > MONITOR_LINE_MAX) {
		/* The server would drop it with an error; saying so here is clearer and sends nothing. */
		free(s);
		return error_set(EMSGSIZE, "the request '%s' is %zu bytes long; the monitor takes lines of at most %u",
				 json_string_value(json_object_get(msg, "execute")), len, MONITOR_LINE_MAX);
	}
	s[len] = '\n'; /* json_dumps' terminating NUL becomes the line's end */
	size_t off = 0;
	int r = 0;
	while (off < len + 1 && r == 0) {
		ssize_t n = send(c->fd, s + off, len + 1 - off, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (n >= 0)
			off += (size_t)n;
		else if (errno == EAGAIN || errno == EWOULDBLOCK)
			r = qmp_client_wait(c, POLLOUT, deadline);
		else if (errno != EINTR)
			r = error_set_errno(errno == EPIPE ? ECONNRESET : errno, "the monitor at %s closed the connection",
					    c->path);
	}
	free(s);
	return r;
}

/* The next message from the server (a new reference), waiting until @deadline. */
static int qmp_client_receive(struct qmp_client *c, json_t **msg, long long deadline)
{
	for (;;) {
		char *nl = c->len ? memchr(c->buf + c->scanned, '\n', c->len - c->scanned) : NULL;
		c->scanned = nl ? 0 : c->len;
		if (nl) {
			size_t n = (size_t)(nl - c->buf);
			json_error_t jerr;
			json_t *j = json_loadb(c->buf, n, 0, &jerr);
			memmove(c->buf, nl + 1, c->len - n - 1);
			c->len -= n + 1;
			if (!j)
				return error_set(EPROTO, "the monitor at %s sent bad JSON: %s", c->path, jerr.text);
			*msg = j;
			return 0;
		}
		if (c->len >= QMP_CLIENT_LINE_MAX)
			return error_set(EPROTO, "the monitor at %s sent a line longer than %u bytes", c->path,
					 QMP_CLIENT_LINE_MAX);
		if (c->cap - c->len < 4096) {
			size_t cap = c->cap ? c->cap * 2 : 8192;
			char *buf = realloc(c->buf, cap);
			if (!buf)
				return error_set(ENOMEM, "out of memory reading from the monitor");
			c->buf = buf;
			c->cap = cap;
		}
		ssize_t n = recv(c->fd, c->buf + c->len, c->cap - c->len, MSG_DONTWAIT);
		if (n > 0) {
			c->len += (size_t)n;
		} else if (n == 0) {
			return error_set(ECONNRESET, "the monitor at %s closed the connection", c->path);
		} else if (errno == EAGAIN || errno == EWOULDBLOCK) {
			int r = qmp_client_wait(c, POLLIN, deadline);
			if (r)
				return r;
		} else if (errno != EINTR) {
			return error_set_errno(errno, "cannot read from the monitor at %s", c->path);
		}
	}
}

/* Keep @ev (stolen) for qmp_client_next_event, forgetting the oldest when too many wait. */
static void qmp_client_keep_event(struct qmp_client *c, json_t *ev)
{
	if (json_array_size(c->events) >= QMP_CLIENT_EVENTS_MAX)
		json_array_remove(c->events, 0);
	json_array_append_new(c->events, ev);
}

int qmp_client_execute(struct qmp_client *c, const char *command, json_t *args, json_t **ret, int timeout_ms)
{
	long long deadline = qmp_client_deadline(timeout_ms);
	json_int_t id = ++c->next_id;
	/* The id first: a server that cannot parse the line can still answer with it. */
	json_t *req = args ? json_pack("{s:I,s:s,s:O}", "id", id, "execute", command, "arguments", args)
			   : json_pack("{s:I,s:s}", "id", id, "execute", command);
	if (!req)
		return error_set(ENOMEM, "cannot build the request '%s'", command);
	int r = qmp_client_send(c, req, deadline);
	json_decref(req);
	c->error_class[0] = '\0';
	while (r == 0) {
		json_t *msg;
		r = qmp_client_receive(c, &msg, deadline);
		if (r)
			break;
		if (json_object_get(msg, "event")) {
			qmp_client_keep_event(c, msg);
			continue;
		}
		json_t *mid = json_object_get(msg, "id");
		/* The server answers every line once, in order, and each of ours has an id: an
		 * error without one answers a line it could not read, the one we wait for. */
		bool ours = mid ? json_is_integer(mid) && json_integer_value(mid) == id : json_object_get(msg, "error") != NULL;
		if (!ours) {
			json_decref(msg); /* an answer to nothing we are waiting for */
			continue;
		}
		json_t *value = json_object_get(msg, "return");
		json_t *err = json_object_get(msg, "error");
		if (value) {
			if (ret)
				*ret = json_incref(value);
		} else if (err) {
			const char *klass = json_string_value(json_object_get(err, "class"));
			const char *desc = json_string_value(json_object_get(err, "desc"));
			snprintf(c->error_class, sizeof(c->error_class), "%s", klass ? klass : "");
			r = error_set(EREMOTEIO, "%s", desc ? desc : "the VM answered with an error");
		} else {
			r = error_set(EPROTO, "the monitor at %s answered '%s' with neither return nor error", c->path,
				      command);
		}
		json_decref(msg);
		return r;
	}
	return r;
}

const char *qmp_client_error_class(const struct qmp_client *c)
{
	return c->error_class;
}

int qmp_client_next_event(struct qmp_client *c, json_t **event, int timeout_ms)
{
	long long deadline = qmp_client_deadline(timeout_ms);
	for (;;) {
		if (json_array_size(c->events)) {
			*event = json_incref(json_array_get(c->events, 0));
			json_array_remove(c->events, 0);
			return 0;
		}
		json_t *msg;
		int r = qmp_client_receive(c, &msg, deadline);
		if (r)
			return r;
		if (json_object_get(msg, "event")) {
			*event = msg;
			return 0;
		}
		json_decref(msg); /* a late answer to a command that timed out */
	}
}

int qmp_client_connect(struct qmp_client **out, const char *path, int timeout_ms)
{
	long long deadline = qmp_client_deadline(timeout_ms);
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	if (strlen(path) >= sizeof(sa.sun_path))
		return error_set(ENAMETOOLONG, "monitor socket path '%s' is too long", path);
	struct qmp_client *c = calloc(1, sizeof(*c));
	if (!c || !(c->events = json_array())) {
		free(c);
		return error_set(ENOMEM, "out of memory for a monitor client");
	}
	snprintf(c->path, sizeof(c->path), "%s", path);
	memcpy(sa.sun_path, path, strlen(path) + 1);
	int r = 0;
	c->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (c->fd < 0) {
		r = error_set_errno(errno, "cannot make a socket");
		goto err;
	}
	/* A blocking connect: a unix socket connects at once unless the backlog is full,
	 * and then SO_SNDTIMEO bounds the wait. */
	if (timeout_ms >= 0) {
		struct timeval tv = {.tv_sec = timeout_ms / 1000, .tv_usec = (timeout_ms % 1000) * 1000};
		setsockopt(c->fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	}
	if (connect(c->fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
		r = error_set_errno(errno, "cannot connect to the monitor at %s", path);
		goto err;
	}
	if (fcntl(c->fd, F_SETFL, fcntl(c->fd, F_GETFL) | O_NONBLOCK) != 0) {
		r = error_set_errno(errno, "cannot set up the connection to %s", path);
		goto err;
	}
	r = qmp_client_receive(c, &c->greeting, deadline);
	if (r)
		goto err;
	json_t *refusal = json_object_get(c->greeting, "error");
	if (refusal) {
		const char *desc = json_string_value(json_object_get(refusal, "desc"));
		r = error_set(EPERM, "the monitor at %s refused the connection: %s", path, desc ? desc : "no reason given");
		goto err;
	}
	if (!json_is_object(json_object_get(c->greeting, "QMP"))) {
		r = error_set(EPROTO, "%s is not a QMP monitor (no greeting)", path);
		goto err;
	}
	r = qmp_client_execute(c, "qmp_capabilities", NULL, NULL, qmp_client_left(deadline));
	if (r)
		goto err;
	*out = c;
	return 0;
err:
	qmp_client_close(c);
	return r;
}

int qmp_client_open(struct qmp_client **out, const char *name, const char *path, int timeout_ms)
{
	char def[108];
	if (!path) {
		int r = monitor_socket_find(name, def, sizeof(def));
		if (r)
			return r;
		path = def;
	}
	int r = qmp_client_connect(out, path, timeout_ms);
	if (r == -ENOENT)
		return name ? error_set(ENOENT, "no VM named '%s' (no socket at %s)", name, path)
			    : error_set(ENOENT, "no monitor socket at %s", path);
	if (r == -ECONNREFUSED)
		return name ? error_set(ECONNREFUSED, "VM '%s' is not running (stale socket at %s)", name, path)
			    : error_set(ECONNREFUSED, "nothing listens on %s (a stale socket)", path);
	if (r == -EACCES)
		return error_set(EACCES, "permission denied on the monitor socket %s", path);
	return r;
}

const json_t *qmp_client_greeting(const struct qmp_client *c)
{
	return c->greeting;
}

int qmp_client_fd(const struct qmp_client *c)
{
	return c->fd;
}

void qmp_client_close(struct qmp_client *c)
{
	if (!c)
		return;
	if (c->fd >= 0)
		close(c->fd);
	json_decref(c->greeting);
	json_decref(c->events);
	free(c->buf);
	free(c);
}

int qmp_client_wait_sync(struct qmp_client *c, unsigned n, int timeout_ms)
{
	long long deadline = qmp_client_deadline(timeout_ms);
	for (;;) {
		json_t *st = NULL;
		int r = qmp_client_execute(c, "query-stats", NULL, &st, timeout_ms);
		if (r)
			return r;
		unsigned last = (unsigned)json_integer_value(json_object_get(st, "vm.test_port_last"));
		json_decref(st);
		if (ABI_SYNC_CODE(last) == ABI_SYNC_POINT && ABI_SYNC_ARG(last) >= n)
			return 0;
		if (deadline >= 0 && qmp_client_left(deadline) == 0)
			return error_set(ETIMEDOUT, "the guest did not reach sync point %u", n);
		struct timespec t = {0, 10000000L};
		nanosleep(&t, NULL);
	}
}

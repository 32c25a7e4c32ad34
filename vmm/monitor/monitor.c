#include "vmm/monitor/monitor.h"

#include <assert.h>
#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "vmm/error.h"

/* Room for a line of MONITOR_LINE_MAX bytes and its newline. */
#define MONITOR_IN_SIZE (MONITOR_LINE_MAX + 1)
#define MONITOR_MAX_TABLES 16
#define MONITOR_SUN_PATH_MAX (sizeof(((struct sockaddr_un *)0)->sun_path))

/*
 * One connection (or one socketless session). Owned by the server thread (or by the
 * session's caller); nothing here is touched by other threads.
 */
struct monitor_client {
	int fd;                          /* -1 for a session */
	bool negotiated;                 /* qmp_capabilities done: commands and events allowed */
	bool eof;                        /* the peer will send nothing more */
	bool dead;                       /* to be closed */
	bool dropped;                    /* closed for its own fault: output overflow, reset */
	bool discarding;                 /* dropping the rest of an overlong line */
	struct monitor_pending *waiting; /* the deferred command this client waits for */
	char *in;                        /* MONITOR_IN_SIZE bytes */
	size_t in_start, in_len;         /* unprocessed input: in[in_start .. in_start + in_len) */
	size_t in_scanned;               /* leading bytes of that known to hold no newline */
	char *out;                       /* queued output: out[out_off .. out_len) */
	size_t out_off, out_len, out_cap;
};

/* An event line built by monitor_emit_event, waiting for the server thread. */
struct monitor_event {
	struct monitor_event *next;
	size_t len;
	char line[];
};

/*
 * Locking legend: (c) set before the server thread starts, then constant; (t) server
 * thread only (or the session's caller when not listening); (l) mon->lock; (a) atomic.
 */
struct monitor_pending {
	struct monitor *mon;                 /* (c) */
	struct monitor_pending *prev, *next; /* (l) on mon->outstanding, then on mon->done */
	json_t *id;                          /* request id or NULL; read-only once made */
	char *line;                          /* the reply, once completed */
	size_t len;
};

struct monitor_call {
	struct monitor *mon;
	struct monitor_client *client;
	json_t *id;
	const char *error_class;
	struct monitor_pending *pending;
};

struct monitor_table {
	const struct monitor_command *cmds;
	void *ctx;
};

struct monitor {
	struct monitor_config cfg;                         /* (c) */
	struct monitor_table tables[MONITOR_MAX_TABLES];   /* (c) */
	unsigned ntables;                                  /* (c) */
	struct monitor_command ops_cmds[5];                /* (c) commands backed by cfg.ops */
	char *greeting;                                    /* (c) the greeting line */
	size_t greeting_len;                               /* (c) */
	char path[MONITOR_SUN_PATH_MAX];                   /* (c) socket path, "" until listening */
	dev_t dev;                                         /* (c) the socket inode we made */
	ino_t ino;                                         /* (c) */
	int listen_fd;                                     /* (c) */
	int wake_fd;                                       /* (c) eventfd that wakes the server */
	bool listening;                                    /* (c) */
	pthread_t thread;                                  /* (c) */
	atomic_bool stop;                                  /* (a) monitor_destroy asks the thread to end */
	struct monitor_client *clients[MONITOR_MAX_CLIENTS]; /* (t) */
	unsigned nclients;                                 /* (t) */
	bool accept_paused;                                /* (t) out of fds: wait for a close */
	pthread_mutex_t lock;
	struct monitor_event *events, **events_tail;       /* (l) emitted, not yet broadcast */
	unsigned nevents;                                  /* (l) */
	struct monitor_pending *outstanding;               /* (l) deferred, not completed */
	struct monitor_pending *done;                      /* (l) completed, not yet delivered */
	atomic_uint nclients_now;                          /* (a) */
	atomic_ullong clients_accepted, clients_refused, clients_dropped; /* (a) */
	atomic_ullong commands, command_errors, events_sent, events_dropped; /* (a) */
};

/* The monitor whose server thread this is: events emitted from a handler go out at once. */
static _Thread_local struct monitor *monitor_self;

/* ---- JSON helpers ------------------------------------------------------------------- */

/* A JSON string of @s; bytes that are not valid UTF-8 become '?' rather than failing. */
static json_t *monitor_json_text(const char *s)
{
	json_t *j = json_string(s);
	if (j)
		return j;
	char *copy = strdup(s);
	if (!copy)
		return NULL;
	for (char *p = copy; *p; p++)
		if ((unsigned char)*p >= 0x80)
			*p = '?';
	j = json_string(copy);
	free(copy);
	return j;
}

/* {"error":{"class":...,"desc":...},"id":...}; NULL when out of memory. */
static json_t *monitor_error_reply(const char *klass, const char *desc, json_t *id)
{
	json_t *err = json_object();
	json_t *reply = json_object();
	if (!err || !reply || json_object_set_new(err, "class", json_string(klass)) ||
	    json_object_set_new(err, "desc", monitor_json_text(desc)) || json_object_set_new(reply, "error", err)) {
		json_decref(reply);
		return NULL;
	}
	if (id && json_object_set(reply, "id", id)) {
		json_decref(reply);
		return NULL;
	}
	return reply;
}

/* {"return":ret,"id":...}; steals @ret (NULL means {}). NULL when out of memory. */
static json_t *monitor_return_reply(json_t *ret, json_t *id)
{
	json_t *reply = json_object();
	if (!reply || json_object_set_new(reply, "return", ret ? ret : json_object()) ||
	    (id && json_object_set(reply, "id", id))) {
		json_decref(reply);
		return NULL;
	}
	return reply;
}

/* Sent instead of a reply that cannot be encoded (out of memory, a NaN from a handler). */
static const char monitor_encode_failed[] =
	"{\"error\":{\"class\":\"GenericError\",\"desc\":\"the reply could not be encoded\"}}\n";

/* Encode @msg (stolen) as one line with its newline; NULL when it cannot be encoded. */
static char *monitor_encode(json_t *msg, size_t *len)
{
	char *s = msg ? json_dumps(msg, JSON_COMPACT | JSON_ENCODE_ANY) : NULL;
	json_decref(msg);
	if (!s)
		return NULL;
	size_t n = strlen(s);
	char *line = realloc(s, n + 2);
	if (!line) {
		free(s);
		return NULL;
	}
	line[n] = '\n';
	line[n + 1] = '\0';
	*len = n + 1;
	return line;
}

/* ---- client output -------------------------------------------------------------------- */

static void client_append(struct monitor_client *c, const char *line, size_t len)
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

/*
 * Encode the reply @msg (stolen) to the request @id as one line. A reply that cannot be
 * encoded, or is longer than MONITOR_REPLY_MAX, becomes an error saying so.
 */
static char *monitor_encode_reply(json_t *msg, json_t *id, size_t *len)
{
	char *line = monitor_encode(msg, len);
	if (line && *len <= MONITOR_REPLY_MAX)
		return line;
	char desc[128];
	if (line)
		snprintf(desc, sizeof(desc), "the reply is %zu bytes long, over the monitor's limit of %u", *len,
			 MONITOR_REPLY_MAX);
	else
		snprintf(desc, sizeof(desc), "the reply could not be encoded");
	free(line);
	line = monitor_encode(monitor_error_reply("GenericError", desc, id), len);
	if (!line && (line = strdup(monitor_encode_failed)))
		*len = strlen(line);
	return line;
}

/* Queue the reply @msg (stolen) to the request @id for @c. */
static void client_send(struct monitor_client *c, json_t *msg, json_t *id)
{
	size_t len;
	char *line = monitor_encode_reply(msg, id, &len);
	if (line)
		client_append(c, line, len);
	else
		c->dead = c->dropped = true; /* out of memory: a client without its reply would hang */
	free(line);
}

static void client_send_error(struct monitor *mon, struct monitor_client *c, const char *klass, json_t *id,
			      const char *fmt, ...) __attribute__((format(printf, 5, 6)));
static void client_send_error(struct monitor *mon, struct monitor_client *c, const char *klass, json_t *id,
			      const char *fmt, ...)
{
	char desc[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(desc, sizeof(desc), fmt, ap);
	va_end(ap);
	atomic_fetch_add(&mon->command_errors, 1);
	client_send(c, monitor_error_reply(klass, desc, id), id);
}

/* Send what the socket takes now; never blocks. */
static void client_flush(struct monitor_client *c)
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

/* ---- commands ------------------------------------------------------------------------- */

static const char *const monitor_type_names[] = {
	[MONITOR_ARG_STRING] = "string", [MONITOR_ARG_INT] = "integer", [MONITOR_ARG_NUMBER] = "number",
	[MONITOR_ARG_BOOL] = "boolean",  [MONITOR_ARG_OBJECT] = "object", [MONITOR_ARG_ARRAY] = "array",
	[MONITOR_ARG_ANY] = "any",
};

static bool monitor_type_ok(enum monitor_arg_type t, const json_t *v)
{
	switch (t) {
	case MONITOR_ARG_STRING:
		return json_is_string(v);
	case MONITOR_ARG_INT:
		return json_is_integer(v);
	case MONITOR_ARG_NUMBER:
		return json_is_number(v);
	case MONITOR_ARG_BOOL:
		return json_is_boolean(v);
	case MONITOR_ARG_OBJECT:
		return json_is_object(v);
	case MONITOR_ARG_ARRAY:
		return json_is_array(v);
	case MONITOR_ARG_ANY:
		return true;
	}
	return false;
}

static const struct monitor_command *monitor_lookup(struct monitor *mon, const char *name, void **ctx)
{
	for (unsigned t = 0; t < mon->ntables; t++)
		for (const struct monitor_command *cmd = mon->tables[t].cmds; cmd->name; cmd++)
			if (strcmp(cmd->name, name) == 0) {
				*ctx = mon->tables[t].ctx;
				return cmd;
			}
	return NULL;
}

/* Check @args against the schema of @cmd; 0, or -1 with the reason in @desc (QEMU's words). */
static int monitor_check_args(const struct monitor_command *cmd, json_t *args, char *desc, size_t size)
{
	const char *key;
	json_t *value;
	json_object_foreach(args, key, value) {
		const struct monitor_arg *a = cmd->args;
		while (a && a->name && strcmp(a->name, key) != 0)
			a++;
		if (!a || !a->name) {
			snprintf(desc, size, "Parameter '%.100s' is unexpected", key);
			return -1;
		}
		if (!monitor_type_ok(a->type, value)) {
			snprintf(desc, size, "Invalid parameter type for '%s', expected: %s", a->name,
				 monitor_type_names[a->type]);
			return -1;
		}
	}
	for (const struct monitor_arg *a = cmd->args; a && a->name; a++)
		if (a->required && !json_object_get(args, a->name)) {
			snprintf(desc, size, "Parameter '%s' is missing", a->name);
			return -1;
		}
	return 0;
}

static void monitor_run(struct monitor *mon, struct monitor_client *c, const struct monitor_command *cmd, void *ctx,
			json_t *args, json_t *id)
{
	struct monitor_call call = {.mon = mon, .client = c, .id = id, .error_class = "GenericError"};
	json_t *ret = NULL;
	error_clear();
	int r = cmd->handler(&call, ctx, args, &ret);
	/* A deferred call answers later, and only a deferred call may return MONITOR_PENDING. */
	assert((r == MONITOR_PENDING) == (call.pending != NULL));
	if (r == MONITOR_PENDING) {
		c->waiting = call.pending;
		return;
	}
	if (r < 0) {
		json_decref(ret);
		const char *msg = error_message();
		client_send_error(mon, c, call.error_class, id, "%s", *msg ? msg : strerror(-r));
		return;
	}
	client_send(c, monitor_return_reply(ret, id), id);
}

/* Check a request's members; 0, or -1 with the reason in @desc (QEMU's words). */
static int monitor_check_request(json_t *req, const char **name, json_t **args, char *desc, size_t size)
{
	const char *key;
	json_t *value;
	json_object_foreach(req, key, value) {
		if (strcmp(key, "execute") != 0 && strcmp(key, "arguments") != 0 && strcmp(key, "id") != 0) {
			snprintf(desc, size, "QMP input member '%.100s' is unexpected", key);
			return -1;
		}
	}
	json_t *execute = json_object_get(req, "execute");
	*args = json_object_get(req, "arguments");
	if (!execute)
		snprintf(desc, size, "QMP input lacks member 'execute'");
	else if (!json_is_string(execute))
		snprintf(desc, size, "QMP input member 'execute' must be a string");
	else if (*args && !json_is_object(*args))
		snprintf(desc, size, "QMP input member 'arguments' must be an object");
	else
		return *name = json_string_value(execute), 0;
	return -1;
}

/* Run the request @req from @c: its checks, then its command. */
static void monitor_execute(struct monitor *mon, struct monitor_client *c, json_t *req)
{
	json_t *id = json_object_get(req, "id");
	const char *name;
	json_t *args;
	char desc[256];
	void *ctx;
	const struct monitor_command *cmd = NULL;
	json_t *empty = NULL;
	if (monitor_check_request(req, &name, &args, desc, sizeof(desc)) != 0)
		client_send_error(mon, c, "GenericError", id, "%s", desc);
	else if (!c->negotiated && strcmp(name, "qmp_capabilities") != 0)
		client_send_error(mon, c, "CommandNotFound", id, "Expecting capabilities negotiation with 'qmp_capabilities'");
	else if (c->negotiated && strcmp(name, "qmp_capabilities") == 0)
		client_send_error(mon, c, "CommandNotFound", id, "Capabilities negotiation is already complete, command ignored");
	else if (!(cmd = monitor_lookup(mon, name, &ctx)))
		client_send_error(mon, c, "CommandNotFound", id, "The command %.100s has not been found", name);
	else if (!args && !(args = empty = json_object()))
		client_send_error(mon, c, "GenericError", id, "out of memory");
	else if (monitor_check_args(cmd, args, desc, sizeof(desc)) != 0)
		client_send_error(mon, c, "GenericError", id, "%s", desc);
	else
		monitor_run(mon, c, cmd, ctx, args, id);
	json_decref(empty);
}

static size_t monitor_skip_space(const char *s, size_t i, size_t len)
{
	while (i < len && (s[i] == ' ' || s[i] == '\t' || s[i] == '\r' || s[i] == '\n'))
		i++;
	return i;
}

/*
 * The id of a request line that cannot be parsed as a whole (bad JSON, or only the start
 * of a line over MONITOR_LINE_MAX), when the line begins {"id":VALUE followed by ',' or
 * '}': its sender can still match the error to its request. A new reference, or NULL.
 */
static json_t *monitor_recover_id(const char *line, size_t len)
{
	static const char key[] = "\"id\"";
	size_t i = monitor_skip_space(line, 0, len);
	if (i == len || line[i] != '{')
		return NULL;
	i = monitor_skip_space(line, i + 1, len);
	if (len - i < sizeof(key) - 1 || memcmp(line + i, key, sizeof(key) - 1) != 0)
		return NULL;
	i = monitor_skip_space(line, i + sizeof(key) - 1, len);
	if (i == len || line[i] != ':')
		return NULL;
	i = monitor_skip_space(line, i + 1, len);
	json_error_t jerr;
	/* Only the value: with the end check off, jansson stops right after it and says where. */
	json_t *id = json_loadb(line + i, len - i, JSON_DECODE_ANY | JSON_DISABLE_EOF_CHECK, &jerr);
	if (!id)
		return NULL;
	size_t end = monitor_skip_space(line, i + (size_t)jerr.position, len);
	if (end == len || (line[end] != ',' && line[end] != '}')) {
		json_decref(id); /* "12x", "1 2": not a value of its own */
		return NULL;
	}
	return id;
}

/* One request line (without its newline). */
static void monitor_handle_line(struct monitor *mon, struct monitor_client *c, const char *line, size_t len)
{
	if (monitor_skip_space(line, 0, len) == len)
		return; /* blank lines are allowed between requests */
	atomic_fetch_add(&mon->commands, 1);
	json_error_t jerr;
	json_t *req = json_loadb(line, len, JSON_DECODE_ANY | JSON_REJECT_DUPLICATES, &jerr);
	if (!req) {
		json_t *id = monitor_recover_id(line, len);
		client_send_error(mon, c, "GenericError", id, "JSON parse error: %s (column %d)", jerr.text, jerr.column);
		json_decref(id);
	} else if (!json_is_object(req))
		client_send_error(mon, c, "GenericError", NULL, "QMP input must be a JSON object");
	else
		monitor_execute(mon, c, req);
	json_decref(req);
}

/* The error for a line over MONITOR_LINE_MAX, of which @start holds the first @len bytes. */
static void monitor_refuse_line(struct monitor *mon, struct monitor_client *c, const char *start, size_t len)
{
	json_t *id = monitor_recover_id(start, len);
	atomic_fetch_add(&mon->commands, 1);
	client_send_error(mon, c, "GenericError", id,
			  "request line longer than %u bytes (a vm-write carries at most %u bytes): dropped up to its end",
			  MONITOR_LINE_MAX, MONITOR_DATA_MAX);
	json_decref(id);
}

/*
 * Handle every complete line buffered for @c, in order, until one is deferred. A line
 * over MONITOR_LINE_MAX gets one error, and the rest of it up to its newline is dropped.
 */
static void client_process(struct monitor *mon, struct monitor_client *c)
{
	while (!c->waiting && !c->dead && c->in_len) {
		char *start = c->in + c->in_start;
		char *nl = memchr(start + c->in_scanned, '\n', c->in_len - c->in_scanned);
		if (!nl) {
			c->in_scanned = c->in_len;
			if (c->in_len > MONITOR_LINE_MAX && !c->discarding) {
				monitor_refuse_line(mon, c, start, c->in_len);
				c->discarding = true;
			}
			if (c->discarding)
				c->in_start = c->in_len = c->in_scanned = 0;
			break;
		}
		size_t n = (size_t)(nl - start);
		bool handle = !c->discarding;
		c->discarding = false;
		c->in_start += n + 1;
		c->in_len -= n + 1;
		c->in_scanned = 0;
		if (handle)
			monitor_handle_line(mon, c, start, n);
	}
	if (c->eof && !c->waiting && !c->dead && c->in_len) {
		/* The peer ended without a final newline: that last line still counts. */
		char *start = c->in + c->in_start;
		size_t n = c->in_len;
		bool handle = !c->discarding;
		c->in_start = c->in_len = c->in_scanned = 0;
		if (handle)
			monitor_handle_line(mon, c, start, n);
	}
	if (!c->in_len)
		c->in_start = 0;
}

/* Free room at the end of @c's input buffer, moving what is buffered to the front when full. */
static size_t client_room(struct monitor_client *c)
{
	if (c->in_start + c->in_len == MONITOR_IN_SIZE && c->in_start) {
		memmove(c->in, c->in + c->in_start, c->in_len);
		c->in_start = 0;
	}
	return MONITOR_IN_SIZE - c->in_start - c->in_len;
}

static struct monitor_client *client_new(struct monitor *mon, int fd)
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

static void client_free(struct monitor_client *c)
{
	if (c->fd >= 0)
		close(c->fd);
	free(c->in);
	free(c->out);
	free(c);
}

/* ---- built-in commands ---------------------------------------------------------------- */

static int monitor_cmd_capabilities(struct monitor_call *call, void *ctx, json_t *args, json_t **ret)
{
	(void)ctx;
	(void)ret;
	json_t *enable = json_object_get(args, "enable");
	if (enable && json_array_size(enable)) {
		json_t *cap = json_array_get(enable, 0);
		return error_set(0, "Capability '%.100s' is not available", json_is_string(cap) ? json_string_value(cap) : "?");
	}
	call->client->negotiated = true;
	return 0;
}

static json_t *monitor_version_json(void)
{
	return json_pack("{s:{s:i,s:i,s:i},s:s}", "qemu", "major", MONITOR_VERSION_MAJOR, "minor",
			 MONITOR_VERSION_MINOR, "micro", MONITOR_VERSION_MICRO, "package", "vmm");
}

static int monitor_cmd_version(struct monitor_call *call, void *ctx, json_t *args, json_t **ret)
{
	(void)call, (void)ctx, (void)args;
	*ret = monitor_version_json();
	return *ret ? 0 : -ENOMEM;
}

static json_t *monitor_command_json(const struct monitor_command *cmd)
{
	json_t *args = json_array();
	for (const struct monitor_arg *a = cmd->args; args && a && a->name; a++)
		if (json_array_append_new(args, json_pack("{s:s,s:s,s:b,s:s}", "name", a->name, "type",
							  monitor_type_names[a->type], "required", a->required,
							  "help", a->help ? a->help : ""))) {
			json_decref(args);
			args = NULL;
		}
	if (!args)
		return NULL;
	return json_pack("{s:s,s:s,s:o}", "name", cmd->name, "help", cmd->help ? cmd->help : "", "arguments", args);
}

static int monitor_cmd_commands(struct monitor_call *call, void *ctx, json_t *args, json_t **ret)
{
	(void)ctx, (void)args;
	struct monitor *mon = call->mon;
	json_t *list = json_array();
	for (unsigned t = 0; list && t < mon->ntables; t++)
		for (const struct monitor_command *cmd = mon->tables[t].cmds; list && cmd->name; cmd++)
			if (json_array_append_new(list, monitor_command_json(cmd))) {
				json_decref(list);
				list = NULL;
			}
	*ret = list;
	return list ? 0 : -ENOMEM;
}

static int monitor_cmd_vmm(struct monitor_call *call, void *ctx, json_t *args, json_t **ret)
{
	(void)ctx, (void)args;
	struct monitor *mon = call->mon;
	*ret = json_pack("{s:o,s:I,s:o,s:i}", "name", mon->cfg.name ? monitor_json_text(mon->cfg.name) : json_null(),
			 "pid", (json_int_t)getpid(), "socket", mon->path[0] ? monitor_json_text(mon->path) : json_null(),
			 "clients", (int)atomic_load(&mon->nclients_now));
	return *ret ? 0 : -ENOMEM;
}

static int monitor_cmd_stats(struct monitor_call *call, void *ctx, json_t *args, json_t **ret)
{
	(void)ctx, (void)args;
	struct monitor *mon = call->mon;
	json_t *stats = json_object();
	if (!stats)
		return -ENOMEM;
	int r = mon->cfg.ops && mon->cfg.ops->query_stats ? mon->cfg.ops->query_stats(mon->cfg.ctx, stats) : 0;
	if (r == 0)
		r = monitor_stats(mon, stats);
	if (r < 0) {
		json_decref(stats);
		return r;
	}
	*ret = stats;
	return 0;
}

static const char *const monitor_run_state_names[] = {
	[MONITOR_RUN_PRELAUNCH] = "prelaunch",        [MONITOR_RUN_RUNNING] = "running",
	[MONITOR_RUN_PAUSED] = "paused",              [MONITOR_RUN_SAVE_VM] = "save-vm",
	[MONITOR_RUN_RESTORE_VM] = "restore-vm",      [MONITOR_RUN_SHUTDOWN] = "shutdown",
	[MONITOR_RUN_INTERNAL_ERROR] = "internal-error", [MONITOR_RUN_GUEST_PANICKED] = "guest-panicked",
};

static int monitor_cmd_status(struct monitor_call *call, void *ctx, json_t *args, json_t **ret)
{
	(void)ctx, (void)args;
	struct monitor *mon = call->mon;
	enum monitor_run_state state = MONITOR_RUN_RUNNING;
	int r = mon->cfg.ops->query_status(mon->cfg.ctx, &state);
	if (r < 0)
		return r;
	if ((unsigned)state >= sizeof(monitor_run_state_names) / sizeof(monitor_run_state_names[0]))
		return error_set(0, "the VM reported an unknown run state %d", (int)state);
	*ret = json_pack("{s:s,s:b}", "status", monitor_run_state_names[state], "running", state == MONITOR_RUN_RUNNING);
	return *ret ? 0 : -ENOMEM;
}

static int monitor_cmd_stop(struct monitor_call *call, void *ctx, json_t *args, json_t **ret)
{
	(void)ctx, (void)args, (void)ret;
	return call->mon->cfg.ops->stop(call, call->mon->cfg.ctx);
}

static int monitor_cmd_cont(struct monitor_call *call, void *ctx, json_t *args, json_t **ret)
{
	(void)ctx, (void)args, (void)ret;
	return call->mon->cfg.ops->cont(call, call->mon->cfg.ctx);
}

static int monitor_cmd_quit(struct monitor_call *call, void *ctx, json_t *args, json_t **ret)
{
	(void)ctx, (void)args, (void)ret;
	return call->mon->cfg.ops->quit(call, call->mon->cfg.ctx);
}

static const struct monitor_arg monitor_capabilities_args[] = {
	{"enable", MONITOR_ARG_ARRAY, false, "capabilities to enable (none are offered)"},
	{NULL},
};

static const struct monitor_command monitor_builtin_commands[] = {
	{"qmp_capabilities", monitor_cmd_capabilities, monitor_capabilities_args,
	 "leave capabilities negotiation: must come first"},
	{"query-version", monitor_cmd_version, NULL, "the version of the monitor"},
	{"query-commands", monitor_cmd_commands, NULL, "the commands available, with their arguments"},
	{"query-vmm", monitor_cmd_vmm, NULL, "the VM's name, the VMM's pid, the socket and the number of clients"},
	{"query-stats", monitor_cmd_stats, NULL, "statistics as flat dotted keys -> numbers"},
	{NULL},
};

/* ---- server thread ---------------------------------------------------------------------- */

static void monitor_wake(struct monitor *mon)
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
	mon->tables[mon->ntables++] = (struct monitor_table){monitor_builtin_commands, mon};
	const struct monitor_ops *ops = cfg->ops;
	unsigned n = 0;
	if (ops && ops->query_status)
		mon->ops_cmds[n++] = (struct monitor_command){"query-status", monitor_cmd_status, NULL,
							      "the run state: {\"status\", \"running\"}"};
	if (ops && ops->stop)
		mon->ops_cmds[n++] = (struct monitor_command){"stop", monitor_cmd_stop, NULL, "pause every vCPU"};
	if (ops && ops->cont)
		mon->ops_cmds[n++] = (struct monitor_command){"cont", monitor_cmd_cont, NULL, "resume a paused VM"};
	if (ops && ops->quit)
		mon->ops_cmds[n++] = (struct monitor_command){"quit", monitor_cmd_quit, NULL, "end the VM and its VMM"};
	mon->tables[mon->ntables++] = (struct monitor_table){mon->ops_cmds, mon};
	*out = mon;
	return 0;
}

int monitor_add_commands(struct monitor *mon, const struct monitor_command *table, void *ctx)
{
	if (mon->listening)
		return error_set(EBUSY, "monitor commands must be added before the monitor listens");
	if (mon->ntables == MONITOR_MAX_TABLES)
		return error_set(ENOSPC, "too many monitor command tables (at most %d)", MONITOR_MAX_TABLES);
	for (const struct monitor_command *cmd = table; cmd->name; cmd++) {
		void *other;
		if (!cmd->handler)
			return error_set(EINVAL, "monitor command '%s' has no handler", cmd->name);
		for (const struct monitor_arg *a = cmd->args; a && a->name; a++)
			if ((unsigned)a->type > MONITOR_ARG_ANY)
				return error_set(EINVAL, "monitor command '%s': argument '%s' has no valid type", cmd->name,
						 a->name);
		if (monitor_lookup(mon, cmd->name, &other))
			return error_set(EEXIST, "monitor command '%s' is defined twice", cmd->name);
		for (const struct monitor_command *prev = table; prev != cmd; prev++)
			if (strcmp(prev->name, cmd->name) == 0)
				return error_set(EEXIST, "monitor command '%s' is defined twice", cmd->name);
	}
	mon->tables[mon->ntables++] = (struct monitor_table){table, ctx};
	return 0;
}

/* Connect to @path: 0 when something listens there (*pid its owner), else -errno. */
static int monitor_probe(const char *path, pid_t *pid)
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

int monitor_listen(struct monitor *mon, const char *path)
{
	if (mon->listening)
		return error_set(EBUSY, "the monitor already listens on %s", mon->path);
	if (!*path || strlen(path) >= sizeof(mon->path))
		return error_set(ENAMETOOLONG, "monitor socket path '%s' is empty or too long (at most %zu bytes)", path,
				 sizeof(mon->path) - 1);
	struct stat st;
	if (lstat(path, &st) == 0) {
		if (!S_ISSOCK(st.st_mode))
			return error_set(EEXIST, "%s exists and is not a socket: not replacing it", path);
		pid_t pid = 0;
		int r = monitor_probe(path, &pid);
		if (r == 0)
			return error_set(EADDRINUSE, "monitor socket %s is in use by a running VM (pid %d)", path, (int)pid);
		if (r != -ECONNREFUSED)
			return error_set_errno(-r, "cannot tell whether monitor socket %s is in use", path);
		if (unlink(path) != 0 && errno != ENOENT)
			return error_set_errno(errno, "cannot remove the stale monitor socket %s", path);
	} else if (errno != ENOENT) {
		return error_set_errno(errno, "cannot look at monitor socket path %s", path);
	}
	int r = monitor_bind(mon, path);
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

/* ---- events, deferred replies, statistics ----------------------------------------------- */

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

int monitor_stats(struct monitor *mon, json_t *stats)
{
	struct {
		const char *key;
		unsigned long long v;
	} figures[] = {
		{"monitor.clients", atomic_load(&mon->nclients_now)},
		{"monitor.clients_accepted", atomic_load(&mon->clients_accepted)},
		{"monitor.clients_refused", atomic_load(&mon->clients_refused)},
		{"monitor.clients_dropped", atomic_load(&mon->clients_dropped)},
		{"monitor.commands", atomic_load(&mon->commands)},
		{"monitor.command_errors", atomic_load(&mon->command_errors)},
		{"monitor.events", atomic_load(&mon->events_sent)},
		{"monitor.events_dropped", atomic_load(&mon->events_dropped)},
	};
	for (size_t i = 0; i < sizeof(figures) / sizeof(figures[0]); i++)
		if (monitor_stat_set(stats, figures[i].v, "%s", figures[i].key))
			return -ENOMEM;
	return 0;
}

int monitor_stat_set(json_t *stats, uint64_t value, const char *fmt, ...)
{
	char key[256];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(key, sizeof(key), fmt, ap);
	va_end(ap);
	json_int_t v = value > (uint64_t)INT64_MAX ? INT64_MAX : (json_int_t)value;
	return json_object_set_new(stats, key, json_integer(v)) ? -ENOMEM : 0;
}

struct monitor_pending *monitor_call_defer(struct monitor_call *call)
{
	assert(!call->pending);
	struct monitor_pending *p = calloc(1, sizeof(*p));
	if (!p)
		return NULL;
	struct monitor *mon = call->mon;
	p->mon = mon;
	p->id = json_incref(call->id);
	pthread_mutex_lock(&mon->lock);
	p->next = mon->outstanding;
	if (p->next)
		p->next->prev = p;
	mon->outstanding = p;
	pthread_mutex_unlock(&mon->lock);
	call->pending = p;
	return p;
}

void monitor_call_set_error_class(struct monitor_call *call, const char *klass)
{
	call->error_class = klass;
}

struct monitor *monitor_call_monitor(const struct monitor_call *call)
{
	return call->mon;
}

void monitor_reply_later(struct monitor_pending *p, int status, json_t *ret)
{
	json_t *reply;
	if (status < 0) {
		json_decref(ret);
		const char *msg = error_message();
		reply = monitor_error_reply("GenericError", *msg ? msg : strerror(-status), p->id);
	} else {
		reply = monitor_return_reply(ret, p->id);
	}
	p->line = monitor_encode_reply(reply, p->id, &p->len);
	struct monitor *mon = p->mon;
	pthread_mutex_lock(&mon->lock);
	if (p->prev)
		p->prev->next = p->next;
	else
		mon->outstanding = p->next;
	if (p->next)
		p->next->prev = p->prev;
	/* Delivered in completion order; the list is reversed here and that is fine: one
	 * client has at most one call pending, so no client sees its replies reordered. */
	p->prev = NULL;
	p->next = mon->done;
	mon->done = p;
	pthread_mutex_unlock(&mon->lock);
	monitor_wake(mon);
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

/* ---- socket paths ------------------------------------------------------------------------- */

int monitor_name_check(const char *name)
{
	size_t len = strlen(name);
	if (len == 0)
		return error_set(0, "a VM name cannot be empty");
	if (len > MONITOR_NAME_MAX)
		return error_set(0, "VM name '%.*s...' is too long (%zu characters; at most %d)", 16, name, len,
				 MONITOR_NAME_MAX);
	if (name[0] == '.')
		return error_set(0, "VM name '%s' starts with a dot", name);
	for (const char *p = name; *p; p++) {
		char ch = *p;
		bool ok = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') || ch == '-' ||
			  ch == '_' || ch == '.';
		if (!ok)
			return error_set(0, "VM name '%s' has a character other than letters, digits, '-', '_' and '.'",
					 name);
	}
	return 0;
}

int monitor_runtime_dir(char *buf, size_t size, bool create)
{
	const char *xdg = getenv("XDG_RUNTIME_DIR");
	int n = xdg && xdg[0] == '/' ? snprintf(buf, size, "%s/vmm", xdg) : snprintf(buf, size, "/run/vmm");
	if (n < 0 || (size_t)n >= size)
		return error_set(ENAMETOOLONG, "the runtime directory $XDG_RUNTIME_DIR/vmm is too long");
	if (create && mkdir(buf, 0700) != 0 && errno != EEXIST)
		return error_set_errno(errno, "cannot create the runtime directory %s", buf);
	return 0;
}

int monitor_socket_path(const char *name, char *buf, size_t size, bool create)
{
	int r = monitor_name_check(name);
	if (r)
		return r;
	char dir[MONITOR_SUN_PATH_MAX];
	r = monitor_runtime_dir(dir, sizeof(dir), create);
	if (r)
		return r;
	int n = snprintf(buf, size, "%s/%s.sock", dir, name);
	if (n < 0 || (size_t)n >= size || (size_t)n >= MONITOR_SUN_PATH_MAX)
		return error_set(ENAMETOOLONG, "the monitor socket path %s/%s.sock is too long for a unix socket", dir,
				 name);
	return 0;
}

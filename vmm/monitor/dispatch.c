/*
 * The monitor's protocol: request lines in, checked against the command tables, run,
 * and answered (now, or later from another thread for a deferred call).
 */
#include "vmm/monitor/monitor_impl.h"

#include <assert.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vmm/error.h"

/* ---- JSON helpers ------------------------------------------------------------------- */

/* A JSON string of @s; bytes that are not valid UTF-8 become '?' rather than failing. */
json_t *monitor_json_text(const char *s)
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
json_t *monitor_error_reply(const char *klass, const char *desc, json_t *id)
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
char *monitor_encode(json_t *msg, size_t *len)
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

/*
 * Encode the reply @msg (stolen) to the request @id as one line. A reply that cannot be
 * encoded, or is longer than MONITOR_REPLY_MAX, becomes an error saying so.
 */
char *monitor_encode_reply(json_t *msg, json_t *id, size_t *len)
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
void client_send(struct monitor_client *c, json_t *msg, json_t *id)
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

/* ---- commands ------------------------------------------------------------------------- */

const char *const monitor_type_names[] = {
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
void client_process(struct monitor *mon, struct monitor_client *c)
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

/* ---- deferred replies ------------------------------------------------------------------- */

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

#include "fake_vm.h"

#include <check.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "vmm/error.h"

/* ---- the host side ------------------------------------------------------------------- */

static int fake_vm_query_status(void *ctx, enum monitor_run_state *state)
{
	struct fake_vm *vm = ctx;
	pthread_mutex_lock(&vm->lock);
	*state = vm->state;
	pthread_mutex_unlock(&vm->lock);
	return 0;
}

static void fake_vm_set_state(struct fake_vm *vm, enum monitor_run_state state)
{
	pthread_mutex_lock(&vm->lock);
	vm->state = state;
	pthread_mutex_unlock(&vm->lock);
}

static int fake_vm_stop_op(struct monitor_call *call, void *ctx)
{
	fake_vm_set_state(ctx, MONITOR_RUN_PAUSED);
	monitor_emit_event(monitor_call_monitor(call), "STOP", NULL);
	return 0;
}

static int fake_vm_cont_op(struct monitor_call *call, void *ctx)
{
	enum monitor_run_state state;
	fake_vm_query_status(ctx, &state);
	if (state == MONITOR_RUN_SHUTDOWN)
		return error_set(0, "the VM has shut down and cannot resume");
	fake_vm_set_state(ctx, MONITOR_RUN_RUNNING);
	monitor_emit_event(monitor_call_monitor(call), "RESUME", NULL);
	return 0;
}

static int fake_vm_quit_op(struct monitor_call *call, void *ctx)
{
	struct fake_vm *vm = ctx;
	pthread_mutex_lock(&vm->lock);
	vm->state = MONITOR_RUN_SHUTDOWN;
	vm->quit = true;
	pthread_cond_broadcast(&vm->cond);
	pthread_mutex_unlock(&vm->lock);
	monitor_emit_event(monitor_call_monitor(call), "SHUTDOWN", json_pack("{s:b,s:s}", "guest", 0, "reason", "host-qmp-quit"));
	return 0;
}

static int fake_vm_query_stats(void *ctx, json_t *stats)
{
	struct fake_vm *vm = ctx;
	pthread_mutex_lock(&vm->lock);
	unsigned q = vm->stats_queries++;
	pthread_mutex_unlock(&vm->lock);
	if (monitor_stat_set(stats, 12 + FAKE_VM_FAULTS_PER_QUERY * q, "mem.faults") ||
	    monitor_stat_set(stats, 5, "vcpu.%d.exits", 0) || monitor_stat_set(stats, 7, "vcpu.%d.exits", 1) ||
	    monitor_stat_set(stats, 4096, "mem.page_size") || monitor_stat_set(stats, 384, "mem.resident_pages"))
		return -ENOMEM;
	/* As guest memory reports it: every bucket of the histogram, the empty ones too. */
	for (unsigned b = 1; b <= 32; b++) {
		uint64_t n = b == 17 ? 5 : b == 20 ? 10 : 0;
		if (monitor_stat_set(stats, n, "mem.fault_latency_ns.lt_%llu", 1ull << b))
			return -ENOMEM;
	}
	if (q == 0 && monitor_stat_set(stats, 3, "object.1.resident"))
		return -ENOMEM;
	/* virsh domstats' names, as vm_stats gives them beside ours. */
	enum monitor_run_state state;
	fake_vm_query_status(vm, &state);
	uint64_t libvirt_state = state == MONITOR_RUN_RUNNING ? 1 : state == MONITOR_RUN_PAUSED ? 3 : 5;
	if (monitor_stat_set(stats, libvirt_state, "state.state") || monitor_stat_set(stats, 0, "state.reason") ||
	    monitor_stat_set(stats, FAKE_VM_CONFIG_MEMORY >> 10, "balloon.current") ||
	    monitor_stat_set(stats, FAKE_VM_CONFIG_MEMORY >> 10, "balloon.maximum") ||
	    monitor_stat_set(stats, FAKE_VM_BALLOON_RSS, "balloon.rss"))
		return -ENOMEM;
	return 0;
}

static const struct monitor_ops fake_vm_ops = {
	.query_status = fake_vm_query_status,
	.stop = fake_vm_stop_op,
	.cont = fake_vm_cont_op,
	.quit = fake_vm_quit_op,
	.query_stats = fake_vm_query_stats,
};

static int fake_vm_echo(struct monitor_call *call, void *ctx, json_t *args, json_t **ret)
{
	(void)call, (void)ctx;
	*ret = json_incref(args);
	return 0;
}

static int fake_vm_fail(struct monitor_call *call, void *ctx, json_t *args, json_t **ret)
{
	(void)ctx, (void)ret;
	json_t *klass = json_object_get(args, "class");
	if (klass)
		monitor_call_set_error_class(call, json_string_value(klass));
	return error_set(0, "the fake VM fails on purpose");
}

static char *fake_vm_filler(size_t bytes)
{
	char *s = malloc(bytes + 1);
	ck_assert_ptr_nonnull(s);
	memset(s, 'x', bytes);
	s[bytes] = '\0';
	return s;
}

static int fake_vm_big(struct monitor_call *call, void *ctx, json_t *args, json_t **ret)
{
	(void)call, (void)ctx;
	json_int_t bytes = json_integer_value(json_object_get(args, "bytes"));
	if (bytes < 0 || bytes > (64 << 20))
		return error_set(0, "bytes out of range");
	char *s = fake_vm_filler((size_t)bytes);
	*ret = json_pack("{s:s}", "data", s);
	free(s);
	return 0;
}

static int fake_vm_slow(struct monitor_call *call, void *ctx, json_t *args, json_t **ret)
{
	(void)args, (void)ret;
	struct fake_vm *vm = ctx;
	struct monitor_pending *p = monitor_call_defer(call);
	if (!p)
		return -ENOMEM;
	pthread_mutex_lock(&vm->lock);
	vm->slow = p;
	pthread_cond_broadcast(&vm->cond);
	pthread_mutex_unlock(&vm->lock);
	return MONITOR_PENDING;
}

static int fake_vm_emit(struct monitor_call *call, void *ctx, json_t *args, json_t **ret)
{
	(void)ctx, (void)ret;
	json_int_t count = json_integer_value(json_object_get(args, "count"));
	json_int_t bytes = json_integer_value(json_object_get(args, "bytes"));
	char *s = fake_vm_filler(bytes > 0 ? (size_t)bytes : 0);
	for (json_int_t i = 0; i < count; i++)
		monitor_emit_event(monitor_call_monitor(call), "TICK", json_pack("{s:I,s:s}", "index", i, "fill", s));
	free(s);
	return 0;
}

static int fake_vm_query_config(struct monitor_call *call, void *ctx, json_t *args, json_t **ret)
{
	(void)call, (void)args;
	struct fake_vm *vm = ctx;
	json_t *origin = vm->origin_snapshot ? json_pack("{s:s,s:s}", "store", vm->origin_store, "snapshot",
							 vm->origin_snapshot)
					     : json_null();
	json_t *fork = vm->fork_parent ? json_pack("{s:s,s:i,s:i}", "parent", vm->fork_parent, "index",
						   (int)vm->fork_index, "generation", (int)vm->fork_generation)
				       : json_null();
	*ret = json_pack("{s:s,s:I,s:i,s:s,s:s,s:n,s:o,s:o}", "name", vm->name, "memory",
			 (json_int_t)FAKE_VM_CONFIG_MEMORY, "vcpus", FAKE_VM_CONFIG_VCPUS, "kernel", FAKE_VM_CONFIG_KERNEL,
			 "cmdline", FAKE_VM_CONFIG_CMDLINE, "uuid", "origin", origin, "fork", fork);
	return *ret ? 0 : -ENOMEM;
}

static const struct monitor_arg fake_vm_echo_args[] = {
	{"s", MONITOR_ARG_STRING, true, "a string"},  {"i", MONITOR_ARG_INT, false, "an integer"},
	{"n", MONITOR_ARG_NUMBER, false, "a number"}, {"b", MONITOR_ARG_BOOL, false, "a boolean"},
	{"o", MONITOR_ARG_OBJECT, false, "an object"}, {"a", MONITOR_ARG_ARRAY, false, "an array"},
	{"x", MONITOR_ARG_ANY, false, "anything"},     {NULL},
};
static const struct monitor_arg fake_vm_fail_args[] = {{"class", MONITOR_ARG_STRING, false, "error class"}, {NULL}};
static const struct monitor_arg fake_vm_big_args[] = {{"bytes", MONITOR_ARG_INT, true, "reply size"}, {NULL}};
static const struct monitor_arg fake_vm_emit_args[] = {
	{"count", MONITOR_ARG_INT, true, "events"},
	{"bytes", MONITOR_ARG_INT, false, "filler per event"},
	{NULL},
};

static const struct monitor_command fake_vm_commands[] = {
	{"echo", fake_vm_echo, fake_vm_echo_args, "return the arguments"},
	{"vm-echo", fake_vm_echo, fake_vm_echo_args, "echo under a Mach call's name (vmm memory NAME CALL)"},
	{"fail", fake_vm_fail, fake_vm_fail_args, "fail on purpose"},
	{"big", fake_vm_big, fake_vm_big_args, "a large reply"},
	{"slow", fake_vm_slow, NULL, "a reply the test completes"},
	{"emit", fake_vm_emit, fake_vm_emit_args, "emit TICK events from the handler"},
	{"query-config", fake_vm_query_config, NULL, "the configuration, as a VM's query-config has it"},
	{NULL},
};

void fake_vm_start(struct fake_vm *vm, const char *name, bool listen)
{
	memset(vm, 0, sizeof(*vm));
	pthread_mutex_init(&vm->lock, NULL);
	pthread_cond_init(&vm->cond, NULL);
	vm->state = MONITOR_RUN_RUNNING;
	snprintf(vm->dir, sizeof(vm->dir), "/tmp/vmm-monitor-XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(vm->dir));
	snprintf(vm->path, sizeof(vm->path), "%s/%s.sock", vm->dir, name);
	snprintf(vm->name, sizeof(vm->name), "%s", name);
	struct monitor_config cfg = {.name = name, .ops = &fake_vm_ops, .ctx = vm};
	ck_assert_int_eq(monitor_create(&vm->mon, &cfg), 0);
	ck_assert_msg(monitor_add_commands(vm->mon, fake_vm_commands, vm) == 0, "%s", error_message());
	if (listen)
		ck_assert_msg(monitor_listen(vm->mon, vm->path) == 0, "listen: %s", error_message());
}

void fake_vm_stop(struct fake_vm *vm)
{
	monitor_destroy(vm->mon);
	vm->mon = NULL;
	unlink(vm->path);
	rmdir(vm->dir);
	pthread_cond_destroy(&vm->cond);
	pthread_mutex_destroy(&vm->lock);
}

/* Wait on vm->cond for @done, at most FAKE_VM_READ_TIMEOUT_S; vm->lock held. */
static void fake_vm_wait(struct fake_vm *vm, bool (*done)(struct fake_vm *), const char *what)
{
	struct timespec until;
	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_sec += FAKE_VM_READ_TIMEOUT_S;
	int r = 0;
	while (!done(vm) && r != ETIMEDOUT)
		r = pthread_cond_timedwait(&vm->cond, &vm->lock, &until);
	ck_assert_msg(done(vm), "%s did not happen within %d s", what, FAKE_VM_READ_TIMEOUT_S);
}

static bool fake_vm_has_slow(struct fake_vm *vm)
{
	return vm->slow != NULL;
}

static bool fake_vm_has_quit(struct fake_vm *vm)
{
	return vm->quit;
}

struct monitor_pending *fake_vm_take_slow(struct fake_vm *vm)
{
	pthread_mutex_lock(&vm->lock);
	fake_vm_wait(vm, fake_vm_has_slow, "the slow command");
	struct monitor_pending *p = vm->slow;
	vm->slow = NULL;
	pthread_mutex_unlock(&vm->lock);
	return p;
}

void fake_vm_wait_quit(struct fake_vm *vm)
{
	pthread_mutex_lock(&vm->lock);
	fake_vm_wait(vm, fake_vm_has_quit, "quit");
	pthread_mutex_unlock(&vm->lock);
}

void fake_vm_wait_clients(struct fake_vm *vm, unsigned n)
{
	/* The count changes on the server thread with no one to signal us: poll it. */
	for (int i = 0; i < FAKE_VM_READ_TIMEOUT_S * 1000 && monitor_client_count(vm->mon) != n; i++)
		usleep(1000);
	ck_assert_uint_eq(monitor_client_count(vm->mon), n);
}

TCase *fake_vm_tcase(Suite *s, const char *name, int timeout_s, SFun setup, SFun teardown)
{
	TCase *tc = tcase_create(name);
	tcase_set_timeout(tc, timeout_s);
	tcase_add_checked_fixture(tc, setup, teardown);
	suite_add_tcase(s, tc);
	return tc;
}

/* ---- the raw client ------------------------------------------------------------------ */

void fake_vm_connect(struct fake_vm_conn *c, const char *path)
{
	memset(c, 0, sizeof(*c));
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
	c->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	ck_assert_int_ge(c->fd, 0);
	ck_assert_msg(connect(c->fd, (struct sockaddr *)&sa, sizeof(sa)) == 0, "connect %s: %s", path, strerror(errno));
	struct timeval tv = {.tv_sec = FAKE_VM_READ_TIMEOUT_S};
	setsockopt(c->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(c->fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
}

void fake_vm_connect_ready(struct fake_vm_conn *c, const char *path)
{
	fake_vm_connect(c, path);
	json_t *greeting = fake_vm_read(c);
	ck_assert_ptr_nonnull(json_object_get(greeting, "QMP"));
	json_decref(greeting);
	json_t *r = fake_vm_cmd(c, "{\"execute\":\"qmp_capabilities\"}");
	fake_vm_return(r);
	json_decref(r);
}

void fake_vm_send_bytes(struct fake_vm_conn *c, const void *buf, size_t len)
{
	size_t off = 0;
	while (off < len) {
		ssize_t n = send(c->fd, (const char *)buf + off, len - off, MSG_NOSIGNAL);
		ck_assert_msg(n > 0, "send to the monitor: %s", strerror(errno));
		off += (size_t)n;
	}
}

void fake_vm_send(struct fake_vm_conn *c, const char *text)
{
	fake_vm_send_bytes(c, text, strlen(text));
}

/* Read more bytes; 0 at EOF. Fails the test on timeout or error. */
static size_t fake_vm_fill(struct fake_vm_conn *c)
{
	if (c->cap - c->len < 65536) {
		c->cap = c->cap ? c->cap * 2 : 131072;
		c->buf = realloc(c->buf, c->cap);
		ck_assert_ptr_nonnull(c->buf);
	}
	ssize_t n = recv(c->fd, c->buf + c->len, c->cap - c->len, 0);
	if (n < 0 && errno == ECONNRESET)
		return 0; /* closed with our unread bytes in its queue: still the end */
	ck_assert_msg(n >= 0, "no answer from the monitor within %d s (%s)", FAKE_VM_READ_TIMEOUT_S, strerror(errno));
	c->len += (size_t)n;
	return (size_t)n;
}

json_t *fake_vm_read(struct fake_vm_conn *c)
{
	size_t scanned = 0;
	for (;;) {
		char *nl = c->len > scanned ? memchr(c->buf + scanned, '\n', c->len - scanned) : NULL;
		if (nl) {
			size_t n = (size_t)(nl - c->buf);
			json_error_t err;
			json_t *j = json_loadb(c->buf, n, JSON_DECODE_ANY, &err);
			ck_assert_msg(j, "the monitor sent bad JSON: %s: %.*s", err.text, (int)(n > 200 ? 200 : n), c->buf);
			memmove(c->buf, nl + 1, c->len - n - 1);
			c->len -= n + 1;
			return j;
		}
		scanned = c->len;
		ck_assert_msg(fake_vm_fill(c) > 0, "the monitor closed the connection");
	}
}

json_t *fake_vm_read_reply(struct fake_vm_conn *c)
{
	for (;;) {
		json_t *j = fake_vm_read(c);
		if (!json_object_get(j, "event"))
			return j;
		json_decref(j);
	}
}

json_t *fake_vm_cmd(struct fake_vm_conn *c, const char *line)
{
	fake_vm_send(c, line);
	fake_vm_send(c, "\n");
	return fake_vm_read_reply(c);
}

size_t fake_vm_read_eof(struct fake_vm_conn *c)
{
	size_t total = c->len, n;
	c->len = 0;
	while ((n = fake_vm_fill(c)) > 0) {
		total += n;
		c->len = 0;
	}
	return total;
}

void fake_vm_close(struct fake_vm_conn *c)
{
	if (c->fd >= 0)
		close(c->fd);
	c->fd = -1;
	free(c->buf);
	c->buf = NULL;
}

const char *fake_vm_error_desc(json_t *reply, const char *klass)
{
	json_t *err = json_object_get(reply, "error");
	char *text = json_dumps(reply, JSON_COMPACT);
	ck_assert_msg(json_is_object(err), "expected an error, got %s", text);
	const char *got = json_string_value(json_object_get(err, "class"));
	ck_assert_msg(got && strcmp(got, klass) == 0, "expected class %s in %s", klass, text);
	free(text);
	const char *desc = json_string_value(json_object_get(err, "desc"));
	ck_assert_ptr_nonnull(desc);
	return desc;
}

json_t *fake_vm_return(json_t *reply)
{
	json_t *ret = json_object_get(reply, "return");
	if (!ret) {
		char *text = json_dumps(reply, JSON_COMPACT);
		ck_abort_msg("expected a return, got %s", text);
	}
	return ret;
}

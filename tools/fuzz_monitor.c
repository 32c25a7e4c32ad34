/*
 * Fuzz target: the monitor's line handling and dispatch (vmm/monitor.c) on arbitrary
 * bytes, through a socketless session, with a host whose commands take every argument
 * type. The first byte picks how the input is cut into reads, whether capabilities are
 * negotiated first, and whether the input is raw or wrapped: each line then becomes
 * {"execute":NAME,"arguments":REST}, NAME picked by the line's first byte, so that the
 * argument checks and the handlers are reached without the fuzzer having to find the
 * request syntax first.
 * Besides the sanitizers' findings, it aborts when an output line is not a JSON object
 * or a reply lacks "return"/"error": the server must answer garbage with well-formed errors.
 */
#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vmm/error.h"
#include "vmm/monitor/monitor.h"

static int fuzz_status(void *ctx, enum monitor_run_state *state)
{
	(void)ctx;
	*state = MONITOR_RUN_PAUSED;
	return 0;
}

static int fuzz_control(struct monitor_call *call, void *ctx)
{
	(void)call, (void)ctx;
	return 0;
}

static int fuzz_stats(void *ctx, json_t *stats)
{
	(void)ctx;
	return monitor_stat_set(stats, 1, "vcpu.%d.exits", 0);
}

static const struct monitor_ops fuzz_ops = {
	.query_status = fuzz_status,
	.stop = fuzz_control,
	.cont = fuzz_control,
	.quit = fuzz_control,
	.query_stats = fuzz_stats,
};

static int fuzz_echo(struct monitor_call *call, void *ctx, json_t *args, json_t **ret)
{
	(void)call, (void)ctx;
	*ret = json_incref(args);
	return 0;
}

static int fuzz_fail(struct monitor_call *call, void *ctx, json_t *args, json_t **ret)
{
	(void)ctx, (void)ret;
	json_t *klass = json_object_get(args, "class");
	if (klass)
		monitor_call_set_error_class(call, "DeviceNotFound");
	return error_set(0, "failed: %s", json_string_value(klass) ? json_string_value(klass) : "no class");
}

static const struct monitor_arg fuzz_echo_args[] = {
	{"s", MONITOR_ARG_STRING, true, ""}, {"i", MONITOR_ARG_INT, false, ""},   {"n", MONITOR_ARG_NUMBER, false, ""},
	{"b", MONITOR_ARG_BOOL, false, ""},  {"o", MONITOR_ARG_OBJECT, false, ""}, {"a", MONITOR_ARG_ARRAY, false, ""},
	{"x", MONITOR_ARG_ANY, false, ""},   {NULL},
};
static const struct monitor_arg fuzz_fail_args[] = {{"class", MONITOR_ARG_STRING, false, ""}, {NULL}};

static const struct monitor_command fuzz_commands[] = {
	{"echo", fuzz_echo, fuzz_echo_args, "return the arguments"},
	{"fail", fuzz_fail, fuzz_fail_args, "fail"},
	{NULL},
};

static struct monitor *fuzz_monitor(void)
{
	static struct monitor *mon;
	if (!mon) {
		struct monitor_config cfg = {.name = "fuzz", .ops = &fuzz_ops};
		if (monitor_create(&mon, &cfg) != 0 || monitor_add_commands(mon, fuzz_commands, NULL) != 0) {
			fprintf(stderr, "fuzz_monitor: %s\n", error_message());
			abort();
		}
	}
	return mon;
}

/* Every line must be a JSON object: the greeting, an event, or a reply. */
static void fuzz_check_output(const char *out, size_t len)
{
	const char *p = out, *end = out + len;
	while (p < end) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		if (!nl)
			abort(); /* output not ended by a newline */
		json_t *j = json_loadb(p, (size_t)(nl - p), 0, NULL);
		if (!json_is_object(j))
			abort();
		if (p != out && !json_object_get(j, "return") && !json_object_get(j, "error") &&
		    !json_object_get(j, "event"))
			abort();
		json_decref(j);
		p = nl + 1;
	}
}

static const char *const fuzz_names[] = {
	"qmp_capabilities", "query-version", "query-commands", "query-vmm", "query-stats", "query-status",
	"stop", "cont", "quit", "echo", "fail", "nosuch",
};

/* Feed each line of @data as {"execute":NAME,"arguments":REST}. */
static void fuzz_feed_wrapped(struct monitor_session *s, const uint8_t *data, size_t size)
{
	while (size) {
		const uint8_t *nl = memchr(data, '\n', size);
		size_t n = nl ? (size_t)(nl - data) : size;
		if (n) {
			char head[96];
			const char *name = fuzz_names[data[0] % (sizeof(fuzz_names) / sizeof(fuzz_names[0]))];
			int len = n > 1 ? snprintf(head, sizeof(head), "{\"execute\":\"%s\",\"id\":1,\"arguments\":", name)
					: snprintf(head, sizeof(head), "{\"execute\":\"%s\"", name);
			monitor_session_feed(s, head, (size_t)len);
			monitor_session_feed(s, data + 1, n - 1);
			monitor_session_feed(s, "}\n", 2);
		}
		data += nl ? n + 1 : n;
		size -= nl ? n + 1 : n;
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const char negotiate[] = "{\"execute\":\"qmp_capabilities\"}\n";
	if (size < 1)
		return 0;
	size_t piece = (size_t)(data[0] & 0x3f) * 4 + 1;
	bool negotiated = data[0] & 0x80, wrapped = data[0] & 0x40;
	data++;
	size--;
	struct monitor_session *s = monitor_session_open(fuzz_monitor());
	if (!s)
		abort();
	if (negotiated)
		monitor_session_feed(s, negotiate, sizeof(negotiate) - 1);
	if (wrapped)
		fuzz_feed_wrapped(s, data, size);
	else
		for (size_t off = 0; off < size; off += piece) {
			size_t n = size - off < piece ? size - off : piece;
			monitor_session_feed(s, data + off, n);
		}
	monitor_session_eof(s);
	size_t len;
	char *out = monitor_session_output(s, &len);
	if (out)
		fuzz_check_output(out, len);
	free(out);
	monitor_session_close(s);
	return 0;
}

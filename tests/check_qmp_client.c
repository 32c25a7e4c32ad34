/*
 * The monitor client (vmm/qmp_client.c) against a fake VM's monitor, and the CLI verbs
 * built on it (vmm ps, stats, inspect, stop, cont, quit) run as a user would run them.
 * XDG_RUNTIME_DIR points at a fresh directory: the fake VM "vm1" listens at its default
 * path there, so names resolve as they do for users. VMM_SYSTEM_RUNDIR stands for /run/vmm.
 */
#include <dirent.h>
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "fake_vm.h"
#include "harness.h"
#include "spawn.h"
#include "vmm/error.h"
#include "vmm/monitor/monitor.h"
#include "vmm/monitor/qmp_client.h"

#define TIMEOUT_MS 20000

static struct fake_vm vm;
static char rundir[160]; /* $XDG_RUNTIME_DIR/vmm */

static void setup(void)
{
	fake_vm_start(&vm, "vm1", false);
	setenv("XDG_RUNTIME_DIR", vm.dir, 1);
	setenv("VMM_SYSTEM_RUNDIR", "/nonexistent-vmm-system", 1); /* not this machine's /run/vmm */
	ck_assert_int_eq(monitor_socket_path("vm1", vm.path, sizeof(vm.path), true), 0);
	snprintf(rundir, sizeof(rundir), "%s/vmm", vm.dir);
	ck_assert_msg(monitor_listen(vm.mon, vm.path) == 0, "%s", error_message());
}

static void teardown(void)
{
	monitor_destroy(vm.mon);
	vm.mon = NULL;
	/* Whatever a test left in the runtime directory (stale sockets, logs, exports). */
	DIR *d = opendir(rundir);
	for (struct dirent *e; d && (e = readdir(d));) {
		char path[512];
		snprintf(path, sizeof(path), "%s/%s", rundir, e->d_name);
		if (e->d_name[0] != '.')
			unlink(path);
	}
	if (d)
		closedir(d);
	rmdir(rundir);
	fake_vm_stop(&vm);
}

/* A socket file at @path that refuses connections: what a killed VMM leaves behind. */
static void make_stale_socket(const char *path)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	ck_assert_uint_lt(strlen(path), sizeof(sa.sun_path));
	memcpy(sa.sun_path, path, strlen(path) + 1);
	int fd = socket(AF_UNIX, SOCK_STREAM, 0);
	ck_assert_int_eq(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	close(fd);
}

static struct qmp_client *connect_vm1(void)
{
	struct qmp_client *c;
	int r = qmp_client_connect(&c, vm.path, TIMEOUT_MS);
	ck_assert_msg(r == 0, "connect: %s", error_message());
	return c;
}

static enum monitor_run_state vm_state(void)
{
	pthread_mutex_lock(&vm.lock);
	enum monitor_run_state s = vm.state;
	pthread_mutex_unlock(&vm.lock);
	return s;
}

/* ---- the client ------------------------------------------------------------------------ */

START_TEST(connect_negotiates_and_executes)
{
	struct qmp_client *c = connect_vm1();
	const json_t *g = qmp_client_greeting(c);
	ck_assert_str_eq(json_string_value(json_object_get(json_object_get(json_object_get(g, "QMP"), "version"), "package")),
			 "vmm");
	json_t *ret = NULL;
	ck_assert_int_eq(qmp_client_execute(c, "query-version", NULL, &ret, TIMEOUT_MS), 0);
	ck_assert_int_eq(json_integer_value(json_object_get(json_object_get(ret, "qemu"), "minor")), 1);
	json_decref(ret);
	json_t *args = json_pack("{s:s,s:[i,i]}", "s", "hi", "a", 1, 2);
	ck_assert_int_eq(qmp_client_execute(c, "echo", args, &ret, TIMEOUT_MS), 0);
	ck_assert(json_equal(ret, args));
	json_decref(ret);
	json_decref(args);
	ck_assert_int_eq(qmp_client_execute(c, "stop", NULL, NULL, TIMEOUT_MS), 0);
	ck_assert_int_eq(vm_state(), MONITOR_RUN_PAUSED);
	qmp_client_close(c);
}
END_TEST

START_TEST(error_answers_are_eremoteio_with_class_and_desc)
{
	struct qmp_client *c = connect_vm1();
	json_t *ret = NULL;
	ck_assert_int_eq(qmp_client_execute(c, "fail", NULL, &ret, TIMEOUT_MS), -EREMOTEIO);
	ck_assert_ptr_null(ret);
	ck_assert_str_eq(qmp_client_error_class(c), "GenericError");
	ck_assert_str_eq(error_message(), "the fake VM fails on purpose");
	ck_assert_int_eq(qmp_client_execute(c, "nosuch", NULL, NULL, TIMEOUT_MS), -EREMOTEIO);
	ck_assert_str_eq(qmp_client_error_class(c), "CommandNotFound");
	json_t *args = json_pack("{s:i}", "s", 1);
	ck_assert_int_eq(qmp_client_execute(c, "echo", args, NULL, TIMEOUT_MS), -EREMOTEIO);
	ck_assert_str_eq(error_message(), "Invalid parameter type for 's', expected: string");
	json_decref(args);
	ck_assert_int_eq(qmp_client_execute(c, "query-status", NULL, NULL, TIMEOUT_MS), 0);
	ck_assert_str_eq(qmp_client_error_class(c), "");
	qmp_client_close(c);
}
END_TEST

START_TEST(events_that_arrive_during_a_command_are_kept_in_order)
{
	struct qmp_client *c = connect_vm1();
	json_t *args = json_pack("{s:i}", "count", 3);
	ck_assert_int_eq(qmp_client_execute(c, "emit", args, NULL, TIMEOUT_MS), 0);
	json_decref(args);
	ck_assert_int_eq(monitor_emit_event(vm.mon, "LATER", NULL), 0);
	for (int i = 0; i < 4; i++) {
		json_t *ev;
		ck_assert_int_eq(qmp_client_next_event(c, &ev, TIMEOUT_MS), 0);
		ck_assert_str_eq(json_string_value(json_object_get(ev, "event")), i < 3 ? "TICK" : "LATER");
		if (i < 3)
			ck_assert_int_eq(json_integer_value(json_object_get(json_object_get(ev, "data"), "index")), i);
		ck_assert_ptr_nonnull(json_object_get(ev, "timestamp"));
		json_decref(ev);
	}
	json_t *ev = NULL;
	ck_assert_int_eq(qmp_client_next_event(c, &ev, 0), -ETIMEDOUT);
	ck_assert_ptr_null(ev);
	qmp_client_close(c);
}
END_TEST

START_TEST(an_answer_too_late_does_not_confuse_the_next_command)
{
	struct qmp_client *c = connect_vm1();
	ck_assert_int_eq(qmp_client_execute(c, "slow", NULL, NULL, 100), -ETIMEDOUT);
	monitor_reply_later(fake_vm_take_slow(&vm), 0, json_pack("{s:b}", "late", 1));
	json_t *ret = NULL;
	ck_assert_int_eq(qmp_client_execute(c, "query-status", NULL, &ret, TIMEOUT_MS), 0);
	ck_assert_str_eq(json_string_value(json_object_get(ret, "status")), "running");
	json_decref(ret);
	qmp_client_close(c);
}
END_TEST

START_TEST(a_closed_connection_is_econnreset)
{
	struct qmp_client *c = connect_vm1();
	monitor_destroy(vm.mon);
	vm.mon = NULL;
	json_t *ev;
	ck_assert_int_eq(qmp_client_next_event(c, &ev, TIMEOUT_MS), -ECONNRESET);
	ck_assert_int_lt(qmp_client_execute(c, "query-status", NULL, NULL, TIMEOUT_MS), 0);
	qmp_client_close(c);
}
END_TEST

START_TEST(open_by_name_uses_the_runtime_directory)
{
	struct qmp_client *c;
	ck_assert_msg(qmp_client_open(&c, "vm1", NULL, TIMEOUT_MS) == 0, "%s", error_message());
	json_t *ret;
	ck_assert_int_eq(qmp_client_execute(c, "query-vmm", NULL, &ret, TIMEOUT_MS), 0);
	ck_assert_str_eq(json_string_value(json_object_get(ret, "name")), "vm1");
	ck_assert_str_eq(json_string_value(json_object_get(ret, "socket")), vm.path);
	json_decref(ret);
	qmp_client_close(c);
	ck_assert_int_eq(qmp_client_open(&c, "ignored", vm.path, TIMEOUT_MS), 0); /* a path wins over a name */
	qmp_client_close(c);
}
END_TEST

START_TEST(open_says_which_vm_is_missing_or_stale)
{
	struct qmp_client *c;
	char want[300];
	ck_assert_int_eq(qmp_client_open(&c, "nosuch", NULL, TIMEOUT_MS), -ENOENT);
	snprintf(want, sizeof(want), "no VM named 'nosuch' (no socket at %s/nosuch.sock)", rundir);
	ck_assert_str_eq(error_message(), want);
	ck_assert_int_eq(qmp_client_open(&c, NULL, "/nonexistent/x.sock", TIMEOUT_MS), -ENOENT);
	ck_assert_str_eq(error_message(), "no monitor socket at /nonexistent/x.sock");
	char stale[200];
	snprintf(stale, sizeof(stale), "%s/old.sock", rundir);
	make_stale_socket(stale);
	ck_assert_int_eq(qmp_client_open(&c, "old", NULL, TIMEOUT_MS), -ECONNREFUSED);
	snprintf(want, sizeof(want), "VM 'old' is not running (stale socket at %s)", stale);
	ck_assert_str_eq(error_message(), want);
	ck_assert_int_eq(qmp_client_open(&c, ".hidden", NULL, TIMEOUT_MS), -EINVAL);
	ck_assert_msg(strstr(error_message(), "starts with a dot"), "%s", error_message());
	/* A name whose socket would be an exported range's (NAME.export-N.sock). */
	ck_assert_int_eq(qmp_client_open(&c, "old.export-1", NULL, TIMEOUT_MS), -EINVAL);
	ck_assert_msg(strstr(error_message(), "exported range"), "%s", error_message());
	ck_assert_int_eq(monitor_name_check("old.export-"), 0);
	ck_assert_int_eq(monitor_name_check("old.export-x"), 0);
}
END_TEST

START_TEST(a_refusing_server_is_eperm_with_its_reason)
{
	static struct fake_vm_conn conns[MONITOR_MAX_CLIENTS];
	for (int i = 0; i < MONITOR_MAX_CLIENTS; i++) {
		fake_vm_connect(&conns[i], vm.path);
		json_decref(fake_vm_read(&conns[i]));
	}
	struct qmp_client *c;
	ck_assert_int_eq(qmp_client_connect(&c, vm.path, TIMEOUT_MS), -EPERM);
	ck_assert_msg(strstr(error_message(), "refused the connection: too many monitor clients"), "%s",
		      error_message());
	for (int i = 0; i < MONITOR_MAX_CLIENTS; i++)
		fake_vm_close(&conns[i]);
}
END_TEST

START_TEST(a_server_that_is_not_qmp_is_eproto)
{
	static const char *const texts[] = {"hello there\n", "{\"hello\":1}\n", "[1,2]\n"};
	for (size_t i = 0; i < sizeof(texts) / sizeof(texts[0]); i++) {
		char path[200];
		snprintf(path, sizeof(path), "%s/fake%zu.sock", rundir, i);
		pid_t pid = spawn_serve_once(path, texts[i]);
		struct qmp_client *c;
		ck_assert_int_eq(qmp_client_connect(&c, path, TIMEOUT_MS), -EPROTO);
		ck_assert_msg(strstr(error_message(), path), "%s", error_message());
		int status;
		waitpid(pid, &status, 0);
		unlink(path);
	}
}
END_TEST

/* A server that answers a line it could not read with an error without id (what the
 * monitor does when the line does not begin with its id): the request in flight fails
 * with that error instead of waiting for an answer that will never come. */
START_TEST(an_error_without_id_answers_the_request_in_flight)
{
	char path[200];
	snprintf(path, sizeof(path), "%s/noid.sock", rundir);
	pid_t pid = spawn_serve_once(path, "{\"QMP\":{\"version\":{},\"capabilities\":[]}}\n{\"return\":{},\"id\":1}\n"
				     "{\"error\":{\"class\":\"GenericError\",\"desc\":\"request line too long\"}}\n");
	struct qmp_client *c;
	ck_assert_msg(qmp_client_connect(&c, path, TIMEOUT_MS) == 0, "%s", error_message());
	ck_assert_int_eq(qmp_client_execute(c, "query-version", NULL, NULL, TIMEOUT_MS), -EREMOTEIO);
	ck_assert_str_eq(error_message(), "request line too long");
	ck_assert_str_eq(qmp_client_error_class(c), "GenericError");
	qmp_client_close(c);
	int status;
	waitpid(pid, &status, 0);
	unlink(path);
}
END_TEST

/* A JSON string of @len x's. */
static json_t *filler(size_t len)
{
	char *text = malloc(len + 1);
	ck_assert_ptr_nonnull(text);
	memset(text, 'x', len);
	text[len] = '\0';
	json_t *j = json_string(text);
	free(text);
	return j;
}

/* A request longer than the monitor's line limit is refused before sending (the
 * connection stays usable); one of the documented vm-write size goes through. */
START_TEST(requests_over_the_line_limit_are_emsgsize_and_the_maximum_goes_through)
{
	struct qmp_client *c = connect_vm1();
	json_t *args = json_object();
	json_object_set_new(args, "s", filler(MONITOR_LINE_MAX));
	ck_assert_int_eq(qmp_client_execute(c, "echo", args, NULL, TIMEOUT_MS), -EMSGSIZE);
	ck_assert_msg(strstr(error_message(), "the request 'echo' is"), "%s", error_message());

	size_t base64_len = (MONITOR_DATA_MAX + 2) / 3 * 4;
	json_object_set_new(args, "s", filler(base64_len));
	json_object_set_new(args, "i", json_integer(INT64_MAX));
	json_t *ret = NULL;
	ck_assert_msg(qmp_client_execute(c, "echo", args, &ret, TIMEOUT_MS) == 0, "%s", error_message());
	ck_assert_uint_eq(strlen(json_string_value(json_object_get(ret, "s"))), base64_len);
	json_decref(ret);
	json_decref(args);
	qmp_client_close(c);
}
END_TEST

/* ---- the verbs ---------------------------------------------------------------------------- */

static void expect_status(struct spawn_result *r, int status, const char *err)
{
	ck_assert_msg(r->status == status, "status %d (expected %d); stderr: %s", r->status, status, r->err);
	ck_assert_msg(err ? strcmp(r->err, err) == 0 : !*r->err, "stderr '%s', expected '%s'", r->err, err ? err : "");
}

START_TEST(stats_prints_sorted_aligned_lines)
{
	struct spawn_result r;
	ck_assert_int_eq(spawn_vmm(&r, 30, "stats", "vm1", NULL), 0);
	expect_status(&r, 0, NULL);
	char prev[128] = "";
	int value_col = -1, lines = 0;
	bool faults = false;
	char *chart = strstr(r.out, "mem.fault_latency_ns:"); /* the histogram's chart follows the lines */
	ck_assert_ptr_nonnull(chart);
	*chart = '\0';
	for (char *line = strtok(r.out, "\n"); line; line = strtok(NULL, "\n"), lines++) {
		char key[128];
		long long v;
		int col;
		ck_assert_msg(sscanf(line, "%127s %n%lld", key, &col, &v) == 2, "line '%s'", line);
		ck_assert_msg(strcmp(prev, key) < 0, "'%s' after '%s'", key, prev);
		ck_assert_msg(value_col < 0 || col == value_col, "value of '%s' at column %d, not %d", key, col, value_col);
		value_col = col;
		snprintf(prev, sizeof(prev), "%s", key);
		faults |= strcmp(key, "mem.faults") == 0 && v == 12;
	}
	ck_assert(faults);
	ck_assert_int_ge(lines, 10); /* 3 from the VM, 8 from the monitor */
	spawn_free(&r);
}
END_TEST

/* Every sample is {"time", "vm", "status", "stats"}; "stats" has the same keys in every
 * sample, those a VM stops reporting as null, and every bucket of the histogram. */
START_TEST(stats_json_samples_have_a_fixed_schema)
{
	struct spawn_result r;
	ck_assert_int_eq(spawn_vmm(&r, 30, "stats", "--json", "-w", "10ms", "-N", "2", "--monitor", vm.path, NULL), 0);
	expect_status(&r, 0, NULL);
	json_t *first = NULL;
	int lines = 0;
	for (char *line = strtok(r.out, "\n"); line; line = strtok(NULL, "\n"), lines++) {
		json_t *j = json_loads(line, 0, NULL);
		ck_assert_msg(json_is_object(j) && json_object_size(j) == 4, "not a sample: %s", line);
		double t = json_real_value(json_object_get(j, "time"));
		ck_assert_msg(t > (double)time(NULL) - 60 && t < (double)time(NULL) + 1, "time %f in %s", t, line);
		ck_assert_str_eq(json_string_value(json_object_get(j, "vm")), "vm1"); /* --monitor: the VM's own name */
		ck_assert_str_eq(json_string_value(json_object_get(j, "status")), "running");
		json_t *stats = json_object_get(j, "stats");
		ck_assert_int_eq(json_integer_value(json_object_get(stats, "vcpu.1.exits")), 7);
		ck_assert_int_eq(json_integer_value(json_object_get(stats, "mem.faults")), 12 + FAKE_VM_FAULTS_PER_QUERY * lines);
		ck_assert_int_eq(json_integer_value(json_object_get(stats, "mem.fault_latency_ns.lt_131072")), 5);
		ck_assert(json_is_integer(json_object_get(stats, "mem.fault_latency_ns.lt_2")));
		json_t *gone = json_object_get(stats, "object.1.resident");
		ck_assert(lines == 0 ? json_integer_value(gone) == 3 : json_is_null(gone));
		if (!first) {
			first = j;
			continue;
		}
		/* The same keys in the same order. */
		void *a = json_object_iter(json_object_get(first, "stats")), *b = json_object_iter(stats);
		for (; a && b; a = json_object_iter_next(json_object_get(first, "stats"), a),
			       b = json_object_iter_next(stats, b))
			ck_assert_str_eq(json_object_iter_key(a), json_object_iter_key(b));
		ck_assert(!a && !b);
		json_decref(j);
	}
	ck_assert_int_eq(lines, 2);
	json_decref(first);
	spawn_free(&r);
}
END_TEST

/* KEY...: exact keys, or prefixes ending in '.'; one that selects nothing is an error. */
START_TEST(stats_keys_select_exact_keys_and_prefixes)
{
	struct spawn_result r;
	ck_assert_int_eq(spawn_vmm(&r, 30, "stats", "vm1", "mem.faults", "vcpu.", NULL), 0);
	expect_status(&r, 0, NULL);
	ck_assert_str_eq(r.out, "mem.faults   12\n"
				"vcpu.0.exits 5\n"
				"vcpu.1.exits 7\n");
	spawn_free(&r);
	ck_assert_int_eq(spawn_vmm(&r, 30, "stats", "vm1", "--json", "vcpu.", "mem.faults", NULL), 0);
	expect_status(&r, 0, NULL);
	json_t *j = json_loads(r.out, 0, NULL);
	json_t *want = json_pack("{s:i,s:i,s:i}", "mem.faults", 22, "vcpu.0.exits", 5, "vcpu.1.exits", 7);
	ck_assert_msg(json_equal(json_object_get(j, "stats"), want), "%s", r.out);
	json_decref(want);
	json_decref(j);
	spawn_free(&r);
	static const char *const nothing[] = {"nosuch.", "mem.fault", "mem", "vcpu.0"};
	for (size_t i = 0; i < sizeof(nothing) / sizeof(nothing[0]); i++) {
		ck_assert_int_eq(spawn_vmm(&r, 30, "stats", "vm1", "mem.faults", nothing[i], NULL), 0);
		char err[128];
		snprintf(err, sizeof(err), "vmm stats: '%s' matches no statistic of VM 'vm1'\n", nothing[i]);
		expect_status(&r, 125, err);
		ck_assert_str_eq(r.out, "");
		spawn_free(&r);
	}
}
END_TEST

/* virsh domstats' names beside ours: state.* follows the run state, balloon.* in KiB. */
START_TEST(stats_has_virsh_domstats_names)
{
	struct spawn_result r;
	ck_assert_int_eq(spawn_vmm(&r, 30, "stats", "vm1", "state.", "balloon.", NULL), 0);
	expect_status(&r, 0, NULL);
	ck_assert_str_eq(r.out, "balloon.current 262144\n"
				"balloon.maximum 262144\n"
				"balloon.rss     1536\n"
				"state.reason    0\n"
				"state.state     1\n");
	spawn_free(&r);
	ck_assert_int_eq(spawn_vmm(&r, 30, "stop", "vm1", NULL), 0);
	expect_status(&r, 0, NULL);
	spawn_free(&r);
	ck_assert_int_eq(spawn_vmm(&r, 30, "stats", "vm1", "--json", "state.state", NULL), 0);
	expect_status(&r, 0, NULL);
	json_t *j = json_loads(r.out, 0, NULL);
	json_t *want = json_pack("{s:i}", "state.state", 3);
	ck_assert_msg(json_equal(json_object_get(j, "stats"), want), "%s", r.out);
	json_decref(want);
	json_decref(j);
	spawn_free(&r);
}
END_TEST

/* The fault-latency histogram: its non-empty buckets in the order of their bounds
 * (lt_131072 before lt_1048576), bars scaled to the largest, p50 and p99 interpolated
 * in the bucket that holds them (lt_1048576 holds [524288, 1048576) ns: 655 us, 1.04 ms). */
START_TEST(stats_text_charts_the_latency_histogram_in_numeric_order)
{
	struct spawn_result r;
	ck_assert_int_eq(spawn_vmm(&r, 30, "stats", "vm1", NULL), 0);
	expect_status(&r, 0, NULL);
	const char *chart = "\nmem.fault_latency_ns: 15 values, p50 655us, p99 1.04ms\n"
			    "  < 131us   5 ####################\n"
			    "  < 1.05ms 10 ########################################\n";
	ck_assert_msg(strstr(r.out, chart), "no chart in:\n%s", r.out);
	ck_assert_msg(!strstr(r.out, ".lt_"), "bucket lines in:\n%s", r.out);
	spawn_free(&r);
}
END_TEST

/* The value of @key in the text @sample, and its rate (-1 when none is shown). */
static long long text_value(const char *sample, const char *key, double *rate)
{
	char want[128];
	snprintf(want, sizeof(want), "\n%s ", key);
	const char *line = strstr(sample, want);
	ck_assert_msg(line, "no %s in:\n%s", key, sample);
	long long v;
	int end = 0;
	ck_assert_int_eq(sscanf(line + strlen(want), " %lld%n", &v, &end), 1);
	*rate = -1;
	const char *rest = line + strlen(want) + end, *nl = strchr(rest, '\n');
	if (strstr(rest, "/s") && strstr(rest, "/s") < nl)
		ck_assert_int_eq(sscanf(rest, " %lf/s", rate), 1);
	return v;
}

/* With --watch, counters show their rate since the previous sample: the fake VM counts
 * FAKE_VM_FAULTS_PER_QUERY faults a query, 100 ms or more apart. */
START_TEST(stats_watch_shows_the_rates_of_counters)
{
	struct spawn_result r;
	ck_assert_int_eq(spawn_vmm(&r, 30, "stats", "vm1", "-w", "100ms", "-N", "2", NULL), 0);
	expect_status(&r, 0, NULL);
	char *second = strstr(r.out, "\n\n");
	ck_assert_ptr_nonnull(second);
	*second = '\0';
	char first[4096];
	snprintf(first, sizeof(first), "\n%s", r.out);
	double rate;
	ck_assert_int_eq(text_value(first, "mem.faults", &rate), 12);
	ck_assert_msg(rate < 0, "a rate in the first sample");
	ck_assert_int_eq(text_value(second + 1, "mem.faults", &rate), 22);
	ck_assert_msg(rate > 0 && rate <= 1000.0 * FAKE_VM_FAULTS_PER_QUERY / 100 + 0.05, "rate %f", rate);
	ck_assert_int_eq(text_value(second + 1, "vcpu.1.exits", &rate), 7);
	ck_assert_msg(rate == 0, "rate %f", rate);
	ck_assert_int_eq(text_value(second + 1, "mem.page_size", &rate), 4096); /* not a counter */
	ck_assert_msg(rate < 0, "rate %f", rate);
	spawn_free(&r);
}
END_TEST

START_TEST(stats_watch_prints_count_samples)
{
	struct spawn_result r;
	ck_assert_int_eq(spawn_vmm(&r, 30, "stats", "vm1", "--watch", "10ms", "--count", "3", NULL), 0);
	expect_status(&r, 0, NULL);
	int samples = 1;
	for (const char *p = r.out; (p = strstr(p, "\n\n")); p += 2)
		samples++;
	ck_assert_int_eq(samples, 3);
	spawn_free(&r);
	ck_assert_int_eq(spawn_vmm(&r, 30, "stats", "vm1", "-w", "10ms", "-N", "2", "--json", NULL), 0);
	expect_status(&r, 0, NULL);
	int lines = 0;
	for (char *line = strtok(r.out, "\n"); line; line = strtok(NULL, "\n"), lines++) {
		json_t *j = json_loads(line, 0, NULL);
		ck_assert(json_is_object(j));
		json_decref(j);
	}
	ck_assert_int_eq(lines, 2);
	spawn_free(&r);
}
END_TEST

/* Without NAME: every VM ps lists, a line each (a sample each with --json). */
START_TEST(stats_without_name_shows_every_vm)
{
	struct fake_vm vm2;
	fake_vm_start(&vm2, "vm2", false);
	ck_assert_int_eq(monitor_socket_path("vm2", vm2.path, sizeof(vm2.path), true), 0);
	ck_assert_msg(monitor_listen(vm2.mon, vm2.path) == 0, "%s", error_message());
	pthread_mutex_lock(&vm2.lock);
	vm2.state = MONITOR_RUN_PAUSED;
	pthread_mutex_unlock(&vm2.lock);
	char stale[200];
	snprintf(stale, sizeof(stale), "%s/old.sock", rundir);
	make_stale_socket(stale);
	struct spawn_result r;
	ck_assert_int_eq(spawn_vmm(&r, 30, "stats", NULL), 0);
	expect_status(&r, 0, NULL);
	ck_assert_str_eq(r.out, "NAME  STATUS        EXITS  RESIDENT_MIB      FAULTS\n"
				"old   stale             -             -           -\n"
				"vm1   running          12           1.5          12\n"
				"vm2   paused           12           1.5          12\n");
	spawn_free(&r);

	ck_assert_int_eq(spawn_vmm(&r, 30, "stats", "-w", "100ms", "-N", "2", NULL), 0);
	expect_status(&r, 0, NULL);
	char *second = strstr(r.out, "\n\n");
	ck_assert_ptr_nonnull(second);
	ck_assert_msg(strstr(r.out, "FAULTS/S\nold   stale             -             -           -\n"
				    "vm1   running          12           1.5           -\n"),
		      "%s", r.out);
	double rate;
	ck_assert_msg(sscanf(strstr(second, "\nvm1 "), "\nvm1 running 12 1.5 %lf", &rate) == 1, "%s", second);
	ck_assert_msg(rate > 0 && rate <= 1000.0 * FAKE_VM_FAULTS_PER_QUERY / 100 + 0.05, "rate %f", rate);
	spawn_free(&r);

	ck_assert_int_eq(spawn_vmm(&r, 30, "stats", "--json", "-w", "10ms", "-N", "2", NULL), 0);
	expect_status(&r, 0, NULL);
	static const char *const names[] = {"old", "vm1", "vm2"}, *const status[] = {"stale", "running", "paused"};
	int lines = 0;
	for (char *line = strtok(r.out, "\n"); line; line = strtok(NULL, "\n"), lines++) {
		json_t *j = json_loads(line, 0, NULL);
		ck_assert_msg(json_is_object(j) && json_object_size(j) == 4 && json_is_real(json_object_get(j, "time")),
			      "%s", line);
		ck_assert_str_eq(json_string_value(json_object_get(j, "vm")), names[lines % 3]);
		ck_assert_str_eq(json_string_value(json_object_get(j, "status")), status[lines % 3]);
		json_t *stats = json_object_get(j, "stats");
		ck_assert(lines % 3 == 0 ? json_is_null(stats)
					 : json_integer_value(json_object_get(stats, "vcpu.0.exits")) == 5);
		json_decref(j);
	}
	ck_assert_int_eq(lines, 6);
	spawn_free(&r);
	fake_vm_stop(&vm2);
}
END_TEST

START_TEST(control_verbs_stop_cont_and_quit_the_vm)
{
	struct spawn_result r;
	ck_assert_int_eq(spawn_vmm(&r, 30, "stop", "vm1", NULL), 0);
	expect_status(&r, 0, NULL);
	ck_assert_str_eq(r.out, "");
	spawn_free(&r);
	ck_assert_int_eq(vm_state(), MONITOR_RUN_PAUSED);
	ck_assert_int_eq(spawn_vmm(&r, 30, "cont", "--monitor", vm.path, NULL), 0);
	expect_status(&r, 0, NULL);
	spawn_free(&r);
	ck_assert_int_eq(vm_state(), MONITOR_RUN_RUNNING);
	ck_assert_int_eq(spawn_vmm(&r, 30, "quit", "vm1", NULL), 0);
	expect_status(&r, 0, NULL);
	spawn_free(&r);
	fake_vm_wait_quit(&vm);
	ck_assert_int_eq(spawn_vmm(&r, 30, "cont", "vm1", NULL), 0);
	expect_status(&r, 1, "vmm cont: the VM has shut down and cannot resume\n");
	spawn_free(&r);
}
END_TEST

START_TEST(missing_and_stale_vms_are_one_line_and_125)
{
	struct spawn_result r;
	char want[300];
	ck_assert_int_eq(spawn_vmm(&r, 30, "stats", "nosuch", NULL), 0);
	snprintf(want, sizeof(want), "vmm stats: no VM named 'nosuch' (no socket at %s/nosuch.sock)\n", rundir);
	expect_status(&r, 125, want);
	spawn_free(&r);
	char stale[200];
	snprintf(stale, sizeof(stale), "%s/old.sock", rundir);
	make_stale_socket(stale);
	ck_assert_int_eq(spawn_vmm(&r, 30, "stop", "old", NULL), 0);
	snprintf(want, sizeof(want), "vmm stop: VM 'old' is not running (stale socket at %s)\n", stale);
	expect_status(&r, 125, want);
	spawn_free(&r);
	ck_assert_int_eq(spawn_vmm(&r, 30, "quit", "etc/vm", NULL), 0);
	expect_status(&r, 125,
		      "vmm quit: VM name 'etc/vm' has a character other than letters, digits, '-', '_' and '.'\n");
	spawn_free(&r);
}
END_TEST

/* The uptime column of ps's table @text, which says how long a process has run, replaced
 * by "*" on every row (right-aligned as it was), for comparing the rest exactly. */
static void mask_uptime(char *text)
{
	const char *col = strstr(text, "UPTIME");
	ck_assert_ptr_nonnull(col);
	size_t end = (size_t)(col - text) + strlen("UPTIME");
	for (char *line = text; line && *line; line = strchr(line, '\n') ? strchr(line, '\n') + 1 : NULL) {
		char *nl = strchr(line, '\n');
		if (line == text || (nl ? (size_t)(nl - line) : strlen(line)) < end)
			continue;
		memset(line + end - 7, ' ', 7);
		line[end - 1] = '*';
	}
}

START_TEST(ps_lists_live_and_stale_vms)
{
	char stale[200], exported[200];
	snprintf(stale, sizeof(stale), "%s/old.sock", rundir);
	make_stale_socket(stale);
	/* A range vm1 exports: a socket beside the VMs', not a VM. */
	snprintf(exported, sizeof(exported), "%s/vm1.export-1.sock", rundir);
	make_stale_socket(exported);
	struct spawn_result r;
	ck_assert_int_eq(spawn_vmm(&r, 30, "ps", NULL), 0);
	expect_status(&r, 0, "vmm ps: 1 stale; vmm rm --stale removes them\n");
	char want[1024];
	snprintf(want, sizeof(want),
		 "NAME  STATUS       PID  CPUS     MEMORY   RESIDENT   UPTIME  PARENT  SOCKET\n"
		 "old   stale          -     -          -          -        *  -       %s\n"
		 "vm1   running  %7d     2  256.0 MiB    1.5 MiB        *  -       %s\n",
		 stale, (int)getpid(), vm.path);
	mask_uptime(r.out);
	ck_assert_str_eq(r.out, want);
	spawn_free(&r);
	ck_assert_int_eq(spawn_vmm(&r, 30, "ps", "--json", NULL), 0);
	expect_status(&r, 0, NULL);
	json_t *rows = json_loads(r.out, 0, NULL);
	/* The uptime is how long this test has run: whole seconds, never negative. */
	json_t *up = json_object_get(json_array_get(rows, 1), "uptime");
	ck_assert_msg(json_is_integer(up) && json_integer_value(up) >= 0, "uptime in %s", r.out);
	json_object_set_new(json_array_get(rows, 1), "uptime", json_integer(0));
	snprintf(want, sizeof(want),
		 "[{\"name\":\"old\",\"status\":\"stale\",\"running\":null,\"pid\":null,\"vcpus\":null,"
		 "\"memory\":null,\"resident\":null,\"uptime\":null,\"parent\":null,\"socket\":\"%s\"},"
		 "{\"name\":\"vm1\",\"status\":\"running\",\"running\":true,\"pid\":%d,\"vcpus\":2,"
		 "\"memory\":%llu,\"resident\":1572864,\"uptime\":0,\"parent\":null,\"socket\":\"%s\"}]",
		 stale, (int)getpid(), (unsigned long long)FAKE_VM_CONFIG_MEMORY, vm.path);
	json_t *w = json_loads(want, 0, NULL);
	ck_assert_msg(json_equal(rows, w), "got %s", r.out);
	json_decref(w);
	json_decref(rows);
	spawn_free(&r);
	ck_assert_int_eq(spawn_vmm(&r, 30, "ps", "--monitor", vm.path, NULL), 0);
	expect_status(&r, 0, NULL);
	ck_assert_msg(strstr(r.out, "vm1   running") && !strstr(r.out, "old"), "%s", r.out);
	spawn_free(&r);
}
END_TEST

/* PARENT: the VM a fork child came from, or the snapshot a VM was restored from. */
START_TEST(ps_shows_the_parent_of_a_fork_and_of_a_restore)
{
	vm.fork_parent = "web";
	vm.fork_index = 3;
	vm.fork_generation = 1;
	struct spawn_result r;
	ck_assert_int_eq(spawn_vmm(&r, 30, "ps", NULL), 0);
	expect_status(&r, 0, NULL);
	ck_assert_msg(strstr(r.out, "  web     /"), "%s", r.out);
	spawn_free(&r);
	vm.fork_parent = NULL;
	vm.origin_store = "/srv/store";
	vm.origin_snapshot = "base";
	ck_assert_int_eq(spawn_vmm(&r, 30, "ps", "--json", NULL), 0);
	expect_status(&r, 0, NULL);
	ck_assert_msg(strstr(r.out, "\"parent\":\"snapshot base\""), "%s", r.out);
	spawn_free(&r);
}
END_TEST

/* vmm memory NAME CALL KEY=VALUE...: the values typed (true/false, decimal, hex, K/M/G/T
 * sizes, else strings), the answer printed as JSON; a VM's refusal is status 1 with its
 * words; what is no Mach call or no KEY=VALUE is refused before the VM is asked. */
START_TEST(memory_sends_a_mach_call_with_typed_arguments)
{
	struct spawn_result r;
	ck_assert_int_eq(spawn_vmm(&r, 30, "memory", "--json", "vm1", "vm-echo", "s=/srv/data img", "i=4G", "b=true",
				   "x=0x", NULL),
			 0);
	expect_status(&r, 0, NULL);
	json_t *got = json_loads(r.out, 0, NULL);
	ck_assert_msg(got, "%s", r.out);
	ck_assert_str_eq(json_string_value(json_object_get(got, "s")), "/srv/data img");
	ck_assert_int_eq(json_integer_value(json_object_get(got, "i")), 4ll << 30);
	ck_assert(json_is_true(json_object_get(got, "b")));
	ck_assert_str_eq(json_string_value(json_object_get(got, "x")), "0x");
	json_decref(got);
	spawn_free(&r);
	ck_assert_int_eq(spawn_vmm(&r, 30, "memory", "vm1", "vm-echo", "s=a", "i=0x10", NULL), 0);
	expect_status(&r, 0, NULL);
	ck_assert_msg(strstr(r.out, "\"i\": 16") && strstr(r.out, "\"s\": \"a\""), "%s", r.out);
	spawn_free(&r);
	ck_assert_int_eq(spawn_vmm(&r, 30, "memory", "vm1", "vm-echo", "i=1", NULL), 0);
	ck_assert_int_eq(r.status, 1);
	ck_assert_msg(strstr(r.err, "vmm memory: ") && strstr(r.err, "'s'"), "%s", r.err);
	spawn_free(&r);
	ck_assert_int_eq(spawn_vmm(&r, 30, "memory", "vm1", "quit", NULL), 0);
	expect_status(&r, 125, "vmm memory: 'quit' is not one of the monitor's Mach calls (vm-map, vm-region, ...; see vmm memory --help)\n");
	spawn_free(&r);
	ck_assert_int_eq(spawn_vmm(&r, 30, "memory", "vm1", "vm-echo", "s", NULL), 0);
	expect_status(&r, 125, "vmm memory: argument 's' is not KEY=VALUE\n");
	spawn_free(&r);
	ck_assert_int_eq(spawn_vmm(&r, 30, "memory", "vm1", "vm-echo", "s=a", "s=b", NULL), 0);
	expect_status(&r, 125, "vmm memory: argument 's' given twice\n");
	spawn_free(&r);
	pthread_mutex_lock(&vm.lock);
	ck_assert(!vm.quit);
	pthread_mutex_unlock(&vm.lock);
}
END_TEST

static bool exists(const char *path)
{
	return access(path, F_OK) == 0;
}

static void make_file(const char *path)
{
	FILE *f = fopen(path, "w");
	ck_assert_ptr_nonnull(f);
	fclose(f);
}

/* rm NAME...: the stale one and its log go, so does the log of one that ended cleanly (no
 * socket left), the running and the unknown one are a line each, and the status says not
 * all went. */
START_TEST(rm_removes_stale_vms_and_refuses_running_ones)
{
	char stale[200], log[200], gone[200], ended[200], ended_older[200], want[600], exported[200], exported2[200];
	snprintf(stale, sizeof(stale), "%s/old.sock", rundir);
	snprintf(exported, sizeof(exported), "%s/old.export-1.sock", rundir);
	snprintf(exported2, sizeof(exported2), "%s/old.export-12.sock", rundir);
	make_stale_socket(exported);
	make_stale_socket(exported2);
	snprintf(log, sizeof(log), "%s/old.log", rundir);
	snprintf(gone, sizeof(gone), "%s/gone.sock", rundir);
	snprintf(ended, sizeof(ended), "%s/ended.log", rundir);
	snprintf(ended_older, sizeof(ended_older), "%s/ended.log.1", rundir);
	make_stale_socket(stale);
	make_stale_socket(gone);
	make_file(log);
	make_file(ended);
	make_file(ended_older);
	struct spawn_result r;
	ck_assert_int_eq(spawn_vmm(&r, 30, "rm", "old", "vm1", "nosuch", "gone", "ended", NULL), 0);
	snprintf(want, sizeof(want),
		 "vmm rm: VM 'vm1' is running; vmm quit vm1 first\n"
		 "vmm rm: no VM named 'nosuch' (no socket at %s/nosuch.sock)\n",
		 rundir);
	expect_status(&r, 125, want);
	ck_assert_str_eq(r.out, "");
	spawn_free(&r);
	ck_assert(!exists(stale) && !exists(log) && !exists(gone));
	ck_assert(!exists(exported) && !exists(exported2)); /* the dead VM's vm-export sockets */
	ck_assert(!exists(ended) && !exists(ended_older));
	ck_assert(exists(vm.path));
	ck_assert_int_eq(spawn_vmm(&r, 30, "rm", "vm1", NULL), 0);
	expect_status(&r, 125, "vmm rm: VM 'vm1' is running; vmm quit vm1 first\n");
	spawn_free(&r);
	ck_assert_int_eq(spawn_vmm(&r, 30, "rm", NULL), 0);
	expect_status(&r, 125, "vmm rm: no VM NAME given (usage: vmm rm NAME... | vmm rm --stale)\n");
	spawn_free(&r);
}
END_TEST

/* rm --stale: every stale VM and its log, the logs of VMs that ended; a running VM's log
 * stays. */
START_TEST(rm_stale_removes_every_stale_vm_and_only_those)
{
	char stale[200], log[200], gone[200], ended[200], running_log[200];
	snprintf(stale, sizeof(stale), "%s/old.sock", rundir);
	snprintf(log, sizeof(log), "%s/old.log", rundir);
	snprintf(gone, sizeof(gone), "%s/gone.sock", rundir);
	snprintf(ended, sizeof(ended), "%s/ended.log", rundir);
	snprintf(running_log, sizeof(running_log), "%s/vm1.log", rundir);
	make_stale_socket(stale);
	make_stale_socket(gone);
	make_file(log);
	make_file(ended);
	make_file(running_log);
	struct spawn_result r;
	ck_assert_int_eq(spawn_vmm(&r, 30, "rm", "--stale", NULL), 0);
	expect_status(&r, 0, NULL);
	spawn_free(&r);
	ck_assert(!exists(stale) && !exists(log) && !exists(gone) && !exists(ended));
	ck_assert(exists(vm.path) && exists(running_log));
	unlink(running_log);
	ck_assert_int_eq(spawn_vmm(&r, 30, "ps", NULL), 0);
	expect_status(&r, 0, NULL); /* no stale one left: no note */
	spawn_free(&r);
	ck_assert_int_eq(spawn_vmm(&r, 30, "rm", "--stale", NULL), 0); /* nothing to do */
	expect_status(&r, 0, NULL);
	spawn_free(&r);
	ck_assert_int_eq(spawn_vmm(&r, 30, "rm", "--stale", "vm1", NULL), 0);
	expect_status(&r, 125, "vmm rm: NAMEs or --stale, not both (usage: vmm rm NAME... | vmm rm --stale)\n");
	spawn_free(&r);
}
END_TEST

/*
 * A VM started in a login session ($XDG_RUNTIME_DIR/vmm) and one started under sudo or
 * cron (/run/vmm, here VMM_SYSTEM_RUNDIR) are both seen, by ps and by name:
 *   session: vm1 (running)             system: vm2 (running), vm1 (stale), old (stale)
 * vm1 is listed once, the session's.
 */
START_TEST(ps_and_names_see_the_session_and_the_system_directory)
{
	struct fake_vm vm2;
	fake_vm_start(&vm2, "vm2", true);
	setenv("VMM_SYSTEM_RUNDIR", vm2.dir, 1);
	char shadowed[200], old[200];
	snprintf(shadowed, sizeof(shadowed), "%s/vm1.sock", vm2.dir);
	snprintf(old, sizeof(old), "%s/old.sock", vm2.dir);
	make_stale_socket(shadowed);
	make_stale_socket(old);
	struct spawn_result r;
	ck_assert_int_eq(spawn_vmm(&r, 30, "ps", NULL), 0);
	expect_status(&r, 0, "vmm ps: 1 stale; vmm rm --stale removes them\n");
	char want[1024];
	snprintf(want, sizeof(want),
		 "NAME  STATUS       PID  CPUS     MEMORY   RESIDENT   UPTIME  PARENT  SOCKET\n"
		 "old   stale          -     -          -          -        *  -       %s\n"
		 "vm1   running  %7d     2  256.0 MiB    1.5 MiB        *  -       %s\n"
		 "vm2   running  %7d     2  256.0 MiB    1.5 MiB        *  -       %s\n",
		 old, (int)getpid(), vm.path, (int)getpid(), vm2.path);
	mask_uptime(r.out);
	ck_assert_str_eq(r.out, want);
	spawn_free(&r);
	ck_assert_int_eq(spawn_vmm(&r, 30, "stop", "vm2", NULL), 0); /* by name, in the system directory */
	expect_status(&r, 0, NULL);
	spawn_free(&r);
	pthread_mutex_lock(&vm2.lock);
	ck_assert_int_eq(vm2.state, MONITOR_RUN_PAUSED);
	pthread_mutex_unlock(&vm2.lock);
	ck_assert_int_eq(spawn_vmm(&r, 30, "stats", NULL), 0);
	expect_status(&r, 0, NULL);
	ck_assert_msg(strstr(r.out, "\nold   stale ") && strstr(r.out, "\nvm1   running ") &&
			      strstr(r.out, "\nvm2   paused "),
		      "%s", r.out);
	spawn_free(&r);
	ck_assert_int_eq(spawn_vmm(&r, 30, "rm", "old", NULL), 0);
	expect_status(&r, 0, NULL);
	spawn_free(&r);
	ck_assert(!exists(old));
	unlink(shadowed);
	fake_vm_stop(&vm2);
}
END_TEST

/* vmm inspect: query-config, query-status, the lineage and the paths in one object;
 * indented by default, one line with --json. */
START_TEST(inspect_prints_config_state_lineage_and_paths)
{
	struct spawn_result r;
	ck_assert_int_eq(spawn_vmm(&r, 30, "inspect", "vm1", NULL), 0);
	expect_status(&r, 0, NULL);
	ck_assert_msg(strstr(r.out, "\n  \"config\": {\n"), "not indented:\n%s", r.out);
	json_error_t err;
	json_t *j = json_loads(r.out, 0, &err);
	ck_assert_msg(j, "%s: %s", err.text, r.out);
	json_t *want = json_pack("{s:s,s:{s:I,s:i,s:s,s:s,s:n},s:{s:s,s:b},s:{s:n,s:n},s:{s:s,s:n}}", "name", "vm1",
				 "config", "memory", (json_int_t)FAKE_VM_CONFIG_MEMORY, "vcpus", FAKE_VM_CONFIG_VCPUS,
				 "kernel", FAKE_VM_CONFIG_KERNEL, "cmdline", FAKE_VM_CONFIG_CMDLINE, "uuid", "state",
				 "status", "running", "running", 1, "lineage", "origin", "fork", "paths", "socket", vm.path,
				 "log");
	ck_assert_msg(json_equal(j, want), "%s", r.out);
	json_decref(want);
	json_decref(j);
	spawn_free(&r);

	/* A paused child of a fork of a restored VM, with a log. */
	char log[200];
	snprintf(log, sizeof(log), "%s/vm1.log", rundir);
	FILE *f = fopen(log, "w");
	ck_assert_ptr_nonnull(f);
	fclose(f);
	vm.origin_store = "/srv/store";
	vm.origin_snapshot = "base";
	vm.fork_parent = "web";
	vm.fork_index = 3;
	vm.fork_generation = 2;
	ck_assert_int_eq(spawn_vmm(&r, 30, "stop", "vm1", NULL), 0);
	expect_status(&r, 0, NULL);
	spawn_free(&r);
	ck_assert_int_eq(spawn_vmm(&r, 30, "inspect", "--json", "--monitor", vm.path, NULL), 0);
	expect_status(&r, 0, NULL);
	ck_assert_msg(strchr(r.out, '\n') == r.out + strlen(r.out) - 1, "not one line:\n%s", r.out);
	j = json_loads(r.out, 0, NULL);
	want = json_pack("{s:{s:s,s:s},s:{s:s,s:i,s:i}}", "origin", "store", "/srv/store", "snapshot", "base", "fork",
			 "parent", "web", "index", 3, "generation", 2);
	ck_assert_msg(json_equal(json_object_get(j, "lineage"), want), "%s", r.out);
	json_decref(want);
	want = json_pack("{s:s,s:s}", "socket", vm.path, "log", log);
	ck_assert_msg(json_equal(json_object_get(j, "paths"), want), "%s", r.out);
	json_decref(want);
	ck_assert_str_eq(json_string_value(json_object_get(json_object_get(j, "state"), "status")), "paused");
	json_decref(j);
	spawn_free(&r);
	unlink(log);
}
END_TEST

START_TEST(inspect_of_no_vm_is_one_line_and_125)
{
	struct spawn_result r;
	ck_assert_int_eq(spawn_vmm(&r, 30, "inspect", "nosuch", NULL), 0);
	char want[512];
	snprintf(want, sizeof(want), "vmm inspect: no VM named 'nosuch' (no socket at %s/nosuch.sock)\n", rundir);
	expect_status(&r, 125, want);
	ck_assert_str_eq(r.out, "");
	spawn_free(&r);
	ck_assert_int_eq(spawn_vmm(&r, 30, "inspect", NULL), 0);
	expect_status(&r, 125, "vmm inspect: no VM NAME given (usage: vmm inspect [OPTIONS] NAME)\n");
	spawn_free(&r);
}
END_TEST

START_TEST(ps_without_a_runtime_directory_lists_nothing)
{
	setenv("XDG_RUNTIME_DIR", "/nonexistent-vmm-test", 1);
	struct spawn_result r;
	ck_assert_int_eq(spawn_vmm(&r, 30, "ps", NULL), 0);
	expect_status(&r, 0, NULL);
	ck_assert_str_eq(r.out, "NAME  STATUS      PID  CPUS     MEMORY   RESIDENT   UPTIME  PARENT  SOCKET\n");
	spawn_free(&r);
}
END_TEST

START_TEST(every_verb_has_complete_help)
{
	static const struct {
		const char *verb;
		const char *options[5];
	} verbs[] = {
		{"ps", {"--json", "--monitor PATH", "--help"}},
		{"stats", {"--watch TIME", "--count N", "--json", "--monitor PATH", "--help"}},
		{"inspect", {"--json", "--monitor PATH", "--help"}},
		{"stop", {"--monitor PATH", "--help"}},
		{"cont", {"--monitor PATH", "--help"}},
		{"quit", {"--monitor PATH", "--help"}},
		{"rm", {"--stale", "--help"}},
	};
	struct spawn_result r;
	ck_assert_int_eq(spawn_vmm(&r, 30, "--help", NULL), 0);
	expect_status(&r, 0, NULL);
	for (size_t i = 0; i < sizeof(verbs) / sizeof(verbs[0]); i++) {
		char line[32];
		snprintf(line, sizeof(line), "\n  %-10s ", verbs[i].verb);
		ck_assert_msg(strstr(r.out, line), "vmm --help lacks %s", verbs[i].verb);
	}
	spawn_free(&r);
	for (size_t i = 0; i < sizeof(verbs) / sizeof(verbs[0]); i++) {
		ck_assert_int_eq(spawn_vmm(&r, 30, verbs[i].verb, "-h", NULL), 0);
		expect_status(&r, 0, NULL);
		char usage[32];
		snprintf(usage, sizeof(usage), "usage: vmm %s ", verbs[i].verb);
		ck_assert_msg(strncmp(r.out, usage, strlen(usage)) == 0, "%s", r.out);
		for (int k = 0; k < 5 && verbs[i].options[k]; k++)
			ck_assert_msg(strstr(r.out, verbs[i].options[k]), "vmm %s --help lacks %s", verbs[i].verb,
				      verbs[i].options[k]);
		ck_assert_msg(strstr(r.out, "Exit status"), "vmm %s --help lacks the exit statuses", verbs[i].verb);
		spawn_free(&r);
	}
}
END_TEST

START_TEST(bad_arguments_are_one_line_and_125)
{
	static const struct {
		const char *args[4];
		const char *err;
	} cases[] = {
		{{"stats", "vm1", "--count", "2"}, "vmm stats: --count needs --watch\n"},
		{{"stats", "vm1", "--watch", "0"}, "vmm stats: --watch: '0' is not a positive duration (use e.g. 30, 500ms, 2m)\n"},
		{{"stop", "--bogus", "x"}, "vmm stop: unknown option --bogus (see vmm stop --help)\n"},
		{{"ps", "extra"}, "vmm ps: unexpected argument 'extra' (usage: vmm ps [OPTIONS])\n"},
		{{"cont", "--monitor"}, "vmm cont: --monitor needs a value (PATH)\n"},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct spawn_result r;
		ck_assert_int_eq(spawn_vmm(&r, 30, cases[i].args[0], cases[i].args[1], cases[i].args[2], cases[i].args[3],
					   NULL),
				 0);
		expect_status(&r, 125, cases[i].err);
		spawn_free(&r);
	}
}
END_TEST

Suite *qmp_client_suite(void)
{
	Suite *s = suite_create("qmp_client");
	TCase *tc = fake_vm_tcase(s, "client", 60, setup, teardown);
	HARNESS_ADD_TEST(tc, connect_negotiates_and_executes);
	HARNESS_ADD_TEST(tc, error_answers_are_eremoteio_with_class_and_desc);
	HARNESS_ADD_TEST(tc, events_that_arrive_during_a_command_are_kept_in_order);
	HARNESS_ADD_TEST(tc, an_answer_too_late_does_not_confuse_the_next_command);
	HARNESS_ADD_TEST(tc, a_closed_connection_is_econnreset);
	HARNESS_ADD_TEST(tc, open_by_name_uses_the_runtime_directory);
	HARNESS_ADD_TEST(tc, open_says_which_vm_is_missing_or_stale);
	HARNESS_ADD_TEST(tc, a_refusing_server_is_eperm_with_its_reason);
	HARNESS_ADD_TEST(tc, a_server_that_is_not_qmp_is_eproto);
	HARNESS_ADD_TEST(tc, an_error_without_id_answers_the_request_in_flight);
	HARNESS_ADD_TEST(tc, requests_over_the_line_limit_are_emsgsize_and_the_maximum_goes_through);

	TCase *cli = fake_vm_tcase(s, "verbs", 90, setup, teardown);
	HARNESS_ADD_TEST(cli, stats_prints_sorted_aligned_lines);
	HARNESS_ADD_TEST(cli, stats_json_samples_have_a_fixed_schema);
	HARNESS_ADD_TEST(cli, stats_keys_select_exact_keys_and_prefixes);
	HARNESS_ADD_TEST(cli, stats_text_charts_the_latency_histogram_in_numeric_order);
	HARNESS_ADD_TEST(cli, stats_has_virsh_domstats_names);
	HARNESS_ADD_TEST(cli, inspect_prints_config_state_lineage_and_paths);
	HARNESS_ADD_TEST(cli, inspect_of_no_vm_is_one_line_and_125);
	HARNESS_ADD_TEST(cli, stats_watch_prints_count_samples);
	HARNESS_ADD_TEST(cli, stats_watch_shows_the_rates_of_counters);
	HARNESS_ADD_TEST(cli, stats_without_name_shows_every_vm);
	HARNESS_ADD_TEST(cli, control_verbs_stop_cont_and_quit_the_vm);
	HARNESS_ADD_TEST(cli, missing_and_stale_vms_are_one_line_and_125);
	HARNESS_ADD_TEST(cli, ps_lists_live_and_stale_vms);
	HARNESS_ADD_TEST(cli, ps_shows_the_parent_of_a_fork_and_of_a_restore);
	HARNESS_ADD_TEST(cli, memory_sends_a_mach_call_with_typed_arguments);
	HARNESS_ADD_TEST(cli, ps_without_a_runtime_directory_lists_nothing);
	HARNESS_ADD_TEST(cli, rm_removes_stale_vms_and_refuses_running_ones);
	HARNESS_ADD_TEST(cli, rm_stale_removes_every_stale_vm_and_only_those);
	HARNESS_ADD_TEST(cli, ps_and_names_see_the_session_and_the_system_directory);
	HARNESS_ADD_TEST(cli, every_verb_has_complete_help);
	HARNESS_ADD_TEST(cli, bad_arguments_are_one_line_and_125);
	return s;
}

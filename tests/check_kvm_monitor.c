/*
 * A running guest driven over its monitor socket: status, stop/cont (the guest makes no
 * progress while stopped), statistics, quit, signals, the CLI verbs and a raw socat
 * session, and a hostile client that never reads.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"
#include "spawn.h"
#include "vmm/error.h"
#include "vmm/monitor/qmp_client.h"

#define TIMEOUT_MS 20000

static char dir[64], sock[128];
static pid_t vm_pid = -1;
static struct qmp_client *c;

/* Boot `vmm run -n mon-test --monitor DIR/vm.sock` with @cmdline and connect to it. */
static void start_vm(const char *cmdline)
{
	strcpy(dir, "/tmp/vmm-mon-XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(dir));
	snprintf(sock, sizeof(sock), "%s/vm.sock", dir);
	char vmm[4096], guest[4096];
	snprintf(vmm, sizeof(vmm), "%s", harness_build_path("vmm"));
	snprintf(guest, sizeof(guest), "%s", harness_build_path("guest.elf"));
	char *argv[] = {vmm, "run", "-n", "mon-test", "--monitor", sock, "-c", "2", "-m", "64M", "-p", (char *)cmdline,
			guest, NULL};
	vm_pid = spawn_background(argv);
	ck_assert_int_gt(vm_pid, 0);
	ck_assert_msg(spawn_wait_socket(sock, 30) == 0, "the VM's monitor did not come up");
	ck_assert_msg(qmp_client_connect(&c, sock, TIMEOUT_MS) == 0, "%s", error_message());
}

/* Wait for the VM process; returns its exit status. */
static int wait_vm(void)
{
	int st = 0;
	ck_assert_int_eq(waitpid(vm_pid, &st, 0), vm_pid);
	vm_pid = -1;
	return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

static void teardown(void)
{
	qmp_client_close(c);
	c = NULL;
	if (vm_pid > 0) {
		kill(vm_pid, SIGKILL);
		waitpid(vm_pid, NULL, 0);
		vm_pid = -1;
	}
	char cmd[128];
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	ck_assert_int_eq(system(cmd), 0);
}

static json_t *execute(const char *command, json_t *args)
{
	json_t *ret = NULL;
	ck_assert_msg(qmp_client_execute(c, command, args, &ret, TIMEOUT_MS) == 0, "%s: %s", command, error_message());
	return ret;
}

static const char *status(void)
{
	static char s[32];
	json_t *ret = execute("query-status", NULL);
	snprintf(s, sizeof(s), "%s", json_string_value(json_object_get(ret, "status")));
	json_decref(ret);
	return s;
}

static long long stat_value(const char *key)
{
	json_t *ret = execute("query-stats", NULL);
	json_t *v = json_object_get(ret, key);
	ck_assert_msg(json_is_integer(v), "query-stats has no %s", key);
	long long n = json_integer_value(v);
	json_decref(ret);
	return n;
}

/* Wait for event @name; returns it (decref it). */
static json_t *wait_event(const char *name)
{
	for (;;) {
		json_t *ev;
		int r = qmp_client_next_event(c, &ev, TIMEOUT_MS);
		ck_assert_msg(r == 0, "waiting for %s: %s", name, strerror(-r));
		if (strcmp(json_string_value(json_object_get(ev, "event")), name) == 0)
			return ev;
		json_decref(ev);
	}
}

static void sleep_ms(long ms)
{
	struct timespec t = {ms / 1000, (ms % 1000) * 1000000L};
	nanosleep(&t, NULL);
}

/* The guest's test-port message count, once it has moved past @n (the guest runs). */
static long long messages_above(long long n)
{
	for (int i = 0; i < 3000; i++) {
		long long m = stat_value("vm.test_port_messages");
		if (m > n)
			return m;
		sleep_ms(10);
	}
	ck_abort_msg("the guest made no progress");
	return 0;
}

START_TEST(status_stop_cont_follow_the_guest)
{
	start_vm("spin=4M");
	ck_assert_str_eq(status(), "running");
	long long m = messages_above(1);
	json_decref(execute("stop", NULL));
	json_decref(wait_event("STOP"));
	ck_assert_str_eq(status(), "paused");
	long long at_stop = stat_value("vm.test_port_messages");
	sleep_ms(100);
	ck_assert_int_eq(stat_value("vm.test_port_messages"), at_stop); /* no progress while stopped */
	json_decref(execute("stop", NULL));                             /* stopping twice is fine */
	json_decref(execute("cont", NULL));
	json_decref(wait_event("RESUME"));
	ck_assert_str_eq(status(), "running");
	messages_above(at_stop > m ? at_stop : m);
}
END_TEST

START_TEST(stats_carry_vcpu_memory_and_monitor_figures)
{
	start_vm("spin=4M");
	messages_above(1);
	json_t *s = execute("query-stats", NULL);
	const char *keys[] = {"vm.vcpus", "vcpu.0.exits", "vcpu.1.exits", "mem.faults", "mem.zero_fills",
			      "mem.resident_pages", "dedup.hits", "kvm.pages_4k", "vcpu.0.kvm.exits",
			      "monitor.clients"};
	for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++)
		ck_assert_msg(json_is_integer(json_object_get(s, keys[i])), "no %s", keys[i]);
	ck_assert_int_eq(json_integer_value(json_object_get(s, "vm.vcpus")), 2);
	ck_assert_int_ge(json_integer_value(json_object_get(s, "mem.resident_pages")), 512); /* cpu 0's half at least */
	json_decref(s);
}
END_TEST

START_TEST(quit_ends_the_vm_and_removes_its_socket)
{
	start_vm("spin=4M");
	json_decref(execute("quit", NULL));
	json_t *ev = wait_event("SHUTDOWN");
	ck_assert_str_eq(json_string_value(json_object_get(json_object_get(ev, "data"), "reason")), "host-qmp-quit");
	json_decref(ev);
	ck_assert_int_eq(wait_vm(), 0);
	struct stat st;
	ck_assert_int_ne(stat(sock, &st), 0);
}
END_TEST

START_TEST(guest_exit_is_a_shutdown_event_with_its_status)
{
	/* Long enough to connect and stop it first; then it runs to its crash (status 3). */
	start_vm("touch=48M touch=48M touch=48M touch=48M touch=48M touch=48M touch=48M touch=48M crash");
	json_decref(execute("stop", NULL));
	json_decref(execute("cont", NULL));
	json_t *ev = wait_event("SHUTDOWN");
	json_t *data = json_object_get(ev, "data");
	ck_assert(json_is_true(json_object_get(data, "guest")));
	ck_assert_int_eq(json_integer_value(json_object_get(data, "status")), 3);
	json_decref(ev);
	ck_assert_int_eq(wait_vm(), 3);
}
END_TEST

START_TEST(sigterm_stops_the_vm_cleanly)
{
	start_vm("spin=4M");
	messages_above(1);
	kill(vm_pid, SIGTERM);
	json_t *ev = wait_event("SHUTDOWN");
	ck_assert_int_eq(json_integer_value(json_object_get(json_object_get(ev, "data"), "status")), 128 + SIGTERM);
	json_decref(ev);
	ck_assert_int_eq(wait_vm(), 128 + SIGTERM);
	struct stat st;
	ck_assert_int_ne(stat(sock, &st), 0);
}
END_TEST

START_TEST(cli_verbs_drive_the_vm)
{
	start_vm("spin=4M");
	struct spawn_result r;
	ck_assert_int_eq(spawn_vmm(&r, 60, "stop", "--monitor", sock, NULL), 0);
	ck_assert_msg(r.status == 0, "vmm stop: %s", r.err);
	spawn_free(&r);
	ck_assert_str_eq(status(), "paused");
	ck_assert_int_eq(spawn_vmm(&r, 60, "stats", "--json", "--monitor", sock, NULL), 0);
	ck_assert_int_eq(r.status, 0);
	json_t *s = json_loads(r.out, 0, NULL);
	ck_assert_ptr_nonnull(s);
	ck_assert_msg(json_is_integer(json_object_get(json_object_get(s, "stats"), "mem.faults")), "%s", r.out);
	ck_assert_str_eq(json_string_value(json_object_get(s, "status")), "paused");
	json_decref(s);
	spawn_free(&r);
	ck_assert_int_eq(spawn_vmm(&r, 60, "cont", "--monitor", sock, NULL), 0);
	ck_assert_int_eq(r.status, 0);
	spawn_free(&r);
	ck_assert_str_eq(status(), "running");
	ck_assert_int_eq(spawn_vmm(&r, 60, "quit", "--monitor", sock, NULL), 0);
	ck_assert_int_eq(r.status, 0);
	spawn_free(&r);
	ck_assert_int_eq(wait_vm(), 0);
}
END_TEST

START_TEST(socat_session_like_the_readme)
{
	if (system("command -v socat >/dev/null 2>&1") != 0) {
		/* make test installs socat before the plain pass; only a by-hand run can lack it. */
		ck_abort_msg("socat is not installed (apt-get install socat)");
	}
	start_vm("spin=4M");
	char cmd[512];
	snprintf(cmd, sizeof(cmd),
		 "printf '%%s\\n' '{\"execute\":\"qmp_capabilities\"}' '{\"execute\":\"query-status\",\"id\":7}' "
		 "'{\"execute\":\"nope\"}' | socat -t 5 - UNIX-CONNECT:%s",
		 sock);
	char *argv[] = {"/bin/sh", "-c", cmd, NULL};
	struct spawn_result r;
	ck_assert_int_eq(spawn_run(&r, 60, argv), 0);
	ck_assert_int_eq(r.status, 0);
	ck_assert_msg(strstr(r.out, "{\"QMP\":{\"version\""), "%s", r.out);
	ck_assert_msg(strstr(r.out, "{\"return\":{\"status\":\"running\",\"running\":true},\"id\":7}"), "%s", r.out);
	ck_assert_msg(strstr(r.out, "\"class\":\"CommandNotFound\""), "%s", r.out);
	spawn_free(&r);
}
END_TEST

START_TEST(client_that_never_reads_does_not_stop_the_vm)
{
	start_vm("spin=4M");
	/* A second client negotiates, asks for a lot and never reads; the VM and the first
	 * client go on. */
	struct qmp_client *lazy;
	ck_assert_int_eq(qmp_client_connect(&lazy, sock, TIMEOUT_MS), 0);
	int fd = qmp_client_fd(lazy);
	const char *req = "{\"execute\":\"query-stats\"}\n";
	for (int i = 0; i < 2000; i++)
		if (write(fd, req, strlen(req)) < 0)
			break;
	long long m = messages_above(1);
	messages_above(m);
	json_decref(execute("stop", NULL));
	json_decref(execute("cont", NULL));
	qmp_client_close(lazy);
}
END_TEST

Suite *kvm_monitor_suite(void)
{
	Suite *s = suite_create("kvm_monitor");
	harness_requires(HARNESS_KVM | HARNESS_UFFD);
	TCase *tc = tcase_create("monitor");
	tcase_add_checked_fixture(tc, NULL, teardown);
	tcase_set_timeout(tc, 120);
	HARNESS_ADD_TEST(tc, status_stop_cont_follow_the_guest);
	HARNESS_ADD_TEST(tc, stats_carry_vcpu_memory_and_monitor_figures);
	HARNESS_ADD_TEST(tc, quit_ends_the_vm_and_removes_its_socket);
	HARNESS_ADD_TEST(tc, guest_exit_is_a_shutdown_event_with_its_status);
	HARNESS_ADD_TEST(tc, sigterm_stops_the_vm_cleanly);
	HARNESS_ADD_TEST(tc, cli_verbs_drive_the_vm);
	HARNESS_ADD_TEST(tc, socat_session_like_the_readme);
	HARNESS_ADD_TEST(tc, client_that_never_reads_does_not_stop_the_vm);
	suite_add_tcase(s, tc);
	return s;
}

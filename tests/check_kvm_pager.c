/*
 * External pagers: guest memory served by another process over a unix socket
 * (tools/pager_server). The guest checks what it reads; a pager that dies, answers
 * garbage or stops answering stops the VM with one clear line, never a hang.
 */
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "guest/abi.h"
#include "harness.h"
#include "spawn.h"

#define TIMEOUT_S 180

static char sock[64], file[64];
static pid_t server = -1;
static struct spawn_result r;

static void make_file(size_t size, uint64_t *sum)
{
	strcpy(file, "/tmp/vmm-ext-XXXXXX");
	int fd = mkstemp(file);
	ck_assert_int_ge(fd, 0);
	unsigned char *buf = malloc(size);
	for (size_t i = 0; i < size; i++)
		buf[i] = (unsigned char)(i * 131 + (i >> 12));
	ck_assert_int_eq(write(fd, buf, size), (ssize_t)size);
	close(fd);
	if (sum)
		*sum = abi_fnv1a64(ABI_FNV_INIT, buf, size);
	free(buf);
}

/* Start tools/pager_server on a fresh socket serving @file, with an optional @flag and its
 * @value (NULL when the flag takes none). */
static void start_server(const char *flag, const char *value)
{
	strcpy(sock, "/tmp/vmm-ext-sock-XXXXXX");
	int fd = mkstemp(sock);
	ck_assert_int_ge(fd, 0);
	close(fd);
	unlink(sock);
	char path[4096];
	snprintf(path, sizeof(path), "%s", harness_build_path("pager_server"));
	char *argv[8];
	int n = 0;
	argv[n++] = path;
	if (flag)
		argv[n++] = (char *)flag;
	if (value)
		argv[n++] = (char *)value;
	argv[n++] = sock;
	argv[n++] = file;
	argv[n] = NULL;
	server = spawn_background(argv);
	ck_assert_int_gt(server, 0);
	ck_assert_msg(spawn_wait_socket(sock, 30) == 0, "pager_server did not start");
}

static void stop_server(void)
{
	if (server > 0) {
		kill(server, SIGKILL);
		waitpid(server, NULL, 0);
	}
	server = -1;
	unlink(sock);
	unlink(file);
}

static void run_vmm(const char *mapping, const char *cmdline, const char *extra)
{
	char map[160];
	snprintf(map, sizeof(map), "%s@1G,%s", sock, mapping);
	ck_assert_int_eq(spawn_vmm(&r, TIMEOUT_S, "run", "-m", "64M", "--pager", map, extra ? extra : "-v", "-p",
				   cmdline, harness_build_path("guest.elf"), NULL),
			 0);
}

START_TEST(external_pager_serves_the_file_it_holds)
{
	uint64_t sum;
	make_file(3 << 20, &sum);
	start_server(NULL, NULL);
	char cmd[128], want[64];
	snprintf(cmd, sizeof(cmd), "sum=1G,3M");
	run_vmm("0x300000,ro", cmd, NULL);
	ck_assert_msg(r.status == 0, "status %d: %s", r.status, r.err);
	snprintf(want, sizeof(want), ": 0x%016" PRIx64 "\n", sum);
	ck_assert_msg(strstr(r.out, want), "wanted %s in %s", want, r.out);
	spawn_free(&r);
	stop_server();
}
END_TEST

START_TEST(shared_external_memory_takes_guest_writes_back)
{
	/* Under a limit pages go back to the pager process as they are paged out, and the rest
	 * at shutdown; a second VM reads them back from it. */
	make_file(8 << 20, NULL);
	start_server(NULL, NULL);
	char map[160];
	snprintf(map, sizeof(map), "%s@1G,8M,shared", sock);
	ck_assert_int_eq(spawn_vmm(&r, TIMEOUT_S, "run", "-m", "64M", "--mem-limit", "4M", "--pager", map, "--stats",
				   "-p", "seed=6 fill=1G,8M check=1G,8M", harness_build_path("guest.elf"), NULL),
			 0);
	ck_assert_msg(r.status == 0, "status %d: %s", r.status, r.err);
	ck_assert_ptr_nonnull(strstr(r.out, "check: 2048 pages ok"));
	spawn_free(&r);
	run_vmm("8M,ro", "seed=6 check=1G,8M", NULL);
	ck_assert_msg(r.status == 0, "status %d: %s %s", r.status, r.out, r.err);
	ck_assert_ptr_nonnull(strstr(r.out, "check: 2048 pages ok"));
	spawn_free(&r);
	stop_server();
}
END_TEST

static void expect_pager_failure(const char *why)
{
	ck_assert_msg(r.status == 125, "status %d\nstdout: %s\nstderr: %s", r.status, r.out, r.err);
	ck_assert_msg(strstr(r.err, "failed: KERN_MEMORY_ERROR in object"), "stderr: %s", r.err);
	ck_assert_msg(strstr(r.err, why), "stderr lacks '%s': %s", why, r.err);
	ck_assert(!r.timed_out);
	spawn_free(&r);
}

START_TEST(pager_that_dies_stops_the_vm_with_a_clear_error)
{
	make_file(4 << 20, NULL);
	start_server("--fail-after", "3");
	run_vmm("4M,ro", "sum=1G,4M", NULL);
	expect_pager_failure("the external pager closed the connection");
	stop_server();
}
END_TEST

START_TEST(pager_killed_mid_run_stops_the_vm)
{
	/* One page per request keeps the guest reading for a while; the pager is killed under it. */
	make_file(64 << 20, NULL);
	start_server(NULL, NULL);
	char map[160], vmm[4096], guest[4096];
	snprintf(map, sizeof(map), "%s@1G,64M,ro", sock);
	snprintf(vmm, sizeof(vmm), "%s", harness_build_path("vmm"));
	snprintf(guest, sizeof(guest), "%s", harness_build_path("guest.elf"));
	char *argv[] = {vmm, "run", "-m", "64M", "--cluster", "1", "--pager", map, "-p", "sum=1G,64M", guest, NULL};
	struct timespec t = {0, 300000000L};
	pid_t killer = fork();
	if (killer == 0) {
		nanosleep(&t, NULL);
		kill(server, SIGKILL);
		_exit(0);
	}
	ck_assert_int_eq(spawn_run(&r, TIMEOUT_S, argv), 0);
	waitpid(killer, NULL, 0);
	expect_pager_failure("the external pager closed the connection");
	stop_server();
}
END_TEST

START_TEST(pager_answering_garbage_stops_the_vm)
{
	make_file(4 << 20, NULL);
	start_server("--garbage-after", "2");
	run_vmm("4M,ro", "sum=1G,4M", NULL);
	expect_pager_failure("the external pager answered with a malformed or unexpected message");
	stop_server();
}
END_TEST

START_TEST(pager_that_stops_answering_times_out)
{
	make_file(4 << 20, NULL);
	start_server("--hang-after", "2");
	run_vmm("4M,ro", "sum=1G,4M", NULL);
	expect_pager_failure("the external pager did not finish its answer within 10000 ms");
	stop_server();
}
END_TEST

START_TEST(unreachable_pager_is_a_clear_startup_error)
{
	ck_assert_int_eq(spawn_vmm(&r, TIMEOUT_S, "run", "-m", "64M", "--pager", "/nonexistent.sock@1G,1M",
				   harness_build_path("guest.elf"), NULL),
			 0);
	ck_assert_int_eq(r.status, 125);
	ck_assert_str_eq(r.err, "vmm: cannot reach the external pager at /nonexistent.sock: No such file or directory\n");
	spawn_free(&r);
}
END_TEST

START_TEST(read_only_pager_cannot_be_mapped_shared)
{
	make_file(1 << 20, NULL);
	start_server("--read-only", NULL);
	run_vmm("1M,shared", "hello", NULL);
	ck_assert_int_eq(r.status, 125);
	ck_assert_ptr_nonnull(strstr(r.err, "its pager takes no writes"));
	spawn_free(&r);
	stop_server();
}
END_TEST

Suite *kvm_pager_suite(void)
{
	Suite *s = suite_create("kvm_pager");
	harness_requires(HARNESS_KVM | HARNESS_UFFD);
	TCase *tc = tcase_create("external");
	tcase_set_timeout(tc, TIMEOUT_S + 10);
	HARNESS_ADD_TEST(tc, external_pager_serves_the_file_it_holds);
	HARNESS_ADD_TEST(tc, shared_external_memory_takes_guest_writes_back);
	HARNESS_ADD_TEST(tc, pager_that_dies_stops_the_vm_with_a_clear_error);
	HARNESS_ADD_TEST(tc, pager_killed_mid_run_stops_the_vm);
	HARNESS_ADD_TEST(tc, pager_answering_garbage_stops_the_vm);
	HARNESS_ADD_TEST(tc, pager_that_stops_answering_times_out);
	HARNESS_ADD_TEST(tc, unreachable_pager_is_a_clear_startup_error);
	HARNESS_ADD_TEST(tc, read_only_pager_cannot_be_mapped_shared);
	suite_add_tcase(s, tc);
	return s;
}

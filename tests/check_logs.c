/*
 * vmm logs and vmm console (vmm/cli/cmd_logs.c) as a user runs them, against a log the
 * test writes as a VM's console would (rotation included) and a stand-in VM: a process
 * listening on the monitor socket, whose end is the VM's end.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pty.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

#include "harness.h"
#include "spawn.h"

#define WAIT_S 20 /* a guard against a stuck command, not a timing assertion */

static char dir[32], sock[64], log_path[64], old_path[64];

static void setup(void)
{
	snprintf(dir, sizeof(dir), "/tmp/vmm-logs-XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(dir));
	snprintf(sock, sizeof(sock), "%s/web.sock", dir);
	snprintf(log_path, sizeof(log_path), "%s/web.log", dir);
	snprintf(old_path, sizeof(old_path), "%s/web.log.1", dir);
}

static void teardown(void)
{
	unlink(sock);
	unlink(log_path);
	unlink(old_path);
	rmdir(dir);
}

static void append(const char *path, const char *text)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_APPEND, 0600);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(write(fd, text, strlen(text)), (ssize_t)strlen(text));
	close(fd);
}

static void end_vm(pid_t vm)
{
	kill(vm, SIGKILL);
	waitpid(vm, NULL, 0);
}

/* Reap @pid, which must have exited with status 0. */
static void expect_exit_0(pid_t pid)
{
	int st;
	ck_assert_int_eq(waitpid(pid, &st, 0), pid);
	ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0, "wait status %#x", st);
}

/* Read from @fd into @buf (NUL-terminated, @size) until it holds @want or WAIT_S pass. */
static size_t read_until(int fd, char *buf, size_t size, size_t len, const char *want)
{
	struct pollfd p = {.fd = fd, .events = POLLIN};
	while (!strstr(buf, want) && len + 1 < size && poll(&p, 1, WAIT_S * 1000) == 1) {
		ssize_t k = read(fd, buf + len, size - 1 - len);
		if (k <= 0)
			break;
		len += (size_t)k;
		buf[len] = '\0';
	}
	ck_assert_msg(strstr(buf, want), "'%s' never came; got:\n%s", want, buf);
	return len;
}

/* The older file first, then the current one, whether the VM runs or not. */
START_TEST(logs_prints_the_older_file_then_the_current_one)
{
	append(old_path, "boot 1\nboot 2\n");
	append(log_path, "hello\n");
	struct spawn_result r;
	ck_assert_int_eq(spawn_vmm(&r, WAIT_S, "logs", "--monitor", sock, NULL), 0);
	ck_assert_msg(r.status == 0, "status %d: %s", r.status, r.err);
	ck_assert_str_eq(r.out, "boot 1\nboot 2\nhello\n");
	spawn_free(&r);
}
END_TEST

START_TEST(logs_of_a_vm_without_a_log_names_the_file)
{
	struct spawn_result r;
	ck_assert_int_eq(spawn_vmm(&r, WAIT_S, "logs", "--monitor", sock, NULL), 0);
	ck_assert_int_eq(r.status, 125);
	ck_assert_msg(strstr(r.err, "vmm logs: no console log of ") && strstr(r.err, log_path), "%s", r.err);
	ck_assert_str_eq(r.out, "");
	spawn_free(&r);
}
END_TEST

/* logs -f of a VM that has ended prints the log and returns at once. */
START_TEST(logs_follow_of_an_ended_vm_returns)
{
	append(log_path, "last words\n");
	struct spawn_result r;
	ck_assert_int_eq(spawn_vmm(&r, WAIT_S, "logs", "-f", "--monitor", sock, NULL), 0);
	ck_assert_int_eq(r.status, 0);
	ck_assert_str_eq(r.out, "last words\n");
	spawn_free(&r);
}
END_TEST

/* logs -f follows the log across a rotation and ends when the VM does, with every byte
 * once, in order. */
START_TEST(logs_follow_reads_across_a_rotation_until_the_vm_ends)
{
	append(log_path, "one\n");
	pid_t vm = spawn_listener(sock);
	int p[2];
	ck_assert_int_eq(pipe(p), 0);
	pid_t logs = fork();
	ck_assert_int_ge(logs, 0);
	if (logs == 0) {
		dup2(p[1], STDOUT_FILENO);
		execl(harness_build_path("vmm"), "vmm", "logs", "-f", "--monitor", sock, (char *)NULL);
		_exit(127);
	}
	close(p[1]);
	char out[4096] = "";
	size_t len = read_until(p[0], out, sizeof(out), 0, "one\n");
	append(log_path, "two\n");
	len = read_until(p[0], out, sizeof(out), len, "two\n");
	/* As the console rotates: the old file may get its last bytes after the rename. */
	ck_assert_int_eq(rename(log_path, old_path), 0);
	append(old_path, "three\n");
	append(log_path, "four\n");
	len = read_until(p[0], out, sizeof(out), len, "four\n");
	append(log_path, "five\n");
	end_vm(vm);
	read_until(p[0], out, sizeof(out), len, "five\n");
	expect_exit_0(logs);
	ck_assert_str_eq(out, "one\ntwo\nthree\nfour\nfive\n");
	close(p[0]);
}
END_TEST

START_TEST(console_of_a_vm_not_running_is_refused)
{
	append(log_path, "old\n");
	struct spawn_result r;
	ck_assert_int_eq(spawn_vmm(&r, WAIT_S, "console", "--monitor", sock, NULL), 0);
	ck_assert_int_eq(r.status, 125);
	ck_assert_msg(strstr(r.err, "vmm console: no VM ") && strstr(r.err, " is running"), "%s", r.err);
	spawn_free(&r);
}
END_TEST

/* On a terminal: a banner, then only what is written from now on; Ctrl-] leaves with status
 * 0 and the terminal's modes as they were. */
START_TEST(console_on_a_terminal_shows_new_output_until_ctrl_bracket)
{
	append(log_path, "written before\n");
	pid_t vm = spawn_listener(sock);
	int master;
	pid_t con = forkpty(&master, NULL, NULL, NULL);
	ck_assert_int_ge(con, 0);
	if (con == 0) {
		execl(harness_build_path("vmm"), "vmm", "console", "--monitor", sock, (char *)NULL);
		_exit(127);
	}
	char out[4096] = "";
	size_t len = read_until(master, out, sizeof(out), 0, "Escape character is ^]");
	append(log_path, "written after\n");
	len = read_until(master, out, sizeof(out), len, "written after");
	ck_assert_msg(!strstr(out, "written before"), "%s", out);
	/* Typed keys are not echoed (the guest has no input). */
	ck_assert_int_eq(write(master, "ab\x1d", 3), 3);
	expect_exit_0(con);
	struct pollfd p = {.fd = master, .events = POLLIN};
	while (poll(&p, 1, 0) == 1) {
		ssize_t k = read(master, out + len, sizeof(out) - 1 - len);
		if (k <= 0)
			break;
		len += (size_t)k;
		out[len] = '\0';
	}
	ck_assert_msg(!strstr(out, "ab"), "keys echoed:\n%s", out);
	close(master);
	end_vm(vm);
}
END_TEST

/* The VM ending ends the console, saying so. */
START_TEST(console_ends_when_the_vm_does)
{
	append(log_path, "");
	pid_t vm = spawn_listener(sock);
	int p[2], e[2];
	ck_assert_int_eq(pipe(p), 0);
	ck_assert_int_eq(pipe(e), 0);
	pid_t con = fork();
	ck_assert_int_ge(con, 0);
	if (con == 0) {
		dup2(p[1], STDOUT_FILENO);
		dup2(e[1], STDERR_FILENO);
		execl(harness_build_path("vmm"), "vmm", "console", "--monitor", sock, (char *)NULL);
		_exit(127);
	}
	close(p[1]);
	close(e[1]);
	char out[256] = "", err[512] = "";
	size_t len = read_until(e[0], err, sizeof(err), 0, "(its console is output only).\n");
	append(log_path, "bye\n");
	read_until(p[0], out, sizeof(out), 0, "bye\n");
	end_vm(vm);
	read_until(e[0], err, sizeof(err), len, "vmm console: VM ");
	expect_exit_0(con);
	close(p[0]);
	close(e[0]);
}
END_TEST

Suite *logs_suite(void)
{
	Suite *s = suite_create("logs");
	TCase *tc = tcase_create("logs");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 60);
	HARNESS_ADD_TEST(tc, logs_prints_the_older_file_then_the_current_one);
	HARNESS_ADD_TEST(tc, logs_of_a_vm_without_a_log_names_the_file);
	HARNESS_ADD_TEST(tc, logs_follow_of_an_ended_vm_returns);
	HARNESS_ADD_TEST(tc, logs_follow_reads_across_a_rotation_until_the_vm_ends);
	HARNESS_ADD_TEST(tc, console_of_a_vm_not_running_is_refused);
	HARNESS_ADD_TEST(tc, console_on_a_terminal_shows_new_output_until_ctrl_bracket);
	HARNESS_ADD_TEST(tc, console_ends_when_the_vm_does);
	suite_add_tcase(s, tc);
	return s;
}

/*
 * A VM's console output (vmm/devices/console.c): standard output and the bounded log,
 * its rotation, a fork child's own log, and a detached VM whose standard output and error
 * are the log.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"
#include "vmm/devices/console.h"
#include "vmm/error.h"

static char dir[32], log_path[64], old_path[64];

static void setup(void)
{
	snprintf(dir, sizeof(dir), "/tmp/vmm-console-XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(dir));
	snprintf(log_path, sizeof(log_path), "%s/vm.log", dir);
	snprintf(old_path, sizeof(old_path), "%s/vm.log.1", dir);
}

static void teardown(void)
{
	unlink(log_path);
	unlink(old_path);
	char other[80];
	snprintf(other, sizeof(other), "%s/other.log", dir);
	unlink(other);
	rmdir(dir);
}

/* The whole of file @path (malloc'd, NUL-terminated); "" when it does not exist. */
static char *slurp(const char *path)
{
	char *buf = calloc(1, 1 << 20);
	ck_assert_ptr_nonnull(buf);
	int fd = open(path, O_RDONLY);
	if (fd < 0)
		return buf;
	size_t got = 0;
	ssize_t n;
	while ((n = read(fd, buf + got, (1 << 20) - 1 - got)) > 0)
		got += (size_t)n;
	close(fd);
	return buf;
}

static void write_file(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");
	ck_assert_ptr_nonnull(f);
	fputs(text, f);
	fclose(f);
}

START_TEST(output_goes_to_standard_output_and_the_log_in_order)
{
	int p[2];
	ck_assert_int_eq(pipe(p), 0);
	struct console c;
	console_init(&c, p[1]);
	ck_assert_int_eq(console_open_log(&c, log_path), 0);
	console_output(&c, "one\n", 4);
	console_output(&c, "two\n", 4);
	char out[16] = "";
	ck_assert_int_eq(read(p[0], out, sizeof(out) - 1), 8);
	ck_assert_str_eq(out, "one\ntwo\n");
	char *logged = slurp(log_path);
	ck_assert_str_eq(logged, "one\ntwo\n");
	free(logged);
	struct stat st;
	ck_assert_int_eq(stat(log_path, &st), 0);
	ck_assert_uint_eq(st.st_mode & 0777, 0600);
	console_close(&c);
	close(p[0]);
	close(p[1]);
}
END_TEST

/* At most log_max bytes in NAME.log and in NAME.log.1; together, the newest output, whole
 * writes only, nothing lost between them. */
START_TEST(the_log_rotates_into_one_older_file_and_keeps_the_newest)
{
	struct console c;
	console_init(&c, -1);
	c.log_max = 100;
	ck_assert_int_eq(console_open_log(&c, log_path), 0);
	char all[2048] = "";
	for (int i = 0; i < 40; i++) {
		char line[32];
		int n = snprintf(line, sizeof(line), "line %02d of the guest\n", i); /* 21 bytes */
		console_output(&c, line, (size_t)n);
		strcat(all, line);
	}
	char *now = slurp(log_path), *older = slurp(old_path);
	ck_assert_uint_le(strlen(now), 100);
	ck_assert_uint_le(strlen(older), 100);
	ck_assert_uint_gt(strlen(older), 0);
	char both[512];
	snprintf(both, sizeof(both), "%s%s", older, now);
	ck_assert_uint_eq(strlen(both) % 21, 0);
	ck_assert_str_eq(all + strlen(all) - strlen(both), both);
	ck_assert_str_eq(now + strlen(now) - 21, "line 39 of the guest\n");
	free(now);
	free(older);
	console_close(&c);
}
END_TEST

/* A new VM of the same name starts with nothing of the last one's log. */
START_TEST(a_new_log_replaces_the_old_one_and_its_older_file)
{
	write_file(log_path, "the last VM's\n");
	write_file(old_path, "older still\n");
	struct console c;
	console_init(&c, -1);
	ck_assert_int_eq(console_open_log(&c, log_path), 0);
	console_output(&c, "new\n", 4);
	char *now = slurp(log_path);
	ck_assert_str_eq(now, "new\n");
	free(now);
	ck_assert_int_eq(access(old_path, F_OK), -1);
	console_close(&c);
}
END_TEST

/* A forked child opens its own log: the parent's file keeps only the parent's output. */
START_TEST(opening_another_log_leaves_the_first_untouched)
{
	char other[80];
	snprintf(other, sizeof(other), "%s/other.log", dir);
	struct console c;
	console_init(&c, -1);
	ck_assert_int_eq(console_open_log(&c, log_path), 0);
	console_output(&c, "parent\n", 7);
	ck_assert_int_eq(console_open_log(&c, other), 0);
	console_output(&c, "child\n", 6);
	char *first = slurp(log_path), *second = slurp(other);
	ck_assert_str_eq(first, "parent\n");
	ck_assert_str_eq(second, "child\n");
	free(first);
	free(second);
	console_close(&c);
}
END_TEST

/* Two VMs of one name started at once: the second finds the log being written and leaves
 * it as it is (the first's output stays); once the first is done, it may begin its own. */
START_TEST(a_log_another_console_writes_is_left_alone)
{
	struct console a, b;
	console_init(&a, -1);
	console_init(&b, -1);
	ck_assert_int_eq(console_open_log(&a, log_path), 0);
	console_output(&a, "first\n", 6);
	ck_assert_int_eq(console_open_log(&b, log_path), -EADDRINUSE);
	ck_assert_ptr_nonnull(strstr(error_message(), "being written by another VM"));
	console_output(&a, "more\n", 5);
	char *text = slurp(log_path);
	ck_assert_str_eq(text, "first\nmore\n");
	free(text);
	console_close(&a);
	ck_assert_int_eq(console_open_log(&b, log_path), 0);
	console_output(&b, "second\n", 7);
	text = slurp(log_path);
	ck_assert_str_eq(text, "second\n");
	free(text);
	console_close(&b);
}
END_TEST

/* A log that cannot be made is said, and standard output still gets the console. */
START_TEST(a_log_that_cannot_be_made_leaves_standard_output)
{
	char bad[96];
	snprintf(bad, sizeof(bad), "%s/no-such-dir/vm.log", dir);
	int p[2];
	ck_assert_int_eq(pipe(p), 0);
	struct console c;
	console_init(&c, p[1]);
	ck_assert_int_eq(console_open_log(&c, bad), -ENOENT);
	ck_assert_ptr_nonnull(strstr(error_message(), bad));
	console_output(&c, "still\n", 6);
	char out[16] = "";
	ck_assert_int_eq(read(p[0], out, sizeof(out) - 1), 6);
	ck_assert_str_eq(out, "still\n");
	ck_assert_int_eq(console_detach(&c), -EBADF);
	console_close(&c);
	close(p[0]);
	close(p[1]);
}
END_TEST

/* Detached: nothing more on the old standard output; the console and what the VMM writes
 * on fd 1 and 2 are in the log, also after it rotates. In a child process, whose
 * descriptors it changes. */
START_TEST(a_detached_console_makes_standard_output_and_error_the_log)
{
	int p[2];
	ck_assert_int_eq(pipe(p), 0);
	pid_t pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		close(p[0]);
		dup2(p[1], STDOUT_FILENO);
		struct console c;
		console_init(&c, STDOUT_FILENO);
		c.log_max = 64;
		if (console_open_log(&c, log_path) != 0)
			_exit(2);
		console_output(&c, "before\n", 7);
		if (console_detach(&c) != 0)
			_exit(3);
		console_output(&c, "guest after\n", 12);
		dprintf(STDERR_FILENO, "vmm: said on stderr\n");
		console_output(&c, "a line long enough to rotate the log away\n", 42);
		console_output(&c, "and one more line\n", 18);
		dprintf(STDERR_FILENO, "vmm: after the rotation\n");
		dprintf(STDOUT_FILENO, "on stdout\n");
		_exit(0);
	}
	close(p[1]);
	int st;
	ck_assert_int_eq(waitpid(pid, &st, 0), pid);
	ck_assert(WIFEXITED(st));
	ck_assert_int_eq(WEXITSTATUS(st), 0);
	char out[128] = "";
	ck_assert_int_ge(read(p[0], out, sizeof(out) - 1), 0);
	ck_assert_str_eq(out, "before\n");
	close(p[0]);
	char *now = slurp(log_path), *older = slurp(old_path);
	/* 7 + 12 + 20 bytes, then 42 more would pass 64: the VMM's words count too. */
	ck_assert_str_eq(older, "before\nguest after\nvmm: said on stderr\n");
	ck_assert_str_eq(now, "a line long enough to rotate the log away\nand one more line\n"
			      "vmm: after the rotation\non stdout\n");
	free(now);
	free(older);
}
END_TEST

/* A fork child's lines on the shared terminal begin with its name, also a line written a
 * piece at a time; its log has them as they are. */
START_TEST(a_prefix_begins_each_line_on_standard_output_only)
{
	int p[2];
	ck_assert_int_eq(pipe(p), 0);
	struct console c;
	console_init(&c, p[1]);
	ck_assert_int_eq(console_open_log(&c, log_path), 0);
	console_set_prefix(&c, "web.2");
	console_output(&c, "one\ntw", 6);
	console_output(&c, "o\n", 2);
	console_output(&c, "three", 5);
	char out[128] = "";
	ck_assert_int_gt(read(p[0], out, sizeof(out) - 1), 0);
	ck_assert_str_eq(out, "[web.2] one\n[web.2] two\n[web.2] three");
	char *logged = slurp(log_path);
	ck_assert_str_eq(logged, "one\ntwo\nthree");
	free(logged);
	console_close(&c);
	close(p[0]);
	close(p[1]);
}
END_TEST

START_TEST(the_log_is_named_after_the_socket)
{
	char buf[PATH_MAX];
	ck_assert_int_eq(console_log_path("/run/vmm/web.sock", buf, sizeof(buf)), 0);
	ck_assert_str_eq(buf, "/run/vmm/web.log");
	ck_assert_int_eq(console_log_path("/tmp/monitor", buf, sizeof(buf)), 0);
	ck_assert_str_eq(buf, "/tmp/monitor.log");
	ck_assert_int_eq(console_log_path("/tmp/a-much-longer-name.sock", buf, 16), -ENAMETOOLONG);
}
END_TEST

Suite *console_suite(void)
{
	Suite *s = suite_create("console");
	TCase *tc = tcase_create("log");
	tcase_add_checked_fixture(tc, setup, teardown);
	HARNESS_ADD_TEST(tc, output_goes_to_standard_output_and_the_log_in_order);
	HARNESS_ADD_TEST(tc, the_log_rotates_into_one_older_file_and_keeps_the_newest);
	HARNESS_ADD_TEST(tc, a_new_log_replaces_the_old_one_and_its_older_file);
	HARNESS_ADD_TEST(tc, opening_another_log_leaves_the_first_untouched);
	HARNESS_ADD_TEST(tc, a_log_another_console_writes_is_left_alone);
	HARNESS_ADD_TEST(tc, a_log_that_cannot_be_made_leaves_standard_output);
	HARNESS_ADD_TEST(tc, a_detached_console_makes_standard_output_and_error_the_log);
	HARNESS_ADD_TEST(tc, a_prefix_begins_each_line_on_standard_output_only);
	HARNESS_ADD_TEST(tc, the_log_is_named_after_the_socket);
	suite_add_tcase(s, tc);
	return s;
}

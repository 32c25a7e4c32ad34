/*
 * The CLI on a terminal as a person sees it: tmux runs vmm in a pane of a known size, the
 * tests type into it and read the screen back (capture-pane), so redrawing, escape
 * sequences and key handling are judged by what ends up on the screen.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "fake_vm.h"
#include "harness.h"
#include "spawn.h"

#define WAIT_S 20 /* a guard against a stuck pane, not a timing assertion */

static char server[64]; /* tmux -L: a server of the test's own */
static char tmux[4096];  /* its path: spawn_run does not search PATH */
static struct fake_vm vm;

static void setup(void)
{
	snprintf(server, sizeof(server), "vmm-test-%d", (int)getpid());
	const char *path = getenv("PATH");
	tmux[0] = '\0';
	for (const char *p = path ? path : "/usr/bin:/bin"; *p && !tmux[0];) {
		size_t len = strcspn(p, ":");
		snprintf(tmux, sizeof(tmux), "%.*s/tmux", (int)len, p);
		if (access(tmux, X_OK) != 0)
			tmux[0] = '\0';
		p += len + (p[len] == ':');
	}
	ck_assert_msg(tmux[0], "tmux is not on PATH");
	fake_vm_start(&vm, "vm1", true);
}

static void teardown(void)
{
	char *argv[] = {tmux, "-L", server, "kill-server", NULL};
	struct spawn_result r;
	if (spawn_run(&r, WAIT_S, argv) == 0)
		spawn_free(&r);
	fake_vm_stop(&vm);
}

/* Run the shell command @cmd in a new detached pane of @cols x @rows; after it ends, the
 * pane shows "EXIT=<status>" and stays. */
static void pane_start(const char *cmd, int cols, int rows)
{
	char line[2048], x[16], y[16];
	snprintf(line, sizeof(line), "%s; echo EXIT=$?; sleep %d", cmd, 3 * WAIT_S);
	snprintf(x, sizeof(x), "%d", cols);
	snprintf(y, sizeof(y), "%d", rows);
	char *argv[] = {tmux, "-L", server, "-f", "/dev/null", "new-session", "-d", "-s", "t", "-x", x, "-y", y,
			line, NULL};
	struct spawn_result r;
	ck_assert_int_eq(spawn_run(&r, WAIT_S, argv), 0);
	ck_assert_msg(r.status == 0, "tmux: %s", r.err);
	spawn_free(&r);
}

/* The screen of the pane, as text, wrapped lines joined (malloc'd). */
static char *pane_screen(void)
{
	char *argv[] = {tmux, "-L", server, "capture-pane", "-p", "-J", "-t", "t", NULL};
	struct spawn_result r;
	ck_assert_int_eq(spawn_run(&r, WAIT_S, argv), 0);
	ck_assert_msg(r.status == 0, "tmux capture-pane: %s", r.err);
	char *screen = r.out;
	r.out = NULL;
	spawn_free(&r);
	return screen;
}

/* Wait until the screen shows @text; returns the screen (malloc'd). */
static char *pane_wait_for(const char *text)
{
	for (int i = 0; i < WAIT_S * 20; i++) {
		char *screen = pane_screen();
		if (strstr(screen, text))
			return screen;
		free(screen);
		struct timespec t = {0, 50000000};
		nanosleep(&t, NULL);
	}
	char *screen = pane_screen();
	ck_abort_msg("the screen never showed '%s':\n%s", text, screen);
	return screen;
}

static void pane_keys(const char *keys)
{
	char *argv[] = {tmux, "-L", server, "send-keys", "-t", "t", (char *)keys, NULL};
	struct spawn_result r;
	ck_assert_int_eq(spawn_run(&r, WAIT_S, argv), 0);
	ck_assert_msg(r.status == 0, "tmux send-keys: %s", r.err);
	spawn_free(&r);
}

static unsigned count(const char *haystack, const char *needle)
{
	unsigned n = 0;
	for (const char *p = haystack; (p = strstr(p, needle)); p += strlen(needle))
		n++;
	return n;
}

/* stats --watch redraws one screen in place: the last sample alone is on the screen at the
 * end, with its rate, not the earlier ones above it. */
START_TEST(stats_watch_redraws_one_screen)
{
	char cmd[512];
	snprintf(cmd, sizeof(cmd), "%s stats --monitor %s -w 100ms -N 4 mem.faults vcpu.", harness_build_path("vmm"),
		 vm.path);
	pane_start(cmd, 100, 40);
	char *screen = pane_wait_for("EXIT=");
	ck_assert_msg(strstr(screen, "EXIT=0"), "%s", screen);
	ck_assert_msg(count(screen, "mem.faults") == 1, "not one sample on the screen:\n%s", screen);
	/* The fourth query: 12 + 3 x FAKE_VM_FAULTS_PER_QUERY, with a rate beside it. */
	ck_assert_msg(strstr(screen, "mem.faults") && strstr(strstr(screen, "mem.faults"), "42") &&
			      strstr(strstr(screen, "mem.faults"), "/s"),
		      "%s", screen);
	ck_assert_msg(!strstr(screen, "\033"), "escape sequences left on the screen:\n%s", screen);
	free(screen);
}
END_TEST

static void append(const char *path, const char *text)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_APPEND, 0600);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(write(fd, text, strlen(text)), (ssize_t)strlen(text));
	close(fd);
}

/* vmm console attaches (banner), shows what the VM writes, echoes no keys, and Ctrl-]
 * detaches with status 0, giving the terminal back as it was (a typed line echoes). */
START_TEST(console_attaches_shows_output_and_detaches_on_ctrl_bracket)
{
	char sock[100], log[100], cmd[512];
	snprintf(sock, sizeof(sock), "%s/con.sock", vm.dir);
	snprintf(log, sizeof(log), "%s/con.log", vm.dir);
	append(log, "before attaching\n");
	pid_t con_vm = spawn_listener(sock);
	snprintf(cmd, sizeof(cmd), "%s console --monitor %s", harness_build_path("vmm"), sock);
	pane_start(cmd, 100, 30);
	free(pane_wait_for("Escape character is ^]"));
	append(log, "the guest says hi\n");
	free(pane_wait_for("the guest says hi"));
	pane_keys("typed-but-unseen");
	pane_keys("C-]");
	char *screen = pane_wait_for("EXIT=");
	ck_assert_msg(strstr(screen, "EXIT=0"), "%s", screen);
	ck_assert_msg(!strstr(screen, "before attaching"), "old output shown:\n%s", screen);
	ck_assert_msg(!strstr(screen, "typed-but-unseen"), "keys echoed:\n%s", screen);
	free(screen);
	/* The terminal's echo is back: the driver shows what is typed while sleep runs. */
	pane_keys("echoed-now");
	free(pane_wait_for("echoed-now"));
	kill(con_vm, SIGKILL);
	waitpid(con_vm, NULL, 0);
	unlink(sock);
	unlink(log);
}
END_TEST

Suite *terminal_suite(void)
{
	Suite *s = suite_create("terminal");
	harness_requires(HARNESS_TMUX);
	TCase *tc = fake_vm_tcase(s, "tmux", 4 * WAIT_S, setup, teardown);
	HARNESS_ADD_TEST(tc, stats_watch_redraws_one_screen);
	HARNESS_ADD_TEST(tc, console_attaches_shows_output_and_detaches_on_ctrl_bracket);
	return s;
}

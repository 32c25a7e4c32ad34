/*
 * vmm logs and vmm console: a VM's console log (NAME.log beside its monitor socket, and
 * NAME.log.1 before it; vmm/devices/console.h) printed, followed while the VM runs, or
 * watched from a terminal until Ctrl-] as virsh console is left.
 *
 * Following survives the log's rotation: the file being read is read to its end, then
 * the new NAME.log from its start. The VM's end is seen through a pidfd of the process
 * that owns its monitor socket, so nothing polls the monitor.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <termios.h>
#include <unistd.h>

#include "vmm/cli/cmd_client.h"
#include "vmm/devices/console.h"
#include "vmm/error.h"
#include "vmm/monitor/monitor.h"
#include "vmm/vm.h"

#define LOGS_USAGE "vmm logs [OPTIONS] NAME"
#define CONSOLE_USAGE "vmm console [OPTIONS] NAME"
#define LOGS_POLL_MS 100      /* how often a follower looks at the file for more */
#define CONSOLE_ESCAPE 0x1d   /* Ctrl-], as virsh console */

static const struct cli_option logs_options[] = {
	{"follow", 'f', NULL, CMD_CLIENT_OPT_FOLLOW, "go on printing what the VM writes until it ends"},
	CMD_CLIENT_OPTION_MONITOR,
	CMD_CLIENT_OPTION_HELP,
	{0},
};

static const struct cli_option console_options[] = {
	CMD_CLIENT_OPTION_MONITOR,
	CMD_CLIENT_OPTION_HELP,
	{0},
};

static void logs_help(FILE *f, const char *verb)
{
	(void)verb;
	fprintf(f, "usage: " LOGS_USAGE "\n"
		   "Print the console output of VM NAME, running or ended, as its log has it: NAME.log\n"
		   "beside its monitor socket, after NAME.log.1 (the log keeps the last 1-2 MiB).\n"
		   "A VM started with -d writes there what it would have written on the terminal.\n\n");
	cli_print_options(f, logs_options);
	fprintf(f, "\nExit status: 0 printed (with -f: the VM ended), 125 no log of NAME or bad arguments.\n");
}

static void console_help(FILE *f, const char *verb)
{
	(void)verb;
	fprintf(f, "usage: " CONSOLE_USAGE "\n"
		   "Show what the running VM NAME writes on its console from now on, until it ends or\n"
		   "Ctrl-] is typed. The guest's console is output only: other keys go nowhere.\n"
		   "(vmm logs NAME shows what it wrote before.)\n\n");
	cli_print_options(f, console_options);
	fprintf(f, "\nExit status: 0 left or the VM ended, 125 no such running VM or bad arguments,\n"
		   "130 interrupted.\n");
}

/* What a follower reads: the log's path and the file open, and the VM's process. */
struct logs_follow {
	char path[PATH_MAX];
	int fd;    /* the NAME.log being read, -1 none yet */
	int vm_fd; /* a pidfd of the VM's process, -1 when it does not run */
};

/* The log of the VM @a names (--monitor PATH or NAME) into f->path, and a pidfd of the
 * process listening on its socket (-1 when none does). 0 or -errno with a message. */
static int logs_find(const struct cmd_client_args *a, struct logs_follow *f)
{
	char sock[PATH_MAX];
	f->fd = f->vm_fd = -1;
	int r = cmd_client_socket(a, sock, sizeof(sock));
	if (!r)
		r = console_log_path(sock, f->path, sizeof(f->path));
	if (r)
		return r;
	pid_t pid = 0;
	if (monitor_socket_owner(sock, &pid) == 0 && pid > 0)
		f->vm_fd = (int)syscall(SYS_pidfd_open, pid, 0);
	return 0;
}

/* Copy @fd from its offset to its end onto standard output. 0 or -errno with a message. */
static int logs_copy(int fd, const char *path)
{
	char buf[65536];
	for (;;) {
		ssize_t n = read(fd, buf, sizeof(buf));
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return error_set_errno(errno, "cannot read %s", path);
		if (n == 0)
			return fflush(stdout) == 0 || errno == EPIPE ? 0 : error_set_errno(errno, "cannot write the log out");
		if (fwrite(buf, 1, (size_t)n, stdout) != (size_t)n)
			return error_set_errno(errno ? errno : EIO, "cannot write the log out");
	}
}

/* Print what is new: the rest of the file open, then, when NAME.log is another file by
 * now (rotated, or the first look), the last of the old one and the new one from its
 * start. 0 or -errno (message set). */
static int logs_catch_up(struct logs_follow *f)
{
	for (;;) {
		if (f->fd >= 0) {
			int r = logs_copy(f->fd, f->path);
			if (r)
				return r;
		}
		int fd = open(f->path, O_RDONLY | O_CLOEXEC);
		if (fd < 0 && errno == ENOENT && f->fd >= 0)
			return 0; /* between the rotation's rename and the new file: next time */
		if (fd < 0)
			return error_set_errno(errno, "cannot open %s", f->path);
		struct stat now, open_st;
		if (f->fd >= 0 && fstat(fd, &now) == 0 && fstat(f->fd, &open_st) == 0 && now.st_ino == open_st.st_ino &&
		    now.st_dev == open_st.st_dev) {
			close(fd);
			return 0;
		}
		if (f->fd >= 0) {
			/* The writer made the new file after its last write to the old one: what
			 * came since the copy above is there to read now, and nothing more will. */
			int r = logs_copy(f->fd, f->path);
			close(f->fd);
			if (r) {
				close(fd);
				f->fd = -1;
				return r;
			}
		}
		f->fd = fd;
	}
}

static void logs_close(struct logs_follow *f)
{
	if (f->fd >= 0)
		close(f->fd);
	if (f->vm_fd >= 0)
		close(f->vm_fd);
	f->fd = f->vm_fd = -1;
}

static volatile sig_atomic_t logs_interrupted;

static void logs_on_signal(int sig)
{
	logs_interrupted = sig;
}

/* How a follow ended. */
enum logs_end { LOGS_VM_ENDED, LOGS_LEFT, LOGS_INTERRUPTED };

/*
 * Print what the VM writes until it ends (a final catch-up after), or with @keys (a
 * terminal's standard input) until Ctrl-] is read, or until a signal logs_on_signal
 * takes. 0 with *@end, or -errno with a message.
 */
static int logs_follow(struct logs_follow *f, int keys, enum logs_end *end)
{
	for (;;) {
		int r = logs_catch_up(f);
		if (r)
			return r;
		if (logs_interrupted) {
			*end = LOGS_INTERRUPTED;
			return 0;
		}
		struct pollfd p[2] = {{.fd = f->vm_fd, .events = POLLIN}, {.fd = keys, .events = POLLIN}};
		int n = poll(p, 2, LOGS_POLL_MS);
		if (n < 0 && errno != EINTR)
			return error_set_errno(errno, "poll");
		if (n > 0 && p[0].revents) {
			*end = LOGS_VM_ENDED;
			return logs_catch_up(f);
		}
		if (n > 0 && p[1].revents) {
			char typed[64];
			ssize_t k = read(keys, typed, sizeof(typed));
			if (k > 0 && memchr(typed, CONSOLE_ESCAPE, (size_t)k)) {
				*end = LOGS_LEFT;
				return 0;
			}
			if (k == 0)
				keys = -1; /* no more keys: watch until the VM ends */
		}
	}
}

int cmd_logs(int argc, char **argv)
{
	const char *verb = "logs";
	struct cmd_client_args a;
	int status = cmd_client_parse(verb, LOGS_USAGE, logs_options, true, logs_help, argc, argv, &a);
	if (status != CMD_CLIENT_GO_ON)
		return status;
	struct logs_follow f;
	int r = logs_find(&a, &f);
	char older[PATH_MAX + 2];
	snprintf(older, sizeof(older), "%s.1", f.path);
	int old_fd = r ? -1 : open(older, O_RDONLY | O_CLOEXEC);
	if (!r && old_fd < 0 && access(f.path, F_OK) != 0)
		r = error_set(ENOENT, "no console log of %s at %s", a.name ? a.name : a.monitor, f.path);
	if (!r && old_fd >= 0)
		r = logs_copy(old_fd, older);
	if (old_fd >= 0)
		close(old_fd);
	enum logs_end end;
	if (!r && (!a.follow || f.vm_fd < 0))
		r = logs_catch_up(&f);
	else if (!r)
		r = logs_follow(&f, -1, &end);
	logs_close(&f);
	return r ? cmd_client_fail(verb, r) : 0;
}

int cmd_console(int argc, char **argv)
{
	const char *verb = "console";
	struct cmd_client_args a;
	int status = cmd_client_parse(verb, CONSOLE_USAGE, console_options, true, console_help, argc, argv, &a);
	if (status != CMD_CLIENT_GO_ON)
		return status;
	const char *who = a.name ? a.name : a.monitor;
	struct logs_follow f;
	int r = logs_find(&a, &f);
	if (!r && f.vm_fd < 0)
		r = error_set(ESRCH, "no VM %s is running", who);
	/* From now on: what is in the log already is vmm logs's to show. */
	if (!r && (f.fd = open(f.path, O_RDONLY | O_CLOEXEC)) < 0)
		r = error_set_errno(errno, "cannot open %s", f.path);
	if (!r && lseek(f.fd, 0, SEEK_END) < 0)
		r = error_set_errno(errno, "cannot read %s", f.path);
	if (r) {
		logs_close(&f);
		return cmd_client_fail(verb, r);
	}
	struct sigaction on = {.sa_handler = logs_on_signal};
	sigaction(SIGINT, &on, NULL);
	sigaction(SIGTERM, &on, NULL);
	sigaction(SIGHUP, &on, NULL);
	/* Keys one at a time and not echoed, so that Ctrl-] is seen when typed; ^C still a signal. */
	struct termios saved, raw;
	bool terminal = isatty(STDIN_FILENO) && tcgetattr(STDIN_FILENO, &saved) == 0;
	if (terminal) {
		raw = saved;
		raw.c_lflag &= ~(tcflag_t)(ICANON | ECHO);
		raw.c_cc[VMIN] = 1;
		raw.c_cc[VTIME] = 0;
		tcsetattr(STDIN_FILENO, TCSANOW, &raw);
	}
	/* Said once the log is open at its end: whatever the VM writes from here is shown. */
	fprintf(stderr, "Connected to VM %s (its console is output only)%s", who,
		terminal ? ". Escape character is ^]\r\n" : ".\n");
	enum logs_end end = LOGS_LEFT;
	r = logs_follow(&f, terminal ? STDIN_FILENO : -1, &end);
	if (terminal)
		tcsetattr(STDIN_FILENO, TCSANOW, &saved);
	logs_close(&f);
	if (r)
		return cmd_client_fail(verb, r);
	if (end == LOGS_VM_ENDED)
		fprintf(stderr, "\nvmm console: VM %s ended\n", who);
	return end == LOGS_INTERRUPTED ? 128 + logs_interrupted : 0;
}

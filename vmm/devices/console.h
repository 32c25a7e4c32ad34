/*
 * Where a VM's console output goes: the VMM's standard output (a terminal, a pipe) and a
 * bounded log beside the VM's monitor socket (NAME.log), which `vmm logs` and `vmm
 * console` read. The serial port and the console port write through console_output.
 *
 * The log holds at most CONSOLE_LOG_MAX bytes in NAME.log and the CONSOLE_LOG_MAX before
 * them in NAME.log.1: when a write would take NAME.log past the bound, NAME.log becomes
 * NAME.log.1 (the older one goes) and a new NAME.log begins, so a reader that follows the
 * file sees it replaced, never cut. A new VM of the same name starts both afresh.
 *
 * A detached VM (console_detach) writes nothing to its standard output any more: fd 1 and
 * fd 2 become the log, so that what the VMM itself says (its errors, "guest ended") lands
 * there too, and follow the log when it rotates.
 *
 * Locking: every field is under @lock; console_output may be called from any vCPU thread.
 */
#ifndef VMM_CONSOLE_H
#define VMM_CONSOLE_H

#include <limits.h>
#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define CONSOLE_LOG_MAX (1u << 20)

struct console {
	pthread_mutex_t lock;
	int out_fd;          /* standard output's copy of the console, -1 none (detached) */
	int log_fd;          /* NAME.log, opened O_APPEND, -1 none */
	uint64_t log_size;   /* bytes in it */
	uint64_t log_max;    /* CONSOLE_LOG_MAX; tests lower it */
	bool holds_stdio;    /* fd 1 and 2 are the log (console_detach) */
	bool log_failed;     /* a write or rotation failed: said once, log dropped */
	bool mid_line;       /* standard output's last byte was not a newline */
	char prefix[80];     /* put before each line on standard output, "" none */
	char log_path[PATH_MAX];
};

/* A console writing to @out_fd only (-1: nowhere). */
void console_init(struct console *c, int out_fd);

/*
 * Begin the log at @path (0600; an old one of that name and its .1 are replaced), in place
 * of any log @c had: a forked child opens its own, leaving its parent's file alone. The log
 * is locked (flock) while written: -EADDRINUSE when another console writes it, which is
 * left as it is. 0, or -errno with a message naming the file; the console then goes on
 * without a log.
 */
int console_open_log(struct console *c, const char *path);

/* The log's path for the monitor socket @socket_path: NAME.log for NAME.sock, else
 * SOCKET.log. 0, or -ENAMETOOLONG with a message. */
int console_log_path(const char *socket_path, char *buf, size_t size);

/* Begin each line @c writes to standard output with "[@name] " (a forked child sharing
 * its parent's terminal); the log has the lines as they are. */
void console_set_prefix(struct console *c, const char *name);

/* Write @len bytes of console output to standard output (if any) and the log (if any).
 * A reader gone or a full disk drops the output: the guest never waits on either. */
void console_output(struct console *c, const void *data, size_t len);

/* Stop writing to standard output; make fd 1 and fd 2 the log (which must be open), and
 * stdin /dev/null. 0 or -errno with a message. */
int console_detach(struct console *c);

/* Close the log (fd 1 and 2 stay what they are). */
void console_close(struct console *c);

#endif

/* A VM's console output: standard output and the bounded log (console.h). */
#include "vmm/devices/console.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "vmm/error.h"

void console_init(struct console *c, int out_fd)
{
	memset(c, 0, sizeof(*c));
	pthread_mutex_init(&c->lock, NULL);
	c->out_fd = out_fd;
	c->log_fd = -1;
	c->log_max = CONSOLE_LOG_MAX;
}

int console_log_path(const char *socket_path, char *buf, size_t size)
{
	size_t len = strlen(socket_path), stem = len;
	if (len > 5 && strcmp(socket_path + len - 5, ".sock") == 0)
		stem = len - 5;
	int n = snprintf(buf, size, "%.*s.log", (int)stem, socket_path);
	if (n < 0 || (size_t)n >= size)
		return error_set(ENAMETOOLONG, "the console log's path for %s is too long", socket_path);
	return 0;
}

/* Write all of @len bytes to @fd: 0, or -errno. */
static int console_write_all(int fd, const uint8_t *p, size_t len)
{
	while (len) {
		ssize_t n = write(fd, p, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		if (n == 0)
			return -EIO;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

/* A new, empty log file at c->log_path in place of the one open, fd 1 and 2 following it
 * when they hold the log. Under c->lock. */
static int console_log_begin(struct console *c)
{
	/* Held for as long as the log is written (the lock goes with its last descriptor): a
	 * second VM of this name, started at the same moment, finds it and leaves the log
	 * alone, instead of emptying it. */
	int fd = open(c->log_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0)
		return -errno;
	if (flock(fd, LOCK_EX | LOCK_NB) != 0 || ftruncate(fd, 0) != 0) {
		int err = errno == EWOULDBLOCK ? EADDRINUSE : errno;
		close(fd);
		return -err;
	}
	if (c->holds_stdio && (dup2(fd, STDOUT_FILENO) < 0 || dup2(fd, STDERR_FILENO) < 0)) {
		int err = errno;
		close(fd);
		return -err;
	}
	if (c->log_fd >= 0)
		close(c->log_fd);
	c->log_fd = fd;
	c->log_size = 0;
	return 0;
}

/* NAME.log becomes NAME.log.1 and a new NAME.log begins. Under c->lock. */
static int console_log_rotate(struct console *c)
{
	char older[PATH_MAX + 2];
	snprintf(older, sizeof(older), "%s.1", c->log_path);
	if (rename(c->log_path, older) != 0)
		return -errno;
	return console_log_begin(c);
}

/* Give up on the log after error @err, saying so once. Under c->lock. */
static void console_log_fail(struct console *c, const char *what, int err)
{
	if (c->log_fd >= 0)
		close(c->log_fd);
	c->log_fd = -1;
	c->log_failed = true;
	fprintf(stderr, "vmm: cannot %s the console log %s: %s; the console is no longer logged\n", what,
		c->log_path, strerror(err));
}

int console_open_log(struct console *c, const char *path)
{
	pthread_mutex_lock(&c->lock);
	int n = snprintf(c->log_path, sizeof(c->log_path), "%s", path);
	char older[PATH_MAX + 2];
	int r = n < 0 || (size_t)n >= sizeof(c->log_path) ? -ENAMETOOLONG : 0;
	if (!r) {
		/* A forked child's inherited descriptor is its parent's log: let it go, untouched. */
		if (c->log_fd >= 0)
			close(c->log_fd);
		c->log_fd = -1;
		r = console_log_begin(c);
	}
	if (!r) {
		snprintf(older, sizeof(older), "%s.1", path);
		if (unlink(older) != 0 && errno != ENOENT)
			r = -errno;
	}
	c->log_failed = r != 0;
	pthread_mutex_unlock(&c->lock);
	if (r == -EADDRINUSE)
		return error_set(EADDRINUSE, "console log %s is being written by another VM of that name", path);
	if (r)
		return error_set(-r, "cannot start the console log %s: %s", path, strerror(-r));
	return 0;
}

void console_set_prefix(struct console *c, const char *name)
{
	pthread_mutex_lock(&c->lock);
	snprintf(c->prefix, sizeof(c->prefix), "[%s] ", name);
	c->mid_line = false;
	pthread_mutex_unlock(&c->lock);
}

/* @len bytes onto standard output, each line begun with the prefix. Under c->lock. */
static void console_to_out(struct console *c, const uint8_t *p, size_t len)
{
	if (!c->prefix[0]) {
		console_write_all(c->out_fd, p, len);
		return;
	}
	while (len) {
		const uint8_t *nl = memchr(p, '\n', len);
		size_t n = nl ? (size_t)(nl - p) + 1 : len;
		if (!c->mid_line)
			console_write_all(c->out_fd, (const uint8_t *)c->prefix, strlen(c->prefix));
		console_write_all(c->out_fd, p, n);
		c->mid_line = !nl;
		p += n;
		len -= n;
	}
}

void console_output(struct console *c, const void *data, size_t len)
{
	pthread_mutex_lock(&c->lock);
	/* Standard output gone (a closed pipe, a terminal hung up): the log still has it. */
	if (c->out_fd >= 0)
		console_to_out(c, data, len);
	/* Detached, the VMM's own words go into the file through fd 2 as well. */
	struct stat st;
	if (c->log_fd >= 0 && c->holds_stdio && fstat(c->log_fd, &st) == 0)
		c->log_size = (uint64_t)st.st_size;
	if (c->log_fd >= 0 && c->log_size > 0 && c->log_size + len > c->log_max) {
		int r = console_log_rotate(c);
		if (r)
			console_log_fail(c, "rotate", -r);
	}
	if (c->log_fd >= 0) {
		int r = console_write_all(c->log_fd, data, len);
		if (r)
			console_log_fail(c, "write", -r);
		else
			c->log_size += len;
	}
	pthread_mutex_unlock(&c->lock);
}

int console_detach(struct console *c)
{
	pthread_mutex_lock(&c->lock);
	int r = 0;
	if (c->log_fd < 0)
		r = -EBADF;
	int null_fd = r ? -1 : open("/dev/null", O_RDONLY | O_CLOEXEC);
	if (!r && null_fd < 0)
		r = -errno;
	if (!r && (dup2(null_fd, STDIN_FILENO) < 0 || dup2(c->log_fd, STDOUT_FILENO) < 0 ||
		   dup2(c->log_fd, STDERR_FILENO) < 0))
		r = -errno;
	if (null_fd >= 0)
		close(null_fd);
	if (!r) {
		c->out_fd = -1;
		c->holds_stdio = true;
	}
	pthread_mutex_unlock(&c->lock);
	if (r == -EBADF)
		return error_set(EBADF, "a VM without a console log cannot run detached");
	if (r)
		return error_set(-r, "cannot detach the console into %s: %s", c->log_path, strerror(-r));
	return 0;
}

void console_close(struct console *c)
{
	pthread_mutex_lock(&c->lock);
	if (c->log_fd >= 0)
		close(c->log_fd);
	c->log_fd = -1;
	pthread_mutex_unlock(&c->lock);
}

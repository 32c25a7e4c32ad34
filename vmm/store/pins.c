/* Pins: snapshots a running VM reads from. See store.h and store_impl.h. */
#include "vmm/store/store_impl.h"

#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "vmm/error.h"
#include "vmm/file_io.h"

/*
 * A running VM restored from a snapshot reads that snapshot's pages for as long as it
 * lives, and names it as the parent of its own snapshots: it pins it. A running VM also
 * pins the last snapshot it took, the base of its next one. A pin is a file
 * pins/NAME@PID-SEQ holding the holder's description ("VM 'web' (pid 42)"), locked shared
 * (flock) by the holder for as long as it holds the snapshot open. The lock, not the file,
 * is the pin: it goes with the holder's last descriptor (a forked child VM inherits it),
 * also under kill -9. A pin file whose lock can be taken alone is stale and is removed by
 * the next delete or gc. Files are renamed into place already locked, so a pin is never
 * seen unlocked while its holder lives.
 */

#define PINS_DIR "pins"

/* Open (@create: make) the store's pins folder. The fd, -ENOENT when there is none and
 * @create is false, or -errno with a message. */
static int pins_dir(struct store *s, bool create)
{
	if (create && mkdirat(store_dir_fd(s), PINS_DIR, 0755) != 0 && errno != EEXIST)
		return error_set_errno(errno, "cannot create %s/" PINS_DIR, s->dir);
	int fd = openat(store_dir_fd(s), PINS_DIR, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return errno == ENOENT && !create ? -ENOENT : error_set_errno(errno, "cannot open %s/" PINS_DIR, s->dir);
	return fd;
}

/* Pin snapshot @name for @holder; *fd is the pin's descriptor to close when done, or -1
 * when the store cannot be written by this user (who then cannot delete from it either).
 * 0 or -errno with a message. */
int store_dir_pin(struct store *s, const char *name, const char *holder, int *fd)
{
	static atomic_uint seq;
	*fd = -1;
	int dir = pins_dir(s, true);
	if (dir == -EACCES || dir == -EROFS || dir == -EPERM) {
		error_clear();
		return 0;
	}
	if (dir < 0)
		return dir;
	char file[STORE_NAME_MAX + 64], tmp[sizeof(file) + 8];
	unsigned n = atomic_fetch_add(&seq, 1);
	snprintf(file, sizeof(file), "%s@%d-%u", name, (int)getpid(), n);
	snprintf(tmp, sizeof(tmp), ".%s.tmp", file);
	int r = store_open_file(s, dir, PINS_DIR, tmp, O_RDWR | O_CREAT | O_TRUNC, 0644);
	if (r >= 0) {
		int pin = r;
		r = flock(pin, LOCK_SH | LOCK_NB) != 0 ? -errno : file_write_all(pin, holder, strlen(holder));
		if (!r && renameat(dir, tmp, dir, file) != 0)
			r = -errno;
		if (r) {
			unlinkat(dir, tmp, 0);
			close(pin);
			r = error_set(-r, "cannot pin snapshot '%s' in %s/" PINS_DIR ": %s", name, s->dir, strerror(-r));
		} else {
			*fd = pin;
		}
	}
	close(dir);
	return r < 0 ? r : 0;
}

struct pin_scan {
	int dir;
	const char *name;       /* the snapshot whose pins are looked for, NULL: sweep all */
	char holder[256];       /* a live pin's holder, "" when none was found */
};

/* One entry of the pins folder: a stale pin is removed, a live one of scan->name is told. */
static int pin_scan_entry(struct store *s, const char *entry, void *arg)
{
	struct pin_scan *ps = arg;
	const char *at = strrchr(entry, '@');
	bool temporary = entry[0] == '.';
	if (!at || (ps->name && (temporary || (size_t)(at - entry) != strlen(ps->name) ||
				 strncmp(entry, ps->name, (size_t)(at - entry)) != 0)))
		return 0;
	int fd = store_open_file(s, ps->dir, PINS_DIR, entry, O_RDONLY, 0);
	if (fd < 0) {
		error_clear(); /* gone meanwhile, or no pin: not ours to judge */
		return 0;
	}
	if (flock(fd, LOCK_EX | LOCK_NB) == 0) {
		unlinkat(ps->dir, entry, 0);
	} else if (ps->name && !temporary) {
		ssize_t n = pread(fd, ps->holder, sizeof(ps->holder) - 1, 0);
		ps->holder[n > 0 ? n : 0] = '\0';
		for (char *c = ps->holder; *c; c++)
			if (*c < ' ' || *c > '~')
				*c = '?'; /* the holder's words are quoted in one line of text */
		if (!ps->holder[0])
			snprintf(ps->holder, sizeof(ps->holder), "process %.*s", (int)strcspn(at + 1, "-"), at + 1);
	}
	close(fd);
	return ps->holder[0] ? 1 : 0;
}

/* Look for a live pin of snapshot @name (NULL: none, only sweep), removing the stale pins
 * met on the way. 1 with its holder in @holder, 0 when none, or -errno with a message. The
 * caller holds the store lock alone, so no pin is being made meanwhile. */
int store_dir_pinned(struct store *s, const char *name, char *holder, size_t len)
{
	struct pin_scan ps = {.name = name};
	ps.dir = pins_dir(s, false);
	if (ps.dir == -ENOENT)
		return 0;
	if (ps.dir < 0)
		return ps.dir;
	int r = store_dir_walk(s, ps.dir, PINS_DIR, pin_scan_entry, &ps);
	close(ps.dir);
	if (r > 0 && holder)
		snprintf(holder, len, "%s", ps.holder);
	return r;
}

/*
 * A store in a local folder (store_impl.h's backend): STORE/packs, STORE/snapshots,
 * STORE/pins and STORE/lock, as store.h lays them out. Files are written aside and renamed
 * into place, then their folder synced; the lock is flock(2) on STORE/lock.
 */
#include "vmm/store/store_impl.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>
#include <xxhash.h>

#include "vmm/clock.h"
#include "vmm/error.h"
#include "vmm/file_io.h"

struct store_dir {
	int dir_fd, packs_fd, snaps_fd; /* (c) */
	int lock_fd;                    /* (c) -1: opened read-only and the store has no lock file */
	int *pack_fds;                  /* (l) open packs by id (-1: not open), for reading back */
	uint32_t pack_fds_cap;          /* (o) */
};

struct store_file {
	struct store *s;
	enum store_folder folder;
	char name[STORE_NAME_MAX + 16];
	int fd;
};

static const char *const folder_names[] = {"packs", "snapshots", "pins"};

static struct store_dir *store_dir_of(const struct store *s)
{
	return s->priv;
}

int store_dir_fd(const struct store *s)
{
	return store_dir_of(s)->dir_fd;
}

/* The descriptor of folder @f (packs or snapshots). */
static int store_dir_folder(const struct store *s, enum store_folder f)
{
	return f == STORE_PACKS ? store_dir_of(s)->packs_fd : store_dir_of(s)->snaps_fd;
}

int store_open_file(struct store *s, int at, const char *sub, const char *name, int flags, mode_t mode)
{
	char shown[4200];
	snprintf(shown, sizeof(shown), "%s/%s%s%s", s->dir, sub, *sub ? "/" : "", name);
	return file_open_regular(at, name, flags, mode, 0, "store file", shown);
}

static int store_dir_sync(int fd, const char *what)
{
	if (fsync(fd) != 0)
		return error_set_errno(errno, "cannot sync %s", what);
	return 0;
}

static int store_dir_lock(struct store *s, bool exclusive, bool wait)
{
	struct store_dir *d = store_dir_of(s);
	if (d->lock_fd < 0)
		return 0; /* read-only, and nobody ever wrote here */
	int op = exclusive ? LOCK_EX : LOCK_SH;
	struct timespec nap = {0, 1000000};
	uint64_t deadline = clock_monotonic_ns() + (wait ? STORE_LOCK_WAIT_S * 1000000000ull : 0);
	for (;;) {
		if (flock(d->lock_fd, op | LOCK_NB) == 0)
			return 0;
		if (errno != EWOULDBLOCK && errno != EINTR)
			return error_set_errno(errno, "cannot lock %s/lock", s->dir);
		if (!wait)
			return error_set(EBUSY, "store %s is in use by a snapshot writer; try again later", s->dir);
		if (clock_monotonic_ns() >= deadline)
			return error_set(EBUSY, "store %s is locked by another process (a gc or a snapshot being written) for over %d s; try again later",
					 s->dir, STORE_LOCK_WAIT_S);
		nanosleep(&nap, NULL);
		if (nap.tv_nsec < 50000000)
			nap.tv_nsec *= 2;
	}
}

static void store_dir_unlock(struct store *s)
{
	struct store_dir *d = store_dir_of(s);
	if (d->lock_fd >= 0)
		flock(d->lock_fd, LOCK_UN);
}

static void store_dir_forget(struct store *s)
{
	struct store_dir *d = store_dir_of(s);
	for (uint32_t i = 0; i < d->pack_fds_cap; i++) {
		if (d->pack_fds[i] >= 0)
			close(d->pack_fds[i]);
		d->pack_fds[i] = -1;
	}
}

int store_dir_walk(struct store *s, int at, const char *sub, store_entry_fn *fn, void *arg)
{
	int fd = dup(at);
	DIR *dir = fd >= 0 ? fdopendir(fd) : NULL;
	if (!dir) {
		if (fd >= 0)
			close(fd);
		return error_set_errno(errno, "cannot read %s/%s", s->dir, sub);
	}
	rewinddir(dir);
	int r = 0;
	struct dirent *de;
	while (!r && (de = readdir(dir)))
		r = fn(s, de->d_name, arg);
	closedir(dir);
	return r;
}

static int store_dir_each(struct store *s, enum store_folder f, store_entry_fn *fn, void *arg)
{
	return store_dir_walk(s, store_dir_folder(s, f), folder_names[f], fn, arg);
}

static bool store_dir_exists(struct store *s, enum store_folder f, const char *name)
{
	return faccessat(store_dir_folder(s, f), name, F_OK, 0) == 0;
}

static int store_dir_stat(struct store *s, enum store_folder f, const char *name, bool contents, uint64_t *tag,
			  uint64_t *size)
{
	struct stat st;
	if (fstatat(store_dir_folder(s, f), name, &st, AT_SYMLINK_NOFOLLOW) != 0)
		return errno == ENOENT ? -ENOENT : error_set_errno(errno, "%s/%s/%s", s->dir, folder_names[f], name);
	uint64_t v[5] = {st.st_dev, st.st_ino};
	if (contents) {
		v[2] = (uint64_t)st.st_size;
		v[3] = (uint64_t)st.st_mtim.tv_sec;
		v[4] = (uint64_t)st.st_mtim.tv_nsec;
	}
	if (tag)
		*tag = XXH3_64bits(v, sizeof(v)) | 1;
	if (size)
		*size = S_ISREG(st.st_mode) ? (uint64_t)st.st_size : 0;
	return 0;
}

/* Mapped shared and read-only: pages load on first use and stay readable after the file
 * is removed or replaced. */
static int store_dir_view(struct store *s, enum store_folder f, const char *name, struct store_view *v)
{
	*v = (struct store_view){0};
	int fd = store_open_file(s, store_dir_folder(s, f), folder_names[f], name, O_RDONLY, 0);
	if (fd < 0)
		return fd;
	struct stat st;
	int r = fstat(fd, &st) != 0 ? error_set_errno(errno, "%s/%s/%s", s->dir, folder_names[f], name) : 0;
	if (!r && st.st_size > 0) {
		void *map = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_SHARED, fd, 0);
		if (map == MAP_FAILED)
			r = error_set_errno(errno, "%s/%s/%s: cannot map", s->dir, folder_names[f], name);
		else
			*v = (struct store_view){map, (size_t)st.st_size};
	}
	close(fd);
	return r;
}

static void store_dir_unview(struct store_view *v)
{
	if (v->data)
		munmap((void *)v->data, v->size);
	*v = (struct store_view){0};
}

/* An open pack, kept until the lock is let go (store_dir_forget). */
static int store_dir_pack_fd(struct store *s, const char *name)
{
	struct store_dir *d = store_dir_of(s);
	uint32_t id;
	if (!pack_name_id(name, &id))
		return error_set(EINVAL, "%s/packs/%s: not a pack name", s->dir, name);
	if (id >= d->pack_fds_cap) {
		uint32_t cap = id + 64;
		int *fds = realloc(d->pack_fds, cap * sizeof(int));
		if (!fds)
			return error_set(ENOMEM, "no memory for the pack table");
		for (uint32_t i = d->pack_fds_cap; i < cap; i++)
			fds[i] = -1;
		d->pack_fds = fds;
		d->pack_fds_cap = cap;
	}
	if (d->pack_fds[id] < 0) {
		int fd = store_open_file(s, d->packs_fd, "packs", name, O_RDONLY, 0);
		if (fd < 0)
			return fd;
		d->pack_fds[id] = fd;
	}
	return d->pack_fds[id];
}

static int store_dir_read(struct store *s, enum store_folder f, const char *name, uint64_t off, void *buf, size_t len)
{
	int fd = f == STORE_PACKS ? store_dir_pack_fd(s, name)
				  : store_open_file(s, store_dir_folder(s, f), folder_names[f], name, O_RDONLY, 0);
	if (fd < 0)
		return fd;
	ssize_t n = pread(fd, buf, len, (off_t)off);
	if (f != STORE_PACKS)
		close(fd);
	if (n != (ssize_t)len)
		return error_set(EIO, "%s/%s/%s: %llu bytes at %llu are missing (file too short)", s->dir, folder_names[f],
				 name, (unsigned long long)len, (unsigned long long)off);
	return 0;
}

/* Written aside as ".NAME.tmp", synced, then renamed into place (or, @exclusive, linked:
 * refused when the name is taken), and the folder synced. */
static int store_dir_write(struct store *s, enum store_folder f, const char *name, const struct iovec *iov,
			   unsigned n, bool exclusive)
{
	int at = store_dir_folder(s, f);
	char tmp[STORE_NAME_MAX + 32];
	snprintf(tmp, sizeof(tmp), ".%s.tmp", name);
	int fd = store_open_file(s, at, folder_names[f], tmp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	if (fd < 0)
		return fd;
	int r = 0;
	for (unsigned i = 0; i < n && !r; i++)
		if (iov[i].iov_len)
			r = file_write_all(fd, iov[i].iov_base, iov[i].iov_len);
	if (!r && fsync(fd) != 0)
		r = -errno;
	close(fd);
	if (!r && exclusive && linkat(at, tmp, at, name, 0) != 0)
		r = -errno;
	else if (!r && !exclusive && renameat(at, tmp, at, name) != 0)
		r = -errno;
	if (r || exclusive)
		unlinkat(at, tmp, 0);
	if (r == -EEXIST)
		return error_set(EEXIST, "%s/%s/%s exists already", s->dir, folder_names[f], name);
	if (r)
		return error_set(-r, "cannot write %s/%s/%s: %s", s->dir, folder_names[f], name, strerror(-r));
	return store_dir_sync(at, folder_names[f]);
}

static int store_dir_remove(struct store *s, enum store_folder f, const char *name)
{
	if (unlinkat(store_dir_folder(s, f), name, 0) == 0)
		return 0;
	return errno == ENOENT ? -ENOENT : error_set_errno(errno, "cannot remove %s/%s/%s", s->dir, folder_names[f], name);
}

static int store_dir_flush(struct store *s, enum store_folder f)
{
	char what[32];
	snprintf(what, sizeof(what), "the %s folder", folder_names[f]);
	return store_dir_sync(store_dir_folder(s, f), what);
}

static int store_dir_create(struct store *s, enum store_folder f, const char *name, struct store_file **out)
{
	struct store_file *file = calloc(1, sizeof(*file));
	if (!file)
		return error_set(ENOMEM, "no memory for a store file");
	*file = (struct store_file){.s = s, .folder = f};
	snprintf(file->name, sizeof(file->name), "%s", name);
	file->fd = openat(store_dir_folder(s, f), name, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
	if (file->fd < 0) {
		int err = errno;
		free(file);
		return err == EEXIST ? -EEXIST : error_set_errno(err, "cannot create %s/%s/%s", s->dir, folder_names[f], name);
	}
	*out = file;
	return 0;
}

static int store_dir_append(struct store_file *file, const void *data, size_t len)
{
	int r = file_write_all(file->fd, data, len);
	return r ? error_set(-r, "cannot write %s/%s/%s: %s", file->s->dir, folder_names[file->folder], file->name,
			     strerror(-r))
		 : 0;
}

static int store_dir_read_back(struct store_file *file, uint64_t off, void *buf, size_t len)
{
	if (pread(file->fd, buf, len, (off_t)off) != (ssize_t)len)
		return error_set(EIO, "cannot read back %s/%s/%s", file->s->dir, folder_names[file->folder], file->name);
	return 0;
}

static int store_dir_finish(struct store_file *file)
{
	if (fsync(file->fd) != 0)
		return error_set_errno(errno, "cannot sync %s/%s/%s", file->s->dir, folder_names[file->folder], file->name);
	return store_dir_flush(file->s, file->folder);
}

static void store_dir_discard(struct store_file *file, bool remove)
{
	if (!file)
		return;
	close(file->fd);
	if (remove)
		unlinkat(store_dir_folder(file->s, file->folder), file->name, 0);
	free(file);
}

static void store_dir_unpin(struct store *s, int token)
{
	(void)s;
	if (token >= 0)
		close(token);
}

static bool store_dir_is_at(struct store *s, const char *where)
{
	struct stat a, b;
	return stat(where, &a) == 0 && fstat(store_dir_of(s)->dir_fd, &b) == 0 && a.st_dev == b.st_dev &&
	       a.st_ino == b.st_ino;
}

static void store_dir_close(struct store *s)
{
	struct store_dir *d = store_dir_of(s);
	if (!d)
		return;
	store_dir_forget(s);
	free(d->pack_fds);
	int fds[4] = {d->dir_fd, d->packs_fd, d->snaps_fd, d->lock_fd};
	for (int i = 0; i < 4; i++)
		if (fds[i] >= 0)
			close(fds[i]);
	free(d);
	s->priv = NULL;
}

static const struct store_backend store_dir_backend = {
	.lock = store_dir_lock,
	.unlock = store_dir_unlock,
	.forget = store_dir_forget,
	.each = store_dir_each,
	.exists = store_dir_exists,
	.stat = store_dir_stat,
	.view = store_dir_view,
	.unview = store_dir_unview,
	.read = store_dir_read,
	.write = store_dir_write,
	.remove = store_dir_remove,
	.flush = store_dir_flush,
	.create = store_dir_create,
	.append = store_dir_append,
	.read_back = store_dir_read_back,
	.finish = store_dir_finish,
	.discard = store_dir_discard,
	.pin = store_dir_pin,
	.unpin = store_dir_unpin,
	.pinned = store_dir_pinned,
	.is_at = store_dir_is_at,
	.close = store_dir_close,
};

/* Open (@create: make) folder @name of the store's folder @at. The fd, or -errno with a message. */
static int store_dir_open_folder(int at, const char *name, bool create, const char *top)
{
	if (create && mkdirat(at, name, 0755) != 0 && errno != EEXIST)
		return error_set_errno(errno, "cannot create %s/%s", top, name);
	int fd = openat(at, name, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return error_set_errno(errno, "%s/%s is not a usable store folder", top, name);
	return fd;
}

int store_dir_open(struct store *s, bool create, bool read_only)
{
	struct store_dir *d = calloc(1, sizeof(*d));
	if (!d)
		return error_set(ENOMEM, "no memory for the store");
	d->dir_fd = d->packs_fd = d->snaps_fd = d->lock_fd = -1;
	s->priv = d;
	s->backend = &store_dir_backend;
	const char *dir = s->dir;
	if (create && mkdir(dir, 0755) != 0 && errno != EEXIST)
		return error_set_errno(errno, "cannot create store %s", dir);
	d->dir_fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (d->dir_fd < 0)
		return error_set_errno(errno, errno == ENOENT ? "no store at %s" : "cannot open store %s", dir);
	if ((d->packs_fd = store_dir_open_folder(d->dir_fd, "packs", create, dir)) < 0)
		return d->packs_fd;
	if ((d->snaps_fd = store_dir_open_folder(d->dir_fd, "snapshots", create, dir)) < 0)
		return d->snaps_fd;
	if (read_only) {
		d->lock_fd = store_open_file(s, d->dir_fd, "", "lock", O_RDONLY, 0);
		if (d->lock_fd == -ENOENT) {
			d->lock_fd = -1;
			error_clear();
		} else if (d->lock_fd < 0) {
			return d->lock_fd;
		}
	} else {
		d->lock_fd = store_open_file(s, d->dir_fd, "", "lock", O_RDWR | O_CREAT, 0644);
		if (d->lock_fd < 0)
			return d->lock_fd;
	}
	return create ? store_dir_sync(d->dir_fd, "the store folder") : 0;
}

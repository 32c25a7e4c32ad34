/* Whole-file reads and writes. See file_io.h. */
#include "vmm/file_io.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "vmm/error.h"

int file_write_all(int fd, const void *p, size_t n)
{
	const uint8_t *b = p;
	while (n) {
		ssize_t w = write(fd, b, n);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return -(w < 0 ? errno : EIO);
		b += w;
		n -= (size_t)w;
	}
	return 0;
}

int file_open_regular(int dir, const char *name, int flags, mode_t mode, unsigned opts, const char *what,
		      const char *shown)
{
	int fd = openat(dir, name, flags | O_NONBLOCK | O_NOCTTY | O_CLOEXEC, mode);
	if (fd < 0)
		return error_set_errno(errno, "cannot open %s %s", what, shown);
	struct stat st;
	int r = 0;
	if (fstat(fd, &st) != 0)
		r = error_set_errno(errno, "cannot stat %s %s", what, shown);
	else if (!S_ISREG(st.st_mode))
		r = error_set(EINVAL, "%s %s is not a regular file", what, shown);
	else if ((opts & FILE_NONEMPTY) && st.st_size == 0)
		r = error_set(EINVAL, "%s %s is empty", what, shown);
	else if (!(flags & O_NONBLOCK) && fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK) != 0)
		r = error_set_errno(errno, "cannot open %s %s", what, shown);
	if (r) {
		close(fd);
		return r;
	}
	return fd;
}

int file_read_all(const char *path, const char *what, uint64_t max, void **data, size_t *size)
{
	int fd = file_open_regular(AT_FDCWD, path, O_RDONLY, 0, FILE_NONEMPTY, what, path);
	if (fd < 0)
		return fd;
	struct stat st;
	int r = 0;
	uint8_t *buf = NULL;
	size_t done = 0;
	if (fstat(fd, &st) != 0)
		r = error_set_errno(errno, "cannot stat %s %s", what, path);
	else if ((uint64_t)st.st_size > max)
		r = error_set(EFBIG, "%s %s is larger than %llu MiB", what, path, (unsigned long long)(max >> 20));
	else if (!(buf = malloc((size_t)st.st_size)))
		r = error_set(ENOMEM, "no memory to read %s %s", what, path);
	while (!r && done < (size_t)st.st_size) {
		ssize_t n = read(fd, buf + done, (size_t)st.st_size - done);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			r = n < 0 ? error_set_errno(errno, "cannot read %s %s", what, path)
				  : error_set(EIO, "%s %s shrank while being read", what, path);
		else
			done += (size_t)n;
	}
	close(fd);
	if (r) {
		free(buf);
		return r;
	}
	*data = buf;
	*size = done;
	return 0;
}

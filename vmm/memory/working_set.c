/* Working set files. See working_set.h. */
#include "vmm/memory/working_set.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "vmm/error.h"
#include "vmm/file_io.h"

#define WORKING_SET_PAGE_LIMIT (1ull << 40) /* page numbers: below 2^52 bytes */

static uint64_t working_set_le64(const uint8_t *p)
{
	uint64_t v = 0;
	for (int i = 7; i >= 0; i--)
		v = v << 8 | p[i];
	return v;
}

static void working_set_put_le64(uint8_t *p, uint64_t v)
{
	for (int i = 0; i < 8; i++, v >>= 8)
		p[i] = (uint8_t)v;
}

int working_set_parse(const void *buf, size_t len, struct working_set *ws)
{
	const uint8_t *b = buf;
	memset(ws, 0, sizeof(*ws));
	if (len < WORKING_SET_HEADER || memcmp(b, WORKING_SET_MAGIC, 8) != 0)
		return error_set(EINVAL, "not a working set file (no '%s' header)", WORKING_SET_MAGIC);
	uint64_t ram = working_set_le64(b + 8), count = working_set_le64(b + 16);
	if (ram == 0 || ram % 4096)
		return error_set(EINVAL, "RAM size %llu is not a non-zero multiple of 4096", (unsigned long long)ram);
	if (count > ram / 4096)
		return error_set(EINVAL, "%llu pages listed for %llu bytes of RAM", (unsigned long long)count,
				 (unsigned long long)ram);
	if ((len - WORKING_SET_HEADER) / 8 != count || (len - WORKING_SET_HEADER) % 8)
		return error_set(EINVAL, "%zu bytes of pages where %llu pages take %llu", len - WORKING_SET_HEADER,
				 (unsigned long long)count, (unsigned long long)count * 8);
	uint64_t *pages = malloc((count ? count : 1) * sizeof(*pages));
	if (!pages)
		return error_set(ENOMEM, "no memory for a working set of %llu pages", (unsigned long long)count);
	for (uint64_t i = 0; i < count; i++) {
		pages[i] = working_set_le64(b + WORKING_SET_HEADER + 8 * i);
		if (pages[i] >= WORKING_SET_PAGE_LIMIT) {
			unsigned long long page = pages[i];
			free(pages);
			return error_set(EINVAL, "page %llu of the list (0x%llx) is beyond any guest's memory",
					 (unsigned long long)i, page);
		}
	}
	*ws = (struct working_set){.ram_size = ram, .count = count, .pages = pages};
	return 0;
}

int working_set_read(const char *path, struct working_set *ws)
{
	memset(ws, 0, sizeof(*ws));
	/* The largest a parse accepts lists every page of 2^52 bytes, far more than any guest
	 * here; the RAM size it names bounds it first (checked in the parse). */
	void *buf;
	size_t len;
	int r = file_read_all(path, "working set", WORKING_SET_HEADER + 8 * (WORKING_SET_PAGE_LIMIT / 4096), &buf, &len);
	if (r)
		return r;
	if ((r = working_set_parse(buf, len, ws)) != 0)
		r = error_set(-r, "working set %s: %s", path, error_message());
	free(buf);
	return r;
}

/* The temporary file working_set_write writes @path through, in @tmp. 0 or -ENAMETOOLONG. */
static int working_set_tmp_name(const char *path, char tmp[4096])
{
	if ((size_t)snprintf(tmp, 4096, "%s.tmp-%d", path, (int)getpid()) >= 4096)
		return error_set(ENAMETOOLONG, "working set path %s is too long", path);
	return 0;
}

int working_set_check_writable(const char *path)
{
	char tmp[4096];
	int r = working_set_tmp_name(path, tmp);
	if (r)
		return r;
	int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
	if (fd < 0)
		return error_set_errno(errno, "cannot write working set %s", path);
	close(fd);
	unlink(tmp);
	return 0;
}

int working_set_write(const char *path, const struct working_set *ws)
{
	char tmp[4096];
	int r = working_set_tmp_name(path, tmp);
	if (r)
		return r;
	size_t len = WORKING_SET_HEADER + 8 * ws->count;
	uint8_t *buf = malloc(len);
	if (!buf)
		return error_set(ENOMEM, "no memory to write working set %s", path);
	memcpy(buf, WORKING_SET_MAGIC, 8);
	working_set_put_le64(buf + 8, ws->ram_size);
	working_set_put_le64(buf + 16, ws->count);
	for (uint64_t i = 0; i < ws->count; i++)
		working_set_put_le64(buf + WORKING_SET_HEADER + 8 * i, ws->pages[i]);
	int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0) {
		r = error_set_errno(errno, "cannot create working set %s", tmp);
	} else {
		if ((r = file_write_all(fd, buf, len)) != 0)
			r = error_set_errno(-r, "cannot write working set %s", tmp);
		if (!r && fsync(fd) != 0)
			r = error_set_errno(errno, "cannot write working set %s", tmp);
		if (close(fd) != 0 && !r)
			r = error_set_errno(errno, "cannot write working set %s", tmp);
		if (!r && rename(tmp, path) != 0)
			r = error_set_errno(errno, "cannot rename %s to %s", tmp, path);
		if (r)
			unlink(tmp);
	}
	free(buf);
	return r;
}

void working_set_free(struct working_set *ws)
{
	free(ws->pages);
	memset(ws, 0, sizeof(*ws));
}

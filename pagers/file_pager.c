/*
 * The file pager: a host file as a memory object (Mach: a file is a memory manager).
 * Pages are read with pread from [offset, offset+size) of the file; the part of a page past
 * the end reads as zero, a page wholly past it is data_unavailable (zero fill). Opened
 * writable, it takes modified pages back with pwrite (write-back through data_return),
 * never growing the file, not even back to its size at open when another process cut it
 * short meanwhile (the part of a page past the file's end then is not written: -ENXIO);
 * read-only, it refuses them (-EROFS) and its objects can only be mapped read-only or
 * copy-on-write. The pager keeps its own descriptor (dup of args->fd).
 * A request is read with one pread per FP_CHUNK_PAGES pages into the pager's buffer and
 * provided in one reply: a fault's cluster costs one system call, not one per page. The
 * buffer is the pager's alone: pagers are called under their domain's lock.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "pagers/file_pager.h"

#define FP_CHUNK_PAGES 64u

struct fp_file {
	int fd;          /* owned */
	uint64_t offset; /* data starts here in the file */
	uint64_t size;   /* bytes of data */
	bool writable;
	uint8_t *buf;    /* FP_CHUNK_PAGES pages, made at the first request */
};

static int fp_open(struct pager *pager, const struct pager_args *args)
{
	if (!args || args->fd < 0 || !vm_page_aligned(args->offset))
		return -EINVAL;
	struct stat st;
	if (fstat(args->fd, &st) < 0)
		return -errno;
	uint64_t size = args->size;
	if (size == 0) {
		if ((uint64_t)st.st_size <= args->offset)
			return -EINVAL;
		size = (uint64_t)st.st_size - args->offset;
	}
	struct fp_file *f = calloc(1, sizeof(*f));
	if (!f)
		return -ENOMEM;
	f->fd = fcntl(args->fd, F_DUPFD_CLOEXEC, 0);
	if (f->fd < 0) {
		int err = -errno;
		free(f);
		return err;
	}
	/* The guest keeps what it reads: each page is read from the file once per page-in,
	 * and the page cache need not promote it for that (LRU moves were a fifth of the
	 * fault thread's time). Advice only: a kernel without it reads the same. */
	(void)posix_fadvise(f->fd, 0, 0, POSIX_FADV_NOREUSE);
	f->offset = args->offset;
	f->size = size;
	f->writable = args->writable;
	pager->priv = f;
	pager->size = size;
	pager->max_prot = args->writable ? VM_PROT_ALL : VM_PROT_READ | VM_PROT_EXECUTE;
	return 0;
}

static void fp_close(struct pager *pager)
{
	struct fp_file *f = pager->priv;
	close(f->fd);
	free(f->buf);
	free(f);
}

static int fp_create(struct pager *pager, uint64_t size, void **mo)
{
	(void)size;
	*mo = pager->priv;
	return 0;
}

/* Read the @n bytes of data at @at into @buf (fewer from a file that shrank: the rest is
 * zero, as past the end). 0 or -errno. */
static int fp_read(const struct fp_file *f, uint8_t *buf, size_t n, vm_offset_t at)
{
	size_t got = 0;
	while (got < n) {
		ssize_t r = pread(f->fd, buf + got, n - got, (off_t)(f->offset + at + got));
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return -errno;
		if (r == 0)
			break;
		got += (size_t)r;
	}
	memset(buf + got, 0, n - got);
	return 0;
}

static int fp_data_request(struct pager *pager, void *mo, vm_offset_t offset, vm_size_t length, vm_prot_t access,
			   struct pager_reply *reply)
{
	(void)pager;
	(void)access;
	struct fp_file *f = mo;
	if (!f->buf && !(f->buf = aligned_alloc(VM_PAGE_SIZE, FP_CHUNK_PAGES * VM_PAGE_SIZE)))
		return -ENOMEM;
	for (vm_offset_t at = offset; at < offset + length;) {
		if (at >= f->size) {
			pager_data_unavailable(reply, at, offset + length - at);
			break;
		}
		vm_size_t chunk = offset + length - at;
		if (chunk > FP_CHUNK_PAGES * VM_PAGE_SIZE)
			chunk = FP_CHUNK_PAGES * VM_PAGE_SIZE;
		size_t data = f->size - at < chunk ? (size_t)(f->size - at) : (size_t)chunk;
		/* Whole pages: the part of the last one past the end reads as zero. */
		vm_size_t pages = (data + VM_PAGE_MASK) & ~VM_PAGE_MASK;
		int err = fp_read(f, f->buf, data, at);
		memset(f->buf + data, 0, pages - data);
		if (err)
			pager_data_error(reply, at, pages, err);
		else
			pager_data_provided(reply, at, f->buf, pages);
		at += pages;
	}
	return 0;
}

static int fp_data_return(struct pager *pager, void *mo, vm_offset_t offset, const void *data, vm_size_t length)
{
	(void)pager;
	struct fp_file *f = mo;
	if (!f->writable)
		return -EROFS;
	if (offset >= f->size)
		return 0; /* past the end: nothing of the file to change */
	size_t n = f->size - offset < length ? (size_t)(f->size - offset) : (size_t)length;
	/* The file as it is now, not as it was at open: writing past its end would undo
	 * another process's truncation with bytes it never saw. */
	struct stat st;
	if (fstat(f->fd, &st) < 0)
		return -errno;
	uint64_t now = (uint64_t)st.st_size > f->offset ? (uint64_t)st.st_size - f->offset : 0;
	size_t kept = now <= offset ? 0 : now - offset < n ? (size_t)(now - offset) : n;
	int err = kept < n ? -ENXIO : 0;
	n = kept;
	const uint8_t *bytes = data;
	while (n > 0) {
		ssize_t w = pwrite(f->fd, bytes, n, (off_t)(f->offset + offset));
		if (w < 0)
			return -errno;
		bytes += w;
		offset += (vm_offset_t)w;
		n -= (size_t)w;
	}
	return err;
}

const struct pager_ops file_pager_ops = {
	.name = "file",
	.open = fp_open,
	.close = fp_close,
	.create = fp_create,
	.data_request = fp_data_request,
	.data_return = fp_data_return,
};

/* The snapshot pager: pages of a stored snapshot through a struct snapshot_source, kept
 * host-wide in a segment when it is opened on one. */
#include "pagers/snapshot_pager.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

struct snapshot_pager {
	struct snapshot_source src;
	int segment_fd;            /* the host-wide segment (the opener's descriptor), or -1 */
	const uint8_t *segment;    /* its shared read-only mapping, src.size bytes, or NULL */
	unsigned char *present;    /* mincore's answer for one request */
	size_t present_len;
	struct snapshot_pager_stats stats;
};

static int sp_open(struct pager *pager, const struct pager_args *args)
{
	const struct snapshot_source *src = args ? args->source : NULL;
	if (!src || !src->page || src->size == 0 || !vm_page_aligned(src->size))
		return -EINVAL;
	struct snapshot_pager *sp = calloc(1, sizeof(*sp));
	if (!sp)
		return -ENOMEM;
	sp->src = *src;
	sp->segment_fd = -1;
	if (args->fd >= 0) {
		struct stat st;
		if (fstat(args->fd, &st) != 0 || !S_ISREG(st.st_mode) || (uint64_t)st.st_size < src->size) {
			free(sp);
			return -EINVAL; /* it could not hold every page: reading past its end faults */
		}
		/* Shared and read-only: this mapping only reads pages mincore found there, so it
		 * never makes the segment allocate a page (a read of a hole would). */
		void *seg = mmap(NULL, src->size, PROT_READ, MAP_SHARED, args->fd, 0);
		if (seg == MAP_FAILED) {
			int err = errno;
			free(sp);
			return -err;
		}
		sp->segment = seg;
		sp->segment_fd = args->fd;
		pager->host_resident = true;
	}
	pager->priv = sp;
	pager->size = src->size;
	pager->max_prot = VM_PROT_READ | VM_PROT_EXECUTE;
	return 0;
}

static void sp_close(struct pager *pager)
{
	struct snapshot_pager *sp = pager->priv;
	if (sp->segment)
		munmap((void *)sp->segment, sp->src.size);
	free(sp->present);
	free(sp);
}

static int sp_create(struct pager *pager, uint64_t size, void **mo)
{
	(void)size;
	*mo = pager->priv;
	return 0;
}

/* Which pages of [offset, offset + length) the segment holds, into sp->present; false when
 * that cannot be told (then every page is taken for absent). */
static bool sp_segment_present(struct snapshot_pager *sp, vm_offset_t offset, vm_size_t length)
{
	size_t n = length / VM_PAGE_SIZE;
	if (n > sp->present_len) {
		unsigned char *p = realloc(sp->present, n);
		if (!p)
			return false;
		sp->present = p;
		sp->present_len = n;
	}
	return mincore((void *)(sp->segment + offset), length, sp->present) == 0;
}

/* Put @data, page @at of the snapshot, into the segment, whole. A failure only costs the
 * sharing of that page: the pmap then copies it privately (pmap.h). */
static void sp_segment_fill(struct snapshot_pager *sp, vm_offset_t at, const void *data)
{
	size_t done = 0;
	while (done < VM_PAGE_SIZE) {
		ssize_t w = pwrite(sp->segment_fd, (const uint8_t *)data + done, VM_PAGE_SIZE - done, (off_t)(at + done));
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0) {
			sp->stats.fill_errors++;
			return;
		}
		done += (size_t)w;
	}
	sp->stats.filled++;
}

static int sp_data_request(struct pager *pager, void *mo, vm_offset_t offset, vm_size_t length, vm_prot_t access,
			   struct pager_reply *reply)
{
	(void)pager;
	(void)access;
	struct snapshot_pager *sp = mo;
	const struct snapshot_source *src = &sp->src;
	if (offset >= src->size)
		length = 0;
	else if (length > src->size - offset)
		length = src->size - offset;
	bool known = sp->segment && length && sp_segment_present(sp, offset, length);
	if (src->prefetch && length) {
		/* The run the segment does not hold, in one go. */
		vm_offset_t first = offset, end = offset + length;
		while (known && first < end && (sp->present[(first - offset) / VM_PAGE_SIZE] & 1))
			first += VM_PAGE_SIZE;
		while (known && end > first && (sp->present[(end - VM_PAGE_SIZE - offset) / VM_PAGE_SIZE] & 1))
			end -= VM_PAGE_SIZE;
		if (first < end)
			src->prefetch(src->arg, first / VM_PAGE_SIZE, (end - first) / VM_PAGE_SIZE);
	}
	for (vm_offset_t at = offset; at < offset + length; at += VM_PAGE_SIZE) {
		if (known && (sp->present[(at - offset) / VM_PAGE_SIZE] & 1)) {
			/* Another VM (or this one, before a page-out) brought it in for all. */
			sp->stats.found++;
			pager_data_provided(reply, at, sp->segment + at, VM_PAGE_SIZE);
			continue;
		}
		const void *data = NULL;
		int r = src->page(src->arg, at / VM_PAGE_SIZE, &data);
		if (r) {
			pager_data_error(reply, at, VM_PAGE_SIZE, r);
			continue;
		}
		if (!data) {
			pager_data_unavailable(reply, at, VM_PAGE_SIZE);
			continue;
		}
		if (sp->segment)
			sp_segment_fill(sp, at, data);
		pager_data_provided(reply, at, data, VM_PAGE_SIZE);
	}
	if (length == 0) /* past the snapshot: zero, as before */
		pager_data_unavailable(reply, offset, VM_PAGE_SIZE);
	return 0;
}

void snapshot_pager_stats(const struct pager *pager, struct snapshot_pager_stats *out)
{
	const struct snapshot_pager *sp = pager->priv;
	*out = sp->stats;
}

const struct pager_ops snapshot_pager_ops = {
	.name = "snapshot",
	.open = sp_open,
	.close = sp_close,
	.create = sp_create,
	.data_request = sp_data_request,
};

/*
 * The default pager: memory for anonymous objects. Without a swap file it has no data
 * (every request is answered data_unavailable: zero fill) and refuses page-outs (-ENOSPC).
 * With a swap file (pager_args.fd) it stores returned pages in slots of that file and
 * serves them back; a memory object remembers its slots in a two-level table indexed by
 * page number; freed slots are reused.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "mmu/pager.h"

#define DP_LEAF_BITS 9
#define DP_LEAF_SIZE (1u << DP_LEAF_BITS)

struct dp_swap {
	int fd;             /* swap file, -1 = none (not owned) */
	uint64_t next_slot; /* first never-used slot */
	uint64_t *free;     /* freed slots */
	size_t nfree, free_cap;
};

/* A memory object: page number -> slot + 1 (0 = not stored). */
struct dp_object {
	uint64_t **leaves; /* [page >> DP_LEAF_BITS] */
	size_t nleaves;
};

static int dp_open(struct pager *pager, const struct pager_args *args)
{
	struct dp_swap *sw = calloc(1, sizeof(*sw));
	if (!sw)
		return -ENOMEM;
	sw->fd = args ? args->fd : -1;
	pager->priv = sw;
	pager->max_prot = VM_PROT_ALL;
	pager->size = 0;
	return 0;
}

static void dp_close(struct pager *pager)
{
	struct dp_swap *sw = pager->priv;
	free(sw->free);
	free(sw);
}

static int dp_create(struct pager *pager, uint64_t size, void **mo)
{
	(void)pager;
	(void)size;
	struct dp_object *o = calloc(1, sizeof(*o));
	if (!o)
		return -ENOMEM;
	*mo = o;
	return 0;
}

/* The slot cell of @page, allocating its leaf when @grow. */
static uint64_t *dp_cell(struct dp_object *o, uint64_t page, int grow)
{
	size_t leaf = (size_t)(page >> DP_LEAF_BITS);
	if (leaf >= o->nleaves) {
		if (!grow)
			return NULL;
		size_t n = o->nleaves ? o->nleaves : 8;
		while (n <= leaf)
			n *= 2;
		uint64_t **v = realloc(o->leaves, n * sizeof(*v));
		if (!v)
			return NULL;
		memset(v + o->nleaves, 0, (n - o->nleaves) * sizeof(*v));
		o->leaves = v;
		o->nleaves = n;
	}
	if (!o->leaves[leaf]) {
		if (!grow)
			return NULL;
		o->leaves[leaf] = calloc(DP_LEAF_SIZE, sizeof(uint64_t));
		if (!o->leaves[leaf])
			return NULL;
	}
	return &o->leaves[leaf][page & (DP_LEAF_SIZE - 1)];
}

static int dp_data_request(struct pager *pager, void *mo, vm_offset_t offset, vm_size_t length, vm_prot_t access,
			   struct pager_reply *reply)
{
	(void)access;
	struct dp_swap *sw = pager->priv;
	uint8_t buf[VM_PAGE_SIZE];
	for (vm_offset_t at = offset; at < offset + length; at += VM_PAGE_SIZE) {
		uint64_t *cell = dp_cell(mo, vm_atop(at), 0);
		if (!cell || !*cell || sw->fd < 0) {
			pager_data_unavailable(reply, at, VM_PAGE_SIZE);
			continue;
		}
		ssize_t n = pread(sw->fd, buf, VM_PAGE_SIZE, (off_t)vm_ptoa(*cell - 1));
		if (n != (ssize_t)VM_PAGE_SIZE)
			pager_data_error(reply, at, VM_PAGE_SIZE, n < 0 ? -errno : -EIO);
		else
			pager_data_provided(reply, at, buf, VM_PAGE_SIZE);
	}
	return 0;
}

static int dp_data_return(struct pager *pager, void *mo, vm_offset_t offset, const void *data, vm_size_t length)
{
	struct dp_swap *sw = pager->priv;
	if (sw->fd < 0)
		return -ENOSPC;
	const uint8_t *bytes = data;
	for (vm_offset_t at = offset; at < offset + length; at += VM_PAGE_SIZE, bytes += VM_PAGE_SIZE) {
		uint64_t *cell = dp_cell(mo, vm_atop(at), 1);
		if (!cell)
			return -ENOMEM;
		bool fresh = !*cell, reused = !*cell && sw->nfree;
		uint64_t slot = !fresh ? *cell - 1 : reused ? sw->free[--sw->nfree] : sw->next_slot++;
		ssize_t n = pwrite(sw->fd, bytes, VM_PAGE_SIZE, (off_t)vm_ptoa(slot));
		if (n != (ssize_t)VM_PAGE_SIZE) {
			int err = n < 0 ? -errno : -ENOSPC;
			if (reused)
				sw->nfree++; /* back where it was taken from */
			else if (fresh)
				sw->next_slot--;
			return err;
		}
		*cell = slot + 1;
	}
	return 0;
}

static void dp_terminate(struct pager *pager, void *mo)
{
	struct dp_swap *sw = pager->priv;
	struct dp_object *o = mo;
	for (size_t l = 0; l < o->nleaves; l++) {
		if (!o->leaves[l])
			continue;
		for (size_t i = 0; i < DP_LEAF_SIZE; i++) {
			if (!o->leaves[l][i])
				continue;
			if (sw->nfree == sw->free_cap) {
				size_t cap = sw->free_cap ? sw->free_cap * 2 : 64;
				uint64_t *v = realloc(sw->free, cap * sizeof(*v));
				if (!v)
					continue; /* the slot is leaked, not reused */
				sw->free = v;
				sw->free_cap = cap;
			}
			sw->free[sw->nfree++] = o->leaves[l][i] - 1;
		}
		free(o->leaves[l]);
	}
	free(o->leaves);
	free(o);
}

const struct pager_ops default_pager_ops = {
	.name = "default",
	.open = dp_open,
	.close = dp_close,
	.create = dp_create,
	.data_request = dp_data_request,
	.data_return = dp_data_return,
	.terminate = dp_terminate,
};

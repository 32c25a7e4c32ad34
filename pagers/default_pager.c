/*
 * The default pager: memory for anonymous objects. Without a swap file it has no data
 * (every request is answered data_unavailable: zero fill) and refuses page-outs (-ENOSPC).
 * With a swap file (pager_args.fd) it stores returned pages in slots of that file and
 * serves them back; a memory object remembers its slots in a two-level table indexed by
 * page number; freed slots are reused.
 *
 * The swap file is not trusted to keep what was written: others can cut it short or write
 * to it. Each slot's XXH3-64 is kept from its write, and a page read back short or with
 * another hash is a data_error (-EIO), never data: a lost page must stop its reader, not
 * reach it as zeros (a file cut short and grown again reads as a hole).
 *
 * Forks (default_pager_share_slots): the processes of a fork(2) share one swap file (one
 * open file), and each keeps its own copy of the tables. So that none changes what another
 * reads, every slot in use at a fork is frozen for good: read by all, rewritten and reused
 * by none (a page-out of a page held in one goes to a new slot); and new slots come from a
 * counter in memory shared by the whole family, so that two never take the same. A slot
 * freed before the fork is the parent's to reuse; the child forgets it. Frozen slots are
 * not given back: the file grows by what every member pages out.
 */
#include "pagers/default_pager.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
#include <xxhash.h>

#include "mmu/pager.h"

#define DP_LEAF_BITS 9
#define DP_LEAF_SIZE (1u << DP_LEAF_BITS)

struct dp_swap {
	int fd;             /* swap file, -1 = none (not owned) */
	uint64_t next_slot; /* first never-used slot, until the first fork */
	_Atomic uint64_t *shared_next; /* from the first fork: the family's, MAP_SHARED; else NULL */
	uint64_t *free;     /* freed slots, this process's alone */
	size_t nfree, free_cap;
	uint64_t *sums;     /* [slot]: XXH3-64 of what was last written there */
	uint64_t *frozen;   /* [slot / 64] bit: in use at a fork (same size as sums) */
	uint64_t sums_cap;
	char failure[160];  /* why the last data_request failed, "" when it did not */
};

static bool dp_frozen(const struct dp_swap *sw, uint64_t slot)
{
	return slot < sw->sums_cap && (sw->frozen[slot / 64] >> (slot % 64) & 1);
}

/* A never-used slot: the process's own counter, or the family's after a fork. */
static uint64_t dp_new_slot(struct dp_swap *sw)
{
	return sw->shared_next ? atomic_fetch_add(sw->shared_next, 1) : sw->next_slot++;
}

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
	free(sw->sums);
	free(sw->frozen);
	if (sw->shared_next)
		munmap((void *)sw->shared_next, sizeof(*sw->shared_next));
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

/* Read the page of @slot into @buf: 0, or -errno with sw->failure saying why. */
static int dp_read_slot(struct dp_swap *sw, uint64_t slot, uint8_t *buf)
{
	off_t at = (off_t)vm_ptoa(slot);
	ssize_t n = pread(sw->fd, buf, VM_PAGE_SIZE, at);
	if (n < 0) {
		int err = errno;
		snprintf(sw->failure, sizeof(sw->failure), "page at byte 0x%llx cannot be read: %s", (unsigned long long)at,
			 strerror(err));
		return -err;
	}
	if (n != (ssize_t)VM_PAGE_SIZE) {
		snprintf(sw->failure, sizeof(sw->failure), "page at byte 0x%llx is missing: the file was cut short",
			 (unsigned long long)at);
		return -EIO;
	}
	if (XXH3_64bits(buf, VM_PAGE_SIZE) != sw->sums[slot]) {
		snprintf(sw->failure, sizeof(sw->failure),
			 "page at byte 0x%llx is not what was written there: the file was changed or cut short",
			 (unsigned long long)at);
		return -EIO;
	}
	return 0;
}

static int dp_data_request(struct pager *pager, void *mo, vm_offset_t offset, vm_size_t length, vm_prot_t access,
			   struct pager_reply *reply)
{
	(void)access;
	struct dp_swap *sw = pager->priv;
	uint8_t buf[VM_PAGE_SIZE];
	sw->failure[0] = '\0';
	for (vm_offset_t at = offset; at < offset + length; at += VM_PAGE_SIZE) {
		uint64_t *cell = dp_cell(mo, vm_atop(at), 0);
		if (!cell || !*cell || sw->fd < 0) {
			pager_data_unavailable(reply, at, VM_PAGE_SIZE);
			continue;
		}
		int err = dp_read_slot(sw, *cell - 1, buf);
		if (err)
			pager_data_error(reply, at, VM_PAGE_SIZE, err);
		else
			pager_data_provided(reply, at, buf, VM_PAGE_SIZE);
	}
	return 0;
}

/* Room in sw->sums and sw->frozen for @slot. */
static int dp_sums_reserve(struct dp_swap *sw, uint64_t slot)
{
	if (slot < sw->sums_cap)
		return 0;
	uint64_t cap = sw->sums_cap ? sw->sums_cap : 1024;
	while (cap <= slot)
		cap *= 2;
	uint64_t *v = realloc(sw->sums, cap * sizeof(*v));
	if (!v)
		return -ENOMEM;
	sw->sums = v;
	uint64_t *f = realloc(sw->frozen, cap / 64 * sizeof(*f));
	if (!f)
		return -ENOMEM; /* sums grown alone: harmless, sums_cap still the old */
	memset(f + sw->sums_cap / 64, 0, (cap - sw->sums_cap) / 64 * sizeof(*f));
	sw->frozen = f;
	sw->sums_cap = cap;
	return 0;
}

/* Give @slot back for reuse by this process; one frozen at a fork, or that cannot be
 * listed, is left as it is. */
static void dp_free_slot(struct dp_swap *sw, uint64_t slot)
{
	if (dp_frozen(sw, slot))
		return;
	if (sw->nfree == sw->free_cap) {
		size_t cap = sw->free_cap ? sw->free_cap * 2 : 64;
		uint64_t *v = realloc(sw->free, cap * sizeof(*v));
		if (!v)
			return; /* the slot is leaked, not reused */
		sw->free = v;
		sw->free_cap = cap;
	}
	sw->free[sw->nfree++] = slot;
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
		/* A page without a slot, or whose slot others read since a fork, takes a free
		 * slot or a new one; its frozen slot is left to the others. */
		bool fresh = !*cell || dp_frozen(sw, *cell - 1), reused = fresh && sw->nfree;
		uint64_t slot = !fresh ? *cell - 1 : reused ? sw->free[--sw->nfree] : dp_new_slot(sw);
		if (dp_sums_reserve(sw, slot) < 0) {
			if (fresh)
				dp_free_slot(sw, slot);
			return -ENOMEM;
		}
		ssize_t n = pwrite(sw->fd, bytes, VM_PAGE_SIZE, (off_t)vm_ptoa(slot));
		if (n != (ssize_t)VM_PAGE_SIZE) {
			if (fresh)
				dp_free_slot(sw, slot); /* written by nobody: ours to reuse */
			return n < 0 ? -errno : -ENOSPC;
		}
		sw->sums[slot] = XXH3_64bits(bytes, VM_PAGE_SIZE);
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
		for (size_t i = 0; i < DP_LEAF_SIZE; i++)
			if (o->leaves[l][i])
				dp_free_slot(sw, o->leaves[l][i] - 1);
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

const char *default_pager_failure(const struct pager *p)
{
	const struct dp_swap *sw = p->priv;
	return sw->failure;
}

int default_pager_share_slots(struct pager *p)
{
	struct dp_swap *sw = p->priv;
	if (sw->fd < 0)
		return 0;
	if (!sw->shared_next) {
		void *m = mmap(NULL, sizeof(*sw->shared_next), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
		if (m == MAP_FAILED)
			return -errno;
		sw->shared_next = m;
		atomic_store(sw->shared_next, sw->next_slot);
	}
	/* Every slot below the counter is in use by this process or by another of the family
	 * (which this one never names): all frozen, but the ones this process freed. */
	uint64_t end = atomic_load(sw->shared_next);
	if (end && dp_sums_reserve(sw, end - 1) < 0)
		return -ENOMEM;
	for (uint64_t slot = 0; slot < end; slot++)
		sw->frozen[slot / 64] |= 1ull << (slot % 64);
	for (size_t i = 0; i < sw->nfree; i++)
		sw->frozen[sw->free[i] / 64] &= ~(1ull << (sw->free[i] % 64));
	return 0;
}

void default_pager_forked_child(struct pager *p)
{
	struct dp_swap *sw = p->priv;
	sw->nfree = 0; /* the parent's to reuse */
}

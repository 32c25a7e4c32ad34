#include "vmm/lifecycle/restore.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
#include <xxhash.h>

#include "pagers/snapshot_pager.h"
#include "vmm/error.h"
#include "vmm/memory/guest_memory.h"
#include "vmm/store/store.h"

/* The snapshot pager's source: a stored page, copied out of the store and checked against
 * its hash (the pager copies it again at once: a buffer per thread is enough). */
static int restore_page(void *arg, uint64_t pindex, const void **data)
{
	static _Thread_local uint8_t page[4096];
	struct restore *r = arg;
	uint64_t hash;
	bool stored;
	*data = NULL;
	int err = store_snapshot_copy(r->snap, pindex, page, &stored, &hash);
	if (err)
		return error_set(-err, "snapshot '%s': %s (see vmm store verify)", r->name, error_message());
	if (stored && XXH3_64bits(page, sizeof(page)) != hash)
		return error_set(EIO, "snapshot '%s': stored page 0x%llx does not match its hash (damaged; see vmm store verify)",
				 r->name, (unsigned long long)pindex);
	*data = stored ? page : NULL;
	return 0;
}

/* The pager's run, fetched at once where the store is read rather than mapped (RADOS). */
static void restore_prefetch(void *arg, uint64_t first, uint64_t n)
{
	struct restore *r = arg;
	store_snapshot_prefetch(r->snap, first, n);
}

/* Join or make the snapshot's host-wide segment; on failure r->share_error says why. */
static void restore_share(struct restore *r, uint64_t size)
{
	uint8_t key[STORE_IDENTITY_BYTES];
	_Static_assert(STORE_IDENTITY_BYTES == SEGMENT_KEY_BYTES, "a snapshot's identity keys its segment");
	if (guest_memory_can_map_segments() != 0 || store_snapshot_identity(r->snap, key) != 0 ||
	    segment_open(&r->segment, key, size) != 0)
		snprintf(r->share_error, sizeof(r->share_error), "%s", error_message());
}

int restore_open(struct restore *r, const char *dir, const char *name, const char *holder, bool share)
{
	memset(r, 0, sizeof(*r));
	segment_init(&r->segment);
	snprintf(r->name, sizeof(r->name), "%s", name);
	int located = store_locate(dir, r->store_real, sizeof(r->store_real));
	if (located)
		return located;
	/* Nothing here may grow with the snapshot's memory: the store is not indexed, the
	 * manifests are checked up to their entries, and pages come later, on demand. */
	int err = store_open_read(dir, &r->store);
	if (!err)
		err = store_snapshot_open_pinned(r->store, name, holder, &r->snap);
	if (!err) {
		size_t len;
		const void *blob = store_snapshot_state(r->snap, &len);
		err = vm_state_parse(blob, len, &r->state);
		if (err)
			err = error_set(-err, "snapshot '%s' in %s: %s", name, dir, error_message());
	}
	if (!err) {
		struct snapshot_source src = {
			.page = restore_page,
			.prefetch = restore_prefetch,
			.arg = r,
			.size = store_snapshot_page_count(r->snap) * 4096,
		};
		if (share)
			restore_share(r, src.size);
		struct pager_args args = {.fd = r->segment.fd, .source = &src};
		err = pager_open(&snapshot_pager_ops, &args, &r->pager);
		if (err)
			err = error_set(-err, "cannot serve snapshot '%s': %s", name, strerror(-err));
	}
	if (err)
		restore_close(r);
	return err;
}

static int restore_cmp_page(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

/* Bring page @p into the segment (mapped read-only at @seg, for mincore) unless there. */
static void restore_load_page(struct restore *r, const uint8_t *seg, uint64_t p)
{
	unsigned char present = 0;
	if (mincore((void *)(seg + p * 4096), 4096, &present) == 0 && (present & 1))
		return;
	const void *data;
	if (restore_page(r, p, &data) != 0 || !data) {
		error_clear(); /* the guest's own fault there says what is wrong */
		return;
	}
	if (pwrite(r->segment.fd, data, 4096, (off_t)(p * 4096)) == 4096)
		atomic_fetch_add(&r->loaded, 1);
}

static void *restore_loader_main(void *arg)
{
	struct restore *r = arg;
	uint64_t size = store_snapshot_page_count(r->snap) * 4096;
	const uint8_t *seg = mmap(NULL, size, PROT_READ, MAP_SHARED, r->segment.fd, 0);
	for (uint64_t i = 0; seg != MAP_FAILED && i < r->nload && !atomic_load(&r->loader_stop);) {
		/* A run of consecutive pages, fetched in one go, then each checked and written. */
		uint64_t run = 1;
		while (i + run < r->nload && run < STORE_PREFETCH_PAGES && r->load[i + run] == r->load[i] + run)
			run++;
		store_snapshot_prefetch(r->snap, r->load[i], run);
		for (uint64_t k = 0; k < run; k++)
			restore_load_page(r, seg, r->load[i + k]);
		i += run;
	}
	if (seg != MAP_FAILED)
		munmap((void *)seg, size);
	atomic_store(&r->load_done, true);
	return NULL;
}

int restore_load_working_set(struct restore *r, const uint64_t *pages, uint64_t n)
{
	if (r->segment.fd < 0 || !n || r->loader_started)
		return 0;
	uint64_t count = store_snapshot_page_count(r->snap);
	r->load = malloc(n * sizeof(*r->load));
	if (!r->load)
		return error_set(ENOMEM, "no memory for the working set of snapshot '%s'", r->name);
	for (uint64_t i = 0; i < n; i++)
		if (pages[i] < count)
			r->load[r->nload++] = pages[i];
	qsort(r->load, r->nload, sizeof(*r->load), restore_cmp_page);
	uint64_t m = 0;
	for (uint64_t i = 0; i < r->nload; i++)
		if (!m || r->load[m - 1] != r->load[i])
			r->load[m++] = r->load[i];
	r->nload = m;
	int err = pthread_create(&r->loader, NULL, restore_loader_main, r);
	if (err)
		return error_set(err, "cannot start loading the working set of snapshot '%s': %s", r->name, strerror(err));
	r->loader_started = true;
	return 0;
}

void restore_close(struct restore *r)
{
	if (r->loader_started) {
		atomic_store(&r->loader_stop, true);
		pthread_join(r->loader, NULL);
		r->loader_started = false;
	}
	free(r->load);
	r->load = NULL;
	if (r->pager)
		pager_release(r->pager);
	segment_close(&r->segment);
	vm_state_free(&r->state);
	store_snapshot_close(r->snap);
	store_close(r->store);
	r->pager = NULL;
	r->snap = NULL;
	r->store = NULL;
}

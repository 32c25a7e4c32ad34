#include "vmm/lifecycle/restore.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#include "pagers/snapshot_pager.h"
#include "vmm/error.h"
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
	if (store_snapshot_identity(r->snap, key) != 0 || segment_open(&r->segment, key, size) != 0)
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

void restore_close(struct restore *r)
{
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

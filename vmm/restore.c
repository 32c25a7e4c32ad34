#include "vmm/restore.h"

#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#include "pagers/snapshot_pager.h"
#include "vmm/error.h"
#include "vmm/store.h"

/*
 * The store's manifests and packs are mapped: a file truncated under a running VM (by
 * another process) makes reading the lost part SIGBUS. Reads of the mapping happen only
 * here, with restore_bus_jump set: the handler jumps back and the read fails with an
 * error. A SIGBUS anywhere else is not ours: the default action, when the access is
 * retried.
 */
static _Thread_local sigjmp_buf *restore_bus_jump;

static void restore_on_sigbus(int sig, siginfo_t *info, void *context)
{
	(void)info;
	(void)context;
	if (restore_bus_jump)
		siglongjmp(*restore_bus_jump, 1);
	signal(sig, SIG_DFL);
}

/* The snapshot pager's source: a stored page, its bytes checked against its hash, copied
 * out of the mapping (the pager copies it again at once: a buffer per thread is enough). */
static int restore_page(void *arg, uint64_t pindex, const void **data)
{
	static _Thread_local uint8_t page[4096];
	struct restore *r = arg;
	uint64_t hash;
	const void *stored = NULL;
	sigjmp_buf jump;
	*data = NULL;
	if (sigsetjmp(jump, 0)) {
		restore_bus_jump = NULL;
		return error_set(EIO, "snapshot '%s': page 0x%llx cannot be read: a file of the store was truncated "
				 "under the running VM (see vmm store verify)", r->name, (unsigned long long)pindex);
	}
	restore_bus_jump = &jump;
	int err = store_snapshot_page(r->snap, pindex, &stored, &hash);
	bool damaged = !err && stored && XXH3_64bits(stored, sizeof(page)) != hash;
	if (!err && stored && !damaged)
		memcpy(page, stored, sizeof(page));
	restore_bus_jump = NULL;
	if (err)
		return error_set(-err, "snapshot '%s': %s (see vmm store verify)", r->name, error_message());
	if (damaged)
		return error_set(EIO, "snapshot '%s': stored page 0x%llx does not match its hash (damaged; see vmm store verify)",
				 r->name, (unsigned long long)pindex);
	*data = stored ? page : NULL;
	return 0;
}

int restore_open(struct restore *r, const char *dir, const char *name)
{
	memset(r, 0, sizeof(*r));
	snprintf(r->name, sizeof(r->name), "%s", name);
	/* SA_NODEFER: the handler leaves by siglongjmp, which restores no signal mask. */
	struct sigaction sa = {.sa_sigaction = restore_on_sigbus, .sa_flags = SA_SIGINFO | SA_NODEFER};
	sigemptyset(&sa.sa_mask);
	sigaction(SIGBUS, &sa, NULL);
	if (!realpath(dir, r->store_real))
		return error_set_errno(errno, "no store at %s", dir);
	/* Nothing here may grow with the snapshot's memory: the store is not indexed, the
	 * manifests are checked up to their entries, and pages come later, on demand. */
	int err = store_open_read(dir, &r->store);
	if (!err)
		err = store_snapshot_open(r->store, name, &r->snap);
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
			.arg = r,
			.size = store_snapshot_page_count(r->snap) * 4096,
		};
		struct pager_args args = {.fd = -1, .source = &src};
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
	vm_state_free(&r->state);
	store_snapshot_close(r->snap);
	store_close(r->store);
	r->pager = NULL;
	r->snap = NULL;
	r->store = NULL;
}

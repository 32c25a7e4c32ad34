#include "vmm/memory/guest_export.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <unistd.h>

#include "mmu/kern_return.h"
#include "vmm/error.h"
#include "vmm/memory/guest_memory.h"

#define GUEST_EXPORT_ENTRIES 1024     /* map entries whose protections an export carries over */

/* A refusal, Mach's code named as guest_memory's calls name theirs. */
static int guest_export_failed(kern_return_t kr, uint64_t gpa, uint64_t size, const char *why)
{
	return error_set(-kern_return_errno(kr), "vm_export of [0x%llx, +0x%llx): %s%s%s", (unsigned long long)gpa,
			 (unsigned long long)size, kern_return_name(kr), why[0] ? ": " : "", why);
}

/* Copy the range into e->memfd (@out) or back (!@out). */
static int guest_export_copy(struct guest_export *e, struct guest_memory *m, bool out)
{
	int r = guest_memory_copy_range(m, e->gpa, e->size, e->memfd, out);
	return r && out ? guest_export_failed(KERN_RESOURCE_SHORTAGE, e->gpa, e->size, error_message()) : r;
}

static void *guest_export_main(void *arg)
{
	struct guest_export *e = arg;
	while (!atomic_load(&e->stop)) {
		int r = netmemory_run(&e->server, e->wake_fd);
		if (r != 0) {
			/* Its clients' exchanges then run into their deadlines and fail, one line each. */
			fprintf(stderr, "%s: the server failed: %s\n", e->name, strerror(-r));
			break;
		}
		uint64_t v;
		if (read(e->wake_fd, &v, sizeof(v)) < 0 && errno != EAGAIN)
			break;
		if (atomic_load(&e->unlisten))
			netmemory_unlisten(&e->server);
	}
	return NULL;
}

/* Let go of what guest_export_start made before the range was remapped. */
static void guest_export_undo(struct guest_export *e, bool thread)
{
	if (thread) {
		atomic_store(&e->stop, true);
		uint64_t one = 1;
		(void)!write(e->wake_fd, &one, sizeof(one));
		pthread_join(e->thread, NULL);
	}
	netmemory_destroy(&e->server);
	if (e->path[0])
		unlink(e->path);
	if (e->wake_fd >= 0)
		close(e->wake_fd);
	if (e->memfd >= 0)
		close(e->memfd);
	e->wake_fd = e->memfd = -1;
}

/* The range's entries' protections, to be given to the object mapped in its place. */
struct guest_export_prot {
	struct guest_map_entry *e;
	unsigned n;
};

/* Whether [gpa, gpa + size) may be exported: 0, or a refusal. *prot gets its entries. */
static int guest_export_check(struct guest_memory *m, uint64_t gpa, uint64_t size, const char *path,
			      struct guest_export_prot *prot)
{
	if (!guest_memory_mapped(m) || m->kernel_ram)
		return error_set(ENOTSUP, "vm_export needs RAM in the map (not --kernel-zero-fill)");
	if (!size || !vm_page_aligned(gpa) || !vm_page_aligned(size) || gpa + size < gpa)
		return guest_export_failed(KERN_INVALID_ARGUMENT, gpa, size, "a page-aligned range, not empty");
	const struct guest_region *g = guest_memory_region(m, gpa);
	if (!g || g->kind != GUEST_REGION_RAM || gpa + size > g->gpa + g->size)
		return guest_export_failed(KERN_INVALID_ARGUMENT, gpa, size, "not RAM within one region");
	if (!path || !path[0] || strlen(path) >= sizeof(((struct guest_export *)0)->path))
		return guest_export_failed(KERN_INVALID_ARGUMENT, gpa, size, "the socket path is empty or too long");
	/* The region is cut (one piece more where the range is inside it) and the object mapped. */
	unsigned after = m->nregions - 1 + (gpa > g->gpa) + (gpa + size < g->gpa + g->size) + 1;
	if (after > GUEST_MEMORY_MAX_REGIONS)
		return guest_export_failed(KERN_RESOURCE_SHORTAGE, gpa, size, "guest memory would have too many regions");
	if (!guest_memory_can_watch(m))
		return guest_export_failed(KERN_RESOURCE_SHORTAGE, gpa, size, "guest memory watches its maximum of external pagers");
	prot->e = malloc(GUEST_EXPORT_ENTRIES * sizeof(*prot->e));
	if (!prot->e)
		return guest_export_failed(KERN_RESOURCE_SHORTAGE, gpa, size, "");
	if (guest_memory_entries(m, prot->e, GUEST_EXPORT_ENTRIES, &prot->n) != 0) {
		free(prot->e);
		return guest_export_failed(KERN_RESOURCE_SHORTAGE, gpa, size, "the map has too many entries");
	}
	return 0;
}

/* Give the mapped object the protections the range's entries had (maximum, then current). */
static int guest_export_protect(struct guest_memory *m, uint64_t gpa, uint64_t size, const struct guest_export_prot *p)
{
	int r = 0;
	for (unsigned i = 0; i < p->n && !r; i++) {
		const struct guest_map_entry *x = &p->e[i];
		uint64_t lo = x->start > gpa ? x->start : gpa, hi = x->end < gpa + size ? x->end : gpa + size;
		if (lo >= hi)
			continue;
		r = guest_memory_vm_protect(m, lo, hi - lo, true, x->max_protection);
		if (!r)
			r = guest_memory_vm_protect(m, lo, hi - lo, false, x->protection);
		if (!r)
			r = guest_memory_vm_inherit(m, lo, hi - lo, x->inheritance);
	}
	return r;
}

int guest_export_start(struct guest_export *e, struct guest_memory *m, uint64_t gpa, uint64_t size, const char *path)
{
	memset(e, 0, sizeof(*e));
	e->memfd = e->wake_fd = e->server.listen_fd = -1;
	struct guest_export_prot prot = {NULL, 0};
	int r = guest_export_check(m, gpa, size, path, &prot);
	if (r)
		return r;
	e->gpa = gpa;
	e->size = size;
	snprintf(e->name, sizeof(e->name), "vm-export of %s", path);
	e->memfd = memfd_create("vmm-export", MFD_CLOEXEC);
	e->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (e->memfd < 0 || e->wake_fd < 0 || ftruncate(e->memfd, (off_t)size) != 0) {
		r = guest_export_failed(KERN_RESOURCE_SHORTAGE, gpa, size, strerror(errno));
		goto err_files;
	}
	if ((r = guest_export_copy(e, m, true)) != 0)
		goto err_files;
	if (netmemory_init(&e->server, e->name, e->memfd, size, 0) != 0) {
		r = guest_export_failed(KERN_RESOURCE_SHORTAGE, gpa, size, "");
		goto err_files;
	}
	if ((r = netmemory_listen(&e->server, path)) != 0) {
		char why[256];
		snprintf(why, sizeof(why), "cannot listen on %s: %s", path, strerror(-r));
		r = guest_export_failed(KERN_INVALID_ARGUMENT, gpa, size, why);
		goto err_files;
	}
	snprintf(e->path, sizeof(e->path), "%s", path);
	e->listening = true;
	if ((r = -pthread_create(&e->thread, NULL, guest_export_main, e)) != 0) {
		r = guest_export_failed(KERN_RESOURCE_SHORTAGE, gpa, size, strerror(-r));
		goto err_files;
	}
	/* From here the range's bytes are the object's: the range is cut and the object mapped
	 * in its place; if the mapping fails, RAM comes back with the bytes. */
	if ((r = guest_memory_deallocate(m, gpa, size)) != 0)
		goto err_thread;
	struct guest_memory_map_request q = {.kind = GUEST_REGION_EXTERNAL, .path = e->path, .size = size, .copy = false,
					     .cur = VM_PROT_DEFAULT, .max = VM_PROT_ALL, .inheritance = VM_INHERIT_COPY};
	uint64_t at = gpa;
	r = guest_memory_vm_map(m, &at, false, &q);
	if (r) {
		char why[512];
		snprintf(why, sizeof(why), "%s", error_message());
		at = gpa;
		if (guest_memory_allocate(m, &at, size, false) != 0 || guest_export_copy(e, m, false) != 0)
			fprintf(stderr, "vmm: vm_export: [0x%llx, +0x%llx) could not be put back: %s\n", (unsigned long long)gpa,
				(unsigned long long)size, error_message());
		r = guest_export_failed(KERN_RESOURCE_SHORTAGE, gpa, size, why);
		goto err_thread;
	}
	r = guest_export_protect(m, gpa, size, &prot);
	free(prot.e);
	/* The object is mapped: a protection that cannot be put back is said, not undone. */
	if (r)
		fprintf(stderr, "vmm: vm_export: %s\n", error_message());
	return 0;

err_thread:
	guest_export_undo(e, true);
	free(prot.e);
	return r;
err_files:
	guest_export_undo(e, false);
	free(prot.e);
	return r;
}

void guest_export_unlisten(struct guest_export *e)
{
	if (!e->listening)
		return;
	e->listening = false;
	unlink(e->path);
	atomic_store(&e->unlisten, true);
	uint64_t one = 1;
	(void)!write(e->wake_fd, &one, sizeof(one));
}

void guest_export_stop(struct guest_export *e)
{
	if (e->listening)
		unlink(e->path);
	e->listening = false;
	guest_export_undo(e, true);
}

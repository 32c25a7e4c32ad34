#include "vmm/memory/guest_memory.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "mmu/kern_return.h"
#include "mmu/pager.h"
#include "mmu/pmap.h"
#include "mmu/vm_domain.h"
#include "mmu/vm_fault.h"
#include "mmu/vm_map.h"
#include "mmu/vm_object.h"
#include "pagers/default_pager.h"
#include "pagers/external_pager.h"
#include "vmm/clock.h"
#include "vmm/error.h"
#include "vmm/file_io.h"
#include "vmm/memory/segment.h"
#include "pagers/file_pager.h"
#include "pagers/snapshot_pager.h"

static const char *const map_mode_names[] = {"private", "ro", "shared"};

static int region_cmp(const void *a, const void *b)
{
	const struct guest_region *x = a, *y = b;
	return x->gpa < y->gpa ? -1 : x->gpa > y->gpa;
}

void guest_memory_init(struct guest_memory *m)
{
	memset(m, 0, sizeof(*m));
	m->uffd.fd = -1;
	m->swap_fd = -1;
	m->cancel_fd = -1;
}

int guest_memory_layout(struct guest_memory *m, const struct guest_memory_config *cfg)
{
	memset(m, 0, sizeof(*m));
	m->swap_fd = -1;
	m->cancel_fd = -1;
	m->uffd.fd = -1;
	m->readahead_at = (vm_addr_t)-1; /* no walk yet: a first fault is not sequential */
	m->ram_size = cfg->ram_size;
	m->kernel_ram = cfg->kernel_zero_fill;
	if (cfg->kernel_zero_fill && cfg->mem_limit)
		return error_set(EINVAL, "a memory limit needs RAM served by the default pager, not the kernel's zero fill");
	if (cfg->nram) {
		/* An explicit layout (a restored VM's): checked like any input. */
		if (cfg->nram > GUEST_MEMORY_MAX_REGIONS - cfg->nfiles)
			return error_set(EINVAL, "too many RAM ranges (%u)", cfg->nram);
		for (unsigned i = 0; i < cfg->nram; i++) {
			const struct guest_ram_range *g = &cfg->ram[i];
			if ((g->gpa | g->size) & (VM_PAGE_SIZE - 1) || !g->size || g->gpa >= GUEST_MEMORY_WINDOW ||
			    g->size > GUEST_MEMORY_WINDOW - g->gpa || (i && g->gpa < cfg->ram[i - 1].gpa + cfg->ram[i - 1].size))
				return error_set(EINVAL, "RAM range %u [0x%llx, +0x%llx) is malformed", i,
						 (unsigned long long)g->gpa, (unsigned long long)g->size);
			m->region[m->nregions++] = (struct guest_region){.gpa = g->gpa, .size = g->size, .kind = GUEST_REGION_RAM};
		}
	} else {
		uint64_t low = cfg->ram_size < GUEST_MEMORY_LOW_LIMIT ? cfg->ram_size : GUEST_MEMORY_LOW_LIMIT;
		m->region[m->nregions++] = (struct guest_region){.gpa = 0, .size = low, .kind = GUEST_REGION_RAM};
		if (cfg->ram_size > low)
			m->region[m->nregions++] = (struct guest_region){
				.gpa = GUEST_MEMORY_HIGH_BASE, .size = cfg->ram_size - low, .kind = GUEST_REGION_RAM};
	}

	if (cfg->nfiles > GUEST_MEMORY_MAX_FILES)
		return error_set(EINVAL, "at most %d files can be mapped", GUEST_MEMORY_MAX_FILES);
	for (unsigned i = 0; i < cfg->nfiles; i++) {
		const struct guest_file_map *f = &cfg->files[i];
		struct stat st;
		uint64_t size = f->size;
		if (f->external) {
			if (size == 0 || (size & (VM_PAGE_SIZE - 1)))
				return error_set(EINVAL, "cannot map pager %s: size 0x%llx is not a positive multiple of 4K",
						 f->path, (unsigned long long)size);
		} else {
			if (stat(f->path, &st) != 0)
				return error_set_errno(errno, "cannot map %s", f->path);
			if (!S_ISREG(st.st_mode) || st.st_size == 0)
				return error_set(EINVAL, "cannot map %s: not a regular file with data", f->path);
			size = ((uint64_t)st.st_size + VM_PAGE_SIZE - 1) & ~(VM_PAGE_SIZE - 1);
		}
		if (f->gpa & (VM_PAGE_SIZE - 1))
			return error_set(EINVAL, "cannot map %s at 0x%llx: the address is not 4K aligned", f->path,
					 (unsigned long long)f->gpa);
		if (f->gpa >= GUEST_MEMORY_MAX_GPA || size > GUEST_MEMORY_MAX_GPA - f->gpa)
			return error_set(EINVAL, "cannot map %s at 0x%llx: beyond guest-physical addresses", f->path,
					 (unsigned long long)f->gpa);
		for (unsigned k = 0; k < m->nregions; k++) {
			const struct guest_region *r = &m->region[k];
			if (f->gpa < r->gpa + r->size && r->gpa < f->gpa + size)
				return error_set(EINVAL, "cannot map %s at [0x%llx, 0x%llx): it overlaps %s [0x%llx, 0x%llx)",
						 f->path, (unsigned long long)f->gpa, (unsigned long long)(f->gpa + size),
						 r->kind == GUEST_REGION_RAM ? "guest RAM" : r->path,
						 (unsigned long long)r->gpa, (unsigned long long)(r->gpa + r->size));
		}
		m->region[m->nregions++] = (struct guest_region){
			.gpa = f->gpa, .size = size, .kind = f->external ? GUEST_REGION_EXTERNAL : GUEST_REGION_FILE,
			.mode = f->mode, .path = f->path, .file_size = f->external ? 0 : (uint64_t)st.st_size};
	}
	qsort(m->region, m->nregions, sizeof(m->region[0]), region_cmp);
	for (unsigned i = 0; i < m->nregions; i++)
		m->region[i].slot = i;
	const struct guest_region *last = &m->region[m->nregions - 1];
	m->span = last->gpa + last->size;
	return 0;
}

/* The lowest KVM slot no region uses. */
static unsigned guest_memory_free_slot(const struct guest_memory *m)
{
	for (unsigned slot = 0;; slot++) {
		bool used = false;
		for (unsigned i = 0; i < m->nregions && !used; i++)
			used = m->region[i].slot == slot;
		if (!used)
			return slot;
	}
}

/* Insert @g keeping the array sorted; the caller checked there is room and no overlap. */
static void guest_memory_insert_region(struct guest_memory *m, const struct guest_region *g)
{
	unsigned i = m->nregions++;
	while (i > 0 && m->region[i - 1].gpa > g->gpa) {
		m->region[i] = m->region[i - 1];
		i--;
	}
	m->region[i] = *g;
	const struct guest_region *last = &m->region[m->nregions - 1];
	m->span = last->gpa + last->size;
}

/*
 * The end of calls into the map made under the domain lock: what they staged in the pmap
 * goes into guest RAM, then the lock is let go. 0, or the pmap's -errno (with its message)
 * when a page could not be put in, protected or dropped. A fault needs no such end: vm_fault
 * closes its batch itself and fails with it (KERN_MEMORY_ERROR).
 */
static int guest_memory_unlock_map(struct guest_memory *m)
{
	int r = pmap_uffd_flush(&m->pmap);
	vm_domain_unlock(m->dom);
	return r;
}

/* A connected socket to the external pager at @path. */
static int guest_memory_connect(const char *path)
{
	struct sockaddr_un addr = {.sun_family = AF_UNIX};
	if (strlen(path) >= sizeof(addr.sun_path))
		return error_set(ENAMETOOLONG, "pager socket path %s is too long", path);
	strcpy(addr.sun_path, path);
	/* Non-blocking: a listener that never accepts fills its backlog, and a blocking connect
	 * then waits for ever (unix sockets say EAGAIN instead when non-blocking). */
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return error_set_errno(errno, "cannot reach the external pager at %s", path);
	uint64_t deadline = clock_monotonic_ns() + GUEST_MEMORY_CONNECT_WAIT_MS * 1000000ull;
	int r;
	while ((r = connect(fd, (struct sockaddr *)&addr, sizeof(addr))) != 0 && errno == EAGAIN &&
	       clock_monotonic_ns() < deadline)
		usleep(10000);
	if (r != 0) {
		int err = errno;
		close(fd);
		if (err == EAGAIN)
			return error_set(ETIMEDOUT, "cannot reach the external pager at %s: it accepts no connection (%d ms)",
					 path, GUEST_MEMORY_CONNECT_WAIT_MS);
		return error_set_errno(err, "cannot reach the external pager at %s", path);
	}
	if (fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK) != 0) {
		int err = errno;
		close(fd);
		return error_set_errno(err, "cannot reach the external pager at %s", path);
	}
	return fd;
}

/* A shared writable mapping of @q: the guest's writes reach the file or the pager. */
static bool guest_memory_request_shared(const struct guest_memory_map_request *q)
{
	return !q->copy && (q->max & VM_PROT_WRITE);
}

/*
 * The pager of @q: the file pager on the file (read/write only for a shared writable
 * mapping), an external pager process at the socket, or the caller's (a snapshot's, not a
 * reference of ours). Without the domain lock (an external pager may take up to
 * GUEST_MEMORY_CONNECT_WAIT_MS to accept). 0 and *out (one reference, but the snapshot's), or
 * -errno with a message: -EROFS when a shared writable mapping meets a pager that takes no
 * writes.
 */
static int guest_memory_open_pager(struct guest_memory *m, const struct guest_memory_map_request *q,
				   struct pager **out)
{
	bool shared = guest_memory_request_shared(q), external = q->kind == GUEST_REGION_EXTERNAL;
	if (q->kind == GUEST_REGION_SNAPSHOT) {
		/* A stored snapshot is never written through: only copies or read-only views. */
		if (shared)
			return error_set(EROFS, "cannot map %s shared and writable: a stored snapshot takes no writes", q->path);
		*out = q->pager;
		return 0;
	}
	/* Checked at layout too, but the path may have become a FIFO since: never wait on it. */
	int fd = external ? guest_memory_connect(q->path)
			  : file_open_regular(AT_FDCWD, q->path, shared ? O_RDWR : O_RDONLY, 0, FILE_NONEMPTY, "mapped file",
					      q->path);
	if (fd < 0)
		return fd;
	struct external_pager_config ext = {.cancel_fd = m->cancel_fd};
	struct pager_args args = {.fd = fd, .offset = 0, .size = 0, .writable = shared, .source = external ? &ext : NULL};
	struct pager *pager;
	int err = pager_open(external ? &external_pager_ops : &file_pager_ops, &args, &pager);
	close(fd);
	if (err)
		return error_set(-err, "%s pager cannot serve %s: %s", external ? "external" : "file", q->path,
				 strerror(-err));
	if (shared && !(pager->max_prot & VM_PROT_WRITE)) {
		pager_release(pager);
		return error_set(EROFS, "cannot map %s shared: its pager takes no writes", q->path);
	}
	/* Mapped as a copy or without write, nothing goes back to the pager: say so, or the core
	 * must copy an object others could write at once, reading all of it (Mach's copy of a
	 * shared object). A version-2 pager's copy is made at once all the same
	 * (guest_memory_enter_pager): others do write its object. */
	if (!shared)
		pager->max_prot &= ~VM_PROT_WRITE;
	*out = pager;
	return 0;
}

/*
 * Map [q->offset, q->offset + q->size) of an object of @pager at *gpa (or anywhere) as @q
 * asks. The caller holds the domain lock, or nothing serves faults yet. Mach's code; the
 * entry holds the object's one reference.
 */
static kern_return_t guest_memory_enter_pager(struct guest_memory *m, struct pager *pager, vm_addr_t *gpa,
					      bool anywhere, const struct guest_memory_map_request *q)
{
	/* The object is all the pager has (0: its size), or for a pager of any size what is
	 * mapped of it (an unaligned or wrapped sum is refused, by the object or the map). */
	struct vm_object *obj;
	kern_return_t kr = vm_object_create(m->dom, pager, pager->size ? 0 : q->offset + q->size, &obj);
	if (kr != KERN_SUCCESS)
		return kr;
	/* A pager that speaks of its own accord (version 2: a coherent object, another VM's
	 * export) has an object other processes write: a copy of it is a copy as it is now, made
	 * at once (Mach's MEMORY_OBJECT_COPY_NONE), not page by page as the guest reads. */
	if (q->copy && vm_object_pager_event_fd(obj) >= 0)
		obj->copy_strategy = VM_COPY_NONE;
	kr = vm_map_enter(m->map, gpa, q->size, anywhere, obj, q->offset, q->copy, q->cur, q->max, q->inheritance);
	vm_object_deallocate(obj);
	/* Mapped as a copy, a page the guest reads is copied up at once (as restored RAM's are):
	 * the pmap copies every page anyway, the file's copy is freed (its pager has the bytes),
	 * and the guest's page is writable on the host, which KVM maps on its fast path and
	 * with its neighbours (read-only host pages cost a slow fault each, 4 us here). */
	if (kr == KERN_SUCCESS && q->copy)
		kr = vm_map_set_attr(m->map, *gpa, q->size, VM_ATTR_COPY_ON_READ, 1);
	return kr;
}

/* Keep @h (what a mapped region needs) for as long as guest memory lives. */
static void guest_memory_keep(struct guest_memory *m, const struct guest_memory_held *h)
{
	m->held[m->nheld++] = *h;
}

/* Let @h go: its pager reference, its path, its owner. */
static void guest_memory_let_go(const struct guest_memory_held *h)
{
	if (h->pager)
		pager_release(h->pager);
	free(h->path);
	if (h->release)
		h->release(h->owner);
}

/* Map region @r, laid out from cfg.files, through its pager (at create). */
static int guest_memory_map_file(struct guest_memory *m, struct guest_region *r)
{
	bool ro = r->mode == GUEST_MAP_RO;
	struct guest_memory_map_request q = {
		.kind = r->kind, .path = r->path, .offset = 0, .size = r->size, .copy = r->mode == GUEST_MAP_PRIVATE,
		.cur = ro ? VM_PROT_READ | VM_PROT_EXECUTE : VM_PROT_ALL, .max = ro ? VM_PROT_READ | VM_PROT_EXECUTE : VM_PROT_ALL,
		.inheritance = VM_INHERIT_COPY};
	bool external = r->kind == GUEST_REGION_EXTERNAL;
	int err = guest_memory_open_pager(m, &q, &r->pager);
	if (err)
		return err;
	guest_memory_keep(m, &(struct guest_memory_held){.serves = r->pager, .pager = r->pager});
	/* A mapping past the data would give the guest errors, or zeros, where it has none. */
	uint64_t has = r->pager->size;
	if (((has + VM_PAGE_MASK) & ~(uint64_t)VM_PAGE_MASK) < r->size)
		return error_set(EINVAL, "cannot map %s: its %s pager has %llu bytes, fewer than the %llu mapped", r->path,
				 external ? "external" : "file", (unsigned long long)has, (unsigned long long)r->size);
	vm_addr_t gpa = r->gpa;
	kern_return_t kr = guest_memory_enter_pager(m, r->pager, &gpa, false, &q);
	if (kr != KERN_SUCCESS)
		return error_set(-kern_return_errno(kr), "cannot map %s at 0x%llx (%s): %s", r->path, (unsigned long long)r->gpa,
				 map_mode_names[r->mode], kern_return_name(kr));
	return 0;
}

/* The swap file as messages name it. */
static const char *guest_memory_swap_name(const struct guest_memory *m)
{
	return m->swap_path ? m->swap_path : "(unnamed, in /var/tmp)";
}

/*
 * The swap file for page-out, opened before anything is built: the named one, emptied, or
 * an unnamed one in /var/tmp. Only a regular file keeps pages: a device swallows them
 * (/dev/null) or refuses them (/dev/full), a FIFO gives back other bytes; a FIFO is opened
 * without waiting for a reader, and then refused.
 */
static int guest_memory_open_swap_file(struct guest_memory *m, const char *path)
{
	m->swap_path = path;
	int fd = path ? file_open_regular(AT_FDCWD, path, O_RDWR | O_CREAT, 0600, 0, "swap file", path)
		      : open("/var/tmp", O_RDWR | O_TMPFILE | O_CLOEXEC, 0600);
	if (!path && fd < 0)
		fd = -errno;
	m->swap_fd = fd < 0 ? -1 : fd;
	if (fd == -EINVAL || fd == -EISDIR)
		return error_set(EINVAL, "cannot use %s as the swap file: not a regular file", guest_memory_swap_name(m));
	if (fd < 0)
		return error_set(-fd, "cannot create the swap file %s: %s", guest_memory_swap_name(m), strerror(-fd));
	if (ftruncate(fd, 0) != 0)
		return error_set_errno(errno, "cannot use %s as the swap file", guest_memory_swap_name(m));
	return 0;
}

/* The default pager on the swap file, for the domain's anonymous memory. */
static int guest_memory_open_swap(struct guest_memory *m)
{
	struct pager_args args = {.fd = m->swap_fd};
	int err = pager_open(&default_pager_ops, &args, &m->swap);
	if (err)
		return error_set(-err, "default pager cannot use the swap file: %s", strerror(-err));
	vm_domain_set_default_pager(m->dom, m->swap);
	return 0;
}

int guest_memory_place(struct guest_memory *m, const struct guest_memory_config *cfg)
{
	int r = guest_memory_layout(m, cfg);
	if (r)
		return r;
	/* The whole guest-physical window is reserved once (no memory behind it); regions are
	 * opened in it, so memory allocated at run time finds its place at base + gpa. */
	m->base = mmap(NULL, GUEST_MEMORY_WINDOW, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (m->base == MAP_FAILED) {
		m->base = NULL;
		return error_set_errno(errno, "cannot reserve %llu GiB of address space for guest memory",
				       (unsigned long long)(GUEST_MEMORY_WINDOW >> 30));
	}
	for (unsigned i = 0; i < m->nregions; i++) {
		m->region[i].hva = m->base + m->region[i].gpa;
		if (mprotect(m->region[i].hva, m->region[i].size, PROT_READ | PROT_WRITE) != 0) {
			r = error_set_errno(errno, "cannot open guest memory at 0x%llx", (unsigned long long)m->region[i].gpa);
			munmap(m->base, GUEST_MEMORY_WINDOW);
			m->base = NULL;
			return r;
		}
	}
	return 0;
}

/* Register region @g with the userfaultfd: missing and write-protect faults, and minor ones
 * where it is mapped from the segment (a page the segment holds still faults here). */
static int guest_memory_register(struct guest_memory *m, const struct guest_region *g)
{
	unsigned catch = UFFD_CATCH_MISSING | UFFD_CATCH_WP | (g->from_segment ? UFFD_CATCH_MINOR : 0);
	return uffd_register(&m->uffd, g->hva, g->size, catch);
}

/* Whether @u can serve RAM mapped from a segment (guest_memory_can_map_segments). */
static bool guest_memory_uffd_maps_segments(struct uffd *u)
{
	return (u->features & UFFD_SEGMENT_FEATURES) == UFFD_SEGMENT_FEATURES && uffd_can_continue_wp(u);
}

int guest_memory_can_map_segments(void)
{
	struct uffd u;
	int r = uffd_open(&u, UFFD_SEGMENT_FEATURES);
	if (r)
		return r;
	bool can = guest_memory_uffd_maps_segments(&u);
	uffd_close(&u);
	return can ? 0
		   : error_set(EOPNOTSUPP, "this kernel's userfaultfd cannot map a shared page write-protected "
					   "(UFFDIO_CONTINUE_MODE_WP, Linux 6.4)");
}

/* Map the RAM regions that lie within @seg from it, MAP_PRIVATE at their guest-physical
 * addresses, if the userfaultfd can serve them (m->segment set then); else leave RAM
 * private. 0 or -errno with a message. */
static int guest_memory_map_segment(struct guest_memory *m, struct segment *seg)
{
	if (!guest_memory_uffd_maps_segments(&m->uffd))
		return 0;
	m->segment = seg;
	for (unsigned i = 0; i < m->nregions; i++) {
		struct guest_region *g = &m->region[i];
		if (g->kind != GUEST_REGION_RAM || g->gpa + g->size > seg->size)
			continue;
		if (mmap(g->hva, g->size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_FIXED | MAP_NORESERVE, seg->fd,
			 (off_t)g->gpa) == MAP_FAILED)
			return error_set_errno(errno, "cannot map the shared snapshot segment at guest-physical 0x%llx",
					       (unsigned long long)g->gpa);
		g->from_segment = true;
		if (pmap_uffd_add_segment(&m->pmap, g->gpa, g->gpa + g->size) != 0)
			return error_set(ENOSPC, "guest RAM has more than 8 regions mapped from a shared segment");
	}
	return 0;
}

int guest_memory_create(struct guest_memory *m, const struct guest_memory_config *cfg)
{
	int r = m->base ? 0 : guest_memory_place(m, cfg);
	if (r)
		return r;
	if (cfg->mem_limit && (r = guest_memory_open_swap_file(m, cfg->swap_path)) != 0)
		goto err;
	/* A kernel without shmem userfaultfd refuses the features: RAM is private then. */
	bool segment = cfg->ram_segment && cfg->ram_pager && !m->kernel_ram;
	r = segment && uffd_open(&m->uffd, UFFD_SEGMENT_FEATURES) == 0 ? 0 : uffd_open(&m->uffd, 0);
	if (r)
		goto err;
	if ((r = pmap_uffd_init(&m->pmap, &m->uffd, m->base, GUEST_MEMORY_WINDOW)) != 0) {
		r = error_set(ENOMEM, "no memory for the pmap");
		goto err;
	}
	if (segment && (r = guest_memory_map_segment(m, cfg->ram_segment)) != 0)
		goto err;
	for (unsigned i = 0; !r && i < m->nregions; i++)
		if (m->region[i].kind != GUEST_REGION_RAM || !m->kernel_ram)
			r = guest_memory_register(m, &m->region[i]);
	if (r)
		goto err;
	for (unsigned i = 0; i < m->nregions; i++)
		if (m->region[i].kind != GUEST_REGION_RAM && m->region[i].mode == GUEST_MAP_RO)
			(void)pmap_uffd_add_readonly(&m->pmap, m->region[i].gpa, m->region[i].gpa + m->region[i].size);
	m->cancel_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (m->cancel_fd < 0) {
		r = error_set_errno(errno, "cannot create the guest memory's cancel eventfd");
		goto err;
	}
	if ((r = vm_domain_create(&m->dom)) != 0) {
		r = error_set(-r, "no memory for the VM domain");
		goto err;
	}
	kern_return_t kr = vm_map_create(m->dom, 0, GUEST_MEMORY_WINDOW, &pmap_uffd_ops, &m->pmap, &m->map);
	if (kr == KERN_SUCCESS)
		kr = vm_map_set_default_attr(m->map, VM_ATTR_CLUSTER,
					     cfg->cluster ? cfg->cluster : GUEST_MEMORY_DEFAULT_CLUSTER);
	if (kr != KERN_SUCCESS) {
		r = error_set(-kern_return_errno(kr), "cannot create the guest-physical map: %s", kern_return_name(kr));
		goto err;
	}
	struct vm_object *ram_obj = NULL;
	if (cfg->ram_pager) {
		kr = vm_object_create(m->dom, cfg->ram_pager, m->span, &ram_obj);
		if (kr != KERN_SUCCESS) {
			r = error_set(-kern_return_errno(kr), "cannot make a memory object of the snapshot: %s", kern_return_name(kr));
			goto err;
		}
	}
	for (unsigned i = 0; !r && i < m->nregions; i++) {
		struct guest_region *g = &m->region[i];
		if (g->kind != GUEST_REGION_RAM) {
			r = guest_memory_map_file(m, g);
			continue;
		}
		if (m->kernel_ram)
			continue;
		vm_addr_t gpa = g->gpa;
		kr = ram_obj ? vm_map_enter(m->map, &gpa, g->size, false, ram_obj, g->gpa, true, VM_PROT_DEFAULT,
					    VM_PROT_ALL, VM_INHERIT_COPY)
			     : vm_map_allocate(m->map, &gpa, g->size, false);
		/* A restored guest's pages are copied up on first touch, read or write: each is
		 * then held once, in the guest's own object (the snapshot pager's copy is freed,
		 * the store keeps the bytes), and a later write takes no second fault. Not where
		 * the segment holds them: there a read maps the host's one copy. */
		if (kr == KERN_SUCCESS && ram_obj && !g->from_segment)
			kr = vm_map_set_attr(m->map, g->gpa, g->size, VM_ATTR_COPY_ON_READ, 1);
		if (kr != KERN_SUCCESS)
			r = error_set(-kern_return_errno(kr), "cannot allocate guest RAM at 0x%llx: %s", (unsigned long long)g->gpa,
				      kern_return_name(kr));
	}
	m->ram_object = ram_obj; /* kept: snapshots of the restored guest stop at it */
	if (!r && cfg->mem_limit) {
		/* The core trims to its limit after each fault, which may bring a whole cluster in:
		 * keep one cluster of room so residency never exceeds what the user asked for. */
		uint64_t cluster = cfg->cluster ? cfg->cluster : GUEST_MEMORY_DEFAULT_CLUSTER;
		uint64_t pages = cfg->mem_limit / VM_PAGE_SIZE;
		uint64_t keep = pages > 2 * cluster ? pages - cluster : cluster;
		r = guest_memory_open_swap(m);
		if (!r)
			vm_domain_set_limit(m->dom, keep);
		m->limit_pages = keep + cluster;
	}
	if (r)
		goto err;
	return 0;
err:
	guest_memory_destroy(m);
	return r;
}

/* Bring in the cluster around @gpa as a guest @access would (domain lock held): true when
 * done (the pages in guest RAM), *info saying what it entered. */
static bool guest_memory_fault_in(struct guest_memory *m, vm_addr_t gpa, vm_prot_t access, struct vm_fault_info *info)
{
	return vm_fault(m->map, gpa, access, info) == KERN_SUCCESS;
}

/* Keep @gpa, a RAM page brought in by the guest's fault or read-ahead (domain lock held).
 * At most one entry per page of RAM (a page brought in again after a page-out is listed
 * again while there is room). */
static void guest_memory_record(struct guest_memory *m, vm_addr_t gpa)
{
	struct working_set *w = &m->recorded;
	const struct guest_region *g = guest_memory_region(m, gpa);
	if (!g || g->kind != GUEST_REGION_RAM || w->count >= m->ram_size / VM_PAGE_SIZE)
		return;
	if (w->count == m->recorded_cap) {
		uint64_t cap = m->recorded_cap ? 2 * m->recorded_cap : 4096;
		uint64_t *pages = realloc(w->pages, cap * sizeof(*pages));
		if (!pages)
			return; /* a shorter list: prefetching it does less, nothing worse */
		w->pages = pages;
		m->recorded_cap = cap;
	}
	w->pages[w->count++] = gpa / VM_PAGE_SIZE;
}

/*
 * Sequential read-ahead (fault thread, after the guest was woken): a fault whose cluster
 * starts where the last one's (or the last read-ahead's) ended is a guest walking through
 * memory; bring in the next clusters now, while the guest works through this one, instead
 * of when it faults there, up to GUEST_MEMORY_READAHEAD clusters ahead and only while no
 * other fault waits. Nothing is lost if that fails: the guest's own fault there says why.
 * The clusters ahead are read, whatever the guest's access: memory nobody has yet is
 * zero-filled writable all the same, while a page of a frozen object below (a snapshot's)
 * is mapped, not copied up as if the guest had written it.
 */
static void guest_memory_readahead(struct guest_memory *m, vm_addr_t gpa, const struct vm_fault_info *info)
{
	bool sequential = info->start == m->readahead_at;
	m->readahead_at = info->end;
	if (!sequential || info->end - info->start < 2 * VM_PAGE_SIZE)
		return; /* random access, or no clustering asked for */
	/* A copy, taken under the lock: the monitor may insert a region meanwhile (vm_map,
	 * vm_allocate), moving the others in the array. */
	vm_domain_lock(m->dom);
	const struct guest_region *r = guest_memory_region(m, gpa);
	struct guest_region g = r ? *r : (struct guest_region){.size = 0};
	vm_domain_unlock(m->dom);
	for (unsigned n = 0; n < GUEST_MEMORY_READAHEAD; n++) {
		vm_addr_t at = m->readahead_at;
		struct pollfd p = {m->uffd.fd, POLLIN, 0};
		if (at - g.gpa >= g.size || poll(&p, 1, 0) != 0)
			return; /* the region's end, or a fault to serve first */
		vm_domain_lock(m->dom);
		struct vm_fault_info ahead = {0};
		/* Nothing the guest did not ask for while swap refuses pages: it could not be
		 * made room for. */
		bool ok = m->dom->stats.pageout_errors == m->pageout_errors_seen && !pmap_entered(&m->map->pmap, at) &&
			  guest_memory_fault_in(m, at, VM_PROT_READ, &ahead);
		if (ok && m->recording && ahead.entered)
			guest_memory_record(m, at);
		vm_domain_unlock(m->dom);
		if (!ok)
			return;
		m->readahead_pages += ahead.entered;
		m->readahead_at = ahead.end; /* the guest's fault there continues the walk */
	}
}

/* Fault thread, when no fault waits: the next cluster of the prefetch list, once started.
 * True while more of the list remains. */
static bool guest_memory_idle(void *arg)
{
	struct guest_memory *m = arg;
	if (!atomic_load(&m->prefetch_go))
		return false;
	vm_domain_lock(m->dom);
	while (m->prefetch_next < m->prefetch.count) {
		vm_addr_t gpa = m->prefetch.pages[m->prefetch_next++] * VM_PAGE_SIZE;
		if (pmap_entered(&m->map->pmap, gpa))
			continue; /* brought in by the guest, or with an earlier entry's cluster */
		struct vm_fault_info info = {0};
		if (m->failed || !guest_memory_fault_in(m, gpa, VM_PROT_READ, &info))
			m->prefetch_next = m->prefetch.count;
		m->prefetched_pages += info.entered;
		break;
	}
	bool more = m->prefetch_next < m->prefetch.count;
	vm_domain_unlock(m->dom);
	return more;
}

/*
 * After a fault and its read-ahead (fault thread): page-outs the swap refused since the
 * last look (a full disk, an I/O error). Their pages stay resident. Within the limit the
 * VM goes on, said once on stderr; beyond it the limit the user asked for cannot be kept
 * and the VM must stop: -EIO with a message. Never a limit silently not kept.
 */
static int guest_memory_check_pageouts(struct guest_memory *m)
{
	struct vm_domain *dom = m->dom;
	vm_domain_lock(dom);
	uint64_t errors = dom->stats.pageout_errors, resident = dom->stats.resident_count;
	int err = -dom->pageout_error;
	bool news = errors != m->pageout_errors_seen, say = news && !m->pageout_error_said;
	m->pageout_errors_seen = errors;
	vm_domain_unlock(dom);
	if (news && resident > m->limit_pages)
		return error_set(EIO, "guest memory cannot be kept under its limit of %llu pages: %llu resident, page-out failed: %s (swap file %s)",
				 (unsigned long long)m->limit_pages, (unsigned long long)resident, strerror(err),
				 guest_memory_swap_name(m));
	if (say) {
		m->pageout_error_said = true;
		fprintf(stderr, "vmm: page-out failed: %s (swap file %s); the pages stay resident, counted in mem.pageout_errors, and the VM stops if they go over its memory limit\n",
			strerror(err), guest_memory_swap_name(m));
	}
	return 0;
}

/* guest_memory_cancel was called (and not yet undone by guest_memory_sync). */
static bool guest_memory_cancelled(const struct guest_memory *m)
{
	struct pollfd p = {m->cancel_fd, POLLIN, 0};
	return m->cancel_fd >= 0 && poll(&p, 1, 0) > 0;
}

/* Serve one userfaultfd event (fault thread). */
static int guest_memory_fault(void *arg, const struct fault_event *ev)
{
	struct guest_memory *m = arg;
	uint64_t t0 = clock_monotonic_ns();
	vm_addr_t gpa = ev->address - (uint64_t)(uintptr_t)m->base;
	vm_prot_t access = VM_PROT_READ | (ev->write ? VM_PROT_WRITE : 0);
	struct vm_fault_info info = {0};
	error_clear(); /* a pager's source (vmm side) may say why it failed */
	vm_domain_lock(m->dom);
	kern_return_t kr = KERN_SUCCESS;
	int r = 0;
	if (!guest_memory_region(m, gpa)) {
		/* Read before guest_memory_deallocate took the range away: the unregister woke the
		 * thread that faulted, which finds nothing there now. Not the guest's doing. */
	} else if (ev->wp && (pmap_entered(&m->map->pmap, gpa) & VM_PROT_WRITE)) {
		/* Write-protected ahead of a snapshot (guest_memory_prearm) while the core lets the
		 * guest write: nothing to resolve, lift the protection (which wakes the guest). */
		r = pmap_uffd_unguard(&m->pmap, gpa);
		info.entered = 1;
	} else {
		kr = vm_fault(m->map, gpa, access, &info); /* a page the pmap could not put in fails it */
	}
	m->uffd_faults++;
	if (ev->wp)
		m->wp_faults++;
	else if (m->recording && kr == KERN_SUCCESS && info.entered)
		guest_memory_record(m, gpa);
	if (kr != KERN_SUCCESS) {
		/* Name what failed: the entry's object and the offset in it. */
		vm_addr_t at = gpa;
		struct vm_region_info ri;
		const struct guest_region *g = guest_memory_region(m, gpa);
		char why[512];
		snprintf(why, sizeof(why), "%s", error_message());
		const char *pager_why = g && g->kind == GUEST_REGION_EXTERNAL
						? external_pager_failure(g->pager)
						: "";
		if (pager_why[0]) /* the pager's own reason; else the pmap's, when it failed */
			snprintf(why, sizeof(why), "%s", pager_why);
		else if (!why[0] && kr == KERN_MEMORY_ERROR && m->swap && default_pager_failure(m->swap)[0])
			snprintf(why, sizeof(why), "swap file %s: %s", guest_memory_swap_name(m), default_pager_failure(m->swap));
		/* An access outside the map is the guest's doing too (guest_memory_error_fn). */
		int code = kr == KERN_INVALID_ADDRESS ? EACCES : -kern_return_errno(kr);
		if (guest_memory_cancelled(m))
			code = ECANCELED; /* the VM stops: the pager was not waited for, nothing failed */
		if (vm_map_region(m->map, &at, &ri) == KERN_SUCCESS && ri.start <= gpa)
			r = error_set(code, "guest %s of guest-physical 0x%llx (%s) failed: %s in object %llu at offset 0x%llx%s%s",
				      ev->write ? "write" : "read", (unsigned long long)gpa,
				      g && g->path ? g->path : "RAM", kern_return_name(kr),
				      (unsigned long long)ri.object_id,
				      (unsigned long long)(ri.offset + vm_trunc_page(gpa) - ri.start), why[0] ? ": " : "", why);
		else
			r = error_set(code, "guest %s of guest-physical 0x%llx failed: %s", ev->write ? "write" : "read",
				      (unsigned long long)gpa, kern_return_name(kr));
	}
	uint64_t dt = clock_monotonic_ns() - t0;
	unsigned bucket = 0;
	while (bucket + 1 < GUEST_MEMORY_LATENCY_BUCKETS && (dt >> (bucket + 1)))
		bucket++;
	m->latency[bucket]++;
	vm_domain_unlock(m->dom);
	if (r)
		return r;
	/* A fault resolved without a copy (another vCPU's fault brought the page) must still
	 * wake its thread; copies and unprotects wake by themselves. */
	if (info.entered == 0)
		uffd_wake(&m->uffd, (void *)(uintptr_t)ev->address, VM_PAGE_SIZE);
	if (!ev->wp && info.entered)
		guest_memory_readahead(m, gpa, &info);
	return m->limit_pages ? guest_memory_check_pageouts(m) : 0;
}

static void guest_memory_fault_error(void *arg, int err, const char *message)
{
	struct guest_memory *m = arg;
	m->failed = err != ECANCELED;
	if (m->on_error)
		m->on_error(m->on_error_arg, err, message);
	/* Nobody will serve faults any more: closing the userfaultfd wakes every thread that
	 * waits on one (the VM is stopping; no thread may be left blocked). */
	uffd_close(&m->uffd);
}

/* The object @pager serves in the map (down the chain of the entry at its region *gp, which
 * a private mapping shadows), or NULL: no region maps it any more. Domain lock held. */
static struct vm_object *guest_memory_pager_object(struct guest_memory *m, const struct pager *pager,
						   const struct guest_region **gp)
{
	for (const struct guest_region *g = m->region; g < m->region + m->nregions; g++) {
		if (g->pager != pager)
			continue;
		*gp = g;
		struct vm_map_entry *e = vm_map_lookup_entry(m->map, g->gpa);
		for (struct vm_object *o = e ? e->object : NULL; o; o = o->shadow)
			if (o->pager == pager)
				return o;
	}
	return NULL;
}

/* Fault thread: watched pager @index (m->watched) has something of its own to do (a lock
 * request from a coherent pager, pager.h): do it under the domain lock, as a fault would
 * be. 0; 1 when nothing maps its object any more (stop watching); -errno with a message. */
static int guest_memory_pager_event(void *arg, unsigned index)
{
	struct guest_memory *m = arg;
	const struct guest_region *g = NULL;
	vm_domain_lock(m->dom);
	/* NULL: let go by guest_memory_deallocate (a call already under way when it stopped the
	 * watch). */
	struct pager *pager = m->watched[index];
	struct vm_object *obj = pager ? guest_memory_pager_object(m, pager, &g) : NULL;
	int err = obj ? vm_object_pager_service(obj) : 1;
	/* Pages it took away or protected: a failure of the pmap's is the VM's (it said why). */
	int pmap_err = obj ? pmap_update(&m->map->pmap) : 0;
	/* Said under the lock: a deallocation may free the region's path once it is let go. */
	if (err < 0)
		err = error_set(-err, "external pager %s: %s", g->path, external_pager_failure(pager));
	vm_domain_unlock(m->dom);
	if (err < 0)
		return err;
	return pmap_err ? pmap_err : err;
}

bool guest_memory_can_watch(const struct guest_memory *m)
{
	unsigned watching = 0;
	for (unsigned i = 0; i < m->nwatched; i++)
		watching += m->watched[i] != NULL;
	return watching < FAULT_THREAD_WATCH_MAX;
}

/* Have the fault thread watch the pager of region @g when it sends messages of its own (a
 * version 2 external pager): from then on guest_memory_pager_event serves them. 0, or
 * -ENOSPC with a message when FAULT_THREAD_WATCH_MAX are watched already. */
static int guest_memory_watch(struct guest_memory *m, const struct guest_region *g)
{
	int r = 0;
	vm_domain_lock(m->dom);
	const struct guest_region *at;
	struct vm_object *obj = g->pager ? guest_memory_pager_object(m, g->pager, &at) : NULL;
	int fd = obj ? vm_object_pager_event_fd(obj) : -1;
	if (fd >= 0) {
		/* An index let go (guest_memory_unhold) is given again. Set before the lock goes:
		 * the watch function reads it under the lock. */
		r = fault_thread_watch(&m->faults, fd);
		if (r == -ENOSPC)
			r = error_set(ENOSPC, "guest memory watches at most %d external pagers", FAULT_THREAD_WATCH_MAX);
		if (r >= 0) {
			m->watched[r] = g->pager;
			if ((unsigned)r >= m->nwatched)
				m->nwatched = (unsigned)r + 1;
		}
		r = r < 0 ? r : 0;
	}
	vm_domain_unlock(m->dom);
	return r;
}

int guest_memory_start(struct guest_memory *m, guest_memory_error_fn *on_error, void *arg)
{
	m->on_error = on_error;
	m->on_error_arg = arg;
	m->nwatched = 0;
	int r = fault_thread_start_watching(&m->faults, m->uffd.fd, guest_memory_fault, guest_memory_idle,
					    guest_memory_fault_error, m, NULL, 0, guest_memory_pager_event);
	for (unsigned i = 0; !r && i < m->nregions; i++)
		r = guest_memory_watch(m, &m->region[i]);
	return r;
}

void guest_memory_record_working_set(struct guest_memory *m)
{
	m->recording = true;
}

void guest_memory_stop_recording(struct guest_memory *m)
{
	m->recording = false;
}

int guest_memory_save_working_set(struct guest_memory *m, const char *path)
{
	/* A copy, written without the lock: the write ends with an fsync. */
	vm_domain_lock(m->dom);
	struct working_set w = {.ram_size = m->ram_size, .count = m->recorded.count};
	w.pages = malloc((w.count ? w.count : 1) * sizeof(*w.pages));
	if (w.pages && w.count)
		memcpy(w.pages, m->recorded.pages, w.count * sizeof(*w.pages));
	vm_domain_unlock(m->dom);
	if (!w.pages)
		return error_set(ENOMEM, "no memory to write working set %s", path);
	int r = working_set_write(path, &w);
	working_set_free(&w);
	return r;
}

int guest_memory_set_prefetch(struct guest_memory *m, struct working_set *ws, const char *name)
{
	if (ws->ram_size != m->ram_size)
		return error_set(EINVAL, "working set %s was recorded in a guest of %llu MiB of RAM, not %llu", name,
				 (unsigned long long)(ws->ram_size >> 20), (unsigned long long)(m->ram_size >> 20));
	for (uint64_t i = 0; i < ws->count; i++) {
		const struct guest_region *g = guest_memory_region(m, ws->pages[i] * VM_PAGE_SIZE);
		if (!g || g->kind != GUEST_REGION_RAM)
			return error_set(EINVAL, "working set %s: page %llu of the list (guest-physical 0x%llx) is not in guest RAM",
					 name, (unsigned long long)i, (unsigned long long)(ws->pages[i] * VM_PAGE_SIZE));
	}
	working_set_free(&m->prefetch);
	m->prefetch = *ws;
	memset(ws, 0, sizeof(*ws));
	return 0;
}

void guest_memory_prefetch_start(struct guest_memory *m)
{
	if (!m->prefetch.count)
		return;
	atomic_store(&m->prefetch_go, true);
	fault_thread_wake(&m->faults);
}

int guest_memory_reattach(struct guest_memory *m)
{
	/* The parent's fault thread does not exist here and its userfaultfd is not ours: the
	 * child's copy of guest RAM lost its registration at fork. */
	memset(&m->faults, 0, sizeof(m->faults));
	uffd_close(&m->uffd);
	m->failed = false;
	vm_domain_lock_reset(m->dom);
	if (m->swap)
		default_pager_forked_child(m->swap);
	/* The segment's rendezvous (its thread and sockets) is the parent's: join it as a
	 * holder of our own, for statistics. Memory does not depend on it: the mappings hold
	 * the segment. */
	if (m->segment)
		(void)segment_reattach(m->segment);
	int r = uffd_open(&m->uffd, m->segment ? UFFD_SEGMENT_FEATURES : 0);
	for (unsigned i = 0; !r && i < m->nregions; i++)
		if ((m->region[i].kind != GUEST_REGION_RAM || !m->kernel_ram) && m->region[i].kind != GUEST_REGION_HOST_SHARED)
			r = guest_memory_register(m, &m->region[i]);
	if (r)
		return r;
	/* Fork dropped the write-protection of pages the core maps read-only (copy-on-write
	 * pending): put it back, or the child's writes to them would go unseen. The pmap must
	 * not take any page for protected meanwhile. */
	pmap_uffd_forget(&m->pmap);
	for (unsigned i = 0; i < m->nregions; i++) {
		const struct guest_region *g = &m->region[i];
		uint64_t run = 0, va = g->gpa; /* with in_run: pages from run on need protecting */
		bool in_run = false;
		for (; va <= g->gpa + g->size; va += VM_PAGE_SIZE) {
			/* pmap_entered looks without changing anything: the child shares the
			 * parent's memory and must not dirty it page by page. */
			vm_prot_t p = va < g->gpa + g->size ? pmap_entered(&m->map->pmap, va) : VM_PROT_NONE;
			bool ro = p && !(p & VM_PROT_WRITE);
			if (ro && !in_run) {
				run = va;
				in_run = true;
			}
			if (!ro && in_run) {
				r = uffd_writeprotect(&m->uffd, m->base + run, va - run, true);
				if (r)
					return error_set(-r, "cannot write-protect guest memory at 0x%llx in the forked VM",
							 (unsigned long long)run);
				in_run = false;
			}
		}
	}
	return 0;
}

void guest_memory_prearm(struct guest_memory *m, unsigned passes, uint64_t enough, struct guest_memory_prearm *out)
{
	memset(out, 0, sizeof(*out));
	if (!m->map || m->kernel_ram)
		return;
	for (unsigned pass = 0; pass < passes; pass++) {
		uint64_t left = 0, armed = 0;
		int r = 0;
		/* Regions change only with the domain lock held: read one under it each step. */
		for (unsigned i = 0; !r; i++) {
			vm_domain_lock(m->dom);
			struct guest_region g = i < m->nregions ? m->region[i] : (struct guest_region){.size = 0};
			vm_domain_unlock(m->dom);
			if (!g.size)
				break;
			if (g.kind != GUEST_REGION_RAM)
				continue;
			for (vm_addr_t at = g.gpa; at < g.gpa + g.size && !r;) {
				uint64_t n = 0;
				vm_domain_lock(m->dom);
				r = pmap_uffd_prearm(&m->pmap, at, g.gpa + g.size, GUEST_MEMORY_PREARM_STEP, &at, &n);
				if (at >= g.gpa + g.size || r)
					left += pmap_uffd_unguarded(&m->pmap, g.gpa, g.gpa + g.size);
				vm_domain_unlock(m->dom);
				armed += n;
				/* The guest's faults first (those on pages just protected above all). */
				while (vm_domain_lock_wanted(m->dom))
					sched_yield();
			}
		}
		out->passes++;
		out->armed += armed;
		out->left = left;
		if (r) {
			out->error = r;
			return; /* the freeze protects what is left */
		}
		if (left <= enough)
			return;
	}
}

void guest_memory_stop(struct guest_memory *m)
{
	fault_thread_stop(&m->faults);
}

/* Say why shared region @g could not be written back (domain lock held): the external
 * pager's failure, a file that shrank while mapped (the file pager never grows it back, so
 * changes past its new end are not written), or the core's code. */
static int guest_memory_sync_failed(const struct guest_region *g, kern_return_t kr)
{
	struct stat st;
	if (g->kind == GUEST_REGION_EXTERNAL) {
		const char *why = external_pager_failure(g->pager);
		if (why[0])
			return error_set(EIO, "cannot write guest changes back to %s: %s", g->path, why);
	} else if (stat(g->path, &st) == 0 && (uint64_t)st.st_size < g->file_size) {
		return error_set(EIO, "cannot write all guest changes back to %s: it shrank from %llu to %llu bytes while mapped",
				 g->path, (unsigned long long)g->file_size, (unsigned long long)st.st_size);
	}
	return error_set(EIO, "cannot write guest changes back to %s: %s", g->path, kern_return_name(kr));
}

void guest_memory_cancel(struct guest_memory *m)
{
	uint64_t one = 1;
	/* m->dom is set after the eventfd is made: before that, no pager exists to wait for. */
	if (m->dom && m->cancel_fd >= 0)
		while (write(m->cancel_fd, &one, sizeof(one)) < 0 && errno == EINTR)
			;
}

/* Write the guest's changes to the shared mappings within [start, end) back to their files
 * and pagers. Domain lock held. 0, or -EIO with guest_memory_sync_failed's message. */
static int guest_memory_write_back(struct guest_memory *m, uint64_t start, uint64_t end)
{
	for (unsigned i = 0; i < m->nregions; i++) {
		const struct guest_region *g = &m->region[i];
		uint64_t s = g->gpa > start ? g->gpa : start, e = g->gpa + g->size < end ? g->gpa + g->size : end;
		if (g->kind == GUEST_REGION_RAM || g->kind == GUEST_REGION_HOST_SHARED || g->mode != GUEST_MAP_SHARED || s >= e)
			continue;
		kern_return_t kr = vm_map_msync(m->map, s, e - s);
		if (kr != KERN_SUCCESS)
			return guest_memory_sync_failed(g, kr);
	}
	return 0;
}

int guest_memory_sync(struct guest_memory *m)
{
	/* No fault waits on a pager once the thread is gone: the write-back may wait again. */
	fault_thread_stop(&m->faults);
	uint64_t count;
	if (m->cancel_fd >= 0)
		(void)read(m->cancel_fd, &count, sizeof(count));
	if (!m->map || m->failed)
		return 0;
	vm_domain_lock(m->dom);
	int r = guest_memory_write_back(m, 0, GUEST_MEMORY_WINDOW);
	vm_domain_unlock(m->dom);
	return r;
}

void guest_memory_destroy(struct guest_memory *m)
{
	fault_thread_stop(&m->faults);
	working_set_free(&m->recorded);
	working_set_free(&m->prefetch);
	guest_memory_release_base(m);
	if (m->map)
		vm_map_destroy(m->map);
	m->map = NULL;
	if (m->ram_object)
		vm_object_deallocate(m->ram_object);
	m->ram_object = NULL;
	for (unsigned i = 0; i < m->nheld; i++)
		guest_memory_let_go(&m->held[i]);
	m->nheld = 0;
	if (m->swap)
		pager_release(m->swap);
	m->swap = NULL;
	if (m->dom)
		vm_domain_destroy(m->dom);
	m->dom = NULL;
	pmap_uffd_fini(&m->pmap);
	uffd_close(&m->uffd);
	if (m->base)
		munmap(m->base, GUEST_MEMORY_WINDOW);
	m->base = NULL;
	if (m->swap_fd >= 0)
		close(m->swap_fd);
	m->swap_fd = -1;
	if (m->cancel_fd >= 0)
		close(m->cancel_fd);
	m->cancel_fd = -1;
}

const struct guest_region *guest_memory_region(const struct guest_memory *m, uint64_t gpa)
{
	for (unsigned i = 0; i < m->nregions; i++)
		if (gpa >= m->region[i].gpa && gpa - m->region[i].gpa < m->region[i].size)
			return &m->region[i];
	return NULL;
}

const struct guest_region *guest_memory_regions(const struct guest_memory *m, unsigned *n)
{
	*n = m->nregions;
	return m->region;
}

uint64_t guest_memory_ram_size(const struct guest_memory *m)
{
	return m->ram_size;
}

uint64_t guest_memory_span(const struct guest_memory *m)
{
	return m->span;
}

bool guest_memory_mapped(const struct guest_memory *m)
{
	return m->map != NULL;
}

uint64_t guest_memory_ram_ranges(const struct guest_memory *m, struct guest_ram_range ram[GUEST_MEMORY_MAX_REGIONS],
				 unsigned *n)
{
	uint64_t bytes = 0;
	*n = 0;
	for (unsigned i = 0; i < m->nregions; i++) {
		if (m->region[i].kind != GUEST_REGION_RAM)
			continue;
		ram[(*n)++] = (struct guest_ram_range){m->region[i].gpa, m->region[i].size};
		bytes += m->region[i].size;
	}
	return bytes;
}

void *guest_memory_ptr(const struct guest_memory *m, uint64_t gpa, uint64_t len)
{
	const struct guest_region *r = guest_memory_region(m, gpa);
	if (!r || len == 0 || len > r->size - (gpa - r->gpa) || !m->base)
		return NULL;
	return m->base + gpa;
}

int guest_memory_write(struct guest_memory *m, uint64_t gpa, const void *src, uint64_t len)
{
	const struct guest_region *g = guest_memory_region(m, gpa);
	if (!m->map || (g && g->kind == GUEST_REGION_RAM && m->kernel_ram)) {
		uint8_t *p = guest_memory_ptr(m, gpa, len);
		if (!p)
			return -EFAULT;
		memcpy(p, src, len);
		return 0;
	}
	vm_domain_lock(m->dom);
	kern_return_t kr = vm_map_write(m->map, gpa, src, len);
	int r = guest_memory_unlock_map(m);
	return kr != KERN_SUCCESS ? kern_return_errno(kr) : r;
}

int guest_memory_prefault(struct guest_memory *m, uint64_t gpa, uint64_t len)
{
	const struct guest_region *g = guest_memory_region(m, gpa);
	if (!m->map || !g || g->kind != GUEST_REGION_RAM || m->kernel_ram)
		return 0;
	int r = 0;
	vm_domain_lock(m->dom);
	for (vm_addr_t va = vm_trunc_page(gpa); !r && va < gpa + len; va += VM_PAGE_SIZE) {
		if (pmap_entered(&m->map->pmap, va) & VM_PROT_WRITE)
			continue; /* brought in with an earlier page's cluster */
		struct vm_fault_info info = {0};
		error_clear(); /* the pmap (or a pager's source) says why the fault failed */
		kern_return_t kr = vm_fault(m->map, va, VM_PROT_READ | VM_PROT_WRITE, &info);
		m->prefaults += info.entered;
		if (kr != KERN_SUCCESS) {
			char why[512];
			snprintf(why, sizeof(why), "%s", error_message());
			r = error_set(-kern_return_errno(kr), "cannot bring in guest memory at 0x%llx: %s%s%s",
				      (unsigned long long)va, kern_return_name(kr), why[0] ? ": " : "", why);
		}
	}
	vm_domain_unlock(m->dom);
	return r;
}

/* The domain lock for a monitor's call: a fault waiting on a slow pager holds it, up to
 * that pager's deadline, and the monitor must stay free meanwhile (to take quit above all).
 * 0, or -EBUSY with a message. */
static int guest_memory_lock_briefly(struct guest_memory *m)
{
	if (vm_domain_lock_within(m->dom, GUEST_MEMORY_MONITOR_WAIT_MS))
		return 0;
	return error_set(EBUSY, "guest memory is busy: a fault has waited on its pager for over %d ms; try again",
			 GUEST_MEMORY_MONITOR_WAIT_MS);
}

/* A Mach call of the monitor's that failed: the code named, as Mach would have said it. */
static int guest_memory_vm_failed(const char *call, kern_return_t kr, uint64_t addr, uint64_t size)
{
	return error_set(-kern_return_errno(kr), "%s of [0x%llx, +0x%llx): %s", call, (unsigned long long)addr,
			 (unsigned long long)size, kern_return_name(kr));
}

/*
 * Make new map entry @g (kind, gpa, size set; entered in the map by the caller) a region:
 * its host mapping opened in the reserved window, registered with the userfaultfd, a KVM
 * slot number chosen, KVM told it is read-only where it is, and the region inserted (with
 * the domain lock: the fault thread reads regions). The snapshot base is let go (the layout
 * changed). On failure the entry is removed again: -errno with a message.
 */
static int guest_memory_open_region(struct guest_memory *m, struct guest_region *g)
{
	g->hva = m->base + g->gpa;
	g->slot = guest_memory_free_slot(m);
	int r = mprotect(g->hva, g->size, PROT_READ | PROT_WRITE) != 0 ? -errno : 0;
	if (!r)
		r = guest_memory_register(m, g);
	vm_domain_lock(m->dom);
	if (r)
		vm_map_deallocate(m->map, g->gpa, g->size);
	else
		guest_memory_insert_region(m, g);
	/* Without the range KVM's read-only slot is still kept; the pages are only entered
	 * read-only on the host as well (its slow path). */
	if (!r && guest_region_read_only(g))
		(void)pmap_uffd_add_readonly(&m->pmap, g->gpa, g->gpa + g->size);
	int fr = guest_memory_unlock_map(m);
	if (r) {
		mprotect(g->hva, g->size, PROT_NONE);
		return error_set(-r, "cannot open guest memory at 0x%llx: %s", (unsigned long long)g->gpa, strerror(-r));
	}
	m->layout_changed = true;
	guest_memory_release_base(m);
	return fr;
}

int guest_memory_allocate(struct guest_memory *m, uint64_t *gpa, uint64_t size, bool anywhere)
{
	if (m->nregions == GUEST_MEMORY_MAX_REGIONS)
		return error_set(ENOSPC, "guest memory has its maximum of %d regions", GUEST_MEMORY_MAX_REGIONS);
	vm_addr_t at = anywhere ? 0 : *gpa;
	vm_domain_lock(m->dom);
	kern_return_t kr = vm_map_allocate(m->map, &at, size, anywhere);
	vm_domain_unlock(m->dom);
	if (kr != KERN_SUCCESS)
		return error_set(-kern_return_errno(kr), "vm_allocate of %llu bytes at 0x%llx: %s", (unsigned long long)size,
				 (unsigned long long)at, kern_return_name(kr));
	struct guest_region g = {.gpa = at, .size = size, .kind = GUEST_REGION_RAM};
	int r = guest_memory_open_region(m, &g);
	if (!r)
		*gpa = at;
	return r;
}

/* Whether a region maps @pager. Domain lock held. */
static bool guest_memory_pager_mapped(const struct guest_memory *m, const struct pager *pager)
{
	for (unsigned i = 0; i < m->nregions; i++)
		if (m->region[i].pager == pager)
			return true;
	return false;
}

/* Whether @pager still serves guest memory: a region maps it, or an object uses it (one
 * that RAM copied from its mapping still reads through). Domain lock held. */
static bool guest_memory_pager_used(const struct guest_memory *m, const struct pager *pager)
{
	if (guest_memory_pager_mapped(m, pager))
		return true;
	for (const struct vm_object *o = m->dom->objects; o; o = o->all_next)
		if (o->pager == pager)
			return true;
	return false;
}

/*
 * After regions went: stop watching the pagers no region maps (the fault thread may be
 * about to call guest_memory_pager_event for one: it finds NULL), and move the held entries
 * whose pager nothing uses any more to @gone, to be let go once the domain lock is (no
 * object of the pager is left to touch its references meanwhile). Domain lock held. The
 * number moved.
 */
static unsigned guest_memory_unhold(struct guest_memory *m, struct guest_memory_held *gone)
{
	for (unsigned i = 0; i < m->nwatched; i++)
		if (m->watched[i] && !guest_memory_pager_mapped(m, m->watched[i])) {
			m->watched[i] = NULL;
			fault_thread_unwatch(&m->faults, i);
		}
	unsigned n = 0, kept = 0;
	for (unsigned i = 0; i < m->nheld; i++) {
		if (guest_memory_pager_used(m, m->held[i].serves))
			m->held[kept++] = m->held[i];
		else
			gone[n++] = m->held[i];
	}
	m->nheld = kept;
	return n;
}

/* Take [start, end) (within region @i) out of the regions: the host range reserved again as
 * at the start (whatever was mapped there: a segment above all), out of the userfaultfd,
 * forgotten by the pmap; the region shrinks, goes, or splits in two (the upper piece a
 * region of its own, of the same object, with a slot of its own). Domain lock held (the
 * fault thread reads regions); room for a split checked by the caller. */
static void guest_memory_cut_region(struct guest_memory *m, unsigned i, uint64_t start, uint64_t end)
{
	struct guest_region *g = &m->region[i];
	uint64_t gend = g->gpa + g->size;
	struct uffdio_range ur = {.start = (uint64_t)(uintptr_t)(m->base + start), .len = end - start};
	(void)ioctl(m->uffd.fd, UFFDIO_UNREGISTER, &ur);
	if (mmap(m->base + start, end - start, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED | MAP_NORESERVE, -1,
		 0) == MAP_FAILED) {
		madvise(m->base + start, end - start, MADV_DONTNEED);
		mprotect(m->base + start, end - start, PROT_NONE);
	}
	pmap_uffd_forget_range(&m->pmap, start, end);
	struct guest_region right = *g;
	if (start > g->gpa && end < gend) {
		g->size = start - g->gpa;
		right.gpa = end;
		right.size = gend - end;
		right.hva = m->base + right.gpa;
		right.slot = guest_memory_free_slot(m);
		guest_memory_insert_region(m, &right);
	} else if (start > g->gpa) {
		g->size = start - g->gpa;
	} else if (end < gend) {
		g->gpa = end;
		g->size = gend - end;
		g->hva = m->base + g->gpa;
	} else {
		memmove(g, g + 1, (m->nregions - i - 1) * sizeof(*g));
		m->nregions--;
	}
	const struct guest_region *last = m->nregions ? &m->region[m->nregions - 1] : NULL;
	m->span = last ? last->gpa + last->size : 0;
}

/* guest_memory_deallocate, and guest_memory_discard (!@write_back). */
static int guest_memory_remove(struct guest_memory *m, uint64_t gpa, uint64_t size, bool write_back)
{
	uint64_t end = gpa + size;
	if ((gpa | size) & (VM_PAGE_SIZE - 1) || end < gpa)
		return guest_memory_vm_failed("vm_deallocate", KERN_INVALID_ARGUMENT, gpa, size);
	if (end > GUEST_MEMORY_WINDOW)
		return guest_memory_vm_failed("vm_deallocate", KERN_INVALID_ADDRESS, gpa, size);
	if (guest_memory_lock_briefly(m) != 0)
		return -EBUSY;
	unsigned pieces = 0;
	for (unsigned i = 0; i < m->nregions; i++) {
		const struct guest_region *g = &m->region[i];
		pieces += gpa > g->gpa && end < g->gpa + g->size; /* a split adds a region */
	}
	int r = m->nregions + pieces > GUEST_MEMORY_MAX_REGIONS
			? error_set(-kern_return_errno(KERN_RESOURCE_SHORTAGE),
				    "vm_deallocate of [0x%llx, +0x%llx): %s: guest memory has its maximum of %d regions",
				    (unsigned long long)gpa, (unsigned long long)size, kern_return_name(KERN_RESOURCE_SHORTAGE),
				    GUEST_MEMORY_MAX_REGIONS)
		: write_back ? guest_memory_write_back(m, gpa, end)
			     : 0;
	if (r) {
		if (r == -EIO) {
			/* Nothing acknowledged is lost: the mapping stays, as does what it holds. */
			char why[512];
			snprintf(why, sizeof(why), "%s", error_message());
			r = error_set(EIO, "vm_deallocate of [0x%llx, +0x%llx): %s: %s (nothing removed; discarding drops the changes)",
				      (unsigned long long)gpa, (unsigned long long)size, kern_return_name(KERN_MEMORY_ERROR), why);
		}
		vm_domain_unlock(m->dom);
		return r;
	}
	kern_return_t kr = vm_map_deallocate(m->map, gpa, size);
	int fr = pmap_uffd_flush(&m->pmap);
	if (kr != KERN_SUCCESS) {
		vm_domain_unlock(m->dom);
		return guest_memory_vm_failed("vm_deallocate", kr, gpa, size);
	}
	for (unsigned i = 0; i < m->nregions; i++) {
		const struct guest_region *g = &m->region[i];
		uint64_t s = g->gpa > gpa ? g->gpa : gpa, e = g->gpa + g->size < end ? g->gpa + g->size : end;
		if (s >= e)
			continue;
		bool goes = s == g->gpa && e == g->gpa + g->size;
		guest_memory_cut_region(m, i, s, e);
		i -= goes; /* the next region moved down into this place */
	}
	struct guest_memory_held gone[GUEST_MEMORY_MAX_REGIONS];
	unsigned ngone = guest_memory_unhold(m, gone);
	vm_domain_unlock(m->dom);
	for (unsigned i = 0; i < ngone; i++)
		guest_memory_let_go(&gone[i]);
	m->layout_changed = true;
	guest_memory_release_base(m);
	return fr;
}

int guest_memory_deallocate(struct guest_memory *m, uint64_t gpa, uint64_t size)
{
	return guest_memory_remove(m, gpa, size, true);
}

int guest_memory_discard(struct guest_memory *m, uint64_t gpa, uint64_t size)
{
	return guest_memory_remove(m, gpa, size, false);
}

int guest_memory_vm_protect(struct guest_memory *m, uint64_t addr, uint64_t size, bool set_max, vm_prot_t prot)
{
	if (guest_memory_lock_briefly(m) != 0)
		return -EBUSY;
	kern_return_t kr = vm_map_protect(m->map, addr, size, set_max, prot);
	int r = guest_memory_unlock_map(m);
	return kr != KERN_SUCCESS ? guest_memory_vm_failed("vm_protect", kr, addr, size) : r;
}

int guest_memory_vm_inherit(struct guest_memory *m, uint64_t addr, uint64_t size, vm_inherit_t inheritance)
{
	/* Inheritance is the map's alone: nothing reaches the pmap. */
	if (guest_memory_lock_briefly(m) != 0)
		return -EBUSY;
	kern_return_t kr = vm_map_inherit(m->map, addr, size, inheritance);
	vm_domain_unlock(m->dom);
	return kr != KERN_SUCCESS ? guest_memory_vm_failed("vm_inherit", kr, addr, size) : 0;
}

/* The host-shared region [gpa, gpa + size) lies within, or NULL. */
static const struct guest_region *guest_memory_host_shared(const struct guest_memory *m, uint64_t gpa, uint64_t size)
{
	const struct guest_region *g = guest_memory_region(m, gpa);
	return g && g->kind == GUEST_REGION_HOST_SHARED && size <= g->gpa + g->size - gpa ? g : NULL;
}

int guest_memory_vm_read(struct guest_memory *m, uint64_t addr, void *buf, uint64_t size)
{
	const struct guest_region *hs = guest_memory_host_shared(m, addr, size);
	if (hs) {
		memcpy(buf, hs->hva + (addr - hs->gpa), size);
		return 0;
	}
	if (guest_memory_lock_briefly(m) != 0)
		return -EBUSY;
	kern_return_t kr = vm_map_read(m->map, addr, buf, size);
	int r = guest_memory_unlock_map(m);
	return kr != KERN_SUCCESS ? guest_memory_vm_failed("vm_read", kr, addr, size) : r;
}

int guest_memory_vm_write(struct guest_memory *m, uint64_t addr, const void *buf, uint64_t size)
{
	const struct guest_region *hs = guest_memory_host_shared(m, addr, size);
	if (hs && hs->mode == GUEST_MAP_SHARED) {
		memcpy(hs->hva + (addr - hs->gpa), buf, size);
		return 0;
	}
	if (hs)
		return guest_memory_vm_failed("vm_write", KERN_PROTECTION_FAILURE, addr, size);
	if (guest_memory_lock_briefly(m) != 0)
		return -EBUSY;
	kern_return_t kr = size ? vm_map_write(m->map, addr, buf, size) : KERN_SUCCESS;
	int r = guest_memory_unlock_map(m);
	return kr != KERN_SUCCESS ? guest_memory_vm_failed("vm_write", kr, addr, size) : r;
}

/* A vm_map that failed, as guest_memory_vm_failed says it, with why when known. */
static int guest_memory_vm_map_failed(const struct guest_memory_map_request *q, kern_return_t kr, uint64_t gpa,
				      const char *why)
{
	return error_set(-kern_return_errno(kr), "vm_map of %s at [0x%llx, +0x%llx): %s%s%s", q->path ? q->path : "(none)",
			 (unsigned long long)gpa, (unsigned long long)q->size, kern_return_name(kr), why[0] ? ": " : "",
			 why);
}

/* guest_memory_vm_map's refusal before anything was made: @q's owner let go too. */
static int guest_memory_vm_map_refused(const struct guest_memory_map_request *q, kern_return_t kr, uint64_t gpa,
				       const char *why)
{
	int r = guest_memory_vm_map_failed(q, kr, gpa, why);
	if (q->release)
		q->release(q->owner);
	return r;
}

int guest_memory_vm_map(struct guest_memory *m, uint64_t *gpa, bool anywhere, const struct guest_memory_map_request *q)
{
	vm_addr_t at = anywhere ? 0 : *gpa;
	bool snapshot = q->kind == GUEST_REGION_SNAPSHOT;
	if (m->kernel_ram) {
		int r = error_set(ENOTSUP, "vm_map needs RAM in the map (not --kernel-zero-fill)");
		if (q->release)
			q->release(q->owner);
		return r;
	}
	if ((q->kind != GUEST_REGION_FILE && q->kind != GUEST_REGION_EXTERNAL && !snapshot) || !q->path || !q->path[0] ||
	    (snapshot && !q->pager))
		return guest_memory_vm_map_refused(q, KERN_INVALID_ARGUMENT, at, "a file, an external pager's socket or a snapshot is needed");
	if (m->nregions == GUEST_MEMORY_MAX_REGIONS)
		return guest_memory_vm_map_refused(q, KERN_RESOURCE_SHORTAGE, at, "guest memory has its maximum of regions");
	/* Held beyond their regions while RAM copied from them reads through their objects. */
	if (m->nheld == GUEST_MEMORY_MAX_REGIONS)
		return guest_memory_vm_map_refused(q, KERN_RESOURCE_SHORTAGE, at,
						   "guest memory holds its maximum of mapped objects (RAM copied from them reads through them)");
	/* What the region keeps: the pager (ours, or the owner's), its name, the owner. */
	struct guest_memory_held h = {.path = strdup(q->path), .release = q->release, .owner = q->owner};
	if (!h.path)
		return guest_memory_vm_map_refused(q, KERN_RESOURCE_SHORTAGE, at, "");
	if (q->kind == GUEST_REGION_EXTERNAL && !guest_memory_can_watch(m)) {
		free(h.path);
		return guest_memory_vm_map_refused(q, KERN_RESOURCE_SHORTAGE, at, "guest memory watches its maximum of external pagers");
	}
	struct pager *pager;
	int r = guest_memory_open_pager(m, q, &pager);
	if (r) {
		/* The object could not be had: Mach's invalid memory object, or a write it refuses. */
		char why[512];
		snprintf(why, sizeof(why), "%s", error_message());
		free(h.path);
		return guest_memory_vm_map_refused(q, r == -EROFS || r == -EACCES ? KERN_PROTECTION_FAILURE : KERN_INVALID_ARGUMENT,
						   at, why);
	}
	h.serves = pager;
	h.pager = snapshot ? NULL : pager;
	if ((r = guest_memory_lock_briefly(m)) != 0) {
		guest_memory_let_go(&h);
		return r;
	}
	kern_return_t kr = guest_memory_enter_pager(m, pager, &at, anywhere, q);
	r = guest_memory_unlock_map(m);
	if (kr != KERN_SUCCESS) {
		r = guest_memory_vm_map_failed(q, kr, at, "");
		guest_memory_let_go(&h);
		return r;
	}
	struct guest_region g = {
		.gpa = at, .size = q->size, .kind = q->kind, .path = h.path, .pager = pager,
		.mode = !(q->max & VM_PROT_WRITE) ? GUEST_MAP_RO : q->copy ? GUEST_MAP_PRIVATE : GUEST_MAP_SHARED,
		.file_size = q->kind == GUEST_REGION_FILE ? pager->size : 0};
	if (!r)
		r = guest_memory_open_region(m, &g);
	if (r) {
		guest_memory_let_go(&h);
		return r;
	}
	guest_memory_keep(m, &h);
	*gpa = at;
	/* A pager that speaks of its own accord (a coherent one) is heard from now on; room was
	 * checked above, so this cannot fail on a running VM. */
	if (m->faults.started)
		r = guest_memory_watch(m, &m->region[guest_memory_region(m, at) - m->region]);
	return r;
}

int guest_memory_vm_copy(struct guest_memory *m, uint64_t src, uint64_t size, uint64_t dst)
{
	if (guest_memory_lock_briefly(m) != 0)
		return -EBUSY;
	kern_return_t kr = vm_map_copy(m->map, src, size, dst);
	int r = guest_memory_unlock_map(m);
	if (kr != KERN_SUCCESS)
		return error_set(-kern_return_errno(kr), "vm_copy of [0x%llx, +0x%llx) to 0x%llx: %s", (unsigned long long)src,
				 (unsigned long long)size, (unsigned long long)dst, kern_return_name(kr));
	return r;
}

int guest_memory_vm_set_attributes(struct guest_memory *m, uint64_t addr, uint64_t size,
				   const struct guest_memory_attributes *a)
{
	const struct {
		enum vm_attr_kind kind;
		int value, max;
	} set[] = {
		{VM_ATTR_CLUSTER, a->cluster, VM_CLUSTER_MAX},
		{VM_ATTR_COPY_STRATEGY, a->copy_strategy, VM_COPY_NONE},
		{VM_ATTR_CACHE, a->cache, VM_CACHE_UNCACHED},
	};
	unsigned n = 0;
	/* Every value first: a call that fails changes nothing. */
	for (size_t i = 0; i < sizeof(set) / sizeof(set[0]); i++) {
		if (set[i].value == GUEST_MEMORY_ATTR_KEEP)
			continue;
		if (set[i].value < (set[i].kind == VM_ATTR_CLUSTER) || set[i].value > set[i].max)
			return guest_memory_vm_failed("vm_set_attributes", KERN_INVALID_ARGUMENT, addr, size);
		n++;
	}
	if (!n)
		return guest_memory_vm_failed("vm_set_attributes", KERN_INVALID_ARGUMENT, addr, size);
	if (guest_memory_lock_briefly(m) != 0)
		return -EBUSY;
	kern_return_t kr = KERN_SUCCESS;
	/* The range is checked by the first: the others cannot fail once it passed. */
	for (size_t i = 0; i < sizeof(set) / sizeof(set[0]) && kr == KERN_SUCCESS; i++)
		if (set[i].value != GUEST_MEMORY_ATTR_KEEP)
			kr = vm_map_set_attr(m->map, addr, size, set[i].kind, (unsigned)set[i].value);
	int r = guest_memory_unlock_map(m);
	return kr != KERN_SUCCESS ? guest_memory_vm_failed("vm_set_attributes", kr, addr, size) : r;
}

int guest_memory_vm_statistics(struct guest_memory *m, struct guest_memory_vm_statistics *out)
{
	if (guest_memory_lock_briefly(m) != 0)
		return -EBUSY;
	struct vm_statistics s;
	vm_domain_statistics(m->dom, &s);
	vm_domain_unlock(m->dom);
	uint64_t free_count = GUEST_MEMORY_STAT_UNKNOWN;
	if (m->limit_pages)
		free_count = m->limit_pages > s.resident_count ? m->limit_pages - s.resident_count : 0;
	*out = (struct guest_memory_vm_statistics){
		.pagesize = s.pagesize, .free_count = free_count, .active_count = s.resident_count, .inactive_count = 0,
		.wire_count = 0, .zero_fill_count = s.zero_fill_count, .reactivations = s.reactivations,
		.pageins = s.pageins, .pageouts = s.pageouts, .faults = s.faults, .cow_faults = s.cow_faults,
		.lookups = s.lookups, .hits = s.hits};
	return 0;
}

/* What is known of the host-wide segment, asked of the other processes before the lock. */
struct guest_memory_host {
	const struct vm_object *object; /* the object kept in the segment, or NULL */
	uint64_t mappers, resident;
};

/* @e's description for the monitor, with its object's chain (domain lock held). */
static void guest_memory_describe(const struct vm_region_info *ri, const struct guest_memory_host *host,
				  struct guest_memory_entry *e)
{
	*e = (struct guest_memory_entry){
		.start = ri->start, .end = ri->end, .protection = ri->protection, .max_protection = ri->max_protection,
		.inheritance = ri->inheritance, .needs_copy = ri->needs_copy, .shared = ri->shared,
		.copy_strategy = ri->attr.copy_strategy, .cluster = ri->attr.cluster, .cache = ri->attr.cache,
		.offset = ri->offset, .resident = ri->resident_count, .depth = ri->depth};
	if (!ri->object)
		return;
	struct vm_object_info infos[GUEST_MEMORY_CHAIN_MAX];
	unsigned depth = vm_object_chain(ri->object, infos, GUEST_MEMORY_CHAIN_MAX);
	for (unsigned i = 0; i < depth && i < GUEST_MEMORY_CHAIN_MAX; i++) {
		const struct vm_object_info *o = &infos[i];
		bool shared = host->object && host->object->id == o->id;
		e->chain[e->nchain++] = (struct guest_memory_object){
			.id = o->id, .size = o->size, .internal = o->internal, .copy_strategy = o->copy_strategy,
			.ref_count = o->ref_count, .shadow_count = o->shadow_count, .shadow_offset = o->shadow_offset,
			.resident = o->resident_count, .paged = o->paged_count, .pager = o->pager_name,
			.faults = o->stats.faults, .pageins = o->stats.pageins, .pageouts = o->stats.pageouts,
			.cow_pages = o->stats.cow_pages, .zero_fills = o->stats.zero_fills, .base = o->base,
			.host_shared = shared, .host_mappers = shared ? host->mappers : 0,
			.host_resident = shared ? host->resident : 0};
	}
}

/* What the host-wide segment holds: asked of the other VMs' processes, so before the domain
 * lock (which their faults need). */
static struct guest_memory_host guest_memory_host(const struct guest_memory *m)
{
	struct guest_memory_host host = {.object = m->segment ? m->ram_object : NULL};
	if (m->segment) {
		host.mappers = segment_holders(m->segment);
		host.resident = segment_resident_pages(m->segment);
	}
	return host;
}

int guest_memory_vm_region(struct guest_memory *m, guest_memory_entry_fn *fn, void *arg, uint64_t *objects)
{
	struct guest_memory_entry e;
	struct guest_memory_host host = guest_memory_host(m);
	if (guest_memory_lock_briefly(m) != 0)
		return -EBUSY;
	vm_addr_t addr = 0;
	struct vm_region_info ri;
	while (vm_map_region(m->map, &addr, &ri) == KERN_SUCCESS) {
		guest_memory_describe(&ri, &host, &e);
		fn(arg, &e);
		addr = ri.end;
	}
	struct vm_statistics st;
	vm_domain_statistics(m->dom, &st);
	vm_domain_unlock(m->dom);
	*objects = st.objects_live;
	return 0;
}

int guest_memory_vm_region_at(struct guest_memory *m, uint64_t *addr, struct guest_memory_entry *e)
{
	if (*addr >= GUEST_MEMORY_WINDOW)
		return error_set(-kern_return_errno(KERN_INVALID_ADDRESS), "vm_region at 0x%llx: %s",
				 (unsigned long long)*addr, kern_return_name(KERN_INVALID_ADDRESS));
	struct guest_memory_host host = guest_memory_host(m);
	if (guest_memory_lock_briefly(m) != 0)
		return -EBUSY;
	vm_addr_t at = *addr;
	struct vm_region_info ri;
	kern_return_t kr = vm_map_region(m->map, &at, &ri);
	if (kr == KERN_SUCCESS)
		guest_memory_describe(&ri, &host, e);
	vm_domain_unlock(m->dom);
	/* mmu says KERN_INVALID_ADDRESS for nothing above; GNU Mach's vm_region, KERN_NO_SPACE. */
	if (kr != KERN_SUCCESS)
		return error_set(-kern_return_errno(KERN_NO_SPACE), "vm_region at 0x%llx: %s", (unsigned long long)*addr,
				 kern_return_name(KERN_NO_SPACE));
	*addr = at;
	return 0;
}

int guest_memory_entries(struct guest_memory *m, struct guest_map_entry *e, unsigned max, unsigned *n)
{
	*n = 0;
	vm_domain_lock(m->dom);
	vm_addr_t addr = 0;
	struct vm_region_info ri;
	while (*n < max && vm_map_region(m->map, &addr, &ri) == KERN_SUCCESS) {
		e[(*n)++] = (struct guest_map_entry){ri.start, ri.end, ri.protection, ri.max_protection, ri.inheritance};
		addr = ri.end;
	}
	bool more = vm_map_region(m->map, &addr, &ri) == KERN_SUCCESS;
	vm_domain_unlock(m->dom);
	if (more)
		return error_set(E2BIG, "the map has more than %u entries; a snapshot keeps at most that many", max);
	return 0;
}

int guest_memory_apply_entries(struct guest_memory *m, const struct guest_map_entry *e, unsigned n)
{
	kern_return_t kr = KERN_SUCCESS;
	unsigned i = 0;
	vm_domain_lock(m->dom);
	for (; i < n && kr == KERN_SUCCESS; i++) {
		const struct guest_map_entry *x = &e[i];
		if (x->end <= x->start || x->inheritance > VM_INHERIT_NONE)
			kr = KERN_INVALID_ARGUMENT;
		if (kr == KERN_SUCCESS)
			kr = vm_map_protect(m->map, x->start, x->end - x->start, true, x->max_protection);
		if (kr == KERN_SUCCESS)
			kr = vm_map_protect(m->map, x->start, x->end - x->start, false, x->protection);
		if (kr == KERN_SUCCESS)
			kr = vm_map_inherit(m->map, x->start, x->end - x->start, x->inheritance);
	}
	int r = guest_memory_unlock_map(m);
	/* Untrusted input that does not fit: the state's fault (EINVAL), whatever Mach's code. */
	if (kr != KERN_SUCCESS)
		return error_set(EINVAL, "VM state's map entry %u does not fit the restored memory: %s", i - 1,
				 kern_return_name(kr));
	return r;
}

int guest_memory_can_freeze(const struct guest_memory *m)
{
	for (unsigned i = 0; i < m->nregions; i++)
		if (m->region[i].kind == GUEST_REGION_HOST_SHARED)
			return error_set(ENOTSUP, "snapshots of VMs sharing memory with their forks (inherited \"share\") are not supported");
		else if (m->region[i].kind != GUEST_REGION_RAM)
			return error_set(ENOTSUP, "snapshots of VMs with mapped files or external pagers are not supported");
	if (m->kernel_ram)
		return error_set(ENOTSUP, "snapshots need RAM served by the default pager (not --kernel-zero-fill)");
	return 0;
}

int guest_memory_freeze(struct guest_memory *m, struct guest_memory_frozen *f, uint64_t *protected)
{
	int r = 0;
	vm_domain_lock(m->dom);
	uint64_t protected_before = m->pmap.stats.protected_pages;
	for (unsigned i = 0; i < m->nregions && !r; i++) {
		const struct guest_region *g = &m->region[i];
		kern_return_t kr = vm_map_copyin(m->map, g->gpa, g->size, &f->copy[f->n]);
		if (kr != KERN_SUCCESS)
			r = error_set(-kern_return_errno(kr), "cannot freeze guest RAM at 0x%llx: %s", (unsigned long long)g->gpa,
				      kern_return_name(kr));
		else
			f->region[f->n++] = *g;
	}
	/* The flush before the count: the write-protection of the freeze is in guest RAM. */
	int pr = pmap_uffd_flush(&m->pmap);
	if (!r && pr)
		r = pr;
	*protected = m->pmap.stats.protected_pages - protected_before;
	vm_domain_unlock(m->dom);
	return r;
}

void guest_memory_frozen_discard(struct guest_memory *m, struct guest_memory_frozen *f)
{
	vm_domain_lock(m->dom);
	for (unsigned i = 0; i < f->n; i++)
		vm_map_copy_discard(f->copy[i]);
	vm_domain_unlock(m->dom);
	f->n = 0;
}

bool guest_memory_has_base(struct guest_memory *m)
{
	vm_domain_lock(m->dom);
	bool has = m->nsnapshot_base > 0;
	vm_domain_unlock(m->dom);
	return has;
}

bool guest_memory_layout_changed(const struct guest_memory *m)
{
	return m->layout_changed;
}

/* Drop the bases in @v (*n of them), but for those also in @keep (@nkeep). Domain lock held. */
static void guest_memory_drop_bases(struct vm_object **v, unsigned n, struct vm_object *const *keep, unsigned nkeep)
{
	for (unsigned i = 0; i < n; i++) {
		bool kept = false;
		for (unsigned k = 0; k < nkeep && !kept; k++)
			kept = keep[k] == v[i];
		if (!kept)
			vm_object_set_base(v[i], false);
		vm_object_deallocate(v[i]);
	}
}

void guest_memory_release_base(struct guest_memory *m)
{
	if (!m->dom)
		return;
	vm_domain_lock(m->dom);
	vm_domain_begin(m->dom);
	guest_memory_drop_bases(m->snapshot_base, m->nsnapshot_base, NULL, 0);
	m->nsnapshot_base = 0;
	vm_domain_end(m->dom);
	(void)guest_memory_unlock_map(m);
}

/* The base @obj (a frozen copy's object) is kept as, merged into the base below it when it
 * has one of @old's: that base, or @obj itself. Domain lock held. */
static struct vm_object *guest_memory_base_of(struct vm_object *obj, struct vm_object *const *old, unsigned nold)
{
	if (obj->base)
		return obj; /* nothing written since the last one: the copy is the base itself */
	for (unsigned k = 0; k < nold; k++)
		if (obj->shadow == old[k] && vm_object_merge_into_base(obj) == KERN_SUCCESS)
			return old[k];
	return obj;
}

int guest_memory_frozen_keep(struct guest_memory *m, struct guest_memory_frozen *f)
{
	struct vm_object *next[GUEST_MEMORY_MAX_BASES];
	unsigned n = 0;
	int r = 0;
	vm_domain_lock(m->dom);
	vm_domain_begin(m->dom);
	for (unsigned i = 0; i < f->n && !r; i++)
		for (size_t k = 0; k < f->copy[i]->npieces && !r; k++) {
			struct vm_object *obj = f->copy[i]->pieces[k].object;
			if (!obj)
				continue; /* never touched: nothing to list now or later */
			struct vm_object *b = guest_memory_base_of(obj, m->snapshot_base, m->nsnapshot_base);
			bool known = false;
			for (unsigned j = 0; j < n && !known; j++)
				known = next[j] == b;
			if (known)
				continue;
			if (n == GUEST_MEMORY_MAX_BASES) {
				r = error_set(E2BIG, "guest RAM is more than %d objects: the next snapshot lists every page",
					      GUEST_MEMORY_MAX_BASES);
				break;
			}
			vm_object_reference(b);
			next[n++] = b;
		}
	if (r) {
		guest_memory_drop_bases(next, n, NULL, 0);
		n = 0;
	}
	for (unsigned j = 0; j < n; j++)
		vm_object_set_base(next[j], true);
	guest_memory_drop_bases(m->snapshot_base, m->nsnapshot_base, next, n);
	memcpy(m->snapshot_base, next, n * sizeof(next[0]));
	m->nsnapshot_base = n;
	for (unsigned i = 0; i < f->n; i++)
		vm_map_copy_discard(f->copy[i]);
	f->n = 0;
	vm_domain_end(m->dom);
	int fr = guest_memory_unlock_map(m);
	return r ? r : fr;
}

/* Pages gathered under the domain lock, handed on without it. */
struct guest_memory_batch {
	uint8_t (*bytes)[VM_PAGE_SIZE];
	uint64_t *pindex;
	unsigned n;
	uint64_t first_pindex; /* page number of the chunk's offset 0 */
};

static int guest_memory_collect(void *arg, vm_offset_t offset, const void *bytes)
{
	struct guest_memory_batch *b = arg;
	memcpy(b->bytes[b->n], bytes, VM_PAGE_SIZE);
	b->pindex[b->n++] = b->first_pindex + offset / VM_PAGE_SIZE;
	return 0;
}

int guest_memory_frozen_pages(struct guest_memory *m, const struct guest_memory_frozen *f, enum guest_memory_since since,
			      unsigned chunk, guest_memory_pages_fn *fn, void *arg)
{
	const struct vm_object *restored = since == GUEST_MEMORY_SINCE_RESTORE ? m->ram_object : NULL;
	struct guest_memory_batch b = {.bytes = malloc((size_t)chunk * VM_PAGE_SIZE),
				       .pindex = malloc(chunk * sizeof(uint64_t))};
	int r = b.bytes && b.pindex ? 0 : error_set(ENOMEM, "no memory for the snapshot writer");
	for (unsigned i = 0; i < f->n && !r; i++) {
		const struct vm_map_copy *copy = f->copy[i];
		for (size_t k = 0; k < copy->npieces && !r; k++) {
			const struct vm_map_copy_piece *p = &copy->pieces[k];
			for (vm_size_t off = 0; off < p->size && !r; off += chunk * VM_PAGE_SIZE) {
				vm_size_t len = p->size - off < chunk * VM_PAGE_SIZE ? p->size - off : chunk * VM_PAGE_SIZE;
				b.n = 0;
				b.first_pindex = (f->region[i].gpa + p->offset + off) / VM_PAGE_SIZE;
				vm_domain_lock(m->dom);
				vm_domain_begin(m->dom);
				const struct vm_object *stop =
					since == GUEST_MEMORY_SINCE_BASE ? vm_object_base_below(p->object) : restored;
				kern_return_t kr = vm_object_enumerate(p->object, p->obj_offset + off, len, stop,
								       guest_memory_collect, &b, 0);
				vm_domain_end(m->dom);
				int fr = guest_memory_unlock_map(m);
				if (kr != KERN_SUCCESS)
					r = error_set(-kern_return_errno(kr), "cannot read frozen guest RAM at 0x%llx: %s",
						      (unsigned long long)(f->region[i].gpa + p->offset + off), kern_return_name(kr));
				else
					r = fr;
				if (!r)
					r = fn(arg, b.pindex, (const uint8_t (*)[VM_PAGE_SIZE])b.bytes, b.n, len / VM_PAGE_SIZE);
			}
		}
	}
	free(b.bytes);
	free(b.pindex);
	return r;
}

const char *guest_memory_fork_refusal(const struct guest_memory *m)
{
	/* Held: a pager still serves guest memory, perhaps through RAM copied from its mapping. */
	if (m->nheld)
		return "VMs with mapped files or external pagers cannot be forked (the pagers would be shared)";
	return NULL;
}

#define GUEST_MEMORY_COPY_CHUNK (1u << 20) /* bytes copied per hold of the domain lock */

int guest_memory_copy_range(struct guest_memory *m, uint64_t gpa, uint64_t size, int fd, bool out)
{
	static const uint8_t zero[VM_PAGE_SIZE];
	uint8_t *buf = malloc(GUEST_MEMORY_COPY_CHUNK);
	if (!buf)
		return error_set(ENOMEM, "no memory to copy guest memory at 0x%llx", (unsigned long long)gpa);
	int r = 0;
	for (uint64_t off = 0; off < size && !r; off += GUEST_MEMORY_COPY_CHUNK) {
		uint64_t n = size - off < GUEST_MEMORY_COPY_CHUNK ? size - off : GUEST_MEMORY_COPY_CHUNK;
		if (!out) {
			r = pread(fd, buf, n, (off_t)off) == (ssize_t)n
				    ? guest_memory_vm_write(m, gpa + off, buf, n)
				    : error_set_errno(EIO, "cannot read back guest memory for 0x%llx", (unsigned long long)(gpa + off));
			continue;
		}
		r = guest_memory_vm_read(m, gpa + off, buf, n);
		for (uint64_t p = 0; p < n && !r; p += VM_PAGE_SIZE)
			if (memcmp(buf + p, zero, VM_PAGE_SIZE) != 0 &&
			    pwrite(fd, buf + p, VM_PAGE_SIZE, (off_t)(off + p)) != VM_PAGE_SIZE)
				r = error_set_errno(errno ? errno : EIO, "cannot copy guest memory at 0x%llx",
						    (unsigned long long)(gpa + off + p));
	}
	free(buf);
	return r;
}

/* [gpa, gpa + size) of RAM, the map's entry there with protection @prot, made host-shared
 * (guest_memory_share_inherited). */
static int guest_memory_share_range(struct guest_memory *m, uint64_t gpa, uint64_t size, vm_prot_t prot)
{
	const struct guest_region *g = guest_memory_region(m, gpa);
	/* The cut adds a piece where the range is inside its region, and the range is one. */
	unsigned after = m->nregions + (gpa > g->gpa && gpa + size < g->gpa + g->size) + 1;
	if (after > GUEST_MEMORY_MAX_REGIONS)
		return error_set(ENOSPC, "cannot share [0x%llx, +0x%llx) with the forks: guest memory would have over %d regions",
				 (unsigned long long)gpa, (unsigned long long)size, GUEST_MEMORY_MAX_REGIONS);
	bool writable = prot & VM_PROT_WRITE;
	int fd = memfd_create("vmm-shared", MFD_CLOEXEC);
	int r = fd < 0 || ftruncate(fd, (off_t)size) != 0
			? error_set_errno(errno, "cannot make memory to share [0x%llx, +0x%llx) with the forks",
					  (unsigned long long)gpa, (unsigned long long)size)
			: guest_memory_copy_range(m, gpa, size, fd, true);
	/* Mapped aside first: once the range is cut, moving the mapping in place is all that
	 * is left to do. */
	void *aside = r ? MAP_FAILED : mmap(NULL, size, PROT_READ | (writable ? PROT_WRITE : 0), MAP_SHARED, fd, 0);
	if (!r && aside == MAP_FAILED)
		r = error_set_errno(errno, "cannot map memory to share [0x%llx, +0x%llx) with the forks",
				    (unsigned long long)gpa, (unsigned long long)size);
	if (!r)
		r = guest_memory_deallocate(m, gpa, size);
	if (!r && mremap(aside, size, size, MREMAP_MAYMOVE | MREMAP_FIXED, m->base + gpa) == MAP_FAILED) {
		int err = errno;
		/* RAM again, with its bytes. */
		uint64_t at = gpa;
		if (guest_memory_allocate(m, &at, size, false) != 0 || guest_memory_copy_range(m, gpa, size, fd, false) != 0)
			fprintf(stderr, "vmm: [0x%llx, +0x%llx) could not be put back: %s\n", (unsigned long long)gpa,
				(unsigned long long)size, error_message());
		r = error_set(err, "cannot share [0x%llx, +0x%llx) with the forks: %s", (unsigned long long)gpa,
			      (unsigned long long)size, strerror(err));
		munmap(aside, size);
	} else if (r && aside != MAP_FAILED) {
		munmap(aside, size);
	}
	if (fd >= 0)
		close(fd);
	if (r)
		return r;
	vm_domain_lock(m->dom);
	vm_addr_t at = gpa;
	kern_return_t kr = vm_map_enter(m->map, &at, size, false, NULL, 0, false, VM_PROT_NONE, VM_PROT_NONE,
					VM_INHERIT_SHARE);
	struct guest_region shared = {.gpa = gpa, .size = size, .kind = GUEST_REGION_HOST_SHARED,
				      .mode = writable ? GUEST_MAP_SHARED : GUEST_MAP_RO, .path = "memory shared with forks",
				      .hva = m->base + gpa, .slot = guest_memory_free_slot(m)};
	guest_memory_insert_region(m, &shared);
	vm_domain_unlock(m->dom);
	m->layout_changed = true;
	/* The entry only keeps the place: a failure leaves the memory shared all the same. */
	if (kr != KERN_SUCCESS)
		fprintf(stderr, "vmm: the map cannot hold [0x%llx, +0x%llx) shared with the forks: %s\n",
			(unsigned long long)gpa, (unsigned long long)size, kern_return_name(kr));
	return 0;
}

/* Whether the map entry @ri, beginning in region @g (NULL: none), is one a walk wants. */
typedef bool guest_memory_entry_want_fn(const struct vm_region_info *ri, const struct guest_region *g);

/* The first entry of the map @want takes: 1 with it in *ri and the part of it within the
 * region it begins in in [*start, *end), and that region in *g; 0 when none. Takes the
 * domain lock for the walk. */
static bool guest_memory_first_entry(struct guest_memory *m, guest_memory_entry_want_fn *want,
				     struct vm_region_info *ri, struct guest_region *g, uint64_t *start, uint64_t *end)
{
	vm_addr_t addr = 0;
	bool found = false;
	vm_domain_lock(m->dom);
	while (!found && vm_map_region(m->map, &addr, ri) == KERN_SUCCESS) {
		const struct guest_region *in = guest_memory_region(m, ri->start);
		if ((found = want(ri, in))) {
			*g = in ? *in : (struct guest_region){.size = 0};
			*start = ri->start;
			*end = in && ri->end > in->gpa + in->size ? in->gpa + in->size : ri->end;
		}
		addr = ri->end;
	}
	vm_domain_unlock(m->dom);
	return found;
}

static bool guest_memory_shares(const struct vm_region_info *ri, const struct guest_region *g)
{
	return ri->inheritance == VM_INHERIT_SHARE && g && g->kind == GUEST_REGION_RAM;
}

int guest_memory_share_inherited(struct guest_memory *m)
{
	if (!m->map)
		return 0;
	struct vm_region_info ri;
	struct guest_region g;
	uint64_t start, end;
	int shared = 0;
	for (; guest_memory_first_entry(m, guest_memory_shares, &ri, &g, &start, &end); shared++) {
		int r = guest_memory_share_range(m, start, end - start, ri.protection);
		if (r)
			return r;
	}
	return shared;
}

int guest_memory_hold_faults(struct guest_memory *m)
{
	vm_domain_lock(m->dom);
	int err = m->swap ? default_pager_share_slots(m->swap) : 0;
	if (err) {
		vm_domain_unlock(m->dom);
		return error_set(-err, "cannot share the swap file %s with the children: %s", guest_memory_swap_name(m),
				 strerror(-err));
	}
	return 0;
}

void guest_memory_release_faults(struct guest_memory *m)
{
	vm_domain_unlock(m->dom);
}

/* [gpa, gpa + size) of host-shared region @g becomes RAM of this process's own, with the
 * bytes it holds now (and read-only again if it was), through a memfd as
 * guest_memory_share_range made it shared. */
static int guest_memory_unshare(struct guest_memory *m, const struct guest_region *g, uint64_t gpa, uint64_t size)
{
	int fd = memfd_create("vmm-unshared", MFD_CLOEXEC);
	int r = fd < 0 || ftruncate(fd, (off_t)size) != 0
			? error_set_errno(errno, "cannot copy the memory shared at [0x%llx, +0x%llx) for this fork",
					  (unsigned long long)gpa, (unsigned long long)size)
			: guest_memory_copy_range(m, gpa, size, fd, true);
	uint64_t at = gpa;
	if (!r)
		r = guest_memory_deallocate(m, gpa, size);
	if (!r)
		r = guest_memory_allocate(m, &at, size, false);
	if (!r)
		r = guest_memory_copy_range(m, gpa, size, fd, false);
	if (!r && g->mode == GUEST_MAP_RO)
		r = guest_memory_vm_protect(m, gpa, size, false, VM_PROT_READ);
	if (fd >= 0)
		close(fd);
	return r;
}

static bool guest_memory_inherits_apart(const struct vm_region_info *ri, const struct guest_region *g)
{
	return ri->inheritance == VM_INHERIT_NONE ||
	       (ri->inheritance == VM_INHERIT_COPY && g && g->kind == GUEST_REGION_HOST_SHARED);
}

int guest_memory_apply_inheritance(struct guest_memory *m)
{
	struct vm_region_info ri;
	struct guest_region g;
	uint64_t start, end;
	while (guest_memory_first_entry(m, guest_memory_inherits_apart, &ri, &g, &start, &end)) {
		int r = ri.inheritance == VM_INHERIT_NONE ? guest_memory_deallocate(m, ri.start, ri.end - ri.start)
							  : guest_memory_unshare(m, &g, start, end - start);
		if (r)
			return r;
	}
	return 0;
}

void guest_memory_stats(struct guest_memory *m, void (*emit)(void *arg, const char *key, uint64_t value), void *arg)
{
	if (!m->dom)
		return;
	struct vm_statistics s;
	/* Asked of the other VMs' processes: before the lock, which faults need. */
	uint64_t seg_pages = m->segment ? segment_resident_pages(m->segment) : 0;
	uint64_t holders = m->segment ? segment_holders(m->segment) : 0;
	/* Busy (a fault waits on a slow pager): the figures kept under the lock are left out
	 * this time, and said to be, rather than the monitor waiting with them. */
	bool busy = !vm_domain_lock_within(m->dom, GUEST_MEMORY_MONITOR_WAIT_MS);
	emit(arg, "mem.stats_busy", busy);
	if (busy)
		return;
	vm_domain_statistics(m->dom, &s);
	/* Sharing: pages this VM maps from the host-wide segment (the snapshot object's, entered
	 * read-only) against its own; the segment's pages on the whole host, and its holders. */
	uint64_t shared = 0;
	struct snapshot_pager_stats sps = {0};
	if (m->segment) {
		struct vm_object_info oi;
		vm_object_info(m->ram_object, &oi);
		shared = oi.resident_count;
		if (m->ram_object->pager && m->ram_object->pager->ops == &snapshot_pager_ops)
			snapshot_pager_stats(m->ram_object->pager, &sps);
	}
	/* Memory shared with forks (inherited "share"): the kernel's, out of the counts above. */
	uint64_t fork_shared = 0;
	for (unsigned i = 0; i < m->nregions; i++)
		if (m->region[i].kind == GUEST_REGION_HOST_SHARED)
			fork_shared += m->region[i].size;
	const struct {
		const char *key;
		uint64_t value;
	} flat[] = {
		{"mem.page_size", s.pagesize},
		{"mem.resident_pages", s.resident_count},
		{"mem.resident_peak", s.resident_peak},
		{"mem.resident_limit", s.resident_limit},
		{"mem.shared_pages", shared},
		{"mem.private_pages", s.resident_count - shared},
		{"mem.segment_pages", seg_pages},
		{"mem.segment_holders", holders},
		{"mem.segment_found", sps.found},
		{"mem.segment_filled", sps.filled},
		{"mem.fork_shared_bytes", fork_shared},
		{"mem.faults", s.faults},
		{"mem.uffd_faults", m->uffd_faults},
		{"mem.wp_faults", m->wp_faults},
		{"mem.prefaulted_pages", m->prefaults},
		{"mem.readahead_pages", m->readahead_pages},
		{"mem.prefetched_pages", m->prefetched_pages},
		{"mem.working_set_pages", m->recorded.count},
		{"mem.zero_fills", s.zero_fill_count},
		{"mem.cow_faults", s.cow_faults},
		{"mem.pageins", s.pageins},
		{"mem.pageouts", s.pageouts},
		{"mem.reclaims", s.reclaims},
		{"mem.reactivations", s.reactivations},
		{"mem.pageout_failures", s.pageout_failures},
		{"mem.pageout_errors", s.pageout_errors},
		{"mem.lookups", s.lookups},
		{"mem.hits", s.hits},
		{"mem.pager_requests", s.pager_requests},
		{"mem.data_unlocks", s.data_unlocks},
		{"mem.cluster_pages", s.cluster_pages},
		{"mem.protection_failures", s.protection_failures},
		{"mem.memory_errors", s.memory_errors},
		{"mem.object_shadows", s.object_shadows},
		{"mem.object_collapses", s.object_collapses},
		{"mem.object_bypasses", s.object_bypasses},
		{"mem.base_objects", m->nsnapshot_base},
		{"mem.base_merges", s.base_merges},
		{"mem.base_pages_freed", s.base_pages_freed},
		{"mem.objects", s.objects_live},
		{"mem.uffd_copies", m->pmap.stats.copies},
		{"mem.uffd_pages_copied", m->pmap.stats.pages_copied},
		{"mem.uffd_zero_pages", m->pmap.stats.zero_pages},
		{"mem.uffd_protects", m->pmap.stats.protects},
		{"mem.uffd_protected_pages", m->pmap.stats.protected_pages},
		{"mem.uffd_guarded_skips", m->pmap.stats.guarded_skips},
		{"mem.uffd_prearmed_pages", m->pmap.stats.prearmed_pages},
		{"mem.uffd_unguards", m->pmap.stats.unguards},
		{"mem.uffd_removes", m->pmap.stats.removes},
		{"mem.uffd_continues", m->pmap.stats.continues},
		{"mem.uffd_pages_continued", m->pmap.stats.pages_continued},
		{"mem.uffd_continue_fallbacks", m->pmap.stats.continue_fallbacks},
	};
	for (size_t i = 0; i < sizeof(flat) / sizeof(flat[0]); i++)
		emit(arg, flat[i].key, flat[i].value);
	char key[64];
	/* Every bucket, the empty ones too: a reader's samples then have the same keys. */
	for (unsigned b = 0; b < GUEST_MEMORY_LATENCY_BUCKETS; b++) {
		snprintf(key, sizeof(key), "mem.fault_latency_ns.lt_%llu", 1ull << (b + 1));
		emit(arg, key, m->latency[b]);
	}
	for (const struct vm_object *o = m->dom->objects; o; o = o->all_next) {
		struct vm_object_info oi;
		vm_object_info(o, &oi);
		const struct {
			const char *name;
			uint64_t value;
		} per[] = {
			{"resident", oi.resident_count}, {"paged", oi.paged_count},     {"faults", oi.stats.faults},
			{"pageins", oi.stats.pageins},   {"pageouts", oi.stats.pageouts}, {"cow_pages", oi.stats.cow_pages},
			{"zero_fills", oi.stats.zero_fills},
		};
		for (size_t i = 0; i < sizeof(per) / sizeof(per[0]); i++) {
			snprintf(key, sizeof(key), "object.%llu.%s", (unsigned long long)oi.id, per[i].name);
			emit(arg, key, per[i].value);
		}
	}
	vm_domain_unlock(m->dom);
}

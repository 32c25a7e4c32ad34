#include "vmm/guest_memory.h"

#include <errno.h>
#include <string.h>
#include <sys/mman.h>

#include "vmm/error.h"

void guest_memory_layout(struct guest_memory *m, uint64_t ram_size)
{
	memset(m, 0, sizeof(*m));
	m->ram_size = ram_size;
	uint64_t low = ram_size < GUEST_MEMORY_LOW_LIMIT ? ram_size : GUEST_MEMORY_LOW_LIMIT;
	m->region[m->nregions++] = (struct guest_region){.gpa = 0, .size = low};
	if (ram_size > low)
		m->region[m->nregions++] =
			(struct guest_region){.gpa = GUEST_MEMORY_HIGH_BASE, .size = ram_size - low};
}

int guest_memory_create(struct guest_memory *m, uint64_t ram_size)
{
	guest_memory_layout(m, ram_size);
	for (unsigned i = 0; i < m->nregions; i++) {
		struct guest_region *r = &m->region[i];
		void *p = mmap(NULL, r->size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
			       -1, 0);
		if (p == MAP_FAILED) {
			int err = errno;
			guest_memory_destroy(m);
			return error_set_errno(err, "cannot map %llu MiB of guest RAM",
					       (unsigned long long)(r->size >> 20));
		}
		r->hva = p;
	}
	return 0;
}

void guest_memory_destroy(struct guest_memory *m)
{
	for (unsigned i = 0; i < m->nregions; i++) {
		if (m->region[i].hva)
			munmap(m->region[i].hva, m->region[i].size);
		m->region[i].hva = NULL;
	}
}

void *guest_memory_ptr(const struct guest_memory *m, uint64_t gpa, uint64_t len)
{
	for (unsigned i = 0; i < m->nregions; i++) {
		const struct guest_region *r = &m->region[i];
		if (len != 0 && gpa >= r->gpa && gpa - r->gpa <= r->size && len <= r->size - (gpa - r->gpa))
			return r->hva ? r->hva + (gpa - r->gpa) : NULL;
	}
	return NULL;
}

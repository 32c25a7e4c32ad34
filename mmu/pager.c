/* Pager handles and the replies a pager gives the core. See pager.h. */
#include "mmu/pager.h"

#include <assert.h>
#include <errno.h>
#include <stdlib.h>

#include "mmu/vm_object.h"

int pager_open(const struct pager_ops *ops, const struct pager_args *args, struct pager **out)
{
	assert(ops && ops->open && ops->create && ops->data_request);
	struct pager *p = calloc(1, sizeof(*p));
	if (!p)
		return -ENOMEM;
	p->ops = ops;
	p->refs = 1;
	int err = ops->open(p, args);
	if (err) {
		free(p);
		return err;
	}
	*out = p;
	return 0;
}

void pager_release(struct pager *p)
{
	assert(p->refs > 0);
	if (--p->refs)
		return;
	if (p->ops->close)
		p->ops->close(p);
	free(p);
}

/* The page numbers of [offset, offset+length) that lie in the request. */
static bool pager_reply_range(const struct pager_reply *r, vm_offset_t offset, vm_size_t length, uint64_t *a,
			      uint64_t *b)
{
	if (!vm_page_aligned(offset) || !vm_page_aligned(length) || offset + length < offset)
		return false;
	*a = vm_atop(offset);
	*b = vm_atop(offset + length);
	if (*a < r->first)
		*a = r->first;
	if (*b > r->end)
		*b = r->end;
	return *a < *b;
}

void pager_data_provided(struct pager_reply *r, vm_offset_t offset, const void *data, vm_size_t length)
{
	pager_data_provided_locked(r, offset, data, length, VM_PROT_NONE);
}

void pager_data_provided_locked(struct pager_reply *r, vm_offset_t offset, const void *data, vm_size_t length,
				vm_prot_t lock_value)
{
	uint64_t a, b;
	if (!pager_reply_range(r, offset, length, &a, &b))
		return;
	const uint8_t *bytes = (const uint8_t *)data + vm_ptoa(a) - offset;
	for (uint64_t i = a; i < b; i++, bytes += VM_PAGE_SIZE) {
		if (vm_object_page_provided(r->object, i, bytes, lock_value) < 0)
			continue; /* out of memory: the page stays absent; the fault reports it */
		r->provided++;
		if (i == r->want)
			r->want_answered = true;
	}
}

void pager_data_unavailable(struct pager_reply *r, vm_offset_t offset, vm_size_t length)
{
	uint64_t a, b;
	if (!pager_reply_range(r, offset, length, &a, &b))
		return;
	r->unavailable += (unsigned)(b - a);
	if (r->want >= a && r->want < b) {
		r->want_answered = true;
		r->want_unavailable = true;
		r->unavailable_end = b;
	} else if (r->want_unavailable && a <= r->unavailable_end && b > r->unavailable_end) {
		r->unavailable_end = b; /* the run after @want goes on */
	}
}

void pager_data_error(struct pager_reply *r, vm_offset_t offset, vm_size_t length, int error)
{
	uint64_t a, b;
	if (!pager_reply_range(r, offset, length, &a, &b))
		return;
	if (r->want >= a && r->want < b && !r->error) {
		r->want_answered = true;
		r->error = error ? error : -EIO;
	}
}

int pager_lock_request(struct pager_reply *r, vm_offset_t offset, vm_size_t size, unsigned flags, vm_prot_t lock_value)
{
	struct vm_object *obj = r->object;
	if (!vm_page_aligned(offset) || !vm_page_aligned(size) || offset > obj->size || size > obj->size - offset ||
	    (flags & ~(PAGER_LOCK_CLEAN | PAGER_LOCK_FLUSH)) || (lock_value & ~VM_PROT_ALL))
		return -EINVAL;
	return vm_object_lock_request(obj, offset, size, flags, lock_value);
}

int pager_change_attributes(struct pager_reply *r, bool may_cache, enum vm_copy_strategy copy_strategy,
			    unsigned cluster)
{
	if (cluster > VM_CLUSTER_MAX || (copy_strategy != VM_COPY_DELAY && copy_strategy != VM_COPY_NONE))
		return -EINVAL;
	r->object->may_cache = may_cache;
	r->object->copy_strategy = copy_strategy;
	r->object->cluster = cluster;
	return 0;
}

/* The snapshot pager: pages of a stored snapshot through a struct snapshot_source. */
#include "pagers/snapshot_pager.h"

#include <errno.h>
#include <stdlib.h>

static int sp_open(struct pager *pager, const struct pager_args *args)
{
	const struct snapshot_source *src = args ? args->source : NULL;
	if (!src || !src->page || src->size == 0 || !vm_page_aligned(src->size))
		return -EINVAL;
	struct snapshot_source *copy = malloc(sizeof(*copy));
	if (!copy)
		return -ENOMEM;
	*copy = *src;
	pager->priv = copy;
	pager->size = src->size;
	pager->max_prot = VM_PROT_READ | VM_PROT_EXECUTE;
	return 0;
}

static void sp_close(struct pager *pager)
{
	free(pager->priv);
}

static int sp_create(struct pager *pager, uint64_t size, void **mo)
{
	(void)size;
	*mo = pager->priv;
	return 0;
}

static int sp_data_request(struct pager *pager, void *mo, vm_offset_t offset, vm_size_t length, vm_prot_t access,
			   struct pager_reply *reply)
{
	(void)pager;
	(void)access;
	const struct snapshot_source *src = mo;
	for (vm_offset_t at = offset; at < offset + length; at += VM_PAGE_SIZE) {
		const void *data = NULL;
		int r = at < src->size ? src->page(src->arg, at / VM_PAGE_SIZE, &data) : 0;
		if (r)
			pager_data_error(reply, at, VM_PAGE_SIZE, r);
		else if (data)
			pager_data_provided(reply, at, data, VM_PAGE_SIZE);
		else
			pager_data_unavailable(reply, at, VM_PAGE_SIZE);
	}
	return 0;
}

const struct pager_ops snapshot_pager_ops = {
	.name = "snapshot",
	.open = sp_open,
	.close = sp_close,
	.create = sp_create,
	.data_request = sp_data_request,
};

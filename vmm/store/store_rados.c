/*
 * A store in a RADOS pool (store_impl.h's backend). Not there yet: the transport to the
 * cluster (vmm/store/rados.h, the vmm-rados helper) comes first.
 */
#include "vmm/store/store_impl.h"

#include <errno.h>

#include "vmm/error.h"

int store_rados_open(struct store *s, bool create, bool read_only)
{
	(void)create;
	(void)read_only;
	char pool[STORE_RADOS_NAME_MAX + 1], ns[STORE_RADOS_NAME_MAX + 1];
	int r = store_rados_parse(s->dir, pool, ns);
	return r ? r : error_set(ENOTSUP, "%s: RADOS stores are not supported by this vmm yet", s->dir);
}

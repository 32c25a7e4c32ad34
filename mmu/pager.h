/*
 * The pager interface, after Mach's memory_object protocol.
 *
 * A pager (Mach's memory manager) serves memory objects: it is opened once (a swap file, a
 * host file) and creates one memory object per vm_object it backs. The core asks for data
 * with data_request; the pager answers, before returning, with pager_data_provided,
 * pager_data_unavailable or pager_data_error for the pages of the request (it must answer
 * at least the first page; it may answer fewer pages than asked). Modified pages go back
 * with data_return (page-out, msync, termination). terminate ends a memory object.
 *
 * The other direction (Mach's memory_object_lock_request / data_unlock / change_attributes):
 * a pager may keep rights to its pages. pager_data_provided_locked supplies pages with a
 * lock value, the access the core must not allow without asking (VM_PROT_WRITE: supplied
 * read-only). A fault needing access a page's lock forbids calls data_unlock(offset,
 * length, desired_access); the pager answers before returning, by pager_lock_request
 * lowering the lock (a grant), or by returning -EACCES (a refusal: KERN_PROTECTION_FAILURE)
 * or another -errno (KERN_MEMORY_ERROR); returning 0 with the lock still in the way is a
 * pager that did not answer (KERN_MEMORY_ERROR). pager_lock_request also takes pages back:
 * PAGER_LOCK_CLEAN returns modified pages (data_return) and keeps them clean, PAGER_LOCK_FLUSH
 * removes them from memory and every pmap (modified ones returned first with CLEAN,
 * discarded without), and a new lock value lowers the pmap protection of resident pages at
 * once. Its return is Mach's lock_completed. pager_change_attributes sets the object's
 * cluster size, copy strategy and caching. A pager may call these replies from inside
 * data_request and data_unlock (with that call's reply), and from service: a pager whose
 * messages arrive on their own (an external pager) gives an event_fd that turns readable
 * when it has one; its user then calls vm_object_pager_service (domain lock held), which
 * calls service with a reply for the whole object. The default, file and snapshot pagers
 * use none of this: their pages are never locked.
 *
 * Each pager (pagers/<name>.c) exports one const struct pager_ops from its own header
 * (pagers/<name>.h); generic code never branches on the pager's kind, and mmu/ names none. Optional slots may be NULL and are checked by the wrappers.
 *
 * Result codes (every slot returning int):
 *   0         done: open/create succeeded; data_request answered; data_return took the data
 *             (the core may drop its copy)
 *   -ENOSPC   data_return: no room (no swap file, swap full); the core keeps the page
 *   -EROFS    data_return: the pager's data is read-only; the core keeps the page
 *   -EIO      data_request/data_return: the backing store failed (core: KERN_MEMORY_ERROR
 *             for a fault, keeps the page for a page-out)
 *   -ENOMEM   out of memory (core: KERN_RESOURCE_SHORTAGE)
 *   -EACCES   data_unlock: the pager refuses the access (core: KERN_PROTECTION_FAILURE)
 *   -ETIMEDOUT, -ECANCELED  (external pager) its answer did not come in time / the VM stops
 *   -EINVAL   open/create: bad arguments (bad fd, size)
 *   other -errno from the host, passed through
 *
 * Locking: the core calls pagers with the domain lock held (see vm_domain.h); a pager must
 * not call back into the core except through the pager_* replies, and only with a reply
 * the core gave it in the call in progress. data_return and terminate get no reply: a
 * pager must not take pages back from inside them (the core holds pages across them).
 */
#ifndef MMU_PAGER_H
#define MMU_PAGER_H

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>

#include "mmu/vm_param.h"

struct pager;
struct pager_reply;

/* What a pager is opened on. Unused fields are ignored by a pager that has no use for them. */
struct pager_args {
	int fd;             /* the backing file (the default pager's swap file, the file pager's file), or -1 */
	uint64_t offset;    /* where its data starts in the file (file pager) */
	uint64_t size;      /* bytes of data, 0 = the file's size (file pager) */
	bool writable;      /* data may be changed through data_return (file pager) */
	const void *source; /* what a pager not served from a file reads (the snapshot pager:
			       struct snapshot_source); NULL otherwise */
};

typedef int pager_open_t(struct pager *pager, const struct pager_args *args);
typedef void pager_close_t(struct pager *pager);
typedef int pager_create_t(struct pager *pager, uint64_t size, void **mo);
typedef int pager_data_request_t(struct pager *pager, void *mo, vm_offset_t offset, vm_size_t length,
				 vm_prot_t access, struct pager_reply *reply);
typedef int pager_data_return_t(struct pager *pager, void *mo, vm_offset_t offset, const void *data,
				vm_size_t length);
typedef void pager_terminate_t(struct pager *pager, void *mo);
typedef int pager_data_unlock_t(struct pager *pager, void *mo, vm_offset_t offset, vm_size_t length,
				vm_prot_t desired_access, struct pager_reply *reply);
typedef int pager_event_fd_t(struct pager *pager, void *mo);
typedef int pager_service_t(struct pager *pager, void *mo, struct pager_reply *reply);

struct pager_ops {
	const char *name;                   /* shown by introspection ("default", "file") */
	pager_open_t *open;                 /* start serving: set priv, max_prot, size */
	pager_close_t *close;               /* optional: last reference gone, free priv */
	pager_create_t *create;             /* a memory object for a vm_object of @size bytes */
	pager_data_request_t *data_request; /* give data for [offset, offset+length) */
	pager_data_return_t *data_return;   /* optional: take modified data back */
	pager_terminate_t *terminate;       /* optional: the memory object is gone */
	pager_data_unlock_t *data_unlock;   /* optional: allow @desired_access to locked pages of
					       [offset, offset+length), or refuse (-EACCES); only
					       pagers that lock pages are asked */
	pager_event_fd_t *event_fd;         /* optional: an fd that is readable while service has
					       work, or -1 */
	pager_service_t *service;           /* optional: act on what the pager was sent on its own
					       (lock requests, attributes); 0 or -errno */
};

struct pager {
	const struct pager_ops *ops; /* (c) */
	void *priv;                  /* (c) the pager's own state, set by open */
	vm_prot_t max_prot;          /* (c) most a shared mapping of its objects may allow, set by open */
	uint64_t size;               /* (c) size of the data when fixed (a file), 0 = any; set by open */
	bool host_resident;          /* (c) set by open: every page it provides is also held, unchanged for
					good, at the same offset of a host-wide segment that VMM processes
					share, so that a pmap may map it from there (pmap.h) */
	unsigned refs;               /* (d) the opener's plus one per vm_object using it */
};

/* The answer being collected for one data_request; the fields are the core's. */
struct pager_reply {
	struct vm_object *object; /* (d) the object being filled */
	uint64_t first, end;      /* (d) requested page numbers [first, end) */
	uint64_t want;            /* (d) the page the fault needs */
	unsigned provided;        /* (d) pages inserted */
	unsigned unavailable;     /* (d) pages the pager has no data for */
	int error;                /* (d) first error reported for @want, 0 = none */
	bool want_answered;       /* (d) @want got an answer */
	bool want_unavailable;    /* (d) the answer for @want was data_unavailable */
	uint64_t unavailable_end; /* (d) with want_unavailable: [want, unavailable_end) were all
				     answered data_unavailable (at least want + 1) */
};

/* Open a pager of kind @ops on @args: 0 and *out (one reference, the caller's), or -errno. */
int pager_open(const struct pager_ops *ops, const struct pager_args *args, struct pager **out);

/* Drop a reference from pager_open (objects keep theirs); the last one closes the pager. */
void pager_release(struct pager *pager);

/* Replies, called by a pager from inside data_request. @offset and @length are bytes,
 * page-aligned; pages outside the request are ignored. */
void pager_data_provided(struct pager_reply *reply, vm_offset_t offset, const void *data, vm_size_t length);
/* pager_data_provided, the pages locked against @lock_value (VM_PROT_* bits the core must
 * not allow without data_unlock; VM_PROT_NONE = none). A page already resident keeps its
 * bytes and its lock. */
void pager_data_provided_locked(struct pager_reply *reply, vm_offset_t offset, const void *data, vm_size_t length,
				vm_prot_t lock_value);
void pager_data_unavailable(struct pager_reply *reply, vm_offset_t offset, vm_size_t length);
void pager_data_error(struct pager_reply *reply, vm_offset_t offset, vm_size_t length, int error);

#define PAGER_LOCK_CLEAN 0x1u /* Mach's should_return: modified pages go back, kept clean */
#define PAGER_LOCK_FLUSH 0x2u /* pages leave memory (modified ones returned first with CLEAN) */

/* Mach's lock_request, from inside data_request, data_unlock or service: on the resident
 * pages of [offset, offset+size) of the reply's object do @flags (PAGER_LOCK_*), and lock
 * the pages that stay against @lock_value (their mappings lowered at once). Returning is
 * lock_completed. 0; -EINVAL (not page aligned, outside the object, bad bits: nothing
 * done); -EIO (a modified page the pager refused to take back stays, modified and
 * resident); -ENOMEM (some pages not done). */
int pager_lock_request(struct pager_reply *reply, vm_offset_t offset, vm_size_t size, unsigned flags,
		       vm_prot_t lock_value);

/* Mach's change_attributes, from the same places: @cluster pages a fault of the object asks
 * for at most (1..VM_CLUSTER_MAX; 0 = leave it to the map entry), the copy strategy of
 * later copies, and whether its pages may stay cached once unmapped (carried: the core
 * keeps no cache of objects). 0 or -EINVAL (nothing changed). */
int pager_change_attributes(struct pager_reply *reply, bool may_cache, enum vm_copy_strategy copy_strategy,
			    unsigned cluster);

static inline int pager_create(struct pager *p, uint64_t size, void **mo)
{
	return p->ops->create(p, size, mo);
}

static inline int pager_data_request(struct pager *p, void *mo, vm_offset_t offset, vm_size_t length,
				     vm_prot_t access, struct pager_reply *reply)
{
	return p->ops->data_request(p, mo, offset, length, access, reply);
}

static inline int pager_data_return(struct pager *p, void *mo, vm_offset_t offset, const void *data,
				    vm_size_t length)
{
	if (!p->ops->data_return)
		return -EROFS;
	return p->ops->data_return(p, mo, offset, data, length);
}

static inline void pager_terminate(struct pager *p, void *mo)
{
	if (p->ops->terminate)
		p->ops->terminate(p, mo);
}

static inline int pager_data_unlock(struct pager *p, void *mo, vm_offset_t offset, vm_size_t length,
				    vm_prot_t desired_access, struct pager_reply *reply)
{
	if (!p->ops->data_unlock)
		return -EACCES; /* it locked a page without a way to unlock it */
	return p->ops->data_unlock(p, mo, offset, length, desired_access, reply);
}

static inline int pager_event_fd(struct pager *p, void *mo)
{
	return p->ops->event_fd ? p->ops->event_fd(p, mo) : -1;
}

#endif

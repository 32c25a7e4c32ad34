/*
 * The external pager protocol: a memory object served by another process over a
 * SOCK_STREAM unix socket, after Mach's memory_object protocol. Every message is a fixed
 * header, followed for data messages by exactly `length` bytes of page data.
 *
 *   client (vmm)                          server (the pager)
 *   HELLO {flags: version}            ->
 *                                     <-  HELLO_REPLY {length: object size, flags: WRITABLE}
 *   DATA_REQUEST {offset, length,     ->
 *                 flags: access}      <-  any number of DATA_PROVIDED {offset, length} + bytes,
 *                                         DATA_UNAVAILABLE {offset, length} (zero fill),
 *                                         DATA_ERROR {offset, length, error},
 *                                         each within the request, then REPLY_END
 *   DATA_RETURN {offset, length}      ->
 *     + bytes                         <-  RETURN_REPLY {error: 0 taken, else errno}
 *   TERMINATE                         ->  (no answer; the object is gone)
 *
 * Offsets and lengths are bytes, page aligned; one message carries at most
 * EXTPAGER_MAX_DATA bytes. The client trusts nothing: a message of the wrong type, outside
 * the request, malformed, or late (EXTPAGER_TIMEOUT_MS) fails the request with -EIO /
 * -ETIMEDOUT, and the fault that needed it fails with KERN_MEMORY_ERROR.
 */
#ifndef PAGERS_EXTERNAL_PAGER_H
#define PAGERS_EXTERNAL_PAGER_H

#include <stdint.h>

#include "mmu/pager.h"
#include "mmu/vm_param.h"

#define EXTPAGER_MAGIC 0x52475056u /* "VPGR" */
#define EXTPAGER_VERSION 1u
#define EXTPAGER_MAX_DATA (VM_CLUSTER_MAX * VM_PAGE_SIZE)
#define EXTPAGER_TIMEOUT_MS 10000
#define EXTPAGER_WRITABLE 0x1u /* HELLO_REPLY: the server takes DATA_RETURN */

enum extpager_type {
	EXTPAGER_HELLO = 1,
	EXTPAGER_HELLO_REPLY = 2,
	EXTPAGER_DATA_REQUEST = 3,
	EXTPAGER_DATA_PROVIDED = 4,
	EXTPAGER_DATA_UNAVAILABLE = 5,
	EXTPAGER_DATA_ERROR = 6,
	EXTPAGER_REPLY_END = 7,
	EXTPAGER_DATA_RETURN = 8,
	EXTPAGER_RETURN_REPLY = 9,
	EXTPAGER_TERMINATE = 10,
};

struct extpager_msg {
	uint32_t magic;  /* EXTPAGER_MAGIC */
	uint32_t type;   /* enum extpager_type */
	uint64_t offset; /* bytes into the object */
	uint64_t length; /* bytes; data messages are followed by this many */
	int32_t error;   /* DATA_ERROR, RETURN_REPLY: a positive errno, 0 = none */
	uint32_t flags;  /* HELLO: version; HELLO_REPLY: EXTPAGER_WRITABLE; DATA_REQUEST: access */
};
_Static_assert(sizeof(struct extpager_msg) == 32, "wire layout");

/*
 * The client side, a pager (pager.h) opened on a connected socket (pager_args.fd, which
 * it dups; the caller keeps its own). open says HELLO and learns the object's size and
 * whether it takes data back (max_prot). One memory object per pager.
 */
extern const struct pager_ops external_pager_ops;

/* Why the connection of external pager @p failed, in words ("" while it works). */
const char *external_pager_failure(const struct pager *p);

#endif

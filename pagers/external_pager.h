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
 * the request, malformed, or late fails the request with -EIO / -ETIMEDOUT, and the fault
 * that needed it fails with KERN_MEMORY_ERROR. "Late" is per exchange: the whole answer to
 * a DATA_REQUEST (or HELLO, or one DATA_RETURN) must be in within the timeout, however the
 * server paces its bytes. The client never asks for, nor believes, data past the size the
 * server announced.
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

/* What the client is opened with besides its socket: pager_args.source points to one
 * (NULL: no cancel fd, EXTPAGER_TIMEOUT_MS). */
struct external_pager_config {
	unsigned timeout_ms; /* the deadline of one exchange; 0 = EXTPAGER_TIMEOUT_MS */
	int cancel_fd;       /* -1, or an fd that turns readable when waiting must stop (the VM is
				stopping): a wait in progress or begun while it is readable fails
				with -ECANCELED. Open dups it; the caller keeps its own. */
};

/*
 * The client side, a pager (pager.h) opened on a connected socket (pager_args.fd, which
 * it dups; the caller keeps its own) and an optional struct external_pager_config
 * (pager_args.source). open says HELLO and learns the object's size (pager->size; create
 * refuses a larger object, -EINVAL) and whether it takes data back (max_prot). One memory
 * object per pager. Besides the codes of pager.h, data_request and data_return return
 * -ETIMEDOUT (the exchange overran its deadline) and -ECANCELED (the cancel fd turned
 * readable); both leave the connection broken, except a cancel seen before anything was
 * sent, which leaves it as it was.
 */
extern const struct pager_ops external_pager_ops;

/* Why the connection of external pager @p failed, in words ("" while it works). The text
 * is @p's and stays valid until it closes. */
const char *external_pager_failure(const struct pager *p);

#endif

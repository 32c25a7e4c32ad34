/*
 * The external pager protocol: a memory object served by another process over a
 * SOCK_STREAM unix socket, after Mach's memory_object protocol. Every message is a fixed
 * header, followed for data messages by exactly `length` bytes of page data.
 *
 *   client (vmm)                          server (the pager)
 *   HELLO {flags: version}            ->
 *                                     <-  HELLO_REPLY {length: object size,
 *                                                      flags: WRITABLE, V2}
 *   DATA_REQUEST {offset, length,     ->
 *                 flags: access}      <-  any number of DATA_PROVIDED {offset, length,
 *                                         flags: lock value (v2)} + bytes,
 *                                         DATA_UNAVAILABLE {offset, length} (zero fill),
 *                                         DATA_ERROR {offset, length, error},
 *                                         each within the request, then REPLY_END
 *   DATA_RETURN {offset, length}      ->
 *     + bytes                         <-  RETURN_REPLY {error: 0 taken, else errno}
 *   TERMINATE                         ->  (no answer; the object is gone)
 *
 * Version 2 (the client says 2 in HELLO; a server that speaks it sets V2 in HELLO_REPLY,
 * else the connection is version 1 and none of what follows is sent by either side):
 *   DATA_UNLOCK {offset, length,      ->  a write (or any access) a page's lock forbids
 *                flags: access}       <-  LOCK_REQUESTs lowering the lock (a grant),
 *                                         DATA_ERROR {error: EACCES refuses}, then REPLY_END
 *                                     <-  LOCK_REQUEST {offset, length, flags: lock value |
 *                                                       LOCK_CLEAN | LOCK_FLUSH}
 *   [DATA_RETURN {flags: RETURN_LOCKED} + bytes, no RETURN_REPLY]  (modified pages, CLEAN)
 *   LOCK_COMPLETED {offset, length,   ->  (no answer)
 *                   error}
 *                                     <-  CHANGE_ATTRIBUTES {length: cluster bytes (0 = as
 *                                         it is), flags: MAY_CACHE, COPY_NONE} (no answer)
 * The server may send LOCK_REQUEST and CHANGE_ATTRIBUTES at any time, also in the middle
 * of an exchange the client began (it acts on them there and goes on waiting for its
 * answer; a LOCK_REQUEST that comes during a DATA_RETURN's is kept for later, at most 16 of
 * them), and outside any exchange: the client's event fd (pager_ops.event_fd) then turns
 * readable, and its user calls vm_object_pager_service. Every LOCK_REQUEST gets exactly one
 * LOCK_COMPLETED, after the pages are done and their returned data sent. The server must
 * keep reading while it waits for one (the client may be sending its own question first).
 *
 * Offsets and lengths are bytes, page aligned; one message carries at most
 * EXTPAGER_MAX_DATA bytes. The client trusts nothing: a message of the wrong type (a
 * LOCK_COMPLETED from the server included), outside the request or the object, malformed,
 * or late fails the exchange with -EIO / -ETIMEDOUT, and the fault that needed it fails
 * with KERN_MEMORY_ERROR; so does a DATA_UNLOCK left unanswered past the deadline. "Late"
 * is per exchange: the whole answer to a DATA_REQUEST (or HELLO, DATA_UNLOCK, one
 * DATA_RETURN, one unsolicited message) must be in within the timeout, however the server
 * paces its bytes. The client never asks for, nor believes, data past the size the server
 * announced.
 */
#ifndef PAGERS_EXTERNAL_PAGER_H
#define PAGERS_EXTERNAL_PAGER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "mmu/pager.h"
#include "mmu/vm_param.h"

#define EXTPAGER_MAGIC 0x52475056u /* "VPGR" */
#define EXTPAGER_VERSION 2u
#define EXTPAGER_MAX_DATA (VM_CLUSTER_MAX * VM_PAGE_SIZE)
#define EXTPAGER_TIMEOUT_MS 10000
#define EXTPAGER_WRITABLE 0x1u /* HELLO_REPLY: the server takes DATA_RETURN */
#define EXTPAGER_V2 0x2u       /* HELLO_REPLY: the server speaks version 2 */
#define EXTPAGER_LOCK_VALUE 0x7u    /* LOCK_REQUEST, DATA_PROVIDED: VM_PROT_* forbidden */
#define EXTPAGER_LOCK_CLEAN 0x100u  /* LOCK_REQUEST: modified pages come back (kept clean) */
#define EXTPAGER_LOCK_FLUSH 0x200u  /* LOCK_REQUEST: pages leave memory (returned first with CLEAN) */
#define EXTPAGER_RETURN_LOCKED 0x1u /* DATA_RETURN: part of a LOCK_REQUEST's answer, no reply */
#define EXTPAGER_MAY_CACHE 0x1u     /* CHANGE_ATTRIBUTES */
#define EXTPAGER_COPY_NONE 0x2u     /* CHANGE_ATTRIBUTES: later copies are eager */

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
	EXTPAGER_DATA_UNLOCK = 11,
	EXTPAGER_LOCK_REQUEST = 12,
	EXTPAGER_LOCK_COMPLETED = 13,
	EXTPAGER_CHANGE_ATTRIBUTES = 14,
};

struct extpager_msg {
	uint32_t magic;  /* EXTPAGER_MAGIC */
	uint32_t type;   /* enum extpager_type */
	uint64_t offset; /* bytes into the object */
	uint64_t length; /* bytes; data messages are followed by this many */
	int32_t error;   /* DATA_ERROR, RETURN_REPLY, LOCK_COMPLETED: a positive errno, 0 = none */
	uint32_t flags;  /* HELLO: version; HELLO_REPLY: WRITABLE, V2; DATA_REQUEST, DATA_UNLOCK:
			    access; DATA_PROVIDED, LOCK_REQUEST: lock value (and LOCK_*);
			    DATA_RETURN: RETURN_LOCKED; CHANGE_ATTRIBUTES: MAY_CACHE, COPY_NONE */
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
 * object per pager. Besides the codes of pager.h, data_request, data_unlock, data_return
 * and service return -ETIMEDOUT (the exchange overran its deadline) and -ECANCELED (the
 * cancel fd turned readable); both leave the connection broken, except a cancel seen
 * before anything was sent, which leaves it as it was. event_fd is readable while the
 * server has sent something on its own, or a LOCK_REQUEST waits to be done, or the
 * connection is gone: service then does it (or reports the failure).
 */
extern const struct pager_ops external_pager_ops;

/* Why the connection of external pager @p failed, in words ("" while it works). The text
 * is @p's and stays valid until it closes. */
const char *external_pager_failure(const struct pager *p);

/* For servers (tools/) and tests: all @n bytes to (@out) or from blocking socket @fd,
 * EINTR retried. 0, or -1: the peer went away, or the socket's own timeouts passed. */
int external_pager_io(int fd, void *p, size_t n, bool out);

/* For servers and tests: one message header (no data) by external_pager_io. 0 or -1. */
int external_pager_send_msg(int fd, uint32_t type, uint64_t offset, uint64_t length, int32_t error, uint32_t flags);

/* For servers: a unix socket listening at @path (an old socket file there replaced) with
 * @backlog: its fd, or -errno (-ENAMETOOLONG: the path does not fit). */
int external_pager_listen(const char *path, int backlog);

#endif

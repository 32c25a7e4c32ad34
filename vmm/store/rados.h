/*
 * A connection to a Ceph RADOS pool, through a helper process.
 *
 * vmm is linked -static-pie and librados exists only as a shared library, so the calls
 * below are carried out by a dynamically linked helper, vmm-rados (tools/rados_server.c),
 * one per connection: a Ceph client of its own, spawned by rados_conn_open with one end of
 * a SOCK_STREAM socketpair as its fd 3, ended by closing that socket (end of file: the
 * helper releases its locks and exits). The helper is $VMM_RADOS when set, else
 * vmm-rados, else rados_server, in the folder of this process's executable.
 *
 * Ceph's own configuration says where the cluster is and who we are: the configuration
 * file given, else Ceph's search ($CEPH_CONF, /etc/ceph/ceph.conf, ~/.ceph/config,
 * ./ceph.conf); CEPH_ARGS (options, and --id/--user/--name when no client id is given);
 * the client id given, else "admin"; the keyring and cephx settings from those. The helper
 * caps Ceph's waits so that nothing waits for ever: client_mount_timeout and
 * rados_mon_op_timeout at most 10 s, rados_osd_op_timeout at most 20 s (a smaller
 * configured value is kept).
 *
 * Every call is one exchange with a deadline (RADOS_TIMEOUT_MS unless set otherwise; a lock
 * also gets its wait): a helper that does not answer in time is killed, the call fails with
 * -ETIMEDOUT, and so does every later call of the connection (-EPIPE); likewise when the
 * helper answers anything malformed. A helper that ends by itself (crashed, killed, out of
 * memory) is replaced: the next call starts a new one, opens the pool again and takes the
 * connection's locks again (shared ones as they were; an exclusive one only if the dead
 * helper's has expired, else it is lost and its unlock fails with -ENOLCK); a read, read of
 * extents or stat that the helper's end cut short is asked again of the new one at once.
 * A new helper that cannot be had fails the call, and is tried again 10 s later at the
 * soonest. The client name (rados_conn_client) is the new helper's from then on. Errors are
 * -errno with one line (error_set)
 * naming the pool/namespace, the object and what failed:
 *   rados vmm/test: packs/00000001: cannot read: No such file or directory
 * A call returns after RADOS has acknowledged it, and a RADOS acknowledgement of a write
 * means every replica has it durably (on disk or in the OSD's journal), so a write is
 * durable when its call returns. A connection may be used from several threads (calls are
 * serialised). A fork child does not share it: its socket is closed in the child, and the
 * child's copy is down as if its helper had died: its first call starts a helper of the
 * child's own, which takes again the shared locks marked rados_conn_share_with_forks
 * (rados_conns_take_over does that at once); the parent's helper and its other locks stay
 * the parent's.
 *
 * The protocol (both ends on one host; integers little-endian, x86-64 only):
 *
 *   frame   := u32 length | body        length = bytes of body, 4 ..RADOS_FRAME_MAX
 *   request := u32 op | fields
 *   reply   := u32 op (the request's) | i32 status | fields if status >= 0
 *                                                  | str detail if status < 0 (-errno)
 *   str     := u32 n | n bytes          no NUL; at most RADOS_NAME_MAX bytes (a detail 1024,
 *                                       a client 63)
 *   bytes   := u32 n | n bytes          at most RADOS_DATA_MAX
 *
 *   op            request fields                               reply fields (status 0)
 *   OPEN 1        str pool, str namespace, str conf,           str client ("client.4123")
 *                 str client id ("" = default)
 *   READ 2        str oid, u64 offset, u32 len                 bytes (n <= len)
 *   READ_EXTENTS 3 str oid, u32 n, n x (u64 offset, u32 len)   bytes (the lens' sum)
 *   WRITE_FULL 4  str oid, u32 exclusive, bytes data           -
 *   APPEND 5      str oid, bytes data                          -
 *   STAT 6        str oid                                      u64 size, u64 mtime_ns
 *   REMOVE 7      str oid                                      -
 *   LIST 8        str prefix                                   u32 more, u32 n, n x str oid
 *   LOCK 9        str oid, u32 exclusive, str cookie,          -
 *                 str description, u32 wait_ms, u32 duration_ms
 *   UNLOCK 10     str oid, str cookie                          -
 *   LOCKERS 11    str oid                                      u32 n, n x (str client,
 *                                                              str cookie, str description,
 *                                                              u32 exclusive)
 *
 * OPEN is the first request, once. LIST is answered by frames with more = 1, then one
 * with more = 0 or an error. Every other request is answered by exactly one frame. The
 * client checks everything: a frame over the limit, a stream that ends inside a frame, a
 * reply to another op, a field past the frame's end or over its limit, bytes left over, a
 * status that is not 0 or -1..-4095, more data than asked for: the helper is killed and
 * the call fails with -EPROTO naming what was wrong.
 *
 * Locks are RADOS advisory locks (cls_lock) named RADOS_LOCK_NAME on the object, held by
 * (this connection's client, cookie); shared ones carry the tag RADOS_LOCK_TAG. Each is
 * taken for a duration (RADOS_LOCK_DURATION_MS unless set otherwise) that the helper renews
 * every third of it while held: a host that dies frees its locks within the duration, a
 * process that dies frees them at once (its helper sees the end of file and unlocks). A
 * lock whose renewal finds it gone (it expired and was taken, or broken by an admin) is
 * lost: rados_conn_unlock then fails with -ENOLCK.
 */
#ifndef VMM_STORE_RADOS_H
#define VMM_STORE_RADOS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define RADOS_DATA_MAX (64u << 20)      /* bytes one write, append or read_extents moves */
#define RADOS_NAME_MAX 2048u            /* bytes of a pool, namespace, object name, cookie... */
#define RADOS_EXTENTS_MAX 1024u         /* ranges of one read_extents */
#define RADOS_FRAME_MAX (RADOS_DATA_MAX + (1u << 20))
#define RADOS_TIMEOUT_MS 30000u         /* the deadline of one exchange */
#define RADOS_LOCK_DURATION_MS 30000u   /* how long a lock outlives its holder's host */
#define RADOS_LOCK_NAME "vmm"
#define RADOS_LOCK_TAG "vmm"

struct rados_conn;

/*
 * Connect to @pool, objects in namespace @nspace ("" or NULL: the default one), with the
 * Ceph configuration file @conf (NULL: Ceph's search) as client @client_id ("admin" for
 * client.admin; NULL: from CEPH_ARGS, else admin). Starts the helper and waits until it is
 * connected and the pool is open. 0 and *out, or -errno with a message: the helper cannot
 * be found or started, the configuration cannot be read, no monitor answered, the pool does
 * not exist (-ENOENT), ...
 */
int rados_conn_open(const char *pool, const char *nspace, const char *conf, const char *client_id,
		    struct rados_conn **out);

/* End the connection: the helper releases every lock and exits; waits for that (at most
 * 10 s, then kills it). Locks are free when this returns. Not while another thread is in a
 * call on @c. NULL is ignored. */
void rados_conn_close(struct rados_conn *c);

/* Shared lock @oid/@cookie, held by @c, is one fork children take too (a pin: whoever runs
 * from the object holds it). */
void rados_conn_share_with_forks(struct rados_conn *c, const char *oid, const char *cookie);

/* In a fork child, before it starts threads of its own: every connection that holds locks
 * shared with forks gets its helper now and takes them again as the child's, so that they
 * hold for as long as the child lives, whatever the parent does. 0, or -errno with a
 * message (the first connection that could not). */
int rados_conns_take_over(void);

/* The deadline of each later exchange (ms, 0: RADOS_TIMEOUT_MS), and the duration of each
 * later lock (ms, at least 1000; 0: RADOS_LOCK_DURATION_MS). */
void rados_conn_set_timeout(struct rados_conn *c, unsigned ms);
void rados_conn_set_lock_duration(struct rados_conn *c, unsigned ms);

/* This connection's Ceph client as lockers name it: "client.4123". */
const char *rados_conn_client(const struct rados_conn *c);

/* The helper's process id (for tests that kill it). */
pid_t rados_conn_helper_pid(const struct rados_conn *c);

/* Read @len bytes of @oid from @offset into @buf: *got says how many there were (fewer at
 * the object's end, 0 past it). -ENOENT when the object does not exist. */
int rados_conn_read(struct rados_conn *c, const char *oid, uint64_t offset, void *buf, size_t len, size_t *got);

struct rados_extent {
	uint64_t off;
	uint32_t len;
};

/* Read @n ranges of @oid (at most RADOS_EXTENTS_MAX, together at most RADOS_DATA_MAX bytes)
 * in one request, into @buf one after another. A range reaching past the object's end
 * fails the call (-EIO). */
int rados_conn_read_extents(struct rados_conn *c, const char *oid, const struct rados_extent *ext, size_t n,
			    void *buf);

/* Replace @oid's content by the @len bytes at @data (at most RADOS_DATA_MAX), atomically:
 * readers see the old or the new bytes. With @exclusive, only if @oid does not exist yet
 * (else -EEXIST), in the same atomic operation. */
int rados_conn_write_full(struct rados_conn *c, const char *oid, const void *data, size_t len, bool exclusive);

/* Append @len bytes (at most RADOS_DATA_MAX) to @oid, creating it if missing. */
int rados_conn_append(struct rados_conn *c, const char *oid, const void *data, size_t len);

/* Size and last modification of @oid (mtime in whole seconds, as librados's C API gives
 * it, in ns). -ENOENT when it does not exist. */
int rados_conn_stat(struct rados_conn *c, const char *oid, uint64_t *size, uint64_t *mtime_ns);

/* Delete @oid. -ENOENT when it does not exist. */
int rados_conn_remove(struct rados_conn *c, const char *oid);

/* Call @fn for every object of the namespace whose name starts with @prefix ("" or NULL:
 * every one), in RADOS's order (none in particular). Objects whose names hold a NUL byte
 * are left out (no call here could name them). @fn must not call into @c. 0 or -errno (@fn
 * may have been called for some objects before a failure). */
int rados_conn_list(struct rados_conn *c, const char *prefix, void (*fn)(void *arg, const char *oid), void *arg);

/*
 * Lock @oid, exclusively or shared, as @cookie (non-empty; one lock per cookie and object)
 * with @description (shown to whoever finds it held). Retries while another holds it for
 * at most @wait_ms, then -EBUSY with a message naming the holders. -EEXIST when this
 * connection holds that lock already. The helper renews the lock until it is unlocked or
 * the connection ends. A lock is kept with the object: locking one that does not exist
 * creates it, empty.
 */
int rados_conn_lock(struct rados_conn *c, const char *oid, bool exclusive, const char *cookie,
		    const char *description, unsigned wait_ms);

/* Release the lock taken as @cookie. -ENOENT when this connection does not hold it,
 * -ENOLCK when it was lost (see above; it is forgotten then). */
int rados_conn_unlock(struct rados_conn *c, const char *oid, const char *cookie);

struct rados_locker {
	const char *client;      /* "client.4123" */
	const char *cookie;
	const char *description;
	bool exclusive;
};

/* Call @fn for each holder of a lock on @oid (none, or no such object: no call). @fn must
 * not call into @c. 0 or -errno. */
int rados_conn_lockers(struct rados_conn *c, const char *oid, void (*fn)(void *arg, const struct rados_locker *l),
		       void *arg);

#endif

/*
 * rados_server, installed as vmm-rados: the RADOS helper of vmm/store/rados.c (protocol
 * and behaviour in vmm/store/rados.h). Linked dynamically with librados, which has no
 * static library; vmm itself is static.
 *
 * usage: vmm-rados   (started by vmm with its socket as fd 3; --help prints this)
 *
 * Connects as OPEN says, then answers one request at a time until the socket's end of file;
 * then releases every lock it holds and exits. A thread renews held locks every third of
 * their duration.
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <rados/librados.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "vmm/clock.h"
#include "vmm/store/rados_frame.h"

#define SOCKET_FD 3
#define DETAIL_MAX 1024u          /* bytes of an error reply's words (the client's limit) */
#define LIST_BATCH_BYTES (64u << 10) /* names sent per LIST frame, about */
#define LOCK_RETRY_NS 100000000u  /* between tries of a lock held by another */
#define RENEW_RETRY_NS 1000000000u /* after a renewal that failed but may work again */
#define CLIENT_MOUNT_TIMEOUT_S 10u /* the caps on Ceph's waits: see rados.h */
#define MON_OP_TIMEOUT_S 10u
#define OSD_OP_TIMEOUT_S 20u
#define CEPH_ENTITY_TYPE_CLIENT 0x08 /* entity_name_t's type of a client */
#define CLS_LOCK_EXCLUSIVE 1         /* cls_lock's lock types */
#define CLS_LOCK_EXCLUSIVE_EPHEMERAL 3

static const char usage[] =
	"usage: vmm-rados\n"
	"The RADOS helper of vmm (see vmm/store/rados.h): vmm starts it with a socket as fd 3 and\n"
	"sends it requests there. It is not run by hand.\n";

static rados_t cluster;
static rados_ioctx_t io;
static struct rados_frame in, out;

/* A lock this helper holds. Fields other than renew_at, lost and lost_err are constant. */
struct held_lock {
	uint64_t id;              /* unique in this process: a renewal finds its lock again by it */
	char *oid, *cookie, *description;
	bool exclusive;
	unsigned duration_ms;
	uint64_t renew_at_ns;     /* CLOCK_MONOTONIC */
	bool lost;                /* a renewal found it gone */
	int lost_err;
	struct held_lock *next;
};

static struct {
	pthread_mutex_t lock;
	pthread_cond_t wake;      /* a lock was added, or stopping */
	struct held_lock *first;
	uint64_t next_id;
	bool stopping;
} held = {.lock = PTHREAD_MUTEX_INITIALIZER, .next_id = 1};

/* ---- replies ------------------------------------------------------------------------- */

static void reply_ok(uint32_t op)
{
	rados_frame_begin(&out, op);
	rados_frame_put_u32(&out, 0);
}

/* An error reply to @op: -@err and the words of @fmt (may be ""). Returns -@err. */
static int __attribute__((format(printf, 3, 4))) reply_error(uint32_t op, int err, const char *fmt, ...)
{
	char detail[DETAIL_MAX + 1];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(detail, sizeof(detail), fmt, ap);
	va_end(ap);
	rados_frame_begin(&out, op);
	err = err > 0 ? err : EIO;
	rados_frame_put_u32(&out, (uint32_t)-err);
	rados_frame_put_str(&out, detail);
	return -err;
}

/* An error reply with no words beyond the errno's. */
static int reply_errno(uint32_t op, int err)
{
	return reply_error(op, err, "%s", "");
}

static int reply_malformed(uint32_t op)
{
	return reply_error(op, EINVAL, "malformed request");
}

/* The reply to @op of a librados call that returned @r and gives nothing back. */
static int reply_result(uint32_t op, int r)
{
	if (r < 0)
		return reply_errno(op, -r);
	reply_ok(op);
	return 0;
}

/* Send the reply built in out. false when the client is gone. */
static bool send_reply(void)
{
	if (rados_frame_finish(&out) != 0) {
		uint32_t op;
		memcpy(&op, out.buf + RADOS_FRAME_HEADER, sizeof(op));
		reply_error(op, ENOMEM, "no memory for the reply");
		rados_frame_finish(&out);
	}
	int r = rados_frame_send(SOCKET_FD, &out, 0);
	rados_frame_trim(&out, 1u << 20);
	return r == 0;
}

/* Overwrite the u32 at @offset of the reply being built (a count known at the end). */
static void reply_patch_u32(size_t offset, uint32_t v)
{
	if (!out.bad)
		memcpy(out.buf + offset, &v, sizeof(v));
}

/* ---- connecting ----------------------------------------------------------------------- */

/* The client name CEPH_ARGS gives (--id X, --user X, --name client.X, -n client.X, or the
 * --opt=X forms; the last wins) into @name; false when none. */
static bool ceph_args_client(char *name, size_t len)
{
	const char *args = getenv("CEPH_ARGS");
	if (!args)
		return false;
	char *copy = strdup(args);
	if (!copy)
		return false;
	bool found = false;
	char *save = NULL;
	for (char *tok = strtok_r(copy, " \t\n", &save); tok; tok = strtok_r(NULL, " \t\n", &save)) {
		const char *value = NULL;
		bool full = false;
		if (strcmp(tok, "--id") == 0 || strcmp(tok, "--user") == 0) {
			value = strtok_r(NULL, " \t\n", &save);
		} else if (strncmp(tok, "--id=", 5) == 0 || strncmp(tok, "--user=", 7) == 0) {
			value = strchr(tok, '=') + 1;
		} else if (strcmp(tok, "--name") == 0 || strcmp(tok, "-n") == 0) {
			value = strtok_r(NULL, " \t\n", &save);
			full = true;
		} else if (strncmp(tok, "--name=", 7) == 0) {
			value = tok + 7;
			full = true;
		}
		if (value && *value) {
			snprintf(name, len, "%s%s", full ? "" : "client.", value);
			found = true;
		}
	}
	free(copy);
	return found;
}

/* Lower Ceph option @option (seconds) to @cap_s when it is 0 (for ever) or above. */
static void cap_timeout(const char *option, unsigned cap_s)
{
	char value[64];
	if (rados_conf_get(cluster, option, value, sizeof(value)) == 0) {
		double now = strtod(value, NULL);
		if (now > 0 && now <= cap_s)
			return;
	}
	snprintf(value, sizeof(value), "%u", cap_s);
	rados_conf_set(cluster, option, value);
}

/* OPEN: connect and open the pool. true when connected (the reply says so either way). */
static bool handle_open(void)
{
	char pool[RADOS_NAME_MAX + 1], nspace[RADOS_NAME_MAX + 1], conf[RADOS_NAME_MAX + 1], id[RADOS_NAME_MAX + 1];
	if (!rados_frame_get_str(&in, pool, sizeof(pool)) || !rados_frame_get_str(&in, nspace, sizeof(nspace)) ||
	    !rados_frame_get_str(&in, conf, sizeof(conf)) || !rados_frame_get_str(&in, id, sizeof(id)) ||
	    !rados_frame_end(&in)) {
		reply_malformed(RADOS_OP_OPEN);
		return false;
	}
	char name[RADOS_NAME_MAX + 16];
	if (id[0])
		snprintf(name, sizeof(name), "%s%s", strncmp(id, "client.", 7) == 0 ? "" : "client.", id);
	else if (!ceph_args_client(name, sizeof(name)))
		snprintf(name, sizeof(name), "client.admin");
	int r = rados_create2(&cluster, "ceph", name, 0);
	if (r < 0) {
		reply_error(RADOS_OP_OPEN, -r, "cannot make a Ceph client named %s", name);
		return false;
	}
	r = rados_conf_read_file(cluster, conf[0] ? conf : NULL);
	if (r < 0) {
		if (conf[0])
			reply_error(RADOS_OP_OPEN, -r, "cannot read the Ceph configuration %s", conf);
		else
			reply_error(RADOS_OP_OPEN, -r,
				    "no Ceph configuration found ($CEPH_CONF, /etc/ceph/ceph.conf, ~/.ceph/config, ./ceph.conf)");
		return false;
	}
	r = rados_conf_parse_env(cluster, NULL);
	if (r < 0) {
		reply_error(RADOS_OP_OPEN, -r, "cannot parse CEPH_ARGS");
		return false;
	}
	cap_timeout("client_mount_timeout", CLIENT_MOUNT_TIMEOUT_S);
	cap_timeout("rados_mon_op_timeout", MON_OP_TIMEOUT_S);
	cap_timeout("rados_osd_op_timeout", OSD_OP_TIMEOUT_S);
	r = rados_connect(cluster);
	if (r < 0) {
		char mons[512] = "", timeout[64] = "?";
		rados_conf_get(cluster, "mon_host", mons, sizeof(mons));
		rados_conf_get(cluster, "client_mount_timeout", timeout, sizeof(timeout));
		if (r == -ETIMEDOUT)
			reply_error(RADOS_OP_OPEN, -r, "no monitor (mon host %s) answered %s within %s s", mons[0] ? mons : "none",
				    name, timeout);
		else
			reply_error(RADOS_OP_OPEN, -r, "cannot connect as %s to mon host %s", name, mons[0] ? mons : "none");
		return false;
	}
	r = rados_ioctx_create(cluster, pool, &io);
	if (r < 0) {
		if (r == -ENOENT)
			reply_error(RADOS_OP_OPEN, -r, "pool '%s' does not exist", pool);
		else
			reply_error(RADOS_OP_OPEN, -r, "cannot open pool '%s'", pool);
		return false;
	}
	rados_ioctx_set_namespace(io, nspace);
	char client[64];
	snprintf(client, sizeof(client), "client.%" PRIu64, rados_get_instance_id(cluster));
	reply_ok(RADOS_OP_OPEN);
	rados_frame_put_str(&out, client);
	return true;
}

/* ---- objects ---------------------------------------------------------------------------- */

/* Each handle_ function answers the request in `in` by building the reply in `out`: 0, or
 * -errno when the reply is an error. */

/* The request's one field, an object name, into @oid (RADOS_NAME_MAX + 1 bytes). */
static bool get_only_oid(char *oid)
{
	return rados_frame_get_str(&in, oid, RADOS_NAME_MAX + 1) && rados_frame_end(&in);
}
static int handle_read(void)
{
	char oid[RADOS_NAME_MAX + 1];
	uint64_t off;
	uint32_t len;
	if (!rados_frame_get_str(&in, oid, sizeof(oid)) || !rados_frame_get_u64(&in, &off) ||
	    !rados_frame_get_u32(&in, &len) || !rados_frame_end(&in) || len > RADOS_DATA_MAX)
		return reply_malformed(RADOS_OP_READ);
	reply_ok(RADOS_OP_READ);
	uint8_t *p = rados_frame_open_bytes(&out, len);
	if (!p)
		return reply_error(RADOS_OP_READ, ENOMEM, "no memory for %u bytes", len);
	int n = rados_read(io, oid, (char *)p, len, off);
	if (n < 0)
		return reply_errno(RADOS_OP_READ, -n);
	rados_frame_close_bytes(&out, (size_t)n);
	return 0;
}

static int handle_read_extents(void)
{
	static struct rados_extent ext[RADOS_EXTENTS_MAX];
	static size_t bytes_read[RADOS_EXTENTS_MAX];
	static int prval[RADOS_EXTENTS_MAX];
	char oid[RADOS_NAME_MAX + 1];
	uint32_t n;
	uint64_t total = 0;
	if (!rados_frame_get_str(&in, oid, sizeof(oid)) || !rados_frame_get_u32(&in, &n) || n > RADOS_EXTENTS_MAX)
		return reply_malformed(RADOS_OP_READ_EXTENTS);
	for (uint32_t i = 0; i < n; i++) {
		if (!rados_frame_get_u64(&in, &ext[i].off) || !rados_frame_get_u32(&in, &ext[i].len))
			return reply_malformed(RADOS_OP_READ_EXTENTS);
		total += ext[i].len;
	}
	if (!rados_frame_end(&in) || total > RADOS_DATA_MAX)
		return reply_malformed(RADOS_OP_READ_EXTENTS);
	reply_ok(RADOS_OP_READ_EXTENTS);
	uint8_t *p = rados_frame_open_bytes(&out, total);
	if (!p)
		return reply_error(RADOS_OP_READ_EXTENTS, ENOMEM, "no memory for %" PRIu64 " bytes", total);
	rados_read_op_t op = rados_create_read_op();
	size_t at = 0;
	for (uint32_t i = 0; i < n; i++) {
		bytes_read[i] = ext[i].len;
		prval[i] = 0;
		if (ext[i].len)
			rados_read_op_read(op, ext[i].off, ext[i].len, (char *)p + at, &bytes_read[i], &prval[i]);
		at += ext[i].len;
	}
	int r = rados_read_op_operate(op, io, oid, 0);
	rados_release_read_op(op);
	if (r < 0)
		return reply_errno(RADOS_OP_READ_EXTENTS, -r);
	for (uint32_t i = 0; i < n; i++) {
		if (prval[i] < 0)
			return reply_error(RADOS_OP_READ_EXTENTS, -prval[i], "range %u (%u bytes at %" PRIu64 ")", i,
					   ext[i].len, ext[i].off);
		if (bytes_read[i] != ext[i].len)
			return reply_error(RADOS_OP_READ_EXTENTS, EIO,
					   "range %u (%u bytes at %" PRIu64 ") reaches past the object's end: %zu bytes there",
					   i, ext[i].len, ext[i].off, bytes_read[i]);
	}
	rados_frame_close_bytes(&out, total);
	return 0;
}

static int handle_write_full(void)
{
	char oid[RADOS_NAME_MAX + 1];
	uint32_t exclusive;
	const uint8_t *data;
	size_t len;
	if (!rados_frame_get_str(&in, oid, sizeof(oid)) || !rados_frame_get_u32(&in, &exclusive) ||
	    !rados_frame_get_bytes(&in, RADOS_DATA_MAX, &data, &len) || !rados_frame_end(&in))
		return reply_malformed(RADOS_OP_WRITE_FULL);
	/* One operation: the existence check and the write are atomic together. */
	rados_write_op_t op = rados_create_write_op();
	if (exclusive)
		rados_write_op_create(op, LIBRADOS_CREATE_EXCLUSIVE, NULL);
	rados_write_op_write_full(op, (const char *)data, len);
	int r = rados_write_op_operate(op, io, oid, NULL, 0);
	rados_release_write_op(op);
	if (r == -EEXIST)
		return reply_error(RADOS_OP_WRITE_FULL, EEXIST, "it exists already");
	return reply_result(RADOS_OP_WRITE_FULL, r);
}

static int handle_append(void)
{
	char oid[RADOS_NAME_MAX + 1];
	const uint8_t *data;
	size_t len;
	if (!rados_frame_get_str(&in, oid, sizeof(oid)) || !rados_frame_get_bytes(&in, RADOS_DATA_MAX, &data, &len) ||
	    !rados_frame_end(&in))
		return reply_malformed(RADOS_OP_APPEND);
	return reply_result(RADOS_OP_APPEND, rados_append(io, oid, (const char *)data, len));
}

static int handle_stat(void)
{
	char oid[RADOS_NAME_MAX + 1];
	if (!get_only_oid(oid))
		return reply_malformed(RADOS_OP_STAT);
	uint64_t size;
	time_t mtime;
	int r = rados_stat(io, oid, &size, &mtime);
	if (r < 0)
		return reply_errno(RADOS_OP_STAT, -r);
	reply_ok(RADOS_OP_STAT);
	rados_frame_put_u64(&out, size);
	rados_frame_put_u64(&out, mtime > 0 ? (uint64_t)mtime * 1000000000u : 0);
	return 0;
}

static int handle_remove(void)
{
	char oid[RADOS_NAME_MAX + 1];
	if (!get_only_oid(oid))
		return reply_malformed(RADOS_OP_REMOVE);
	return reply_result(RADOS_OP_REMOVE, rados_remove(io, oid));
}

/* Offsets of a LIST reply's fields: after length, op and status. */
#define LIST_MORE_AT 12u
#define LIST_COUNT_AT 16u

static void list_begin(void)
{
	reply_ok(RADOS_OP_LIST);
	rados_frame_put_u32(&out, 1); /* more */
	rados_frame_put_u32(&out, 0); /* count */
}

/* LIST sends its frames itself; false when the client is gone. */
static bool handle_list(void)
{
	char prefix[RADOS_NAME_MAX + 1];
	if (!rados_frame_get_str(&in, prefix, sizeof(prefix)) || !rados_frame_end(&in)) {
		reply_malformed(RADOS_OP_LIST);
		return send_reply();
	}
	size_t plen = strlen(prefix);
	rados_list_ctx_t ctx;
	int r = rados_nobjects_list_open(io, &ctx);
	if (r < 0) {
		reply_errno(RADOS_OP_LIST, -r);
		return send_reply();
	}
	uint32_t count = 0;
	list_begin();
	for (;;) {
		const char *entry;
		size_t size;
		r = rados_nobjects_list_next2(ctx, &entry, NULL, NULL, &size, NULL, NULL);
		if (r < 0)
			break;
		if (size < plen || memcmp(entry, prefix, plen) != 0 || size > RADOS_NAME_MAX || size == 0 ||
		    memchr(entry, '\0', size))
			continue;
		rados_frame_put_bytes(&out, entry, size);
		count++;
		if (out.size >= LIST_BATCH_BYTES) {
			reply_patch_u32(LIST_COUNT_AT, count);
			if (!send_reply()) {
				rados_nobjects_list_close(ctx);
				return false;
			}
			count = 0;
			list_begin();
		}
	}
	rados_nobjects_list_close(ctx);
	if (r != -ENOENT) {
		reply_errno(RADOS_OP_LIST, -r);
	} else {
		reply_patch_u32(LIST_MORE_AT, 0);
		reply_patch_u32(LIST_COUNT_AT, count);
	}
	return send_reply();
}

/* ---- locks ------------------------------------------------------------------------------- */

static int take_lock(const char *oid, const char *cookie, const char *description, bool exclusive,
		     unsigned duration_ms, uint8_t flags)
{
	struct timeval duration = {(time_t)(duration_ms / 1000), (suseconds_t)(duration_ms % 1000) * 1000};
	if (exclusive)
		return rados_lock_exclusive(io, oid, RADOS_LOCK_NAME, cookie, description, &duration, flags);
	return rados_lock_shared(io, oid, RADOS_LOCK_NAME, cookie, RADOS_LOCK_TAG, description, &duration, flags);
}

/* The held lock (@oid, @cookie), or NULL; held.lock held. */
static struct held_lock **held_find(const char *oid, const char *cookie)
{
	for (struct held_lock **p = &held.first; *p; p = &(*p)->next)
		if (strcmp((*p)->oid, oid) == 0 && strcmp((*p)->cookie, cookie) == 0)
			return p;
	return NULL;
}

static void held_free(struct held_lock *h)
{
	free(h->oid);
	free(h->cookie);
	free(h->description);
	free(h);
}

/* Renew every held lock a third of its duration after it was taken or last renewed. A
 * renewal must find the lock still ours (LIBRADOS_LOCK_FLAG_MUST_RENEW): one that expired
 * meanwhile is lost, never silently taken again, and a renewal that crosses an unlock
 * cannot take it back. */
static void *renew_main(void *arg)
{
	(void)arg;
	char oid[RADOS_NAME_MAX + 1], cookie[RADOS_NAME_MAX + 1], description[RADOS_NAME_MAX + 1];
	pthread_mutex_lock(&held.lock);
	while (!held.stopping) {
		uint64_t now = clock_monotonic_ns(), next = UINT64_MAX;
		struct held_lock *due = NULL;
		for (struct held_lock *h = held.first; h && !due; h = h->next) {
			if (h->lost)
				continue;
			if (h->renew_at_ns <= now)
				due = h;
			else if (h->renew_at_ns < next)
				next = h->renew_at_ns;
		}
		if (!due) {
			if (next == UINT64_MAX) {
				pthread_cond_wait(&held.wake, &held.lock);
			} else {
				struct timespec t = {(time_t)(next / 1000000000u), (long)(next % 1000000000u)};
				pthread_cond_timedwait(&held.wake, &held.lock, &t);
			}
			continue;
		}
		uint64_t id = due->id;
		bool exclusive = due->exclusive;
		unsigned duration_ms = due->duration_ms;
		snprintf(oid, sizeof(oid), "%s", due->oid);
		snprintf(cookie, sizeof(cookie), "%s", due->cookie);
		snprintf(description, sizeof(description), "%s", due->description);
		due->renew_at_ns = now + (uint64_t)duration_ms * 1000000u / 3;
		pthread_mutex_unlock(&held.lock);
		int r = take_lock(oid, cookie, description, exclusive, duration_ms, LIBRADOS_LOCK_FLAG_MUST_RENEW);
		pthread_mutex_lock(&held.lock);
		struct held_lock *h = held.first;
		while (h && h->id != id)
			h = h->next;
		if (!h || r == 0)
			continue;
		if (r == -ENOENT || r == -EBUSY) {
			h->lost = true;
			h->lost_err = r;
		} else {
			uint64_t retry = clock_monotonic_ns() + RENEW_RETRY_NS;
			if (retry < h->renew_at_ns)
				h->renew_at_ns = retry;
		}
	}
	pthread_mutex_unlock(&held.lock);
	return NULL;
}

/*
 * Read the lockers of @oid's lock through cls_lock's get_info (librados's C API has no call
 * that gives their descriptions) into @f, as a LOCKERS reply's entries: u32 count, then
 * (str client, str cookie, str description, u32 exclusive) each. 0 or -errno (-ENOENT:
 * no object, no lockers: count 0).
 *
 * The reply is Ceph's encoding: each struct starts with u8 version, u8 compat, u32 length;
 * strings are u32 length + bytes; maps u32 count + pairs. cls_lock_get_info_reply {
 * map<locker_id_t {entity_name_t {u8 type, i64 num}, string cookie},
 *     locker_info_t {utime_t {u32 sec, u32 nsec}, entity_addr_t, string description}>,
 * u8 lock_type, string tag }. An entity_addr_t is u8 1 and a struct, or (legacy) 136 bytes
 * starting with a zero byte.
 */
struct ceph_struct {
	size_t end; /* offset of the byte after the struct */
};

static bool ceph_struct_begin(struct rados_frame *f, struct ceph_struct *s)
{
	uint8_t version, compat;
	uint32_t len;
	if (!rados_frame_get_u8(f, &version) || !rados_frame_get_u8(f, &compat) || !rados_frame_get_u32(f, &len))
		return false;
	if (compat > 1 || len > f->size - f->pos) {
		f->bad = true;
		return false;
	}
	s->end = f->pos + len;
	return true;
}

/* Skip what a newer version added; false when the fields read went past the struct. */
static bool ceph_struct_end(struct rados_frame *f, const struct ceph_struct *s)
{
	if (f->bad || f->pos > s->end) {
		f->bad = true;
		return false;
	}
	f->pos = s->end;
	return true;
}

static int read_lockers(const char *oid, struct rados_frame *reply)
{
	uint8_t request[4 + 2 + 4 + 4 + sizeof(RADOS_LOCK_NAME)];
	uint32_t name_len = sizeof(RADOS_LOCK_NAME) - 1, struct_len = 4 + name_len;
	request[0] = 1; /* cls_lock_get_info_op, version 1 */
	request[1] = 1;
	memcpy(request + 2, &struct_len, 4);
	memcpy(request + 6, &name_len, 4);
	memcpy(request + 10, RADOS_LOCK_NAME, name_len);
	size_t request_len = 10 + name_len;

	size_t cap = 64u << 10;
	char *buf = NULL;
	int r;
	for (;;) {
		char *b = realloc(buf, cap);
		if (!b) {
			free(buf);
			return -ENOMEM;
		}
		buf = b;
		r = rados_exec(io, oid, "lock", "get_info", (const char *)request, request_len, buf, cap);
		if (r != -ERANGE || cap >= (16u << 20))
			break;
		cap *= 4;
	}
	size_t count_at = reply->size;
	rados_frame_put_u32(reply, 0);
	if (r == -ENOENT) {
		free(buf);
		return 0;
	}
	if (r < 0) {
		free(buf);
		return r;
	}
	struct rados_frame f;
	rados_frame_wrap(&f, buf, (size_t)r);
	struct ceph_struct info, id, li, addr;
	uint32_t n = 0, written = 0;
	uint8_t type = 0, lock_type = 0;
	uint64_t num;
	char cookie[RADOS_NAME_MAX + 1], description[RADOS_NAME_MAX + 1], client[64];
	bool ok = ceph_struct_begin(&f, &info) && rados_frame_get_u32(&f, &n);
	/* The lock type follows the map: gather the entries, then write them with it. */
	struct rados_frame entries = {0};
	for (uint32_t i = 0; ok && i < n; i++) {
		ok = ceph_struct_begin(&f, &id) && rados_frame_get_u8(&f, &type) && rados_frame_get_u64(&f, &num) &&
		     rados_frame_get_str(&f, cookie, sizeof(cookie)) && ceph_struct_end(&f, &id) &&
		     ceph_struct_begin(&f, &li) && rados_frame_skip(&f, 8);
		uint8_t marker = 0;
		if (ok && f.pos < f.size)
			marker = f.buf[f.pos];
		if (ok && marker == 1)
			ok = rados_frame_skip(&f, 1) && ceph_struct_begin(&f, &addr) && ceph_struct_end(&f, &addr);
		else if (ok)
			ok = rados_frame_skip(&f, 136);
		ok = ok && rados_frame_get_str(&f, description, sizeof(description)) && ceph_struct_end(&f, &li);
		if (!ok)
			break;
		if (type == CEPH_ENTITY_TYPE_CLIENT)
			snprintf(client, sizeof(client), "client.%" PRId64, (int64_t)num);
		else
			snprintf(client, sizeof(client), "entity%u.%" PRId64, type, (int64_t)num);
		rados_frame_put_str(&entries, client);
		rados_frame_put_str(&entries, cookie);
		rados_frame_put_str(&entries, description);
		written++;
	}
	ok = ok && rados_frame_get_u8(&f, &lock_type);
	free(buf);
	if (!ok || entries.bad) {
		rados_frame_free(&entries);
		return -EIO;
	}
	bool exclusive = lock_type == CLS_LOCK_EXCLUSIVE || lock_type == CLS_LOCK_EXCLUSIVE_EPHEMERAL;
	rados_frame_wrap(&f, entries.buf, entries.size);
	for (uint32_t i = 0; i < written; i++) {
		rados_frame_get_str(&f, client, sizeof(client));
		rados_frame_get_str(&f, cookie, sizeof(cookie));
		rados_frame_get_str(&f, description, sizeof(description));
		rados_frame_put_str(reply, client);
		rados_frame_put_str(reply, cookie);
		rados_frame_put_str(reply, description);
		rados_frame_put_u32(reply, exclusive);
	}
	rados_frame_free(&entries);
	if (!reply->bad)
		memcpy(reply->buf + count_at, &written, sizeof(written));
	return 0;
}

/* "held exclusively by client.4123 (cookie 'a': 'VM web'), ..." into @buf. */
static void describe_holders(const char *oid, char *buf, size_t len)
{
	struct rados_frame f = {0};
	rados_frame_begin(&f, 0);
	size_t first = f.size;
	int r = read_lockers(oid, &f);
	f.pos = first;
	uint32_t n = 0;
	if (r < 0 || !rados_frame_get_u32(&f, &n) || n == 0) {
		if (r < 0)
			snprintf(buf, len, "held by another (who holds it cannot be read: %s)", strerror(-r));
		else
			snprintf(buf, len, "held by another until a moment ago");
		rados_frame_free(&f);
		return;
	}
	size_t at = 0;
	for (uint32_t i = 0; i < n && at < len; i++) {
		char client[64], cookie[RADOS_NAME_MAX + 1], description[RADOS_NAME_MAX + 1];
		uint32_t exclusive = 0;
		rados_frame_get_str(&f, client, sizeof(client));
		rados_frame_get_str(&f, cookie, sizeof(cookie));
		rados_frame_get_str(&f, description, sizeof(description));
		rados_frame_get_u32(&f, &exclusive);
		int k = snprintf(buf + at, len - at, "%s%s (cookie '%s': '%s')",
				 i ? ", " : exclusive ? "held exclusively by " : "held shared by ", client, cookie, description);
		at += k > 0 ? (size_t)k : 0;
	}
	rados_frame_free(&f);
}

static int handle_lock(void)
{
	char oid[RADOS_NAME_MAX + 1], cookie[RADOS_NAME_MAX + 1], description[RADOS_NAME_MAX + 1];
	uint32_t exclusive, wait_ms, duration_ms;
	if (!rados_frame_get_str(&in, oid, sizeof(oid)) || !rados_frame_get_u32(&in, &exclusive) ||
	    !rados_frame_get_str(&in, cookie, sizeof(cookie)) || !rados_frame_get_str(&in, description, sizeof(description)) ||
	    !rados_frame_get_u32(&in, &wait_ms) || !rados_frame_get_u32(&in, &duration_ms) || !rados_frame_end(&in) ||
	    !cookie[0] || duration_ms < 1000)
		return reply_malformed(RADOS_OP_LOCK);
	pthread_mutex_lock(&held.lock);
	bool holding = held_find(oid, cookie) != NULL;
	pthread_mutex_unlock(&held.lock);
	if (holding)
		return reply_error(RADOS_OP_LOCK, EEXIST, "this connection holds it already (cookie '%s')", cookie);
	uint64_t deadline = clock_monotonic_ns() + (uint64_t)wait_ms * 1000000u;
	int r;
	for (;;) {
		r = take_lock(oid, cookie, description, exclusive, duration_ms, 0);
		uint64_t now = clock_monotonic_ns();
		if ((r != -EBUSY && r != -EEXIST) || now >= deadline)
			break;
		uint64_t pause = deadline - now < LOCK_RETRY_NS ? deadline - now : LOCK_RETRY_NS;
		struct timespec t = {0, (long)pause};
		nanosleep(&t, NULL);
	}
	if (r == -EBUSY || r == -EEXIST) {
		char holders[DETAIL_MAX - 64];
		describe_holders(oid, holders, sizeof(holders));
		return reply_error(RADOS_OP_LOCK, EBUSY, "%s", holders);
	}
	if (r < 0)
		return reply_errno(RADOS_OP_LOCK, -r);
	struct held_lock *h = calloc(1, sizeof(*h));
	if (h) {
		h->oid = strdup(oid);
		h->cookie = strdup(cookie);
		h->description = strdup(description);
	}
	if (!h || !h->oid || !h->cookie || !h->description) {
		rados_unlock(io, oid, RADOS_LOCK_NAME, cookie);
		if (h)
			held_free(h);
		return reply_error(RADOS_OP_LOCK, ENOMEM, "no memory to keep the lock");
	}
	h->exclusive = exclusive;
	h->duration_ms = duration_ms;
	h->renew_at_ns = clock_monotonic_ns() + (uint64_t)duration_ms * 1000000u / 3;
	pthread_mutex_lock(&held.lock);
	h->id = held.next_id++;
	h->next = held.first;
	held.first = h;
	pthread_cond_signal(&held.wake);
	pthread_mutex_unlock(&held.lock);
	reply_ok(RADOS_OP_LOCK);
	return 0;
}

static int handle_unlock(void)
{
	char oid[RADOS_NAME_MAX + 1], cookie[RADOS_NAME_MAX + 1];
	if (!rados_frame_get_str(&in, oid, sizeof(oid)) || !rados_frame_get_str(&in, cookie, sizeof(cookie)) ||
	    !rados_frame_end(&in))
		return reply_malformed(RADOS_OP_UNLOCK);
	pthread_mutex_lock(&held.lock);
	struct held_lock **p = held_find(oid, cookie), *h = p ? *p : NULL;
	if (h)
		*p = h->next;
	pthread_mutex_unlock(&held.lock);
	if (!h)
		return reply_error(RADOS_OP_UNLOCK, ENOENT, "this connection holds no lock as cookie '%s'", cookie);
	int r = rados_unlock(io, oid, RADOS_LOCK_NAME, cookie);
	bool lost = h->lost;
	int lost_err = h->lost_err;
	held_free(h);
	if (lost)
		return reply_error(RADOS_OP_UNLOCK, ENOLCK, "it was lost: a renewal found it %s",
				   lost_err == -EBUSY ? "taken by another" : "gone");
	if (r == -ENOENT)
		return reply_error(RADOS_OP_UNLOCK, ENOLCK, "it was lost: gone when unlocked");
	return reply_result(RADOS_OP_UNLOCK, r);
}

static int handle_lockers(void)
{
	char oid[RADOS_NAME_MAX + 1];
	if (!get_only_oid(oid))
		return reply_malformed(RADOS_OP_LOCKERS);
	reply_ok(RADOS_OP_LOCKERS);
	int r = read_lockers(oid, &out);
	if (r == -EIO)
		return reply_error(RADOS_OP_LOCKERS, EIO, "cannot decode the lock's description from cls_lock");
	if (r < 0)
		return reply_errno(RADOS_OP_LOCKERS, -r);
	return 0;
}

/* ---- the loop -------------------------------------------------------------------------- */

/* Answer the request in `in`. false when the client is gone. */
static bool serve_one(void)
{
	uint32_t op;
	if (!rados_frame_get_u32(&in, &op)) {
		reply_malformed(0);
		return send_reply();
	}
	switch (op) {
	case RADOS_OP_READ: handle_read(); break;
	case RADOS_OP_READ_EXTENTS: handle_read_extents(); break;
	case RADOS_OP_WRITE_FULL: handle_write_full(); break;
	case RADOS_OP_APPEND: handle_append(); break;
	case RADOS_OP_STAT: handle_stat(); break;
	case RADOS_OP_REMOVE: handle_remove(); break;
	case RADOS_OP_LIST: return handle_list();
	case RADOS_OP_LOCK: handle_lock(); break;
	case RADOS_OP_UNLOCK: handle_unlock(); break;
	case RADOS_OP_LOCKERS: handle_lockers(); break;
	default: reply_error(op, EOPNOTSUPP, "unknown request %u", op); break;
	}
	return send_reply();
}

/* Stop renewing, release every held lock, disconnect. */
static void finish(pthread_t renewer)
{
	pthread_mutex_lock(&held.lock);
	held.stopping = true;
	pthread_cond_signal(&held.wake);
	pthread_mutex_unlock(&held.lock);
	pthread_join(renewer, NULL);
	while (held.first) {
		struct held_lock *h = held.first;
		held.first = h->next;
		if (!h->lost)
			rados_unlock(io, h->oid, RADOS_LOCK_NAME, h->cookie);
		held_free(h);
	}
	rados_ioctx_destroy(io);
	rados_shutdown(cluster);
}

int main(int argc, char **argv)
{
	if (argc > 1) {
		bool help = strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0;
		fputs(usage, help ? stdout : stderr);
		return help ? 0 : 2;
	}
	struct stat st;
	if (fstat(SOCKET_FD, &st) != 0 || !S_ISSOCK(st.st_mode)) {
		fprintf(stderr, "vmm-rados: fd %d is not a socket: vmm starts this helper with its socket there\n", SOCKET_FD);
		return 2;
	}
	signal(SIGPIPE, SIG_IGN);

	uint32_t op = 0;
	int r = rados_frame_recv(SOCKET_FD, &in, 0);
	if (r == RADOS_FRAME_EOF)
		return 0;
	if (r < 0 || !rados_frame_get_u32(&in, &op) || op != RADOS_OP_OPEN) {
		fprintf(stderr, "vmm-rados: the first request is not a well-formed OPEN\n");
		return 2;
	}
	bool connected = handle_open();
	if (!send_reply() || !connected) {
		if (io)
			rados_ioctx_destroy(io);
		if (cluster)
			rados_shutdown(cluster);
		return 1;
	}

	pthread_condattr_t attr;
	pthread_condattr_init(&attr);
	pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
	pthread_cond_init(&held.wake, &attr);
	pthread_condattr_destroy(&attr);
	pthread_t renewer;
	r = pthread_create(&renewer, NULL, renew_main, NULL);
	if (r != 0) {
		fprintf(stderr, "vmm-rados: cannot start the lock renewal thread: %s\n", strerror(r));
		return 1;
	}
	for (;;) {
		r = rados_frame_recv(SOCKET_FD, &in, 0);
		/* -EPROTO: the client closed in the middle of a frame (it was killed); its end is
		 * news to nobody, and its locks go with this process. */
		if (r == RADOS_FRAME_EOF || r == -EPROTO)
			break;
		if (r < 0) {
			fprintf(stderr, "vmm-rados: cannot read a request: %s\n", strerror(-r));
			break;
		}
		if (!serve_one())
			break;
	}
	finish(renewer);
	return 0;
}

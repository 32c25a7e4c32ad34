/* Frames of the vmm <-> RADOS helper protocol. See rados_frame.h and rados.h. */
#include "vmm/store/rados_frame.h"

#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "vmm/clock.h"

_Static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "the frames are little-endian: fields are copied as they are");

void rados_frame_free(struct rados_frame *f)
{
	free(f->buf);
	memset(f, 0, sizeof(*f));
}

void rados_frame_trim(struct rados_frame *f, size_t keep)
{
	if (f->cap > keep)
		rados_frame_free(f);
}

/* Room for @n more bytes at f->size; false (and the frame bad) when it cannot be had. */
static bool rados_frame_room(struct rados_frame *f, size_t n)
{
	const size_t limit = RADOS_FRAME_HEADER + RADOS_FRAME_MAX;
	if (f->bad)
		return false;
	if (n > limit || f->size > limit - n) {
		f->bad = true;
		return false;
	}
	size_t need = f->size + n;
	if (need <= f->cap)
		return true;
	size_t cap = f->cap ? f->cap : 4096;
	while (cap < need)
		cap *= 2;
	uint8_t *b = realloc(f->buf, cap);
	if (!b) {
		f->bad = true;
		return false;
	}
	f->buf = b;
	f->cap = cap;
	return true;
}

static void rados_frame_put(struct rados_frame *f, const void *p, size_t n)
{
	if (!rados_frame_room(f, n))
		return;
	if (n)
		memcpy(f->buf + f->size, p, n);
	f->size += n;
}

void rados_frame_begin(struct rados_frame *f, uint32_t op)
{
	f->size = 0;
	f->pos = 0;
	f->bad = false;
	uint32_t length = 0;
	rados_frame_put(f, &length, sizeof(length));
	rados_frame_put_u32(f, op);
}

void rados_frame_put_u32(struct rados_frame *f, uint32_t v)
{
	rados_frame_put(f, &v, sizeof(v));
}

void rados_frame_put_u64(struct rados_frame *f, uint64_t v)
{
	rados_frame_put(f, &v, sizeof(v));
}

void rados_frame_put_bytes(struct rados_frame *f, const void *p, size_t n)
{
	if (n > UINT32_MAX) {
		f->bad = true;
		return;
	}
	rados_frame_put_u32(f, (uint32_t)n);
	rados_frame_put(f, p, n);
}

void rados_frame_put_str(struct rados_frame *f, const char *s)
{
	rados_frame_put_bytes(f, s, strlen(s));
}

uint8_t *rados_frame_open_bytes(struct rados_frame *f, size_t max)
{
	rados_frame_put_u32(f, 0);
	if (!rados_frame_room(f, max))
		return NULL;
	return f->buf + f->size;
}

void rados_frame_close_bytes(struct rados_frame *f, size_t n)
{
	if (f->bad)
		return;
	uint32_t n32 = (uint32_t)n;
	memcpy(f->buf + f->size - sizeof(n32), &n32, sizeof(n32));
	f->size += n;
}

int rados_frame_finish(struct rados_frame *f)
{
	if (f->bad || f->size < RADOS_FRAME_HEADER)
		return -EMSGSIZE;
	uint32_t length = (uint32_t)(f->size - RADOS_FRAME_HEADER);
	memcpy(f->buf, &length, sizeof(length));
	return 0;
}

void rados_frame_rewind(struct rados_frame *f)
{
	f->pos = RADOS_FRAME_HEADER;
	f->bad = false;
}

void rados_frame_wrap(struct rados_frame *f, const void *p, size_t n)
{
	memset(f, 0, sizeof(*f));
	f->buf = (uint8_t *)p;
	f->size = n;
}

/* The next @n bytes (NULL, the frame bad, when fewer are left). */
static const uint8_t *rados_frame_take(struct rados_frame *f, size_t n)
{
	if (f->bad || f->size - f->pos < n) {
		f->bad = true;
		return NULL;
	}
	const uint8_t *p = f->buf + f->pos;
	f->pos += n;
	return p;
}

bool rados_frame_get_u8(struct rados_frame *f, uint8_t *v)
{
	const uint8_t *p = rados_frame_take(f, sizeof(*v));
	if (p)
		*v = *p;
	return p != NULL;
}

bool rados_frame_get_u32(struct rados_frame *f, uint32_t *v)
{
	const uint8_t *p = rados_frame_take(f, sizeof(*v));
	if (p)
		memcpy(v, p, sizeof(*v));
	return p != NULL;
}

bool rados_frame_get_u64(struct rados_frame *f, uint64_t *v)
{
	const uint8_t *p = rados_frame_take(f, sizeof(*v));
	if (p)
		memcpy(v, p, sizeof(*v));
	return p != NULL;
}

bool rados_frame_get_bytes(struct rados_frame *f, size_t max, const uint8_t **p, size_t *n)
{
	uint32_t len;
	if (!rados_frame_get_u32(f, &len))
		return false;
	if (len > max) {
		f->bad = true;
		return false;
	}
	*p = rados_frame_take(f, len);
	*n = len;
	return *p != NULL;
}

bool rados_frame_get_str(struct rados_frame *f, char *out, size_t outsz)
{
	const uint8_t *p;
	size_t n;
	if (!rados_frame_get_bytes(f, outsz - 1, &p, &n))
		return false;
	if (memchr(p, '\0', n)) {
		f->bad = true;
		return false;
	}
	memcpy(out, p, n);
	out[n] = '\0';
	return true;
}

bool rados_frame_skip(struct rados_frame *f, size_t n)
{
	return rados_frame_take(f, n) != NULL;
}

bool rados_frame_end(const struct rados_frame *f)
{
	return !f->bad && f->pos == f->size;
}

/* Wait until @fd is ready for @events or @deadline_ns passes (0: no deadline). 0,
 * -ETIMEDOUT, or -errno. */
static int rados_frame_wait(int fd, short events, uint64_t deadline_ns)
{
	if (!deadline_ns)
		return 0;
	for (;;) {
		uint64_t now = clock_monotonic_ns();
		if (now >= deadline_ns)
			return -ETIMEDOUT;
		/* Rounded up: a wait never ends before the deadline it is for. */
		int ms = (int)((deadline_ns - now + 999999u) / 1000000u);
		struct pollfd p = {fd, events, 0};
		int n = poll(&p, 1, ms);
		if (n > 0)
			return 0;
		if (n < 0 && errno != EINTR)
			return -errno;
	}
}

int rados_frame_send(int fd, const struct rados_frame *f, uint64_t deadline_ns)
{
	const uint8_t *p = f->buf;
	size_t left = f->size;
	int flags = MSG_NOSIGNAL | (deadline_ns ? MSG_DONTWAIT : 0);
	while (left) {
		int r = rados_frame_wait(fd, POLLOUT, deadline_ns);
		if (r)
			return r;
		ssize_t n = send(fd, p, left, flags);
		if (n < 0 && (errno == EINTR || errno == EAGAIN))
			continue;
		if (n < 0)
			return -errno;
		p += n;
		left -= (size_t)n;
	}
	return 0;
}

/* Receive exactly @n bytes into @p. 0, 1 when the stream ended before the first byte,
 * -EPROTO when it ended after it, -ETIMEDOUT or -errno. */
static int rados_frame_recv_exactly(int fd, uint8_t *p, size_t n, uint64_t deadline_ns)
{
	int flags = deadline_ns ? MSG_DONTWAIT : 0;
	size_t got = 0;
	while (got < n) {
		int r = rados_frame_wait(fd, POLLIN, deadline_ns);
		if (r)
			return r;
		ssize_t k = recv(fd, p + got, n - got, flags);
		if (k < 0 && (errno == EINTR || errno == EAGAIN))
			continue;
		/* A peer that closed with our bytes unread resets the stream once its own are read. */
		if (k < 0 && errno != ECONNRESET)
			return -errno;
		if (k < 0)
			k = 0;
		if (k == 0)
			return got ? -EPROTO : 1;
		got += (size_t)k;
	}
	return 0;
}

int rados_frame_recv(int fd, struct rados_frame *f, uint64_t deadline_ns)
{
	uint32_t length;
	f->size = 0;
	f->bad = false;
	int r = rados_frame_recv_exactly(fd, (uint8_t *)&length, sizeof(length), deadline_ns);
	if (r)
		return r == 1 ? RADOS_FRAME_EOF : r;
	if (length < 4 || length > RADOS_FRAME_MAX)
		return -EMSGSIZE;
	rados_frame_put(f, &length, sizeof(length));
	if (!rados_frame_room(f, length))
		return -ENOMEM;
	r = rados_frame_recv_exactly(fd, f->buf + f->size, length, deadline_ns);
	if (r)
		return r == 1 ? -EPROTO : r;
	f->size += length;
	rados_frame_rewind(f);
	return 0;
}

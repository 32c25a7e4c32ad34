#include "fake_pager.h"

#include <check.h>
#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "pagers/external_pager.h"

uint8_t fake_pager_byte(uint64_t offset)
{
	return (uint8_t)('a' + (offset / VM_PAGE_SIZE) % 26);
}

/* All of @n bytes, or false: the client went away. */
static bool fp_io(int fd, void *p, size_t n, bool out)
{
	return external_pager_io(fd, p, n, out) == 0;
}

static bool fp_msg(int fd, uint32_t type, uint64_t offset, uint64_t length, uint32_t flags)
{
	return external_pager_send_msg(fd, type, offset, length, 0, flags) == 0;
}

/* The answer of a DATA_REQUEST in one buffer: provided pages, then unavailable ones. */
static size_t fp_answer(const struct fake_pager *fp, const struct extpager_msg *q, uint8_t *out)
{
	uint64_t has = q->offset >= fp->size ? 0 : fp->size - q->offset;
	has = has < q->length ? (has + VM_PAGE_SIZE - 1) & ~(uint64_t)(VM_PAGE_SIZE - 1) : q->length;
	size_t n = 0;
	struct extpager_msg m = {EXTPAGER_MAGIC, EXTPAGER_DATA_PROVIDED, q->offset, has, 0, 0};
	if (has) {
		memcpy(out, &m, sizeof(m));
		n += sizeof(m);
		for (uint64_t i = 0; i < has; i++)
			out[n++] = !fp->data ? fake_pager_byte(q->offset + i)
				   : q->offset + i < fp->size ? fp->data[q->offset + i] : 0;
	}
	if (has < q->length) {
		m = (struct extpager_msg){EXTPAGER_MAGIC, EXTPAGER_DATA_UNAVAILABLE, q->offset + has, q->length - has, 0, 0};
		memcpy(out + n, &m, sizeof(m));
		n += sizeof(m);
	}
	m = (struct extpager_msg){EXTPAGER_MAGIC, EXTPAGER_REPLY_END, 0, 0, 0, 0};
	memcpy(out + n, &m, sizeof(m));
	return n + sizeof(m);
}

static void *fp_main(void *arg)
{
	struct fake_pager *fp = arg;
	if (fp->listener >= 0) {
		fp->peer = accept(fp->listener, NULL, NULL);
		if (fp->peer < 0)
			return NULL;
	}
	uint8_t *answer = malloc(EXTPAGER_MAX_DATA + 4 * sizeof(struct extpager_msg));
	struct extpager_msg m;
	while (answer && fp_io(fp->peer, &m, sizeof(m), false)) {
		bool ok = true;
		if (m.type == EXTPAGER_HELLO) {
			ok = fp_msg(fp->peer, EXTPAGER_HELLO_REPLY, 0, fp->size,
				    fp->mode == FAKE_PAGER_READ_ONLY ? 0 : EXTPAGER_WRITABLE);
		} else if (m.type == EXTPAGER_DATA_RETURN) {
			atomic_fetch_add(&fp->returns, 1);
			ok = m.length <= EXTPAGER_MAX_DATA && fp_io(fp->peer, answer, m.length, false);
			if (ok && fp->data && m.offset <= fp->size && m.length <= fp->size - m.offset)
				memcpy(fp->data + m.offset, answer, m.length);
			ok = ok && fp_msg(fp->peer, EXTPAGER_RETURN_REPLY, m.offset, 0, 0);
		} else if (m.type == EXTPAGER_TERMINATE) {
			atomic_fetch_add(&fp->terminates, 1);
		} else if (m.type == EXTPAGER_DATA_REQUEST) {
			atomic_store(&fp->last_offset, m.offset);
			atomic_store(&fp->last_length, m.length);
			atomic_fetch_add(&fp->requests, 1);
			size_t n = m.length <= EXTPAGER_MAX_DATA ? fp_answer(fp, &m, answer) : 0;
			if (fp->mode == FAKE_PAGER_SERVE || fp->mode == FAKE_PAGER_READ_ONLY || fp->mode == FAKE_PAGER_KEEP) {
				ok = fp_io(fp->peer, answer, n, true);
			} else if (fp->mode == FAKE_PAGER_DRIP) {
				for (size_t i = 0; ok && i < n; i++) {
					struct timespec t = {0, FAKE_PAGER_DRIP_MS * 1000000L};
					nanosleep(&t, NULL);
					ok = fp_io(fp->peer, answer + i, 1, true);
				}
			} else {
				/* Stalled: only the client's going away ends it. */
				struct pollfd p = {fp->peer, POLLIN, 0};
				while (poll(&p, 1, -1) < 0 && errno == EINTR)
					;
				ok = false;
			}
		}
		if (!ok)
			break;
	}
	free(answer);
	return NULL;
}

/* 0, or -ENOMEM (FAKE_PAGER_KEEP's data). */
static int fp_init(struct fake_pager *fp, enum fake_pager_mode mode, uint64_t size)
{
	memset(fp, 0, sizeof(*fp));
	fp->mode = mode;
	fp->size = size;
	fp->fd = fp->peer = fp->listener = -1;
	if (mode == FAKE_PAGER_KEEP) {
		fp->data = malloc(size ? size : 1);
		if (!fp->data)
			return -ENOMEM;
		for (uint64_t i = 0; i < size; i++)
			fp->data[i] = fake_pager_byte(i);
	}
	return 0;
}

int fake_pager_serve(struct fake_pager *fp, enum fake_pager_mode mode, uint64_t size)
{
	int r = fp_init(fp, mode, size), sv[2];
	if (r)
		return r;
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) {
		r = -errno;
		free(fp->data);
		return r;
	}
	fp->fd = sv[0];
	fp->peer = sv[1];
	r = -pthread_create(&fp->thread, NULL, fp_main, fp);
	if (r) {
		close(sv[0]);
		close(sv[1]);
		free(fp->data);
	}
	return r;
}

void fake_pager_start(struct fake_pager *fp, enum fake_pager_mode mode, uint64_t size)
{
	ck_assert_int_eq(fake_pager_serve(fp, mode, size), 0);
}

void fake_pager_listen(struct fake_pager *fp, enum fake_pager_mode mode, uint64_t size)
{
	ck_assert_int_eq(fp_init(fp, mode, size), 0);
	struct sockaddr_un addr = {.sun_family = AF_UNIX};
	strcpy(fp->path, "/tmp/vmm-fake-pager-XXXXXX");
	int tmp = mkstemp(fp->path);
	ck_assert_int_ge(tmp, 0);
	close(tmp);
	unlink(fp->path);
	strcpy(addr.sun_path, fp->path);
	fp->listener = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	ck_assert_int_ge(fp->listener, 0);
	ck_assert_int_eq(bind(fp->listener, (struct sockaddr *)&addr, sizeof(addr)), 0);
	ck_assert_int_eq(listen(fp->listener, 1), 0);
	ck_assert_int_eq(pthread_create(&fp->thread, NULL, fp_main, fp), 0);
}

void fake_pager_stop(struct fake_pager *fp)
{
	if (fp->fd >= 0)
		close(fp->fd);
	fp->fd = -1;
	/* A thread still waiting for its client is woken by the listener's shutdown. */
	if (fp->listener >= 0)
		shutdown(fp->listener, SHUT_RDWR);
	else
		shutdown(fp->peer, SHUT_RDWR); /* the socketpair's: set before the thread began */
	pthread_join(fp->thread, NULL);
	if (fp->peer >= 0)
		close(fp->peer);
	if (fp->listener >= 0) {
		close(fp->listener);
		unlink(fp->path);
	}
	fp->peer = fp->listener = -1;
	free(fp->data);
	fp->data = NULL;
}

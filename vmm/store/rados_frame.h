/*
 * Frames of the protocol between vmm and its RADOS helper (the format is described in
 * vmm/store/rados.h): building one, reading its fields back with every length checked,
 * and moving whole frames over a socket. Shared by the client (vmm/store/rados.c) and the
 * helper (tools/rados_server.c), and by nothing else.
 *
 * A frame is held in one buffer, its 4-byte length prefix included. Building appends
 * fields; a field that does not fit RADOS_FRAME_MAX or memory marks the frame bad (every
 * later put is ignored) and rados_frame_finish reports it. Reading takes fields from a
 * cursor; a field past the end or over its limit marks the frame bad and returns false,
 * and rados_frame_end says whether the frame was read exactly, nothing bad met.
 */
#ifndef VMM_STORE_RADOS_FRAME_H
#define VMM_STORE_RADOS_FRAME_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "vmm/store/rados.h"

#define RADOS_FRAME_HEADER 4u /* the length prefix */

/* Request codes; a reply carries its request's. */
enum rados_op {
	RADOS_OP_OPEN = 1,
	RADOS_OP_READ = 2,
	RADOS_OP_READ_EXTENTS = 3,
	RADOS_OP_WRITE_FULL = 4,
	RADOS_OP_APPEND = 5,
	RADOS_OP_STAT = 6,
	RADOS_OP_REMOVE = 7,
	RADOS_OP_LIST = 8,
	RADOS_OP_LOCK = 9,
	RADOS_OP_UNLOCK = 10,
	RADOS_OP_LOCKERS = 11,
};

struct rados_frame {
	uint8_t *buf; /* the length prefix, then the body */
	size_t size;  /* bytes of buf in use: RADOS_FRAME_HEADER + the body's length */
	size_t cap;   /* bytes allocated */
	size_t pos;   /* reading: the next field's offset */
	bool bad;     /* a put did not fit, or a get ran past the end or over its limit */
};

/* Free @f's buffer; @f is then empty (zeroed memory is an empty frame too). */
void rados_frame_free(struct rados_frame *f);

/* Give back a buffer grown past @keep bytes (after a large transfer). */
void rados_frame_trim(struct rados_frame *f, size_t keep);

/* Start a frame with @op as its first field. */
void rados_frame_begin(struct rados_frame *f, uint32_t op);
void rados_frame_put_u32(struct rados_frame *f, uint32_t v);
void rados_frame_put_u64(struct rados_frame *f, uint64_t v);
/* A byte string: u32 length, then the bytes. */
void rados_frame_put_bytes(struct rados_frame *f, const void *p, size_t n);
/* rados_frame_put_bytes of the characters of @s (no NUL). */
void rados_frame_put_str(struct rados_frame *f, const char *s);
/* A byte string whose bytes the caller writes in place: room for @max bytes (NULL when the
 * frame is bad or it does not fit), then rados_frame_close_bytes with how many it wrote. */
uint8_t *rados_frame_open_bytes(struct rados_frame *f, size_t max);
void rados_frame_close_bytes(struct rados_frame *f, size_t n);
/* Write the length prefix: 0, or -EMSGSIZE when the frame went bad while built. */
int rados_frame_finish(struct rados_frame *f);

/* Read @f from its first field after the prefix (rados_frame_recv does this), or wrap
 * @n bytes at @p (not copied, not freed) to read them with the getters from offset 0. */
void rados_frame_rewind(struct rados_frame *f);
void rados_frame_wrap(struct rados_frame *f, const void *p, size_t n);

bool rados_frame_get_u8(struct rados_frame *f, uint8_t *v);
bool rados_frame_get_u32(struct rados_frame *f, uint32_t *v);
bool rados_frame_get_u64(struct rados_frame *f, uint64_t *v);
/* A byte string of at most @max bytes: *p points into the frame. */
bool rados_frame_get_bytes(struct rados_frame *f, size_t max, const uint8_t **p, size_t *n);
/* A byte string copied into @out as a C string: at most @outsz - 1 bytes, none of them NUL. */
bool rados_frame_get_str(struct rados_frame *f, char *out, size_t outsz);
/* Skip @n bytes. */
bool rados_frame_skip(struct rados_frame *f, size_t n);
/* True when every byte was read and nothing bad met. */
bool rados_frame_end(const struct rados_frame *f);

#define RADOS_FRAME_EOF 1 /* rados_frame_recv: the peer closed the stream between frames */

/*
 * Send finished frame @f on @fd, or receive one into @f (its buffer grown as needed,
 * cursor rewound), by CLOCK_MONOTONIC @deadline_ns (0: wait for ever). 0, RADOS_FRAME_EOF,
 * -EMSGSIZE (the announced length is over RADOS_FRAME_MAX or under 4), -EPROTO (the stream
 * ended inside a frame), -ETIMEDOUT, -ENOMEM, or -errno of the socket. No message.
 */
int rados_frame_send(int fd, const struct rados_frame *f, uint64_t deadline_ns);
int rados_frame_recv(int fd, struct rados_frame *f, uint64_t deadline_ns);

#endif

/*
 * A fake external pager for the tests: a thread serving one connection of the protocol of
 * pagers/external_pager.h, with the misbehaviours a real server may have. Every helper
 * but fake_pager_serve fails the running Check test rather than returning an error.
 */
#ifndef TESTS_FAKE_PAGER_H
#define TESTS_FAKE_PAGER_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

enum fake_pager_mode {
	FAKE_PAGER_SERVE, /* pages of the announced size, unavailable past it */
	FAKE_PAGER_DRIP,  /* answers a request one byte every FAKE_PAGER_DRIP_MS */
	FAKE_PAGER_STALL, /* never answers a request */
	FAKE_PAGER_READ_ONLY, /* as SERVE, but says it takes no DATA_RETURN (not WRITABLE) */
	FAKE_PAGER_KEEP,  /* as SERVE from fp->data, which DATA_RETURN writes: a memory manager
			     that keeps what it is given back */
};

#define FAKE_PAGER_DRIP_MS 200

struct fake_pager {
	int fd;                        /* the client's end of the connection */
	int peer;                      /* the server's end, the thread's */
	int listener;                  /* fake_pager_listen: a unix socket, else -1 */
	char path[64];                 /* fake_pager_listen: its path */
	enum fake_pager_mode mode;
	uint64_t size;                 /* announced in HELLO_REPLY */
	atomic_uint requests;          /* DATA_REQUESTs seen */
	atomic_ullong last_offset;     /* of the last DATA_REQUEST */
	atomic_ullong last_length;
	atomic_uint returns;           /* DATA_RETURNs seen */
	atomic_uint terminates;        /* TERMINATEs seen */
	uint8_t *data;                 /* FAKE_PAGER_KEEP: the object's @size bytes, first as
					  fake_pager_byte's; read it once the client is answered */
	pthread_t thread;
};

/* Serve on a socketpair: fp->fd is the client's end. */
void fake_pager_start(struct fake_pager *fp, enum fake_pager_mode mode, uint64_t size);

/* fake_pager_start outside a Check test (a fuzz target): 0, or -errno and nothing to stop. */
int fake_pager_serve(struct fake_pager *fp, enum fake_pager_mode mode, uint64_t size);

/* Serve the first client of a unix socket at fp->path (fp->fd stays -1). */
void fake_pager_listen(struct fake_pager *fp, enum fake_pager_mode mode, uint64_t size);

/* Close the client's end (if still open) and wait for the thread. */
void fake_pager_stop(struct fake_pager *fp);

/* Page i of the fake object holds bytes 'a' + i % 26. */
uint8_t fake_pager_byte(uint64_t offset);

#endif

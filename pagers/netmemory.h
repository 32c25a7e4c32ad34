/*
 * netmemory: one memory object served to many clients at once over the external pager
 * protocol, version 2 (external_pager.h), kept coherent as Mach's netmemory server kept it:
 * each page has either many readers, who hold it locked against writing, or one writer. A
 * write (a DATA_REQUEST for write, or a DATA_UNLOCK) first takes the page back from every
 * other holder (LOCK_REQUEST flush + clean: a writer's bytes come back); a read while
 * another client writes the page first makes that writer a reader (LOCK_REQUEST clean +
 * lock write). So the value one client writes is the value another reads next.
 *
 * The object's bytes are a file (or memfd) the server reads and writes with pread/pwrite:
 * it holds whatever no client holds modified.
 *
 * One thread, one poll loop (netmemory_run). Requests are done one at a time in arrival
 * order (a queue): the one at the head sends its lock requests and waits for their
 * LOCK_COMPLETEDs while every client's messages go on being read, so a client that is
 * itself waiting for an answer (and does lock requests inline, as the client must) never
 * deadlocks with the server. A client that lies (a LOCK_COMPLETED for nothing asked),
 * breaks the protocol, is version 1 (it cannot be asked for pages back), runs as another
 * user (SO_PEERCRED: neither this euid nor root), or lets a lock request's deadline pass
 * is dropped, with one line on stderr. Used by tools/coherent_pager and by the VMM's
 * vm-export (vmm/memory/guest_export.h).
 */
#ifndef PAGERS_NETMEMORY_H
#define PAGERS_NETMEMORY_H

#include <stdbool.h>
#include <stdint.h>

#define NETMEMORY_CLIENTS 32 /* readers are a bit mask */
#define NETMEMORY_OPS 256    /* requests waiting their turn */
#define NETMEMORY_ASKED 64   /* lock requests one client may owe */
#define NETMEMORY_DEADLINE_MS 2000 /* default; keep it below EXTPAGER_TIMEOUT_MS: a client
				      waiting for its own answer waits while the server waits
				      for the others */

enum netmemory_op_kind { NETMEMORY_OP_REQUEST, NETMEMORY_OP_UNLOCK };

/* A request waiting its turn. */
struct netmemory_op {
	enum netmemory_op_kind kind;
	int client;              /* who asked */
	uint64_t offset, length; /* bytes */
	uint32_t access;
	bool started;            /* its lock requests are sent */
	unsigned waiting;        /* LOCK_COMPLETEDs still owed for it */
	uint64_t deadline;       /* ms, CLOCK_MONOTONIC: by then they must be in */
};

/* A lock request sent to a client and not completed yet. */
struct netmemory_asked {
	uint64_t offset, length;
	bool for_op; /* counted in the head op's waiting (else a grant, owed all the same) */
};

struct netmemory_client {
	int fd; /* -1: free slot */
	unsigned id;
	unsigned nasked;
	struct netmemory_asked asked[NETMEMORY_ASKED];
};

/* Everything belongs to the thread in netmemory_run (one at a time). */
struct netmemory {
	const char *name;        /* prefixes its lines on stderr (the caller's string) */
	int file_fd;             /* the object's bytes (the caller's) */
	uint64_t size, npages;   /* bytes announced; pages */
	unsigned deadline_ms;    /* a client's time to answer a lock request */
	int listen_fd;           /* -1: no new clients */
	int *writer;             /* per page: the client writing it, or -1 */
	uint32_t *readers;       /* per page: the clients reading it */
	struct netmemory_client clients[NETMEMORY_CLIENTS];
	struct netmemory_op ops[NETMEMORY_OPS];
	unsigned op_head, op_count;
	unsigned next_id;
	uint8_t *buf;            /* EXTPAGER_MAX_DATA bytes */
};

/* Serve @size bytes (not 0) of @file_fd (kept by the caller, open read/write), lock requests
 * answered within @deadline_ms (0: NETMEMORY_DEADLINE_MS); @name prefixes its lines. No
 * socket yet (netmemory_listen). 0, or -ENOMEM (nothing kept). */
int netmemory_init(struct netmemory *s, const char *name, int file_fd, uint64_t size, unsigned deadline_ms);

/* Take clients on a unix socket made at @path (an old socket file there replaced), mode
 * 0600. 0, or -errno (-ENAMETOOLONG: the path does not fit); the server is unchanged. */
int netmemory_listen(struct netmemory *s, const char *path);

/* Take no new clients: the listening socket is closed (its file is the caller's to
 * remove); those connected are served on. Not while netmemory_run runs in another thread. */
void netmemory_unlisten(struct netmemory *s);

/* Serve until @stop_fd (-1: none) turns readable: 0 then, or -errno when poll fails. */
int netmemory_run(struct netmemory *s, int stop_fd);

/* Every client dropped (their next exchange fails), the socket closed, memory freed. */
void netmemory_destroy(struct netmemory *s);

#endif

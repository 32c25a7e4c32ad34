/*
 * Host-wide shared memory segments: one memfd per key for every VMM process of one user on
 * this host, so that a frozen memory object (a stored snapshot restored by several VMs) is
 * resident once per host. Each process maps the segment MAP_PRIVATE and fills it lazily at
 * identity offsets (not here: this module only lets the processes find one memfd per key
 * and keeps it alive while any of them holds it).
 *
 * Rendezvous: the Linux abstract unix socket (SOCK_SEQPACKET) named
 * "vmm-segment-<euid>-<the key as 32 lowercase hex digits>". One holder of the segment, the
 * listener, is bound to that name; every other holder keeps one connection to it. An
 * abstract name goes with the last descriptor of its socket, and the kernel frees the memfd
 * with its last descriptor or mapping: kill -9 of every holder leaves nothing behind (no file
 * in /dev/shm or /tmp). Abstract names belong to a network namespace: VMMs in different ones
 * do not meet, and each makes a segment of its own.
 *
 * segment_open connects to the name. A listener answers with an offer (magic, version, size)
 * and the memfd (SCM_RIGHTS), which is checked before use: the listener runs as our
 * effective uid (SO_PEERCRED), the descriptor is a regular file of exactly the size asked,
 * open read-write, sealed F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL (no one can cut it
 * under our mappings, which would SIGBUS us) and not sealed against writes. When nobody
 * listens it makes the memfd (MFD_CLOEXEC | MFD_ALLOW_SEALING, named "vmm-segment"), sizes
 * and seals it and binds the name; losing that race to another process, it joins the winner.
 * Every socket operation has a deadline of one second, the whole open two seconds.
 *
 * Each open segment has one thread. As the listener it accepts connections from processes
 * of our euid (others are closed unanswered), answers each with the offer, keeps it open as
 * that holder's registration and answers its holder-count questions. As a holder it keeps
 * its connection; at end of file (the listener's process ended) it takes the listener's
 * place: it binds the name with its own memfd, or if another holder bound it first,
 * registers with that one (keeping its own memfd, which is the same one). If the new
 * listener offers a different memfd (the name was free a moment and a new opener made a
 * segment of its own), this holder stays an orphan: it keeps its memory but no longer takes
 * part in the rendezvous (segment_holders gives 0), and later openers share the new segment.
 * The thread reads peers' messages with bounded buffers, closes descriptors sent to it and
 * never blocks on a peer (its only waits, while taking over, have deadlines and end at
 * segment_close): a hostile or stuck peer costs it nothing.
 *
 * Locking: one thread calls these functions on one struct segment at a time (they are not
 * reentrant on the same struct); segment_holders may run while the segment's thread works.
 */
#ifndef VMM_MEMORY_SEGMENT_H
#define VMM_MEMORY_SEGMENT_H

#include <poll.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/un.h>

#define SEGMENT_KEY_BYTES 16

/*
 * Wire format: every message, both ways, is one SOCK_SEQPACKET record holding one struct
 * segment_msg in the host's byte order (both ends run on this host); a record of any other
 * length, magic or version is not a message. The listener sends SEGMENT_MSG_OFFER with the
 * memfd to each connection it accepts; a holder may send SEGMENT_MSG_ASK_HOLDERS, answered
 * with SEGMENT_MSG_HOLDERS (or not at all, if the holder does not read its answers).
 */
#define SEGMENT_MAGIC 0x47455356u /* "VSEG" */
#define SEGMENT_VERSION 1

enum segment_msg_type {
	SEGMENT_MSG_OFFER = 1,       /* listener -> new holder, the memfd attached: size */
	SEGMENT_MSG_ASK_HOLDERS = 2, /* holder -> listener */
	SEGMENT_MSG_HOLDERS = 3,     /* listener -> holder: value = holders */
};

struct segment_msg {
	uint32_t magic;   /* SEGMENT_MAGIC */
	uint16_t version; /* SEGMENT_VERSION */
	uint16_t type;    /* enum segment_msg_type */
	uint64_t size;    /* the segment's bytes */
	uint64_t value;   /* SEGMENT_MSG_HOLDERS: the count; else 0 */
};

/* Listener's registered holders at most (each costs it a descriptor); openers past this
 * are turned away and fall back to memory of their own. */
#define SEGMENT_MAX_HOLDERS 1024

/* Legend: (o) set by segment_open (or segment_reattach), then constant until segment_close;
 * (l) written under lock by the segment's thread, read under lock by others (the thread reads
 * without); (t) the segment's thread's own. */
struct segment {
	int fd;                /* (o) the memfd, read-write; -1 when not open */
	uint64_t size;         /* (o) bytes */
	bool joined;           /* (o) true: found held by another process; false: made here */

	/* Private. */
	bool opened;           /* (o) segment_close has something to undo (false when zeroed) */
	bool running;          /* (o) the thread runs (in process pid) */
	pid_t pid;             /* (o) process the thread runs in: a fork child has none */
	dev_t dev;             /* (o) identity of the memfd, to recognise it when offered */
	ino_t ino;             /* (o) */
	struct sockaddr_un addr; /* (o) the rendezvous name (abstract) */
	socklen_t addr_len;    /* (o) */
	int stop_fd;           /* (o) eventfd: readable once the thread must stop */
	pthread_t thread;      /* (o) */
	pthread_mutex_t lock;
	pthread_cond_t cond;   /* (l) broadcast when serving, answer or the role changes */
	bool serving;          /* (l) the thread has started */
	int listen_fd;         /* (l) bound to the name (we are the listener), or -1 */
	int conn_fd;           /* (l) our registration with the listener, or -1 */
	int *conns;            /* (l) the listener's holder connections, SEGMENT_MAX_HOLDERS slots */
	unsigned nconns;       /* (l) */
	uint64_t answers;      /* (l) holder counts received from the listener */
	unsigned answer;       /* (l) the last of them */
	struct pollfd *pfds;   /* (t) 2 + SEGMENT_MAX_HOLDERS slots */
};

/* A closed segment: fd -1, nothing running, nothing to free. */
void segment_init(struct segment *s);

/*
 * Find the segment of @key held by another process of this user and hold it too, or make
 * it (zero-filled, @size bytes) and be its listener. @s need not be initialised and must
 * not be open. @size: bytes, at least 1 (the key must already tell sizes apart: an offer of
 * another size is refused).
 * Returns 0 (s->fd, s->size and s->joined set, the thread running), or -errno with a
 * message, @s then closed as by segment_init with no descriptor or thread left behind:
 *   -EACCES   the name is held by another user's process
 *   -EPROTO   the listener's answer, or the memfd it sent, is not a valid segment
 *   -ETIMEDOUT the listener did not answer in time, or the rendezvous did not settle
 *   -EINVAL   size 0 or above INT64_MAX; others: a system call failed.
 */
int segment_open(struct segment *s, const uint8_t key[SEGMENT_KEY_BYTES], uint64_t size);

/*
 * In a child made by fork(2) from a process that held @s open: close the child's copies of
 * the parent's rendezvous sockets (the parent's are untouched) and hold the same memfd again
 * in this process: register with the current listener, or become it if nobody listens.
 * Every socket of this process bound or connected to @s's name is closed, so a process must
 * not have two segments of one key open when it calls this (or segment_close in a child).
 * Without this call, a child only ever calls segment_close on @s.
 * In the process that opened @s it does nothing and returns 0.
 * Returns 0, or -errno with a message when this process is left holding the memfd outside
 * the rendezvous (an orphan, as above): s->fd stays valid either way and segment_close is
 * still owed. -EBADF: @s is not open.
 */
int segment_reattach(struct segment *s);

/*
 * Processes holding the segment as far as the rendezvous knows: the listener counts its
 * registered holders and itself; a holder asks the listener (waiting at most a second).
 * 0 when unknown: no answer, an orphan, a fork child that has not reattached, or not open.
 */
unsigned segment_holders(struct segment *s);

/* Pages (4 KiB) the memfd holds in memory or swap; 0 when not open. */
uint64_t segment_resident_pages(const struct segment *s);

/*
 * Stop the thread and close everything (the memfd included: mappings of it stay valid).
 * Harmless on a closed, segment_init-ed or zeroed struct, and in a fork child (which closes
 * only its own copies, as segment_reattach does). Leaves @s as segment_init does.
 */
void segment_close(struct segment *s);

#endif

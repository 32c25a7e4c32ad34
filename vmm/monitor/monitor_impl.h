/*
 * Inside the monitor: what its files share, and nothing for anyone else. The monitor is
 * server.c (the socket, the server thread, clients and their output, events, life cycle,
 * socketless sessions), dispatch.c (request lines, argument checks, replies, deferred
 * replies, command tables), builtin.c (the commands every monitor has, its statistics)
 * and paths.c (where sockets live); the public contract is monitor.h.
 */
#ifndef VMM_MONITOR_IMPL_H
#define VMM_MONITOR_IMPL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/un.h>

#include "vmm/monitor/monitor.h"

/* Room for a line of MONITOR_LINE_MAX bytes and its newline. */
#define MONITOR_IN_SIZE (MONITOR_LINE_MAX + 1)
#define MONITOR_MAX_TABLES 16
#define MONITOR_SUN_PATH_MAX (sizeof(((struct sockaddr_un *)0)->sun_path))

/*
 * Locking legend of the structs below: (c) set before the server thread starts (or before
 * the struct is shared), then constant; (t) server thread only (or the session's caller
 * when not listening); (l) mon->lock; (a) atomic; (h) the handler's: a call lives on the
 * server thread's stack for one handler; (r) the completer's (monitor_reply_later) until
 * it puts the reply on mon->done under mon->lock, the server thread's once it takes it off.
 */

/* One connection (or one socketless session); nothing here is touched by other threads. */
struct monitor_client {
	int fd;                          /* (t) -1 for a session */
	bool negotiated;                 /* (t) qmp_capabilities done: commands and events allowed */
	bool eof;                        /* (t) the peer will send nothing more */
	bool dead;                       /* (t) to be closed */
	bool dropped;                    /* (t) closed for its own fault: output overflow, reset */
	bool discarding;                 /* (t) dropping the rest of an overlong line */
	struct monitor_pending *waiting; /* (t) the deferred command this client waits for */
	char *in;                        /* (t) MONITOR_IN_SIZE bytes */
	size_t in_start, in_len;         /* (t) unprocessed input: in[in_start .. in_start + in_len) */
	size_t in_scanned;               /* (t) leading bytes of that known to hold no newline */
	char *out;                       /* (t) queued output: out[out_off .. out_len) */
	size_t out_off, out_len, out_cap; /* (t) */
};

/* An event line built by monitor_emit_event, waiting for the server thread. */
struct monitor_event {
	struct monitor_event *next;      /* (l) on mon->events; (t) once taken off */
	size_t len;                      /* (c) */
	char line[];                     /* (c) */
};

struct monitor_pending {
	struct monitor *mon;                 /* (c) */
	struct monitor_pending *prev, *next; /* (l) on mon->outstanding, then on mon->done */
	json_t *id;                          /* (c) request id or NULL */
	char *line;                          /* (r) the reply, once completed */
	size_t len;                          /* (r) */
};

struct monitor_call {
	struct monitor *mon;             /* (h) */
	struct monitor_client *client;   /* (h) */
	json_t *id;                      /* (h) */
	const char *error_class;         /* (h) */
	struct monitor_pending *pending; /* (h) */
};

struct monitor_table {
	const struct monitor_command *cmds; /* (c) */
	void *ctx;                          /* (c) */
};

struct monitor {
	struct monitor_config cfg;                         /* (c) */
	struct monitor_table tables[MONITOR_MAX_TABLES];   /* (c) */
	unsigned ntables;                                  /* (c) */
	struct monitor_command ops_cmds[5];                /* (c) commands backed by cfg.ops */
	char *greeting;                                    /* (c) the greeting line */
	size_t greeting_len;                               /* (c) */
	char path[MONITOR_SUN_PATH_MAX];                   /* (c) socket path, "" until listening */
	dev_t dev;                                         /* (c) the socket inode we made */
	ino_t ino;                                         /* (c) */
	int listen_fd;                                     /* (c) */
	int wake_fd;                                       /* (c) eventfd that wakes the server */
	bool listening;                                    /* (c) */
	pthread_t thread;                                  /* (c) */
	atomic_bool stop;                                  /* (a) monitor_destroy asks the thread to end */
	struct monitor_client *clients[MONITOR_MAX_CLIENTS]; /* (t) */
	unsigned nclients;                                 /* (t) */
	bool accept_paused;                                /* (t) out of fds: wait for a close */
	pthread_mutex_t lock;                              /* (c) */
	struct monitor_event *events, **events_tail;       /* (l) emitted, not yet broadcast */
	unsigned nevents;                                  /* (l) */
	struct monitor_pending *outstanding;               /* (l) deferred, not completed */
	struct monitor_pending *done;                      /* (l) completed, not yet delivered */
	atomic_uint nclients_now;                          /* (a) */
	atomic_ullong clients_accepted, clients_refused, clients_dropped; /* (a) */
	atomic_ullong commands, command_errors, events_sent, events_dropped; /* (a) */
};

/* ---- dispatch.c ---------------------------------------------------------------------- */

/* A JSON string of @s; bytes that are not valid UTF-8 become '?' rather than failing. */
json_t *monitor_json_text(const char *s);
/* {"error":{"class":...,"desc":...},"id":...}; NULL when out of memory. */
json_t *monitor_error_reply(const char *klass, const char *desc, json_t *id);
/* Encode @msg (stolen) as one line with its newline; NULL when it cannot be encoded. */
char *monitor_encode(json_t *msg, size_t *len);
/* The reply @msg (stolen) to the request @id as one line; one too long or that cannot be
 * encoded becomes an error saying so. */
char *monitor_encode_reply(json_t *msg, json_t *id, size_t *len);
/* Queue the reply @msg (stolen) to the request @id for @c. */
void client_send(struct monitor_client *c, json_t *msg, json_t *id);
/* Handle every complete line buffered for @c, in order, until one is deferred. (t) */
void client_process(struct monitor *mon, struct monitor_client *c);
/* QEMU's names of the argument types, for errors and query-commands. */
extern const char *const monitor_type_names[];

/* ---- server.c ------------------------------------------------------------------------ */

/* Queue @len bytes of @line for @c; a client over MONITOR_OUTPUT_MAX is marked dead. */
void client_append(struct monitor_client *c, const char *line, size_t len);
/* Send what the socket takes now; never blocks. */
void client_flush(struct monitor_client *c);
/* Wake the server thread (events or deferred replies are waiting). Any thread. */
void monitor_wake(struct monitor *mon);
/* A client on @fd (-1 for a session), its greeting queued; NULL when out of memory. */
struct monitor_client *client_new(struct monitor *mon, int fd);
void client_free(struct monitor_client *c);
/* Free room at the end of @c's input buffer, moving what is buffered to the front when full. */
size_t client_room(struct monitor_client *c);

/* ---- builtin.c ----------------------------------------------------------------------- */

/* The version object of the greeting and query-version; NULL when out of memory. */
json_t *monitor_version_json(void);
/* Add the built-in commands and those backed by mon->cfg.ops to @mon's tables (create). */
void monitor_builtin_add(struct monitor *mon);

#endif

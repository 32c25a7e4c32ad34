/*
 * A small client of the monitor protocol (vmm/monitor.h): connect, negotiate, execute
 * commands, read events. Used by the CLI verbs and by tests. One client is used by one
 * thread at a time. Timeouts are in milliseconds; a negative timeout waits for ever.
 * Errors return -errno with a message (error_message()); a command the VM answered with
 * an error returns -EREMOTEIO, the message being the VM's "desc".
 */
#ifndef VMM_QMP_CLIENT_H
#define VMM_QMP_CLIENT_H

#include <jansson.h>

#define QMP_CLIENT_LINE_MAX (64u << 20) /* longest line accepted from the server */
#define QMP_CLIENT_EVENTS_MAX 4096      /* events kept while waiting for replies; older ones go */

struct qmp_client;

/*
 * Connect to the monitor socket at @path, read the greeting and negotiate capabilities.
 * Returns 0, or -errno: -ENOENT (no socket), -ECONNREFUSED (stale socket: no VM behind
 * it), -EACCES, -EPERM (the server turned us away; the message is its reason), -EPROTO
 * (not a QMP server), -ETIMEDOUT, -ECONNRESET.
 */
int qmp_client_connect(struct qmp_client **out, const char *path, int timeout_ms);

/*
 * Connect to the VM @name (its socket, monitor_socket_find) or, when @path is not
 * NULL, to @path. The messages name the VM for a user: "no VM named 'foo' (no socket at
 * /run/vmm/foo.sock)", "VM 'foo' is not running (stale socket at ...)". @name may be NULL
 * when @path is given. Same returns as qmp_client_connect, -EINVAL for a bad name.
 */
int qmp_client_open(struct qmp_client **out, const char *name, const char *path, int timeout_ms);

/*
 * Execute @command with @args (borrowed; NULL for none). On success returns 0 and sets
 * *ret to the "return" value (a new reference; may be NULL when @ret is NULL).
 * -EREMOTEIO: the VM answered with an error (message: its desc; class:
 * qmp_client_error_class), an error without id included (the server's answer to a line it
 * could not read). -EMSGSIZE: the request is longer than MONITOR_LINE_MAX; nothing was
 * sent. Events that arrive meanwhile are kept for qmp_client_next_event.
 */
int qmp_client_execute(struct qmp_client *c, const char *command, json_t *args, json_t **ret, int timeout_ms);

/* The class of the last error answer ("GenericError", "CommandNotFound", ...), "" if none. */
const char *qmp_client_error_class(const struct qmp_client *c);

/* The next event, a new reference to the whole {"event","data","timestamp"} object.
 * Returns 0, -ETIMEDOUT, or -ECONNRESET when the server closed the connection. */
int qmp_client_next_event(struct qmp_client *c, json_t **event, int timeout_ms);

/* The server's greeting (borrowed). */
const json_t *qmp_client_greeting(const struct qmp_client *c);

/* The socket, for poll(): readable when a message may be waiting. Messages already
 * buffered are not signalled by it; call qmp_client_next_event with timeout 0 first. */
int qmp_client_fd(const struct qmp_client *c);

/*
 * Wait until the guest of the VM @c talks to reports sync point @n or a later one on its
 * test port (guest/abi.h), polling query-stats every 10 ms: unlike the GUEST_SYNC event this
 * cannot be missed by a client that connected late. 0, -ETIMEDOUT, or the error of
 * query-stats.
 */
int qmp_client_wait_sync(struct qmp_client *c, unsigned n, int timeout_ms);

/* Close the connection and free @c (NULL is fine). */
void qmp_client_close(struct qmp_client *c);

#endif

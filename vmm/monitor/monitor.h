/*
 * The monitor: a QMP-subset server on a unix socket, one per VM.
 *
 * Protocol (newline-delimited JSON, one value per line, like QEMU's QMP without
 * out-of-band execution):
 *   server: {"QMP":{"version":{"qemu":{"major":0,"minor":1,"micro":0},"package":"vmm"},"capabilities":[]}}
 *   client: {"execute":"qmp_capabilities"}            (required before anything else)
 *   client: {"execute":NAME,"arguments":{...},"id":ANY}
 *   server: {"return":VALUE,"id":ANY}  or  {"error":{"class":CLASS,"desc":TEXT},"id":ANY}
 *   server: {"event":NAME,"data":{...},"timestamp":{"seconds":S,"microseconds":US}}
 * "id" is echoed exactly when the request had one. A line that cannot be parsed (bad JSON,
 * or longer than MONITOR_LINE_MAX) still gets its id back when the line begins with
 * {"id":VALUE, — qmp_client puts the id first for this; other such lines are answered
 * with an error without id. Error classes used: GenericError
 * (bad input, bad arguments, host failures) and CommandNotFound (unknown command,
 * capabilities not negotiated yet, negotiated twice); host handlers may choose others.
 *
 * Limits that keep a hostile or stuck client from hurting the VM:
 *   - a line longer than MONITOR_LINE_MAX bytes (room for a vm-write of MONITOR_DATA_MAX
 *     bytes) gets one error reply, with the id when the line begins with it (above); the
 *     rest of it, up to the next newline, is dropped; the connection stays;
 *   - output waiting for a client is capped at MONITOR_OUTPUT_MAX bytes; a client over
 *     it (one that never reads) is disconnected; the server never blocks on a write;
 *   - a reply longer than MONITOR_REPLY_MAX is replaced by an error saying so (same id);
 *     hosts page large results (vm-read of a range, not of the whole guest);
 *   - a client that vanishes (EPIPE, ECONNRESET) is dropped; SIGPIPE is never raised;
 *   - at most MONITOR_MAX_CLIENTS connections; further ones get an error line and are closed;
 *   - a peer whose uid (SO_PEERCRED) is neither the server's euid nor root gets an error
 *     line and is closed.
 * A client's commands run one at a time in the order sent: while one is deferred
 * (MONITOR_PENDING), that client's later lines wait; events and other clients go on.
 *
 * Threading: monitor_listen starts one server thread that owns every socket and runs
 * every command handler, one at a time. Handlers must not block for long: a long job
 * defers its reply (monitor_call_defer) and completes it from another thread with
 * monitor_reply_later. monitor_emit_event and monitor_reply_later are callable from any
 * thread, handlers included. Everything else is called from the thread that owns the
 * monitor (monitor_create .. monitor_destroy), never from a handler.
 */
#ifndef VMM_MONITOR_H
#define VMM_MONITOR_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* The most bytes one command moves as base64 in a request or reply (vm-read, vm-write). */
#define MONITOR_DATA_MAX (64u << 10)
/* Longest request line, newline excluded: MONITOR_DATA_MAX bytes in base64 (4 characters
 * per 3 bytes) and 4 KiB for the rest of the request (command, other arguments, id). */
#define MONITOR_LINE_MAX ((MONITOR_DATA_MAX + 2) / 3 * 4 + 4096u)
#define MONITOR_OUTPUT_MAX (1u << 20)   /* bytes queued for one client before it is dropped */
#define MONITOR_REPLY_MAX (512u << 10)  /* longest reply line; a longer one becomes an error */
#define MONITOR_EVENT_MAX (64u << 10)   /* longest event line; monitor_emit_event refuses more */
#define MONITOR_MAX_CLIENTS 64          /* simultaneous connections */
#define MONITOR_EVENT_QUEUE_MAX 4096    /* events emitted but not yet sent; more are dropped */
#define MONITOR_NAME_MAX 64             /* longest VM name */

/* The version in the greeting and query-version. */
#define MONITOR_VERSION_MAJOR 0
#define MONITOR_VERSION_MINOR 1
#define MONITOR_VERSION_MICRO 0

/* Returned by a handler that will answer later with monitor_reply_later. */
#define MONITOR_PENDING 1

struct monitor;
struct monitor_call;    /* one command being executed; valid during the handler only */
struct monitor_pending; /* a deferred reply, from monitor_call_defer to monitor_reply_later */

/* JSON types of command arguments, named in errors as QEMU names them. */
enum monitor_arg_type {
	MONITOR_ARG_STRING,  /* "string" */
	MONITOR_ARG_INT,     /* "integer": a JSON integer */
	MONITOR_ARG_NUMBER,  /* "number": an integer or a real */
	MONITOR_ARG_BOOL,    /* "boolean" */
	MONITOR_ARG_OBJECT,  /* "object" */
	MONITOR_ARG_ARRAY,   /* "array" */
	MONITOR_ARG_ANY,     /* any JSON value */
};

struct monitor_arg {
	const char *name;
	enum monitor_arg_type type;
	bool required;
	const char *help;
};

/*
 * A command handler. @args is the "arguments" object, already checked against the
 * command's schema (every required argument present, every argument declared and of its
 * type); it is borrowed. @ctx is the pointer given with the command's table.
 * Returns:
 *   0               success; *ret is the "return" value (a new reference), or NULL for {}
 *   MONITOR_PENDING the handler called monitor_call_defer and will reply later
 *   -errno          failure; the reply is an error whose desc is this thread's
 *                   error_message() (error_set) or else strerror, of class GenericError
 *                   unless monitor_call_set_error_class chose another
 */
typedef int monitor_handler_t(struct monitor_call *call, void *ctx, json_t *args, json_t **ret);

/* One command. Tables end with an entry whose name is NULL. */
struct monitor_command {
	const char *name;
	monitor_handler_t *handler;
	const struct monitor_arg *args; /* ends with a NULL name; NULL when the command takes none */
	const char *help;               /* one line, shown by query-commands */
};

/* Run states of query-status, named as QEMU's RunState. */
enum monitor_run_state {
	MONITOR_RUN_PRELAUNCH,      /* "prelaunch" */
	MONITOR_RUN_RUNNING,        /* "running" */
	MONITOR_RUN_PAUSED,         /* "paused" */
	MONITOR_RUN_SAVE_VM,        /* "save-vm" */
	MONITOR_RUN_RESTORE_VM,     /* "restore-vm" */
	MONITOR_RUN_SHUTDOWN,       /* "shutdown" */
	MONITOR_RUN_INTERNAL_ERROR, /* "internal-error" */
	MONITOR_RUN_GUEST_PANICKED, /* "guest-panicked" */
};

/*
 * What the host (the VM) provides for the standard commands. A NULL slot leaves its
 * command out (CommandNotFound, not listed by query-commands); query-stats always exists
 * and adds the monitor's own "monitor.*" figures to what query_stats gives.
 * stop, cont and quit follow the monitor_handler_t contract (they may defer).
 */
struct monitor_ops {
	/* query-status: the state; "running" is derived from it. */
	int (*query_status)(void *ctx, enum monitor_run_state *state);
	int (*stop)(struct monitor_call *call, void *ctx);
	int (*cont)(struct monitor_call *call, void *ctx);
	/* quit: reply, then end the VM; the host calls monitor_destroy from its own thread,
	 * which still flushes this reply to the client. */
	int (*quit)(struct monitor_call *call, void *ctx);
	/* query-stats: add flat dotted keys ("mem.faults", "vcpu.0.exits") to @stats,
	 * numbers only (monitor_stat_set). */
	int (*query_stats)(void *ctx, json_t *stats);
};

struct monitor_config {
	const char *name;              /* the VM's name, reported by query-vmm; may be NULL */
	const struct monitor_ops *ops; /* may be NULL */
	void *ctx;                     /* passed to every ops slot */
};

/*
 * Make a monitor with the built-in commands (qmp_capabilities, query-version,
 * query-commands, query-vmm, query-stats) and those @cfg's ops provide. No socket yet.
 * @cfg is copied; its strings must outlive the monitor. Returns 0 or -errno (message set).
 */
int monitor_create(struct monitor **out, const struct monitor_config *cfg);

/*
 * Add a table of host commands, each handler called with @ctx. The table is borrowed and
 * must outlive the monitor. Only before monitor_listen. Returns 0, -EEXIST when a name is
 * taken (nothing added), -EINVAL for a malformed table, -EBUSY once listening.
 */
int monitor_add_commands(struct monitor *mon, const struct monitor_command *table, void *ctx);

/*
 * Listen on the unix socket @path (mode 0600) and start the server thread.
 * A socket at @path that accepts connections belongs to a live VM: -EADDRINUSE.
 * A stale one (connection refused) is replaced. Anything else at @path: -EEXIST.
 * The directory must exist (monitor_socket_path can create the default one).
 * Returns 0 or -errno with a message naming the path.
 */
int monitor_listen(struct monitor *mon, const char *path);

/* Connect to @path: 0 when something listens there (*@pid its process), else -errno
 * (-ECONNREFUSED: a stale socket, -ENOENT: none). */
int monitor_socket_owner(const char *path, pid_t *pid);

/* Whether a VM may listen on @path, as monitor_listen decides: 0 when nothing is there or
 * a stale socket (*@stale), else -EADDRINUSE (a live VM's) or -EEXIST with a message. */
int monitor_socket_free(const char *path, bool *stale);

/*
 * Stop the server thread (if any), flush what can be sent without blocking, close every
 * client, unlink the socket (when it is still ours) and free everything, deferred calls
 * not yet completed included: the host must not complete those afterwards.
 * Not from a handler.
 */
void monitor_destroy(struct monitor *mon);

/*
 * In a child made by fork(2): let go of a monitor that belongs to the parent — close its
 * descriptors and free it without touching its server thread (which does not exist in
 * the child) or its socket (the parent's). Callable from the thread that forked, even in
 * a handler.
 */
void monitor_abandon(struct monitor *mon);

/*
 * Broadcast an event to every client that has negotiated capabilities. Steals @data
 * (a JSON object, or NULL for none). The timestamp is taken now. Any thread.
 * Returns 0, -EINVAL (no name, data not an object), -EMSGSIZE (longer than
 * MONITOR_EVENT_MAX encoded), -ENOMEM, or -ENOBUFS when the queue of unsent events is
 * full (the event is dropped and counted).
 */
int monitor_emit_event(struct monitor *mon, const char *name, json_t *data);

/* Number of connected clients (accepted and not yet closed). Any thread. */
unsigned monitor_client_count(struct monitor *mon);

/* The monitor's own figures as dotted keys ("monitor.clients", "monitor.clients_dropped",
 * "monitor.events_dropped", ...), added to @stats. Any thread. Returns 0 or -ENOMEM. */
int monitor_stats(struct monitor *mon, json_t *stats);

/* ---- inside a handler ------------------------------------------------------------ */

/*
 * Promise to answer later. Returns the token to hand to monitor_reply_later (from any
 * thread); the handler then returns MONITOR_PENDING. NULL when out of memory (the handler
 * should fail with -ENOMEM). At most one defer per call.
 */
struct monitor_pending *monitor_call_defer(struct monitor_call *call);

/* The error class of the reply when the handler fails (default "GenericError"). @klass
 * must be a string literal or outlive the call. */
void monitor_call_set_error_class(struct monitor_call *call, const char *klass);

/* The monitor running this call (to emit events from a handler). */
struct monitor *monitor_call_monitor(const struct monitor_call *call);

/*
 * Complete a deferred call, from any thread, exactly once: @status 0 sends
 * {"return":ret} (@ret stolen; NULL means {}), a negative -errno sends a GenericError
 * whose desc is the calling thread's error_message() (or strerror). If the client has
 * gone meanwhile the reply is dropped. Frees @p.
 */
void monitor_reply_later(struct monitor_pending *p, int status, json_t *ret);

/* Set the number @value at the key made from @fmt (printf) in @stats. Values above
 * INT64_MAX are clamped. Returns 0 or -ENOMEM. */
int monitor_stat_set(json_t *stats, uint64_t value, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* ---- socket paths --------------------------------------------------------------------- */

/* 0 when @name is a valid VM name: 1 to MONITOR_NAME_MAX letters, digits, '-', '_', '.',
 * not starting with '.', not ending in .export-N (monitor_export_file); else -EINVAL with a
 * message saying why. */
int monitor_name_check(const char *name);

/*
 * The directory of default sockets: "$XDG_RUNTIME_DIR/vmm" when XDG_RUNTIME_DIR is an
 * absolute path, else the system directory (monitor_system_dir: "/run/vmm"). With @create,
 * make it (mode 0700) when missing.
 * Returns 0, -ENAMETOOLONG, or -errno of mkdir (message set).
 */
int monitor_runtime_dir(char *buf, size_t size, bool create);

/*
 * The system-wide directory of sockets: "/run/vmm", or $VMM_SYSTEM_RUNDIR when that is an
 * absolute path (an override for the tests, not for users). 0 or -ENAMETOOLONG.
 */
int monitor_system_dir(char *buf, size_t size);

/* How many directories monitor_search_dirs gives at most, and how long each may be. */
#define MONITOR_SEARCH_DIRS 2
#define MONITOR_DIR_MAX 108

/*
 * Where VMs are looked for, in order: the runtime directory (monitor_runtime_dir), then the
 * system directory (monitor_system_dir) when that is another one, so that a VM started in
 * a login session and one started by root under sudo or cron are seen by both. Sets
 * @dirs[0..*n). 0 or -ENAMETOOLONG (message set).
 */
int monitor_search_dirs(char dirs[MONITOR_SEARCH_DIRS][MONITOR_DIR_MAX], unsigned *n);

struct stat;
/* True when the file of @st (lstat) may be taken for a VM's socket: a socket, and owned
 * by this user unless the user is root (the system directory is shared). */
bool monitor_socket_visible(const struct stat *st);

/*
 * The socket of the VM @name: the first NAME.sock of monitor_search_dirs that is
 * monitor_socket_visible, else the default path (monitor_socket_path; nothing there).
 * Returns 0, -EINVAL for a bad name, or -ENAMETOOLONG (message set).
 */
int monitor_socket_find(const char *name, char *buf, size_t size);

/* The default socket of the VM @name: "<runtime dir>/NAME.sock". Checks the name; with
 * @create, makes the directory. Returns 0 or -errno (message set). */
int monitor_socket_path(const char *name, char *buf, size_t size, bool create);

/* The socket of the @n-th range the VM whose monitor socket is @monitor_sock exports
 * (vm-export): beside it, NAME.export-N.sock. 0 or -ENAMETOOLONG (message set). */
int monitor_export_path(const char *monitor_sock, unsigned n, char *buf, size_t size);

/* Whether the file name @file (no directory) is such a socket, not a VM's: listing VMs
 * passes over it, and no VM may be named so that its socket would look like one. */
bool monitor_export_file(const char *file);

/* ---- sessions without a socket (tests and fuzzing) ------------------------------------ */

/*
 * A protocol session fed from memory, for tests and fuzzing: the same line handling and
 * dispatch as a socket client. Only on a monitor that is not listening. Sessions receive
 * no events and no deferred replies. The greeting is the first output.
 */
struct monitor_session;
struct monitor_session *monitor_session_open(struct monitor *mon);
/* Feed bytes as if read from the socket; returns how many were taken (fewer when a
 * deferred command blocks the session). */
size_t monitor_session_feed(struct monitor_session *s, const void *buf, size_t len);
/* End of input: a final line without a newline is handled. */
void monitor_session_eof(struct monitor_session *s);
/* Output produced so far, NUL-terminated, handed over (free()); *len its length.
 * Returns NULL when the session was dropped for exceeding MONITOR_OUTPUT_MAX. */
char *monitor_session_output(struct monitor_session *s, size_t *len);
void monitor_session_close(struct monitor_session *s);

#endif

/*
 * A fake VM for the monitor's tests: a monitor listening in a fresh temporary directory,
 * with host ops and test commands behind it, and a raw line client to drive it with real
 * sockets. Every helper fails the running Check test (ck_abort) rather than returning an
 * error; reads give up after FAKE_VM_READ_TIMEOUT_S seconds so a stuck server fails a
 * test instead of hanging it (a guard, not a timing assertion).
 *
 * Host commands of the fake VM, besides the standard ones (query-status, stop, cont, quit,
 * query-stats): query-stats answers mem.faults = 12 the first time, FAKE_VM_FAULTS_PER_QUERY
 * more each time after; vcpu.0.exits = 5, vcpu.1.exits = 7, mem.page_size = 4096,
 * mem.resident_pages = 384 (1.5 MiB); the 32 buckets mem.fault_latency_ns.lt_2 ... lt_2^32,
 * all 0 but lt_131072 = 5 and lt_1048576 = 10; object.1.resident = 3 the first time only
 * (an object that goes away); and virsh domstats' names: state.state (1 running, 3 paused,
 * 5 shut down), state.reason = 0, balloon.current = balloon.maximum = FAKE_VM_CONFIG_MEMORY
 * in KiB, balloon.rss = FAKE_VM_BALLOON_RSS.
 *   echo {s: string (required), i: integer, n: number, b: boolean, o: object, a: array, x: any}
 *        returns its arguments; vm-echo is the same under a Mach call's name
 *   fail {class: string}  fails with "the fake VM fails on purpose" (class GenericError or @class)
 *   big {bytes: integer}  returns {"data": "xxx..."} of @bytes characters
 *   slow {}               defers its reply; the test completes it (fake_vm_take_slow)
 *   emit {count: integer, bytes: integer}  emits @count TICK events, each with a string
 *                         of @bytes characters and its index, from the handler itself
 *   query-config {}       as a VM's: the fake VM's name, the FAKE_VM_CONFIG_* values, uuid null,
 *                         origin and fork from the fields below (null unless a test sets them)
 * stop emits STOP, cont emits RESUME (and fails once the VM has quit), quit emits SHUTDOWN.
 */
#ifndef TESTS_FAKE_VM_H
#define TESTS_FAKE_VM_H

#include <check.h>
#include <jansson.h>
#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>

#include "vmm/monitor/monitor.h"

#define FAKE_VM_READ_TIMEOUT_S 20
#define FAKE_VM_FAULTS_PER_QUERY 10
#define FAKE_VM_CONFIG_MEMORY (256ull << 20)
#define FAKE_VM_CONFIG_VCPUS 2
#define FAKE_VM_CONFIG_KERNEL "/srv/guests/guest & co.elf"
#define FAKE_VM_BALLOON_RSS 1536
#define FAKE_VM_CONFIG_CMDLINE "hello <b>&amp;</b> \"quoted\" 'single'"

struct fake_vm {
	struct monitor *mon;
	char dir[64];                 /* the temporary directory, removed by fake_vm_stop */
	char path[128];               /* the socket */
	char name[64];                /* the VM's name */
	pthread_mutex_t lock;
	pthread_cond_t cond;          /* signalled when slow is set or quit is asked */
	enum monitor_run_state state; /* (lock) */
	bool quit;                    /* (lock) quit was executed */
	struct monitor_pending *slow; /* (lock) the deferred call not yet taken */
	unsigned stats_queries;       /* (lock) query-stats answered so far */
	/* query-config's lineage, set by a test before it asks: NULL answers null. */
	const char *origin_store, *origin_snapshot;
	const char *fork_parent;
	unsigned fork_index, fork_generation;
};

/* Make the monitor (named @name) in a new temporary directory and listen on DIR/NAME.sock.
 * @listen false: make it without a socket (for sessions). */
void fake_vm_start(struct fake_vm *vm, const char *name, bool listen);
/* Destroy the monitor and remove the directory. */
void fake_vm_stop(struct fake_vm *vm);
/* Wait for the slow command to be deferred and take its token. */
struct monitor_pending *fake_vm_take_slow(struct fake_vm *vm);
/* Wait until quit has been executed. */
void fake_vm_wait_quit(struct fake_vm *vm);
/* Wait until the monitor counts @n clients (e.g. after one hung up). */
void fake_vm_wait_clients(struct fake_vm *vm, unsigned n);

/* A test case of @s, with @timeout_s and the fixture @setup/@teardown, added to @s. */
TCase *fake_vm_tcase(Suite *s, const char *name, int timeout_s, SFun setup, SFun teardown);

/* A raw connection: bytes in, lines of JSON out. */
struct fake_vm_conn {
	int fd;
	char *buf;
	size_t len, cap;
};

/* Connect to @path; reads nothing. */
void fake_vm_connect(struct fake_vm_conn *c, const char *path);
/* Connect, read the greeting, negotiate capabilities. */
void fake_vm_connect_ready(struct fake_vm_conn *c, const char *path);
void fake_vm_send(struct fake_vm_conn *c, const char *text);
void fake_vm_send_bytes(struct fake_vm_conn *c, const void *buf, size_t len);
/* The next message (new reference); fails the test on EOF, bad JSON or timeout. */
json_t *fake_vm_read(struct fake_vm_conn *c);
/* The next message that is not an event. */
json_t *fake_vm_read_reply(struct fake_vm_conn *c);
/* Send @line (a newline is added) and return the reply, events skipped. */
json_t *fake_vm_cmd(struct fake_vm_conn *c, const char *line);
/* Read until the server closes; returns the bytes read meanwhile. */
size_t fake_vm_read_eof(struct fake_vm_conn *c);
void fake_vm_close(struct fake_vm_conn *c);

/* The "desc" of an error reply, after checking its class (fails the test if not an error). */
const char *fake_vm_error_desc(json_t *reply, const char *klass);
/* Fail the test unless @reply is {"return": ...}; returns the value (borrowed). */
json_t *fake_vm_return(json_t *reply);

#endif

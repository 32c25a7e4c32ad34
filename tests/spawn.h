/* Run a program (usually build/vmm) as a user would, capturing its output and status. */
#ifndef TESTS_SPAWN_H
#define TESTS_SPAWN_H

#include <stddef.h>
#include <sys/types.h>

struct spawn_result {
	int status;   /* exit status, or 128 + signal number when killed */
	char *out;    /* standard output, NUL-terminated (free with spawn_free) */
	char *err;    /* standard error, NUL-terminated */
	int timed_out;
};

/*
 * Run argv[0] with @argv (NULL-terminated); kill it after @timeout_s seconds.
 * Returns 0, or -1 if it could not be started.
 */
int spawn_run(struct spawn_result *r, unsigned timeout_s, char *const argv[]);

/* spawn_run of build/vmm with the arguments after @timeout_s (NULL-terminated). */
int spawn_vmm(struct spawn_result *r, unsigned timeout_s, ...);

void spawn_free(struct spawn_result *r);

/* Start argv[0] in the background with its output discarded; returns its pid or -1. */
int spawn_background(char *const argv[]);

/* Wait (up to @timeout_s) until a unix socket at @path accepts connections. 0 or -1. */
int spawn_wait_socket(const char *path, unsigned timeout_s);

/* Serve one connection at the unix socket @path with @text, in a child process, then read
 * until the client hangs up (so the client's requests find a peer); returns its pid (the
 * caller kills and reaps it). Fails the running test on error. */
pid_t spawn_serve_once(const char *path, const char *text);

/* A process that listens on the unix socket @path itself (its listen makes it the socket's
 * owner, as a running VM is its monitor's) and waits: kill it to end the stand-in VM. Fails
 * the running test when the socket does not come up. */
pid_t spawn_listener(const char *path);

#endif

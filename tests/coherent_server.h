/*
 * tools/coherent_pager for the tests: started on a fresh zero-filled file in a private
 * temporary directory, killed at the end. Every helper fails the running Check test rather
 * than returning an error.
 */
#ifndef TESTS_COHERENT_SERVER_H
#define TESTS_COHERENT_SERVER_H

#include <stdint.h>
#include <sys/types.h>

struct coherent_server {
	char dir[64];
	char sock[96];  /* its unix socket */
	char file[96];  /* the object it serves */
	pid_t pid;
};

/* Serve a zero file of @size bytes; @deadline_ms: its --deadline-ms, NULL = its default. */
void coherent_server_start(struct coherent_server *s, uint64_t size, const char *deadline_ms);

/* Kill it and remove its files. */
void coherent_server_stop(struct coherent_server *s);

/* The next number of a seeded sequence (xorshift64; *state must not be 0). */
uint64_t coherent_server_random(uint64_t *state);

#endif

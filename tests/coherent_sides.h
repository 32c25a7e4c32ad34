/*
 * Two VMM "processes" sharing one memory object, for the coherence tests: this process
 * (side 0) and a child made by fork before either has threads (side 1), each with its own
 * guest memory over real userfaultfd, host threads touching the object as a vCPU would.
 * They take turns over pipes. Every wait has a deadline (COHERENT_SIDES_GUARD_MS, a hang
 * detector, not a timing bound); every helper fails the running Check test.
 */
#ifndef TESTS_COHERENT_SIDES_H
#define TESTS_COHERENT_SIDES_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "vmm/memory/guest_memory.h"

#define COHERENT_SIDES_PAGES 32u /* the object's pages the sides use */
#define COHERENT_SIDES_SLOTS 8u  /* 64-bit slots of a page the rounds use */
#define COHERENT_SIDES_ROUNDS 300u
#define COHERENT_SIDES_GUARD_MS 20000 /* a peer silent this long has hung */

struct coherent_sides;

/* What one side does with the object at @obj (@me: 0 parent, 1 child; @in, @out: pipes
 * from and to the other side): NULL when all went well, else what went wrong, in @why. */
typedef const char *coherent_side_fn(const struct coherent_sides *s, volatile uint64_t *obj, unsigned me, int in,
				     int out, char *why, size_t n);

/* Make side @me's guest memory (@mem) with the object in it, at *obj. 0, or -errno with a
 * message. May use the pipes (e.g. wait for the other side's object to exist). */
typedef int coherent_side_memory_fn(const struct coherent_sides *s, struct guest_memory *mem, unsigned me, int in,
				    int out, volatile uint64_t **obj);

struct coherent_sides {
	coherent_side_memory_fn *memory;
	coherent_side_fn *fn;
	void (*done)(unsigned me);                    /* after side @me's guest memory is gone, or NULL */
	uint64_t (*initial)(unsigned page, unsigned slot); /* the object's word there at the start; NULL: 0 */
	atomic_int *errors;                           /* the fault thread's failures (side's process) */
};

/* One byte @want from @fd within COHERENT_SIDES_GUARD_MS: false when the peer is gone,
 * silent or says something else. */
bool coherent_sides_wait(int fd, char want);

/* The rounds: one side writes a random slot of a random page (seeded), the other reads it
 * and must find that value, then reads another random slot, which must hold its last value. */
const char *coherent_sides_rounds(const struct coherent_sides *s, volatile uint64_t *obj, unsigned me, int in, int out,
				  char *why, size_t n);

/* Both sides at once, no turns: each counts up its own slot of the same pages, reading it
 * back after every write; once both are done, each finds both counts whole. */
const char *coherent_sides_concurrent(const struct coherent_sides *s, volatile uint64_t *obj, unsigned me, int in,
				      int out, char *why, size_t n);

/* Run s->fn on both sides, each with its guest memory from s->memory; after both looked
 * (a last exchange), each lets its memory go. Fails the test when either side failed. */
void coherent_sides_run(const struct coherent_sides *s);

#endif

#include "coherent_sides.h"

#include <check.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "coherent_server.h"
#include "vmm/error.h"

#define PS VM_PAGE_SIZE
#define CONCURRENT_PAGES 4u
#define CONCURRENT_WRITES 400u

bool coherent_sides_wait(int fd, char want)
{
	struct pollfd p = {fd, POLLIN, 0};
	char c;
	return poll(&p, 1, COHERENT_SIDES_GUARD_MS) == 1 && read(fd, &c, 1) == 1 && c == want;
}

const char *coherent_sides_rounds(const struct coherent_sides *s, volatile uint64_t *obj, unsigned me, int in, int out,
				  char *why, size_t n)
{
	static uint64_t expect[COHERENT_SIDES_PAGES][COHERENT_SIDES_SLOTS];
	for (unsigned p = 0; p < COHERENT_SIDES_PAGES; p++)
		for (unsigned sl = 0; sl < COHERENT_SIDES_SLOTS; sl++)
			expect[p][sl] = s->initial ? s->initial(p, sl) : 0;
	uint64_t seed = 0x243f6a8885a308d3ull;
	for (unsigned r = 0; r < COHERENT_SIDES_ROUNDS; r++) {
		unsigned w = coherent_server_random(&seed) & 1;
		unsigned page = coherent_server_random(&seed) % COHERENT_SIDES_PAGES;
		unsigned slot = coherent_server_random(&seed) % COHERENT_SIDES_SLOTS;
		unsigned p2 = coherent_server_random(&seed) % COHERENT_SIDES_PAGES;
		unsigned s2 = coherent_server_random(&seed) % COHERENT_SIDES_SLOTS;
		uint64_t v = ((uint64_t)(r + 1) << 8) | w;
		volatile uint64_t *at = obj + page * (PS / 8) + slot, *at2 = obj + p2 * (PS / 8) + s2;
		expect[page][slot] = v;
		if (w == me) {
			*at = v;
			if (write(out, "w", 1) != 1 || !coherent_sides_wait(in, 'r'))
				return "the other side is gone";
			continue;
		}
		if (!coherent_sides_wait(in, 'w'))
			return "the other side is gone";
		uint64_t got = *at;
		if (got != v) {
			snprintf(why, n, "round %u: side %u read %#llx at page %u slot %u, side %u wrote %#llx", r, me,
				 (unsigned long long)got, page, slot, w, (unsigned long long)v);
			return why;
		}
		got = *at2;
		if (got != expect[p2][s2]) {
			snprintf(why, n, "round %u: side %u read %#llx at page %u slot %u, expected %#llx", r, me,
				 (unsigned long long)got, p2, s2, (unsigned long long)expect[p2][s2]);
			return why;
		}
		if (write(out, "r", 1) != 1)
			return "the other side is gone";
	}
	return NULL;
}

/* A page moving between the sides without its writer's bytes (a lost update) breaks a count. */
const char *coherent_sides_concurrent(const struct coherent_sides *s, volatile uint64_t *obj, unsigned me, int in,
				      int out, char *why, size_t n)
{
	(void)s;
	for (uint64_t i = 1; i <= CONCURRENT_WRITES; i++) {
		volatile uint64_t *at = obj + (i % CONCURRENT_PAGES) * (PS / 8) + me;
		uint64_t was = *at;
		*at = was + 1;
		if (*at != was + 1 || was != (i - 1) / CONCURRENT_PAGES) {
			snprintf(why, n, "side %u, write %llu: its slot held %llu, expected %llu", me, (unsigned long long)i,
				 (unsigned long long)was, (unsigned long long)((i - 1) / CONCURRENT_PAGES));
			return why;
		}
	}
	if (write(out, "d", 1) != 1 || !coherent_sides_wait(in, 'd'))
		return "the other side is gone";
	for (unsigned p = 0; p < CONCURRENT_PAGES; p++)
		for (unsigned sl = 0; sl < 2; sl++)
			if (obj[p * (PS / 8) + sl] != CONCURRENT_WRITES / CONCURRENT_PAGES) {
				snprintf(why, n, "side %u: page %u slot %u holds %llu at the end, not %u", me, p, sl,
					 (unsigned long long)obj[p * (PS / 8) + sl], CONCURRENT_WRITES / CONCURRENT_PAGES);
				return why;
			}
	return NULL;
}

/* Side @me: its guest memory, s->fn, then (both having looked) the end. */
static const char *coherent_sides_side(const struct coherent_sides *s, unsigned me, int in, int out, char *why,
				       size_t n)
{
	struct guest_memory mem;
	volatile uint64_t *obj = NULL;
	const char *bad = NULL;
	if (s->memory(s, &mem, me, in, out, &obj) != 0) {
		snprintf(why, n, "side %u: guest memory: %s", me, error_message());
		bad = why;
	} else {
		bad = s->fn(s, obj, me, in, out, why, n);
	}
	if (!bad && atomic_load(s->errors))
		bad = "the fault thread failed";
	/* Neither lets go of its guest memory (or the object it serves) before both have looked. */
	if (!bad && (write(out, "e", 1) != 1 || !coherent_sides_wait(in, 'e')))
		bad = "the other side is gone";
	guest_memory_stop(&mem);
	guest_memory_destroy(&mem);
	if (s->done)
		s->done(me);
	return bad;
}

void coherent_sides_run(const struct coherent_sides *s)
{
	int p2c[2], c2p[2];
	ck_assert_int_eq(pipe2(p2c, O_CLOEXEC), 0);
	ck_assert_int_eq(pipe2(c2p, O_CLOEXEC), 0);
	signal(SIGPIPE, SIG_IGN); /* a side that failed is reported, not a write to its pipe */
	/* Fork before either side has threads: the child makes its own guest memory. */
	pid_t child = fork();
	ck_assert_int_ge(child, 0);
	static char why[256];
	if (child == 0) {
		close(p2c[1]);
		close(c2p[0]);
		const char *bad = coherent_sides_side(s, 1, p2c[0], c2p[1], why, sizeof(why));
		if (bad)
			fprintf(stderr, "child: %s\n", bad);
		_exit(bad ? 1 : 0);
	}
	close(p2c[0]);
	close(c2p[1]);
	const char *bad = coherent_sides_side(s, 0, c2p[0], p2c[1], why, sizeof(why));
	close(p2c[1]);
	close(c2p[0]);
	int status = 0;
	ck_assert_int_eq(waitpid(child, &status, 0), child);
	ck_assert_msg(!bad, "parent: %s", bad);
	ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0, "the child side failed (its line is above)");
}

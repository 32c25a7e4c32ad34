/*
 * Two VMM processes share one memory object through tools/coherent_pager, on real
 * userfaultfd, without KVM: each process has its guest memory with the object mapped
 * shared, its fault thread serving the faults of host threads touching it (a vCPU's path)
 * and the pager's lock requests (its event fd). They take turns, coordinated by pipes, over
 * seeded random rounds: one writes a random slot of a random page, the other reads it and
 * must find that value, then reads another random slot that must hold its last value. Then
 * both write the same pages at once and must lose no update. vm_deallocate of the mapping
 * ends it: the writes returned, the pager's event fd watched no more.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "coherent_server.h"
#include "harness.h"
#include "pagers/external_pager.h"
#include "vmm/error.h"
#include "vmm/memory/guest_memory.h"

#define PS VM_PAGE_SIZE
#define RAM_SIZE (2ull << 20)
#define OBJ_GPA (16ull << 20)
#define PAGES 32u
#define SLOTS 8u
#define ROUNDS 300u
#define CONCURRENT_PAGES 4u
#define CONCURRENT_WRITES 400u
#define GUARD_MS 20000 /* a peer silent this long has hung: not a timing bound */

static struct coherent_server server;

static atomic_int errors;
static char last_message[256];

static void on_error(void *arg, int err, const char *message)
{
	(void)arg;
	(void)err;
	fprintf(stderr, "fault thread: %s\n", message);
	snprintf(last_message, sizeof(last_message), "%s", message);
	atomic_fetch_add(&errors, 1);
}

static void setup(void)
{
	coherent_server_start(&server, PAGES * PS, NULL);
}

static void teardown(void)
{
	coherent_server_stop(&server);
}

/* One byte from @fd within GUARD_MS: false when the peer is gone or silent. */
static bool peer_wait(int fd, char want)
{
	struct pollfd p = {fd, POLLIN, 0};
	char c;
	return poll(&p, 1, GUARD_MS) == 1 && read(fd, &c, 1) == 1 && c == want;
}

/* What one side does with the object at @obj (@me: 0 parent, 1 child; @in, @out: pipes
 * from and to the other side): NULL when all went well, else what went wrong, in @why. */
typedef const char *side_fn(volatile uint64_t *obj, unsigned me, int in, int out, char *why, size_t n);

/* The rounds: one writes a random slot, the other reads it and another random slot. */
static const char *side_rounds(volatile uint64_t *obj, unsigned me, int in, int out, char *why, size_t n)
{
	static uint64_t expect[PAGES][SLOTS];
	memset(expect, 0, sizeof(expect));
	uint64_t seed = 0x243f6a8885a308d3ull;
	for (unsigned r = 0; r < ROUNDS; r++) {
		unsigned w = coherent_server_random(&seed) & 1;
		unsigned page = coherent_server_random(&seed) % PAGES, slot = coherent_server_random(&seed) % SLOTS;
		unsigned p2 = coherent_server_random(&seed) % PAGES, s2 = coherent_server_random(&seed) % SLOTS;
		uint64_t v = ((uint64_t)(r + 1) << 8) | w;
		volatile uint64_t *at = obj + page * (PS / 8) + slot, *at2 = obj + p2 * (PS / 8) + s2;
		expect[page][slot] = v;
		if (w == me) {
			*at = v;
			if (write(out, "w", 1) != 1 || !peer_wait(in, 'r'))
				return "the other side is gone";
			continue;
		}
		if (!peer_wait(in, 'w'))
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

/* Both sides at once, no turns: each counts up its own slot of the same pages, reading it
 * back after every write; once both are done, each finds both counts whole. A page moving
 * between them without its writer's bytes (a lost update) breaks a count. */
static const char *side_concurrent(volatile uint64_t *obj, unsigned me, int in, int out, char *why, size_t n)
{
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
	if (write(out, "d", 1) != 1 || !peer_wait(in, 'd'))
		return "the other side is gone";
	for (unsigned p = 0; p < CONCURRENT_PAGES; p++)
		for (unsigned s = 0; s < 2; s++)
			if (obj[p * (PS / 8) + s] != CONCURRENT_WRITES / CONCURRENT_PAGES) {
				snprintf(why, n, "side %u: page %u slot %u holds %llu at the end, not %u", me, p, s,
					 (unsigned long long)obj[p * (PS / 8) + s], CONCURRENT_WRITES / CONCURRENT_PAGES);
				return why;
			}
	/* Neither lets go of its guest memory before both have looked. */
	if (write(out, "e", 1) != 1 || !peer_wait(in, 'e'))
		return "the other side is gone";
	return NULL;
}

/* The object is mapped by vm_map once guest memory runs, not from the start. */
static bool map_at_run_time;

/* Guest memory with the external pager at @sock shared at OBJ_GPA, from the start or (with
 * map_at_run_time) by vm_map once it runs. 0, or -errno with a message. */
static int object_memory(struct guest_memory *mem, const char *sock)
{
	struct guest_memory_config cfg;
	memset(mem, 0, sizeof(*mem));
	memset(&cfg, 0, sizeof(cfg));
	cfg.ram_size = RAM_SIZE;
	if (!map_at_run_time)
		cfg.files[cfg.nfiles++] = (struct guest_file_map){.path = sock, .gpa = OBJ_GPA, .mode = GUEST_MAP_SHARED,
								    .external = true, .size = PAGES * PS};
	int r = guest_memory_create(mem, &cfg);
	if (!r)
		r = guest_memory_start(mem, on_error, NULL);
	if (!r && map_at_run_time) {
		struct guest_memory_map_request q = {.kind = GUEST_REGION_EXTERNAL, .path = sock, .size = PAGES * PS,
						     .cur = VM_PROT_READ | VM_PROT_WRITE, .max = VM_PROT_READ | VM_PROT_WRITE,
						     .inheritance = VM_INHERIT_COPY};
		uint64_t at = OBJ_GPA;
		r = guest_memory_vm_map(mem, &at, false, &q);
	}
	return r;
}

/* Guest memory with the object shared, then @fn. */
static const char *side(side_fn *fn, unsigned me, int in, int out, char *why, size_t n)
{
	struct guest_memory mem;
	const char *bad = NULL;
	if (object_memory(&mem, server.sock) != 0) {
		snprintf(why, n, "side %u: guest memory: %s", me, error_message());
		bad = why;
	} else {
		bad = fn(guest_memory_ptr(&mem, OBJ_GPA, PAGES * PS), me, in, out, why, n);
	}
	if (!bad && atomic_load(&errors))
		bad = "the fault thread failed";
	guest_memory_stop(&mem);
	guest_memory_destroy(&mem);
	return bad;
}

/* Run @fn in this process and in a child, each with its own guest memory. */
static void both_sides(side_fn *fn)
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
		const char *bad = side(fn, 1, p2c[0], c2p[1], why, sizeof(why));
		if (bad)
			fprintf(stderr, "child: %s\n", bad);
		_exit(bad ? 1 : 0);
	}
	close(p2c[0]);
	close(c2p[1]);
	const char *bad = side(fn, 0, c2p[0], p2c[1], why, sizeof(why));
	close(p2c[1]);
	close(c2p[0]);
	int status = 0;
	ck_assert_int_eq(waitpid(child, &status, 0), child);
	ck_assert_msg(!bad, "parent: %s", bad);
	ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0, "the child side failed (its line is above)");
}

START_TEST(test_two_vmm_processes_read_what_the_other_wrote_last)
{
	both_sides(side_rounds);
}
END_TEST

START_TEST(test_two_vmm_processes_writing_the_same_pages_at_once_lose_no_update)
{
	both_sides(side_concurrent);
}
END_TEST

/* The same with the object mapped by vm_map into running guest memory: its pager's lock
 * requests are heard from then on (unheard, the pager would drop a side that does not
 * answer while it waits for the other). */
START_TEST(test_an_object_mapped_at_run_time_is_as_coherent)
{
	map_at_run_time = true;
	both_sides(side_rounds);
}
END_TEST

/* A version-2 pager that, once asked HELLO, sends a lock request outside its object. */
static void *hostile_main(void *arg)
{
	int lfd = *(int *)arg;
	int fd = accept(lfd, NULL, NULL);
	struct extpager_msg m;
	if (fd >= 0 && external_pager_io(fd, &m, sizeof(m), false) == 0 &&
	    external_pager_send_msg(fd, EXTPAGER_HELLO_REPLY, 0, PAGES * PS, 0, EXTPAGER_WRITABLE | EXTPAGER_V2) == 0 &&
	    external_pager_send_msg(fd, EXTPAGER_LOCK_REQUEST, PAGES * PS, PS, 0, EXTPAGER_LOCK_FLUSH) == 0) {
		char b[64];
		while (recv(fd, b, sizeof(b), 0) > 0) /* until the VMM lets go */
			;
	}
	if (fd >= 0)
		close(fd);
	return NULL;
}

/* Nothing faults: the fault thread learns of the lock request through the pager's event
 * fd, finds it outside the object, and stops the VM with one line; whether the pager was
 * mapped from the start or at run time. */
START_TEST(test_a_lock_request_outside_the_object_stops_the_vm_with_one_line)
{
	char sock[128];
	snprintf(sock, sizeof(sock), "%s/hostile", server.dir);
	int lfd = external_pager_listen(sock, 1);
	ck_assert_int_ge(lfd, 0);
	pthread_t t;
	ck_assert_int_eq(pthread_create(&t, NULL, hostile_main, &lfd), 0);
	struct guest_memory mem;
	atomic_store(&errors, 0);
	map_at_run_time = _i == 1;
	ck_assert_msg(object_memory(&mem, sock) == 0, "%s", error_message());
	for (int i = 0; i < GUARD_MS / 10 && !atomic_load(&errors); i++)
		usleep(10000);
	guest_memory_stop(&mem);
	guest_memory_destroy(&mem);
	pthread_join(t, NULL);
	close(lfd);
	unlink(sock);
	ck_assert_int_eq(atomic_load(&errors), 1);
	char want[256];
	snprintf(want, sizeof(want), "external pager %s: the external pager answered with a malformed or unexpected message",
		 sock);
	ck_assert_str_eq(last_message, want);
}
END_TEST

/* The fault thread's watch of pager @index: the pager it serves, and whether its event fd is
 * still polled. */
static void expect_watch(struct guest_memory *mem, unsigned index, bool watched)
{
	ck_assert_uint_gt(mem->nwatched, index);
	pthread_mutex_lock(&mem->faults.watch_lock);
	int fd = mem->faults.watch_fd[index];
	pthread_mutex_unlock(&mem->faults.watch_lock);
	ck_assert_msg((fd >= 0) == watched && (mem->watched[index] != NULL) == watched, "watch %u: fd %d, pager %p",
		      index, fd, (void *)mem->watched[index]);
}

/* vm_deallocate of the object's mapping, from the start or by vm_map: the guest's write is
 * in the server's file when the call returns, the fault thread polls the pager's event fd
 * no more, and the pager is let go. */
START_TEST(test_deallocating_the_objects_mapping_returns_its_writes_and_ends_the_watch)
{
	struct guest_memory mem;
	atomic_store(&errors, 0);
	map_at_run_time = _i == 1;
	ck_assert_msg(object_memory(&mem, server.sock) == 0, "%s", error_message());
	expect_watch(&mem, 0, true);
	volatile uint64_t *obj = guest_memory_ptr(&mem, OBJ_GPA, PAGES * PS);
	obj[3 * PS / sizeof(uint64_t) + 1] = 0x1234567890abcdefull;
	ck_assert_msg(guest_memory_deallocate(&mem, OBJ_GPA, PAGES * PS) == 0, "%s", error_message());
	ck_assert_ptr_null(guest_memory_region(&mem, OBJ_GPA));
	expect_watch(&mem, 0, false);
	ck_assert_uint_eq(mem.nheld, 0);
	int fd = open(server.file, O_RDONLY | O_CLOEXEC);
	ck_assert_int_ge(fd, 0);
	uint64_t v = 0;
	ck_assert_int_eq(pread(fd, &v, sizeof(v), 3 * PS + sizeof(uint64_t)), (ssize_t)sizeof(v));
	close(fd);
	ck_assert_uint_eq(v, 0x1234567890abcdefull);
	guest_memory_stop(&mem);
	guest_memory_destroy(&mem);
	ck_assert_int_eq(atomic_load(&errors), 0);
}
END_TEST

Suite *guest_memory_coherent_suite(void)
{
	Suite *s = suite_create("guest_memory_coherent");
	harness_requires(HARNESS_UFFD);
	TCase *tc = tcase_create("coherent");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 120);
	HARNESS_ADD_TEST(tc, test_two_vmm_processes_read_what_the_other_wrote_last);
	HARNESS_ADD_TEST(tc, test_two_vmm_processes_writing_the_same_pages_at_once_lose_no_update);
	HARNESS_ADD_TEST(tc, test_an_object_mapped_at_run_time_is_as_coherent);
	/* 0: the pager mapped from the start; 1: by vm_map once guest memory runs. */
	HARNESS_ADD_LOOP_TEST(tc, test_a_lock_request_outside_the_object_stops_the_vm_with_one_line, 0, 2);
	HARNESS_ADD_LOOP_TEST(tc, test_deallocating_the_objects_mapping_returns_its_writes_and_ends_the_watch, 0, 2);
	suite_add_tcase(s, tc);
	return s;
}

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
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "coherent_server.h"
#include "coherent_sides.h"
#include "harness.h"
#include "pagers/external_pager.h"
#include "vmm/error.h"
#include "vmm/memory/guest_memory.h"

#define PS VM_PAGE_SIZE
#define RAM_SIZE (2ull << 20)
#define OBJ_GPA (16ull << 20)
#define PAGES COHERENT_SIDES_PAGES
#define GUARD_MS COHERENT_SIDES_GUARD_MS

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

/* The object is mapped by vm_map once guest memory runs, not from the start. */
static bool map_at_run_time;

/* vm_map of the external pager at @sock at OBJ_GPA, shared and writable. */
static int map_object(struct guest_memory *mem, const char *sock)
{
	struct guest_memory_map_request q = {.kind = GUEST_REGION_EXTERNAL, .path = sock, .size = PAGES * PS,
					     .cur = VM_PROT_READ | VM_PROT_WRITE, .max = VM_PROT_READ | VM_PROT_WRITE,
					     .inheritance = VM_INHERIT_COPY};
	uint64_t at = OBJ_GPA;
	return guest_memory_vm_map(mem, &at, false, &q);
}

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
	if (!r && map_at_run_time)
		r = map_object(mem, sock);
	return r;
}

/* Side @me's guest memory: the coherent server's object at OBJ_GPA. */
static int side_memory(const struct coherent_sides *s, struct guest_memory *mem, unsigned me, int in, int out,
		       volatile uint64_t **obj)
{
	(void)s, (void)me, (void)in, (void)out;
	int r = object_memory(mem, server.sock);
	if (!r)
		*obj = guest_memory_ptr(mem, OBJ_GPA, PAGES * PS);
	return r;
}

/* Both sides over the coherent server's object, doing @fn. */
static void both_sides(coherent_side_fn *fn)
{
	struct coherent_sides s = {.memory = side_memory, .fn = fn, .errors = &errors};
	coherent_sides_run(&s);
}

START_TEST(test_two_vmm_processes_read_what_the_other_wrote_last)
{
	both_sides(coherent_sides_rounds);
}
END_TEST

START_TEST(test_two_vmm_processes_writing_the_same_pages_at_once_lose_no_update)
{
	both_sides(coherent_sides_concurrent);
}
END_TEST

/* The same with the object mapped by vm_map into running guest memory: its pager's lock
 * requests are heard from then on (unheard, the pager would drop a side that does not
 * answer while it waits for the other). */
START_TEST(test_an_object_mapped_at_run_time_is_as_coherent)
{
	map_at_run_time = true;
	both_sides(coherent_sides_rounds);
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

/* A VM that maps and deallocates coherent objects for as long as it runs: each mapping's
 * event fd is watched at the index the one before let go, never running out of them. */
START_TEST(test_mapping_the_object_again_and_again_watches_it_at_the_index_let_go)
{
	struct guest_memory mem;
	atomic_store(&errors, 0);
	map_at_run_time = true;
	ck_assert_msg(object_memory(&mem, server.sock) == 0, "%s", error_message());
	for (unsigned round = 0; round < 3 * FAULT_THREAD_WATCH_MAX; round++) {
		if (round)
			ck_assert_msg(map_object(&mem, server.sock) == 0, "round %u: %s", round, error_message());
		expect_watch(&mem, 0, true);
		ck_assert_uint_eq(mem.nwatched, 1);
		volatile uint64_t *obj = guest_memory_ptr(&mem, OBJ_GPA, PAGES * PS);
		ck_assert_uint_eq(obj[round + 1], round ? 1000 + round - 1 : 0); /* the last round's write */
		obj[round + 2] = 1000 + round;
		ck_assert_msg(guest_memory_deallocate(&mem, OBJ_GPA, PAGES * PS) == 0, "%s", error_message());
		expect_watch(&mem, 0, false);
	}
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
	HARNESS_ADD_TEST(tc, test_mapping_the_object_again_and_again_watches_it_at_the_index_let_go);
	suite_add_tcase(s, tc);
	return s;
}

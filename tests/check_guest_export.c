/*
 * vm_export (vmm/memory/guest_export.h) on real userfaultfd, without KVM: a VMM process
 * whose RAM holds a pattern exports a range of it; another VMM process maps the object at
 * its socket, as vm-map "pager" does. Host threads touch guest memory as vCPUs would. Two
 * processes through tests/coherent_sides.h: side 1 (the child) exports, side 0 maps.
 *
 *   side 1: RAM [0, 4 MiB), [EXPORT_GPA, +PAGES) -> object (netmemory in side 1) <- socket
 *   side 0: RAM [0, 4 MiB), [OBJ_GPA, +PAGES)    -> object at the socket (share or copy)
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "coherent_sides.h"
#include "harness.h"
#include "pagers/external_pager.h"
#include "vmm/error.h"
#include "vmm/memory/guest_export.h"
#include "vmm/memory/guest_memory.h"

#define PS VM_PAGE_SIZE
#define RAM_SIZE (4ull << 20)
#define EXPORT_GPA (1ull << 20)
#define OBJ_GPA (16ull << 20)
#define PAGES COHERENT_SIDES_PAGES
#define WORDS (PS / 8)

static atomic_int errors;
static char last_message[256];
static char dir[64], sock[100];
static struct guest_export exported; /* side 1's */
static bool map_copy;                /* side 0 maps a copy instead of sharing */

static void on_error(void *arg, int err, const char *message)
{
	(void)arg;
	(void)err;
	fprintf(stderr, "fault thread: %s\n", message);
	snprintf(last_message, sizeof(last_message), "%s", message);
	atomic_fetch_add(&errors, 1);
}

/* The word the exporter's RAM holds at word @w of page @p of the range before the export. */
static uint64_t pattern(unsigned p, unsigned w)
{
	return 0xe0000000000000ull | (uint64_t)p << 16 | w;
}

static void setup(void)
{
	atomic_store(&errors, 0);
	last_message[0] = '\0';
	map_copy = false;
	strcpy(dir, "/tmp/vmm-export-XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(dir));
	snprintf(sock, sizeof(sock), "%s/demo.export-1.sock", dir);
}

static void teardown(void)
{
	unlink(sock);
	rmdir(dir);
}

/* Running guest memory of RAM_SIZE. 0 or -errno with a message. */
static int ram_memory(struct guest_memory *mem)
{
	struct guest_memory_config cfg = {.ram_size = RAM_SIZE};
	memset(mem, 0, sizeof(*mem));
	int r = guest_memory_create(mem, &cfg);
	return r ? r : guest_memory_start(mem, on_error, NULL);
}

/* RAM with the pattern written by this thread (a vCPU's path), then exported at sock. */
static int exporter_memory(struct guest_memory *mem)
{
	int r = ram_memory(mem);
	if (r)
		return r;
	volatile uint64_t *ram = guest_memory_ptr(mem, EXPORT_GPA, PAGES * PS);
	for (unsigned p = 0; p < PAGES; p++)
		for (unsigned w = 0; w < WORDS; w++)
			ram[p * WORDS + w] = pattern(p, w);
	return guest_export_start(&exported, mem, EXPORT_GPA, PAGES * PS, sock);
}

/* The object at @path mapped at OBJ_GPA, shared (or copied, map_copy). 0 or -errno. */
static int map_object(struct guest_memory *mem, const char *path)
{
	struct guest_memory_map_request q = {.kind = GUEST_REGION_EXTERNAL, .path = path, .size = PAGES * PS,
					     .copy = map_copy, .cur = VM_PROT_DEFAULT, .max = VM_PROT_DEFAULT,
					     .inheritance = VM_INHERIT_COPY};
	uint64_t at = OBJ_GPA;
	return guest_memory_vm_map(mem, &at, false, &q);
}

/* Side 1 exports and says 'x'; side 0 waits for that, then maps the object. */
static int side_memory(const struct coherent_sides *s, struct guest_memory *mem, unsigned me, int in, int out,
		       volatile uint64_t **obj)
{
	(void)s;
	int r;
	if (me == 1) {
		r = exporter_memory(mem);
		if (!r && write(out, "x", 1) != 1)
			r = error_set(EPIPE, "side 0 is gone");
		*obj = guest_memory_ptr(mem, EXPORT_GPA, PAGES * PS);
		return r;
	}
	if (!coherent_sides_wait(in, 'x'))
		return error_set(ETIMEDOUT, "the exporter did not export");
	r = ram_memory(mem);
	if (!r)
		r = map_object(mem, sock);
	*obj = guest_memory_ptr(mem, OBJ_GPA, PAGES * PS);
	return r;
}

static void side_done(unsigned me)
{
	if (me == 1)
		guest_export_stop(&exported);
}

/* Every word of the object is the pattern (its words from @first on). */
static const char *check_pattern(volatile uint64_t *obj, unsigned me, unsigned first, char *why, size_t n)
{
	for (unsigned p = 0; p < PAGES; p++)
		for (unsigned w = first; w < WORDS; w++)
			if (obj[p * WORDS + w] != pattern(p, w)) {
				snprintf(why, n, "side %u: page %u word %u holds %#llx, not %#llx", me, p, w,
					 (unsigned long long)obj[p * WORDS + w], (unsigned long long)pattern(p, w));
				return why;
			}
	return NULL;
}

static const char *side_pattern(const struct coherent_sides *s, volatile uint64_t *obj, unsigned me, int in, int out,
				char *why, size_t n)
{
	(void)s, (void)in, (void)out;
	return check_pattern(obj, me, 0, why, n);
}

static void run_sides(coherent_side_fn *fn)
{
	struct coherent_sides s = {.memory = side_memory, .fn = fn, .done = side_done, .initial = pattern, .errors = &errors};
	coherent_sides_run(&s);
}

START_TEST(test_an_exported_range_reads_as_it_was_in_the_exporter_and_in_a_vm_that_maps_it)
{
	run_sides(side_pattern);
}
END_TEST

/* The seeded rounds of the coherence tests, between the exporter's own RAM and a mapper. */
START_TEST(test_the_exporter_and_a_mapper_read_what_the_other_wrote_last)
{
	run_sides(coherent_sides_rounds);
}
END_TEST

/*
 * A copy is the object as it was at the mapping: side 0 maps a copy; side 1 then writes
 * slot 0 of every page; side 0 still reads the pattern, and its own writes (slot 1) do not
 * reach side 1.
 */
static const char *side_copy(const struct coherent_sides *s, volatile uint64_t *obj, unsigned me, int in, int out,
			     char *why, size_t n)
{
	(void)s;
	if (me == 1) {
		if (!coherent_sides_wait(in, 'a'))
			return "side 0 is gone";
		for (unsigned p = 0; p < PAGES; p++)
			obj[p * WORDS] = ~0ull;
		if (write(out, "b", 1) != 1 || !coherent_sides_wait(in, 'c'))
			return "side 0 is gone";
		return check_pattern(obj, me, 1, why, n);
	}
	if (write(out, "a", 1) != 1 || !coherent_sides_wait(in, 'b'))
		return "side 1 is gone";
	const char *bad = check_pattern(obj, me, 0, why, n);
	for (unsigned p = 0; p < PAGES && !bad; p++)
		obj[p * WORDS + 1] = 0;
	if (write(out, "c", 1) != 1)
		return "side 1 is gone";
	return bad;
}

START_TEST(test_a_copy_of_an_exported_range_is_private_from_the_mapping_on)
{
	map_copy = true;
	run_sides(side_copy);
}
END_TEST

/*
 * The exporter is killed: the mapper's fault thread hears its connection close and stops
 * the VM with one line, and a later access through the object fails instead of waiting
 * (within the guard: a hang fails the test).
 */
START_TEST(test_a_mapper_of_a_killed_exporter_fails_with_one_line)
{
	int c2p[2];
	ck_assert_int_eq(pipe2(c2p, O_CLOEXEC), 0);
	pid_t child = fork();
	ck_assert_int_ge(child, 0);
	if (child == 0) {
		close(c2p[0]);
		struct guest_memory mem;
		if (exporter_memory(&mem) != 0 || write(c2p[1], "x", 1) != 1)
			_exit(1);
		pause(); /* until killed */
		_exit(1);
	}
	close(c2p[1]);
	bool exported_ok = coherent_sides_wait(c2p[0], 'x');
	close(c2p[0]);
	if (!exported_ok) {
		kill(child, SIGKILL);
		waitpid(child, NULL, 0);
		ck_abort_msg("the exporter did not export");
	}
	struct guest_memory mem;
	ck_assert_msg(ram_memory(&mem) == 0, "%s", error_message());
	ck_assert_msg(map_object(&mem, sock) == 0, "%s", error_message());
	volatile uint64_t *obj = guest_memory_ptr(&mem, OBJ_GPA, PAGES * PS);
	ck_assert_uint_eq(obj[3 * WORDS + 5], pattern(3, 5));
	kill(child, SIGKILL);
	ck_assert_int_eq(waitpid(child, NULL, 0), child);
	for (int i = 0; i < COHERENT_SIDES_GUARD_MS / 10 && !atomic_load(&errors); i++)
		usleep(10000);
	uint64_t v = 1;
	int w = guest_memory_vm_write(&mem, OBJ_GPA, &v, sizeof(v));
	guest_memory_stop(&mem);
	guest_memory_destroy(&mem);
	ck_assert_int_eq(atomic_load(&errors), 1);
	ck_assert_ptr_nonnull(strstr(last_message, sock));
	ck_assert_ptr_null(strchr(last_message, '\n'));
	ck_assert_int_ne(w, 0);
}
END_TEST

/* One process: guest memory, and an export of it once a test made one. */
static struct guest_memory mem;
static bool exporting;

static void one_setup(void)
{
	setup();
	exporting = false;
	ck_assert_msg(ram_memory(&mem) == 0, "%s", error_message());
	error_clear();
}

static void one_teardown(void)
{
	guest_memory_stop(&mem);
	guest_memory_destroy(&mem);
	/* After the guest memory that maps it, as at a VM's end. */
	if (exporting)
		guest_export_stop(&exported);
	teardown();
	ck_assert_int_eq(atomic_load(&errors), 0);
}

/* An export of [gpa, +size) at @path is refused with @code, and guest memory is unchanged. */
static void refused(uint64_t gpa, uint64_t size, const char *path, int err, const char *code)
{
	unsigned before;
	guest_memory_regions(&mem, &before);
	struct guest_export e;
	ck_assert_int_eq(guest_export_start(&e, &mem, gpa, size, path), -err);
	char want[128];
	snprintf(want, sizeof(want), "vm_export of [0x%llx, +0x%llx): %s", (unsigned long long)gpa,
		 (unsigned long long)size, code);
	ck_assert_msg(strncmp(error_message(), want, strlen(want)) == 0, "'%s' is not '%s...'", error_message(), want);
	unsigned after;
	guest_memory_regions(&mem, &after);
	ck_assert_uint_eq(after, before);
	struct stat st;
	ck_assert_int_ne(stat(path, &st), 0);
}

START_TEST(test_a_malformed_export_returns_machs_error_and_changes_nothing)
{
	uint64_t second = RAM_SIZE;
	ck_assert_int_eq(guest_memory_allocate(&mem, &second, 1ull << 20, false), 0);
	refused(EXPORT_GPA + 1, PS, sock, EINVAL, "KERN_INVALID_ARGUMENT");      /* unaligned address */
	refused(EXPORT_GPA, PS + 8, sock, EINVAL, "KERN_INVALID_ARGUMENT");      /* unaligned size */
	refused(EXPORT_GPA, 0, sock, EINVAL, "KERN_INVALID_ARGUMENT");           /* empty */
	refused(-(uint64_t)PS, 2 * PS, sock, EINVAL, "KERN_INVALID_ARGUMENT");   /* wraps */
	refused(OBJ_GPA, PS, sock, EINVAL, "KERN_INVALID_ARGUMENT");             /* not RAM */
	refused(RAM_SIZE - PS, 2 * PS, sock, EINVAL, "KERN_INVALID_ARGUMENT");   /* across two regions */
	char long_path[200];
	memset(long_path, 'a', sizeof(long_path) - 1);
	long_path[sizeof(long_path) - 1] = '\0';
	refused(EXPORT_GPA, PS, long_path, EINVAL, "KERN_INVALID_ARGUMENT");     /* a socket path too long */
	char no_dir[160];
	snprintf(no_dir, sizeof(no_dir), "%s/missing/x.sock", dir);
	refused(EXPORT_GPA, PS, no_dir, EINVAL, "KERN_INVALID_ARGUMENT");        /* a socket that cannot be made */
	/* An exported range is an object's, not RAM: not exported twice. */
	ck_assert_msg(guest_export_start(&exported, &mem, EXPORT_GPA, PAGES * PS, sock) == 0, "%s", error_message());
	exporting = true;
	char other[140];
	snprintf(other, sizeof(other), "%s/other.sock", dir);
	refused(EXPORT_GPA, PS, other, EINVAL, "KERN_INVALID_ARGUMENT");
}
END_TEST

/* vm-unexport: the socket goes at once and nobody new maps the object; the exporter's own
 * guest goes on reading and writing its range. */
START_TEST(test_an_unexported_range_takes_no_new_mapper_and_keeps_its_bytes)
{
	volatile uint64_t *ram = guest_memory_ptr(&mem, EXPORT_GPA, PAGES * PS);
	ram[7] = 0x1234;
	ck_assert_msg(guest_export_start(&exported, &mem, EXPORT_GPA, PAGES * PS, sock) == 0, "%s", error_message());
	exporting = true;
	struct stat st;
	ck_assert_int_eq(stat(sock, &st), 0);
	ck_assert_int_eq(st.st_mode & 0777, 0600);
	ck_assert_uint_eq(ram[7], 0x1234);
	guest_export_unlisten(&exported);
	ck_assert_int_ne(stat(sock, &st), 0);
	ck_assert_int_ne(map_object(&mem, sock), 0);
	ck_assert_ptr_nonnull(strstr(error_message(), "KERN_INVALID_ARGUMENT"));
	ram[8] = 0x5678;
	ck_assert_uint_eq(ram[7], 0x1234);
	ck_assert_uint_eq(ram[8], 0x5678);
	const struct guest_region *g = guest_memory_region(&mem, EXPORT_GPA);
	ck_assert_int_eq(g->kind, GUEST_REGION_EXTERNAL);
	ck_assert_uint_eq(g->mode, GUEST_MAP_SHARED);
}
END_TEST

/*
 * The socket is 0600; behind that, a client of another user is refused by its credentials
 * (SO_PEERCRED): with the socket opened to all, a process of uid 65534 says HELLO and gets
 * the connection closed, no answer. Needs root to become another user.
 */
START_TEST(test_a_client_of_another_user_is_refused)
{
	ck_assert_msg(guest_export_start(&exported, &mem, EXPORT_GPA, PAGES * PS, sock) == 0, "%s", error_message());
	exporting = true;
	struct stat st;
	ck_assert_int_eq(stat(sock, &st), 0);
	ck_assert_int_eq(st.st_mode & 0777, 0600);
	if (geteuid() != 0) {
		fprintf(stderr, "guest_export: not root: only the socket's mode is checked\n");
		return;
	}
	ck_assert_int_eq(chmod(dir, 0755), 0);
	ck_assert_int_eq(chmod(sock, 0777), 0);
	pid_t child = fork();
	ck_assert_int_ge(child, 0);
	if (child == 0) {
		struct sockaddr_un a = {.sun_family = AF_UNIX};
		snprintf(a.sun_path, sizeof(a.sun_path), "%s", sock);
		int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
		struct timeval tv = {COHERENT_SIDES_GUARD_MS / 1000, 0};
		struct extpager_msg m;
		if (setuid(65534) != 0 || fd < 0 || setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)) != 0 ||
		    connect(fd, (struct sockaddr *)&a, sizeof(a)) != 0) {
			fprintf(stderr, "the other user's client: %s\n", strerror(errno));
			_exit(2);
		}
		/* Closed without a word: before the HELLO is sent, or after (reset: it was left
		 * unread); neither answered nor timed out. */
		if (external_pager_send_msg(fd, EXTPAGER_HELLO, 0, 0, 0, EXTPAGER_VERSION) != 0)
			_exit(errno == EPIPE || errno == ECONNRESET ? 0 : 1);
		ssize_t n = recv(fd, &m, sizeof(m), 0);
		_exit(n == 0 || (n < 0 && errno == ECONNRESET) ? 0 : 1);
	}
	int status = 0;
	ck_assert_int_eq(waitpid(child, &status, 0), child);
	ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0, "the other user's client got status %d", status);
}
END_TEST

Suite *guest_export_suite(void)
{
	Suite *s = suite_create("guest_export");
	harness_requires(HARNESS_UFFD);
	TCase *tc = tcase_create("two_processes");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 120);
	HARNESS_ADD_TEST(tc, test_an_exported_range_reads_as_it_was_in_the_exporter_and_in_a_vm_that_maps_it);
	HARNESS_ADD_TEST(tc, test_the_exporter_and_a_mapper_read_what_the_other_wrote_last);
	HARNESS_ADD_TEST(tc, test_a_copy_of_an_exported_range_is_private_from_the_mapping_on);
	HARNESS_ADD_TEST(tc, test_a_mapper_of_a_killed_exporter_fails_with_one_line);
	suite_add_tcase(s, tc);
	TCase *one = tcase_create("one_process");
	tcase_add_checked_fixture(one, one_setup, one_teardown);
	tcase_set_timeout(one, 60);
	HARNESS_ADD_TEST(one, test_a_malformed_export_returns_machs_error_and_changes_nothing);
	HARNESS_ADD_TEST(one, test_an_unexported_range_takes_no_new_mapper_and_keeps_its_bytes);
	HARNESS_ADD_TEST(one, test_a_client_of_another_user_is_refused);
	suite_add_tcase(s, one);
	return s;
}

/*
 * The RADOS client (vmm/store/rados.h) and its helper (tools/rados_server.c) against a real
 * single-node cluster (tests/ceph_cluster.h, started once for the "cluster" case in the
 * runner): objects, listing, locks between connections (each its own Ceph client), locks
 * of processes and hosts that die; and, without a cluster, helpers that are missing,
 * hostile or stuck (shell scripts writing crafted frames), and a cluster that is not there.
 * Each test of the cluster uses namespaces of its own.
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "ceph_cluster.h"
#include "harness.h"
#include "spawn.h"
#include "vmm/error.h"
#include "vmm/store/rados.h"
#include "vmm/store/rados_frame.h"

#define GUARD_MS 30000u /* a wait this long means something hangs: not a timing bound */

static struct ceph_cluster cluster; /* the "cluster" case's, made in the runner */
static char scratch[64];            /* the "helper" case's folder for fake helpers and confs */

/* The helper of this build ($VMM_BUILD/rados_server), whoever's is installed. */
static void use_built_helper(void)
{
	setenv("VMM_RADOS", harness_build_path("rados_server"), 1);
}

static void cluster_setup(void)
{
	use_built_helper();
	char why[512];
	ck_assert_msg(ceph_cluster_start(&cluster, why, sizeof(why)) == 0, "test cluster: %s", why);
}

static void cluster_teardown(void)
{
	ceph_cluster_stop(&cluster);
}

static void scratch_setup(void)
{
	use_built_helper();
	strcpy(scratch, "/tmp/vmm-rados-XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(scratch));
}

static void scratch_teardown(void)
{
	char cmd[96];
	snprintf(cmd, sizeof(cmd), "rm -rf %s", scratch);
	ck_assert_int_eq(system(cmd), 0);
}

#define ck_ok(call)                                                                           \
	do {                                                                                  \
		int r_ = (call);                                                              \
		ck_assert_msg(r_ == 0, "%s: %d: %s", #call, r_, error_message());            \
	} while (0)

/* @r is -@err and the message holds @words. */
#define ck_fails(r, err, words)                                                              \
	do {                                                                                  \
		int r_ = (r);                                                                 \
		ck_assert_msg(r_ == -(err), "%d, not %d (%s): %s", r_, -(err), #err, error_message()); \
		ck_assert_msg(strstr(error_message(), (words)), "message '%s' lacks '%s'", error_message(), (words)); \
	} while (0)

static struct rados_conn *conn(const char *nspace)
{
	struct rados_conn *c;
	int r = rados_conn_open(cluster.pool, nspace, cluster.conf, NULL, &c);
	ck_assert_msg(r == 0, "open %s/%s: %d: %s", cluster.pool, nspace, r, error_message());
	return c;
}

static void fill(uint8_t *p, size_t n, unsigned seed)
{
	for (size_t i = 0; i < n; i++)
		p[i] = (uint8_t)(i * 131u + (i >> 9) + seed * 7u);
}

static void sleep_ms(unsigned ms)
{
	struct timespec t = {ms / 1000, (long)(ms % 1000) * 1000000L};
	nanosleep(&t, NULL);
}

/* ---- objects ------------------------------------------------------------------------ */

START_TEST(objects_round_trip_through_write_stat_read_and_remove)
{
	struct rados_conn *c = conn("objects");
	static uint8_t data[10000], back[20000];
	fill(data, sizeof(data), 1);
	ck_ok(rados_conn_write_full(c, "a", data, sizeof(data), false));
	uint64_t size, mtime_ns;
	ck_ok(rados_conn_stat(c, "a", &size, &mtime_ns));
	ck_assert_uint_eq(size, sizeof(data));
	uint64_t now_s = (uint64_t)time(NULL);
	ck_assert_msg(mtime_ns / 1000000000u + 86400 > now_s && mtime_ns / 1000000000u < now_s + 86400,
		      "mtime %llu ns is not today", (unsigned long long)mtime_ns);
	size_t got;
	ck_ok(rados_conn_read(c, "a", 0, back, sizeof(back), &got));
	ck_assert_uint_eq(got, sizeof(data));
	ck_assert_mem_eq(back, data, sizeof(data));
	ck_ok(rados_conn_read(c, "a", 9000, back, 5000, &got));
	ck_assert_uint_eq(got, 1000);
	ck_assert_mem_eq(back, data + 9000, 1000);
	ck_ok(rados_conn_read(c, "a", 20000, back, 10, &got));
	ck_assert_uint_eq(got, 0);
	ck_ok(rados_conn_remove(c, "a"));
	ck_fails(rados_conn_stat(c, "a", &size, &mtime_ns), ENOENT,
		 "rados vmm/objects: a: cannot stat: No such file or directory");
	ck_assert_str_eq(error_message(), "rados vmm/objects: a: cannot stat: No such file or directory");
	ck_fails(rados_conn_read(c, "a", 0, back, 10, &got), ENOENT, "a: cannot read: No such file or directory");
	ck_fails(rados_conn_remove(c, "a"), ENOENT, "a: cannot remove: No such file or directory");
	rados_conn_close(c);
}
END_TEST

START_TEST(append_grows_an_object_and_write_full_replaces_it_whole)
{
	struct rados_conn *c = conn("append");
	ck_ok(rados_conn_append(c, "log", "one", 3));
	ck_ok(rados_conn_append(c, "log", "two", 3));
	ck_ok(rados_conn_append(c, "log", "three", 5));
	char back[32];
	size_t got;
	ck_ok(rados_conn_read(c, "log", 0, back, sizeof(back), &got));
	ck_assert_uint_eq(got, 11);
	ck_assert_mem_eq(back, "onetwothree", 11);
	ck_ok(rados_conn_write_full(c, "log", "x", 1, false));
	uint64_t size, mtime_ns;
	ck_ok(rados_conn_stat(c, "log", &size, &mtime_ns));
	ck_assert_uint_eq(size, 1);
	ck_ok(rados_conn_write_full(c, "log", "", 0, false));
	ck_ok(rados_conn_stat(c, "log", &size, &mtime_ns));
	ck_assert_uint_eq(size, 0);
	rados_conn_close(c);
}
END_TEST

START_TEST(exclusive_create_refuses_an_object_that_exists)
{
	struct rados_conn *c = conn("create");
	ck_ok(rados_conn_write_full(c, "obj", "first", 5, true));
	ck_fails(rados_conn_write_full(c, "obj", "second", 6, true), EEXIST,
		 "rados vmm/create: obj: cannot create: it exists already: File exists");
	char back[16];
	size_t got;
	ck_ok(rados_conn_read(c, "obj", 0, back, sizeof(back), &got));
	ck_assert_uint_eq(got, 5);
	ck_assert_mem_eq(back, "first", 5);
	ck_ok(rados_conn_write_full(c, "obj", "second", 6, false));
	ck_ok(rados_conn_read(c, "obj", 0, back, sizeof(back), &got));
	ck_assert_uint_eq(got, 6);
	ck_assert_mem_eq(back, "second", 6);
	rados_conn_close(c);
}
END_TEST

START_TEST(read_extents_returns_each_range_in_order)
{
	struct rados_conn *c = conn("extents");
	const size_t size = 1u << 20;
	uint8_t *data = malloc(size), *back = malloc(size);
	fill(data, size, 2);
	ck_ok(rados_conn_write_full(c, "big", data, size, false));
	const struct rados_extent ext[] = {{0, 4096}, {524288, 8192}, {4096, 100}, {size - 10, 10}, {1000, 0}, {7, 1}};
	const size_t n = sizeof(ext) / sizeof(ext[0]);
	ck_ok(rados_conn_read_extents(c, "big", ext, n, back));
	size_t at = 0;
	for (size_t i = 0; i < n; i++) {
		ck_assert_msg(memcmp(back + at, data + ext[i].off, ext[i].len) == 0, "range %zu differs", i);
		at += ext[i].len;
	}
	ck_ok(rados_conn_read_extents(c, "big", ext, 0, back));
	const struct rados_extent past[] = {{0, 10}, {size - 10, 20}};
	ck_fails(rados_conn_read_extents(c, "big", past, 2, back), EIO,
		 "big: cannot read extents: range 1 (20 bytes at 1048566) reaches past the object's end: 10 bytes there");
	ck_fails(rados_conn_read_extents(c, "missing", ext, n, back), ENOENT, "missing: cannot read extents: No such file");
	/* Refused before anything is sent; the connection is still good. */
	static struct rados_extent many[RADOS_EXTENTS_MAX + 1];
	ck_fails(rados_conn_read_extents(c, "big", many, RADOS_EXTENTS_MAX + 1, back), EINVAL, "1025 ranges (at most 1024)");
	ck_ok(rados_conn_read_extents(c, "big", ext, 1, back));
	free(data);
	free(back);
	rados_conn_close(c);
}
END_TEST

#define LONG_NAMES 40
#define LONG_NAME_BYTES 2000 /* 40 of them fill more than one LIST frame */

struct listing {
	size_t n;
	char names[LONG_NAMES + 8][RADOS_NAME_MAX + 1];
};

static void collect(void *arg, const char *oid)
{
	struct listing *l = arg;
	ck_assert_uint_lt(l->n, sizeof(l->names) / sizeof(l->names[0]));
	ck_assert_uint_le(strlen(oid), RADOS_NAME_MAX);
	strcpy(l->names[l->n++], oid);
}

static int by_name(const void *a, const void *b)
{
	return strcmp(a, b);
}

static void list(struct rados_conn *c, const char *prefix, struct listing *l)
{
	l->n = 0;
	ck_ok(rados_conn_list(c, prefix, collect, l));
	qsort(l->names, l->n, sizeof(l->names[0]), by_name);
}

START_TEST(list_gives_every_object_of_the_namespace_with_the_prefix)
{
	struct rados_conn *c = conn("list");
	const char *names[] = {"packs/00000001", "packs/00000002", "snapshots/a.snap", "other"};
	for (size_t i = 0; i < 4; i++)
		ck_ok(rados_conn_write_full(c, names[i], "x", 1, false));
	static char long_name[LONG_NAME_BYTES + 1];
	for (int i = 0; i < LONG_NAMES; i++) {
		memset(long_name, 'n', LONG_NAME_BYTES);
		snprintf(long_name, sizeof(long_name), "long/%04d", i);
		long_name[9] = '-';
		long_name[LONG_NAME_BYTES] = '\0';
		ck_ok(rados_conn_write_full(c, long_name, "x", 1, false));
	}
	static struct listing l;
	list(c, "packs/", &l);
	ck_assert_uint_eq(l.n, 2);
	ck_assert_str_eq(l.names[0], "packs/00000001");
	ck_assert_str_eq(l.names[1], "packs/00000002");
	list(c, "long/", &l);
	ck_assert_uint_eq(l.n, LONG_NAMES);
	for (int i = 0; i < LONG_NAMES; i++) {
		ck_assert_uint_eq(strlen(l.names[i]), LONG_NAME_BYTES);
		char head[32];
		snprintf(head, sizeof(head), "long/%04d-", i);
		ck_assert_msg(strncmp(l.names[i], head, 10) == 0, "name %d starts '%.12s'", i, l.names[i]);
	}
	list(c, NULL, &l);
	ck_assert_uint_eq(l.n, 4 + LONG_NAMES);
	list(c, "none/", &l);
	ck_assert_uint_eq(l.n, 0);
	struct rados_conn *other = conn("list-other");
	list(other, "", &l);
	ck_assert_uint_eq(l.n, 0);
	rados_conn_close(other);
	rados_conn_close(c);
}
END_TEST

START_TEST(another_connection_reads_what_one_wrote)
{
	const size_t size = 3u << 20; /* past the buffers a connection keeps between calls */
	uint8_t *data = malloc(size), *back = malloc(size);
	fill(data, size, 3);
	struct rados_conn *a = conn("shared");
	ck_ok(rados_conn_write_full(a, "blob", data, size, false));
	rados_conn_close(a);
	struct rados_conn *b = conn("shared");
	size_t got;
	ck_ok(rados_conn_read(b, "blob", 0, back, size, &got));
	ck_assert_uint_eq(got, size);
	ck_assert_msg(memcmp(back, data, size) == 0, "the bytes read differ");
	rados_conn_close(b);
	free(data);
	free(back);
}
END_TEST

START_TEST(bad_arguments_are_refused_before_the_helper_and_leave_the_connection_good)
{
	struct rados_conn *c = conn("arguments");
	char buf[8];
	size_t got;
	ck_fails(rados_conn_read(c, "", 0, buf, sizeof(buf), &got), EINVAL, "rados vmm/arguments: cannot read: no object name given");
	static char long_oid[RADOS_NAME_MAX + 2];
	memset(long_oid, 'o', RADOS_NAME_MAX + 1);
	ck_fails(rados_conn_stat(c, long_oid, NULL, NULL), ENAMETOOLONG, "object name of 2049 bytes (at most 2048)");
	ck_fails(rados_conn_write_full(c, "big", buf, RADOS_DATA_MAX + 1u, false), EFBIG,
		 "big: cannot write: 67108865 bytes (at most 67108864 in one write)");
	ck_fails(rados_conn_lock(c, "l", true, "", "d", 0), EINVAL, "l: cannot lock exclusively: no cookie given");
	ck_fails(rados_conn_stat(c, "absent", (uint64_t[1]){0}, (uint64_t[1]){0}), ENOENT, "absent: cannot stat");
	rados_conn_close(c);
}
END_TEST

START_TEST(a_pool_that_does_not_exist_is_named)
{
	struct rados_conn *c = NULL;
	int r = rados_conn_open("no-such-pool", NULL, cluster.conf, NULL, &c);
	ck_assert_int_eq(r, -ENOENT);
	ck_assert_ptr_null(c);
	ck_assert_str_eq(error_message(), "rados no-such-pool: cannot connect: pool 'no-such-pool' does not exist: No such file or directory");
}
END_TEST

START_TEST(ceph_configuration_comes_from_the_environment_when_not_given)
{
	setenv("CEPH_CONF", cluster.conf, 1);
	setenv("CEPH_ARGS", "--id admin", 1);
	struct rados_conn *c;
	ck_ok(rados_conn_open(cluster.pool, "env", NULL, NULL, &c));
	ck_ok(rados_conn_write_full(c, "o", "env", 3, false));
	rados_conn_close(c);
	ck_ok(rados_conn_open(cluster.pool, "env", cluster.conf, "admin", &c));
	uint64_t size, mtime_ns;
	ck_ok(rados_conn_stat(c, "o", &size, &mtime_ns));
	ck_assert_uint_eq(size, 3);
	rados_conn_close(c);
	ck_fails(rados_conn_open(cluster.pool, "env", "/nonexistent/ceph.conf", NULL, &c), ENOENT,
		 "rados vmm/env: cannot connect: cannot read the Ceph configuration /nonexistent/ceph.conf: No such file or directory");
}
END_TEST

/* ---- locks ------------------------------------------------------------------------------ */

struct lockers {
	size_t n;
	char client[4][64], cookie[4][64], description[4][64];
	bool exclusive[4];
};

static void collect_locker(void *arg, const struct rados_locker *l)
{
	struct lockers *s = arg;
	ck_assert_uint_lt(s->n, 4);
	snprintf(s->client[s->n], 64, "%s", l->client);
	snprintf(s->cookie[s->n], 64, "%s", l->cookie);
	snprintf(s->description[s->n], 64, "%s", l->description);
	s->exclusive[s->n++] = l->exclusive;
}

/* The index in @s of the locker with @cookie; fails the test when there is none. */
static size_t find_locker(const struct lockers *s, const char *cookie)
{
	for (size_t i = 0; i < s->n; i++)
		if (strcmp(s->cookie[i], cookie) == 0)
			return i;
	ck_abort_msg("no locker with cookie '%s'", cookie);
	return 0;
}

START_TEST(an_exclusive_lock_excludes_every_other_connection)
{
	struct rados_conn *a = conn("lock-exclusive"), *b = conn("lock-exclusive");
	ck_assert_str_ne(rados_conn_client(a), rados_conn_client(b));
	ck_ok(rados_conn_lock(a, "l", true, "ca", "VM web (pid 1)", 0));
	char held[256];
	snprintf(held, sizeof(held), "l: cannot lock exclusively: held exclusively by %s (cookie 'ca': 'VM web (pid 1)'): Device or resource busy",
		 rados_conn_client(a));
	ck_fails(rados_conn_lock(b, "l", true, "cb", "other", 0), EBUSY, held);
	ck_fails(rados_conn_lock(b, "l", false, "cb", "other", 0), EBUSY, "cannot lock shared: held exclusively by");
	ck_fails(rados_conn_lock(a, "l", true, "ca", "again", 0), EEXIST, "this connection holds it already (cookie 'ca')");
	struct lockers s = {0};
	ck_ok(rados_conn_lockers(b, "l", collect_locker, &s));
	ck_assert_uint_eq(s.n, 1);
	ck_assert_str_eq(s.client[0], rados_conn_client(a));
	ck_assert_str_eq(s.cookie[0], "ca");
	ck_assert_str_eq(s.description[0], "VM web (pid 1)");
	ck_assert(s.exclusive[0]);
	ck_ok(rados_conn_unlock(a, "l", "ca"));
	ck_ok(rados_conn_lock(b, "l", true, "cb", "other", 0));
	ck_fails(rados_conn_unlock(a, "l", "ca"), ENOENT, "l: cannot unlock: this connection holds no lock as cookie 'ca'");
	rados_conn_close(a);
	rados_conn_close(b);
}
END_TEST

START_TEST(shared_locks_coexist_and_keep_an_exclusive_one_out)
{
	struct rados_conn *a = conn("lock-shared"), *b = conn("lock-shared"), *c = conn("lock-shared");
	ck_ok(rados_conn_lock(a, "l", false, "sa", "reader a", 0));
	ck_ok(rados_conn_lock(b, "l", false, "sb", "reader b", 0));
	struct lockers s = {0};
	ck_ok(rados_conn_lockers(c, "l", collect_locker, &s));
	ck_assert_uint_eq(s.n, 2);
	size_t ia = find_locker(&s, "sa"), ib = find_locker(&s, "sb");
	ck_assert_str_eq(s.client[ia], rados_conn_client(a));
	ck_assert_str_eq(s.description[ia], "reader a");
	ck_assert_str_eq(s.client[ib], rados_conn_client(b));
	ck_assert_str_eq(s.description[ib], "reader b");
	ck_assert(!s.exclusive[ia] && !s.exclusive[ib]);
	ck_fails(rados_conn_lock(c, "l", true, "w", "writer", 0), EBUSY, "held shared by");
	ck_assert_ptr_nonnull(strstr(error_message(), rados_conn_client(a)));
	ck_assert_ptr_nonnull(strstr(error_message(), rados_conn_client(b)));
	ck_ok(rados_conn_unlock(a, "l", "sa"));
	ck_ok(rados_conn_unlock(b, "l", "sb"));
	ck_ok(rados_conn_lock(c, "l", true, "w", "writer", 0));
	/* No lock, or no object: no lockers. */
	ck_ok(rados_conn_write_full(c, "plain", "x", 1, false));
	s.n = 0;
	ck_ok(rados_conn_lockers(c, "plain", collect_locker, &s));
	ck_ok(rados_conn_lockers(c, "absent", collect_locker, &s));
	ck_assert_uint_eq(s.n, 0);
	rados_conn_close(a);
	rados_conn_close(b);
	rados_conn_close(c);
}
END_TEST

static void *unlock_later(void *arg)
{
	sleep_ms(300);
	return (void *)(intptr_t)rados_conn_unlock(arg, "l", "first");
}

START_TEST(a_lock_waits_until_its_holder_unlocks)
{
	struct rados_conn *a = conn("lock-wait"), *b = conn("lock-wait");
	ck_ok(rados_conn_lock(a, "l", true, "first", "first", 0));
	pthread_t t;
	ck_assert_int_eq(pthread_create(&t, NULL, unlock_later, a), 0);
	ck_ok(rados_conn_lock(b, "l", true, "second", "second", GUARD_MS));
	void *unlocked;
	pthread_join(t, &unlocked);
	ck_assert_int_eq((intptr_t)unlocked, 0);
	rados_conn_close(a);
	rados_conn_close(b);
}
END_TEST

START_TEST(a_killed_process_frees_its_locks_at_once)
{
	int p[2];
	ck_assert_int_eq(pipe(p), 0);
	pid_t child = fork();
	ck_assert_int_ge(child, 0);
	if (child == 0) {
		struct rados_conn *c;
		int r = rados_conn_open(cluster.pool, "lock-kill", cluster.conf, NULL, &c);
		if (r == 0) {
			/* Longer than the test waits below: only the helper's unlock can free it. */
			rados_conn_set_lock_duration(c, 10 * GUARD_MS);
			r = rados_conn_lock(c, "l", true, "doomed", "killed holder", 0);
		}
		if (write(p[1], &r, sizeof(r)) != sizeof(r))
			_exit(1);
		for (;;)
			pause();
	}
	int r = -1;
	ck_assert_int_eq(read(p[0], &r, sizeof(r)), sizeof(r));
	ck_assert_int_eq(r, 0);
	kill(child, SIGKILL);
	waitpid(child, NULL, 0);
	struct rados_conn *b = conn("lock-kill");
	ck_ok(rados_conn_lock(b, "l", true, "next", "next", GUARD_MS));
	rados_conn_close(b);
	close(p[0]);
	close(p[1]);
}
END_TEST

/* A connection to @nspace that holds the exclusive lock of object "l" as @cookie, taken for
 * @duration_ms at a time. */
static struct rados_conn *conn_locking(const char *nspace, unsigned duration_ms, const char *cookie)
{
	struct rados_conn *c = conn(nspace);
	rados_conn_set_lock_duration(c, duration_ms);
	ck_ok(rados_conn_lock(c, "l", true, cookie, cookie, 0));
	return c;
}

/* A helper killed with its exclusive lock: nothing unlocks, as if the machine went away, so
 * the lock lasts its duration and another takes it. The connection's next call gets a new
 * helper, which cannot take the lock again: unlock says it was lost. */
START_TEST(a_lock_of_a_dead_host_expires_after_its_duration)
{
	struct rados_conn *a = conn_locking("lock-host", 2000, "host"), *b = conn("lock-host");
	pid_t helper = rados_conn_helper_pid(a);
	ck_assert_int_gt(helper, 0);
	kill(helper, SIGKILL);
	ck_ok(rados_conn_lock(b, "l", true, "next", "next", GUARD_MS));
	ck_ok(rados_conn_write_full(b, "l", "x", 1, false));
	uint64_t size = 0, mtime;
	ck_ok(rados_conn_stat(a, "l", &size, &mtime));
	ck_assert_uint_eq(size, 1);
	ck_assert_int_gt(rados_conn_helper_pid(a), 0);
	ck_assert_int_ne(rados_conn_helper_pid(a), helper);
	ck_fails(rados_conn_unlock(a, "l", "host"), ENOLCK, "l: cannot unlock: the lock went with the helper that held it");
	ck_ok(rados_conn_unlock(b, "l", "next"));
	rados_conn_close(a);
	rados_conn_close(b);
}
END_TEST

/* A helper that dies (here: killed) under a read is replaced at once: the read is asked
 * again of a new helper, a new Ceph client, which holds the connection's shared locks again. */
START_TEST(a_helper_that_dies_is_replaced_with_its_shared_locks)
{
	struct rados_conn *a = conn("reconnect"), *b = conn("reconnect");
	uint8_t data[8192], back[8192];
	fill(data, sizeof(data), 5);
	ck_ok(rados_conn_write_full(a, "o", data, sizeof(data), false));
	ck_ok(rados_conn_lock(a, "p", false, "pin", "pinned by a", 0));
	char old_client[64];
	snprintf(old_client, sizeof(old_client), "%s", rados_conn_client(a));
	pid_t helper = rados_conn_helper_pid(a);
	kill(helper, SIGKILL);
	size_t got = 0;
	ck_ok(rados_conn_read(a, "o", 0, back, sizeof(back), &got));
	ck_assert_uint_eq(got, sizeof(back));
	ck_assert(memcmp(back, data, sizeof(data)) == 0);
	ck_assert_int_ne(rados_conn_helper_pid(a), helper);
	ck_assert_str_ne(rados_conn_client(a), old_client);
	/* The new client holds the pin (the dead one's may linger until it expires). */
	struct lockers s = {0};
	ck_ok(rados_conn_lockers(b, "p", collect_locker, &s));
	bool held = false;
	for (size_t i = 0; i < s.n; i++)
		held |= strcmp(s.client[i], rados_conn_client(a)) == 0 && strcmp(s.cookie[i], "pin") == 0 &&
			strcmp(s.description[i], "pinned by a") == 0 && !s.exclusive[i];
	ck_assert_msg(held, "%s does not hold the pin again", rados_conn_client(a));
	ck_fails(rados_conn_lock(b, "p", true, "x", "x", 0), EBUSY, "cannot lock exclusively");
	ck_ok(rados_conn_unlock(a, "p", "pin"));
	rados_conn_close(a);
	rados_conn_close(b);
}
END_TEST

/* A new helper that cannot be had fails the call with both reasons; the next call, sooner
 * than the gap between tries, fails at once without trying. */
START_TEST(a_helper_that_cannot_be_replaced_fails_the_call)
{
	struct rados_conn *a = conn("reconnect-none");
	pid_t helper = rados_conn_helper_pid(a);
	setenv("VMM_RADOS", "/nonexistent/vmm-rados", 1);
	kill(helper, SIGKILL);
	uint64_t size, mtime;
	char dead[64];
	snprintf(dead, sizeof(dead), "the helper (pid %d) was killed by signal 9", (int)helper);
	ck_fails(rados_conn_stat(a, "o", &size, &mtime), ENOENT,
		 "; a new helper failed too: cannot start the helper: /nonexistent/vmm-rados: No such file or directory");
	ck_assert_ptr_nonnull(strstr(error_message(), dead));
	const char *once = strstr(error_message(), "No such file or directory");
	ck_assert_msg(once && !strstr(once + 1, "No such file or directory"), "the errno said twice: %s", error_message());
	ck_fails(rados_conn_stat(a, "o", &size, &mtime), EPIPE, "cannot stat: the connection is down: the helper");
	use_built_helper();
	rados_conn_close(a);
}
END_TEST

START_TEST(renewal_keeps_a_lock_past_its_duration)
{
	struct rados_conn *a = conn_locking("lock-renew", 2000, "kept"), *b = conn("lock-renew");
	sleep_ms(5000);
	ck_fails(rados_conn_lock(b, "l", true, "next", "next", 0), EBUSY, "held exclusively by");
	ck_ok(rados_conn_unlock(a, "l", "kept"));
	rados_conn_close(a);
	rados_conn_close(b);
}
END_TEST

START_TEST(a_lock_lost_while_its_helper_was_stopped_is_reported_at_unlock)
{
	struct rados_conn *a = conn_locking("lock-lost", 1000, "stopped"), *b = conn("lock-lost");
	pid_t helper = rados_conn_helper_pid(a);
	kill(helper, SIGSTOP);
	ck_ok(rados_conn_lock(b, "l", true, "taker", "taker", GUARD_MS));
	kill(helper, SIGCONT);
	ck_fails(rados_conn_unlock(a, "l", "stopped"), ENOLCK, "l: cannot unlock: it was lost");
	struct lockers s = {0};
	ck_ok(rados_conn_lockers(a, "l", collect_locker, &s));
	ck_assert_uint_eq(s.n, 1);
	ck_assert_str_eq(s.cookie[0], "taker");
	rados_conn_close(a);
	rados_conn_close(b);
}
END_TEST

START_TEST(close_releases_every_lock_before_it_returns)
{
	struct rados_conn *a = conn("lock-close"), *b = conn("lock-close");
	ck_ok(rados_conn_lock(a, "l1", true, "c", "one", 0));
	ck_ok(rados_conn_lock(a, "l2", false, "c", "two", 0));
	rados_conn_close(a);
	ck_ok(rados_conn_lock(b, "l1", true, "c", "one", 0));
	ck_ok(rados_conn_lock(b, "l2", true, "c", "two", 0));
	rados_conn_close(b);
}
END_TEST

/*
 * A fork child does not speak on its parent's connection (the parent's helper sees the
 * parent's end as before); its copy gets a helper of its own, which takes the pins (shared
 * locks shared with forks) as the child's and none of the parent's other locks. The pin
 * then holds while the child lives, after the parent let go of its own.
 */
START_TEST(a_fork_child_gets_a_connection_and_the_pins_of_its_own)
{
	struct rados_conn *a = conn("lock-fork"), *b = conn("lock-fork");
	ck_ok(rados_conn_write_full(a, "o", "abc", 3, false));
	ck_ok(rados_conn_lock(a, "pin", false, "p", "the parent's pin", 0));
	rados_conn_share_with_forks(a, "pin", "p");
	ck_ok(rados_conn_lock(a, "l", true, "parent", "parent", 0));
	ck_ok(rados_conn_lock(a, "other", false, "o", "not for forks", 0));
	int verdict[2], hold[2];
	ck_assert_int_eq(pipe(verdict), 0);
	ck_assert_int_eq(pipe(hold), 0);
	pid_t child = fork();
	ck_assert_int_ge(child, 0);
	if (child == 0) {
		close(hold[1]);
		uint64_t size = 0, mtime_ns;
		/* Before its helper: the exclusive lock is not the child's, the pin is on paper. */
		char ok = rados_conn_unlock(a, "l", "parent") == -ENOENT && rados_conns_take_over() == 0 &&
				  rados_conn_stat(a, "o", &size, &mtime_ns) == 0 && size == 3 &&
				  strcmp(rados_conn_client(a), rados_conn_client(b)) != 0
			  ? 'y'
			  : 'n';
		if (write(verdict[1], &ok, 1) != 1)
			_exit(1);
		char byte;
		while (read(hold[0], &byte, 1) > 0) /* stay alive until the parent is done */
			;
		rados_conn_close(a);
		rados_conn_close(b);
		_exit(0);
	}
	close(hold[0]);
	char ok = 'n';
	ck_assert_int_eq(read(verdict[0], &ok, 1), 1);
	ck_assert_msg(ok == 'y', "the child could not use a connection of its own");
	uint64_t size, mtime_ns;
	ck_ok(rados_conn_stat(a, "o", &size, &mtime_ns));
	/* The parent lets go: its helper sees its end of file (the child kept no copy of its
	 * socket), so its locks go. The child's pin stays; the other locks were never the
	 * child's. */
	rados_conn_close(a);
	ck_ok(rados_conn_lock(b, "l", true, "next", "next", 0));
	ck_ok(rados_conn_lock(b, "other", true, "next", "next", 0));
	ck_fails(rados_conn_lock(b, "pin", true, "next", "next", 0), EBUSY, "");
	close(hold[1]);
	waitpid(child, NULL, 0);
	/* The child ended: its pin went with its helper. */
	ck_ok(rados_conn_lock(b, "pin", true, "next", "next", 2000));
	rados_conn_close(b);
	close(verdict[0]);
	close(verdict[1]);
}
END_TEST

/* ---- without a cluster ---------------------------------------------------------------------- */

START_TEST(a_helper_that_does_not_exist_is_named)
{
	setenv("VMM_RADOS", "/nonexistent/vmm-rados", 1);
	struct rados_conn *c = NULL;
	ck_fails(rados_conn_open("vmm", NULL, NULL, NULL, &c), ENOENT, "");
	ck_assert_str_eq(error_message(), "rados vmm: cannot start the helper: /nonexistent/vmm-rados: No such file or directory");
	ck_assert_ptr_null(c);
}
END_TEST

START_TEST(a_cluster_that_is_not_there_fails_by_the_deadline)
{
	char conf[128], fsid[] = "5c0cf4b6-8c9a-4f73-9d5b-4f0f3b0a7e11";
	snprintf(conf, sizeof(conf), "%s/ceph.conf", scratch);
	unsigned port = ceph_cluster_free_port();
	ck_assert_uint_ne(port, 0);
	ck_assert_int_eq(ceph_cluster_write_conf(conf, scratch, port, fsid), 0);
	struct rados_conn *c = NULL;
	int r = rados_conn_open("vmm", NULL, conf, NULL, &c);
	ck_assert_ptr_null(c);
	ck_assert_msg(r == -ETIMEDOUT, "%d: %s", r, error_message());
	char words[96];
	snprintf(words, sizeof(words), "rados vmm: cannot connect: no monitor (mon host v1:127.0.0.1:%u) answered", port);
	ck_assert_msg(strstr(error_message(), words), "'%s' lacks '%s'", error_message(), words);
}
END_TEST

START_TEST(the_helper_refuses_to_run_by_hand)
{
	char helper[4096], help[] = "--help";
	snprintf(helper, sizeof(helper), "%s", harness_build_path("rados_server"));
	char *with_help[] = {helper, help, NULL}, *bare[] = {helper, NULL};
	struct spawn_result r;
	ck_assert_int_eq(spawn_run(&r, 20, with_help), 0);
	ck_assert_int_eq(r.status, 0);
	ck_assert_ptr_nonnull(strstr(r.out, "usage: vmm-rados"));
	spawn_free(&r);
	ck_assert_int_eq(spawn_run(&r, 20, bare), 0);
	ck_assert_int_eq(r.status, 2);
	ck_assert_ptr_nonnull(strstr(r.err, "vmm-rados: fd 3 is not a socket"));
	spawn_free(&r);
}
END_TEST

/* Make scratch/helper a shell script that writes the @n bytes at @p to its socket, then runs
 * @then (NULL: reads the socket until its end, so that requests find a peer), and have
 * VMM_RADOS name it. */
static void fake_helper(const void *p, size_t n, const char *then)
{
	char path[96];
	snprintf(path, sizeof(path), "%s/helper", scratch);
	FILE *f = fopen(path, "w");
	ck_assert_ptr_nonnull(f);
	fprintf(f, "#!/bin/sh\nprintf '");
	for (size_t i = 0; i < n; i++)
		fprintf(f, "\\%03o", ((const uint8_t *)p)[i]);
	fprintf(f, "' >&3\n%s\n", then ? then : "exec cat <&3 >/dev/null");
	ck_assert_int_eq(fclose(f), 0);
	ck_assert_int_eq(chmod(path, 0755), 0);
	setenv("VMM_RADOS", path, 1);
}

/* What a fake helper writes: frames built as the helper builds them, or raw bytes. */
struct script {
	uint8_t *bytes;
	size_t n;
};

static void script_add(struct script *s, const void *p, size_t n)
{
	s->bytes = realloc(s->bytes, s->n + n + 1);
	ck_assert_ptr_nonnull(s->bytes);
	memcpy(s->bytes + s->n, p, n);
	s->n += n;
}

static void reply_begin(struct rados_frame *f, uint32_t op, int32_t status)
{
	rados_frame_begin(f, op);
	rados_frame_put_u32(f, (uint32_t)status);
}

static void reply_end(struct script *s, struct rados_frame *f)
{
	ck_assert_int_eq(rados_frame_finish(f), 0);
	script_add(s, f->buf, f->size);
	rados_frame_free(f);
}

static void good_open(struct script *s)
{
	struct rados_frame f = {0};
	reply_begin(&f, RADOS_OP_OPEN, 0);
	rados_frame_put_str(&f, "client.1");
	reply_end(s, &f);
}

static struct rados_conn *open_fake(void)
{
	struct rados_conn *c = NULL;
	int r = rados_conn_open("vmm", "fake", NULL, NULL, &c);
	ck_assert_msg(r == 0, "%d: %s", r, error_message());
	ck_assert_str_eq(rados_conn_client(c), "client.1");
	return c;
}

/* fake_helper of @s's bytes, which are then forgotten. */
static void fake_script(struct script *s, const char *then)
{
	fake_helper(s->bytes, s->n, then);
	free(s->bytes);
	s->bytes = NULL;
	s->n = 0;
}

/* Opening against @raw bytes (after nothing) fails with -@err naming @words. */
static void open_fails(const void *raw, size_t n, const char *then, int err, const char *words)
{
	fake_helper(raw, n, then);
	struct rados_conn *c = NULL;
	ck_fails(rados_conn_open("vmm", "fake", NULL, NULL, &c), err, words);
	ck_assert_ptr_null(c);
	ck_assert_ptr_nonnull(strstr(error_message(), "rados vmm/fake: cannot connect: "));
}

START_TEST(hostile_answers_to_open_fail_it_with_what_was_wrong)
{
	const uint32_t too_long[] = {0xffffffffu};
	open_fails(too_long, sizeof(too_long), NULL, EPROTO, "a frame length outside 4..");
	const uint32_t too_short[] = {2, 0};
	open_fails(too_short, sizeof(too_short), NULL, EPROTO, "a frame length outside 4..");
	const uint32_t cut[] = {100, RADOS_OP_OPEN, 0};
	open_fails(cut, sizeof(cut), "exit 0", EPROTO, "a frame cut short by the end of its stream");
	const uint32_t header_only[] = {4, RADOS_OP_OPEN};
	open_fails(header_only, sizeof(header_only), NULL, EPROTO, "a reply shorter than its header");
	const uint32_t other_op[] = {8, RADOS_OP_STAT, 0};
	open_fails(other_op, sizeof(other_op), NULL, EPROTO, "a reply to request 6 instead of 1");
	const uint32_t positive[] = {8, RADOS_OP_OPEN, 5};
	open_fails(positive, sizeof(positive), NULL, EPROTO, "status 5, not 0 or -errno");
	const uint32_t overrun[] = {16, RADOS_OP_OPEN, 0, 1000, 0x636261};
	open_fails(overrun, sizeof(overrun), NULL, EPROTO, "OPEN without a client name");
	const uint32_t detail_overrun[] = {12, RADOS_OP_OPEN, (uint32_t)-EIO, 50};
	open_fails(detail_overrun, sizeof(detail_overrun), NULL, EPROTO, "an error reply with a malformed detail");
	struct script all = {0};
	good_open(&all);
	uint32_t length;
	memcpy(&length, all.bytes, 4);
	length++; /* one byte more in that frame than its fields */
	memcpy(all.bytes, &length, 4);
	script_add(&all, "", 1);
	fake_script(&all, NULL);
	struct rados_conn *c = NULL;
	ck_fails(rados_conn_open("vmm", "fake", NULL, NULL, &c), EPROTO, "a reply of the wrong size");
	open_fails("", 0, "exit 3", EPIPE, "the helper (pid ");
	ck_assert_ptr_nonnull(strstr(error_message(), ") exited with status 3"));
	open_fails("", 0, "kill -9 $$", EPIPE, ") was killed by signal 9 (Killed)");
}
END_TEST

START_TEST(hostile_answers_to_requests_fail_the_call_and_end_the_connection)
{
	struct script all = {0};
	struct rados_frame f = {0};
	good_open(&all);
	reply_begin(&f, RADOS_OP_READ, 0);
	rados_frame_put_bytes(&f, "0123456789abcdef", 16); /* 16 bytes for 10 asked */
	reply_end(&all, &f);
	fake_script(&all, NULL);
	struct rados_conn *c = open_fake();
	char buf[16];
	size_t got = 99;
	ck_fails(rados_conn_read(c, "o", 0, buf, 10, &got), EPROTO, "o: cannot read: the helper (pid ");
	ck_assert_ptr_nonnull(strstr(error_message(), "answered a read reply that is malformed or longer than asked; stopped it"));
	ck_assert_uint_eq(got, 0);
	ck_assert_int_eq(rados_conn_helper_pid(c), 0);
	ck_fails(rados_conn_remove(c, "o"), EPIPE, "rados vmm/fake: o: cannot remove: the connection is down: the helper");
	rados_conn_close(c);

	good_open(&all);
	reply_begin(&f, RADOS_OP_READ_EXTENTS, 0);
	rados_frame_put_bytes(&f, "0123", 4); /* 4 bytes for 8 asked */
	reply_end(&all, &f);
	fake_script(&all, NULL);
	c = open_fake();
	const struct rados_extent ext[] = {{0, 4}, {100, 4}};
	ck_fails(rados_conn_read_extents(c, "o", ext, 2, buf), EPROTO, "a reply that is malformed or not the 8 bytes asked");
	rados_conn_close(c);

	good_open(&all);
	reply_begin(&f, RADOS_OP_LOCKERS, 0);
	rados_frame_put_u32(&f, 1000000); /* lockers announced, none there */
	reply_end(&all, &f);
	fake_script(&all, NULL);
	c = open_fake();
	ck_fails(rados_conn_lockers(c, "o", collect_locker, NULL), EPROTO, "a malformed locker");
	rados_conn_close(c);

	good_open(&all);
	reply_begin(&f, RADOS_OP_LIST, 0);
	rados_frame_put_u32(&f, 2); /* more: only 0 or 1 */
	rados_frame_put_u32(&f, 0);
	reply_end(&all, &f);
	fake_script(&all, NULL);
	c = open_fake();
	ck_fails(rados_conn_list(c, "", collect, NULL), EPROTO, "a list reply with a malformed header");
	rados_conn_close(c);

	/* A listing whose helper dies between frames. */
	good_open(&all);
	reply_begin(&f, RADOS_OP_LIST, 0);
	rados_frame_put_u32(&f, 1);
	rados_frame_put_u32(&f, 1);
	rados_frame_put_str(&f, "first");
	reply_end(&all, &f);
	fake_script(&all, "exec sleep 1");
	c = open_fake();
	static struct listing l;
	l.n = 0;
	ck_fails(rados_conn_list(c, "", collect, &l), EPIPE, "cannot list objects: the helper (pid ");
	ck_assert_uint_eq(l.n, 1);
	rados_conn_close(c);
}
END_TEST

START_TEST(an_error_reply_is_the_calls_error_with_the_helpers_words_made_printable)
{
	struct script all = {0};
	struct rados_frame f = {0};
	good_open(&all);
	reply_begin(&f, RADOS_OP_STAT, -EIO);
	rados_frame_put_str(&f, "evil\033[2J\nline");
	reply_end(&all, &f);
	reply_begin(&f, RADOS_OP_REMOVE, 0);
	reply_end(&all, &f);
	fake_script(&all, NULL);
	struct rados_conn *c = open_fake();
	ck_fails(rados_conn_stat(c, "o", (uint64_t[1]){0}, (uint64_t[1]){0}), EIO, "");
	ck_assert_str_eq(error_message(), "rados vmm/fake: o: cannot stat: evil?[2J?line: Input/output error");
	ck_ok(rados_conn_remove(c, "o")); /* an error reply leaves the connection good */
	rados_conn_close(c);
}
END_TEST

START_TEST(a_helper_that_stops_answering_is_killed_by_the_deadline)
{
	struct script all = {0};
	good_open(&all);
	fake_script(&all, "exec sleep 60");
	struct rados_conn *c = open_fake();
	rados_conn_set_timeout(c, 500);
	pid_t helper = rados_conn_helper_pid(c);
	ck_fails(rados_conn_stat(c, "o", (uint64_t[1]){0}, (uint64_t[1]){0}), ETIMEDOUT, "o: cannot stat: no answer from the helper (pid ");
	ck_assert_int_eq(rados_conn_helper_pid(c), 0);
	ck_assert_int_eq(kill(helper, 0), -1); /* reaped: gone */
	ck_fails(rados_conn_stat(c, "o", (uint64_t[1]){0}, (uint64_t[1]){0}), EPIPE, "the connection is down: no answer from the helper");
	rados_conn_close(c);
}
END_TEST

Suite *rados_suite(void)
{
	Suite *s = suite_create("rados");
	harness_requires(HARNESS_CEPH);

	TCase *with = tcase_create("cluster");
	/* In the runner, once for the case: each test runs in a child of its own. */
	tcase_add_unchecked_fixture(with, cluster_setup, cluster_teardown);
	tcase_set_timeout(with, 120);
	HARNESS_ADD_TEST(with, objects_round_trip_through_write_stat_read_and_remove);
	HARNESS_ADD_TEST(with, append_grows_an_object_and_write_full_replaces_it_whole);
	HARNESS_ADD_TEST(with, exclusive_create_refuses_an_object_that_exists);
	HARNESS_ADD_TEST(with, read_extents_returns_each_range_in_order);
	HARNESS_ADD_TEST(with, list_gives_every_object_of_the_namespace_with_the_prefix);
	HARNESS_ADD_TEST(with, another_connection_reads_what_one_wrote);
	HARNESS_ADD_TEST(with, bad_arguments_are_refused_before_the_helper_and_leave_the_connection_good);
	HARNESS_ADD_TEST(with, a_pool_that_does_not_exist_is_named);
	HARNESS_ADD_TEST(with, ceph_configuration_comes_from_the_environment_when_not_given);
	HARNESS_ADD_TEST(with, an_exclusive_lock_excludes_every_other_connection);
	HARNESS_ADD_TEST(with, shared_locks_coexist_and_keep_an_exclusive_one_out);
	HARNESS_ADD_TEST(with, a_lock_waits_until_its_holder_unlocks);
	HARNESS_ADD_TEST(with, a_killed_process_frees_its_locks_at_once);
	HARNESS_ADD_TEST(with, a_lock_of_a_dead_host_expires_after_its_duration);
	HARNESS_ADD_TEST(with, a_helper_that_dies_is_replaced_with_its_shared_locks);
	HARNESS_ADD_TEST(with, a_helper_that_cannot_be_replaced_fails_the_call);
	HARNESS_ADD_TEST(with, renewal_keeps_a_lock_past_its_duration);
	HARNESS_ADD_TEST(with, a_lock_lost_while_its_helper_was_stopped_is_reported_at_unlock);
	HARNESS_ADD_TEST(with, close_releases_every_lock_before_it_returns);
	HARNESS_ADD_TEST(with, a_fork_child_gets_a_connection_and_the_pins_of_its_own);
	suite_add_tcase(s, with);

	TCase *without = tcase_create("helper");
	tcase_add_checked_fixture(without, scratch_setup, scratch_teardown);
	tcase_set_timeout(without, 60);
	HARNESS_ADD_TEST(without, a_helper_that_does_not_exist_is_named);
	HARNESS_ADD_TEST(without, a_cluster_that_is_not_there_fails_by_the_deadline);
	HARNESS_ADD_TEST(without, the_helper_refuses_to_run_by_hand);
	HARNESS_ADD_TEST(without, hostile_answers_to_open_fail_it_with_what_was_wrong);
	HARNESS_ADD_TEST(without, hostile_answers_to_requests_fail_the_call_and_end_the_connection);
	HARNESS_ADD_TEST(without, an_error_reply_is_the_calls_error_with_the_helpers_words_made_printable);
	HARNESS_ADD_TEST(without, a_helper_that_stops_answering_is_killed_by_the_deadline);
	suite_add_tcase(s, without);
	return s;
}

/*
 * The snapshot store on Ceph RADOS (store_rados.c) against a real single-node cluster
 * (tests/ceph_cluster.h, started once for the suite): the same model as a folder's store
 * (deduplicated pages, deltas naming their parents, verify, gc, delete absorbed by the
 * children), pages read lazily, and what two hosts sharing one store need: two writers at
 * once, gc refused while another writes, pins across connections, and a writer killed with
 * kill -9 leaving every finished snapshot intact and no lock held. Each test has a
 * namespace of its own.
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "ceph_cluster.h"
#include "harness.h"
#include "spawn.h"
#include "store_pages.h"
#include "vmm/error.h"
#include "vmm/store/rados.h"
#include "vmm/store/store.h"

static char where[128]; /* this test's store: rados:vmm/NAMESPACE */

static void setup(void)
{
	ceph_cluster_test_store(where, sizeof(where));
	error_clear();
}

static struct store *open_store(void)
{
	struct store *s;
	ck_assert_msg(store_open(where, true, &s) == 0, "%s", error_message());
	return s;
}

START_TEST(rados_snapshots_dedup_and_read_back_lazily)
{
	struct store *s = open_store();
	struct store_write_stats st;
	store_pages_write(s, "a", NULL, 300, 1, 0, 1, &st);
	ck_assert_uint_eq(st.stored, 104); /* 100 unique pages, 4 patterns; zero pages never */
	store_pages_write(s, "b", "a", 300, 2, 0, 2, &st);
	ck_assert_uint_eq(st.stored, 50);
	store_pages_write(s, "c", NULL, 300, 1, 0, 1, &st); /* the same pages again: nothing new */
	ck_assert_uint_eq(st.stored, 0);
	uint64_t packs, manifests;
	ck_assert_int_eq(store_disk_usage(s, &packs, &manifests), 0);
	ck_assert_uint_eq(packs, 154 * STORE_PAGE);
	store_close(s);

	/* A reader opens the chain (manifests only) and reads pages as they are asked for. */
	ck_assert_int_eq(store_open_read(where, &s), 0);
	struct store_snapshot *snap;
	ck_assert_msg(store_snapshot_open(s, "b", &snap) == 0, "%s", error_message());
	ck_assert_str_eq(store_snapshot_parent(snap), "a");
	ck_assert_uint_eq(store_snapshot_depth(snap), 2);
	for (uint64_t p = 0; p < 300; p++)
		store_pages_expect(snap, p, p % 2 ? 1 : 2);
	store_snapshot_close(snap);
	store_close(s);
	struct store_lines l;
	ck_assert_int_eq(store_pages_verify(where, &l), 0);
	ck_assert_uint_eq(l.notes, 0);
}
END_TEST

START_TEST(rados_delete_and_gc_keep_what_the_others_need)
{
	struct store *s = open_store();
	store_set_pack_pages(s, 32); /* several packs: gc moves pages across them */
	store_pages_write(s, "a", NULL, 300, 1, 0, 1, NULL);
	store_pages_write(s, "b", "a", 300, 2, 0, 2, NULL);
	store_pages_write(s, "c", "b", 300, 3, 0, 3, NULL);
	ck_assert_msg(store_delete(s, "b") == 0, "%s", error_message()); /* c takes b in */
	ck_assert_msg(store_delete(s, "a") == 0, "%s", error_message());
	uint64_t freed;
	ck_assert_msg(store_gc(s, &freed) == 0, "%s", error_message());
	ck_assert_uint_gt(freed, 0);
	struct store_snapshot *snap;
	ck_assert_int_eq(store_snapshot_open(s, "c", &snap), 0);
	for (uint64_t p = 0; p < 300; p++)
		store_pages_expect(snap, p, p % 3 == 0 ? 3 : p % 2 == 0 ? 2 : 1);
	store_snapshot_close(snap);
	store_close(s);
	struct store_lines l;
	ck_assert_int_eq(store_pages_verify(where, &l), 0);
}
END_TEST

/* The objects of this test's namespace under "snapshots/.part-" (the parts of manifests). */
struct part_objects {
	unsigned n;
	char oid[16][160];
};

static void part_object(void *arg, const char *oid)
{
	struct part_objects *p = arg;
	if (p->n < 16)
		snprintf(p->oid[p->n], sizeof(p->oid[0]), "%s", oid);
	p->n++;
}

struct store_info_list {
	unsigned n;
	struct store_info info[4];
};

static void info_add(void *arg, const struct store_info *info)
{
	struct store_info_list *l = arg;
	if (l->n < 4)
		l->info[l->n++] = *info;
}

static struct rados_conn *raw_conn(void)
{
	char pool[64], nspace[64];
	ck_assert_int_eq(sscanf(where, "rados:%63[^/]/%63s", pool, nspace), 2);
	struct rados_conn *c;
	ck_assert_msg(rados_conn_open(pool, nspace, ceph_suite_cluster.conf, NULL, &c) == 0, "%s", error_message());
	return c;
}

static struct part_objects parts_in_store(struct rados_conn *c)
{
	struct part_objects p = {0};
	ck_assert_int_eq(rados_conn_list(c, "snapshots/.part-", part_object, &p), 0);
	return p;
}

/*
 * Manifests larger than one RADOS write (here, for the test, than 4 KiB) go in parts, the
 * head written last: they read back whole, list and verify as one manifest, are replaced
 * (a child taking in its deleted parent) and removed with their parts; parts no head names
 * (an upload cut short) go at the next gc; a damaged part is named at open.
 */
START_TEST(rados_manifests_larger_than_a_write_go_in_parts)
{
	struct store *s = open_store();
	store_set_manifest_part(s, 4096);
	store_pages_write(s, "a", NULL, 300, 1, 0, 1, NULL); /* 200 entries, 5.5 KiB: 2 parts */
	store_pages_write(s, "b", "a", 300, 2, 0, 2, NULL);  /* 100 entries: one object */
	struct rados_conn *c = raw_conn();
	/* Counted as large as its parts joined. */
	struct store_info_list infos = {0};
	ck_assert_int_eq(store_list(s, info_add, &infos), 0);
	ck_assert_uint_eq(infos.n, 2);
	ck_assert_str_eq(infos.info[0].name, "a");
	ck_assert_uint_gt(infos.info[0].manifest_bytes, 4096);
	uint64_t packs, manifests;
	ck_assert_int_eq(store_disk_usage(s, &packs, &manifests), 0);
	ck_assert_uint_eq(manifests, infos.info[0].manifest_bytes + infos.info[1].manifest_bytes);
	struct part_objects first = parts_in_store(c);
	ck_assert_uint_eq(first.n, 2);
	for (unsigned i = 0; i < first.n; i++)
		ck_assert_msg(strstr(first.oid[i], ".part-a.snap-"), "%s", first.oid[i]);
	struct store_snapshot *snap;
	ck_assert_msg(store_snapshot_open(s, "b", &snap) == 0, "%s", error_message());
	for (uint64_t p = 0; p < 300; p++)
		store_pages_expect(snap, p, p % 2 ? 1 : 2);
	store_snapshot_close(snap);
	struct store_lines l;
	ck_assert_int_eq(store_pages_verify(where, &l), 0);
	ck_assert_msg(l.notes == 0, "%s", l.text);

	/* b takes a in: its manifest, 200 entries again, is replaced by one in parts; a's parts
	 * go with a. */
	ck_assert_msg(store_delete(s, "a") == 0, "%s", error_message());
	struct part_objects left = parts_in_store(c);
	ck_assert_uint_eq(left.n, 2);
	for (unsigned i = 0; i < left.n; i++)
		ck_assert_msg(strstr(left.oid[i], ".part-b.snap-"), "%s", left.oid[i]);
	ck_assert_msg(store_snapshot_open(s, "b", &snap) == 0, "%s", error_message());
	for (uint64_t p = 0; p < 300; p++)
		store_pages_expect(snap, p, p % 2 ? 1 : 2);
	store_snapshot_close(snap);

	/* An upload cut short before its head: gc removes its parts, not b's. */
	ck_assert_int_eq(rados_conn_write_full(c, "snapshots/.part-c.snap-00000000000000aa-0", "x", 1, true), 0);
	uint64_t freed;
	ck_assert_msg(store_gc(s, &freed) == 0, "%s", error_message());
	left = parts_in_store(c);
	ck_assert_uint_eq(left.n, 2);
	for (unsigned i = 0; i < left.n; i++)
		ck_assert_msg(strstr(left.oid[i], ".part-b.snap-"), "%s", left.oid[i]);

	/* A part changed behind the store's back. */
	ck_assert_int_eq(rados_conn_write_full(c, left.oid[0], "garbage", 7, false), 0);
	ck_assert_int_eq(store_snapshot_open(s, "b", &snap), -EIO);
	ck_assert_msg(strstr(error_message(), "snapshots/b.snap: part ") ||
			      strstr(error_message(), "not the bytes its head was written with"),
		      "%s", error_message());
	ck_assert_msg(store_delete(s, "b") == 0, "%s", error_message());
	ck_assert_uint_eq(parts_in_store(c).n, 0);

	/* A manifest in parts replaced by one in parts: the old parts go. */
	store_pages_write(s, "x", NULL, 600, 1, 0, 1, NULL); /* 400 entries */
	store_pages_write(s, "y", "x", 600, 2, 0, 1, NULL);  /* its 200 unique pages changed */
	struct part_objects before = parts_in_store(c);
	unsigned of_y = 0;
	for (unsigned i = 0; i < before.n; i++)
		of_y += strstr(before.oid[i], ".part-y.snap-") != NULL;
	ck_assert_uint_ge(of_y, 2);
	ck_assert_uint_ge(before.n - of_y, 3);
	ck_assert_msg(store_delete(s, "x") == 0, "%s", error_message());
	left = parts_in_store(c);
	ck_assert_uint_ge(left.n, 3);
	for (unsigned i = 0; i < left.n; i++) {
		ck_assert_msg(strstr(left.oid[i], ".part-y.snap-"), "%s", left.oid[i]);
		for (unsigned k = 0; k < before.n; k++)
			ck_assert_str_ne(left.oid[i], before.oid[k]);
	}
	ck_assert_msg(store_snapshot_open(s, "y", &snap) == 0, "%s", error_message());
	for (uint64_t p = 0; p < 600; p++)
		store_pages_expect(snap, p, 2);
	store_snapshot_close(snap);
	ck_assert_int_eq(store_pages_verify(where, &l), 0);
	rados_conn_close(c);
	store_close(s);
}
END_TEST

struct writer_job {
	const char *name;
	uint64_t gen;
	int result;
	char error[256];
};

static void *writer_main(void *arg)
{
	struct writer_job *j = arg;
	struct store *s;
	j->result = store_open(where, true, &s);
	if (!j->result) {
		j->result = store_pages_try_write(s, j->name, NULL, 600, j->gen, 0, 1, NULL);
		store_close(s);
	}
	snprintf(j->error, sizeof(j->error), "%s", error_message());
	return NULL;
}

/* Two hosts (two connections, each its own Ceph client) write into one store at once:
 * both snapshots stand, whole; and the same name twice: one of them has it. */
START_TEST(rados_two_writers_at_once)
{
	struct writer_job j[4] = {{"x", 1, 0, ""}, {"y", 2, 0, ""}, {"z", 3, 0, ""}, {"z", 4, 0, ""}};
	pthread_t t[4];
	for (int i = 0; i < 4; i++)
		ck_assert_int_eq(pthread_create(&t[i], NULL, writer_main, &j[i]), 0);
	for (int i = 0; i < 4; i++)
		pthread_join(t[i], NULL);
	ck_assert_msg(j[0].result == 0 && j[1].result == 0, "%s / %s", j[0].error, j[1].error);
	ck_assert_msg((j[2].result == 0) != (j[3].result == 0), "z: %d %s / %d %s", j[2].result, j[2].error, j[3].result,
		      j[3].error);
	struct store *s = open_store();
	struct store_snapshot *snap;
	const char *names[] = {"x", "y", "z"};
	uint64_t gens[] = {1, 2, j[2].result == 0 ? 3 : 4};
	for (int i = 0; i < 3; i++) {
		ck_assert_int_eq(store_snapshot_open(s, names[i], &snap), 0);
		for (uint64_t p = 0; p < 600; p++)
			store_pages_expect(snap, p, gens[i]);
		store_snapshot_close(snap);
	}
	store_close(s);
	struct store_lines l;
	ck_assert_int_eq(store_pages_verify(where, &l), 0);
}
END_TEST

/* Host B snapshots a guest restored from host A's snapshot (its parent, read through B's own
 * connection) after changing 1 MiB: B uploads that 1 MiB and nothing else. */
START_TEST(rados_a_snapshot_on_another_host_uploads_only_what_changed)
{
	struct store *a = open_store(), *b = open_store();
	store_pages_write(a, "on-a", NULL, 3000, 1, 0, 1, NULL); /* 1000 unique pages */
	struct store_snapshot *parent;
	ck_assert_int_eq(store_snapshot_open_pinned(b, "on-a", "VM 'b' (pid 1)", &parent), 0);
	struct store_writer *w;
	ck_assert_int_eq(store_writer_begin(b, "on-b", "on-a", 3000, "s", 1, &w), 0);
	uint8_t page[4096];
	for (uint64_t p = 0; p < 3000; p++) {
		/* What a restored guest's snapshot is given: every page it holds, 256 of them new. */
		bool stored;
		uint64_t hash;
		ck_assert_int_eq(store_snapshot_copy(parent, p, page, &stored, &hash), 0);
		if (p % 11 == 0 && p < 11 * 256)
			memset(page, (int)(p & 0xff) | 1, 64);
		ck_assert_int_eq(store_writer_add(w, p, page), 0);
	}
	struct store_write_stats st;
	store_writer_stats(w, &st);
	ck_assert_int_eq(store_writer_commit(w), 0);
	ck_assert_uint_le(st.stored, 256); /* 1 MiB: uploaded at most twice that, here exactly it */
	ck_assert_uint_eq(st.pages, 256);
	store_snapshot_close(parent);
	store_close(a);
	store_close(b);
}
END_TEST

/* gc needs the store alone: while another host writes it is refused at once, and the
 * writer's snapshot is whole afterwards. */
START_TEST(rados_gc_waits_for_no_writer)
{
	struct store *a = open_store(), *b = open_store();
	struct store_writer *w;
	ck_assert_int_eq(store_writer_begin(a, "w", NULL, 100, NULL, 0, &w), 0);
	for (uint64_t p = 0; p < 100; p++)
		ck_assert_int_eq(store_writer_add(w, p, store_pages_make(p, 5, store_pages_kind(p))), 0);
	uint64_t freed;
	ck_assert_int_eq(store_gc(b, &freed), -EBUSY);
	ck_assert_ptr_nonnull(strstr(error_message(), "in use by a snapshot writer"));
	ck_assert_int_eq(store_writer_commit(w), 0);
	ck_assert_msg(store_gc(b, &freed) == 0, "%s", error_message());
	struct store_snapshot *snap;
	ck_assert_int_eq(store_snapshot_open(b, "w", &snap), 0);
	for (uint64_t p = 0; p < 100; p++)
		store_pages_expect(snap, p, 5);
	store_snapshot_close(snap);
	store_close(a);
	store_close(b);
}
END_TEST

/* A VM's pin (a lock of its connection) keeps its snapshot from another host's delete,
 * and goes with it. */
START_TEST(rados_pins_hold_across_hosts)
{
	struct store *vm = open_store(), *other = open_store();
	store_pages_write(vm, "base", NULL, 60, 1, 0, 1, NULL);
	struct store_snapshot *snap;
	ck_assert_int_eq(store_snapshot_open_pinned(vm, "base", "VM 'web' (pid 42)", &snap), 0);
	ck_assert_int_eq(store_delete(other, "base"), -EBUSY);
	ck_assert_msg(strstr(error_message(), "snapshot 'base' is in use by VM 'web' (pid 42)"), "%s", error_message());
	store_snapshot_close(snap);
	ck_assert_msg(store_delete(other, "base") == 0, "%s", error_message());
	store_close(vm);
	store_close(other);
}
END_TEST

/* A writer killed with kill -9 in the middle: every finished snapshot stands, the store
 * verifies (its pack is a leftover gc removes), and its lock went with it. */
START_TEST(rados_a_killed_writer_leaves_the_store_whole)
{
	struct store *s = open_store();
	store_pages_write(s, "done", NULL, 200, 1, 0, 1, NULL);
	store_close(s);
	int ready[2];
	ck_assert_int_eq(pipe(ready), 0);
	pid_t pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		struct store *c;
		struct store_writer *w;
		if (store_open(where, true, &c) != 0 || store_writer_begin(c, "killed", NULL, 5000, NULL, 0, &w) != 0)
			_exit(1);
		for (uint64_t p = 0; p < 5000; p++) {
			if (store_writer_add(w, p, store_pages_make(p, 9, 2)) != 0)
				_exit(1);
			if (p == 3000 && write(ready[1], "x", 1) != 1)
				_exit(1);
		}
		pause();
		_exit(0);
	}
	close(ready[1]);
	char c;
	ck_assert_int_eq(read(ready[0], &c, 1), 1);
	close(ready[0]);
	kill(pid, SIGKILL);
	int status;
	ck_assert_int_eq(waitpid(pid, &status, 0), pid);
	s = open_store();
	ck_assert(!store_has_snapshot(s, "killed"));
	uint64_t freed;
	ck_assert_msg(store_gc(s, &freed) == 0, "%s", error_message()); /* the lock is free again */
	struct store_snapshot *snap;
	ck_assert_int_eq(store_snapshot_open(s, "done", &snap), 0);
	for (uint64_t p = 0; p < 200; p++)
		store_pages_expect(snap, p, 1);
	store_snapshot_close(snap);
	store_close(s);
	struct store_lines l;
	ck_assert_int_eq(store_pages_verify(where, &l), 0);
	ck_assert_uint_eq(l.notes, 0);
}
END_TEST

/* A handle that keeps its index (a VM's) sees what other hosts stored meanwhile. */
START_TEST(rados_a_kept_index_shares_what_others_stored)
{
	struct store *vm = open_store(), *other = open_store();
	store_keep_index(vm);
	store_pages_write(vm, "a", NULL, 300, 1, 0, 1, NULL);
	store_pages_write(other, "b", NULL, 300, 2, 0, 1, NULL);
	struct store_write_stats st;
	store_pages_write(vm, "c", NULL, 300, 2, 0, 1, &st);
	ck_assert_uint_eq(st.stored, 0);
	store_close(vm);
	store_close(other);
}
END_TEST

/* Damage done to the pool from outside: a flipped byte in a pack is found by verify and by
 * the hash check of a restore's page; a truncated manifest is refused at open, naming it. */
START_TEST(rados_damaged_objects_are_named)
{
	struct store *s = open_store();
	store_pages_write(s, "d", NULL, 60, 1, 0, 1, NULL);
	store_close(s);
	struct rados_conn *c;
	const char *ns = strchr(where + strlen("rados:"), '/') + 1;
	ck_assert_msg(rados_conn_open(ceph_suite_cluster.pool, ns, NULL, NULL, &c) == 0, "%s", error_message());
	uint8_t buf[4096];
	size_t got;
	ck_assert_int_eq(rados_conn_read(c, "packs/00000001.pack", 8192, buf, sizeof(buf), &got), 0);
	ck_assert_uint_eq(got, sizeof(buf));
	buf[100] ^= 0x40;
	/* Put the page back changed: the whole pack is rewritten with it. */
	uint64_t size, mtime;
	ck_assert_int_eq(rados_conn_stat(c, "packs/00000001.pack", &size, &mtime), 0);
	uint8_t *pack = malloc(size);
	ck_assert_int_eq(rados_conn_read(c, "packs/00000001.pack", 0, pack, size, &got), 0);
	memcpy(pack + 8192, buf, sizeof(buf));
	ck_assert_int_eq(rados_conn_write_full(c, "packs/00000001.pack", pack, size, false), 0);
	free(pack);
	struct store_lines l;
	ck_assert_int_gt(store_pages_verify(where, &l), 0);
	ck_assert_msg(strstr(l.text, "bytes in pack 00000001 slot 2 do not match their hash"), "%s", l.text);
	/* A manifest cut short. */
	ck_assert_int_eq(rados_conn_stat(c, "snapshots/d.snap", &size, &mtime), 0);
	uint8_t *m = malloc(size);
	ck_assert_int_eq(rados_conn_read(c, "snapshots/d.snap", 0, m, size, &got), 0);
	ck_assert_int_eq(rados_conn_write_full(c, "snapshots/d.snap", m, size / 2, false), 0);
	free(m);
	rados_conn_close(c);
	ck_assert_int_eq(store_open_read(where, &s), 0);
	struct store_snapshot *snap;
	ck_assert_int_eq(store_snapshot_open(s, "d", &snap), -EIO);
	ck_assert_msg(strstr(error_message(), "snapshots/d.snap"), "%s", error_message());
	store_close(s);
}
END_TEST

/* The CLI takes a RADOS store where it takes a folder. */
START_TEST(rados_store_commands_take_a_rados_store)
{
	struct store *s = open_store();
	store_pages_write(s, "first", NULL, 30, 1, 0, 1, NULL);
	store_pages_write(s, "second", "first", 30, 2, 0, 2, NULL);
	store_close(s);
	struct spawn_result r;
	ck_assert_int_eq(spawn_vmm(&r, 60, "store", "ls", where, NULL), 0);
	ck_assert_msg(r.status == 0 && strstr(r.out, "first") && strstr(r.out, "second"), "status %d: %s%s", r.status,
		      r.out, r.err);
	spawn_free(&r);
	ck_assert_int_eq(spawn_vmm(&r, 60, "store", "verify", where, NULL), 0);
	ck_assert_msg(r.status == 0, "status %d: %s%s", r.status, r.out, r.err);
	spawn_free(&r);
	ck_assert_int_eq(spawn_vmm(&r, 60, "store", "rm", where, "first", NULL), 0);
	ck_assert_msg(r.status == 0, "status %d: %s%s", r.status, r.out, r.err);
	spawn_free(&r);
	ck_assert_int_eq(spawn_vmm(&r, 60, "store", "gc", where, NULL), 0);
	ck_assert_msg(r.status == 0, "status %d: %s%s", r.status, r.out, r.err);
	spawn_free(&r);
	/* A pool that is not there: one line, no hang. */
	ck_assert_int_eq(spawn_vmm(&r, 60, "store", "ls", "rados:nosuchpool/x", NULL), 0);
	ck_assert_msg(r.status == 125 && strstr(r.err, "nosuchpool"), "status %d: %s", r.status, r.err);
	spawn_free(&r);
}
END_TEST

/* The OSD stops answering in the middle of a restore: the page read fails, in bounded time
 * (Ceph's OSD operations are capped at 20 s), with one line naming the store and the page,
 * never a hang. The OSD is let go on afterwards. */
START_TEST(rados_an_osd_that_stops_fails_the_read_not_hangs)
{
	struct store *s = open_store();
	store_pages_write(s, "r", NULL, 60, 1, 0, 1, NULL);
	store_close(s);
	ck_assert_int_eq(store_open_read(where, &s), 0);
	struct store_snapshot *snap;
	ck_assert_int_eq(store_snapshot_open(s, "r", &snap), 0);
	ck_assert_msg(ceph_suite_cluster.osd > 0, "needs a cluster of its own to stop its OSD, not $VMM_TEST_CEPH_CONF's");
	ck_assert_int_eq(kill(ceph_suite_cluster.osd, SIGSTOP), 0);
	const void *data;
	uint64_t hash;
	int r = store_snapshot_page(snap, 2, &data, &hash);
	char said[512];
	snprintf(said, sizeof(said), "%s", error_message());
	ck_assert_int_eq(kill(ceph_suite_cluster.osd, SIGCONT), 0);
	ck_assert_msg(r < 0, "a page was read from a stopped OSD");
	ck_assert_msg(strstr(said, "snapshot 'r', page 0x2") && strstr(said, "packs/00000001.pack"), "%s", said);
	store_snapshot_close(snap);
	store_close(s);
}
END_TEST

Suite *store_rados_suite(void)
{
	Suite *s = suite_create("store_rados");
	harness_requires(HARNESS_CEPH);
	TCase *tc = tcase_create("rados");
	tcase_add_unchecked_fixture(tc, ceph_cluster_suite_start, ceph_cluster_suite_stop);
	tcase_add_checked_fixture(tc, setup, NULL);
	tcase_set_timeout(tc, 120);
	HARNESS_ADD_TEST(tc, rados_snapshots_dedup_and_read_back_lazily);
	HARNESS_ADD_TEST(tc, rados_delete_and_gc_keep_what_the_others_need);
	HARNESS_ADD_TEST(tc, rados_manifests_larger_than_a_write_go_in_parts);
	HARNESS_ADD_TEST(tc, rados_two_writers_at_once);
	HARNESS_ADD_TEST(tc, rados_a_snapshot_on_another_host_uploads_only_what_changed);
	HARNESS_ADD_TEST(tc, rados_gc_waits_for_no_writer);
	HARNESS_ADD_TEST(tc, rados_pins_hold_across_hosts);
	HARNESS_ADD_TEST(tc, rados_a_killed_writer_leaves_the_store_whole);
	HARNESS_ADD_TEST(tc, rados_a_kept_index_shares_what_others_stored);
	HARNESS_ADD_TEST(tc, rados_damaged_objects_are_named);
	HARNESS_ADD_TEST(tc, rados_store_commands_take_a_rados_store);
	HARNESS_ADD_TEST(tc, rados_an_osd_that_stops_fails_the_read_not_hangs);
	suite_add_tcase(s, tc);
	return s;
}

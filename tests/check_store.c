/*
 * The snapshot store: dedup, parents, reading back, damage found by verify, gc, and
 * crash safety under kill -9 of a writer.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "harness.h"
#include "spawn.h"
#include "store_pages.h"
#include "vmm/error.h"
#include "vmm/store/store.h"

static char dir[64];

/* Manifest layout (vmm/store/format.h) of write_snapshot's snapshots: header 520 (184 in
 * version 2), state 11 padded to 16, a pack table of one pack padded to 8; then 24-byte
 * entries in chunks of 512, one (first page, checksum) pair of 16 bytes per chunk, and a
 * 24-byte trailer. */
#define MANIFEST_HEADER 520
#define MANIFEST_HEADER_V2 184
#define MANIFEST_ENTRIES (MANIFEST_HEADER + 16 + 8)
#define MANIFEST_CHUNK 512

static void setup(void)
{
	strcpy(dir, "/tmp/vmm-store-XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(dir));
	error_clear();
}

static void teardown(void)
{
	char cmd[128];
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	ck_assert_int_eq(system(cmd), 0);
}


START_TEST(store_size_is_exactly_the_unique_nonzero_pages)
{
	/* 300 pages: 100 zero, 100 drawn from 4 patterns, 100 unique. */
	struct store *s;
	ck_assert_int_eq(store_open(dir, true, &s), 0);
	struct store_write_stats st;
	store_pages_write(s, "base", NULL, 300, 1, 0, 1, &st);
	ck_assert_uint_eq(st.pages, 300);
	ck_assert_uint_eq(st.zero, 100);
	ck_assert_uint_eq(st.stored, 104);
	ck_assert_uint_eq(st.shared, 96);
	uint64_t packs, manifests;
	ck_assert_int_eq(store_disk_usage(s, &packs, &manifests), 0);
	ck_assert_uint_eq(packs, 104 * STORE_PAGE);
	/* header + state (padded) + pack table (one pack, padded) + entries + one chunk + trailer */
	ck_assert_uint_eq(manifests, MANIFEST_HEADER + 16 + 8 + 300 * 24 + 16 + 24);
	store_close(s);
}
END_TEST

START_TEST(snapshot_reads_back_every_page_and_its_state)
{
	struct store *s;
	ck_assert_int_eq(store_open(dir, true, &s), 0);
	store_pages_write(s, "base", NULL, 300, 1, 0, 1, NULL);
	store_close(s);

	ck_assert_int_eq(store_open(dir, false, &s), 0);
	struct store_snapshot *snap;
	ck_assert_msg(store_snapshot_open(s, "base", &snap) == 0, "%s", error_message());
	for (uint64_t p = 0; p < 300; p++)
		store_pages_expect(snap, p, 1);
	const void *data;
	uint64_t hash;
	ck_assert_int_eq(store_snapshot_page(snap, 5000, &data, &hash), 0); /* beyond: zero */
	ck_assert_ptr_null(data);
	size_t len;
	ck_assert_str_eq(store_snapshot_state(snap, &len), "vcpu state");
	ck_assert_uint_eq(store_snapshot_page_count(snap), 300);
	ck_assert_uint_eq(store_snapshot_depth(snap), 1);
	store_snapshot_close(snap);
	store_close(s);
}
END_TEST

START_TEST(child_stores_only_what_changed_and_reads_through_its_parent)
{
	/* base <- child: child rewrites every 10th unique page with a new generation. */
	struct store *s;
	ck_assert_int_eq(store_open(dir, true, &s), 0);
	store_pages_write(s, "base", NULL, 300, 1, 0, 1, NULL);
	uint64_t before, after, m;
	ck_assert_int_eq(store_disk_usage(s, &before, &m), 0);
	struct store_writer *w;
	ck_assert_int_eq(store_writer_begin(s, "child", "base", 300, NULL, 0, &w), 0);
	unsigned changed = 0;
	for (uint64_t p = 2; p < 300; p += 30, changed++)
		ck_assert_int_eq(store_writer_add(w, p, store_pages_make(p, 2, 2)), 0);
	ck_assert_int_eq(store_writer_commit(w), 0);
	ck_assert_int_eq(store_disk_usage(s, &after, &m), 0);
	ck_assert_uint_eq(after - before, changed * STORE_PAGE);

	struct store_snapshot *snap;
	ck_assert_int_eq(store_snapshot_open(s, "child", &snap), 0);
	ck_assert_uint_eq(store_snapshot_depth(snap), 2);
	ck_assert_str_eq(store_snapshot_parent(snap), "base");
	for (uint64_t p = 0; p < 300; p++)
		store_pages_expect(snap, p, (p % 30 == 2) ? 2 : 1);
	store_snapshot_close(snap);
	store_close(s);
}
END_TEST

START_TEST(child_leaves_out_pages_equal_to_its_parents)
{
	/* base <- child, given all 300 pages again with every 10th unique one rewritten and
	 * one zero page made non-zero: only those are listed; the rest read through base. */
	struct store *s;
	ck_assert_int_eq(store_open(dir, true, &s), 0);
	store_pages_write(s, "base", NULL, 300, 1, 0, 1, NULL);
	struct store_writer *w;
	ck_assert_int_eq(store_writer_begin(s, "child", "base", 300, NULL, 0, &w), 0);
	unsigned changed = 0;
	for (uint64_t p = 0; p < 300; p++) {
		bool rewrite = p % 30 == 2, unzero = p == 3;
		changed += rewrite || unzero;
		const uint8_t *bytes = rewrite ? store_pages_make(p, 2, 2) : unzero ? store_pages_make(p, 1, 1) : store_pages_make(p, 1, store_pages_kind(p));
		ck_assert_int_eq(store_writer_add(w, p, bytes), 0);
	}
	struct store_write_stats st;
	store_writer_stats(w, &st);
	ck_assert_int_eq(store_writer_commit(w), 0);
	ck_assert_uint_eq(st.pages, changed);
	ck_assert_uint_eq(st.unchanged, 300 - changed);
	struct store_snapshot *snap;
	ck_assert_int_eq(store_snapshot_open(s, "child", &snap), 0);
	for (uint64_t p = 0; p < 300; p++) {
		if (p == 3) {
			const void *data;
			uint64_t hash;
			ck_assert_int_eq(store_snapshot_page(snap, p, &data, &hash), 0);
			ck_assert_mem_eq(data, store_pages_make(p, 1, 1), STORE_PAGE);
			continue;
		}
		store_pages_expect(snap, p, (p % 30 == 2) ? 2 : 1);
	}
	store_snapshot_close(snap);
	store_close(s);
}
END_TEST

START_TEST(second_snapshot_of_same_memory_stores_nothing_new)
{
	struct store *s;
	ck_assert_int_eq(store_open(dir, true, &s), 0);
	store_pages_write(s, "one", NULL, 300, 1, 0, 1, NULL);
	store_close(s);
	ck_assert_int_eq(store_open(dir, false, &s), 0); /* the index is rebuilt from manifests */
	struct store_write_stats st;
	store_pages_write(s, "two", NULL, 300, 1, 0, 1, &st);
	ck_assert_uint_eq(st.stored, 0);
	ck_assert_uint_eq(st.shared, 200);
	uint64_t packs, m;
	ck_assert_int_eq(store_disk_usage(s, &packs, &m), 0);
	ck_assert_uint_eq(packs, 104 * STORE_PAGE);
	store_close(s);
}
END_TEST

static void identity_of(struct store *s, const char *name, uint8_t id[STORE_IDENTITY_BYTES])
{
	struct store_snapshot *snap;
	ck_assert_int_eq(store_snapshot_open(s, name, &snap), 0);
	ck_assert_int_eq(store_snapshot_identity(snap, id), 0);
	store_snapshot_close(snap);
}

/* A restore's pages are shared host-wide by this identity: equal pages, equal identity. */
START_TEST(snapshots_of_the_same_pages_have_the_same_identity_and_others_not)
{
	struct store *s;
	ck_assert_int_eq(store_open(dir, true, &s), 0);
	store_pages_write(s, "one", NULL, 300, 1, 0, 1, NULL);
	store_pages_write(s, "two", NULL, 300, 1, 0, 1, NULL);      /* the same pages again */
	store_pages_write(s, "other", NULL, 300, 2, 0, 1, NULL);    /* other bytes */
	store_pages_write(s, "longer", NULL, 301, 1, 0, 1, NULL);   /* one more page */
	store_pages_write(s, "child", "one", 300, 1, 0, 7, NULL);   /* what it rewrites is equal */
	uint8_t one[STORE_IDENTITY_BYTES], two[STORE_IDENTITY_BYTES], other[STORE_IDENTITY_BYTES],
		longer[STORE_IDENTITY_BYTES], child[STORE_IDENTITY_BYTES];
	identity_of(s, "one", one);
	identity_of(s, "two", two);
	identity_of(s, "other", other);
	identity_of(s, "longer", longer);
	identity_of(s, "child", child);
	ck_assert_mem_eq(one, two, STORE_IDENTITY_BYTES);
	ck_assert(memcmp(one, other, STORE_IDENTITY_BYTES) != 0);
	ck_assert(memcmp(one, longer, STORE_IDENTITY_BYTES) != 0);
	ck_assert(memcmp(one, child, STORE_IDENTITY_BYTES) != 0); /* a chain: counted apart (conservative) */
	store_close(s);
}
END_TEST

static uint64_t constant_hash(const void *data, size_t len)
{
	(void)data;
	(void)len;
	return 42;
}

START_TEST(hash_collisions_keep_both_pages)
{
	/* Every page hashes to 42: only memcmp tells them apart. */
	struct store *s;
	ck_assert_int_eq(store_open_hashed(dir, true, constant_hash, &s), 0);
	struct store_write_stats st;
	store_pages_write(s, "c", NULL, 60, 1, 0, 1, &st);
	ck_assert_uint_eq(st.stored, 24); /* 20 unique + 4 patterns */
	ck_assert_uint_gt(st.collisions, 0);
	struct store_snapshot *snap;
	ck_assert_int_eq(store_snapshot_open(s, "c", &snap), 0);
	for (uint64_t p = 0; p < 60; p++)
		store_pages_expect(snap, p, 1);
	store_snapshot_close(snap);
	store_close(s);
}
END_TEST

START_TEST(names_parents_and_order_are_checked)
{
	struct store *s;
	struct store_writer *w;
	ck_assert_int_eq(store_open(dir, true, &s), 0);
	ck_assert_int_eq(store_writer_begin(s, "../evil", NULL, 10, NULL, 0, &w), -EINVAL);
	ck_assert_int_eq(store_writer_begin(s, ".hidden", NULL, 10, NULL, 0, &w), -EINVAL);
	ck_assert_int_eq(store_writer_begin(s, "", NULL, 10, NULL, 0, &w), -EINVAL);
	ck_assert_int_eq(store_writer_begin(s, "x", "nope", 10, NULL, 0, &w), -ENOENT);
	ck_assert_ptr_nonnull(strstr(error_message(), "parent snapshot 'nope' is not in /tmp/vmm-store-"));
	store_pages_write(s, "x", NULL, 10, 1, 0, 1, NULL);
	ck_assert_int_eq(store_writer_begin(s, "x", NULL, 10, NULL, 0, &w), -EEXIST);
	ck_assert_int_eq(store_writer_begin(s, "y", NULL, 10, NULL, 0, &w), 0);
	ck_assert_int_eq(store_writer_add(w, 5, store_pages_make(5, 1, 2)), 0);
	ck_assert_int_eq(store_writer_add(w, 5, store_pages_make(5, 1, 2)), -EINVAL);
	ck_assert_int_eq(store_writer_add(w, 10, store_pages_make(10, 1, 2)), -EINVAL);
	store_writer_abort(w);
	struct store_snapshot *snap;
	ck_assert_int_eq(store_snapshot_open(s, "y", &snap), -ENOENT);
	uint64_t packs, m;
	ck_assert_int_eq(store_disk_usage(s, &packs, &m), 0);
	ck_assert_uint_eq(packs, 6 * STORE_PAGE); /* x's 3 patterns and 3 unique pages; y's pack is gone */
	store_close(s);
}
END_TEST

/* verify of this test's store. */
static long verify(struct store_lines *l)
{
	return store_pages_verify(dir, l);
}

static void corrupt(const char *rel, off_t off, uint8_t x)
{
	char path[256];
	snprintf(path, sizeof(path), "%s/%s", dir, rel);
	int fd = open(path, O_RDWR);
	ck_assert_int_ge(fd, 0);
	uint8_t b;
	ck_assert_int_eq(pread(fd, &b, 1, off), 1);
	b ^= x;
	ck_assert_int_eq(pwrite(fd, &b, 1, off), 1);
	close(fd);
}

/* The 300 pages of @snap (named @name in messages) as @want has them: 0 zero, 1 the bytes
 * write_snapshot gave generation 1, else unique bytes of that generation. */
static void expect_generations(struct store_snapshot *snap, const char *name, const uint8_t want[300])
{
	for (uint64_t p = 0; p < 300; p++) {
		const void *data;
		uint64_t hash;
		ck_assert_int_eq(store_snapshot_page(snap, p, &data, &hash), 0);
		if (!want[p]) {
			ck_assert_msg(!data, "%s page %llu should be zero", name, (unsigned long long)p);
			continue;
		}
		int kind = want[p] == 1 ? store_pages_kind(p) : 2;
		ck_assert_msg(data && memcmp(data, store_pages_make(p, want[p], kind), STORE_PAGE) == 0, "%s page %llu", name,
			      (unsigned long long)p);
	}
}

START_TEST(long_chains_of_deltas_are_cut_by_complete_manifests)
{
	/* base <- c1 <- ... <- c12, each rewriting one page (or zeroing one): no snapshot is read
	 * through more than 8 manifests, every page of each reads back, the one past the cut
	 * needs none of its ancestors (its parent can go), and verify and gc agree. */
	struct store *s;
	ck_assert_int_eq(store_open(dir, true, &s), 0);
	store_pages_write(s, "base", NULL, 300, 1, 0, 1, NULL);
	uint8_t want[13][300]; /* generation of each page in each snapshot (0: zero) */
	for (uint64_t p = 0; p < 300; p++)
		want[0][p] = store_pages_kind(p) ? 1 : 0;
	char name[16], parent[16] = "base";
	for (int i = 1; i <= 12; i++) {
		memcpy(want[i], want[i - 1], sizeof(want[i]));
		snprintf(name, sizeof(name), "c%d", i);
		struct store_writer *w;
		ck_assert_int_eq(store_writer_begin(s, name, parent, 300, NULL, 0, &w), 0);
		uint64_t p = 2 + 3 * (uint64_t)i; /* a unique page: rewritten, or (every 4th) zeroed */
		want[i][p] = i % 4 ? (uint8_t)(10 + i) : 0;
		static uint8_t zero[STORE_PAGE];
		ck_assert_int_eq(store_writer_add(w, p, want[i][p] ? store_pages_make(p, want[i][p], 2) : zero), 0);
		ck_assert_int_eq(store_writer_commit(w), 0);
		snprintf(parent, sizeof(parent), "%s", name);
	}
	for (int i = 1; i <= 12; i++) {
		snprintf(name, sizeof(name), "c%d", i);
		struct store_snapshot *snap;
		ck_assert_msg(store_snapshot_open(s, name, &snap) == 0, "%s", error_message());
		ck_assert_uint_le(store_snapshot_depth(snap), 8);
		expect_generations(snap, name, want[i]);
		store_snapshot_close(snap);
	}
	/* c8 was written complete (its parent was 8 deep): deleting its parent c7 rewrites
	 * nothing; deleting c6 first makes c7 take in c6's entries, reading the same. */
	ck_assert_msg(store_delete(s, "c6") == 0, "%s", error_message());
	struct store_snapshot *snap;
	ck_assert_int_eq(store_snapshot_open(s, "c7", &snap), 0);
	ck_assert_str_eq(store_snapshot_parent(snap), "c5");
	expect_generations(snap, "c7", want[7]);
	store_snapshot_close(snap);
	ck_assert_msg(store_delete(s, "c7") == 0, "%s", error_message());
	uint64_t freed;
	ck_assert_int_eq(store_gc(s, &freed), 0);
	ck_assert_int_eq(store_snapshot_open(s, "c12", &snap), 0);
	ck_assert_str_eq(store_snapshot_parent(snap), "c11");
	store_snapshot_close(snap);
	ck_assert_int_eq(store_snapshot_open(s, "c8", &snap), 0);
	ck_assert_str_eq(store_snapshot_parent(snap), "c7"); /* for the record: it needs nothing of it */
	store_snapshot_close(snap);
	struct store_lines l = {0};
	ck_assert_int_eq(verify(&l), 0);
	store_close(s);
}
END_TEST

START_TEST(verify_passes_a_healthy_store)
{
	struct store *s;
	ck_assert_int_eq(store_open(dir, true, &s), 0);
	store_pages_write(s, "base", NULL, 300, 1, 0, 1, NULL);
	store_pages_write(s, "child", "base", 300, 2, 2, 30, NULL);
	store_close(s);
	struct store_lines l;
	ck_assert_int_eq(verify(&l), 0);
	ck_assert_uint_eq(l.notes, 0);
}
END_TEST

START_TEST(verify_names_the_damaged_page)
{
	struct store *s;
	ck_assert_int_eq(store_open(dir, true, &s), 0);
	store_pages_write(s, "base", NULL, 300, 1, 0, 1, NULL);
	store_close(s);
	corrupt("packs/00000001.pack", 7 * STORE_PAGE + 100, 0x01); /* pack slot 7 */
	struct store_lines l;
	ck_assert_int_eq(verify(&l), 1);
	ck_assert_msg(strstr(l.text, "bytes in pack 00000001 slot 7 do not match their hash (damaged)"), "%s", l.text);
	ck_assert_msg(strstr(l.text, "snapshots/base.snap: page 0x"), "%s", l.text);
}
END_TEST

START_TEST(damaged_manifests_are_named)
{
	struct store *s;
	ck_assert_int_eq(store_open(dir, true, &s), 0);
	store_pages_write(s, "base", NULL, 30, 1, 0, 1, NULL);
	store_pages_write(s, "other", NULL, 30, 3, 0, 1, NULL);
	store_pages_write(s, "head", NULL, 30, 4, 0, 1, NULL);
	store_close(s);
	corrupt("snapshots/base.snap", MANIFEST_ENTRIES + 3 * 24 + 9, 0x80); /* entry 3's hash */
	corrupt("snapshots/head.snap", 20, 0x01);                             /* creation time */
	struct store_lines l;
	ck_assert_int_eq(verify(&l), 2);
	ck_assert_msg(strstr(l.text, "snapshots/base.snap: manifest entries 0-29 do not match their checksum (damaged)"),
		      "%s", l.text);
	ck_assert_msg(strstr(l.text, "snapshots/head.snap: manifest header and state do not match their checksum (damaged)"),
		      "%s", l.text);

	/* The rest of the store stays usable; damage in the header is found at open, damage in
	 * the entries when the chunk holding them is first read, with the same words. */
	ck_assert_int_eq(store_open(dir, false, &s), 0);
	struct store_snapshot *snap;
	ck_assert_int_eq(store_snapshot_open(s, "other", &snap), 0);
	store_snapshot_close(snap);
	ck_assert_int_eq(store_snapshot_open(s, "head", &snap), -EIO);
	ck_assert_ptr_nonnull(strstr(error_message(), "head.snap: manifest header and state do not match their checksum"));
	ck_assert_int_eq(store_snapshot_open(s, "base", &snap), 0);
	const void *data;
	uint64_t hash;
	ck_assert_int_eq(store_snapshot_page(snap, 4, &data, &hash), -EIO);
	ck_assert_ptr_nonnull(strstr(error_message(), "base.snap: manifest entries 0-29 do not match their checksum"));
	store_snapshot_close(snap);
	uint64_t freed;
	ck_assert_int_eq(store_gc(s, &freed), -EIO); /* gc refuses to lose a damaged snapshot's pages */
	ck_assert_msg(strstr(error_message(), "has 2 damaged manifests; gc would lose"), "%s", error_message());
	store_close(s);
}
END_TEST

START_TEST(truncated_and_foreign_manifests_are_named)
{
	struct store *s;
	ck_assert_int_eq(store_open(dir, true, &s), 0);
	store_pages_write(s, "base", NULL, 30, 1, 0, 1, NULL);
	store_close(s);
	char path[256], cmd[512];
	snprintf(path, sizeof(path), "%s/snapshots/base.snap", dir);
	ck_assert_int_eq(truncate(path, 700), 0);
	snprintf(cmd, sizeof(cmd), "echo hello > %s/snapshots/text.snap", dir);
	ck_assert_int_eq(system(cmd), 0);
	struct store_lines l;
	ck_assert_int_eq(verify(&l), 2);
	ck_assert_msg(strstr(l.text, "base.snap: manifest is 700 bytes, its header says"), "%s", l.text);
	ck_assert_msg(strstr(l.text, "text.snap: truncated manifest (6 bytes)"), "%s", l.text);
}
END_TEST

START_TEST(missing_pack_is_named)
{
	struct store *s;
	ck_assert_int_eq(store_open(dir, true, &s), 0);
	store_pages_write(s, "base", NULL, 30, 1, 0, 1, NULL);
	store_close(s);
	char path[256];
	snprintf(path, sizeof(path), "%s/packs/00000001.pack", dir);
	ck_assert_int_eq(unlink(path), 0);
	struct store_lines l;
	ck_assert_int_eq(verify(&l), 20);
	ck_assert_msg(strstr(l.text, "packs/00000001.pack: No such file or directory"), "%s", l.text);
	/* A restore finds out at once, not when the guest first needs a page of it. */
	ck_assert_int_eq(store_open_read(dir, &s), 0);
	struct store_snapshot *snap;
	ck_assert_int_eq(store_snapshot_open(s, "base", &snap), -ENOENT);
	ck_assert_msg(strstr(error_message(), "packs/00000001.pack: No such file or directory (snapshot 'base' needs it)"),
		      "%s", error_message());
	store_close(s);
}
END_TEST

START_TEST(missing_parent_is_named)
{
	struct store *s;
	ck_assert_int_eq(store_open(dir, true, &s), 0);
	store_pages_write(s, "base", NULL, 30, 1, 0, 1, NULL);
	store_pages_write(s, "child", "base", 30, 2, 2, 3, NULL);
	store_close(s);
	char path[256];
	snprintf(path, sizeof(path), "%s/snapshots/base.snap", dir);
	ck_assert_int_eq(unlink(path), 0);
	struct store_lines l;
	ck_assert_int_ge(verify(&l), 1);
	ck_assert_msg(strstr(l.text, "snapshot 'child' names parent 'base', which is not in"), "%s", l.text);
}
END_TEST

START_TEST(leftovers_of_a_killed_writer_are_notes_and_gc_removes_them)
{
	struct store *s;
	ck_assert_int_eq(store_open(dir, true, &s), 0);
	store_pages_write(s, "base", NULL, 30, 1, 0, 1, NULL);
	store_close(s);
	char cmd[512];
	snprintf(cmd, sizeof(cmd), "head -c 10000 /dev/urandom > %s/packs/00000009.pack && echo x > %s/snapshots/.half.tmp",
		 dir, dir);
	ck_assert_int_eq(system(cmd), 0);
	struct store_lines l;
	ck_assert_int_eq(verify(&l), 0);
	ck_assert_uint_eq(l.notes, 2);
	ck_assert_int_eq(store_open(dir, false, &s), 0);
	uint64_t freed;
	ck_assert_int_eq(store_gc(s, &freed), 0);
	ck_assert_uint_eq(freed, 10000);
	store_close(s);
	ck_assert_int_eq(verify(&l), 0);
	ck_assert_uint_eq(l.notes, 0);
}
END_TEST

START_TEST(gc_frees_pages_of_deleted_snapshots_and_keeps_the_rest_intact)
{
	/* a (gen 1), b (gen 2) share the zero/pattern pages; deleting a frees its unique pages. */
	struct store *s;
	ck_assert_int_eq(store_open(dir, true, &s), 0);
	store_pages_write(s, "a", NULL, 300, 1, 0, 1, NULL);
	store_pages_write(s, "b", NULL, 300, 2, 0, 1, NULL);
	store_pages_write(s, "b2", "b", 300, 3, 2, 30, NULL);
	ck_assert_int_eq(store_delete(s, "a"), 0);
	uint64_t freed, packs, m;
	ck_assert_int_eq(store_gc(s, &freed), 0);
	ck_assert_uint_eq(freed, 100 * STORE_PAGE);
	ck_assert_int_eq(store_disk_usage(s, &packs, &m), 0);
	ck_assert_uint_eq(packs, (104 + 10) * STORE_PAGE);
	struct store_snapshot *snap;
	ck_assert_int_eq(store_snapshot_open(s, "b2", &snap), 0);
	for (uint64_t p = 0; p < 300; p++)
		store_pages_expect(snap, p, p % 30 == 2 ? 3 : 2);
	store_snapshot_close(snap);
	store_close(s);
	struct store_lines l;
	ck_assert_int_eq(verify(&l), 0);
	ck_assert_uint_eq(l.notes, 0);
}
END_TEST

/* The bytes of @rel in the store (free them); *len their count. */
static uint8_t *slurp(const char *rel, size_t *len)
{
	char path[256];
	snprintf(path, sizeof(path), "%s/%s", dir, rel);
	int fd = open(path, O_RDONLY);
	ck_assert_int_ge(fd, 0);
	struct stat st;
	ck_assert_int_eq(fstat(fd, &st), 0);
	uint8_t *b = malloc((size_t)st.st_size);
	ck_assert_ptr_nonnull(b);
	ck_assert_int_eq(pread(fd, b, (size_t)st.st_size, 0), st.st_size);
	close(fd);
	*len = (size_t)st.st_size;
	return b;
}

static void spill(const char *rel, const uint8_t *b, size_t len)
{
	char path[256];
	snprintf(path, sizeof(path), "%s/%s", dir, rel);
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(write(fd, b, len), (ssize_t)len);
	close(fd);
}

START_TEST(manifests_of_another_version_are_refused_by_version)
{
	struct store *s;
	ck_assert_int_eq(store_open(dir, true, &s), 0);
	store_pages_write(s, "base", NULL, 30, 1, 0, 1, NULL);
	store_close(s);
	corrupt("snapshots/base.snap", 8, 3 ^ 1); /* version 3 -> 1 */
	ck_assert_int_eq(store_open_read(dir, &s), 0);
	struct store_snapshot *snap;
	ck_assert_int_eq(store_snapshot_open(s, "base", &snap), -EIO);
	ck_assert_msg(strstr(error_message(), "snapshots/base.snap: manifest version 1; this vmm reads versions 2 and 3"),
		      "%s", error_message());
	store_close(s);
	/* A version 1 manifest is shorter than a version 2 header: still named by its version. */
	char path[256];
	snprintf(path, sizeof(path), "%s/snapshots/base.snap", dir);
	ck_assert_int_eq(truncate(path, 100), 0);
	struct store_lines l;
	ck_assert_int_eq(verify(&l), 1);
	ck_assert_msg(strstr(l.text, "base.snap: manifest version 1; this vmm reads versions 2 and 3"), "%s", l.text);
}
END_TEST

/*
 * 2000 entries make 4 chunks: 0-511, 512-1023, 1024-1535, 1536-1999. Damage in the third is
 * found when a page of it is first looked up, through the child too, and is the one
 * problem verify names; every other page reads back.
 *   base (2000 entries, chunk 2 damaged) <- child (every 30th page)
 */
START_TEST(damaged_entries_are_found_when_their_chunk_is_first_read)
{
	struct store *s;
	ck_assert_int_eq(store_open(dir, true, &s), 0);
	store_pages_write(s, "base", NULL, 2000, 1, 0, 1, NULL);
	store_pages_write(s, "child", "base", 2000, 2, 2, 30, NULL);
	store_close(s);
	corrupt("snapshots/base.snap", MANIFEST_ENTRIES + 1100 * 24 + 9, 0x04);
	ck_assert_int_eq(store_open_read(dir, &s), 0);
	const char *names[2] = {"base", "child"};
	for (int n = 0; n < 2; n++) {
		struct store_snapshot *snap;
		ck_assert_msg(store_snapshot_open(s, names[n], &snap) == 0, "%s", error_message());
		for (uint64_t p = 0; p < 2000; p++) {
			bool own = n == 1 && p % 30 == 2;
			if (p >= 1024 && p < 1536 && !own) {
				const void *data;
				uint64_t hash;
				ck_assert_int_eq(store_snapshot_page(snap, p, &data, &hash), -EIO);
				ck_assert_msg(strstr(error_message(),
						     "snapshots/base.snap: manifest entries 1024-1535 do not match their checksum (damaged)"),
					      "%s", error_message());
			} else {
				store_pages_expect(snap, p, own ? 2 : 1);
			}
		}
		store_snapshot_close(snap);
	}
	store_close(s);
	struct store_lines l;
	ck_assert_int_eq(verify(&l), 1);
	ck_assert_msg(strstr(l.text, "base.snap: manifest entries 1024-1535 do not match their checksum (damaged)"), "%s",
		      l.text);
}
END_TEST

/* Entries out of order, or naming a pack their manifest's pack table lacks, behind valid
 * checksums (a bug or a forgery, not bit rot): refused entry by entry. */
START_TEST(malformed_entries_behind_valid_checksums_are_named)
{
	struct store *s;
	ck_assert_int_eq(store_open(dir, true, &s), 0);
	store_pages_write(s, "order", NULL, 2000, 1, 0, 1, NULL);
	store_pages_write(s, "pack", NULL, 2000, 1, 0, 1, NULL);
	store_close(s);
	size_t len;
	uint8_t *m = slurp("snapshots/order.snap", &len);
	uint64_t p = 600; /* entry 700 (chunk 1) claims page 600 */
	memcpy(m + MANIFEST_ENTRIES + 700 * 24, &p, 8);
	ck_assert_int_eq(store_manifest_seal(m, len), 0);
	spill("snapshots/order.snap", m, len);
	free(m);
	m = slurp("snapshots/pack.snap", &len);
	uint32_t pack = 7; /* entry 1601 (page 1601, chunk 3): pack 7 */
	memcpy(m + MANIFEST_ENTRIES + 1601 * 24 + 16, &pack, 4);
	ck_assert_int_eq(store_manifest_seal(m, len), 0);
	spill("snapshots/pack.snap", m, len);
	free(m);

	ck_assert_int_eq(store_open_read(dir, &s), 0);
	struct store_snapshot *snap;
	const void *data;
	uint64_t hash;
	ck_assert_int_eq(store_snapshot_open(s, "order", &snap), 0);
	store_pages_expect(snap, 100, 1);
	store_pages_expect(snap, 1100, 1);
	ck_assert_int_eq(store_snapshot_page(snap, 700, &data, &hash), -EIO);
	ck_assert_msg(strstr(error_message(), "order.snap: entry 700 (page 0x258) is malformed"), "%s", error_message());
	store_snapshot_close(snap);
	ck_assert_int_eq(store_snapshot_open(s, "pack", &snap), 0);
	store_pages_expect(snap, 1500, 1);
	ck_assert_int_eq(store_snapshot_page(snap, 1999, &data, &hash), -EIO);
	ck_assert_msg(strstr(error_message(), "pack.snap: entry 1601 (page 0x641) is malformed"), "%s", error_message());
	store_snapshot_close(snap);
	store_close(s);
	struct store_lines l;
	ck_assert_int_eq(verify(&l), 2);
	ck_assert_msg(strstr(l.text, "order.snap: entry 700 (page 0x258) is malformed"), "%s", l.text);
	ck_assert_msg(strstr(l.text, "pack.snap: entry 1601 (page 0x641) is malformed"), "%s", l.text);
}
END_TEST

/* Dense chunks are indexed directly, sparse ones searched: both find every page, through
 * a chain of three. base (all 40000 pages) <- mid (every 7th) <- top (every 13th from 5). */
START_TEST(sparse_and_dense_chains_find_every_page)
{
	struct store *s;
	ck_assert_int_eq(store_open(dir, true, &s), 0);
	store_pages_write(s, "base", NULL, 40000, 1, 0, 1, NULL);
	store_pages_write(s, "mid", "base", 40000, 2, 0, 7, NULL);
	store_pages_write(s, "top", "mid", 40000, 3, 5, 13, NULL);
	store_close(s);
	ck_assert_int_eq(store_open_read(dir, &s), 0);
	struct store_snapshot *snap;
	ck_assert_int_eq(store_snapshot_open(s, "top", &snap), 0);
	ck_assert_uint_eq(store_snapshot_depth(snap), 3);
	for (uint64_t p = 0; p < 40000; p++)
		store_pages_expect(snap, p, p >= 5 && (p - 5) % 13 == 0 ? 3 : p % 7 == 0 ? 2 : 1);
	store_snapshot_close(snap);
	store_close(s);
}
END_TEST

START_TEST(read_only_stores_serve_snapshots_and_refuse_changes)
{
	struct store *s;
	ck_assert_int_eq(store_open(dir, true, &s), 0);
	store_pages_write(s, "base", NULL, 30, 1, 0, 1, NULL);
	store_close(s);
	char path[256];
	snprintf(path, sizeof(path), "%s/lock", dir);
	ck_assert_int_eq(unlink(path), 0); /* reading needs no lock file, and makes none */
	ck_assert_int_eq(store_open_read(dir, &s), 0);
	struct store_snapshot *snap;
	ck_assert_int_eq(store_snapshot_open(s, "base", &snap), 0);
	for (uint64_t p = 0; p < 30; p++)
		store_pages_expect(snap, p, 1);
	store_snapshot_close(snap);
	struct store_writer *w;
	ck_assert_int_eq(store_writer_begin(s, "x", NULL, 10, NULL, 0, &w), -EROFS);
	uint64_t freed;
	ck_assert_int_eq(store_gc(s, &freed), -EROFS);
	ck_assert_int_eq(store_delete(s, "base"), -EROFS);
	ck_assert_ptr_nonnull(strstr(error_message(), "is open for reading only"));
	struct store_verify_stats st;
	struct store_lines l = {.problems = 0};
	ck_assert_int_eq(store_verify(s, store_pages_collect, &l, &st), 0);
	ck_assert_uint_eq(st.pages_checked, 20);
	store_close(s);
	ck_assert_int_ne(access(path, F_OK), 0);
}
END_TEST

/* An open snapshot has its packs mapped: a gc that moves its pages and removes the packs
 * it read from does not change what it reads. */
START_TEST(open_snapshots_read_the_same_bytes_across_a_gc)
{
	struct store *s, *reader;
	ck_assert_int_eq(store_open(dir, true, &s), 0);
	store_pages_write(s, "a", NULL, 300, 1, 0, 1, NULL);
	store_pages_write(s, "b", NULL, 300, 2, 0, 1, NULL);
	ck_assert_int_eq(store_open_read(dir, &reader), 0);
	struct store_snapshot *snap;
	ck_assert_int_eq(store_snapshot_open(reader, "b", &snap), 0);
	ck_assert_int_eq(store_delete(s, "a"), 0);
	uint64_t freed;
	ck_assert_int_eq(store_gc(s, &freed), 0); /* pack 1 (a's pages and the patterns) is rewritten */
	ck_assert_uint_eq(freed, 100 * STORE_PAGE);
	char path[256];
	snprintf(path, sizeof(path), "%s/packs/00000001.pack", dir);
	ck_assert_int_ne(access(path, F_OK), 0);
	for (uint64_t p = 0; p < 300; p++)
		store_pages_expect(snap, p, 2);
	store_snapshot_close(snap);
	ck_assert_int_eq(store_snapshot_open(reader, "b", &snap), 0);
	for (uint64_t p = 0; p < 300; p++)
		store_pages_expect(snap, p, 2);
	store_snapshot_close(snap);
	store_close(reader);
	store_close(s);
}
END_TEST

/* A handle's knowledge of stored pages does not outlive its hold of the lock: after
 * another handle's gc removed them, the same bytes are stored again, not shared. */
START_TEST(writers_never_share_pages_a_gc_removed_meanwhile)
{
	struct store *s, *other;
	ck_assert_int_eq(store_open(dir, true, &s), 0);
	store_pages_write(s, "a", NULL, 300, 1, 0, 1, NULL);
	ck_assert_int_eq(store_open(dir, false, &other), 0);
	ck_assert_int_eq(store_delete(other, "a"), 0);
	uint64_t freed;
	ck_assert_int_eq(store_gc(other, &freed), 0);
	ck_assert_uint_eq(freed, 104 * STORE_PAGE);
	store_close(other);
	struct store_write_stats st;
	store_pages_write(s, "a2", NULL, 300, 1, 0, 1, &st);
	ck_assert_uint_eq(st.stored, 104);
	store_close(s);
	struct store_lines l;
	ck_assert_int_eq(verify(&l), 0);
	ck_assert_uint_eq(l.notes, 0);
}
END_TEST

/* A store is named by a path or rados:POOL[/NAMESPACE]; each has one name. */
START_TEST(stores_have_one_name_each)
{
	char out[4096], link[128];
	struct store *s;
	ck_assert_int_eq(store_open(dir, true, &s), 0);
	store_close(s);
	snprintf(link, sizeof(link), "%s-link", dir);
	ck_assert_int_eq(symlink(dir, link), 0);
	ck_assert_int_eq(store_locate(link, out, sizeof(out)), 0);
	char real[4096];
	ck_assert_ptr_nonnull(realpath(dir, real));
	ck_assert_str_eq(out, real);
	unlink(link);
	ck_assert_int_eq(store_locate("/nonexistent/store", out, sizeof(out)), -ENOENT);
	ck_assert(store_is_rados("rados:vmm"));
	ck_assert(!store_is_rados("/srv/rados:vmm"));
	ck_assert_int_eq(store_locate("rados:vmm", out, sizeof(out)), 0);
	ck_assert_str_eq(out, "rados:vmm/");
	ck_assert_int_eq(store_locate("rados:vmm/team/a_1.x", out, sizeof(out)), 0);
	ck_assert_str_eq(out, "rados:vmm/team/a_1.x");
	const char *bad[] = {"rados:", "rados:/ns", "rados:vmm/", "rados:vmm//a", "rados:vmm/a/", "rados:v m", "rados:vmm/a b"};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		ck_assert_msg(store_locate(bad[i], out, sizeof(out)) == -EINVAL, "%s", bad[i]);
		ck_assert_ptr_nonnull(strstr(error_message(), "is not a RADOS store"));
	}
}
END_TEST

/* Packs read rather than mapped (as on RADOS): every page reads right, and a run prefetched
 * is read in one go and kept: those pages still read after the pack is cut short, the
 * others fail with a clear error. */
START_TEST(packs_read_not_mapped_serve_pages_and_prefetched_runs)
{
	struct store *s;
	ck_assert_int_eq(store_open(dir, true, &s), 0);
	store_pages_write(s, "a", NULL, 300, 1, 0, 1, NULL);
	store_pages_write(s, "b", "a", 300, 2, 0, 2, NULL);
	store_close(s);
	ck_assert_int_eq(store_open_read(dir, &s), 0);
	store_set_pack_reads(s);
	struct store_snapshot *snap;
	ck_assert_int_eq(store_snapshot_open(s, "b", &snap), 0);
	for (uint64_t p = 0; p < 300; p++)
		store_pages_expect(snap, p, p % 2 ? 1 : 2);
	store_snapshot_prefetch(snap, 100, 100);
	char path[256];
	snprintf(path, sizeof(path), "%s/packs/00000001.pack", dir);
	ck_assert_int_eq(truncate(path, 0), 0); /* a's pages: b's odd pages come from it */
	for (uint64_t p = 100; p < 200; p++)
		store_pages_expect(snap, p, p % 2 ? 1 : 2);
	const void *data;
	uint64_t hash;
	ck_assert_int_eq(store_snapshot_page(snap, 7, &data, &hash), -EIO);
	ck_assert_ptr_nonnull(strstr(error_message(), "snapshot 'b', page 0x7"));
	store_snapshot_close(snap);
	store_close(s);
}
END_TEST

/* Pack files in the store. */
static unsigned count_packs(void)
{
	char path[128];
	snprintf(path, sizeof(path), "%s/packs", dir);
	DIR *d = opendir(path);
	ck_assert_ptr_nonnull(d);
	unsigned n = 0;
	struct dirent *e;
	while ((e = readdir(d)))
		n += strstr(e->d_name, ".pack") != NULL;
	closedir(d);
	return n;
}

/* Packs hold at most so many pages (RADOS objects are limited): a writer fills one after
 * another; everything reads back, gc moves pages across them, an abandoned writer leaves
 * none of its packs. */
START_TEST(a_writer_fills_one_pack_after_another)
{
	struct store *s;
	ck_assert_int_eq(store_open(dir, true, &s), 0);
	store_set_pack_pages(s, 64);
	store_pages_write(s, "a", NULL, 900, 1, 0, 1, NULL); /* 300 unique pages, 4 patterns */
	uint64_t packs, manifests;
	ck_assert_int_eq(store_disk_usage(s, &packs, &manifests), 0);
	ck_assert_uint_eq(packs, 304 * STORE_PAGE);
	ck_assert_uint_eq(count_packs(), 5); /* 304 pages, 64 a pack */
	struct store_lines l;
	ck_assert_int_eq(verify(&l), 0);
	store_pages_write(s, "b", "a", 900, 2, 0, 2, NULL); /* every second page new */
	struct store_snapshot *snap;
	ck_assert_int_eq(store_snapshot_open(s, "b", &snap), 0);
	for (uint64_t p = 0; p < 900; p++)
		store_pages_expect(snap, p, p % 2 ? 1 : 2);
	store_snapshot_close(snap);
	/* An abandoned writer leaves no pack behind, however many it filled. */
	struct store_writer *w;
	ck_assert_int_eq(store_writer_begin(s, "c", NULL, 900, NULL, 0, &w), 0);
	for (uint64_t p = 0; p < 900; p++)
		ck_assert_int_eq(store_writer_add(w, p, store_pages_make(p, 3, 2)), 0);
	store_writer_abort(w);
	uint64_t after;
	ck_assert_int_eq(store_disk_usage(s, &after, &manifests), 0);
	ck_assert_uint_eq(after, packs + 150 * STORE_PAGE);
	/* gc moves the live pages of partly used packs into new ones. */
	ck_assert_int_eq(store_delete(s, "a"), 0);
	uint64_t freed;
	ck_assert_int_eq(store_gc(s, &freed), 0);
	ck_assert_int_eq(store_snapshot_open(s, "b", &snap), 0);
	for (uint64_t p = 0; p < 900; p++)
		store_pages_expect(snap, p, p % 2 ? 1 : 2);
	store_snapshot_close(snap);
	store_close(s);
	ck_assert_int_eq(verify(&l), 0);
	ck_assert_uint_eq(l.notes, 0);
}
END_TEST

/* Two writers of one name at once (two processes, here two handles): the first to commit
 * has it, the second is refused and leaves the first's snapshot as it was. */
START_TEST(two_writers_of_one_name_never_replace_each_other)
{
	struct store *a, *b;
	ck_assert_int_eq(store_open(dir, true, &a), 0);
	ck_assert_int_eq(store_open(dir, false, &b), 0);
	struct store_writer *wa, *wb;
	ck_assert_int_eq(store_writer_begin(a, "same", NULL, 10, "a", 1, &wa), 0);
	ck_assert_int_eq(store_writer_begin(b, "same", NULL, 10, "b", 1, &wb), 0);
	for (uint64_t p = 0; p < 10; p++) {
		ck_assert_int_eq(store_writer_add(wa, p, store_pages_make(p, 1, store_pages_kind(p))), 0);
		ck_assert_int_eq(store_writer_add(wb, p, store_pages_make(p, 2, store_pages_kind(p))), 0);
	}
	ck_assert_int_eq(store_writer_commit(wa), 0);
	ck_assert_int_eq(store_writer_commit(wb), -EEXIST);
	ck_assert_ptr_nonnull(strstr(error_message(), "exists already"));
	struct store_snapshot *snap;
	ck_assert_int_eq(store_snapshot_open(b, "same", &snap), 0);
	size_t len;
	ck_assert_mem_eq(store_snapshot_state(snap, &len), "a", 1);
	for (uint64_t p = 0; p < 10; p++)
		store_pages_expect(snap, p, 1);
	store_snapshot_close(snap);
	store_close(a);
	store_close(b);
	struct store_lines l;
	ck_assert_int_eq(verify(&l), 0);
}
END_TEST

/* A handle that keeps its index (a VM snapshotting into one store again and again) still
 * shares what other handles stored meanwhile, and its own pages. */
START_TEST(a_kept_index_shares_what_other_writers_stored_meanwhile)
{
	struct store *s, *other;
	ck_assert_int_eq(store_open(dir, true, &s), 0);
	store_keep_index(s);
	store_pages_write(s, "a", NULL, 300, 1, 0, 1, NULL);
	ck_assert_int_eq(store_open(dir, false, &other), 0);
	store_pages_write(other, "b", NULL, 300, 2, 0, 1, NULL);
	store_close(other);
	struct store_write_stats st;
	store_pages_write(s, "c", NULL, 300, 2, 0, 1, &st);
	ck_assert_uint_eq(st.stored, 0);
	ck_assert_uint_eq(st.shared, 200);
	store_pages_write(s, "d", NULL, 300, 1, 0, 1, &st);
	ck_assert_uint_eq(st.stored, 0);
	store_close(s);
	struct store_lines l;
	ck_assert_int_eq(verify(&l), 0);
}
END_TEST

/* After another handle's gc, a kept index is read again: pages the gc removed are stored
 * anew, never shared, even where a pack of the same number came back meanwhile. */
START_TEST(a_kept_index_starts_over_after_a_gc)
{
	struct store *s, *other;
	ck_assert_int_eq(store_open(dir, true, &s), 0);
	store_keep_index(s);
	store_pages_write(s, "a", NULL, 300, 1, 0, 1, NULL);
	for (int again = 0; again < 2; again++) {
		ck_assert_int_eq(store_open(dir, false, &other), 0);
		ck_assert_int_eq(store_delete(other, "a"), 0);
		uint64_t freed;
		ck_assert_int_eq(store_gc(other, &freed), 0);
		ck_assert_uint_eq(freed, 104 * STORE_PAGE);
		if (again) /* pack 1 is made again, with other bytes */
			store_pages_write(other, "z", NULL, 300, 9, 0, 1, NULL);
		store_close(other);
		struct store_write_stats st;
		store_pages_write(s, "a", NULL, 300, 1, 0, 1, &st);
		ck_assert_uint_eq(st.stored, again ? 100 : 104);
		struct store_snapshot *snap;
		ck_assert_int_eq(store_snapshot_open(s, "a", &snap), 0);
		for (uint64_t p = 0; p < 300; p++)
			store_pages_expect(snap, p, 1);
		store_snapshot_close(snap);
		if (again)
			ck_assert_int_eq(store_delete(s, "z"), 0);
	}
	store_close(s);
	struct store_lines l;
	ck_assert_int_eq(verify(&l), 0);
}
END_TEST

static void list_fn(void *arg, const struct store_info *info)
{
	struct store_info *out = arg;
	for (int i = 0; i < 4; i++)
		if (!out[i].name[0]) {
			out[i] = *info;
			return;
		}
}

START_TEST(list_names_parents_sizes)
{
	struct store *s;
	ck_assert_int_eq(store_open(dir, true, &s), 0);
	store_pages_write(s, "a", NULL, 300, 1, 0, 1, NULL);
	store_pages_write(s, "b", NULL, 300, 2, 0, 1, NULL);
	store_pages_write(s, "c", "b", 300, 3, 2, 30, NULL);
	struct store_info info[4];
	memset(info, 0, sizeof(info));
	ck_assert_int_eq(store_list(s, list_fn, info), 0);
	ck_assert_str_eq(info[0].name, "a");
	ck_assert_str_eq(info[2].name, "c");
	ck_assert_str_eq(info[2].parent, "b");
	ck_assert_uint_eq(info[0].size, 300 * STORE_PAGE);
	/* a and b share the 4 pattern pages and have 100 unique pages each; c has 10 new ones. */
	ck_assert_uint_eq(info[0].unique_bytes, 100 * STORE_PAGE);
	ck_assert_uint_eq(info[0].shared_bytes, 4 * STORE_PAGE);
	ck_assert_uint_eq(info[1].unique_bytes, 100 * STORE_PAGE);
	ck_assert_uint_eq(info[2].unique_bytes, 10 * STORE_PAGE);
	ck_assert_uint_eq(info[2].entries, 10);
	store_close(s);
}
END_TEST

/* Snapshot @name (parent @parent) of 8 pages of generation @gen, described. */
static void write_described(struct store *s, const char *name, const char *parent, uint64_t gen, const char *source,
			    const char *description)
{
	struct store_writer *w;
	ck_assert_msg(store_writer_begin(s, name, parent, 8, "state", 5, &w) == 0, "%s", error_message());
	ck_assert_msg(store_writer_describe(w, source, description) == 0, "%s", error_message());
	for (uint64_t p = 0; p < 8; p++)
		ck_assert_int_eq(store_writer_add(w, p, store_pages_make(p, gen, 1)), 0);
	ck_assert_msg(store_writer_commit(w) == 0, "%s", error_message());
}

/* A snapshot keeps the VM it was taken of and its taker's words, also when a deleted
 * parent is folded into it. */
START_TEST(a_snapshot_keeps_its_source_and_description)
{
	struct store *s;
	ck_assert_int_eq(store_open(dir, true, &s), 0);
	write_described(s, "a", NULL, 1, "web", "");
	write_described(s, "b", "a", 2, "web", "before the upgrade");
	write_described(s, "c", "b", 3, "web.2", "after it: caf\xc3\xa9 works");
	ck_assert_int_eq(store_delete(s, "b"), 0);
	struct store_info info[4];
	memset(info, 0, sizeof(info));
	ck_assert_int_eq(store_list(s, list_fn, info), 0);
	ck_assert_str_eq(info[0].name, "a");
	ck_assert_str_eq(info[0].source, "web");
	ck_assert_str_eq(info[0].description, "");
	ck_assert_str_eq(info[1].name, "c");
	ck_assert_str_eq(info[1].parent, "a");
	ck_assert_str_eq(info[1].source, "web.2");
	ck_assert_str_eq(info[1].description, "after it: caf\xc3\xa9 works");
	store_close(s);
}
END_TEST

/* What a snapshot may be called: text without control characters, within its bounds. */
START_TEST(a_description_that_is_no_text_is_refused)
{
	struct store *s;
	ck_assert_int_eq(store_open(dir, true, &s), 0);
	struct store_writer *w;
	ck_assert_int_eq(store_writer_begin(s, "x", NULL, 8, "state", 5, &w), 0);
	char long_text[300];
	memset(long_text, 'a', sizeof(long_text) - 1);
	long_text[sizeof(long_text) - 1] = '\0';
	ck_assert_int_eq(store_writer_describe(w, "web", "two\nlines"), -EINVAL);
	ck_assert_ptr_nonnull(strstr(error_message(), "description is at most 255 bytes, none a control character"));
	ck_assert_int_eq(store_writer_describe(w, "web", long_text), -EINVAL);
	ck_assert_int_eq(store_writer_describe(w, "a\tb", ""), -EINVAL);
	ck_assert_ptr_nonnull(strstr(error_message(), "source VM is at most 79 characters"));
	store_writer_abort(w);
	/* A manifest whose description holds one (written by something else) is malformed. */
	write_described(s, "d", NULL, 1, "web", "fine");
	store_close(s);
	size_t len;
	uint8_t *m = slurp("snapshots/d.snap", &len);
	m[MANIFEST_HEADER_V2 + 80 + 1] = '\x1b';
	ck_assert_int_eq(store_manifest_seal(m, len), 0);
	spill("snapshots/d.snap", m, len);
	free(m);
	ck_assert_int_eq(store_open_read(dir, &s), 0);
	struct store_snapshot *snap;
	ck_assert_int_eq(store_snapshot_open(s, "d", &snap), -EIO);
	ck_assert_ptr_nonnull(strstr(error_message(), "d.snap: malformed snapshot source or description"));
	store_close(s);
}
END_TEST

/* Stores written before snapshots had a source (manifest version 2) are read as they were:
 * pages, lineage, verify, a child written on top; source and description empty. */
START_TEST(version_2_manifests_are_still_read)
{
	struct store *s;
	ck_assert_int_eq(store_open(dir, true, &s), 0);
	store_pages_write(s, "old", NULL, 300, 1, 0, 1, NULL);
	store_close(s);
	size_t len;
	uint8_t *m = slurp("snapshots/old.snap", &len);
	uint8_t *v2 = malloc(len);
	ck_assert_ptr_nonnull(v2);
	memcpy(v2, m, MANIFEST_HEADER_V2);
	memcpy(v2 + MANIFEST_HEADER_V2, m + MANIFEST_HEADER, len - MANIFEST_HEADER);
	uint32_t version = 2, header_size = MANIFEST_HEADER_V2;
	memcpy(v2 + 8, &version, 4);
	memcpy(v2 + 12, &header_size, 4);
	size_t v2_len = len - (MANIFEST_HEADER - MANIFEST_HEADER_V2);
	ck_assert_int_eq(store_manifest_seal(v2, v2_len), 0);
	spill("snapshots/old.snap", v2, v2_len);
	free(m);
	free(v2);
	struct store_lines l;
	ck_assert_msg(verify(&l) == 0, "%s", l.text);
	ck_assert_int_eq(store_open(dir, true, &s), 0);
	struct store_snapshot *snap;
	ck_assert_msg(store_snapshot_open(s, "old", &snap) == 0, "%s", error_message());
	for (uint64_t p = 0; p < 300; p += 7)
		store_pages_expect(snap, p, 1);
	store_snapshot_close(snap);
	store_pages_write(s, "new", "old", 300, 2, 0, 10, NULL);
	ck_assert_msg(store_snapshot_open(s, "new", &snap) == 0, "%s", error_message());
	store_pages_expect(snap, 1, 1);
	store_pages_expect(snap, 10, 2);
	store_snapshot_close(snap);
	struct store_info info[4];
	memset(info, 0, sizeof(info));
	ck_assert_int_eq(store_list(s, list_fn, info), 0);
	ck_assert_str_eq(info[1].name, "old");
	ck_assert_str_eq(info[1].source, "");
	ck_assert_str_eq(info[1].description, "");
	store_close(s);
}
END_TEST

/* Replace (or add) @rel in the store by a FIFO nobody writes to. */
static void make_fifo(const char *rel)
{
	char path[256];
	snprintf(path, sizeof(path), "%s/%s", dir, rel);
	unlink(path);
	ck_assert_int_eq(mkfifo(path, 0644), 0);
}

/* A FIFO where a store file belongs (left by accident, or planted): every reader refuses
 * it with a line naming it and none waits on it (a plain open of a FIFO blocks for ever). */
START_TEST(fifos_in_a_store_are_refused_not_waited_on)
{
	const char *places[] = {"lock", "packs/00000001.pack", "snapshots/base.snap", "snapshots/zz.snap"};
	alarm(60); /* a hang fails the test instead of stalling the run */
	for (size_t i = 0; i < sizeof(places) / sizeof(places[0]); i++) {
		char cmd[128];
		snprintf(cmd, sizeof(cmd), "rm -rf %s/*", dir);
		ck_assert_int_eq(system(cmd), 0);
		struct store *s;
		ck_assert_int_eq(store_open(dir, true, &s), 0);
		store_pages_write(s, "base", NULL, 30, 1, 0, 1, NULL);
		store_close(s);
		make_fifo(places[i]);
		char needle[128];
		snprintf(needle, sizeof(needle), "%s is not a regular file", places[i]);
		error_clear();
		if (i == 0) {
			ck_assert_int_eq(store_open(dir, false, &s), -EINVAL);
			ck_assert_msg(strstr(error_message(), needle), "%s", error_message());
			ck_assert_int_eq(store_open_read(dir, &s), -EINVAL);
			ck_assert_msg(strstr(error_message(), needle), "%s", error_message());
			continue;
		}
		struct store_lines l;
		ck_assert_int_ge(verify(&l), 1);
		ck_assert_msg(strstr(l.text, needle), "%s", l.text);
		ck_assert_int_eq(store_open_read(dir, &s), 0);
		struct store_snapshot *snap;
		int r = store_snapshot_open(s, "base", &snap);
		if (i == 3) { /* a stray one harms no other snapshot, but a listing names it */
			ck_assert_msg(r == 0, "%s", error_message());
			store_snapshot_close(snap);
			struct store_info info[4];
			memset(info, 0, sizeof(info));
			ck_assert_int_eq(store_list(s, list_fn, info), -EINVAL);
		} else {
			ck_assert_int_eq(r, -EINVAL);
		}
		ck_assert_msg(strstr(error_message(), needle), "%s", error_message());
		ck_assert_msg(!strchr(error_message(), '\n'), "%s", error_message());
		store_close(s);
	}
	alarm(0);
}
END_TEST

/* The same through the command line, as users meet it: one line, status 125, no hang. */
START_TEST(store_commands_refuse_a_fifo_lock)
{
	struct store *s;
	ck_assert_int_eq(store_open(dir, true, &s), 0);
	store_close(s);
	make_fifo("lock");
	const char *verbs[] = {"ls", "verify", "gc"};
	for (size_t i = 0; i < 3; i++) {
		struct spawn_result r;
		ck_assert_int_eq(spawn_vmm(&r, 20, "store", verbs[i], dir, NULL), 0);
		ck_assert_msg(!r.timed_out && r.status == 125, "store %s: status %d: %s", verbs[i], r.status, r.err);
		ck_assert_msg(strstr(r.err, "lock is not a regular file\n") && strchr(r.err, '\n') == r.err + strlen(r.err) - 1,
			      "%s", r.err);
		spawn_free(&r);
	}
}
END_TEST

/* vmm store verify's summary counts in words: "1 snapshot", "2 snapshots". */
START_TEST(store_verify_summary_says_1_snapshot_not_1_snapshots)
{
	struct store *s;
	ck_assert_int_eq(store_open(dir, true, &s), 0);
	store_pages_write(s, "base", NULL, 30, 1, 0, 1, NULL);
	struct spawn_result r;
	ck_assert_int_eq(spawn_vmm(&r, 20, "store", "verify", dir, NULL), 0);
	ck_assert_msg(r.status == 0, "status %d: %s", r.status, r.err);
	ck_assert_msg(strstr(r.out, ": 1 snapshot, 20 pages checked, 1 pack, 0 leftovers: valid\n"), "%s", r.out);
	spawn_free(&r);
	store_pages_write(s, "other", NULL, 30, 2, 0, 1, NULL);
	store_close(s);
	ck_assert_int_eq(spawn_vmm(&r, 20, "store", "verify", dir, NULL), 0);
	ck_assert_msg(strstr(r.out, ": 2 snapshots, 40 pages checked, 2 packs, 0 leftovers: valid\n"), "%s", r.out);
	spawn_free(&r);
}
END_TEST

/* vmm store rm DIR a b c: each one refused is named on a line of its own, the others
 * are deleted, and the status says that not all went. In the order given, a middle
 * snapshot then its child: the grandchild takes both in and reads the same. Without
 * SNAPSHOT: says so. */
START_TEST(store_rm_deletes_several_and_names_each_refused)
{
	struct store *s;
	ck_assert_int_eq(store_open(dir, true, &s), 0);
	store_pages_write(s, "a", NULL, 30, 1, 0, 1, NULL);
	store_pages_write(s, "p", NULL, 30, 2, 0, 1, NULL);
	store_pages_write(s, "d", NULL, 30, 4, 0, 1, NULL);
	struct store_snapshot *pinned;
	ck_assert_int_eq(store_snapshot_open_pinned(s, "p", "VM 'keep' (pid 7)", &pinned), 0);
	struct spawn_result r;
	ck_assert_int_eq(spawn_vmm(&r, 20, "store", "rm", dir, "a", "nosuch", "p", "d", NULL), 0);
	ck_assert_int_eq(r.status, 125);
	char want[512];
	snprintf(want, sizeof(want),
		 "vmm store rm: no snapshot 'nosuch' in %s\n"
		 "vmm store rm: snapshot 'p' is in use by VM 'keep' (pid 7), which runs from it; stop that VM (and its "
		 "forks) first\n", dir);
	ck_assert_str_eq(r.err, want);
	ck_assert_str_eq(r.out, "");
	spawn_free(&r);
	store_snapshot_close(pinned);
	ck_assert(!store_has_snapshot(s, "a"));
	ck_assert(!store_has_snapshot(s, "d"));
	ck_assert(store_has_snapshot(s, "p"));
	/* p <- m1 <- m2 <- m3: each rewrites the unique pages of a third, a sixth, a ninth. */
	store_pages_write(s, "m1", "p", 30, 3, 2, 3, NULL);
	store_pages_write(s, "m2", "m1", 30, 5, 2, 6, NULL);
	store_pages_write(s, "m3", "m2", 30, 6, 2, 9, NULL);
	ck_assert_int_eq(spawn_vmm(&r, 20, "store", "rm", "--store", dir, "m1", "m2", NULL), 0);
	ck_assert_msg(r.status == 0 && !*r.err, "status %d: %s", r.status, r.err);
	spawn_free(&r);
	ck_assert(!store_has_snapshot(s, "m1") && !store_has_snapshot(s, "m2"));
	struct store_snapshot *snap;
	ck_assert_msg(store_snapshot_open(s, "m3", &snap) == 0, "%s", error_message());
	ck_assert_str_eq(store_snapshot_parent(snap), "p");
	for (uint64_t p = 0; p < 30; p++)
		store_pages_expect(snap, p, p % 9 == 2 ? 6 : p % 6 == 2 ? 5 : p % 3 == 2 ? 3 : 2);
	store_snapshot_close(snap);
	/* A parent, then its child. */
	ck_assert_int_eq(spawn_vmm(&r, 20, "store", "rm", "--store", dir, "p", "m3", NULL), 0);
	ck_assert_msg(r.status == 0 && !*r.err, "status %d: %s", r.status, r.err);
	spawn_free(&r);
	ck_assert(!store_has_snapshot(s, "p") && !store_has_snapshot(s, "m3"));
	store_close(s);
	/* The store given, no SNAPSHOT: said as such, whichever way the store was given. */
	char *const cases[][4] = {{"rm", dir, NULL}, {"rm", "--store", dir, NULL}};
	for (size_t i = 0; i < 2; i++) {
		ck_assert_int_eq(spawn_vmm(&r, 20, "store", cases[i][0], cases[i][1], cases[i][2], NULL), 0);
		ck_assert_msg(r.status == 125 && strcmp(r.err, "vmm store rm: no SNAPSHOT given (usage: vmm store rm [DIR] "
							       "SNAPSHOT...)\n") == 0, "%s", r.err);
		spawn_free(&r);
	}
	ck_assert_int_eq(spawn_vmm(&r, 20, "store", "verify", dir, "extra", NULL), 0);
	ck_assert_msg(r.status == 125 && strstr(r.err, "vmm store verify: too many arguments"), "%s", r.err);
	spawn_free(&r);
}
END_TEST

/* vmm store VERB --json ... : its status, and stdout parsed as one JSON value (decref it). */
static json_t *store_json(int *status, const char *verb, const char *arg1, const char *arg2)
{
	struct spawn_result r;
	ck_assert_int_eq(spawn_vmm(&r, 20, "store", verb, "--json", dir, arg1, arg2, NULL), 0);
	json_error_t e;
	json_t *v = json_loads(r.out, 0, &e);
	ck_assert_msg(v, "store %s --json printed no JSON: '%s' (%s); stderr: %s", verb, r.out, e.text, r.err);
	*status = r.status;
	spawn_free(&r);
	return v;
}

/* --json is honoured by every store verb: verify and gc printed text with it. */
START_TEST(store_verify_gc_and_rm_print_json)
{
	struct store *s;
	ck_assert_int_eq(store_open(dir, true, &s), 0);
	store_pages_write(s, "base", NULL, 30, 1, 0, 1, NULL);
	store_pages_write(s, "gone", NULL, 30, 2, 0, 1, NULL);
	store_close(s);
	int status;
	json_t *v = store_json(&status, "verify", NULL, NULL);
	ck_assert_int_eq(status, 0);
	ck_assert_int_eq(json_integer_value(json_object_get(v, "snapshots")), 2);
	ck_assert_int_eq(json_integer_value(json_object_get(v, "pages_checked")), 40);
	ck_assert_int_eq(json_integer_value(json_object_get(v, "packs")), 2);
	ck_assert_int_eq(json_integer_value(json_object_get(v, "leftovers")), 0);
	ck_assert_int_eq(json_array_size(json_object_get(v, "problems")), 0);
	ck_assert(json_is_true(json_object_get(v, "valid")));
	json_decref(v);

	v = store_json(&status, "rm", "gone", "nosuch");
	ck_assert_int_eq(status, 125);
	char want[256];
	snprintf(want, sizeof(want), "{\"deleted\": [\"gone\"], \"refused\": [{\"error\": \"no snapshot 'nosuch' in %s\", "
				     "\"name\": \"nosuch\"}]}", dir);
	char *text = json_dumps(v, JSON_SORT_KEYS);
	ck_assert_str_eq(text, want);
	free(text);
	json_decref(v);

	/* The pack of "gone" is a leftover now (a note); a damaged page of "base" is damage. */
	corrupt("packs/00000001.pack", 3 * STORE_PAGE + 100, 0x01);
	v = store_json(&status, "verify", NULL, NULL);
	ck_assert_int_eq(status, 1);
	ck_assert(json_is_false(json_object_get(v, "valid")));
	ck_assert_int_eq(json_integer_value(json_object_get(v, "leftovers")), 1);
	json_t *problems = json_object_get(v, "problems"), *p;
	size_t i, damage = 0, notes = 0;
	json_array_foreach(problems, i, p) {
		ck_assert(json_is_string(json_object_get(p, "line")));
		if (json_is_true(json_object_get(p, "damage"))) {
			damage++;
			ck_assert_ptr_nonnull(strstr(json_string_value(json_object_get(p, "line")), "slot 3"));
		} else {
			notes++;
			ck_assert(json_is_false(json_object_get(p, "damage")));
		}
	}
	ck_assert_uint_ge(damage, 1);
	ck_assert_uint_eq(notes, 1);
	json_decref(v);

	corrupt("packs/00000001.pack", 3 * STORE_PAGE + 100, 0x01); /* mended */
	v = store_json(&status, "gc", NULL, NULL);
	ck_assert_int_eq(status, 0);
	ck_assert_int_eq(json_object_size(v), 1);
	ck_assert_int_eq(json_integer_value(json_object_get(v, "freed_bytes")), 10 * STORE_PAGE); /* its 10 unique pages */
	json_decref(v);
}
END_TEST

/* vmm store ls --tree draws the lineage, roots first, each level in creation order (not
 * by name):  base <- c,  base <- a <- b,  base <- after,  the root "other",  and
 * x0 <- ... <- x6 <- (x7, deleted) <- x8: x8 was written complete (its parent was 8 deep), so
 * x7 could be deleted and x8 is a root naming it. */
START_TEST(store_ls_tree_draws_the_lineage)
{
	struct store *s;
	ck_assert_int_eq(store_open(dir, true, &s), 0);
	store_pages_write(s, "base", NULL, 30, 1, 0, 1, NULL);
	store_pages_write(s, "c", "base", 30, 2, 2, 3, NULL);
	store_pages_write(s, "a", "base", 30, 3, 2, 3, NULL);
	store_pages_write(s, "b", "a", 30, 4, 2, 5, NULL);
	store_pages_write(s, "other", NULL, 30, 5, 0, 1, NULL);
	store_pages_write(s, "after", "base", 30, 6, 2, 3, NULL);
	for (int i = 0; i <= 8; i++) {
		char name[8], parent[8];
		snprintf(name, sizeof(name), "x%d", i);
		snprintf(parent, sizeof(parent), "x%d", i - 1);
		store_pages_write(s, name, i ? parent : NULL, 30, 10 + (uint64_t)i, i ? 2 : 0, i ? 3 : 1, NULL);
	}
	ck_assert_msg(store_delete(s, "x7") == 0, "%s", error_message());
	store_close(s);
	static const char golden[] = "base\n"
				     "├─ c\n"
				     "├─ a\n"
				     "│  └─ b\n"
				     "└─ after\n"
				     "other\n"
				     "x0\n"
				     "└─ x1\n"
				     "   └─ x2\n"
				     "      └─ x3\n"
				     "         └─ x4\n"
				     "            └─ x5\n"
				     "               └─ x6\n"
				     "x8 (parent x7, deleted)\n";
	struct spawn_result r;
	ck_assert_int_eq(spawn_vmm(&r, 20, "store", "ls", "--tree", dir, NULL), 0);
	ck_assert_msg(r.status == 0, "status %d: %s", r.status, r.err);
	ck_assert_str_eq(r.out, golden);
	spawn_free(&r);
	ck_assert_int_eq(spawn_vmm(&r, 20, "store", "ls", "--tree", "--json", dir, NULL), 0);
	ck_assert_int_eq(r.status, 125);
	ck_assert_str_eq(r.err, "vmm store ls: --tree draws text (with --json, each snapshot names its parent)\n");
	spawn_free(&r);
	ck_assert_int_eq(spawn_vmm(&r, 20, "store", "verify", "--tree", dir, NULL), 0);
	ck_assert_int_eq(r.status, 125);
	ck_assert_str_eq(r.err, "vmm store verify: --tree is for vmm store ls only\n");
	spawn_free(&r);
}
END_TEST

/* vmm store ls shows each snapshot's source VM and description: a column each, two keys
 * of --json, and the description in quotes on the tree. */
START_TEST(store_ls_shows_source_and_description)
{
	struct store *s;
	ck_assert_int_eq(store_open(dir, true, &s), 0);
	write_described(s, "base", NULL, 1, "web", "clean install");
	write_described(s, "next", "base", 2, "web.1", "");
	store_close(s);
	struct spawn_result r;
	ck_assert_int_eq(spawn_vmm(&r, 20, "store", "ls", dir, NULL), 0);
	ck_assert_msg(r.status == 0, "status %d: %s", r.status, r.err);
	ck_assert_msg(strncmp(r.out, "NAME                     PARENT                   SOURCE           ", 67) == 0 &&
			      strstr(r.out, "  CREATED (UTC)        DESCRIPTION\n"),
		      "%s", r.out);
	ck_assert_msg(strstr(r.out, "\nbase                     -                        web              ") &&
			      strstr(r.out, "  clean install\n"),
		      "%s", r.out);
	ck_assert_msg(strstr(r.out, "\nnext                     base                     web.1            "), "%s", r.out);
	spawn_free(&r);
	ck_assert_int_eq(spawn_vmm(&r, 20, "store", "ls", "--json", dir, NULL), 0);
	ck_assert_msg(strstr(r.out, "\"name\":\"base\",\"parent\":\"\",\"source\":\"web\",\"description\":\"clean install\""),
		      "%s", r.out);
	spawn_free(&r);
	ck_assert_int_eq(spawn_vmm(&r, 20, "store", "ls", "--tree", dir, NULL), 0);
	ck_assert_str_eq(r.out, "base  \"clean install\"\n└─ next\n");
	spawn_free(&r);
}
END_TEST

/* Pins in the store's pins folder, stale or live. */
static unsigned count_pins(void)
{
	char cmd[160];
	snprintf(cmd, sizeof(cmd), "exit $(ls %s/pins | wc -l)", dir);
	int st = system(cmd);
	return WIFEXITED(st) ? (unsigned)WEXITSTATUS(st) : 999;
}

START_TEST(a_snapshot_a_live_vm_was_restored_from_is_not_deleted)
{
	struct store *s, *r;
	ck_assert_int_eq(store_open(dir, true, &s), 0);
	store_pages_write(s, "base", NULL, 30, 1, 0, 1, NULL);
	store_pages_write(s, "other", NULL, 30, 2, 0, 1, NULL);
	ck_assert_int_eq(store_open_read(dir, &r), 0);
	struct store_snapshot *snap;
	ck_assert_int_eq(store_snapshot_open_pinned(r, "base", "VM 'r' (pid 1)", &snap), 0);
	ck_assert_int_eq(store_delete(s, "base"), -EBUSY);
	ck_assert_str_eq(error_message(), "snapshot 'base' is in use by VM 'r' (pid 1), which runs from it; stop that VM "
					  "(and its forks) first");
	ck_assert_int_eq(store_delete(s, "other"), 0); /* a pin holds one snapshot only */
	uint64_t freed;
	ck_assert_int_eq(store_gc(s, &freed), 0); /* gc keeps a live pin */
	ck_assert_uint_eq(count_pins(), 1);
	ck_assert_int_eq(store_delete(s, "base"), -EBUSY);
	store_pages_expect(snap, 7, 1);
	store_snapshot_close(snap);
	/* The VM is gone: its pin is stale, and the delete sweeps it. */
	ck_assert_msg(store_delete(s, "base") == 0, "%s", error_message());
	ck_assert_uint_eq(count_pins(), 0);
	store_close(r);
	store_close(s);
}
END_TEST

/* A pin goes with the last process holding it: a forked child VM keeps its parent's pin,
 * and kill -9 of them all releases it. */
START_TEST(pins_live_as_long_as_the_vm_and_its_forks)
{
	struct store *s;
	ck_assert_int_eq(store_open(dir, true, &s), 0);
	store_pages_write(s, "base", NULL, 30, 1, 0, 1, NULL);
	int fds[2];
	ck_assert_int_eq(pipe(fds), 0);
	pid_t vm = fork();
	ck_assert_int_ge(vm, 0);
	if (vm == 0) {
		struct store *r;
		struct store_snapshot *snap;
		if (store_open_read(dir, &r) != 0 || store_snapshot_open_pinned(r, "base", "VM 'v'", &snap) != 0)
			_exit(1);
		pid_t child = fork(); /* the fork child shares the pin's descriptor */
		if (child == 0) {
			pause();
			_exit(0);
		}
		if (write(fds[1], &child, sizeof(child)) != sizeof(child))
			_exit(1);
		int st;
		waitpid(child, &st, 0);
		_exit(0);
	}
	pid_t child;
	ck_assert_int_eq(read(fds[0], &child, sizeof(child)), sizeof(child));
	kill(vm, SIGKILL);
	/* The VM's process is gone; its fork child still holds the pin. */
	ck_assert_int_eq(store_delete(s, "base"), -EBUSY);
	ck_assert_msg(strstr(error_message(), "in use by VM 'v'"), "%s", error_message());
	kill(child, SIGKILL);
	int st;
	ck_assert_int_eq(waitpid(vm, &st, 0), vm);
	/* The child was re-parented to init: wait until its descriptors are gone. */
	char proc[64];
	snprintf(proc, sizeof(proc), "/proc/%d/fd", (int)child);
	while (access(proc, F_OK) == 0)
		usleep(1000);
	ck_assert_msg(store_delete(s, "base") == 0, "%s", error_message());
	store_close(s);
	close(fds[0]);
	close(fds[1]);
}
END_TEST

/* gc @s and close it: the store then verifies, with no leftover to note. */
static void gc_close_and_verify(struct store *s)
{
	uint64_t freed;
	ck_assert_msg(store_gc(s, &freed) == 0, "%s", error_message());
	store_close(s);
	struct store_lines l;
	ck_assert_int_eq(verify(&l), 0);
	ck_assert_msg(l.notes == 0, "%s", l.text);
}

/*
 * kill -9 a writer at random moments: every snapshot that was committed stays readable
 * with the right bytes, and verify finds no damage.
 */
START_TEST(kill_9_at_any_moment_leaves_the_store_valid)
{
	unsigned seed = (unsigned)time(NULL);
	srand(seed);
	unsigned committed_total = 0;
	/* Made here: a writer killed within its first millisecond may not have made its folders
	 * yet, and then there is no store to verify (verify failed now and then so). */
	struct store *made;
	ck_assert_int_eq(store_open(dir, true, &made), 0);
	store_close(made);
	for (int round = 0; round < 12; round++) {
		int pfd[2];
		ck_assert_int_eq(pipe(pfd), 0);
		pid_t pid = fork();
		if (pid == 0) {
			close(pfd[0]);
			struct store *s;
			if (store_open(dir, true, &s) != 0)
				_exit(1);
			for (int k = 0;; k++) {
				char name[32];
				snprintf(name, sizeof(name), "r%02d-%03d", round, k);
				if (store_pages_try_write(s, name, NULL, 400, (uint64_t)(round * 1000 + k), 0, 1, NULL) != 0 ||
				    write(pfd[1], "c", 1) != 1)
					_exit(1);
			}
		}
		close(pfd[1]);
		struct timespec t = {0, (long)(rand() % 40) * 1000000L};
		nanosleep(&t, NULL);
		kill(pid, SIGKILL);
		int st;
		waitpid(pid, &st, 0);
		char c;
		while (read(pfd[0], &c, 1) == 1)
			committed_total++;
		close(pfd[0]);
		struct store_lines l;
		long problems = verify(&l);
		ck_assert_msg(problems == 0, "seed %u round %d: %s", seed, round, l.text);
	}
	/* Every committed snapshot reads back exactly. */
	struct store *s;
	ck_assert_int_eq(store_open(dir, false, &s), 0);
	unsigned checked = 0;
	for (int round = 0; round < 12; round++) {
		for (int k = 0;; k++) {
			char name[32];
			snprintf(name, sizeof(name), "r%02d-%03d", round, k);
			struct store_snapshot *snap;
			if (store_snapshot_open(s, name, &snap) != 0)
				break;
			for (uint64_t p = 0; p < 400; p++)
				store_pages_expect(snap, p, (uint64_t)(round * 1000 + k));
			store_snapshot_close(snap);
			checked++;
		}
	}
	ck_assert_uint_ge(checked, committed_total);
	gc_close_and_verify(s);
}
END_TEST

/* ---- deleting a snapshot other snapshots name as parent ------------------------------- */

#define MODEL_PAGES 1200 /* entries in more than two chunks of 512 */
#define MODEL_MAX 12

/*
 * Snapshots as model_add wrote them and what each reads: page p of snapshot i is zero
 * where gen[i][p] is 0, else store_pages_make(p, gen[i][p], 2). A delete (model_delete) changes
 * no row: that is the invariant the tests check. parent[i]: the snapshot it names now (-1
 * none; for a complete one, for the record only); complete[i]: it lists every page itself.
 */
struct model {
	unsigned n;
	char name[MODEL_MAX][32];
	int parent[MODEL_MAX];
	bool complete[MODEL_MAX], alive[MODEL_MAX];
	uint8_t gen[MODEL_MAX][MODEL_PAGES];
};

/* Manifests a page of snapshot @i is looked up through. */
static unsigned model_depth(const struct model *m, unsigned i)
{
	return m->complete[i] || m->parent[i] < 0 ? 1 : 1 + model_depth(m, (unsigned)m->parent[i]);
}

/* What snapshot @i writes at page @p: -1 nothing, 0 a zero page, else its own bytes. A root
 * writes every page, a third of them zero; a delta overwrites some pages, zeroes some (over
 * its parent's bytes or zero) and gives bytes to some the root left zero. */
static int model_write_of(unsigned i, bool root, uint64_t p)
{
	uint64_t q = p + 7 * i;
	if (root)
		return p % 3 ? (int)i + 1 : 0;
	if (q % 5 == 0)
		return (int)i + 1;
	if (q % 7 == 0)
		return 0;
	return p % 3 == 0 && q % 4 == 1 ? (int)i + 1 : -1;
}

/* Add snapshot @name, child of snapshot @parent (-1: none), to @m and, with @s, write it
 * there. Its index. */
static unsigned model_add(struct model *m, struct store *s, const char *name, int parent)
{
	static const uint8_t zero[STORE_PAGE];
	unsigned i = m->n++;
	snprintf(m->name[i], sizeof(m->name[i]), "%s", name);
	m->parent[i] = parent;
	m->alive[i] = true;
	/* The writer writes a snapshot complete when its parent is read through 8 manifests. */
	m->complete[i] = parent >= 0 && model_depth(m, (unsigned)parent) >= 8;
	struct store_writer *w = NULL;
	const char state[] = "vcpu state";
	if (s)
		ck_assert_msg(store_writer_begin(s, name, parent >= 0 ? m->name[parent] : NULL, MODEL_PAGES, state,
						 sizeof(state), &w) == 0, "%s", error_message());
	for (uint64_t p = 0; p < MODEL_PAGES; p++) {
		int g = model_write_of(i, parent < 0, p);
		m->gen[i][p] = g >= 0 ? (uint8_t)g : m->gen[parent][p];
		if (w && g >= 0)
			ck_assert_msg(store_writer_add(w, p, g ? store_pages_make(p, (uint64_t)g, 2) : zero) == 0, "%s",
				      error_message());
	}
	if (w)
		ck_assert_msg(store_writer_commit(w) == 0, "%s", error_message());
	return i;
}

/* Snapshot @i deleted: its delta children now name its parent, and are complete if it was. */
static void model_delete(struct model *m, unsigned i)
{
	m->alive[i] = false;
	for (unsigned j = 0; j < m->n; j++) {
		if (m->parent[j] != (int)i || m->complete[j])
			continue;
		m->parent[j] = m->parent[i];
		m->complete[j] = m->complete[i];
	}
}


/* Every page of @snap as row @i of @m has it. 0, or -1 with error_message() naming the
 * first page that differs. */
static int model_try_expect_pages(const struct store_snapshot *snap, const struct model *m, unsigned i)
{
	for (uint64_t p = 0; p < MODEL_PAGES; p++) {
		const void *data;
		uint64_t hash;
		if (store_snapshot_page(snap, p, &data, &hash) != 0)
			return -1;
		uint8_t g = m->gen[i][p];
		if (g ? !data || memcmp(data, store_pages_make(p, g, 2), STORE_PAGE) != 0 : data != NULL) {
			error_set(EIO, "%s: page %llu does not read generation %u", m->name[i], (unsigned long long)p, g);
			return -1;
		}
	}
	return 0;
}

static void model_expect_pages(const struct store_snapshot *snap, const struct model *m, unsigned i)
{
	ck_assert_msg(model_try_expect_pages(snap, m, i) == 0, "%s", error_message());
}

/* Every snapshot of @m still there reads its row, names its parent and reads through as
 * many manifests as the model says; the deleted ones are gone; verify finds nothing. */
static void model_expect(const struct model *m, struct store *s)
{
	for (unsigned i = 0; i < m->n; i++) {
		ck_assert_msg(store_has_snapshot(s, m->name[i]) == m->alive[i], "%s", m->name[i]);
		if (!m->alive[i])
			continue;
		struct store_snapshot *snap;
		ck_assert_msg(store_snapshot_open(s, m->name[i], &snap) == 0, "%s", error_message());
		model_expect_pages(snap, m, i);
		ck_assert_str_eq(store_snapshot_parent(snap), m->parent[i] >= 0 ? m->name[m->parent[i]] : "");
		ck_assert_uint_eq(store_snapshot_depth(snap), model_depth(m, i));
		store_snapshot_close(snap);
	}
	struct store_lines l;
	ck_assert_msg(verify(&l) == 0, "%s", l.text);
}

/* Delete snapshot @i of @m from @s; the others then read and verify as model_expect says. */
static void model_store_delete(struct model *m, struct store *s, unsigned i)
{
	ck_assert_msg(store_delete(s, m->name[i]) == 0, "%s", error_message());
	model_delete(m, i);
	model_expect(m, s);
}

/* Pack bytes that the snapshots still there need: each distinct (page, generation) once. */
static uint64_t model_needed_bytes(const struct model *m)
{
	uint64_t pages = 0;
	for (uint64_t p = 0; p < MODEL_PAGES; p++) {
		uint32_t gens = 0; /* bit g: some snapshot reads generation g here */
		for (unsigned i = 0; i < m->n; i++)
			if (m->alive[i] && m->gen[i][p])
				gens |= 1u << m->gen[i][p];
		pages += (uint64_t)__builtin_popcount(gens);
	}
	return pages * STORE_PAGE;
}

/* gc frees exactly the pages no snapshot left reads, and they all still read right. */
static void model_expect_gc(const struct model *m, struct store *s)
{
	uint64_t before, after, manifests, freed;
	ck_assert_int_eq(store_disk_usage(s, &before, &manifests), 0);
	ck_assert_msg(store_gc(s, &freed) == 0, "%s", error_message());
	ck_assert_int_eq(store_disk_usage(s, &after, &manifests), 0);
	ck_assert_uint_eq(after, model_needed_bytes(m));
	ck_assert_uint_eq(freed, before - after);
	model_expect(m, s);
	struct store_lines l;
	ck_assert_int_eq(verify(&l), 0);
	ck_assert_msg(l.notes == 0, "%s", l.text);
}

/* A new store, and @m empty. */
static struct store *model_store_new(struct model *m)
{
	struct store *s;
	ck_assert_int_eq(store_open(dir, true, &s), 0);
	memset(m, 0, sizeof(*m));
	return s;
}

/* A new store with A <- B <- C (indexes 0, 1, 2) written into it and into @m. */
static struct store *model_chain_of_three(struct model *m)
{
	static const char *const names[3] = {"A", "B", "C"};
	struct store *s = model_store_new(m);
	for (int i = 0; i < 3; i++)
		model_add(m, s, names[i], i - 1);
	return s;
}

/* @rel still holds the @len bytes @old (slurped before); frees @old. */
static void expect_same_file(const char *rel, uint8_t *old, size_t len)
{
	size_t now_len;
	uint8_t *now = slurp(rel, &now_len);
	ck_assert_msg(now_len == len && memcmp(now, old, len) == 0, "%s changed", rel);
	free(now);
	free(old);
}

/* model_store_delete, store file @untouched left exactly as it was. */
static void model_store_delete_sparing(struct model *m, struct store *s, unsigned i, const char *untouched)
{
	size_t len;
	uint8_t *before = slurp(untouched, &len);
	model_store_delete(m, s, i);
	expect_same_file(untouched, before, len);
}

/*
 * A <- B <- C, deltas (C and B overwrite pages, zero some that had bytes, give bytes to some
 * that were zero; many pages only A lists). Two of the three deleted, in each of the 6 orders
 * (_i picks it): after each delete the others read every page as before, name the nearest
 * ancestor left (none once A is gone) and verify; gc then frees exactly the pages no one
 * left reads.
 */
START_TEST(deleting_any_two_of_a_chain_keeps_what_the_third_reads)
{
	static const unsigned orders[6][2] = {{0, 1}, {1, 0}, {0, 2}, {2, 0}, {1, 2}, {2, 1}};
	struct model m;
	struct store *s = model_chain_of_three(&m);
	model_expect(&m, s);
	uint64_t all, manifests;
	ck_assert_int_eq(store_disk_usage(s, &all, &manifests), 0);
	ck_assert_uint_eq(all, model_needed_bytes(&m)); /* the model's count is the store's */
	for (int k = 0; k < 2; k++)
		model_store_delete(&m, s, orders[_i][k]);
	model_expect_gc(&m, s);
	ck_assert_uint_lt(model_needed_bytes(&m), all);
	store_close(s);
}
END_TEST

/* A snapshot with two delta children and a grandchild: deleting it rewrites both children
 * (roots now), leaves the grandchild's manifest as it was, and each reads the same. */
START_TEST(every_child_absorbs_the_deleted_snapshot_and_grandchildren_are_untouched)
{
	struct model m;
	struct store *s = model_store_new(&m);
	unsigned a = model_add(&m, s, "A", -1);
	unsigned b1 = model_add(&m, s, "B1", (int)a);
	model_add(&m, s, "B2", (int)a);
	model_add(&m, s, "C1", (int)b1);
	model_store_delete_sparing(&m, s, a, "snapshots/C1.snap");
	model_expect_gc(&m, s);
	model_store_delete(&m, s, b1);
	model_expect_gc(&m, s);
	store_close(s);
}
END_TEST

/* x0 <- ... <- x8 <- x9: x8 was written complete (its parent was 8 deep). Deleting x8
 * makes x9 complete, naming x7 for the record; deleting x7 then rewrites nothing; deleting
 * x3 makes x4 take it in and stay a delta. */
START_TEST(a_child_of_a_complete_snapshot_becomes_complete)
{
	struct model m;
	struct store *s = model_store_new(&m);
	for (int i = 0; i <= 9; i++) {
		char name[16];
		snprintf(name, sizeof(name), "x%d", i);
		model_add(&m, s, name, i - 1);
	}
	ck_assert(m.complete[8] && !m.complete[9]);
	model_expect(&m, s);
	model_store_delete(&m, s, 8); /* x9 read: depth 1, parent "x7" */
	ck_assert(m.complete[9]);
	model_store_delete_sparing(&m, s, 7, "snapshots/x9.snap");
	model_store_delete(&m, s, 3);
	model_expect_gc(&m, s);
	store_close(s);
}
END_TEST

/* A pinned snapshot is refused, its children untouched; a pinned child is rewritten: the
 * VM that opened it before reads the same pages from what it mapped, after the delete and
 * after a gc, and so does one that opens it afterwards. */
START_TEST(a_pinned_snapshot_is_refused_and_a_pinned_child_absorbs)
{
	struct model m;
	struct store *vm_store, *s = model_chain_of_three(&m);
	ck_assert_int_eq(store_open_read(dir, &vm_store), 0);
	struct store_snapshot *on_b, *on_c;
	ck_assert_int_eq(store_snapshot_open_pinned(vm_store, "B", "VM 'web' (pid 42)", &on_b), 0);
	size_t len;
	uint8_t *before = slurp("snapshots/C.snap", &len);
	ck_assert_int_eq(store_delete(s, "B"), -EBUSY);
	ck_assert_str_eq(error_message(), "snapshot 'B' is in use by VM 'web' (pid 42), which runs from it; stop that "
					  "VM (and its forks) first");
	expect_same_file("snapshots/C.snap", before, len);
	store_snapshot_close(on_b);

	ck_assert_int_eq(store_snapshot_open_pinned(vm_store, "C", "VM 'web' (pid 42)", &on_c), 0);
	model_store_delete(&m, s, 1);
	model_expect_pages(on_c, &m, 2);
	ck_assert_str_eq(store_snapshot_parent(on_c), "B"); /* the manifest it mapped */
	model_store_delete(&m, s, 0);
	/* A's and B's packs, partly needed now, are rewritten: C reads on from what it mapped. */
	model_expect_gc(&m, s);
	model_expect_pages(on_c, &m, 2);
	ck_assert_int_eq(store_delete(s, "C"), -EBUSY);
	store_snapshot_close(on_c);
	store_close(vm_store);
	store_close(s);
}
END_TEST

/*
 * A delete cut short. Deleting B of A <- B <- (C1, C2) rewrites one child, then the other,
 * then removes B; the states a kill -9 can leave between are made here by putting back what
 * the delete replaced: B's manifest and one child's old one (one rewritten, one not yet), or
 * B's alone (both rewritten, B not yet removed). In each the store verifies, every snapshot
 * reads as before (B too), a gc keeps what they all need, and deleting B again finishes.
 */
START_TEST(a_delete_cut_short_leaves_every_snapshot_readable)
{
	for (int cut = 0; cut < 2; cut++) {
		char cmd[128];
		snprintf(cmd, sizeof(cmd), "rm -rf %s/*", dir);
		ck_assert_int_eq(system(cmd), 0);
		struct model m;
		struct store *s = model_store_new(&m);
		unsigned a = model_add(&m, s, "A", -1);
		unsigned b = model_add(&m, s, "B", (int)a);
		model_add(&m, s, "C1", (int)b);
		unsigned c2 = model_add(&m, s, "C2", (int)b);
		size_t b_len, c2_len;
		uint8_t *b_old = slurp("snapshots/B.snap", &b_len), *c2_old = slurp("snapshots/C2.snap", &c2_len);
		model_store_delete(&m, s, b);
		spill("snapshots/B.snap", b_old, b_len);
		m.alive[b] = true;
		if (cut == 0) {
			spill("snapshots/C2.snap", c2_old, c2_len);
			m.parent[c2] = (int)b;
		}
		model_expect(&m, s);
		model_expect_gc(&m, s);
		model_store_delete(&m, s, b);
		model_expect_gc(&m, s);
		free(b_old);
		free(c2_old);
		store_close(s);
	}
}
END_TEST

/* What cannot be taken in is refused before anything changes: a child whose entries are
 * damaged, or the deleted snapshot's own. A damaged snapshot no one needs still goes. */
START_TEST(damaged_entries_stop_a_delete_before_anything_changes)
{
	struct model m;
	struct store *s = model_chain_of_three(&m);
	const char *damaged[] = {"snapshots/C.snap", "snapshots/B.snap"};
	for (int i = 0; i < 2; i++) {
		size_t len[2];
		uint8_t *old[2] = {slurp("snapshots/B.snap", &len[0]), slurp("snapshots/C.snap", &len[1])};
		corrupt(damaged[i], MANIFEST_ENTRIES + 8, 0x01); /* the hash of the first entry */
		ck_assert_int_eq(store_delete(s, "B"), -EIO);
		char want[256];
		snprintf(want, sizeof(want), "cannot delete snapshot 'B': %s/%s: manifest entries 0-", dir, damaged[i]);
		ck_assert_msg(strncmp(error_message(), want, strlen(want)) == 0 &&
				      strstr(error_message(), " do not match their checksum (damaged)"),
			      "%s", error_message());
		corrupt(damaged[i], MANIFEST_ENTRIES + 8, 0x01); /* mended */
		expect_same_file("snapshots/B.snap", old[0], len[0]);
		expect_same_file("snapshots/C.snap", old[1], len[1]);
		model_expect(&m, s);
	}
	/* C no longer needs B once B is deleted; C damaged then goes without a look at it. */
	model_store_delete(&m, s, 1);
	corrupt("snapshots/C.snap", MANIFEST_ENTRIES + 8, 0x01);
	ck_assert_msg(store_delete(s, "C") == 0, "%s", error_message());
	ck_assert(!store_has_snapshot(s, "C"));
	store_close(s);
}
END_TEST

/*
 * kill -9 in the middle of deletes: chains a <- b <- c are written, then a process deletes
 * b, then a (c taking each in), chain after chain, and is killed at a random moment of that
 * (the deletes take some 20 ms here). After each kill the store verifies; at the end every
 * snapshot there opens (no child names a parent that is gone) and reads what its chain read
 * when written, and every chain the process said it was done with is c alone.
 */
#define KILL_ROUNDS 10
#define KILL_CHAINS 6

static void kill_chain_name(char name[32], int round, int k, unsigned i)
{
	snprintf(name, 32, "r%02d-%d-%c", round, k, 'a' + i);
}

START_TEST(kill_9_during_deletes_leaves_every_snapshot_readable)
{
	unsigned seed = (unsigned)time(NULL);
	srand(seed);
	struct model want = {0}; /* the rows of a, b and c, whatever their names */
	model_add(&want, NULL, "a", -1);
	model_add(&want, NULL, "b", 0);
	model_add(&want, NULL, "c", 1);
	bool done[KILL_ROUNDS][KILL_CHAINS] = {{false}};
	struct store *s;
	ck_assert_int_eq(store_open(dir, true, &s), 0);
	for (int round = 0; round < KILL_ROUNDS; round++) {
		for (int k = 0; k < KILL_CHAINS; k++) {
			struct model m = {0};
			for (unsigned i = 0; i < 3; i++) {
				char name[32];
				kill_chain_name(name, round, k, i);
				model_add(&m, s, name, (int)i - 1);
			}
		}
		int pfd[2];
		ck_assert_int_eq(pipe(pfd), 0);
		pid_t pid = fork();
		ck_assert_int_ge(pid, 0);
		if (pid == 0) {
			close(pfd[0]);
			struct store *own;
			if (store_open(dir, false, &own) != 0)
				_exit(1);
			for (uint8_t k = 0; k < KILL_CHAINS; k++) {
				char a[32], b[32];
				kill_chain_name(a, round, k, 0);
				kill_chain_name(b, round, k, 1);
				if (store_delete(own, b) != 0 || store_delete(own, a) != 0 || write(pfd[1], &k, 1) != 1)
					_exit(1);
			}
			pause();
		}
		close(pfd[1]);
		struct timespec t = {0, (long)(rand() % 25) * 1000000L};
		nanosleep(&t, NULL);
		kill(pid, SIGKILL);
		int st;
		ck_assert_int_eq(waitpid(pid, &st, 0), pid);
		ck_assert_msg(WIFSIGNALED(st), "seed %u round %d: the deleting process failed (status %d)", seed, round, st);
		uint8_t k;
		while (read(pfd[0], &k, 1) == 1)
			done[round][k] = true;
		close(pfd[0]);
		struct store_lines l;
		ck_assert_msg(verify(&l) == 0, "seed %u round %d: %s", seed, round, l.text);
	}
	for (int round = 0; round < KILL_ROUNDS; round++) {
		for (int k = 0; k < KILL_CHAINS; k++) {
			unsigned there = 0;
			for (unsigned i = 0; i < 3; i++) {
				char name[32];
				kill_chain_name(name, round, k, i);
				if (!store_has_snapshot(s, name))
					continue;
				there |= 1u << i;
				struct store_snapshot *snap;
				ck_assert_msg(store_snapshot_open(s, name, &snap) == 0, "seed %u: %s", seed, error_message());
				ck_assert_msg(model_try_expect_pages(snap, &want, i) == 0, "seed %u: %s", seed, error_message());
				store_snapshot_close(snap);
			}
			ck_assert_msg(there & 4, "seed %u: chain %d of round %d lost c", seed, k, round);
			ck_assert_msg(!done[round][k] || there == 4, "seed %u: chain %d of round %d: %x", seed, k, round, there);
		}
	}
	gc_close_and_verify(s);
}
END_TEST

Suite *store_suite(void)
{
	Suite *s = suite_create("store");
	TCase *tc = tcase_create("store");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 120);
	HARNESS_ADD_TEST(tc, store_size_is_exactly_the_unique_nonzero_pages);
	HARNESS_ADD_TEST(tc, snapshot_reads_back_every_page_and_its_state);
	HARNESS_ADD_TEST(tc, child_stores_only_what_changed_and_reads_through_its_parent);
	HARNESS_ADD_TEST(tc, child_leaves_out_pages_equal_to_its_parents);
	HARNESS_ADD_TEST(tc, long_chains_of_deltas_are_cut_by_complete_manifests);
	HARNESS_ADD_TEST(tc, second_snapshot_of_same_memory_stores_nothing_new);
	HARNESS_ADD_TEST(tc, snapshots_of_the_same_pages_have_the_same_identity_and_others_not);
	HARNESS_ADD_TEST(tc, hash_collisions_keep_both_pages);
	HARNESS_ADD_TEST(tc, names_parents_and_order_are_checked);
	HARNESS_ADD_TEST(tc, verify_passes_a_healthy_store);
	HARNESS_ADD_TEST(tc, verify_names_the_damaged_page);
	HARNESS_ADD_TEST(tc, damaged_manifests_are_named);
	HARNESS_ADD_TEST(tc, truncated_and_foreign_manifests_are_named);
	HARNESS_ADD_TEST(tc, missing_pack_is_named);
	HARNESS_ADD_TEST(tc, missing_parent_is_named);
	HARNESS_ADD_TEST(tc, leftovers_of_a_killed_writer_are_notes_and_gc_removes_them);
	HARNESS_ADD_TEST(tc, gc_frees_pages_of_deleted_snapshots_and_keeps_the_rest_intact);
	HARNESS_ADD_TEST(tc, list_names_parents_sizes);
	HARNESS_ADD_TEST(tc, a_snapshot_keeps_its_source_and_description);
	HARNESS_ADD_TEST(tc, a_description_that_is_no_text_is_refused);
	HARNESS_ADD_TEST(tc, version_2_manifests_are_still_read);
	HARNESS_ADD_TEST(tc, store_ls_shows_source_and_description);
	HARNESS_ADD_TEST(tc, manifests_of_another_version_are_refused_by_version);
	HARNESS_ADD_TEST(tc, damaged_entries_are_found_when_their_chunk_is_first_read);
	HARNESS_ADD_TEST(tc, malformed_entries_behind_valid_checksums_are_named);
	HARNESS_ADD_TEST(tc, sparse_and_dense_chains_find_every_page);
	HARNESS_ADD_TEST(tc, read_only_stores_serve_snapshots_and_refuse_changes);
	HARNESS_ADD_TEST(tc, open_snapshots_read_the_same_bytes_across_a_gc);
	HARNESS_ADD_TEST(tc, writers_never_share_pages_a_gc_removed_meanwhile);
	HARNESS_ADD_TEST(tc, stores_have_one_name_each);
	HARNESS_ADD_TEST(tc, packs_read_not_mapped_serve_pages_and_prefetched_runs);
	HARNESS_ADD_TEST(tc, a_writer_fills_one_pack_after_another);
	HARNESS_ADD_TEST(tc, two_writers_of_one_name_never_replace_each_other);
	HARNESS_ADD_TEST(tc, a_kept_index_shares_what_other_writers_stored_meanwhile);
	HARNESS_ADD_TEST(tc, a_kept_index_starts_over_after_a_gc);
	HARNESS_ADD_TEST(tc, kill_9_at_any_moment_leaves_the_store_valid);
	HARNESS_ADD_TEST(tc, fifos_in_a_store_are_refused_not_waited_on);
	HARNESS_ADD_TEST(tc, store_commands_refuse_a_fifo_lock);
	HARNESS_ADD_TEST(tc, store_verify_summary_says_1_snapshot_not_1_snapshots);
	HARNESS_ADD_TEST(tc, store_rm_deletes_several_and_names_each_refused);
	HARNESS_ADD_TEST(tc, store_verify_gc_and_rm_print_json);
	HARNESS_ADD_TEST(tc, store_ls_tree_draws_the_lineage);
	HARNESS_ADD_TEST(tc, a_snapshot_a_live_vm_was_restored_from_is_not_deleted);
	HARNESS_ADD_TEST(tc, pins_live_as_long_as_the_vm_and_its_forks);
	HARNESS_ADD_LOOP_TEST(tc, deleting_any_two_of_a_chain_keeps_what_the_third_reads, 0, 6);
	HARNESS_ADD_TEST(tc, every_child_absorbs_the_deleted_snapshot_and_grandchildren_are_untouched);
	HARNESS_ADD_TEST(tc, a_child_of_a_complete_snapshot_becomes_complete);
	HARNESS_ADD_TEST(tc, a_pinned_snapshot_is_refused_and_a_pinned_child_absorbs);
	HARNESS_ADD_TEST(tc, a_delete_cut_short_leaves_every_snapshot_readable);
	HARNESS_ADD_TEST(tc, damaged_entries_stop_a_delete_before_anything_changes);
	HARNESS_ADD_TEST(tc, kill_9_during_deletes_leaves_every_snapshot_readable);
	suite_add_tcase(s, tc);
	return s;
}

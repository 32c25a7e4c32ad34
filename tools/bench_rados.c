/*
 * The snapshot store on Ceph RADOS (issue 14), on a throwaway single-node cluster made here
 * (tests/ceph_cluster.c: one monitor, one memstore OSD on loopback), each figure beside the
 * cluster's own `rados bench` in the same run:
 *   1. uploading a snapshot of 256 MiB of unique pages (the store writer into a RADOS store)
 *      beside `rados bench write` (4 MiB objects), with packs of 4, 16 and 64 MiB: the pack
 *      size the store uses (64 MiB) and why;
 *   2. a cold sequential page-in of it (a new connection, nothing cached) as a restore reads:
 *      runs of 64 pages fetched at once (the snapshot pager's clusters), and page by page,
 *      beside `rados bench seq`.
 * No KVM needed. Prints a SKIP line when Ceph is not installed (tools/deps.sh test).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "tests/ceph_cluster.h"
#include "tests/spawn.h"
#include "vmm/error.h"
#include "vmm/store/store.h"

#define SNAPSHOT_PAGES 65536u /* 256 MiB */
#define CLUSTER_PAGES 64u

/* For tests/spawn.c, which finds build files for the tests this way. */
const char *harness_build_path(const char *name)
{
	static char path[4096];
	const char *dir = getenv("VMM_BUILD");
	snprintf(path, sizeof(path), "%s/%s", dir && *dir ? dir : "build", name);
	return path;
}

static double now_ms(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec * 1e3 + (double)t.tv_nsec / 1e6;
}

static struct ceph_cluster cluster;

static void die(const char *what)
{
	fprintf(stderr, "bench_rados: %s: %s\n", what, error_message());
	ceph_cluster_stop(&cluster);
	exit(1);
}

/* `rados bench SECONDS MODE` on the cluster's pool: its "Bandwidth (MB/sec)". */
static double rados_bench(const char *mode)
{
	char *argv[] = {"/usr/bin/rados", "-c", cluster.conf, "-p", cluster.pool, "bench", "5", (char *)mode,
			"--no-cleanup", NULL};
	struct spawn_result r;
	if (spawn_run(&r, 120, argv) != 0 || r.status != 0)
		die("rados bench");
	const char *at = strstr(r.out, "Bandwidth (MB/sec):");
	double mbs = at ? atof(at + strlen("Bandwidth (MB/sec):")) : 0;
	spawn_free(&r);
	if (mbs <= 0)
		die("rados bench printed no bandwidth");
	return mbs;
}

/* Page @p of the benchmark's snapshot: unique bytes. */
static void bench_page(uint8_t *page, uint64_t p)
{
	uint64_t v = p * 0x9e3779b97f4a7c15ull ^ 0x5eed;
	for (size_t i = 0; i < 4096; i += 8) {
		v = v * 6364136223846793005ull + 1442695040888963407ull;
		memcpy(page + i, &v, 8);
	}
}

/* Upload the snapshot @name into @where with packs of @pack_pages: MB/s. */
static double upload(const char *where, const char *name, uint32_t pack_pages)
{
	static uint8_t pages[SNAPSHOT_PAGES / 16][4096]; /* made once, written 16 times over with a tag */
	static bool made;
	if (!made) {
		for (uint64_t p = 0; p < SNAPSHOT_PAGES / 16; p++)
			bench_page(pages[p], p);
		made = true;
	}
	struct store *s;
	if (store_open(where, true, &s) != 0)
		die("store_open");
	store_set_pack_pages(s, pack_pages);
	double t0 = now_ms();
	struct store_writer *w;
	if (store_writer_begin(s, name, NULL, SNAPSHOT_PAGES, "", 0, &w) != 0)
		die("store_writer_begin");
	for (uint64_t p = 0; p < SNAPSHOT_PAGES; p++) {
		uint8_t *page = pages[p % (SNAPSHOT_PAGES / 16)];
		uint64_t tag = p ^ (uint64_t)pack_pages << 32; /* every page unique, in every run */
		memcpy(page, &tag, sizeof(tag));
		if (store_writer_add(w, p, page) != 0)
			die("store_writer_add");
	}
	if (store_writer_commit(w) != 0)
		die("store_writer_commit");
	double ms = now_ms() - t0;
	store_close(s);
	return (double)SNAPSHOT_PAGES * 4096 / 1048576.0 / (ms / 1000.0);
}

/* Read every page of @name from a fresh connection, @cluster pages fetched at once: MB/s. */
static double page_in(const char *where, const char *name, unsigned run)
{
	struct store *s;
	struct store_snapshot *snap;
	if (store_open_read(where, &s) != 0 || store_snapshot_open(s, name, &snap) != 0)
		die("open the snapshot");
	uint8_t page[4096];
	double t0 = now_ms();
	for (uint64_t p = 0; p < SNAPSHOT_PAGES; p++) {
		if (run > 1 && p % run == 0)
			store_snapshot_prefetch(snap, p, run);
		bool stored;
		uint64_t hash;
		if (store_snapshot_copy(snap, p, page, &stored, &hash) != 0 || !stored)
			die("read a page");
	}
	double ms = now_ms() - t0;
	store_snapshot_close(snap);
	store_close(s);
	return (double)SNAPSHOT_PAGES * 4096 / 1048576.0 / (ms / 1000.0);
}

int main(void)
{
	if (system("command -v ceph-mon ceph-osd monmaptool ceph-authtool ceph rados >/dev/null 2>&1") != 0) {
		printf("SKIP: bench_rados: Ceph is not installed (tools/deps.sh test installs it)\n");
		return 0;
	}
	setenv("VMM_RADOS", harness_build_path("rados_server"), 1);
	char why[512];
	if (ceph_cluster_start(&cluster, why, sizeof(why)) != 0) {
		fprintf(stderr, "bench_rados: test cluster: %s\n", why);
		return 1;
	}
	setenv("CEPH_CONF", cluster.conf, 1);
	char where[128];
	snprintf(where, sizeof(where), "rados:%s/bench", cluster.pool);
	double write_mbs = rados_bench("write"), seq_mbs = rados_bench("seq");
	const uint32_t packs[] = {1024, 4096, 16384};
	double up[3];
	for (int i = 0; i < 3; i++) {
		char name[16];
		snprintf(name, sizeof(name), "s%u", packs[i]);
		up[i] = upload(where, name, packs[i]);
	}
	double clustered = page_in(where, "s16384", CLUSTER_PAGES), single = page_in(where, "s16384", 1);
	printf("rados: snapshot upload of 256 MiB: %.0f MB/s with 64 MiB packs (the store's), %.0f with 16 MiB, %.0f "
	       "with 4 MiB; rados bench write (4 MiB objects) %.0f MB/s: %.0f%% (target >= 50%%)\n",
	       up[2], up[1], up[0], write_mbs, 100.0 * up[2] / write_mbs);
	printf("rados: cold sequential page-in of it: %.0f MB/s in runs of %u pages, %.1f MB/s page by page; rados "
	       "bench seq %.0f MB/s: %.0f%% (target >= 50%%)\n",
	       clustered, CLUSTER_PAGES, single, seq_mbs, 100.0 * clustered / seq_mbs);
	ceph_cluster_stop(&cluster);
	return 0;
}

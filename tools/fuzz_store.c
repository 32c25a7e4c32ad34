/*
 * Fuzz target for the snapshot store's readers. The first byte of an input says how the
 * rest is used:
 *   0x80 clear ("raw"): the rest becomes a manifest (and its last eighth a pack) in a
 *        scratch store, as is;
 *   0x80 set ("patched"): the rest, read as (offset: 4 bytes, xor: 1 byte) pairs, damages
 *        copies of two well-formed manifests made at start-up: "f" (a child listing
 *        4 pages in 5: 3 chunks of entries, sparse) and, with 0x02, its parent "base"
 *        (every page: 3 dense chunks);
 *   0x01: then recompute the manifests' checksums (store_manifest_seal) so that the checks
 *        behind them (header fields, pack and chunk tables, entries) are reached.
 * The snapshot "f" is then opened read-only as a restore does, every page it describes is
 * looked up through its chain, and the store is listed and verified. Every outcome must
 * be a clean result or a named error; never a crash.
 */
#include <ftw.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "vmm/store/store.h"

#define BASE_PAGES 1500

static char raw_dir[64], dir[64];
static uint8_t *pristine[2]; /* "base" and "f" as written */
static size_t pristine_len[2];
static const char *const manifest_name[2] = {"base", "f"};

static void write_file(const char *top, const char *rel, const uint8_t *data, size_t len)
{
	char path[128];
	snprintf(path, sizeof(path), "%s/%s", top, rel);
	FILE *f = fopen(path, "wb");
	if (!f)
		abort();
	if (len && fwrite(data, 1, len, f) != len)
		abort();
	fclose(f);
}

static uint8_t *read_file(const char *top, const char *rel, size_t *len)
{
	char path[128];
	snprintf(path, sizeof(path), "%s/%s", top, rel);
	FILE *f = fopen(path, "rb");
	if (!f || fseek(f, 0, SEEK_END) != 0)
		abort();
	*len = (size_t)ftell(f);
	rewind(f);
	uint8_t *b = malloc(*len);
	if (!b || fread(b, 1, *len, f) != *len)
		abort();
	fclose(f);
	return b;
}

static void noop(void *arg, bool problem, const char *line)
{
	(void)arg;
	(void)problem;
	(void)line;
}

static void noop_info(void *arg, const struct store_info *info)
{
	(void)arg;
	(void)info;
}

/* Page @p of generation @gen: zero, one of 4 patterns, or (the first few) unique. */
static void make_page(uint8_t *page, uint64_t p, uint64_t gen)
{
	memset(page, 0, STORE_PAGE);
	if (p % 3 == 1 || (p % 3 == 2 && p >= 60))
		memset(page, 0x40 + (int)(p % 4), STORE_PAGE);
	else if (p % 3 == 2)
		for (size_t i = 0; i < STORE_PAGE; i += 8)
			memcpy(page + i, &(uint64_t){p * 0x9e3779b97f4a7c15ull ^ gen ^ i}, 8);
}

/* Snapshot @name of every page (@sparse: but every fifth) of generation @gen. */
static void write_snapshot(struct store *s, const char *name, const char *parent, bool sparse, uint64_t gen)
{
	static uint8_t page[STORE_PAGE];
	struct store_writer *w;
	if (store_writer_begin(s, name, parent, BASE_PAGES, "state", 5, &w) != 0)
		abort();
	for (uint64_t p = 0; p < BASE_PAGES; p++) {
		if (sparse && p % 5 == 0)
			continue;
		make_page(page, p, gen);
		if (store_writer_add(w, p, page) != 0)
			abort();
	}
	if (store_writer_commit(w) != 0)
		abort();
}

static int remove_entry(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
	(void)st, (void)ftw;
	return type == FTW_DP ? rmdir(path) : unlink(path);
}

/* At the end of a run, the two stores go (after a crash they stay, beside the input). */
static void remove_stores(void)
{
	nftw(raw_dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
	nftw(dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
}

static void setup(void)
{
	strcpy(raw_dir, "/tmp/vmm-fuzz-store-XXXXXX");
	strcpy(dir, "/tmp/vmm-fuzz-chain-XXXXXX");
	struct store *s;
	if (!mkdtemp(raw_dir) || !mkdtemp(dir) || store_open(raw_dir, true, &s) != 0)
		abort();
	atexit(remove_stores);
	store_close(s);
	if (store_open(dir, true, &s) != 0)
		abort();
	write_snapshot(s, "base", NULL, false, 1);
	write_snapshot(s, "f", "base", true, 2);
	store_close(s);
	for (int i = 0; i < 2; i++) {
		char rel[64];
		snprintf(rel, sizeof(rel), "snapshots/%s.snap", manifest_name[i]);
		pristine[i] = read_file(dir, rel, &pristine_len[i]);
	}
}

/* Open "f" of @top as a restore does and look every page up; then list and verify. */
static void read_store(const char *top)
{
	struct store *s;
	if (store_open_read(top, &s) != 0)
		return;
	struct store_snapshot *snap;
	if (store_snapshot_open(s, "f", &snap) == 0) {
		size_t len;
		const volatile uint8_t *state = store_snapshot_state(snap, &len);
		if (len)
			(void)state[len - 1];
		uint64_t n = store_snapshot_page_count(snap);
		for (uint64_t p = 0; p < n && p < 4096; p++) {
			const void *page;
			uint64_t hash;
			if (store_snapshot_page(snap, p, &page, &hash) == 0 && page)
				(void)((const volatile uint8_t *)page)[4095];
		}
		store_snapshot_page(snap, UINT64_MAX, &(const void *){NULL}, &(uint64_t){0});
		store_snapshot_close(snap);
	}
	store_list(s, noop_info, NULL);
	struct store_verify_stats st;
	store_verify(s, noop, NULL, &st);
	store_close(s);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (!dir[0])
		setup();
	if (size == 0)
		return 0;
	uint8_t mode = data[0];
	data++;
	size--;
	if (!(mode & 0x80)) {
		size_t split = size - size / 8;
		uint8_t *m = malloc(split ? split : 1);
		if (!m)
			abort();
		memcpy(m, data, split);
		if (mode & 0x01)
			store_manifest_seal(m, split);
		write_file(raw_dir, "snapshots/f.snap", m, split);
		write_file(raw_dir, "packs/00000001.pack", data + split, size - split);
		free(m);
		read_store(raw_dir);
		return 0;
	}
	int target = mode & 0x02 ? 0 : 1;
	uint8_t *m[2];
	for (int i = 0; i < 2; i++) {
		m[i] = malloc(pristine_len[i]);
		if (!m[i])
			abort();
		memcpy(m[i], pristine[i], pristine_len[i]);
	}
	for (size_t k = 0; k + 5 <= size; k += 5) {
		uint32_t off;
		memcpy(&off, data + k, 4);
		m[target][off % pristine_len[target]] ^= data[k + 4];
	}
	if (mode & 0x01)
		store_manifest_seal(m[target], pristine_len[target]);
	for (int i = 0; i < 2; i++) {
		char rel[64];
		snprintf(rel, sizeof(rel), "snapshots/%s.snap", manifest_name[i]);
		write_file(dir, rel, m[i], pristine_len[i]);
		free(m[i]);
	}
	read_store(dir);
	return 0;
}

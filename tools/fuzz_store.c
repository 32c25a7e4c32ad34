/*
 * Fuzz target for the snapshot store's readers: the input becomes a manifest (and the
 * tail of it a pack) in a scratch store, which is then opened, read and verified.
 * Every outcome must be a clean result or a named error; never a crash.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "vmm/store.h"

static char dir[64];

static void write_file(const char *rel, const uint8_t *data, size_t len)
{
	char path[128];
	snprintf(path, sizeof(path), "%s/%s", dir, rel);
	FILE *f = fopen(path, "wb");
	if (!f)
		abort();
	fwrite(data, 1, len, f);
	fclose(f);
}

static void noop(void *arg, bool problem, const char *line)
{
	(void)arg;
	(void)problem;
	(void)line;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (!dir[0]) {
		strcpy(dir, "/tmp/vmm-fuzz-store-XXXXXX");
		if (!mkdtemp(dir))
			abort();
		struct store *s;
		if (store_open(dir, true, &s) != 0)
			abort();
		store_close(s);
	}
	size_t split = size > 8 ? size - (size / 8) * 1 : size;
	write_file("snapshots/f.snap", data, split);
	write_file("packs/00000001.pack", data + split, size - split);
	struct store *s;
	if (store_open(dir, false, &s) == 0) {
		struct store_snapshot *snap;
		if (store_snapshot_open(s, "f", &snap) == 0) {
			uint64_t n = store_snapshot_page_count(snap);
			for (uint64_t p = 0; p < n && p < 4096; p++) {
				const void *page;
				uint64_t hash;
				if (store_snapshot_page(snap, p, &page, &hash) == 0 && page)
					(void)((const volatile uint8_t *)page)[4095];
			}
			store_snapshot_close(snap);
		}
		struct store_verify_stats st;
		store_verify(s, noop, NULL, &st);
		store_close(s);
	}
	return 0;
}

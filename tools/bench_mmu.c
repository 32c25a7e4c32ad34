/*
 * Benchmarks of the mmu core, each figure beside its peer measured in the same run:
 *   1. fault resolution through a chain built by 64 snapshots (shadow + collapse) against a
 *      chain of depth 1; the chain that 64 held snapshots make (no collapse possible) is
 *      shown beside them for scale;
 *   2. page-store insert + lookup of 4 KiB pages against raw XXH3-64 over the same data.
 * usage: bench_mmu   (prints one line per ratio; exit status 0 unless setup fails)
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <xxhash.h>

#include "mmu/page_store.h"
#include "mmu/vm_domain.h"
#include "mmu/vm_fault.h"
#include "mmu/vm_map.h"
#include "tests/vm_sandbox.h"

#define PS VM_PAGE_SIZE
#define BASE 0x100000u
#define FAULT_PAGES 4096u /* 16 MiB */
#define SNAPSHOTS 64u
#define ROUNDS 5

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void die(const char *what)
{
	fprintf(stderr, "bench_mmu: %s failed\n", what);
	exit(1);
}

/* A sandbox whose pages all hold data, mapped as one entry. */
static struct vm_sandbox *filled_sandbox(void)
{
	struct vm_sandbox *sb;
	if (vm_sandbox_create(BASE, FAULT_PAGES * PS, 0, &sb))
		die("sandbox");
	vm_addr_t a = BASE;
	if (vm_map_allocate(sb->map, &a, FAULT_PAGES * PS, false) != KERN_SUCCESS)
		die("allocate");
	uint8_t page[PS];
	for (unsigned p = 0; p < FAULT_PAGES; p++) {
		memset(page, (int)p, PS);
		if (vm_map_write(sb->map, BASE + (vm_addr_t)p * PS, page, PS) != KERN_SUCCESS)
			die("write");
	}
	return sb;
}

/* Snapshot the whole range @n times; after each, rewrite 1/n of the pages (copy on write
 * into a new top object). @keep: hold every snapshot (no collapse can happen), else
 * release each at once (the chain collapses). Returns the snapshots to release, or NULL. */
static struct vm_map_copy **snapshot_rounds(struct vm_sandbox *sb, unsigned n, int keep)
{
	struct vm_map_copy **held = calloc(n, sizeof(*held));
	uint8_t page[PS];
	unsigned slice = FAULT_PAGES / n;
	for (unsigned i = 0; i < n; i++) {
		struct vm_map_copy *snap;
		if (vm_map_copyin(sb->map, BASE, FAULT_PAGES * PS, &snap) != KERN_SUCCESS)
			die("copyin");
		for (unsigned p = i * slice; p < (i + 1) * slice; p++) {
			memset(page, (int)(p + i), PS);
			if (vm_map_write(sb->map, BASE + (vm_addr_t)p * PS, page, PS) != KERN_SUCCESS)
				die("write");
		}
		if (keep)
			held[i] = snap;
		else
			vm_map_copy_discard(snap);
	}
	if (!keep) {
		free(held);
		return NULL;
	}
	return held;
}

static unsigned chain_depth(struct vm_sandbox *sb)
{
	vm_addr_t a = BASE;
	struct vm_region_info r;
	if (vm_map_region(sb->map, &a, &r) != KERN_SUCCESS)
		die("region");
	return r.depth;
}

/* Best time per read fault over every page (the pmap emptied before each round). */
static double fault_time(struct vm_sandbox *sb)
{
	double best = 1e9;
	for (int round = 0; round < ROUNDS; round++) {
		if (vm_map_protect(sb->map, BASE, FAULT_PAGES * PS, false, VM_PROT_NONE) != KERN_SUCCESS ||
		    vm_map_protect(sb->map, BASE, FAULT_PAGES * PS, false, VM_PROT_DEFAULT) != KERN_SUCCESS)
			die("protect");
		double t0 = now();
		for (unsigned p = 0; p < FAULT_PAGES; p++)
			if (vm_fault(sb->map, BASE + (vm_addr_t)p * PS, VM_PROT_READ, NULL) != KERN_SUCCESS)
				die("fault");
		double t = (now() - t0) / FAULT_PAGES;
		if (t < best)
			best = t;
	}
	return best;
}

static void bench_faults(void)
{
	struct vm_sandbox *flat = filled_sandbox();
	double t1 = fault_time(flat);
	unsigned d1 = chain_depth(flat);
	vm_sandbox_destroy(flat);

	struct vm_sandbox *collapsed = filled_sandbox();
	snapshot_rounds(collapsed, SNAPSHOTS, 0);
	double t64 = fault_time(collapsed);
	unsigned d64 = chain_depth(collapsed);
	struct vm_statistics st;
	vm_domain_statistics(collapsed->dom, &st);
	vm_sandbox_destroy(collapsed);

	struct vm_sandbox *held = filled_sandbox();
	struct vm_map_copy **snaps = snapshot_rounds(held, SNAPSHOTS, 1);
	double th = fault_time(held);
	unsigned dh = chain_depth(held);
	for (unsigned i = 0; i < SNAPSHOTS; i++)
		vm_map_copy_discard(snaps[i]);
	free(snaps);
	vm_sandbox_destroy(held);

	double ratio = t64 / t1;
	printf("mmu fault depth64/depth1: %.2fx (target <= 2x)%s  [depth %u: %.2f us/fault; %u snapshots with "
	       "shadow+collapse: depth %u, %.2f us/fault (%llu collapses, %llu bypasses); %u snapshots held: "
	       "depth %u, %.2f us/fault]\n",
	       ratio, ratio <= 2.0 ? "" : " MISSED", d1, t1 * 1e6, SNAPSHOTS, d64, t64 * 1e6,
	       (unsigned long long)st.object_collapses, (unsigned long long)st.object_bypasses, SNAPSHOTS, dh,
	       th * 1e6);
}

#define STORE_PAGES 4096u /* 16 MiB */
#define STORE_ROUNDS 41

/* Index of the median of @n values (n odd). */
static int median_index(const double *v, int n)
{
	for (int i = 0; i < n; i++) {
		int below = 0, equal = 0;
		for (int j = 0; j < n; j++) {
			below += v[j] < v[i];
			equal += v[j] == v[i];
		}
		if (below <= n / 2 && below + equal > n / 2)
			return i;
	}
	return 0;
}

static uint64_t rng = 88172645463325252ull;
static uint64_t next(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return rng;
}

static void bench_store(void)
{
	/* A quarter of the pages repeat earlier ones, 1/64 are zero: guest memory-like. */
	uint8_t *data = aligned_alloc(PS, (size_t)STORE_PAGES * PS);
	page_ref_t *refs = malloc(STORE_PAGES * sizeof(*refs));
	if (!data || !refs)
		die("alloc");
	for (unsigned p = 0; p < STORE_PAGES; p++) {
		uint8_t *page = data + (size_t)p * PS;
		if (p % 64 == 63)
			memset(page, 0, PS);
		else if (p % 4 == 3)
			memcpy(page, data + (size_t)(next() % p) * PS, PS);
		else
			for (size_t i = 0; i < PS; i += 8) {
				uint64_t v = next();
				memcpy(page + i, &v, 8);
			}
	}
	/* Each round times both loops back to back; the median round is reported, so that a
	 * burst of load elsewhere on the machine hits both sides of one ratio alike. */
	double th[STORE_ROUNDS], ts[STORE_ROUNDS], ratio[STORE_ROUNDS];
	uint64_t sink = 0;
	struct page_store *store;
	if (page_store_create(NULL, &store))
		die("page store");
	for (int round = -1; round < STORE_ROUNDS; round++) {
		double t0 = now();
		for (unsigned p = 0; p < STORE_PAGES; p++)
			sink += XXH3_64bits(data + (size_t)p * PS, PS);
		double hash_time = now() - t0;

		t0 = now();
		for (unsigned p = 0; p < STORE_PAGES; p++)
			if (page_store_insert(store, data + (size_t)p * PS, &refs[p]))
				die("insert");
		for (unsigned p = 0; p < STORE_PAGES; p++)
			sink += (uintptr_t)page_store_lookup(store, refs[p]);
		double store_time = now() - t0;
		for (unsigned p = 0; p < STORE_PAGES; p++)
			page_store_release(store, refs[p]);
		if (round < 0)
			continue; /* warm-up: the store's pool is now faulted in */
		th[round] = hash_time;
		ts[round] = store_time;
		ratio[round] = hash_time / store_time;
	}
	int mid = median_index(ratio, STORE_ROUNDS);
	double best_hash = th[mid], best_store = ts[mid];
	struct page_store_stats st;
	page_store_stats(store, &st);
	double bytes = (double)STORE_PAGES * PS;
	printf("mmu page-store insert+lookup/xxh3: %.2fx (target >= 0.5x)%s  [store %.2f GB/s, XXH3-64 %.2f GB/s "
	       "over the same %u pages, median of %d rounds; %llu dedup hits, %llu zero pages per %llu inserts; "
	       "lookup = reference to stored bytes]%s\n",
	       ratio[mid], ratio[mid] >= 0.5 ? "" : " MISSED", bytes / best_store / 1e9, bytes / best_hash / 1e9,
	       STORE_PAGES, STORE_ROUNDS, (unsigned long long)st.hits / (STORE_ROUNDS + 1),
	       (unsigned long long)st.zero_pages / (STORE_ROUNDS + 1), (unsigned long long)st.inserts / (STORE_ROUNDS + 1),
	       sink == 42 ? " " : "");
	page_store_destroy(store);
	free(refs);
	free(data);
}

int main(void)
{
	bench_faults();
	bench_store();
	return 0;
}

/*
 * The Mach calls guest memory adds at run time (vm_map of a file, an external pager or a
 * stored snapshot's RAM, vm_copy, vm_region for one address, vm_statistics, vm_set_attributes,
 * vm_deallocate of what vm_map mapped) on real
 * userfaultfd, without KVM: the test's own thread reads and writes guest memory through its
 * host mapping, so its faults take a vCPU's path (userfaultfd, the fault thread, vm_fault,
 * the pager) and it sees what a guest would. Malformed arguments each get Mach's code.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "fake_pager.h"
#include "harness.h"
#include "store_pages.h"
#include "mmu/kern_return.h"
#include "vmm/error.h"
#include "vmm/lifecycle/restore.h"
#include "vmm/memory/guest_memory.h"
#include "vmm/store/store.h"

#define PS VM_PAGE_SIZE
#define RAM_SIZE (2ull << 20)
#define MAP_GPA (16ull << 20)
#define FILE_PAGES 4

static struct guest_memory mem;
static char path[64];
static atomic_int errors;

static void on_error(void *arg, int err, const char *message)
{
	(void)arg;
	(void)err;
	fprintf(stderr, "fault thread: %s\n", message);
	atomic_fetch_add(&errors, 1);
}

/* File page i holds 'A' + i. */
static void setup(void)
{
	memset(&mem, 0, sizeof(mem));
	atomic_store(&errors, 0);
	strcpy(path, "/tmp/vmm-map-XXXXXX");
	int fd = mkstemp(path);
	ck_assert_int_ge(fd, 0);
	static char bytes[FILE_PAGES * PS];
	for (unsigned i = 0; i < FILE_PAGES; i++)
		memset(bytes + i * PS, 'A' + i, PS);
	ck_assert_int_eq(write(fd, bytes, sizeof(bytes)), (ssize_t)sizeof(bytes));
	close(fd);
	struct guest_memory_config cfg = {.ram_size = RAM_SIZE};
	ck_assert_msg(guest_memory_create(&mem, &cfg) == 0, "%s", error_message());
	ck_assert_int_eq(guest_memory_start(&mem, on_error, NULL), 0);
	error_clear();
}

static void teardown(void)
{
	guest_memory_destroy(&mem);
	unlink(path);
	ck_assert_int_eq(atomic_load(&errors), 0);
}

static struct guest_memory_map_request file_request(uint64_t offset, uint64_t size, bool copy, vm_prot_t max)
{
	return (struct guest_memory_map_request){.kind = GUEST_REGION_FILE, .path = path, .offset = offset,
						 .size = size, .copy = copy, .cur = max, .max = max,
						 .inheritance = VM_INHERIT_COPY};
}

/* The external pager at @sock, shared. */
static struct guest_memory_map_request external_request(const char *sock, uint64_t offset, uint64_t size, vm_prot_t cur,
							vm_prot_t max)
{
	return (struct guest_memory_map_request){.kind = GUEST_REGION_EXTERNAL, .path = sock, .offset = offset,
						 .size = size, .copy = false, .cur = cur, .max = max,
						 .inheritance = VM_INHERIT_COPY};
}

static void map_ok(uint64_t gpa, const struct guest_memory_map_request *q)
{
	uint64_t at = gpa;
	ck_assert_msg(guest_memory_vm_map(&mem, &at, false, q) == 0, "%s", error_message());
	ck_assert_uint_eq(at, gpa);
}

static uint8_t guest_byte(uint64_t gpa)
{
	return *(volatile uint8_t *)(mem.base + gpa);
}

static void guest_set(uint64_t gpa, uint8_t v)
{
	*(volatile uint8_t *)(mem.base + gpa) = v;
}

static char file_byte(uint64_t offset)
{
	int fd = open(path, O_RDONLY);
	char c = 0;
	ck_assert_int_eq(pread(fd, &c, 1, (off_t)offset), 1);
	close(fd);
	return c;
}

START_TEST(test_a_file_mapped_at_run_time_reads_as_the_file_from_its_offset)
{
	struct guest_memory_map_request q = file_request(PS, 2 * PS, true, VM_PROT_ALL);
	unsigned before = mem.nregions;
	map_ok(MAP_GPA, &q);
	ck_assert_uint_eq(mem.nregions, before + 1);
	const struct guest_region *g = guest_memory_region(&mem, MAP_GPA);
	ck_assert_ptr_nonnull(g);
	ck_assert_int_eq(g->kind, GUEST_REGION_FILE);
	ck_assert_int_eq(g->mode, GUEST_MAP_PRIVATE);
	ck_assert_uint_eq(g->size, 2 * PS);
	ck_assert_str_eq(g->path, path);
	ck_assert_int_eq(guest_byte(MAP_GPA), 'B');
	ck_assert_int_eq(guest_byte(MAP_GPA + PS + 100), 'C');
	ck_assert(guest_memory_layout_changed(&mem));
}
END_TEST

START_TEST(test_a_copy_of_a_file_keeps_the_guests_writes_from_it)
{
	struct guest_memory_map_request q = file_request(0, FILE_PAGES * PS, true, VM_PROT_ALL);
	map_ok(MAP_GPA, &q);
	guest_set(MAP_GPA + 5, 'w');
	ck_assert_int_eq(guest_byte(MAP_GPA + 5), 'w');
	ck_assert_int_eq(guest_memory_sync(&mem), 0);
	ck_assert_int_eq(file_byte(5), 'A');
}
END_TEST

START_TEST(test_a_shared_file_mapping_takes_the_guests_writes_to_the_file_at_sync)
{
	struct guest_memory_map_request q = file_request(2 * PS, PS, false, VM_PROT_ALL);
	map_ok(MAP_GPA, &q);
	ck_assert_int_eq(guest_memory_region(&mem, MAP_GPA)->mode, GUEST_MAP_SHARED);
	ck_assert_int_eq(guest_byte(MAP_GPA + 7), 'C');
	guest_set(MAP_GPA + 7, 's');
	ck_assert_msg(guest_memory_sync(&mem) == 0, "%s", error_message());
	ck_assert_int_eq(file_byte(2 * PS + 7), 's');
	ck_assert_int_eq(file_byte(2 * PS + 8), 'C');
}
END_TEST

START_TEST(test_a_mapping_without_write_is_a_read_only_region_for_kvm)
{
	struct guest_memory_map_request q = file_request(0, PS, false, VM_PROT_READ);
	map_ok(MAP_GPA, &q);
	const struct guest_region *g = guest_memory_region(&mem, MAP_GPA);
	ck_assert_int_eq(g->mode, GUEST_MAP_RO);
	ck_assert(guest_region_read_only(g));
	ck_assert_int_eq(guest_byte(MAP_GPA), 'A');
	/* Raising the protection past the maximum the mapping was given is Mach's refusal. */
	ck_assert_int_eq(guest_memory_vm_protect(&mem, MAP_GPA, PS, false, VM_PROT_DEFAULT), -EACCES);
}
END_TEST

START_TEST(test_anywhere_takes_the_lowest_free_range)
{
	struct guest_memory_map_request q = file_request(0, PS, true, VM_PROT_ALL);
	uint64_t at = 12345;
	ck_assert_msg(guest_memory_vm_map(&mem, &at, true, &q) == 0, "%s", error_message());
	ck_assert_uint_eq(at, RAM_SIZE);
	ck_assert_int_eq(guest_byte(RAM_SIZE), 'A');
}
END_TEST

START_TEST(test_an_external_pager_mapped_at_run_time_serves_the_guests_reads)
{
	struct fake_pager server;
	fake_pager_listen(&server, FAKE_PAGER_SERVE, 32 * PS);
	struct guest_memory_map_request q = external_request(server.path, 8 * PS, 8 * PS, VM_PROT_READ, VM_PROT_READ);
	map_ok(MAP_GPA, &q);
	ck_assert_int_eq(guest_memory_region(&mem, MAP_GPA)->kind, GUEST_REGION_EXTERNAL);
	ck_assert_int_eq(guest_byte(MAP_GPA + 3 * PS), fake_pager_byte(11 * PS));
	ck_assert_uint_ge(atomic_load(&server.requests), 1);
	ck_assert_uint_ge(atomic_load(&server.last_offset), 8 * PS);
	guest_memory_destroy(&mem);
	fake_pager_stop(&server);
}
END_TEST

/* RAM page @a is copied to page @b: each side's later writes stay its own (copy on write).
 * The copy is first read after @a was written: until then nothing of it is in guest RAM, so
 * a write to @a that no write-protection caught would show through. */
static void expect_copy_on_write(uint64_t a, uint64_t b)
{
	memset(mem.base + a, 'x', PS);
	ck_assert_msg(guest_memory_vm_copy(&mem, a, PS, b) == 0, "%s", error_message());
	guest_set(a + 10, 'y');
	ck_assert_int_eq(guest_byte(b + 10), 'x');
	guest_set(b + 20, 'z');
	ck_assert_int_eq(guest_byte(a + 20), 'x');
	ck_assert_int_eq(guest_byte(a + 10), 'y');
	ck_assert_int_eq(guest_byte(b + 20), 'z');
}

START_TEST(test_vm_copy_gives_a_copy_later_writes_on_either_side_do_not_reach)
{
	expect_copy_on_write(64 * PS, 128 * PS);
}
END_TEST

START_TEST(test_vm_copy_from_a_file_mapping_into_ram_reads_the_file)
{
	struct guest_memory_map_request q = file_request(0, FILE_PAGES * PS, true, VM_PROT_ALL);
	map_ok(MAP_GPA, &q);
	ck_assert_msg(guest_memory_vm_copy(&mem, MAP_GPA + PS, 2 * PS, 0) == 0, "%s", error_message());
	ck_assert_int_eq(guest_byte(0), 'B');
	ck_assert_int_eq(guest_byte(PS + 1), 'C');
	guest_set(0, 'r');
	ck_assert_int_eq(guest_byte(MAP_GPA + PS), 'B');
	ck_assert_int_eq(file_byte(PS), 'B');
}
END_TEST

/*
 * The map here:  [0, RAM)  RAM     hole     [MAP_GPA, MAP_GPA + PS)  the file     nothing above
 * vm_region finds the entry at an address, the next one above a hole, none above the last.
 */
START_TEST(test_vm_region_at_answers_for_an_address_as_mach_does)
{
	struct guest_memory_map_request q = file_request(0, PS, true, VM_PROT_ALL);
	map_ok(MAP_GPA, &q);
	static struct guest_memory_entry e;
	uint64_t addr = 5 * PS + 3;
	ck_assert_int_eq(guest_memory_vm_region_at(&mem, &addr, &e), 0);
	ck_assert_uint_eq(addr, 0);
	ck_assert_uint_eq(e.start, 0);
	ck_assert_uint_eq(e.end, RAM_SIZE);
	ck_assert_int_eq(e.protection, VM_PROT_DEFAULT);
	addr = RAM_SIZE + PS; /* in the hole */
	ck_assert_int_eq(guest_memory_vm_region_at(&mem, &addr, &e), 0);
	ck_assert_uint_eq(addr, MAP_GPA);
	ck_assert_uint_eq(e.end, MAP_GPA + PS);
	ck_assert_uint_ge(e.nchain, 1);
	ck_assert_str_eq(e.chain[e.nchain - 1].pager, "file");
	addr = MAP_GPA + PS; /* above the last */
	ck_assert_int_eq(guest_memory_vm_region_at(&mem, &addr, &e), -ENOMEM);
	ck_assert_str_eq(error_message(), "vm_region at 0x1001000: KERN_NO_SPACE");
	addr = GUEST_MEMORY_WINDOW;
	ck_assert_int_eq(guest_memory_vm_region_at(&mem, &addr, &e), -EFAULT);
	ck_assert_ptr_nonnull(strstr(error_message(), "KERN_INVALID_ADDRESS"));
}
END_TEST

START_TEST(test_vm_statistics_move_as_the_guest_faults)
{
	struct guest_memory_vm_statistics a, b;
	ck_assert_int_eq(guest_memory_vm_statistics(&mem, &a), 0);
	ck_assert_uint_eq(a.pagesize, PS);
	ck_assert_uint_eq(a.free_count, GUEST_MEMORY_STAT_UNKNOWN); /* no limit */
	ck_assert_uint_eq(a.wire_count, 0);
	ck_assert_uint_eq(a.inactive_count, 0);
	guest_set(300 * PS, 1); /* a zero fill */
	struct guest_memory_map_request q = file_request(0, FILE_PAGES * PS, true, VM_PROT_ALL);
	map_ok(MAP_GPA, &q);
	(void)guest_byte(MAP_GPA); /* a page-in, copied up */
	ck_assert_int_eq(guest_memory_vm_statistics(&mem, &b), 0);
	ck_assert_uint_ge(b.faults, a.faults + 2);
	ck_assert_uint_gt(b.zero_fill_count, a.zero_fill_count);
	ck_assert_uint_gt(b.pageins, a.pageins);
	ck_assert_uint_gt(b.cow_faults, a.cow_faults);
	ck_assert_uint_gt(b.active_count, a.active_count);
	ck_assert_uint_gt(b.lookups, a.lookups);
}
END_TEST

START_TEST(test_vm_statistics_free_count_is_the_room_left_under_a_limit)
{
	guest_memory_destroy(&mem);
	memset(&mem, 0, sizeof(mem));
	struct guest_memory_config cfg = {.ram_size = RAM_SIZE, .mem_limit = 256 * PS, .cluster = 16};
	ck_assert_msg(guest_memory_create(&mem, &cfg) == 0, "%s", error_message());
	ck_assert_int_eq(guest_memory_start(&mem, on_error, NULL), 0);
	struct guest_memory_vm_statistics s;
	ck_assert_int_eq(guest_memory_vm_statistics(&mem, &s), 0);
	uint64_t before = s.free_count;
	ck_assert_uint_le(before, 256);
	guest_set(0, 1);
	ck_assert_int_eq(guest_memory_vm_statistics(&mem, &s), 0);
	ck_assert_uint_eq(s.free_count, before - s.active_count);
}
END_TEST

/* Entries of the map, each with what vm_region says of it (guest_memory_vm_region). */
struct seen {
	struct guest_memory_entry e[8];
	unsigned n;
};

static void seen_entry(void *arg, const struct guest_memory_entry *e)
{
	struct seen *s = arg;
	if (s->n < 8)
		s->e[s->n++] = *e;
}

START_TEST(test_set_attributes_shows_in_vm_region_and_the_next_fault_uses_the_cluster)
{
	static struct seen s;
	struct guest_memory_attributes a = {.cluster = 4, .copy_strategy = VM_COPY_NONE, .cache = VM_CACHE_UNCACHED};
	ck_assert_msg(guest_memory_vm_set_attributes(&mem, 256 * PS, 128 * PS, &a) == 0, "%s", error_message());
	uint64_t objects;
	s.n = 0;
	ck_assert_int_eq(guest_memory_vm_region(&mem, seen_entry, &s, &objects), 0);
	ck_assert_uint_eq(s.n, 3); /* split around the range */
	ck_assert_uint_eq(s.e[1].start, 256 * PS);
	ck_assert_uint_eq(s.e[1].end, 384 * PS);
	ck_assert_uint_eq(s.e[2].cluster, GUEST_MEMORY_DEFAULT_CLUSTER);
	ck_assert_uint_eq(s.e[1].cluster, 4);
	ck_assert_int_eq(s.e[1].copy_strategy, VM_COPY_NONE);
	ck_assert_int_eq(s.e[1].cache, VM_CACHE_UNCACHED);
	ck_assert_uint_eq(s.e[0].cluster, GUEST_MEMORY_DEFAULT_CLUSTER);
	/* One page touched in the range brings its cluster of 4, not the default 64. */
	guest_set(256 * PS, 1);
	static struct guest_memory_entry e;
	uint64_t addr = 256 * PS;
	ck_assert_int_eq(guest_memory_vm_region_at(&mem, &addr, &e), 0);
	ck_assert_uint_eq(e.resident, 4);
	/* Only the cache mode changed later: the others are kept. */
	a = (struct guest_memory_attributes){GUEST_MEMORY_ATTR_KEEP, GUEST_MEMORY_ATTR_KEEP, VM_CACHE_WRITETHROUGH};
	ck_assert_int_eq(guest_memory_vm_set_attributes(&mem, 256 * PS, 128 * PS, &a), 0);
	ck_assert_int_eq(guest_memory_vm_region_at(&mem, &addr, &e), 0);
	ck_assert_uint_eq(e.cluster, 4);
	ck_assert_int_eq(e.cache, VM_CACHE_WRITETHROUGH);
}
END_TEST

/* A stored snapshot opened as the monitor's vm-map opens it; counts its releases. */
#define SNAP_PAGES 4096u /* 16 MiB: the least RAM a VM state holds */
static char store_dir[64];
static struct restore snap;
static int snap_releases;

static void snap_release(void *owner)
{
	ck_assert_ptr_eq(owner, &snap);
	restore_close(&snap);
	snap_releases++;
}

static struct guest_memory_map_request snapshot_request(uint64_t offset, uint64_t size, bool copy, vm_prot_t max)
{
	strcpy(store_dir, "/tmp/vmm-map-store-XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(store_dir));
	store_pages_write_guest(store_dir, "s", SNAP_PAGES);
	ck_assert_msg(restore_open(&snap, store_dir, "s", "a test", false) == 0, "%s", error_message());
	snap_releases = 0;
	return (struct guest_memory_map_request){.kind = GUEST_REGION_SNAPSHOT, .path = "snapshot s", .pager = snap.pager,
						 .release = snap_release, .owner = &snap, .offset = offset, .size = size,
						 .copy = copy, .cur = max, .max = max, .inheritance = VM_INHERIT_COPY};
}

static void remove_store(void)
{
	char cmd[128];
	snprintf(cmd, sizeof(cmd), "rm -rf %s", store_dir);
	ck_assert_int_eq(system(cmd), 0);
}

/* Page @p of the mapping at MAP_GPA must read as the snapshot's page @p + @first. */
static void expect_snapshot_page(uint64_t p, uint64_t first)
{
	ck_assert_msg(memcmp(mem.base + MAP_GPA + p * PS, store_pages_make(p + first, 1, store_pages_kind(p + first)), PS) == 0,
		      "page %llu is not the snapshot's page %llu", (unsigned long long)p, (unsigned long long)(p + first));
}

START_TEST(test_a_stored_snapshot_mapped_at_run_time_reads_as_its_pages_and_keeps_them)
{
	struct guest_memory_map_request q = snapshot_request(16 * PS, 32 * PS, true, VM_PROT_ALL);
	map_ok(MAP_GPA, &q);
	const struct guest_region *g = guest_memory_region(&mem, MAP_GPA);
	ck_assert_int_eq(g->kind, GUEST_REGION_SNAPSHOT);
	ck_assert_str_eq(g->path, "snapshot s");
	for (uint64_t p = 0; p < 32; p += 5)
		expect_snapshot_page(p, 16);
	/* A copy: the guest's writes stay its own; the store's page is unchanged. */
	guest_set(MAP_GPA + PS + 3, 0xee);
	ck_assert_int_eq(guest_byte(MAP_GPA + PS + 3), 0xee);
	const void *stored;
	uint64_t hash;
	ck_assert_int_eq(store_snapshot_page(snap.snap, 17, &stored, &hash), 0);
	ck_assert_ptr_nonnull(stored);
	ck_assert_int_eq(memcmp(stored, store_pages_make(17, 1, store_pages_kind(17)), PS), 0);
	ck_assert_int_eq(snap_releases, 0);
	guest_memory_destroy(&mem);
	ck_assert_int_eq(snap_releases, 1); /* let go with the map, not before */
	remove_store();
}
END_TEST

START_TEST(test_a_refused_snapshot_mapping_lets_the_snapshot_go_at_once)
{
	/* Shared and writable: a stored snapshot takes no writes. */
	struct guest_memory_map_request q = snapshot_request(0, PS, false, VM_PROT_ALL);
	uint64_t at = MAP_GPA;
	ck_assert_int_eq(guest_memory_vm_map(&mem, &at, false, &q), -EACCES);
	ck_assert_msg(strstr(error_message(), "KERN_PROTECTION_FAILURE") && strstr(error_message(), "snapshot s"), "%s",
		      error_message());
	ck_assert_int_eq(snap_releases, 1);
	remove_store();
	/* Past the snapshot's end: the object's bounds. */
	q = snapshot_request((SNAP_PAGES - 1) * PS, 2 * PS, true, VM_PROT_READ);
	ck_assert_int_eq(guest_memory_vm_map(&mem, &at, false, &q), -EINVAL);
	ck_assert_ptr_nonnull(strstr(error_message(), "KERN_INVALID_ARGUMENT"));
	ck_assert_int_eq(snap_releases, 1);
	ck_assert_ptr_null(guest_memory_region(&mem, MAP_GPA));
	remove_store();
}
END_TEST

/* One malformed vm_map: what is asked, the errno and the Mach code its message names. */
struct bad_map {
	const char *what;
	uint64_t gpa, offset, size;
	vm_prot_t cur, max;
	bool copy;
	int kind;        /* enum guest_region_kind; -1: the file */
	const char *file; /* NULL: the test's file */
	unsigned inheritance;
	int err;
	const char *code;
};

static const struct bad_map bad_maps[] = {
	{"unaligned address", MAP_GPA + 1, 0, PS, VM_PROT_READ, VM_PROT_ALL, true, -1, NULL, VM_INHERIT_COPY, -EINVAL,
	 "KERN_INVALID_ARGUMENT"},
	{"unaligned size", MAP_GPA, 0, PS + 1, VM_PROT_READ, VM_PROT_ALL, true, -1, NULL, VM_INHERIT_COPY, -EINVAL,
	 "KERN_INVALID_ARGUMENT"},
	{"unaligned offset", MAP_GPA, 1, PS, VM_PROT_READ, VM_PROT_ALL, true, -1, NULL, VM_INHERIT_COPY, -EINVAL,
	 "KERN_INVALID_ARGUMENT"},
	{"size 0", MAP_GPA, 0, 0, VM_PROT_READ, VM_PROT_ALL, true, -1, NULL, VM_INHERIT_COPY, -EINVAL,
	 "KERN_INVALID_ARGUMENT"},
	{"past the file's data", MAP_GPA, 2 * PS, 3 * PS, VM_PROT_READ, VM_PROT_ALL, true, -1, NULL, VM_INHERIT_COPY,
	 -EINVAL, "KERN_INVALID_ARGUMENT"},
	{"overlapping RAM", RAM_SIZE - PS, 0, 2 * PS, VM_PROT_READ, VM_PROT_ALL, true, -1, NULL, VM_INHERIT_COPY,
	 -ENOMEM, "KERN_NO_SPACE"},
	{"beyond the guest-physical window", GUEST_MEMORY_WINDOW, 0, PS, VM_PROT_READ, VM_PROT_ALL, true, -1, NULL,
	 VM_INHERIT_COPY, -EFAULT, "KERN_INVALID_ADDRESS"},
	{"protection above the maximum", MAP_GPA, 0, PS, VM_PROT_ALL, VM_PROT_READ, true, -1, NULL, VM_INHERIT_COPY,
	 -EACCES, "KERN_PROTECTION_FAILURE"},
	{"unknown protection bits", MAP_GPA, 0, PS, 0x10, 0x10, true, -1, NULL, VM_INHERIT_COPY, -EINVAL,
	 "KERN_INVALID_ARGUMENT"},
	{"unknown inheritance", MAP_GPA, 0, PS, VM_PROT_READ, VM_PROT_ALL, true, -1, NULL, 7, -EINVAL,
	 "KERN_INVALID_ARGUMENT"},
	{"a path that does not exist", MAP_GPA, 0, PS, VM_PROT_READ, VM_PROT_ALL, true, -1, "/nonexistent/vmm-map",
	 VM_INHERIT_COPY, -EINVAL, "KERN_INVALID_ARGUMENT"},
	{"a directory", MAP_GPA, 0, PS, VM_PROT_READ, VM_PROT_ALL, true, -1, "/tmp", VM_INHERIT_COPY, -EINVAL,
	 "KERN_INVALID_ARGUMENT"},
	{"an empty path", MAP_GPA, 0, PS, VM_PROT_READ, VM_PROT_ALL, true, -1, "", VM_INHERIT_COPY, -EINVAL,
	 "KERN_INVALID_ARGUMENT"},
	{"a socket nobody listens on", MAP_GPA, 0, PS, VM_PROT_READ, VM_PROT_READ, false, GUEST_REGION_EXTERNAL,
	 "/nonexistent/vmm-pager.sock", VM_INHERIT_COPY, -EINVAL, "KERN_INVALID_ARGUMENT"},
	{"RAM is not an object to map", MAP_GPA, 0, PS, VM_PROT_READ, VM_PROT_ALL, true, GUEST_REGION_RAM, NULL,
	 VM_INHERIT_COPY, -EINVAL, "KERN_INVALID_ARGUMENT"},
};

START_TEST(test_a_malformed_vm_map_returns_machs_error_and_changes_nothing)
{
	const struct bad_map *b = &bad_maps[_i];
	struct guest_memory_map_request q = {
		.kind = b->kind < 0 ? GUEST_REGION_FILE : (enum guest_region_kind)b->kind, .path = b->file ? b->file : path,
		.offset = b->offset, .size = b->size, .copy = b->copy, .cur = b->cur, .max = b->max,
		.inheritance = b->inheritance};
	unsigned n = mem.nregions;
	uint64_t at = b->gpa;
	int r = guest_memory_vm_map(&mem, &at, false, &q);
	ck_assert_msg(r == b->err && strstr(error_message(), b->code) && strstr(error_message(), "vm_map of ") &&
			      !strchr(error_message(), '\n'),
		      "%s: %d, %s", b->what, r, error_message());
	ck_assert_uint_eq(mem.nregions, n);
	static struct guest_memory_entry e;
	uint64_t addr = RAM_SIZE;
	ck_assert_int_eq(guest_memory_vm_region_at(&mem, &addr, &e), -ENOMEM); /* nothing mapped above RAM */
}
END_TEST

START_TEST(test_a_shared_writable_mapping_of_a_pager_that_takes_no_writes_is_a_protection_failure)
{
	struct fake_pager server;
	fake_pager_listen(&server, FAKE_PAGER_READ_ONLY, 16 * PS);
	struct guest_memory_map_request q = external_request(server.path, 0, 16 * PS, VM_PROT_DEFAULT, VM_PROT_ALL);
	uint64_t at = MAP_GPA;
	ck_assert_int_eq(guest_memory_vm_map(&mem, &at, false, &q), -EACCES);
	ck_assert_msg(strstr(error_message(), "KERN_PROTECTION_FAILURE") && strstr(error_message(), "takes no writes"), "%s",
		      error_message());
	ck_assert_ptr_null(guest_memory_region(&mem, MAP_GPA));
	fake_pager_stop(&server);
}
END_TEST

START_TEST(test_vm_map_past_the_most_regions_is_a_resource_shortage)
{
	while (mem.nregions < GUEST_MEMORY_MAX_REGIONS) {
		uint64_t at = (64ull << 20) + mem.nregions * 2 * PS; /* apart, so they do not merge */
		ck_assert_msg(guest_memory_allocate(&mem, &at, PS, false) == 0, "%s", error_message());
	}
	struct guest_memory_map_request q = file_request(0, PS, true, VM_PROT_ALL);
	uint64_t at = MAP_GPA;
	ck_assert_int_eq(guest_memory_vm_map(&mem, &at, false, &q), -ENOMEM);
	ck_assert_ptr_nonnull(strstr(error_message(), "KERN_RESOURCE_SHORTAGE"));
	ck_assert_ptr_null(guest_memory_region(&mem, MAP_GPA));
}
END_TEST

START_TEST(test_a_malformed_vm_copy_returns_machs_error)
{
	/* A read-only file mapping as a destination, a hole as a source. */
	struct guest_memory_map_request q = file_request(0, PS, false, VM_PROT_READ);
	map_ok(MAP_GPA, &q);
	const struct {
		uint64_t src, size, dst;
		int err;
		const char *code;
	} bad[] = {
		{1, PS, 2 * PS, -EINVAL, "KERN_INVALID_ARGUMENT"},
		{0, PS + 1, 2 * PS, -EINVAL, "KERN_INVALID_ARGUMENT"},
		{0, PS, 2 * PS + 1, -EINVAL, "KERN_INVALID_ARGUMENT"},
		{RAM_SIZE, PS, 0, -EFAULT, "KERN_INVALID_ADDRESS"},
		{0, PS, RAM_SIZE, -EFAULT, "KERN_INVALID_ADDRESS"},
		{0, PS, GUEST_MEMORY_WINDOW, -EFAULT, "KERN_INVALID_ADDRESS"},
		{0, PS, MAP_GPA, -EACCES, "KERN_PROTECTION_FAILURE"},
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		int r = guest_memory_vm_copy(&mem, bad[i].src, bad[i].size, bad[i].dst);
		ck_assert_msg(r == bad[i].err && strstr(error_message(), bad[i].code), "case %zu: %d, %s", i, r,
			      error_message());
	}
	ck_assert_int_eq(guest_byte(MAP_GPA), 'A');
}
END_TEST

START_TEST(test_malformed_attributes_return_machs_error_and_change_nothing)
{
	const struct {
		uint64_t addr, size;
		struct guest_memory_attributes a;
		int err;
		const char *code;
	} bad[] = {
		{0, PS, {0, GUEST_MEMORY_ATTR_KEEP, GUEST_MEMORY_ATTR_KEEP}, -EINVAL, "KERN_INVALID_ARGUMENT"},
		{0, PS, {VM_CLUSTER_MAX + 1, GUEST_MEMORY_ATTR_KEEP, GUEST_MEMORY_ATTR_KEEP}, -EINVAL, "KERN_INVALID_ARGUMENT"},
		{0, PS, {8, 2, GUEST_MEMORY_ATTR_KEEP}, -EINVAL, "KERN_INVALID_ARGUMENT"},
		{0, PS, {8, VM_COPY_NONE, 3}, -EINVAL, "KERN_INVALID_ARGUMENT"},
		{0, PS, {GUEST_MEMORY_ATTR_KEEP, GUEST_MEMORY_ATTR_KEEP, GUEST_MEMORY_ATTR_KEEP}, -EINVAL,
		 "KERN_INVALID_ARGUMENT"},
		{1, PS, {8, GUEST_MEMORY_ATTR_KEEP, GUEST_MEMORY_ATTR_KEEP}, -EINVAL, "KERN_INVALID_ARGUMENT"},
		{RAM_SIZE - PS, 2 * PS, {8, VM_COPY_NONE, GUEST_MEMORY_ATTR_KEEP}, -EFAULT, "KERN_INVALID_ADDRESS"},
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		int r = guest_memory_vm_set_attributes(&mem, bad[i].addr, bad[i].size, &bad[i].a);
		ck_assert_msg(r == bad[i].err && strstr(error_message(), bad[i].code), "case %zu: %d, %s", i, r,
			      error_message());
	}
	static struct guest_memory_entry e;
	uint64_t addr = 0;
	ck_assert_int_eq(guest_memory_vm_region_at(&mem, &addr, &e), 0);
	ck_assert_uint_eq(e.end, RAM_SIZE); /* not split */
	ck_assert_uint_eq(e.cluster, GUEST_MEMORY_DEFAULT_CLUSTER);
	ck_assert_int_eq(e.copy_strategy, VM_COPY_DELAY);
}
END_TEST

/* ---- vm_deallocate of mapped objects ---------------------------------------------------- */

static void deallocate_ok(uint64_t gpa, uint64_t size)
{
	ck_assert_msg(guest_memory_deallocate(&mem, gpa, size) == 0, "%s", error_message());
}

/* Entries of the map at or above @gpa, as query-memory sees them (guest_memory_vm_region). */
static unsigned entries_from(uint64_t gpa)
{
	static struct seen s;
	uint64_t objects;
	s.n = 0;
	ck_assert_int_eq(guest_memory_vm_region(&mem, seen_entry, &s, &objects), 0);
	unsigned n = 0;
	for (unsigned i = 0; i < s.n; i++)
		n += s.e[i].end > gpa;
	return n;
}

/* After the mapping at MAP_GPA went: nothing there, and RAM allocated in its place reads zero. */
static void expect_gone_then_zero_ram(uint64_t pages)
{
	ck_assert_ptr_null(guest_memory_region(&mem, MAP_GPA));
	ck_assert_uint_eq(entries_from(MAP_GPA), 0);
	static struct guest_memory_entry e;
	uint64_t addr = MAP_GPA;
	ck_assert_int_eq(guest_memory_vm_region_at(&mem, &addr, &e), -ENOMEM);
	uint64_t at = MAP_GPA;
	ck_assert_msg(guest_memory_allocate(&mem, &at, pages * PS, false) == 0, "%s", error_message());
	for (uint64_t p = 0; p < pages; p++)
		ck_assert_int_eq(guest_byte(MAP_GPA + p * PS + 9), 0);
}

START_TEST(test_deallocating_a_copy_of_a_file_removes_it_and_ram_there_reads_zero)
{
	unsigned regions = mem.nregions;
	struct guest_memory_map_request q = file_request(0, FILE_PAGES * PS, true, VM_PROT_ALL);
	map_ok(MAP_GPA, &q);
	guest_set(MAP_GPA + PS + 9, 'w');
	ck_assert_uint_eq(entries_from(MAP_GPA), 1);
	deallocate_ok(MAP_GPA, FILE_PAGES * PS);
	ck_assert_uint_eq(mem.nregions, regions);
	ck_assert_uint_eq(mem.nheld, 0); /* the file pager let go */
	ck_assert_int_eq(file_byte(PS + 9), 'B');
	expect_gone_then_zero_ram(FILE_PAGES);
}
END_TEST

START_TEST(test_deallocating_a_shared_file_mapping_writes_the_guests_changes_to_the_file)
{
	struct guest_memory_map_request q = file_request(0, FILE_PAGES * PS, false, VM_PROT_ALL);
	map_ok(MAP_GPA, &q);
	guest_set(MAP_GPA + 7, 's');
	guest_set(MAP_GPA + 3 * PS + 7, 't');
	deallocate_ok(MAP_GPA, FILE_PAGES * PS);
	ck_assert_int_eq(file_byte(7), 's');
	ck_assert_int_eq(file_byte(3 * PS + 7), 't');
	ck_assert_int_eq(file_byte(8), 'A');
	expect_gone_then_zero_ram(FILE_PAGES);
}
END_TEST

/*
 * The file's 4 pages mapped shared:   [A B C D]   the middle two deallocated:   [A] . . [D]
 * The removed pages' changes reach the file at once (the object lives on in the other two);
 * the two pieces are regions of one object, each still reading the file.
 */
START_TEST(test_deallocating_part_of_a_shared_file_mapping_leaves_the_rest_reading_the_file)
{
	unsigned regions = mem.nregions;
	struct guest_memory_map_request q = file_request(0, FILE_PAGES * PS, false, VM_PROT_ALL);
	map_ok(MAP_GPA, &q);
	ck_assert_int_eq(guest_byte(MAP_GPA + 3), 'A'); /* page 0 in; the others are not */
	guest_set(MAP_GPA + PS + 5, 'x');
	deallocate_ok(MAP_GPA + PS, 2 * PS);
	ck_assert_int_eq(file_byte(PS + 5), 'x');
	ck_assert_uint_eq(mem.nregions, regions + 2);
	const struct guest_region *lo = guest_memory_region(&mem, MAP_GPA), *hi = guest_memory_region(&mem, MAP_GPA + 3 * PS);
	ck_assert_ptr_nonnull(lo);
	ck_assert_ptr_nonnull(hi);
	ck_assert_ptr_null(guest_memory_region(&mem, MAP_GPA + PS));
	ck_assert_uint_eq(lo->size, PS);
	ck_assert_uint_eq(hi->gpa, MAP_GPA + 3 * PS);
	ck_assert_uint_eq(hi->size, PS);
	ck_assert_ptr_eq(lo->pager, hi->pager);
	ck_assert_int_eq(hi->mode, GUEST_MAP_SHARED);
	ck_assert_uint_ne(lo->slot, hi->slot);
	ck_assert_uint_eq(entries_from(MAP_GPA), 2);
	ck_assert_uint_eq(mem.nheld, 1);
	ck_assert_int_eq(guest_byte(MAP_GPA + 3 * PS + 5), 'D'); /* a fault served by the pager */
	guest_set(MAP_GPA + 3 * PS + 5, 'y');
	deallocate_ok(MAP_GPA, PS);
	ck_assert_uint_eq(mem.nheld, 1); /* the last piece still maps it */
	ck_assert_int_eq(guest_byte(MAP_GPA + 3 * PS + 6), 'D');
	deallocate_ok(MAP_GPA + 3 * PS, PS);
	ck_assert_uint_eq(mem.nheld, 0);
	ck_assert_uint_eq(mem.nregions, regions);
	ck_assert_int_eq(file_byte(3 * PS + 5), 'y');
	expect_gone_then_zero_ram(FILE_PAGES);
}
END_TEST

START_TEST(test_a_write_back_that_fails_leaves_the_mapping_as_it_was)
{
	struct guest_memory_map_request q = file_request(0, FILE_PAGES * PS, false, VM_PROT_ALL);
	map_ok(MAP_GPA, &q);
	guest_set(MAP_GPA + 2 * PS + 1, 'z');
	ck_assert_int_eq(truncate(path, 100), 0); /* the page written is past the file's end now */
	ck_assert_int_eq(guest_memory_deallocate(&mem, MAP_GPA, FILE_PAGES * PS), -EIO);
	ck_assert_msg(strstr(error_message(), "vm_deallocate of [0x1000000, +0x4000): KERN_MEMORY_ERROR") &&
			      strstr(error_message(), "shrank"),
		      "%s", error_message());
	ck_assert_ptr_nonnull(guest_memory_region(&mem, MAP_GPA));
	ck_assert_uint_eq(entries_from(MAP_GPA), 1);
	ck_assert_uint_eq(mem.nheld, 1);
	ck_assert_int_eq(guest_byte(MAP_GPA + 2 * PS + 1), 'z');
	/* Discarded: removed all the same, the change lost (the file not grown again). */
	ck_assert_msg(guest_memory_discard(&mem, MAP_GPA, FILE_PAGES * PS) == 0, "%s", error_message());
	ck_assert_ptr_null(guest_memory_region(&mem, MAP_GPA));
	ck_assert_uint_eq(mem.nheld, 0);
	struct stat st;
	ck_assert_int_eq(stat(path, &st), 0);
	ck_assert_int_eq(st.st_size, 100);
}
END_TEST

START_TEST(test_deallocating_an_external_pagers_object_returns_its_pages_and_terminates_it)
{
	struct fake_pager server;
	fake_pager_listen(&server, FAKE_PAGER_KEEP, 8 * PS);
	struct guest_memory_map_request q = external_request(server.path, 0, 8 * PS, VM_PROT_DEFAULT, VM_PROT_ALL);
	map_ok(MAP_GPA, &q);
	ck_assert_int_eq(guest_byte(MAP_GPA + 2 * PS), fake_pager_byte(2 * PS));
	guest_set(MAP_GPA + 2 * PS + 11, 0x5a);
	deallocate_ok(MAP_GPA, 8 * PS);
	ck_assert_uint_eq(mem.nheld, 0);
	/* DATA_RETURN is answered: the server had the page before the call returned. */
	ck_assert_uint_ge(atomic_load(&server.returns), 1);
	ck_assert_int_eq(server.data[2 * PS + 11], 0x5a);
	/* The pager let go: its socket closed, the server's thread ends, TERMINATE read. */
	fake_pager_stop(&server);
	ck_assert_uint_eq(atomic_load(&server.terminates), 1);
	expect_gone_then_zero_ram(8);
}
END_TEST

/* An external pager gone with a shared mapping's change: vm_deallocate keeps the mapping
 * (the change stays readable), discarding removes it all the same. */
START_TEST(test_a_shared_mapping_whose_pager_is_gone_stays_until_discarded)
{
	struct fake_pager server;
	fake_pager_listen(&server, FAKE_PAGER_KEEP, 8 * PS);
	struct guest_memory_map_request q = external_request(server.path, 0, 8 * PS, VM_PROT_DEFAULT, VM_PROT_ALL);
	map_ok(MAP_GPA, &q);
	guest_set(MAP_GPA + 2 * PS + 11, 0x5a);
	ck_assert_int_eq(shutdown(server.peer, SHUT_RDWR), 0); /* the pager is gone */
	ck_assert_int_eq(guest_memory_deallocate(&mem, MAP_GPA, 8 * PS), -EIO);
	ck_assert_msg(strstr(error_message(), "KERN_MEMORY_ERROR") &&
			      strstr(error_message(), "nothing removed; discarding drops the changes"),
		      "%s", error_message());
	ck_assert_ptr_nonnull(guest_memory_region(&mem, MAP_GPA));
	ck_assert_int_eq(guest_byte(MAP_GPA + 2 * PS + 11), 0x5a);
	ck_assert_msg(guest_memory_discard(&mem, MAP_GPA, 8 * PS) == 0, "%s", error_message());
	ck_assert_ptr_null(guest_memory_region(&mem, MAP_GPA));
	ck_assert_uint_eq(mem.nheld, 0);
	fake_pager_stop(&server);
	expect_gone_then_zero_ram(8);
}
END_TEST

START_TEST(test_deallocating_a_snapshot_mapping_lets_its_pin_go_once_nothing_maps_it)
{
	struct guest_memory_map_request q = snapshot_request(16 * PS, 32 * PS, true, VM_PROT_ALL);
	map_ok(MAP_GPA, &q);
	expect_snapshot_page(3, 16);
	deallocate_ok(MAP_GPA, 16 * PS);
	ck_assert_int_eq(snap_releases, 0); /* the upper half still maps it */
	expect_snapshot_page(20, 16);       /* a fault the snapshot pager serves */
	deallocate_ok(MAP_GPA + 16 * PS, 16 * PS);
	ck_assert_int_eq(snap_releases, 1);
	ck_assert_uint_eq(mem.nheld, 0);
	remove_store();
	expect_gone_then_zero_ram(32);
}
END_TEST

/* RAM copied from a mapping reads through its object: the pin holds until that RAM goes. */
START_TEST(test_a_snapshots_pin_holds_while_ram_copied_from_its_mapping_reads_through_it)
{
	struct guest_memory_map_request q = snapshot_request(0, 8 * PS, false, VM_PROT_READ);
	map_ok(MAP_GPA, &q);
	const uint64_t to = 64 * PS;
	ck_assert_msg(guest_memory_vm_copy(&mem, MAP_GPA, 8 * PS, to) == 0, "%s", error_message());
	deallocate_ok(MAP_GPA, 8 * PS);
	ck_assert_int_eq(snap_releases, 0);
	ck_assert_int_eq(memcmp(mem.base + to + 5 * PS, store_pages_make(5, 1, store_pages_kind(5)), PS), 0);
	deallocate_ok(to, 8 * PS);
	ck_assert_int_eq(snap_releases, 1);
	remove_store();
}
END_TEST

/*
 * The old bug: a read-only mapping is a read-only KVM slot, so the pmap enters its pages
 * host-writable. RAM allocated where it was must have its copy-on-write pages protected
 * again, or a write there would reach the copy.
 */
START_TEST(test_ram_allocated_where_a_read_only_mapping_was_copies_on_write)
{
	struct guest_memory_map_request q = file_request(0, FILE_PAGES * PS, false, VM_PROT_READ);
	map_ok(MAP_GPA, &q);
	ck_assert_int_eq(guest_byte(MAP_GPA), 'A');
	deallocate_ok(MAP_GPA, FILE_PAGES * PS);
	expect_gone_then_zero_ram(FILE_PAGES);
	expect_copy_on_write(MAP_GPA, 64 * PS);
}
END_TEST

/* Each mapping removed after a page of it was copied into RAM leaves its object held (RAM
 * reads through it): past GUEST_MEMORY_MAX_REGIONS such objects vm_map is refused. */
START_TEST(test_objects_held_for_ram_copied_from_them_are_bounded)
{
	struct guest_memory_map_request q = file_request(0, PS, false, VM_PROT_READ);
	for (unsigned i = 0; i < GUEST_MEMORY_MAX_REGIONS; i++) {
		map_ok(MAP_GPA, &q);
		ck_assert_msg(guest_memory_vm_copy(&mem, MAP_GPA, PS, i * PS) == 0, "%s", error_message());
		deallocate_ok(MAP_GPA, PS);
		ck_assert_uint_eq(mem.nheld, i + 1);
	}
	uint64_t at = MAP_GPA;
	ck_assert_int_eq(guest_memory_vm_map(&mem, &at, false, &q), -ENOMEM);
	ck_assert_ptr_nonnull(strstr(error_message(), "KERN_RESOURCE_SHORTAGE"));
	ck_assert_int_eq(guest_byte(5 * PS), 'A');
	/* The RAM that read through them goes: so do they. */
	deallocate_ok(0, GUEST_MEMORY_MAX_REGIONS * PS);
	ck_assert_uint_eq(mem.nheld, 0);
	map_ok(MAP_GPA, &q);
}
END_TEST

START_TEST(test_a_malformed_vm_deallocate_returns_machs_error_and_changes_nothing)
{
	struct guest_memory_map_request q = file_request(0, FILE_PAGES * PS, true, VM_PROT_ALL);
	map_ok(MAP_GPA, &q);
	const struct {
		uint64_t gpa, size;
		int err;
		const char *code;
	} bad[] = {
		{MAP_GPA + 1, PS, -EINVAL, "KERN_INVALID_ARGUMENT"},
		{MAP_GPA, PS + 1, -EINVAL, "KERN_INVALID_ARGUMENT"},
		{MAP_GPA, UINT64_MAX & ~(uint64_t)(PS - 1), -EINVAL, "KERN_INVALID_ARGUMENT"},
		{GUEST_MEMORY_WINDOW - PS, 2 * PS, -EFAULT, "KERN_INVALID_ADDRESS"},
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		int r = guest_memory_deallocate(&mem, bad[i].gpa, bad[i].size);
		ck_assert_msg(r == bad[i].err && strstr(error_message(), bad[i].code) &&
				      strstr(error_message(), "vm_deallocate of "),
			      "case %zu: %d, %s", i, r, error_message());
	}
	/* A cut in the middle needs a region more than the most there may be. */
	while (mem.nregions < GUEST_MEMORY_MAX_REGIONS) {
		uint64_t at = (64ull << 20) + mem.nregions * 2 * PS;
		ck_assert_msg(guest_memory_allocate(&mem, &at, PS, false) == 0, "%s", error_message());
	}
	ck_assert_int_eq(guest_memory_deallocate(&mem, MAP_GPA + PS, PS), -ENOMEM);
	ck_assert_ptr_nonnull(strstr(error_message(), "KERN_RESOURCE_SHORTAGE"));
	ck_assert_uint_eq(guest_memory_region(&mem, MAP_GPA)->size, FILE_PAGES * PS);
	ck_assert_int_eq(guest_byte(MAP_GPA + PS), 'B');
	ck_assert_uint_eq(mem.nheld, 1);
	/* A hole is no error. */
	deallocate_ok(MAP_GPA + FILE_PAGES * PS, 4 * PS);
}
END_TEST

/*
 * A range inherited "share", made host-shared before a fork(2) (as vmm fork does): the
 * bytes stay, the region is the forks' shared memory (writable, out of the userfaultfd),
 * the map keeps the place inherited "share", and a write by the child process reaches the
 * parent while a page inherited "copy" stays each one's own. Nothing else can be allocated
 * there and a snapshot is refused; inherited "copy" again, a child's inheritance makes it
 * RAM of its own with its bytes; vm_deallocate ends it.
 */
START_TEST(test_a_range_inherited_share_is_one_memory_for_the_process_and_its_forks)
{
	const uint64_t at = 64 * PS;
	uint8_t page[PS], back[PS];
	memset(page, 's', PS);
	ck_assert_int_eq(guest_memory_vm_write(&mem, at, page, PS), 0);
	memset(page, 'c', PS);
	ck_assert_int_eq(guest_memory_vm_write(&mem, at + PS, page, PS), 0);
	ck_assert_int_eq(guest_memory_vm_inherit(&mem, at, PS, VM_INHERIT_SHARE), 0);
	ck_assert_msg(guest_memory_share_inherited(&mem) == 1, "%s", error_message());
	const struct guest_region *g = guest_memory_region(&mem, at);
	ck_assert_int_eq(g->kind, GUEST_REGION_HOST_SHARED);
	ck_assert_uint_eq(g->gpa, at);
	ck_assert_uint_eq(g->size, PS);
	ck_assert(!guest_region_read_only(g));
	ck_assert_int_eq(guest_memory_region(&mem, at + PS)->kind, GUEST_REGION_RAM);
	ck_assert_int_eq(guest_memory_vm_read(&mem, at, back, PS), 0);
	memset(page, 's', PS);
	ck_assert_mem_eq(back, page, PS);
	struct guest_memory_entry e;
	uint64_t where = at;
	ck_assert_int_eq(guest_memory_vm_region_at(&mem, &where, &e), 0);
	ck_assert_uint_eq(e.start, at);
	ck_assert_uint_eq(e.end, at + PS);
	ck_assert_int_eq(e.inheritance, VM_INHERIT_SHARE);
	/* Done once: a second call finds nothing more to share. */
	ck_assert_int_eq(guest_memory_share_inherited(&mem), 0);
	ck_assert_uint_eq(guest_memory_region(&mem, at)->size, PS);

	pid_t pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		/* The child writes through its host mapping, as its vCPU would. */
		memset(guest_memory_ptr(&mem, at, PS), 'K', 16);
		memset(guest_memory_ptr(&mem, at + PS, PS), 'k', 16);
		_exit(0);
	}
	int st;
	ck_assert_int_eq(waitpid(pid, &st, 0), pid);
	ck_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	ck_assert_int_eq(guest_memory_vm_read(&mem, at, back, 16), 0);
	ck_assert_mem_eq(back, "KKKKKKKKKKKKKKKK", 16);
	ck_assert_int_eq(guest_memory_vm_read(&mem, at + PS, back, 16), 0);
	ck_assert_mem_eq(back, "cccccccccccccccc", 16);
	ck_assert_int_eq(guest_memory_vm_write(&mem, at + 16, "host", 4), 0);
	ck_assert_mem_eq((const uint8_t *)guest_memory_ptr(&mem, at, PS) + 16, "host", 4);

	uint64_t over = at;
	ck_assert_int_eq(guest_memory_allocate(&mem, &over, PS, false), kern_return_errno(KERN_NO_SPACE));
	ck_assert_int_eq(guest_memory_can_freeze(&mem), -ENOTSUP);
	ck_assert_ptr_nonnull(strstr(error_message(), "sharing memory with their forks"));

	/* Inherited "copy" now: a fork child's inheritance makes it RAM of the child's own,
	 * holding what it held. */
	ck_assert_int_eq(guest_memory_vm_inherit(&mem, at, PS, VM_INHERIT_COPY), 0);
	ck_assert_msg(guest_memory_apply_inheritance(&mem) == 0, "%s", error_message());
	ck_assert_int_eq(guest_memory_region(&mem, at)->kind, GUEST_REGION_RAM);
	ck_assert_int_eq(guest_memory_vm_read(&mem, at, back, 20), 0);
	ck_assert_mem_eq(back, "KKKKKKKKKKKKKKKKhost", 20);
	ck_assert_int_eq(guest_memory_can_freeze(&mem), 0);
	ck_assert_int_eq(guest_memory_deallocate(&mem, at, PS), 0);
	ck_assert_ptr_null(guest_memory_region(&mem, at));
	ck_assert_int_eq(atomic_load(&errors), 0);
}
END_TEST

Suite *guest_memory_map_suite(void)
{
	Suite *s = suite_create("guest_memory_map");
	harness_requires(HARNESS_UFFD);
	TCase *tc = tcase_create("map");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 60);
	HARNESS_ADD_TEST(tc, test_a_file_mapped_at_run_time_reads_as_the_file_from_its_offset);
	HARNESS_ADD_TEST(tc, test_a_range_inherited_share_is_one_memory_for_the_process_and_its_forks);
	HARNESS_ADD_TEST(tc, test_a_copy_of_a_file_keeps_the_guests_writes_from_it);
	HARNESS_ADD_TEST(tc, test_a_shared_file_mapping_takes_the_guests_writes_to_the_file_at_sync);
	HARNESS_ADD_TEST(tc, test_a_mapping_without_write_is_a_read_only_region_for_kvm);
	HARNESS_ADD_TEST(tc, test_anywhere_takes_the_lowest_free_range);
	HARNESS_ADD_TEST(tc, test_an_external_pager_mapped_at_run_time_serves_the_guests_reads);
	HARNESS_ADD_TEST(tc, test_a_stored_snapshot_mapped_at_run_time_reads_as_its_pages_and_keeps_them);
	HARNESS_ADD_TEST(tc, test_a_refused_snapshot_mapping_lets_the_snapshot_go_at_once);
	HARNESS_ADD_TEST(tc, test_vm_copy_gives_a_copy_later_writes_on_either_side_do_not_reach);
	HARNESS_ADD_TEST(tc, test_vm_copy_from_a_file_mapping_into_ram_reads_the_file);
	HARNESS_ADD_TEST(tc, test_vm_region_at_answers_for_an_address_as_mach_does);
	HARNESS_ADD_TEST(tc, test_vm_statistics_move_as_the_guest_faults);
	HARNESS_ADD_TEST(tc, test_vm_statistics_free_count_is_the_room_left_under_a_limit);
	HARNESS_ADD_TEST(tc, test_set_attributes_shows_in_vm_region_and_the_next_fault_uses_the_cluster);
	HARNESS_ADD_LOOP_TEST(tc, test_a_malformed_vm_map_returns_machs_error_and_changes_nothing, 0,
			      (int)(sizeof(bad_maps) / sizeof(bad_maps[0])));
	HARNESS_ADD_TEST(tc, test_a_shared_writable_mapping_of_a_pager_that_takes_no_writes_is_a_protection_failure);
	HARNESS_ADD_TEST(tc, test_vm_map_past_the_most_regions_is_a_resource_shortage);
	HARNESS_ADD_TEST(tc, test_a_malformed_vm_copy_returns_machs_error);
	HARNESS_ADD_TEST(tc, test_malformed_attributes_return_machs_error_and_change_nothing);
	suite_add_tcase(s, tc);
	tc = tcase_create("deallocate");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 60);
	HARNESS_ADD_TEST(tc, test_deallocating_a_copy_of_a_file_removes_it_and_ram_there_reads_zero);
	HARNESS_ADD_TEST(tc, test_deallocating_a_shared_file_mapping_writes_the_guests_changes_to_the_file);
	HARNESS_ADD_TEST(tc, test_deallocating_part_of_a_shared_file_mapping_leaves_the_rest_reading_the_file);
	HARNESS_ADD_TEST(tc, test_a_write_back_that_fails_leaves_the_mapping_as_it_was);
	HARNESS_ADD_TEST(tc, test_deallocating_an_external_pagers_object_returns_its_pages_and_terminates_it);
	HARNESS_ADD_TEST(tc, test_a_shared_mapping_whose_pager_is_gone_stays_until_discarded);
	HARNESS_ADD_TEST(tc, test_deallocating_a_snapshot_mapping_lets_its_pin_go_once_nothing_maps_it);
	HARNESS_ADD_TEST(tc, test_a_snapshots_pin_holds_while_ram_copied_from_its_mapping_reads_through_it);
	HARNESS_ADD_TEST(tc, test_ram_allocated_where_a_read_only_mapping_was_copies_on_write);
	HARNESS_ADD_TEST(tc, test_objects_held_for_ram_copied_from_them_are_bounded);
	HARNESS_ADD_TEST(tc, test_a_malformed_vm_deallocate_returns_machs_error_and_changes_nothing);
	suite_add_tcase(s, tc);
	return s;
}

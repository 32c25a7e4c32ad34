/*
 * Guest memory served on demand through userfaultfd and the Mach core: the default pager,
 * page-out to swap under a limit, host files mapped through the file pager. The guest
 * verifies its own memory; the host compares checksums and file contents.
 */
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "guest/abi.h"
#include "harness.h"
#include "spawn.h"
#include "vm_proc.h"

#define TIMEOUT_S 180

static struct spawn_result r;

/* The value of statistic @key in vmm run --stats output, or -1 when absent. */
static long long stat_of(const char *err, const char *key)
{
	size_t klen = strlen(key);
	for (const char *p = err; (p = strstr(p, key)); p++) {
		if ((p == err || p[-1] == '\n') && p[klen] == ' ')
			return strtoll(p + klen, NULL, 10);
	}
	return -1;
}

#define VMM(...) ck_assert_int_eq(spawn_vmm(&r, TIMEOUT_S, "run", __VA_ARGS__, NULL), 0)

static void expect_status(int status)
{
	ck_assert_msg(r.status == status, "status %d (wanted %d)\nstdout: %s\nstderr: %s", r.status, status, r.out,
		      r.err);
}

static char file_path[64];

/* A host file of @size bytes of pseudo-random data; its FNV-1a 64 in *sum. */
static void make_file(size_t size, uint64_t *sum)
{
	strcpy(file_path, "/tmp/vmm-map-XXXXXX");
	int fd = mkstemp(file_path);
	ck_assert_int_ge(fd, 0);
	unsigned char *buf = malloc(size);
	uint64_t x = 0x1234567;
	for (size_t i = 0; i < size; i++) {
		x = x * 6364136223846793005ull + 1442695040888963407ull;
		buf[i] = (unsigned char)(x >> 56);
	}
	ck_assert_int_eq(write(fd, buf, size), (ssize_t)size);
	close(fd);
	if (sum)
		*sum = abi_fnv1a64(ABI_FNV_INIT, buf, size);
	free(buf);
}

static unsigned char *read_file(size_t *size)
{
	struct stat st;
	ck_assert_int_eq(stat(file_path, &st), 0);
	*size = (size_t)st.st_size;
	unsigned char *buf = malloc(*size);
	FILE *f = fopen(file_path, "rb");
	ck_assert_uint_eq(fread(buf, 1, *size, f), *size);
	fclose(f);
	return buf;
}

START_TEST(default_pager_serves_every_page_the_guest_touches)
{
	VMM("-c", "2", "-m", "256M", "--stats", "-p", "touch=128M", harness_build_path("guest.elf"));
	expect_status(0);
	ck_assert_ptr_nonnull(strstr(r.out, "touch: 32768 pages ok"));
	ck_assert_int_ge(stat_of(r.err, "mem.zero_fills"), 32768);
	ck_assert_int_ge(stat_of(r.err, "mem.uffd_pages_copied"), 32768);
	ck_assert_int_ge(stat_of(r.err, "mem.resident_pages"), 32768);
	/* Clustering: far fewer faults than pages. */
	long long faults = stat_of(r.err, "mem.faults");
	ck_assert_int_gt(faults, 0);
	ck_assert_int_lt(faults, 32768 / 16);
	ck_assert_int_ge(stat_of(r.err, "mem.cluster_pages"), 32768 - faults);
	/* KVM's own figures of each vCPU, kept from before its descriptor closed. */
	ck_assert_int_gt(stat_of(r.err, "vcpu.0.kvm.exits"), 0);
	ck_assert_int_gt(stat_of(r.err, "vcpu.1.kvm.exits"), 0);
	spawn_free(&r);
}
END_TEST

START_TEST(boot_image_is_in_place_before_the_guest_runs)
{
	/* The loader brings in the image and the start info, and CPU 0's stacks and TSS lie
	 * in the image's cluster: hello runs without a single userfaultfd fault. With a cluster
	 * of one page, each page the guest touches beyond what was written is a fault. */
	VMM("-m", "64M", "--stats", "-p", "hello", harness_build_path("guest.elf"));
	expect_status(0);
	ck_assert_int_gt(stat_of(r.err, "mem.prefaulted_pages"), 0);
	ck_assert_int_eq(stat_of(r.err, "mem.uffd_faults"), 0);
	spawn_free(&r);
	VMM("-m", "64M", "--cluster", "1", "--stats", "-p", "hello", harness_build_path("guest.elf"));
	expect_status(0);
	ck_assert_int_gt(stat_of(r.err, "mem.uffd_faults"), 0);
	spawn_free(&r);
}
END_TEST

START_TEST(cluster_of_one_page_faults_once_per_page)
{
	VMM("-m", "64M", "--cluster", "1", "--stats", "-p", "touch=8M", harness_build_path("guest.elf"));
	expect_status(0);
	ck_assert_ptr_nonnull(strstr(r.out, "touch: 2048 pages ok"));
	ck_assert_int_ge(stat_of(r.err, "mem.faults"), 2048);
	ck_assert_int_eq(stat_of(r.err, "mem.cluster_pages"), 0);
	spawn_free(&r);
}
END_TEST

START_TEST(touch_of_four_times_the_limit_verifies_every_page)
{
	VMM("-c", "2", "-m", "512M", "--mem-limit", "64M", "--stats", "-p", "touch=256M", harness_build_path("guest.elf"));
	expect_status(0);
	ck_assert_ptr_nonnull(strstr(r.out, "touch: 65536 pages ok"));
	ck_assert_int_le(stat_of(r.err, "mem.resident_peak"), 16384);
	ck_assert_int_ge(stat_of(r.err, "mem.pageouts"), 65536 - 16384);
	ck_assert_int_ge(stat_of(r.err, "mem.pageins"), 65536 - 16384);
	ck_assert_int_eq(stat_of(r.err, "mem.pageout_failures"), 0);
	spawn_free(&r);
}
END_TEST

START_TEST(named_swap_file_takes_the_pages)
{
	char swap[] = "/tmp/vmm-swap-XXXXXX";
	int fd = mkstemp(swap);
	ck_assert_int_ge(fd, 0);
	close(fd);
	VMM("-m", "128M", "--mem-limit", "16M", "--swap", swap, "-p", "seed=3 touch=64M", harness_build_path("guest.elf"));
	expect_status(0);
	ck_assert_ptr_nonnull(strstr(r.out, "touch: 16384 pages ok"));
	struct stat st;
	ck_assert_int_eq(stat(swap, &st), 0);
	ck_assert_int_ge(st.st_size, (64 - 16) << 20);
	unlink(swap);
	spawn_free(&r);
}
END_TEST

START_TEST(mapped_file_reads_as_the_host_file)
{
	/* An odd size: the tail of the last page reads as zero and is not summed. */
	uint64_t sum;
	make_file(3000017, &sum);
	char map[128], cmd[128], want[64];
	snprintf(map, sizeof(map), "%s@0x40000000,ro", file_path);
	snprintf(cmd, sizeof(cmd), "sum=0x40000000,0x%x", 3000017);
	VMM("-m", "64M", "--map", map, "--stats", "-p", cmd, harness_build_path("guest.elf"));
	expect_status(0);
	snprintf(want, sizeof(want), ": 0x%016" PRIx64 "\n", sum);
	ck_assert_msg(strstr(r.out, want), "wanted %s in %s", want, r.out);
	ck_assert_int_ge(stat_of(r.err, "mem.pageins"), 3000017 / 4096);
	spawn_free(&r);
	unlink(file_path);
}
END_TEST

START_TEST(sequential_walks_are_read_ahead)
{
	/* 16 MiB summed in order: 64 clusters of 64 pages, brought in ahead of the guest's
	 * faults, and the sum still the file's. With one-page clusters, no read-ahead. */
	uint64_t sum;
	make_file(16 << 20, &sum);
	char map[128], want[64];
	snprintf(map, sizeof(map), "%s@0x40000000,ro", file_path);
	snprintf(want, sizeof(want), ": 0x%016" PRIx64 "\n", sum);
	VMM("-m", "64M", "--map", map, "--stats", "-p", "sum=0x40000000,16M", harness_build_path("guest.elf"));
	expect_status(0);
	ck_assert_msg(strstr(r.out, want), "wanted %s in %s", want, r.out);
	/* At least one cluster ahead for each fault after the first two, however the two
	 * threads are scheduled: at most about half the clusters fault. */
	ck_assert_int_ge(stat_of(r.err, "mem.readahead_pages"), 30 * 64);
	ck_assert_int_le(stat_of(r.err, "mem.uffd_faults"), 40);
	spawn_free(&r);
	VMM("-m", "64M", "--cluster", "1", "--map", map, "--stats", "-p", "sum=0x40000000,1M", harness_build_path("guest.elf"));
	expect_status(0);
	ck_assert_int_eq(stat_of(r.err, "mem.readahead_pages"), 0);
	ck_assert_int_ge(stat_of(r.err, "mem.uffd_faults"), 256);
	spawn_free(&r);
	unlink(file_path);
}
END_TEST

START_TEST(read_only_mapping_refuses_guest_writes)
{
	make_file(8192, NULL);
	char map[128];
	snprintf(map, sizeof(map), "%s@1G,ro", file_path);
	VMM("-m", "64M", "--map", map, "-p", "poke=0x40001000", harness_build_path("guest.elf"));
	expect_status(122);
	ck_assert_ptr_nonnull(strstr(r.err, "guest wrote guest-physical 0x40001000 (1 bytes): read-only mapping of /tmp/vmm-map-"));
	spawn_free(&r);
	unlink(file_path);
}
END_TEST

/* The file must hold the fill pattern of @seed over its first @pages pages, the rest as made. */
static void expect_file_pattern(uint64_t gpa, unsigned pages, uint64_t seed, size_t size)
{
	size_t got;
	unsigned char *buf = read_file(&got);
	ck_assert_uint_eq(got, size); /* never grown */
	for (unsigned p = 0; p < pages; p++) {
		uint64_t key = abi_page_key(gpa + p * 4096ull, seed);
		for (unsigned i = 0; i < 512 && (p * 4096ull + i * 8 + 8) <= size; i++) {
			uint64_t w;
			memcpy(&w, buf + p * 4096ull + i * 8, 8);
			ck_assert_msg(w == key + i, "file page %u word %u", p, i);
		}
	}
	free(buf);
}

START_TEST(shared_mapping_writes_reach_the_file)
{
	make_file(64 * 4096 + 100, NULL);
	char map[128];
	snprintf(map, sizeof(map), "%s@1G,shared", file_path);
	VMM("-c", "2", "-m", "64M", "--map", map, "-p", "seed=9 fill=1G,128K check=1G,128K", harness_build_path("guest.elf"));
	expect_status(0);
	ck_assert_ptr_nonnull(strstr(r.out, "check: 32 pages ok"));
	spawn_free(&r);
	expect_file_pattern(1ull << 30, 32, 9, 64 * 4096 + 100);
	/* A later run sees the guest's writes. */
	snprintf(map, sizeof(map), "%s@1G,ro", file_path);
	VMM("-m", "64M", "--map", map, "-p", "seed=9 check=1G,128K", harness_build_path("guest.elf"));
	expect_status(0);
	ck_assert_ptr_nonnull(strstr(r.out, "check: 32 pages ok"));
	spawn_free(&r);
	unlink(file_path);
}
END_TEST

START_TEST(shared_mapping_write_back_survives_page_out)
{
	/* Under a limit, modified file pages go back to the file as they are paged out. */
	make_file(16 << 20, NULL);
	char map[128];
	snprintf(map, sizeof(map), "%s@1G,shared", file_path);
	VMM("-m", "64M", "--mem-limit", "8M", "--map", map, "-p", "seed=4 fill=1G,16M check=1G,16M",
	    harness_build_path("guest.elf"));
	expect_status(0);
	ck_assert_ptr_nonnull(strstr(r.out, "check: 4096 pages ok"));
	spawn_free(&r);
	expect_file_pattern(1ull << 30, 4096, 4, 16 << 20);
	unlink(file_path);
}
END_TEST

START_TEST(private_mapping_keeps_the_file_unchanged)
{
	uint64_t sum;
	make_file(64 * 4096, &sum);
	char map[128];
	snprintf(map, sizeof(map), "%s@1G", file_path);
	/* Read first (each page read is copied up at once: copy on read), then written over. */
	VMM("-m", "64M", "--map", map, "-p", "sum=1G,256K seed=2 fill=1G,64K check=1G,64K", harness_build_path("guest.elf"));
	expect_status(0);
	char want[96];
	snprintf(want, sizeof(want), "sum 0x0000000040000000 262144: 0x%016llx", (unsigned long long)sum);
	ck_assert_msg(strstr(r.out, want), "guest output lacks '%s': %s", want, r.out);
	ck_assert_ptr_nonnull(strstr(r.out, "check: 16 pages ok"));
	spawn_free(&r);
	size_t size;
	unsigned char *buf = read_file(&size);
	ck_assert_uint_eq(abi_fnv1a64(ABI_FNV_INIT, buf, size), sum);
	free(buf);
	unlink(file_path);
}
END_TEST

START_TEST(bad_mappings_are_refused_with_one_line)
{
	make_file(4096, NULL);
	char map[160];
	snprintf(map, sizeof(map), "%s@0x100000", file_path);
	VMM("-m", "64M", "--map", map, harness_build_path("guest.elf"));
	expect_status(125);
	ck_assert_ptr_nonnull(strstr(r.err, "overlaps guest RAM [0x0, 0x4000000)"));
	spawn_free(&r);
	snprintf(map, sizeof(map), "%s@0x40000100", file_path);
	VMM("-m", "64M", "--map", map, harness_build_path("guest.elf"));
	expect_status(125);
	ck_assert_ptr_nonnull(strstr(r.err, "the address is not 4K aligned"));
	spawn_free(&r);
	snprintf(map, sizeof(map), "%s@1G,rw", file_path);
	VMM("-m", "64M", "--map", map, harness_build_path("guest.elf"));
	expect_status(125);
	ck_assert_ptr_nonnull(strstr(r.err, "unknown mode 'rw'"));
	spawn_free(&r);
	VMM("-m", "64M", "--map", "/nonexistent@1G", harness_build_path("guest.elf"));
	expect_status(125);
	ck_assert_ptr_nonnull(strstr(r.err, "vmm: cannot map /nonexistent: No such file or directory"));
	spawn_free(&r);
	unlink(file_path);
}
END_TEST

START_TEST(swap_file_cut_under_a_running_vm_stops_it_with_one_line)
{
	/* Issue #11: the swap file cut short under a VM paging twelve times its limit, then
	 * grown again as later page-outs grow it, so the lost pages read as a hole. The guest
	 * must not get them as zeros (nor spin on its own zeroed state): the VM stops, status
	 * 125, one line naming the object, the offset and the swap file. */
	char swap[] = "/tmp/vmm-swap-XXXXXX";
	int fd = mkstemp(swap);
	ck_assert_int_ge(fd, 0);
	close(fd);
	struct vm_proc vm = {0};
	vm_proc_start(&vm, NULL, "run", "-m", "128M", "--mem-limit", "4M", "--swap", swap, "-p",
		      "touch=48M sync=1 await=0x7000000 touch=48M", harness_guest(), NULL);
	vm_proc_wait_sync(&vm, 1);
	ck_assert_int_eq(truncate(swap, 0), 0);
	ck_assert_int_eq(truncate(swap, 48 << 20), 0);
	vm_proc_release(&vm, 0x7000000);
	ck_assert_int_eq(vm_proc_wait(&vm), 125);
	char *err = vm_proc_output(&vm, true);
	ck_assert_msg(strstr(err, "KERN_MEMORY_ERROR in object ") && strstr(err, swap) &&
			      strstr(err, "is not what was written there: the file was changed or cut short"),
		      "%s", err);
	ck_assert_msg(strchr(err, '\n') == err + strlen(err) - 1, "not one line: '%s'", err);
	free(err);
	vm_proc_cleanup(&vm, false);
	unlink(swap);
}
END_TEST

Suite *kvm_paging_suite(void)
{
	Suite *s = suite_create("kvm_paging");
	harness_requires(HARNESS_KVM | HARNESS_UFFD);
	TCase *tc = tcase_create("paging");
	tcase_set_timeout(tc, TIMEOUT_S + 10);
	HARNESS_ADD_TEST(tc, default_pager_serves_every_page_the_guest_touches);
	HARNESS_ADD_TEST(tc, boot_image_is_in_place_before_the_guest_runs);
	HARNESS_ADD_TEST(tc, cluster_of_one_page_faults_once_per_page);
	HARNESS_ADD_TEST(tc, touch_of_four_times_the_limit_verifies_every_page);
	HARNESS_ADD_TEST(tc, named_swap_file_takes_the_pages);
	HARNESS_ADD_TEST(tc, swap_file_cut_under_a_running_vm_stops_it_with_one_line);
	HARNESS_ADD_TEST(tc, mapped_file_reads_as_the_host_file);
	HARNESS_ADD_TEST(tc, sequential_walks_are_read_ahead);
	HARNESS_ADD_TEST(tc, read_only_mapping_refuses_guest_writes);
	HARNESS_ADD_TEST(tc, shared_mapping_writes_reach_the_file);
	HARNESS_ADD_TEST(tc, shared_mapping_write_back_survives_page_out);
	HARNESS_ADD_TEST(tc, private_mapping_keeps_the_file_unchanged);
	HARNESS_ADD_TEST(tc, bad_mappings_are_refused_with_one_line);
	suite_add_tcase(s, tc);
	return s;
}

/* Guest-physical layout: RAM split around the PC hole, mapped files placed and checked. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "harness.h"
#include "vmm/error.h"
#include "vmm/memory/guest_memory.h"

static char path[64];

static void setup(void)
{
	strcpy(path, "/tmp/vmm-layout-XXXXXX");
	int fd = mkstemp(path);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(ftruncate(fd, 10000), 0);
	close(fd);
	error_clear();
}

static void teardown(void)
{
	unlink(path);
}

START_TEST(small_ram_is_one_region_from_zero)
{
	struct guest_memory m;
	struct guest_memory_config cfg = {.ram_size = 64ull << 20};
	ck_assert_int_eq(guest_memory_layout(&m, &cfg), 0);
	ck_assert_uint_eq(m.nregions, 1);
	ck_assert_uint_eq(m.region[0].gpa, 0);
	ck_assert_uint_eq(m.region[0].size, 64ull << 20);
	ck_assert_uint_eq(m.span, 64ull << 20);
}
END_TEST

START_TEST(ram_above_3g_moves_above_4g)
{
	struct guest_memory m;
	struct guest_memory_config cfg = {.ram_size = 5ull << 30};
	ck_assert_int_eq(guest_memory_layout(&m, &cfg), 0);
	ck_assert_uint_eq(m.nregions, 2);
	ck_assert_uint_eq(m.region[0].size, 3ull << 30);
	ck_assert_uint_eq(m.region[1].gpa, 4ull << 30);
	ck_assert_uint_eq(m.region[1].size, 2ull << 30);
	ck_assert_uint_eq(m.span, 6ull << 30);
	ck_assert_ptr_null(guest_memory_region(&m, (3ull << 30) + 5)); /* the hole */
	ck_assert_ptr_eq(guest_memory_region(&m, 4ull << 30), &m.region[1]);
}
END_TEST

START_TEST(files_are_placed_in_order_with_rounded_size)
{
	struct guest_memory m;
	struct guest_memory_config cfg = {.ram_size = 64ull << 20, .nfiles = 2};
	cfg.files[0] = (struct guest_file_map){.path = path, .gpa = 2ull << 30, .mode = GUEST_MAP_RO};
	cfg.files[1] = (struct guest_file_map){.path = path, .gpa = 1ull << 30, .mode = GUEST_MAP_SHARED};
	ck_assert_int_eq(guest_memory_layout(&m, &cfg), 0);
	ck_assert_uint_eq(m.nregions, 3);
	ck_assert_uint_eq(m.region[1].gpa, 1ull << 30);
	ck_assert_int_eq(m.region[1].mode, GUEST_MAP_SHARED);
	ck_assert_uint_eq(m.region[2].gpa, 2ull << 30);
	ck_assert_uint_eq(m.region[2].size, 12288);
	ck_assert_uint_eq(m.region[2].file_size, 10000);
	ck_assert_uint_eq(m.span, (2ull << 30) + 12288);
}
END_TEST

START_TEST(overlapping_files_are_refused)
{
	struct guest_memory m;
	struct guest_memory_config cfg = {.ram_size = 64ull << 20, .nfiles = 2};
	cfg.files[0] = (struct guest_file_map){.path = path, .gpa = 1ull << 30, .mode = GUEST_MAP_RO};
	cfg.files[1] = (struct guest_file_map){.path = path, .gpa = (1ull << 30) + 8192, .mode = GUEST_MAP_RO};
	ck_assert_int_eq(guest_memory_layout(&m, &cfg), -EINVAL);
	ck_assert_ptr_nonnull(strstr(error_message(), "overlaps /tmp/vmm-layout-"));
}
END_TEST

START_TEST(file_beyond_guest_physical_space_is_refused)
{
	struct guest_memory m;
	struct guest_memory_config cfg = {.ram_size = 64ull << 20, .nfiles = 1};
	cfg.files[0] = (struct guest_file_map){.path = path, .gpa = UINT64_MAX - 4095, .mode = GUEST_MAP_RO};
	ck_assert_int_eq(guest_memory_layout(&m, &cfg), -EINVAL);
	ck_assert_ptr_nonnull(strstr(error_message(), "beyond guest-physical addresses"));
}
END_TEST

START_TEST(empty_or_special_files_are_refused)
{
	struct guest_memory m;
	struct guest_memory_config cfg = {.ram_size = 64ull << 20, .nfiles = 1};
	cfg.files[0] = (struct guest_file_map){.path = "/dev/null", .gpa = 1ull << 30, .mode = GUEST_MAP_RO};
	ck_assert_int_eq(guest_memory_layout(&m, &cfg), -EINVAL);
	ck_assert_str_eq(error_message(), "cannot map /dev/null: not a regular file with data");
}
END_TEST

START_TEST(pointers_stay_inside_one_region)
{
	struct guest_memory m;
	struct guest_memory_config cfg = {.ram_size = 5ull << 30};
	ck_assert_int_eq(guest_memory_layout(&m, &cfg), 0);
	m.base = (uint8_t *)0x10000000000ull; /* never dereferenced */
	ck_assert_ptr_nonnull(guest_memory_ptr(&m, 0, 4096));
	ck_assert_ptr_null(guest_memory_ptr(&m, (3ull << 30) - 8, 16)); /* runs into the hole */
	ck_assert_ptr_null(guest_memory_ptr(&m, 8, 0));
	ck_assert_ptr_null(guest_memory_ptr(&m, 8, UINT64_MAX));
	ck_assert_ptr_null(guest_memory_ptr(&m, 6ull << 30, 1));
	ck_assert_ptr_nonnull(guest_memory_ptr(&m, (6ull << 30) - 1, 1));
}
END_TEST

/* What cannot hold pages is refused before anything is built: a device that swallows
 * (/dev/null) or refuses (/dev/full) every page, a FIFO (opened without blocking, as
 * nobody writes to it), a directory. */
START_TEST(what_cannot_be_a_swap_file_is_refused)
{
	char dir[] = "/tmp/vmm-swap-XXXXXX";
	ck_assert_ptr_nonnull(mkdtemp(dir));
	char fifo[64];
	snprintf(fifo, sizeof(fifo), "%s/fifo", dir);
	ck_assert_int_eq(mkfifo(fifo, 0600), 0);
	const char *bad[] = {"/dev/null", "/dev/full", fifo, dir};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct guest_memory m = {0}; /* not placed yet */
		struct guest_memory_config cfg = {.ram_size = 16ull << 20, .mem_limit = 4ull << 20, .swap_path = bad[i]};
		error_clear();
		ck_assert_int_eq(guest_memory_create(&m, &cfg), -EINVAL);
		char want[128];
		snprintf(want, sizeof(want), "cannot use %s as the swap file: not a regular file", bad[i]);
		ck_assert_str_eq(error_message(), want);
	}
	ck_assert_int_eq(unlink(fifo), 0);
	ck_assert_int_eq(rmdir(dir), 0);
}
END_TEST

Suite *guest_memory_suite(void)
{
	Suite *s = suite_create("guest_memory");
	TCase *tc = tcase_create("layout");
	tcase_add_checked_fixture(tc, setup, teardown);
	HARNESS_ADD_TEST(tc, small_ram_is_one_region_from_zero);
	HARNESS_ADD_TEST(tc, ram_above_3g_moves_above_4g);
	HARNESS_ADD_TEST(tc, files_are_placed_in_order_with_rounded_size);
	HARNESS_ADD_TEST(tc, overlapping_files_are_refused);
	HARNESS_ADD_TEST(tc, file_beyond_guest_physical_space_is_refused);
	HARNESS_ADD_TEST(tc, empty_or_special_files_are_refused);
	HARNESS_ADD_TEST(tc, pointers_stay_inside_one_region);
	HARNESS_ADD_TEST(tc, what_cannot_be_a_swap_file_is_refused);
	suite_add_tcase(s, tc);
	return s;
}

/* Working set files: written whole, read back the same, every malformed file refused. */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "harness.h"
#include "vmm/error.h"
#include "vmm/memory/working_set.h"

static char dir[64];

static void setup(void)
{
	strcpy(dir, "/tmp/vmm-ws-XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(dir));
}

static void teardown(void)
{
	char cmd[96];
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	ck_assert_int_eq(system(cmd), 0);
}

/* A file's bytes: the header (magic, @ram, @count) then @n little-endian @pages. */
static size_t image(uint8_t *buf, uint64_t ram, uint64_t count, const uint64_t *pages, size_t n)
{
	uint64_t fields[2] = {ram, count};
	memcpy(buf, WORKING_SET_MAGIC, 8);
	memcpy(buf + 8, fields, sizeof(fields)); /* x86: little-endian already */
	memcpy(buf + WORKING_SET_HEADER, pages, n * 8);
	return WORKING_SET_HEADER + n * 8;
}

START_TEST(a_written_working_set_reads_back_the_same)
{
	uint64_t pages[] = {0x4000, 0x800, 0x4001, 0x7ffff};
	struct working_set ws = {.ram_size = 2ull << 30, .count = 4, .pages = pages}, back;
	char path[96];
	snprintf(path, sizeof(path), "%s/ws", dir);
	ck_assert_int_eq(working_set_write(path, &ws), 0);
	ck_assert_int_eq(working_set_read(path, &back), 0);
	ck_assert_uint_eq(back.ram_size, ws.ram_size);
	ck_assert_uint_eq(back.count, 4);
	ck_assert_mem_eq(back.pages, pages, sizeof(pages));
	working_set_free(&back);
	/* An empty one too: a guest that touched nothing new. */
	ws.count = 0;
	ck_assert_int_eq(working_set_write(path, &ws), 0);
	ck_assert_int_eq(working_set_read(path, &back), 0);
	ck_assert_uint_eq(back.count, 0);
	working_set_free(&back);
	char tmp[128];
	snprintf(tmp, sizeof(tmp), "%s.tmp-%d", path, (int)getpid());
	ck_assert_int_eq(access(tmp, F_OK), -1); /* no temporary file left */
}
END_TEST

START_TEST(malformed_working_sets_are_refused_saying_why)
{
	static uint8_t buf[4096];
	uint64_t pages[3] = {1, 2, 3};
	const struct {
		size_t len;
		const char *says;
	} cases[] = {
		{image(buf, 1 << 20, 3, pages, 3) - 1, "bytes of pages where 3 pages take 24"},
		{7, "not a working set file"},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct working_set ws;
		ck_assert_int_eq(working_set_parse(buf, cases[i].len, &ws), -EINVAL);
		ck_assert_msg(strstr(error_message(), cases[i].says), "case %zu: %s", i, error_message());
	}
	struct working_set ws;
	size_t len = image(buf, 4095, 0, pages, 0);
	ck_assert_int_eq(working_set_parse(buf, len, &ws), -EINVAL);
	ck_assert_ptr_nonnull(strstr(error_message(), "not a non-zero multiple of 4096"));
	len = image(buf, 8192, 3, pages, 3); /* three pages listed for a guest of two */
	ck_assert_int_eq(working_set_parse(buf, len, &ws), -EINVAL);
	ck_assert_ptr_nonnull(strstr(error_message(), "3 pages listed for 8192 bytes of RAM"));
	uint64_t far[1] = {1ull << 40};
	len = image(buf, 1 << 20, 1, far, 1);
	ck_assert_int_eq(working_set_parse(buf, len, &ws), -EINVAL);
	ck_assert_ptr_nonnull(strstr(error_message(), "beyond any guest's memory"));
	buf[0] = 'X';
	ck_assert_int_eq(working_set_parse(buf, len, &ws), -EINVAL);
	ck_assert_ptr_nonnull(strstr(error_message(), "not a working set file"));
}
END_TEST

START_TEST(reading_names_the_file)
{
	char path[96];
	struct working_set ws;
	snprintf(path, sizeof(path), "%s/missing", dir);
	ck_assert_int_eq(working_set_read(path, &ws), -ENOENT);
	ck_assert_ptr_nonnull(strstr(error_message(), path));
	ck_assert_int_eq(working_set_read(dir, &ws), -EINVAL); /* a folder */
	ck_assert_ptr_nonnull(strstr(error_message(), "not a regular file"));
	snprintf(path, sizeof(path), "%s/junk", dir);
	FILE *f = fopen(path, "w");
	fputs("junk", f);
	fclose(f);
	ck_assert_int_eq(working_set_read(path, &ws), -EINVAL);
	ck_assert_msg(strstr(error_message(), path) && strstr(error_message(), "not a working set file"), "%s",
		      error_message());
	/* Neither waited on (a FIFO with no writer) nor taken for an empty set. */
	snprintf(path, sizeof(path), "%s/fifo", dir);
	ck_assert_int_eq(mkfifo(path, 0600), 0);
	alarm(20);
	ck_assert_int_eq(working_set_read(path, &ws), -EINVAL);
	alarm(0);
	ck_assert_msg(strstr(error_message(), path) && strstr(error_message(), "not a regular file"), "%s",
		      error_message());
	snprintf(path, sizeof(path), "%s/empty", dir);
	fclose(fopen(path, "w"));
	ck_assert_int_eq(working_set_read(path, &ws), -EINVAL);
	ck_assert_msg(strstr(error_message(), path) && strstr(error_message(), "is empty"), "%s", error_message());
}
END_TEST

Suite *working_set_suite(void)
{
	Suite *s = suite_create("working_set");
	TCase *tc = tcase_create("file");
	tcase_add_checked_fixture(tc, setup, teardown);
	HARNESS_ADD_TEST(tc, a_written_working_set_reads_back_the_same);
	HARNESS_ADD_TEST(tc, malformed_working_sets_are_refused_saying_why);
	HARNESS_ADD_TEST(tc, reading_names_the_file);
	suite_add_tcase(s, tc);
	return s;
}

/* The progress line (vmm/cli/progress.c): units and their rounding, percent, rate, time
 * left and when it is shown, the sync and the end, an empty total. */
#include <string.h>

#include "harness.h"
#include "vmm/cli/progress.h"

#define KIB 1024ull
#define MIB (1024ull * KIB)
#define GIB (1024ull * MIB)

static const char *bytes(uint64_t n)
{
	static char buf[32];
	return progress_bytes(buf, sizeof(buf), n);
}

static const char *rate(double bps)
{
	static char buf[32];
	return progress_rate(buf, sizeof(buf), bps);
}

static const char *line(uint64_t total, uint64_t done, double elapsed, enum progress_phase phase)
{
	static char buf[PROGRESS_LINE_MAX];
	int n = progress_line(buf, sizeof(buf), "snapshot web -> base", total, done, elapsed, phase);
	ck_assert_int_eq(n, (int)strlen(buf));
	return buf;
}

START_TEST(bytes_are_whole_then_one_decimal_in_binary_units)
{
	ck_assert_str_eq(bytes(0), "0 B");
	ck_assert_str_eq(bytes(1023), "1023 B");
	ck_assert_str_eq(bytes(KIB), "1.0 KiB");
	ck_assert_str_eq(bytes(1536), "1.5 KiB");
	ck_assert_str_eq(bytes(412 * MIB), "412.0 MiB");
	ck_assert_str_eq(bytes(GIB), "1.0 GiB");
	ck_assert_str_eq(bytes(5 * 1024 * GIB), "5.0 TiB");
	ck_assert_str_eq(bytes(2048 * 1024 * GIB), "2048.0 TiB"); /* no unit above TiB */
}
END_TEST

/* The unit is picked after rounding: never "1024.0 KiB". */
START_TEST(bytes_that_round_up_to_1024_take_the_next_unit)
{
	ck_assert_str_eq(bytes(1048524), "1023.9 KiB"); /* 1023.949 KiB */
	ck_assert_str_eq(bytes(1048525), "1.0 MiB");    /* 1023.950 KiB */
	ck_assert_str_eq(bytes(MIB - 1), "1.0 MiB");
	ck_assert_str_eq(bytes(GIB - 1), "1.0 GiB");
}
END_TEST

START_TEST(rates_are_whole_from_10_up)
{
	ck_assert_str_eq(rate(800), "800 B/s");
	ck_assert_str_eq(rate(3.5 * MIB), "3.5 MiB/s");
	ck_assert_str_eq(rate(9.94 * MIB), "9.9 MiB/s");
	ck_assert_str_eq(rate(9.96 * MIB), "10 MiB/s");
	ck_assert_str_eq(rate(310 * MIB), "310 MiB/s");
	ck_assert_str_eq(rate(1023.7 * MIB), "1.0 GiB/s");
}
END_TEST

START_TEST(writing_shows_bytes_percent_rate_and_time_left)
{
	/* 412 MiB in 412/310 s: 310 MiB/s, 612 MiB left is 1.97 s, rounded up. */
	ck_assert_str_eq(line(GIB, 412 * MIB, 412.0 / 310.0, PROGRESS_WRITING),
			 "snapshot web -> base: 412.0 MiB of 1.0 GiB (40%), 310 MiB/s, 2 s left");
	ck_assert_str_eq(line(100 * MIB, MIB, 1.0, PROGRESS_WRITING),
			 "snapshot web -> base: 1.0 MiB of 100.0 MiB (1%), 1.0 MiB/s, 1 min 39 s left");
	ck_assert_str_eq(line(100 * GIB, GIB, 100.0, PROGRESS_WRITING),
			 "snapshot web -> base: 1.0 GiB of 100.0 GiB (1%), 10 MiB/s, 2 h 45 min left");
}
END_TEST

/* No rate nor time left before a second has passed or a byte is done, no time left
 * before 1% is done nor past 100 hours. */
START_TEST(rate_and_time_left_wait_until_they_mean_something)
{
	ck_assert_str_eq(line(GIB, 412 * MIB, 0.5, PROGRESS_WRITING), "snapshot web -> base: 412.0 MiB of 1.0 GiB (40%)");
	ck_assert_str_eq(line(GIB, 0, 5.0, PROGRESS_WRITING), "snapshot web -> base: 0 B of 1.0 GiB (0%)");
	ck_assert_str_eq(line(GIB, 5 * MIB, 2.0, PROGRESS_WRITING),
			 "snapshot web -> base: 5.0 MiB of 1.0 GiB (0%), 2.5 MiB/s");
	ck_assert_str_eq(line(1000 * GIB, 10 * GIB, 4000.0, PROGRESS_WRITING),
			 "snapshot web -> base: 10.0 GiB of 1000.0 GiB (1%), 2.6 MiB/s");
}
END_TEST

/* Percent rounds down: 100% only when everything is done; done past total is total. */
START_TEST(percent_rounds_down_and_done_is_clamped)
{
	ck_assert_str_eq(line(GIB, GIB - 1, 0.1, PROGRESS_WRITING), "snapshot web -> base: 1.0 GiB of 1.0 GiB (99%)");
	ck_assert_str_eq(line(3, 2, 0.1, PROGRESS_WRITING), "snapshot web -> base: 2 B of 3 B (66%)");
	ck_assert_str_eq(line(GIB, 2 * GIB, 2.0, PROGRESS_WRITING),
			 "snapshot web -> base: 1.0 GiB of 1.0 GiB (100%), 512 MiB/s");
}
END_TEST

START_TEST(syncing_and_done_say_so)
{
	ck_assert_str_eq(line(GIB, GIB, 3.0, PROGRESS_SYNCING), "snapshot web -> base: 1.0 GiB written, syncing...");
	ck_assert_str_eq(line(GIB, GIB, 3.26, PROGRESS_DONE), "snapshot web -> base: 1.0 GiB written in 3.3 s, durable");
}
END_TEST

/* A total of 0 (no RAM to write): no percent, rate, nan or inf. */
START_TEST(zero_total_divides_nothing)
{
	ck_assert_str_eq(line(0, 0, 5.0, PROGRESS_WRITING), "snapshot web -> base: 0 B of 0 B");
	ck_assert_str_eq(line(0, 7, 5.0, PROGRESS_WRITING), "snapshot web -> base: 0 B of 0 B");
	ck_assert_str_eq(line(0, 0, 5.0, PROGRESS_SYNCING), "snapshot web -> base: 0 B written, syncing...");
}
END_TEST

/* Truncated as snprintf: the whole length returned, the prefix kept, NUL-terminated. */
START_TEST(a_short_buffer_truncates_like_snprintf)
{
	char buf[12];
	int n = progress_line(buf, sizeof(buf), "snapshot x", GIB, GIB, 1.0, PROGRESS_SYNCING);
	ck_assert_int_eq(n, (int)strlen("snapshot x: 1.0 GiB written, syncing..."));
	ck_assert_str_eq(buf, "snapshot x:");
}
END_TEST

Suite *progress_suite(void)
{
	Suite *s = suite_create("progress");
	TCase *tc = tcase_create("format");
	HARNESS_ADD_TEST(tc, bytes_are_whole_then_one_decimal_in_binary_units);
	HARNESS_ADD_TEST(tc, bytes_that_round_up_to_1024_take_the_next_unit);
	HARNESS_ADD_TEST(tc, rates_are_whole_from_10_up);
	HARNESS_ADD_TEST(tc, writing_shows_bytes_percent_rate_and_time_left);
	HARNESS_ADD_TEST(tc, rate_and_time_left_wait_until_they_mean_something);
	HARNESS_ADD_TEST(tc, percent_rounds_down_and_done_is_clamped);
	HARNESS_ADD_TEST(tc, syncing_and_done_say_so);
	HARNESS_ADD_TEST(tc, zero_total_divides_nothing);
	HARNESS_ADD_TEST(tc, a_short_buffer_truncates_like_snprintf);
	suite_add_tcase(s, tc);
	return s;
}

/*
 * Test harness shared by every Check suite.
 *
 * Each tests/check_<module>.c defines exactly one builder, Suite *<module>_suite(void),
 * and registers its tests with HARNESS_ADD_TEST so the runner can count tests it skips.
 * A suite that needs host devices or services calls harness_requires() at the top of its
 * builder; when one cannot be had the runner prints "SKIP: <suite>: <reason>" with the
 * number of tests skipped and does not run the suite (it never counts as passed).
 */
#ifndef TESTS_HARNESS_H
#define TESTS_HARNESS_H

#include <check.h>
#include <stdbool.h>

enum harness_need {
	HARNESS_KVM = 1 << 0,  /* /dev/kvm opens read-write */
	HARNESS_UFFD = 1 << 1, /* /dev/userfaultfd (or the syscall) gives a userfaultfd */
	HARNESS_QEMU = 1 << 2, /* qemu-system-x86_64 is on PATH (make test installs it) */
	HARNESS_CEPH = 1 << 3, /* a test Ceph cluster can be made: ceph-mon, ceph-osd, monmaptool,
				  ceph-authtool and ceph are on PATH (make test installs them) */
	HARNESS_TMUX = 1 << 4, /* tmux is on PATH (make test installs it) */
	HARNESS_UFFD_SHARE = 1 << 5, /* userfaultfd serves memory mapped from a host-wide segment
					(guest_memory_can_map_segments: Linux 6.4) */
};

/* Number of tests registered by the builder that is running (reset by the runner). */
extern unsigned harness_ntests;

/* False when $HARNESS_RUN_TEST names tests (a comma-separated list) and @name is not one:
 * for running one test of a suite while working on it. */
bool harness_wants(const char *name);

#define HARNESS_ADD_TEST(tc, fn) \
	(harness_ntests++, harness_wants(#fn) ? tcase_add_test((tc), (fn)) : (void)0)
#define HARNESS_ADD_LOOP_TEST(tc, fn, s, e) \
	(harness_ntests += (unsigned)((e) - (s)), \
	 harness_wants(#fn) ? tcase_add_loop_test((tc), (fn), (s), (e)) : (void)0)

/*
 * Declare that the suite being built needs the devices in @needs (enum harness_need bits).
 * Returns true when they are usable; false when the suite will be skipped (the runner
 * prints the reason). Builders should go on registering their tests either way.
 */
bool harness_requires(unsigned needs);

/* Path of a file in the build directory ($VMM_BUILD, default "build"): "build/vmm" etc.
 * Returns one of 8 static buffers used in turn: valid for the next 7 calls. */
const char *harness_build_path(const char *name);

/* harness_build_path("guest.elf") in a buffer of its own: valid for the whole run. */
const char *harness_guest(void);

#endif

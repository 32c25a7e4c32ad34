/* The demo guest is a plain PVH kernel: QEMU's microvm boots the very same guest.elf. */
#include <string.h>

#include "harness.h"
#include "spawn.h"

START_TEST(qemu_microvm_boots_the_same_guest)
{
	char *argv[] = {"/usr/bin/env", "qemu-system-x86_64", "-M", "microvm", "-accel", "kvm", "-m", "64M",
			"-nodefaults", "-no-user-config", "-nographic", "-serial", "stdio", "-device",
			"isa-debug-exit,iobase=0xf4,iosize=4", "-kernel", (char *)harness_build_path("guest.elf"),
			"-append", "hello touch=16M", NULL};
	struct spawn_result r;
	ck_assert_int_eq(spawn_run(&r, 120, argv), 0);
	/* isa-debug-exit: QEMU exits with (status << 1) | 1, so 1 means the guest exited 0. */
	ck_assert_msg(r.status == 1, "qemu status %d\nstdout: %s\nstderr: %s", r.status, r.out, r.err);
	ck_assert_msg(strstr(r.out, "hello from the vmm guest: 1 cpu, 64 MiB RAM"), "stdout: %s", r.out);
	ck_assert_msg(strstr(r.out, "touch: 4096 pages ok"), "stdout: %s", r.out);
	spawn_free(&r);
}
END_TEST

Suite *kvm_qemu_suite(void)
{
	Suite *s = suite_create("kvm_qemu");
	harness_requires(HARNESS_KVM | HARNESS_QEMU);
	TCase *tc = tcase_create("microvm");
	tcase_set_timeout(tc, 130);
	HARNESS_ADD_TEST(tc, qemu_microvm_boots_the_same_guest);
	suite_add_tcase(s, tc);
	return s;
}

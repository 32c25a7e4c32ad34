/*
 * vmm run on KVM: the demo guest's workloads verify themselves inside the guest and
 * report through the console and the exit status; tiny hand-made guests check the
 * verdicts on misbehaving guests.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "elf_image.h"
#include "harness.h"
#include "spawn.h"

#define TIMEOUT_S 120

static struct spawn_result r;

static void run_guest(const char *cmdline, const char *cpus, const char *mem)
{
	ck_assert_int_eq(spawn_vmm(&r, TIMEOUT_S, "run", "-c", cpus, "-m", mem, "-p", cmdline,
				   harness_build_path("guest.elf"), NULL),
			 0);
}

static void expect(int status, const char *out_needle, const char *err_needle)
{
	ck_assert_msg(r.status == status, "status %d (wanted %d)\nstdout: %s\nstderr: %s", r.status, status, r.out,
		      r.err);
	if (out_needle)
		ck_assert_msg(strstr(r.out, out_needle), "stdout lacks '%s': %s", out_needle, r.out);
	if (err_needle)
		ck_assert_msg(strstr(r.err, err_needle), "stderr lacks '%s': %s", err_needle, r.err);
	spawn_free(&r);
}

START_TEST(hello_prints_and_exits_zero)
{
	run_guest("hello", "1", "64M");
	expect(0, "hello from the vmm guest: 1 cpu, 64 MiB RAM", NULL);
}
END_TEST

START_TEST(touch_verifies_every_page_on_one_cpu)
{
	run_guest("touch=48M", "1", "64M");
	expect(0, "touch: 12288 pages ok", NULL);
}
END_TEST

START_TEST(touch_splits_over_two_cpus)
{
	run_guest("hello touch=200M", "2", "256M");
	ck_assert_ptr_nonnull(strstr(r.out, "2 cpus"));
	expect(0, "touch: 51200 pages ok", NULL);
}
END_TEST

START_TEST(touch_again_with_new_seed_rewrites_pages)
{
	run_guest("touch=16M seed=7 touch=16M seed=99 touch=8M", "2", "64M");
	ck_assert_ptr_nonnull(strstr(r.out, "touch: 4096 pages ok\ntouch: 4096 pages ok\ntouch: 2048 pages ok"));
	expect(0, NULL, NULL);
}
END_TEST

START_TEST(guest_memory_above_the_pc_hole)
{
	/* 3.5 GiB: RAM is split at 3 GiB; the guest's free region is the low part. */
	run_guest("hello touch=64M", "2", "3584M");
	expect(0, "touch: 16384 pages ok", NULL);
}
END_TEST

START_TEST(memory_used_before_its_slots_exist)
{
	/* A 4 GiB guest starts with only its first 8 MiB in KVM's memory slots; the top of its
	 * low RAM, made last of them, is written and verified at once: through the VMM while
	 * its slot is being made (vm.memslot_wait_accesses), by the guest itself after. */
	ck_assert_int_eq(spawn_vmm(&r, TIMEOUT_S, "run", "--stats", "-c", "2", "-m", "4G", "-p",
				   "seed=11 fill=0xbff00000,1M check=0xbff00000,1M", harness_build_path("guest.elf"),
				   NULL),
			 0);
	const char *waits = strstr(r.err, "vm.memslot_wait_accesses");
	ck_assert_msg(waits, "no vm.memslot_wait_accesses in the statistics: %s", r.err);
	printf("memory used before its slots exist: %.*s\n", (int)strcspn(waits, "\n"), waits);
	expect(0, "check: 256 pages ok", NULL);
}
END_TEST

START_TEST(unknown_workload_is_a_guest_error)
{
	run_guest("hello dance", "1", "32M");
	expect(2, "guest: unknown workload: 'dance'", NULL);
}
END_TEST

START_TEST(touch_larger_than_ram_is_refused_by_the_guest)
{
	run_guest("touch=64M", "2", "32M");
	expect(2, "size exceeds free guest memory", NULL);
}
END_TEST

START_TEST(guest_exception_is_reported_with_registers)
{
	run_guest("crash", "2", "32M");
	ck_assert_ptr_nonnull(strstr(r.out, "rip 0x"));
	expect(3, "guest: exception 6 (#UD invalid opcode) on cpu 0 in user mode", NULL);
}
END_TEST

START_TEST(spin_runs_until_stopped_from_outside)
{
	ck_assert_int_eq(spawn_vmm(&r, TIMEOUT_S, "run", "-c", "2", "-t", "300ms", "-vv", "-p", "spin=4M",
				   harness_build_path("guest.elf"), NULL),
			 0);
	ck_assert_ptr_nonnull(strstr(r.err, "vmm: guest round 1\n"));
	ck_assert_ptr_nonnull(strstr(r.err, "vmm: vCPU 1: stopped here"));
	expect(124, "spin: rewriting 1024 pages until stopped", "still running after the 300 ms timeout");
}
END_TEST

/* Tiny guests: 32-bit code at the PVH entry, paging off, no IDT. */
static void run_code(const uint8_t *code, size_t len, const char *timeout)
{
	struct elf_image img;
	elf_image_build(&img, code, len, 0x100000, 0);
	const char *path = elf_image_write_temp(&img);
	ck_assert_int_eq(spawn_vmm(&r, TIMEOUT_S, "run", "-m", "32M", "-t", timeout, path, NULL), 0);
	unlink(path);
}

START_TEST(exit_port_value_is_the_exit_status)
{
	const uint8_t code[] = {0xb0, 42, 0xe6, 0xf4, 0xeb, 0xfe}; /* mov al,42; out 0xf4,al; jmp $ */
	run_code(code, sizeof(code), "60");
	expect(42, NULL, NULL);
}
END_TEST

START_TEST(triple_fault_is_reported)
{
	const uint8_t code[] = {0x0f, 0x0b}; /* ud2 with no IDT: #UD -> #DF -> shutdown */
	run_code(code, sizeof(code), "60");
	expect(123, NULL, "vmm: vCPU 0: guest triple fault (shutdown)\n  rip");
}
END_TEST

START_TEST(unhandled_port_is_reported)
{
	const uint8_t code[] = {0xe6, 0x80}; /* out 0x80, al */
	run_code(code, sizeof(code), "60");
	/* rip is the out's own address on Linux's KVM since 5.1 (completed on the next KVM_RUN),
	 * the next instruction's on KVMs that complete port writes before exiting (PVM). */
	expect(122, NULL, "guest wrote port 0x80 (1 bytes): no device there\n  rip 000000000010000");
}
END_TEST

START_TEST(access_outside_ram_is_reported)
{
	const uint8_t code[] = {0xa3, 0x00, 0x00, 0x00, 0xf0}; /* mov [0xf0000000], eax */
	run_code(code, sizeof(code), "60");
	expect(122, NULL, "guest wrote guest-physical 0xf0000000 (4 bytes): outside guest memory");
}
END_TEST

START_TEST(halt_forever_is_no_progress)
{
	const uint8_t code[] = {0xf4}; /* hlt, interrupts off */
	run_code(code, sizeof(code), "60");
	expect(124, NULL, "guest stopped making progress: halted with nothing to wake it");
}
END_TEST

START_TEST(endless_loop_stops_at_timeout)
{
	const uint8_t code[] = {0xeb, 0xfe}; /* jmp $ */
	run_code(code, sizeof(code), "200ms");
	expect(124, NULL, "vmm: vCPU 0: stopped here\n  rip 0000000000100000");
}
END_TEST

START_TEST(console_message_outside_ram_is_refused)
{
	const uint8_t code[] = {0xb8, 0xf0, 0xff, 0xff, 0xff, 0xe7, 0xf8}; /* mov eax,0xfffffff0; out 0xf8,eax */
	run_code(code, sizeof(code), "60");
	expect(122, NULL, "port 0xf8");
}
END_TEST

START_TEST(console_message_longer_than_allowed_is_refused)
{
	const uint8_t code[] = {
		0xc7, 0x05, 0x00, 0x00, 0x20, 0x00, 0xff, 0xff, 0xff, 0xff, /* mov dword [0x200000], -1 */
		0xb8, 0x00, 0x00, 0x20, 0x00,                               /* mov eax, 0x200000 */
		0xe7, 0xf8,                                                 /* out 0xf8, eax */
	};
	run_code(code, sizeof(code), "60");
	expect(122, NULL, "port 0xf8");
}
END_TEST

START_TEST(console_message_running_past_ram_is_refused)
{
	/* 32 MiB of RAM: a 100-byte message whose header is the last 4 bytes of RAM. */
	const uint8_t code[] = {
		0xc7, 0x05, 0xfc, 0xff, 0xff, 0x01, 0x64, 0x00, 0x00, 0x00, /* mov dword [0x1fffffc], 100 */
		0xb8, 0xfc, 0xff, 0xff, 0x01,                               /* mov eax, 0x1fffffc */
		0xe7, 0xf8,                                                 /* out 0xf8, eax */
	};
	run_code(code, sizeof(code), "60");
	expect(122, NULL, "port 0xf8");
}
END_TEST

/* vmm run -d: the name printed once the guest runs; the VM outlives the session that
 * started it (whose process group gets SIGHUP, as when a terminal closes); its console is
 * in its log; quit ends it and logs -f returns then. */
START_TEST(a_detached_vm_outlives_its_session_and_logs_its_console)
{
	char dir[] = "/tmp/vmm-detached-XXXXXX", script[512];
	ck_assert_ptr_nonnull(mkdtemp(dir));
	setenv("XDG_RUNTIME_DIR", dir, 1);
	snprintf(script, sizeof(script), "%s run -d -n det -m 64M -p 'hello spin=4M' %s; status=$?; kill -HUP 0; exit $status",
		 harness_build_path("vmm"), harness_build_path("guest.elf"));
	char *argv[] = {"/usr/bin/setsid", "/bin/sh", "-c", script, NULL};
	ck_assert_int_eq(spawn_run(&r, TIMEOUT_S, argv), 0);
	ck_assert_msg(r.status == 128 + 1 || r.status == 0, "status %d: %s", r.status, r.err);
	ck_assert_str_eq(r.out, "det\n");
	spawn_free(&r);
	ck_assert_int_eq(spawn_vmm(&r, TIMEOUT_S, "stats", "det", "state.state", NULL), 0);
	expect(0, "state.state", NULL);
	ck_assert_int_eq(spawn_vmm(&r, TIMEOUT_S, "logs", "det", NULL), 0);
	expect(0, "hello from the vmm guest: 1 cpu, 64 MiB RAM", NULL);
	ck_assert_int_eq(spawn_vmm(&r, TIMEOUT_S, "quit", "det", NULL), 0);
	expect(0, NULL, NULL);
	ck_assert_int_eq(spawn_vmm(&r, TIMEOUT_S, "logs", "-f", "det", NULL), 0);
	expect(0, "hello from the vmm guest", NULL);
	ck_assert_int_eq(spawn_vmm(&r, TIMEOUT_S, "rm", "det", NULL), 0);
	expect(0, NULL, NULL);
	char sub[64];
	snprintf(sub, sizeof(sub), "%s/vmm", dir);
	ck_assert_int_eq(rmdir(sub), 0);
	rmdir(dir);
}
END_TEST

Suite *kvm_run_suite(void)
{
	Suite *s = suite_create("kvm_run");
	harness_requires(HARNESS_KVM);
	TCase *tc = tcase_create("demo_guest");
	tcase_set_timeout(tc, TIMEOUT_S + 10);
	HARNESS_ADD_TEST(tc, hello_prints_and_exits_zero);
	HARNESS_ADD_TEST(tc, touch_verifies_every_page_on_one_cpu);
	HARNESS_ADD_TEST(tc, touch_splits_over_two_cpus);
	HARNESS_ADD_TEST(tc, touch_again_with_new_seed_rewrites_pages);
	HARNESS_ADD_TEST(tc, guest_memory_above_the_pc_hole);
	HARNESS_ADD_TEST(tc, memory_used_before_its_slots_exist);
	HARNESS_ADD_TEST(tc, unknown_workload_is_a_guest_error);
	HARNESS_ADD_TEST(tc, touch_larger_than_ram_is_refused_by_the_guest);
	HARNESS_ADD_TEST(tc, guest_exception_is_reported_with_registers);
	HARNESS_ADD_TEST(tc, spin_runs_until_stopped_from_outside);
	HARNESS_ADD_TEST(tc, a_detached_vm_outlives_its_session_and_logs_its_console);
	suite_add_tcase(s, tc);

	TCase *bad = tcase_create("misbehaving_guests");
	tcase_set_timeout(bad, TIMEOUT_S + 10);
	HARNESS_ADD_TEST(bad, exit_port_value_is_the_exit_status);
	HARNESS_ADD_TEST(bad, triple_fault_is_reported);
	HARNESS_ADD_TEST(bad, unhandled_port_is_reported);
	HARNESS_ADD_TEST(bad, access_outside_ram_is_reported);
	HARNESS_ADD_TEST(bad, halt_forever_is_no_progress);
	HARNESS_ADD_TEST(bad, endless_loop_stops_at_timeout);
	HARNESS_ADD_TEST(bad, console_message_outside_ram_is_refused);
	HARNESS_ADD_TEST(bad, console_message_longer_than_allowed_is_refused);
	HARNESS_ADD_TEST(bad, console_message_running_past_ram_is_refused);
	suite_add_tcase(s, bad);
	return s;
}

/*
 * The VM object in-process (like KVM selftests): pause and resume of running vCPUs,
 * stop from another thread. The guest reports progress on the test port.
 */
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "guest/abi.h"
#include "harness.h"
#include "vmm/error.h"
#include "vmm/vm.h"

static struct vm vm;
static pthread_t runner;
static int run_status;
static int null_fd;

static void *run_thread(void *arg)
{
	(void)arg;
	run_status = vm_run(&vm);
	return NULL;
}

static void start_vm(const char *cmdline, unsigned ncpus)
{
	null_fd = open("/dev/null", O_WRONLY);
	struct vm_config cfg = {
		.mem.ram_size = 64ull << 20,
		.ncpus = ncpus,
		.guest = harness_build_path("guest.elf"),
		.cmdline = cmdline,
		.kvm_path = "/dev/kvm",
		.console_fd = null_fd,
	};
	ck_assert_msg(vm_create(&vm, &cfg) == 0, "vm_create: %s", error_message());
	ck_assert_int_eq(pthread_create(&runner, NULL, run_thread, NULL), 0);
}

static void finish_vm(void)
{
	pthread_join(runner, NULL);
	vm_destroy(&vm);
	close(null_fd);
}

static void sleep_ms(unsigned ms)
{
	struct timespec t = {ms / 1000, (long)(ms % 1000) * 1000000L};
	nanosleep(&t, NULL);
}

static void take_messages(void *arg, const char *key, uint64_t value)
{
	if (strcmp(key, "vm.test_port_messages") == 0)
		*(uint64_t *)arg = value;
}

/* The guest's test-port messages so far, as the devices' statistics report them (the
 * port's state is the device's own; the VM's other statistics are not needed here). */
static uint64_t test_port_messages(void)
{
	uint64_t n = 0;
	ioport_device_stats(&vm, take_messages, &n);
	return n;
}

/* Wait (up to a minute) until the guest has sent more than @n test-port messages. */
static uint64_t wait_messages_above(uint64_t n)
{
	for (int i = 0; i < 60000; i++) {
		uint64_t m = test_port_messages();
		if (m > n)
			return m;
		sleep_ms(1);
	}
	ck_abort_msg("guest made no progress");
	return 0;
}

START_TEST(paused_guest_makes_no_progress_and_resumes)
{
	start_vm("spin=2M", 2);
	wait_messages_above(2);
	for (int round = 0; round < 5; round++) {
		ck_assert(vm_pause(&vm));
		uint64_t at_pause = test_port_messages();
		sleep_ms(50);
		ck_assert_uint_eq(test_port_messages(), at_pause);
		vm_resume(&vm);
		wait_messages_above(at_pause);
	}
	vm_stop(&vm, 7);
	finish_vm();
	ck_assert_int_eq(run_status, 7);
}
END_TEST

START_TEST(pauses_nest)
{
	start_vm("spin=2M", 1);
	wait_messages_above(1);
	ck_assert(vm_pause(&vm));
	ck_assert(vm_pause(&vm));
	uint64_t at_pause = test_port_messages();
	vm_resume(&vm);
	sleep_ms(50);
	ck_assert_uint_eq(test_port_messages(), at_pause);
	vm_resume(&vm);
	wait_messages_above(at_pause);
	vm_stop(&vm, 0);
	finish_vm();
}
END_TEST

START_TEST(stop_while_paused_ends_the_vm)
{
	start_vm("spin=2M", 2);
	wait_messages_above(1);
	ck_assert(vm_pause(&vm));
	vm_stop(&vm, 9);
	finish_vm();
	ck_assert_int_eq(run_status, 9);
}
END_TEST

START_TEST(pause_after_guest_exit_reports_stopping)
{
	start_vm("hello", 1);
	pthread_join(runner, NULL);
	ck_assert_int_eq(run_status, 0);
	ck_assert(!vm_pause(&vm));
	vm_destroy(&vm);
	close(null_fd);
}
END_TEST

Suite *kvm_vm_suite(void)
{
	Suite *s = suite_create("kvm_vm");
	harness_requires(HARNESS_KVM);
	TCase *tc = tcase_create("pause");
	tcase_set_timeout(tc, 120);
	HARNESS_ADD_TEST(tc, paused_guest_makes_no_progress_and_resumes);
	HARNESS_ADD_TEST(tc, pauses_nest);
	HARNESS_ADD_TEST(tc, stop_while_paused_ends_the_vm);
	HARNESS_ADD_TEST(tc, pause_after_guest_exit_reports_stopping);
	suite_add_tcase(s, tc);
	return s;
}

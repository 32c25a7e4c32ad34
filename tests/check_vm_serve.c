/* The signals a VM process serves under: stop signals left to the signal thread, and a
 * console reader that goes away never killing the VM. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "harness.h"
#include "vmm/devices/console.h"
#include "vmm/lifecycle/vm_serve.h"

START_TEST(stop_signals_are_blocked_for_the_signal_thread)
{
	signal(SIGHUP, SIG_DFL); /* as from a terminal, whatever started the tests */
	vm_serve_block_signals();
	sigset_t now;
	ck_assert_int_eq(pthread_sigmask(SIG_BLOCK, NULL, &now), 0);
	ck_assert(sigismember(&now, SIGTERM) && sigismember(&now, SIGINT) && sigismember(&now, SIGHUP));
}
END_TEST

/* `nohup vmm run ... &`: SIGHUP ignored from the start stays ignored, not taken as a stop
 * (the VM died with its terminal: "vmm: stopped by Hangup"). */
START_TEST(a_hangup_ignored_from_the_start_does_not_stop_the_vm)
{
	signal(SIGHUP, SIG_IGN);
	vm_serve_block_signals();
	sigset_t now;
	ck_assert_int_eq(pthread_sigmask(SIG_BLOCK, NULL, &now), 0);
	ck_assert(!sigismember(&now, SIGHUP)); /* not blocked for sigwait: still ignored */
	ck_assert(sigismember(&now, SIGTERM));
	ck_assert_int_eq(raise(SIGHUP), 0); /* and the process lives */
}
END_TEST

/* `vmm run ... | head -1`: the console's reader has gone; the VM must live on (it died of
 * SIGPIPE, status 141), and its log still gets the output. */
START_TEST(console_output_to_a_reader_that_went_away_is_dropped)
{
	vm_serve_block_signals();
	int p[2];
	ck_assert_int_eq(pipe(p), 0);
	close(p[0]);
	char dir[] = "/tmp/vmm-serve-XXXXXX", log[64], got[16] = "";
	ck_assert_ptr_nonnull(mkdtemp(dir));
	snprintf(log, sizeof(log), "%s/vm.log", dir);
	struct console c;
	console_init(&c, p[1]);
	ck_assert_int_eq(console_open_log(&c, log), 0);
	console_output(&c, "hello\n", 6); /* returns, the output dropped */
	ck_assert_int_eq(write(p[1], "x", 1), -1);
	ck_assert_int_eq(errno, EPIPE);
	FILE *f = fopen(log, "r");
	ck_assert_ptr_nonnull(f);
	ck_assert_uint_eq(fread(got, 1, sizeof(got) - 1, f), 6);
	ck_assert_str_eq(got, "hello\n");
	fclose(f);
	console_close(&c);
	close(p[1]);
	unlink(log);
	rmdir(dir);
}
END_TEST

Suite *vm_serve_suite(void)
{
	Suite *s = suite_create("vm_serve");
	TCase *tc = tcase_create("signals");
	HARNESS_ADD_TEST(tc, stop_signals_are_blocked_for_the_signal_thread);
	HARNESS_ADD_TEST(tc, console_output_to_a_reader_that_went_away_is_dropped);
	HARNESS_ADD_TEST(tc, a_hangup_ignored_from_the_start_does_not_stop_the_vm);
	suite_add_tcase(s, tc);
	return s;
}

/* The vmm command line: option parsing, value syntax, and what users see on bad input. */
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <poll.h>
#include <pthread.h>
#include <pty.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "elf_image.h"
#include "fake_vm.h"
#include "harness.h"
#include "run_args.h"
#include "spawn.h"
#include "vmm/cli/cli.h"
#include "vmm/cli/commands.h"
#include "vmm/error.h"
#include "vmm/monitor/monitor.h"
#include "vmm/monitor/qmp_config.h"
#include "vmm/monitor/qmp_fork.h"
#include "vmm/monitor/qmp_memory.h"
#include "vmm/monitor/qmp_snapshot.h"
#include "vmm/store/store.h"

#define PARSE RUN_PARSE

static void expect_parse_error(const char *needle, const char *const *args)
{
	struct vm_config cfg;
	ck_assert_int_eq(run_args_parse(&cfg, args), CLI_ERROR);
	ck_assert_msg(strstr(error_message(), needle), "message '%s' lacks '%s'", error_message(), needle);
	ck_assert_msg(!strchr(error_message(), '\n'), "one line: '%s'", error_message());
}
#define EXPECT_PARSE_ERROR(needle, ...) expect_parse_error((needle), (const char *const[]){__VA_ARGS__, NULL})

START_TEST(defaults_are_256m_one_cpu_empty_cmdline)
{
	struct vm_config cfg;
	ck_assert_int_eq(PARSE(&cfg, "guest.elf"), 0);
	ck_assert_uint_eq(cfg.mem.ram_size, 256ull << 20);
	ck_assert_uint_eq(cfg.ncpus, 1);
	ck_assert_str_eq(cfg.cmdline, "");
	ck_assert_str_eq(cfg.guest, "guest.elf");
	ck_assert_str_eq(cfg.kvm_path, "/dev/kvm");
	ck_assert_uint_eq(cfg.timeout_ms, 0);
}
END_TEST

START_TEST(options_in_every_spelling)
{
	struct vm_config cfg;
	ck_assert_int_eq(PARSE(&cfg, "-m", "64M", "-c2", "--cmdline=hello touch=8M", "guest.elf", "-vv"), 0);
	ck_assert_uint_eq(cfg.mem.ram_size, 64ull << 20);
	ck_assert_uint_eq(cfg.ncpus, 2);
	ck_assert_str_eq(cfg.cmdline, "hello touch=8M");
	ck_assert_int_eq(cfg.verbose, 2);
	ck_assert_int_eq(PARSE(&cfg, "--memory", "1G", "--cpus=3", "-p", "x", "--timeout", "500ms", "g"), 0);
	ck_assert_uint_eq(cfg.mem.ram_size, 1ull << 30);
	ck_assert_uint_eq(cfg.ncpus, 3);
	ck_assert_uint_eq(cfg.timeout_ms, 500);
}
END_TEST

START_TEST(size_suffixes_and_bare_mib)
{
	uint64_t b;
	ck_assert_int_eq(cli_parse_size("x", "64", &b), 0);
	ck_assert_uint_eq(b, 64ull << 20);
	ck_assert_int_eq(cli_parse_size("x", "512k", &b), 0);
	ck_assert_uint_eq(b, 512ull << 10);
	ck_assert_int_eq(cli_parse_size("x", "3G", &b), 0);
	ck_assert_uint_eq(b, 3ull << 30);
	ck_assert_int_eq(cli_parse_size("x", "2m", &b), 0);
	ck_assert_uint_eq(b, 2ull << 20);
	ck_assert_int_eq(cli_parse_size("x", "", &b), CLI_ERROR);
	ck_assert_int_eq(cli_parse_size("x", "G", &b), CLI_ERROR);
	ck_assert_int_eq(cli_parse_size("x", "12X", &b), CLI_ERROR);
	ck_assert_int_eq(cli_parse_size("x", "1GG", &b), CLI_ERROR);
	ck_assert_int_eq(cli_parse_size("x", "-1", &b), CLI_ERROR);
	ck_assert_int_eq(cli_parse_size("x", "99999999999999999999G", &b), CLI_ERROR);
	ck_assert_int_eq(cli_parse_size("x", "17179869184G", &b), CLI_ERROR); /* 2^64 bytes */
}
END_TEST

START_TEST(durations)
{
	uint64_t ms;
	ck_assert_int_eq(cli_parse_duration_ms("t", "30", &ms), 0);
	ck_assert_uint_eq(ms, 30000);
	ck_assert_int_eq(cli_parse_duration_ms("t", "250ms", &ms), 0);
	ck_assert_uint_eq(ms, 250);
	ck_assert_int_eq(cli_parse_duration_ms("t", "2m", &ms), 0);
	ck_assert_uint_eq(ms, 120000);
	ck_assert_int_eq(cli_parse_duration_ms("t", "0", &ms), CLI_ERROR);
	ck_assert_int_eq(cli_parse_duration_ms("t", "ms", &ms), CLI_ERROR);
	ck_assert_int_eq(cli_parse_duration_ms("t", "5h", &ms), CLI_ERROR);
	ck_assert_int_eq(cli_parse_duration_ms("t", "99999999999999", &ms), CLI_ERROR);
}
END_TEST

START_TEST(memory_errors_say_what_is_wrong)
{
	EXPECT_PARSE_ERROR("-m: 'lots' is not a size", "-m", "lots", "g");
	EXPECT_PARSE_ERROR("-m 8M is too small: at least 16 MiB", "-m", "8M", "g");
	EXPECT_PARSE_ERROR("-m 2048G is too large", "-m", "2048G", "g");
	EXPECT_PARSE_ERROR("-m 20481K is not a multiple of 4K", "-m", "20481K", "g");
	EXPECT_PARSE_ERROR("-m needs a value (SIZE)", "g", "-m");
}
END_TEST

START_TEST(cpu_count_must_be_1_to_64)
{
	EXPECT_PARSE_ERROR("-c: '0' is out of range (1 to 64)", "-c", "0", "g");
	EXPECT_PARSE_ERROR("-c: '65' is out of range (1 to 64)", "-c", "65", "g");
	EXPECT_PARSE_ERROR("-c: 'two' is not a number", "-c", "two", "g");
	EXPECT_PARSE_ERROR("-c: '99999999999999999999' is out of range", "-c", "99999999999999999999", "g");
}
END_TEST

START_TEST(unknown_options_and_extra_guests)
{
	EXPECT_PARSE_ERROR("unknown option -x (see vmm run --help)", "-x", "g");
	EXPECT_PARSE_ERROR("unknown option --frobnicate", "--frobnicate=1", "g");
	EXPECT_PARSE_ERROR("--verbose takes no value", "--verbose=2", "g");
	EXPECT_PARSE_ERROR("one GUEST only", "a.elf", "b.elf");
	EXPECT_PARSE_ERROR("no GUEST given", "-m", "64M");
}
END_TEST

START_TEST(double_dash_ends_options)
{
	struct vm_config cfg;
	ck_assert_int_eq(PARSE(&cfg, "--", "-odd-name.elf"), 0);
	ck_assert_str_eq(cfg.guest, "-odd-name.elf");
}
END_TEST

START_TEST(overlong_command_line_is_refused)
{
	char *big = malloc(5000);
	memset(big, 'a', 4999);
	big[4999] = '\0';
	EXPECT_PARSE_ERROR("the command line is 4999 bytes; at most 2047 fit", "-p", big, "g");
	free(big);
}
END_TEST

/* vmm restore: run's options, plus its own (the store, working sets) and one SNAPSHOT. */
START_TEST(restore_takes_runs_options_and_its_own)
{
	char *argv[] = {"restore", "-t", "2m", "--store", "/s", "-n", "r", "--prefetch", "ws", "snap", NULL};
	struct vm_config cfg;
	const char *store, *snapshot;
	bool private_memory;
	error_clear();
	ck_assert_msg(cmd_restore_parse(10, argv, &cfg, &store, &snapshot, &private_memory) == 0, "%s", error_message());
	ck_assert_str_eq(store, "/s");
	ck_assert_str_eq(snapshot, "snap");
	ck_assert_str_eq(cfg.name, "r");
	ck_assert_str_eq(cfg.prefetch_path, "ws");
	ck_assert_uint_eq(cfg.timeout_ms, 120000);
	ck_assert(!private_memory); /* shared unless asked */
	char *priv[] = {"restore", "--store", "/s", "--private", "snap", NULL};
	ck_assert_int_eq(cmd_restore_parse(5, priv, &cfg, &store, &snapshot, &private_memory), 0);
	ck_assert(private_memory);
	char *two[] = {"restore", "--store", "/s", "a", "b", NULL};
	ck_assert_int_eq(cmd_restore_parse(5, two, &cfg, &store, &snapshot, &private_memory), CLI_ERROR);
	ck_assert_str_eq(error_message(), "vmm restore: one SNAPSHOT only ('a' and 'b' given)");
	char *none[] = {"restore", "--store", "/s", NULL};
	ck_assert_int_eq(cmd_restore_parse(3, none, &cfg, &store, &snapshot, &private_memory), CLI_ERROR);
	ck_assert_ptr_nonnull(strstr(error_message(), "no SNAPSHOT given"));
	char *bad[] = {"restore", "-m", "1G", "snap", NULL}; /* the snapshot says how much RAM */
	ck_assert_int_eq(cmd_restore_parse(4, bad, &cfg, &store, &snapshot, &private_memory), CLI_ERROR);
	ck_assert_str_eq(error_message(), "vmm restore: unknown option -m (see vmm restore --help)");
}
END_TEST

/* Without -n, a restored VM is named after its snapshot, or SNAPSHOT.K, the first K free. */
START_TEST(restore_names_the_vm_after_the_snapshot)
{
	char buf[MONITOR_NAME_MAX + 1];
	ck_assert_int_eq(cmd_restore_name("web", NULL, 0, buf, sizeof(buf)), 0);
	ck_assert_str_eq(buf, "web");
	const char *others[] = {"db", "web.2"};
	ck_assert_int_eq(cmd_restore_name("web", others, 2, buf, sizeof(buf)), 0);
	ck_assert_str_eq(buf, "web");
	const char *one[] = {"web"};
	ck_assert_int_eq(cmd_restore_name("web", one, 1, buf, sizeof(buf)), 0);
	ck_assert_str_eq(buf, "web.2");
	const char *taken[] = {"web.4", "web", "web.2", "db"};
	ck_assert_int_eq(cmd_restore_name("web", taken, 4, buf, sizeof(buf)), 0);
	ck_assert_str_eq(buf, "web.3");
	char longest[MONITOR_NAME_MAX + 1];
	memset(longest, 'a', MONITOR_NAME_MAX);
	longest[MONITOR_NAME_MAX] = '\0';
	const char *l[] = {longest};
	ck_assert_int_eq(cmd_restore_name(longest, l, 1, buf, sizeof(buf)), -ENAMETOOLONG);
	ck_assert_int_eq(cmd_restore_name(".hidden", NULL, 0, buf, sizeof(buf)), -EINVAL);
}
END_TEST

START_TEST(counts_are_singular_for_one)
{
	char buf[CLI_COUNT_MAX];
	ck_assert_str_eq(cli_count(buf, sizeof(buf), 1, "snapshot"), "1 snapshot");
	ck_assert_str_eq(cli_count(buf, sizeof(buf), 0, "snapshot"), "0 snapshots");
	ck_assert_str_eq(cli_count(buf, sizeof(buf), 12, "page-in"), "12 page-ins");
	ck_assert_str_eq(CLI_COUNT(1, "object"), "1 object");
	ck_assert_str_eq(cli_count(buf, 8, 123456, "objects"), "123456 ");
}
END_TEST

START_TEST(help_is_recognised)
{
	struct vm_config cfg;
	ck_assert_int_eq(PARSE(&cfg, "--help"), 1);
	ck_assert_int_eq(PARSE(&cfg, "-m", "64M", "-h"), 1);
}
END_TEST

/* ---- the binary, as a user runs it (no KVM needed: these fail before KVM is opened) ---- */

static void expect_vmm_error(struct spawn_result *r, const char *needle)
{
	ck_assert_msg(r->status == 125, "status %d, stderr: %s", r->status, r->err);
	ck_assert_msg(strstr(r->err, needle), "stderr '%s' lacks '%s'", r->err, needle);
	/* One clear line: exactly one newline, at the end. */
	ck_assert_msg(strchr(r->err, '\n') == r->err + strlen(r->err) - 1, "not one line: '%s'", r->err);
	spawn_free(r);
}

START_TEST(cli_missing_guest_file)
{
	struct spawn_result r;
	ck_assert_int_eq(spawn_vmm(&r, 20, "run", "/nonexistent/guest.elf", NULL), 0);
	expect_vmm_error(&r, "vmm: cannot open guest image /nonexistent/guest.elf: No such file or directory");
}
END_TEST

START_TEST(cli_unreadable_guest_file)
{
	char path[] = "/tmp/vmm-unreadable-XXXXXX";
	int fd = mkstemp(path);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(write(fd, "x", 1), 1);
	close(fd);
	chmod(path, 0);
	struct spawn_result r;
	/* root reads anything: then the file is simply not an ELF. Both are clear errors. */
	ck_assert_int_eq(spawn_vmm(&r, 20, "run", path, NULL), 0);
	expect_vmm_error(&r, getuid() == 0 ? "not an ELF file" : "Permission denied");
	unlink(path);
}
END_TEST

/* Files users hand over by accident: each refused with one line, none read, none waited on
 * (a FIFO with no writer would block a plain open for ever). */
START_TEST(cli_guest_image_that_is_no_file)
{
	char dir[] = "/tmp/vmm-images-XXXXXX", empty[64], fifo[64];
	ck_assert_ptr_nonnull(mkdtemp(dir));
	snprintf(empty, sizeof(empty), "%s/empty", dir);
	snprintf(fifo, sizeof(fifo), "%s/fifo", dir);
	int fd = open(empty, O_WRONLY | O_CREAT, 0644);
	ck_assert_int_ge(fd, 0);
	close(fd);
	ck_assert_int_eq(mkfifo(fifo, 0600), 0);
	const char *cases[][2] = {
		{empty, "is empty"},
		{fifo, "is not a regular file"},
		{"/dev/null", "guest image /dev/null is not a regular file"},
		{dir, "is not a regular file"},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct spawn_result r;
		ck_assert_int_eq(spawn_vmm(&r, 20, "run", "-m", "64M", "-p", "hello", cases[i][0], NULL), 0);
		ck_assert_msg(!r.timed_out, "vmm run %s hung", cases[i][0]);
		expect_vmm_error(&r, cases[i][1]);
	}
	unlink(empty);
	unlink(fifo);
	rmdir(dir);
}
END_TEST

START_TEST(cli_not_an_elf)
{
	struct spawn_result r;
	ck_assert_int_eq(spawn_vmm(&r, 20, "run", "Makefile", NULL), 0);
	expect_vmm_error(&r, "vmm: Makefile: not an ELF file");
}
END_TEST

START_TEST(cli_bad_image_is_named_even_without_kvm)
{
	/* KVM is opened while the image is read: the image's error is the one reported. */
	struct spawn_result r;
	ck_assert_int_eq(spawn_vmm(&r, 20, "run", "--kvm", "/nonexistent/kvm", "Makefile", NULL), 0);
	expect_vmm_error(&r, "vmm: Makefile: not an ELF file");
}
END_TEST

START_TEST(cli_elf_without_pvh_note)
{
	struct elf_image img;
	const uint8_t code[] = {0xf4};
	elf_image_build(&img, code, 1, 0x100000, 0);
	elf_image_note(&img)->n_type = 5;
	const char *path = elf_image_write_temp(&img);
	struct spawn_result r;
	ck_assert_int_eq(spawn_vmm(&r, 20, "run", path, NULL), 0);
	expect_vmm_error(&r, "no PVH entry note");
	unlink(path);
}
END_TEST

START_TEST(cli_segments_outside_ram)
{
	struct elf_image img;
	const uint8_t code[] = {0xf4};
	elf_image_build(&img, code, 1, 0x100000, 0);
	elf_image_phdr(&img, 0)->p_paddr = 20ull << 20;
	*elf_image_note_entry(&img) = 20u << 20;
	const char *path = elf_image_write_temp(&img);
	struct spawn_result r;
	ck_assert_int_eq(spawn_vmm(&r, 20, "run", "-m", "16M", path, NULL), 0);
	expect_vmm_error(&r, "lies outside guest RAM (16 MiB)");
	unlink(path);
}
END_TEST

START_TEST(cli_kvm_device_missing)
{
	struct spawn_result r;
	ck_assert_int_eq(spawn_vmm(&r, 20, "run", "--kvm", "/nonexistent/kvm", harness_build_path("guest.elf"), NULL),
			 0);
	expect_vmm_error(&r, "cannot open /nonexistent/kvm: No such file or directory (load the kvm module");
}
END_TEST

/* vmm run -d whose VM cannot start: the one line comes out on the terminal, the status is
 * the VM's, no name is printed and no log is left behind (with or without KVM: the device
 * named does not exist). */
START_TEST(cli_detached_run_that_cannot_start_says_why)
{
	char dir[] = "/tmp/vmm-detach-XXXXXX", log[64];
	ck_assert_ptr_nonnull(mkdtemp(dir));
	setenv("XDG_RUNTIME_DIR", dir, 1);
	snprintf(log, sizeof(log), "%s/vmm/web.log", dir);
	struct spawn_result r;
	ck_assert_int_eq(spawn_vmm(&r, 20, "run", "-d", "-n", "web", "--kvm", "/nonexistent/kvm",
				   harness_build_path("guest.elf"), NULL),
			 0);
	ck_assert_msg(!r.timed_out, "vmm run -d hung");
	ck_assert_str_eq(r.out, "");
	expect_vmm_error(&r, "cannot open /nonexistent/kvm");
	ck_assert_int_eq(access(log, F_OK), -1);
	char sub[64];
	snprintf(sub, sizeof(sub), "%s/vmm", dir);
	rmdir(sub);
	ck_assert_int_eq(rmdir(dir), 0);
}
END_TEST

START_TEST(cli_kvm_device_not_kvm)
{
	struct spawn_result r;
	ck_assert_int_eq(spawn_vmm(&r, 20, "run", "--kvm", "/dev/null", harness_build_path("guest.elf"), NULL), 0);
	expect_vmm_error(&r, "/dev/null");
}
END_TEST

START_TEST(cli_swap_that_cannot_hold_pages_is_refused)
{
	/* Before the guest runs, with or without KVM: a swap that swallows or refuses pages
	 * would otherwise lose them, or leave the limit silently not kept. */
	const char *bad[] = {"/dev/null", "/dev/full", "/tmp"};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct spawn_result r;
		ck_assert_int_eq(spawn_vmm(&r, 20, "run", "-m", "64M", "--mem-limit", "4M", "--swap", bad[i], "-p", "hello",
					   harness_build_path("guest.elf"), NULL),
				 0);
		char want[96];
		snprintf(want, sizeof(want), "vmm: cannot use %s as the swap file: not a regular file", bad[i]);
		expect_vmm_error(&r, want);
	}
}
END_TEST

START_TEST(cli_bad_options)
{
	struct spawn_result r;
	ck_assert_int_eq(spawn_vmm(&r, 20, "run", "-c", "0", "g.elf", NULL), 0);
	expect_vmm_error(&r, "vmm run: -c: '0' is out of range");
	ck_assert_int_eq(spawn_vmm(&r, 20, "run", "-m", "1M", "g.elf", NULL), 0);
	expect_vmm_error(&r, "vmm run: -m 1M is too small");
	ck_assert_int_eq(spawn_vmm(&r, 20, "run", "--bogus", NULL), 0);
	expect_vmm_error(&r, "vmm run: unknown option --bogus");
	ck_assert_int_eq(spawn_vmm(&r, 20, "frobnicate", NULL), 0);
	expect_vmm_error(&r, "vmm: unknown command 'frobnicate'");
}
END_TEST

START_TEST(cli_help_tells_the_exit_statuses)
{
	struct spawn_result r;
	ck_assert_int_eq(spawn_vmm(&r, 20, "run", "--help", NULL), 0);
	ck_assert_int_eq(r.status, 0);
	ck_assert_ptr_nonnull(strstr(r.out, "usage: vmm run [OPTIONS] GUEST"));
	ck_assert_ptr_nonnull(strstr(r.out, "123  the guest triple-faulted"));
	ck_assert_ptr_nonnull(strstr(r.out, "--memory SIZE"));
	spawn_free(&r);
	ck_assert_int_eq(spawn_vmm(&r, 20, "--help", NULL), 0);
	ck_assert_int_eq(r.status, 0);
	ck_assert_ptr_nonnull(strstr(r.out, "  run "));
	spawn_free(&r);
}
END_TEST

/* vmm help VERB is vmm VERB --help, byte for byte; vmm help alone the top-level help. */
START_TEST(cli_help_verb_is_the_verbs_help)
{
	const char *verbs[] = {"run", "restore", "ps", "stats", "memory", "stop", "cont", "quit", "snapshot", "fork", "store"};
	for (size_t i = 0; i < sizeof(verbs) / sizeof(verbs[0]); i++) {
		struct spawn_result h, want;
		ck_assert_int_eq(spawn_vmm(&h, 20, "help", verbs[i], NULL), 0);
		ck_assert_int_eq(spawn_vmm(&want, 20, verbs[i], "--help", NULL), 0);
		ck_assert_msg(h.status == 0, "vmm help %s: status %d, stderr: %s", verbs[i], h.status, h.err);
		ck_assert_int_eq(want.status, 0);
		ck_assert_msg(strncmp(h.out, "usage: vmm ", 11) == 0, "vmm help %s: %s", verbs[i], h.out);
		ck_assert_str_eq(h.out, want.out);
		ck_assert_str_eq(h.err, "");
		spawn_free(&h);
		spawn_free(&want);
	}
	struct spawn_result r, top;
	ck_assert_int_eq(spawn_vmm(&r, 20, "help", NULL), 0);
	ck_assert_int_eq(spawn_vmm(&top, 20, "--help", NULL), 0);
	ck_assert_int_eq(r.status, 0);
	ck_assert_ptr_nonnull(strstr(r.out, "usage: vmm COMMAND"));
	ck_assert_str_eq(r.out, top.out);
	spawn_free(&r);
	spawn_free(&top);
	ck_assert_int_eq(spawn_vmm(&r, 20, "help", "nosuch", NULL), 0);
	ck_assert_str_eq(r.out, "");
	expect_vmm_error(&r, "vmm help: unknown command 'nosuch'");
	ck_assert_int_eq(spawn_vmm(&r, 20, "help", "run", "ps", NULL), 0);
	expect_vmm_error(&r, "vmm help: one COMMAND only");
}
END_TEST

/*
 * A fake VM monitor: a child process that accepts one connection on a socket in a fresh
 * directory and sends the QMP greeting, the answer to qmp_capabilities (id 1) and @answer
 * as the "return" of the next command (id 2), then reads until the client hangs up.
 */
struct fake_monitor {
	char dir[64], path[96];
	pid_t pid;
};

/* A fake monitor at a fresh socket that says @text to its one client. */
static void fake_monitor_serve(struct fake_monitor *m, const char *text)
{
	strcpy(m->dir, "/tmp/vmm-fakemon-XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(m->dir));
	snprintf(m->path, sizeof(m->path), "%s/vm.sock", m->dir);
	m->pid = spawn_serve_once(m->path, text);
}

static void fake_monitor_start(struct fake_monitor *m, const char *answer)
{
	char text[4096];
	snprintf(text, sizeof(text),
		 "{\"QMP\":{\"version\":{},\"capabilities\":[]}}\n{\"return\":{},\"id\":1}\n{\"return\":%s,\"id\":2}\n",
		 answer);
	fake_monitor_serve(m, text);
}

/* After the client is done: a client that never connected leaves the child in accept. */
static void fake_monitor_stop(struct fake_monitor *m)
{
	kill(m->pid, SIGKILL);
	int st;
	ck_assert_int_eq(waitpid(m->pid, &st, 0), m->pid);
	unlink(m->path);
	rmdir(m->dir);
}

/*
 * A VM's commands as its monitor checks their arguments, each answered by a stub: what the
 * CLI sends a VM is checked against the VM's own argument specs (the table of each command
 * with the real specs, a stub handler with a canned answer), so that a request of the wrong
 * shape (a null, a number as a string) fails here as it would on a real VM.
 */
static int stub_answer(struct monitor_call *call, void *ctx, json_t *args, json_t **ret)
{
	(void)call;
	(void)args;
	*ret = json_loads(ctx, JSON_DECODE_ANY, NULL);
	return *ret ? 0 : -EINVAL;
}

/* One answer for every command but query-jobs: each verb of the CLI finds its fields. */
static const char stub_object[] =
	"{\"listed\":1,\"stored\":1,\"shared\":0,\"parent\":\"\",\"pause-ns\":1000,\"total-ns\":2000,"
	"\"id\":\"checkpoint\",\"generation\":1,\"ready-ns\":2000,\"children\":[{\"name\":\"web.1\",\"pid\":1,"
	"\"index\":1,\"fork-ns\":1000,\"status\":\"running\"}],\"resident-pages\":0,\"objects\":0,"
	"\"page-size\":4096,\"entries\":[],\"addr\":1073741824,\"size\":4096,\"socket\":\"/tmp/x.sock\"}";
static const char stub_jobs[] = "[{\"id\":\"checkpoint\",\"status\":\"concluded\",\"taken\":1,\"last\":\"ck-1\"}]";
static struct monitor_command stub_objects[96], stub_job_table[4];

/* The fake VM @v (not listening yet) with every command of the VM's tables, their real
 * argument specs, answered by stubs. */
static void stub_vm_start(struct fake_vm *v)
{
	const struct monitor_command *tables[] = {qmp_fork_commands, qmp_snapshot_commands, qmp_memory_commands,
						  qmp_config_commands};
	unsigned n = 0, nj = 0;
	for (unsigned t = 0; t < sizeof(tables) / sizeof(tables[0]); t++) {
		for (const struct monitor_command *c = tables[t]; c->name; c++) {
			if (!strcmp(c->name, "query-config"))
				continue; /* the fake VM's own */
			bool jobs = !strcmp(c->name, "query-jobs");
			struct monitor_command *to = jobs ? &stub_job_table[nj++] : &stub_objects[n++];
			ck_assert(nj < 4 && n < 96);
			*to = (struct monitor_command){c->name, stub_answer, c->args, c->help};
		}
	}
	stub_objects[n] = (struct monitor_command){NULL};
	stub_job_table[nj] = (struct monitor_command){NULL};
	ck_assert_msg(monitor_add_commands(v->mon, stub_objects, (void *)stub_object) == 0, "%s", error_message());
	ck_assert_msg(monitor_add_commands(v->mon, stub_job_table, (void *)stub_jobs) == 0, "%s", error_message());
	ck_assert_msg(monitor_listen(v->mon, v->path) == 0, "%s", error_message());
}

START_TEST(cli_requests_pass_the_vms_own_argument_checks)
{
	struct fake_vm v;
	fake_vm_start(&v, "web", false);
	stub_vm_start(&v);
	const char *const runs[][12] = {
		{"snapshot", "--store", "/tmp/s", "--as", "x"},
		{"snapshot", "--store", "/tmp/s", "--as", "x", "-m", "a description"},
		{"snapshot", "--store", "/tmp/s", "--every", "250ms", "--keep", "3", "--as", "ck"},
		{"snapshot", "--store", "/tmp/s", "--every", "1s"},
		{"snapshot", "--stop"},
		{"fork", "-N", "1"},
		{"memory"},
		{"memory", "vm-allocate", "size=1M"},
		{"memory", "vm-deallocate", "addr=1G", "size=1M", "discard=true"},
		{"memory", "vm-inherit", "addr=0", "size=4096", "inheritance=share"},
		{"memory", "vm-protect", "addr=0", "size=4096", "protection=r"},
		{"memory", "vm-map", "path=/etc/hostname", "size=4096", "copy=false"},
		{"memory", "vm-copy", "source=0", "size=4096", "dest=1G"},
		{"memory", "vm-export", "addr=0", "size=4096"},
		{"memory", "vm-set-attributes", "addr=0", "size=4096", "cluster=8"},
		{"stop"},
		{"cont"},
	};
	for (size_t i = 0; i < sizeof(runs) / sizeof(runs[0]); i++) {
		char *argv[16];
		unsigned k = 0;
		argv[k++] = (char *)harness_build_path("vmm");
		argv[k++] = (char *)runs[i][0];
		argv[k++] = "--monitor";
		argv[k++] = v.path;
		for (unsigned j = 1; j < 12 && runs[i][j]; j++)
			argv[k++] = (char *)runs[i][j];
		argv[k] = NULL;
		struct spawn_result r;
		ck_assert_int_eq(spawn_run(&r, 20, argv), 0);
		ck_assert_msg(r.status == 0 && !strstr(r.err, "Invalid parameter"), "vmm %s %s: status %d: %s%s", runs[i][0],
			      runs[i][1] ? runs[i][1] : "", r.status, r.out, r.err);
		spawn_free(&r);
	}
	fake_vm_stop(&v);
}
END_TEST

/* vmm memory's words agree with the counts: "1 page (4.0 KiB) resident in 1 object", "1 fault". */
START_TEST(cli_memory_says_1_object_not_1_objects)
{
	struct fake_monitor m;
	fake_monitor_start(&m, "{\"resident-pages\":1,\"objects\":1,\"entries\":[{\"start\":0,\"end\":4096,"
			       "\"protection\":\"rwx\",\"max-protection\":\"rwx\",\"inheritance\":\"copy\","
			       "\"region\":\"ram\",\"resident\":1,\"chain\":[{\"id\":7,\"resident\":1,\"paged\":0,"
			       "\"pager\":null,\"faults\":1,\"pageins\":1,\"pageouts\":2,\"cow-pages\":0,"
			       "\"zero-fills\":1}]}]}");
	struct spawn_result r;
	ck_assert_int_eq(spawn_vmm(&r, 20, "memory", "--monitor", m.path, NULL), 0);
	fake_monitor_stop(&m);
	ck_assert_msg(r.status == 0, "status %d: %s", r.status, r.err);
	ck_assert_msg(strstr(r.out, "\n1 page (4.0 KiB) resident in 1 object\n"), "%s", r.out);
	/* SIZE and RESIDENT in the same unit. */
	ck_assert_msg(strstr(r.out, "0x0000000000000000 0x0000000000001000    4.0 KiB rwx  rwx  copy  ram         4.0 KiB\n"),
		      "%s", r.out);
	ck_assert_msg(strstr(r.out, "object 7: 1 resident, 0 paged, pager none, 1 fault, 1 page-in, 2 page-outs,"), "%s",
		      r.out);
	spawn_free(&r);
}
END_TEST

/* vmm snapshot's line: "1 page listed". */
START_TEST(cli_snapshot_says_1_page_not_1_pages)
{
	struct fake_monitor m;
	fake_monitor_start(&m, "{\"listed\":1,\"stored\":1,\"shared\":0,\"parent\":\"\",\"pause-ns\":1000,"
			       "\"total-ns\":2000}");
	struct spawn_result r;
	ck_assert_int_eq(spawn_vmm(&r, 20, "snapshot", "--monitor", m.path, "--store", "/tmp/s", "--as", "x", NULL), 0);
	fake_monitor_stop(&m);
	ck_assert_msg(r.status == 0, "status %d: %s", r.status, r.err);
	ck_assert_msg(strstr(r.out, "snapshot x in /tmp/s: 1 page listed, 1 new"), "%s", r.out);
	ck_assert_str_eq(r.err, ""); /* not a terminal: no progress line */
	spawn_free(&r);
}
END_TEST

/* vmm snapshot --every starts continuous checkpoints and says what it started. */
START_TEST(cli_snapshot_every_starts_checkpoints)
{
	struct fake_monitor m;
	fake_monitor_start(&m, "{\"id\":\"checkpoint\"}");
	struct spawn_result r;
	ck_assert_int_eq(spawn_vmm(&r, 20, "snapshot", "--monitor", m.path, "--store", "/tmp/s", "--every", "250ms",
				   "--keep", "3", "--as", "ck", NULL),
			 0);
	fake_monitor_stop(&m);
	ck_assert_msg(r.status == 0, "status %d: %s", r.status, r.err);
	ck_assert_msg(strstr(r.out, "checkpoints of the VM every 250 ms into /tmp/s as ck-N, the newest 3 kept: started"),
		      "%s", r.out);
	spawn_free(&r);
}
END_TEST

/* vmm snapshot --stop: job-cancel, then what the checkpoints came to (query-jobs). */
START_TEST(cli_snapshot_stop_ends_checkpoints_and_counts_them)
{
	struct fake_monitor m;
	fake_monitor_serve(&m, "{\"QMP\":{\"version\":{},\"capabilities\":[]}}\n{\"return\":{},\"id\":1}\n"
					 "{\"return\":{},\"id\":2}\n{\"return\":[{\"id\":\"checkpoint\",\"status\":"
					 "\"aborting\",\"taken\":1,\"last\":\"ck-1\"}],\"id\":3}\n");
	struct spawn_result r;
	ck_assert_int_eq(spawn_vmm(&r, 20, "snapshot", "--monitor", m.path, "--stop", NULL), 0);
	fake_monitor_stop(&m);
	ck_assert_msg(r.status == 0, "status %d: %s", r.status, r.err);
	ck_assert_msg(strstr(r.out, "checkpoints of the VM end after the one in progress: 1 checkpoint taken, the last ck-1"),
		      "%s", r.out);
	spawn_free(&r);
}
END_TEST

/*
 * A fake VM for Ctrl-C on vmm snapshot, on a thread: the first client asks snapshot-save
 * and is sent SIGINT (its pid from SO_PEERCRED) instead of an answer; the second must ask
 * job-cancel of the job "snapshot", which is answered; then the first is answered as a VM
 * answers a cancelled snapshot. @ok: the second client asked what it should.
 */
struct cancel_vm {
	int listen_fd;
	char dir[64], path[128];
	bool ok;
	pthread_t thread;
};

/* One line from @fd into @buf (within 10 s); false at EOF or on timeout. */
static bool cancel_vm_line(int fd, char *buf, size_t size)
{
	size_t n = 0;
	while (n + 1 < size) {
		struct pollfd p = {fd, POLLIN, 0};
		if (poll(&p, 1, 10000) != 1 || read(fd, buf + n, 1) != 1)
			return false;
		if (buf[n++] == '\n')
			break;
	}
	buf[n] = 0;
	return true;
}

/* Accept a client, greet it, take its qmp_capabilities; the next line into @line. */
static int cancel_vm_client(struct cancel_vm *v, char *line, size_t size)
{
	int fd = accept(v->listen_fd, NULL, NULL);
	const char *hello = "{\"QMP\":{\"version\":{},\"capabilities\":[]}}\n";
	if (fd < 0 || write(fd, hello, strlen(hello)) < 0 || !cancel_vm_line(fd, line, size))
		return -1;
	const char *caps = "{\"return\":{},\"id\":1}\n";
	if (write(fd, caps, strlen(caps)) < 0 || !cancel_vm_line(fd, line, size))
		return -1;
	return fd;
}

/* Whether @line is a snapshot-save whose arguments are all strings, as the VM's monitor
 * demands (an absent description is left out, not null). */
static bool snapshot_save_well_typed(const char *line)
{
	json_t *req = json_loads(line, 0, NULL);
	json_t *args = json_object_get(req, "arguments");
	const char *verb = json_string_value(json_object_get(req, "execute"));
	bool ok = verb && !strcmp(verb, "snapshot-save") && json_is_object(args);
	const char *key;
	json_t *value;
	json_object_foreach(args, key, value)
		ok = ok && json_is_string(value);
	json_decref(req);
	return ok;
}

static void *cancel_vm_main(void *arg)
{
	struct cancel_vm *v = arg;
	char line[1024];
	int first = cancel_vm_client(v, line, sizeof(line));
	struct ucred cred;
	socklen_t len = sizeof(cred);
	if (first < 0 || !snapshot_save_well_typed(line) ||
	    getsockopt(first, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0)
		return NULL;
	kill(cred.pid, SIGINT);
	int second = cancel_vm_client(v, line, sizeof(line));
	v->ok = second >= 0 && strstr(line, "job-cancel") && strstr(line, "\"snapshot\"");
	const char *done = "{\"return\":{},\"id\":2}\n",
		   *cancelled = "{\"error\":{\"class\":\"GenericError\",\"desc\":\"snapshot cancelled (job-cancel): "
				"nothing of it was stored\"},\"id\":2}\n";
	if (second >= 0 && write(second, done, strlen(done)) < 0)
		v->ok = false;
	if (write(first, cancelled, strlen(cancelled)) < 0)
		v->ok = false;
	if (second >= 0)
		close(second);
	close(first);
	return NULL;
}

START_TEST(cli_snapshot_ctrl_c_cancels_the_snapshot)
{
	struct cancel_vm v = {.ok = false};
	strcpy(v.dir, "/tmp/vmm-cancel-XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(v.dir));
	snprintf(v.path, sizeof(v.path), "%s/vm.sock", v.dir);
	struct sockaddr_un addr = {.sun_family = AF_UNIX};
	strcpy(addr.sun_path, v.path);
	v.listen_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	ck_assert_int_eq(bind(v.listen_fd, (struct sockaddr *)&addr, sizeof(addr)), 0);
	ck_assert_int_eq(listen(v.listen_fd, 4), 0);
	ck_assert_int_eq(pthread_create(&v.thread, NULL, cancel_vm_main, &v), 0);
	struct spawn_result r;
	ck_assert_int_eq(spawn_vmm(&r, 30, "snapshot", "--monitor", v.path, "--store", "/tmp/s", "--as", "x", NULL), 0);
	pthread_join(v.thread, NULL);
	close(v.listen_fd);
	unlink(v.path);
	rmdir(v.dir);
	ck_assert(v.ok);
	ck_assert_msg(r.status == 130 && strstr(r.err, "vmm snapshot: cancelled: nothing of x was stored; the VM runs on"),
		      "status %d: %s", r.status, r.err);
	spawn_free(&r);
}
END_TEST

/* Bad uses of the checkpoint options: status 125 and the reason (@want), no VM needed. */
static void expect_refused(const char *want, const char *a1, const char *a2, const char *a3, const char *a4)
{
	struct spawn_result r;
	ck_assert_int_eq(spawn_vmm(&r, 20, "snapshot", a1, a2, a3, a4, NULL), 0);
	ck_assert_msg(r.status == 125 && strstr(r.err, want), "%s %s: status %d: %s", a1, a2, r.status, r.err);
	spawn_free(&r);
}

/* A description that cannot be kept is refused before any VM is asked. */
START_TEST(cli_snapshot_description_is_checked_first)
{
	struct spawn_result r;
	ck_assert_int_eq(spawn_vmm(&r, 20, "snapshot", "-m", "two\nlines", "--monitor", "/nonexistent/vm.sock", "web", NULL),
			 0);
	expect_vmm_error(&r, "vmm snapshot: --description: a snapshot's description is at most 255 bytes, none a control character");
	ck_assert_int_eq(spawn_vmm(&r, 20, "snapshot", "-m", "x", "--every", "1s", "--monitor", "/nonexistent/vm.sock", "web",
				   NULL),
			 0);
	expect_vmm_error(&r, "--description is for one snapshot");
}
END_TEST

START_TEST(cli_snapshot_checkpoint_options_are_checked)
{
	expect_refused("--keep goes with --every", "--keep", "3", "web", NULL);
	expect_refused("--stop takes no other option", "--stop", "--every", "1s", "web");
	expect_refused("--every: '0' is not a positive duration", "--every", "0", "web", NULL);
	expect_refused("--keep", "--every", "1s", "--keep", "0");
}
END_TEST

static void sleep_ms(long ms)
{
	struct timespec t = {ms / 1000, ms % 1000 * 1000000L};
	nanosleep(&t, NULL);
}

/*
 * A fake VM monitor for vmm snapshot's progress: in a child process, at a socket in a fresh
 * directory, the command connection (greeting, qmp_capabilities answered) and then the
 * events connection (the same, then two SNAPSHOT_PROGRESS of snapshot "x", 1.3 s and
 * 0.3 s apart: 64 of 256 pages, then 256 of 256), and 0.5 s later snapshot-save's answer
 * on the command connection. Reads until the client hangs up.
 */
static void fake_snapshot_monitor_start(struct fake_monitor *m)
{
	static const char hello[] = "{\"QMP\":{\"version\":{},\"capabilities\":[]}}\n{\"return\":{},\"id\":1}\n";
	static const char *const later[] = {
		"{\"event\":\"SNAPSHOT_PROGRESS\",\"data\":{\"name\":\"x\",\"done\":64,\"total\":256}}\n",
		"{\"event\":\"SNAPSHOT_PROGRESS\",\"data\":{\"name\":\"x\",\"done\":256,\"total\":256}}\n",
		"{\"return\":{\"listed\":256,\"stored\":256,\"shared\":0,\"parent\":\"\",\"pause-ns\":1000,"
		"\"total-ns\":2000},\"id\":2}\n",
	};
	strcpy(m->dir, "/tmp/vmm-fakemon-XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(m->dir));
	snprintf(m->path, sizeof(m->path), "%s/vm.sock", m->dir);
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", m->path);
	int fd = socket(AF_UNIX, SOCK_STREAM, 0);
	ck_assert_int_eq(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	ck_assert_int_eq(listen(fd, 2), 0);
	m->pid = fork();
	ck_assert_int_ge(m->pid, 0);
	if (m->pid == 0) {
		int cmd = accept(fd, NULL, NULL);
		bool ok = cmd >= 0 && write(cmd, hello, strlen(hello)) == (ssize_t)strlen(hello);
		int ev = ok ? accept(fd, NULL, NULL) : -1;
		ok = ev >= 0 && write(ev, hello, strlen(hello)) == (ssize_t)strlen(hello);
		const long wait_ms[] = {1300, 300, 500};
		for (int i = 0; i < 3 && ok; i++) {
			sleep_ms(wait_ms[i]);
			int to = i < 2 ? ev : cmd;
			ok = write(to, later[i], strlen(later[i])) == (ssize_t)strlen(later[i]);
		}
		char sink[4096];
		while (ok && read(cmd, sink, sizeof(sink)) > 0)
			;
		_exit(ok ? 0 : 1);
	}
	close(fd);
}

/* Everything build/vmm @args... writes to its terminal (a pty: stdout and stderr, "\n" as
 * "\r\n") until it exits, in @out (NUL-terminated); returns its exit status. */
static int vmm_on_a_pty(char *out, size_t size, char *const args[])
{
	char *argv[16];
	int n = 0;
	argv[n++] = (char *)harness_build_path("vmm");
	for (; *args && n < 15; args++)
		argv[n++] = *args;
	argv[n] = NULL;
	int master;
	pid_t pid = forkpty(&master, NULL, NULL, NULL);
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		execv(argv[0], argv);
		_exit(127);
	}
	size_t len = 0;
	struct pollfd p = {.fd = master, .events = POLLIN};
	while (len + 1 < size && poll(&p, 1, 20000) == 1) {
		ssize_t k = read(master, out + len, size - 1 - len);
		if (k <= 0)
			break; /* EIO: the child and its terminal are gone */
		len += (size_t)k;
	}
	out[len] = '\0';
	close(master);
	int st;
	ck_assert_int_eq(waitpid(pid, &st, 0), pid);
	return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

/* On a terminal, vmm snapshot redraws one line in place ("\r" ... "\033[K"): bytes, percent,
 * rate and time left while pages are written, "syncing..." once all are but the answer has
 * not come, then the durable line and a newline. */
START_TEST(cli_snapshot_draws_progress_on_a_terminal)
{
	struct fake_monitor m;
	fake_snapshot_monitor_start(&m);
	char out[8192];
	char *args[] = {"snapshot", "--monitor", m.path, "--store", "/tmp/s", "--as", "x", "web", NULL};
	int status = vmm_on_a_pty(out, sizeof(out), args);
	fake_monitor_stop(&m);
	ck_assert_msg(status == 0, "status %d: %s", status, out);
	const char *writing = strstr(out, "\rsnapshot web -> x: 256.0 KiB of 1.0 MiB (25%), ");
	ck_assert_msg(writing, "%s", out);
	const char *rate = strstr(writing, " KiB/s, "), *left = strstr(writing, " s left\033[K");
	ck_assert_msg(rate && left && rate < left, "%s", out);
	const char *syncing = strstr(writing, "\rsnapshot web -> x: 1.0 MiB written, syncing...\033[K");
	ck_assert_msg(syncing, "%s", out);
	const char *durable = strstr(syncing, "\rsnapshot web -> x: 1.0 MiB written in ");
	ck_assert_msg(durable && strstr(durable, " s, durable\033[K\r\n"), "%s", out);
	ck_assert_msg(strstr(durable, "snapshot x in /tmp/s: 256 pages listed, 256 new"), "%s", out);
}
END_TEST

static void rm_rf(const char *path)
{
	char cmd[300];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", path);
	ck_assert_int_eq(system(cmd), 0);
}

/* The environment the default store comes from, saved to be put back after a test. */
static const char *const store_env_names[] = {"HOME", "XDG_DATA_HOME", "VMM_STORE"};
struct store_env {
	char *saved[3];
};

/* Set HOME, XDG_DATA_HOME and VMM_STORE (NULL: unset) for the vmm processes spawned next. */
static void store_env_set(struct store_env *e, const char *home, const char *xdg, const char *vmm_store)
{
	const char *values[] = {home, xdg, vmm_store};
	for (int i = 0; i < 3; i++) {
		const char *old = getenv(store_env_names[i]);
		if (e)
			e->saved[i] = old ? strdup(old) : NULL;
		if (values[i])
			setenv(store_env_names[i], values[i], 1);
		else
			unsetenv(store_env_names[i]);
	}
}

static void store_env_restore(struct store_env *e)
{
	store_env_set(NULL, e->saved[0], e->saved[1], e->saved[2]);
	for (int i = 0; i < 3; i++)
		free(e->saved[i]);
}

/* The store commands without DIR: $VMM_STORE, else $XDG_DATA_HOME/vmm/store, else
 * ~/.local/share/vmm/store; reading one that does not exist says so, and creates nothing. */
START_TEST(cli_store_commands_use_the_default_store)
{
	char dir[] = "/tmp/vmm-home-XXXXXX", home[128], xdg[160], env_store[160], want[512];
	ck_assert_ptr_nonnull(mkdtemp(dir));
	snprintf(home, sizeof(home), "%s/home", dir);
	snprintf(xdg, sizeof(xdg), "%s/xdg", dir);
	snprintf(env_store, sizeof(env_store), "%s/env-store", dir);
	ck_assert_int_eq(mkdir(home, 0755), 0);
	struct store_env e;
	struct spawn_result r;
	const char *const cases[][4] = {
		/* HOME, XDG_DATA_HOME, VMM_STORE, the store used */
		{home, NULL, NULL, "%s/.local/share/vmm/store"},
		{home, "relative/xdg", NULL, "%s/.local/share/vmm/store"},
		{home, xdg, NULL, "%s/vmm/store"},
		{home, xdg, env_store, "%s"},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		store_env_set(&e, cases[i][0], cases[i][1], cases[i][2]);
		const char *base = cases[i][2] ? cases[i][2] : cases[i][1] && cases[i][1][0] == '/' ? xdg : home;
		char path[256];
		snprintf(path, sizeof(path), cases[i][3], base);
		const char *verbs[] = {"ls", "verify", "gc"};
		for (size_t k = 0; k < 3; k++) {
			ck_assert_int_eq(spawn_vmm(&r, 20, "store", verbs[k], NULL), 0);
			snprintf(want, sizeof(want), "vmm store %s: no store at %s: No such file or directory\n", verbs[k], path);
			ck_assert_msg(r.status == 125 && strcmp(r.err, want) == 0, "case %zu: status %d: '%s', not '%s'", i,
				      r.status, r.err, want);
			spawn_free(&r);
		}
		ck_assert_int_eq(spawn_vmm(&r, 20, "store", "rm", "base", NULL), 0);
		ck_assert_msg(r.status == 125 && strstr(r.err, path), "%s", r.err);
		spawn_free(&r);
		ck_assert_int_eq(access(path, F_OK), -1);
		/* Once it exists, it is the one listed. */
		char cmd[600];
		snprintf(cmd, sizeof(cmd), "mkdir -p %s", path);
		ck_assert_int_eq(system(cmd), 0);
		struct store *s;
		ck_assert_int_eq(store_open(path, true, &s), 0);
		store_close(s);
		ck_assert_int_eq(spawn_vmm(&r, 20, "store", "verify", NULL), 0);
		snprintf(want, sizeof(want), "%s: 0 snapshots, 0 pages checked, 0 packs, 0 leftovers: valid\n", path);
		ck_assert_msg(r.status == 0 && strcmp(r.out, want) == 0, "case %zu: %s%s", i, r.out, r.err);
		spawn_free(&r);
		rm_rf(base);
		if (base != home)
			rm_rf(home);
		ck_assert_int_eq(mkdir(home, 0755), 0);
		store_env_restore(&e);
	}
	/* No HOME, no VMM_STORE: one line saying what to set. */
	store_env_set(&e, NULL, NULL, NULL);
	ck_assert_int_eq(spawn_vmm(&r, 20, "store", "ls", NULL), 0);
	ck_assert_str_eq(r.err, "vmm store ls: no store given, and no default: set VMM_STORE (or HOME, for "
				"~/.local/share/vmm/store)\n");
	ck_assert_int_eq(r.status, 125);
	spawn_free(&r);
	store_env_restore(&e);
	rm_rf(dir);
}
END_TEST

static unsigned mode_of(const char *base, const char *rel)
{
	char path[300];
	snprintf(path, sizeof(path), "%s/%s", base, rel);
	struct stat st;
	ck_assert_msg(stat(path, &st) == 0, "%s missing", path);
	return st.st_mode & 07777;
}

/* vmm snapshot without --store writes into the per-user store, making the folders missing
 * on its way with mode 0700 (and leaving those there as they are). */
START_TEST(cli_snapshot_makes_the_default_store_private)
{
	char home[] = "/tmp/vmm-home-XXXXXX", want[300];
	ck_assert_ptr_nonnull(mkdtemp(home));
	char local[200];
	snprintf(local, sizeof(local), "%s/.local", home);
	ck_assert_int_eq(mkdir(local, 0755), 0);
	struct store_env e;
	store_env_set(&e, home, NULL, NULL);
	struct fake_monitor m;
	fake_monitor_start(&m, "{\"listed\":2,\"stored\":2,\"shared\":0,\"parent\":\"\",\"pause-ns\":1000,"
			       "\"total-ns\":2000}");
	struct spawn_result r;
	ck_assert_int_eq(spawn_vmm(&r, 20, "snapshot", "--monitor", m.path, "--as", "x", NULL), 0);
	fake_monitor_stop(&m);
	store_env_restore(&e);
	ck_assert_msg(r.status == 0, "status %d: %s", r.status, r.err);
	snprintf(want, sizeof(want), "snapshot x in %s/.local/share/vmm/store: 2 pages listed", home);
	ck_assert_msg(strncmp(r.out, want, strlen(want)) == 0, "%s", r.out);
	spawn_free(&r);
	ck_assert_uint_eq(mode_of(home, ".local"), 0755);
	ck_assert_uint_eq(mode_of(home, ".local/share"), 0700);
	ck_assert_uint_eq(mode_of(home, ".local/share/vmm"), 0700);
	ck_assert_uint_eq(mode_of(home, ".local/share/vmm/store"), 0700);
	rm_rf(home);
}
END_TEST

/* vmm restore without --store reads the default store. */
START_TEST(restore_reads_the_default_store)
{
	struct store_env e;
	store_env_set(&e, "/home/someone", "/xdg", NULL);
	char *argv[] = {"restore", "snap", NULL};
	struct vm_config cfg;
	const char *store, *snapshot;
	bool private_memory;
	error_clear();
	int r = cmd_restore_parse(2, argv, &cfg, &store, &snapshot, &private_memory);
	ck_assert_msg(r == 0, "%s", error_message());
	ck_assert_str_eq(store, "/xdg/vmm/store");
	store_env_set(NULL, "/home/someone", NULL, NULL);
	ck_assert_int_eq(cmd_restore_parse(2, argv, &cfg, &store, &snapshot, &private_memory), 0);
	ck_assert_str_eq(store, "/home/someone/.local/share/vmm/store");
	store_env_set(NULL, "/home/someone", "/xdg", "/env");
	ck_assert_int_eq(cmd_restore_parse(2, argv, &cfg, &store, &snapshot, &private_memory), 0);
	ck_assert_str_eq(store, "/env");
	store_env_restore(&e);
}
END_TEST

/* The tools are built in the plain build only (not beside an ASan VMM_BUILD). */
START_TEST(cli_pager_server_help_exits_0)
{
	char path[] = "build/pager_server", help[] = "--help";
	char *argv[] = {path, help, NULL};
	struct spawn_result r;
	ck_assert_int_eq(spawn_run(&r, 20, argv), 0);
	ck_assert_msg(r.status == 0, "status %d, stderr: %s", r.status, r.err);
	ck_assert_ptr_nonnull(strstr(r.out, "usage: pager_server "));
	ck_assert_str_eq(r.err, "");
	spawn_free(&r);
	char *none[] = {path, NULL};
	ck_assert_int_eq(spawn_run(&r, 20, none), 0);
	ck_assert_int_eq(r.status, 2);
	ck_assert_ptr_nonnull(strstr(r.err, "usage: pager_server "));
	spawn_free(&r);
}
END_TEST

Suite *cli_suite(void)
{
	Suite *s = suite_create("cli");
	TCase *tc = tcase_create("parse");
	HARNESS_ADD_TEST(tc, defaults_are_256m_one_cpu_empty_cmdline);
	HARNESS_ADD_TEST(tc, options_in_every_spelling);
	HARNESS_ADD_TEST(tc, size_suffixes_and_bare_mib);
	HARNESS_ADD_TEST(tc, durations);
	HARNESS_ADD_TEST(tc, memory_errors_say_what_is_wrong);
	HARNESS_ADD_TEST(tc, cpu_count_must_be_1_to_64);
	HARNESS_ADD_TEST(tc, unknown_options_and_extra_guests);
	HARNESS_ADD_TEST(tc, double_dash_ends_options);
	HARNESS_ADD_TEST(tc, overlong_command_line_is_refused);
	HARNESS_ADD_TEST(tc, help_is_recognised);
	HARNESS_ADD_TEST(tc, counts_are_singular_for_one);
	HARNESS_ADD_TEST(tc, restore_names_the_vm_after_the_snapshot);
	HARNESS_ADD_TEST(tc, restore_reads_the_default_store);
	HARNESS_ADD_TEST(tc, restore_takes_runs_options_and_its_own);
	suite_add_tcase(s, tc);

	TCase *bin = tcase_create("binary");
	tcase_set_timeout(bin, 60);
	HARNESS_ADD_TEST(bin, cli_missing_guest_file);
	HARNESS_ADD_TEST(bin, cli_requests_pass_the_vms_own_argument_checks);
	HARNESS_ADD_TEST(bin, cli_unreadable_guest_file);
	HARNESS_ADD_TEST(bin, cli_guest_image_that_is_no_file);
	HARNESS_ADD_TEST(bin, cli_not_an_elf);
	HARNESS_ADD_TEST(bin, cli_elf_without_pvh_note);
	HARNESS_ADD_TEST(bin, cli_segments_outside_ram);
	HARNESS_ADD_TEST(bin, cli_bad_image_is_named_even_without_kvm);
	HARNESS_ADD_TEST(bin, cli_kvm_device_missing);
	HARNESS_ADD_TEST(bin, cli_kvm_device_not_kvm);
	HARNESS_ADD_TEST(bin, cli_detached_run_that_cannot_start_says_why);
	HARNESS_ADD_TEST(bin, cli_swap_that_cannot_hold_pages_is_refused);
	HARNESS_ADD_TEST(bin, cli_bad_options);
	HARNESS_ADD_TEST(bin, cli_help_tells_the_exit_statuses);
	HARNESS_ADD_TEST(bin, cli_pager_server_help_exits_0);
	HARNESS_ADD_TEST(bin, cli_help_verb_is_the_verbs_help);
	HARNESS_ADD_TEST(bin, cli_memory_says_1_object_not_1_objects);
	HARNESS_ADD_TEST(bin, cli_snapshot_says_1_page_not_1_pages);
	HARNESS_ADD_TEST(bin, cli_snapshot_every_starts_checkpoints);
	HARNESS_ADD_TEST(bin, cli_snapshot_stop_ends_checkpoints_and_counts_them);
	HARNESS_ADD_TEST(bin, cli_snapshot_checkpoint_options_are_checked);
	HARNESS_ADD_TEST(bin, cli_snapshot_description_is_checked_first);
	HARNESS_ADD_TEST(bin, cli_snapshot_ctrl_c_cancels_the_snapshot);
	HARNESS_ADD_TEST(bin, cli_snapshot_draws_progress_on_a_terminal);
	HARNESS_ADD_TEST(bin, cli_store_commands_use_the_default_store);
	HARNESS_ADD_TEST(bin, cli_snapshot_makes_the_default_store_private);
	suite_add_tcase(s, bin);
	return s;
}

/*
 * The one test runner: builds every suite listed in the generated suites.inc, runs them
 * in one SRunner and prints failures, SKIP lines and one closing summary line.
 *
 * usage: run_tests [--unit-only] [SUITE...]
 *   --unit-only  leave out suites that need host devices or services (the sanitizer pass runs these)
 *   SUITE        run only the named suites
 */
#include "harness.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <linux/kvm.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "vmm/error.h"
#include "vmm/memory/guest_memory.h"

#define SUITE(name) Suite *name##_suite(void);
#include "suites.inc"
#undef SUITE

struct suite_entry {
	const char *name;
	Suite *(*build)(void);
};

static const struct suite_entry suites[] = {
#define SUITE(name) {#name, name##_suite},
#include "suites.inc"
#undef SUITE
};

unsigned harness_ntests;

bool harness_wants(const char *name)
{
	const char *want = getenv("HARNESS_RUN_TEST");
	if (!want || !*want)
		return true;
	size_t n = strlen(name);
	for (const char *p = want; (p = strstr(p, name)) != NULL; p += n)
		if ((p == want || p[-1] == ',') && (p[n] == ',' || p[n] == '\0'))
			return true;
	return false;
}
static const char *skip_reason;
static bool unit_only;
static char skip_buf[256];

/* USERFAULTFD_IOC_NEW is _IO(0xAA, 0x00) (linux/userfaultfd.h since 6.1). */
#define HARNESS_USERFAULTFD_IOC_NEW _IO(0xAA, 0x00)

static const char *probe_kvm(void)
{
	int fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	if (fd < 0) {
		snprintf(skip_buf, sizeof(skip_buf), "/dev/kvm cannot be opened: %s", strerror(errno));
		return skip_buf;
	}
	int api = ioctl(fd, KVM_GET_API_VERSION, 0);
	close(fd);
	if (api != KVM_API_VERSION) {
		snprintf(skip_buf, sizeof(skip_buf), "/dev/kvm does not answer KVM_GET_API_VERSION with %d",
			 KVM_API_VERSION);
		return skip_buf;
	}
	return NULL;
}

/* As vmm/uffd.c opens one: the device, else the syscall. */
static const char *probe_uffd(void)
{
	int dev_err, fd = -1;
	int dev = open("/dev/userfaultfd", O_RDWR | O_CLOEXEC);
	if (dev >= 0) {
		fd = ioctl(dev, HARNESS_USERFAULTFD_IOC_NEW, O_CLOEXEC);
		dev_err = errno;
		close(dev);
	} else {
		dev_err = errno;
	}
	if (fd < 0)
		fd = (int)syscall(SYS_userfaultfd, O_CLOEXEC);
	if (fd >= 0) {
		close(fd);
		return NULL;
	}
	snprintf(skip_buf, sizeof(skip_buf), "no userfaultfd: /dev/userfaultfd: %s; userfaultfd(2): %s",
		 strerror(dev_err), strerror(errno));
	return skip_buf;
}

/* Memory mapped from a host-wide segment needs more of userfaultfd (Linux 6.4). */
static const char *probe_uffd_share(void)
{
	if (guest_memory_can_map_segments() == 0)
		return NULL;
	snprintf(skip_buf, sizeof(skip_buf), "%s", error_message());
	error_clear();
	return skip_buf;
}

static bool on_path(const char *program)
{
	char cmd[128];
	snprintf(cmd, sizeof(cmd), "command -v %s >/dev/null 2>&1", program);
	return system(cmd) == 0;
}

static const char *probe_qemu(void)
{
	if (on_path("qemu-system-x86_64"))
		return NULL;
	return "qemu-system-x86_64 is not installed (apt-get install qemu-system-x86)";
}

static const char *probe_tmux(void)
{
	return on_path("tmux") ? NULL : "tmux is not installed (apt-get install tmux)";
}

/* What tests/ceph_cluster.c runs to make a cluster. */
static const char *probe_ceph(void)
{
	static const char *const tools[] = {"ceph-mon", "ceph-osd", "monmaptool", "ceph-authtool", "ceph"};
	for (size_t i = 0; i < sizeof(tools) / sizeof(tools[0]); i++) {
		if (!on_path(tools[i])) {
			snprintf(skip_buf, sizeof(skip_buf), "%s is not installed (apt-get install ceph-mon ceph-osd)",
				 tools[i]);
			return skip_buf;
		}
	}
	return NULL;
}

bool harness_requires(unsigned needs)
{
	if (skip_reason)
		return false;
	if (unit_only) {
		skip_reason = "needs host devices or services (runs in the plain pass)";
		return false;
	}
	if (needs & HARNESS_KVM)
		skip_reason = probe_kvm();
	if (!skip_reason && (needs & HARNESS_UFFD))
		skip_reason = probe_uffd();
	if (!skip_reason && (needs & HARNESS_UFFD_SHARE))
		skip_reason = probe_uffd_share();
	if (!skip_reason && (needs & HARNESS_QEMU))
		skip_reason = probe_qemu();
	if (!skip_reason && (needs & HARNESS_CEPH))
		skip_reason = probe_ceph();
	if (!skip_reason && (needs & HARNESS_TMUX))
		skip_reason = probe_tmux();
	return skip_reason == NULL;
}

const char *harness_build_path(const char *name)
{
	static char paths[8][4096];
	static unsigned next;
	char *path = paths[next++ % 8];
	const char *dir = getenv("VMM_BUILD");
	snprintf(path, sizeof(paths[0]), "%s/%s", dir && *dir ? dir : "build", name);
	return path;
}

const char *harness_guest(void)
{
	static char g[4096];
	snprintf(g, sizeof(g), "%s", harness_build_path("guest.elf"));
	return g;
}

/* The runtime directory of the run ($XDG_RUNTIME_DIR): every VM a suite starts without a
 * socket of its own puts its socket and console log there, apart from the host's VMs, and
 * it goes with the run. Suites that test the directories set their own. */
static char runner_rundir[32];
static pid_t runner_pid; /* Check's forked tests exit too: only the runner removes it */

static int runner_remove(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
	(void)st, (void)ftw;
	return type == FTW_DP ? rmdir(path) : unlink(path);
}

static void runner_remove_rundir(void)
{
	if (runner_rundir[0] && getpid() == runner_pid)
		nftw(runner_rundir, runner_remove, 16, FTW_DEPTH | FTW_PHYS);
}

static bool selected(const char *name, int argc, char **argv, int first)
{
	if (first >= argc)
		return true;
	for (int i = first; i < argc; i++)
		if (strcmp(argv[i], name) == 0)
			return true;
	return false;
}

int main(int argc, char **argv)
{
	int first = 1;
	if (argc > 1 && strcmp(argv[1], "--unit-only") == 0) {
		unit_only = true;
		first = 2;
	}

	snprintf(runner_rundir, sizeof(runner_rundir), "/tmp/vmm-tests-XXXXXX");
	if (mkdtemp(runner_rundir))
		setenv("XDG_RUNTIME_DIR", runner_rundir, 1);
	else
		runner_rundir[0] = '\0';
	runner_pid = getpid();
	atexit(runner_remove_rundir);

	SRunner *runner = NULL;
	SRunner *unrun = NULL; /* holds skipped suites only so that srunner_free frees them */
	unsigned skipped = 0, left_out = 0, nselected = 0;
	for (size_t i = 0; i < sizeof(suites) / sizeof(suites[0]); i++) {
		if (!selected(suites[i].name, argc, argv, first))
			continue;
		nselected++;
		harness_ntests = 0;
		skip_reason = NULL;
		Suite *s = suites[i].build();
		if (skip_reason) {
			if (unit_only) {
				left_out += harness_ntests;
			} else {
				printf("SKIP: %s: %s (%u tests skipped)\n", suites[i].name, skip_reason,
				       harness_ntests);
				skipped += harness_ntests;
			}
			if (!unrun)
				unrun = srunner_create(s);
			else
				srunner_add_suite(unrun, s);
			continue;
		}
		if (!runner)
			runner = srunner_create(s);
		else
			srunner_add_suite(runner, s);
	}
	if (unrun)
		srunner_free(unrun);
	if (nselected == 0) {
		fprintf(stderr, "run_tests: no suite matches the names given\n");
		return 2;
	}

	int run = 0, failed = 0;
	if (runner) {
		srunner_run_all(runner, CK_SILENT);
		run = srunner_ntests_run(runner);
		failed = srunner_ntests_failed(runner);
		TestResult **results = srunner_failures(runner);
		for (int i = 0; i < failed; i++) {
			TestResult *r = results[i];
			printf("FAIL: %s:%d: %s: %s\n", tr_lfile(r), tr_lno(r), tr_tcname(r), tr_msg(r));
		}
		free(results);
		srunner_free(runner);
	}
	printf("%s: %d tests run, %d passed, %d failed, %u skipped%s\n", unit_only ? "unit tests" : "tests", run,
	       run - failed, failed, skipped, left_out ? " (device suites run in the plain pass)" : "");
	return failed ? 1 : 0;
}

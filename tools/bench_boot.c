/*
 * Boot benchmark: exec-to-exit wall time and peak RSS of `vmm run -m 64M guest.elf -p hello`
 * beside QEMU microvm (KVM) booting the same guest.elf, measured in the same run.
 * Each figure is the median of RUNS runs. Targets (issue 2): >= 10x faster, <= 1/4 the RSS.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define RUNS 21

struct sample {
	double ms;
	long rss_kib;
	int status;
};

static double now_ms(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec * 1e3 + (double)t.tv_nsec / 1e6;
}

/* Run argv with output discarded; wall time from fork to reaped exit, peak RSS of the child. */
static struct sample run_once(char *const argv[])
{
	struct sample s = {0, 0, -1};
	double t0 = now_ms();
	pid_t pid = fork();
	if (pid == 0) {
		int null = open("/dev/null", O_WRONLY);
		dup2(null, STDOUT_FILENO);
		dup2(null, STDERR_FILENO);
		execvp(argv[0], argv);
		_exit(127);
	}
	int st;
	struct rusage ru;
	if (pid < 0 || wait4(pid, &st, 0, &ru) < 0)
		return s;
	s.ms = now_ms() - t0;
	s.rss_kib = ru.ru_maxrss;
	s.status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
	return s;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

/* Median time and RSS over RUNS runs; false if any run ended with another status than @want. */
static int measure(char *const argv[], int want, double *ms, double *rss_mib)
{
	double t[RUNS], m[RUNS];
	for (int i = 0; i < RUNS; i++) {
		struct sample s = run_once(argv);
		if (s.status != want) {
			fprintf(stderr, "bench_boot: %s exited with %d, not %d\n", argv[0], s.status, want);
			return 0;
		}
		t[i] = s.ms;
		m[i] = (double)s.rss_kib / 1024.0;
	}
	qsort(t, RUNS, sizeof(double), cmp_double);
	qsort(m, RUNS, sizeof(double), cmp_double);
	*ms = t[RUNS / 2];
	*rss_mib = m[RUNS / 2];
	return 1;
}

int main(void)
{
	const char *build = getenv("VMM_BUILD") ? getenv("VMM_BUILD") : "build";
	char vmm[4096], guest[4096];
	snprintf(vmm, sizeof(vmm), "%s/vmm", build);
	snprintf(guest, sizeof(guest), "%s/guest.elf", build);

	char *vmm_argv[] = {vmm, "run", "-m", "64M", guest, "-p", "hello", NULL};
	/* isa-debug-exit makes QEMU exit with (0 << 1) | 1 = 1 when the guest writes 0. */
	char *qemu_argv[] = {"qemu-system-x86_64", "-M", "microvm", "-accel", "kvm", "-m", "64M", "-nodefaults",
			     "-no-user-config", "-nographic", "-serial", "stdio", "-device",
			     "isa-debug-exit,iobase=0xf4,iosize=4", "-kernel", guest, "-append", "hello", NULL};

	double vt, vr, qt, qr;
	if (!measure(vmm_argv, 0, &vt, &vr))
		return 1;
	printf("boot hello -m 64M, median of %d: vmm %.1f ms, peak RSS %.1f MiB\n", RUNS, vt, vr);
	if (!measure(qemu_argv, 1, &qt, &qr)) {
		printf("boot: QEMU microvm unavailable: no ratio (install qemu-system-x86)\n");
		return 0;
	}
	printf("boot hello -m 64M, median of %d: qemu microvm %.1f ms, peak RSS %.1f MiB\n", RUNS, qt, qr);
	printf("boot exec-to-exit: vmm %.1f ms vs qemu %.1f ms: %.1fx faster (target >= 10x)\n", vt, qt, qt / vt);
	printf("boot peak RSS: vmm %.1f MiB vs qemu %.1f MiB: %.3f of qemu (target <= 0.25)\n", vr, qr, vr / qr);
	return 0;
}

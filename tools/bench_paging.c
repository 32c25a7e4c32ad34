/*
 * Demand-paging benchmark (issue 4), every figure beside its peer measured in this run:
 *   1. sequential guest touch of 256 MiB served by the default pager vs the kernel's own
 *      anonymous zero fill (vmm --kernel-zero-fill), per page;
 *   2. sequential page-in of a 256 MiB file through the file pager (mapped private, and ro)
 *      vs pread of the same file from the page cache;
 *   3. random 4 KiB page-ins (one page per fault): p50/p99 as the guest sees them;
 *   4. VMM memory beyond guest-resident pages for a 1 GiB guest that touches it all.
 * Times are medians of RUNS runs; a per-page cost is the difference between a large and a
 * small run of the same workload, so boot and exit cancel out.
 */
#include <fcntl.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <x86intrin.h>

#define RUNS 5
#define BIG_MIB 256
#define SMALL_MIB 8

static char vmm[4096], guest[4096], file[64] = "/var/tmp/vmm-bench-file-XXXXXX";

static double now_s(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

struct run {
	double seconds;
	long maxrss_kib;
	char err[65536]; /* standard error (statistics) */
	char out[4096];
};

/* Run vmm with the NULL-terminated arguments; 0 when it exited 0. */
static int run_vmm(struct run *r, ...)
{
	char *argv[32];
	int n = 0;
	argv[n++] = vmm;
	argv[n++] = "run";
	va_list ap;
	va_start(ap, r);
	char *a;
	while ((a = va_arg(ap, char *)) && n < 30)
		argv[n++] = a;
	va_end(ap);
	argv[n++] = guest;
	argv[n] = NULL;
	int out[2], err[2];
	if (pipe(out) || pipe(err))
		return -1;
	double t0 = now_s();
	pid_t pid = fork();
	if (pid == 0) {
		dup2(out[1], 1);
		dup2(err[1], 2);
		execv(vmm, argv);
		_exit(127);
	}
	close(out[1]);
	close(err[1]);
	ssize_t got, o = 0, e = 0;
	while ((got = read(err[0], r->err + e, sizeof(r->err) - 1 - (size_t)e)) > 0)
		e += got;
	while ((got = read(out[0], r->out + o, sizeof(r->out) - 1 - (size_t)o)) > 0)
		o += got;
	r->err[e] = r->out[o] = '\0';
	close(out[0]);
	close(err[0]);
	int st;
	struct rusage ru;
	wait4(pid, &st, 0, &ru);
	r->seconds = now_s() - t0;
	r->maxrss_kib = ru.ru_maxrss;
	if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
		fprintf(stderr, "bench_paging: %s run %s ... failed:\n%s%s", vmm, argv[2], r->out, r->err);
		return -1;
	}
	return 0;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

/* Median seconds of RUNS runs of vmm with @args (a NULL-terminated list of up to 8). */
static double median_run(char *const *args)
{
	static struct run r;
	double t[RUNS];
	for (int i = 0; i < RUNS; i++) {
		if (run_vmm(&r, args[0], args[1], args[2], args[3], args[4], args[5], args[6], args[7], NULL))
			exit(1);
		t[i] = r.seconds;
	}
	qsort(t, RUNS, sizeof(t[0]), cmp_double);
	return t[RUNS / 2];
}

static long long stat_of(const char *err, const char *key)
{
	size_t klen = strlen(key);
	for (const char *p = err; (p = strstr(p, key)); p++)
		if ((p == err || p[-1] == '\n') && p[klen] == ' ')
			return strtoll(p + klen, NULL, 10);
	return -1;
}

/* Host TSC ticks per microsecond (the guest's rdtsc runs at the host's rate here). */
static double tsc_per_us(void)
{
	double t0 = now_s();
	uint64_t c0 = __rdtsc();
	struct timespec d = {0, 200000000L};
	nanosleep(&d, NULL);
	return (double)(__rdtsc() - c0) / ((now_s() - t0) * 1e6);
}

static void bench_touch(void)
{
	char big[32], small[32];
	snprintf(big, sizeof(big), "touch=%dM", BIG_MIB);
	snprintf(small, sizeof(small), "touch=%dM", SMALL_MIB);
	char *pb[] = {"-m", "512M", "-p", big, NULL, NULL, NULL, NULL};
	char *ps[] = {"-m", "512M", "-p", small, NULL, NULL, NULL, NULL};
	char *kb[] = {"-m", "512M", "--kernel-zero-fill", "-p", big, NULL, NULL, NULL};
	char *ks[] = {"-m", "512M", "--kernel-zero-fill", "-p", small, NULL, NULL, NULL};
	double pages = (BIG_MIB - SMALL_MIB) * 256.0;
	double pager = (median_run(pb) - median_run(ps)) / pages * 1e6;
	double kernel = (median_run(kb) - median_run(ks)) / pages * 1e6;
	printf("paging: sequential touch of %d MiB, per page: default pager %.2f us, kernel zero fill %.2f us: "
	       "%.2fx the kernel (target <= 1.5x)\n",
	       BIG_MIB, pager, kernel, pager / kernel);
}

static void make_file(void)
{
	int fd = mkstemp(file);
	if (fd < 0)
		exit(1);
	static uint8_t buf[1 << 20];
	for (size_t i = 0; i < sizeof(buf); i++)
		buf[i] = (uint8_t)(i * 7 + (i >> 12));
	for (int i = 0; i < BIG_MIB; i++) {
		buf[0] = (uint8_t)i;
		if (write(fd, buf, sizeof(buf)) != (ssize_t)sizeof(buf))
			exit(1);
	}
	close(fd);
}

/* GB/s of a sequential guest scan of the file mapped with @mode ("" private, ",ro"). */
static double file_scan_gbs(const char *mode)
{
	char map[128], big[64], small[64];
	snprintf(map, sizeof(map), "%s@1G%s", file, mode);
	snprintf(big, sizeof(big), "scan=1G,%dM", BIG_MIB);
	snprintf(small, sizeof(small), "scan=1G,%dM", SMALL_MIB);
	char *b[] = {"-m", "64M", "--map", map, "-p", big, NULL, NULL};
	char *s[] = {"-m", "64M", "--map", map, "-p", small, NULL, NULL};
	double dt = median_run(b) - median_run(s);
	return (BIG_MIB - SMALL_MIB) * 1048576.0 / dt / 1e9;
}

static void bench_file(void)
{
	char map[128];
	snprintf(map, sizeof(map), "%s@1G,ro", file);
	double gbs = file_scan_gbs(""), ro = file_scan_gbs(",ro");

	/* Peer: the same bytes read with pread from the page cache. */
	static uint8_t buf[1 << 20];
	int fd = open(file, O_RDONLY);
	double best = 1e9;
	for (int k = 0; k < RUNS; k++) {
		double t0 = now_s();
		for (off_t off = 0; pread(fd, buf, sizeof(buf), off) > 0; off += sizeof(buf))
			;
		double t = now_s() - t0;
		best = t < best ? t : best;
	}
	close(fd);
	double peer = BIG_MIB * 1048576.0 / best / 1e9;
	printf("paging: sequential page-in of a %d MiB file through the file pager (mapped private, the default): "
	       "%.2f GB/s; pread from the page cache %.2f GB/s: %.2f of it (target >= 1 GB/s)\n",
	       BIG_MIB, gbs, peer, gbs / peer);
	printf("paging: the same mapped ro: %.2f GB/s (KVM takes its slow path for every page of a read-only slot)\n",
	       ro);

	char rnd[64];
	snprintf(rnd, sizeof(rnd), "rscan=1G,%dM", BIG_MIB);
	static struct run r;
	if (run_vmm(&r, "-m", "64M", "--cluster", "1", "--map", map, "-p", rnd, NULL))
		exit(1);
	unsigned long long p50, p99, max;
	if (sscanf(strstr(r.out, "rscan:") ? strstr(r.out, "rscan:") : "", "rscan: 2048 reads p50 %llu p99 %llu max %llu",
		   &p50, &p99, &max) != 3) {
		fprintf(stderr, "bench_paging: no rscan result in: %s\n", r.out);
		exit(1);
	}
	double tpu = tsc_per_us();
	printf("paging: random 4 KiB page-ins through the file pager (cluster 1), as the guest sees them: p50 %.1f us, "
	       "p99 %.1f us, max %.1f us\n",
	       (double)p50 / tpu, (double)p99 / tpu, (double)max / tpu);
}

static void bench_overhead(void)
{
	static struct run r;
	if (run_vmm(&r, "-m", "1G", "--stats", "-p", "touch=1016M", NULL))
		exit(1);
	long long resident = stat_of(r.err, "mem.resident_pages");
	double over = (double)r.maxrss_kib / 1024.0 - (double)resident * 4096.0 / 1048576.0;
	static struct run k;
	if (run_vmm(&k, "-m", "1G", "--kernel-zero-fill", "-p", "touch=1016M", NULL))
		exit(1);
	double kover = (double)k.maxrss_kib / 1024.0 - 1016.0;
	printf("paging: 1 GiB guest touching 1016 MiB: peak RSS %.1f MiB, %lld resident guest pages: VMM overhead "
	       "%.1f MiB (target <= 2 MiB); with the kernel's zero fill %.1f MiB beyond the guest's touch\n",
	       (double)r.maxrss_kib / 1024.0, resident, over, kover);
}

int main(void)
{
	const char *build = getenv("VMM_BUILD") ? getenv("VMM_BUILD") : "build";
	snprintf(vmm, sizeof(vmm), "%s/vmm", build);
	snprintf(guest, sizeof(guest), "%s/guest.elf", build);
	bench_touch();
	make_file();
	bench_file();
	unlink(file);
	bench_overhead();
	return 0;
}

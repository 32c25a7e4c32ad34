/*
 * Snapshot, restore and fork benchmark (issue 5), each figure beside its peer or limit
 * measured in this run:
 *   1. live snapshot of a 1 GiB guest that touched 1000 MiB: the guest's pause, and the
 *      time until the snapshot is durable beside plain sequential writes (and fsync) of the
 *      same number of bytes;
 *   2. restore to the first guest instruction (exec of `vmm restore` to the first KVM_RUN,
 *      as the VMM stamps it) of that snapshot with 1 GiB and with 4 GiB of RAM, beside QEMU
 *      microvm's -incoming of a migration file of the same guest (exec to "running");
 *   3. fork of a running 1 GiB guest into 1, 10 and 50 children: the parent's pause and
 *      the fork(2) time per child; with 50 children that each write 1 MiB, the growth of
 *      the summed PSS of all the VMs' processes;
 *   4. incremental snapshots (issue 17): a 2 GiB guest that touched 1900 MiB and rewrites
 *      16 MiB in a loop, snapshotted once a second: each snapshot after the first, durable
 *      after how long, beside plain write+fsync of 16 MiB; an idle guest's second snapshot;
 *   5. the store alone (no KVM needed): 16 MiB written over a 1 GiB snapshot into a store
 *      kept open, as a VM keeps it, beside plain write+fsync of 16 MiB;
 *   6. continuous checkpoints every 100 ms for 60 s of a guest rewriting 16 MiB: the guest's
 *      pauses (p99), its progress beside the same guest's without checkpoints, and the
 *      store's growth beside the pages that changed between checkpoints.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "vmm/error.h"
#include "vmm/monitor/qmp_client.h"
#include "vmm/store/store.h"

#define TIMEOUT_MS 600000
#define RESTORE_RUNS 21 /* restores timed per size: the host's noise here is up to several ms in one run */
#define RUNS_MAX 21

static char vmm[4096], guest[4096], dir[64] = "/var/tmp/vmm-bench-snap-XXXXXX";

static double now_ms(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec * 1e3 + (double)t.tv_nsec / 1e6;
}


/* Kill every process left under this one (VMs, their forked children: the bench is their
 * subreaper, see main), so that a failed bench leaves nothing running. */
static void kill_descendants(void)
{
	for (int round = 0; round < 50; round++) {
		DIR *d = opendir("/proc");
		struct dirent *e;
		int found = 0;
		while (d && (e = readdir(d))) {
			char path[300], buf[512];
			snprintf(path, sizeof(path), "/proc/%s/stat", e->d_name);
			FILE *f = fopen(path, "r");
			if (!f)
				continue;
			size_t n = fread(buf, 1, sizeof(buf) - 1, f);
			fclose(f);
			buf[n] = 0;
			char *close_paren = strrchr(buf, ')');
			int pid = atoi(e->d_name), ppid = 0;
			if (close_paren && sscanf(close_paren + 1, " %*c %d", &ppid) == 1 && ppid == getpid() && pid > 0) {
				kill(pid, SIGKILL);
				found++;
			}
		}
		if (d)
			closedir(d);
		while (waitpid(-1, NULL, WNOHANG) > 0)
			;
		if (!found)
			return;
		struct timespec t = {0, 20000000L};
		nanosleep(&t, NULL);
	}
}

static void die(const char *what)
{
	fprintf(stderr, "bench_snapshot: %s: %s\n", what, error_message());
	kill_descendants();
	exit(1);
}

/* When the last child started by bench_exec called execv (CLOCK_MONOTONIC ms), written
 * by the child into memory shared with this process: "exec" is the child's exec, not
 * this process's fork. */
static volatile double *exec_stamp;

/* fork, stdout and stderr to @out (NULL: /dev/null, "-": left alone), stamp, exec @argv. */
static pid_t bench_exec(char *const argv[], const char *out)
{
	if (!exec_stamp) {
		void *p = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
		if (p == MAP_FAILED)
			die("mmap");
		exec_stamp = p;
	}
	pid_t pid = fork();
	if (pid == 0) {
		if (!out || strcmp(out, "-")) {
			int fd = open(out ? out : "/dev/null", O_WRONLY | O_CREAT | O_TRUNC, 0644);
			dup2(fd, 1);
			dup2(fd, 2);
		}
		*exec_stamp = now_ms();
		execvp(argv[0], argv);
		_exit(127);
	}
	return pid;
}

/* Start `vmm VERB --monitor SOCK ARGS...` with output to @out (NULL: /dev/null). */
static pid_t start(const char *sock, const char *out, const char *verb, ...)
{
	char *argv[32];
	int n = 0;
	argv[n++] = vmm;
	argv[n++] = (char *)verb;
	argv[n++] = "--monitor";
	argv[n++] = (char *)sock;
	va_list ap;
	va_start(ap, verb);
	char *a;
	while ((a = va_arg(ap, char *)) && n < 30)
		argv[n++] = a;
	va_end(ap);
	argv[n] = NULL;
	unlink(sock);
	return bench_exec(argv, out);
}

static struct qmp_client *connect_vm(const char *sock)
{
	struct qmp_client *c = NULL;
	for (int i = 0; i < 60000 && qmp_client_connect(&c, sock, TIMEOUT_MS) != 0; i++) {
		struct timespec t = {0, 1000000L};
		nanosleep(&t, NULL);
	}
	if (!c)
		die(sock);
	return c;
}

static json_t *execute(struct qmp_client *c, const char *cmd, json_t *args)
{
	json_t *ret = NULL;
	if (qmp_client_execute(c, cmd, args, &ret, TIMEOUT_MS) != 0)
		die(cmd);
	json_decref(args);
	return ret;
}

static long long jint(const json_t *o, const char *key)
{
	return json_integer_value(json_object_get(o, key));
}

static void quit_vm(struct qmp_client *c, pid_t pid)
{
	json_decref(execute(c, "quit", NULL));
	qmp_client_close(c);
	waitpid(pid, NULL, 0);
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

static double median(double *v, int n)
{
	qsort(v, (size_t)n, sizeof(*v), cmp_double);
	return v[n / 2];
}

/* A guest with @ram of RAM running @script, snapshotted into the store at @store as @name
 * once it reports sync point 1; returns snapshot-save's result (decref it). */
static json_t *snapshot_of(const char *store, const char *ram, const char *script, const char *name)
{
	char sock[128];
	snprintf(sock, sizeof(sock), "%s/src.sock", dir);
	pid_t pid = start(sock, NULL, "run", "-m", ram, "-p", script, guest, NULL);
	struct qmp_client *c = connect_vm(sock);
	if (qmp_client_wait_sync(c, 1, TIMEOUT_MS) != 0)
		die("the guest to snapshot did not reach its sync point 1");
	json_t *res = execute(c, "snapshot-save", json_pack("{s:s,s:s}", "name", name, "store", store));
	quit_vm(c, pid);
	return res;
}

/* A 1000 MiB-touched guest with @ram of RAM snapshotted into store @store_name as @name. */
static json_t *make_snapshot_in(const char *store_name, const char *ram, const char *name)
{
	char store[128];
	snprintf(store, sizeof(store), "%s/%s", dir, store_name);
	return snapshot_of(store, ram, "touch=1000M sync=1 idle", name);
}

static json_t *make_snapshot(const char *ram, const char *name)
{
	return make_snapshot_in("store", ram, name);
}

/* Seconds to write @bytes sequentially to a new file and fsync it: the disk's own pace. */
static double plain_write_ms(uint64_t bytes)
{
	char path[128];
	snprintf(path, sizeof(path), "%s/plain", dir);
	static char buf[1 << 20];
	memset(buf, 0x5a, sizeof(buf));
	double t0 = now_ms();
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	for (uint64_t done = 0; done < bytes; done += sizeof(buf))
		if (write(fd, buf, sizeof(buf)) != (ssize_t)sizeof(buf))
			die("plain write");
	fsync(fd);
	close(fd);
	double t = now_ms() - t0;
	unlink(path);
	return t;
}

/* @runs snapshots, each of a fresh guest: medians of the pause and of the time to durability. */
static void bench_live_snapshot(int runs)
{
	double pause[RUNS_MAX], total[RUNS_MAX];
	uint64_t stored = 0;
	for (int i = 0; i < runs; i++) {
		/* Each into a store of its own (a second snapshot of the same bytes would store
		 * nothing); the first is kept for the restore part. */
		char store[32], cmd[160];
		snprintf(store, sizeof(store), i ? "store-%d" : "store", i);
		json_t *res = make_snapshot_in(store, "1G", "one");
		pause[i] = (double)jint(res, "pause-ns") / 1e6;
		total[i] = (double)jint(res, "total-ns") / 1e6;
		stored = (uint64_t)jint(res, "stored") * 4096;
		json_decref(res);
		snprintf(cmd, sizeof(cmd), "rm -rf %s/%s", dir, store);
		if (i && system(cmd) != 0)
			die("cannot remove a store");
		if (runs > 1)
			fprintf(stderr, "snapshot %d: paused %.2f ms, durable after %.0f ms\n", i + 1, pause[i], total[i]);
	}
	double plain = plain_write_ms(stored);
	double p = median(pause, runs), t = median(total, runs);
	printf("snapshot: live snapshot of a 1 GiB guest (1000 MiB touched): guest paused %.2f ms%s (target <= 5 ms)\n",
	       p, runs > 1 ? " (median)" : "");
	printf("snapshot: durable after %.0f ms; plain sequential write+fsync of the same %.0f MiB %.0f ms: %.2fx "
	       "(target <= 3x)\n",
	       t, (double)stored / 1048576.0, plain, t / plain);
}

/* exec of `vmm restore` to its first KVM_RUN, median of RESTORE_RUNS; in @all_ms, to when KVM had
 * all of guest memory (the guest starts with its first 8 MiB only). */
static double restore_ms(const char *name, double *all_ms)
{
	char sock[128], store[128];
	snprintf(sock, sizeof(sock), "%s/restore.sock", dir);
	snprintf(store, sizeof(store), "%s/store", dir);
	double t[RESTORE_RUNS], all[RESTORE_RUNS];
	for (int i = 0; i < RESTORE_RUNS; i++) {
		pid_t pid = start(sock, NULL, "restore", "--store", store, (char *)name, NULL);
		struct qmp_client *c = connect_vm(sock);
		long long first = 0, done = 0;
		while (!first || !done) {
			json_t *st = execute(c, "query-stats", NULL);
			first = jint(st, "vm.first_run_monotonic_ns");
			done = jint(st, "vm.memslots_done_monotonic_ns");
			json_decref(st);
		}
		t[i] = (double)first / 1e6 - *exec_stamp;
		all[i] = (double)done / 1e6 - *exec_stamp;
		quit_vm(c, pid);
	}
	*all_ms = median(all, RESTORE_RUNS);
	return median(t, RESTORE_RUNS);
}

/* QEMU microvm with our guest: migrate a 1000 MiB-touched guest to a file, then time
 * -incoming of it (exec to "running"). Returns -1 when QEMU is not there. */
static double qemu_incoming_ms(void)
{
	if (system("command -v qemu-system-x86_64 >/dev/null 2>&1") != 0)
		return -1;
	char sock[128], out[128], mig[128], migrate[160], incoming[160];
	snprintf(sock, sizeof(sock), "%s/qemu.sock", dir);
	snprintf(out, sizeof(out), "%s/qemu.out", dir);
	snprintf(mig, sizeof(mig), "%s/qemu.mig", dir);
	snprintf(migrate, sizeof(migrate), "exec:cat > %s", mig);
	snprintf(incoming, sizeof(incoming), "exec:cat %s", mig);
	char qmp[160], serial[160];
	snprintf(qmp, sizeof(qmp), "unix:%s,server=on,wait=off", sock);
	snprintf(serial, sizeof(serial), "file:%s", out);
	char *base[] = {"qemu-system-x86_64", "-M", "microvm", "-accel", "kvm", "-m", "1G", "-nodefaults",
			"-no-user-config", "-display", "none", "-serial", serial, "-qmp", qmp, "-kernel", guest,
			"-append", "touch=1000M sync=1 idle", NULL, NULL, NULL};
	unlink(sock);
	pid_t pid = bench_exec(base, "-");
	struct qmp_client *c = connect_vm(sock);
	/* Under QEMU the guest reports on COM1: wait for the touch to be done. */
	for (int i = 0; i < 600000; i++) {
		FILE *f = fopen(out, "r");
		char line[256];
		bool done = false;
		while (f && fgets(line, sizeof(line), f))
			done |= strstr(line, "touch: ") != NULL;
		if (f)
			fclose(f);
		if (done)
			break;
		struct timespec t = {0, 1000000L};
		nanosleep(&t, NULL);
	}
	json_decref(execute(c, "migrate", json_pack("{s:s}", "uri", migrate)));
	for (;;) {
		json_t *m = execute(c, "query-migrate", NULL);
		const char *st = json_string_value(json_object_get(m, "status"));
		bool finished = st && (!strcmp(st, "completed") || !strcmp(st, "failed"));
		json_decref(m);
		if (finished)
			break;
		struct timespec t = {0, 10000000L};
		nanosleep(&t, NULL);
	}
	quit_vm(c, pid);

	double t[3];
	for (int i = 0; i < 3; i++) {
		char *argv[] = {"qemu-system-x86_64", "-M", "microvm", "-accel", "kvm", "-m", "1G", "-nodefaults",
				"-no-user-config", "-display", "none", "-serial", "null", "-qmp", qmp, "-kernel", guest,
				"-incoming", incoming, NULL};
		unlink(sock);
		pid = bench_exec(argv, "-");
		c = connect_vm(sock);
		for (;;) {
			json_t *s = execute(c, "query-status", NULL);
			bool running = json_is_true(json_object_get(s, "running"));
			json_decref(s);
			if (running)
				break;
		}
		t[i] = now_ms() - *exec_stamp;
		quit_vm(c, pid);
	}
	unlink(mig);
	return median(t, 3);
}

static void bench_restore(bool have_one)
{
	if (!have_one) /* the snapshot part made it otherwise */
		json_decref(make_snapshot("1G", "one"));
	json_decref(make_snapshot("4G", "four"));
	double one_all, four_all;
	double one = restore_ms("one", &one_all), four = restore_ms("four", &four_all);
	printf("restore: exec to first guest instruction (median of %d), 1000 MiB stored: 1 GiB guest %.2f ms, 4 GiB guest %.2f ms "
	       "(target <= 2 ms); all guest memory in KVM's slots after %.2f and %.2f ms\n",
	       RESTORE_RUNS, one, four, one_all, four_all);
	double q = qemu_incoming_ms();
	if (q < 0)
		printf("restore: QEMU not installed: no -incoming figure\n");
	else
		printf("restore: QEMU microvm -incoming of the same 1 GiB guest %.1f ms: vmm %.1fx faster (target >= 20x)\n",
		       q, q / one);
}

/*
 * A restored guest that reads 2048 random pages of 256 MiB as soon as it is let go (the
 * mailbox written once the monitor answers): exec to its sync point after them, on demand
 * and with the working set an earlier run of it recorded prefetched.
 */
#define WS_RUNS 7
#define WS_SCRIPT "seed=7 fill=0x4000000,256M sync=1 await=0x7ff000 rscan=0x4000000,256M sync=2 idle"

/* One restore of "scan" (with --prefetch @prefetch, or --record-working-set @record, or
 * neither): ms from exec to sync point 2. */
static double ws_run_ms(const char *store, const char *prefetch, const char *record)
{
	char sock[128];
	snprintf(sock, sizeof(sock), "%s/ws.sock", dir);
	pid_t pid = prefetch ? start(sock, NULL, "restore", "--store", store, "--prefetch", prefetch, "scan", NULL)
		    : record ? start(sock, NULL, "restore", "--store", store, "--record-working-set", record, "scan", NULL)
			     : start(sock, NULL, "restore", "--store", store, "scan", NULL);
	struct qmp_client *c = connect_vm(sock);
	json_decref(execute(c, "vm-write", json_pack("{s:I,s:s}", "addr", (json_int_t)0x7ff000, "data", "AQ==")));
	if (qmp_client_wait_sync(c, 2, TIMEOUT_MS) != 0)
		die("the restored guest did not finish its reads");
	double t = now_ms() - *exec_stamp;
	quit_vm(c, pid);
	return t;
}

static void bench_working_set(void)
{
	char store[128], ws[128];
	snprintf(store, sizeof(store), "%s/store", dir);
	snprintf(ws, sizeof(ws), "%s/scan.ws", dir);
	json_decref(snapshot_of(store, "512M", WS_SCRIPT, "scan"));
	ws_run_ms(store, NULL, ws); /* records the working set */
	struct stat st;
	if (stat(ws, &st) != 0)
		die("no working set was written");
	double on_demand[WS_RUNS], prefetched[WS_RUNS];
	for (int i = 0; i < WS_RUNS; i++) {
		on_demand[i] = ws_run_ms(store, NULL, NULL);
		prefetched[i] = ws_run_ms(store, ws, NULL);
	}
	double d = median(on_demand, WS_RUNS), p = median(prefetched, WS_RUNS);
	printf("restore: exec to 2048 random page reads over 256 MiB done (median of %d): on demand %.1f ms, with the "
	       "working set recorded by an earlier run prefetched (%lld pages listed) %.1f ms: %.2fx (reported)\n",
	       WS_RUNS, d, (long long)(st.st_size - 24) / 8, p, d / p);
	/* The same restores while another VM restored from the snapshot holds its pages. */
	char hsock[128];
	snprintf(hsock, sizeof(hsock), "%s/holder.sock", dir);
	pid_t holder = start(hsock, NULL, "restore", "--store", store, "-n", "bench-holder", "scan", NULL);
	struct qmp_client *hc = connect_vm(hsock);
	json_decref(execute(hc, "vm-write", json_pack("{s:I,s:s}", "addr", (json_int_t)0x7ff000, "data", "AQ==")));
	if (qmp_client_wait_sync(hc, 2, TIMEOUT_MS) != 0)
		die("the holder's guest did not finish its reads");
	double resident[WS_RUNS];
	for (int i = 0; i < WS_RUNS; i++)
		resident[i] = ws_run_ms(store, NULL, NULL);
	quit_vm(hc, holder);
	double r = median(resident, WS_RUNS);
	printf("restore: the same with the snapshot resident on the host (another VM restored it and read the same pages) "
	       "%.1f ms: %.2fx faster than on demand (target >= 5x)\n",
	       r, d / r);
}

/* Host memory in use, MiB: MemTotal - MemAvailable (shared segments included, which no
 * process's PSS counts once nobody maps them). */
static double host_used_mib(void)
{
	FILE *f = fopen("/proc/meminfo", "r");
	char line[256];
	long total = 0, avail = 0, v;
	while (f && fgets(line, sizeof(line), f)) {
		if (sscanf(line, "MemTotal: %ld kB", &v) == 1)
			total = v;
		else if (sscanf(line, "MemAvailable: %ld kB", &v) == 1)
			avail = v;
	}
	if (f)
		fclose(f);
	return (double)(total - avail) / 1024.0;
}

#define DENSITY_VMS 8
#define DENSITY_SCRIPT "seed=9 fill=0x4000000,512M sync=1 await=0x7ff000 check=0x4000000,512M sync=2 idle"

/* DENSITY_VMS restores of "dense", each reading the same 512 MiB, then idling: how much
 * host memory in use grew, MiB (@private: --private, each VM its own copy). */
static double density_mib(const char *store, bool private)
{
	pid_t pids[DENSITY_VMS];
	struct qmp_client *c[DENSITY_VMS];
	double before = host_used_mib();
	for (int i = 0; i < DENSITY_VMS; i++) {
		char sock[128], name[32];
		snprintf(sock, sizeof(sock), "%s/dense%d.sock", dir, i);
		snprintf(name, sizeof(name), "bench-dense-%d-%d", (int)getpid(), i);
		pids[i] = private ? start(sock, NULL, "restore", "--private", "-n", name, "--store", store, "dense", NULL)
				  : start(sock, NULL, "restore", "-n", name, "--store", store, "dense", NULL);
		c[i] = connect_vm(sock);
		json_decref(execute(c[i], "vm-write", json_pack("{s:I,s:s}", "addr", (json_int_t)0x7ff000, "data", "AQ==")));
		if (qmp_client_wait_sync(c[i], 2, TIMEOUT_MS) != 0)
			die("a restored guest did not finish reading its memory");
	}
	double grew = host_used_mib() - before;
	for (int i = 0; i < DENSITY_VMS; i++)
		quit_vm(c[i], pids[i]);
	return grew;
}

static void bench_density(void)
{
	char store[128];
	snprintf(store, sizeof(store), "%s/store", dir);
	json_decref(snapshot_of(store, "1G", DENSITY_SCRIPT, "dense"));
	double priv = density_mib(store, true), shared = density_mib(store, false);
	printf("density: %d restores of one snapshot, each reading the same 512 MiB, idle: host memory in use grew "
	       "%.0f MiB shared (target <= 600) against %.0f MiB with --private: %.1fx less\n",
	       DENSITY_VMS, shared, priv, shared > 0 ? priv / shared : 0);
}

/* Proportional set size of @pid in KiB (0 when gone). */
static long pss_kib(pid_t pid)
{
	char path[64], line[256];
	snprintf(path, sizeof(path), "/proc/%d/smaps_rollup", (int)pid);
	FILE *f = fopen(path, "r");
	long kib = 0;
	while (f && fgets(line, sizeof(line), f))
		if (sscanf(line, "Pss: %ld kB", &kib) == 1)
			break;
	if (f)
		fclose(f);
	return kib;
}

static unsigned count_lines(const char *path, const char *needle)
{
	FILE *f = fopen(path, "r");
	char line[512];
	unsigned n = 0;
	while (f && fgets(line, sizeof(line), f))
		n += strstr(line, needle) != NULL;
	if (f)
		fclose(f);
	return n;
}

static void bench_fork(unsigned count)
{
	char sock[128], out[128], name[32];
	snprintf(sock, sizeof(sock), "%s/fork.sock", dir);
	snprintf(out, sizeof(out), "%s/fork.out", dir);
	/* Children are NAME.K with sockets in the runtime directory: a name of this run's own. */
	snprintf(name, sizeof(name), "bench-fork-%d", (int)getpid());
	pid_t pid = start(sock, out, "run", "-n", name, "-m", "1G", "-p", "forktest=1000M idle", guest, NULL);
	struct qmp_client *c = connect_vm(sock);
	if (qmp_client_wait_sync(c, 1, TIMEOUT_MS) != 0)
		die("the guest did not fill its memory");
	long before = pss_kib(pid);
	json_t *res = execute(c, "fork", json_pack("{s:i}", "count", (int)count));
	json_t *children = json_object_get(res, "children"), *child;
	size_t i;
	double fork_ms[64], sum = 0;
	pid_t pids[64];
	unsigned made = 0;
	json_array_foreach(children, i, child) {
		pids[i] = (pid_t)jint(child, "pid");
		if (pids[i] <= 0)
			continue;
		fork_ms[made] = (double)jint(child, "fork-ns") / 1e6;
		sum += fork_ms[made++];
	}
	if (made != count)
		fprintf(stderr, "bench_snapshot: only %u of %u children made\n", made, count);
	double mean = made ? sum / made : 0, med = made ? median(fork_ms, (int)made) : 0;
	printf("fork: 1 GiB guest (1000 MiB touched) into %u: parent paused %.2f ms (target: one fork(2)), fork(2) %.2f ms "
	       "per child (median %.2f), all running after %.0f ms\n",
	       count, (double)jint(res, "pause-ns") / 1e6, mean, med, (double)jint(res, "ready-ns") / 1e6);
	if (count == 50) {
		/* Every VM (parent and children) checks its memory and writes its own 1 MiB. */
		while (count_lines(out, "pages ok") < made + 1) {
			struct timespec t = {0, 50000000L};
			nanosleep(&t, NULL);
		}
		long after = pss_kib(pid);
		for (unsigned k = 0; k < count; k++)
			if (pids[k] > 0)
				after += pss_kib(pids[k]);
		double grow = (double)(after - before) / 1024.0;
		printf("fork: 50 children that each wrote 1 MiB: summed PSS grew %.1f MiB (%.2f MiB per child; target <= "
		       "75 MiB, 1.5 per child) from %.1f MiB\n",
		       grow, grow / 50.0, (double)before / 1024.0);
	}
	/* End the children and wait until the parent has reaped them all: the next figures
	 * must not pay for their exits. */
	for (unsigned k = 0; k < count; k++)
		if (pids[k] > 0)
			kill(pids[k], SIGTERM);
	for (unsigned k = 0; k < count; k++)
		for (int w = 0; pids[k] > 0 && w < 60000 && kill(pids[k], 0) == 0; w++) {
			struct timespec t = {0, 1000000L};
			nanosleep(&t, NULL);
		}
	json_decref(res);
	quit_vm(c, pid);
}

/* bench_snapshot [PART [N]]: every part once, or only the live snapshot (N fresh guests,
 * medians), restore or fork. */
/* Median of @n plain writes+fsyncs of @bytes. */
static double plain_write_median_ms(uint64_t bytes, int n)
{
	double v[RUNS_MAX];
	for (int i = 0; i < n; i++)
		v[i] = plain_write_ms(bytes);
	return median(v, n);
}

#define INCREMENTAL_RUNS 5

/* Snapshots of the running VM behind @c into @store named @prefix0, @prefix1, ... one
 * second apart; the median time to durability of all but the first into *ms, of the pages
 * they listed into *listed, the first's into *first_ms. */
static void timed_snapshots(struct qmp_client *c, const char *store, const char *prefix, double *ms,
			    double *listed, double *first_ms)
{
	double t[INCREMENTAL_RUNS], l[INCREMENTAL_RUNS];
	for (int i = 0; i <= INCREMENTAL_RUNS; i++) {
		char name[32];
		snprintf(name, sizeof(name), "%s%d", prefix, i);
		if (i)
			sleep(1);
		json_t *res = execute(c, "snapshot-save", json_pack("{s:s,s:s}", "name", name, "store", store));
		double total = (double)jint(res, "total-ns") / 1e6;
		if (i) {
			t[i - 1] = total;
			l[i - 1] = (double)jint(res, "listed");
		} else {
			*first_ms = total;
		}
		json_decref(res);
	}
	*ms = median(t, INCREMENTAL_RUNS);
	*listed = median(l, INCREMENTAL_RUNS);
}

static void bench_incremental(void)
{
	char store[128], sock[128];
	snprintf(store, sizeof(store), "%s/incremental", dir);
	snprintf(sock, sizeof(sock), "%s/inc.sock", dir);
	double ms, listed, first;
	pid_t pid = start(sock, NULL, "run", "-m", "2G", "-p", "touch=1900M sync=1 spin=16M", guest, NULL);
	struct qmp_client *c = connect_vm(sock);
	if (qmp_client_wait_sync(c, 1, TIMEOUT_MS) != 0)
		die("the guest to snapshot did not reach its sync point 1");
	timed_snapshots(c, store, "busy", &ms, &listed, &first);
	quit_vm(c, pid);
	double plain = plain_write_median_ms(16 << 20, INCREMENTAL_RUNS);
	printf("snapshot: incremental, 2 GiB guest (1900 MiB touched) rewriting 16 MiB, one a second: durable after "
	       "%.1f ms (median of %d; %.0f pages listed; the first, of everything: %.0f ms); plain write+fsync of "
	       "16 MiB %.1f ms: %.2fx (target <= 100 ms and <= 2x)\n",
	       ms, INCREMENTAL_RUNS, listed, first, plain, ms / plain);

	pid = start(sock, NULL, "run", "-m", "2G", "-p", "touch=1900M sync=1 idle", guest, NULL);
	c = connect_vm(sock);
	if (qmp_client_wait_sync(c, 1, TIMEOUT_MS) != 0)
		die("the idle guest did not reach its sync point 1");
	timed_snapshots(c, store, "idle", &ms, &listed, &first);
	quit_vm(c, pid);
	printf("snapshot: incremental, the same guest idle: durable after %.1f ms (median of %d; %.0f pages listed) "
	       "(target <= 10 ms)\n",
	       ms, INCREMENTAL_RUNS, listed);
}

/* Page @pindex of generation @gen (never zero). */
static void bench_page(uint8_t *page, uint64_t pindex, uint64_t gen)
{
	uint64_t v = pindex * 0x9e3779b97f4a7c15ull ^ (gen << 48) ^ 1;
	for (size_t i = 0; i < 4096; i += 8) {
		v = v * 6364136223846793005ull + 1442695040888963407ull;
		memcpy(page + i, &v, 8);
	}
}

/* One snapshot into @s: @n pages of generation @gen, every @step-th page from 0 (made
 * before the clock starts, at most 4096 at a time). ms taken. */
static double bench_store_write(struct store *s, const char *name, const char *parent, uint64_t n, uint64_t step,
				uint64_t gen)
{
	static uint8_t pages[4096][4096];
	bool made = n <= 4096;
	for (uint64_t i = 0; made && i < n; i++)
		bench_page(pages[i], i * step, gen);
	double t0 = now_ms();
	struct store_writer *w;
	if (store_writer_begin(s, name, parent, 262144, "state", 5, &w) != 0)
		die(error_message());
	for (uint64_t i = 0; i < n; i++) {
		uint8_t *page = pages[made ? i : 0];
		if (!made)
			bench_page(page, i * step, gen);
		if (store_writer_add(w, i * step, page) != 0)
			die(error_message());
	}
	if (store_writer_commit(w) != 0)
		die(error_message());
	return now_ms() - t0;
}

static void bench_store(void)
{
	char path[128];
	snprintf(path, sizeof(path), "%s/store-alone", dir);
	struct store *s;
	if (store_open(path, true, &s) != 0)
		die(error_message());
	store_keep_index(s);
	double full = bench_store_write(s, "s0", NULL, 262144, 1, 0);
	double t[INCREMENTAL_RUNS];
	for (int i = 1; i <= INCREMENTAL_RUNS; i++) {
		char name[16], parent[16];
		snprintf(name, sizeof(name), "s%d", i);
		snprintf(parent, sizeof(parent), "s%d", i - 1);
		t[i - 1] = bench_store_write(s, name, parent, 4096, 64, (uint64_t)i);
	}
	store_close(s);
	double ms = median(t, INCREMENTAL_RUNS), plain = plain_write_median_ms(16 << 20, INCREMENTAL_RUNS);
	printf("store: 16 MiB written over a 1 GiB snapshot (store kept open, as a VM keeps it): durable after %.1f ms "
	       "(median of %d; the 1 GiB first: %.0f ms); plain write+fsync of 16 MiB %.1f ms: %.2fx\n",
	       ms, INCREMENTAL_RUNS, full, plain, ms / plain);
}

#define CHECKPOINT_SECONDS 60

/* vm.test_port_messages of the VM behind @c: the guest's rounds so far. */
static long long guest_rounds(struct qmp_client *c)
{
	json_t *st = execute(c, "query-stats", NULL);
	long long n = jint(st, "vm.test_port_messages");
	json_decref(st);
	return n;
}

/* Bytes of the store's packs. */
static double store_pack_bytes(const char *store)
{
	struct store *s;
	uint64_t packs = 0, manifests = 0;
	if (store_open(store, false, &s) != 0 || store_disk_usage(s, &packs, &manifests) != 0)
		die(error_message());
	store_close(s);
	return (double)packs;
}

/* The guest's rounds in CHECKPOINT_SECONDS with checkpoints every @every_ms (0: none);
 * with them, their pauses into @pause (*npause of them, at most @max) and the store's
 * growth after the first into *growth, the pages listed after the first into *listed. */
static long long checkpoint_run(unsigned every_ms, double *pause, int max, int *npause, double *growth,
				double *listed)
{
	char sock[128], store[128];
	snprintf(sock, sizeof(sock), "%s/ck.sock", dir);
	snprintf(store, sizeof(store), "%s/checkpoints-%u", dir, every_ms);
	pid_t pid = start(sock, NULL, "run", "-m", "512M", "-p", "sync=1 spin=16M", guest, NULL);
	struct qmp_client *c = connect_vm(sock), *events = connect_vm(sock);
	if (qmp_client_wait_sync(c, 1, TIMEOUT_MS) != 0)
		die("the checkpointed guest did not reach its sync point 1");
	if (every_ms)
		json_decref(execute(c, "checkpoint-start",
				    json_pack("{s:s,s:i,s:s}", "store", store, "every-ms", (int)every_ms, "prefix", "ck")));
	long long r0 = guest_rounds(c);
	double end = now_ms() + CHECKPOINT_SECONDS * 1000.0, first_bytes = 0;
	*npause = 0;
	*listed = 0;
	for (double t; (t = now_ms()) < end;) {
		json_t *ev;
		if (qmp_client_next_event(events, &ev, (int)(end - t) + 1) != 0)
			continue;
		json_t *data = json_object_get(ev, "data");
		if (!strcmp(json_string_value(json_object_get(ev, "event")), "CHECKPOINT")) {
			if (*npause == 0)
				first_bytes = store_pack_bytes(store);
			else
				*listed += (double)jint(data, "listed");
			if (*npause < max)
				pause[(*npause)++] = (double)jint(data, "pause-ns") / 1e6;
		}
		json_decref(ev);
	}
	long long rounds = guest_rounds(c) - r0;
	if (every_ms)
		json_decref(execute(c, "job-cancel", json_pack("{s:s}", "id", "checkpoint")));
	qmp_client_close(events);
	quit_vm(c, pid);
	*growth = every_ms ? store_pack_bytes(store) - first_bytes : 0;
	return rounds;
}

static void bench_checkpoints(void)
{
	static double pause[CHECKPOINT_SECONDS * 20];
	int n;
	double growth, listed;
	long long plain = checkpoint_run(0, pause, 0, &n, &growth, &listed);
	long long rounds = checkpoint_run(100, pause, CHECKPOINT_SECONDS * 20, &n, &growth, &listed);
	if (n < 2)
		die("fewer than two checkpoints were taken");
	qsort(pause, (size_t)n, sizeof(pause[0]), cmp_double);
	double p99 = pause[(n * 99) / 100 < n ? (n * 99) / 100 : n - 1];
	printf("snapshot: checkpoints every 100 ms for %d s of a 512 MiB guest rewriting 16 MiB: %d taken, guest pause "
	       "p99 %.2f ms (max %.2f; target <= 2 ms); guest progress %lld rounds beside %lld without: %.0f%% "
	       "(target >= 70%%); store growth after the first %.1f MiB beside %.1f MiB of pages changed between "
	       "checkpoints: %.2fx (target <= 1.1x)\n",
	       CHECKPOINT_SECONDS, n, p99, pause[n - 1], rounds, plain, 100.0 * (double)rounds / (double)plain,
	       growth / 1048576.0, listed * 4096.0 / 1048576.0, growth / (listed * 4096.0));
}

int main(int argc, char **argv)
{
	const char *part = argc > 1 ? argv[1] : "all";
	int snapshot_runs = argc > 2 ? atoi(argv[2]) : 1;
	bool all = strcmp(part, "all") == 0;
	if ((!all && strcmp(part, "snapshot") && strcmp(part, "restore") && strcmp(part, "fork") &&
	     strcmp(part, "density") && strcmp(part, "incremental") && strcmp(part, "store") &&
	     strcmp(part, "checkpoints")) ||
	    snapshot_runs < 1 ||
	    snapshot_runs > RUNS_MAX) {
		fprintf(stderr, "usage: bench_snapshot [all|snapshot [1-%d]|restore|density|fork|incremental|store|checkpoints]\n",
			RUNS_MAX);
		return 2;
	}
	const char *build = getenv("VMM_BUILD") ? getenv("VMM_BUILD") : "build";
	snprintf(vmm, sizeof(vmm), "%s/vmm", build);
	snprintf(guest, sizeof(guest), "%s/guest.elf", build);
	prctl(PR_SET_CHILD_SUBREAPER, 1); /* forked VMs come back to us if their parent dies */
	if (!mkdtemp(dir))
		die("mkdtemp");
	if (all || !strcmp(part, "snapshot"))
		bench_live_snapshot(snapshot_runs);
	if (all || !strcmp(part, "restore")) {
		bench_restore(all);
		bench_working_set();
	}
	if (all || !strcmp(part, "density"))
		bench_density();
	if (all || !strcmp(part, "fork")) {
		bench_fork(1);
		bench_fork(10);
		bench_fork(50);
	}
	if (all || !strcmp(part, "incremental"))
		bench_incremental();
	if (all || !strcmp(part, "store"))
		bench_store();
	if (all || !strcmp(part, "checkpoints"))
		bench_checkpoints();
	char cmd[128];
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	return system(cmd) == 0 ? 0 : 1;
}

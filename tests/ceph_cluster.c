/* A throwaway single-node Ceph cluster for tests. See ceph_cluster.h. */
#include "ceph_cluster.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"
#include "spawn.h"
#include "vmm/clock.h"
#include "vmm/error.h"
#include "vmm/store/rados.h"

#define START_DEADLINE_S 60u /* for the whole start */
#define COMMAND_TIMEOUT_S 60u /* for one command of the set-up */
#define STOP_GRACE_MS 5000u   /* between SIGTERM and SIGKILL */
#define CLI_TRIES 3           /* of a ceph command the monitor refuses */
#define PROBE_OBJECT "ceph-cluster-probe"

/* The cluster running in this process, for the exit handler. */
static struct ceph_cluster *running;

/* $VMM_TEST_CEPH_ADDR, or 127.0.0.1: the IPv4 address a cluster started here listens on. */
static const char *cluster_addr(void)
{
	const char *a = getenv("VMM_TEST_CEPH_ADDR");
	struct in_addr parsed;
	return a && inet_pton(AF_INET, a, &parsed) == 1 ? a : "127.0.0.1";
}

static void stop_at_exit(void)
{
	if (running)
		ceph_cluster_stop(running);
}

unsigned ceph_cluster_free_port(void)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return 0;
	struct sockaddr_in a = {.sin_family = AF_INET};
	inet_pton(AF_INET, cluster_addr(), &a.sin_addr);
	socklen_t len = sizeof(a);
	unsigned port = 0;
	if (bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0 && getsockname(fd, (struct sockaddr *)&a, &len) == 0)
		port = ntohs(a.sin_port);
	close(fd);
	return port;
}

int ceph_cluster_write_conf(const char *path, const char *dir, unsigned port, const char *fsid)
{
	FILE *f = fopen(path, "w");
	if (!f)
		return -1;
	fprintf(f,
		"[global]\n"
		"fsid = %s\n"
		"mon host = v1:%s:%u\n"
		"public addr = %s\n"
		"auth cluster required = none\n"
		"auth service required = none\n"
		"auth client required = none\n"
		"auth allow insecure global id reclaim = true\n"
		"osd pool default size = 1\n"
		"osd pool default min size = 1\n"
		"osd crush chooseleaf type = 0\n"
		"osd objectstore = memstore\n"
		"memstore device bytes = 2147483648\n"
		"run dir = %s/run\n"
		"pid file = %s/run/$name.pid\n"
		"log file = %s/$name.log\n"
		"mon data = %s/mon\n"
		"osd data = %s/osd0\n"
		"keyring = %s/keyring\n"
		"ms bind ipv6 = false\n"
		"mon allow pool delete = true\n"
		"mon allow pool size one = true\n"
		"mon warn on pool no redundancy = false\n"
		"osd pool default pg autoscale mode = off\n"
		"mgr initial modules =\n"
		/* The OSD's first commands to the monitor at boot can race the monitor map and be
		 * refused ("wrong fsid"), which kills it (about one start in five here): it asks
		 * nothing, and is put in the CRUSH map before it starts. */
		"osd class update on start = false\n"
		"osd crush update on start = false\n"
		"[mon]\n"
		"admin socket = %s/run/$name.asok\n"
		"[osd]\n"
		"admin socket = %s/run/$name.asok\n"
		/* Many clients of one name: no admin socket (they would fight over its path), one
		 * log, and nothing on the tests' stderr. */
		"[client]\n"
		"admin socket =\n"
		"log file = %s/client.log\n"
		"err to stderr = false\n",
		fsid, cluster_addr(), port, cluster_addr(), dir, dir, dir, dir, dir, dir, dir, dir, dir);
	return fclose(f) == 0 ? 0 : -1;
}

/* @why = the formatted words; returns -1. */
static int __attribute__((format(printf, 3, 4))) start_failed(char *why, size_t len, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(why, len, fmt, ap);
	va_end(ap);
	return -1;
}

/* Print the last @lines lines of @dir/@name to stderr. */
static void print_tail(const char *dir, const char *name, int lines)
{
	char path[160];
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	FILE *f = fopen(path, "r");
	if (!f)
		return;
	static char buf[1 << 16];
	fseek(f, 0, SEEK_END);
	long size = ftell(f);
	long from = size > (long)sizeof(buf) - 1 ? size - (long)sizeof(buf) + 1 : 0;
	fseek(f, from, SEEK_SET);
	size_t n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	if (n == 0)
		return;
	buf[n] = '\0';
	size_t from_line = n > 0 && buf[n - 1] == '\n' ? n - 1 : n;
	for (int seen = 0; from_line > 0; from_line--)
		if (buf[from_line - 1] == '\n' && ++seen == lines)
			break;
	fprintf(stderr, "---- %s (last %d lines)\n%s", path, lines, buf + from_line);
}

static void print_logs(const struct ceph_cluster *cl)
{
	print_tail(cl->dir, "mon.out", 10);
	print_tail(cl->dir, "osd.out", 10);
	print_tail(cl->dir, "mon.a.log", 20);
	print_tail(cl->dir, "osd.0.log", 20);
	print_tail(cl->dir, "client.log", 10);
}

/* Run @argv[0] (found on PATH) with its arguments and wait, up to @tries times while it
 * fails; -1 with @why (and its output on stderr) unless it exits 0. */
static int run(char *why, size_t len, int tries, char *const argv[])
{
	char *full[16] = {"/usr/bin/env"};
	char shown[256] = "";
	size_t n = 1;
	for (; argv[n - 1] && n < 15; n++) {
		full[n] = argv[n - 1];
		size_t at = strlen(shown);
		snprintf(shown + at, sizeof(shown) - at, "%s%s", at ? " " : "", argv[n - 1]);
	}
	full[n] = NULL;
	for (int attempt = 1;; attempt++) {
		struct spawn_result r;
		if (spawn_run(&r, COMMAND_TIMEOUT_S, full) != 0)
			return start_failed(why, len, "cannot run %s", argv[0]);
		int status = r.status;
		if (status != 0 && attempt == tries)
			fprintf(stderr, "ceph_cluster: %s: status %d%s:\n%s%s", shown, status,
				r.timed_out ? " (timed out)" : "", r.out, r.err);
		spawn_free(&r);
		if (status == 0)
			return 0;
		if (attempt == tries)
			return start_failed(why, len, "%s: status %d", shown, status);
		struct timespec t = {0, 500000000L};
		nanosleep(&t, NULL);
	}
}

/* Start daemon @argv[0] (on PATH) in the foreground, output to @dir/@out: a child that dies
 * with this process. Its pid, or -1. */
static pid_t start_daemon(const struct ceph_cluster *cl, const char *out, char *const argv[])
{
	char path[160];
	snprintf(path, sizeof(path), "%s/%s", cl->dir, out);
	pid_t parent = getpid();
	pid_t pid = fork();
	if (pid != 0)
		return pid;
	prctl(PR_SET_PDEATHSIG, SIGKILL);
	if (getppid() != parent)
		_exit(127);
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	int null = open("/dev/null", O_RDONLY);
	if (fd < 0 || null < 0)
		_exit(127);
	dup2(null, STDIN_FILENO);
	dup2(fd, STDOUT_FILENO);
	dup2(fd, STDERR_FILENO);
	setpgid(0, 0); /* out of the test's group: a ^C stops the runner, which stops these */
	execvp(argv[0], argv);
	_exit(127);
}

/* True when daemon *pid has exited (it is reaped, *pid 0). */
static bool daemon_gone(pid_t *pid)
{
	int st;
	if (*pid > 0 && waitpid(*pid, &st, WNOHANG) == 0)
		return false;
	*pid = 0;
	return true;
}

static void stop_daemon(pid_t *pid)
{
	if (*pid <= 0)
		return;
	kill(*pid, SIGTERM);
	uint64_t deadline = clock_monotonic_ns() + (uint64_t)STOP_GRACE_MS * 1000000u;
	while (!daemon_gone(pid)) {
		if (clock_monotonic_ns() >= deadline) {
			kill(*pid, SIGKILL);
			waitpid(*pid, NULL, 0);
			*pid = 0;
			break;
		}
		struct timespec t = {0, 10000000L};
		nanosleep(&t, NULL);
	}
}

static int remove_one(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
	(void)st;
	(void)ftw;
	return type == FTW_DP ? rmdir(path) : unlink(path);
}

void ceph_cluster_stop(struct ceph_cluster *cl)
{
	if (cl->starter != getpid())
		return;
	stop_daemon(&cl->osd);
	stop_daemon(&cl->mon);
	if (cl->dir[0])
		nftw(cl->dir, remove_one, 16, FTW_DEPTH | FTW_PHYS);
	cl->dir[0] = '\0';
	cl->starter = 0;
	if (running == cl)
		running = NULL;
}

/* Wait until the pool takes a write through the RADOS helper, or @deadline_ns, or a daemon
 * exits. 0 or -1 with @why. */
static int wait_for_pool(struct ceph_cluster *cl, uint64_t deadline_ns, char *why, size_t len)
{
	char last[512] = "nothing tried";
	while (clock_monotonic_ns() < deadline_ns) {
		if (!cl->external && (daemon_gone(&cl->mon) || daemon_gone(&cl->osd)))
			return start_failed(why, len, "the %s exited while the cluster started (last try: %s)",
				    cl->mon ? "OSD" : "monitor", last);
		struct rados_conn *c;
		int r = rados_conn_open(cl->pool, "", cl->conf, NULL, &c);
		if (r == 0) {
			/* An OSD op waits until the pool's placement groups are active. */
			r = rados_conn_write_full(c, PROBE_OBJECT, "probe", 5, false);
			if (r == 0)
				r = rados_conn_remove(c, PROBE_OBJECT);
			rados_conn_close(c);
		}
		if (r == 0)
			return 0;
		snprintf(last, sizeof(last), "%s", error_message());
		struct timespec t = {0, 200000000L};
		nanosleep(&t, NULL);
	}
	return start_failed(why, len, "the pool took no write within %u s: %s", START_DEADLINE_S, last);
}

static int start(struct ceph_cluster *cl, char *why, size_t len)
{
	uint64_t deadline = clock_monotonic_ns() + (uint64_t)START_DEADLINE_S * 1000000000u;
	strcpy(cl->dir, "/tmp/vmm-ceph-XXXXXX");
	if (!mkdtemp(cl->dir)) {
		cl->dir[0] = '\0';
		return start_failed(why, len, "cannot make a folder in /tmp: %s", strerror(errno));
	}
	char path[160], fsid[40] = "", monmap[128], mon_addr[40], keyring[128];
	static const char *const subs[] = {"mon", "osd0", "run"};
	for (size_t i = 0; i < sizeof(subs) / sizeof(subs[0]); i++) {
		snprintf(path, sizeof(path), "%s/%s", cl->dir, subs[i]);
		if (mkdir(path, 0755) != 0)
			return start_failed(why, len, "cannot make %s: %s", path, strerror(errno));
	}
	FILE *u = fopen("/proc/sys/kernel/random/uuid", "r");
	if (!u || !fgets(fsid, sizeof(fsid), u)) {
		if (u)
			fclose(u);
		return start_failed(why, len, "cannot read a uuid from /proc/sys/kernel/random/uuid");
	}
	fclose(u);
	fsid[strcspn(fsid, "\n")] = '\0';
	snprintf(cl->fsid, sizeof(cl->fsid), "%s", fsid);
	cl->port = ceph_cluster_free_port();
	if (!cl->port)
		return start_failed(why, len, "no free TCP port on %s", cluster_addr());
	snprintf(cl->conf, sizeof(cl->conf), "%s/ceph.conf", cl->dir);
	snprintf(cl->pool, sizeof(cl->pool), "vmm");
	if (ceph_cluster_write_conf(cl->conf, cl->dir, cl->port, fsid) != 0)
		return start_failed(why, len, "cannot write %s: %s", cl->conf, strerror(errno));
	snprintf(monmap, sizeof(monmap), "%s/monmap", cl->dir);
	snprintf(keyring, sizeof(keyring), "%s/keyring", cl->dir);
	snprintf(mon_addr, sizeof(mon_addr), "v1:%s:%u", cluster_addr(), cl->port);

	char *authtool[] = {"ceph-authtool", "--create-keyring", keyring, "--gen-key", "-n", "mon.", "--cap", "mon", "allow *", NULL};
	char *monmaptool[] = {"monmaptool", "--create", "--add", "a", mon_addr, "--fsid", fsid, monmap, NULL};
	char *mon_mkfs[] = {"ceph-mon", "--mkfs", "-i", "a", "--monmap", monmap, "-c", cl->conf, NULL};
	char *mon[] = {"ceph-mon", "-f", "-i", "a", "-c", cl->conf, NULL};
	char *osd_create[] = {"ceph", "-c", cl->conf, "osd", "create", NULL};
	char *crush_add[] = {"ceph", "-c", cl->conf, "osd", "crush", "add", "osd.0", "1", "root=default", NULL};
	char *pool_create[] = {"ceph", "-c", cl->conf, "osd", "pool", "create", cl->pool, "8", "8", NULL};
	char *osd_mkfs[] = {"ceph-osd", "--mkfs", "-i", "0", "-c", cl->conf, NULL};
	char *osd[] = {"ceph-osd", "-f", "-i", "0", "-c", cl->conf, NULL};

	if (run(why, len, 1, authtool) || run(why, len, 1, monmaptool) || run(why, len, 1, mon_mkfs))
		return -1;
	cl->mon = start_daemon(cl, "mon.out", mon);
	if (cl->mon < 0)
		return start_failed(why, len, "cannot fork: %s", strerror(errno));
	/* A client's first command to a monitor that has just started is now and then refused
	 * ("wrong fsid": the client has no monitor map yet); again a moment later, it goes. */
	if (run(why, len, CLI_TRIES, osd_create) || run(why, len, CLI_TRIES, crush_add) ||
	    run(why, len, CLI_TRIES, pool_create) || run(why, len, 1, osd_mkfs))
		return -1;
	cl->osd = start_daemon(cl, "osd.out", osd);
	if (cl->osd < 0)
		return start_failed(why, len, "cannot fork: %s", strerror(errno));
	return wait_for_pool(cl, deadline, why, len);
}

int ceph_cluster_start(struct ceph_cluster *cl, char *why, size_t why_len)
{
	static bool exit_handler;
	memset(cl, 0, sizeof(*cl));
	cl->starter = getpid();
	if (!exit_handler) {
		atexit(stop_at_exit);
		exit_handler = true;
	}
	running = cl;
	uint64_t t0 = clock_monotonic_ns();
	const char *external = getenv("VMM_TEST_CEPH_CONF");
	if (external && *external) {
		cl->external = true;
		snprintf(cl->conf, sizeof(cl->conf), "%s", external);
		snprintf(cl->pool, sizeof(cl->pool), "vmm");
		int r = wait_for_pool(cl, t0 + (uint64_t)START_DEADLINE_S * 1000000000u, why, why_len);
		if (r)
			fprintf(stderr, "ceph_cluster: the cluster of $VMM_TEST_CEPH_CONF (%s): %s\n", external, why);
		return r;
	}
	if (start(cl, why, why_len) != 0) {
		fprintf(stderr, "ceph_cluster: %s\n", why);
		if (cl->dir[0])
			print_logs(cl);
		ceph_cluster_stop(cl);
		return -1;
	}
	cl->start_ms = (unsigned)((clock_monotonic_ns() - t0) / 1000000u);
	return 0;
}

struct ceph_cluster ceph_suite_cluster;

void ceph_cluster_suite_start(void)
{
	setenv("VMM_RADOS", harness_build_path("rados_server"), 1);
	char why[512];
	ck_assert_msg(ceph_cluster_start(&ceph_suite_cluster, why, sizeof(why)) == 0, "test cluster: %s", why);
	setenv("CEPH_CONF", ceph_suite_cluster.conf, 1);
}

void ceph_cluster_suite_stop(void)
{
	ceph_cluster_stop(&ceph_suite_cluster);
}

void ceph_cluster_test_store(char *where, size_t len)
{
	static unsigned n; /* Check runs each test in a process of its own: the pid tells them apart */
	snprintf(where, len, "rados:%s/t%d-%u", ceph_suite_cluster.pool, (int)getpid(), ++n);
}

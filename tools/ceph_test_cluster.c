/*
 * ceph_test_cluster: the tests' single-node Ceph cluster (tests/ceph_cluster.h), started
 * here and kept running for tests that run elsewhere: inside a machine whose CPU is
 * emulated (tools/kvm_emulated.sh), where the daemons themselves start too slowly.
 *
 * usage: ceph_test_cluster CONF
 *   Starts the cluster (listening on $VMM_TEST_CEPH_ADDR, default 127.0.0.1), writes a client
 *   configuration naming it to CONF (its client log beside it), prints "ready CONF" and
 *   runs until SIGINT or SIGTERM; then stops the daemons, removes the cluster's folder and
 *   CONF. Tests use it with VMM_TEST_CEPH_CONF=CONF. Exit status 0, or 1 with one line
 *   saying why the cluster could not start.
 */
#include <libgen.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tests/ceph_cluster.h"

/* For tests/spawn.c (which the cluster's commands run through): a file beside this program. */
const char *harness_build_path(const char *name)
{
	static char path[4096];
	char self[4096];
	ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
	self[n > 0 ? n : 0] = '\0';
	snprintf(path, sizeof(path), "%s/%s", n > 0 ? dirname(self) : "build", name);
	return path;
}

int main(int argc, char **argv)
{
	if (argc != 2 || argv[1][0] == '-') {
		fprintf(stderr, "usage: ceph_test_cluster CONF   (see tools/ceph_test_cluster.c)\n");
		return argc == 2 && strcmp(argv[1], "--help") == 0 ? 0 : 2;
	}
	const char *conf = argv[1];
	/* The RADOS helper beside this program sees that the pool takes writes. */
	if (!getenv("VMM_RADOS"))
		setenv("VMM_RADOS", harness_build_path("rados_server"), 1);
	struct ceph_cluster cluster;
	char why[512];
	if (ceph_cluster_start(&cluster, why, sizeof(why)) != 0) {
		fprintf(stderr, "ceph_test_cluster: %s\n", why);
		return 1;
	}
	char folder[4096];
	snprintf(folder, sizeof(folder), "%s", conf);
	if (ceph_cluster_write_conf(conf, dirname(folder), cluster.port, cluster.fsid) != 0) {
		fprintf(stderr, "ceph_test_cluster: cannot write %s\n", conf);
		ceph_cluster_stop(&cluster);
		return 1;
	}
	/* Blocked only now: the daemons would inherit the mask (a signal before this ends the
	 * program, and the daemons with it: tests/ceph_cluster.h). */
	sigset_t stop;
	sigemptyset(&stop);
	sigaddset(&stop, SIGINT);
	sigaddset(&stop, SIGTERM);
	sigprocmask(SIG_BLOCK, &stop, NULL);
	printf("ready %s\n", conf);
	fflush(stdout);
	int sig;
	sigwait(&stop, &sig);
	ceph_cluster_stop(&cluster);
	unlink(conf);
	return 0;
}

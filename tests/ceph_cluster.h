/*
 * A throwaway Ceph cluster for tests: one monitor and one OSD (memstore: RAM only) on
 * 127.0.0.1 at a free port, cephx off, one pool, all in a fresh folder under /tmp.
 *
 * The daemons run in the foreground as children of the process that started them, each
 * with PR_SET_PDEATHSIG(SIGKILL): however that process ends (a crash, kill -9), they end
 * with it. ceph_cluster_stop (also run at exit if forgotten) kills them (SIGTERM, SIGKILL
 * after 5 s) and removes the folder.
 *
 * Needs ceph-mon, ceph-osd, monmaptool, ceph-authtool and ceph on PATH (HARNESS_CEPH), and
 * the RADOS helper (vmm/store/rados.h) to see that the pool takes writes.
 *
 * Two settings, for a machine that cannot run the daemons fast enough itself (a machine
 * whose CPU is emulated, tools/kvm_emulated.sh):
 *   VMM_TEST_CEPH_ADDR=IPv4  the address a cluster started here listens on (the monitor
 *                            and the OSD), instead of 127.0.0.1;
 *   VMM_TEST_CEPH_CONF=PATH  start nothing: use the running cluster whose client
 *                            configuration PATH is, and its pool "vmm" (tools/ceph_test_cluster
 *                            starts one); stopping it leaves it running.
 */
#ifndef TESTS_CEPH_CLUSTER_H
#define TESTS_CEPH_CLUSTER_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

struct ceph_cluster {
	char dir[64];    /* the folder: ceph.conf, keyring, logs, mon/, osd0/, run/ */
	char conf[4096]; /* dir/ceph.conf, or $VMM_TEST_CEPH_CONF: what clients are given */
	char pool[16];   /* the pool made: "vmm" */
	char fsid[40];   /* the cluster's (not known of an external one) */
	unsigned port;   /* the monitor's */
	pid_t mon, osd;  /* the daemons (0: not running) */
	pid_t starter;   /* the process whose children they are */
	unsigned start_ms; /* how long ceph_cluster_start took */
	bool external;   /* $VMM_TEST_CEPH_CONF's cluster: not ours to start or stop */
};

/*
 * Make and start a cluster, and wait (at most 60 s in all) until its pool takes a write.
 * 0, or -1 with one line in @why (the step that failed); the daemons' output and log tails
 * are printed to stderr then, and everything made is gone again.
 */
int ceph_cluster_start(struct ceph_cluster *cl, char *why, size_t why_len);

/*
 * A suite's cluster, as its unchecked fixture:
 *   tcase_add_unchecked_fixture(tc, ceph_cluster_suite_start, ceph_cluster_suite_stop);
 * starts ceph_suite_cluster with the RADOS helper of the build ($VMM_RADOS, from
 * harness_build_path; the suite's tests fail with the reason if it cannot start) and sets
 * CEPH_CONF naming it, for the VMs and commands the tests start.
 */
extern struct ceph_cluster ceph_suite_cluster;
void ceph_cluster_suite_start(void);
void ceph_cluster_suite_stop(void);

/* A store in the suite's cluster's pool, in a namespace no other test of this run uses:
 * "rados:POOL/NAME" in @where. */
void ceph_cluster_test_store(char *where, size_t len);

/* Kill the daemons and remove the folder. Only the process that started @cl does anything;
 * a second call does nothing. */
void ceph_cluster_stop(struct ceph_cluster *cl);

/* Write to @path a Ceph configuration naming a monitor at 127.0.0.1 (or $VMM_TEST_CEPH_ADDR)
 * port @port with cephx off and keeping its files in @dir. 0 or -1. */
int ceph_cluster_write_conf(const char *path, const char *dir, unsigned port, const char *fsid);

/* A TCP port on 127.0.0.1 (or $VMM_TEST_CEPH_ADDR) that nothing listens on at this moment
 * (0: none found). */
unsigned ceph_cluster_free_port(void);

#endif

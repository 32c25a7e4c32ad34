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
 */
#ifndef TESTS_CEPH_CLUSTER_H
#define TESTS_CEPH_CLUSTER_H

#include <stddef.h>
#include <sys/types.h>

struct ceph_cluster {
	char dir[64];    /* the folder: ceph.conf, keyring, logs, mon/, osd0/, run/ */
	char conf[96];   /* dir/ceph.conf: what clients are given */
	char pool[16];   /* the pool made: "vmm" */
	unsigned port;   /* the monitor's */
	pid_t mon, osd;  /* the daemons (0: not running) */
	pid_t starter;   /* the process whose children they are */
	unsigned start_ms; /* how long ceph_cluster_start took */
};

/*
 * Make and start a cluster, and wait (at most 60 s in all) until its pool takes a write.
 * 0, or -1 with one line in @why (the step that failed); the daemons' output and log tails
 * are printed to stderr then, and everything made is gone again.
 */
int ceph_cluster_start(struct ceph_cluster *cl, char *why, size_t why_len);

/* Kill the daemons and remove the folder. Only the process that started @cl does anything;
 * a second call does nothing. */
void ceph_cluster_stop(struct ceph_cluster *cl);

/* Write to @path a Ceph configuration naming a monitor at 127.0.0.1:@port with cephx off
 * and logging to @dir: for tests of a cluster that is not there. 0 or -1. */
int ceph_cluster_write_conf(const char *path, const char *dir, unsigned port, const char *fsid);

/* A TCP port on 127.0.0.1 that nothing listens on at this moment (0: none found). */
unsigned ceph_cluster_free_port(void);

#endif

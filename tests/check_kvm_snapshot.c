/*
 * Snapshots, restore and fork of running guests, proven from inside: the guests write
 * patterns and verify them after restore and fork; the store is checked from outside
 * (exact size with dedup, verify after kill -9, damage found at restore).
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <xxhash.h>

#include "guest/abi.h"
#include "harness.h"
#include "spawn.h"
#include "vm_proc.h"
#include "vmm/error.h"
#include "vmm/monitor/qmp_client.h"
#include "vmm/memory/guest_memory.h"
#include "vmm/store/format.h"
#include "vmm/store/store.h"
#include "vmm/memory/working_set.h"

static struct vm_proc vm, vm2, vm3;
static char store[64];

static void setup(void)
{
	strcpy(store, "/tmp/vmm-store-XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(store));
	struct store *s; /* an empty store: a kill before the first snapshot leaves it so */
	ck_assert_int_eq(store_open(store, true, &s), 0);
	store_close(s);
}

static void teardown(void)
{
	vm_proc_cleanup(&vm, false);
	vm_proc_cleanup(&vm2, false);
	vm_proc_cleanup(&vm3, false);
	char cmd[128];
	snprintf(cmd, sizeof(cmd), "rm -rf %s", store);
	ck_assert_int_eq(system(cmd), 0);
}

/* snapshot-save @name into the store; returns the result (decref it). */
static json_t *snapshot(struct vm_proc *v, const char *name)
{
	json_t *args = json_pack("{s:s,s:s}", "name", name, "store", store);
	json_t *ret = vm_proc_execute(v, "snapshot-save", args);
	json_decref(args);
	return ret;
}

static long long jint(json_t *o, const char *key)
{
	return json_integer_value(json_object_get(o, key));
}

/* vmm store verify's exit status; its report is printed when it is not @expected. */
static int store_verify_status(int expected)
{
	struct spawn_result r;
	ck_assert_int_eq(spawn_vmm(&r, 120, "store", "verify", store, NULL), 0);
	int status = r.status;
	if (status != expected)
		fprintf(stderr, "store verify: %s%s\n", r.out, r.err);
	spawn_free(&r);
	return status;
}

START_TEST(snapshot_mid_run_then_restore_finishes_every_round)
{
	/* The guest rewrites and verifies 32 MiB 200 times; snapshot it at round 5, let it
	 * finish, then restore: the restored guest resumes mid-run and must verify every
	 * remaining round against the memory it got back. */
	vm_proc_start(&vm, NULL, "run", "-c", "2", "-m", "128M", "-p", "rounds=32M,200", harness_guest(), NULL);
	vm_proc_wait_sync(&vm, 5);
	json_t *s = snapshot(&vm, "s1");
	ck_assert_str_eq(json_string_value(json_object_get(s, "parent")), "");
	char *dump = json_dumps(s, 0);
	ck_assert_msg(jint(s, "listed") >= 8192, "%s", dump); /* the 32 MiB the guest writes */
	free(dump);
	ck_assert_int_gt(jint(s, "pause-ns"), 0);
	/* RAM was write-protected ahead of the pause, the guest's 32 MiB at least. */
	ck_assert_int_ge(jint(s, "prearm-passes"), 1);
	ck_assert_int_ge(jint(s, "prearm-pages"), 8192);
	ck_assert(json_is_integer(json_object_get(s, "pause-protected")));
	json_decref(s);
	ck_assert_int_eq(vm_proc_wait(&vm), 0);
	char *out = vm_proc_output(&vm, false);
	ck_assert_ptr_nonnull(strstr(out, "rounds: 200 rounds ok"));
	free(out);

	vm_proc_start(&vm2, NULL, "restore", "--store", store, "s1", NULL);
	int st = vm_proc_wait(&vm2);
	out = vm_proc_output(&vm2, false);
	ck_assert_msg(st == 0 && strstr(out, "rounds: 200 rounds ok"), "status %d: %s", st, out);
	free(out);
	ck_assert_int_eq(store_verify_status(0), 0);
}
END_TEST

START_TEST(snapshots_of_a_guest_writing_on_every_cpu_restore_to_verified_rounds)
{
	/* Both vCPUs rewrite 24 MiB round after round while three snapshots are taken, their
	 * RAM write-protected ahead of each pause while they write (pre-arm) and copied on
	 * write after it. Every restored guest finishes the rounds, each checked against the
	 * memory it got back. */
	vm_proc_start(&vm, NULL, "run", "-c", "2", "-m", "128M", "-p", "rounds=24M,30", harness_guest(), NULL);
	const char *names[] = {"w1", "w2", "w3"};
	for (unsigned i = 0; i < 3; i++) {
		vm_proc_wait_sync(&vm, 2 + 3 * i);
		json_t *s = snapshot(&vm, names[i]);
		ck_assert_int_gt(jint(s, "pause-ns"), 0);
		/* Each after the first is incremental: its parent is the one before. */
		ck_assert_str_eq(json_string_value(json_object_get(s, "parent")), i ? names[i - 1] : "");
		json_decref(s);
	}
	json_t *st = vm_proc_execute(&vm, "query-stats", NULL);
	ck_assert_int_ge(jint(st, "mem.uffd_prearmed_pages"), 3 * 6144); /* at least what the guest writes */
	json_decref(st);
	ck_assert_int_eq(vm_proc_wait(&vm), 0);
	for (unsigned i = 0; i < 3; i++) {
		struct vm_proc r = {0};
		vm_proc_start(&r, NULL, "restore", "--store", store, names[i], NULL);
		int status = vm_proc_wait(&r);
		char *out = vm_proc_output(&r, false);
		ck_assert_msg(status == 0 && strstr(out, "rounds: 30 rounds ok"), "%s: status %d: %s", names[i], status, out);
		free(out);
		vm_proc_cleanup(&r, false);
	}
	ck_assert_int_eq(store_verify_status(0), 0);
}
END_TEST

static long long test_port_messages(struct vm_proc *v)
{
	json_t *st = vm_proc_execute(v, "query-stats", NULL);
	long long n = jint(st, "vm.test_port_messages");
	json_decref(st);
	return n;
}

/* Poll until the guest of @v has reported @n more rounds. */
static void wait_rounds(struct vm_proc *v, long long n)
{
	long long until = test_port_messages(v) + n;
	while (test_port_messages(v) < until) {
		struct timespec t = {0, 5000000L};
		nanosleep(&t, NULL);
	}
}

START_TEST(snapshots_of_a_guest_rewriting_a_few_pages_restore_to_verified_rounds)
{
	/* Both vCPUs rewrite the same 16 pages thousands of times a second while the 256 MiB
	 * they touched first are pre-armed (the hot pages early on, so they are written again
	 * during the rest of it), and again right after the pause, long before the snapshot's
	 * writer reads them. Had one of them been left writable at the pause, the snapshot
	 * would hold a later round than the vCPUs' state, and the restored guest, re-checking
	 * the round it was in, would stop at once with a mismatch. */
	vm_proc_start(&vm, NULL, "run", "-c", "2", "-m", "320M", "-p", "touch=256M spin=64K", harness_guest(), NULL);
	const char *names[] = {"h1", "h2", "h3"};
	long long before[3];
	for (unsigned i = 0; i < 3; i++) {
		wait_rounds(&vm, 100);
		before[i] = test_port_messages(&vm);
		json_t *s = snapshot(&vm, names[i]);
		char *dump = json_dumps(s, 0);
		if (i == 0) {
			ck_assert_msg(jint(s, "listed") >= 65536, "%s", dump); /* the 256 MiB touched */
		} else {
			/* Only what was written since the last one: the 16 hot pages and the stacks,
			 * not the 256 MiB again (each snapshot costs what changed). */
			ck_assert_str_eq(json_string_value(json_object_get(s, "parent")), names[i - 1]);
			ck_assert_msg(jint(s, "listed") <= 256, "%s", dump);
		}
		free(dump);
		json_decref(s);
	}
	json_decref(vm_proc_execute(&vm, "quit", NULL));
	vm_proc_wait(&vm);
	for (unsigned i = 0; i < 3; i++) {
		/* Restored, the guest spins on until the timeout stops it (status 124). */
		struct spawn_result r;
		ck_assert_int_eq(spawn_vmm(&r, 120, "restore", "--timeout", "2s", "--stats", "--store", store, names[i], NULL), 0);
		const char *key = strstr(r.err, "vm.test_port_messages");
		long long messages = 0;
		ck_assert_msg(r.status == 124 && !strstr(r.out, "mismatch") && key &&
				      sscanf(key + strlen("vm.test_port_messages"), "%lld", &messages) == 1,
			      "%s: status %d: %.500s", names[i], r.status, r.out);
		/* Past the round it was in (re-checked first), by a margin. */
		ck_assert_msg(messages >= before[i] + 10, "%s: %lld rounds in all, %lld before the snapshot", names[i],
			      messages, before[i]);
		spawn_free(&r);
	}
	ck_assert_int_eq(store_verify_status(0), 0);
}
END_TEST

START_TEST(fork_after_a_snapshot_keeps_each_vms_writes_its_own)
{
	/* The snapshot leaves the parent's RAM write-protected and its pmap remembering so;
	 * children start with a new userfaultfd and must not trust that memory. */
	char name[32]; /* children are NAME.K, with sockets in the runtime directory: a name of this run's own */
	snprintf(name, sizeof(name), "sf%d", (int)getpid());
	vm_proc_start(&vm, NULL, "run", "-n", name, "-m", "64M", "-p", "forktest=8M", harness_guest(), NULL);
	vm_proc_wait_sync(&vm, 1);
	json_decref(snapshot(&vm, "before-fork"));
	json_t *args = json_pack("{s:i}", "count", 2);
	json_t *res = vm_proc_execute(&vm, "fork", args);
	json_decref(args);
	ck_assert_int_eq(json_array_size(json_object_get(res, "children")), 2);
	json_decref(res);
	ck_assert_int_eq(vm_proc_wait(&vm), 0);
	vm_proc_wait_output(&vm, true, "guest ended with status 0", 2);
	vm_proc_expect_forks_checked(&vm, 3, 1, 2048);
}
END_TEST

START_TEST(snapshot_of_restored_guest_stores_only_what_changed)
{
	vm_proc_start(&vm, NULL, "run", "-m", "128M", "-p", "rounds=16M,1000000", harness_guest(), NULL);
	vm_proc_wait_sync(&vm, 2);
	json_t *s1 = snapshot(&vm, "base");
	long long base_pages = jint(s1, "listed");
	json_decref(s1);
	json_decref(vm_proc_execute(&vm, "quit", NULL));
	vm_proc_wait(&vm);

	/* Restored, the guest goes on rewriting its 16 MiB: that (and its stacks) is all that
	 * changes, so the child snapshot lists about 4096 pages, against base's whole RAM. */
	vm_proc_start(&vm2, NULL, "restore", "--store", store, "base", NULL);
	vm_proc_wait_sync(&vm2, 0);
	json_t *s2 = snapshot(&vm2, "child");
	ck_assert_str_eq(json_string_value(json_object_get(s2, "parent")), "base");
	ck_assert_int_le(jint(s2, "listed"), 4096 + 64);
	ck_assert_int_lt(jint(s2, "listed"), base_pages);
	json_decref(s2);
	json_decref(vm_proc_execute(&vm2, "quit", NULL));
	vm_proc_wait(&vm2);

	/* The child restores and runs on (its rounds verify), until stopped by its timeout. */
	vm_proc_start(&vm, NULL, "restore", "--store", store, "-t", "500ms", "child", NULL);
	int st = vm_proc_wait(&vm);
	char *err = vm_proc_output(&vm, true);
	ck_assert_msg(st == 124 && strstr(err, "still running after the 500 ms timeout"), "status %d: %s", st, err);
	free(err);
	ck_assert_int_eq(store_verify_status(0), 0);
}
END_TEST

/* The snapshot a running VM was restored from cannot be deleted from under it: rm says
 * which VM holds it, gc keeps it, and the VM's next snapshot (naming it as parent) is whole;
 * once the VM is gone it can, its child reading the same. */
START_TEST(the_snapshot_a_live_vm_runs_from_is_kept_until_it_ends)
{
	vm_proc_start(&vm, NULL, "run", "-m", "64M", "-p", "rounds=4M,1000000", harness_guest(), NULL);
	vm_proc_wait_sync(&vm, 2);
	json_decref(snapshot(&vm, "s1"));
	json_decref(vm_proc_execute(&vm, "quit", NULL));
	vm_proc_wait(&vm);

	vm_proc_start(&vm2, NULL, "restore", "-n", "r", "--store", store, "s1", NULL);
	vm_proc_wait_sync(&vm2, 0);
	struct spawn_result r;
	ck_assert_int_eq(spawn_vmm(&r, 60, "store", "rm", store, "s1", NULL), 0);
	ck_assert_msg(r.status == 125 && strstr(r.err, "snapshot 's1' is in use by VM 'r' (pid "), "status %d: %s",
		      r.status, r.err);
	spawn_free(&r);
	ck_assert_int_eq(spawn_vmm(&r, 60, "store", "gc", store, NULL), 0);
	ck_assert_msg(r.status == 0, "gc: %s", r.err);
	spawn_free(&r);
	json_t *s2 = snapshot(&vm2, "s2");
	ck_assert_str_eq(json_string_value(json_object_get(s2, "parent")), "s1");
	json_decref(s2);
	json_decref(vm_proc_execute(&vm2, "quit", NULL));
	vm_proc_wait(&vm2);

	/* The VM is gone: s1 can go, s2 (its child) taking in the pages it read through it;
	 * s2 restores and its guest's rounds verify (until stopped by its timeout). */
	ck_assert_int_eq(spawn_vmm(&r, 60, "store", "rm", store, "s1", NULL), 0);
	ck_assert_msg(r.status == 0, "status %d: %s", r.status, r.err);
	spawn_free(&r);
	vm_proc_start(&vm, NULL, "restore", "--store", store, "-t", "500ms", "s2", NULL);
	int st = vm_proc_wait(&vm);
	ck_assert_int_eq(st, 124);
	ck_assert_int_eq(store_verify_status(0), 0);
}
END_TEST

START_TEST(restored_pages_the_guest_only_reads_are_held_once_and_not_listed_again)
{
	/* The guest fills 32 MiB, then waits; snapshotted there and restored, it is let go and
	 * checks the 32 MiB (reading only). Each page it read is held once: copied into the
	 * guest's own object, none left with the snapshot pager (--private: no host-wide copy).
	 * A snapshot of it then lists none of those pages: they equal the parent's. */
	vm_proc_start(&vm, NULL, "run", "-m", "128M", "-p",
		      "seed=7 fill=0x4000000,32M sync=1 await=0x7ff000 check=0x4000000,32M sync=2 idle", harness_guest(), NULL);
	vm_proc_wait_sync(&vm, 1);
	json_decref(snapshot(&vm, "filled"));
	json_decref(vm_proc_execute(&vm, "quit", NULL));
	vm_proc_wait(&vm);

	vm_proc_start(&vm2, NULL, "restore", "--private", "--store", store, "filled", NULL);
	vm_proc_release(&vm2, 0x7ff000);
	vm_proc_wait_sync(&vm2, 2);
	json_t *st = vm_proc_execute(&vm2, "query-stats", NULL);
	ck_assert_int_ge(jint(st, "object.2.resident"), 8192);
	ck_assert_int_eq(jint(st, "object.1.resident"), 0); /* the snapshot pager's object */
	ck_assert_int_eq(jint(st, "mem.resident_pages"), jint(st, "object.2.resident"));
	json_decref(st);
	json_t *s2 = snapshot(&vm2, "checked");
	ck_assert_int_ge(jint(s2, "unchanged"), 8192);
	ck_assert_int_le(jint(s2, "listed"), 64); /* the stacks and the mailbox */
	json_decref(s2);
	json_decref(vm_proc_execute(&vm2, "quit", NULL));
	vm_proc_wait(&vm2);
	char *out = vm_proc_output(&vm2, false);
	ck_assert_msg(strstr(out, "check: 8192 pages ok"), "%s", out);
	free(out);
	ck_assert_int_eq(store_verify_status(0), 0);
}
END_TEST

/* The guest of @v said "check: 8192 pages ok" @n times, and nothing else of its checks. */
static void expect_checks_ok(struct vm_proc *v, unsigned n)
{
	char *out = vm_proc_output(v, false);
	unsigned ok = 0;
	for (const char *p = out; (p = strstr(p, "check: 8192 pages ok")); p++)
		ok++;
	ck_assert_msg(ok == n && !strstr(out, "mismatch"), "%s", out);
	free(out);
}

START_TEST(restores_of_one_snapshot_share_its_pages_and_keep_their_writes)
{
	/* The guest fills 32 MiB and is snapshotted; two restores check it (reads only), the
	 * second finding every page resident already (brought in by the first, mapped from the
	 * one host-wide copy). Then the first is written into: its own check sees the write,
	 * the second's and a third restore's do not. */
	vm_proc_start(&vm, NULL, "run", "-m", "128M", "-p",
		      "seed=7 fill=0x4000000,32M sync=1 await=0x7ff000 check=0x4000000,32M sync=2 await=0x7fe000 "
		      "check=0x4000000,32M sync=3 idle",
		      harness_guest(), NULL);
	vm_proc_wait_sync(&vm, 1);
	json_decref(snapshot(&vm, "filled"));
	json_decref(vm_proc_execute(&vm, "quit", NULL));
	vm_proc_wait(&vm);

	vm_proc_start(&vm2, NULL, "restore", "-n", "first", "--store", store, "filled", NULL);
	vm_proc_start(&vm3, NULL, "restore", "-n", "second", "--store", store, "filled", NULL);
	vm_proc_release(&vm2, 0x7ff000);
	vm_proc_wait_sync(&vm2, 2);
	vm_proc_release(&vm3, 0x7ff000);
	vm_proc_wait_sync(&vm3, 2);
	json_t *a = vm_proc_execute(&vm2, "query-stats", NULL);
	json_t *b = vm_proc_execute(&vm3, "query-stats", NULL);
	if (guest_memory_can_map_segments() == 0) {
		ck_assert_int_ge(jint(a, "mem.segment_filled"), 8192);
		ck_assert_int_ge(jint(b, "mem.segment_found"), 8192);
		ck_assert_int_le(jint(b, "mem.segment_filled"), 64); /* what the first had not touched */
		ck_assert_int_ge(jint(b, "mem.shared_pages"), 8192);
		ck_assert_int_ge(jint(b, "mem.segment_pages"), 8192);
		ck_assert_int_ge(jint(b, "mem.segment_holders"), 2);
		/* Mapped from the one host copy indeed, not copied in. */
		ck_assert_int_ge(jint(b, "mem.uffd_pages_continued"), 8192);
		ck_assert_int_eq(jint(b, "mem.uffd_continue_fallbacks"), 0);
	} else {
		/* A kernel that cannot map a shared page write-protected: each VM keeps its own
		 * pages and says so once, and no segment is made. */
		printf("note: %s: %s; the restores were checked private\n", __func__, error_message());
		for (struct vm_proc *v = &vm2; v; v = v == &vm2 ? &vm3 : NULL) {
			char *err = vm_proc_output(v, true);
			ck_assert_msg(strstr(err, "is not shared with other VMs on this host"), "%s", err);
			free(err);
		}
		ck_assert_int_eq(jint(b, "mem.shared_pages"), 0);
		ck_assert_int_eq(jint(b, "mem.uffd_continues"), 0);
		ck_assert_int_eq(jint(b, "mem.segment_holders"), 0);
	}
	json_decref(a);
	json_decref(b);

	/* 8 zero bytes over the first page of the pattern, in the first VM only. */
	json_decref(vm_proc_call(&vm2, "vm-write", json_pack("{s:I,s:s}", "addr", 0x4000000ll, "data", "AAAAAAAAAAA=")));
	vm_proc_release(&vm2, 0x7fe000);
	/* The guest stops at the first page that does not match (guest/abi.h). */
	int status = vm_proc_wait(&vm2);
	char *out = vm_proc_output(&vm2, false);
	ck_assert_msg(status == ABI_STATUS_VERIFY_FAILED && strstr(out, "check: 8192 pages ok") &&
			      strstr(out, "check: mismatch at 0x0000000004000000"),
		      "status %d: %s", status, out);
	free(out);
	vm_proc_release(&vm3, 0x7fe000);
	vm_proc_wait_sync(&vm3, 3);
	expect_checks_ok(&vm3, 2);

	/* A restore made after all that still sees the snapshot. */
	vm_proc_cleanup(&vm, false);
	vm_proc_start(&vm, NULL, "restore", "-n", "third", "--store", store, "filled", NULL);
	vm_proc_release(&vm, 0x7ff000);
	vm_proc_wait_sync(&vm, 2);
	vm_proc_release(&vm, 0x7fe000);
	vm_proc_wait_sync(&vm, 3);
	expect_checks_ok(&vm, 2);
	for (struct vm_proc *v = &vm; v; v = v == &vm ? &vm3 : NULL) {
		json_decref(vm_proc_execute(v, "quit", NULL));
		vm_proc_wait(v);
	}
	ck_assert_int_eq(store_verify_status(0), 0);
}
END_TEST

START_TEST(a_recorded_working_set_is_prefetched_and_checks_out)
{
	/* Snapshotted while it waits, the guest is restored and let go to check 32 MiB: that
	 * run records its working set. A second restore prefetches it while the guest still
	 * waits, then lets it check: it takes no faults there, and the pages are right. */
	vm_proc_start(&vm, NULL, "run", "-m", "128M", "-p",
		      "seed=7 fill=0x4000000,32M sync=1 await=0x7ff000 check=0x4000000,32M sync=2 idle", harness_guest(), NULL);
	vm_proc_wait_sync(&vm, 1);
	json_decref(snapshot(&vm, "waiting"));
	json_decref(vm_proc_execute(&vm, "quit", NULL));
	vm_proc_wait(&vm);
	char ws_path[128];
	snprintf(ws_path, sizeof(ws_path), "%s/working-set", store);

	vm_proc_start(&vm2, NULL, "restore", "--store", store, "--record-working-set", ws_path, "waiting", NULL);
	vm_proc_release(&vm2, 0x7ff000);
	vm_proc_wait_sync(&vm2, 2);
	json_t *st = vm_proc_execute(&vm2, "query-stats", NULL);
	long long recorded = jint(st, "mem.working_set_pages");
	json_decref(st);
	ck_assert_int_ge(recorded, 8192 / 64); /* a fault per cluster of 64 pages at least */
	json_decref(vm_proc_execute(&vm2, "quit", NULL));
	ck_assert_int_eq(vm_proc_wait(&vm2), 0);
	struct working_set ws;
	ck_assert_int_eq(working_set_read(ws_path, &ws), 0);
	ck_assert_uint_eq(ws.ram_size, 128u << 20);
	ck_assert_uint_ge(ws.count, (uint64_t)recorded);
	working_set_free(&ws);

	vm_proc_start(&vm2, NULL, "restore", "--store", store, "--prefetch", ws_path, "waiting", NULL);
	long long prefetched = 0, faults_before = 0;
	for (int i = 0; i < VM_PROC_TIMEOUT_MS / 10 && prefetched < 8192; i++) {
		st = vm_proc_execute(&vm2, "query-stats", NULL);
		prefetched = jint(st, "mem.prefetched_pages");
		faults_before = jint(st, "mem.uffd_faults");
		json_decref(st);
		struct timespec t = {0, 10000000L};
		nanosleep(&t, NULL);
	}
	ck_assert_int_ge(prefetched, 8192);
	vm_proc_release(&vm2, 0x7ff000);
	vm_proc_wait_sync(&vm2, 2);
	st = vm_proc_execute(&vm2, "query-stats", NULL);
	ck_assert_int_le(jint(st, "mem.uffd_faults") - faults_before, 8); /* the mailbox and stacks, if any */
	json_decref(st);
	json_decref(vm_proc_execute(&vm2, "quit", NULL));
	vm_proc_wait(&vm2);
	char *out = vm_proc_output(&vm2, false);
	ck_assert_msg(strstr(out, "check: 8192 pages ok"), "%s", out);
	free(out);
}
END_TEST

/* A working set that is not one, or not this guest's, is refused before the guest runs. */
START_TEST(a_bad_working_set_is_refused_with_its_name)
{
	vm_proc_start(&vm, NULL, "run", "-m", "64M", "-p", "sync=1 idle", harness_guest(), NULL);
	vm_proc_wait_sync(&vm, 1);
	json_decref(snapshot(&vm, "small"));
	json_decref(vm_proc_execute(&vm, "quit", NULL));
	vm_proc_wait(&vm);
	char path[128];
	snprintf(path, sizeof(path), "%s/ws", store);
	uint64_t other_guest[4] = {0, 128u << 20, 1, 0x4000};
	memcpy(other_guest, WORKING_SET_MAGIC, 8);
	const struct {
		const void *bytes;
		size_t len;
		const char *says;
	} cases[] = {
		{"garbage, not a working set", 26, "not a working set file"},
		{other_guest, sizeof(other_guest), "recorded in a guest of 128 MiB of RAM, not 64"},
		{other_guest, sizeof(other_guest) - 4, "bytes of pages where 1 pages take 8"},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		FILE *f = fopen(path, "w");
		ck_assert_ptr_nonnull(f);
		ck_assert_uint_eq(fwrite(cases[i].bytes, 1, cases[i].len, f), cases[i].len);
		fclose(f);
		struct spawn_result r;
		ck_assert_int_eq(spawn_vmm(&r, 60, "restore", "--store", store, "--prefetch", path, "small", NULL), 0);
		ck_assert_msg(r.status == 125 && strstr(r.err, path) && strstr(r.err, cases[i].says) &&
				      strchr(r.err, '\n') == r.err + strlen(r.err) - 1,
			      "case %zu: status %d: %s", i, r.status, r.err);
		spawn_free(&r);
	}
	/* Nowhere to record one: refused before the guest runs, not when the VM ends. */
	struct spawn_result r;
	ck_assert_int_eq(spawn_vmm(&r, 60, "restore", "--store", store, "--record-working-set", "/nonexistent/ws", "small",
				   NULL),
			 0);
	ck_assert_msg(r.status == 125 && strstr(r.err, "cannot write working set /nonexistent/ws"), "status %d: %s",
		      r.status, r.err);
	spawn_free(&r);
}
END_TEST

START_TEST(store_holds_exactly_the_unique_nonzero_pages)
{
	/* 1024 pages of distinct patterns, 1024 copies of one page, the rest zero or the
	 * guest's own few pages. */
	vm_proc_start(&vm, NULL, "run", "-m", "64M", "-p", "fill=16M,4M dup=24M,4M sync=1 idle", harness_guest(), NULL);
	vm_proc_wait_sync(&vm, 1);
	json_decref(snapshot(&vm, "d"));
	struct store *s;
	struct store_snapshot *snap;
	ck_assert_int_eq(store_open(store, false, &s), 0);
	ck_assert_int_eq(store_snapshot_open(s, "d", &snap), 0);
	/* Count the distinct non-zero page contents of the snapshot, independently of the store's own index. */
	uint64_t npages = store_snapshot_page_count(snap), distinct = 0;
	uint64_t *hashes = calloc(npages, sizeof(uint64_t));
	const void **seen = calloc(npages, sizeof(void *));
	const void *dup_first = NULL;
	for (uint64_t p = 0; p < npages; p++) {
		const void *data;
		uint64_t h;
		ck_assert_int_eq(store_snapshot_page(snap, p, &data, &h), 0);
		if (!data)
			continue;
		static const uint8_t zero[4096];
		ck_assert_msg(memcmp(data, zero, 4096) != 0, "a zero page is stored (page %llu)", (unsigned long long)p);
		ck_assert_uint_eq(XXH3_64bits(data, 4096), h);
		bool known = false;
		for (uint64_t k = 0; k < distinct && !known; k++)
			known = hashes[k] == h && memcmp(seen[k], data, 4096) == 0;
		if (!known) {
			hashes[distinct] = h;
			seen[distinct++] = data;
		}
		if (p >= (24u << 20) / 4096 && p < (28u << 20) / 4096) {
			if (!dup_first)
				dup_first = data;
			ck_assert_ptr_eq(data, dup_first); /* one stored copy for 1024 equal pages */
		}
	}
	uint64_t pack, manifests;
	ck_assert_int_eq(store_disk_usage(s, &pack, &manifests), 0);
	ck_assert_uint_ge(distinct, 1025);
	ck_assert_uint_eq(pack, distinct * 4096);
	free(hashes);
	free(seen);
	store_snapshot_close(snap);
	store_close(s);
}
END_TEST

/* ls and verify only read: a store they cannot write (here: one without its lock file,
 * which opening for writing would create) is listed and verified, and left as it was. */
START_TEST(store_ls_and_verify_write_nothing)
{
	vm_proc_start(&vm, NULL, "run", "-m", "64M", "-p", "fill=4M,4M sync=1 idle", harness_guest(), NULL);
	vm_proc_wait_sync(&vm, 1);
	json_decref(snapshot(&vm, "only-read"));
	char lock[256];
	snprintf(lock, sizeof(lock), "%s/lock", store);
	ck_assert_int_eq(unlink(lock), 0);
	struct spawn_result r;
	ck_assert_int_eq(spawn_vmm(&r, 60, "store", "ls", store, NULL), 0);
	ck_assert_msg(r.status == 0 && strstr(r.out, "only-read"), "status %d: %s%s", r.status, r.out, r.err);
	spawn_free(&r);
	ck_assert_int_eq(store_verify_status(0), 0);
	ck_assert_int_eq(access(lock, F_OK), -1);
}
END_TEST

START_TEST(kill_9_during_snapshots_leaves_the_store_valid)
{
	unsigned seed = (unsigned)time(NULL);
	srand(seed);
	for (int round = 0; round < 6; round++) {
		vm_proc_start(&vm, NULL, "run", "-m", "128M", "-p", "rounds=48M,1000000", harness_guest(), NULL);
		vm_proc_wait_sync(&vm, 0);
		char name[32];
		snprintf(name, sizeof(name), "k%d", round);
		/* Ask for a snapshot without waiting for it, then kill -9 at a random moment. */
		char line[256];
		snprintf(line, sizeof(line), "{\"execute\":\"snapshot-save\",\"arguments\":{\"name\":\"%s\",\"store\":\"%s\"}}\n",
			 name, store);
		ck_assert_int_eq(write(qmp_client_fd(vm.c), line, strlen(line)), (ssize_t)strlen(line));
		struct timespec t = {0, (long)(rand() % 120) * 1000000L};
		nanosleep(&t, NULL);
		kill(vm.pid, SIGKILL);
		ck_assert_int_eq(vm_proc_wait(&vm), 128 + SIGKILL);
		vm_proc_cleanup(&vm, false);
		ck_assert_msg(store_verify_status(0) == 0, "seed %u round %d", seed, round);
	}
	/* Whatever completed restores and verifies its rounds. */
	struct store *s;
	ck_assert_int_eq(store_open(store, false, &s), 0);
	for (int round = 0; round < 6; round++) {
		char name[32];
		snprintf(name, sizeof(name), "k%d", round);
		if (!store_has_snapshot(s, name))
			continue;
		vm_proc_start(&vm2, NULL, "restore", "--store", store, "-t", "300ms", name, NULL);
		int st = vm_proc_wait(&vm2);
		char *err = vm_proc_output(&vm2, true);
		ck_assert_msg(st == 124, "restore of %s: status %d: %s", name, st, err);
		free(err);
		vm_proc_cleanup(&vm2, false);
	}
	store_close(s);
}
END_TEST

START_TEST(damaged_pack_stops_the_restored_guest_with_a_clear_error)
{
	vm_proc_start(&vm, NULL, "run", "-m", "64M", "-p", "fill=16M,4M sync=1 idle", harness_guest(), NULL);
	vm_proc_wait_sync(&vm, 1);
	json_decref(snapshot(&vm, "x"));
	json_decref(vm_proc_execute(&vm, "quit", NULL));
	vm_proc_wait(&vm);
	/* Flip one byte of every stored page: whatever the guest touches first is damaged. */
	char path[128];
	snprintf(path, sizeof(path), "%s/packs/00000001.pack", store);
	int fd = open(path, O_RDWR);
	ck_assert_int_ge(fd, 0);
	struct stat st;
	fstat(fd, &st);
	for (off_t off = 100; off < st.st_size; off += 4096) {
		uint8_t b;
		ck_assert_int_eq(pread(fd, &b, 1, off), 1);
		b ^= 0x40;
		ck_assert_int_eq(pwrite(fd, &b, 1, off), 1);
	}
	close(fd);
	struct spawn_result r;
	ck_assert_int_eq(spawn_vmm(&r, 120, "restore", "--store", store, "x", NULL), 0);
	ck_assert_msg(r.status == 125, "status %d: %s", r.status, r.err);
	ck_assert_msg(strstr(r.err, "does not match its hash (damaged; see vmm store verify)"), "%s", r.err);
	spawn_free(&r);
	ck_assert_int_eq(store_verify_status(1), 1);
}
END_TEST

START_TEST(pack_truncated_under_a_restored_guest_stops_it_with_a_clear_error)
{
	/* The store's files are mapped: a pack cut short by another process while a restored
	 * guest runs must cost that VM a clear error, not the VMM a SIGBUS. */
	vm_proc_start(&vm, NULL, "run", "-m", "64M", "-p", "seed=3 fill=16M,4M sync=1 await=0x7ff000 check=16M,4M",
		      harness_guest(), NULL);
	vm_proc_wait_sync(&vm, 1);
	json_decref(snapshot(&vm, "cut"));
	json_decref(vm_proc_execute(&vm, "quit", NULL));
	vm_proc_wait(&vm);

	vm_proc_start(&vm2, NULL, "restore", "--store", store, "cut", NULL);
	char path[128];
	snprintf(path, sizeof(path), "%s/packs/00000001.pack", store);
	ck_assert_int_eq(truncate(path, 0), 0);
	vm_proc_release(&vm2, 0x7ff000); /* the guest goes on to read its pages */
	int status = vm_proc_wait(&vm2);
	char *err = vm_proc_output(&vm2, true);
	ck_assert_msg(status == 125, "status %d: %s", status, err);
	ck_assert_msg(strstr(err, "a file of the store was truncated under the running VM"), "%s", err);
	free(err);
}
END_TEST

/* A snapshot of a restored guest compares its pages with the parent's, read from the packs:
 * a parent's pack cut short fails that snapshot with a clear error naming it (before the
 * writer maps it: it is found short; while mapped: SIGBUS is caught), and the VM runs on. */
START_TEST(pack_truncated_under_a_snapshot_of_a_restored_guest_fails_only_the_snapshot)
{
	vm_proc_start(&vm, NULL, "run", "-m", "64M", "-p",
		      "seed=3 fill=16M,4M sync=1 await=0x7ff000 check=16M,4M sync=2 idle", harness_guest(), NULL);
	vm_proc_wait_sync(&vm, 1);
	json_decref(snapshot(&vm, "parent"));
	json_decref(vm_proc_execute(&vm, "quit", NULL));
	vm_proc_wait(&vm);

	vm_proc_start(&vm2, NULL, "restore", "--store", store, "parent", NULL);
	vm_proc_release(&vm2, 0x7ff000);
	vm_proc_wait_sync(&vm2, 2); /* its pages are in: the guest reads nothing more */
	char path[128];
	snprintf(path, sizeof(path), "%s/packs/00000001.pack", store);
	ck_assert_int_eq(truncate(path, 0), 0);
	json_t *args = json_pack("{s:s,s:s}", "name", "child", "store", store), *ret = NULL;
	ck_assert_int_eq(qmp_client_execute(vm2.c, "snapshot-save", args, &ret, VM_PROC_TIMEOUT_MS), -EREMOTEIO);
	ck_assert_msg((strstr(error_message(), "pack 00000001 slot ") && strstr(error_message(), ", which is missing")) ||
			      strstr(error_message(), "a file of the store was truncated"),
		      "%s", error_message());
	json_decref(args);
	json_t *st = vm_proc_execute(&vm2, "query-status", NULL);
	ck_assert_str_eq(json_string_value(json_object_get(st, "status")), "running");
	json_decref(st);
	json_decref(vm_proc_execute(&vm2, "quit", NULL));
	ck_assert_int_eq(vm_proc_wait(&vm2), 0);
}
END_TEST

/* Damage in a manifest's page entries is found when the restored guest first needs a page
 * they describe (the entries are checked lazily, chunk by chunk): the VM stops with one
 * line naming the manifest. */
START_TEST(damaged_manifest_entries_stop_the_restored_guest_with_a_clear_error)
{
	vm_proc_start(&vm, NULL, "run", "-m", "64M", "-p", "fill=16M,4M sync=1 idle", harness_guest(), NULL);
	vm_proc_wait_sync(&vm, 1);
	json_decref(snapshot(&vm, "z"));
	json_decref(vm_proc_execute(&vm, "quit", NULL));
	vm_proc_wait(&vm);
	/* Flip a bit of every entry's hash (vmm/store/format.h). */
	char path[128];
	snprintf(path, sizeof(path), "%s/snapshots/z.snap", store);
	int fd = open(path, O_RDWR);
	ck_assert_int_ge(fd, 0);
	struct manifest_header h;
	ck_assert_int_eq(pread(fd, &h, sizeof(h), 0), sizeof(h));
	ck_assert_int_eq(h.header_size, sizeof(h));
	struct manifest_layout l;
	manifest_layout(&h, &l);
	ck_assert_uint_gt(h.entry_count, 0);
	for (uint64_t i = 0; i < h.entry_count; i++) {
		off_t at = (off_t)(l.entries_off + i * sizeof(struct manifest_entry) +
				   offsetof(struct manifest_entry, hash));
		uint8_t b;
		ck_assert_int_eq(pread(fd, &b, 1, at), 1);
		b ^= 0x10;
		ck_assert_int_eq(pwrite(fd, &b, 1, at), 1);
	}
	close(fd);
	struct spawn_result r;
	ck_assert_int_eq(spawn_vmm(&r, 120, "restore", "--store", store, "z", NULL), 0);
	ck_assert_msg(r.status == 125, "status %d: %s", r.status, r.err);
	ck_assert_msg(strstr(r.err, "snapshot 'z': ") && strstr(r.err, "snapshots/z.snap: manifest entries ") &&
			      strstr(r.err, "do not match their checksum (damaged) (see vmm store verify)"),
		      "%s", r.err);
	spawn_free(&r);
	ck_assert_int_eq(store_verify_status(1), 1);
}
END_TEST

START_TEST(broken_manifests_are_refused_at_restore)
{
	vm_proc_start(&vm, NULL, "run", "-m", "64M", "-p", "sync=1 idle", harness_guest(), NULL);
	vm_proc_wait_sync(&vm, 1);
	json_decref(snapshot(&vm, "y"));
	json_decref(vm_proc_execute(&vm, "quit", NULL));
	vm_proc_wait(&vm);
	char path[128];
	snprintf(path, sizeof(path), "%s/snapshots/y.snap", store);
	/* Cut shorter than its header says, then than a header and trailer. */
	struct spawn_result r;
	const off_t cuts[] = {sizeof(struct manifest_header) + sizeof(struct manifest_trailer) + 8, 300};
	for (int i = 0; i < 2; i++) {
		ck_assert_int_eq(truncate(path, cuts[i]), 0);
		ck_assert_int_eq(spawn_vmm(&r, 120, "restore", "--store", store, "y", NULL), 0);
		ck_assert_int_eq(r.status, 125);
		char want[128];
		if (i == 0)
			snprintf(want, sizeof(want), "snapshots/y.snap: manifest is %lld bytes, its header says ",
				 (long long)cuts[i]);
		else
			snprintf(want, sizeof(want), "snapshots/y.snap: truncated manifest (300 bytes)");
		ck_assert_msg(strstr(r.err, want), "%s", r.err);
		ck_assert_msg(strchr(r.err, '\n') == r.err + strlen(r.err) - 1, "one line: %s", r.err);
		spawn_free(&r);
	}
	ck_assert_int_eq(spawn_vmm(&r, 120, "restore", "--store", store, "nope", NULL), 0);
	ck_assert_int_eq(r.status, 125);
	ck_assert_msg(strstr(r.err, "no snapshot 'nope' in"), "%s", r.err);
	spawn_free(&r);
	/* No store named: the per-user default, which does not exist in an empty home. */
	char home[] = "/tmp/vmm-home-XXXXXX";
	ck_assert_ptr_nonnull(mkdtemp(home));
	setenv("HOME", home, 1);
	unsetenv("XDG_DATA_HOME");
	unsetenv("VMM_STORE");
	ck_assert_int_eq(spawn_vmm(&r, 120, "restore", "y", NULL), 0);
	ck_assert_int_eq(r.status, 125);
	ck_assert_msg(strstr(r.err, "no store at") && strstr(r.err, home), "%s", r.err);
	spawn_free(&r);
	rmdir(home);
}
END_TEST

START_TEST(repeated_snapshots_keep_the_chain_short)
{
	vm_proc_start(&vm, NULL, "run", "-n", "chain", "-m", "64M", "-p", "spin=8M", harness_guest(), NULL);
	for (int i = 0; i < 10; i++) {
		char name[16], parent[16];
		snprintf(name, sizeof(name), "c%d", i);
		snprintf(parent, sizeof(parent), i ? "c%d" : "", i - 1);
		json_t *s = snapshot(&vm, name);
		ck_assert_str_eq(json_string_value(json_object_get(s, "parent")), parent);
		json_decref(s);
		json_t *st = vm_proc_execute(&vm, "query-stats", NULL);
		/* Each snapshot freezes RAM behind a new object; once stored, the frozen object is
		 * kept as the base of the next snapshot, what the guest wrote since merged into it:
		 * the guest's own object over the base, no deeper. */
		json_t *mem = vm_proc_execute(&vm, "query-memory", NULL);
		char *chain = json_dumps(json_object_get(json_array_get(json_object_get(mem, "entries"), 0), "chain"),
					 JSON_COMPACT);
		ck_assert_msg(jint(st, "mem.objects") <= 2 && jint(st, "mem.base_objects") == 1,
			      "snapshot %d: %lld objects, %lld base objects, %lld merges, %lld collapses; %s", i,
			      jint(st, "mem.objects"), jint(st, "mem.base_objects"), jint(st, "mem.base_merges"),
			      jint(st, "mem.object_collapses"), chain);
		free(chain);
		json_decref(mem);
		ck_assert_int_ge(jint(st, "mem.base_merges"), i);
		json_decref(st);
	}
	/* The last one is the VM's base: pinned while the VM runs. */
	struct spawn_result r;
	ck_assert_int_eq(spawn_vmm(&r, 60, "store", "rm", store, "c9", NULL), 0);
	ck_assert_msg(r.status == 125 && strstr(r.err, "snapshot 'c9' is in use by VM 'chain' (pid "), "status %d: %s",
		      r.status, r.err);
	spawn_free(&r);
	json_decref(vm_proc_execute(&vm, "quit", NULL));
	vm_proc_wait(&vm);
	/* Ten in a chain: a restore reads through at most 8 manifests (the store merges). */
	for (int i = 0; i < 10; i += 9) {
		char name[16];
		snprintf(name, sizeof(name), "c%d", i);
		ck_assert_int_eq(spawn_vmm(&r, 60, "restore", "--store", store, "-t", "300ms", name, NULL), 0);
		ck_assert_msg(r.status == 124 && !strstr(r.out, "mismatch"), "%s: status %d: %s", name, r.status, r.err);
		spawn_free(&r);
	}
	ck_assert_int_eq(store_verify_status(0), 0);
}
END_TEST

/* Snapshot names of a store, as store_list gives them (up to 16). */
struct names {
	char name[16][STORE_NAME_MAX + 1];
	unsigned n;
};

static void names_add(void *arg, const struct store_info *info)
{
	struct names *l = arg;
	if (l->n < 16)
		snprintf(l->name[l->n++], sizeof(l->name[0]), "%s", info->name);
}

/* Field @key of the checkpoint job of @v (query-jobs), its status in *status; a job that
 * failed fails the test. */
static long long checkpoint_job(struct vm_proc *v, const char *key, const char **status)
{
	json_t *jobs = vm_proc_execute(v, "query-jobs", NULL);
	json_t *job = json_array_get(jobs, 0);
	ck_assert_ptr_nonnull(job);
	long long value = jint(job, key);
	static char st[32];
	snprintf(st, sizeof(st), "%s", json_string_value(json_object_get(job, "status")));
	if (status)
		*status = st;
	ck_assert_msg(!json_object_get(job, "error"), "%s", json_string_value(json_object_get(job, "error")));
	json_decref(jobs);
	return value;
}

START_TEST(continuous_checkpoints_keep_the_newest_and_each_restores_to_a_verified_round)
{
	/* The guest rewrites and verifies 8 MiB round after round while a checkpoint is taken
	 * every 200 ms, the newest 3 kept. Each kept one, restored, re-checks the round it was
	 * in (the memory of that moment) and goes on. */
	vm_proc_start(&vm, NULL, "run", "-n", "ck", "-m", "64M", "-p", "rounds=8M,1000000", harness_guest(), NULL);
	vm_proc_wait_sync(&vm, 2);
	json_t *args = json_pack("{s:s,s:i,s:i,s:s}", "store", store, "every-ms", 200, "keep", 3, "prefix", "ck");
	json_t *ret = vm_proc_execute(&vm, "checkpoint-start", args);
	ck_assert_str_eq(json_string_value(json_object_get(ret, "id")), "checkpoint");
	json_decref(ret);
	ret = NULL;
	ck_assert_int_eq(qmp_client_execute(vm.c, "checkpoint-start", args, &ret, VM_PROC_TIMEOUT_MS), -EREMOTEIO);
	ck_assert_ptr_nonnull(strstr(error_message(), "being taken already"));
	json_decref(args);
	const char *status;
	for (int i = 0; i < 600 && checkpoint_job(&vm, "taken", NULL) < 8; i++) {
		struct timespec t = {0, 100000000L};
		nanosleep(&t, NULL);
	}
	json_t *id = json_pack("{s:s}", "id", "checkpoint");
	json_decref(vm_proc_execute(&vm, "job-cancel", id));
	json_decref(id);
	for (int i = 0; i < 600 && (checkpoint_job(&vm, "taken", &status), strcmp(status, "concluded") != 0); i++) {
		struct timespec t = {0, 50000000L};
		nanosleep(&t, NULL);
	}
	ck_assert_str_eq(status, "concluded");
	long long taken = checkpoint_job(&vm, "taken", NULL);
	ck_assert_int_ge(taken, 8);
	/* The newest 3, and perhaps the base they read through (checkpoint.h: thinning). */
	long long deleted = checkpoint_job(&vm, "deleted", NULL);
	ck_assert_msg(deleted == taken - 3 || deleted == taken - 4, "%lld of %lld deleted", deleted, taken);

	/* A second job keeping them all (keep 0, the default): each is in the store. */
	args = json_pack("{s:s,s:i,s:s}", "store", store, "every-ms", 100, "prefix", "all");
	json_decref(vm_proc_execute(&vm, "checkpoint-start", args));
	json_decref(args);
	for (int i = 0; i < 600 && checkpoint_job(&vm, "taken", NULL) < 4; i++) {
		struct timespec t = {0, 100000000L};
		nanosleep(&t, NULL);
	}
	json_decref(vm_proc_execute(&vm, "quit", NULL));
	vm_proc_wait(&vm);

	struct store *s;
	struct names l = {.n = 0};
	ck_assert_int_eq(store_open(store, false, &s), 0);
	for (int i = 1;; i++) {
		char all[32];
		snprintf(all, sizeof(all), "all-%d", i);
		if (i > 4 && !store_has_snapshot(s, all))
			break;
		ck_assert_msg(store_has_snapshot(s, all), "%s is not in the store", all);
		ck_assert_msg(store_delete(s, all) == 0, "%s", error_message());
	}
	ck_assert_int_eq(store_list(s, names_add, &l), 0);
	store_close(s);
	ck_assert_uint_ge(l.n, 3);
	ck_assert_uint_le(l.n, 3 + (taken - deleted > 3));
	for (unsigned i = 0; i < 3; i++) {
		char want[32];
		snprintf(want, sizeof(want), "ck-%lld", taken - 2 + i);
		bool found = false;
		for (unsigned k = 0; k < l.n; k++)
			found |= strcmp(l.name[k], want) == 0;
		ck_assert_msg(found, "%s is not in the store", want);
		struct spawn_result r;
		ck_assert_int_eq(spawn_vmm(&r, 120, "restore", "--store", store, "-t", "1s", want, NULL), 0);
		ck_assert_msg(r.status == 124 && !strstr(r.out, "mismatch"), "%s: status %d: %.500s %.500s", want, r.status,
			      r.out, r.err);
		spawn_free(&r);
	}
	ck_assert_int_eq(store_verify_status(0), 0);
}
END_TEST

START_TEST(a_cancelled_snapshot_leaves_nothing_and_the_vm_runs_on)
{
	vm_proc_start(&vm, NULL, "run", "-m", "640M", "-p", "touch=512M sync=1 idle", harness_guest(), NULL);
	vm_proc_wait_sync(&vm, 1);
	char *argv[] = {(char *)harness_build_path("vmm"), "snapshot", "--monitor", vm.sock, "--store", store, "--as",
			"big", NULL};
	pid_t pid = spawn_background(argv);
	ck_assert_int_gt(pid, 0);
	/* Once the snapshot is being written, cancel it. */
	bool cancelled = false;
	for (int i = 0; i < 2000 && !cancelled; i++) {
		json_t *jobs = vm_proc_execute(&vm, "query-jobs", NULL);
		json_t *job = json_array_get(jobs, 0);
		if (job && !strcmp(json_string_value(json_object_get(job, "id")), "snapshot") &&
		    jint(job, "current-progress") > 0) {
			json_t *id = json_pack("{s:s}", "id", "snapshot");
			json_decref(vm_proc_execute(&vm, "job-cancel", id));
			json_decref(id);
			cancelled = true;
		}
		json_decref(jobs);
		struct timespec t = {0, 5000000L};
		nanosleep(&t, NULL);
	}
	ck_assert(cancelled);
	int st;
	ck_assert_int_eq(waitpid(pid, &st, 0), pid);
	ck_assert(WIFEXITED(st) && WEXITSTATUS(st) == 1); /* the VM answered: cancelled */
	/* Nothing of it in the store, which verifies; the VM runs and snapshots again. */
	struct store *s;
	ck_assert_int_eq(store_open(store, false, &s), 0);
	ck_assert(!store_has_snapshot(s, "big"));
	store_close(s);
	ck_assert_int_eq(store_verify_status(0), 0);
	json_t *q = vm_proc_execute(&vm, "query-status", NULL);
	ck_assert_str_eq(json_string_value(json_object_get(q, "status")), "running");
	json_decref(q);
	json_t *again = snapshot(&vm, "after");
	ck_assert_int_ge(jint(again, "listed"), 131072); /* the 512 MiB, all of it: no parent */
	json_decref(again);
}
END_TEST

START_TEST(vms_with_mapped_files_are_neither_forked_nor_snapshotted)
{
	char file[64];
	strcpy(file, "/tmp/vmm-fmap-XXXXXX");
	int fd = mkstemp(file);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(ftruncate(fd, 8192), 0);
	close(fd);
	char map[128];
	snprintf(map, sizeof(map), "%s@1G,ro", file);
	vm_proc_start(&vm, NULL, "run", "-m", "64M", "--map", map, "-p", "spin=4M", harness_guest(), NULL);
	json_t *ret = NULL;
	json_t *args = json_pack("{s:i}", "count", 1);
	ck_assert_int_eq(qmp_client_execute(vm.c, "fork", args, &ret, VM_PROC_TIMEOUT_MS), -EREMOTEIO);
	ck_assert_ptr_nonnull(strstr(error_message(), "cannot be forked"));
	json_decref(args);
	args = json_pack("{s:s,s:s}", "name", "f", "store", store);
	ck_assert_int_eq(qmp_client_execute(vm.c, "snapshot-save", args, &ret, VM_PROC_TIMEOUT_MS), -EREMOTEIO);
	ck_assert_ptr_nonnull(strstr(error_message(), "not supported"));
	json_decref(args);
	unlink(file);
}
END_TEST

Suite *kvm_snapshot_suite(void)
{
	Suite *s = suite_create("kvm_snapshot");
	harness_requires(HARNESS_KVM | HARNESS_UFFD);
	TCase *tc = tcase_create("snapshot");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 240);
	HARNESS_ADD_TEST(tc, snapshot_mid_run_then_restore_finishes_every_round);
	HARNESS_ADD_TEST(tc, snapshots_of_a_guest_writing_on_every_cpu_restore_to_verified_rounds);
	HARNESS_ADD_TEST(tc, snapshots_of_a_guest_rewriting_a_few_pages_restore_to_verified_rounds);
	HARNESS_ADD_TEST(tc, fork_after_a_snapshot_keeps_each_vms_writes_its_own);
	HARNESS_ADD_TEST(tc, snapshot_of_restored_guest_stores_only_what_changed);
	HARNESS_ADD_TEST(tc, the_snapshot_a_live_vm_runs_from_is_kept_until_it_ends);
	HARNESS_ADD_TEST(tc, restored_pages_the_guest_only_reads_are_held_once_and_not_listed_again);
	HARNESS_ADD_TEST(tc, restores_of_one_snapshot_share_its_pages_and_keep_their_writes);
	HARNESS_ADD_TEST(tc, a_recorded_working_set_is_prefetched_and_checks_out);
	HARNESS_ADD_TEST(tc, a_bad_working_set_is_refused_with_its_name);
	HARNESS_ADD_TEST(tc, store_holds_exactly_the_unique_nonzero_pages);
	HARNESS_ADD_TEST(tc, store_ls_and_verify_write_nothing);
	HARNESS_ADD_TEST(tc, kill_9_during_snapshots_leaves_the_store_valid);
	HARNESS_ADD_TEST(tc, damaged_pack_stops_the_restored_guest_with_a_clear_error);
	HARNESS_ADD_TEST(tc, pack_truncated_under_a_restored_guest_stops_it_with_a_clear_error);
	HARNESS_ADD_TEST(tc, pack_truncated_under_a_snapshot_of_a_restored_guest_fails_only_the_snapshot);
	HARNESS_ADD_TEST(tc, damaged_manifest_entries_stop_the_restored_guest_with_a_clear_error);
	HARNESS_ADD_TEST(tc, broken_manifests_are_refused_at_restore);
	HARNESS_ADD_TEST(tc, repeated_snapshots_keep_the_chain_short);
	HARNESS_ADD_TEST(tc, continuous_checkpoints_keep_the_newest_and_each_restores_to_a_verified_round);
	HARNESS_ADD_TEST(tc, a_cancelled_snapshot_leaves_nothing_and_the_vm_runs_on);
	HARNESS_ADD_TEST(tc, vms_with_mapped_files_are_neither_forked_nor_snapshotted);
	suite_add_tcase(s, tc);
	return s;
}

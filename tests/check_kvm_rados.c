/*
 * Running guests snapshotted into a store on Ceph RADOS and restored from it, proven from
 * inside: the guests write patterns, and after the restore (pages arriving from RADOS as
 * the guest touches them) and after a fork of the restored VM (each child reading RADOS
 * through connections of its own) every VM verifies them. A snapshot of the restored guest
 * goes back into RADOS as a delta naming its parent, and restores to verified rounds.
 * Against a real single-node cluster (tests/ceph_cluster.h, once for the suite); each test
 * has a namespace of its own.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ceph_cluster.h"
#include "harness.h"
#include "spawn.h"
#include "vm_proc.h"

static char where[128]; /* this test's store: rados:vmm/NAMESPACE */
static struct vm_proc vm, vm2;

static void setup(void)
{
	ceph_cluster_test_store(where, sizeof(where));
}

static void teardown(void)
{
	vm_proc_cleanup(&vm, false);
	vm_proc_cleanup(&vm2, false);
}

/* snapshot-save @name into the test's store; returns the result (decref it). */
static json_t *snapshot(struct vm_proc *v, const char *name)
{
	return vm_proc_call(v, "snapshot-save", json_pack("{s:s,s:s}", "name", name, "store", where));
}

static void quit(struct vm_proc *v)
{
	json_decref(vm_proc_execute(v, "quit", NULL));
	vm_proc_wait(v);
}

/* vmm store verify of the test's store exits 0. */
static void expect_store_verifies(void)
{
	struct spawn_result r;
	ck_assert_int_eq(spawn_vmm(&r, 300, "store", "verify", where, NULL), 0);
	ck_assert_msg(r.status == 0, "store verify %s: status %d: %s%s", where, r.status, r.out, r.err);
	spawn_free(&r);
}

START_TEST(a_guest_restored_from_rados_and_its_forks_verify_every_page)
{
	/* The guest fills 8 MiB and waits for a fork; stored there and restored, the restored
	 * VM is forked into two, and all three check the parent's pages plus their own writes. */
	char name[32]; /* children are NAME.K, with sockets in the runtime directory */
	snprintf(name, sizeof(name), "rk%d", (int)getpid());
	vm_proc_start(&vm, NULL, "run", "-m", "64M", "-p", "forktest=8M", harness_guest(), NULL);
	vm_proc_wait_sync(&vm, 1);
	json_decref(snapshot(&vm, "filled"));
	quit(&vm);

	vm_proc_start(&vm2, NULL, "restore", "-n", name, "--store", where, "filled", NULL);
	json_t *res = vm_proc_call(&vm2, "fork", json_pack("{s:i}", "count", 2));
	ck_assert_int_eq(json_array_size(json_object_get(res, "children")), 2);
	json_decref(res);
	ck_assert_int_eq(vm_proc_wait(&vm2), 0);
	vm_proc_wait_output(&vm2, true, "guest ended with status 0", 2);
	vm_proc_expect_forks_checked(&vm2, 3, 1, 2048);
	expect_store_verifies();
}
END_TEST

START_TEST(a_snapshot_of_a_guest_restored_from_rados_goes_back_as_a_delta)
{
	/* The guest rewrites 16 MiB round after round, checking each round. Restored from
	 * RADOS and snapshotted again, only what it rewrote (and its stacks) is listed; that
	 * snapshot restores and its rounds go on verifying until the timeout stops it. */
	vm_proc_start(&vm, NULL, "run", "-m", "128M", "-p", "rounds=16M,1000000", harness_guest(), NULL);
	vm_proc_wait_sync(&vm, 2);
	json_t *base = snapshot(&vm, "base");
	long long base_listed = json_integer_value(json_object_get(base, "listed"));
	json_decref(base);
	quit(&vm);

	vm_proc_start(&vm2, NULL, "restore", "--store", where, "base", NULL);
	vm_proc_wait_sync(&vm2, 0);
	json_t *child = snapshot(&vm2, "child");
	ck_assert_str_eq(json_string_value(json_object_get(child, "parent")), "base");
	long long listed = json_integer_value(json_object_get(child, "listed"));
	ck_assert_msg(listed <= 4096 + 64 && listed < base_listed, "child lists %lld pages, base %lld", listed,
		      base_listed);
	json_decref(child);
	quit(&vm2);

	vm_proc_start(&vm, NULL, "restore", "--store", where, "-t", "500ms", "child", NULL);
	int st = vm_proc_wait(&vm);
	char *err = vm_proc_output(&vm, true);
	ck_assert_msg(st == 124 && strstr(err, "still running after the 500 ms timeout"), "status %d: %s", st, err);
	free(err);
	expect_store_verifies();
}
END_TEST

Suite *kvm_rados_suite(void)
{
	Suite *s = suite_create("kvm_rados");
	harness_requires(HARNESS_KVM | HARNESS_UFFD | HARNESS_CEPH);
	TCase *tc = tcase_create("rados");
	tcase_add_unchecked_fixture(tc, ceph_cluster_suite_start, ceph_cluster_suite_stop);
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 240);
	HARNESS_ADD_TEST(tc, a_guest_restored_from_rados_and_its_forks_verify_every_page);
	HARNESS_ADD_TEST(tc, a_snapshot_of_a_guest_restored_from_rados_goes_back_as_a_delta);
	suite_add_tcase(s, tc);
	return s;
}

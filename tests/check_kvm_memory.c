/*
 * The guest-physical address space over the monitor: query-memory against a map the test
 * builds itself (allocate, protect, inherit, deallocate, snapshot and restore, fork), and
 * the Mach calls seen from inside the guest (vm-map of a file, of an external pager and of a
 * stored snapshot's RAM, vm-copy: the guest's checksums of what it reads against the host's).
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fake_pager.h"
#include "guest/abi.h"
#include "harness.h"
#include "spawn.h"
#include "store_pages.h"
#include "vm_proc.h"
#include "vmm/monitor/base64.h"
#include "vmm/error.h"
#include "vmm/monitor/monitor.h"
#include "vmm/monitor/qmp_client.h"

#define G1 0x40000000ll /* 1 GiB: where the test allocates */
#define MAILBOX "0x7ff000"

static struct vm_proc vm, child;
static char store[64];

static void setup(void)
{
	strcpy(store, "/tmp/vmm-mem-store-XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(store));
}

static void teardown(void)
{
	vm_proc_cleanup(&vm, false);
	vm_proc_cleanup(&child, false);
	char cmd[128];
	snprintf(cmd, sizeof(cmd), "rm -rf %s", store);
	ck_assert_int_eq(system(cmd), 0);
}

static void call(struct vm_proc *v, const char *cmd, json_t *args)
{
	json_decref(vm_proc_execute(v, cmd, args));
	json_decref(args);
}

/* The command must fail with a desc containing @needle. */
static void call_fails(struct vm_proc *v, const char *cmd, json_t *args, const char *needle)
{
	json_t *ret = NULL;
	ck_assert_int_eq(qmp_client_execute(v->c, cmd, args, &ret, VM_PROC_TIMEOUT_MS), -EREMOTEIO);
	ck_assert_msg(strstr(error_message(), needle), "%s: '%s' lacks '%s'", cmd, error_message(), needle);
	json_decref(args);
}

/* One expected entry of query-memory. */
struct entry {
	long long start, end;
	const char *prot, *inherit;
};

/* query-memory must list exactly @want; with @depth, no chain deeper than that. */
static void expect_map(struct vm_proc *v, const struct entry *want, size_t n, unsigned depth)
{
	json_t *m = vm_proc_execute(v, "query-memory", NULL);
	json_t *entries = json_object_get(m, "entries");
	char *dump = json_dumps(entries, JSON_COMPACT);
	ck_assert_msg(json_array_size(entries) == n, "%zu entries: %s", json_array_size(entries), dump);
	for (size_t i = 0; i < n; i++) {
		json_t *e = json_array_get(entries, i);
		ck_assert_msg(json_integer_value(json_object_get(e, "start")) == want[i].start &&
				      json_integer_value(json_object_get(e, "end")) == want[i].end &&
				      strcmp(json_string_value(json_object_get(e, "protection")), want[i].prot) == 0 &&
				      strcmp(json_string_value(json_object_get(e, "inheritance")), want[i].inherit) == 0,
			      "entry %zu differs: %s", i, dump);
		/* Untouched entries have no object yet (depth 0). */
		if (depth)
			ck_assert_msg(json_integer_value(json_object_get(e, "depth")) <= depth &&
					      json_array_size(json_object_get(e, "chain")) ==
						      (size_t)json_integer_value(json_object_get(e, "depth")),
				      "entry %zu depth: %s", i, dump);
	}
	free(dump);
	json_decref(m);
}

START_TEST(query_memory_shows_the_map_the_test_built)
{
	vm_proc_start(&vm, NULL, "run", "-n", "mapped", "-m", "64M", "-p", "sync=1 idle", harness_guest(), NULL);
	vm_proc_wait_sync(&vm, 1);
	call(&vm, "vm-allocate", json_pack("{s:I,s:I}", "addr", G1, "size", (json_int_t)(1 << 20)));
	call(&vm, "vm-protect", json_pack("{s:I,s:I,s:s}", "addr", G1, "size", 4096ll, "protection", "r"));
	call(&vm, "vm-inherit", json_pack("{s:I,s:I,s:s}", "addr", G1 + 4096, "size", 4096ll, "inheritance", "none"));
	call(&vm, "vm-deallocate", json_pack("{s:I,s:I}", "addr", G1 + 0x40000, "size", 0x10000ll));
	const struct entry built[] = {
		{0, 64 << 20, "rw-", "copy"},
		{G1, G1 + 4096, "r--", "copy"},
		{G1 + 4096, G1 + 8192, "rw-", "none"},
		{G1 + 8192, G1 + 0x40000, "rw-", "copy"},
		{G1 + 0x50000, G1 + 0x100000, "rw-", "copy"},
	};
	expect_map(&vm, built, 5, 1);

	/* A snapshot freezes each entry behind a new object; once stored, the frozen object
	 * stays as the base the next snapshot is taken against: one level more, no deeper. */
	json_t *s = vm_proc_call(&vm, "snapshot-save", json_pack("{s:s,s:s}", "name", "m", "store", store));
	json_decref(s);
	expect_map(&vm, built, 5, 2);

	/* A fork: the child has the parent's map but for the entry inherited "none". */
	json_t *f = vm_proc_call(&vm, "fork", json_pack("{s:i}", "count", 1));
	json_decref(f);
	char sock[160];
	ck_assert_int_eq(monitor_socket_path("mapped.1", sock, sizeof(sock), false), 0);
	struct vm_proc *c = &child;
	memset(c, 0, sizeof(*c));
	ck_assert_int_eq(spawn_wait_socket(sock, VM_PROC_TIMEOUT_MS / 1000), 0); /* the child comes up on its own */
	ck_assert_int_eq(qmp_client_connect(&c->c, sock, VM_PROC_TIMEOUT_MS), 0);
	const struct entry forked[] = {
		{0, 64 << 20, "rw-", "copy"},
		{G1, G1 + 4096, "r--", "copy"},
		{G1 + 8192, G1 + 0x40000, "rw-", "copy"},
		{G1 + 0x50000, G1 + 0x100000, "rw-", "copy"},
	};
	expect_map(c, forked, 4, 0);
	call(c, "quit", NULL);
	qmp_client_close(c->c);
	c->c = NULL;
	call(&vm, "quit", NULL);
	vm_proc_wait(&vm);

	/* Restored: the same map, each entry copy-on-write over the snapshot's object. */
	vm_proc_start(&vm, NULL, "restore", "--store", store, "m", NULL);
	expect_map(&vm, built, 5, 0);
	json_t *m = vm_proc_execute(&vm, "query-memory", NULL);
	json_t *chain = json_object_get(json_array_get(json_object_get(m, "entries"), 0), "chain");
	json_t *bottom = json_array_get(chain, json_array_size(chain) - 1);
	ck_assert_str_eq(json_string_value(json_object_get(bottom, "pager")), "snapshot");
	json_decref(m);
}
END_TEST

START_TEST(guest_uses_memory_allocated_at_run_time)
{
	vm_proc_start(&vm, NULL, "run", "-m", "64M", "-p", "sync=1 await=" MAILBOX " seed=3 fill=1G,1M check=1G,1M", harness_guest(),
		      NULL);
	vm_proc_wait_sync(&vm, 1);
	call(&vm, "vm-allocate", json_pack("{s:I,s:I}", "addr", G1, "size", (json_int_t)(1 << 20)));
	vm_proc_release(&vm, 0x7ff000);
	ck_assert_int_eq(vm_proc_wait(&vm), 0);
	char *out = vm_proc_output(&vm, false);
	ck_assert_msg(strstr(out, "check: 256 pages ok"), "%s", out);
	free(out);
}
END_TEST

START_TEST(vm_read_sees_what_the_guest_wrote_and_vm_write_what_it_reads)
{
	vm_proc_start(&vm, NULL, "run", "-m", "64M", "-p", "seed=5 fill=16M,64K sync=1 await=" MAILBOX " check=16M,4K",
		      harness_guest(), NULL);
	vm_proc_wait_sync(&vm, 1);
	json_t *r = vm_proc_call(&vm, "vm-read", json_pack("{s:I,s:I}", "addr", 16ll << 20, "size", 4096ll));
	uint8_t page[4096];
	ck_assert_int_eq(base64_decode(json_string_value(json_object_get(r, "data")), page, sizeof(page)), 4096);
	json_decref(r);
	uint64_t key = abi_page_key(16u << 20, 5);
	for (unsigned i = 0; i < 512; i++) {
		uint64_t w;
		memcpy(&w, page + 8 * i, 8);
		ck_assert_uint_eq(w, key + i);
	}
	/* Break one word of the page the guest will check: it must see it. */
	uint64_t bad = 0x0123456789abcdefull;
	char text[16];
	base64_encode((uint8_t *)&bad, 8, text);
	call(&vm, "vm-write", json_pack("{s:I,s:s}", "addr", (16ll << 20) + 8, "data", text));
	vm_proc_release(&vm, 0x7ff000);
	ck_assert_int_eq(vm_proc_wait(&vm), 1);
	char *out = vm_proc_output(&vm, false);
	ck_assert_msg(strstr(out, "check: mismatch at 0x0000000001000008"), "%s", out);
	free(out);
}
END_TEST

START_TEST(write_to_protected_memory_stops_the_guest)
{
	vm_proc_start(&vm, NULL, "run", "-m", "64M", "-p", "sync=1 await=" MAILBOX " poke=0x1000000", harness_guest(), NULL);
	vm_proc_wait_sync(&vm, 1);
	call(&vm, "vm-protect", json_pack("{s:I,s:I,s:s}", "addr", 16ll << 20, "size", 4096ll, "protection", "r"));
	vm_proc_release(&vm, 0x7ff000);
	ck_assert_int_eq(vm_proc_wait(&vm), 122);
	char *err = vm_proc_output(&vm, true);
	ck_assert_msg(strstr(err, "guest write of guest-physical 0x1000000 (RAM) failed: KERN_PROTECTION_FAILURE"), "%s",
		      err);
	free(err);
}
END_TEST

START_TEST(deallocated_memory_is_outside_guest_memory)
{
	vm_proc_start(&vm, NULL, "run", "-m", "64M", "-p", "sync=1 await=" MAILBOX " poke=0x1000000", harness_guest(), NULL);
	vm_proc_wait_sync(&vm, 1);
	call(&vm, "vm-deallocate", json_pack("{s:I,s:I}", "addr", 16ll << 20, "size", 2ll << 20));
	vm_proc_release(&vm, 0x7ff000);
	ck_assert_int_eq(vm_proc_wait(&vm), 122);
	char *err = vm_proc_output(&vm, true);
	ck_assert_msg(strstr(err, "guest wrote guest-physical 0x1000000 (1 bytes): outside guest memory"), "%s", err);
	free(err);
}
END_TEST

START_TEST(mach_errors_come_back_by_name)
{
	vm_proc_start(&vm, NULL, "run", "-m", "64M", "-p", "sync=1 idle", harness_guest(), NULL);
	call_fails(&vm, "vm-protect", json_pack("{s:I,s:I,s:s}", "addr", 100ll, "size", 4096ll, "protection", "r"),
		   "KERN_INVALID_ARGUMENT");
	call_fails(&vm, "vm-protect", json_pack("{s:I,s:I,s:s}", "addr", G1, "size", 4096ll, "protection", "r"),
		   "KERN_INVALID_ADDRESS");
	call_fails(&vm, "vm-allocate", json_pack("{s:I,s:I}", "addr", 0ll, "size", 4096ll), "KERN_NO_SPACE");
	call(&vm, "vm-protect", json_pack("{s:I,s:I,s:s,s:b}", "addr", 0ll, "size", 4096ll, "protection", "r",
					  "set-maximum", 1));
	call_fails(&vm, "vm-protect", json_pack("{s:I,s:I,s:s}", "addr", 0ll, "size", 4096ll, "protection", "rw"),
		   "KERN_PROTECTION_FAILURE");
	call_fails(&vm, "vm-protect", json_pack("{s:I,s:I,s:s}", "addr", 0ll, "size", 4096ll, "protection", "rq"),
		   "use letters r, w, x");
	call_fails(&vm, "vm-inherit", json_pack("{s:I,s:I,s:s}", "addr", 0ll, "size", 4096ll, "inheritance", "all"),
		   "use share, copy or none");
	call_fails(&vm, "vm-read", json_pack("{s:I,s:I}", "addr", 0ll, "size", 1ll << 20), "at most 65536 bytes");
	call_fails(&vm, "vm-read", json_pack("{s:I,s:I}", "addr", -5ll, "size", 4ll), "must not be negative");
	call_fails(&vm, "vm-write", json_pack("{s:I,s:s}", "addr", 0ll, "data", "not base64!"), "not base64");
	call_fails(&vm, "vm-write", json_pack("{s:I,s:s}", "addr", G1, "data", "AAAA"), "KERN_INVALID_ADDRESS");
	call_fails(&vm, "vm-deallocate", json_pack("{s:I,s:I}", "addr", 1ll, "size", 4096ll), "KERN_INVALID_ARGUMENT");
	/* The VM is unharmed. */
	json_decref(vm_proc_execute(&vm, "query-status", NULL));
}
END_TEST

/* The guest's "sum GPA LEN: 0x..." line for @sum must be in its output. */
static void expect_sum(struct vm_proc *v, uint64_t sum)
{
	char want[64];
	snprintf(want, sizeof(want), ": 0x%016" PRIx64 "\n", sum);
	char *out = vm_proc_output(v, false);
	ck_assert_msg(strstr(out, want), "wanted %s in %s", want, out);
	free(out);
}

START_TEST(a_file_mapped_into_a_running_guest_reads_as_the_file)
{
	char file[] = "/tmp/vmm-vm-map-XXXXXX";
	int fd = mkstemp(file);
	ck_assert_int_ge(fd, 0);
	static unsigned char bytes[1 << 20];
	for (size_t i = 0; i < sizeof(bytes); i++)
		bytes[i] = (unsigned char)(i * 7 + i / 4096);
	ck_assert_int_eq(write(fd, bytes, sizeof(bytes)), (ssize_t)sizeof(bytes));
	close(fd);
	vm_proc_start(&vm, NULL, "run", "-m", "64M", "-p", "sync=1 await=" MAILBOX " sum=1G,1M", harness_guest(), NULL);
	vm_proc_wait_sync(&vm, 1);
	json_t *r = vm_proc_call(&vm, "vm-map", json_pack("{s:s,s:I,s:I,s:s,s:s}", "path", file, "addr", G1, "size",
							     (json_int_t)sizeof(bytes), "protection", "r", "max-protection", "r"));
	ck_assert_int_eq(json_integer_value(json_object_get(r, "addr")), G1);
	json_decref(r);
	const struct entry mapped[] = {{0, 64 << 20, "rw-", "copy"}, {G1, G1 + (1 << 20), "r--", "copy"}};
	expect_map(&vm, mapped, 2, 0);
	vm_proc_release(&vm, 0x7ff000);
	ck_assert_int_eq(vm_proc_wait(&vm), 0);
	expect_sum(&vm, abi_fnv1a64(ABI_FNV_INIT, bytes, sizeof(bytes)));
	unlink(file);
}
END_TEST

/* vm-deallocate removes a mapped file as it removes RAM: query-memory lists RAM only, KVM's
 * slot is gone, and the guest's write there is one outside guest memory. */
START_TEST(a_mapped_file_deallocated_is_outside_guest_memory)
{
	char file[] = "/tmp/vmm-vm-map-XXXXXX";
	int fd = mkstemp(file);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(ftruncate(fd, 1 << 20), 0);
	close(fd);
	vm_proc_start(&vm, NULL, "run", "-m", "64M", "-p", "sync=1 await=" MAILBOX " poke=0x40000000", harness_guest(), NULL);
	vm_proc_wait_sync(&vm, 1);
	call(&vm, "vm-map", json_pack("{s:s,s:I,s:I}", "path", file, "addr", G1, "size", (json_int_t)(1 << 20)));
	call(&vm, "vm-deallocate", json_pack("{s:I,s:I}", "addr", G1, "size", (json_int_t)(1 << 20)));
	const struct entry ram[] = {{0, 64 << 20, "rw-", "copy"}};
	expect_map(&vm, ram, 1, 0);
	vm_proc_release(&vm, 0x7ff000);
	ck_assert_int_eq(vm_proc_wait(&vm), 122);
	char *err = vm_proc_output(&vm, true);
	ck_assert_msg(strstr(err, "guest wrote guest-physical 0x40000000 (1 bytes): outside guest memory"), "%s", err);
	free(err);
	unlink(file);
}
END_TEST

START_TEST(an_external_pager_mapped_into_a_running_guest_serves_it)
{
	struct fake_pager server;
	fake_pager_listen(&server, FAKE_PAGER_SERVE, 2 << 20);
	vm_proc_start(&vm, NULL, "run", "-m", "64M", "-p", "sync=1 await=" MAILBOX " sum=1G,1M", harness_guest(), NULL);
	vm_proc_wait_sync(&vm, 1);
	/* The second MiB of the pager's object. */
	call(&vm, "vm-map", json_pack("{s:s,s:s,s:I,s:I,s:I,s:s,s:s}", "path", server.path, "object", "pager", "addr", G1,
				      "offset", (json_int_t)(1 << 20), "size", (json_int_t)(1 << 20), "protection", "r",
				      "max-protection", "r"));
	vm_proc_release(&vm, 0x7ff000);
	ck_assert_int_eq(vm_proc_wait(&vm), 0);
	uint64_t h = ABI_FNV_INIT;
	for (uint64_t off = 1 << 20; off < 2 << 20; off += 4096) {
		static unsigned char page[4096];
		memset(page, fake_pager_byte(off), sizeof(page));
		h = abi_fnv1a64(h, page, sizeof(page));
	}
	expect_sum(&vm, h);
	fake_pager_stop(&server);
}
END_TEST

START_TEST(a_stored_snapshots_ram_mapped_into_a_running_guest_reads_as_its_pages)
{
	store_pages_write_guest(store, "s", 4096);
	vm_proc_start(&vm, NULL, "run", "-m", "64M", "-p", "sync=1 await=" MAILBOX " sum=1G,1M", harness_guest(), NULL);
	vm_proc_wait_sync(&vm, 1);
	/* The snapshot's second MiB, a copy the guest may write. */
	call(&vm, "vm-map", json_pack("{s:s,s:s,s:s,s:I,s:I,s:I}", "path", store, "object", "snapshot", "snapshot", "s",
				      "addr", G1, "offset", (json_int_t)(1 << 20), "size", (json_int_t)(1 << 20)));
	vm_proc_release(&vm, 0x7ff000);
	ck_assert_int_eq(vm_proc_wait(&vm), 0);
	uint64_t h = ABI_FNV_INIT;
	for (uint64_t p = 256; p < 512; p++)
		h = abi_fnv1a64(h, store_pages_make(p, 1, store_pages_kind(p)), 4096);
	expect_sum(&vm, h);
}
END_TEST

/*
 * Two guests: A fills 64 KiB at 16 MiB and exports it; B maps the object at A's socket,
 * shared, at 1 GiB. A word B's side writes (vm-write through B's map) is what A's side
 * reads next (vm-read through A's), and B's guest sums the range as A filled it with that
 * word. An exported range is no longer RAM: exporting it again is refused.
 */
START_TEST(a_range_another_vm_exports_maps_shared_and_stays_coherent)
{
	const json_int_t at = 16ll << 20, size = 64ll << 10;
	vm_proc_start(&vm, NULL, "run", "-m", "64M", "-p", "seed=5 fill=16M,64K sync=1 idle", harness_guest(), NULL);
	vm_proc_wait_sync(&vm, 1);
	json_t *r = vm_proc_call(&vm, "vm-export", json_pack("{s:I,s:I}", "addr", at, "size", size));
	char sock[256];
	snprintf(sock, sizeof(sock), "%s", json_string_value(json_object_get(r, "socket")));
	ck_assert_int_eq(json_integer_value(json_object_get(r, "size")), size);
	ck_assert_ptr_nonnull(strstr(sock, "vm.export-1.sock"));
	json_decref(r);
	call_fails(&vm, "vm-export", json_pack("{s:I,s:I}", "addr", at, "size", 4096ll), "KERN_INVALID_ARGUMENT");

	vm_proc_start(&child, NULL, "run", "-m", "64M", "-p", "sync=1 await=" MAILBOX " sum=1G,64K", harness_guest(), NULL);
	vm_proc_wait_sync(&child, 1);
	call(&child, "vm-map", json_pack("{s:s,s:s,s:I,s:I,s:b}", "path", sock, "object", "pager", "addr", G1, "size", size,
					 "copy", 0));
	uint64_t word = 0x0123456789abcdefull;
	char text[16];
	base64_encode((uint8_t *)&word, 8, text);
	call(&child, "vm-write", json_pack("{s:I,s:s}", "addr", G1 + 8, "data", text));
	r = vm_proc_call(&vm, "vm-read", json_pack("{s:I,s:I}", "addr", at + 8, "size", 8ll));
	uint64_t seen = 0;
	ck_assert_int_eq(base64_decode(json_string_value(json_object_get(r, "data")), (uint8_t *)&seen, 8), 8);
	json_decref(r);
	ck_assert_uint_eq(seen, word);

	vm_proc_release(&child, 0x7ff000);
	ck_assert_int_eq(vm_proc_wait(&child), 0);
	uint64_t h = ABI_FNV_INIT;
	for (uint64_t p = 0; p < (uint64_t)size / 4096; p++) {
		uint64_t page[512];
		for (unsigned i = 0; i < 512; i++)
			page[i] = abi_page_key((uint64_t)at + p * 4096, 5) + i;
		if (p == 0)
			page[1] = word;
		h = abi_fnv1a64(h, (const unsigned char *)page, sizeof(page));
	}
	expect_sum(&child, h);
	call(&vm, "vm-unexport", json_pack("{s:I}", "addr", at));
	ck_assert_int_ne(access(sock, F_OK), 0);
	call(&vm, "quit", NULL);
	vm_proc_wait(&vm);
}
END_TEST

START_TEST(a_range_copied_with_vm_copy_reads_as_the_source_did)
{
	vm_proc_start(&vm, NULL, "run", "-m", "64M", "-p",
		      "seed=4 fill=16M,64K sync=1 await=" MAILBOX " sum=16M,64K sum=32M,64K", harness_guest(), NULL);
	vm_proc_wait_sync(&vm, 1);
	call(&vm, "vm-copy", json_pack("{s:I,s:I,s:I}", "source", 16ll << 20, "size", 64ll << 10, "dest", 32ll << 20));
	vm_proc_release(&vm, 0x7ff000);
	ck_assert_int_eq(vm_proc_wait(&vm), 0);
	char *out = vm_proc_output(&vm, false);
	const char *a = strstr(out, "sum 0x0000000001000000"), *b = strstr(out, "sum 0x0000000002000000");
	ck_assert_msg(a && b, "%s", out);
	ck_assert_msg(strncmp(strstr(a, ": 0x"), strstr(b, ": 0x"), 20) == 0, "%s", out);
	free(out);
}
END_TEST

START_TEST(the_new_mach_calls_answer_and_fail_by_name)
{
	vm_proc_start(&vm, NULL, "run", "-m", "64M", "-p", "sync=1 idle", harness_guest(), NULL);
	vm_proc_wait_sync(&vm, 1); /* the guest has run: it has faulted */
	json_t *st = vm_proc_execute(&vm, "vm-statistics", NULL);
	ck_assert_int_eq(json_integer_value(json_object_get(st, "pagesize")), 4096);
	ck_assert(json_is_null(json_object_get(st, "free_count")));
	ck_assert_int_gt(json_integer_value(json_object_get(st, "faults")), 0);
	json_decref(st);
	json_t *e = vm_proc_call(&vm, "vm-region", json_pack("{s:I}", "addr", 5ll));
	ck_assert_int_eq(json_integer_value(json_object_get(e, "start")), 0);
	json_decref(e);
	call(&vm, "vm-set-attributes", json_pack("{s:I,s:I,s:i,s:s}", "addr", 0ll, "size", 1ll << 20, "cluster", 8, "cache",
						 "uncached"));
	e = vm_proc_call(&vm, "vm-region", json_pack("{s:I}", "addr", 0ll));
	ck_assert_int_eq(json_integer_value(json_object_get(e, "cluster")), 8);
	ck_assert_str_eq(json_string_value(json_object_get(e, "cache")), "uncached");
	json_decref(e);
	call_fails(&vm, "vm-region", json_pack("{s:I}", "addr", G1), "KERN_NO_SPACE");
	call_fails(&vm, "vm-map", json_pack("{s:s,s:I,s:I}", "path", "/nonexistent", "addr", G1, "size", 4096ll),
		   "KERN_INVALID_ARGUMENT");
	call_fails(&vm, "vm-map", json_pack("{s:s,s:s,s:I}", "path", "/tmp", "object", "disk", "size", 4096ll),
		   "use file, pager or snapshot");
	call_fails(&vm, "vm-map", json_pack("{s:s,s:s,s:s,s:I}", "path", store, "object", "snapshot", "snapshot", "none",
					    "size", 4096ll),
		   "KERN_INVALID_ARGUMENT");
	call_fails(&vm, "vm-copy", json_pack("{s:I,s:I,s:I}", "source", 1ll, "size", 4096ll, "dest", 8192ll),
		   "KERN_INVALID_ARGUMENT");
	call_fails(&vm, "vm-copy", json_pack("{s:I,s:I,s:I}", "source", 0ll, "size", 4096ll, "dest", G1),
		   "KERN_INVALID_ADDRESS");
	call_fails(&vm, "vm-set-attributes", json_pack("{s:I,s:I,s:i}", "addr", 0ll, "size", 4096ll, "cluster", 0),
		   "1 to 256");
	call_fails(&vm, "vm-set-attributes", json_pack("{s:I,s:I,s:s}", "addr", 0ll, "size", 4096ll, "cache", "fast"),
		   "use writeback, writethrough or uncached");
	json_decref(vm_proc_execute(&vm, "query-status", NULL));
}
END_TEST

Suite *kvm_memory_suite(void)
{
	Suite *s = suite_create("kvm_memory");
	harness_requires(HARNESS_KVM | HARNESS_UFFD);
	TCase *tc = tcase_create("memory");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 180);
	HARNESS_ADD_TEST(tc, query_memory_shows_the_map_the_test_built);
	HARNESS_ADD_TEST(tc, guest_uses_memory_allocated_at_run_time);
	HARNESS_ADD_TEST(tc, vm_read_sees_what_the_guest_wrote_and_vm_write_what_it_reads);
	HARNESS_ADD_TEST(tc, write_to_protected_memory_stops_the_guest);
	HARNESS_ADD_TEST(tc, deallocated_memory_is_outside_guest_memory);
	HARNESS_ADD_TEST(tc, mach_errors_come_back_by_name);
	HARNESS_ADD_TEST(tc, a_file_mapped_into_a_running_guest_reads_as_the_file);
	HARNESS_ADD_TEST(tc, a_mapped_file_deallocated_is_outside_guest_memory);
	HARNESS_ADD_TEST(tc, an_external_pager_mapped_into_a_running_guest_serves_it);
	HARNESS_ADD_TEST(tc, a_stored_snapshots_ram_mapped_into_a_running_guest_reads_as_its_pages);
	HARNESS_ADD_TEST(tc, a_range_copied_with_vm_copy_reads_as_the_source_did);
	HARNESS_ADD_TEST(tc, a_range_another_vm_exports_maps_shared_and_stays_coherent);
	HARNESS_ADD_TEST(tc, the_new_mach_calls_answer_and_fail_by_name);
	suite_add_tcase(s, tc);
	return s;
}

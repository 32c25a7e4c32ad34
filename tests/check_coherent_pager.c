/*
 * tools/coherent_pager with real external pager clients, without KVM: each "VM" is a
 * sandbox (its own domain, map and flat pmap) mapping the one object shared, plus a thread
 * that does what the VMM's fault thread does for a pager's event fd (lock the domain, call
 * vm_object_pager_service). Guest accesses are made under the VM's domain lock, as the
 * fault thread makes them.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "coherent_server.h"
#include "harness.h"
#include "mmu/pager.h"
#include "mmu/vm_domain.h"
#include "mmu/vm_map.h"
#include "mmu/vm_object.h"
#include "pagers/external_pager.h"
#include "vm_sandbox.h"

#define PS VM_PAGE_SIZE
#define BASE 0x100000u
#define PAGES 32u
#define ROUNDS 400u

struct vm {
	struct vm_sandbox *sb;
	struct pager *pager;
	struct vm_object *obj;
	int stop[2];           /* the service thread stops when this turns readable */
	bool serviced;         /* a service thread runs */
	pthread_t thread;
	int service_error;     /* the first failure of service */
};

static struct coherent_server server;

static void setup(void)
{
	coherent_server_start(&server, PAGES * PS, "1000");
}

static void teardown(void)
{
	coherent_server_stop(&server);
}

static void *vm_service_main(void *arg)
{
	struct vm *vm = arg;
	struct pollfd p[2] = {{vm_object_pager_event_fd(vm->obj), POLLIN, 0}, {vm->stop[0], POLLIN, 0}};
	while (poll(p, 2, -1) >= 0 && !p[1].revents) {
		if (!p[0].revents)
			continue;
		vm_domain_lock(vm->sb->dom);
		int r = vm_object_pager_service(vm->obj);
		vm_domain_unlock(vm->sb->dom);
		if (r) {
			vm->service_error = r;
			return NULL;
		}
	}
	return NULL;
}

/* A VM mapping the object shared at BASE; @serviced: with a service thread. */
static void vm_start(struct vm *vm, bool serviced)
{
	memset(vm, 0, sizeof(*vm));
	ck_assert_int_eq(vm_sandbox_create(BASE, PAGES * PS, 0, &vm->sb), 0);
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_un addr = {.sun_family = AF_UNIX};
	strcpy(addr.sun_path, server.sock);
	ck_assert_int_eq(connect(fd, (struct sockaddr *)&addr, sizeof(addr)), 0);
	struct external_pager_config cfg = {.timeout_ms = 10000, .cancel_fd = -1};
	struct pager_args args = {.fd = fd, .source = &cfg};
	ck_assert_int_eq(pager_open(&external_pager_ops, &args, &vm->pager), 0);
	close(fd);
	ck_assert_int_eq(vm_object_create(vm->sb->dom, vm->pager, 0, &vm->obj), KERN_SUCCESS);
	vm_addr_t a = BASE;
	ck_assert_int_eq(vm_map_enter(vm->sb->map, &a, PAGES * PS, false, vm->obj, 0, false, VM_PROT_DEFAULT,
				      VM_PROT_ALL, VM_INHERIT_SHARE),
			 KERN_SUCCESS);
	ck_assert_int_eq(pipe2(vm->stop, O_CLOEXEC), 0);
	vm->serviced = serviced;
	if (serviced)
		ck_assert_int_eq(pthread_create(&vm->thread, NULL, vm_service_main, vm), 0);
}

static void vm_stop(struct vm *vm)
{
	if (vm->serviced) {
		ck_assert_int_eq(write(vm->stop[1], "s", 1), 1);
		pthread_join(vm->thread, NULL);
	}
	close(vm->stop[0]);
	close(vm->stop[1]);
	vm_domain_lock(vm->sb->dom);
	vm_object_deallocate(vm->obj);
	vm_domain_unlock(vm->sb->dom);
	pager_release(vm->pager);
	vm_sandbox_destroy(vm->sb);
}

static kern_return_t vm_access(struct vm *vm, unsigned page, unsigned slot, uint64_t *value, bool write)
{
	vm_addr_t at = BASE + (vm_addr_t)page * PS + slot * sizeof(uint64_t);
	vm_domain_lock(vm->sb->dom);
	kern_return_t kr = write ? vm_sandbox_write(vm->sb, at, value, sizeof(*value))
				 : vm_sandbox_read(vm->sb, at, value, sizeof(*value));
	vm_domain_unlock(vm->sb->dom);
	return kr;
}

/*
 * Two VMs, seeded random rounds: one writes a new value into a random slot of a random
 * page, the other reads that slot, and a random VM reads another random slot: each read
 * must be the value last written there, by whichever VM.
 */
START_TEST(test_two_vms_read_what_the_other_wrote_last_over_many_random_rounds)
{
	struct vm vm[2];
	vm_start(&vm[0], true);
	vm_start(&vm[1], true);
	static uint64_t expect[PAGES][4];
	memset(expect, 0, sizeof(expect));
	uint64_t seed = 0x9e3779b97f4a7c15ull;
	for (unsigned r = 0; r < ROUNDS; r++) {
		unsigned w = coherent_server_random(&seed) & 1, page = coherent_server_random(&seed) % PAGES, slot = coherent_server_random(&seed) % 4;
		uint64_t v = ((uint64_t)r << 8) | w | 0x1000000000ull;
		ck_assert_int_eq(vm_access(&vm[w], page, slot, &v, true), KERN_SUCCESS);
		expect[page][slot] = v;
		uint64_t got = 0;
		ck_assert_int_eq(vm_access(&vm[!w], page, slot, &got, false), KERN_SUCCESS);
		ck_assert_msg(got == v, "round %u: VM %u read %#llx at page %u slot %u, VM %u wrote %#llx", r, !w,
			      (unsigned long long)got, page, slot, w, (unsigned long long)v);
		unsigned o = coherent_server_random(&seed) & 1, p2 = coherent_server_random(&seed) % PAGES, s2 = coherent_server_random(&seed) % 4;
		ck_assert_int_eq(vm_access(&vm[o], p2, s2, &got, false), KERN_SUCCESS);
		ck_assert_msg(got == expect[p2][s2], "round %u: VM %u read %#llx at page %u slot %u, expected %#llx", r, o,
			      (unsigned long long)got, p2, s2, (unsigned long long)expect[p2][s2]);
	}
	ck_assert_int_eq(vm[0].service_error, 0);
	ck_assert_int_eq(vm[1].service_error, 0);
	/* Both asked for pages back: the protocol, not luck, carried the values. */
	ck_assert_uint_gt(vm[0].sb->dom->stats.data_unlocks + vm[1].sb->dom->stats.data_unlocks, 0);
	vm_stop(&vm[0]);
	vm_stop(&vm[1]);
}
END_TEST

/* Readers share a page; a write takes it from all of them, and their next read sees it. */
START_TEST(test_a_write_takes_a_page_from_every_reader)
{
	struct vm vm[3];
	for (int i = 0; i < 3; i++)
		vm_start(&vm[i], true);
	uint64_t v = 0;
	for (int i = 0; i < 3; i++)
		ck_assert_int_eq(vm_access(&vm[i], 5, 0, &v, false), KERN_SUCCESS);
	for (int i = 0; i < 3; i++)
		ck_assert_uint_eq(pmap_flat_prot(vm[i].sb->flat, BASE + 5 * PS), VM_PROT_READ);
	v = 77;
	ck_assert_int_eq(vm_access(&vm[1], 5, 0, &v, true), KERN_SUCCESS);
	ck_assert_uint_eq(pmap_flat_prot(vm[0].sb->flat, BASE + 5 * PS), 0);
	ck_assert_uint_eq(pmap_flat_prot(vm[2].sb->flat, BASE + 5 * PS), 0);
	for (int i = 0; i < 3; i += 2) {
		uint64_t got = 0;
		ck_assert_int_eq(vm_access(&vm[i], 5, 0, &got, false), KERN_SUCCESS);
		ck_assert_uint_eq(got, 77);
	}
	for (int i = 0; i < 3; i++)
		vm_stop(&vm[i]);
}
END_TEST

/* A VM that never services its pager holds a page for writing: another VM's read waits
 * for it only until the server's deadline, then the silent one is dropped and the read is
 * answered (with what the file last had). */
START_TEST(test_a_client_that_never_answers_a_lock_request_is_dropped_and_the_others_go_on)
{
	struct vm silent, live;
	vm_start(&silent, false);
	vm_start(&live, true);
	uint64_t v = 5;
	ck_assert_int_eq(vm_access(&silent, 3, 1, &v, true), KERN_SUCCESS);
	uint64_t got = 1;
	ck_assert_int_eq(vm_access(&live, 3, 1, &got, false), KERN_SUCCESS);
	ck_assert_uint_eq(got, 0); /* its write never came back: the server cannot have it */
	/* The dropped VM learns it at its next exchange. */
	ck_assert_int_ne(vm_access(&silent, 9, 0, &got, false), KERN_SUCCESS);
	ck_assert_str_ne(external_pager_failure(silent.pager), "");
	vm_stop(&live);
	vm_stop(&silent);
}
END_TEST

/* What a hostile client says after HELLO (version 2 unless it says otherwise). */
static const struct {
	uint32_t version;
	uint32_t type;
	uint64_t offset, length;
} hostile[] = {
	{2, EXTPAGER_LOCK_COMPLETED, 0, PS},           /* a lie: nothing was asked */
	{2, EXTPAGER_DATA_REQUEST, PAGES * PS, PS},    /* outside the object */
	{2, EXTPAGER_DATA_UNLOCK, 100, PS},            /* unaligned */
	{2, EXTPAGER_LOCK_REQUEST, 0, PS},             /* the server's message */
	{1, 0, 0, 0},                                  /* version 1: cannot be asked for pages back */
};

START_TEST(test_a_client_that_lies_or_breaks_the_protocol_is_dropped_and_the_others_go_on)
{
	struct vm live;
	vm_start(&live, true);
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_un addr = {.sun_family = AF_UNIX};
	strcpy(addr.sun_path, server.sock);
	ck_assert_int_eq(connect(fd, (struct sockaddr *)&addr, sizeof(addr)), 0);
	ck_assert_int_eq(external_pager_send_msg(fd, EXTPAGER_HELLO, 0, 0, 0, hostile[_i].version), 0);
	struct extpager_msg m;
	if (hostile[_i].version >= 2) {
		ck_assert_int_eq(external_pager_io(fd, &m, sizeof(m), false), 0);
		ck_assert_uint_eq(m.type, EXTPAGER_HELLO_REPLY);
		ck_assert_int_eq(external_pager_send_msg(fd, hostile[_i].type, hostile[_i].offset, hostile[_i].length, 0, 0), 0);
	}
	/* Dropped: the connection ends (a guard against a hang, not a timing bound). */
	struct pollfd pf = {fd, POLLIN, 0};
	ck_assert_int_eq(poll(&pf, 1, 20000), 1);
	char b;
	ck_assert_int_eq(recv(fd, &b, 1, 0), 0);
	close(fd);
	uint64_t v = 3, got = 0;
	ck_assert_int_eq(vm_access(&live, 2, 0, &v, true), KERN_SUCCESS);
	ck_assert_int_eq(vm_access(&live, 2, 0, &got, false), KERN_SUCCESS);
	ck_assert_uint_eq(got, 3);
	vm_stop(&live);
}
END_TEST

Suite *coherent_pager_suite(void)
{
	Suite *s = suite_create("coherent_pager");
	TCase *tc = tcase_create("coherence");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 60);
	HARNESS_ADD_TEST(tc, test_two_vms_read_what_the_other_wrote_last_over_many_random_rounds);
	HARNESS_ADD_TEST(tc, test_a_write_takes_a_page_from_every_reader);
	HARNESS_ADD_TEST(tc, test_a_client_that_never_answers_a_lock_request_is_dropped_and_the_others_go_on);
	HARNESS_ADD_LOOP_TEST(tc, test_a_client_that_lies_or_breaks_the_protocol_is_dropped_and_the_others_go_on, 0,
			      sizeof(hostile) / sizeof(hostile[0]));
	suite_add_tcase(s, tc);
	return s;
}

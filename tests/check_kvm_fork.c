/*
 * Fork of running guests into child VMs, proven from inside: every VM (parent and
 * children) runs `forktest`, which fills memory before the fork and afterwards checks that
 * it sees the parent's pages plus only its own writes, under the index the identity port
 * gives it (0 in the parent, K in child NAME.K). From outside: each child runs with its own
 * monitor, belongs to the parent (which reaps it and says FORK_EXIT, never for the
 * template that made it), leaves no zombie, and numbers go on over all forks.
 *
 * The guests' script (SCRIPT):
 *   forktest  fill 16M, sync 1, wait for fork 1, check: "fork: vm K generation 1: ... ok"
 *   sync=2    the check is done
 *   await MB1 the test releases the parent (children are quit instead)
 *   forktest  again: sync 1 (the guest's third test-port message), fork 2, generation 2
 *   sync=4, await MB2
 */
#include <dirent.h>
#include <stdbool.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"
#include "vm_proc.h"
#include "vmm/error.h"
#include "vmm/lifecycle/fork.h"
#include "vmm/monitor/base64.h"
#include "vmm/monitor/qmp_client.h"

#define MB1 "0x7ff000"
#define MB2 "0x7fe000"
#define SCRIPT "forktest=16M sync=2 await=" MB1 " forktest=16M sync=4 await=" MB2
#define PAGES_OK "4096 pages ok"

static struct vm_proc vm;
static char name[32];                 /* the parent VM's name: children are NAME.K */
static pid_t children[2 * FORK_MAX_CHILDREN]; /* every child made, killed at teardown */
static unsigned nchildren;

static void setup(void)
{
	snprintf(name, sizeof(name), "fk%d", (int)getpid());
	nchildren = 0;
}

/* Whether @pid is still one of this test's VMs (its command line names the parent VM):
 * a pid that ended may since be someone else's. */
static bool ours(pid_t pid)
{
	char path[64], buf[4096];
	snprintf(path, sizeof(path), "/proc/%d/cmdline", (int)pid);
	FILE *f = fopen(path, "r");
	if (!f)
		return false;
	size_t n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = '\0';
	for (size_t i = 0; i < n; i += strlen(buf + i) + 1)
		if (strcmp(buf + i, name) == 0)
			return true;
	return false;
}

static void teardown(void)
{
	vm_proc_cleanup(&vm, false);
	for (unsigned i = 0; i < nchildren; i++)
		if (ours(children[i]))
			kill(children[i], SIGKILL);
}

static long long jint(json_t *o, const char *key)
{
	return json_integer_value(json_object_get(o, key));
}

static void sleep_ms(long ms)
{
	struct timespec t = {ms / 1000, (ms % 1000) * 1000000L};
	nanosleep(&t, NULL);
}

/* Start the parent VM running SCRIPT and wait until it waits for its first fork. */
static void start_parent(const char *cpus)
{
	vm_proc_start(&vm, NULL, "run", "-n", name, "-c", cpus, "-m", "64M", "-p", SCRIPT, harness_guest(), NULL);
	vm_proc_wait_sync(&vm, 1);
}

/* Fork VM @v named @vname into @count; returns the result (decref it) after checking
 * that it lists every child asked for, numbered from @first, and noting the children made. */
static json_t *fork_vm(struct vm_proc *v, const char *vname, unsigned count, unsigned first)
{
	json_t *args = json_pack("{s:i}", "count", (int)count);
	json_t *res = vm_proc_execute(v, "fork", args);
	json_decref(args);
	json_t *list = json_object_get(res, "children");
	ck_assert_int_eq(json_array_size(list), count);
	for (unsigned i = 0; i < count; i++) {
		json_t *c = json_array_get(list, i);
		char want[64];
		snprintf(want, sizeof(want), "%s.%u", vname, first + i);
		ck_assert_str_eq(json_string_value(json_object_get(c, "name")), want);
		ck_assert_int_eq(jint(c, "index"), first + i);
		if (jint(c, "pid") > 0)
			children[nchildren++] = (pid_t)jint(c, "pid");
	}
	return res;
}

static json_t *child_of(json_t *res, unsigned i)
{
	return json_array_get(json_object_get(res, "children"), i);
}

/* The parent pid of @pid (from /proc), -1 when it is gone. */
static pid_t parent_of(pid_t pid)
{
	char path[64];
	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	FILE *f = fopen(path, "r");
	if (!f)
		return -1;
	char buf[512];
	size_t n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = '\0';
	const char *p = strrchr(buf, ')'); /* after the command name, which may hold anything */
	int ppid = -1;
	if (!p || sscanf(p + 1, " %*c %d", &ppid) != 1)
		return -1;
	return ppid;
}

/* How many processes (zombies included) have @pid as their parent. */
static unsigned children_of(pid_t pid)
{
	DIR *d = opendir("/proc");
	ck_assert_ptr_nonnull(d);
	unsigned n = 0;
	struct dirent *e;
	while ((e = readdir(d))) {
		char *end;
		long p = strtol(e->d_name, &end, 10);
		if (*end == '\0' && p > 0 && parent_of((pid_t)p) == pid)
			n++;
	}
	closedir(d);
	return n;
}

/* The guests' stdout holds "fork: vm K generation G: 4096 pages ok" for every K listed. */
static void expect_pages_ok(const unsigned *ks, unsigned n, unsigned generation)
{
	char needle[64];
	snprintf(needle, sizeof(needle), "generation %u: " PAGES_OK, generation);
	vm_proc_wait_output(&vm, false, needle, n);
	char *out = vm_proc_output(&vm, false);
	for (unsigned i = 0; i < n; i++) {
		char want[96];
		snprintf(want, sizeof(want), "fork: vm %u generation %u: " PAGES_OK, ks[i], generation);
		ck_assert_msg(strstr(out, want), "missing '%s' in: %s", want, out);
	}
	ck_assert_ptr_null(strstr(out, "mismatch"));
	free(out);
}

/* Child @cname runs, with a monitor of its own, and reached sync @n: quit it. */
static void quit_child(const char *cname, unsigned n)
{
	struct qmp_client *c = NULL;
	ck_assert_msg(qmp_client_open(&c, cname, NULL, VM_PROC_TIMEOUT_MS) == 0, "%s: %s", cname, error_message());
	ck_assert_msg(qmp_client_wait_sync(c, n, VM_PROC_TIMEOUT_MS) == 0, "%s: %s", cname, error_message());
	json_t *st = NULL;
	ck_assert_int_eq(qmp_client_execute(c, "query-status", NULL, &st, VM_PROC_TIMEOUT_MS), 0);
	ck_assert_str_eq(json_string_value(json_object_get(st, "status")), "running");
	json_decref(st);
	json_t *r = NULL;
	ck_assert_int_eq(qmp_client_execute(c, "quit", NULL, &r, VM_PROC_TIMEOUT_MS), 0);
	json_decref(r);
	qmp_client_close(c);
}

/* The made children of @res: each belongs to their parent @v, reached sync @n and is
 * quit; the parent announces exactly their ends (status 0), then has no child left. */
static void quit_children_and_reap(struct vm_proc *v, json_t *res, unsigned n)
{
	pid_t pids[FORK_MAX_CHILDREN];
	unsigned made = 0;
	for (size_t i = 0; i < json_array_size(json_object_get(res, "children")); i++) {
		json_t *c = child_of(res, (unsigned)i);
		pid_t pid = (pid_t)jint(c, "pid");
		if (pid <= 0)
			continue;
		/* Made by the template or by the parent itself: the parent's child either way. */
		ck_assert_int_eq(parent_of(pid), v->pid);
		pids[made++] = pid;
		quit_child(json_string_value(json_object_get(c, "name")), n);
	}
	/* A template's end would have been announced before any of these (it is reaped
	 * before the fork answers): the first FORK_EXITs are the children's, one each. */
	bool seen[FORK_MAX_CHILDREN] = {false};
	for (unsigned k = 0; k < made; k++) {
		json_t *ev = vm_proc_wait_event(v, "FORK_EXIT", NULL, 0);
		json_t *data = json_object_get(ev, "data");
		pid_t pid = (pid_t)jint(data, "pid");
		unsigned i = 0;
		while (i < made && pids[i] != pid)
			i++;
		ck_assert_msg(i < made && !seen[i], "FORK_EXIT of pid %d, not a child or twice", (int)pid);
		seen[i] = true;
		ck_assert_int_eq(jint(data, "status"), 0);
		json_decref(ev);
	}
	/* Each announced end was reaped first: no zombie, and the template is gone too. */
	ck_assert_int_eq(children_of(v->pid), 0);
}

/* Wait until @v's guest has written @n test-port messages. */
static void wait_messages(struct vm_proc *v, long long n)
{
	for (int i = 0; i < VM_PROC_TIMEOUT_MS / 10; i++) {
		json_t *st = vm_proc_execute(v, "query-stats", NULL);
		long long m = jint(st, "vm.test_port_messages");
		json_decref(st);
		if (m >= n)
			return;
		sleep_ms(10);
	}
	ck_abort_msg("the guest never wrote %lld test-port messages", n);
}

/* The first half of SCRIPT after fork 1 (takes @res): VMs @ks (0, the parent, and the
 * children made) check their pages; the parent runs on to sync 2 while the children are
 * quit and reaped. */
static void first_fork_checked(json_t *res, const unsigned *ks, unsigned n)
{
	expect_pages_ok(ks, n, 1);
	vm_proc_wait_sync(&vm, 2);
	json_t *st = vm_proc_execute(&vm, "query-status", NULL);
	ck_assert_str_eq(json_string_value(json_object_get(st, "status")), "running");
	json_decref(st);
	quit_children_and_reap(&vm, res, 2);
	json_decref(res);
}

/* The second half of SCRIPT: a fork of @count numbered from @first, generation 2, each
 * VM checks its pages; children quit and reaped; the parent ends with status 0. */
static void second_fork(unsigned count, unsigned first)
{
	vm_proc_release(&vm, 0x7ff000);
	wait_messages(&vm, 3); /* the second forktest filled its memory */
	json_t *res = fork_vm(&vm, name, count, first);
	ck_assert_int_eq(jint(res, "generation"), 2);
	unsigned ks[FORK_MAX_CHILDREN + 1] = {0};
	for (unsigned i = 0; i < count; i++) {
		ck_assert_str_eq(json_string_value(json_object_get(child_of(res, i), "status")), "running");
		ks[i + 1] = first + i;
	}
	expect_pages_ok(ks, count + 1, 2);
	quit_children_and_reap(&vm, res, 4);
	json_decref(res);
	vm_proc_wait_sync(&vm, 4);
	vm_proc_release(&vm, 0x7fe000);
	ck_assert_int_eq(vm_proc_wait(&vm), 0);
}

START_TEST(five_children_check_their_pages_while_the_parent_runs_on_and_all_are_reaped)
{
	start_parent("2");
	json_t *res = fork_vm(&vm, name, 5, 1);
	ck_assert_int_eq(jint(res, "generation"), 1);
	for (unsigned i = 0; i < 5; i++)
		ck_assert_str_eq(json_string_value(json_object_get(child_of(res, i), "status")), "running");
	/* The parent's guest checks its pages too and runs on while its children do. */
	const unsigned ks[] = {0, 1, 2, 3, 4, 5};
	first_fork_checked(res, ks, 6);
	/* A second fork numbers its children on from the first's: 6 and 7. */
	second_fork(2, 6);
}
END_TEST

START_TEST(a_single_child_is_forked_and_reaped_like_many)
{
	start_parent("1");
	json_t *res = fork_vm(&vm, name, 1, 1);
	ck_assert_str_eq(json_string_value(json_object_get(child_of(res, 0), "status")), "running");
	const unsigned ks[] = {0, 1};
	first_fork_checked(res, ks, 2);
	second_fork(3, 2);
}
END_TEST

START_TEST(a_template_killed_half_way_leaves_its_children_reported_and_the_rest_failed)
{
	/* The template kills itself after its second fork(2), before reporting that child. */
	setenv("VMM_TEST_FORK_TEMPLATE_KILL", "2", 1);
	start_parent("2");
	unsetenv("VMM_TEST_FORK_TEMPLATE_KILL");
	json_t *res = fork_vm(&vm, name, 5, 1);
	for (unsigned i = 0; i < 5; i++) {
		json_t *c = child_of(res, i);
		const char *status = json_string_value(json_object_get(c, "status"));
		if (i < 2) {
			ck_assert_int_gt(jint(c, "pid"), 0);
			ck_assert_str_eq(status, "running");
		} else {
			ck_assert_int_eq(jint(c, "pid"), 0);
			ck_assert_msg(strstr(status, "not made") && strstr(status, "template process was killed by signal 9"),
				      "status: %s", status);
		}
	}
	const unsigned ks[] = {0, 1, 2};
	first_fork_checked(res, ks, 3);
	/* Numbers a child may have had are never given again: the next child is 6 (and made
	 * by the parent itself, one child needing no template). */
	second_fork(1, 6);
}
END_TEST

START_TEST(a_child_forks_in_turn_and_numbers_its_own_children_from_one)
{
	start_parent("1");
	json_t *res = fork_vm(&vm, name, 3, 1);
	const unsigned ks[] = {0, 1, 2, 3};
	expect_pages_ok(ks, 4, 1);
	/* Child NAME.2 goes on to its second forktest and forks: NAME.2.1 and NAME.2.2. */
	struct vm_proc child = {.pid = (pid_t)jint(child_of(res, 1), "pid")};
	char cname[64];
	snprintf(cname, sizeof(cname), "%s.2", name);
	ck_assert_msg(qmp_client_open(&child.c, cname, NULL, VM_PROC_TIMEOUT_MS) == 0, "%s", error_message());
	vm_proc_wait_sync(&child, 2);
	vm_proc_release(&child, 0x7ff000);
	wait_messages(&child, 3);
	json_t *grand = fork_vm(&child, cname, 2, 1);
	ck_assert_int_eq(jint(grand, "generation"), 2);
	expect_pages_ok(ks, 3, 2); /* "vm 0" is NAME.2 now, the parent waits */
	quit_children_and_reap(&child, grand, 4);
	json_decref(grand);
	qmp_client_close(child.c);
	/* Then the parent's children, NAME.2 among them, end as before. */
	quit_children_and_reap(&vm, res, 2);
	json_decref(res);
}
END_TEST

START_TEST(sigterm_ends_the_parent_and_leaves_its_children_running)
{
	start_parent("1");
	json_t *res = fork_vm(&vm, name, 2, 1);
	const unsigned ks[] = {0, 1, 2};
	expect_pages_ok(ks, 3, 1);
	ck_assert_int_eq(kill(vm.pid, SIGTERM), 0);
	ck_assert_int_eq(vm_proc_wait(&vm), 128 + SIGTERM);
	/* The children are VMs of their own: they run on, each with its monitor. */
	for (unsigned i = 0; i < 2; i++)
		quit_child(json_string_value(json_object_get(child_of(res, i), "name")), 2);
	json_decref(res);
}
END_TEST

/* The VM started runs forktest=16M: fork it into 3 children; each, and the parent, checks
 * it sees the parent's pages and its own writes only, and ends well. */
static void fork_three_and_check_their_pages(void)
{
	vm_proc_wait_sync(&vm, 1);
	json_t *args = json_pack("{s:i}", "count", 3);
	json_t *res = vm_proc_execute(&vm, "fork", args);
	json_decref(args);
	ck_assert_int_eq(json_array_size(json_object_get(res, "children")), 3);
	ck_assert_int_eq(jint(res, "generation"), 1);
	for (unsigned i = 0; i < 3; i++)
		children[nchildren++] = (pid_t)jint(child_of(res, i), "pid");
	json_decref(res);
	ck_assert_int_eq(vm_proc_wait(&vm), 0);
	/* Children share the parent's output files; each says how its guest ended. */
	vm_proc_wait_output(&vm, true, "guest ended with status 0", 3);
	vm_proc_expect_forks_checked(&vm, 4, 1, 4096);
	char *err = vm_proc_output(&vm, true);
	for (int k = 1; k <= 3; k++) {
		char want[96];
		snprintf(want, sizeof(want), "vmm: %s.%d: guest ended with status 0", name, k);
		ck_assert_msg(strstr(err, want), "missing '%s' in: %s", want, err);
	}
	free(err);
}

START_TEST(fork_children_see_parent_pages_and_only_their_own_writes)
{
	vm_proc_start(&vm, NULL, "run", "-n", name, "-c", "2", "-m", "64M", "-p", "forktest=16M", harness_guest(), NULL);
	fork_three_and_check_their_pages();
}
END_TEST

/* Under a 4 MiB limit most of the 16 MiB is in the swap file at the fork: the children read
 * it from there and page out their own pages to the same file while the parent does too. */
START_TEST(clones_under_a_memory_limit_share_the_swap_file_and_see_only_their_own_writes)
{
	vm_proc_start(&vm, NULL, "run", "-n", name, "-c", "2", "-m", "64M", "--mem-limit", "4M", "-p", "forktest=16M",
		      harness_guest(), NULL);
	vm_proc_wait_sync(&vm, 1);
	json_t *st = vm_proc_execute(&vm, "query-stats", NULL);
	ck_assert_int_ge(jint(st, "mem.pageouts"), 2048); /* 12 MiB of the 16 at least */
	json_decref(st);
	fork_three_and_check_their_pages();
}
END_TEST

#define SHARED_GPA 0x800000ll /* ABI_FREE_BASE: the page sharetest shares */
#define SHARE_MARK 0x5348415245000000ull /* sharetest's mark of VM k: SHARE_MARK | k */

/* The shared page as vm-read answered @r (taken): words 0-3 hold the marks of the parent
 * and its three children. */
static void expect_four_marks(json_t *r)
{
	uint8_t page[4096];
	ck_assert_int_eq(base64_decode(json_string_value(json_object_get(r, "data")), page, sizeof(page)), 4096);
	json_decref(r);
	for (uint64_t k = 0; k < 4; k++) {
		uint64_t w;
		memcpy(&w, page + 8 * k, 8);
		ck_assert_uint_eq(w, SHARE_MARK | k);
	}
}

/* Mach's "share" across VMs: one page inherited "share" is one page for the parent and its
 * three children. Each writes its mark and a thousand locked adds there and sees all the
 * others' (sharetest); the page after it, inherited "copy", stays each VM's own. The host
 * sees the shared page as the guests left it (vm-read), the map shows it shared with the
 * forks, and the parent cannot be snapshotted while it shares memory. Inherited "copy"
 * again, the page is the next child's own copy. */
START_TEST(a_page_inherited_share_is_one_page_for_the_parent_and_its_children)
{
	vm_proc_start(&vm, NULL, "run", "-n", name, "-m", "64M", "-p", "sharetest=0x800000,4 sync=2 idle",
		      harness_guest(), NULL);
	vm_proc_wait_sync(&vm, 1);
	json_t *args = json_pack("{s:I,s:I,s:s}", "addr", SHARED_GPA, "size", 4096ll, "inheritance", "share");
	json_decref(vm_proc_execute(&vm, "vm-inherit", args));
	json_decref(args);
	args = json_pack("{s:i}", "count", 3);
	json_t *res = vm_proc_execute(&vm, "fork", args);
	json_decref(args);
	ck_assert_int_eq(json_array_size(json_object_get(res, "children")), 3);
	for (unsigned i = 0; i < 3; i++)
		children[nchildren++] = (pid_t)jint(child_of(res, i), "pid");
	vm_proc_wait_sync(&vm, 2);
	for (unsigned i = 0; i < 3; i++)
		quit_child(json_string_value(json_object_get(child_of(res, i), "name")), 2);
	json_decref(res);
	char *out = vm_proc_output(&vm, false);
	for (int k = 0; k <= 3; k++) {
		char want[96];
		snprintf(want, sizeof(want), "share: vm %d: 4 of 4 marks, count 4000, own page ok", k);
		ck_assert_msg(strstr(out, want), "missing '%s' in: %s", want, out);
	}
	free(out);

	args = json_pack("{s:I,s:I}", "addr", SHARED_GPA, "size", 4096ll);
	expect_four_marks(vm_proc_execute(&vm, "vm-read", args));
	json_decref(args);
	json_t *r = vm_proc_execute(&vm, "query-stats", NULL);
	ck_assert_int_eq(jint(r, "mem.fork_shared_bytes"), 4096);
	json_decref(r);
	args = json_pack("{s:I}", "addr", SHARED_GPA);
	r = vm_proc_execute(&vm, "vm-region", args);
	json_decref(args);
	ck_assert_str_eq(json_string_value(json_object_get(r, "region")), "shared-with-forks");
	ck_assert_str_eq(json_string_value(json_object_get(r, "inheritance")), "share");
	ck_assert_int_eq(jint(r, "start"), SHARED_GPA);
	ck_assert_int_eq(jint(r, "end"), SHARED_GPA + 4096);
	json_decref(r);
	r = NULL;
	args = json_pack("{s:s,s:s}", "name", "s", "store", "/tmp/vmm-share-not-stored");
	ck_assert_int_eq(qmp_client_execute(vm.c, "snapshot-save", args, &r, VM_PROC_TIMEOUT_MS), -EREMOTEIO);
	ck_assert_msg(strstr(error_message(), "sharing memory with their forks"), "%s", error_message());
	json_decref(args);

	/* Inherited "copy" from now on: the next child gets a page of its own holding the marks,
	 * and a write on either side stays there. */
	args = json_pack("{s:I,s:I,s:s}", "addr", SHARED_GPA, "size", 4096ll, "inheritance", "copy");
	json_decref(vm_proc_execute(&vm, "vm-inherit", args));
	json_decref(args);
	args = json_pack("{s:i}", "count", 1);
	res = vm_proc_execute(&vm, "fork", args);
	json_decref(args);
	ck_assert_int_eq(json_array_size(json_object_get(res, "children")), 1);
	children[nchildren++] = (pid_t)jint(child_of(res, 0), "pid");
	struct qmp_client *c = NULL;
	const char *cname = json_string_value(json_object_get(child_of(res, 0), "name"));
	ck_assert_msg(qmp_client_open(&c, cname, NULL, VM_PROC_TIMEOUT_MS) == 0, "%s: %s", cname, error_message());
	args = json_pack("{s:I,s:I}", "addr", SHARED_GPA, "size", 4096ll);
	r = NULL;
	ck_assert_int_eq(qmp_client_execute(c, "vm-read", args, &r, VM_PROC_TIMEOUT_MS), 0);
	expect_four_marks(r);
	char text[16];
	uint64_t mine = 0x4f574e4f574e4f57ull; /* "WONWONWO" */
	base64_encode((uint8_t *)&mine, 8, text);
	json_t *w = json_pack("{s:I,s:s}", "addr", SHARED_GPA, "data", text);
	r = NULL;
	ck_assert_int_eq(qmp_client_execute(c, "vm-write", w, &r, VM_PROC_TIMEOUT_MS), 0);
	json_decref(r);
	json_decref(w);
	r = NULL;
	ck_assert_int_eq(qmp_client_execute(c, "query-stats", NULL, &r, VM_PROC_TIMEOUT_MS), 0);
	ck_assert_int_eq(jint(r, "mem.fork_shared_bytes"), 0);
	json_decref(r);
	r = NULL;
	ck_assert_int_eq(qmp_client_execute(c, "quit", NULL, &r, VM_PROC_TIMEOUT_MS), 0);
	json_decref(r);
	qmp_client_close(c);
	json_decref(res);
	/* The parent's marks, not the child's write. */
	expect_four_marks(vm_proc_execute(&vm, "vm-read", args));
	json_decref(args);
	json_decref(vm_proc_execute(&vm, "quit", NULL));
	ck_assert_int_eq(vm_proc_wait(&vm), 0);
}
END_TEST

Suite *kvm_fork_suite(void)
{
	Suite *s = suite_create("kvm_fork");
	harness_requires(HARNESS_KVM | HARNESS_UFFD);
	TCase *tc = tcase_create("fork");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 240);
	HARNESS_ADD_TEST(tc, five_children_check_their_pages_while_the_parent_runs_on_and_all_are_reaped);
	HARNESS_ADD_TEST(tc, a_single_child_is_forked_and_reaped_like_many);
	HARNESS_ADD_TEST(tc, a_template_killed_half_way_leaves_its_children_reported_and_the_rest_failed);
	HARNESS_ADD_TEST(tc, a_child_forks_in_turn_and_numbers_its_own_children_from_one);
	HARNESS_ADD_TEST(tc, sigterm_ends_the_parent_and_leaves_its_children_running);
	HARNESS_ADD_TEST(tc, fork_children_see_parent_pages_and_only_their_own_writes);
	HARNESS_ADD_TEST(tc, clones_under_a_memory_limit_share_the_swap_file_and_see_only_their_own_writes);
	HARNESS_ADD_TEST(tc, a_page_inherited_share_is_one_page_for_the_parent_and_its_children);
	suite_add_tcase(s, tc);
	return s;
}

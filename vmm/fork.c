#include "vmm/fork.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "guest/abi.h"
#include "mmu/vm_domain.h"
#include "mmu/vm_map.h"
#include "vmm/commands.h"
#include "vmm/error.h"
#include "vmm/monitor.h"
#include "vmm/vm.h"
#include "vmm/vm_state.h"

#define FORK_READY_TIMEOUT_MS 30000

static uint64_t now_ns(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (uint64_t)t.tv_sec * 1000000000ull + (uint64_t)t.tv_nsec;
}

/* Mach's fork: entries inherited "none" are not in the child (its guest finds nothing
 * there); "copy" ones are what the kernel's copy-on-write of the process gives. */
static int fork_apply_inheritance(struct vm *vm)
{
	for (;;) {
		vm_addr_t addr = 0, start = 0, end = 0;
		struct vm_region_info ri;
		vm_domain_lock(vm->mem.dom);
		while (vm_map_region(vm->mem.map, &addr, &ri) == KERN_SUCCESS && !end) {
			if (ri.inheritance == VM_INHERIT_NONE) {
				start = ri.start;
				end = ri.end;
			}
			addr = ri.end;
		}
		vm_domain_unlock(vm->mem.dom);
		if (!end)
			return vm_sync_memslots(vm);
		int r = guest_memory_deallocate(&vm->mem, start, end - start);
		if (r)
			return r;
	}
}

void vm_fork_ready(struct vm *vm, int status, const char *error)
{
	if (vm->ready_fd < 0)
		return;
	struct fork_ready msg = {.index = vm->fork_index, .status = status};
	snprintf(msg.error, sizeof(msg.error), "%s", error ? error : "");
	if (write(vm->ready_fd, &msg, sizeof(msg)) != (ssize_t)sizeof(msg))
		(void)0; /* the parent gave up waiting: nothing more to do */
	close(vm->ready_fd);
	vm->ready_fd = -1;
}

/* The child's life: become a VM of its own and run until its guest ends. */
static void __attribute__((noreturn)) fork_child_main(struct vm *vm, struct vm_state *state, const char *name,
						     unsigned index, unsigned generation, int ready_fd)
{
	vm->ready_fd = ready_fd;
	vm->fork_index = index;
	monitor_abandon(vm->monitor); /* the parent's */
	vm->monitor = NULL;
	state->id_value = ABI_ID(generation, index);
	static char child_name[80];
	snprintf(child_name, sizeof(child_name), "%s.%u", name, index);
	vm->cfg.name = child_name;
	vm->cfg.monitor_path = NULL;
	if (vm_fork_child_setup(vm, state) != 0 || fork_apply_inheritance(vm) != 0) {
		fprintf(stderr, "vmm: fork child %s: %s\n", child_name, error_message());
		vm_fork_ready(vm, VM_EXIT_VMM_ERROR, error_message());
		_exit(VM_EXIT_VMM_ERROR);
	}
	vm_state_free(state);
	cmd_run_serve(vm); /* does not return */
	_exit(VM_EXIT_VMM_ERROR);
}

static const char *fork_refusal(const struct vm *vm)
{
	bool shared = false;
	vm_addr_t addr = 0;
	struct vm_region_info ri;
	vm_domain_lock(vm->mem.dom);
	while (!shared && vm->mem.map && vm_map_region(vm->mem.map, &addr, &ri) == KERN_SUCCESS) {
		shared = ri.inheritance == VM_INHERIT_SHARE;
		addr = ri.end;
	}
	vm_domain_unlock(vm->mem.dom);
	if (shared)
		return "memory inherited \"share\" cannot be shared between forked VMs (each is its own process)";
	for (unsigned i = 0; i < vm->mem.nregions; i++)
		if (vm->mem.region[i].kind != GUEST_REGION_RAM)
			return "VMs with mapped files or external pagers cannot be forked (the pagers would be shared)";
	if (vm->mem.swap)
		return "VMs with a memory limit cannot be forked (their swap file would be shared)";
	if (atomic_load(&vm->snapshot_busy))
		return "a snapshot of this VM is being taken; fork it afterwards";
	return NULL;
}

/* Hear from each child that it runs, or why not. A child that dies before saying
 * anything is reported as not running. */
static void fork_collect_ready(struct fork_result *res, int fd)
{
	bool heard[FORK_MAX_CHILDREN] = {false};
	for (unsigned n = 0; n < res->count; n++) {
		struct pollfd p = {fd, POLLIN, 0};
		struct fork_ready msg;
		if (poll(&p, 1, FORK_READY_TIMEOUT_MS) <= 0 || read(fd, &msg, sizeof(msg)) != (ssize_t)sizeof(msg))
			break;
		for (unsigned i = 0; i < res->count; i++) {
			struct fork_child *c = &res->child[i];
			if (c->index != msg.index || heard[i])
				continue;
			heard[i] = true;
			c->status = msg.status;
			snprintf(c->error, sizeof(c->error), "%s", msg.error);
		}
	}
	for (unsigned i = 0; i < res->count; i++) {
		if (heard[i])
			continue;
		res->child[i].status = VM_EXIT_VMM_ERROR;
		snprintf(res->child[i].error, sizeof(res->child[i].error), "the child ended before it ran");
	}
}

int vm_fork(struct vm *vm, const char *name, unsigned count, struct fork_result *res)
{
	memset(res, 0, sizeof(*res));
	if (count < 1 || count > FORK_MAX_CHILDREN)
		return error_set(EINVAL, "a fork makes 1 to %d children, not %u", FORK_MAX_CHILDREN, count);
	const char *why = fork_refusal(vm);
	if (why)
		return error_set(ENOTSUP, "%s", why);
	uint64_t t0 = now_ns();
	if (!vm_pause(vm))
		return error_set(ESHUTDOWN, "the VM is shutting down");
	struct vm_state state;
	int r = vm_state_capture(vm, &state);
	if (r) {
		vm_resume(vm);
		return r;
	}
	unsigned generation = ABI_ID_GENERATION(atomic_load(&vm->id_port.value)) + 1;
	int ready[2];
	if (pipe2(ready, O_CLOEXEC) != 0) {
		r = error_set_errno(errno, "cannot make the fork's pipe");
		vm_state_free(&state);
		vm_resume(vm);
		return r;
	}
	fflush(NULL); /* buffered output must not be written twice */
	/* The fault thread must be between faults: hold the domain lock across the forks. */
	vm_domain_lock(vm->mem.dom);
	for (unsigned n = 1; n <= count; n++) {
		unsigned k = vm->children_made + n;
		uint64_t f0 = now_ns();
		pid_t pid = fork();
		if (pid == 0) {
			close(ready[0]);
			fork_child_main(vm, &state, name, k, generation, ready[1]);
		}
		if (pid < 0) {
			r = error_set_errno(errno, "fork of child %u failed", k);
			break;
		}
		struct fork_child *c = &res->child[res->count++];
		c->pid = pid;
		c->index = k;
		c->fork_ns = now_ns() - f0;
		snprintf(c->name, sizeof(c->name), "%s.%u", name, k);
	}
	vm_domain_unlock(vm->mem.dom);
	vm_state_free(&state);
	vm->children_made += res->count;
	if (res->count) {
		atomic_store(&vm->id_port.value, ABI_ID(generation, 0));
		res->generation = generation;
	}
	vm_resume(vm);
	res->pause_ns = now_ns() - t0;
	close(ready[1]);
	fork_collect_ready(res, ready[0]);
	close(ready[0]);
	if (res->count)
		vm_fork_reap(vm);
	/* Children made before a failure run on: report what exists. */
	return res->count ? 0 : r;
}

static void *fork_reaper_main(void *arg)
{
	struct vm *vm = arg;
	int st;
	pid_t pid;
	while ((pid = waitpid(-1, &st, 0)) > 0 || (pid < 0 && errno == EINTR)) {
		if (pid < 0)
			continue;
		int status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
		if (vm->monitor)
			monitor_emit_event(vm->monitor, "FORK_EXIT", json_pack("{s:i,s:i}", "pid", (int)pid, "status", status));
	}
	return NULL; /* ECHILD: no child left; the next fork starts another reaper */
}

void vm_fork_reap(struct vm *vm)
{
	if (vm->children_reaper_started) {
		/* Done when it found no child left; a running one waits on the new children too. */
		if (pthread_tryjoin_np(vm->children_reaper, NULL) != 0)
			return;
		vm->children_reaper_started = false;
	}
	vm->children_reaper_started = pthread_create(&vm->children_reaper, NULL, fork_reaper_main, vm) == 0;
}

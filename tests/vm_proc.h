/*
 * A VM run as a user runs it (`vmm run` or `vmm restore` in the background), its output
 * kept in files, and a monitor client to drive it. Every helper fails the running Check
 * test on error. Waits are bounded (VM_PROC_TIMEOUT_MS) so a stuck VM fails a test
 * instead of hanging it; they are guards, not timing assertions.
 */
#ifndef TESTS_VM_PROC_H
#define TESTS_VM_PROC_H

#include <jansson.h>
#include <stdbool.h>
#include <sys/types.h>

/* 60 s, times $CK_TIMEOUT_MULTIPLIER (Check's own factor for slow machines, as under
 * tools/kvm_emulated.sh): the guards grow with the tests' own timeouts. */
#define VM_PROC_TIMEOUT_MS vm_proc_timeout_ms()
int vm_proc_timeout_ms(void);

struct qmp_client;

struct vm_proc {
	char dir[64];     /* temporary directory: sockets and output */
	char sock[128];   /* DIR/vm.sock */
	char out[128];    /* DIR/out: the VM's standard output */
	char err[128];    /* DIR/err: its standard error */
	pid_t pid;
	struct qmp_client *c;
	bool own_dir;     /* dir was made by vm_proc_start (removed by cleanup or the next start) */
};

/* Start `vmm ARGS...` (NULL-terminated, e.g. "run", "-p", "spin", guest) with
 * --monitor DIR/vm.sock added after the verb, in directory @dir (NULL: a new temporary
 * one), and connect to its monitor. A VM @v held before is cleaned up first. */
void vm_proc_start(struct vm_proc *v, const char *dir, ...);

/* Execute @command (args borrowed, may be NULL); returns its result (decref it). */
json_t *vm_proc_execute(struct vm_proc *v, const char *command, json_t *args);

/* vm_proc_execute, then let go of @args: for arguments built in the call's own line. */
json_t *vm_proc_call(struct vm_proc *v, const char *command, json_t *args);

/* Write 1 into the guest's mailbox at @gpa (vm-write): a guest waiting there (await=)
 * goes on. */
void vm_proc_release(struct vm_proc *v, long long gpa);

/* Wait for event @name whose data has integer @key >= @min (@key NULL: any such event). */
json_t *vm_proc_wait_event(struct vm_proc *v, const char *name, const char *key, long long min);

/* Wait until the guest's last test-port message is sync point @n or later (polling
 * query-stats: unlike the GUEST_SYNC event it cannot be missed by a late client). */
void vm_proc_wait_sync(struct vm_proc *v, unsigned n);

/* Wait for the VM process to end; returns its exit status. Closes the client. */
int vm_proc_wait(struct vm_proc *v);

/* The VM's output so far (standard output or error), a new string (free it). */
char *vm_proc_output(const struct vm_proc *v, bool err);

/* Wait until the VM's standard error holds @count lines containing @needle. */
void vm_proc_wait_output(const struct vm_proc *v, bool err, const char *needle, unsigned count);

/* The `forktest` guests of a fork of @v (which share its output files) each said
 * "fork: vm K generation G: P pages ok", for K from 0 (the parent) to @vms - 1. */
void vm_proc_expect_forks_checked(const struct vm_proc *v, unsigned vms, unsigned generation, unsigned pages);

/* Kill the VM if still running, close the client, remove the directory (unless @keep). */
void vm_proc_cleanup(struct vm_proc *v, bool keep_dir);

#endif

/* A VM process's life once its VM is made (vm_serve.h); moved here from `vmm run`. */
#include "vmm/lifecycle/vm_serve.h"

#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "vmm/error.h"
#include "vmm/lifecycle/fork.h"
#include "vmm/vm.h"

/* The signals that stop a VM: SIGINT, SIGTERM, and SIGHUP unless the VMM was started
 * with it ignored (nohup): a terminal closing must not end a VM its user meant to outlive it. */
static void vm_serve_stop_signals(sigset_t *set)
{
	sigemptyset(set);
	sigaddset(set, SIGINT);
	sigaddset(set, SIGTERM);
	struct sigaction hup;
	if (sigaction(SIGHUP, NULL, &hup) != 0 || hup.sa_handler != SIG_IGN)
		sigaddset(set, SIGHUP);
}

/* SIGINT, SIGTERM and SIGHUP end the VM cleanly: shared files are written back, the
 * monitor says SHUTDOWN and removes its socket. They are blocked in every thread and
 * taken here; the exit status is 128 + the signal, as a shell reports a killed command. */
static void *vm_serve_signal_thread(void *arg)
{
	struct vm *vm = arg;
	sigset_t set;
	vm_serve_stop_signals(&set);
	int sig;
	while (sigwait(&set, &sig) == 0 && !atomic_load(&vm->stopping_flag))
		if (vm_stop(vm, 128 + sig))
			fprintf(stderr, "vmm: stopped by %s\n", strsignal(sig));
	return NULL;
}

static void vm_serve_print_stat(void *arg, const char *key, uint64_t value)
{
	(void)arg;
	fprintf(stderr, "%-40s %llu\n", key, (unsigned long long)value);
}

/* The VM cannot be served (the message is set): say so, to a fork's parent too, and end. */
static void __attribute__((noreturn)) vm_serve_fail(struct vm *vm)
{
	fprintf(stderr, "vmm: %s\n", error_message());
	vm_fork_ready(vm, VM_EXIT_VMM_ERROR, error_message());
	fflush(NULL);
	_exit(VM_EXIT_VMM_ERROR);
}

/* The VM runs and its monitor listens: tell the waiting `vmm run -d` the VM's name, and
 * leave the terminal. A console that cannot detach stops the VM (the message on the
 * terminal, the waiting command sees the VM end). */
static void vm_serve_detach(struct vm *vm)
{
	int fd = atomic_exchange(&vm->detach_fd, -1);
	if (fd < 0)
		return;
	fflush(NULL);
	if (console_detach(&vm->console) != 0) {
		fprintf(stderr, "vmm: %s\n", error_message());
		vm_stop(vm, VM_EXIT_VMM_ERROR);
	} else {
		dprintf(fd, "%s\n", vm->cfg.name);
	}
	close(fd);
}

void vm_serve(struct vm *vm, const struct vm_serve_ops *ops)
{
	/* A forked child writes on its parent's terminal: its lines say whose they are. */
	if (vm->fork_index)
		console_set_prefix(&vm->console, vm->cfg.name);
	if (ops->console_start(vm) != 0)
		vm_serve_fail(vm);
	/* The guest first: the monitor and the signal thread come up while it runs. */
	vm_start(vm);
	vm_await_first_run(vm);
	guest_memory_prefetch_start(&vm->mem);
	if (ops->monitor_start(vm) != 0)
		vm_serve_fail(vm);
	vm_fork_ready(vm, 0, NULL);
	vm_serve_detach(vm);
	pthread_t sig_thread;
	bool sig_thread_started = pthread_create(&sig_thread, NULL, vm_serve_signal_thread, vm) == 0;
	int status = vm_wait(vm);
	if (sig_thread_started) {
		pthread_kill(sig_thread, SIGHUP); /* wakes it; it sees the VM stopped and ends */
		pthread_join(sig_thread, NULL);
	}
	if (guest_memory_sync(&vm->mem) != 0) {
		fprintf(stderr, "vmm: %s\n", error_message());
		status = VM_EXIT_VMM_ERROR;
	}
	if (vm->cfg.record_working_set && guest_memory_save_working_set(&vm->mem, vm->cfg.record_working_set) != 0) {
		fprintf(stderr, "vmm: %s\n", error_message());
		status = VM_EXIT_VMM_ERROR;
	}
	if (vm->cfg.stats)
		vm_stats(vm, vm_serve_print_stat, NULL);
	ops->monitor_stop(vm, status);
	if (vm->cfg.verbose || atomic_load(&vm->id_value) & 0xffffu)
		fprintf(stderr, "vmm: %s: guest ended with status %d\n", vm->cfg.name, status);
	/* Everything that must outlive the VM is done: shared files are written back, the
	 * monitor is closed. Unwinding the VM piece by piece would only slow the exit; the
	 * process exit frees it all at once. (vm_destroy is exercised by the in-process tests.) */
	fflush(NULL);
	_exit(status);
}

void vm_serve_block_signals(void)
{
	sigset_t stop_signals;
	vm_serve_stop_signals(&stop_signals);
	pthread_sigmask(SIG_BLOCK, &stop_signals, NULL);
	/* A console reader that goes away (`vmm run ... | head -1`) must not kill the VM: its
	 * writes fail with EPIPE and the serial port drops the output. */
	signal(SIGPIPE, SIG_IGN);
}

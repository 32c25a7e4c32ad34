/*
 * The life of a VM process once its VM is made: the guest starts, then its monitor and the
 * signal thread; it runs until its guest ends, its shared files are written back, its
 * statistics printed, and the process exits with the guest's status. `vmm run`, `vmm
 * restore` and every forked child end here.
 */
#ifndef VMM_VM_SERVE_H
#define VMM_VM_SERVE_H

struct vm;

/* The VM's monitor, given by the caller: the lifecycle does not know the monitor, which
 * calls into it (fork, snapshot). */
struct vm_serve_ops {
	/* Before the guest starts: open the console's log beside the monitor's socket
	 * (console.h). -errno with a message when the VM cannot go on (a live VM has the
	 * name; a detached VM without its log); a log that cannot be had otherwise is said
	 * on standard error and the VM runs without it. */
	int (*console_start)(struct vm *vm);
	/* Start @vm's monitor (its guest runs already). 0 or -errno with a message. */
	int (*monitor_start)(struct vm *vm);
	/* Say how the VM ended (@status) and close its monitor. Safe if never started. */
	void (*monitor_stop)(struct vm *vm, int status);
};

/*
 * Serve the created @vm: open its console log, start its vCPUs, its monitor (@ops) and a
 * thread that takes the stop signals (SIGINT, SIGTERM, SIGHUP: exit status 128 + the
 * signal). A VM made with cfg.detach then writes its name and a newline to cfg.detach_fd,
 * closes it, and detaches its console (console_detach). Wait until the VM
 * ends, write back shared files and the working set asked for, print the statistics asked
 * for, then exit the process with the VM's status. A forked child tells its parent that it
 * runs, or why it failed, once its monitor is up. The stop signals must be blocked in the
 * calling thread (vm_serve_block_signals) before any thread of the VM is made.
 */
void vm_serve(struct vm *vm, const struct vm_serve_ops *ops) __attribute__((noreturn));

/* Block SIGINT, SIGTERM and SIGHUP in the calling thread and every thread it makes from
 * now on: vm_serve's signal thread takes them. SIGHUP is left alone when the process was
 * started with it ignored (nohup): the VM outlives its terminal. SIGPIPE is ignored: a console reader that
 * goes away never kills the VM (its output is dropped). */
void vm_serve_block_signals(void);

#endif

/*
 * One virtual machine: KVM, guest memory, devices and vCPU threads, and the verdict that
 * ends it. The life of a VM: vm_create -> vm_run (returns when it stops) -> vm_destroy.
 */
#ifndef VMM_VM_H
#define VMM_VM_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "vmm/devices/console.h"
#include "vmm/memory/guest_export.h"
#include "vmm/memory/guest_memory.h"
#include "vmm/ioport.h"
#include "vmm/kvm.h"

/*
 * Exit statuses of `vmm run`: the guest's own status (0-119, what it wrote to the exit
 * port), or one of these verdicts.
 */
enum vm_exit_status {
	VM_EXIT_GUEST_INTERNAL = 121, /* KVM could not run or emulate the guest */
	VM_EXIT_BAD_ACCESS = 122,     /* port or guest-physical address nobody serves */
	VM_EXIT_TRIPLE_FAULT = 123,   /* the guest reset itself (triple fault) */
	VM_EXIT_NO_PROGRESS = 124,    /* halted for good, or over --timeout */
	VM_EXIT_VMM_ERROR = 125,      /* bad input or a host failure: the VMM's own error */
};

struct vm_config {
	struct guest_memory_config mem; /* RAM, limit, swap, mapped files, clustering */
	unsigned ncpus;        /* 1..ABI_MAX_CPUS */
	const char *guest;     /* path of the PVH ELF image */
	const char *cmdline;   /* guest command line */
	uint64_t timeout_ms;   /* stop the guest after this long; 0 = never */
	const char *kvm_path;  /* normally "/dev/kvm" */
	int verbose;           /* -v count */
	bool stats;            /* print statistics at exit */
	const char *name;      /* the VM's name (monitor socket) */
	const char *uuid;      /* from vmm run --xml's <uuid>, reported by query-config; NULL: none */
	const char *monitor_path; /* monitor socket, NULL: the default for the name */
	const struct vm_state *restore; /* restore: registers and devices (guest and cmdline unused) */
	const char *origin_store;  /* restore: the store's one name (store_locate), for later snapshots' parent */
	const char *origin_name;   /* restore: the snapshot restored */
	const char *made_note;     /* one line cmd_run_vm says on standard error once the VM is
				      made (a refused VM says only why), or NULL */
	const char *record_working_set; /* restore: write the guest's working set here at the end */
	const char *prefetch_path;      /* restore: the working set file to prefetch, or NULL */
	struct working_set *prefetch;   /* restore: its contents (vm_create takes them) */
	int console_fd;        /* where the serial console goes (stdout), -1 nowhere; its log is
				  vm_serve's (console.h) */
	bool detach;           /* vmm run -d: once the VM runs, vm_serve writes its name to
				  detach_fd, closes it and detaches the console (console_detach) */
	int detach_fd;         /* with detach: the pipe to the waiting `vmm run -d` */
};

struct vcpu;
struct monitor;
struct store;
struct store_snapshot;
struct checkpoint_job;

/*
 * KVM memory slots. A guest starts with only the early slot: the head of the region that
 * holds the guest kernel, below VM_MEMSLOT_EARLY_END (ABI_FREE_BASE: the guest's workloads
 * use only memory above); the rest are made while it runs. Each region has up to
 * VM_MEMSLOT_CHUNKS slots, numbered from its slot number times that: KVM allocates the
 * first shadow-paging root of a VM (in its first KVM_RUN) under the lock it holds while
 * it makes a slot, 0.6 ms per GiB here, so the slots made while the guest starts are
 * small enough (VM_MEMSLOT_CHUNK_MIN) not to hold it up for long.
 */
#define VM_MEMSLOT_EARLY_END 0x800000ull     /* ABI_FREE_BASE */
#define VM_MEMSLOT_CHUNKS 16u
#define VM_MEMSLOT_CHUNK_MIN (256ull << 20)
#define VM_MEMSLOT_ALIGN (2ull << 20)        /* slots never split a huge page */
#define VM_MEMSLOT_EARLY (GUEST_MEMORY_MAX_REGIONS * VM_MEMSLOT_CHUNKS)
#define VM_MEMSLOTS (VM_MEMSLOT_EARLY + 1)

/* A KVM memory slot as KVM has it now. */
struct vm_memslot {
	bool used;
	uint64_t gpa, size;
	void *hva;
	bool readonly;
};
struct vm_state;

/*
 * Locking legend: (c) set before vCPUs start, then constant; (l) vm->lock; (a) atomic,
 * read and written lock-free; (m) the monitor thread only; (p) the KVM opener's
 * (vm_kvm_opening) until vm_memslots_settle, then changed only with the VM paused
 * (vm_pause) by the one thread that paused it; (f) a forked child's, set by fork before
 * the child serves, then read by its threads.
 */
#define VM_MAX_EXPORTS 8 /* ranges one VM exports (vm-export) */

struct vm {
	struct vm_config cfg;          /* (c) */
	struct kvm kvm;                /* (c) */
	struct guest_memory mem;       /* (c) */
	struct ioport_table ports;     /* (c) the devices' ranges (ioport_devices) */
	struct console console;        /* the devices' output: standard output and the log (its own lock) */
	void *device_state[IOPORT_MAX_DEVICES]; /* (c) each device's own, by its place in ioport_devices */
	atomic_uint_fast32_t id_value; /* (a) ABI_ID(generation, index): which VM of a fork this is
					  (the identity port tells the guest) */
	struct vcpu *vcpus;            /* (c) cfg.ncpus of them */
	struct vm_memslot memslots[VM_MEMSLOTS]; /* (p) by slot number */
	pthread_mutex_t lock;          /* (c) */
	pthread_cond_t stopped_cond;   /* (l) signalled when stop_status is set, and at the first run */
	pthread_cond_t park_cond;      /* (l) signalled when pause_count or parked changes */
	atomic_bool stopping_flag;     /* (l) written, read lock-free: a verdict was reached */
	int stop_status;               /* (l) exit status of the VM, see vm_exit_status */
	atomic_uint pause_count;       /* (l) written, read lock-free: vCPUs run only at 0 */
	unsigned parked;               /* (l) vCPU threads waiting in vcpu_park */
	unsigned running_threads;      /* (l) vCPU threads still in their run loop */
	struct monitor *monitor;       /* (l) set (release) by vm_monitor_start, taken away under
					* vm->lock by vm_monitor_stop; read with acquire; NULL: none */
	bool user_paused;              /* (m) paused by the monitor's stop */
	bool quit_requested;           /* (m) the monitor's quit ended the VM */
	atomic_bool snapshot_busy;     /* (a) a snapshot is being taken */
	atomic_bool snapshot_cancel;   /* (a) job-cancel asked the snapshot being taken to stop */
	atomic_ullong snapshot_done, snapshot_total; /* (a) its pages of RAM gone through, and in all */
	struct {                       /* (a) totals over this VM's snapshots (the store's dedup) */
		atomic_ullong count, pages_listed, pages_stored, pages_shared, pages_zero, collisions;
		atomic_ullong last_pause_ns, last_total_ns;
		atomic_ullong last_prearm_ns, last_pause_protected; /* the write protection before and in the pause */
	} snapshots;
	atomic_ullong first_run_ns;    /* (a) CLOCK_MONOTONIC when a vCPU first entered the guest, 0 before */
	atomic_ullong memslot_wait_accesses; /* (a) guest accesses done by a vCPU thread while slots were made */
	pthread_t snapshot_thread;     /* (m) the monitor's snapshot-save worker */
	bool snapshot_thread_started;  /* (m) */
	unsigned children_made;        /* (m) forked children so far: the next is children_made + 1 */
	int ready_fd;                  /* (f) a forked child's pipe to its parent, -1 otherwise */
	atomic_int detach_fd;          /* (a) cfg.detach_fd until vm_serve has used it (a forked
					  child closes its copy), then -1 */
	struct vm_kvm_opening *kvm_opening; /* (c) KVM's opener: see vm_memslots_settle; NULL before vm_create */
	unsigned fork_index;           /* (f) a forked child's number (NAME.K), 0 otherwise */
	char origin_store[4096];       /* (c) the store the VM was restored from (store_locate), or "" */
	char origin_name[64];          /* (c) the snapshot it was restored from, or "" */
	/* (s) changed only by the snapshot holding snapshot_busy: the last snapshot the VM
	 * stored and keeps its RAM's base as (snapshot.h), its next snapshot's parent there. */
	struct store *store;           /* (s) the store of the last snapshot, kept open, or NULL */
	struct checkpoint_job *checkpoint; /* (l) continuous checkpoints (checkpoint.h), or NULL */
	struct store_snapshot *base_snap; /* (s) opened pinned for this VM, or NULL */
	struct guest_export *exports[VM_MAX_EXPORTS]; /* (m) vm-export's ranges (NULL: a free slot), each
					  served until vm_destroy, after guest memory is gone */
	unsigned exports_made;         /* (m) vm-exports so far: N of the next NAME.export-N.sock */
	char base_store[4096];         /* (s) its store (store_locate), or "" */
	char base_name[64];            /* (s) its name, or "" */
};

/* Start building a VM before its configuration is known in full (restore reads it from
 * the store meanwhile): KVM's VM is opened, with @kvm_path (NULL: /dev/kvm), on a thread of
 * its own. vm_create finishes; errors of the opening come out there. */
void vm_prepare(struct vm *vm, const char *kvm_path);

/* Build the VM described by @cfg: KVM, RAM, devices, the loaded guest and its vCPUs (after
 * vm_prepare, or from nothing). Returns 0 or -errno with a one-line message (error_message()). */
int vm_create(struct vm *vm, const struct vm_config *cfg);

/* Start the vCPUs' threads (a failure is reported and stops the VM: vm_wait says so). */
void vm_start(struct vm *vm);

/* Sleep until a vCPU has entered the guest, the VM stops or is paused (at most ~20 ms).
 * For the thread that started the VM, before work of its own: a vCPU thread just made
 * waits for a CPU, and on a host of two this thread's would otherwise be taken. */
void vm_await_first_run(struct vm *vm);

/* Wait until the guest exits or a verdict is reached (or --timeout passes), then end the
 * vCPUs' threads; returns the exit status. */
int vm_wait(struct vm *vm);

/* vm_start, then vm_wait. */
int vm_run(struct vm *vm);

/* Reach a verdict: the first call sets the VM's exit status and returns true; later calls
 * change nothing and return false. Callable from any thread. */
bool vm_stop(struct vm *vm, int status);

/* vm_stop that, when it is the first, prints "vmm: @message" on standard error before the
 * verdict can be seen: for threads the exiting thread does not wait for (the fault thread),
 * whose line would otherwise race the process's exit. */
bool vm_stop_saying(struct vm *vm, int status, const char *message);

/*
 * Pause the guest: returns once no vCPU is inside KVM_RUN (each waits, parked, until the
 * matching vm_resume). Pauses nest; the guest runs again when every pause is resumed.
 * Returns false when the VM is stopping (then nothing needs resuming). Any thread but a
 * vCPU's own.
 */
bool vm_pause(struct vm *vm);
void vm_resume(struct vm *vm);

/* Park the calling vCPU thread while the VM is paused (the vCPU loop calls this). */
void vm_park(struct vm *vm);

/*
 * In a child process made by fork(2) from a VM paused with its domain lock held by the
 * forking thread: make the copy a VM of its own — fresh locks, a new KVM VM with vCPUs in
 * @state, a new userfaultfd over the same (now copy-on-write shared) guest RAM, a fault
 * thread. The caller then starts its monitor and runs it. 0 or -errno with a message.
 */
int vm_fork_child_setup(struct vm *vm, const struct vm_state *state);

/* Bring KVM's memory slots in line with the guest memory regions (after a region change,
 * with the VM paused). 0 or -errno with a message. */
int vm_sync_memslots(struct vm *vm);

/* Wait until the memory slots of vm_create exist (it returns before all of them do: the
 * guest starts meanwhile, see vm_kvm_opening in vm.c). 0, or -errno with a message when
 * they could not be made (the VM is stopped then). Any thread; cheap once settled. */
int vm_memslots_settle(struct vm *vm);

/* Report the VM's statistics as flat dotted keys (vm.*, vcpu.N.*, and guest_memory_stats;
 * beside them virsh domstats' names: state.*, vcpu.current|maximum, vcpu.N.state|time,
 * balloon.*). The monitor thread, or any once the VM has stopped. */
void vm_stats(struct vm *vm, void (*emit)(void *arg, const char *key, uint64_t value), void *arg);

/* Release everything vm_create made. */
void vm_destroy(struct vm *vm);

#endif

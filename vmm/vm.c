#include "vmm/vm.h"

#include <errno.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
#include <time.h>

#include "guest/abi.h"
#include "vmm/boot.h"
#include "vmm/clock.h"
#include "vmm/error.h"
#include "vmm/kvm_stats.h"
#include "vmm/lifecycle/checkpoint.h"
#include "vmm/loader.h"
#include "vmm/store/store.h"
#include "vmm/vcpu.h"
#include "vmm/vm_state.h"

_Static_assert(VM_MEMSLOT_EARLY_END == ABI_FREE_BASE, "the early slot is the guest kernel's memory");

/* Read and check the guest image against the memory layout, before any device is opened. */
static int vm_check_guest(const struct vm_config *cfg, void **image, size_t *size, struct loader_result *lr)
{
	int r = loader_read_file(cfg->guest, image, size);
	if (r)
		return r;
	struct guest_memory layout;
	r = guest_memory_layout(&layout, &cfg->mem);
	if (!r)
		r = loader_check_pvh(*image, *size, cfg->guest, &layout, BOOT_INFO_GPA, BOOT_INFO_LEN, lr);
	if (r) {
		free(*image);
		*image = NULL;
	}
	return r;
}

static void vm_memory_error(void *arg, int err, const char *message)
{
	struct vm *vm = arg;
	/* A guest breaking the map's protections is the guest's error, as an access outside
	 * guest memory is; anything else is the host's (a pager failed). */
	vm_stop_saying(vm, err == EACCES ? VM_EXIT_BAD_ACCESS : VM_EXIT_VMM_ERROR, message);
}

/* The VM's locks and conditions, fresh (at creation, and in a forked child whose copies
 * may have been held by threads that do not exist there). */
static void vm_init_sync(struct vm *vm)
{
	pthread_mutex_init(&vm->lock, NULL);
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC); /* the --timeout deadline is monotonic */
	pthread_cond_init(&vm->stopped_cond, &ca);
	pthread_condattr_destroy(&ca);
	pthread_cond_init(&vm->park_cond, NULL);
}

/* The KVM memory slots guest memory's regions want, by slot number (see VM_MEMSLOTS). */
static void vm_memslots_wanted(const struct vm *vm, struct vm_memslot want[VM_MEMSLOTS])
{
	memset(want, 0, VM_MEMSLOTS * sizeof(want[0]));
	unsigned n;
	const struct guest_region *regions = guest_memory_regions(&vm->mem, &n);
	for (unsigned i = 0; i < n; i++) {
		const struct guest_region *g = &regions[i];
		bool ro = guest_region_read_only(g);
		uint64_t gpa = g->gpa, size = g->size;
		uint8_t *hva = g->hva;
		if (gpa < VM_MEMSLOT_EARLY_END && gpa + size > VM_MEMSLOT_EARLY_END) {
			uint64_t head = VM_MEMSLOT_EARLY_END - gpa;
			want[VM_MEMSLOT_EARLY] = (struct vm_memslot){true, gpa, head, hva, ro};
			gpa += head;
			size -= head;
			hva += head;
		}
		uint64_t chunk = (size + VM_MEMSLOT_CHUNKS - 1) / VM_MEMSLOT_CHUNKS;
		chunk = (chunk + VM_MEMSLOT_ALIGN - 1) & ~(VM_MEMSLOT_ALIGN - 1);
		if (chunk < VM_MEMSLOT_CHUNK_MIN)
			chunk = VM_MEMSLOT_CHUNK_MIN;
		for (unsigned k = 0; size; k++) {
			uint64_t n = size < chunk ? size : chunk;
			want[g->slot * VM_MEMSLOT_CHUNKS + k] = (struct vm_memslot){true, gpa, n, hva, ro};
			gpa += n;
			size -= n;
			hva += n;
		}
	}
}

/* Make KVM's slots those of @want, touching only the slots that differ; with @early_only,
 * only the slots that end by VM_MEMSLOT_EARLY_END are made. */
static int vm_memslots_apply(struct vm *vm, const struct vm_memslot want[VM_MEMSLOTS], bool early_only)
{
	/* Slots that change go first (KVM moves no slot: delete, then set), so no two overlap. */
	for (unsigned s = 0; s < VM_MEMSLOTS; s++) {
		struct vm_memslot *have = &vm->memslots[s];
		if (have->used && memcmp(have, &want[s], sizeof(*have)) != 0) {
			int r = kvm_set_memory(&vm->kvm, s, have->gpa, 0, have->hva, false);
			if (r)
				return r;
			have->used = false;
		}
	}
	for (unsigned s = 0; s < VM_MEMSLOTS; s++) {
		if (!want[s].used || vm->memslots[s].used ||
		    (early_only && want[s].gpa + want[s].size > VM_MEMSLOT_EARLY_END))
			continue;
		int r = kvm_set_memory(&vm->kvm, s, want[s].gpa, want[s].size, want[s].hva, want[s].readonly);
		if (r)
			return r;
		vm->memslots[s] = want[s];
	}
	return 0;
}

int vm_sync_memslots(struct vm *vm)
{
	int r = vm_memslots_settle(vm);
	if (r)
		return r;
	struct vm_memslot want[VM_MEMSLOTS];
	vm_memslots_wanted(vm, want);
	return vm_memslots_apply(vm, want, false);
}

/* @vm's vCPUs, in KVM's VM (registers as KVM makes them). */
static int vm_kvm_vcpus(struct vm *vm)
{
	if (vm->cfg.ncpus > vm->kvm.max_vcpus)
		return error_set(EINVAL, "KVM allows at most %u vCPUs per VM here", vm->kvm.max_vcpus);
	if (!vm->vcpus && !(vm->vcpus = calloc(vm->cfg.ncpus, sizeof(*vm->vcpus))))
		return error_set(ENOMEM, "no memory for %u vCPUs", vm->cfg.ncpus);
	/* A restored VM's vCPUs get the CPU they had (and the host's table is not fetched). */
	const struct vm_state *state = vm->cfg.restore;
	int r = state ? kvm_use_cpuid(&vm->kvm, state->cpuid, state->ncpuid) : 0;
	for (unsigned i = 0; !r && i < vm->cfg.ncpus; i++)
		r = vcpu_create(&vm->vcpus[i], vm, i);
	return r;
}

/* KVM's VM and its vCPUs, no memory slots yet. */
static int vm_kvm_open(struct vm *vm)
{
	memset(vm->memslots, 0, sizeof(vm->memslots));
	int r = kvm_open(&vm->kvm, vm->cfg.kvm_path);
	if (!r)
		kvm_open_stats(&vm->kvm);
	return r ? r : vm_kvm_vcpus(vm);
}

/*
 * KVM's part of start-up, beside guest memory's. A thread of its own (the opener) opens
 * KVM's VM, makes the vCPUs (a restored VM's in their saved state) and then the memory
 * slots of guest memory's regions; the creating thread hands over what those need once it
 * knows it (vm_kvm_open_give: vm->cfg, and the slots once guest memory is placed) and goes
 * on building guest memory meanwhile. Here a slot costs KVM time in proportion to its size
 * (shadow paging allocates its reverse maps: 0.6 ms per GiB), the VM and the vCPUs each
 * about as long as setting up guest memory: all of it goes on at once.
 *
 * The opening of the VM, the vCPUs and the early slots are steps done by whichever thread
 * comes to them first (vm_kvm_step): the opener may start late (a CPU that idles takes up
 * to 1.5 ms to wake in this nested VM), and when the creating thread finds the opener
 * busy with the vCPUs it makes the early slots itself.
 *
 * The slots come in two parts. The early one, guest-physical memory below
 * VM_MEMSLOT_EARLY_END (the guest kernel: its code, page tables, descriptor tables and
 * stacks), costs nothing and is all vm_create waits for. The rest is made while the guest
 * already runs: until it is, a guest access there exits to the vCPU's thread as MMIO,
 * which waits for the slots (vm_memslots_settle) and performs the access on the host's
 * mapping. So a guest starts in the same time whatever its size.
 *
 * The opener owns vm->memslots until it is done; vm_memslots_settle waits for that and
 * joins it. The creating thread frees it (vm_destroy).
 */
struct vm_kvm_step {
	atomic_bool claimed; /* a thread does (or did) it */
	atomic_bool done;    /* it is over: r says how */
	int r;               /* 0, or -errno and message says why */
	char message[256];   /* error messages are per thread: the doer's, carried over */
};

struct vm_kvm_opening {
	pthread_t thread;
	bool started;       /* the opener is a thread (else the creating thread does its work) */
	struct vm *vm;
	const char *kvm_path;   /* its own: vm->cfg is written after the opener starts */
	atomic_bool given;      /* vm->cfg and want are set (both unused when abandoned) */
	bool abandoned;         /* vm_create failed before it could give them */
	struct vm_kvm_step open, vcpus, early; /* a failed open leaves the other two undone */
	cpu_set_t cpus;     /* where the process may run: the opener's own once it started */
	struct vm_memslot want[VM_MEMSLOTS];
	int slots_r;        /* the rest of the slots: 0, or -errno and slots_message says why */
	char slots_message[256];
	pthread_mutex_t lock;
	pthread_cond_t done_cond; /* signalled when done is set */
	bool done;          /* (lock) all slots exist, or one of the results says why not */
	bool joined;        /* (lock) the opener thread is joined */
	uint64_t done_ns;   /* (lock) CLOCK_MONOTONIC when done */
};

/* Wait for @flag, set by the other thread. Start-up waits are short (a KVM call going on
 * there), and a thread sleeping here would be woken late: onto its waker's CPU, busy in
 * its next KVM call, while the other CPU idles. So spin, yielding the CPU. */
static void vm_kvm_open_await(atomic_bool *flag)
{
	while (!atomic_load_explicit(flag, memory_order_acquire))
		sched_yield();
}

typedef int vm_kvm_step_fn(struct vm_kvm_opening *o);

/* @step done by this thread with @fn, unless another thread claimed it first; then over.
 * Its result (0 also when it was not done because an earlier step failed). */
static int vm_kvm_step(struct vm_kvm_opening *o, struct vm_kvm_step *step, vm_kvm_step_fn *fn)
{
	if (!atomic_exchange_explicit(&step->claimed, true, memory_order_acq_rel)) {
		step->r = fn(o);
		if (step->r)
			snprintf(step->message, sizeof(step->message), "%s", error_message());
		atomic_store_explicit(&step->done, true, memory_order_release);
	}
	vm_kvm_open_await(&step->done);
	return step->r;
}

static int vm_kvm_open_do_open(struct vm_kvm_opening *o)
{
	memset(o->vm->memslots, 0, sizeof(o->vm->memslots));
	return kvm_open(&o->vm->kvm, o->kvm_path);
}

/* The VM opened and what vm_create gives handed over: false when a step before failed
 * (its result tells) or vm_create did. */
static bool vm_kvm_open_ready(struct vm_kvm_opening *o)
{
	if (vm_kvm_step(o, &o->open, vm_kvm_open_do_open))
		return false;
	vm_kvm_open_await(&o->given);
	return !o->abandoned;
}

/* The vCPUs, and a restored VM's vCPUs in their saved state: nothing but them needed. */
static int vm_kvm_open_do_vcpus(struct vm_kvm_opening *o)
{
	if (!vm_kvm_open_ready(o))
		return 0;
	const struct vm_state *state = o->vm->cfg.restore;
	int r = vm_kvm_vcpus(o->vm);
	return r || !state ? r : vm_state_apply_vcpus(o->vm, state);
}

static int vm_kvm_open_do_early(struct vm_kvm_opening *o)
{
	return vm_kvm_open_ready(o) ? vm_memslots_apply(o->vm, o->want, true) : 0;
}

static void vm_kvm_open_done(struct vm_kvm_opening *o)
{
	pthread_mutex_lock(&o->lock);
	o->done = true;
	o->done_ns = clock_monotonic_ns();
	pthread_cond_broadcast(&o->done_cond);
	pthread_mutex_unlock(&o->lock);
}

/* The rest of the slots, once the early ones exist, and the VM's statistics; then done. A
 * failure here is the VM's end: the guest may already run. */
static void vm_kvm_open_do_rest(struct vm_kvm_opening *o)
{
	if (!vm_kvm_step(o, &o->early, vm_kvm_open_do_early) && !o->open.r && !o->abandoned &&
	    (o->slots_r = vm_memslots_apply(o->vm, o->want, false)) != 0) {
		snprintf(o->slots_message, sizeof(o->slots_message), "%s", error_message());
		vm_stop_saying(o->vm, VM_EXIT_VMM_ERROR, o->slots_message);
	}
	if (!o->open.r)
		kvm_open_stats(&o->vm->kvm);
	vm_kvm_open_done(o);
}

static void *vm_kvm_open_main(void *arg)
{
	struct vm_kvm_opening *o = arg;
	pthread_setaffinity_np(pthread_self(), sizeof(o->cpus), &o->cpus); /* started: anywhere now */
	vm_kvm_step(o, &o->vcpus, vm_kvm_open_do_vcpus);
	vm_kvm_open_do_rest(o);
	return NULL;
}

/* A new opening for @vm, started; NULL when there is no memory for one. */
static struct vm_kvm_opening *vm_kvm_open_start(struct vm *vm, const char *kvm_path)
{
	struct vm_kvm_opening *o = calloc(1, sizeof(*o));
	if (!o)
		return NULL;
	o->vm = vm;
	o->kvm_path = kvm_path;
	atomic_init(&o->given, false);
	struct vm_kvm_step *steps[] = {&o->open, &o->vcpus, &o->early};
	for (size_t i = 0; i < sizeof(steps) / sizeof(steps[0]); i++) {
		atomic_init(&steps[i]->claimed, false);
		atomic_init(&steps[i]->done, false);
	}
	pthread_mutex_init(&o->lock, NULL);
	pthread_cond_init(&o->done_cond, NULL);
	/* Started on another CPU than this thread's: left to itself, the scheduler often
	 * queues a new thread behind its busy creator (here until the next tick, 4 ms) while
	 * the other CPU idles. */
	pthread_attr_t attr;
	pthread_attr_init(&attr);
	int here = sched_getcpu();
	cpu_set_t elsewhere = {0};
	if (sched_getaffinity(0, sizeof(o->cpus), &o->cpus) == 0 && here >= 0) {
		elsewhere = o->cpus;
		CPU_CLR(here, &elsewhere);
		if (CPU_COUNT(&elsewhere) > 0)
			pthread_attr_setaffinity_np(&attr, sizeof(elsewhere), &elsewhere);
	} else {
		CPU_ZERO(&o->cpus);
		for (int c = 0; c < CPU_SETSIZE; c++)
			CPU_SET(c, &o->cpus);
	}
	o->started = pthread_create(&o->thread, &attr, vm_kvm_open_main, o) == 0;
	pthread_attr_destroy(&attr);
	return o;
}

/* Hand the opener vm->cfg and the slots of guest memory as it is now (NULL @vm: nothing,
 * vm_create failed). Only the creating thread calls this; the first call counts. */
static void vm_kvm_open_give(struct vm_kvm_opening *o, const struct vm *vm)
{
	if (atomic_load(&o->given))
		return;
	if (vm)
		vm_memslots_wanted(vm, o->want);
	o->abandoned = !vm;
	atomic_store_explicit(&o->given, true, memory_order_release);
}

/* The first failure of the steps (and with @slots, of the rest of the slots): its result
 * (0 when none failed) and, in *message, why. */
static int vm_kvm_open_failure(const struct vm_kvm_opening *o, bool slots, const char **message)
{
	const struct vm_kvm_step *steps[] = {&o->open, &o->vcpus, &o->early};
	for (size_t i = 0; i < sizeof(steps) / sizeof(steps[0]); i++)
		if (steps[i]->r) {
			*message = steps[i]->message;
			return steps[i]->r;
		}
	*message = o->slots_message;
	return slots ? o->slots_r : 0;
}

/* The VM, its vCPUs and the early slots, each made here unless the opener started it
 * (without an opener thread, all of the slots); the opening's result, its message made this
 * thread's. Without @say vm_create has failed already: nothing more is done here (and this
 * thread's message stays its own). The early slots first: when the opener is busy making
 * the vCPUs they are made here meanwhile. */
static int vm_kvm_open_await_ready(struct vm_kvm_opening *o, bool say)
{
	vm_kvm_open_give(o, NULL); /* if not given yet: nothing to wait for */
	if (!say) {
		if (!o->started)
			vm_kvm_open_done(o);
		return 0;
	}
	vm_kvm_step(o, &o->early, vm_kvm_open_do_early);
	vm_kvm_step(o, &o->vcpus, vm_kvm_open_do_vcpus);
	if (!o->started)
		vm_kvm_open_do_rest(o);
	const char *message;
	int r = vm_kvm_open_failure(o, false, &message);
	return r ? error_set(-r, "%s", message) : 0;
}

/* When the opener was done (0: not yet, or no opener). */
static uint64_t vm_memslots_done_ns(struct vm *vm)
{
	struct vm_kvm_opening *o = vm->kvm_opening;
	if (!o)
		return 0;
	pthread_mutex_lock(&o->lock);
	uint64_t t = o->done ? o->done_ns : 0;
	pthread_mutex_unlock(&o->lock);
	return t;
}

/* Wait until the opener is done and joined; its first failure's result (0: none). */
static int vm_kvm_open_finish(struct vm_kvm_opening *o)
{
	pthread_mutex_lock(&o->lock);
	while (!o->done)
		pthread_cond_wait(&o->done_cond, &o->lock);
	if (o->started && !o->joined) {
		pthread_join(o->thread, NULL);
		o->joined = true;
	}
	pthread_mutex_unlock(&o->lock);
	const char *message;
	return vm_kvm_open_failure(o, true, &message);
}

int vm_memslots_settle(struct vm *vm)
{
	struct vm_kvm_opening *o = vm->kvm_opening;
	if (!o || !vm_kvm_open_finish(o))
		return 0;
	const char *message;
	int r = vm_kvm_open_failure(o, true, &message);
	return error_set(-r, "%s", message);
}

/* With KVM open and the early slots made: the vCPUs in their PVH boot state (@entry,
 * @start_info) or, with @state, in that state. */
static int vm_kvm_setup(struct vm *vm, uint64_t entry, uint64_t start_info, const struct vm_state *state)
{
	if (state)
		return vm_state_apply(vm, state);
	int r = 0;
	for (unsigned i = 0; !r && i < vm->cfg.ncpus; i++)
		r = vcpu_set_boot_state(&vm->vcpus[i], entry, start_info);
	return r;
}

/* A VM with nothing in it yet. */
static void vm_init(struct vm *vm)
{
	memset(vm, 0, sizeof(*vm));
	vm->kvm.vm_fd = -1;
	guest_memory_init(&vm->mem);
	atomic_init(&vm->stopping_flag, false);
	vm_init_sync(vm);
	atomic_init(&vm->pause_count, 0);
	atomic_init(&vm->snapshot_busy, false);
	atomic_init(&vm->first_run_ns, 0);
	atomic_init(&vm->memslot_wait_accesses, 0);
	vm->ready_fd = -1;
	atomic_init(&vm->detach_fd, -1);
	console_init(&vm->console, -1);
}

void vm_prepare(struct vm *vm, const char *kvm_path)
{
	vm_init(vm);
	vm->kvm_opening = vm_kvm_open_start(vm, kvm_path); /* NULL: vm_create tries again */
}

int vm_create(struct vm *vm, const struct vm_config *cfg)
{
	if (!vm->kvm_opening) /* else prepared: KVM is being opened already */
		vm_init(vm);
	vm->cfg = *cfg;
	vm->console.out_fd = cfg->console_fd; /* no thread writes to it yet */
	if (cfg->detach)
		atomic_store(&vm->detach_fd, cfg->detach_fd);

	void *image = NULL;
	size_t size = 0;
	struct loader_result lr = {0};
	uint64_t start_info = 0;
	/* A restored VM has its memory and registers already: nothing to load. */
	int r = cfg->restore ? 0 : vm_check_guest(cfg, &image, &size, &lr);
	/* A bad image is reported as such on any host: KVM's errors come out later. */
	if (!r && !vm->kvm_opening && !(vm->kvm_opening = vm_kvm_open_start(vm, cfg->kvm_path)))
		r = error_set(ENOMEM, "no memory to open KVM");
	struct vm_kvm_opening *kvm_opening = vm->kvm_opening;
	/* The memory slots need only the regions' places: the opener makes them while the
	 * rest of guest memory is built. */
	if (!r)
		r = guest_memory_place(&vm->mem, &cfg->mem);
	if (!r)
		vm_kvm_open_give(kvm_opening, vm);
	if (!r)
		r = guest_memory_create(&vm->mem, &cfg->mem);
	if (!r && cfg->restore)
		r = vm_state_apply_map(vm, cfg->restore);
	if (!r && cfg->record_working_set)
		guest_memory_record_working_set(&vm->mem);
	if (!r && cfg->prefetch)
		r = guest_memory_set_prefetch(&vm->mem, cfg->prefetch, cfg->prefetch_path);
	if (!r && !cfg->restore)
		r = loader_load_pvh(image, size, cfg->guest, &vm->mem, BOOT_INFO_GPA, BOOT_INFO_LEN, &lr);
	free(image);
	if (!r && !cfg->restore)
		r = boot_write_start_info(&vm->mem, cfg->cmdline, &start_info);
	/* The fault thread is needed only once the guest runs, but costs a thread's start:
	 * here it is made while KVM is still being opened. */
	if (!r)
		r = guest_memory_start(&vm->mem, vm_memory_error, vm);
	if (!r)
		r = ioport_attach_devices(vm);
	/* Guest memory's errors come first; the rest of the slots are made meanwhile. */
	int kr = kvm_opening ? vm_kvm_open_await_ready(kvm_opening, !r) : 0;
	if (!r)
		r = kr;
	if (!r && cfg->restore) /* its vCPUs' state is loaded with them */
		vm_state_apply_devices(vm, cfg->restore);
	if (!r && !cfg->restore)
		r = vm_kvm_setup(vm, lr.entry, start_info, NULL);
	if (r)
		goto err;
	if (cfg->origin_store)
		snprintf(vm->origin_store, sizeof(vm->origin_store), "%s", cfg->origin_store);
	if (cfg->origin_name)
		snprintf(vm->origin_name, sizeof(vm->origin_name), "%s", cfg->origin_name);
	return 0;

err:
	vm_destroy(vm);
	return r;
}

int vm_fork_child_setup(struct vm *vm, const struct vm_state *state)
{
	/* What the child holds of the parent's: its KVM descriptors and mappings (the KVM VM
	 * cannot be used from another process), its vCPU threads, its locks' states. */
	for (unsigned i = 0; i < vm->cfg.ncpus; i++) {
		struct vcpu *c = &vm->vcpus[i];
		if (c->run)
			munmap(c->run, vm->kvm.run_size);
		if (c->fd >= 0)
			close(c->fd);
		kvm_stats_close(c->stats);
	}
	memset(vm->vcpus, 0, vm->cfg.ncpus * sizeof(*vm->vcpus));
	kvm_close(&vm->kvm);
	vm_init_sync(vm);
	atomic_store(&vm->stopping_flag, false);
	atomic_store(&vm->pause_count, 0);
	atomic_store(&vm->snapshot_busy, false);
	vm->parked = vm->running_threads = 0;
	vm->stop_status = 0;
	vm->monitor = NULL;
	vm->user_paused = vm->quit_requested = false;
	vm->snapshot_thread_started = false;
	/* The pipe to a `vmm run -d` still waiting for the parent is not the child's to answer. */
	int detach_fd = atomic_exchange(&vm->detach_fd, -1);
	if (detach_fd >= 0)
		close(detach_fd);
	vm->cfg.detach = false;
	/* The parent records its own working set (into the file it was given): not a child. */
	vm->cfg.record_working_set = NULL;
	guest_memory_stop_recording(&vm->mem);
	/* The parent's opening was settled (it forks paused): its copy is only memory here. */
	free(vm->kvm_opening);
	vm->kvm_opening = NULL;
	int r = guest_memory_reattach(&vm->mem);
	if (!r)
		r = vm_kvm_open(vm);
	if (!r)
		r = vm_sync_memslots(vm);
	if (!r)
		r = vm_kvm_setup(vm, 0, 0, state);
	if (!r)
		r = guest_memory_start(&vm->mem, vm_memory_error, vm);
	return r;
}

bool vm_stop(struct vm *vm, int status)
{
	return vm_stop_saying(vm, status, NULL);
}

bool vm_stop_saying(struct vm *vm, int status, const char *message)
{
	bool first = false;
	pthread_mutex_lock(&vm->lock);
	if (!atomic_load(&vm->stopping_flag)) {
		if (message) /* under the lock: vm_wait cannot return before the line is out */
			fprintf(stderr, "vmm: %s\n", message);
		vm->stop_status = status;
		atomic_store(&vm->stopping_flag, true);
		pthread_cond_broadcast(&vm->stopped_cond);
		pthread_cond_broadcast(&vm->park_cond);
		first = true;
	}
	pthread_mutex_unlock(&vm->lock);
	/* A fault waiting on a pager holds the domain lock the stop path needs (write-back,
	 * statistics): it gives way now instead of at its pager's deadline. */
	if (first)
		guest_memory_cancel(&vm->mem);
	return first;
}

bool vm_pause(struct vm *vm)
{
	/* What pauses the guest may change its memory or copy the process: the opener has
	 * finished first (its failure stops the VM, which the pause then sees). */
	if (vm->kvm_opening)
		vm_kvm_open_finish(vm->kvm_opening);
	pthread_mutex_lock(&vm->lock);
	atomic_fetch_add(&vm->pause_count, 1);
	pthread_mutex_unlock(&vm->lock);
	for (unsigned i = 0; i < vm->cfg.ncpus; i++)
		vcpu_kick(&vm->vcpus[i]);
	pthread_mutex_lock(&vm->lock);
	while (vm->parked < vm->running_threads && !atomic_load(&vm->stopping_flag))
		pthread_cond_wait(&vm->park_cond, &vm->lock);
	bool ok = !atomic_load(&vm->stopping_flag);
	if (!ok)
		atomic_fetch_sub(&vm->pause_count, 1);
	pthread_mutex_unlock(&vm->lock);
	return ok;
}

void vm_resume(struct vm *vm)
{
	pthread_mutex_lock(&vm->lock);
	if (atomic_load(&vm->pause_count) > 0 && atomic_fetch_sub(&vm->pause_count, 1) == 1)
		pthread_cond_broadcast(&vm->park_cond);
	pthread_mutex_unlock(&vm->lock);
}

void vm_park(struct vm *vm)
{
	pthread_mutex_lock(&vm->lock);
	vm->parked++;
	pthread_cond_broadcast(&vm->park_cond);
	while (atomic_load(&vm->pause_count) > 0 && !atomic_load(&vm->stopping_flag))
		pthread_cond_wait(&vm->park_cond, &vm->lock);
	vm->parked--;
	pthread_mutex_unlock(&vm->lock);
}

void vm_start(struct vm *vm)
{
	int r = vcpu_signals_init();
	for (unsigned i = 0; !r && i < vm->cfg.ncpus; i++) {
		pthread_mutex_lock(&vm->lock);
		vm->running_threads++;
		pthread_mutex_unlock(&vm->lock);
		r = vcpu_start(&vm->vcpus[i]);
		if (r) {
			pthread_mutex_lock(&vm->lock);
			vm->running_threads--;
			pthread_mutex_unlock(&vm->lock);
		}
	}
	if (r) {
		fprintf(stderr, "vmm: %s\n", error_message());
		vm_stop(vm, VM_EXIT_VMM_ERROR);
	}
}

/* CLOCK_MONOTONIC @ms from now: a deadline for stopped_cond. */
static struct timespec vm_deadline_in(uint64_t ms)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	t.tv_sec += (time_t)(ms / 1000);
	t.tv_nsec += (long)(ms % 1000) * 1000000L;
	if (t.tv_nsec >= 1000000000L) {
		t.tv_sec++;
		t.tv_nsec -= 1000000000L;
	}
	return t;
}

void vm_await_first_run(struct vm *vm)
{
	struct timespec deadline = vm_deadline_in(20);
	pthread_mutex_lock(&vm->lock);
	while (!atomic_load(&vm->first_run_ns) && !atomic_load(&vm->stopping_flag) && !atomic_load(&vm->pause_count) &&
	       pthread_cond_timedwait(&vm->stopped_cond, &vm->lock, &deadline) != ETIMEDOUT)
		;
	pthread_mutex_unlock(&vm->lock);
}

int vm_wait(struct vm *vm)
{
	struct timespec deadline = vm_deadline_in(vm->cfg.timeout_ms);
	pthread_mutex_lock(&vm->lock);
	while (!atomic_load(&vm->stopping_flag)) {
		if (!vm->cfg.timeout_ms) {
			pthread_cond_wait(&vm->stopped_cond, &vm->lock);
			continue;
		}
		struct timespec now;
		clock_gettime(CLOCK_MONOTONIC, &now);
		if (now.tv_sec > deadline.tv_sec || (now.tv_sec == deadline.tv_sec && now.tv_nsec >= deadline.tv_nsec)) {
			pthread_mutex_unlock(&vm->lock);
			fprintf(stderr, "vmm: guest stopped making progress: still running after the %llu ms timeout\n",
				(unsigned long long)vm->cfg.timeout_ms);
			for (unsigned i = 0; i < vm->cfg.ncpus; i++)
				atomic_store(&vm->vcpus[i].report_regs, true);
			vm_stop(vm, VM_EXIT_NO_PROGRESS);
			pthread_mutex_lock(&vm->lock);
			break;
		}
		pthread_cond_timedwait(&vm->stopped_cond, &vm->lock, &deadline);
	}
	int status = vm->stop_status;
	pthread_mutex_unlock(&vm->lock);

	for (unsigned i = 0; i < vm->cfg.ncpus; i++)
		vcpu_kick(&vm->vcpus[i]);
	for (unsigned i = 0; i < vm->cfg.ncpus; i++)
		vcpu_destroy(&vm->vcpus[i]);
	return status;
}

int vm_run(struct vm *vm)
{
	vm_start(vm);
	return vm_wait(vm);
}

/* The resident set of this process in KiB (/proc/self/statm), 0 when it cannot be read. */
static uint64_t vm_rss_kib(void)
{
	unsigned long long size, resident = 0;
	FILE *f = fopen("/proc/self/statm", "r");
	if (!f)
		return 0;
	if (fscanf(f, "%llu %llu", &size, &resident) != 2)
		resident = 0;
	fclose(f);
	return resident * (uint64_t)sysconf(_SC_PAGESIZE) / 1024;
}

/* The figures of 'virsh domstats' under libvirt's names, beside ours: state.state (1
 * running, 3 paused, 5 shut off), state.reason, vcpu.current and vcpu.maximum, per vCPU
 * vcpu.N.state (1 running) and vcpu.N.time (its thread's CPU time, ns), balloon.current
 * and balloon.maximum (guest RAM, KiB) and balloon.rss (the VMM's resident set, KiB). */
static void vm_stats_virsh(struct vm *vm, void (*emit)(void *arg, const char *key, uint64_t value), void *arg)
{
	char key[64];
	/* user_paused is the monitor thread's, which asks; at exit the VM is stopping. */
	emit(arg, "state.state", atomic_load(&vm->stopping_flag) ? 5 : vm->user_paused ? 3 : 1);
	emit(arg, "state.reason", 0);
	emit(arg, "vcpu.current", vm->cfg.ncpus);
	emit(arg, "vcpu.maximum", vm->cfg.ncpus);
	for (unsigned i = 0; vm->vcpus && i < vm->cfg.ncpus; i++) {
		snprintf(key, sizeof(key), "vcpu.%u.state", i);
		emit(arg, key, 1);
		snprintf(key, sizeof(key), "vcpu.%u.time", i);
		emit(arg, key, vcpu_cpu_time_ns(&vm->vcpus[i]));
	}
	emit(arg, "balloon.current", guest_memory_ram_size(&vm->mem) / 1024);
	emit(arg, "balloon.maximum", guest_memory_ram_size(&vm->mem) / 1024);
	emit(arg, "balloon.rss", vm_rss_kib());
}

void vm_stats(struct vm *vm, void (*emit)(void *arg, const char *key, uint64_t value), void *arg)
{
	char key[64];
	(void)vm_memslots_settle(vm); /* the opener makes the VM's statistics last */
	emit(arg, "vm.vcpus", vm->cfg.ncpus);
	emit(arg, "vm.ram_bytes", guest_memory_ram_size(&vm->mem));
	ioport_device_stats(vm, emit, arg);
	emit(arg, "vm.first_run_monotonic_ns", atomic_load(&vm->first_run_ns));
	emit(arg, "vm.memslots_done_monotonic_ns", vm_memslots_done_ns(vm));
	emit(arg, "vm.memslot_wait_accesses", atomic_load(&vm->memslot_wait_accesses));
	/* Deduplication happens where pages are stored: in the snapshot store. */
	emit(arg, "snapshot.count", atomic_load(&vm->snapshots.count));
	emit(arg, "snapshot.last_pause_ns", atomic_load(&vm->snapshots.last_pause_ns));
	emit(arg, "snapshot.last_total_ns", atomic_load(&vm->snapshots.last_total_ns));
	emit(arg, "snapshot.last_prearm_ns", atomic_load(&vm->snapshots.last_prearm_ns));
	emit(arg, "snapshot.last_pause_protected_pages", atomic_load(&vm->snapshots.last_pause_protected));
	emit(arg, "dedup.pages", atomic_load(&vm->snapshots.pages_listed));
	emit(arg, "dedup.stored", atomic_load(&vm->snapshots.pages_stored));
	emit(arg, "dedup.hits", atomic_load(&vm->snapshots.pages_shared));
	emit(arg, "dedup.zero_pages", atomic_load(&vm->snapshots.pages_zero));
	emit(arg, "dedup.collisions", atomic_load(&vm->snapshots.collisions));
	struct checkpoint_status cs;
	checkpoint_status(vm, &cs);
	emit(arg, "checkpoint.running", cs.state == CHECKPOINT_RUNNING);
	emit(arg, "checkpoint.taken", cs.taken);
	emit(arg, "checkpoint.skipped", cs.skipped);
	emit(arg, "checkpoint.late", cs.late);
	emit(arg, "checkpoint.deleted", cs.deleted);
	emit(arg, "checkpoint.max_pause_ns", cs.max_pause_ns);
	emit(arg, "checkpoint.last_total_ns", cs.last_total_ns);
	for (unsigned i = 0; vm->vcpus && i < vm->cfg.ncpus; i++) {
		snprintf(key, sizeof(key), "vcpu.%u.exits", i);
		emit(arg, key, vm->vcpus[i].exits);
	}
	/* KVM's own figures, by the kernel's names: kvm.NAME for the VM, vcpu.N.kvm.NAME. */
	if (vm->kvm.stats)
		kvm_stats_read(vm->kvm.stats, "kvm.", emit, arg);
	for (unsigned i = 0; vm->vcpus && i < vm->cfg.ncpus; i++) {
		if (!vm->vcpus[i].stats)
			continue;
		snprintf(key, sizeof(key), "vcpu.%u.kvm.", i);
		kvm_stats_read(vm->vcpus[i].stats, key, emit, arg);
	}
	guest_memory_stats(&vm->mem, emit, arg);
	vm_stats_virsh(vm, emit, arg);
}

void vm_destroy(struct vm *vm)
{
	/* The opener writes into vm->kvm and makes the vCPUs until it is done. */
	if (vm->kvm_opening) {
		vm_kvm_open_finish(vm->kvm_opening);
		pthread_mutex_destroy(&vm->kvm_opening->lock);
		pthread_cond_destroy(&vm->kvm_opening->done_cond);
		free(vm->kvm_opening);
		vm->kvm_opening = NULL;
	}
	if (vm->vcpus) {
		for (unsigned i = 0; i < vm->cfg.ncpus; i++) {
			if (vm->vcpus[i].vm)
				vcpu_destroy(&vm->vcpus[i]);
			kvm_stats_close(vm->vcpus[i].stats);
		}
		free(vm->vcpus);
		vm->vcpus = NULL;
	}
	kvm_close(&vm->kvm);
	guest_memory_destroy(&vm->mem);
	/* Only now: this VM's own mapping of each exported range gave its pages back first. */
	for (unsigned i = 0; i < VM_MAX_EXPORTS; i++) {
		if (vm->exports[i])
			guest_export_stop(vm->exports[i]);
		free(vm->exports[i]);
		vm->exports[i] = NULL;
	}
	store_snapshot_close(vm->base_snap);
	vm->base_snap = NULL;
	store_close(vm->store);
	vm->store = NULL;
	ioport_detach_devices(vm);
	console_close(&vm->console);
	pthread_mutex_destroy(&vm->console.lock);
	pthread_cond_destroy(&vm->stopped_cond);
	pthread_cond_destroy(&vm->park_cond);
	pthread_mutex_destroy(&vm->lock);
}

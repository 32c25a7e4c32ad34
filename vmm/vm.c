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
#include "vmm/error.h"
#include "vmm/kvm_stats.h"
#include "vmm/loader.h"
#include "vmm/vcpu.h"
#include "vmm/vm_state.h"

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

/* The KVM memory slots guest memory's regions want, by slot number. */
static void vm_memslots_wanted(const struct vm *vm, struct vm_memslot want[GUEST_MEMORY_MAX_REGIONS])
{
	memset(want, 0, GUEST_MEMORY_MAX_REGIONS * sizeof(want[0]));
	for (unsigned i = 0; i < vm->mem.nregions; i++) {
		const struct guest_region *g = &vm->mem.region[i];
		want[g->slot] = (struct vm_memslot){true, g->gpa, g->size, g->hva,
						    g->kind != GUEST_REGION_RAM && g->mode == GUEST_MAP_RO};
	}
}

/* Make KVM's slots those of @want, touching only the slots that differ. */
static int vm_memslots_apply(struct vm *vm, const struct vm_memslot want[GUEST_MEMORY_MAX_REGIONS])
{
	/* Slots that change go first (KVM moves no slot: delete, then set), so no two overlap. */
	for (unsigned s = 0; s < GUEST_MEMORY_MAX_REGIONS; s++) {
		struct vm_memslot *have = &vm->memslots[s];
		if (have->used && memcmp(have, &want[s], sizeof(*have)) != 0) {
			int r = kvm_set_memory(&vm->kvm, s, have->gpa, 0, have->hva, false);
			if (r)
				return r;
			have->used = false;
		}
	}
	for (unsigned s = 0; s < GUEST_MEMORY_MAX_REGIONS; s++) {
		if (!want[s].used || vm->memslots[s].used)
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
	struct vm_memslot want[GUEST_MEMORY_MAX_REGIONS];
	vm_memslots_wanted(vm, want);
	return vm_memslots_apply(vm, want);
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
	return r ? r : vm_kvm_vcpus(vm);
}

/*
 * KVM's part of start-up, beside guest memory's. A thread of its own opens KVM's VM, then
 * makes the memory slots of guest memory's first regions, which the creating thread hands
 * over once it has placed them (vm_kvm_open_give_slots); the creating thread makes the
 * vCPUs once the VM exists (vm_kvm_open_vcpus), while the slots are being made. Here a
 * slot costs KVM time in proportion to its size (shadow paging allocates its reverse
 * maps), the VM and the vCPUs each about as long as setting up guest memory and loading
 * the image: all of it goes on at once. Until vm_kvm_open_join, only the opener touches
 * vm->memslots, and vm->kvm is the opener's until the VM exists (then read-only to it).
 */
struct vm_kvm_opening {
	pthread_t thread;
	bool started;
	struct vm *vm;
	const char *kvm_path;      /* its own: vm->cfg may be written meanwhile */
	atomic_bool opened; /* the VM exists, or open_r says why not */
	atomic_bool given;  /* want holds the slots to make (none when guest memory failed) */
	atomic_bool done;   /* the opener's work is over: slots_r and message are final */
	cpu_set_t cpus;     /* where the process may run: the opener's own once it started */
	struct vm_memslot want[GUEST_MEMORY_MAX_REGIONS];
	int open_r, slots_r;
	char message[512];  /* error messages are per thread: the opener's, carried over */
};

/* Wait for @flag, set by the other thread. Start-up waits are short (a KVM call going on
 * there), and a thread sleeping here would be woken late: onto its waker's CPU, busy in
 * its next KVM call, while the other CPU idles. So spin, yielding the CPU. */
static void vm_kvm_open_await(atomic_bool *flag)
{
	while (!atomic_load_explicit(flag, memory_order_acquire))
		sched_yield();
}

static void *vm_kvm_open_main(void *arg)
{
	struct vm_kvm_opening *o = arg;
	pthread_setaffinity_np(pthread_self(), sizeof(o->cpus), &o->cpus); /* started: anywhere now */
	memset(o->vm->memslots, 0, sizeof(o->vm->memslots));
	o->open_r = kvm_open(&o->vm->kvm, o->kvm_path);
	if (o->open_r)
		snprintf(o->message, sizeof(o->message), "%s", error_message());
	atomic_store_explicit(&o->opened, true, memory_order_release);
	vm_kvm_open_await(&o->given);
	if (!o->open_r && (o->slots_r = vm_memslots_apply(o->vm, o->want)) != 0)
		snprintf(o->message, sizeof(o->message), "%s", error_message());
	atomic_store_explicit(&o->done, true, memory_order_release);
	return NULL;
}

static void vm_kvm_open_start(struct vm_kvm_opening *o, struct vm *vm, const char *kvm_path)
{
	o->vm = vm;
	o->kvm_path = kvm_path;
	atomic_init(&o->opened, false);
	atomic_init(&o->given, false);
	atomic_init(&o->done, false);
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
	if (!o->started) { /* no thread to spare: open in line; the slots come with the rest */
		memset(vm->memslots, 0, sizeof(vm->memslots));
		o->open_r = kvm_open(&vm->kvm, kvm_path);
		if (o->open_r)
			snprintf(o->message, sizeof(o->message), "%s", error_message());
		atomic_store(&o->opened, true);
		atomic_store(&o->given, true);
		atomic_store(&o->done, true);
	}
}

/* Hand the opener the slots of guest memory as it is now (NULL @vm: none, it failed).
 * Only the creating thread calls this. */
static void vm_kvm_open_give_slots(struct vm_kvm_opening *o, const struct vm *vm)
{
	if (atomic_load(&o->given))
		return;
	if (vm)
		vm_memslots_wanted(vm, o->want);
	atomic_store_explicit(&o->given, true, memory_order_release);
}

/* Once KVM's VM exists: the vCPUs, on the calling thread. */
static int vm_kvm_open_vcpus(struct vm_kvm_opening *o)
{
	vm_kvm_open_await(&o->opened);
	if (o->open_r)
		return error_set(-o->open_r, "%s", o->message);
	return vm_kvm_vcpus(o->vm);
}

/* Wait for the opener; its result, and with @say its message made this thread's. */
static int vm_kvm_open_join(struct vm_kvm_opening *o, bool say)
{
	if (o->started) {
		vm_kvm_open_give_slots(o, NULL); /* if not given yet: nothing to wait for */
		vm_kvm_open_await(&o->done);
		pthread_join(o->thread, NULL);
	}
	o->started = false;
	int r = o->open_r ? o->open_r : o->slots_r;
	if (r && say)
		error_set(-r, "%s", o->message);
	return r;
}

/* With KVM open: memory slots for the regions, then the vCPUs in their PVH boot state
 * (@entry, @start_info) or, with @state, in that state. */
static int vm_kvm_setup(struct vm *vm, uint64_t entry, uint64_t start_info, const struct vm_state *state)
{
	int r = vm_sync_memslots(vm);
	if (r || state)
		return r ? r : vm_state_apply(vm, state);
	for (unsigned i = 0; !r && i < vm->cfg.ncpus; i++)
		r = vcpu_set_boot_state(&vm->vcpus[i], entry, start_info);
	return r;
}

/* A VM with nothing in it yet. */
static void vm_init(struct vm *vm)
{
	memset(vm, 0, sizeof(*vm));
	vm->kvm.vm_fd = -1;
	vm->mem.uffd.fd = -1;
	vm->mem.swap_fd = -1;
	atomic_init(&vm->stopping_flag, false);
	vm_init_sync(vm);
	atomic_init(&vm->pause_count, 0);
	atomic_init(&vm->snapshot_busy, false);
	atomic_init(&vm->first_run_ns, 0);
	vm->ready_fd = -1;
}

void vm_prepare(struct vm *vm, const char *kvm_path)
{
	static struct vm_kvm_opening opening; /* one VM per process is made this way */
	vm_init(vm);
	memset(&opening, 0, sizeof(opening));
	vm->kvm_opening = &opening;
	vm_kvm_open_start(&opening, vm, kvm_path);
}

int vm_create(struct vm *vm, const struct vm_config *cfg)
{
	struct vm_kvm_opening local = {0}, *kvm_opening = NULL;
	if (vm->kvm_opening) /* prepared: KVM is being opened already */
		kvm_opening = vm->kvm_opening;
	else
		vm_init(vm);
	vm->cfg = *cfg;

	void *image = NULL;
	size_t size = 0;
	struct loader_result lr = {0};
	uint64_t start_info = 0;
	/* A restored VM has its memory and registers already: nothing to load. */
	int r = cfg->restore ? 0 : vm_check_guest(cfg, &image, &size, &lr);
	/* A bad image is reported as such on any host: KVM's errors come out at the join. */
	if (!r && !kvm_opening)
		vm_kvm_open_start(kvm_opening = &local, vm, cfg->kvm_path);
	/* The memory slots need only the regions' places: the opener makes them while the
	 * rest of guest memory is built. */
	if (!r)
		r = guest_memory_place(&vm->mem, &cfg->mem);
	if (!r && kvm_opening->started)
		vm_kvm_open_give_slots(kvm_opening, vm);
	if (!r)
		r = guest_memory_create(&vm->mem, &cfg->mem);
	if (!r && cfg->restore)
		r = vm_state_apply_map(vm, cfg->restore);
	if (!r && !cfg->restore)
		r = loader_load_pvh(image, size, cfg->guest, &vm->mem, BOOT_INFO_GPA, BOOT_INFO_LEN, &lr);
	free(image);
	if (!r && !cfg->restore)
		r = boot_write_start_info(&vm->mem, cfg->cmdline, &start_info);
	if (!r)
		r = serial_attach(vm, cfg->console_fd);
	if (!r)
		r = console_port_attach(vm);
	if (!r)
		r = debug_exit_attach(vm);
	if (!r)
		r = test_port_attach(vm, cfg->verbose > 1);
	if (!r)
		r = id_port_attach(vm);
	if (!r)
		r = vm_kvm_open_vcpus(kvm_opening);
	/* Joined whatever happened: the opener writes into vm. Guest memory's errors come first. */
	int kr = kvm_opening ? vm_kvm_open_join(kvm_opening, !r) : 0;
	vm->kvm_opening = NULL;
	if (!r)
		r = kr;
	if (!r)
		r = vm_kvm_setup(vm, lr.entry, start_info, cfg->restore);
	if (r)
		goto err;
	if (cfg->origin_store)
		snprintf(vm->origin_store, sizeof(vm->origin_store), "%s", cfg->origin_store);
	if (cfg->origin_name)
		snprintf(vm->origin_name, sizeof(vm->origin_name), "%s", cfg->origin_name);
	r = guest_memory_start(&vm->mem, vm_memory_error, vm);
	if (r)
		goto err;
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
	int r = guest_memory_reattach(&vm->mem);
	if (!r)
		r = vm_kvm_open(vm);
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
	return first;
}

bool vm_pause(struct vm *vm)
{
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

int vm_wait(struct vm *vm)
{
	struct timespec deadline;
	clock_gettime(CLOCK_MONOTONIC, &deadline);
	deadline.tv_sec += (time_t)(vm->cfg.timeout_ms / 1000);
	deadline.tv_nsec += (long)(vm->cfg.timeout_ms % 1000) * 1000000L;
	if (deadline.tv_nsec >= 1000000000L) {
		deadline.tv_sec++;
		deadline.tv_nsec -= 1000000000L;
	}
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

void vm_stats(struct vm *vm, void (*emit)(void *arg, const char *key, uint64_t value), void *arg)
{
	char key[64];
	emit(arg, "vm.vcpus", vm->cfg.ncpus);
	emit(arg, "vm.ram_bytes", vm->mem.ram_size);
	emit(arg, "vm.test_port_messages", atomic_load(&vm->test_port.messages));
	emit(arg, "vm.test_port_last", atomic_load(&vm->test_port.last));
	emit(arg, "vm.first_run_monotonic_ns", atomic_load(&vm->first_run_ns));
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
}

void vm_destroy(struct vm *vm)
{
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
	pthread_cond_destroy(&vm->stopped_cond);
	pthread_cond_destroy(&vm->park_cond);
	pthread_mutex_destroy(&vm->lock);
}

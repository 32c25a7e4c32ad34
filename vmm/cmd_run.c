/* vmm run: boot a PVH guest and wait for it to end. */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "mmu/vm_param.h"

#include "guest/abi.h"
#include "vmm/cli.h"
#include "vmm/commands.h"
#include "vmm/error.h"
#include "vmm/monitor.h"
#include "vmm/vm_monitor.h"

#define RUN_DEFAULT_RAM (256ull << 20)
#define RUN_MAX_RAM (1ull << 40)
#define RUN_PAGE 4096ull
#define RUN_MIN_LIMIT (4ull << 20) /* room for a few fault clusters */

enum {
	OPT_MEMORY = 1,
	OPT_CPUS,
	OPT_CMDLINE,
	OPT_TIMEOUT,
	OPT_MEM_LIMIT,
	OPT_SWAP,
	OPT_MAP,
	OPT_PAGER,
	OPT_CLUSTER,
	OPT_STATS,
	OPT_KERNEL_ZERO_FILL,
	OPT_NAME,
	OPT_MONITOR,
	OPT_VERBOSE,
	OPT_KVM,
	OPT_HELP,
};

static const struct cli_option run_options[] = {
	{"memory", 'm', "SIZE", OPT_MEMORY, "guest RAM (default 256M; K, M, G suffixes, a bare number is MiB)"},
	{"cpus", 'c', "N", OPT_CPUS, "vCPUs, each its own thread (default 1, at most 64)"},
	{"cmdline", 'p', "TEXT", OPT_CMDLINE, "guest command line (default empty)"},
	{"timeout", 't', "TIME", OPT_TIMEOUT, "stop the guest after TIME: 30, 500ms, 2m (default: never)"},
	{"mem-limit", 0, "SIZE", OPT_MEM_LIMIT, "keep resident guest memory under SIZE; the rest is paged out to swap"},
	{"swap", 0, "PATH", OPT_SWAP, "swap file for --mem-limit (default: an unnamed file in /var/tmp)"},
	{"map", 0, "FILE@GPA[,ro|,shared]", OPT_MAP,
	 "map FILE at guest-physical GPA (0x.. or a size like 1G); private copy-on-write by default, "
	 "ro: read-only, shared: guest writes reach the file at a clean shutdown (up to 8)"},
	{"pager", 0, "SOCKET@GPA,SIZE[,ro|,shared]", OPT_PAGER,
	 "map SIZE bytes served by the external pager listening on SOCKET at GPA (see tools/pager_server.c)"},
	{"cluster", 0, "PAGES", OPT_CLUSTER, "pages one fault brings in, 1-256 (default 64)"},
	{"stats", 0, NULL, OPT_STATS, "print memory and vCPU statistics on standard error at exit"},
	{"kernel-zero-fill", 0, NULL, OPT_KERNEL_ZERO_FILL,
	 "leave RAM to the kernel's zero fill instead of the default pager (a baseline: no RAM statistics, "
	 "no --mem-limit)"},
	{"name", 'n', "NAME", OPT_NAME, "name of the VM, for its monitor socket (default vm-PID)"},
	{"monitor", 0, "PATH", OPT_MONITOR,
	 "monitor socket (default $XDG_RUNTIME_DIR/vmm/NAME.sock, else /run/vmm/NAME.sock)"},
	{"verbose", 'v', NULL, OPT_VERBOSE, "say what the VMM does; twice: also each test-port message"},
	{"kvm", 0, "PATH", OPT_KVM, "KVM device (default /dev/kvm)"},
	{"help", 'h', NULL, OPT_HELP, "show this help"},
	{0},
};

void cmd_run_help(FILE *f)
{
	fprintf(f, "usage: vmm run [OPTIONS] GUEST\n"
		   "Boot GUEST, a PVH ELF kernel, on KVM. The guest's serial console (COM1) goes to\n"
		   "standard output; the VMM's own messages go to standard error.\n\n");
	cli_print_options(f, run_options);
	fprintf(f, "\nThe demo guest (build/guest.elf) runs the workloads named on its command line:\n"
		   "  hello, touch=SIZE, spin[=SIZE], seed=N (see guest/workloads.c).\n\n"
		   "Exit status: the guest's own status (0-119, the value it writes to port 0xf4,\n"
		   "as QEMU's isa-debug-exit), or the VMM's verdict:\n"
		   "  121  KVM could not run or emulate the guest\n"
		   "  122  the guest used a port or guest-physical address that nothing serves\n"
		   "  123  the guest triple-faulted\n"
		   "  124  the guest stopped making progress (halted for good, or over --timeout)\n"
		   "  125  the VMM failed: bad arguments, unusable guest image, no KVM\n"
		   "Verdicts 121-124 print the vCPU's registers on standard error.\n");
}

/* An address or a length: 0x-hex or the SIZE syntax. */
static int run_parse_number(const char *opt, const char *whole, const char *text, size_t len, uint64_t *v)
{
	char buf[64];
	if (len == 0 || len >= sizeof(buf))
		return error_set(0, "vmm run: %s '%s': a number is missing or too long", opt, whole), CLI_ERROR;
	memcpy(buf, text, len);
	buf[len] = '\0';
	if (buf[0] == '0' && (buf[1] == 'x' || buf[1] == 'X')) {
		char *end;
		errno = 0;
		*v = strtoull(buf + 2, &end, 16);
		if (*end || end == buf + 2 || errno)
			return error_set(0, "vmm run: %s '%s': '%s' is not a number", opt, whole, buf), CLI_ERROR;
		return 0;
	}
	return cli_parse_size(opt, buf, v) ? CLI_ERROR : 0;
}

/* FILE@GPA[,ro|,shared] (--map) or SOCKET@GPA,SIZE[,ro|,shared] (--pager). */
static int run_parse_map(const char *opt, const char *v, bool external, struct guest_file_map *f)
{
	static char paths[GUEST_MEMORY_MAX_FILES][4096];
	static unsigned next;
	const char *at = strrchr(v, '@');
	if (!at || at == v)
		return error_set(0, "vmm run: %s '%s': use %s", opt, v,
				 external ? "SOCKET@GPA,SIZE[,ro|,shared]" : "FILE@GPA[,ro|,shared]"), CLI_ERROR;
	const char *p = at + 1, *comma = strchr(p, ',');
	if (run_parse_number(opt, v, p, comma ? (size_t)(comma - p) : strlen(p), &f->gpa))
		return CLI_ERROR;
	f->size = 0;
	if (external) {
		if (!comma)
			return error_set(0, "vmm run: %s '%s': the size is missing (SOCKET@GPA,SIZE)", opt, v), CLI_ERROR;
		p = comma + 1;
		comma = strchr(p, ',');
		if (run_parse_number(opt, v, p, comma ? (size_t)(comma - p) : strlen(p), &f->size))
			return CLI_ERROR;
	}
	f->external = external;
	f->mode = GUEST_MAP_PRIVATE;
	if (comma && strcmp(comma + 1, "ro") == 0)
		f->mode = GUEST_MAP_RO;
	else if (comma && strcmp(comma + 1, "shared") == 0)
		f->mode = GUEST_MAP_SHARED;
	else if (comma && strcmp(comma + 1, "private") != 0)
		return error_set(0, "vmm run: %s '%s': unknown mode '%s' (ro, shared or private)", opt, v, comma + 1),
		       CLI_ERROR;
	size_t plen = (size_t)(at - v);
	if (plen >= sizeof(paths[0]))
		return error_set(0, "vmm run: %s: path too long", opt), CLI_ERROR;
	char *path = paths[next++ % GUEST_MEMORY_MAX_FILES];
	memcpy(path, v, plen);
	path[plen] = '\0';
	f->path = path;
	return 0;
}

int cmd_run_parse(int argc, char **argv, struct vm_config *cfg)
{
	*cfg = (struct vm_config){
		.mem.ram_size = RUN_DEFAULT_RAM,
		.ncpus = 1,
		.cmdline = "",
		.kvm_path = "/dev/kvm",
		.console_fd = STDOUT_FILENO,
	};
	struct cli_parser p;
	cli_init(&p, "run", run_options, argc, argv, 1);
	const char *v;
	int id;
	while ((id = cli_next(&p, &v)) != CLI_END) {
		switch (id) {
		case CLI_ERROR:
			return CLI_ERROR;
		case CLI_POSITIONAL:
			if (cfg->guest)
				return error_set(0, "vmm run: one GUEST only ('%s' and '%s' given)", cfg->guest, v), CLI_ERROR;
			cfg->guest = v;
			break;
		case OPT_MEMORY:
			if (cli_parse_size("vmm run: -m", v, &cfg->mem.ram_size))
				return CLI_ERROR;
			if (cfg->mem.ram_size < ABI_MIN_RAM)
				return error_set(0, "vmm run: -m %s is too small: at least %u MiB is needed", v,
						 ABI_MIN_RAM >> 20), CLI_ERROR;
			if (cfg->mem.ram_size > RUN_MAX_RAM)
				return error_set(0, "vmm run: -m %s is too large: at most %llu GiB", v, RUN_MAX_RAM >> 30),
				       CLI_ERROR;
			if (cfg->mem.ram_size % RUN_PAGE)
				return error_set(0, "vmm run: -m %s is not a multiple of 4K", v), CLI_ERROR;
			break;
		case OPT_CPUS:
			if (cli_parse_uint("vmm run: -c", v, 1, ABI_MAX_CPUS, &cfg->ncpus))
				return CLI_ERROR;
			break;
		case OPT_CMDLINE:
			if (strlen(v) >= ABI_CMDLINE_MAX)
				return error_set(0, "vmm run: -p: the command line is %zu bytes; at most %u fit", strlen(v),
						 ABI_CMDLINE_MAX - 1), CLI_ERROR;
			cfg->cmdline = v;
			break;
		case OPT_TIMEOUT:
			if (cli_parse_duration_ms("vmm run: --timeout", v, &cfg->timeout_ms))
				return CLI_ERROR;
			break;
		case OPT_MEM_LIMIT:
			if (cli_parse_size("vmm run: --mem-limit", v, &cfg->mem.mem_limit))
				return CLI_ERROR;
			if (cfg->mem.mem_limit < RUN_MIN_LIMIT)
				return error_set(0, "vmm run: --mem-limit %s is too small: at least %u MiB", v,
						 (unsigned)(RUN_MIN_LIMIT >> 20)), CLI_ERROR;
			break;
		case OPT_SWAP:
			cfg->mem.swap_path = v;
			break;
		case OPT_MAP:
		case OPT_PAGER:
			if (cfg->mem.nfiles == GUEST_MEMORY_MAX_FILES)
				return error_set(0, "vmm run: at most %d --map and --pager options", GUEST_MEMORY_MAX_FILES),
				       CLI_ERROR;
			if (run_parse_map(id == OPT_MAP ? "--map" : "--pager", v, id == OPT_PAGER,
					  &cfg->mem.files[cfg->mem.nfiles]))
				return CLI_ERROR;
			cfg->mem.nfiles++;
			break;
		case OPT_CLUSTER:
			if (cli_parse_uint("vmm run: --cluster", v, 1, VM_CLUSTER_MAX, &cfg->mem.cluster))
				return CLI_ERROR;
			break;
		case OPT_STATS:
			cfg->stats = true;
			break;
		case OPT_KERNEL_ZERO_FILL:
			cfg->mem.kernel_zero_fill = true;
			break;
		case OPT_NAME:
			if (monitor_name_check(v) != 0)
				return error_set(0, "vmm run: -n: %s", error_message()), CLI_ERROR;
			cfg->name = v;
			break;
		case OPT_MONITOR:
			cfg->monitor_path = v;
			break;
		case OPT_VERBOSE:
			cfg->verbose++;
			break;
		case OPT_KVM:
			cfg->kvm_path = v;
			break;
		case OPT_HELP:
			return 1;
		}
	}
	if (!cfg->guest)
		return error_set(0, "vmm run: no GUEST given (usage: vmm run [OPTIONS] GUEST; see vmm run --help)"),
		       CLI_ERROR;
	return 0;
}

/* SIGINT, SIGTERM and SIGHUP end the VM cleanly: shared files are written back, the
 * monitor says SHUTDOWN and removes its socket. They are blocked in every thread and
 * taken here; the exit status is 128 + the signal, as a shell reports a killed command. */
static void *run_signal_thread(void *arg)
{
	struct vm *vm = arg;
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGHUP);
	int sig;
	while (sigwait(&set, &sig) == 0 && !atomic_load(&vm->stopping_flag))
		if (vm_stop(vm, 128 + sig))
			fprintf(stderr, "vmm: stopped by %s\n", strsignal(sig));
	return NULL;
}

static void run_print_stat(void *arg, const char *key, uint64_t value)
{
	(void)arg;
	fprintf(stderr, "%-40s %llu\n", key, (unsigned long long)value);
}

int cmd_run(int argc, char **argv)
{
	struct vm_config cfg;
	int r = cmd_run_parse(argc, argv, &cfg);
	if (r == 1) {
		cmd_run_help(stdout);
		return 0;
	}
	if (r) {
		fprintf(stderr, "%s\n", error_message());
		return VM_EXIT_VMM_ERROR;
	}
	char name[32];
	if (!cfg.name) {
		snprintf(name, sizeof(name), "vm-%d", (int)getpid());
		cfg.name = name;
	}
	sigset_t stop_signals;
	sigemptyset(&stop_signals);
	sigaddset(&stop_signals, SIGINT);
	sigaddset(&stop_signals, SIGTERM);
	sigaddset(&stop_signals, SIGHUP);
	pthread_sigmask(SIG_BLOCK, &stop_signals, NULL);
	static struct vm vm;
	if (vm_create(&vm, &cfg) != 0) {
		fprintf(stderr, "vmm: %s\n", error_message());
		return VM_EXIT_VMM_ERROR;
	}
	if (vm_monitor_start(&vm, cfg.name, cfg.monitor_path) != 0) {
		fprintf(stderr, "vmm: %s\n", error_message());
		vm_destroy(&vm);
		return VM_EXIT_VMM_ERROR;
	}
	pthread_t sig_thread;
	bool sig_thread_started = pthread_create(&sig_thread, NULL, run_signal_thread, &vm) == 0;
	int status = vm_run(&vm);
	if (sig_thread_started) {
		pthread_kill(sig_thread, SIGHUP); /* wakes it; it sees the VM stopped and ends */
		pthread_join(sig_thread, NULL);
	}
	if (guest_memory_sync(&vm.mem) != 0) {
		fprintf(stderr, "vmm: %s\n", error_message());
		status = VM_EXIT_VMM_ERROR;
	}
	if (cfg.stats)
		vm_stats(&vm, run_print_stat, NULL);
	vm_monitor_stop(&vm, status);
	if (cfg.verbose)
		fprintf(stderr, "vmm: guest ended with status %d\n", status);
	/* Everything that must outlive the VM is done: shared files are written back, the
	 * monitor is closed. Unwinding the VM piece by piece would only slow the exit; the
	 * process exit frees it all at once. (vm_destroy is exercised by the in-process tests.) */
	fflush(NULL);
	_exit(status);
}

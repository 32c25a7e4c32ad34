/* vmm run: boot a PVH guest and wait for it to end. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "mmu/vm_param.h"

#include "guest/abi.h"
#include "vmm/cli/cli.h"
#include "vmm/cli/cmd_run.h"
#include "vmm/cli/commands.h"
#include "vmm/cli/domain_xml.h"
#include "vmm/error.h"
#include "vmm/lifecycle/vm_serve.h"
#include "vmm/monitor/monitor.h"
#include "vmm/monitor/vm_monitor.h"

#define RUN_DEFAULT_RAM (256ull << 20)
#define RUN_MAX_RAM (1ull << 40)
#define RUN_PAGE 4096ull
#define RUN_MIN_LIMIT (4ull << 20) /* room for a few fault clusters */

/* The strings a --xml file gave the configuration: until the next cmd_run_parse. */
static struct domain_xml run_xml;

static const struct cli_option run_options[] = {
	{"xml", 0, "FILE", OPT_XML,
	 "a libvirt domain XML (vmm dumpxml writes one): name, memory, vcpu, kernel (the GUEST), cmdline; "
	 "read first, the other options and GUEST override it"},
	{"memory", 'm', "SIZE", OPT_MEMORY, "guest RAM (default 256M; K, M, G suffixes, a bare number is MiB)"},
	{"cpus", 'c', "N", OPT_CPUS, "vCPUs, each its own thread (default 1, at most 64)"},
	{"cmdline", 'p', "TEXT", OPT_CMDLINE, "guest command line (default empty)"},
	OPTION_TIMEOUT,
	OPTION_MEM_LIMIT,
	OPTION_SWAP,
	{"map", 0, "FILE@GPA[,ro|,shared]", OPT_MAP,
	 "map FILE at guest-physical GPA (0x.. or a size like 1G); private copy-on-write by default, "
	 "ro: read-only, shared: guest writes reach the file at a clean shutdown (up to 8 --map and --pager)"},
	{"pager", 0, "SOCKET@GPA,SIZE[,ro|,shared]", OPT_PAGER,
	 "map SIZE bytes served by the external pager listening on SOCKET at GPA (see tools/pager_server.c)"},
	OPTION_CLUSTER,
	OPTION_STATS,
	{"kernel-zero-fill", 0, NULL, OPT_KERNEL_ZERO_FILL,
	 "leave RAM to the kernel's zero fill instead of the default pager (a baseline: no RAM statistics, "
	 "no --mem-limit)"},
	OPTION_NAME,
	OPTION_MONITOR,
	OPTION_DETACH,
	OPTION_VERBOSE,
	OPTION_KVM,
	OPTION_HELP,
	{0},
};


void cmd_run_help(FILE *f)
{
	fprintf(f, "usage: vmm run [OPTIONS] GUEST\n"
		   "       vmm run --xml FILE [OPTIONS] [GUEST]\n"
		   "Boot GUEST, a PVH ELF kernel, on KVM. The guest's serial console (COM1) goes to\n"
		   "standard output; the VMM's own messages go to standard error.\n\n");
	cli_print_options(f, run_options);
	fprintf(f, "\nThe demo guest (build/guest.elf) runs the workloads named on its command line, in\n"
		   "order: hello, seed=N, touch=SIZE, spin[=SIZE], rounds=SIZE,N, forktest=SIZE, crash,\n"
		   "sum=, fill=, check=, scan=, rscan=, dup=GPA,LEN, poke=GPA, sync=N, idle, await=GPA\n"
		   "(see vmm(1) or guest/workloads.c).\n\n"
		   "Exit status: the guest's own status (0-119, the value it writes to port 0xf4,\n"
		   "as QEMU's isa-debug-exit), or the VMM's verdict:\n"
		   "  121  KVM could not run or emulate the guest\n"
		   "  122  the guest used a port or guest-physical address that nothing serves\n"
		   "  123  the guest triple-faulted\n"
		   "  124  the guest stopped making progress (halted for good, or over --timeout)\n"
		   "  125  the VMM failed: bad arguments, unusable guest image, no KVM\n"
		   "  128+N  ended by signal N: SIGHUP, SIGINT or SIGTERM (129, 130, 143)\n"
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

void cmd_run_defaults(struct vm_config *cfg)
{
	*cfg = (struct vm_config){
		.mem.ram_size = RUN_DEFAULT_RAM,
		.ncpus = 1,
		.cmdline = "",
		.kvm_path = "/dev/kvm",
		.console_fd = STDOUT_FILENO,
	};
}

int cmd_run_ram_check(uint64_t bytes, char *why, size_t size)
{
	if (bytes < ABI_MIN_RAM)
		snprintf(why, size, "is too small: at least %u MiB is needed", ABI_MIN_RAM >> 20);
	else if (bytes > RUN_MAX_RAM)
		snprintf(why, size, "is too large: at most %llu GiB", RUN_MAX_RAM >> 30);
	else if (bytes % RUN_PAGE)
		snprintf(why, size, "is not a multiple of 4K");
	else
		return 0;
	return -EINVAL;
}

int cmd_run_option(struct vm_config *cfg, const char *verb, int id, const char *v)
{
	char what[64];
	switch (id) {
	case OPT_MEMORY: {
		snprintf(what, sizeof(what), "vmm %s: -m", verb);
		if (cli_parse_size(what, v, &cfg->mem.ram_size))
			return CLI_ERROR;
		char why[96];
		if (cmd_run_ram_check(cfg->mem.ram_size, why, sizeof(why)))
			return error_set(0, "vmm %s: -m %s %s", verb, v, why), CLI_ERROR;
		return 0;
	}
	case OPT_CPUS:
		snprintf(what, sizeof(what), "vmm %s: -c", verb);
		return cli_parse_uint(what, v, 1, ABI_MAX_CPUS, &cfg->ncpus) ? CLI_ERROR : 0;
	case OPT_CMDLINE:
		if (strlen(v) >= ABI_CMDLINE_MAX)
			return error_set(0, "vmm %s: -p: the command line is %zu bytes; at most %u fit", verb, strlen(v),
					 ABI_CMDLINE_MAX - 1), CLI_ERROR;
		cfg->cmdline = v;
		return 0;
	case OPT_TIMEOUT:
		snprintf(what, sizeof(what), "vmm %s: --timeout", verb);
		return cli_parse_duration_ms(what, v, &cfg->timeout_ms) ? CLI_ERROR : 0;
	case OPT_MEM_LIMIT:
		snprintf(what, sizeof(what), "vmm %s: --mem-limit", verb);
		if (cli_parse_size(what, v, &cfg->mem.mem_limit))
			return CLI_ERROR;
		if (cfg->mem.mem_limit < RUN_MIN_LIMIT)
			return error_set(0, "vmm %s: --mem-limit %s is too small: at least %u MiB", verb, v,
					 (unsigned)(RUN_MIN_LIMIT >> 20)), CLI_ERROR;
		return 0;
	case OPT_SWAP:
		cfg->mem.swap_path = v;
		return 0;
	case OPT_MAP:
	case OPT_PAGER:
		if (cfg->mem.nfiles == GUEST_MEMORY_MAX_FILES)
			return error_set(0, "vmm %s: at most %d --map and --pager options", verb, GUEST_MEMORY_MAX_FILES),
			       CLI_ERROR;
		if (run_parse_map(id == OPT_MAP ? "--map" : "--pager", v, id == OPT_PAGER, &cfg->mem.files[cfg->mem.nfiles]))
			return CLI_ERROR;
		cfg->mem.nfiles++;
		return 0;
	case OPT_CLUSTER:
		snprintf(what, sizeof(what), "vmm %s: --cluster", verb);
		return cli_parse_uint(what, v, 1, VM_CLUSTER_MAX, &cfg->mem.cluster) ? CLI_ERROR : 0;
	case OPT_STATS:
		cfg->stats = true;
		return 0;
	case OPT_KERNEL_ZERO_FILL:
		cfg->mem.kernel_zero_fill = true;
		return 0;
	case OPT_NAME:
		if (monitor_name_check(v) != 0)
			return error_set(0, "vmm %s: -n: %s", verb, error_message()), CLI_ERROR;
		cfg->name = v;
		return 0;
	case OPT_MONITOR:
		cfg->monitor_path = v;
		return 0;
	case OPT_VERBOSE:
		cfg->verbose++;
		return 0;
	case OPT_DETACH:
		cfg->detach = true;
		return 0;
	case OPT_KVM:
		cfg->kvm_path = v;
		return 0;
	case OPT_HELP:
		return 1;
	default:
		return CLI_ERROR;
	}
}

int cmd_run_parse_with(const char *verb, const struct cli_option *options, int argc, char **argv,
		       struct vm_config *cfg, int (*other)(void *arg, int id, const char *v), void *arg)
{
	cmd_run_defaults(cfg);
	return cmd_run_parse_over(verb, options, argc, argv, cfg, other, arg);
}

int cmd_run_parse_over(const char *verb, const struct cli_option *options, int argc, char **argv,
		       struct vm_config *cfg, int (*other)(void *arg, int id, const char *v), void *arg)
{
	struct cli_parser p;
	cli_init(&p, verb, options, argc, argv, 1);
	const char *v;
	int id;
	while ((id = cli_next(&p, &v)) != CLI_END) {
		if (id == CLI_ERROR)
			return CLI_ERROR;
		int r = other(arg, id, v);
		if (r == CMD_RUN_NOT_MINE)
			r = cmd_run_option(cfg, verb, id, v);
		if (r)
			return r;
	}
	return 0;
}

/* vmm run's own arguments: the GUEST (over <kernel> of --xml's file) and --xml, read
 * before (run_find_xml). */
static int run_other(void *arg, int id, const char *v)
{
	struct vm_config *cfg = arg;
	if (id == OPT_XML)
		return 0;
	if (id != CLI_POSITIONAL)
		return CMD_RUN_NOT_MINE;
	if (cfg->guest && cfg->guest != run_xml.kernel)
		return error_set(0, "vmm run: one GUEST only ('%s' and '%s' given)", cfg->guest, v), CLI_ERROR;
	cfg->guest = v;
	return 0;
}

/* The --xml FILE in @argv, wherever it stands, into *path (NULL when none). 0, 1 for
 * --help, or CLI_ERROR (a second --xml, or a malformed command line). */
static int run_find_xml(int argc, char **argv, const char **path)
{
	struct cli_parser p;
	cli_init(&p, "run", run_options, argc, argv, 1);
	const char *v;
	int id;
	*path = NULL;
	while ((id = cli_next(&p, &v)) != CLI_END) {
		if (id == CLI_ERROR)
			return CLI_ERROR;
		if (id == OPT_HELP)
			return 1;
		if (id != OPT_XML)
			continue;
		if (*path)
			return error_set(0, "vmm run: one --xml only ('%s' and '%s' given)", *path, v), CLI_ERROR;
		*path = v;
	}
	return 0;
}

int cmd_run_parse(int argc, char **argv, struct vm_config *cfg)
{
	/* The file first, then every other option over it, whatever their order: the command
	 * line can amend a domain (vmm run --xml d.xml -p 'hello' --timeout 5s). */
	const char *xml;
	int r = run_find_xml(argc, argv, &xml);
	if (r)
		return r;
	cmd_run_defaults(cfg);
	domain_xml_free(&run_xml);
	if (xml && domain_xml_parse(xml, cfg, &run_xml))
		return error_set(0, "vmm run: %s", error_message()), CLI_ERROR;
	r = cmd_run_parse_over("run", run_options, argc, argv, cfg, run_other, cfg);
	if (r)
		return r;
	if (!cfg->guest)
		return error_set(0, "vmm run: no GUEST given (usage: vmm run [OPTIONS] GUEST, or a <kernel> in --xml's "
				    "file; see vmm run --help)"),
		       CLI_ERROR;
	return 0;
}

/* The VM of this process (vmm run and vmm restore make one). */
static struct vm run_vm;

int cmd_run_vm(struct vm_config *cfg)
{
	char name[32];
	if (!cfg->name) {
		snprintf(name, sizeof(name), "vm-%d", (int)getpid());
		cfg->name = name;
	}
	vm_serve_block_signals();
	if (vm_create(&run_vm, cfg) != 0) {
		fprintf(stderr, "vmm: %s\n", error_message());
		return VM_EXIT_VMM_ERROR;
	}
	if (cfg->made_note)
		fprintf(stderr, "vmm: %s\n", cfg->made_note);
	vm_serve(&run_vm, &vm_monitor_serve_ops);
	return VM_EXIT_VMM_ERROR; /* not reached */
}

/* The parent's side of -d: wait for @child's word on @fd (see cmd_run_detach). */
static int run_detach_wait(pid_t child, int fd)
{
	char name[MONITOR_NAME_MAX + 2];
	size_t got = 0;
	int timeout = CMD_RUN_DETACH_WAIT_MS;
	for (;;) {
		struct pollfd p = {.fd = fd, .events = POLLIN};
		int n = poll(&p, 1, timeout);
		if (n < 0 && errno == EINTR)
			continue;
		if (n == 0) {
			fprintf(stderr, "vmm: the VM (pid %d) did not start within %d s; stopped it\n", (int)child,
				CMD_RUN_DETACH_WAIT_MS / 1000);
			kill(child, SIGTERM);
			break;
		}
		ssize_t k = read(fd, name + got, sizeof(name) - 1 - got);
		if (k < 0 && errno == EINTR)
			continue;
		if (k <= 0)
			break;
		got += (size_t)k;
		if (memchr(name, '\n', got) || got == sizeof(name) - 1)
			break;
	}
	close(fd);
	char *nl = memchr(name, '\n', got);
	if (nl) {
		*nl = '\0';
		printf("%s\n", name);
		return 0;
	}
	/* The VM ended before it ran: it said why on standard error; its status is ours. */
	int st;
	while (waitpid(child, &st, 0) < 0)
		if (errno != EINTR)
			return VM_EXIT_VMM_ERROR;
	return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

int cmd_run_detach(struct vm_config *cfg)
{
	if (!cfg->detach)
		return -1;
	int p[2];
	if (pipe2(p, O_CLOEXEC) != 0) {
		fprintf(stderr, "vmm: cannot detach: pipe: %s\n", strerror(errno));
		return VM_EXIT_VMM_ERROR;
	}
	fflush(NULL);
	pid_t child = fork();
	if (child < 0) {
		fprintf(stderr, "vmm: cannot detach: fork: %s\n", strerror(errno));
		close(p[0]);
		close(p[1]);
		return VM_EXIT_VMM_ERROR;
	}
	if (child > 0) {
		close(p[1]);
		return run_detach_wait(child, p[0]);
	}
	close(p[0]);
	/* A session of its own: no controlling terminal, so its closing sends no SIGHUP here. */
	setsid();
	cfg->detach_fd = p[1];
	/* The console goes to the log only, from the first byte: standard output carries the
	 * VM's name alone (NAME=$(vmm run -d ...)); errors still reach the terminal until the
	 * VM runs. */
	cfg->console_fd = -1;
	return -1;
}

void cmd_run_prepare(const char *kvm_path)
{
	vm_serve_block_signals();
	vm_prepare(&run_vm, kvm_path);
}

int cmd_run_parsed(int r, void (*help)(FILE *f))
{
	if (r == 1) {
		help(stdout);
		return 0;
	}
	if (r) {
		fprintf(stderr, "%s\n", error_message());
		return VM_EXIT_VMM_ERROR;
	}
	return -1;
}

int cmd_run(int argc, char **argv)
{
	struct vm_config cfg;
	int status = cmd_run_parsed(cmd_run_parse(argc, argv, &cfg), cmd_run_help);
	if (status >= 0 || (status = cmd_run_detach(&cfg)) >= 0)
		return status;
	/* KVM's VM is opened while the image is read and checked (a bad image is still what
	 * vm_create reports first). */
	cmd_run_prepare(cfg.kvm_path);
	return cmd_run_vm(&cfg);
}


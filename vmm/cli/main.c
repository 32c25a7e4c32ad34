/* vmm: the command-line entry; each verb lives in its own cmd_<verb>.c. */
#include <stdio.h>
#include <string.h>

#include "vmm/cli/cmd_client.h"
#include "vmm/cli/commands.h"

#include "vmm/monitor/monitor.h"

/* One version for the CLI and the monitor's greeting. */
#define VMM_STR(x) #x
#define VMM_XSTR(x) VMM_STR(x)
#define VMM_VERSION VMM_XSTR(MONITOR_VERSION_MAJOR) "." VMM_XSTR(MONITOR_VERSION_MINOR) "." VMM_XSTR(MONITOR_VERSION_MICRO)

struct verb {
	const char *name;
	int (*fn)(int argc, char **argv);
	const char *summary;
};

static int help(int argc, char **argv);

static const struct verb verbs[] = {
	{"run", cmd_run, "boot a PVH guest on KVM"},
	{"restore", cmd_restore, "run a guest from a stored snapshot"},
	{"ps", cmd_ps, "list the running VMs (their monitor sockets) and their state"},
	{"stats", cmd_stats, "print a running VM's statistics, once or every few seconds"},
	{"memory", cmd_memory, "show a running VM's guest-physical map and where each page comes from"},
	{"inspect", cmd_inspect, "print a running VM's configuration, state, lineage and paths as JSON"},
	{"dumpxml", cmd_dumpxml, "print a running VM's configuration as a libvirt domain XML"},
	{"logs", cmd_logs, "print a VM's console log; -f: and follow it while the VM runs"},
	{"console", cmd_console, "watch a running VM's console as it writes (Ctrl-] leaves)"},
	{"stop", cmd_control, "pause a running VM"},
	{"cont", cmd_control, "resume a paused VM"},
	{"quit", cmd_control, "end a running VM"},
	{"rm", cmd_rm, "remove what a dead VM left (its stale socket and log); --stale: all of them"},
	{"snapshot", cmd_snapshot, "snapshot a running VM into a store"},
	{"fork", cmd_fork, "fork a running VM into child VMs sharing its memory"},
	{"store", cmd_store, "list, verify, clean or prune a snapshot store"},
	{"help", help, "describe a command (vmm help COMMAND), or all of them"},
};

static void usage(FILE *f)
{
	fprintf(f, "usage: vmm COMMAND [ARGS...]\n"
		   "A virtual machine monitor on KVM whose guest memory is managed the Mach way.\n\n"
		   "Commands:\n");
	for (size_t i = 0; i < sizeof(verbs) / sizeof(verbs[0]); i++)
		fprintf(f, "  %-10s %s\n", verbs[i].name, verbs[i].summary);
	fprintf(f, "\nA running VM is named by 'vmm run -n NAME' and answers on its monitor socket,\n"
		   "$XDG_RUNTIME_DIR/vmm/NAME.sock (or /run/vmm/NAME.sock), in the QMP protocol;\n"
		   "the commands after 'run' are clients of that socket (--monitor PATH picks another),\n"
		   "which they look for in $XDG_RUNTIME_DIR/vmm and then in /run/vmm.\n"
		   "\n'vmm help COMMAND' (or 'vmm COMMAND --help') describes a command; the manual\n"
		   "page vmm(1) (vmm/cli/vmm.1 in the sources) describes them all.\n"
		   "'vmm --version' prints the version.\n");
}

static const struct verb *find_verb(const char *name)
{
	for (size_t i = 0; i < sizeof(verbs) / sizeof(verbs[0]); i++)
		if (strcmp(name, verbs[i].name) == 0)
			return &verbs[i];
	return NULL;
}

/* vmm help [COMMAND] (argv[0] is "help"): the top-level help, or COMMAND's exactly as
 * 'vmm COMMAND --help' prints it. 'vmm help help' and 'vmm help --help' are the former. */
static int help(int argc, char **argv)
{
	if (argc < 2 || strcmp(argv[1], "help") == 0 || strcmp(argv[1], "--help") == 0 ||
	    strcmp(argv[1], "-h") == 0) {
		usage(stdout);
		return 0;
	}
	const struct verb *v = find_verb(argv[1]);
	if (!v) {
		fprintf(stderr, "vmm help: unknown command '%s' (see vmm --help)\n", argv[1]);
		return VM_EXIT_VMM_ERROR;
	}
	if (argc > 2) {
		fprintf(stderr, "vmm help: one COMMAND only (usage: vmm help [COMMAND])\n");
		return VM_EXIT_VMM_ERROR;
	}
	char *verb_argv[] = {argv[1], "--help", NULL};
	return v->fn(2, verb_argv);
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		usage(stderr);
		return VM_EXIT_VMM_ERROR;
	}
	const char *name = argv[1];
	if (strcmp(name, "--help") == 0 || strcmp(name, "-h") == 0) {
		usage(stdout);
		return 0;
	}
	if (strcmp(name, "--version") == 0) {
		printf("vmm %s\n", VMM_VERSION);
		return 0;
	}
	const struct verb *v = find_verb(name);
	if (v)
		return v->fn(argc - 1, argv + 1);
	fprintf(stderr, "vmm: unknown command '%s' (see vmm --help)\n", name);
	return VM_EXIT_VMM_ERROR;
}

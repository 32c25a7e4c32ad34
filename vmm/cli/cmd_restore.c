/* vmm restore: run a guest from a stored snapshot. */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "vmm/cli/cli.h"
#include "vmm/cli/cmd_client.h"
#include "vmm/cli/cmd_run.h"
#include "vmm/cli/commands.h"
#include "vmm/error.h"
#include "vmm/lifecycle/restore.h"
#include "vmm/monitor/monitor.h"

#define RESTORE_PROBE_TIMEOUT_MS 2000 /* as vmm ps */

static const struct cli_option restore_options[] = {
	{"store", 's', "DIR", OPT_STORE, "the store holding SNAPSHOT"},
	{"record-working-set", 0, "FILE", OPT_RECORD_WORKING_SET,
	 "at the end, write the pages the guest brought in to FILE"},
	{"prefetch", 0, "FILE", OPT_PREFETCH,
	 "bring in the pages of working set FILE while the guest runs"},
	{"private", 0, NULL, OPT_PRIVATE,
	 "keep a copy of the snapshot's pages of this VM's own (default: one copy per host, shared)"},
	OPTION_TIMEOUT,
	OPTION_MEM_LIMIT,
	OPTION_SWAP,
	OPTION_CLUSTER,
	OPTION_STATS,
	{"name", 'n', "NAME", OPT_NAME, "name of the VM, for its monitor socket (default: SNAPSHOT)"},
	OPTION_MONITOR,
	OPTION_DETACH,
	OPTION_VERBOSE,
	OPTION_KVM,
	OPTION_HELP,
	{0},
};

void cmd_restore_help(FILE *f)
{
	fprintf(f, "usage: vmm restore [OPTIONS] SNAPSHOT\n"
		   "Run the guest saved as SNAPSHOT in a store, from the instruction where it was\n"
		   "snapshotted. Its vCPUs, its RAM layout, the protections and inheritances of its\n"
		   "guest-physical map come from the snapshot; memory is brought in on demand from the\n"
		   "store (each page checked against its hash) and kept once per host: every VM\n"
		   "restored from the same snapshot maps the same resident pages, and a guest's write\n"
		   "copies the one page it changes into its own memory (--private: a copy of its own;\n"
		   "so too on kernels before Linux 6.4, and the restore says so).\n"
		   "Snapshots taken of the restored guest into the same store name SNAPSHOT as their\n"
		   "parent and store only the pages that differ from it. The VM is named SNAPSHOT\n"
		   "unless -n names it, or SNAPSHOT.2, SNAPSHOT.3, ... (the first free) when a VM of\n"
		   "that name is running.\n"
		   "The store is --store DIR.\n" CLI_STORE_DEFAULT_HELP "\n");
	cli_print_options(f, restore_options);
	fprintf(f, "\nExit status: as vmm run (see vmm run --help).\n");
}

struct restore_args {
	struct vm_config *cfg;
	const char **store, **snapshot;
	bool *private_memory;
};

/* vmm restore's own arguments: the SNAPSHOT, its store, working sets. */
static int restore_other(void *arg, int id, const char *v)
{
	struct restore_args *a = arg;
	switch (id) {
	case CLI_POSITIONAL:
		if (*a->snapshot)
			return error_set(0, "vmm restore: one SNAPSHOT only ('%s' and '%s' given)", *a->snapshot, v),
			       CLI_ERROR;
		*a->snapshot = v;
		return 0;
	case OPT_STORE:
		*a->store = v;
		return 0;
	case OPT_RECORD_WORKING_SET:
		a->cfg->record_working_set = v;
		return 0;
	case OPT_PREFETCH:
		a->cfg->prefetch_path = v;
		return 0;
	case OPT_PRIVATE:
		*a->private_memory = true;
		return 0;
	default:
		return CMD_RUN_NOT_MINE;
	}
}

int cmd_restore_parse(int argc, char **argv, struct vm_config *cfg, const char **store, const char **snapshot,
		      bool *private_memory)
{
	*store = NULL;
	*snapshot = NULL;
	*private_memory = false;
	struct restore_args a = {cfg, store, snapshot, private_memory};
	int r = cmd_run_parse_with("restore", restore_options, argc, argv, cfg, restore_other, &a);
	if (r)
		return r;
	if (!*snapshot)
		return error_set(0, "vmm restore: no SNAPSHOT given (usage: vmm restore [OPTIONS] SNAPSHOT)"), CLI_ERROR;
	if (!*store) {
		static char deflt[PATH_MAX];
		if (cli_default_store("restore", deflt, sizeof(deflt), NULL) != 0)
			return CLI_ERROR;
		*store = deflt;
	}
	return 0;
}

int cmd_restore_name(const char *snapshot, const char *const *taken, size_t n, char *buf, size_t size)
{
	for (unsigned k = 1; k <= n + 1; k++) { /* n names take at most n of the n + 1 tried */
		int len = k == 1 ? snprintf(buf, size, "%s", snapshot) : snprintf(buf, size, "%s.%u", snapshot, k);
		if (len < 0 || (size_t)len >= size)
			return error_set(ENAMETOOLONG, "no VM name of at most %d characters fits snapshot %s",
					 MONITOR_NAME_MAX, snapshot);
		int r = monitor_name_check(buf);
		if (r)
			return r;
		bool unused = true;
		for (size_t i = 0; i < n && unused; i++)
			unused = strcmp(taken[i], buf) != 0;
		if (unused)
			return 0;
	}
	return error_set(EEXIST, "every name of %s is taken", snapshot); /* not reached */
}

/* Name @cfg after @snapshot unless -n named it (cmd_restore_name); the VMs that take a
 * name are those with a socket something listens on (a stale one is replaced). When that
 * fails, the VM keeps the default name of vmm run. */
static void restore_pick_name(struct vm_config *cfg, const char *snapshot)
{
	static char name[MONITOR_NAME_MAX + 1];
	struct cmd_client_vm *vms;
	size_t n;
	if (cfg->name || cmd_client_list_vms(&vms, &n) != 0)
		return;
	const char **taken = calloc(n ? n : 1, sizeof(*taken));
	size_t ntaken = 0;
	for (size_t i = 0; taken && i < n; i++) {
		struct qmp_client *c;
		int r = qmp_client_open(&c, NULL, vms[i].path, RESTORE_PROBE_TIMEOUT_MS);
		qmp_client_close(r ? NULL : c);
		if (r != -ECONNREFUSED && r != -ENOENT)
			taken[ntaken++] = vms[i].name;
	}
	if (taken && cmd_restore_name(snapshot, taken, ntaken, name, sizeof(name)) == 0)
		cfg->name = name;
	free(taken);
	cmd_client_free_vms(vms, n);
}

int cmd_restore(int argc, char **argv)
{
	struct vm_config cfg;
	const char *store, *snapshot;
	bool private_memory;
	int status = cmd_run_parsed(cmd_restore_parse(argc, argv, &cfg, &store, &snapshot, &private_memory),
				    cmd_restore_help);
	if (status >= 0)
		return status;
	restore_pick_name(&cfg, snapshot);
	if ((status = cmd_run_detach(&cfg)) >= 0)
		return status;
	/* KVM's VM is opened while the snapshot is: neither needs the other. */
	cmd_run_prepare(cfg.kvm_path);
	static struct restore rs;
	char holder[128];
	if (cfg.name)
		snprintf(holder, sizeof(holder), "VM '%s' (pid %d)", cfg.name, (int)getpid());
	else
		snprintf(holder, sizeof(holder), "a VM (pid %d)", (int)getpid());
	if (restore_open(&rs, store, snapshot, holder, !private_memory) != 0) {
		fprintf(stderr, "vmm: %s\n", error_message());
		return VM_EXIT_VMM_ERROR;
	}
	cfg.restore = &rs.state;
	cfg.ncpus = rs.state.ncpus;
	cfg.mem.ram_size = rs.state.ram_size;
	cfg.mem.nram = rs.state.nram;
	memcpy(cfg.mem.ram, rs.state.ram, rs.state.nram * sizeof(rs.state.ram[0]));
	cfg.mem.ram_pager = rs.pager;
	cfg.mem.ram_segment = rs.segment.fd >= 0 ? &rs.segment : NULL;
	cfg.origin_store = rs.store_real;
	cfg.origin_name = rs.name;
	if (cfg.record_working_set && working_set_check_writable(cfg.record_working_set) != 0) {
		fprintf(stderr, "vmm: %s\n", error_message());
		return VM_EXIT_VMM_ERROR;
	}
	static struct working_set prefetch;
	if (cfg.prefetch_path) {
		if (working_set_read(cfg.prefetch_path, &prefetch) != 0) {
			fprintf(stderr, "vmm: %s\n", error_message());
			return VM_EXIT_VMM_ERROR;
		}
		cfg.prefetch = &prefetch;
		/* Into the host-wide segment in bulk while the guest starts (restore.h). */
		if (restore_load_working_set(&rs, prefetch.pages, prefetch.count) != 0)
			fprintf(stderr, "vmm: %s\n", error_message());
	}
	static char not_shared[512];
	if (rs.share_error[0]) {
		snprintf(not_shared, sizeof(not_shared),
			 "snapshot '%s' is not shared with other VMs on this host (its pages stay this VM's): %s", snapshot,
			 rs.share_error);
		cfg.made_note = not_shared;
	}
	return cmd_run_vm(&cfg);
}

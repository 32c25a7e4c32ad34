/* vmm fork: fork a running VM into child VMs, through its monitor. */
#include "vmm/cli/cmd_client.h"
#include "vmm/lifecycle/fork.h"
#include "vmm/vm.h"

static const struct cli_option fork_options[] = {
	{"count", 'N', "COUNT", CMD_CLIENT_OPT_COUNT, "how many children (default 1, at most 64)"},
	CMD_CLIENT_OPTION_JSON,
	CMD_CLIENT_OPTION_MONITOR,
	CMD_CLIENT_OPTION_HELP,
	{0},
};

static void fork_help(FILE *f, const char *verb)
{
	(void)verb;
	fprintf(f, "usage: vmm fork [OPTIONS] NAME\n"
		   "Fork the running VM NAME into COUNT child VMs, without going through disk: the\n"
		   "children share the parent's memory physically and copy a page only when they write\n"
		   "it. Child K is a VM named NAME.K with its own monitor socket; the guest of each learns\n"
		   "which one it is from the identity port (index 0 in the parent, K in child K).\n"
		   "Children are numbered on over all the forks of a VM. The parent is paused for one\n"
		   "fork(2) whatever COUNT is; the command returns once every child runs or failed.\n"
		   "Children print 'vmm: NAME.K: guest ended with status S' on the parent's standard\n"
		   "error when they end. Ranges inherited 'none' (QMP vm-inherit) are left out of the\n"
		   "children; ranges inherited 'share' become memory the parent and all its children\n"
		   "share (a write by one is seen by all at once; not paged out, and a VM sharing memory\n"
		   "cannot be snapshotted; inherited 'copy' again, later children get a copy of their\n"
		   "own). Under a memory limit the children read the parent's paged-out pages from its\n"
		   "swap file and page out to it too (each page-out to a page the others read takes a\n"
		   "new place in the file). VMs with mapped files or external pagers cannot be forked.\n\n");
	cli_print_options(f, fork_options);
	fprintf(f, "\nExit status: 0 forked (at least one child made; each line says whether it runs),\n"
		   "1 the VM refused or made no child (its error is printed), 125 no such VM or bad\n"
		   "arguments.\n");
}

int cmd_fork(int argc, char **argv)
{
	const char *verb = "fork";
	struct cmd_client_args a;
	int status = cmd_client_parse(verb, "vmm fork [OPTIONS] NAME", fork_options, true, fork_help, argc, argv, &a);
	if (status != CMD_CLIENT_GO_ON)
		return status;
	json_t *args = json_pack("{s:i}", "count", a.count ? (int)a.count : 1), *ret = NULL;
	/* The VM answers once every child runs, or after FORK_READY_TIMEOUT_MS. */
	status = cmd_client_call(verb, &a, "fork", args, &ret, FORK_READY_TIMEOUT_MS + CMD_CLIENT_TIMEOUT_MS);
	json_decref(args);
	if (status)
		return status;
	if (a.json) {
		cmd_client_print_json(stdout, ret);
	} else {
		json_t *children = json_object_get(ret, "children"), *child;
		size_t i;
		json_array_foreach(children, i, child)
			printf("%s\tpid %lld\tforked in %.2f ms\t%s\n", json_string_value(json_object_get(child, "name")),
			       (long long)json_integer_value(json_object_get(child, "pid")),
			       (double)json_integer_value(json_object_get(child, "fork-ns")) / 1e6,
			       json_string_value(json_object_get(child, "status")));
		printf("parent paused %.2f ms; every child running or failed after %.2f ms\n",
		       (double)json_integer_value(json_object_get(ret, "pause-ns")) / 1e6,
		       (double)json_integer_value(json_object_get(ret, "ready-ns")) / 1e6);
	}
	json_decref(ret);
	return 0;
}

/* vmm memory: a running VM's guest-physical map, through its monitor (query-memory). */
#include <stdlib.h>
#include <string.h>

#include "vmm/cli/cmd_client.h"
#include "vmm/cli/progress.h"
#include "vmm/vm.h"

static const struct cli_option memory_options[] = {
	CMD_CLIENT_OPTION_JSON,
	CMD_CLIENT_OPTION_MONITOR,
	CMD_CLIENT_OPTION_HELP,
	{0},
};

static void memory_help(FILE *f, const char *verb)
{
	(void)verb;
	fprintf(f, "usage: vmm memory [OPTIONS] NAME\n"
		   "Show where every page of the VM NAME's guest memory comes from: each entry of its\n"
		   "guest-physical map (range, protection and maximum, inheritance, what backs it), and\n"
		   "under it the chain of memory objects the entry reads through, top first: object id,\n"
		   "pages resident, pages held by its pager, the pager, and its fault counters; an object\n"
		   "resident once per host (a restored snapshot shared by the VMs restoring it) says how\n"
		   "many VMs map it and how many of its pages the host holds, and the memory the VM's last\n"
		   "snapshot stored (the base of its next, incremental one) says so.\n\n");
	cli_print_options(f, memory_options);
	fprintf(f, "\nExit status: 0 shown, 1 the VM refused, 125 no such VM or bad arguments.\n");
}

static void memory_print(const json_t *m)
{
	json_t *entries = json_object_get(m, "entries"), *e;
	size_t i;
	/* Sizes in one unit, bytes as people read them; counts of pages below, in the objects. */
	uint64_t page = (uint64_t)json_integer_value(json_object_get(m, "page-size"));
	page = page ? page : 4096;
	char size[32], resident[32];
	printf("%-18s %-18s %10s %-4s %-4s %-5s %-8s %10s\n", "START", "END", "SIZE", "PROT", "MAX", "INHER", "REGION",
	       "RESIDENT");
	json_array_foreach(entries, i, e) {
		uint64_t start = (uint64_t)json_integer_value(json_object_get(e, "start"));
		uint64_t end = (uint64_t)json_integer_value(json_object_get(e, "end"));
		printf("0x%016llx 0x%016llx %10s %-4s %-4s %-5s %-8s %10s%s\n", (unsigned long long)start,
		       (unsigned long long)end, progress_bytes(size, sizeof(size), end - start),
		       json_string_value(json_object_get(e, "protection")),
		       json_string_value(json_object_get(e, "max-protection")),
		       json_string_value(json_object_get(e, "inheritance")), json_string_value(json_object_get(e, "region")),
		       progress_bytes(resident, sizeof(resident), (uint64_t)json_integer_value(json_object_get(e, "resident")) * page),
		       json_is_true(json_object_get(e, "needs-copy")) ? "  (copy-on-write pending)" : "");
		json_t *o;
		size_t k;
		json_array_foreach(json_object_get(e, "chain"), k, o) {
			json_t *pager = json_object_get(o, "pager");
			printf("  %*sobject %lld: %lld resident, %lld paged, pager %s, %s, %s, %s, %lld copied on write, "
			       "%lld zero-filled\n",
			       (int)(2 * k), "", (long long)json_integer_value(json_object_get(o, "id")),
			       (long long)json_integer_value(json_object_get(o, "resident")),
			       (long long)json_integer_value(json_object_get(o, "paged")),
			       json_is_string(pager) ? json_string_value(pager) : "none",
			       CLI_COUNT(json_integer_value(json_object_get(o, "faults")), "fault"),
			       CLI_COUNT(json_integer_value(json_object_get(o, "pageins")), "page-in"),
			       CLI_COUNT(json_integer_value(json_object_get(o, "pageouts")), "page-out"),
			       (long long)json_integer_value(json_object_get(o, "cow-pages")),
			       (long long)json_integer_value(json_object_get(o, "zero-fills")));
			json_t *host = json_object_get(o, "host");
			if (json_is_object(host))
				printf("  %*s  resident once on this host: mapped by %s, %s resident there\n", (int)(2 * k), "",
				       CLI_COUNT(json_integer_value(json_object_get(host, "mappers")), "VM"),
				       CLI_COUNT(json_integer_value(json_object_get(host, "resident")), "page"));
			if (json_is_true(json_object_get(o, "snapshot-base")))
				printf("  %*s  the last snapshot's memory: the next one lists only what is above it\n",
				       (int)(2 * k), "");
		}
	}
	json_int_t pages = json_integer_value(json_object_get(m, "resident-pages"));
	printf("%s (%s) resident in %s\n", CLI_COUNT(pages, "page"), progress_bytes(resident, sizeof(resident), (uint64_t)pages * page),
	       CLI_COUNT(json_integer_value(json_object_get(m, "objects")), "object"));
}

int cmd_memory(int argc, char **argv)
{
	const char *verb = "memory";
	struct cmd_client_args a;
	int status = cmd_client_parse(verb, "vmm memory [OPTIONS] NAME", memory_options, true, memory_help, argc, argv, &a);
	if (status != CMD_CLIENT_GO_ON)
		return status;
	json_t *ret = NULL;
	status = cmd_client_call(verb, &a, "query-memory", NULL, &ret, CMD_CLIENT_TIMEOUT_MS);
	if (status)
		return status;
	if (a.json)
		cmd_client_print_json(stdout, ret);
	else
		memory_print(ret);
	json_decref(ret);
	return 0;
}

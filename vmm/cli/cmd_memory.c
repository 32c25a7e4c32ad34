/*
 * vmm memory: a running VM's guest-physical map, through its monitor (query-memory); and
 * the monitor's Mach calls from the command line (vmm memory NAME vm-map path=... size=1G).
 */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "vmm/cli/cmd_client.h"
#include "vmm/cli/progress.h"
#include "vmm/error.h"
#include "vmm/vm.h"

#define MEMORY_USAGE "vmm memory [OPTIONS] NAME [CALL [KEY=VALUE...]]"

static const struct cli_option memory_options[] = {
	CMD_CLIENT_OPTION_JSON,
	CMD_CLIENT_OPTION_MONITOR,
	CMD_CLIENT_OPTION_HELP,
	{0},
};

static void memory_help(FILE *f, const char *verb)
{
	(void)verb;
	fprintf(f, "usage: " MEMORY_USAGE "\n"
		   "Show where every page of the VM NAME's guest memory comes from: each entry of its\n"
		   "guest-physical map (range, protection and maximum, inheritance, what backs it), and\n"
		   "under it the chain of memory objects the entry reads through, top first: object id,\n"
		   "pages resident, pages held by its pager, the pager, and its fault counters; an object\n"
		   "resident once per host (a restored snapshot shared by the VMs restoring it) says how\n"
		   "many VMs map it and how many of its pages the host holds, and the memory the VM's last\n"
		   "snapshot stored (the base of its next, incremental one) says so.\n\n"
		   "With CALL, one of the monitor's Mach calls (vm-allocate, vm-deallocate, vm-protect,\n"
		   "vm-inherit, vm-read, vm-write, vm-map, vm-copy, vm-region, vm-statistics,\n"
		   "vm-set-attributes, vm-export, vm-unexport; vmm(1) lists their arguments), send it\n"
		   "with KEY=VALUE arguments and print its answer as JSON (nothing when it has none).\n"
		   "A VALUE is true or false, a number (decimal or 0x hex, with an optional K, M, G or T:\n"
		   "addr=4G size=0x200000), or else a string: vmm memory web vm-map path=/srv/data.img\n"
		   "size=1G copy=false.\n\n");
	cli_print_options(f, memory_options);
	fprintf(f, "\nExit status: 0 shown or done, 1 the VM refused (Mach's code on standard error),\n"
		   "125 no such VM or bad arguments.\n");
}

/* @text as a call's argument: true, false, a number (decimal or 0x hex, times 2^10n for a
 * K, M, G or T after it), else the string. A new reference, NULL out of memory. */
static json_t *memory_value(const char *text)
{
	if (strcmp(text, "true") == 0 || strcmp(text, "false") == 0)
		return json_boolean(text[0] == 't');
	bool hex = text[0] == '0' && (text[1] == 'x' || text[1] == 'X');
	const char *digits = hex ? text + 2 : text;
	char *end;
	errno = 0;
	unsigned long long v = strtoull(digits, &end, hex ? 16 : 10);
	static const char units[] = "KMGT";
	const char *unit = *end ? strchr(units, *end) : NULL;
	unsigned shift = unit ? 10u * (unsigned)(unit - units + 1) : 0;
	bool number = *digits >= '0' && *digits <= '9' && end != digits && errno == 0 && (!*end || (unit && !end[1])) &&
		      (v << shift >> shift) == v && (v << shift) <= (unsigned long long)INT64_MAX;
	return number ? json_integer((json_int_t)(v << shift)) : json_string(text);
}

/* vmm memory NAME CALL KEY=VALUE...: @call with @n arguments @kv. */
static int memory_call(const char *verb, const struct cmd_client_args *a, const char *call, const char *const *kv,
		       unsigned n)
{
	if (strncmp(call, "vm-", 3) != 0) {
		fprintf(stderr, "vmm memory: '%s' is not one of the monitor's Mach calls (vm-map, vm-region, ...; see "
				"vmm memory --help)\n", call);
		return VM_EXIT_VMM_ERROR;
	}
	json_t *args = json_object();
	for (unsigned i = 0; args && i < n; i++) {
		const char *eq = strchr(kv[i], '=');
		if (!eq || eq == kv[i]) {
			fprintf(stderr, "vmm memory: argument '%s' is not KEY=VALUE\n", kv[i]);
			json_decref(args);
			return VM_EXIT_VMM_ERROR;
		}
		char key[64];
		snprintf(key, sizeof(key), "%.*s", (int)(eq - kv[i]), kv[i]);
		if (json_object_get(args, key)) {
			fprintf(stderr, "vmm memory: argument '%s' given twice\n", key);
			json_decref(args);
			return VM_EXIT_VMM_ERROR;
		}
		json_t *v = memory_value(eq + 1);
		if (!v || json_object_set_new(args, key, v) != 0) {
			json_decref(args);
			args = NULL;
		}
	}
	if (!args) {
		fprintf(stderr, "vmm memory: out of memory\n");
		return VM_EXIT_VMM_ERROR;
	}
	json_t *ret = NULL;
	int status = cmd_client_call(verb, a, call, args, &ret, CMD_CLIENT_TIMEOUT_MS);
	json_decref(args);
	if (status)
		return status;
	if (a->json) {
		cmd_client_print_json(stdout, ret);
	} else if (!json_is_object(ret) || json_object_size(ret)) {
		char *text = json_dumps(ret, JSON_INDENT(2) | JSON_ENCODE_ANY);
		printf("%s\n", text ? text : "null");
		free(text);
	}
	json_decref(ret);
	return 0;
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
	int status = cmd_client_parse_more(verb, MEMORY_USAGE, memory_options, memory_help, argc, argv, &a);
	if (status != CMD_CLIENT_GO_ON) {
		free(a.more);
		return status;
	}
	if (!a.name && !a.monitor) {
		free(a.more);
		fprintf(stderr, "vmm memory: no VM NAME given (usage: " MEMORY_USAGE ")\n");
		return VM_EXIT_VMM_ERROR;
	}
	if (a.nmore) {
		status = memory_call(verb, &a, a.more[0], a.more + 1, a.nmore - 1);
		free(a.more);
		return status;
	}
	free(a.more);
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

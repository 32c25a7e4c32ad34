/* vmm stats: a running VM's statistics (QMP 'query-stats'), once or every few seconds. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "vmm/cli/cmd_client.h"
#include "vmm/error.h"
#include "vmm/vm.h"

#define STATS_USAGE "vmm stats [OPTIONS] NAME"

static const struct cli_option stats_options[] = {
	{"watch", 'w', "TIME", CMD_CLIENT_OPT_WATCH, "query again every TIME (2, 500ms, 1m) until interrupted"},
	{"count", 'n', "N", CMD_CLIENT_OPT_COUNT, "with --watch: stop after N samples"},
	CMD_CLIENT_OPTION_JSON,
	CMD_CLIENT_OPTION_MONITOR,
	CMD_CLIENT_OPTION_HELP,
	{0},
};

static void stats_help(FILE *f, const char *verb)
{
	(void)verb;
	fprintf(f, "usage: " STATS_USAGE "\n"
		   "Print the statistics of the running VM NAME: one 'key value' line per figure,\n"
		   "sorted by key, values aligned. Keys are flat and dotted: vm.* (the VM as a\n"
		   "whole), vcpu.N.exits (exits the VMM handled, per vCPU), kvm.NAME and\n"
		   "vcpu.N.kvm.NAME (KVM's own binary statistics under the kernel's names), mem.*\n"
		   "(faults, page-ins and page-outs, residency, userfaultfd work, fault latency),\n"
		   "object.ID.* (per memory object), snapshot.* and dedup.* (snapshots taken and\n"
		   "their pages: zero, shared with the store, stored), monitor.* (the monitor's\n"
		   "clients, commands and events).\n\n");
	cli_print_options(f, stats_options);
	fprintf(f, "\nWith --json the object is printed as the VM sent it, one line per sample.\n"
		   "With --watch on a terminal the screen is redrawn for each sample; otherwise the\n"
		   "samples follow each other, separated by an empty line.\n\n"
		   "Exit status: 0 done, 1 the VM answered with an error, 125 no such VM, no answer,\n"
		   "or bad arguments.\n");
}

static int stats_key_cmp(const void *a, const void *b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Print @stats as sorted, aligned "key value" lines. */
static int stats_print(FILE *f, json_t *stats)
{
	size_t n = json_object_size(stats), i = 0, width = 0;
	const char **keys = malloc((n ? n : 1) * sizeof(*keys));
	if (!keys)
		return error_set(ENOMEM, "out of memory");
	const char *key;
	json_t *value;
	json_object_foreach(stats, key, value) {
		keys[i++] = key;
		if (strlen(key) > width)
			width = strlen(key);
	}
	qsort(keys, n, sizeof(*keys), stats_key_cmp);
	for (i = 0; i < n; i++) {
		value = json_object_get(stats, keys[i]);
		fprintf(f, "%-*s ", (int)width, keys[i]);
		if (json_is_integer(value))
			fprintf(f, "%lld\n", (long long)json_integer_value(value));
		else if (json_is_real(value))
			fprintf(f, "%.6g\n", json_real_value(value));
		else
			cmd_client_print_json(f, value);
	}
	free(keys);
	return 0;
}

static void stats_sleep(uint64_t ms)
{
	struct timespec t = {.tv_sec = (time_t)(ms / 1000), .tv_nsec = (long)(ms % 1000) * 1000000};
	while (nanosleep(&t, &t) != 0 && errno == EINTR)
		continue;
}

int cmd_stats(int argc, char **argv)
{
	struct cmd_client_args a;
	int status = cmd_client_parse("stats", STATS_USAGE, stats_options, true, stats_help, argc, argv, &a);
	if (status != CMD_CLIENT_GO_ON)
		return status;
	if (a.count && !a.watch_ms) {
		fprintf(stderr, "vmm stats: --count needs --watch\n");
		return VM_EXIT_VMM_ERROR;
	}
	struct qmp_client *c;
	status = cmd_client_open("stats", a.name, a.monitor, &c);
	if (status)
		return status;
	bool redraw = a.watch_ms && !a.json && isatty(STDOUT_FILENO);
	for (unsigned sample = 1;; sample++) {
		json_t *stats = NULL;
		int r = qmp_client_execute(c, "query-stats", NULL, &stats, CMD_CLIENT_TIMEOUT_MS);
		if (r == 0 && !json_is_object(stats))
			r = error_set(EPROTO, "query-stats did not return an object");
		if (r) {
			json_decref(stats);
			status = cmd_client_fail("stats", r);
			break;
		}
		if (redraw)
			fputs("\033[H\033[2J", stdout);
		else if (sample > 1 && !a.json)
			fputc('\n', stdout);
		if (a.json)
			cmd_client_print_json(stdout, stats);
		else
			r = stats_print(stdout, stats);
		json_decref(stats);
		fflush(stdout);
		if (r) {
			status = cmd_client_fail("stats", r);
			break;
		}
		if (!a.watch_ms || (a.count && sample == a.count))
			break;
		stats_sleep(a.watch_ms);
	}
	qmp_client_close(c);
	return status;
}

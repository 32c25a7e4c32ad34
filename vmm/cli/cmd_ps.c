/* vmm ps: the VMs whose monitor sockets are in the runtime directory, and their state. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "vmm/cli/cmd_client.h"
#include "vmm/error.h"
#include "vmm/monitor/monitor.h"
#include "vmm/vm.h"

#define PS_USAGE "vmm ps [OPTIONS]"
#define PS_TIMEOUT_MS 2000 /* one stuck VM must not hold up the list for long */

static const struct cli_option ps_options[] = {
	CMD_CLIENT_OPTION_JSON,
	{"monitor", 0, "PATH", CMD_CLIENT_OPT_MONITOR, "look at this monitor socket only"},
	CMD_CLIENT_OPTION_HELP,
	{0},
};

static void ps_help(FILE *f, const char *verb)
{
	(void)verb;
	fprintf(f, "usage: " PS_USAGE "\n"
		   "List the VMs that have a monitor socket in the runtime directory\n"
		   "($XDG_RUNTIME_DIR/vmm) or in /run/vmm (a user other than root sees there only\n"
		   "the sockets they own; a name in both is listed once, from the first): NAME, STATUS\n"
		   "(QMP query-status: running, paused, shutdown, ...), the PID of its vmm process\n"
		   "and the SOCKET. A socket nothing listens on any more shows as 'stale' (its vmm\n"
		   "was killed), and a note on standard error counts them ('vmm rm --stale' removes\n"
		   "them); one that cannot be queried shows as 'unreachable', with the reason on\n"
		   "standard error.\n\n");
	cli_print_options(f, ps_options);
	fprintf(f, "\nWith --json: an array of {\"name\", \"status\", \"running\", \"pid\", \"socket\"}\n"
		   "objects (pid and running are null when unknown; unreachable ones add \"error\").\n\n"
		   "Exit status: 0, also when some VMs are stale or unreachable; 125 bad arguments\n"
		   "or an unreadable runtime directory.\n");
}

/* What ps knows of one socket. */
static json_t *ps_probe(const char *name, const char *path)
{
	json_t *row = json_pack("{s:s,s:s,s:n,s:n,s:s}", "name", name, "status", "unreachable", "running", "pid",
				"socket", path);
	struct qmp_client *c;
	int r = row ? qmp_client_open(&c, NULL, path, PS_TIMEOUT_MS) : -ENOMEM;
	if (r == -ECONNREFUSED) {
		json_object_set_new(row, "status", json_string("stale"));
		return row;
	}
	if (r == 0) {
		json_t *vmm = NULL, *status = NULL;
		r = qmp_client_execute(c, "query-vmm", NULL, &vmm, PS_TIMEOUT_MS);
		if (r == 0) {
			json_object_set(row, "pid", json_object_get(vmm, "pid"));
			r = qmp_client_execute(c, "query-status", NULL, &status, PS_TIMEOUT_MS);
		}
		if (r == 0) {
			json_object_set(row, "status", json_object_get(status, "status"));
			json_object_set(row, "running", json_object_get(status, "running"));
		} else if (r == -EREMOTEIO && strcmp(qmp_client_error_class(c), "CommandNotFound") == 0) {
			json_object_set_new(row, "status", json_string("unknown")); /* a VM without query-status */
			r = 0;
		}
		json_decref(vmm);
		json_decref(status);
		qmp_client_close(c);
	}
	if (r && row)
		json_object_set_new(row, "error", json_string(error_message()));
	return row;
}

static void ps_print(json_t *rows)
{
	int wname = 4, wstatus = 6;
	size_t i;
	json_t *row;
	json_array_foreach(rows, i, row) {
		int ln = (int)strlen(json_string_value(json_object_get(row, "name")));
		int ls = (int)strlen(json_string_value(json_object_get(row, "status")));
		wname = ln > wname ? ln : wname;
		wstatus = ls > wstatus ? ls : wstatus;
	}
	printf("%-*s  %-*s  %7s  %s\n", wname, "NAME", wstatus, "STATUS", "PID", "SOCKET");
	json_array_foreach(rows, i, row) {
		json_t *pid = json_object_get(row, "pid");
		char pidtext[24] = "-";
		if (json_is_integer(pid))
			snprintf(pidtext, sizeof(pidtext), "%lld", (long long)json_integer_value(pid));
		printf("%-*s  %-*s  %7s  %s\n", wname, json_string_value(json_object_get(row, "name")), wstatus,
		       json_string_value(json_object_get(row, "status")), pidtext,
		       json_string_value(json_object_get(row, "socket")));
	}
}

int cmd_ps(int argc, char **argv)
{
	struct cmd_client_args a;
	int status = cmd_client_parse("ps", PS_USAGE, ps_options, false, ps_help, argc, argv, &a);
	if (status != CMD_CLIENT_GO_ON)
		return status;
	struct cmd_client_vm *vms = NULL, one;
	size_t n = 0;
	if (a.monitor) {
		const char *base = strrchr(a.monitor, '/');
		base = base ? base + 1 : a.monitor;
		size_t len = strlen(base);
		one.name = strndup(base, len > 5 && strcmp(base + len - 5, ".sock") == 0 ? len - 5 : len);
		one.path = strdup(a.monitor);
		if (!one.name || !one.path) {
			free(one.name), free(one.path);
			return cmd_client_fail("ps", error_set(ENOMEM, "out of memory"));
		}
		vms = &one;
		n = 1;
	} else {
		int r = cmd_client_list_vms(&vms, &n);
		if (r)
			return cmd_client_fail("ps", r);
	}
	json_t *rows = json_array();
	unsigned stale = 0;
	for (size_t i = 0; i < n; i++) {
		json_t *row = ps_probe(vms[i].name, vms[i].path);
		json_t *err = json_object_get(row, "error");
		if (err && !a.json)
			fprintf(stderr, "vmm ps: %s: %s\n", vms[i].name, json_string_value(err));
		const char *st = json_string_value(json_object_get(row, "status"));
		if (st && strcmp(st, "stale") == 0)
			stale++;
		json_array_append_new(rows, row);
	}
	if (a.monitor) {
		free(one.name);
		free(one.path);
	} else {
		cmd_client_free_vms(vms, n);
	}
	if (a.json)
		cmd_client_print_json(stdout, rows);
	else
		ps_print(rows);
	/* The table stays a table for scripts; the hint goes to the person. */
	if (stale && !a.json && !a.monitor)
		fprintf(stderr, "vmm ps: %u stale; vmm rm --stale removes them\n", stale);
	json_decref(rows);
	return 0;
}

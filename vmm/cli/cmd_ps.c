/* vmm ps: the VMs whose monitor sockets are in the runtime directory, and their state. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "vmm/cli/cmd_client.h"
#include "vmm/cli/progress.h"
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
		   "(QMP query-status: running, paused, shutdown, ...), the PID of its vmm process,\n"
		   "its vCPUs, MEMORY (guest RAM) and RESIDENT (what of it the VM holds in host\n"
		   "memory), its UPTIME (how long its process has run), its PARENT (the VM it was\n"
		   "forked from, or the snapshot it was restored from) and the SOCKET; '-' where a\n"
		   "VM cannot tell. A socket nothing listens on any more shows as 'stale' (its vmm\n"
		   "was killed), and a note on standard error counts them ('vmm rm --stale' removes\n"
		   "them); one that cannot be queried shows as 'unreachable', with the reason on\n"
		   "standard error.\n\n");
	cli_print_options(f, ps_options);
	fprintf(f, "\nWith --json: an array of {\"name\", \"status\", \"running\", \"pid\", \"vcpus\", \"memory\",\n"
		   "\"resident\" (bytes), \"uptime\" (seconds), \"parent\", \"socket\"} objects (null when\n"
		   "unknown; unreachable ones add \"error\").\n\n"
		   "Exit status: 0, also when some VMs are stale or unreachable; 125 bad arguments\n"
		   "or an unreadable runtime directory.\n");
}

/* Seconds the process @pid has run (from /proc), or -1 when it cannot be told. */
static double ps_process_age(pid_t pid)
{
	char path[64], stat[1024];
	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	FILE *f = fopen(path, "r");
	size_t n = f ? fread(stat, 1, sizeof(stat) - 1, f) : 0;
	if (f)
		fclose(f);
	stat[n] = '\0';
	double up;
	f = fopen("/proc/uptime", "r");
	int got = f ? fscanf(f, "%lf", &up) : 0;
	if (f)
		fclose(f);
	/* Field 22, starttime in clock ticks after boot, counted after the ")" that ends comm
	 * (which may hold spaces and parentheses). */
	const char *p = strrchr(stat, ')');
	unsigned long long start;
	if (got != 1 || !p ||
	    sscanf(p + 1, " %*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %*u %*u %*d %*d %*d %*d %*d %*d %llu", &start) != 1)
		return -1;
	double age = up - (double)start / (double)sysconf(_SC_CLK_TCK);
	return age < 0 ? 0 : age;
}

/* The VM's configuration and memory from its monitor @c into @row: vcpus, memory (bytes),
 * resident (bytes), parent (the VM it was forked from, or "snapshot NAME" it was restored
 * from). A VM too old to answer one of them leaves it null. */
static void ps_describe(struct qmp_client *c, json_t *row)
{
	json_t *config = NULL, *stats = NULL;
	if (qmp_client_execute(c, "query-config", NULL, &config, PS_TIMEOUT_MS) == 0 && json_is_object(config)) {
		json_object_set(row, "vcpus", json_object_get(config, "vcpus"));
		json_object_set(row, "memory", json_object_get(config, "memory"));
		json_t *fork = json_object_get(config, "fork"), *origin = json_object_get(config, "origin");
		const char *parent = json_string_value(json_object_get(fork, "parent"));
		const char *snapshot = json_string_value(json_object_get(origin, "snapshot"));
		if (parent)
			json_object_set_new(row, "parent", json_string(parent));
		else if (snapshot)
			json_object_set_new(row, "parent", json_sprintf("snapshot %s", snapshot));
	}
	if (qmp_client_execute(c, "query-stats", NULL, &stats, PS_TIMEOUT_MS) == 0) {
		json_t *pages = json_object_get(stats, "mem.resident_pages"), *size = json_object_get(stats, "mem.page_size");
		if (json_is_integer(pages) && json_is_integer(size))
			json_object_set_new(row, "resident", json_integer(json_integer_value(pages) * json_integer_value(size)));
	}
	json_decref(config);
	json_decref(stats);
}

/* What ps knows of one socket. */
static json_t *ps_probe(const char *name, const char *path)
{
	json_t *row = json_pack("{s:s,s:s,s:n,s:n,s:n,s:n,s:n,s:n,s:n,s:s}", "name", name, "status", "unreachable",
				"running", "pid", "vcpus", "memory", "resident", "uptime", "parent", "socket", path);
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
			json_t *pid = json_object_get(vmm, "pid");
			json_object_set(row, "pid", pid);
			double age = json_is_integer(pid) ? ps_process_age((pid_t)json_integer_value(pid)) : -1;
			if (age >= 0)
				json_object_set_new(row, "uptime", json_integer((json_int_t)age));
			r = qmp_client_execute(c, "query-status", NULL, &status, PS_TIMEOUT_MS);
		}
		if (r == 0)
			ps_describe(c, row);
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

/* @seconds as ps shows an uptime: "42s", "5m02s", "3h07m", "12d04h". */
static void ps_uptime(char *buf, size_t size, json_int_t seconds)
{
	long long s = seconds;
	if (s < 60)
		snprintf(buf, size, "%llds", s);
	else if (s < 3600)
		snprintf(buf, size, "%lldm%02llds", s / 60, s % 60);
	else if (s < 86400)
		snprintf(buf, size, "%lldh%02lldm", s / 3600, s % 3600 / 60);
	else
		snprintf(buf, size, "%lldd%02lldh", s / 86400, s % 86400 / 3600);
}

/* The text of @row's @key for the table: "-" when null. */
static const char *ps_cell(json_t *row, const char *key, char *buf, size_t size)
{
	json_t *v = json_object_get(row, key);
	if (json_is_string(v))
		return json_string_value(v);
	if (!json_is_integer(v))
		return "-";
	json_int_t n = json_integer_value(v);
	if (strcmp(key, "memory") == 0 || strcmp(key, "resident") == 0)
		return progress_bytes(buf, size, (uint64_t)n);
	if (strcmp(key, "uptime") == 0)
		ps_uptime(buf, size, n);
	else
		snprintf(buf, size, "%lld", (long long)n);
	return buf;
}

static void ps_print(json_t *rows)
{
	int wname = 4, wstatus = 6, wparent = 6;
	size_t i;
	json_t *row;
	char t[8][32];
	json_array_foreach(rows, i, row) {
		int ln = (int)strlen(json_string_value(json_object_get(row, "name")));
		int ls = (int)strlen(json_string_value(json_object_get(row, "status")));
		int lp = (int)strlen(ps_cell(row, "parent", t[0], sizeof(t[0])));
		wname = ln > wname ? ln : wname;
		wstatus = ls > wstatus ? ls : wstatus;
		wparent = lp > wparent ? lp : wparent;
	}
	printf("%-*s  %-*s  %7s  %4s  %9s  %9s  %7s  %-*s  %s\n", wname, "NAME", wstatus, "STATUS", "PID", "CPUS",
	       "MEMORY", "RESIDENT", "UPTIME", wparent, "PARENT", "SOCKET");
	json_array_foreach(rows, i, row) {
		printf("%-*s  %-*s  %7s  %4s  %9s  %9s  %7s  %-*s  %s\n", wname, json_string_value(json_object_get(row, "name")),
		       wstatus, json_string_value(json_object_get(row, "status")), ps_cell(row, "pid", t[1], sizeof(t[1])),
		       ps_cell(row, "vcpus", t[2], sizeof(t[2])), ps_cell(row, "memory", t[3], sizeof(t[3])),
		       ps_cell(row, "resident", t[4], sizeof(t[4])), ps_cell(row, "uptime", t[5], sizeof(t[5])), wparent,
		       ps_cell(row, "parent", t[6], sizeof(t[6])), json_string_value(json_object_get(row, "socket")));
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

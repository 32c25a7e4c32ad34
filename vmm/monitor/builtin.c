/* The commands every monitor has, and the monitor's own statistics. */
#include "vmm/monitor/monitor_impl.h"

#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <unistd.h>

#include "vmm/error.h"

/* ---- built-in commands ---------------------------------------------------------------- */

static int monitor_cmd_capabilities(struct monitor_call *call, void *ctx, json_t *args, json_t **ret)
{
	(void)ctx;
	(void)ret;
	json_t *enable = json_object_get(args, "enable");
	if (enable && json_array_size(enable)) {
		json_t *cap = json_array_get(enable, 0);
		return error_set(0, "Capability '%.100s' is not available", json_is_string(cap) ? json_string_value(cap) : "?");
	}
	call->client->negotiated = true;
	return 0;
}

json_t *monitor_version_json(void)
{
	return json_pack("{s:{s:i,s:i,s:i},s:s}", "qemu", "major", MONITOR_VERSION_MAJOR, "minor",
			 MONITOR_VERSION_MINOR, "micro", MONITOR_VERSION_MICRO, "package", "vmm");
}

static int monitor_cmd_version(struct monitor_call *call, void *ctx, json_t *args, json_t **ret)
{
	(void)call, (void)ctx, (void)args;
	*ret = monitor_version_json();
	return *ret ? 0 : -ENOMEM;
}

static json_t *monitor_command_json(const struct monitor_command *cmd)
{
	json_t *args = json_array();
	for (const struct monitor_arg *a = cmd->args; args && a && a->name; a++)
		if (json_array_append_new(args, json_pack("{s:s,s:s,s:b,s:s}", "name", a->name, "type",
							  monitor_type_names[a->type], "required", a->required,
							  "help", a->help ? a->help : ""))) {
			json_decref(args);
			args = NULL;
		}
	if (!args)
		return NULL;
	return json_pack("{s:s,s:s,s:o}", "name", cmd->name, "help", cmd->help ? cmd->help : "", "arguments", args);
}

static int monitor_cmd_commands(struct monitor_call *call, void *ctx, json_t *args, json_t **ret)
{
	(void)ctx, (void)args;
	struct monitor *mon = call->mon;
	json_t *list = json_array();
	for (unsigned t = 0; list && t < mon->ntables; t++)
		for (const struct monitor_command *cmd = mon->tables[t].cmds; list && cmd->name; cmd++)
			if (json_array_append_new(list, monitor_command_json(cmd))) {
				json_decref(list);
				list = NULL;
			}
	*ret = list;
	return list ? 0 : -ENOMEM;
}

static int monitor_cmd_vmm(struct monitor_call *call, void *ctx, json_t *args, json_t **ret)
{
	(void)ctx, (void)args;
	struct monitor *mon = call->mon;
	*ret = json_pack("{s:o,s:I,s:o,s:i}", "name", mon->cfg.name ? monitor_json_text(mon->cfg.name) : json_null(),
			 "pid", (json_int_t)getpid(), "socket", mon->path[0] ? monitor_json_text(mon->path) : json_null(),
			 "clients", (int)atomic_load(&mon->nclients_now));
	return *ret ? 0 : -ENOMEM;
}

static int monitor_cmd_stats(struct monitor_call *call, void *ctx, json_t *args, json_t **ret)
{
	(void)ctx, (void)args;
	struct monitor *mon = call->mon;
	json_t *stats = json_object();
	if (!stats)
		return -ENOMEM;
	int r = mon->cfg.ops && mon->cfg.ops->query_stats ? mon->cfg.ops->query_stats(mon->cfg.ctx, stats) : 0;
	if (r == 0)
		r = monitor_stats(mon, stats);
	if (r < 0) {
		json_decref(stats);
		return r;
	}
	*ret = stats;
	return 0;
}

static const char *const monitor_run_state_names[] = {
	[MONITOR_RUN_PRELAUNCH] = "prelaunch",        [MONITOR_RUN_RUNNING] = "running",
	[MONITOR_RUN_PAUSED] = "paused",              [MONITOR_RUN_SAVE_VM] = "save-vm",
	[MONITOR_RUN_RESTORE_VM] = "restore-vm",      [MONITOR_RUN_SHUTDOWN] = "shutdown",
	[MONITOR_RUN_INTERNAL_ERROR] = "internal-error", [MONITOR_RUN_GUEST_PANICKED] = "guest-panicked",
};

static int monitor_cmd_status(struct monitor_call *call, void *ctx, json_t *args, json_t **ret)
{
	(void)ctx, (void)args;
	struct monitor *mon = call->mon;
	enum monitor_run_state state = MONITOR_RUN_RUNNING;
	int r = mon->cfg.ops->query_status(mon->cfg.ctx, &state);
	if (r < 0)
		return r;
	if ((unsigned)state >= sizeof(monitor_run_state_names) / sizeof(monitor_run_state_names[0]))
		return error_set(0, "the VM reported an unknown run state %d", (int)state);
	*ret = json_pack("{s:s,s:b}", "status", monitor_run_state_names[state], "running", state == MONITOR_RUN_RUNNING);
	return *ret ? 0 : -ENOMEM;
}

static int monitor_cmd_stop(struct monitor_call *call, void *ctx, json_t *args, json_t **ret)
{
	(void)ctx, (void)args, (void)ret;
	return call->mon->cfg.ops->stop(call, call->mon->cfg.ctx);
}

static int monitor_cmd_cont(struct monitor_call *call, void *ctx, json_t *args, json_t **ret)
{
	(void)ctx, (void)args, (void)ret;
	return call->mon->cfg.ops->cont(call, call->mon->cfg.ctx);
}

static int monitor_cmd_quit(struct monitor_call *call, void *ctx, json_t *args, json_t **ret)
{
	(void)ctx, (void)args, (void)ret;
	return call->mon->cfg.ops->quit(call, call->mon->cfg.ctx);
}

static const struct monitor_arg monitor_capabilities_args[] = {
	{"enable", MONITOR_ARG_ARRAY, false, "capabilities to enable (none are offered)"},
	{NULL},
};

static const struct monitor_command monitor_builtin_commands[] = {
	{"qmp_capabilities", monitor_cmd_capabilities, monitor_capabilities_args,
	 "leave capabilities negotiation: must come first"},
	{"query-version", monitor_cmd_version, NULL, "the version of the monitor"},
	{"query-commands", monitor_cmd_commands, NULL, "the commands available, with their arguments"},
	{"query-vmm", monitor_cmd_vmm, NULL, "the VM's name, the VMM's pid, the socket and the number of clients"},
	{"query-stats", monitor_cmd_stats, NULL, "statistics as flat dotted keys -> numbers"},
	{NULL},
};

void monitor_builtin_add(struct monitor *mon)
{
	mon->tables[mon->ntables++] = (struct monitor_table){monitor_builtin_commands, mon};
	const struct monitor_ops *ops = mon->cfg.ops;
	unsigned n = 0;
	if (ops && ops->query_status)
		mon->ops_cmds[n++] = (struct monitor_command){"query-status", monitor_cmd_status, NULL,
							      "the run state: {\"status\", \"running\"}"};
	if (ops && ops->stop)
		mon->ops_cmds[n++] = (struct monitor_command){"stop", monitor_cmd_stop, NULL, "pause every vCPU"};
	if (ops && ops->cont)
		mon->ops_cmds[n++] = (struct monitor_command){"cont", monitor_cmd_cont, NULL, "resume a paused VM"};
	if (ops && ops->quit)
		mon->ops_cmds[n++] = (struct monitor_command){"quit", monitor_cmd_quit, NULL, "end the VM and its VMM"};
	mon->tables[mon->ntables++] = (struct monitor_table){mon->ops_cmds, mon};
}

int monitor_stats(struct monitor *mon, json_t *stats)
{
	struct {
		const char *key;
		unsigned long long v;
	} figures[] = {
		{"monitor.clients", atomic_load(&mon->nclients_now)},
		{"monitor.clients_accepted", atomic_load(&mon->clients_accepted)},
		{"monitor.clients_refused", atomic_load(&mon->clients_refused)},
		{"monitor.clients_dropped", atomic_load(&mon->clients_dropped)},
		{"monitor.commands", atomic_load(&mon->commands)},
		{"monitor.command_errors", atomic_load(&mon->command_errors)},
		{"monitor.events", atomic_load(&mon->events_sent)},
		{"monitor.events_dropped", atomic_load(&mon->events_dropped)},
	};
	for (size_t i = 0; i < sizeof(figures) / sizeof(figures[0]); i++)
		if (monitor_stat_set(stats, figures[i].v, "%s", figures[i].key))
			return -ENOMEM;
	return 0;
}

int monitor_stat_set(json_t *stats, uint64_t value, const char *fmt, ...)
{
	char key[256];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(key, sizeof(key), fmt, ap);
	va_end(ap);
	json_int_t v = value > (uint64_t)INT64_MAX ? INT64_MAX : (json_int_t)value;
	return json_object_set_new(stats, key, json_integer(v)) ? -ENOMEM : 0;
}


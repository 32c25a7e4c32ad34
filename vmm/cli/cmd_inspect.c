/*
 * vmm inspect: everything about one running VM as one JSON object: its configuration
 * (query-config), its state (query-status), its lineage (the snapshot it was restored
 * from, the VM it was forked from) and its files (monitor socket, log).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "vmm/cli/cmd_client.h"
#include "vmm/devices/console.h"
#include "vmm/error.h"
#include "vmm/monitor/monitor.h"
#include "vmm/vm.h"

#define INSPECT_USAGE "vmm inspect [OPTIONS] NAME"

static const struct cli_option inspect_options[] = {
	CMD_CLIENT_OPTION_JSON,
	CMD_CLIENT_OPTION_MONITOR,
	CMD_CLIENT_OPTION_HELP,
	{0},
};

static void inspect_help(FILE *f, const char *verb)
{
	(void)verb;
	fprintf(f, "usage: " INSPECT_USAGE "\n"
		   "Print what there is to know of the running VM NAME as one JSON object, indented:\n"
		   "  {\"name\", \"config\": {\"memory\" (bytes), \"vcpus\", \"kernel\", \"cmdline\", \"uuid\"},\n"
		   "   \"state\": {\"status\", \"running\"},\n"
		   "   \"lineage\": {\"origin\": {\"store\", \"snapshot\"} of a restored VM, else null,\n"
		   "               \"fork\": {\"parent\", \"index\", \"generation\"} of a forked VM, else null},\n"
		   "   \"paths\": {\"socket\": its monitor socket, \"log\": NAME.log beside it, or null}}\n"
		   "A VM too old to report its lineage has null there.\n\n");
	cli_print_options(f, inspect_options);
	fprintf(f, "\nWith --json: the same object on one line.\n\n"
		   "Exit status: 0 printed, 1 the VM refused, 125 no such VM, no answer or bad\n"
		   "arguments.\n");
}

/* @v when it is an object, else null (a new reference either way). */
static json_t *inspect_object_or_null(json_t *v)
{
	return json_is_object(v) ? json_incref(v) : json_null();
}

/* "paths" into *paths: the socket @a names (--monitor PATH, or NAME's) and the log beside
 * it when it exists. 0, or -errno with the message set. */
static int inspect_paths(const struct cmd_client_args *a, json_t **paths)
{
	char sock[4096], log[4096];
	int r = cmd_client_socket(a, sock, sizeof(sock));
	if (r)
		return r;
	bool has_log = console_log_path(sock, log, sizeof(log)) == 0 && access(log, F_OK) == 0;
	*paths = json_pack("{s:s,s:s?}", "socket", sock, "log", has_log ? log : NULL);
	return *paths ? 0 : error_set(ENOMEM, "out of memory");
}

/* The inspection of the VM behind @c: see inspect_help. 0 with *out, or -errno with the
 * message set. */
static int inspect_query(struct qmp_client *c, const struct cmd_client_args *a, json_t **out)
{
	json_t *config = NULL, *status = NULL;
	*out = NULL;
	int r = qmp_client_execute(c, "query-config", NULL, &config, CMD_CLIENT_TIMEOUT_MS);
	if (!r && !json_is_object(config))
		r = error_set(EPROTO, "query-config did not return an object");
	if (!r)
		r = qmp_client_execute(c, "query-status", NULL, &status, CMD_CLIENT_TIMEOUT_MS);
	json_t *paths = NULL;
	if (!r)
		r = inspect_paths(a, &paths);
	if (!r) {
		json_t *name = json_incref(json_object_get(config, "name"));
		json_t *lineage = json_pack("{s:o,s:o}", "origin", inspect_object_or_null(json_object_get(config, "origin")),
					    "fork", inspect_object_or_null(json_object_get(config, "fork")));
		json_object_del(config, "name");
		json_object_del(config, "origin");
		json_object_del(config, "fork");
		*out = json_pack("{s:o?,s:O,s:O,s:o,s:O}", "name", name, "config", config, "state", status, "lineage", lineage,
				 "paths", paths);
		if (!*out)
			r = error_set(ENOMEM, "out of memory");
	}
	json_decref(paths);
	json_decref(config);
	json_decref(status);
	return r;
}

int cmd_inspect(int argc, char **argv)
{
	const char *verb = "inspect";
	struct cmd_client_args a;
	int status = cmd_client_parse(verb, INSPECT_USAGE, inspect_options, true, inspect_help, argc, argv, &a);
	if (status != CMD_CLIENT_GO_ON)
		return status;
	struct qmp_client *c;
	status = cmd_client_open(verb, a.name, a.monitor, &c);
	if (status)
		return status;
	json_t *out;
	int r = inspect_query(c, &a, &out);
	qmp_client_close(c);
	if (r)
		return cmd_client_fail(verb, r);
	if (a.json) {
		cmd_client_print_json(stdout, out);
	} else {
		char *s = json_dumps(out, JSON_INDENT(2));
		printf("%s\n", s ? s : "null");
		free(s);
	}
	json_decref(out);
	return 0;
}

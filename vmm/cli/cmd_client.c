#include "vmm/cli/cmd_client.h"

#include <errno.h>
#include <stdlib.h>

#include "vmm/error.h"
#include "vmm/vm.h"

/* The parse itself: 0, 1 for --help, or CLI_ERROR with the message set. */
static int cmd_client_parse_args(const char *verb, const char *usage, const struct cli_option *opts,
				 bool takes_name, int argc, char **argv, struct cmd_client_args *a)
{
	*a = (struct cmd_client_args){0};
	struct cli_parser p;
	cli_init(&p, verb, opts, argc, argv, 1);
	const char *v;
	int id;
	char what[64];
	while ((id = cli_next(&p, &v)) != CLI_END) {
		switch (id) {
		case CLI_ERROR:
			return CLI_ERROR;
		case CLI_POSITIONAL:
			if (!takes_name)
				return error_set(0, "vmm %s: unexpected argument '%s' (usage: %s)", verb, v, usage), CLI_ERROR;
			if (a->name)
				return error_set(0, "vmm %s: one NAME only ('%s' and '%s' given)", verb, a->name, v), CLI_ERROR;
			a->name = v;
			break;
		case CMD_CLIENT_OPT_MONITOR:
			a->monitor = v;
			break;
		case CMD_CLIENT_OPT_JSON:
			a->json = true;
			break;
		case CMD_CLIENT_OPT_WATCH:
			snprintf(what, sizeof(what), "vmm %s: --watch", verb);
			if (cli_parse_duration_ms(what, v, &a->watch_ms))
				return CLI_ERROR;
			break;
		case CMD_CLIENT_OPT_COUNT:
			snprintf(what, sizeof(what), "vmm %s: --count", verb);
			if (cli_parse_uint(what, v, 1, 1000000000, &a->count))
				return CLI_ERROR;
			break;
		case CMD_CLIENT_OPT_STORE:
			a->store = v;
			break;
		case CMD_CLIENT_OPT_AS:
			a->as = v;
			break;
		case CMD_CLIENT_OPT_HELP:
			return 1;
		}
	}
	if (takes_name && !a->name && !a->monitor)
		return error_set(0, "vmm %s: no VM NAME given (usage: %s)", verb, usage), CLI_ERROR;
	return 0;
}

int cmd_client_parse(const char *verb, const char *usage, const struct cli_option *opts, bool takes_name,
		     void (*help)(FILE *f, const char *verb), int argc, char **argv, struct cmd_client_args *a)
{
	int r = cmd_client_parse_args(verb, usage, opts, takes_name, argc, argv, a);
	if (r == 1) {
		help(stdout, verb);
		return 0;
	}
	if (r) {
		fprintf(stderr, "%s\n", error_message());
		return VM_EXIT_VMM_ERROR;
	}
	return CMD_CLIENT_GO_ON;
}

int cmd_client_fail(const char *verb, int r)
{
	fprintf(stderr, "vmm %s: %s\n", verb, error_message());
	return r == -EREMOTEIO ? 1 : VM_EXIT_VMM_ERROR;
}

int cmd_client_open(const char *verb, const char *name, const char *path, struct qmp_client **c)
{
	int r = qmp_client_open(c, name, path, CMD_CLIENT_TIMEOUT_MS);
	return r ? cmd_client_fail(verb, r) : 0;
}

void cmd_client_print_json(FILE *f, const json_t *value)
{
	char *s = json_dumps(value, JSON_COMPACT | JSON_ENCODE_ANY);
	fprintf(f, "%s\n", s ? s : "null");
	free(s);
}

int cmd_client_call(const char *verb, const struct cmd_client_args *a, const char *command, json_t *args,
		    json_t **ret, int timeout_ms)
{
	struct qmp_client *c;
	int status = cmd_client_open(verb, a->name, a->monitor, &c);
	if (status)
		return status;
	int r = qmp_client_execute(c, command, args, ret, timeout_ms);
	qmp_client_close(c);
	return r ? cmd_client_fail(verb, r) : 0;
}

/* vmm stop|cont|quit: pause, resume or end a running VM through its monitor. */
#include <string.h>

#include "vmm/cli/cmd_client.h"
#include "vmm/vm.h"

static const struct cli_option control_options[] = {
	CMD_CLIENT_OPTION_MONITOR,
	CMD_CLIENT_OPTION_HELP,
	{0},
};

static const struct {
	const char *verb;
	const char *what;
} control_verbs[] = {
	{"stop", "Pause every vCPU of the running VM NAME (QMP 'stop'). Its memory and devices stay\n"
		 "as they are; 'vmm cont NAME' resumes it."},
	{"cont", "Resume the paused VM NAME (QMP 'cont')."},
	{"quit", "End the VM NAME and its vmm process (QMP 'quit'). Returns once the VM has\n"
		 "accepted; the 'vmm run' that runs it then exits."},
};

static const char *control_what(const char *verb)
{
	for (size_t i = 0; i < sizeof(control_verbs) / sizeof(control_verbs[0]); i++)
		if (strcmp(verb, control_verbs[i].verb) == 0)
			return control_verbs[i].what;
	return NULL;
}

static void control_help(FILE *f, const char *verb)
{
	fprintf(f, "usage: vmm %s [OPTIONS] NAME\n%s\n\n", verb, control_what(verb));
	cli_print_options(f, control_options);
	fprintf(f, "\nNAME is the name given to 'vmm run -n NAME'; its monitor socket is\n"
		   "$XDG_RUNTIME_DIR/vmm/NAME.sock, or /run/vmm/NAME.sock when XDG_RUNTIME_DIR is unset.\n\n"
		   "Exit status: 0 done, 1 the VM refused (its error is printed), 125 no such VM,\n"
		   "no answer, or bad arguments.\n");
}

int cmd_control(int argc, char **argv)
{
	const char *verb = argv[0];
	if (!control_what(verb)) {
		fprintf(stderr, "vmm: '%s' is not a control command (stop, cont, quit)\n", verb);
		return VM_EXIT_VMM_ERROR;
	}
	char usage[64];
	snprintf(usage, sizeof(usage), "vmm %s [OPTIONS] NAME", verb);
	struct cmd_client_args a;
	int status = cmd_client_parse(verb, usage, control_options, true, control_help, argc, argv, &a);
	if (status != CMD_CLIENT_GO_ON)
		return status;
	return cmd_client_call(verb, &a, verb, NULL, NULL, CMD_CLIENT_TIMEOUT_MS);
}

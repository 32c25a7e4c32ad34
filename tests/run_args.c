#include "run_args.h"

#include "vmm/cli/commands.h"
#include "vmm/error.h"

int run_args_parse(struct vm_config *cfg, const char *const *args)
{
	char *argv[32];
	int argc = 0;
	argv[argc++] = "run";
	for (; *args && argc < 31; args++)
		argv[argc++] = (char *)*args;
	argv[argc] = NULL;
	error_clear();
	return cmd_run_parse(argc, argv, cfg);
}

/* `vmm run`'s parse driven from a test: the arguments after the verb as a list. */
#ifndef TESTS_RUN_ARGS_H
#define TESTS_RUN_ARGS_H

#include "vmm/vm.h"

/* cmd_run_parse of "run" followed by the NULL-terminated @args, with the error message
 * cleared first: its result (0, 1 for --help, CLI_ERROR). */
int run_args_parse(struct vm_config *cfg, const char *const *args);

#define RUN_PARSE(cfg, ...) run_args_parse((cfg), (const char *const[]){__VA_ARGS__, NULL})

#endif

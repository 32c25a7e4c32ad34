/* The vmm CLI verbs, one file each (cmd_<verb>.c). Each returns the process exit status. */
#ifndef VMM_COMMANDS_H
#define VMM_COMMANDS_H

#include "vmm/vm.h"

/* vmm run [OPTIONS] GUEST */
int cmd_run(int argc, char **argv);

/*
 * Parse the arguments of `vmm run` (argv[0] is "run") into @cfg.
 * Returns 0, 1 when --help was asked for, or CLI_ERROR with the message set.
 */
int cmd_run_parse(int argc, char **argv, struct vm_config *cfg);

/* Print the help of `vmm run`. */
void cmd_run_help(FILE *f);

/* Run the VM @cfg describes until it ends, with its monitor; returns (or exits with) its
 * exit status. Shared by run and restore. */
int cmd_run_vm(struct vm_config *cfg);

/* Serve a created VM: its monitor and signal handling, run it, and exit the process with
 * its status. Used by run, restore and forked children. */
void cmd_run_serve(struct vm *vm) __attribute__((noreturn));

/* vmm restore [OPTIONS] SNAPSHOT */
int cmd_restore(int argc, char **argv);
/* Parse `vmm restore` arguments (argv[0] is "restore"): 0, 1 for --help, or CLI_ERROR. */
int cmd_restore_parse(int argc, char **argv, struct vm_config *cfg, const char **store, const char **snapshot);
void cmd_restore_help(FILE *f);

#endif

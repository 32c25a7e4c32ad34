/* The vmm CLI verbs, one file each (cmd_<verb>.c). Each returns the process exit status. */
#ifndef VMM_COMMANDS_H
#define VMM_COMMANDS_H

#include <stdio.h>

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

/* vmm restore [OPTIONS] SNAPSHOT (cmd_restore.c) */
int cmd_restore(int argc, char **argv);
/* Parse `vmm restore` arguments (argv[0] is "restore"): 0, 1 for --help, or CLI_ERROR. */
int cmd_restore_parse(int argc, char **argv, struct vm_config *cfg, const char **store, const char **snapshot,
		      bool *private_memory);
/*
 * The name of a VM restored from @snapshot without -n: @snapshot itself when none of the
 * @n names in @taken (the VMs running) is it, else the first of SNAPSHOT.2, SNAPSHOT.3, ...
 * not taken. Writes it to @buf of @size. 0, or -EINVAL / -ENAMETOOLONG (message set) when
 * no such name is a valid VM name (monitor_name_check): the caller names the VM otherwise.
 */
int cmd_restore_name(const char *snapshot, const char *const *taken, size_t n, char *buf, size_t size);
/* Print the help of `vmm restore`. */
void cmd_restore_help(FILE *f);

#endif

/*
 * What `vmm run` shares with `vmm restore` (cmd_restore.c): the options of a running VM,
 * their parsing, and the one VM of the process, made and served the same way.
 */
#ifndef VMM_CMD_RUN_H
#define VMM_CMD_RUN_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "vmm/vm.h"

enum {
	OPT_MEMORY = 1,
	OPT_CPUS,
	OPT_CMDLINE,
	OPT_TIMEOUT,
	OPT_MEM_LIMIT,
	OPT_SWAP,
	OPT_MAP,
	OPT_PAGER,
	OPT_CLUSTER,
	OPT_STATS,
	OPT_KERNEL_ZERO_FILL,
	OPT_NAME,
	OPT_MONITOR,
	OPT_VERBOSE,
	OPT_KVM,
	OPT_HELP,
	OPT_STORE,
	OPT_RECORD_WORKING_SET,
	OPT_PREFETCH,
	OPT_PRIVATE,
	OPT_XML,
	OPT_DETACH,
};

/* Options of a running VM, shared by run and restore. */
#define OPTION_TIMEOUT {"timeout", 't', "TIME", OPT_TIMEOUT, "stop the guest after TIME: 30, 500ms, 2m (default: never)"}
#define OPTION_MEM_LIMIT \
	{"mem-limit", 0, "SIZE", OPT_MEM_LIMIT, "keep resident guest memory under SIZE; the rest is paged out to swap"}
#define OPTION_SWAP {"swap", 0, "PATH", OPT_SWAP, "swap file for --mem-limit (default: an unnamed file in /var/tmp)"}
#define OPTION_CLUSTER {"cluster", 0, "PAGES", OPT_CLUSTER, "pages one fault brings in, 1-256 (default 64; 1 also turns read-ahead off)"}
#define OPTION_STATS {"stats", 0, NULL, OPT_STATS, "print memory and vCPU statistics on standard error at exit"}
#define OPTION_NAME {"name", 'n', "NAME", OPT_NAME, "name of the VM, for its monitor socket (default vm-PID)"}
#define OPTION_MONITOR                                       \
	{"monitor", 0, "PATH", OPT_MONITOR,                  \
	 "monitor socket (default $XDG_RUNTIME_DIR/vmm/NAME.sock, else /run/vmm/NAME.sock)"}
#define OPTION_VERBOSE {"verbose", 'v', NULL, OPT_VERBOSE, "say what the VMM does; twice: also each test-port message"}
#define OPTION_DETACH                                                                                     \
	{"detach", 'd', NULL, OPT_DETACH,                                                                  \
	 "run in the background, apart from this terminal: print the VM's name once it runs and return; " \
	 "its console goes to its log (vmm logs NAME)"}
#define OPTION_KVM {"kvm", 0, "PATH", OPT_KVM, "KVM device (default /dev/kvm)"}
#define OPTION_HELP {"help", 'h', NULL, OPT_HELP, "show this help"}

/* @cfg as `vmm run` has it before any option. */
void cmd_run_defaults(struct vm_config *cfg);

/* 0 when @bytes can be a guest's RAM size (vmm run -m's limits); else -EINVAL with why
 * written into @why (@size bytes): "is too small: at least 16 MiB is needed", "is too
 * large: at most 1024 GiB", "is not a multiple of 4K". No message set. */
int cmd_run_ram_check(uint64_t bytes, char *why, size_t size);

/* Apply option @id (value @v) of verb @verb ("run", "restore": its messages name it) to
 * @cfg: 0, 1 for --help, or CLI_ERROR with the message set. */
int cmd_run_option(struct vm_config *cfg, const char *verb, int id, const char *v);

#define CMD_RUN_NOT_MINE 2 /* from cmd_run_parse_with's @other: cmd_run_option takes it */

struct cli_option;

/* cmd_run_parse_with over @cfg as it is (not from cmd_run_defaults). */
int cmd_run_parse_over(const char *verb, const struct cli_option *options, int argc, char **argv,
		       struct vm_config *cfg, int (*other)(void *arg, int id, const char *v), void *arg);

/* Parse @argv (after the verb) for @verb with @options into @cfg, from cmd_run_defaults: each
 * positional argument and option goes to @other(@arg, id, value) first, which returns 0,
 * CLI_ERROR (message set), 1 (--help) or CMD_RUN_NOT_MINE for cmd_run_option to apply it.
 * 0, 1 for --help, or CLI_ERROR. */
int cmd_run_parse_with(const char *verb, const struct cli_option *options, int argc, char **argv,
		       struct vm_config *cfg, int (*other)(void *arg, int id, const char *v), void *arg);

/* What run and restore do with their parse's result @r: -1 to go on; else the exit status
 * (0 after printing @help for --help, VM_EXIT_VMM_ERROR after printing the error). */
int cmd_run_parsed(int r, void (*help)(FILE *f));

/* Before the VM's configuration is complete: block the stop signals (vm_serve takes them)
 * and start opening KVM's VM with @kvm_path (vm_prepare), while the caller reads the rest. */
void cmd_run_prepare(const char *kvm_path);

/*
 * With cfg->detach (-d): fork; the child, in a session of its own, goes on to make and serve
 * the VM (-1 returned there, cfg->detach_fd set) and tells the parent the VM's name once it
 * runs. The parent prints that name and returns 0, or, when the child ends first, returns
 * its exit status (the child said why on standard error), or stops a child that has not
 * started within CMD_RUN_DETACH_WAIT_MS. Without -d: -1. Call before any thread is made.
 */
#define CMD_RUN_DETACH_WAIT_MS 60000
int cmd_run_detach(struct vm_config *cfg);

/* Make the VM @cfg describes (after cmd_run_prepare, or alone) and serve it until it ends:
 * exits the process with its status; returns VM_EXIT_VMM_ERROR when it cannot be made. */
int cmd_run_vm(struct vm_config *cfg);

#endif

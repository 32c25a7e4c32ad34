/*
 * The vmm verbs that are thin clients of a VM's monitor (cmd_ps.c, cmd_stats.c,
 * cmd_control.c) and what they share: opening a VM's monitor by name or --monitor PATH,
 * and turning errors into one line on stderr and an exit status (125: the CLI's own
 * failure, the VM unreachable included; 1: the VM answered with an error).
 */
#ifndef VMM_CMD_CLIENT_H
#define VMM_CMD_CLIENT_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "vmm/cli/cli.h"
#include "vmm/monitor/qmp_client.h"

/* vmm ps [--json] [--monitor PATH] */
int cmd_ps(int argc, char **argv);
/* vmm stats [NAME [KEY...]] [--watch TIME [--count N]] [--json] [--monitor PATH] */
int cmd_stats(int argc, char **argv);
/* vmm stop|cont|quit NAME [--monitor PATH]: argv[0] names the command. */
int cmd_control(int argc, char **argv);
/* vmm snapshot NAME [--store DIR] [--as SNAPSHOT] [--json] [--monitor PATH] */
int cmd_snapshot(int argc, char **argv);
/* vmm memory NAME [--json] [--monitor PATH] */
int cmd_memory(int argc, char **argv);
/* vmm dumpxml NAME [--monitor PATH] (cmd_dumpxml.c) */
int cmd_dumpxml(int argc, char **argv);
/* vmm inspect NAME [--json] [--monitor PATH] (cmd_inspect.c) */
int cmd_inspect(int argc, char **argv);
/* vmm fork NAME [-N COUNT] [--json] [--monitor PATH] */
int cmd_fork(int argc, char **argv);
/* vmm logs [-f] NAME [--monitor PATH] (cmd_logs.c) */
int cmd_logs(int argc, char **argv);
/* vmm console NAME [--monitor PATH] (cmd_logs.c) */
int cmd_console(int argc, char **argv);
/* vmm rm NAME... | vmm rm --stale (cmd_rm.c) */
int cmd_rm(int argc, char **argv);
/* vmm store ls|verify|gc|rm [DIR] [SNAPSHOT] */
int cmd_store(int argc, char **argv);

/* Option ids shared by these verbs; each verb's table lists the ones it takes. */
enum {
	CMD_CLIENT_OPT_MONITOR = 1,
	CMD_CLIENT_OPT_JSON,
	CMD_CLIENT_OPT_WATCH,
	CMD_CLIENT_OPT_COUNT,
	CMD_CLIENT_OPT_HELP,
	CMD_CLIENT_OPT_STORE,
	CMD_CLIENT_OPT_AS,
	CMD_CLIENT_OPT_EVERY,
	CMD_CLIENT_OPT_KEEP,
	CMD_CLIENT_OPT_STOP,
	CMD_CLIENT_OPT_FOLLOW,
	CMD_CLIENT_OPT_DESCRIPTION,
};
#define CMD_CLIENT_OPTION_MONITOR \
	{"monitor", 0, "PATH", CMD_CLIENT_OPT_MONITOR, "the VM's monitor socket (default: the socket of NAME)"}
#define CMD_CLIENT_OPTION_JSON {"json", 0, NULL, CMD_CLIENT_OPT_JSON, "print JSON instead of text"}
#define CMD_CLIENT_OPTION_HELP {"help", 'h', NULL, CMD_CLIENT_OPT_HELP, "show this help"}

struct cmd_client_args {
	const char *name;    /* NAME, or NULL */
	const char *monitor; /* --monitor PATH, or NULL */
	bool json;
	uint64_t watch_ms;   /* --watch TIME, 0 when not given */
	unsigned count;      /* --count N, 0 = until interrupted */
	const char *store;   /* --store DIR, or NULL */
	const char *as;      /* --as SNAPSHOT, or NULL */
	uint64_t every_ms;   /* --every TIME, 0 when not given */
	unsigned keep;       /* --keep N */
	bool keep_given;
	bool stop;           /* --stop */
	bool follow;         /* --follow */
	const char *description; /* --description TEXT, or NULL */
	const char **more;   /* cmd_client_parse_more: the positionals after NAME (free the array) */
	unsigned nmore;
};

/* cmd_client_parse: the verb goes on. */
#define CMD_CLIENT_GO_ON (-1)

/*
 * Parse argv[1..argc) of @verb with @opts. @takes_name: one NAME positional is accepted,
 * and needed unless --monitor is given. On --help, prints @help(stdout, verb) and returns
 * 0; on a bad argument, prints the one-line error (quoting @usage) and returns 125; else
 * returns CMD_CLIENT_GO_ON with @a filled.
 */
int cmd_client_parse(const char *verb, const char *usage, const struct cli_option *opts, bool takes_name,
		     void (*help)(FILE *f, const char *verb), int argc, char **argv, struct cmd_client_args *a);

/*
 * As cmd_client_parse, for a verb whose NAME is optional and may be followed by more
 * positionals: a->name is the first positional (NULL when there is none) and a->more the
 * others, in order; with --monitor every positional goes to a->more (the socket names the
 * VM). The caller frees a->more (also when it is NULL).
 */
int cmd_client_parse_more(const char *verb, const char *usage, const struct cli_option *opts,
			  void (*help)(FILE *f, const char *verb), int argc, char **argv, struct cmd_client_args *a);

/* A VM found by cmd_client_list_vms. */
struct cmd_client_vm {
	char *name; /* NAME, of NAME.sock */
	char *path; /* its socket */
};

/*
 * The VMs with a monitor socket in the directories of monitor_search_dirs (the session's
 * runtime directory, then /run/vmm): *vms gets them, each name once (the first directory
 * wins; hidden files and sockets monitor_socket_visible refuses are not VMs), sorted by
 * name, *n how many; a directory that does not exist holds none. Free with
 * cmd_client_free_vms. 0, or -errno with the message set.
 */
int cmd_client_list_vms(struct cmd_client_vm **vms, size_t *n);

/* Free what cmd_client_list_vms gave. */
void cmd_client_free_vms(struct cmd_client_vm *vms, size_t n);

/* How long a verb waits for the monitor to answer. */
#define CMD_CLIENT_TIMEOUT_MS 10000

/* Exit status of a verb that failed with @r (-errno, message set): 1 when the VM answered
 * with an error (-EREMOTEIO), else 125. Prints "vmm VERB: message" on stderr. */
int cmd_client_fail(const char *verb, int r);

/* Open the monitor of VM @name, or at @path when not NULL (see qmp_client_open).
 * Returns 0, or the exit status after printing the error. */
int cmd_client_open(const char *verb, const char *name, const char *path, struct qmp_client **c);

/* One command to the VM @a names: open its monitor, execute @command (@args borrowed, may
 * be NULL) waiting at most @timeout_ms, close. 0 with *ret (NULL: the answer is not wanted;
 * else decref it), or the exit status after printing the error (cmd_client_open,
 * cmd_client_fail). */
int cmd_client_call(const char *verb, const struct cmd_client_args *a, const char *command, json_t *args,
		    json_t **ret, int timeout_ms);

/* The monitor socket @a names into @buf: --monitor PATH as given, else NAME's where a
 * VM of that name is (monitor_socket_find). 0 or -errno with a message. */
int cmd_client_socket(const struct cmd_client_args *a, char *buf, size_t size);

/* Print @value as one line of compact JSON on @f. */
void cmd_client_print_json(FILE *f, const json_t *value);

#endif

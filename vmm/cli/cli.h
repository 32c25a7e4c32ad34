/*
 * Command-line parsing shared by every vmm verb: options in short (-m 64M, -m64M) and
 * long (--memory 64M, --memory=64M) form, positional arguments, "--" to end options,
 * and value parsers that name the option and the bad value in their errors.
 * Nothing here prints or exits: errors go to error_set, the verb decides what to do.
 */
#ifndef VMM_CLI_H
#define VMM_CLI_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

struct cli_option {
	const char *long_name; /* without "--" */
	char short_name;       /* 0 if none */
	const char *arg_name;  /* NULL when the option takes no value */
	int id;                /* returned by cli_next, > 0 */
	const char *help;
};

enum { CLI_END = 0, CLI_POSITIONAL = -1, CLI_ERROR = -2 };

struct cli_parser {
	const char *verb;                /* "run": prefixes error messages */
	const struct cli_option *opts;   /* terminated by an entry with id 0 */
	int argc;
	char **argv;
	int next;                        /* index of the next argv element */
	const char *short_rest;          /* remaining bundled short options */
	bool options_done;               /* "--" seen */
	const char *opt_text;            /* how the current option was spelled, for errors */
};

/* Start parsing argv[first..argc). */
void cli_init(struct cli_parser *p, const char *verb, const struct cli_option *opts, int argc, char **argv,
	      int first);

/* Next option (its id, with *value set when it takes one), a positional argument
 * (CLI_POSITIONAL, *value), CLI_END, or CLI_ERROR (message set). */
int cli_next(struct cli_parser *p, const char **value);

/* Print the option table for --help. */
void cli_print_options(FILE *f, const struct cli_option *opts);

/* Value parsers: 0 on success, CLI_ERROR with a message naming @what and @text. */
int cli_parse_size(const char *what, const char *text, uint64_t *bytes);
int cli_parse_uint(const char *what, const char *text, unsigned min, unsigned max, unsigned *v);
/* TIME: digits with an optional ms, s or m unit; a bare number is seconds. */
int cli_parse_duration_ms(const char *what, const char *text, uint64_t *ms);

/* The store of the commands that take one (snapshot, restore, store) when none is given,
 * as their --help says it (lines of the help's width). */
#define CLI_STORE_DEFAULT_HELP \
	"A store is a folder or a Ceph RADOS pool, rados:POOL[/NAMESPACE] (the cluster from\n" \
	"CEPH_CONF or /etc/ceph/ceph.conf). Without one, the store is $VMM_STORE, else\n" \
	"$XDG_DATA_HOME/vmm/store, else ~/.local/share/vmm/store.\n"

/*
 * The default store: $VMM_STORE when set and not empty; else the per-user store,
 * $XDG_DATA_HOME/vmm/store (XDG_DATA_HOME absolute, else ignored as the XDG base directory
 * specification says) or $HOME/.local/share/vmm/store. Written into @buf (@size bytes);
 * *per_user (may be NULL) tells the latter two apart. 0, or CLI_ERROR with a message
 * naming @verb (no HOME for the per-user store, or the path too long).
 */
int cli_default_store(const char *verb, char *buf, size_t size, bool *per_user);

/* Before the first write to the per-user store @dir: make it and its missing parents, each
 * with mode 0700 (folders that exist are left as they are). 0, or CLI_ERROR with a message
 * naming @verb and the folder. */
int cli_make_private_dirs(const char *verb, const char *dir);

/* "1 page", "0 pages", "3 pages": @n, a space and @noun (singular), with an "s" unless @n
 * is 1; written into @buf (truncated to @size) and returned. CLI_COUNT(n, noun) gives it a
 * buffer of its own that lives until the end of the enclosing block, for printf arguments. */
const char *cli_count(char *buf, size_t size, unsigned long long n, const char *noun);
#define CLI_COUNT_MAX 64
#define CLI_COUNT(n, noun) cli_count((char[CLI_COUNT_MAX]){0}, CLI_COUNT_MAX, (unsigned long long)(n), (noun))

#endif

#include "vmm/cli/cmd_client.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <stdlib.h>
#include <string.h>

#include "vmm/error.h"
#include "vmm/monitor/monitor.h"
#include "vmm/vm.h"

/* What a verb's positionals are. */
enum cmd_client_positionals {
	CMD_CLIENT_NONE,      /* none */
	CMD_CLIENT_NAME,      /* NAME, needed unless --monitor is given */
	CMD_CLIENT_NAME_MORE, /* [NAME] then more (cmd_client_parse_more) */
};

/* The parse itself: 0, 1 for --help, or CLI_ERROR with the message set. */
static int cmd_client_parse_args(const char *verb, const char *usage, const struct cli_option *opts,
				 enum cmd_client_positionals takes, int argc, char **argv, struct cmd_client_args *a)
{
	*a = (struct cmd_client_args){0};
	bool takes_name = takes == CMD_CLIENT_NAME;
	if (takes == CMD_CLIENT_NAME_MORE && !(a->more = calloc((size_t)argc, sizeof(*a->more))))
		return error_set(ENOMEM, "vmm %s: out of memory", verb), CLI_ERROR;
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
			if (takes == CMD_CLIENT_NAME_MORE) {
				a->more[a->nmore++] = v;
				break;
			}
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
		case CMD_CLIENT_OPT_EVERY:
			snprintf(what, sizeof(what), "vmm %s: --every", verb);
			if (cli_parse_duration_ms(what, v, &a->every_ms))
				return CLI_ERROR;
			if (!a->every_ms)
				return error_set(0, "vmm %s: --every needs at least 1ms", verb), CLI_ERROR;
			break;
		case CMD_CLIENT_OPT_KEEP:
			snprintf(what, sizeof(what), "vmm %s: --keep", verb);
			if (cli_parse_uint(what, v, 1, 10000, &a->keep))
				return CLI_ERROR;
			a->keep_given = true;
			break;
		case CMD_CLIENT_OPT_STOP:
			a->stop = true;
			break;
		case CMD_CLIENT_OPT_FOLLOW:
			a->follow = true;
			break;
		case CMD_CLIENT_OPT_DESCRIPTION:
			a->description = v;
			break;
		case CMD_CLIENT_OPT_HELP:
			return 1;
		}
	}
	if (takes_name && !a->name && !a->monitor)
		return error_set(0, "vmm %s: no VM NAME given (usage: %s)", verb, usage), CLI_ERROR;
	if (takes == CMD_CLIENT_NAME_MORE && !a->monitor && a->nmore) {
		a->name = a->more[0];
		memmove(a->more, a->more + 1, --a->nmore * sizeof(*a->more));
	}
	return 0;
}

/* cmd_client_parse and cmd_client_parse_more. */
static int cmd_client_parse_as(const char *verb, const char *usage, const struct cli_option *opts,
			       enum cmd_client_positionals takes, void (*help)(FILE *f, const char *verb), int argc,
			       char **argv, struct cmd_client_args *a)
{
	int r = cmd_client_parse_args(verb, usage, opts, takes, argc, argv, a);
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

int cmd_client_parse(const char *verb, const char *usage, const struct cli_option *opts, bool takes_name,
		     void (*help)(FILE *f, const char *verb), int argc, char **argv, struct cmd_client_args *a)
{
	return cmd_client_parse_as(verb, usage, opts, takes_name ? CMD_CLIENT_NAME : CMD_CLIENT_NONE, help, argc,
				   argv, a);
}

int cmd_client_parse_more(const char *verb, const char *usage, const struct cli_option *opts,
			  void (*help)(FILE *f, const char *verb), int argc, char **argv, struct cmd_client_args *a)
{
	return cmd_client_parse_as(verb, usage, opts, CMD_CLIENT_NAME_MORE, help, argc, argv, a);
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

static int cmd_client_vm_cmp(const void *a, const void *b)
{
	return strcmp(((const struct cmd_client_vm *)a)->name, ((const struct cmd_client_vm *)b)->name);
}

void cmd_client_free_vms(struct cmd_client_vm *vms, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		free(vms[i].name);
		free(vms[i].path);
	}
	free(vms);
}

/* Add the VMs of @dir not in *@vms yet (the earlier directory wins). 0 or -errno. */
static int cmd_client_list_dir(const char *dir, struct cmd_client_vm **vms, size_t *n, size_t *cap)
{
	DIR *d = opendir(dir);
	if (!d)
		return errno == ENOENT ? 0 : error_set_errno(errno, "cannot read the runtime directory %s", dir);
	size_t first = *n; /* names are unique within one directory */
	struct dirent *e;
	int r = 0;
	while (!r && (e = readdir(d))) {
		size_t len = strlen(e->d_name);
		if (e->d_name[0] == '.' || len <= 5 || strcmp(e->d_name + len - 5, ".sock") != 0 ||
		    monitor_export_file(e->d_name))
			continue;
		struct stat st;
		if (fstatat(dirfd(d), e->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0 || !monitor_socket_visible(&st))
			continue;
		bool seen = false;
		for (size_t i = 0; i < first && !seen; i++)
			seen = strncmp((*vms)[i].name, e->d_name, len - 5) == 0 && (*vms)[i].name[len - 5] == '\0';
		if (seen)
			continue;
		if (*n == *cap) {
			size_t c = *cap ? *cap * 2 : 16;
			struct cmd_client_vm *more = realloc(*vms, c * sizeof(*more));
			if (!more) {
				r = error_set(ENOMEM, "out of memory");
				break;
			}
			*vms = more;
			*cap = c;
		}
		struct cmd_client_vm *v = &(*vms)[*n];
		v->name = strndup(e->d_name, len - 5);
		v->path = NULL;
		if (!v->name || asprintf(&v->path, "%s/%s", dir, e->d_name) < 0) {
			free(v->name);
			r = error_set(ENOMEM, "out of memory");
		} else {
			(*n)++;
		}
	}
	closedir(d);
	return r;
}

int cmd_client_list_vms(struct cmd_client_vm **vms, size_t *n)
{
	*vms = NULL;
	*n = 0;
	char dirs[MONITOR_SEARCH_DIRS][MONITOR_DIR_MAX];
	unsigned ndirs;
	int r = monitor_search_dirs(dirs, &ndirs);
	size_t cap = 0;
	for (unsigned i = 0; !r && i < ndirs; i++)
		r = cmd_client_list_dir(dirs[i], vms, n, &cap);
	if (r) {
		cmd_client_free_vms(*vms, *n);
		*vms = NULL;
		*n = 0;
		return r;
	}
	if (*n)
		qsort(*vms, *n, sizeof(**vms), cmd_client_vm_cmp);
	return 0;
}

int cmd_client_socket(const struct cmd_client_args *a, char *buf, size_t size)
{
	if (!a->monitor)
		return monitor_socket_find(a->name, buf, size);
	if ((size_t)snprintf(buf, size, "%s", a->monitor) >= size)
		return error_set(ENAMETOOLONG, "monitor socket path %s is too long", a->monitor);
	return 0;
}

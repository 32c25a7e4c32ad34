#include "vmm/cli/cli.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "guest/abi.h"
#include "vmm/error.h"

void cli_init(struct cli_parser *p, const char *verb, const struct cli_option *opts, int argc, char **argv,
	      int first)
{
	*p = (struct cli_parser){.verb = verb, .opts = opts, .argc = argc, .argv = argv, .next = first};
}

static int cli_take_value(struct cli_parser *p, const struct cli_option *o, const char *attached,
			  const char **value)
{
	if (!o->arg_name) {
		if (attached)
			return error_set(0, "vmm %s: %s takes no value", p->verb, p->opt_text), CLI_ERROR;
		return o->id;
	}
	if (attached) {
		*value = attached;
		return o->id;
	}
	if (p->next >= p->argc)
		return error_set(0, "vmm %s: %s needs a value (%s)", p->verb, p->opt_text, o->arg_name), CLI_ERROR;
	*value = p->argv[p->next++];
	return o->id;
}

static int cli_short(struct cli_parser *p, const char **value)
{
	static char text[3] = "-?";
	char c = *p->short_rest++;
	text[1] = c;
	p->opt_text = text;
	for (const struct cli_option *o = p->opts; o->id; o++) {
		if (o->short_name != c)
			continue;
		if (!o->arg_name)
			return o->id;
		const char *attached = *p->short_rest ? p->short_rest : NULL;
		p->short_rest = NULL;
		return cli_take_value(p, o, attached, value);
	}
	p->short_rest = NULL;
	return error_set(0, "vmm %s: unknown option -%c (see vmm %s --help)", p->verb, c, p->verb), CLI_ERROR;
}

int cli_next(struct cli_parser *p, const char **value)
{
	*value = NULL;
	if (p->short_rest && *p->short_rest)
		return cli_short(p, value);
	p->short_rest = NULL;
	if (p->next >= p->argc)
		return CLI_END;
	const char *a = p->argv[p->next++];
	if (p->options_done || a[0] != '-' || a[1] == '\0') {
		*value = a;
		return CLI_POSITIONAL;
	}
	if (a[1] != '-') {
		p->short_rest = a + 1;
		return cli_short(p, value);
	}
	if (a[2] == '\0') {
		p->options_done = true;
		return cli_next(p, value);
	}
	const char *name = a + 2, *eq = strchr(name, '=');
	size_t len = eq ? (size_t)(eq - name) : strlen(name);
	p->opt_text = a;
	for (const struct cli_option *o = p->opts; o->id; o++) {
		if (o->long_name && strlen(o->long_name) == len && strncmp(o->long_name, name, len) == 0) {
			static char text[64];
			snprintf(text, sizeof(text), "--%s", o->long_name);
			p->opt_text = text;
			return cli_take_value(p, o, eq ? eq + 1 : NULL, value);
		}
	}
	return error_set(0, "vmm %s: unknown option %.*s (see vmm %s --help)", p->verb, (int)(len + 2), a, p->verb),
	       CLI_ERROR;
}

void cli_print_options(FILE *f, const struct cli_option *opts)
{
	for (const struct cli_option *o = opts; o->id; o++) {
		char left[64];
		snprintf(left, sizeof(left), "%c%c%s--%s%s%s", o->short_name ? '-' : ' ', o->short_name ? o->short_name : ' ',
			 o->short_name ? ", " : "  ", o->long_name, o->arg_name ? " " : "", o->arg_name ? o->arg_name : "");
		fprintf(f, "  %-24s %s\n", left, o->help);
	}
}

int cli_parse_size(const char *what, const char *text, uint64_t *bytes)
{
	unsigned long long v;
	if (abi_parse_size(text, strlen(text), &v) != 0)
		return error_set(0, "%s: '%s' is not a size (use e.g. 512M, 2G or 65536K; a bare number is MiB)", what,
				 text), CLI_ERROR;
	*bytes = v;
	return 0;
}

int cli_parse_uint(const char *what, const char *text, unsigned min, unsigned max, unsigned *v)
{
	unsigned long long n = 0;
	const char *s = text;
	if (!*s)
		return error_set(0, "%s: a number is needed", what), CLI_ERROR;
	for (; *s; s++) {
		if (*s < '0' || *s > '9')
			return error_set(0, "%s: '%s' is not a number", what, text), CLI_ERROR;
		n = n * 10 + (unsigned)(*s - '0');
		if (n > max)
			break;
	}
	if (n < min || n > max)
		return error_set(0, "%s: '%s' is out of range (%u to %u)", what, text, min, max), CLI_ERROR;
	*v = (unsigned)n;
	return 0;
}

int cli_parse_duration_ms(const char *what, const char *text, uint64_t *ms)
{
	uint64_t n = 0;
	const char *s = text;
	for (; *s >= '0' && *s <= '9'; s++) {
		n = n * 10 + (uint64_t)(*s - '0');
		if (n > 1000ull * 1000 * 1000)
			return error_set(0, "%s: '%s' is too long", what, text), CLI_ERROR;
	}
	uint64_t scale;
	if (s == text)
		scale = 0;
	else if (!*s || strcmp(s, "s") == 0)
		scale = 1000;
	else if (strcmp(s, "ms") == 0)
		scale = 1;
	else if (strcmp(s, "m") == 0)
		scale = 60000;
	else
		scale = 0;
	if (!scale || n == 0)
		return error_set(0, "%s: '%s' is not a positive duration (use e.g. 30, 500ms, 2m)", what, text),
		       CLI_ERROR;
	*ms = n * scale;
	return 0;
}

const char *cli_count(char *buf, size_t size, unsigned long long n, const char *noun)
{
	snprintf(buf, size, "%llu %s%s", n, noun, n == 1 ? "" : "s");
	return buf;
}

int cli_default_store(const char *verb, char *buf, size_t size, bool *per_user)
{
	const char *env = getenv("VMM_STORE"), *xdg = getenv("XDG_DATA_HOME"), *home = getenv("HOME");
	int n;
	if (per_user)
		*per_user = !(env && *env);
	if (env && *env)
		n = snprintf(buf, size, "%s", env);
	else if (xdg && xdg[0] == '/')
		n = snprintf(buf, size, "%s/vmm/store", xdg);
	else if (home && *home)
		n = snprintf(buf, size, "%s/.local/share/vmm/store", home);
	else
		return error_set(0, "vmm %s: no store given, and no default: set VMM_STORE (or HOME, for "
				    "~/.local/share/vmm/store)", verb), CLI_ERROR;
	if (n < 0 || (size_t)n >= size)
		return error_set(0, "vmm %s: the default store's path is too long (%s)", verb,
				 env && *env ? "$VMM_STORE" : "$XDG_DATA_HOME or $HOME"), CLI_ERROR;
	return 0;
}

int cli_make_private_dirs(const char *verb, const char *dir)
{
	char path[PATH_MAX];
	if (snprintf(path, sizeof(path), "%s", dir) >= (int)sizeof(path))
		return error_set(0, "vmm %s: store path %s is too long", verb, dir), CLI_ERROR;
	/* Each prefix in turn, the whole path last: mkdir fails with EEXIST on those there. */
	for (char *slash = path + 1;; slash++) {
		if (*slash != '/' && *slash != '\0')
			continue;
		char c = *slash;
		*slash = '\0';
		if (mkdir(path, 0700) != 0 && errno != EEXIST)
			return error_set_errno(errno, "vmm %s: cannot create %s", verb, path), CLI_ERROR;
		*slash = c;
		if (!c)
			return 0;
	}
}

/*
 * libvirt's domain XML (domain_xml.h): a table of the elements of the subset, expat
 * handlers that check each element, attribute and value against it and stop at the first
 * thing refused, and the writer of the same subset.
 */
#include "vmm/cli/domain_xml.h"

#include <errno.h>
#include <expat.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#include "guest/abi.h"
#include "vmm/cli/cli.h"
#include "vmm/cli/cmd_run.h"
#include "vmm/error.h"
#include "vmm/file_io.h"
#include "vmm/monitor/monitor.h"

enum dx_kind {
	DX_TOP, /* outside <domain> */
	DX_DOMAIN,
	DX_NAME,
	DX_UUID,
	DX_MEMORY,
	DX_CURRENT_MEMORY,
	DX_VCPU,
	DX_OS,
	DX_OS_TYPE,
	DX_KERNEL,
	DX_CMDLINE,
	DX_ON_POWEROFF,
	DX_ON_REBOOT,
	DX_ON_CRASH,
	DX_DEVICES,
	DX_SERIAL,
	DX_SERIAL_TARGET,
	DX_CONSOLE,
	DX_CONSOLE_TARGET,
	DX_KINDS,
};

struct dx_attr {
	const char *name;
	const char *values; /* the values accepted, '|' between them; NULL: the reader checks */
};

/* Each element of the subset: where it may stand, whether it holds text, its attributes. */
static const struct dx_element {
	const char *tag;
	enum dx_kind parent;
	bool text;
	struct dx_attr attrs[2];
} dx_elements[DX_KINDS] = {
	[DX_DOMAIN] = {"domain", DX_TOP, false, {{"type", "kvm"}}},
	[DX_NAME] = {"name", DX_DOMAIN, true, {{NULL, NULL}}},
	[DX_UUID] = {"uuid", DX_DOMAIN, true, {{NULL, NULL}}},
	[DX_MEMORY] = {"memory", DX_DOMAIN, true, {{"unit", NULL}}},
	[DX_CURRENT_MEMORY] = {"currentMemory", DX_DOMAIN, true, {{"unit", NULL}}},
	[DX_VCPU] = {"vcpu", DX_DOMAIN, true, {{NULL, NULL}}},
	[DX_OS] = {"os", DX_DOMAIN, false, {{NULL, NULL}}},
	[DX_OS_TYPE] = {"type", DX_OS, true, {{"arch", "x86_64"}}},
	[DX_KERNEL] = {"kernel", DX_OS, true, {{NULL, NULL}}},
	[DX_CMDLINE] = {"cmdline", DX_OS, true, {{NULL, NULL}}},
	[DX_ON_POWEROFF] = {"on_poweroff", DX_DOMAIN, true, {{NULL, NULL}}},
	[DX_ON_REBOOT] = {"on_reboot", DX_DOMAIN, true, {{NULL, NULL}}},
	[DX_ON_CRASH] = {"on_crash", DX_DOMAIN, true, {{NULL, NULL}}},
	[DX_DEVICES] = {"devices", DX_DOMAIN, false, {{NULL, NULL}}},
	[DX_SERIAL] = {"serial", DX_DEVICES, false, {{"type", "pty|file|stdio"}}},
	[DX_SERIAL_TARGET] = {"target", DX_SERIAL, false, {{"type", "isa-serial"}, {"port", "0"}}},
	[DX_CONSOLE] = {"console", DX_DEVICES, false, {{"type", "pty|file|stdio"}}},
	[DX_CONSOLE_TARGET] = {"target", DX_CONSOLE, false, {{"type", "serial"}, {"port", "0"}}},
};

/* libvirt's memory units (virScaleInteger). */
static const struct {
	const char *name;
	uint64_t scale;
} dx_units[] = {
	{"b", 1}, {"bytes", 1},
	{"KB", 1000ull}, {"k", 1ull << 10}, {"KiB", 1ull << 10},
	{"MB", 1000000ull}, {"M", 1ull << 20}, {"MiB", 1ull << 20},
	{"GB", 1000000000ull}, {"G", 1ull << 30}, {"GiB", 1ull << 30},
	{"TB", 1000000000000ull}, {"T", 1ull << 40}, {"TiB", 1ull << 40},
	{"PB", 1000000000000000ull}, {"P", 1ull << 50}, {"PiB", 1ull << 50},
	{"EB", 1000000000000000000ull}, {"E", 1ull << 60}, {"EiB", 1ull << 60},
};

/* Longest text of one element: a path, or a command line (which has its own limit). */
#define DX_TEXT_MAX 4096
#define DX_DEPTH_MAX 4

struct dx_parser {
	XML_Parser xp;
	const char *path;
	struct domain_xml *doc;
	bool failed;
	enum dx_kind stack[DX_DEPTH_MAX];
	unsigned depth;
	unsigned long line[DX_KINDS]; /* where each element began; 0: not seen */
	uint64_t scale;               /* the unit of the <memory> or <currentMemory> being read */
	uint64_t memory, current;     /* bytes */
	unsigned ncpus;
	size_t len;
	char text[DX_TEXT_MAX + 1];   /* the text of the element being read */
};

/* Refuse what is at @line: the first refusal becomes the message and stops the parser. */
__attribute__((format(printf, 3, 4))) static int dx_fail(struct dx_parser *p, unsigned long line, const char *fmt, ...)
{
	if (p->failed)
		return -EINVAL;
	char what[400];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(what, sizeof(what), fmt, ap);
	va_end(ap);
	error_set(0, "%s:%lu: %s", p->path, line, what);
	p->failed = true;
	XML_StopParser(p->xp, XML_FALSE);
	return -EINVAL;
}

/* dx_fail for a message already set (by a shared parser of values). */
static int dx_failed(struct dx_parser *p)
{
	p->failed = true;
	XML_StopParser(p->xp, XML_FALSE);
	return -EINVAL;
}

static bool dx_blank(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (!strchr(" \t\r\n", s[i]))
			return false;
	return true;
}

/* Is @v one of the '|'-separated @values? */
static bool dx_one_of(const char *v, const char *values)
{
	size_t n = strlen(v);
	for (const char *s = values; s; s = strchr(s, '|') ? strchr(s, '|') + 1 : NULL)
		if (strncmp(s, v, n) == 0 && (s[n] == '|' || s[n] == '\0'))
			return true;
	return false;
}

static int dx_attribute(struct dx_parser *p, enum dx_kind k, unsigned long line, const char *name, const char *value)
{
	const struct dx_element *e = &dx_elements[k];
	const struct dx_attr *a = NULL;
	for (size_t i = 0; i < sizeof(e->attrs) / sizeof(e->attrs[0]); i++)
		if (e->attrs[i].name && strcmp(e->attrs[i].name, name) == 0)
			a = &e->attrs[i];
	if (!a)
		return dx_fail(p, line, "attribute %s of <%s> is not supported", name, e->tag);
	if (a->values && !dx_one_of(value, a->values))
		return dx_fail(p, line, "<%s %s='%s'> is not supported (%s)", e->tag, name, value, a->values);
	if (strcmp(name, "unit") == 0) {
		for (size_t i = 0; i < sizeof(dx_units) / sizeof(dx_units[0]); i++)
			if (strcmp(dx_units[i].name, value) == 0) {
				p->scale = dx_units[i].scale;
				return 0;
			}
		return dx_fail(p, line, "<%s unit='%s'>: unknown unit (b, KB, KiB, MB, MiB, GB, GiB, TB, TiB, ...)", e->tag,
			       value);
	}
	return 0;
}

/* An element begins: is it in the subset, where it stands, with these attributes? */
static int dx_element(struct dx_parser *p, const XML_Char *tag, const XML_Char **attrs)
{
	unsigned long line = XML_GetCurrentLineNumber(p->xp);
	enum dx_kind parent = p->depth ? p->stack[p->depth - 1] : DX_TOP;
	if (parent != DX_TOP && !dx_elements[parent].text && !dx_blank(p->text, p->len))
		return dx_fail(p, line, "text in <%s> is not supported", dx_elements[parent].tag);
	enum dx_kind k = DX_DOMAIN;
	while (k < DX_KINDS && (dx_elements[k].parent != parent || strcmp(dx_elements[k].tag, tag) != 0))
		k++;
	if (k == DX_KINDS && parent == DX_TOP)
		return dx_fail(p, line, "<%s> is not a libvirt domain (<domain type='kvm'> is)", tag);
	if (k == DX_KINDS)
		return dx_fail(p, line, "<%s> is not supported", tag);
	if (p->line[k])
		return dx_fail(p, line, "<%s> is given twice (first on line %lu)", tag, p->line[k]);
	p->line[k] = line;
	p->scale = 1024; /* libvirt's default unit, KiB */
	bool typed = false;
	for (const XML_Char **a = attrs; a[0]; a += 2) {
		if (dx_attribute(p, k, line, a[0], a[1]))
			return -EINVAL;
		typed |= strcmp(a[0], "type") == 0;
	}
	if (k == DX_DOMAIN && !typed)
		return dx_fail(p, line, "<domain> needs type='kvm'");
	p->stack[p->depth++] = k;
	p->len = 0;
	return 0;
}

static void dx_start(void *arg, const XML_Char *tag, const XML_Char **attrs)
{
	struct dx_parser *p = arg;
	if (!p->failed)
		dx_element(p, tag, attrs);
}

static void dx_chars(void *arg, const XML_Char *s, int n)
{
	struct dx_parser *p = arg;
	if (p->failed || !p->depth)
		return;
	if ((size_t)n > DX_TEXT_MAX - p->len) {
		dx_fail(p, XML_GetCurrentLineNumber(p->xp), "<%s> is too long (at most %d bytes)",
			dx_elements[p->stack[p->depth - 1]].tag, DX_TEXT_MAX);
		return;
	}
	memcpy(p->text + p->len, s, (size_t)n);
	p->len += (size_t)n;
}

/* @s without its leading and trailing white space (in place). */
static char *dx_trim(char *s)
{
	while (*s && strchr(" \t\r\n", *s))
		s++;
	size_t n = strlen(s);
	while (n && strchr(" \t\r\n", s[n - 1]))
		s[--n] = '\0';
	return s;
}

/* The bytes of a <memory> or <currentMemory> of @text in the unit read with it. */
static int dx_memory(struct dx_parser *p, enum dx_kind k, unsigned long line, char *text, uint64_t *bytes)
{
	const char *tag = dx_elements[k].tag;
	char *s = dx_trim(text), *end;
	errno = 0;
	unsigned long long n = strtoull(s, &end, 10);
	if (!*s || *end || *s == '-' || *s == '+')
		return dx_fail(p, line, "<%s>%s</%s>: not a number", tag, s, tag);
	if (errno || n > UINT64_MAX / p->scale)
		return dx_fail(p, line, "<%s>%s</%s> is too large", tag, s, tag);
	*bytes = n * p->scale;
	char why[96];
	if (k == DX_MEMORY && cmd_run_ram_check(*bytes, why, sizeof(why)))
		return dx_fail(p, line, "<memory>%s</memory> (%llu bytes) %s", s, n * (unsigned long long)p->scale, why);
	return 0;
}

/* An RFC 4122 UUID's text: 8-4-4-4-12 hex digits. */
static bool dx_uuid_ok(const char *s)
{
	if (strlen(s) != DOMAIN_XML_UUID_LEN)
		return false;
	for (int i = 0; i < DOMAIN_XML_UUID_LEN; i++) {
		bool dash = i == 8 || i == 13 || i == 18 || i == 23;
		if (dash ? s[i] != '-' : !strchr("0123456789abcdefABCDEF", s[i]))
			return false;
	}
	return true;
}

/* A copy of @s into *@to (a string of the domain_xml). */
static int dx_keep(struct dx_parser *p, unsigned long line, const char *s, char **to)
{
	*to = strdup(s);
	return *to ? 0 : dx_fail(p, line, "no memory");
}

static int dx_value(struct dx_parser *p, enum dx_kind k, unsigned long line, char *text)
{
	const char *tag = dx_elements[k].tag;
	switch (k) {
	case DX_NAME:
		if (monitor_name_check(text))
			return dx_fail(p, line, "<name>: %s", error_message());
		return dx_keep(p, line, text, &p->doc->name);
	case DX_UUID:
		if (!dx_uuid_ok(text))
			return dx_fail(p, line, "<uuid>%s</uuid> is not a UUID (8-4-4-4-12 hex digits)", text);
		return dx_keep(p, line, text, &p->doc->uuid);
	case DX_MEMORY:
		return dx_memory(p, k, line, text, &p->memory);
	case DX_CURRENT_MEMORY:
		return dx_memory(p, k, line, text, &p->current);
	case DX_VCPU: {
		char what[300];
		snprintf(what, sizeof(what), "%s:%lu: <vcpu>", p->path, line);
		return cli_parse_uint(what, dx_trim(text), 1, ABI_MAX_CPUS, &p->ncpus) ? dx_failed(p) : 0;
	}
	case DX_OS_TYPE:
		if (strcmp(dx_trim(text), "hvm") != 0)
			return dx_fail(p, line, "<type>%s</type> is not supported (hvm)", text);
		return 0;
	case DX_KERNEL:
		if (!*text)
			return dx_fail(p, line, "<kernel> is empty");
		return dx_keep(p, line, text, &p->doc->kernel);
	case DX_CMDLINE:
		if (strlen(text) >= ABI_CMDLINE_MAX)
			return dx_fail(p, line, "<cmdline> is %zu bytes; at most %u fit", strlen(text), ABI_CMDLINE_MAX - 1);
		return dx_keep(p, line, text, &p->doc->cmdline);
	case DX_ON_POWEROFF:
	case DX_ON_REBOOT:
	case DX_ON_CRASH:
		if (strcmp(dx_trim(text), "destroy") != 0)
			return dx_fail(p, line, "<%s>%s</%s> is not supported (destroy: the guest's end ends the VM)", tag,
				       text, tag);
		return 0;
	default:
		return 0;
	}
}

static void dx_end(void *arg, const XML_Char *tag)
{
	(void)tag;
	struct dx_parser *p = arg;
	if (p->failed)
		return;
	enum dx_kind k = p->stack[--p->depth];
	p->text[p->len] = '\0';
	if (!dx_elements[k].text && !dx_blank(p->text, p->len))
		dx_fail(p, XML_GetCurrentLineNumber(p->xp), "text in <%s> is not supported", dx_elements[k].tag);
	else if (dx_elements[k].text)
		(void)dx_value(p, k, p->line[k], p->text);
	p->len = 0;
}

static void dx_doctype(void *arg, const XML_Char *name, const XML_Char *sysid, const XML_Char *pubid, int internal)
{
	(void)name, (void)sysid, (void)pubid, (void)internal;
	struct dx_parser *p = arg;
	(void)dx_fail(p, XML_GetCurrentLineNumber(p->xp), "a DOCTYPE is not supported");
}

/* What the whole document must have, once read. */
static int dx_complete(struct dx_parser *p)
{
	static const enum dx_kind required[] = {DX_NAME, DX_MEMORY, DX_OS, DX_OS_TYPE};
	for (size_t i = 0; i < sizeof(required) / sizeof(required[0]); i++)
		if (!p->line[required[i]])
			return dx_fail(p, p->line[dx_elements[required[i]].parent], "<%s> has no <%s>",
				       dx_elements[dx_elements[required[i]].parent].tag, dx_elements[required[i]].tag);
	if (p->line[DX_CURRENT_MEMORY] && p->current != p->memory)
		return dx_fail(p, p->line[DX_CURRENT_MEMORY],
			"<currentMemory> (%llu bytes) differs from <memory> (%llu bytes): ballooning is not supported",
			(unsigned long long)p->current, (unsigned long long)p->memory);
	return 0;
}

int domain_xml_parse(const char *path, struct vm_config *cfg, struct domain_xml *doc)
{
	void *data;
	size_t size;
	*doc = (struct domain_xml){0};
	int r = file_read_all(path, "domain XML", DOMAIN_XML_MAX_BYTES, &data, &size);
	if (r)
		return r;
	struct dx_parser *p = calloc(1, sizeof(*p));
	XML_Parser xp = p ? XML_ParserCreate("UTF-8") : NULL;
	if (!xp) {
		free(p);
		free(data);
		return error_set(ENOMEM, "no memory to read %s", path);
	}
	p->xp = xp;
	p->path = path;
	p->doc = doc;
	p->ncpus = 1;
	XML_SetUserData(xp, p);
	XML_SetElementHandler(xp, dx_start, dx_end);
	XML_SetCharacterDataHandler(xp, dx_chars);
	XML_SetStartDoctypeDeclHandler(xp, dx_doctype);
	if (XML_Parse(xp, data, (int)size, XML_TRUE) == XML_STATUS_ERROR && !p->failed) {
		error_set(0, "%s:%lu: malformed XML: %s", path, XML_GetCurrentLineNumber(xp),
			  XML_ErrorString(XML_GetErrorCode(xp)));
		p->failed = true;
	}
	r = p->failed ? -EINVAL : dx_complete(p);
	if (!r) {
		if (doc->name)
			cfg->name = doc->name;
		cfg->uuid = doc->uuid;
		cfg->mem.ram_size = p->memory;
		cfg->ncpus = p->ncpus;
		if (doc->kernel)
			cfg->guest = doc->kernel;
		if (doc->cmdline)
			cfg->cmdline = doc->cmdline;
	} else {
		domain_xml_free(doc);
	}
	XML_ParserFree(xp);
	free(p);
	free(data);
	return r;
}

void domain_xml_free(struct domain_xml *doc)
{
	free(doc->name);
	free(doc->uuid);
	free(doc->kernel);
	free(doc->cmdline);
	*doc = (struct domain_xml){0};
}

void domain_xml_uuid_from_name(const char *name, char *buf)
{
	char key[8 + MONITOR_NAME_MAX + 1];
	int n = snprintf(key, sizeof(key), "vmm:%s", name);
	XXH128_hash_t h = XXH3_128bits(key, (size_t)n < sizeof(key) ? (size_t)n : sizeof(key) - 1);
	uint8_t b[16];
	for (int i = 0; i < 8; i++) {
		b[i] = (uint8_t)(h.high64 >> (56 - 8 * i));
		b[8 + i] = (uint8_t)(h.low64 >> (56 - 8 * i));
	}
	b[6] = (uint8_t)((b[6] & 0x0f) | 0x80); /* version 8: custom */
	b[8] = (uint8_t)((b[8] & 0x3f) | 0x80); /* variant 10: RFC 4122 */
	char *s = buf;
	for (int i = 0; i < 16; i++) {
		s += sprintf(s, "%02x", b[i]);
		if (i == 3 || i == 5 || i == 7 || i == 9)
			*s++ = '-';
	}
	*s = '\0';
}

/* Can XML 1.0 carry @s as text? Not the control characters but tab, LF and CR. */
static bool dx_writable(const char *s)
{
	for (; s && *s; s++)
		if ((unsigned char)*s < 0x20 && !strchr("\t\n\r", *s))
			return false;
	return true;
}

/* @s as the text of an element: markup characters escaped, CR as a reference (a parser
 * would turn a raw one into LF). */
static void dx_put_text(FILE *f, const char *s)
{
	for (; *s; s++) {
		switch (*s) {
		case '&': fputs("&amp;", f); break;
		case '<': fputs("&lt;", f); break;
		case '>': fputs("&gt;", f); break;
		case '\r': fputs("&#13;", f); break;
		default: fputc(*s, f);
		}
	}
}

static void dx_put_element(FILE *f, const char *indent, const char *tag, const char *text)
{
	fprintf(f, "%s<%s>", indent, tag);
	dx_put_text(f, text);
	fprintf(f, "</%s>\n", tag);
}

int domain_xml_write(FILE *f, const struct vm_config *cfg, const char *uuid)
{
	if (!cfg->name || !*cfg->name)
		return error_set(0, "domain XML: the VM has no name");
	const char *fields[][2] = {{"name", cfg->name}, {"uuid", uuid}, {"kernel", cfg->guest}, {"cmdline", cfg->cmdline}};
	for (size_t i = 0; i < sizeof(fields) / sizeof(fields[0]); i++)
		if (!dx_writable(fields[i][1]))
			return error_set(0, "domain XML: the %s holds control characters, which XML cannot carry", fields[i][0]);
	char made[DOMAIN_XML_UUID_LEN + 1];
	if (!uuid) {
		domain_xml_uuid_from_name(cfg->name, made);
		uuid = made;
	}
	/* In KiB as libvirt writes it, unless the size is no whole number of KiB. */
	bool kib = cfg->mem.ram_size % 1024 == 0;
	unsigned long long mem = kib ? cfg->mem.ram_size / 1024 : cfg->mem.ram_size;
	const char *unit = kib ? "KiB" : "b";
	fputs("<domain type='kvm'>\n", f);
	dx_put_element(f, "  ", "name", cfg->name);
	dx_put_element(f, "  ", "uuid", uuid);
	fprintf(f, "  <memory unit='%s'>%llu</memory>\n", unit, mem);
	fprintf(f, "  <currentMemory unit='%s'>%llu</currentMemory>\n", unit, mem);
	fprintf(f, "  <vcpu>%u</vcpu>\n", cfg->ncpus);
	fputs("  <os>\n    <type arch='x86_64'>hvm</type>\n", f);
	if (cfg->guest)
		dx_put_element(f, "    ", "kernel", cfg->guest);
	if (cfg->cmdline && *cfg->cmdline)
		dx_put_element(f, "    ", "cmdline", cfg->cmdline);
	fputs("  </os>\n"
	      "  <on_poweroff>destroy</on_poweroff>\n"
	      "  <on_reboot>destroy</on_reboot>\n"
	      "  <on_crash>destroy</on_crash>\n"
	      "  <devices>\n"
	      "    <serial type='stdio'>\n"
	      "      <target port='0'/>\n"
	      "    </serial>\n"
	      "    <console type='stdio'>\n"
	      "      <target type='serial' port='0'/>\n"
	      "    </console>\n"
	      "  </devices>\n"
	      "</domain>\n",
	      f);
	if (fflush(f) || ferror(f))
		return error_set_errno(errno ? errno : EIO, "domain XML: cannot write");
	return 0;
}

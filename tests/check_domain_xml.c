/*
 * libvirt's domain XML (vmm/cli/domain_xml.c): each element of the subset read, each
 * refusal with its exact line, malformed XML, write-then-read giving the configuration
 * back, libvirt's own schema (virt-xml-validate) on what is written, vmm run --xml and
 * vmm dumpxml against the fake VM.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fake_vm.h"
#include "harness.h"
#include "run_args.h"
#include "spawn.h"
#include "vmm/cli/cli.h"
#include "vmm/cli/cmd_run.h"
#include "vmm/cli/commands.h"
#include "vmm/cli/domain_xml.h"
#include "vmm/error.h"

/* @text in a new temporary file, whose path goes into @path (64 bytes); unlink it after. */
static void dx_file(char *path, const char *text)
{
	strcpy(path, "/tmp/vmm-domain-XXXXXX.xml");
	int fd = mkstemps(path, 4);
	ck_assert_int_ge(fd, 0);
	size_t n = strlen(text);
	ck_assert_int_eq(write(fd, text, n), (ssize_t)n);
	close(fd);
}

/* domain_xml_parse of @text over cmd_run_defaults: its result, the message in error_message. */
static int dx_parse(const char *text, struct vm_config *cfg, struct domain_xml *doc, char *path)
{
	dx_file(path, text);
	cmd_run_defaults(cfg);
	error_clear();
	int r = domain_xml_parse(path, cfg, doc);
	unlink(path);
	return r;
}

#define DX_HEAD "<domain type='kvm'>\n  <name>vm1</name>\n  <memory>65536</memory>\n"
#define DX_OS "  <os><type>hvm</type></os>\n"

START_TEST(every_supported_element_is_read)
{
	const char *text = "<?xml version='1.0'?>\n"
			   "<!-- a comment -->\n"
			   "<domain type='kvm'>\n"
			   "  <name>web-1.test</name>\n"
			   "  <uuid>4DC2A1E0-1234-4abc-8def-0123456789ab</uuid>\n"
			   "  <memory unit='GiB'>1</memory>\n"
			   "  <currentMemory unit='MiB'>1024</currentMemory>\n"
			   "  <vcpu> 4 </vcpu>\n"
			   "  <os>\n"
			   "    <type arch='x86_64'>hvm</type>\n"
			   "    <kernel>/srv/g &amp; h.elf</kernel>\n"
			   "    <cmdline>hello touch=64M &lt;x&gt;</cmdline>\n"
			   "  </os>\n"
			   "  <on_poweroff>destroy</on_poweroff>\n"
			   "  <on_reboot>destroy</on_reboot>\n"
			   "  <on_crash>destroy</on_crash>\n"
			   "  <devices>\n"
			   "    <serial type='file'><target type='isa-serial' port='0'/></serial>\n"
			   "    <console type='pty'><target type='serial' port='0'/></console>\n"
			   "  </devices>\n"
			   "</domain>\n";
	struct vm_config cfg;
	struct domain_xml doc;
	char path[64];
	ck_assert_msg(dx_parse(text, &cfg, &doc, path) == 0, "%s", error_message());
	ck_assert_str_eq(cfg.name, "web-1.test");
	ck_assert_str_eq(cfg.uuid, "4DC2A1E0-1234-4abc-8def-0123456789ab");
	ck_assert_uint_eq(cfg.mem.ram_size, 1ull << 30);
	ck_assert_uint_eq(cfg.ncpus, 4);
	ck_assert_str_eq(cfg.guest, "/srv/g & h.elf");
	ck_assert_str_eq(cfg.cmdline, "hello touch=64M <x>");
	ck_assert_str_eq(cfg.kvm_path, "/dev/kvm"); /* the rest as it was */
	ck_assert_uint_eq(cfg.timeout_ms, 0);
	domain_xml_free(&doc);
}
END_TEST

START_TEST(the_fewest_elements_keep_the_defaults)
{
	struct vm_config cfg;
	struct domain_xml doc;
	char path[64];
	ck_assert_msg(dx_parse(DX_HEAD DX_OS "</domain>", &cfg, &doc, path) == 0, "%s", error_message());
	ck_assert_str_eq(cfg.name, "vm1");
	ck_assert_uint_eq(cfg.mem.ram_size, 64ull << 20); /* KiB by default */
	ck_assert_uint_eq(cfg.ncpus, 1);
	ck_assert_str_eq(cfg.cmdline, "");
	ck_assert_ptr_null(cfg.guest);
	ck_assert_ptr_null(cfg.uuid);
	domain_xml_free(&doc);
}
END_TEST

/* libvirt's units, each giving 64 MiB (or, for the decimal ones, a multiple of 4K). */
static const struct {
	const char *unit, *value;
	uint64_t bytes;
} units[] = {
	{"b", "67108864", 64ull << 20},   {"bytes", "67108864", 64ull << 20}, {"KB", "65536000", 65536000000ull},
	{"k", "65536", 64ull << 20},      {"KiB", "65536", 64ull << 20},      {"MB", "64", 64000000},
	{"M", "64", 64ull << 20},         {"MiB", "64", 64ull << 20},         {"GB", "8", 8000000000ull},
	{"G", "1", 1ull << 30},           {"GiB", "1", 1ull << 30},           {"TB", "1", 1000000000000ull},
	{"T", "1", 1ull << 40},           {"TiB", "1", 1ull << 40},
};

START_TEST(memory_in_each_unit)
{
	char text[512];
	snprintf(text, sizeof(text),
		 "<domain type='kvm'><name>u</name><memory unit='%s'>%s</memory>"
		 "<currentMemory unit='%s'>%s</currentMemory>" DX_OS "</domain>",
		 units[_i].unit, units[_i].value, units[_i].unit, units[_i].value);
	struct vm_config cfg;
	struct domain_xml doc;
	char path[64];
	ck_assert_msg(dx_parse(text, &cfg, &doc, path) == 0, "%s: %s", units[_i].unit, error_message());
	ck_assert_uint_eq(cfg.mem.ram_size, units[_i].bytes);
	domain_xml_free(&doc);
}
END_TEST

/* Each refusal: the document and the exact message after "PATH:". */
static const struct {
	const char *text, *message;
} refusals[] = {
	{DX_HEAD DX_OS "  <devices>\n    <disk type='file'/>\n  </devices>\n</domain>", "6: <disk> is not supported"},
	{"<domain type='kvm' id='3'>\n</domain>", "1: attribute id of <domain> is not supported"},
	{"<domain type='qemu'>\n</domain>", "1: <domain type='qemu'> is not supported (kvm)"},
	{"<domain>\n</domain>", "1: <domain> needs type='kvm'"},
	{"\n<vm/>", "2: <vm> is not a libvirt domain (<domain type='kvm'> is)"},
	{DX_HEAD "  <name>vm2</name>\n" DX_OS "</domain>", "4: <name> is given twice (first on line 2)"},
	{DX_HEAD "  <currentMemory>32768</currentMemory>\n" DX_OS "</domain>",
	 "4: <currentMemory> (33554432 bytes) differs from <memory> (67108864 bytes): ballooning is not supported"},
	{"<domain type='kvm'>\n<name>a</name>\n<memory unit='kb'>1</memory>" DX_OS "</domain>",
	 "3: <memory unit='kb'>: unknown unit (b, KB, KiB, MB, MiB, GB, GiB, TB, TiB, ...)"},
	{"<domain type='kvm'>\n<name>a</name>\n<memory>lots</memory>" DX_OS "</domain>", "3: <memory>lots</memory>: not a number"},
	{"<domain type='kvm'>\n<name>a</name>\n<memory unit='EiB'>100</memory>" DX_OS "</domain>",
	 "3: <memory>100</memory> is too large"},
	{"<domain type='kvm'>\n<name>a</name>\n<memory unit='MiB'>8</memory>" DX_OS "</domain>",
	 "3: <memory>8</memory> (8388608 bytes) is too small: at least 16 MiB is needed"},
	{"<domain type='kvm'>\n<name>a</name>\n<memory unit='GB'>1</memory>" DX_OS "</domain>",
	 "3: <memory>1</memory> (1000000000 bytes) is not a multiple of 4K"},
	{DX_HEAD "  <vcpu>0</vcpu>\n" DX_OS "</domain>", "4: <vcpu>: '0' is out of range (1 to 64)"},
	{DX_HEAD "  <vcpu placement='static'>2</vcpu>\n" DX_OS "</domain>", "4: attribute placement of <vcpu> is not supported"},
	{DX_HEAD "  <vcpu>two</vcpu>\n" DX_OS "</domain>", "4: <vcpu>: 'two' is not a number"},
	{DX_HEAD "  <os>\n    <type>xen</type>\n  </os>\n</domain>", "5: <type>xen</type> is not supported (hvm)"},
	{DX_HEAD "  <os>\n    <type arch='i686'>hvm</type>\n  </os>\n</domain>",
	 "5: <type arch='i686'> is not supported (x86_64)"},
	{DX_HEAD "  <os>\n    <type>hvm</type>\n    <initrd>/i</initrd>\n  </os>\n</domain>", "6: <initrd> is not supported"},
	{DX_HEAD "  <os>\n    <type>hvm</type>\n    <kernel></kernel>\n  </os>\n</domain>", "6: <kernel> is empty"},
	{DX_HEAD "  <os>\n    hvm\n  </os>\n</domain>", "6: text in <os> is not supported"},
	{DX_HEAD DX_OS "  <on_reboot>restart</on_reboot>\n</domain>",
	 "5: <on_reboot>restart</on_reboot> is not supported (destroy: the guest's end ends the VM)"},
	{DX_HEAD DX_OS "  <on_crash>coredump-destroy</on_crash>\n</domain>",
	 "5: <on_crash>coredump-destroy</on_crash> is not supported (destroy: the guest's end ends the VM)"},
	{DX_HEAD DX_OS "  <devices>\n    <serial type='tcp'/>\n  </devices>\n</domain>",
	 "6: <serial type='tcp'> is not supported (pty|file|stdio)"},
	{DX_HEAD DX_OS "  <devices>\n    <serial type='pty'>\n      <target port='1'/>\n    </serial>\n  </devices>\n</domain>",
	 "7: <target port='1'> is not supported (0)"},
	{DX_HEAD DX_OS "  <devices>\n    <serial type='file'>\n      <source path='/tmp/log'/>\n    </serial>\n  </devices>\n"
		       "</domain>",
	 "7: <source> is not supported"},
	{DX_HEAD DX_OS "  <devices>\n    <serial/>\n    <serial/>\n  </devices>\n</domain>",
	 "7: <serial> is given twice (first on line 6)"},
	{"<domain type='kvm'>\n  <name>a/b</name>\n</domain>",
	 "2: <name>: "}, /* then monitor_name_check's words */
	{DX_HEAD "  <uuid>not-a-uuid</uuid>\n</domain>", "4: <uuid>not-a-uuid</uuid> is not a UUID (8-4-4-4-12 hex digits)"},
	{"<domain type='kvm'>\n  <memory>65536</memory>\n" DX_OS "</domain>", "1: <domain> has no <name>"},
	{"<domain type='kvm'>\n  <name>a</name>\n" DX_OS "</domain>", "1: <domain> has no <memory>"},
	{DX_HEAD "</domain>", "1: <domain> has no <os>"},
	{DX_HEAD "  <os/>\n</domain>", "4: <os> has no <type>"},
	{"<!DOCTYPE domain [ <!ENTITY x 'y'> ]>\n<domain type='kvm'/>", "1: a DOCTYPE is not supported"},
	{"<domain type='kvm'>\n  <name>a</name>\n  <memory>65536\n</domain>", "4: malformed XML: mismatched tag"},
	{"<domain type='kvm'>\n  <name>a</name>\n", "3: malformed XML: no element found"},
	{"<domain type='kvm'>\n  <name>a &nbsp; b</name>\n</domain>", "2: malformed XML: undefined entity"},
	{"<domain type='kvm'/>\n<domain type='kvm'/>", "2: malformed XML: junk after document element"},
};

START_TEST(each_refusal_names_its_line)
{
	struct vm_config cfg, before;
	struct domain_xml doc;
	char path[64], want[512];
	cmd_run_defaults(&before);
	ck_assert_int_ne(dx_parse(refusals[_i].text, &cfg, &doc, path), 0);
	snprintf(want, sizeof(want), "%s:%s", path, refusals[_i].message);
	ck_assert_msg(strncmp(error_message(), want, strlen(want)) == 0, "got '%s', want '%s'", error_message(), want);
	ck_assert_msg(!strchr(error_message(), '\n'), "one line: '%s'", error_message());
	ck_assert_msg(memcmp(&cfg, &before, sizeof(cfg)) == 0, "the configuration was changed");
	ck_assert_ptr_null(doc.name);
}
END_TEST

START_TEST(files_that_are_no_domain_are_refused)
{
	struct vm_config cfg;
	struct domain_xml doc;
	cmd_run_defaults(&cfg);
	ck_assert_int_eq(domain_xml_parse("/nonexistent/d.xml", &cfg, &doc), -ENOENT);
	ck_assert_ptr_nonnull(strstr(error_message(), "cannot open domain XML /nonexistent/d.xml"));
	char path[64];
	dx_file(path, "");
	ck_assert_int_eq(domain_xml_parse(path, &cfg, &doc), -EINVAL);
	ck_assert_msg(strstr(error_message(), "is empty"), "%s", error_message());
	unlink(path);
	char dir[32] = "/tmp/vmm-domain-XXXXXX";
	ck_assert_ptr_nonnull(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/fifo.xml", dir);
	ck_assert_int_eq(mkfifo(path, 0600), 0);
	ck_assert_int_eq(domain_xml_parse(path, &cfg, &doc), -EINVAL);
	ck_assert_msg(strstr(error_message(), "is not a regular file"), "%s", error_message());
	unlink(path);
	rmdir(dir);
}
END_TEST

/* Configurations to write, read back and validate (libvirt's schema wants a kernel's path
 * absolute: query-config gives it so). */
static const struct {
	const char *name, *guest, *cmdline;
	uint64_t ram;
	unsigned ncpus;
	const char *uuid;
} configs[] = {
	{"vm1", "/opt/vmm/guest.elf", "hello", 256ull << 20, 1, NULL},
	{"big.one", "/srv/a <b> & 'c' \"d\".elf", "x=<1> & y='2' \"z\"\ttab\r\nnew line", 64ull << 30, 64, NULL},
	{"restored", NULL, "", 16ull << 20, 3, "01234567-89ab-cdef-0123-456789abcdef"},
	{"odd", "/k", "  spaces around  ", (16ull << 20) + 4096, 2, NULL},
};

static void dx_config(struct vm_config *cfg, int i)
{
	cmd_run_defaults(cfg);
	cfg->name = configs[i].name;
	cfg->guest = configs[i].guest;
	cfg->cmdline = configs[i].cmdline;
	cfg->mem.ram_size = configs[i].ram;
	cfg->ncpus = configs[i].ncpus;
	cfg->uuid = configs[i].uuid;
}

/* domain_xml_write of configs[@i] into a new temporary file at @path. */
static void dx_write_config(int i, char *path)
{
	struct vm_config cfg;
	dx_config(&cfg, i);
	dx_file(path, "");
	FILE *f = fopen(path, "w");
	ck_assert_ptr_nonnull(f);
	ck_assert_msg(domain_xml_write(f, &cfg, cfg.uuid) == 0, "%s", error_message());
	ck_assert_int_eq(fclose(f), 0);
}

START_TEST(what_is_written_reads_back_the_same)
{
	char path[64];
	dx_write_config(_i, path);
	struct vm_config want, got;
	dx_config(&want, _i);
	cmd_run_defaults(&got);
	struct domain_xml doc;
	ck_assert_msg(domain_xml_parse(path, &got, &doc) == 0, "%s", error_message());
	unlink(path);
	ck_assert_str_eq(got.name, want.name);
	ck_assert_uint_eq(got.mem.ram_size, want.mem.ram_size);
	ck_assert_uint_eq(got.ncpus, want.ncpus);
	ck_assert_str_eq(got.cmdline, want.cmdline);
	if (want.guest)
		ck_assert_str_eq(got.guest, want.guest);
	else
		ck_assert_ptr_null(got.guest);
	char made[DOMAIN_XML_UUID_LEN + 1];
	domain_xml_uuid_from_name(want.name, made);
	ck_assert_str_eq(got.uuid, want.uuid ? want.uuid : made);
	domain_xml_free(&doc);
}
END_TEST

START_TEST(uuid_from_the_name_is_stable_and_rfc4122)
{
	char a[DOMAIN_XML_UUID_LEN + 1], b[DOMAIN_XML_UUID_LEN + 1], c[DOMAIN_XML_UUID_LEN + 1];
	domain_xml_uuid_from_name("vm1", a);
	domain_xml_uuid_from_name("vm1", b);
	domain_xml_uuid_from_name("vm2", c);
	ck_assert_str_eq(a, b);
	ck_assert_str_ne(a, c);
	ck_assert_uint_eq(strlen(a), DOMAIN_XML_UUID_LEN);
	for (int i = 0; i < DOMAIN_XML_UUID_LEN; i++)
		ck_assert_msg(i == 8 || i == 13 || i == 18 || i == 23 ? a[i] == '-' : strchr("0123456789abcdef", a[i]) != NULL,
			      "%s", a);
	ck_assert_int_eq(a[14], '8');                    /* version 8 */
	ck_assert_ptr_nonnull(strchr("89ab", a[19]));  /* variant 10 */
}
END_TEST

START_TEST(the_writer_refuses_what_xml_cannot_carry)
{
	struct vm_config cfg;
	dx_config(&cfg, 0);
	char *buf = NULL;
	size_t size = 0;
	FILE *f = open_memstream(&buf, &size);
	cfg.cmdline = "bell\a";
	ck_assert_int_eq(domain_xml_write(f, &cfg, NULL), -EINVAL);
	ck_assert_str_eq(error_message(), "domain XML: the cmdline holds control characters, which XML cannot carry");
	cfg.cmdline = "";
	cfg.name = NULL;
	ck_assert_int_eq(domain_xml_write(f, &cfg, NULL), -EINVAL);
	ck_assert_str_eq(error_message(), "domain XML: the VM has no name");
	fclose(f);
	ck_assert_uint_eq(size, 0); /* nothing written */
	free(buf);
}
END_TEST

/* virt-xml-validate on PATH, or NULL. */
static const char *dx_validator(void)
{
	static char found[4096];
	const char *path = getenv("PATH");
	for (const char *s = path ? path : "/usr/bin:/bin"; *s;) {
		size_t n = strcspn(s, ":");
		snprintf(found, sizeof(found), "%.*s/virt-xml-validate", (int)n, s);
		if (access(found, X_OK) == 0)
			return found;
		s += n + (s[n] == ':');
	}
	return NULL;
}

/* libvirt's schema accepts the XML at @path (or says SKIP loudly when it cannot be run). */
static void dx_validate(const char *path)
{
	const char *v = dx_validator();
	if (!v) {
		fprintf(stderr, "SKIP: domain_xml: virt-xml-validate is missing (tools/deps.sh test installs "
				"libvirt-clients): %s not checked against libvirt's schema\n", path);
		return;
	}
	char *argv[] = {(char *)v, (char *)path, "domain", NULL};
	struct spawn_result r;
	ck_assert_int_eq(spawn_run(&r, 60, argv), 0);
	ck_assert_msg(r.status == 0, "virt-xml-validate %s: status %d: %s%s", path, r.status, r.out, r.err);
	spawn_free(&r);
}

START_TEST(libvirt_validates_what_is_written)
{
	char path[64];
	dx_write_config(_i, path);
	dx_validate(path);
	unlink(path);
}
END_TEST

/* ---- vmm run --xml ------------------------------------------------------------------------ */


START_TEST(run_xml_is_read_first_and_options_override_it)
{
	char path[64];
	dx_file(path, "<domain type='kvm'><name>x1</name><memory unit='MiB'>128</memory><vcpu>2</vcpu>"
		      "<os><type>hvm</type><kernel>/k.elf</kernel><cmdline>hello</cmdline></os></domain>");
	struct vm_config cfg;
	ck_assert_msg(RUN_PARSE(&cfg, "--xml", path) == 0, "%s", error_message());
	ck_assert_str_eq(cfg.name, "x1");
	ck_assert_uint_eq(cfg.mem.ram_size, 128ull << 20);
	ck_assert_uint_eq(cfg.ncpus, 2);
	ck_assert_str_eq(cfg.guest, "/k.elf");
	ck_assert_str_eq(cfg.cmdline, "hello");
	/* Before or after it, an option wins; so does a GUEST. */
	ck_assert_msg(RUN_PARSE(&cfg, "-m", "64M", "--xml", path, "-p", "spin", "-n", "y2", "g.elf") == 0, "%s",
		      error_message());
	ck_assert_uint_eq(cfg.mem.ram_size, 64ull << 20);
	ck_assert_uint_eq(cfg.ncpus, 2);
	ck_assert_str_eq(cfg.cmdline, "spin");
	ck_assert_str_eq(cfg.name, "y2");
	ck_assert_str_eq(cfg.guest, "g.elf");
	ck_assert_int_eq(RUN_PARSE(&cfg, "--xml", path, "a.elf", "b.elf"), CLI_ERROR);
	ck_assert_str_eq(error_message(), "vmm run: one GUEST only ('a.elf' and 'b.elf' given)");
	ck_assert_int_eq(RUN_PARSE(&cfg, "--xml", path, "--xml", path), CLI_ERROR);
	ck_assert_ptr_nonnull(strstr(error_message(), "vmm run: one --xml only"));
	ck_assert_int_eq(RUN_PARSE(&cfg, "--xml", path, "--help"), 1);
	unlink(path);
	dx_file(path, DX_HEAD DX_OS "</domain>");
	ck_assert_int_eq(RUN_PARSE(&cfg, "--xml", path), CLI_ERROR);
	ck_assert_ptr_nonnull(strstr(error_message(), "vmm run: no GUEST given"));
	unlink(path);
	dx_file(path, DX_HEAD DX_OS "<devices><disk/></devices></domain>");
	ck_assert_int_eq(RUN_PARSE(&cfg, "--xml", path, "g.elf"), CLI_ERROR);
	char want[128];
	snprintf(want, sizeof(want), "vmm run: %s:5: <disk> is not supported", path);
	ck_assert_str_eq(error_message(), want);
	unlink(path);
}
END_TEST

START_TEST(run_with_a_bad_xml_says_one_line_and_125)
{
	char path[64];
	dx_file(path, DX_HEAD DX_OS "  <devices>\n    <interface type='network'/>\n  </devices>\n</domain>\n");
	struct spawn_result r;
	ck_assert_int_eq(spawn_vmm(&r, 20, "run", "--xml", path, NULL), 0);
	unlink(path);
	ck_assert_msg(r.status == 125, "status %d, stderr: %s", r.status, r.err);
	char want[128];
	snprintf(want, sizeof(want), "vmm run: %s:6: <interface> is not supported\n", path);
	ck_assert_str_eq(r.err, want);
	spawn_free(&r);
	dx_file(path, "<domain type='kvm'>\n<name>a</name>\n<memory>65536</memory>\n<os><type>hvm</type></os>\n");
	ck_assert_int_eq(spawn_vmm(&r, 20, "run", "--xml", path, NULL), 0);
	unlink(path);
	ck_assert_msg(r.status == 125, "status %d, stderr: %s", r.status, r.err);
	snprintf(want, sizeof(want), "vmm run: %s:5: malformed XML: no element found\n", path);
	ck_assert_str_eq(r.err, want);
	spawn_free(&r);
}
END_TEST

/* ---- vmm dumpxml against the fake VM ---------------------------------------------------------- */

static struct fake_vm vm;
static void vm_setup(void)
{
	fake_vm_start(&vm, "dx-fake", true);
}
static void vm_teardown(void)
{
	fake_vm_stop(&vm);
}

START_TEST(dumpxml_renders_query_config)
{
	struct spawn_result r;
	ck_assert_int_eq(spawn_vmm(&r, 20, "dumpxml", "--monitor", vm.path, NULL), 0);
	ck_assert_msg(r.status == 0, "status %d: %s", r.status, r.err);
	ck_assert_str_eq(r.err, "");
	ck_assert_msg(strstr(r.out, "<kernel>/srv/guests/guest &amp; co.elf</kernel>"), "%s", r.out);
	ck_assert_msg(strstr(r.out, "<memory unit='KiB'>262144</memory>"), "%s", r.out);
	char path[64];
	dx_file(path, r.out);
	spawn_free(&r);
	struct vm_config cfg;
	struct domain_xml doc;
	cmd_run_defaults(&cfg);
	ck_assert_msg(domain_xml_parse(path, &cfg, &doc) == 0, "%s", error_message());
	ck_assert_str_eq(cfg.name, "dx-fake");
	ck_assert_uint_eq(cfg.mem.ram_size, FAKE_VM_CONFIG_MEMORY);
	ck_assert_uint_eq(cfg.ncpus, FAKE_VM_CONFIG_VCPUS);
	ck_assert_str_eq(cfg.guest, FAKE_VM_CONFIG_KERNEL);
	ck_assert_str_eq(cfg.cmdline, FAKE_VM_CONFIG_CMDLINE);
	char made[DOMAIN_XML_UUID_LEN + 1];
	domain_xml_uuid_from_name("dx-fake", made);
	ck_assert_str_eq(cfg.uuid, made);
	domain_xml_free(&doc);
	dx_validate(path);
	unlink(path);
}
END_TEST

START_TEST(dumpxml_of_no_vm_is_one_line_and_125)
{
	struct spawn_result r;
	ck_assert_int_eq(spawn_vmm(&r, 20, "dumpxml", "--monitor", "/nonexistent/vm.sock", NULL), 0);
	ck_assert_msg(r.status == 125, "status %d: %s", r.status, r.err);
	ck_assert_msg(strncmp(r.err, "vmm dumpxml: ", 13) == 0 && strchr(r.err, '\n') == r.err + strlen(r.err) - 1,
		      "%s", r.err);
	spawn_free(&r);
	ck_assert_int_eq(spawn_vmm(&r, 20, "help", "dumpxml", NULL), 0);
	ck_assert_int_eq(r.status, 0);
	ck_assert_ptr_nonnull(strstr(r.out, "usage: vmm dumpxml [OPTIONS] NAME"));
	spawn_free(&r);
}
END_TEST

#define N(a) (sizeof(a) / sizeof((a)[0]))

Suite *domain_xml_suite(void)
{
	Suite *s = suite_create("domain_xml");
	TCase *tc = tcase_create("parse");
	HARNESS_ADD_TEST(tc, every_supported_element_is_read);
	HARNESS_ADD_TEST(tc, the_fewest_elements_keep_the_defaults);
	HARNESS_ADD_LOOP_TEST(tc, memory_in_each_unit, 0, (int)N(units));
	HARNESS_ADD_LOOP_TEST(tc, each_refusal_names_its_line, 0, (int)N(refusals));
	HARNESS_ADD_TEST(tc, files_that_are_no_domain_are_refused);
	HARNESS_ADD_TEST(tc, run_xml_is_read_first_and_options_override_it);
	suite_add_tcase(s, tc);

	TCase *w = tcase_create("write");
	tcase_set_timeout(w, 60);
	HARNESS_ADD_LOOP_TEST(w, what_is_written_reads_back_the_same, 0, (int)N(configs));
	HARNESS_ADD_TEST(w, uuid_from_the_name_is_stable_and_rfc4122);
	HARNESS_ADD_TEST(w, the_writer_refuses_what_xml_cannot_carry);
	HARNESS_ADD_LOOP_TEST(w, libvirt_validates_what_is_written, 0, (int)N(configs));
	suite_add_tcase(s, w);

	TCase *bin = tcase_create("binary");
	tcase_set_timeout(bin, 60);
	HARNESS_ADD_TEST(bin, run_with_a_bad_xml_says_one_line_and_125);
	HARNESS_ADD_TEST(bin, dumpxml_of_no_vm_is_one_line_and_125);
	suite_add_tcase(s, bin);

	TCase *fake = fake_vm_tcase(s, "dumpxml", 60, vm_setup, vm_teardown);
	HARNESS_ADD_TEST(fake, dumpxml_renders_query_config);
	return s;
}

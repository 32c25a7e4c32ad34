/*
 * libvirt's domain XML, the subset a vmm VM can be: read into a struct vm_config (vmm run
 * --xml) and written from one (vmm dumpxml). It lives in the CLI: the core only carries
 * the result (vm_config's fields, the uuid among them) and never reads XML.
 *
 * The subset, everything else refused with its line:
 *   <domain type='kvm'>
 *     <name>       the VM's name (monitor_name_check's rules), required
 *     <uuid>       8-4-4-4-12 hex digits, optional (kept, reported by query-config)
 *     <memory unit='...'>  required; libvirt's units (b, bytes, KB, k, KiB, MB, M, MiB, GB,
 *                  G, GiB, TB, T, TiB, PB, P, PiB, EB, E, EiB), default KiB; vmm run -m's limits
 *     <currentMemory unit='...'>  optional, must equal <memory> (no balloon)
 *     <vcpu>       1 to 64, default 1
 *     <os> <type [arch='x86_64']>hvm</type>  required
 *          <kernel>  the GUEST image, <cmdline> its command line (both optional) </os>
 *     <on_poweroff>, <on_reboot>, <on_crash>  destroy only (the guest's end ends the VM)
 *     <devices> at most one <serial type='pty|file|stdio'> and one <console type='...'>,
 *          each with an optional <target [type='serial'] [port='0']/>: COM1, whose
 *          output always goes to standard output whatever the type </devices>
 *   </domain>
 * A DOCTYPE (and so any entity declaration) is refused.
 */
#ifndef VMM_DOMAIN_XML_H
#define VMM_DOMAIN_XML_H

#include <stdio.h>

#include "vmm/vm.h"

/* Largest domain XML file read (a domain of the subset is well under 10 KiB). */
#define DOMAIN_XML_MAX_BYTES (1u << 20)

/* Strings of a parsed domain that a vm_config points to. */
struct domain_xml {
	char *name, *uuid, *kernel, *cmdline; /* each NULL when the file had none */
};

/*
 * Read the domain XML file @path (file_read_all: a regular, non-empty file of at most
 * DOMAIN_XML_MAX_BYTES) into @cfg, over what it holds: name, uuid, mem.ram_size, ncpus,
 * guest (from <kernel>) and cmdline are set where the file gives them, nothing else is
 * touched. The strings @cfg gets belong to @doc (free with domain_xml_free once @cfg is no
 * longer used). Returns 0, or -errno with one line (error_message) "@path:LINE: what is
 * wrong": an unsupported element, attribute or value, malformed XML (expat's message), a
 * required element missing; on failure @doc holds nothing and @cfg is untouched.
 */
int domain_xml_parse(const char *path, struct vm_config *cfg, struct domain_xml *doc);

/* Free what domain_xml_parse gave @doc (and empty it); an empty @doc is fine. */
void domain_xml_free(struct domain_xml *doc);

/* Length of a UUID's text: 8-4-4-4-12 hex digits. */
#define DOMAIN_XML_UUID_LEN 36

/*
 * The UUID of a VM named @name when none was given: the XXH3-128 hash of "vmm:" @name laid
 * out as an RFC 4122 (RFC 9562 version 8, custom) UUID, lowercase, into @buf (at least
 * DOMAIN_XML_UUID_LEN + 1 bytes). The same name always gives the same UUID.
 */
void domain_xml_uuid_from_name(const char *name, char *buf);

/*
 * Write @cfg as a libvirt domain XML of the subset above on @f: name, uuid (@uuid, or
 * domain_xml_uuid_from_name when NULL), memory and currentMemory in KiB, vcpu, os (type hvm
 * for x86_64, kernel when cfg->guest is set, cmdline when not empty), on_* destroy and the
 * serial console (type stdio). Text is escaped. Returns 0, or -EINVAL with a message when
 * @cfg has no name or holds text XML cannot carry (control characters), or -EIO when @f
 * fails; nothing is written in the first case.
 */
int domain_xml_write(FILE *f, const struct vm_config *cfg, const char *uuid);

#endif

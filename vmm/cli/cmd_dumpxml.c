/* vmm dumpxml: a running VM's configuration as a libvirt domain XML (query-config). */
#include <errno.h>
#include <stdio.h>

#include "vmm/cli/cmd_client.h"
#include "vmm/cli/domain_xml.h"
#include "vmm/error.h"
#include "vmm/vm.h"

static const struct cli_option dumpxml_options[] = {
	CMD_CLIENT_OPTION_MONITOR,
	CMD_CLIENT_OPTION_HELP,
	{0},
};

static void dumpxml_help(FILE *f, const char *verb)
{
	(void)verb;
	fprintf(f, "usage: vmm dumpxml [OPTIONS] NAME\n"
		   "Print the VM NAME's configuration as a libvirt domain XML, as 'virsh dumpxml' does:\n"
		   "name, uuid (the one of 'vmm run --xml', else one made from the name), memory, vcpu,\n"
		   "kernel and cmdline, and its serial console. 'vmm run --xml FILE' boots it again.\n\n");
	cli_print_options(f, dumpxml_options);
	fprintf(f, "\nExit status: 0 printed, 1 the VM refused, 125 no such VM or bad arguments.\n");
}

int cmd_dumpxml(int argc, char **argv)
{
	const char *verb = "dumpxml";
	struct cmd_client_args a;
	int status =
		cmd_client_parse(verb, "vmm dumpxml [OPTIONS] NAME", dumpxml_options, true, dumpxml_help, argc, argv, &a);
	if (status != CMD_CLIENT_GO_ON)
		return status;
	json_t *ret = NULL;
	status = cmd_client_call(verb, &a, "query-config", NULL, &ret, CMD_CLIENT_TIMEOUT_MS);
	if (status)
		return status;
	json_t *name = json_object_get(ret, "name"), *memory = json_object_get(ret, "memory");
	json_t *vcpus = json_object_get(ret, "vcpus"), *kernel = json_object_get(ret, "kernel");
	json_t *cmdline = json_object_get(ret, "cmdline"), *uuid = json_object_get(ret, "uuid");
	int r;
	if (!json_is_string(name) || !json_is_integer(memory) || json_integer_value(memory) <= 0 ||
	    !json_is_integer(vcpus) || json_integer_value(vcpus) <= 0 || (kernel && !json_is_null(kernel) && !json_is_string(kernel)) ||
	    !json_is_string(cmdline) || (uuid && !json_is_null(uuid) && !json_is_string(uuid))) {
		r = error_set(EPROTO, "the VM's answer to query-config is not what it should be");
	} else {
		struct vm_config cfg = {
			.name = json_string_value(name),
			.mem.ram_size = (uint64_t)json_integer_value(memory),
			.ncpus = (unsigned)json_integer_value(vcpus),
			.guest = json_string_value(kernel),
			.cmdline = json_string_value(cmdline),
		};
		r = domain_xml_write(stdout, &cfg, json_string_value(uuid));
	}
	json_decref(ret);
	return r ? cmd_client_fail(verb, r) : 0;
}

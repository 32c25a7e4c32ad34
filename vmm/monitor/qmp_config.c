/* query-config: what the VM was made with (vm->cfg, constant while it runs). */
#include "vmm/monitor/qmp_config.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>

#include "vmm/vm.h"

static int query_config(struct monitor_call *call, void *ctx, json_t *args, json_t **ret)
{
	(void)call, (void)args;
	const struct vm_config *c = &((struct vm *)ctx)->cfg;
	/* Absolute, as libvirt wants it, from this process's directory (not the client's). */
	char *kernel = c->guest && !c->restore ? realpath(c->guest, NULL) : NULL;
	*ret = json_pack("{s:s?,s:I,s:i,s:s?,s:s,s:s?}", "name", c->name, "memory", (json_int_t)c->mem.ram_size, "vcpus",
			 (int)c->ncpus, "kernel", kernel ? kernel : c->restore ? NULL : c->guest, "cmdline",
			 c->cmdline && !c->restore ? c->cmdline : "", "uuid", c->uuid);
	free(kernel);
	return *ret ? 0 : -ENOMEM;
}

const struct monitor_command qmp_config_commands[] = {
	{"query-config", query_config, NULL, "what the VM was made with: name, memory, vcpus, kernel, cmdline, uuid"},
	{NULL, NULL, NULL, NULL},
};

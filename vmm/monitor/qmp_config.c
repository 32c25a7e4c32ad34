/* query-config: what the VM was made with (vm->cfg, constant while it runs). */
#include "vmm/monitor/qmp_config.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "guest/abi.h"
#include "vmm/vm.h"

/* {"store", "snapshot"} of a restored VM, else null. */
static json_t *query_config_origin(const struct vm *vm)
{
	if (!vm->origin_name[0])
		return json_null();
	return json_pack("{s:s,s:s}", "store", vm->origin_store, "snapshot", vm->origin_name);
}

/* {"parent", "index", "generation"} of a forked child, else null: a child is named
 * PARENT.K (fork.c), its index K; generation as the identity port says it. */
static json_t *query_config_fork(struct vm *vm)
{
	const char *name = vm->cfg.name, *dot = name ? strrchr(name, '.') : NULL;
	if (!vm->fork_index || !dot)
		return json_null();
	unsigned generation = ABI_ID_GENERATION(atomic_load(&vm->id_value));
	return json_pack("{s:s%,s:i,s:i}", "parent", name, (size_t)(dot - name), "index", (int)vm->fork_index,
			 "generation", (int)generation);
}

static int query_config(struct monitor_call *call, void *ctx, json_t *args, json_t **ret)
{
	(void)call, (void)args;
	struct vm *vm = ctx;
	const struct vm_config *c = &vm->cfg;
	/* Absolute, as libvirt wants it, from this process's directory (not the client's). */
	char *kernel = c->guest && !c->restore ? realpath(c->guest, NULL) : NULL;
	*ret = json_pack("{s:s?,s:I,s:i,s:s?,s:s,s:s?,s:o,s:o}", "name", c->name, "memory", (json_int_t)c->mem.ram_size,
			 "vcpus", (int)c->ncpus, "kernel", kernel ? kernel : c->restore ? NULL : c->guest, "cmdline",
			 c->cmdline && !c->restore ? c->cmdline : "", "uuid", c->uuid, "origin", query_config_origin(vm),
			 "fork", query_config_fork(vm));
	free(kernel);
	return *ret ? 0 : -ENOMEM;
}

const struct monitor_command qmp_config_commands[] = {
	{"query-config", query_config, NULL,
	 "what the VM was made with: name, memory, vcpus, kernel, cmdline, uuid; origin and fork (its lineage)"},
	{NULL, NULL, NULL, NULL},
};

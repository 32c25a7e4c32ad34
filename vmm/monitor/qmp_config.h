/* The VM's configuration over the monitor (qmp_config.c); ctx is the struct vm. */
#ifndef VMM_QMP_CONFIG_H
#define VMM_QMP_CONFIG_H

#include "vmm/monitor/monitor.h"

/*
 * query-config: {"name": string, "memory": bytes of RAM, "vcpus": integer, "kernel": the
 * guest image's absolute path (realpath; as given when that fails) or null (a restored VM
 * has none), "cmdline": string, "uuid": the
 * <uuid> of vmm run --xml's file, or null, "origin": {"store": its realpath, "snapshot"}
 * for a restored VM or null, "fork": {"parent": its name, "index": K of PARENT.K,
 * "generation": the identity port's} for a forked child or null}. vmm dumpxml renders
 * it as a domain XML; vmm inspect prints it.
 */
extern const struct monitor_command qmp_config_commands[];

#endif

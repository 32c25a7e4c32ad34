/* snapshot-save over the monitor (qmp_snapshot.c); ctx is the struct vm. */
#ifndef VMM_QMP_SNAPSHOT_H
#define VMM_QMP_SNAPSHOT_H

#include "vmm/monitor/monitor.h"

struct vm;

extern const struct monitor_command qmp_snapshot_commands[];

/* Wait for the snapshot-save worker of @vm, if one was started, to finish (it answers its
 * call first). Monitor thread, or its owner once the monitor thread is gone. */
void qmp_snapshot_join(struct vm *vm);

#endif

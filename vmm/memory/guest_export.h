/*
 * vm-export: a range of a VM's guest RAM made a memory object that other VMs on this host
 * can map (Mach's memory_object made from a task's memory: the range's pages get a pager
 * of their own, which other tasks vm_map).
 *
 * The range's bytes, as they are at the call, go into a memfd (zero pages left holes); a
 * netmemory server (pagers/netmemory.h) serves it coherently on a unix socket from a thread
 * of this process; and the range of guest memory is remapped, shared, onto that object as
 * its client, exactly as guest_memory_vm_map maps an external pager's object. So the guest
 * reads what it had, and it and every other mapper of the socket (vm-map object "pager",
 * copy or share) are coherent: many readers or one writer per page. The memfd is this
 * process's alone; other processes reach the pages only through the socket (mode 0600,
 * peers of another user refused).
 *
 * Uses guest memory's calls only (guest_memory_deallocate, guest_memory_vm_map...): the
 * caller has the VM paused across guest_export_start, and brings KVM's slots in line after
 * it (the range's region is replaced). An exported range is no longer RAM: it cannot be
 * exported again, deallocated, snapshotted or forked (as any mapped object).
 */
#ifndef VMM_GUEST_EXPORT_H
#define VMM_GUEST_EXPORT_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/un.h>

#include "pagers/netmemory.h"

struct guest_memory;

/* Locking legend: (c) constant after guest_export_start; (s) the server thread's;
 * (a) atomic. */
struct guest_export {
	uint64_t gpa, size;                               /* (c) the range, guest-physical */
	char path[sizeof(((struct sockaddr_un *)0)->sun_path)]; /* (c) its socket */
	char name[160];                                   /* (c) "vm-export of PATH": its log lines */
	int memfd;                                        /* (c) the object's bytes */
	int wake_fd;                                      /* (c) eventfd: the server thread looks at the flags */
	atomic_bool unlisten, stop;                       /* (a) asked of the server thread */
	bool listening;                                   /* (c) until guest_export_unlisten */
	pthread_t thread;                                 /* (c) */
	struct netmemory server;                          /* (s) */
};

/*
 * Export [gpa, gpa + size) of @m's RAM on a unix socket made at @path (replacing a stale
 * socket file there), the VM paused. Guest memory must be mapped and running
 * (guest_memory_start): its own fault thread becomes a client of the object.
 * 0, or -errno (kern_return_errno) with "vm_export of [0xADDR, +0xSIZE): KERN_...[: why]":
 *   KERN_INVALID_ARGUMENT   unaligned address or size, size 0, a range that wraps, that is
 *                           not wholly RAM or not within one RAM region (an exported range,
 *                           a mapped file...), a socket path that does not fit or cannot be
 *                           made there (the reason after the code)
 *   KERN_RESOURCE_SHORTAGE  no room for the regions it makes, for another watched pager, or
 *                           for the copy (memfd, memory)
 * -ENOTSUP when RAM is left to the kernel; -EBUSY as GUEST_MEMORY_MONITOR_WAIT_MS. On
 * failure guest memory is as it was (its bytes put back where the range was already cut).
 */
int guest_export_start(struct guest_export *e, struct guest_memory *m, uint64_t gpa, uint64_t size, const char *path);

/* No new mappers: the socket file is removed at once and the server takes no one more;
 * those mapped (this VM included) are served on until guest_export_stop. */
void guest_export_unlisten(struct guest_export *e);

/* The end (after the exporting VM's guest memory is destroyed: its own client gives its
 * pages back first): the server thread stops, every mapper is cut off (its next exchange
 * with the object fails, and the fault that needed it stops that VM with one line), the
 * socket file is removed, the memfd closed. */
void guest_export_stop(struct guest_export *e);

#endif

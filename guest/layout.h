/* Guest kernel layout constants shared by entry.S and the C code. */
#ifndef GUEST_LAYOUT_H
#define GUEST_LAYOUT_H

#define GDT_KCODE 0x08
#define GDT_KDATA 0x10
#define GDT_UDATA 0x18
#define GDT_UCODE 0x20
#define GDT_TSS0 0x28 /* + 16 * cpu */

/*
 * Everything a CPU owns lies in one area (struct cpu_area in kernel.c), so that booting
 * CPU 0 touches a few contiguous pages just after the image's data: the VMM brings them
 * in with the image's own cluster instead of one fault for each scattered array.
 */
#define KSTACK_SIZE 8192     /* per-CPU kernel stack: exceptions only; at the area's start */
#define USTACK_SIZE 16384    /* per-CPU user stack: the workloads */
#define CPU_AREA_SIZE 36864  /* kstack, ustack, double-fault stack, TSS: nine pages */

#endif

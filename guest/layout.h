/* Guest kernel layout constants shared by entry.S and the C code. */
#ifndef GUEST_LAYOUT_H
#define GUEST_LAYOUT_H

#define GDT_KCODE 0x08
#define GDT_KDATA 0x10
#define GDT_UDATA 0x18
#define GDT_UCODE 0x20
#define GDT_TSS0 0x28 /* + 16 * cpu */

#define KSTACK_SIZE 8192  /* per-CPU kernel stack: exceptions only */
#define USTACK_SIZE 16384 /* per-CPU user stack: the workloads */

#endif

/*
 * PVH entry, switch to long mode, exception stubs and the drop to user mode.
 * Everything here runs at CPL0, which this host emulates instruction by instruction:
 * keep it short. The page tables are static data so no CPL0 loop builds them.
 */
#include "guest/abi.h"
#include "guest/layout.h"

#define XEN_ELFNOTE_PHYS32_ENTRY 18
#define MSR_EFER 0xc0000080
#define EFER_LME (1 << 8)
#define CR0_PE 0x1
#define CR0_WP 0x10000
#define CR0_PG 0x80000000
#define CR4_PAE 0x20
#define PTE_P_RW_US 0x7
#define PTE_LARGE 0x87           /* present, writable, user, page size */

	.section .note.pvh, "a"
	.balign 4
	.long 4                  /* namesz: "Xen\0" */
	.long 4                  /* descsz */
	.long XEN_ELFNOTE_PHYS32_ENTRY
	.asciz "Xen"
	.long pvh_entry

/* ---- 32-bit PVH entry: ebx = start_info; vmm adds edi = magic, esi = cpu, ecx = ncpus ---- */
	.section .text.entry, "ax"
	.code32
	.globl pvh_entry
pvh_entry:
	cli
	cld
	mov %ebx, %ebp           /* start_info survives cpuid/wrmsr in ebp */
	cmp $ABI_BOOT_MAGIC, %edi
	je 1f
	xor %esi, %esi           /* not started by vmm: one CPU, console on COM1 */
	mov $1, %ecx
	jmp 3f
1:	movb $1, console_port_available
3:	mov %ecx, %edi           /* ncpus */
	cmp $ABI_MAX_CPUS, %esi
	jae halt32

	/* 1 GiB pages when the CPU has them (512 GiB mapped), else 2 MiB pages (4 GiB). */
	mov $0x80000001, %eax
	cpuid
	bt $26, %edx
	jnc 2f
	movl $(pdpt_1g + PTE_P_RW_US), pml4
2:
	lgdt gdt_desc32
	mov $CR4_PAE, %eax
	mov %eax, %cr4
	mov $pml4, %eax
	mov %eax, %cr3
	mov $MSR_EFER, %ecx
	rdmsr
	or $EFER_LME, %eax
	wrmsr
	mov $(CR0_PG | CR0_WP | CR0_PE), %eax
	mov %eax, %cr0
	ljmp $GDT_KCODE, $entry64

halt32:
	hlt
	jmp halt32

	.code64
entry64:
	mov $GDT_KDATA, %eax
	mov %eax, %ds
	mov %eax, %es
	mov %eax, %ss
	xor %eax, %eax
	mov %eax, %fs
	mov %eax, %gs
	/* Upper halves of registers are undefined after the switch: zero-extend. */
	mov %esi, %esi           /* rsi = cpu */
	mov %edi, %edx           /* rdx = ncpus */
	mov %ebp, %edi           /* rdi = start_info */
	/* kernel stack of this cpu: the top of its area's first KSTACK_SIZE bytes */
	imul $CPU_AREA_SIZE, %rsi, %rax
	lea (cpu_areas + KSTACK_SIZE)(%rax), %rsp
	call kernel_main
1:	hlt
	jmp 1b

/* ---- user_enter(entry rdi, stack rsi, arg0 rdx, arg1 rcx, arg2 r8): iretq to CPL3 ---- */
	.text
	.globl user_enter
user_enter:
	mov %rdi, %rax
	mov %rdx, %rdi
	push $(GDT_UDATA | 3)    /* ss */
	push %rsi                /* rsp */
	push $0x3002             /* rflags: IOPL=3, IF=0 (some hosts ignore IOPL: the TSS I/O bitmap also allows every port) */
	push $(GDT_UCODE | 3)    /* cs */
	push %rax                /* rip */
	mov %rcx, %rsi
	mov %r8, %rdx
	mov $(GDT_UDATA | 3), %eax
	mov %eax, %ds
	mov %eax, %es
	iretq

/* ---- exception stubs: push a zero error code where the CPU pushes none ---- */
.macro STUB vec, has_err
	.balign 16
	.if \has_err == 0
	push $0
	.endif
	push $\vec
	jmp exception_common
.endm
	.balign 16
	.globl exception_stubs
exception_stubs:
	STUB 0, 0
	STUB 1, 0
	STUB 2, 0
	STUB 3, 0
	STUB 4, 0
	STUB 5, 0
	STUB 6, 0
	STUB 7, 0
	STUB 8, 1
	STUB 9, 0
	STUB 10, 1
	STUB 11, 1
	STUB 12, 1
	STUB 13, 1
	STUB 14, 1
	STUB 15, 0
	STUB 16, 0
	STUB 17, 1
	STUB 18, 0
	STUB 19, 0
	STUB 20, 0
	STUB 21, 1
	.rept 10
	STUB 0xff, 0
	.endr

exception_common:
	/* Build struct trap_frame (guest/kernel.h) on the stack: GPRs below vec/err. */
	push %rax
	push %rbx
	push %rcx
	push %rdx
	push %rsi
	push %rdi
	push %rbp
	push %r8
	push %r9
	push %r10
	push %r11
	push %r12
	push %r13
	push %r14
	push %r15
	mov %rsp, %rdi
	and $-16, %rsp
	call exception_report    /* never returns */
1:	hlt
	jmp 1b

/* ---- static tables ---- */
	.section .data.pagetables, "aw"
	.balign 4096
	.globl pml4
pml4:
	.quad pdpt_2m + PTE_P_RW_US
	.fill 511, 8, 0
pdpt_1g:
	.set i, 0
	.rept 512
	.quad (i << 30) | PTE_LARGE
	.set i, i + 1
	.endr
pdpt_2m:
	.quad pd_2m + PTE_P_RW_US
	.quad pd_2m + 0x1000 + PTE_P_RW_US
	.quad pd_2m + 0x2000 + PTE_P_RW_US
	.quad pd_2m + 0x3000 + PTE_P_RW_US
	.fill 508, 8, 0
pd_2m:
	.set i, 0
	.rept 2048
	.quad (i << 21) | PTE_LARGE
	.set i, i + 1
	.endr

	.data
	.balign 16
	.globl gdt
gdt:
	.quad 0                          /* null */
	.quad 0x00209a0000000000         /* GDT_KCODE: 64-bit code, DPL0 */
	.quad 0x0000920000000000         /* GDT_KDATA */
	.quad 0x0000f20000000000         /* GDT_UDATA: DPL3 */
	.quad 0x0020fa0000000000         /* GDT_UCODE: 64-bit code, DPL3 */
	.globl gdt_tss
gdt_tss:
	.fill ABI_MAX_CPUS * 2, 8, 0     /* one 16-byte TSS descriptor per CPU, filled at boot */
gdt_end:
gdt_desc32:
	.word gdt_end - gdt - 1
	.long gdt

/* The guest kernel: the CPL0 part (boot, tables, exceptions) and its user-mode entry. */
#ifndef GUEST_KERNEL_H
#define GUEST_KERNEL_H

#include <stdint.h>

#include "guest/abi.h"

/* Registers saved by exception_common (guest/entry.S), lowest address first. */
struct trap_frame {
	uint64_t r15, r14, r13, r12, r11, r10, r9, r8;
	uint64_t rbp, rdi, rsi, rdx, rcx, rbx, rax;
	uint64_t vector, error;
	uint64_t rip, cs, rflags, rsp, ss; /* pushed by the CPU */
};

/* Boot entry from entry.S on every CPU, at CPL0 with paging on. */
void kernel_main(const struct abi_pvh_start_info *si, uint64_t cpu, uint64_t ncpus);

/* Report an unexpected exception with its registers on the console and end the VM. */
void __attribute__((noreturn)) exception_report(const struct trap_frame *f);

/* iretq to @entry at CPL3 on @stack with IOPL=3; arguments go to rdi, rsi, rdx. */
void __attribute__((noreturn)) user_enter(void *entry, void *stack, uint64_t a0, uint64_t a1, uint64_t a2);

/* The user-mode program: parses the command line and runs the workloads. */
void __attribute__((noreturn)) user_main(const struct abi_pvh_start_info *si, uint64_t cpu, uint64_t ncpus);

#endif

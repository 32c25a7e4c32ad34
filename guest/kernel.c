/*
 * CPL0 part of the guest: per-CPU TSS, the IDT, the exception report, and the drop to
 * user mode. CPL0 is emulated on this host (~650 ns per instruction), so this file does
 * the least it can and leaves everything else to user mode.
 */
#include "guest/kernel.h"

#include <stddef.h>

#include "guest/layout.h"
#include "guest/lib.h"

struct tss {
	uint32_t reserved0;
	uint64_t rsp[3];
	uint64_t reserved1;
	uint64_t ist[7];
	uint64_t reserved2;
	uint16_t reserved3;
	uint16_t iomap_base;
	uint8_t iomap[8192 + 1]; /* all zero: every port allowed; the last byte ends the map */
} __attribute__((packed));

struct idt_gate {
	uint64_t lo, hi;
};

#define IDT_VECTORS 32
#define TSS_AVAILABLE_64 0x89ull
#define IST_DOUBLE_FAULT 1 /* the IST slot guest.ld.in gives vector 8 */

extern uint64_t gdt_tss[];

struct cpu_area {
	char kstack[KSTACK_SIZE]; /* first: entry.S finds its top at cpu_areas + cpu * CPU_AREA_SIZE + KSTACK_SIZE */
	char ustack[USTACK_SIZE];
	char dfstack[1024];
	struct tss tss;
} __attribute__((aligned(4096)));
_Static_assert(sizeof(struct cpu_area) == CPU_AREA_SIZE, "CPU_AREA_SIZE is entry.S's stride");

/* Placed after every other bss object by guest.ld.in (".bss.zcpu"). */
struct cpu_area cpu_areas[ABI_MAX_CPUS] __attribute__((section(".bss.zcpu")));
extern const struct idt_gate idt[IDT_VECTORS]; /* guest.ld.in */

static void tss_load(uint64_t cpu)
{
	struct cpu_area *a = &cpu_areas[cpu];
	struct tss *t = &a->tss;
	uint64_t base = (uint64_t)t, limit = sizeof(*t) - 1;
	t->rsp[0] = (uint64_t)a->kstack + KSTACK_SIZE;
	t->ist[IST_DOUBLE_FAULT - 1] = (uint64_t)a->dfstack + sizeof(a->dfstack);
	t->iomap_base = offsetof(struct tss, iomap);
	t->iomap[8192] = 0xff;
	gdt_tss[2 * cpu] = (limit & 0xffff) | ((base & 0xffffff) << 16) | (TSS_AVAILABLE_64 << 40) |
			   (((limit >> 16) & 0xf) << 48) | (((base >> 24) & 0xff) << 56);
	gdt_tss[2 * cpu + 1] = base >> 32;
	uint16_t sel = (uint16_t)(GDT_TSS0 + 16 * cpu);
	__asm__ volatile("ltr %0" : : "r"(sel));
}

static void idt_load(void)
{
	/* The gates are built at link time (guest.ld.in): nothing to fill at CPL0. */
	struct {
		uint16_t limit;
		uint64_t base;
	} __attribute__((packed)) desc = {(uint16_t)(IDT_VECTORS * sizeof(struct idt_gate) - 1), (uint64_t)idt};
	__asm__ volatile("lidt %0" : : "m"(desc));
}

void kernel_main(const struct abi_pvh_start_info *si, uint64_t cpu, uint64_t ncpus)
{
	tss_load(cpu);
	idt_load();
	user_enter((void *)user_main, cpu_areas[cpu].ustack + USTACK_SIZE, (uint64_t)si, cpu, ncpus);
}

static const char *const exception_names[] = {
	"#DE divide error", "#DB debug", "NMI", "#BP breakpoint", "#OF overflow", "#BR bound range",
	"#UD invalid opcode", "#NM device not available", "#DF double fault", "coprocessor overrun",
	"#TS invalid TSS", "#NP segment not present", "#SS stack fault", "#GP general protection",
	"#PF page fault", "reserved", "#MF x87 error", "#AC alignment check", "#MC machine check",
	"#XM SIMD error", "#VE virtualization", "#CP control protection",
};

static void reg(struct line *l, const char *name, uint64_t v)
{
	line_str(l, name);
	line_hex(l, v);
}

void exception_report(const struct trap_frame *f)
{
	struct line l = {.len = 0};
	uint16_t tr;
	uint64_t cr2, cr3;
	__asm__ volatile("str %0" : "=r"(tr));
	__asm__ volatile("mov %%cr2, %0" : "=r"(cr2));
	__asm__ volatile("mov %%cr3, %0" : "=r"(cr3));
	line_str(&l, "\nguest: exception ");
	line_u64(&l, f->vector);
	line_str(&l, " (");
	line_str(&l, f->vector < sizeof(exception_names) / sizeof(exception_names[0]) ? exception_names[f->vector]
										   : "unknown");
	line_str(&l, ") on cpu ");
	line_u64(&l, (uint64_t)(tr - GDT_TSS0) / 16);
	line_str(&l, f->cs & 3 ? " in user mode" : " in kernel mode");
	reg(&l, ", error ", f->error);
	line_str(&l, "\n");
	line_flush(&l);
	reg(&l, "  rip ", f->rip);
	reg(&l, " cs ", f->cs);
	reg(&l, " rflags ", f->rflags);
	reg(&l, "\n  rsp ", f->rsp);
	reg(&l, " ss ", f->ss);
	reg(&l, " cr2 ", cr2);
	reg(&l, " cr3 ", cr3);
	line_str(&l, "\n");
	line_flush(&l);
	reg(&l, "  rax ", f->rax);
	reg(&l, " rbx ", f->rbx);
	reg(&l, " rcx ", f->rcx);
	reg(&l, " rdx ", f->rdx);
	reg(&l, "\n  rsi ", f->rsi);
	reg(&l, " rdi ", f->rdi);
	reg(&l, " rbp ", f->rbp);
	reg(&l, " r8  ", f->r8);
	line_str(&l, "\n");
	line_flush(&l);
	reg(&l, "  r9  ", f->r9);
	reg(&l, " r10 ", f->r10);
	reg(&l, " r11 ", f->r11);
	reg(&l, " r12 ", f->r12);
	reg(&l, "\n  r13 ", f->r13);
	reg(&l, " r14 ", f->r14);
	reg(&l, " r15 ", f->r15);
	line_str(&l, "\n");
	line_flush(&l);
	guest_exit(ABI_STATUS_EXCEPTION);
}

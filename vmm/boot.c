#include "vmm/boot.h"

#include <errno.h>
#include <string.h>

#include "guest/abi.h"
#include "vmm/error.h"

_Static_assert(BOOT_INFO_GPA == ABI_START_INFO_GPA, "boot info address is ABI");

#define BOOT_MEMMAP_OFF 0x40
#define BOOT_CMDLINE_OFF 0x100
_Static_assert(BOOT_MEMMAP_OFF + 2 * sizeof(struct abi_pvh_memmap_entry) <= BOOT_CMDLINE_OFF,
	       "memory map fits before the command line");
_Static_assert(BOOT_CMDLINE_OFF + ABI_CMDLINE_MAX <= BOOT_INFO_LEN, "command line fits in the boot page");

int boot_write_start_info(struct guest_memory *mem, const char *cmdline, uint64_t *start_info)
{
	size_t len = strlen(cmdline);
	if (len >= ABI_CMDLINE_MAX)
		return error_set(E2BIG, "guest command line is %zu bytes; at most %u fit", len, ABI_CMDLINE_MAX - 1);
	static uint8_t page[BOOT_INFO_LEN];
	memset(page, 0, sizeof(page));
	struct abi_pvh_memmap_entry *map = (void *)(page + BOOT_MEMMAP_OFF);
	unsigned n = 0;
	for (unsigned i = 0; i < mem->nregions; i++)
		if (mem->region[i].kind == GUEST_REGION_RAM)
			map[n++] = (struct abi_pvh_memmap_entry){
				.addr = mem->region[i].gpa, .size = mem->region[i].size, .type = ABI_PVH_MEMMAP_RAM};
	memcpy(page + BOOT_CMDLINE_OFF, cmdline, len + 1);
	struct abi_pvh_start_info si = {
		.magic = ABI_PVH_MAGIC,
		.version = 1,
		.cmdline_paddr = BOOT_INFO_GPA + BOOT_CMDLINE_OFF,
		.memmap_paddr = BOOT_INFO_GPA + BOOT_MEMMAP_OFF,
		.memmap_entries = n,
	};
	memcpy(page, &si, sizeof(si));
	int r = guest_memory_write(mem, BOOT_INFO_GPA, page, BOOT_INFO_LEN);
	if (!r) /* read by the guest's first instructions */
		r = guest_memory_prefault(mem, BOOT_INFO_GPA, BOOT_INFO_LEN);
	if (r)
		return error_set(-r, "cannot write the boot information into guest memory: %s", strerror(-r));
	*start_info = BOOT_INFO_GPA;
	return 0;
}

static void boot_flat_segment(struct kvm_segment *s, uint16_t selector, uint8_t type)
{
	*s = (struct kvm_segment){
		.base = 0, .limit = 0xffffffff, .selector = selector, .type = type,
		.present = 1, .dpl = 0, .db = 1, .s = 1, .l = 0, .g = 1,
	};
}

void boot_vcpu_state(struct kvm_regs *regs, struct kvm_sregs *sregs, uint64_t entry, uint64_t start_info,
		     unsigned index, unsigned ncpus)
{
	boot_flat_segment(&sregs->cs, 0x10, 0xb); /* execute/read, accessed */
	boot_flat_segment(&sregs->ds, 0x18, 0x3); /* read/write, accessed */
	sregs->es = sregs->fs = sregs->gs = sregs->ss = sregs->ds;
	/* A busy 32-bit TSS and an unusable LDT keep VMX's entry checks happy. */
	sregs->tr = (struct kvm_segment){.limit = 0x67, .type = 0xb, .present = 1};
	sregs->ldt = (struct kvm_segment){.type = 0x2, .present = 1, .unusable = 1};
	sregs->cr0 = 0x11; /* PE, ET */
	sregs->cr3 = 0;
	sregs->cr4 = 0;
	sregs->efer = 0;

	memset(regs, 0, sizeof(*regs));
	regs->rflags = 0x2;
	regs->rip = entry;
	regs->rbx = start_info;
	regs->rdi = ABI_BOOT_MAGIC;
	regs->rsi = index;
	regs->rcx = ncpus;
}

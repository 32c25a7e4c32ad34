/*
 * The one header shared by the guest kernel (guest/) and the VMM (vmm/): I/O ports,
 * boot protocol details and the test/sync protocol. Everything here is ABI: change it
 * only together on both sides.
 *
 * Guest-physical memory layout (identity mapped by the guest):
 *   0x0000_0000 .. 0x0000_1000   never used (null page)
 *   0x0000_7000                  PVH start_info, memory map and command line (written by the VMM)
 *   0x0010_0000 (1 MiB)          guest kernel image (ELF segments, see guest/guest.ld)
 *   GUEST_FREE_BASE ..           workload memory, up to the end of RAM
 */
#ifndef GUEST_ABI_H
#define GUEST_ABI_H

#ifndef __ASSEMBLER__
#include <stdint.h>

/* PVH boot information (Xen's hvm_start_info, version 1), at ebx on entry. */
#define ABI_PVH_MAGIC 0x336ec578u
struct abi_pvh_start_info {
	uint32_t magic;
	uint32_t version;
	uint32_t flags;
	uint32_t nr_modules;
	uint64_t modlist_paddr;
	uint64_t cmdline_paddr;
	uint64_t rsdp_paddr;
	uint64_t memmap_paddr;   /* version >= 1 */
	uint32_t memmap_entries; /* version >= 1 */
	uint32_t reserved;
};

#define ABI_PVH_MEMMAP_RAM 1
struct abi_pvh_memmap_entry {
	uint64_t addr;
	uint64_t size;
	uint32_t type;
	uint32_t reserved;
};
#endif

/* Serial console: a 16550 at COM1. The guest only writes THR (offset 0). */
#define ABI_PORT_SERIAL 0x3f8
#define ABI_PORT_SERIAL_LEN 8

/*
 * isa-debug-exit compatible port: a write of value V ends the VM. QEMU exits with
 * (V << 1) | 1; vmm exits with V itself (the guest's exit status). Statuses 120-127 are
 * reserved for the VMM's own verdicts on the guest (see vmm --help).
 */
#define ABI_PORT_EXIT 0xf4
#define ABI_PORT_EXIT_LEN 4

/*
 * Test/sync port: 32-bit writes of ABI_SYNC(code, arg). The VMM counts them, can act on
 * them (later: snapshot or fork at a sync point) and reports them with -v.
 * Under QEMU the port is unassigned and writes are ignored.
 */
#define ABI_PORT_TEST 0xf0
#define ABI_PORT_TEST_LEN 4
#define ABI_SYNC(code, arg) (((unsigned)(code) << 24) | ((unsigned)(arg) & 0xffffffu))
#define ABI_SYNC_CODE(v) ((unsigned)(v) >> 24)
#define ABI_SYNC_ARG(v) ((unsigned)(v) & 0xffffffu)
#ifndef __ASSEMBLER__
enum abi_sync_code {
	ABI_SYNC_POINT = 1, /* arg: workload-defined sync point number */
	ABI_SYNC_PASS = 2,  /* arg: workload index that verified */
	ABI_SYNC_FAIL = 3,  /* arg: workload index that failed */
	ABI_SYNC_ROUND = 4, /* arg: round number of a repeating workload (spin) */
};
#endif

/*
 * Console port (vmm only): a 32-bit write of the guest-physical address of a struct
 * abi_console_msg prints the whole message with one exit instead of one per byte.
 * The guest uses it only when started by vmm (ABI_BOOT_MAGIC); elsewhere it writes COM1.
 */
#define ABI_PORT_CONSOLE 0xf8
#define ABI_PORT_CONSOLE_LEN 4
#define ABI_CONSOLE_MAX 4096
#ifndef __ASSEMBLER__
struct abi_console_msg {
	uint32_t len; /* bytes of text, at most ABI_CONSOLE_MAX */
	char text[];
};
#endif

/*
 * Identity port (vmm only): a 32-bit read gives ABI_ID(generation, index): @index is 0 in
 * the VM that was booted or restored and k in the k-th child of a fork; @generation counts
 * the forks this VM has gone through (parent and children alike), so a guest sees a fork
 * happen, like fork(2)'s return value. Under QEMU the read gives all ones.
 */
#define ABI_PORT_ID 0xfc
#define ABI_PORT_ID_LEN 4
#define ABI_ID(generation, index) (((unsigned)(generation) << 16) | ((unsigned)(index) & 0xffffu))
#define ABI_ID_GENERATION(v) ((unsigned)(v) >> 16)
#define ABI_ID_INDEX(v) ((unsigned)(v) & 0xffffu)

/*
 * vmm extension of PVH entry: besides ebx = start_info, the VMM starts every vCPU at
 * the PVH entry with edi = ABI_BOOT_MAGIC, esi = this vCPU's index, ecx = number of
 * vCPUs. Without the magic (QEMU) the guest runs on one CPU.
 */
#define ABI_BOOT_MAGIC 0x21564d4du /* "MVM!" little-endian */
#define ABI_MAX_CPUS 64

/* Where the VMM puts the PVH start_info page; the memory map and command line follow. */
#define ABI_START_INFO_GPA 0x7000u
#define ABI_CMDLINE_MAX 2048

/* Physical load address of the kernel image and the lowest guest RAM size it needs. */
#define ABI_KERNEL_BASE 0x100000u
#define ABI_FREE_BASE 0x800000u /* workload memory starts here (8 MiB) */
#define ABI_MIN_RAM (16u << 20)  /* smallest RAM the guest can run in */

#ifndef __ASSEMBLER__
/* Guest exit statuses (values written to ABI_PORT_EXIT by our guest). */
enum abi_guest_status {
	ABI_STATUS_OK = 0,
	ABI_STATUS_VERIFY_FAILED = 1, /* a workload found memory that does not match */
	ABI_STATUS_BAD_CMDLINE = 2,   /* unknown workload or malformed argument */
	ABI_STATUS_EXCEPTION = 3,     /* unexpected CPU exception (registers on serial) */
};

/*
 * Size syntax shared by the vmm command line and the guest command line, so a user
 * writes sizes the same way to both: digits with an optional K, M or G suffix
 * (binary units, case-insensitive); a bare number means MiB.
 * Parses [s, s + len); returns 0 and sets *bytes, or -1 if malformed or over 2^62.
 */
static inline int abi_parse_size(const char *s, unsigned long len, unsigned long long *bytes)
{
	unsigned long long v = 0;
	unsigned long i = 0;
	if (len == 0)
		return -1;
	for (; i < len && s[i] >= '0' && s[i] <= '9'; i++) {
		v = v * 10 + (unsigned)(s[i] - '0');
		if (v > (1ull << 62))
			return -1;
	}
	if (i == 0)
		return -1;
	unsigned shift = 20;
	if (i < len) {
		switch (s[i]) {
		case 'k': case 'K': shift = 10; break;
		case 'm': case 'M': shift = 20; break;
		case 'g': case 'G': shift = 30; break;
		default: return -1;
		}
		if (++i != len)
			return -1;
	}
	if (v > ((1ull << 62) >> shift))
		return -1;
	*bytes = v << shift;
	return 0;
}
/*
 * The pattern workloads write, shared with host-side checkers: word i (of 512) of the page
 * at guest-physical @addr for @seed is abi_page_key(addr, seed) + i. A per-page key plus
 * the index: misplaced, partial or zeroed pages all mismatch.
 */
static inline uint64_t abi_mix64(uint64_t x)
{
	x ^= x >> 33;
	x *= 0xff51afd7ed558ccdull;
	x ^= x >> 33;
	x *= 0xc4ceb9fe1a85ec53ull;
	x ^= x >> 33;
	return x;
}

static inline uint64_t abi_page_key(uint64_t addr, uint64_t seed)
{
	return abi_mix64(addr ^ (seed * 0x9e3779b97f4a7c15ull));
}

/* FNV-1a 64 over bytes: the checksum the sum workload prints. Start with ABI_FNV_INIT. */
#define ABI_FNV_INIT 0xcbf29ce484222325ull
static inline uint64_t abi_fnv1a64(uint64_t h, const unsigned char *p, unsigned long len)
{
	for (unsigned long i = 0; i < len; i++)
		h = (h ^ p[i]) * 0x100000001b3ull;
	return h;
}
#endif /* !__ASSEMBLER__ */

#endif

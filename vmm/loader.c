#include "vmm/loader.h"

#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "vmm/error.h"
#include "vmm/file_io.h"

#define XEN_ELFNOTE_PHYS32_ENTRY 18
#define LOADER_MAX_PHDRS 64

int loader_read_file(const char *path, void **data, size_t *size)
{
	return file_read_all(path, "guest image", LOADER_MAX_IMAGE, data, size);
}

/* True when [off, off + len) lies within [0, size) without overflow. */
static bool in_file(uint64_t off, uint64_t len, size_t size)
{
	return off <= size && len <= size - off;
}

/* Look for the PVH entry note in one PT_NOTE segment's bytes. Returns 1 when found,
 * 0 when absent, negative (message set) when the notes are malformed. */
static int find_pvh_note(const uint8_t *p, uint64_t len, const char *name, uint64_t *entry)
{
	uint64_t off = 0;
	while (len - off >= sizeof(Elf64_Nhdr)) {
		Elf64_Nhdr nh;
		memcpy(&nh, p + off, sizeof(nh));
		uint64_t namesz = ((uint64_t)nh.n_namesz + 3) & ~3ull, descsz = ((uint64_t)nh.n_descsz + 3) & ~3ull;
		off += sizeof(nh);
		if (namesz > len - off || descsz > len - off - namesz)
			return error_set(ENOEXEC, "%s: ELF note at offset %llu runs past its segment", name,
					 (unsigned long long)(off - sizeof(nh)));
		const uint8_t *nm = p + off, *desc = p + off + namesz;
		if (nh.n_type == XEN_ELFNOTE_PHYS32_ENTRY && nh.n_namesz == 4 && memcmp(nm, "Xen", 4) == 0) {
			if (nh.n_descsz == 4) {
				uint32_t e;
				memcpy(&e, desc, 4);
				*entry = e;
			} else if (nh.n_descsz == 8) {
				memcpy(entry, desc, 8);
			} else {
				return error_set(ENOEXEC, "%s: PVH entry note has %u bytes of data, not 4 or 8", name,
						 nh.n_descsz);
			}
			return 1;
		}
		off += namesz + descsz;
	}
	return 0;
}

/* True when [gpa, gpa + len) lies wholly in one RAM region of @mem. */
static bool loader_in_ram(const struct guest_memory *mem, uint64_t gpa, uint64_t len)
{
	const struct guest_region *r = guest_memory_region(mem, gpa);
	return r && r->kind == GUEST_REGION_RAM && len <= r->size - (gpa - r->gpa);
}

int loader_check_pvh(const void *image, size_t size, const char *name, const struct guest_memory *mem,
		     uint64_t reserved_gpa, uint64_t reserved_len, struct loader_result *out)
{
	const uint8_t *bytes = image;
	Elf64_Ehdr eh;
	if (size < sizeof(eh) || memcmp(bytes, ELFMAG, SELFMAG) != 0)
		return error_set(ENOEXEC, "%s: not an ELF file", name);
	memcpy(&eh, bytes, sizeof(eh));
	if (eh.e_ident[EI_CLASS] != ELFCLASS64)
		return error_set(ENOEXEC, "%s: not a 64-bit ELF file (PVH guests are x86-64 ELF64)", name);
	if (eh.e_ident[EI_DATA] != ELFDATA2LSB || eh.e_machine != EM_X86_64)
		return error_set(ENOEXEC, "%s: not an x86-64 ELF file (machine %u)", name, eh.e_machine);
	if (eh.e_type != ET_EXEC)
		return error_set(ENOEXEC, "%s: not an ELF executable (type %u); PVH guests are linked at fixed addresses",
				 name, eh.e_type);
	if (eh.e_phnum == 0 || eh.e_phnum > LOADER_MAX_PHDRS || eh.e_phentsize != sizeof(Elf64_Phdr) ||
	    !in_file(eh.e_phoff, (uint64_t)eh.e_phnum * sizeof(Elf64_Phdr), size))
		return error_set(ENOEXEC, "%s: program header table is missing or malformed (%u entries at offset %llu)",
				 name, eh.e_phnum, (unsigned long long)eh.e_phoff);

	Elf64_Phdr ph[LOADER_MAX_PHDRS];
	memcpy(ph, bytes + eh.e_phoff, (size_t)eh.e_phnum * sizeof(Elf64_Phdr));

	/* First pass: check everything, so a bad image leaves guest memory untouched. */
	uint64_t entry = 0, lo = UINT64_MAX, hi = 0;
	bool have_entry = false;
	unsigned nload = 0;
	for (unsigned i = 0; i < eh.e_phnum; i++) {
		const Elf64_Phdr *p = &ph[i];
		if (p->p_type == PT_NOTE) {
			if (!in_file(p->p_offset, p->p_filesz, size))
				return error_set(ENOEXEC, "%s: note segment %u lies outside the file", name, i);
			if (!have_entry) {
				int r = find_pvh_note(bytes + p->p_offset, p->p_filesz, name, &entry);
				if (r < 0)
					return r;
				have_entry = r == 1;
			}
			continue;
		}
		if (p->p_type != PT_LOAD || p->p_memsz == 0)
			continue;
		if (p->p_filesz > p->p_memsz || !in_file(p->p_offset, p->p_filesz, size))
			return error_set(ENOEXEC, "%s: segment %u has %llu file bytes at offset %llu: outside the file or over its memory size",
					 name, i, (unsigned long long)p->p_filesz, (unsigned long long)p->p_offset);
		if (p->p_paddr + p->p_memsz < p->p_paddr || !loader_in_ram(mem, p->p_paddr, p->p_memsz))
			return error_set(ENOEXEC, "%s: segment %u [0x%llx, 0x%llx) lies outside guest RAM (%llu MiB)", name,
					 i, (unsigned long long)p->p_paddr,
					 (unsigned long long)(p->p_paddr + p->p_memsz),
					 (unsigned long long)(mem->ram_size >> 20));
		if (reserved_len && p->p_paddr < reserved_gpa + reserved_len && reserved_gpa < p->p_paddr + p->p_memsz)
			return error_set(ENOEXEC, "%s: segment %u [0x%llx, 0x%llx) overlaps the boot information at 0x%llx",
					 name, i, (unsigned long long)p->p_paddr,
					 (unsigned long long)(p->p_paddr + p->p_memsz), (unsigned long long)reserved_gpa);
		lo = p->p_paddr < lo ? p->p_paddr : lo;
		hi = p->p_paddr + p->p_memsz > hi ? p->p_paddr + p->p_memsz : hi;
		nload++;
	}
	if (nload == 0)
		return error_set(ENOEXEC, "%s: no loadable segment", name);
	if (!have_entry)
		return error_set(ENOEXEC, "%s: no PVH entry note (XEN_ELFNOTE_PHYS32_ENTRY); not a PVH kernel", name);
	bool entry_loaded = false;
	for (unsigned i = 0; i < eh.e_phnum; i++)
		if (ph[i].p_type == PT_LOAD && entry >= ph[i].p_paddr && entry - ph[i].p_paddr < ph[i].p_filesz)
			entry_loaded = true;
	if (!entry_loaded || entry >= (1ull << 32))
		return error_set(ENOEXEC, "%s: PVH entry 0x%llx is not inside a loaded segment below 4 GiB", name,
				 (unsigned long long)entry);

	out->entry = entry;
	out->image_start = lo;
	out->image_end = hi;
	return 0;
}

int loader_load_pvh(const void *image, size_t size, const char *name, struct guest_memory *mem,
		    uint64_t reserved_gpa, uint64_t reserved_len, struct loader_result *out)
{
	int r = loader_check_pvh(image, size, name, mem, reserved_gpa, reserved_len, out);
	if (r)
		return r;
	const uint8_t *bytes = image;
	Elf64_Ehdr eh;
	memcpy(&eh, bytes, sizeof(eh));
	for (unsigned i = 0; i < eh.e_phnum; i++) {
		Elf64_Phdr p;
		memcpy(&p, bytes + eh.e_phoff + (size_t)i * sizeof(p), sizeof(p));
		if (p.p_type != PT_LOAD || !p.p_filesz || !p.p_memsz)
			continue;
		r = guest_memory_write(mem, p.p_paddr, bytes + p.p_offset, p.p_filesz);
		if (!r) /* the guest's first instructions and data: no fault for them */
			r = guest_memory_prefault(mem, p.p_paddr, p.p_filesz);
		if (r)
			return error_set(-r, "%s: cannot write segment %u into guest memory: %s", name, i, strerror(-r));
	}
	return 0;
}

#include "elf_image.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define NOTE_OFF (sizeof(Elf64_Ehdr) + 2 * sizeof(Elf64_Phdr))
#define NOTE_LEN (sizeof(Elf64_Nhdr) + 4 + 4)
#define CODE_OFF 0x200

void elf_image_build(struct elf_image *img, const void *code, size_t code_len, uint64_t load_gpa, uint64_t bss)
{
	memset(img, 0, sizeof(*img));
	if (code_len > ELF_IMAGE_MAX - CODE_OFF)
		abort();
	Elf64_Ehdr *eh = elf_image_ehdr(img);
	memcpy(eh->e_ident, ELFMAG, SELFMAG);
	eh->e_ident[EI_CLASS] = ELFCLASS64;
	eh->e_ident[EI_DATA] = ELFDATA2LSB;
	eh->e_ident[EI_VERSION] = EV_CURRENT;
	eh->e_type = ET_EXEC;
	eh->e_machine = EM_X86_64;
	eh->e_version = EV_CURRENT;
	eh->e_entry = load_gpa;
	eh->e_phoff = sizeof(Elf64_Ehdr);
	eh->e_ehsize = sizeof(Elf64_Ehdr);
	eh->e_phentsize = sizeof(Elf64_Phdr);
	eh->e_phnum = 2;

	*elf_image_phdr(img, 0) = (Elf64_Phdr){
		.p_type = PT_LOAD, .p_flags = PF_R | PF_W | PF_X, .p_offset = CODE_OFF, .p_vaddr = load_gpa,
		.p_paddr = load_gpa, .p_filesz = code_len, .p_memsz = code_len + bss, .p_align = 0x1000};
	*elf_image_phdr(img, 1) = (Elf64_Phdr){
		.p_type = PT_NOTE, .p_flags = PF_R, .p_offset = NOTE_OFF, .p_filesz = NOTE_LEN, .p_align = 4};

	Elf64_Nhdr *nh = elf_image_note(img);
	*nh = (Elf64_Nhdr){.n_namesz = 4, .n_descsz = 4, .n_type = 18};
	memcpy((uint8_t *)nh + sizeof(*nh), "Xen", 4);
	*elf_image_note_entry(img) = (uint32_t)load_gpa;

	memcpy(img->bytes + CODE_OFF, code, code_len);
	img->size = CODE_OFF + code_len;
}

Elf64_Ehdr *elf_image_ehdr(struct elf_image *img)
{
	return (Elf64_Ehdr *)img->bytes;
}

Elf64_Phdr *elf_image_phdr(struct elf_image *img, unsigned i)
{
	return (Elf64_Phdr *)(img->bytes + sizeof(Elf64_Ehdr)) + i;
}

Elf64_Nhdr *elf_image_note(struct elf_image *img)
{
	return (Elf64_Nhdr *)(img->bytes + NOTE_OFF);
}

uint32_t *elf_image_note_entry(struct elf_image *img)
{
	return (uint32_t *)(img->bytes + NOTE_OFF + sizeof(Elf64_Nhdr) + 4);
}

const char *elf_image_write_temp(const struct elf_image *img)
{
	static char path[64];
	strcpy(path, "/tmp/vmm-test-guest-XXXXXX");
	int fd = mkstemp(path);
	if (fd < 0 || write(fd, img->bytes, img->size) != (ssize_t)img->size)
		abort();
	close(fd);
	return path;
}

/*
 * Build small PVH ELF images in memory for the loader tests and for tiny test guests:
 * one PT_LOAD segment holding @code at @load_gpa, a PT_NOTE with the PVH entry, and
 * nothing else. Tests break the result on purpose through elf_image_ehdr/phdr.
 */
#ifndef TESTS_ELF_IMAGE_H
#define TESTS_ELF_IMAGE_H

#include <elf.h>
#include <stddef.h>
#include <stdint.h>

#define ELF_IMAGE_MAX 4096

struct elf_image {
	uint8_t bytes[ELF_IMAGE_MAX];
	size_t size;
};

/* Phdr 0 is the PT_LOAD, phdr 1 the PT_NOTE. @bss: extra zeroed bytes after the code. */
void elf_image_build(struct elf_image *img, const void *code, size_t code_len, uint64_t load_gpa, uint64_t bss);

Elf64_Ehdr *elf_image_ehdr(struct elf_image *img);
Elf64_Phdr *elf_image_phdr(struct elf_image *img, unsigned i);
/* The note's header and its 4-byte entry field. */
Elf64_Nhdr *elf_image_note(struct elf_image *img);
uint32_t *elf_image_note_entry(struct elf_image *img);

/* Write the image to a new temporary file; returns its path (static buffer). */
const char *elf_image_write_temp(const struct elf_image *img);

#endif

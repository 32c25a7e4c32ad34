/* The PVH ELF loader against valid and malformed images. */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "elf_image.h"
#include "harness.h"
#include "vmm/boot.h"
#include "vmm/error.h"
#include "vmm/loader.h"

#define RAM (16ull << 20)
#define LOAD_GPA 0x100000ull

static struct guest_memory mem; /* laid out; plain memory behind it (no map) */
static uint8_t *ram;
static struct elf_image img;
static const uint8_t code[] = {0xb0, 0x2a, 0xe6, 0xf4, 0xf4}; /* mov al,42; out 0xf4,al; hlt */

static void setup(void)
{
	struct guest_memory_config cfg = {.ram_size = RAM};
	ck_assert_int_eq(guest_memory_layout(&mem, &cfg), 0);
	ram = calloc(1, RAM);
	ck_assert_ptr_nonnull(ram);
	mem.base = ram;
	elf_image_build(&img, code, sizeof(code), LOAD_GPA, 0x3000);
	error_clear();
}

static void teardown(void)
{
	free(ram);
}

static int load(struct loader_result *lr)
{
	return loader_load_pvh(img.bytes, img.size, "test.elf", &mem, BOOT_INFO_GPA, BOOT_INFO_LEN, lr);
}

/* Load must fail with ENOEXEC, a message containing @needle, and RAM left untouched. */
static void expect_rejected(const char *needle)
{
	struct loader_result lr;
	ck_assert_int_eq(load(&lr), -ENOEXEC);
	ck_assert_msg(strstr(error_message(), needle), "message '%s' lacks '%s'", error_message(), needle);
	ck_assert_msg(strncmp(error_message(), "test.elf: ", 10) == 0, "message names the file: %s", error_message());
	const uint8_t *at = guest_memory_ptr(&mem, LOAD_GPA, sizeof(code));
	for (size_t i = 0; i < sizeof(code); i++)
		ck_assert_uint_eq(at[i], 0);
}

START_TEST(valid_image_is_copied_to_its_physical_address)
{
	struct loader_result lr;
	ck_assert_int_eq(load(&lr), 0);
	ck_assert_uint_eq(lr.entry, LOAD_GPA);
	ck_assert_uint_eq(lr.image_start, LOAD_GPA);
	ck_assert_uint_eq(lr.image_end, LOAD_GPA + sizeof(code) + 0x3000);
	ck_assert_mem_eq(guest_memory_ptr(&mem, LOAD_GPA, sizeof(code)), code, sizeof(code));
}
END_TEST

START_TEST(entry_note_of_eight_bytes_is_accepted)
{
	/* Rewrite the note with an 8-byte descriptor at the same place. */
	Elf64_Nhdr *nh = elf_image_note(&img);
	nh->n_descsz = 8;
	uint64_t entry = LOAD_GPA + 2;
	memcpy(elf_image_note_entry(&img), &entry, 8);
	elf_image_phdr(&img, 1)->p_filesz += 4;
	struct loader_result lr;
	ck_assert_int_eq(load(&lr), 0);
	ck_assert_uint_eq(lr.entry, LOAD_GPA + 2);
}
END_TEST

START_TEST(truncated_file_is_not_elf)
{
	struct loader_result lr;
	ck_assert_int_eq(loader_load_pvh(img.bytes, 10, "test.elf", &mem, 0, 0, &lr), -ENOEXEC);
	ck_assert_str_eq(error_message(), "test.elf: not an ELF file");
}
END_TEST

START_TEST(bad_magic_is_not_elf)
{
	img.bytes[1] = 'X';
	expect_rejected("not an ELF file");
}
END_TEST

START_TEST(elf32_is_rejected)
{
	elf_image_ehdr(&img)->e_ident[EI_CLASS] = ELFCLASS32;
	expect_rejected("not a 64-bit ELF");
}
END_TEST

START_TEST(wrong_machine_is_rejected)
{
	elf_image_ehdr(&img)->e_machine = EM_AARCH64;
	expect_rejected("not an x86-64 ELF");
}
END_TEST

START_TEST(big_endian_is_rejected)
{
	elf_image_ehdr(&img)->e_ident[EI_DATA] = ELFDATA2MSB;
	expect_rejected("not an x86-64 ELF");
}
END_TEST

START_TEST(shared_object_is_rejected)
{
	elf_image_ehdr(&img)->e_type = ET_DYN;
	expect_rejected("not an ELF executable");
}
END_TEST

START_TEST(program_headers_past_end_of_file_are_rejected)
{
	elf_image_ehdr(&img)->e_phoff = img.size - 8;
	expect_rejected("program header table");
}
END_TEST

START_TEST(program_header_offset_overflow_is_rejected)
{
	elf_image_ehdr(&img)->e_phoff = UINT64_MAX - 16;
	expect_rejected("program header table");
}
END_TEST

START_TEST(no_program_headers_is_rejected)
{
	elf_image_ehdr(&img)->e_phnum = 0;
	expect_rejected("program header table");
}
END_TEST

START_TEST(wrong_program_header_size_is_rejected)
{
	elf_image_ehdr(&img)->e_phentsize = 32;
	expect_rejected("program header table");
}
END_TEST

START_TEST(segment_data_outside_file_is_rejected)
{
	elf_image_phdr(&img, 0)->p_offset = img.size;
	expect_rejected("outside the file");
}
END_TEST

START_TEST(segment_file_size_over_memory_size_is_rejected)
{
	elf_image_phdr(&img, 0)->p_memsz = 1;
	expect_rejected("outside the file or over its memory size");
}
END_TEST

START_TEST(segment_beyond_ram_is_rejected)
{
	Elf64_Phdr *ph = elf_image_phdr(&img, 0);
	ph->p_paddr = RAM - 2;
	*elf_image_note_entry(&img) = (uint32_t)(RAM - 2);
	expect_rejected("lies outside guest RAM (16 MiB)");
}
END_TEST

START_TEST(segment_whose_end_wraps_around_is_rejected)
{
	Elf64_Phdr *ph = elf_image_phdr(&img, 0);
	ph->p_paddr = UINT64_MAX - 1;
	expect_rejected("lies outside guest RAM");
}
END_TEST

START_TEST(huge_bss_beyond_ram_is_rejected)
{
	elf_image_phdr(&img, 0)->p_memsz = RAM;
	expect_rejected("lies outside guest RAM");
}
END_TEST

START_TEST(segment_over_boot_information_is_rejected)
{
	Elf64_Phdr *ph = elf_image_phdr(&img, 0);
	ph->p_paddr = BOOT_INFO_GPA - 2;
	*elf_image_note_entry(&img) = (uint32_t)ph->p_paddr;
	struct loader_result lr;
	ck_assert_int_eq(load(&lr), -ENOEXEC);
	ck_assert_ptr_nonnull(strstr(error_message(), "overlaps the boot information at 0x7000"));
}
END_TEST

START_TEST(image_without_loadable_segment_is_rejected)
{
	elf_image_phdr(&img, 0)->p_type = PT_NULL;
	expect_rejected("no loadable segment");
}
END_TEST

START_TEST(image_without_pvh_note_is_rejected)
{
	elf_image_note(&img)->n_type = 1;
	expect_rejected("no PVH entry note (XEN_ELFNOTE_PHYS32_ENTRY)");
}
END_TEST

START_TEST(note_from_another_owner_is_ignored)
{
	memcpy((uint8_t *)elf_image_note(&img) + sizeof(Elf64_Nhdr), "Gnu", 4);
	expect_rejected("no PVH entry note");
}
END_TEST

START_TEST(note_with_odd_descriptor_size_is_rejected)
{
	elf_image_note(&img)->n_descsz = 3;
	expect_rejected("PVH entry note has 3 bytes");
}
END_TEST

START_TEST(note_running_past_its_segment_is_rejected)
{
	elf_image_note(&img)->n_namesz = 0x7fffffff;
	expect_rejected("runs past its segment");
}
END_TEST

START_TEST(note_segment_outside_file_is_rejected)
{
	elf_image_phdr(&img, 1)->p_offset = UINT64_MAX - 4;
	expect_rejected("note segment 1 lies outside the file");
}
END_TEST

START_TEST(entry_outside_loaded_code_is_rejected)
{
	*elf_image_note_entry(&img) = 0x200000;
	expect_rejected("PVH entry 0x200000 is not inside a loaded segment");
}
END_TEST

START_TEST(entry_in_bss_is_rejected)
{
	*elf_image_note_entry(&img) = (uint32_t)(LOAD_GPA + sizeof(code) + 16);
	expect_rejected("is not inside a loaded segment");
}
END_TEST

START_TEST(random_corruption_never_crashes_the_loader)
{
	/* Flip bytes of the headers at random; every outcome is a load or a named error. */
	struct elf_image good = img;
	unsigned seed = 12345;
	for (int round = 0; round < 20000; round++) {
		img = good;
		for (int k = 0; k < 1 + round % 4; k++) {
			seed = seed * 1103515245u + 12345u;
			size_t at = (seed >> 8) % 0x220;
			img.bytes[at] ^= (uint8_t)(1u << ((seed >> 4) % 8));
		}
		struct loader_result lr;
		error_clear();
		int r = loader_load_pvh(img.bytes, img.size, "test.elf", &mem, BOOT_INFO_GPA, BOOT_INFO_LEN, &lr);
		if (r == 0) {
			ck_assert_ptr_nonnull(guest_memory_ptr(&mem, lr.image_start, lr.image_end - lr.image_start));
			ck_assert_uint_lt(lr.entry, lr.image_end);
		} else {
			ck_assert_int_eq(r, -ENOEXEC);
			ck_assert_msg(strncmp(error_message(), "test.elf: ", 10) == 0, "unnamed error: %s",
				      error_message());
		}
	}
}
END_TEST

START_TEST(missing_file_is_named)
{
	void *d;
	size_t n;
	ck_assert_int_eq(loader_read_file("/nonexistent/guest.elf", &d, &n), -ENOENT);
	ck_assert_str_eq(error_message(), "cannot open guest image /nonexistent/guest.elf: No such file or directory");
}
END_TEST

START_TEST(directory_is_not_an_image)
{
	void *d;
	size_t n;
	ck_assert_int_eq(loader_read_file("/tmp", &d, &n), -EINVAL);
	ck_assert_str_eq(error_message(), "guest image /tmp is not a regular file");
}
END_TEST

START_TEST(empty_file_is_not_an_image)
{
	char path[] = "/tmp/vmm-empty-XXXXXX";
	int fd = mkstemp(path);
	ck_assert_int_ge(fd, 0);
	close(fd);
	void *d;
	size_t n;
	void *before = d = (void *)&n; /* a failed read leaves *data as it was: callers free() it */
	ck_assert_int_eq(loader_read_file(path, &d, &n), -EINVAL);
	ck_assert_ptr_eq(d, before);
	ck_assert_ptr_nonnull(strstr(error_message(), "is empty"));
	unlink(path);
}
END_TEST

START_TEST(file_is_read_whole)
{
	const char *path = elf_image_write_temp(&img);
	void *d;
	size_t n;
	ck_assert_int_eq(loader_read_file(path, &d, &n), 0);
	ck_assert_uint_eq(n, img.size);
	ck_assert_mem_eq(d, img.bytes, n);
	free(d);
	unlink(path);
}
END_TEST

Suite *loader_suite(void)
{
	Suite *s = suite_create("loader");
	TCase *tc = tcase_create("pvh");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 60);
	HARNESS_ADD_TEST(tc, valid_image_is_copied_to_its_physical_address);
	HARNESS_ADD_TEST(tc, entry_note_of_eight_bytes_is_accepted);
	HARNESS_ADD_TEST(tc, truncated_file_is_not_elf);
	HARNESS_ADD_TEST(tc, bad_magic_is_not_elf);
	HARNESS_ADD_TEST(tc, elf32_is_rejected);
	HARNESS_ADD_TEST(tc, wrong_machine_is_rejected);
	HARNESS_ADD_TEST(tc, big_endian_is_rejected);
	HARNESS_ADD_TEST(tc, shared_object_is_rejected);
	HARNESS_ADD_TEST(tc, program_headers_past_end_of_file_are_rejected);
	HARNESS_ADD_TEST(tc, program_header_offset_overflow_is_rejected);
	HARNESS_ADD_TEST(tc, no_program_headers_is_rejected);
	HARNESS_ADD_TEST(tc, wrong_program_header_size_is_rejected);
	HARNESS_ADD_TEST(tc, segment_data_outside_file_is_rejected);
	HARNESS_ADD_TEST(tc, segment_file_size_over_memory_size_is_rejected);
	HARNESS_ADD_TEST(tc, segment_beyond_ram_is_rejected);
	HARNESS_ADD_TEST(tc, segment_whose_end_wraps_around_is_rejected);
	HARNESS_ADD_TEST(tc, huge_bss_beyond_ram_is_rejected);
	HARNESS_ADD_TEST(tc, segment_over_boot_information_is_rejected);
	HARNESS_ADD_TEST(tc, image_without_loadable_segment_is_rejected);
	HARNESS_ADD_TEST(tc, image_without_pvh_note_is_rejected);
	HARNESS_ADD_TEST(tc, note_from_another_owner_is_ignored);
	HARNESS_ADD_TEST(tc, note_with_odd_descriptor_size_is_rejected);
	HARNESS_ADD_TEST(tc, note_running_past_its_segment_is_rejected);
	HARNESS_ADD_TEST(tc, note_segment_outside_file_is_rejected);
	HARNESS_ADD_TEST(tc, entry_outside_loaded_code_is_rejected);
	HARNESS_ADD_TEST(tc, entry_in_bss_is_rejected);
	HARNESS_ADD_TEST(tc, random_corruption_never_crashes_the_loader);
	HARNESS_ADD_TEST(tc, missing_file_is_named);
	HARNESS_ADD_TEST(tc, directory_is_not_an_image);
	HARNESS_ADD_TEST(tc, empty_file_is_not_an_image);
	HARNESS_ADD_TEST(tc, file_is_read_whole);
	suite_add_tcase(s, tc);
	return s;
}

/* The file pager: a host file as a memory object, read-only or shared writable with
 * write-back through data_return (msync, page-out, termination). */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "harness.h"
#include "mmu/pager.h"
#include "mmu/vm_domain.h"
#include "mmu/vm_map.h"
#include "mmu/vm_object.h"
#include "vm_sandbox.h"
#include "pagers/file_pager.h"

#define PS VM_PAGE_SIZE
#define BASE 0x1000000u
#define FILE_BYTES (PS + PS / 2) /* one and a half pages */

static struct vm_sandbox *sb;
static int fd = -1;

static void setup(void)
{
	ck_assert_int_eq(vm_sandbox_create(BASE, 16 * PS, 0, &sb), 0);
	FILE *tmp = tmpfile();
	ck_assert_ptr_nonnull(tmp);
	fd = dup(fileno(tmp));
	fclose(tmp);
	uint8_t buf[FILE_BYTES];
	for (size_t i = 0; i < sizeof(buf); i++)
		buf[i] = (uint8_t)('A' + i % 26);
	ck_assert_int_eq(pwrite(fd, buf, sizeof(buf), 0), (ssize_t)sizeof(buf));
}

static void teardown(void)
{
	vm_sandbox_destroy(sb);
	close(fd);
}

/* Map the file (shared unless @copy) at BASE; the map holds the only object reference. */
static kern_return_t map_file(bool writable, bool copy, vm_prot_t max)
{
	struct pager *p;
	struct pager_args args = {.fd = fd, .writable = writable};
	ck_assert_int_eq(pager_open(&file_pager_ops, &args, &p), 0);
	struct vm_object *obj;
	ck_assert_int_eq(vm_object_create(sb->dom, p, 0, &obj), KERN_SUCCESS);
	pager_release(p);
	ck_assert_uint_eq(obj->size, 2 * PS);
	vm_addr_t a = BASE;
	kern_return_t kr = vm_map_enter(sb->map, &a, 2 * PS, false, obj, 0, copy, max & VM_PROT_DEFAULT, max,
					VM_INHERIT_SHARE);
	vm_object_deallocate(obj);
	return kr;
}

static char file_byte(off_t at)
{
	char c = 0;
	ck_assert_int_eq(pread(fd, &c, 1, at), 1);
	return c;
}

START_TEST(test_a_file_maps_its_bytes_and_reads_zero_past_its_end)
{
	ck_assert_int_eq(map_file(false, false, VM_PROT_READ), KERN_SUCCESS);
	char buf[8];
	ck_assert_int_eq(vm_sandbox_read(sb, BASE + 27, buf, 3), KERN_SUCCESS);
	ck_assert_mem_eq(buf, "BCD", 3);
	ck_assert_int_eq(vm_sandbox_read(sb, BASE + FILE_BYTES, buf, 8), KERN_SUCCESS);
	ck_assert_mem_eq(buf, "\0\0\0\0\0\0\0\0", 8);
	struct vm_statistics st;
	vm_domain_statistics(sb->dom, &st);
	ck_assert_uint_ge(st.pageins, 2);
}
END_TEST

START_TEST(test_a_read_only_file_cannot_be_shared_writable_but_can_be_copied)
{
	ck_assert_int_eq(map_file(false, false, VM_PROT_ALL), KERN_PROTECTION_FAILURE);
	ck_assert_int_eq(map_file(false, true, VM_PROT_ALL), KERN_SUCCESS);
	ck_assert_int_eq(vm_sandbox_write(sb, BASE, "private", 7), KERN_SUCCESS);
	char buf[7];
	ck_assert_int_eq(vm_sandbox_read(sb, BASE, buf, 7), KERN_SUCCESS);
	ck_assert_mem_eq(buf, "private", 7);
	ck_assert_int_eq(vm_map_deallocate(sb->map, BASE, 2 * PS), KERN_SUCCESS);
	ck_assert_int_eq(file_byte(0), 'A');
}
END_TEST

START_TEST(test_shared_writes_reach_the_file_on_msync)
{
	ck_assert_int_eq(map_file(true, false, VM_PROT_ALL), KERN_SUCCESS);
	ck_assert_int_eq(vm_sandbox_write(sb, BASE + 1, "zz", 2), KERN_SUCCESS);
	ck_assert_int_eq(file_byte(1), 'B');
	ck_assert_int_eq(vm_map_msync(sb->map, BASE, 2 * PS), KERN_SUCCESS);
	ck_assert_int_eq(file_byte(1), 'z');
	ck_assert_int_eq(file_byte(3), 'D');
	/* Written again after msync: write access came back through a fault, the bytes too. */
	ck_assert_int_eq(vm_sandbox_write(sb, BASE + 3, "y", 1), KERN_SUCCESS);
	ck_assert_int_eq(vm_map_msync(sb->map, BASE, PS), KERN_SUCCESS);
	ck_assert_int_eq(file_byte(3), 'y');
	ck_assert_int_eq(vm_map_msync(sb->map, BASE, 3 * PS), KERN_INVALID_ADDRESS);
}
END_TEST

START_TEST(test_shared_writes_reach_the_file_on_page_out_and_come_back)
{
	ck_assert_int_eq(map_file(true, false, VM_PROT_ALL), KERN_SUCCESS);
	ck_assert_int_eq(vm_sandbox_write(sb, BASE + 5, "page-out", 8), KERN_SUCCESS);
	vm_domain_set_limit(sb->dom, 1);
	uint8_t c;
	ck_assert_int_eq(vm_sandbox_read(sb, BASE + PS, &c, 1), KERN_SUCCESS); /* pushes page 0 out */
	ck_assert_int_eq(file_byte(5), 'p');
	char buf[8];
	ck_assert_int_eq(vm_sandbox_read(sb, BASE + 5, buf, 8), KERN_SUCCESS);
	ck_assert_mem_eq(buf, "page-out", 8);
}
END_TEST

START_TEST(test_shared_writes_reach_the_file_when_the_object_goes)
{
	ck_assert_int_eq(map_file(true, false, VM_PROT_ALL), KERN_SUCCESS);
	ck_assert_int_eq(vm_sandbox_write(sb, BASE + PS, "end", 3), KERN_SUCCESS);
	ck_assert_int_eq(vm_map_deallocate(sb->map, BASE, 2 * PS), KERN_SUCCESS);
	ck_assert_int_eq(file_byte(PS + 2), 'd');
}
END_TEST

START_TEST(test_write_back_never_grows_the_file)
{
	ck_assert_int_eq(map_file(true, false, VM_PROT_ALL), KERN_SUCCESS);
	ck_assert_int_eq(vm_sandbox_write(sb, BASE + 2 * PS - 1, "!", 1), KERN_SUCCESS);
	ck_assert_int_eq(vm_map_msync(sb->map, BASE, 2 * PS), KERN_SUCCESS);
	struct stat st;
	ck_assert_int_eq(fstat(fd, &st), 0);
	ck_assert_int_eq(st.st_size, FILE_BYTES);
}
END_TEST

START_TEST(test_open_checks_its_arguments_and_honours_the_offset)
{
	struct pager *p;
	struct pager_args bad = {.fd = -1};
	ck_assert_int_eq(pager_open(&file_pager_ops, &bad, &p), -EINVAL);
	struct pager_args unaligned = {.fd = fd, .offset = 100};
	ck_assert_int_eq(pager_open(&file_pager_ops, &unaligned, &p), -EINVAL);
	struct pager_args past = {.fd = fd, .offset = 4 * PS};
	ck_assert_int_eq(pager_open(&file_pager_ops, &past, &p), -EINVAL);
	struct pager_args tail = {.fd = fd, .offset = PS};
	ck_assert_int_eq(pager_open(&file_pager_ops, &tail, &p), 0);
	ck_assert_uint_eq(p->size, PS / 2);
	ck_assert_uint_eq(p->max_prot, VM_PROT_READ | VM_PROT_EXECUTE);
	struct vm_object *obj;
	ck_assert_int_eq(vm_object_create(sb->dom, p, 0, &obj), KERN_SUCCESS);
	char c;
	ck_assert_int_eq(vm_object_read(obj, 0, &c, 1), KERN_SUCCESS);
	ck_assert_int_eq(c, 'A' + PS % 26);
	struct vm_object_info info;
	vm_object_info(obj, &info);
	ck_assert_str_eq(info.pager_name, "file");
	ck_assert(!info.internal);
	vm_object_deallocate(obj);
	pager_release(p);
}
END_TEST

Suite *file_pager_suite(void)
{
	Suite *s = suite_create("file_pager");
	TCase *tc = tcase_create("files");
	tcase_add_checked_fixture(tc, setup, teardown);
	HARNESS_ADD_TEST(tc, test_a_file_maps_its_bytes_and_reads_zero_past_its_end);
	HARNESS_ADD_TEST(tc, test_a_read_only_file_cannot_be_shared_writable_but_can_be_copied);
	HARNESS_ADD_TEST(tc, test_shared_writes_reach_the_file_on_msync);
	HARNESS_ADD_TEST(tc, test_shared_writes_reach_the_file_on_page_out_and_come_back);
	HARNESS_ADD_TEST(tc, test_shared_writes_reach_the_file_when_the_object_goes);
	HARNESS_ADD_TEST(tc, test_write_back_never_grows_the_file);
	HARNESS_ADD_TEST(tc, test_open_checks_its_arguments_and_honours_the_offset);
	suite_add_tcase(s, tc);
	return s;
}

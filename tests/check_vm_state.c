/*
 * The VM state blob of a snapshot (vmm/vm_state.c): what is serialized parses back the
 * same, and a damaged or hostile blob is refused with one message, never read past.
 */
#include <stdlib.h>
#include <string.h>

#include "guest/abi.h"
#include "harness.h"
#include "vmm/error.h"
#include "vmm/vm_state.h"

/* A state as a two-vCPU VM with RAM below and above the hole would capture it. */
static void make_state(struct vm_state *s)
{
	memset(s, 0, sizeof(*s));
	s->nram = 2;
	s->ram[0] = (struct guest_ram_range){0, 3ull << 30};
	s->ram[1] = (struct guest_ram_range){4ull << 30, 1ull << 30};
	s->ram_size = 4ull << 30;
	s->nentries = 2;
	s->entry[0] = (struct vm_state_entry){0, 3ull << 30, 3, 7, 1, 0};
	s->entry[1] = (struct vm_state_entry){4ull << 30, 5ull << 30, 1, 7, 2, 0};
	s->ncpuid = 3;
	for (unsigned i = 0; i < s->ncpuid; i++)
		s->cpuid[i] = (struct kvm_cpuid_entry2){.function = i, .eax = 0x1000 + i, .ebx = 0x2000 + i};
	s->ncpus = 2;
	s->id_value = ABI_ID(3, 1);
	s->serial_lcr = 3;
	s->test_messages = 42;
	s->test_last = 7;
	s->vcpus = calloc(s->ncpus, sizeof(*s->vcpus));
	ck_assert_ptr_nonnull(s->vcpus);
	for (unsigned i = 0; i < s->ncpus; i++) {
		s->vcpus[i].regs.rip = 0x100000 + i;
		s->vcpus[i].regs.rsp = 0x200000 + i;
		s->vcpus[i].sregs.cr3 = 0x103000;
		s->vcpus[i].xsave_size = 512;
		s->vcpus[i].xsave[0] = (uint8_t)(0x7f + i);
		s->vcpus[i].nmsrs = 2;
		s->vcpus[i].msrs[0] = (struct kvm_msr_entry){.index = 0xc0000080, .data = 0x500};
		s->vcpus[i].msrs[1] = (struct kvm_msr_entry){.index = 0x10, .data = 12345 + i};
	}
}

START_TEST(serialized_state_parses_back_the_same)
{
	struct vm_state s, t;
	make_state(&s);
	uint8_t *blob;
	size_t len;
	ck_assert_int_eq(vm_state_serialize(&s, &blob, &len), 0);
	ck_assert_int_eq(vm_state_parse(blob, len, &t), 0);
	ck_assert_uint_eq(t.ram_size, s.ram_size);
	ck_assert_uint_eq(t.nram, 2);
	ck_assert_mem_eq(t.ram, s.ram, sizeof(s.ram[0]) * 2);
	ck_assert_uint_eq(t.nentries, 2);
	ck_assert_mem_eq(t.entry, s.entry, sizeof(s.entry[0]) * 2);
	ck_assert_uint_eq(t.ncpuid, 3);
	ck_assert_mem_eq(t.cpuid, s.cpuid, sizeof(s.cpuid[0]) * 3);
	ck_assert_uint_eq(t.ncpus, 2);
	ck_assert_uint_eq(t.id_value, s.id_value);
	ck_assert_uint_eq(t.test_messages, 42);
	for (unsigned i = 0; i < 2; i++) {
		ck_assert_uint_eq(t.vcpus[i].regs.rip, 0x100000 + i);
		ck_assert_uint_eq(t.vcpus[i].xsave_size, 512);
		ck_assert_uint_eq(t.vcpus[i].xsave[0], 0x7f + i);
		ck_assert_uint_eq(t.vcpus[i].nmsrs, 2);
		ck_assert_uint_eq(t.vcpus[i].msrs[1].data, 12345 + i);
	}
	free(blob);
	vm_state_free(&s);
	vm_state_free(&t);
}
END_TEST

START_TEST(every_truncation_is_refused)
{
	struct vm_state s, t;
	make_state(&s);
	uint8_t *blob;
	size_t len;
	ck_assert_int_eq(vm_state_serialize(&s, &blob, &len), 0);
	for (size_t n = 0; n < len; n++) {
		uint8_t *copy = malloc(n ? n : 1); /* exactly n bytes: ASan catches a read past them */
		memcpy(copy, blob, n);
		error_clear();
		ck_assert_msg(vm_state_parse(copy, n, &t) != 0, "a blob cut to %zu of %zu bytes parsed", n, len);
		ck_assert_msg(error_message()[0] != '\0', "no message at %zu bytes", n);
		vm_state_free(&t);
		free(copy);
	}
	free(blob);
	vm_state_free(&s);
}
END_TEST

/* Serialize @s after @damage changed it, and expect the parser to refuse it saying @why. */
static void expect_refused(void (*damage)(struct vm_state *), const char *why)
{
	struct vm_state s, t;
	make_state(&s);
	damage(&s);
	uint8_t *blob;
	size_t len;
	ck_assert_int_eq(vm_state_serialize(&s, &blob, &len), 0);
	error_clear();
	ck_assert_int_ne(vm_state_parse(blob, len, &t), 0);
	ck_assert_msg(strstr(error_message(), why), "'%s' does not say '%s'", error_message(), why);
	vm_state_free(&t);
	free(blob);
	vm_state_free(&s);
}

static void no_cpuid(struct vm_state *s) { s->ncpuid = 0; }
static void no_vcpu(struct vm_state *s) { s->ncpus = 0; }
static void ram_mismatch(struct vm_state *s) { s->ram_size += 4096; }
static void odd_ram_size(struct vm_state *s) { s->ram_size = 1; }
static void no_ram(struct vm_state *s) { s->nram = 0; }
static void many_xcrs(struct vm_state *s) { s->vcpus[0].xcrs.nr_xcrs = KVM_MAX_XCRS + 1; }

START_TEST(out_of_range_fields_are_named)
{
	expect_refused(no_cpuid, "CPUID entries");
	expect_refused(no_vcpu, "vCPUs");
	expect_refused(ram_mismatch, "add up to");
	expect_refused(odd_ram_size, "impossible RAM size");
	expect_refused(no_ram, "RAM ranges");
	expect_refused(many_xcrs, "XCR count");
}
END_TEST

/* vcpu_state.c's serialized vCPU header: magic, five part sizes, then these counts. */
#define VCPU_HEADER_NMSRS 14 /* uint16_t */
#define VCPU_HEADER_XSAVE 16 /* uint32_t */

START_TEST(oversized_vcpu_parts_are_refused_without_reading_them)
{
	/* Counts over what a vcpu_state holds, patched into the last vCPU's header: the
	 * parser must refuse them before copying anything (ASan would see the overrun). */
	struct vm_state s, t;
	make_state(&s);
	uint8_t *blob;
	size_t len;
	ck_assert_int_eq(vm_state_serialize(&s, &blob, &len), 0);
	size_t last = len - vcpu_state_size(&s.vcpus[1]);
	for (int k = 0; k < 2; k++) {
		uint8_t *copy = malloc(len);
		memcpy(copy, blob, len);
		if (k == 0) {
			uint32_t x = VCPU_STATE_XSAVE_MAX + 64;
			memcpy(copy + last + VCPU_HEADER_XSAVE, &x, sizeof(x));
		} else {
			uint16_t n = VCPU_STATE_MAX_MSRS + 1;
			memcpy(copy + last + VCPU_HEADER_NMSRS, &n, sizeof(n));
		}
		error_clear();
		ck_assert_int_ne(vm_state_parse(copy, len, &t), 0);
		ck_assert_msg(strstr(error_message(), "vCPU 1") && strstr(error_message(), "out-of-range sizes"), "%s",
			      error_message());
		vm_state_free(&t);
		free(copy);
	}
	free(blob);
	vm_state_free(&s);
}
END_TEST

START_TEST(trailing_bytes_and_other_formats_are_refused)
{
	struct vm_state s, t;
	make_state(&s);
	uint8_t *blob;
	size_t len;
	ck_assert_int_eq(vm_state_serialize(&s, &blob, &len), 0);
	uint8_t *longer = calloc(1, len + 8);
	memcpy(longer, blob, len);
	ck_assert_int_ne(vm_state_parse(longer, len + 8, &t), 0);
	ck_assert_ptr_nonnull(strstr(error_message(), "trailing"));
	vm_state_free(&t);
	blob[0] ^= 1; /* the magic: another format or version */
	ck_assert_int_ne(vm_state_parse(blob, len, &t), 0);
	ck_assert_ptr_nonnull(strstr(error_message(), "unknown format"));
	vm_state_free(&t);
	free(longer);
	free(blob);
	vm_state_free(&s);
}
END_TEST

Suite *vm_state_suite(void)
{
	Suite *s = suite_create("vm_state");
	TCase *tc = tcase_create("blob");
	HARNESS_ADD_TEST(tc, serialized_state_parses_back_the_same);
	HARNESS_ADD_TEST(tc, every_truncation_is_refused);
	HARNESS_ADD_TEST(tc, out_of_range_fields_are_named);
	HARNESS_ADD_TEST(tc, oversized_vcpu_parts_are_refused_without_reading_them);
	HARNESS_ADD_TEST(tc, trailing_bytes_and_other_formats_are_refused);
	suite_add_tcase(s, tc);
	return s;
}

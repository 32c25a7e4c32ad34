/*
 * Fuzz target: the VM state blob of a snapshot manifest (vm_state_parse, and through it
 * vcpu_state_read) on arbitrary bytes. A blob that parses must serialize back to exactly
 * the same bytes: the parser accepts nothing it would not write.
 *
 * An input starting with 0xff is not a blob but a recipe, so that well-formed blobs are
 * reached without the fuzzer finding every check first: a valid state shaped by the next
 * bytes (vCPUs, CPUID entries, map entries, XSAVE and MSR counts) is serialized, then the
 * rest of the input is (offset, value) pairs written over it.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "vmm/vm_state.h"

static uint8_t fuzz_byte(const uint8_t **p, const uint8_t *end)
{
	return *p < end ? *(*p)++ : 0;
}

/* A blob made by the recipe in [p, end), or NULL. */
static uint8_t *fuzz_recipe(const uint8_t *p, const uint8_t *end, size_t *len)
{
	struct vm_state s;
	memset(&s, 0, sizeof(s));
	s.nram = 1;
	s.ram[0] = (struct guest_ram_range){0, 64ull << 20};
	s.ram_size = 64ull << 20;
	s.ncpus = 1 + fuzz_byte(&p, end) % 4;
	s.ncpuid = 1 + fuzz_byte(&p, end) % 8;
	s.nentries = fuzz_byte(&p, end) % 4;
	for (unsigned i = 0; i < s.nentries; i++)
		s.entry[i] = (struct vm_state_entry){i << 12, (i + 1) << 12, 3, 7, 1, 0};
	s.vcpus = calloc(s.ncpus, sizeof(*s.vcpus));
	if (!s.vcpus)
		return NULL;
	for (unsigned i = 0; i < s.ncpus; i++) {
		s.vcpus[i].xsave_size = (fuzz_byte(&p, end) % 5) * 512;
		s.vcpus[i].nmsrs = fuzz_byte(&p, end) % 4;
		s.vcpus[i].xcrs.nr_xcrs = fuzz_byte(&p, end) % 2;
	}
	uint8_t *blob = NULL;
	if (vm_state_serialize(&s, &blob, len) == 0) {
		while (end - p >= 3) { /* (offset 16 bits, value) */
			size_t off = ((size_t)p[0] << 8 | p[1]) % *len;
			blob[off] = p[2];
			p += 3;
		}
	}
	vm_state_free(&s);
	return blob;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	uint8_t *blob;
	size_t len = size;
	if (size && data[0] == 0xff) {
		blob = fuzz_recipe(data + 1, data + size, &len);
	} else {
		/* A copy of exactly @size bytes: a read past them is ASan's to see. */
		blob = malloc(size ? size : 1);
		if (blob)
			memcpy(blob, data, size);
	}
	if (!blob)
		return 0;
	struct vm_state s;
	if (vm_state_parse(blob, len, &s) == 0) {
		uint8_t *again;
		size_t again_len;
		if (vm_state_serialize(&s, &again, &again_len) != 0 || again_len != len || memcmp(again, blob, len) != 0)
			abort();
		free(again);
	}
	vm_state_free(&s);
	free(blob);
	return 0;
}

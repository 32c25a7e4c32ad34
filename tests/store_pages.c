#include "store_pages.h"

#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "vmm/error.h"
#include "vmm/store/store.h"
#include "vmm/vm_state.h"

const uint8_t *store_pages_make(uint64_t pindex, uint64_t gen, int kind)
{
	static _Thread_local uint8_t page[STORE_PAGE];
	memset(page, 0, sizeof(page));
	if (kind == 1) {
		memset(page, 0x40 + (int)(pindex % 4), sizeof(page));
	} else if (kind == 2) {
		uint64_t v = pindex * 0x9e3779b97f4a7c15ull ^ gen;
		for (size_t i = 0; i < sizeof(page); i += 8) {
			v = v * 6364136223846793005ull + 1442695040888963407ull;
			memcpy(page + i, &v, 8);
		}
	}
	return page;
}

int store_pages_kind(uint64_t pindex)
{
	return pindex % 3 == 0 ? 0 : pindex % 3 == 1 ? 1 : 2;
}

int store_pages_try_write(struct store *s, const char *name, const char *parent, uint64_t npages, uint64_t gen,
			  uint64_t first, uint64_t step, struct store_write_stats *st)
{
	struct store_writer *w;
	const char state[] = "vcpu state";
	if (store_writer_begin(s, name, parent, npages, state, sizeof(state), &w) != 0)
		return -1;
	for (uint64_t p = first; p < npages; p += step)
		if (store_writer_add(w, p, store_pages_make(p, gen, store_pages_kind(p))) != 0) {
			store_writer_abort(w);
			return -1;
		}
	return store_writer_commit_stats(w, st) == 0 ? 0 : -1;
}

void store_pages_write(struct store *s, const char *name, const char *parent, uint64_t npages, uint64_t gen,
		       uint64_t first, uint64_t step, struct store_write_stats *st)
{
	ck_assert_msg(store_pages_try_write(s, name, parent, npages, gen, first, step, st) == 0, "%s", error_message());
}

void store_pages_expect(struct store_snapshot *snap, uint64_t p, uint64_t gen)
{
	const void *data;
	uint64_t hash;
	ck_assert_msg(store_snapshot_page(snap, p, &data, &hash) == 0, "%s", error_message());
	int kind = store_pages_kind(p);
	if (kind == 0) {
		ck_assert_ptr_null(data);
	} else {
		ck_assert_ptr_nonnull(data);
		ck_assert_msg(memcmp(data, store_pages_make(p, gen, kind), STORE_PAGE) == 0, "page %llu differs",
			      (unsigned long long)p);
	}
}

void store_pages_collect(void *arg, bool problem, const char *line)
{
	struct store_lines *l = arg;
	strncat(l->text, line, sizeof(l->text) - strlen(l->text) - 2);
	strcat(l->text, "\n");
	if (problem)
		l->problems++;
	else
		l->notes++;
}

long store_pages_verify(const char *where, struct store_lines *l)
{
	struct store *s;
	ck_assert_msg(store_open(where, false, &s) == 0, "%s", error_message());
	memset(l, 0, sizeof(*l));
	struct store_verify_stats st;
	long r = store_verify(s, store_pages_collect, l, &st);
	store_close(s);
	return r;
}

void store_pages_write_guest(const char *dir, const char *name, uint64_t pages)
{
	struct vm_state st;
	memset(&st, 0, sizeof(st));
	st.ram_size = pages * STORE_PAGE;
	st.nram = 1;
	st.ram[0] = (struct guest_ram_range){0, st.ram_size};
	st.ncpus = 1;
	st.ncpuid = 1;
	st.cpuid[0] = (struct kvm_cpuid_entry2){.function = 0, .eax = 1};
	st.nentries = 1;
	st.entry[0] = (struct vm_state_entry){0, st.ram_size, 7, 7, 1, 0};
	st.vcpus = calloc(1, sizeof(*st.vcpus));
	ck_assert_ptr_nonnull(st.vcpus);
	uint8_t *blob;
	size_t len;
	ck_assert_int_eq(vm_state_serialize(&st, &blob, &len), 0);
	vm_state_free(&st);
	struct store *s;
	ck_assert_int_eq(store_open(dir, true, &s), 0);
	struct store_writer *w;
	ck_assert_int_eq(store_writer_begin(s, name, NULL, pages, blob, len, &w), 0);
	for (uint64_t p = 0; p < pages; p++)
		ck_assert_int_eq(store_writer_add(w, p, store_pages_make(p, 1, store_pages_kind(p))), 0);
	ck_assert_int_eq(store_writer_commit(w), 0);
	store_close(s);
	free(blob);
}

/*
 * libFuzzer target for the map operations: the input is a program of Mach calls with
 * arbitrary arguments (unaligned, overflowing, out of range, unknown bits) on a small
 * sandbox map, a forked child and a snapshot, under a resident limit with swap: vm_map of
 * anonymous objects and of an external pager's object (the tests' fake memory manager on a
 * socketpair, keeping what page-out returns to it), vm_copy, and the rest. Every result
 * must be a known kern_return_t and the core's invariants (vm_map_check) must hold after
 * every call; sanitizers catch the rest.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "mmu/pmap_flat.h"
#include "mmu/vm_domain.h"
#include "mmu/vm_fault.h"
#include "mmu/vm_map.h"
#include "mmu/vm_object.h"
#include "mmu/vm_pageout.h"
#include "pagers/external_pager.h"
#include "tests/fake_pager.h"
#include "tests/vm_sandbox.h"

#define PS VM_PAGE_SIZE
#define BASE 0x40000u
#define PAGES 24u
#define EXT_PAGES 8u /* the external pager's object */

struct input {
	const uint8_t *p;
	size_t n;
};

static uint8_t byte(struct input *in)
{
	if (!in->n)
		return 0;
	in->n--;
	return *in->p++;
}

static uint64_t u64(struct input *in)
{
	uint64_t v = 0;
	for (int i = 0; i < 8; i++)
		v = v << 8 | byte(in);
	return v;
}

/* An address: mostly a page of the map (or just outside), sometimes any 64-bit value. */
static vm_addr_t addr(struct input *in)
{
	uint8_t sel = byte(in);
	if (sel < 16)
		return u64(in);
	vm_addr_t a = BASE + (vm_addr_t)(byte(in) % (PAGES + 4)) * PS;
	return sel < 32 ? a + byte(in) : a - (sel < 40 ? PS : 0);
}

static vm_size_t size(struct input *in)
{
	uint8_t sel = byte(in);
	if (sel < 16)
		return u64(in);
	return (vm_size_t)(byte(in) % 9) * PS + (sel < 32 ? byte(in) : 0);
}

static void check_kr(kern_return_t kr)
{
	switch (kr) {
	case KERN_SUCCESS:
	case KERN_INVALID_ADDRESS:
	case KERN_PROTECTION_FAILURE:
	case KERN_NO_SPACE:
	case KERN_INVALID_ARGUMENT:
	case KERN_RESOURCE_SHORTAGE:
	case KERN_MEMORY_FAILURE:
	case KERN_MEMORY_ERROR:
		return;
	default:
		abort();
	}
}

struct world {
	struct vm_sandbox *sb;
	struct vm_map *child;
	struct pmap_flat *cflat;
	struct vm_map_copy *snap;
	struct fake_pager ext;      /* the external pager */
	struct pager *ext_pager;
	struct vm_object *ext_obj;  /* its object, one reference */
};

static struct vm_map *pick(struct world *w, struct input *in)
{
	return (byte(in) & 1) && w->child ? w->child : w->sb->map;
}

static void step(struct world *w, struct input *in)
{
	struct vm_map *m = pick(w, in);
	uint8_t buf[3 * PS];
	vm_addr_t a;
	vm_size_t n;
	kern_return_t kr = KERN_SUCCESS;
	switch (byte(in) % 20) {
	case 0:
		a = addr(in);
		kr = vm_map_allocate(m, &a, size(in), byte(in) & 1);
		break;
	case 1:
		a = addr(in);
		kr = vm_map_deallocate(m, a, size(in));
		break;
	case 2:
		a = addr(in);
		n = size(in);
		kr = vm_map_protect(m, a, n, byte(in) & 1, byte(in) % 9);
		break;
	case 3:
		a = addr(in);
		n = size(in);
		kr = vm_map_inherit(m, a, n, byte(in) % 4);
		break;
	case 4:
		a = addr(in);
		n = size(in);
		kr = vm_map_set_attr(m, a, n, (enum vm_attr_kind)(byte(in) % 4), byte(in));
		break;
	case 5: {
		/* A new anonymous object, or the external pager's (mapped again and again). */
		struct vm_object *obj = w->ext_obj;
		vm_size_t osize = (vm_size_t)(byte(in) % 7) * PS;
		if (osize)
			kr = vm_object_allocate(w->sb->dom, osize, &obj);
		else
			vm_object_reference(obj);
		check_kr(kr);
		if (kr != KERN_SUCCESS)
			break;
		a = addr(in);
		n = size(in);
		vm_offset_t off = (vm_offset_t)(byte(in) % 4) * PS + (byte(in) < 16 ? 1 : 0);
		uint8_t flags = byte(in);
		kr = vm_map_enter(m, &a, n, flags & 1, obj, off, flags & 2, byte(in) % 9, byte(in) % 9, byte(in) % 4);
		vm_object_deallocate(obj);
		break;
	}
	case 6:
		a = addr(in);
		n = size(in);
		kr = vm_map_copy(m, a, n, addr(in));
		break;
	case 7:
		a = addr(in);
		n = size(in) % sizeof(buf);
		memset(buf, byte(in), n);
		kr = vm_map_write(m, a, buf, n);
		break;
	case 8:
		a = addr(in);
		kr = vm_map_read(m, a, buf, size(in) % sizeof(buf));
		break;
	case 9:
		a = addr(in);
		kr = vm_fault(m, a, byte(in) % 9, NULL);
		break;
	case 10:
		if (w->child) {
			vm_map_destroy(w->child);
			pmap_flat_destroy(w->cflat);
			w->child = NULL;
		} else if (pmap_flat_create(BASE, PAGES * PS, &w->cflat) == 0) {
			kr = vm_map_fork(w->sb->map, &pmap_flat_ops, w->cflat, &w->child);
			if (kr != KERN_SUCCESS) {
				pmap_flat_destroy(w->cflat);
				w->child = NULL;
			}
		}
		break;
	case 11:
		vm_map_copy_discard(w->snap);
		w->snap = NULL;
		a = addr(in);
		kr = vm_map_copyin(m, a, size(in), &w->snap);
		if (kr != KERN_SUCCESS)
			w->snap = NULL;
		break;
	case 12:
		if (w->snap)
			kr = vm_map_copy_overwrite(m, addr(in), w->snap);
		break;
	case 13:
		a = addr(in);
		if (w->snap)
			kr = vm_map_copyout(m, &a, byte(in) & 1, w->snap);
		break;
	case 14:
		a = addr(in);
		kr = vm_map_collapse(m, a, size(in));
		break;
	case 15:
		a = addr(in);
		kr = vm_map_msync(m, a, size(in));
		break;
	case 16:
		vm_domain_set_limit(w->sb->dom, byte(in) % 12);
		break;
	case 17:
		vm_domain_begin(w->sb->dom);
		vm_pageout_scan(w->sb->dom, byte(in) % 8);
		break;
	case 18: {
		struct pmap_flat *f = m == w->child ? w->cflat : w->sb->flat;
		a = addr(in);
		n = size(in) % sizeof(buf);
		if (a >= BASE && a + n <= BASE + PAGES * PS && a + n >= a)
			kr = pmap_flat_access(f, a, buf, n, (byte(in) & 1) ? VM_PROT_WRITE : VM_PROT_READ,
					      vm_fault_handler, m);
		break;
	}
	case 19: {
		struct vm_region_info r;
		a = addr(in);
		kr = vm_map_region(m, &a, &r);
		break;
	}
	}
	check_kr(kr);
	vm_map_check(w->sb->map);
	if (w->child)
		vm_map_check(w->child);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t len)
{
	struct world w = {0};
	if (vm_sandbox_create(BASE, PAGES * PS, VM_SANDBOX_SWAP, &w.sb))
		return 0;
	/* A socketpair's fake pager always answers: failing here is the harness's fault. */
	if (fake_pager_serve(&w.ext, FAKE_PAGER_KEEP, EXT_PAGES * PS) != 0)
		abort();
	struct pager_args args = {.fd = w.ext.fd, .writable = true};
	if (pager_open(&external_pager_ops, &args, &w.ext_pager) != 0 ||
	    vm_object_create(w.sb->dom, w.ext_pager, 0, &w.ext_obj) != KERN_SUCCESS)
		abort();
	struct input in = {data, len};
	for (int steps = 0; in.n > 0 && steps < 256; steps++)
		step(&w, &in);
	vm_map_copy_discard(w.snap);
	if (w.child) {
		vm_map_destroy(w.child);
		pmap_flat_destroy(w.cflat);
	}
	vm_object_deallocate(w.ext_obj);
	vm_sandbox_destroy(w.sb);
	pager_release(w.ext_pager);
	fake_pager_stop(&w.ext);
	return 0;
}

/*
 * Differential test of the whole mmu core against a flat reference model.
 *
 * Random sequences of allocate / deallocate / guest read and write (through a flat pmap and
 * vm_fault) / vm_read / vm_write / vm_copy / protect / inherit / set attributes / fork /
 * destroy / snapshot (copyin: freezes objects behind shadows) / snapshot overwrite and
 * copyout / release (collapse) / explicit collapse / page-out / file mappings and msync run
 * on real maps and on the model: per map, an array of model pages (shared pages are the
 * same model page, copied ones are copied at fork), protections and inheritance; per
 * snapshot, plain bytes. Every result code and every byte read must agree; at intervals
 * the whole state is compared (bytes through vm_read and through the pmap, the layout
 * through vm_region) and the core's invariants asserted.
 *
 * VMM_DIFF_SEED=<n> replays a run; the seed and operation number are printed on failure
 * (crashes included). VMM_DIFF_OPS=<n> makes each of the four runs n operations long
 * instead of its short default: `make soak` sets it for 10^8 operations in all.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fake_pager.h"
#include "harness.h"
#include "mmu/pager.h"
#include "mmu/pmap_flat.h"
#include "mmu/vm_domain.h"
#include "mmu/vm_fault.h"
#include "mmu/vm_map.h"
#include "mmu/vm_object.h"
#include "mmu/vm_pageout.h"
#include "pagers/default_pager.h"
#include "pagers/external_pager.h"
#include "pagers/file_pager.h"

#define D_PAGES 40u
#define D_BASE 0x100000u
#define D_MAPS 4
#define D_SNAPS 4
#define D_FILES 2      /* files (the file pager) */
#define D_EXTS 2       /* external pagers' objects */
#define D_FILE_PAGES 4u
#define D_CHECK_EVERY 256
#define PS VM_PAGE_SIZE

struct mpage {
	int refs;
	uint8_t b[VM_PAGE_SIZE];
};

struct mview {
	struct vm_map *map;      /* NULL: slot free */
	struct pmap_flat *flat;
	struct mpage *pg[D_PAGES]; /* NULL: unmapped */
	uint8_t prot[D_PAGES], maxp[D_PAGES], inh[D_PAGES];
};

struct msnap {
	struct vm_map_copy *copy; /* NULL: slot free */
	unsigned pages;
	uint8_t *bytes;
};

/* A memory object with a pager of its own: a file, or an external pager's object. */
struct mfile {
	int fd;                   /* the file; -1 for an external pager */
	struct fake_pager *ext;   /* the external pager, or NULL */
	struct pager *pager;
	struct vm_object *obj;
	struct mpage *pg[D_FILE_PAGES];
};

struct diff_config {
	unsigned ops;
	bool swap;          /* default pager with a swap file */
	uint64_t limit;     /* resident limit at start (0 = none) */
	bool nomod;         /* pmaps without modified bits */
	bool files;         /* file mappings */
	bool external;      /* mappings of external pagers' objects */
};

struct diff {
	struct diff_config cfg;
	struct vm_domain *dom;
	struct mview v[D_MAPS];
	struct msnap s[D_SNAPS];
	struct mfile f[D_FILES + D_EXTS];
	unsigned nf;        /* of f in use: the files, then the external pagers' objects */
	uint64_t rng;
	int swapfd;
};

static uint64_t diff_seed, diff_base;
static long diff_op;
static const char *diff_what = "setup";
static char diff_replay[96]; /* the environment that replays this run, set by diff_run */

static void diff_crash(int sig)
{
	char msg[200];
	int n = snprintf(msg, sizeof(msg), "vm_differential: signal %d at op %ld (%s), replay with %s\n", sig, diff_op,
			 diff_what, diff_replay);
	if (write(2, msg, (size_t)n) < 0)
		_exit(1);
	signal(sig, SIG_DFL);
	raise(sig);
}

#define DCHECK(cond, ...)                                                                         \
	do {                                                                                      \
		if (!(cond)) {                                                                    \
			char m_[256];                                                             \
			snprintf(m_, sizeof(m_), __VA_ARGS__);                                    \
			ck_abort_msg("%s (op %ld, %s; replay with %s)", m_, diff_op, diff_what,   \
				     diff_replay);                                                \
		}                                                                                 \
	} while (0)

#define DKR(got, want)                                                                               \
	DCHECK((got) == (want), "got %s, model says %s", kern_return_name(got), kern_return_name(want))

static uint64_t rnd(struct diff *d)
{
	/* xorshift64* */
	d->rng ^= d->rng >> 12;
	d->rng ^= d->rng << 25;
	d->rng ^= d->rng >> 27;
	return d->rng * 0x2545F4914F6CDD1Dull;
}

static unsigned rn(struct diff *d, unsigned n)
{
	return (unsigned)(rnd(d) % n);
}

static vm_addr_t pa(unsigned page)
{
	return D_BASE + (vm_addr_t)page * PS;
}

/* ---- model pages -------------------------------------------------------------------------- */

static struct mpage *mp_new(const uint8_t *bytes)
{
	struct mpage *p = malloc(sizeof(*p));
	ck_assert_ptr_nonnull(p);
	p->refs = 1;
	if (bytes)
		memcpy(p->b, bytes, PS);
	else
		memset(p->b, 0, PS);
	return p;
}

static void mp_put(struct mpage *p)
{
	if (p && --p->refs == 0)
		free(p);
}

static void mv_unmap(struct mview *v, unsigned i)
{
	mp_put(v->pg[i]);
	v->pg[i] = NULL;
}

static void mv_map(struct mview *v, unsigned i, struct mpage *p, vm_prot_t prot, vm_prot_t maxp, vm_inherit_t inh)
{
	mv_unmap(v, i);
	v->pg[i] = p;
	v->prot[i] = (uint8_t)prot;
	v->maxp[i] = (uint8_t)maxp;
	v->inh[i] = (uint8_t)inh;
}

/* The model's verdict on [first, first+n) pages for @access (0: just mapped). */
static kern_return_t mv_check(const struct mview *v, unsigned first, unsigned n, vm_prot_t access)
{
	if (first + n > D_PAGES)
		return KERN_INVALID_ADDRESS;
	for (unsigned i = first; i < first + n; i++) {
		if (!v->pg[i])
			return KERN_INVALID_ADDRESS;
		if ((v->prot[i] & access) != access)
			return KERN_PROTECTION_FAILURE;
	}
	return KERN_SUCCESS;
}

/* First fit of @n free pages, or -1. */
static int mv_first_fit(const struct mview *v, unsigned n)
{
	for (unsigned i = 0; i + n <= D_PAGES; i++) {
		unsigned k = 0;
		while (k < n && !v->pg[i + k])
			k++;
		if (k == n)
			return (int)i;
		i += k;
	}
	return -1;
}

static struct mview *pick_map(struct diff *d)
{
	for (;;) {
		struct mview *v = &d->v[rn(d, D_MAPS)];
		if (v->map)
			return v;
	}
}

static void random_range(struct diff *d, unsigned *first, unsigned *n)
{
	*first = rn(d, D_PAGES + 2);
	*n = 1 + rn(d, 8);
}

/* ---- operations ----------------------------------------------------------------------------- */

static void op_allocate(struct diff *d)
{
	struct mview *v = pick_map(d);
	unsigned n = 1 + rn(d, 6);
	if (rn(d, 2)) {
		diff_what = "allocate anywhere";
		vm_addr_t addr = 0;
		kern_return_t kr = vm_map_allocate(v->map, &addr, n * PS, true);
		int at = mv_first_fit(v, n);
		DKR(kr, at < 0 ? KERN_NO_SPACE : KERN_SUCCESS);
		if (at < 0)
			return;
		DCHECK(addr == pa((unsigned)at), "allocated at %#llx, model %#llx", (unsigned long long)addr,
		       (unsigned long long)pa((unsigned)at));
		for (unsigned i = 0; i < n; i++)
			mv_map(v, (unsigned)at + i, mp_new(NULL), VM_PROT_DEFAULT, VM_PROT_ALL, VM_INHERIT_COPY);
		return;
	}
	diff_what = "allocate fixed";
	unsigned first;
	random_range(d, &first, &n);
	bool unaligned = rn(d, 16) == 0;
	vm_addr_t addr = pa(first) + (unaligned ? 8 : 0);
	kern_return_t kr = vm_map_allocate(v->map, &addr, n * PS, false);
	kern_return_t want = KERN_SUCCESS;
	if (unaligned)
		want = KERN_INVALID_ARGUMENT;
	else if (first + n > D_PAGES)
		want = KERN_INVALID_ADDRESS;
	else
		for (unsigned i = first; i < first + n; i++)
			if (v->pg[i])
				want = KERN_NO_SPACE;
	DKR(kr, want);
	if (want == KERN_SUCCESS)
		for (unsigned i = first; i < first + n; i++)
			mv_map(v, i, mp_new(NULL), VM_PROT_DEFAULT, VM_PROT_ALL, VM_INHERIT_COPY);
}

static void op_deallocate(struct diff *d)
{
	diff_what = "deallocate";
	struct mview *v = pick_map(d);
	unsigned first, n;
	random_range(d, &first, &n);
	kern_return_t kr = vm_map_deallocate(v->map, pa(first), n * PS);
	DKR(kr, first + n > D_PAGES ? KERN_INVALID_ADDRESS : KERN_SUCCESS);
	if (kr == KERN_SUCCESS)
		for (unsigned i = first; i < first + n; i++)
			mv_unmap(v, i);
}

/* A random byte range of at most @max_pages pages' length starting in a random page of the
 * map range (ending inside it); @buf gets random bytes. Returns the first page. */
static unsigned random_span(struct diff *d, unsigned max_pages, vm_size_t *off, vm_size_t *len, uint8_t *buf)
{
	unsigned first = rn(d, D_PAGES);
	*off = rn(d, PS);
	*len = 1 + rn(d, max_pages * PS);
	if (pa(first) + *off + *len > pa(D_PAGES))
		*len = pa(D_PAGES) - pa(first) - *off;
	for (vm_size_t i = 0; i < *len; i++)
		buf[i] = (uint8_t)rnd(d);
	return first;
}

/* The model's side of a transfer of @len bytes at @off in page @first: page by page, write
 * @buf into the model (VM_PROT_WRITE) or compare it with the model, stopping at the first
 * page without @access. Returns the model's result. */
static kern_return_t mv_transfer(struct mview *v, unsigned first, vm_size_t off, vm_size_t len, const uint8_t *buf,
				 vm_prot_t access)
{
	for (vm_size_t done = 0, at = off; done < len;) {
		unsigned i = first + (unsigned)(at / PS);
		kern_return_t want = mv_check(v, i, 1, access);
		if (want != KERN_SUCCESS)
			return want;
		vm_size_t in = at % PS, n = PS - in;
		if (n > len - done)
			n = len - done;
		if (access & VM_PROT_WRITE)
			memcpy(v->pg[i]->b + in, buf + done, n);
		else
			DCHECK(memcmp(v->pg[i]->b + in, buf + done, n) == 0, "%s of page %u differs", diff_what, i);
		done += n;
		at += n;
	}
	return KERN_SUCCESS;
}

/* Guest access through the flat pmap, faulting as the hardware would: page by page, so the
 * pages before a failing one are done. */
static void op_guest(struct diff *d, bool write)
{
	diff_what = write ? "guest write" : "guest read";
	struct mview *v = pick_map(d);
	uint8_t buf[3 * PS];
	vm_size_t off, len;
	unsigned first = random_span(d, 2, &off, &len, buf);
	vm_prot_t access = write ? VM_PROT_WRITE : VM_PROT_READ;
	kern_return_t kr = pmap_flat_access(v->flat, pa(first) + off, buf, len, access, vm_fault_handler, v->map);
	DKR(kr, mv_transfer(v, first, off, len, buf, access));
}

/* vm_read / vm_write: all or nothing. */
static void op_api_rw(struct diff *d, bool write)
{
	diff_what = write ? "vm_write" : "vm_read";
	struct mview *v = pick_map(d);
	uint8_t buf[4 * PS];
	vm_size_t off, len;
	unsigned first = random_span(d, 3, &off, &len, buf);
	vm_prot_t access = write ? VM_PROT_WRITE : VM_PROT_READ;
	kern_return_t want = mv_check(v, first, (unsigned)((off + len + PS - 1) / PS), access);
	kern_return_t kr = write ? vm_map_write(v->map, pa(first) + off, buf, len)
				 : vm_map_read(v->map, pa(first) + off, buf, len);
	DKR(kr, want);
	if (kr == KERN_SUCCESS)
		mv_transfer(v, first, off, len, buf, access);
}

/* Write @n pages of @bytes into the model pages [first, first+n) of @v (in place: sharers see it). */
static void mv_write_pages(struct mview *v, unsigned first, unsigned n, const uint8_t *bytes)
{
	for (unsigned i = 0; i < n; i++)
		memcpy(v->pg[first + i]->b, bytes + (size_t)i * PS, PS);
}

static void op_copy(struct diff *d)
{
	diff_what = "vm_copy";
	struct mview *v = pick_map(d);
	unsigned n = 1 + rn(d, 6), src = rn(d, D_PAGES), dst = rn(d, D_PAGES);
	kern_return_t want = src + n > D_PAGES || dst + n > D_PAGES ? KERN_INVALID_ADDRESS : KERN_SUCCESS;
	if (want == KERN_SUCCESS)
		want = mv_check(v, src, n, VM_PROT_READ);
	if (want == KERN_SUCCESS)
		want = mv_check(v, dst, n, VM_PROT_WRITE);
	kern_return_t kr = vm_map_copy(v->map, pa(src), n * PS, pa(dst));
	DKR(kr, want);
	if (kr != KERN_SUCCESS)
		return;
	uint8_t *tmp = malloc((size_t)n * PS);
	for (unsigned i = 0; i < n; i++)
		memcpy(tmp + (size_t)i * PS, v->pg[src + i]->b, PS);
	mv_write_pages(v, dst, n, tmp);
	free(tmp);
}

static void op_protect(struct diff *d)
{
	diff_what = "protect";
	struct mview *v = pick_map(d);
	unsigned first, n;
	random_range(d, &first, &n);
	bool set_max = rn(d, 4) == 0;
	/* Mostly useful protections; sometimes anything. */
	static const vm_prot_t common[] = {VM_PROT_DEFAULT, VM_PROT_DEFAULT, VM_PROT_READ, VM_PROT_ALL};
	vm_prot_t prot = rn(d, 3) ? common[rn(d, 4)] : rn(d, 8);
	kern_return_t want = mv_check(v, first, n, VM_PROT_NONE);
	if (want == KERN_SUCCESS)
		for (unsigned i = first; i < first + n; i++)
			if ((prot & v->maxp[i]) != prot)
				want = KERN_PROTECTION_FAILURE;
	kern_return_t kr = vm_map_protect(v->map, pa(first), n * PS, set_max, prot);
	DKR(kr, want);
	if (kr != KERN_SUCCESS)
		return;
	for (unsigned i = first; i < first + n; i++) {
		if (set_max) {
			v->maxp[i] = (uint8_t)prot;
			v->prot[i] &= (uint8_t)prot;
		} else {
			v->prot[i] = (uint8_t)prot;
		}
	}
}

static void op_inherit(struct diff *d)
{
	diff_what = "inherit";
	struct mview *v = pick_map(d);
	unsigned first, n;
	random_range(d, &first, &n);
	vm_inherit_t inh = rn(d, 20) ? rn(d, 3) : 7;
	kern_return_t want = inh == 7 ? KERN_INVALID_ARGUMENT : mv_check(v, first, n, VM_PROT_NONE);
	kern_return_t kr = vm_map_inherit(v->map, pa(first), n * PS, inh);
	DKR(kr, want);
	if (kr == KERN_SUCCESS)
		for (unsigned i = first; i < first + n; i++)
			v->inh[i] = (uint8_t)inh;
}

static void op_attr(struct diff *d)
{
	diff_what = "set attribute";
	struct mview *v = pick_map(d);
	unsigned first, n;
	random_range(d, &first, &n);
	kern_return_t kr;
	unsigned which = rn(d, 3);
	if (which == 0)
		kr = vm_map_set_attr(v->map, pa(first), n * PS, VM_ATTR_CLUSTER, 1u << rn(d, 5));
	else if (which == 1)
		kr = vm_map_set_attr(v->map, pa(first), n * PS, VM_ATTR_COPY_STRATEGY, rn(d, 2));
	else
		kr = vm_map_set_attr(v->map, pa(first), n * PS, VM_ATTR_COPY_ON_READ, rn(d, 2));
	DKR(kr, mv_check(v, first, n, VM_PROT_NONE));
}

static struct pmap_flat *new_flat(struct diff *d)
{
	struct pmap_flat *flat;
	ck_assert_int_eq(pmap_flat_create(D_BASE, D_PAGES * PS, &flat), 0);
	(void)d;
	return flat;
}

static const struct pmap_ops *flat_ops(const struct diff *d)
{
	return d->cfg.nomod ? &pmap_flat_ops_nomod : &pmap_flat_ops;
}

static void op_fork(struct diff *d)
{
	diff_what = "fork";
	struct mview *c = NULL;
	for (int i = 0; i < D_MAPS; i++)
		if (!d->v[i].map)
			c = &d->v[i];
	if (!c)
		return;
	struct mview *p = pick_map(d);
	c->flat = new_flat(d);
	kern_return_t kr = vm_map_fork(p->map, flat_ops(d), c->flat, &c->map);
	DKR(kr, KERN_SUCCESS);
	for (unsigned i = 0; i < D_PAGES; i++) {
		if (!p->pg[i] || p->inh[i] == VM_INHERIT_NONE)
			continue;
		struct mpage *mp;
		if (p->inh[i] == VM_INHERIT_SHARE) {
			mp = p->pg[i];
			mp->refs++;
		} else {
			mp = mp_new(p->pg[i]->b);
		}
		mv_map(c, i, mp, p->prot[i], p->maxp[i], p->inh[i]);
	}
}

static void mv_destroy(struct mview *v)
{
	vm_map_destroy(v->map);
	pmap_flat_destroy(v->flat);
	for (unsigned i = 0; i < D_PAGES; i++)
		mv_unmap(v, i);
	v->map = NULL;
	v->flat = NULL;
}

static void op_destroy(struct diff *d)
{
	diff_what = "destroy map";
	int live = 0;
	for (int i = 0; i < D_MAPS; i++)
		live += d->v[i].map != NULL;
	if (live > 1)
		mv_destroy(pick_map(d));
}

static struct msnap *pick_snap(struct diff *d, bool free_slot)
{
	struct msnap *s = &d->s[rn(d, D_SNAPS)];
	return (s->copy == NULL) == free_slot ? s : NULL;
}

static void op_snapshot(struct diff *d)
{
	diff_what = "snapshot (copyin)";
	struct msnap *s = pick_snap(d, true);
	if (!s)
		return;
	struct mview *v = pick_map(d);
	unsigned first, n;
	random_range(d, &first, &n);
	kern_return_t kr = vm_map_copyin(v->map, pa(first), n * PS, &s->copy);
	DKR(kr, mv_check(v, first, n, VM_PROT_READ));
	if (kr != KERN_SUCCESS) {
		s->copy = NULL;
		return;
	}
	s->pages = n;
	s->bytes = malloc((size_t)n * PS);
	for (unsigned i = 0; i < n; i++)
		memcpy(s->bytes + (size_t)i * PS, v->pg[first + i]->b, PS);
}

static void snap_verify(struct msnap *s)
{
	uint8_t *buf = malloc((size_t)s->pages * PS);
	DKR(vm_map_copy_read(s->copy, 0, buf, (vm_size_t)s->pages * PS), KERN_SUCCESS);
	for (unsigned i = 0; i < s->pages; i++)
		DCHECK(memcmp(buf + (size_t)i * PS, s->bytes + (size_t)i * PS, PS) == 0, "snapshot page %u differs", i);
	free(buf);
}

static void op_snap_verify(struct diff *d)
{
	diff_what = "snapshot read";
	struct msnap *s = pick_snap(d, false);
	if (s)
		snap_verify(s);
}

struct snap_pages {
	const struct msnap *s;
	uint8_t *seen;
	long last;
};

static int snap_page_seen(void *arg, vm_offset_t offset, const void *bytes)
{
	struct snap_pages *sp = arg;
	unsigned i = (unsigned)(offset / PS);
	DCHECK(offset % PS == 0 && i < sp->s->pages, "page at offset %llu outside the snapshot", (unsigned long long)offset);
	DCHECK((long)i > sp->last, "page %u given out of order or twice", i);
	DCHECK(memcmp(bytes, sp->s->bytes + (size_t)i * PS, PS) == 0, "enumerated page %u differs", i);
	sp->last = i;
	sp->seen[i] = 1;
	return 0;
}

/* Every page of a snapshot that is not zero is enumerated, once, in order, with its bytes. */
static void op_snap_pages(struct diff *d)
{
	diff_what = "snapshot pages (vm_map_copy_pages)";
	struct msnap *s = pick_snap(d, false);
	if (!s)
		return;
	static const uint8_t zero[PS];
	struct snap_pages sp = {.s = s, .seen = calloc(s->pages, 1), .last = -1};
	DKR(vm_map_copy_pages(s->copy, NULL, snap_page_seen, &sp), KERN_SUCCESS);
	for (unsigned i = 0; i < s->pages; i++)
		DCHECK(sp.seen[i] || memcmp(s->bytes + (size_t)i * PS, zero, PS) == 0, "page %u with data not enumerated", i);
	free(sp.seen);
}

static void snap_release(struct msnap *s)
{
	vm_map_copy_discard(s->copy);
	free(s->bytes);
	s->copy = NULL;
	s->bytes = NULL;
}

static void op_snap_release(struct diff *d)
{
	diff_what = "snapshot release";
	struct msnap *s = pick_snap(d, false);
	if (s)
		snap_release(s);
}

static void op_snap_restore(struct diff *d)
{
	struct msnap *s = pick_snap(d, false);
	if (!s)
		return;
	struct mview *v = pick_map(d);
	if (rn(d, 2)) {
		diff_what = "snapshot overwrite";
		unsigned dst = rn(d, D_PAGES);
		kern_return_t want = mv_check(v, dst, s->pages, VM_PROT_WRITE);
		DKR(vm_map_copy_overwrite(v->map, pa(dst), s->copy), want);
		if (want == KERN_SUCCESS)
			mv_write_pages(v, dst, s->pages, s->bytes);
		return;
	}
	diff_what = "snapshot copyout";
	vm_addr_t addr = 0;
	int at = mv_first_fit(v, s->pages);
	DKR(vm_map_copyout(v->map, &addr, true, s->copy), at < 0 ? KERN_NO_SPACE : KERN_SUCCESS);
	if (at < 0)
		return;
	DCHECK(addr == pa((unsigned)at), "copied out at %#llx", (unsigned long long)addr);
	for (unsigned i = 0; i < s->pages; i++)
		mv_map(v, (unsigned)at + i, mp_new(s->bytes + (size_t)i * PS), VM_PROT_DEFAULT, VM_PROT_ALL,
		       VM_INHERIT_COPY);
}

static void op_collapse(struct diff *d)
{
	diff_what = "collapse";
	struct mview *v = pick_map(d);
	DKR(vm_map_collapse(v->map, D_BASE, D_PAGES * PS), KERN_SUCCESS);
}

static void op_pageout(struct diff *d)
{
	diff_what = "page-out";
	if (rn(d, 4) == 0) {
		static const uint64_t limits[] = {0, 4, 16, 64};
		vm_domain_set_limit(d->dom, limits[rn(d, 4)]);
		return;
	}
	vm_domain_begin(d->dom);
	vm_pageout_scan(d->dom, 1 + rn(d, 32));
}

/* Map a new object (or a file) into a map, shared or copy-on-write. */
static void op_map_object(struct diff *d)
{
	struct mview *v = pick_map(d);
	struct mfile *f = d->nf && rn(d, 2) ? &d->f[rn(d, d->nf)] : NULL;
	unsigned n = f ? D_FILE_PAGES : 1 + rn(d, 6);
	bool copy = rn(d, 2);
	vm_inherit_t inh = rn(d, 3);
	struct vm_object *obj;
	if (f && f->ext) {
		diff_what = copy ? "map external object (copy)" : "map external object (shared)";
		obj = f->obj;
	} else if (f) {
		diff_what = copy ? "map file (copy)" : "map file (shared)";
		obj = f->obj;
	} else {
		diff_what = copy ? "map object (copy)" : "map object (shared)";
		DKR(vm_object_allocate(d->dom, n * PS, &obj), KERN_SUCCESS);
	}
	vm_addr_t addr = 0;
	int at = mv_first_fit(v, n);
	kern_return_t kr = vm_map_enter(v->map, &addr, n * PS, true, obj, 0, copy, VM_PROT_DEFAULT, VM_PROT_ALL, inh);
	if (!f)
		vm_object_deallocate(obj);
	DKR(kr, at < 0 ? KERN_NO_SPACE : KERN_SUCCESS);
	if (at < 0)
		return;
	for (unsigned i = 0; i < n; i++) {
		struct mpage *mp;
		if (f && !copy) {
			mp = f->pg[i];
			mp->refs++;
		} else {
			mp = mp_new(f ? f->pg[i]->b : NULL);
		}
		mv_map(v, (unsigned)at + i, mp, VM_PROT_DEFAULT, VM_PROT_ALL, inh);
	}
}

/* Write back one file or external object and compare what its pager holds with the model. */
static void op_file_sync(struct diff *d)
{
	if (!d->nf)
		return;
	struct mfile *f = &d->f[rn(d, d->nf)];
	diff_what = f->ext ? "external object write-back" : "file write-back";
	vm_domain_begin(d->dom);
	DKR(vm_object_clean(f->obj, 0, D_FILE_PAGES * PS), KERN_SUCCESS);
	uint8_t buf[VM_PAGE_SIZE];
	for (unsigned i = 0; i < D_FILE_PAGES; i++) {
		if (f->ext)
			memcpy(buf, f->ext->data + (size_t)i * PS, PS); /* answered: the pager is done */
		else
			DCHECK(pread(f->fd, buf, PS, (off_t)(i * PS)) == (ssize_t)PS, "pread");
		DCHECK(memcmp(buf, f->pg[i]->b, PS) == 0, "%s page %u differs after write-back", f->ext ? "pager" : "file", i);
	}
}

/* ---- whole-state comparison --------------------------------------------------------------- */

static void diff_check_map(struct mview *v)
{
	vm_map_check(v->map);
	/* Layout: every region's pages agree with the model; the gaps are unmapped there. */
	vm_addr_t at = D_BASE;
	unsigned page = 0;
	struct vm_region_info r;
	while (vm_map_region(v->map, &at, &r) == KERN_SUCCESS) {
		for (; pa(page) < r.start; page++)
			DCHECK(!v->pg[page], "page %u mapped in the model only", page);
		for (; pa(page) < r.end; page++) {
			DCHECK(v->pg[page], "page %u mapped in the map only", page);
			DCHECK(v->prot[page] == r.protection && v->maxp[page] == r.max_protection &&
				       v->inh[page] == r.inheritance,
			       "page %u: prot %u/%u inh %u, model %u/%u/%u", page, r.protection, r.max_protection,
			       r.inheritance, v->prot[page], v->maxp[page], v->inh[page]);
		}
		at = r.end;
	}
	for (; page < D_PAGES; page++)
		DCHECK(!v->pg[page], "page %u mapped in the model only", page);
	/* Bytes: through vm_read where readable, and whatever the pmap holds. */
	uint8_t buf[VM_PAGE_SIZE];
	for (unsigned i = 0; i < D_PAGES; i++) {
		if (v->pg[i] && (v->prot[i] & VM_PROT_READ)) {
			DKR(vm_map_read(v->map, pa(i), buf, PS), KERN_SUCCESS);
			DCHECK(memcmp(buf, v->pg[i]->b, PS) == 0, "vm_read of page %u differs", i);
		}
		if (pmap_flat_prot(v->flat, pa(i))) {
			DCHECK(v->pg[i], "page %u entered in the pmap but not mapped", i);
			DCHECK(memcmp(v->flat->mem + (size_t)i * PS, v->pg[i]->b, PS) == 0, "pmap page %u differs", i);
			DCHECK((pmap_flat_prot(v->flat, pa(i)) & ~v->prot[i]) == 0, "pmap page %u entered with more", i);
		}
	}
}

static void diff_check_all(struct diff *d)
{
	diff_what = "full comparison";
	for (int i = 0; i < D_MAPS; i++)
		if (d->v[i].map)
			diff_check_map(&d->v[i]);
	for (int i = 0; i < D_SNAPS; i++)
		if (d->s[i].copy)
			snap_verify(&d->s[i]);
}

/* ---- driver --------------------------------------------------------------------------------- */

static void diff_setup(struct diff *d, const struct diff_config *cfg, uint64_t seed)
{
	memset(d, 0, sizeof(*d));
	d->cfg = *cfg;
	d->rng = seed * 0x9E3779B97F4A7C15ull + 1;
	d->swapfd = -1;
	ck_assert_int_eq(vm_domain_create(&d->dom), 0);
	if (cfg->swap) {
		FILE *tmp = tmpfile();
		ck_assert_ptr_nonnull(tmp);
		d->swapfd = dup(fileno(tmp));
		fclose(tmp);
		struct pager *dp;
		struct pager_args args = {.fd = d->swapfd};
		ck_assert_int_eq(pager_open(&default_pager_ops, &args, &dp), 0);
		vm_domain_set_default_pager(d->dom, dp);
		pager_release(dp);
	}
	vm_domain_set_limit(d->dom, cfg->limit);
	d->v[0].flat = new_flat(d);
	ck_assert_int_eq(vm_map_create(d->dom, D_BASE, pa(D_PAGES), flat_ops(d), d->v[0].flat, &d->v[0].map),
			 KERN_SUCCESS);
	for (int i = 0; cfg->files && i < D_FILES; i++) {
		struct mfile *f = &d->f[d->nf++];
		FILE *tmp = tmpfile();
		ck_assert_ptr_nonnull(tmp);
		f->fd = dup(fileno(tmp));
		fclose(tmp);
		for (unsigned k = 0; k < D_FILE_PAGES; k++) {
			uint8_t b[VM_PAGE_SIZE];
			for (size_t j = 0; j < PS; j++)
				b[j] = (uint8_t)rnd(d);
			f->pg[k] = mp_new(b);
			ck_assert_int_eq(pwrite(f->fd, b, PS, (off_t)(k * PS)), (ssize_t)PS);
		}
		struct pager_args args = {.fd = f->fd, .writable = true};
		ck_assert_int_eq(pager_open(&file_pager_ops, &args, &f->pager), 0);
		ck_assert_int_eq(vm_object_create(d->dom, f->pager, 0, &f->obj), KERN_SUCCESS);
	}
	/* External pagers' objects start as the fake pager's pattern and keep what page-out and
	 * write-back return to them. */
	for (int i = 0; cfg->external && i < D_EXTS; i++) {
		struct mfile *f = &d->f[d->nf++];
		f->fd = -1;
		f->ext = malloc(sizeof(*f->ext));
		ck_assert_ptr_nonnull(f->ext);
		fake_pager_start(f->ext, FAKE_PAGER_KEEP, D_FILE_PAGES * PS);
		for (unsigned k = 0; k < D_FILE_PAGES; k++)
			f->pg[k] = mp_new(f->ext->data + (size_t)k * PS);
		struct pager_args args = {.fd = f->ext->fd, .writable = true};
		ck_assert_int_eq(pager_open(&external_pager_ops, &args, &f->pager), 0);
		ck_assert_int_eq(vm_object_create(d->dom, f->pager, 0, &f->obj), KERN_SUCCESS);
	}
}

static void diff_teardown(struct diff *d)
{
	for (int i = 0; i < D_SNAPS; i++)
		if (d->s[i].copy)
			snap_release(&d->s[i]);
	for (int i = 0; i < D_MAPS; i++)
		if (d->v[i].map)
			mv_destroy(&d->v[i]);
	for (unsigned i = 0; i < d->nf; i++) {
		vm_object_deallocate(d->f[i].obj);
		pager_release(d->f[i].pager);
		if (d->f[i].ext) {
			fake_pager_stop(d->f[i].ext);
			free(d->f[i].ext);
		} else {
			close(d->f[i].fd);
		}
		for (unsigned k = 0; k < D_FILE_PAGES; k++)
			mp_put(d->f[i].pg[k]);
	}
	struct vm_statistics st;
	vm_domain_statistics(d->dom, &st);
	if (getenv("VMM_DIFF_VERBOSE"))
		fprintf(stderr,
			"vm_differential seed %llu: faults %llu zero %llu cow %llu pageins %llu pageouts %llu reclaims %llu "
			"shadows %llu collapses %llu bypasses %llu copies %llu cluster %llu peak %llu\n",
			(unsigned long long)diff_seed, (unsigned long long)st.faults, (unsigned long long)st.zero_fill_count,
			(unsigned long long)st.cow_faults, (unsigned long long)st.pageins, (unsigned long long)st.pageouts,
			(unsigned long long)st.reclaims, (unsigned long long)st.object_shadows,
			(unsigned long long)st.object_collapses, (unsigned long long)st.object_bypasses,
			(unsigned long long)st.object_copies, (unsigned long long)st.cluster_pages,
			(unsigned long long)st.resident_peak);
	DCHECK(st.objects_live == 0, "%llu objects outlive their maps", (unsigned long long)st.objects_live);
	DCHECK(st.resident_count == 0, "%llu pages outlive their objects", (unsigned long long)st.resident_count);
	vm_domain_destroy(d->dom);
	if (d->swapfd >= 0)
		close(d->swapfd);
}

typedef void diff_op_t(struct diff *d);
struct diff_weighted {
	diff_op_t *fn;
	unsigned weight;
};

static void op_guest_read(struct diff *d) { op_guest(d, false); }
static void op_guest_write(struct diff *d) { op_guest(d, true); }
static void op_vm_read(struct diff *d) { op_api_rw(d, false); }
static void op_vm_write(struct diff *d) { op_api_rw(d, true); }

static const struct diff_weighted diff_ops[] = {
	{op_allocate, 8},   {op_deallocate, 4},    {op_guest_read, 14},   {op_guest_write, 16},
	{op_vm_read, 5},    {op_vm_write, 5},      {op_copy, 5},          {op_protect, 6},
	{op_inherit, 4},    {op_attr, 2},          {op_fork, 3},          {op_destroy, 2},
	{op_snapshot, 4},   {op_snap_verify, 2},   {op_snap_release, 3},  {op_snap_restore, 3},
	{op_collapse, 2},   {op_pageout, 4},       {op_map_object, 3},    {op_file_sync, 1},
	{op_snap_pages, 2},
};

static uint64_t diff_base_seed(void)
{
	const char *s = getenv("VMM_DIFF_SEED");
	return s && *s ? strtoull(s, NULL, 0) : 20261121;
}

/* Operations per run: VMM_DIFF_OPS (the soak), else 0 for each test's short default. */
static unsigned long diff_soak_ops(void)
{
	const char *s = getenv("VMM_DIFF_OPS");
	return s && *s ? strtoul(s, NULL, 0) : 0;
}

static void diff_run(const struct diff_config *cfg_default, uint64_t salt)
{
	struct diff_config cfg_soak = *cfg_default;
	const struct diff_config *cfg = cfg_default;
	if (diff_soak_ops()) {
		cfg_soak.ops = (unsigned)diff_soak_ops();
		cfg = &cfg_soak;
	}
	diff_base = diff_base_seed();
	diff_seed = diff_base + salt;
	/* A soak's failure may lie past the default length: its replay needs the length too. */
	int n = diff_soak_ops() ? snprintf(diff_replay, sizeof(diff_replay), "VMM_DIFF_OPS=%lu ", diff_soak_ops()) : 0;
	snprintf(diff_replay + n, sizeof(diff_replay) - (size_t)n, "VMM_DIFF_SEED=%llu", (unsigned long long)diff_base);
	if (diff_soak_ops())
		fprintf(stderr, "vm_differential: run %llu of %lu operations; replay with %s\n", (unsigned long long)salt,
			(unsigned long)cfg->ops, diff_replay);
	signal(SIGABRT, diff_crash);
	signal(SIGSEGV, diff_crash);
	signal(SIGBUS, diff_crash);
	struct diff d;
	diff_op = -1;
	diff_setup(&d, cfg, diff_seed);
	unsigned total = 0;
	for (size_t i = 0; i < sizeof(diff_ops) / sizeof(diff_ops[0]); i++)
		total += diff_ops[i].weight;
	for (diff_op = 0; diff_op < (long)cfg->ops; diff_op++) {
		unsigned w = rn(&d, total);
		size_t k = 0;
		while (w >= diff_ops[k].weight)
			w -= diff_ops[k++].weight;
		diff_ops[k].fn(&d);
		if (diff_op % D_CHECK_EVERY == D_CHECK_EVERY - 1)
			diff_check_all(&d);
	}
	diff_check_all(&d);
	diff_what = "teardown";
	diff_teardown(&d);
}

/* Anonymous memory with a swap file, page-out under pressure now and then. */
START_TEST(test_differential_swap_backed_maps_match_the_model)
{
	struct diff_config cfg = {.ops = 60000, .swap = true, .limit = 0};
	diff_run(&cfg, 1);
}
END_TEST

/* A tight resident limit from the start: pages come and go on almost every operation. */
START_TEST(test_differential_under_a_tight_resident_limit_matches_the_model)
{
	struct diff_config cfg = {.ops = 50000, .swap = true, .limit = 12};
	diff_run(&cfg, 2);
}
END_TEST

/* Without a swap file dirty anonymous pages cannot leave; pmaps without modified bits. */
START_TEST(test_differential_without_swap_or_modified_bits_matches_the_model)
{
	struct diff_config cfg = {.ops = 50000, .swap = false, .nomod = true};
	diff_run(&cfg, 3);
}
END_TEST

/* Shared and private mappings of files, written back through the file pager. */
START_TEST(test_differential_with_file_mappings_matches_the_model)
{
	struct diff_config cfg = {.ops = 50000, .swap = true, .files = true, .limit = 24};
	diff_run(&cfg, 4);
}
END_TEST

/* Shared and copied mappings of external pagers' objects, paged out to them under a limit
 * and written back; vm_copy and snapshots across them as across everything else. */
START_TEST(test_differential_with_external_pager_mappings_matches_the_model)
{
	struct diff_config cfg = {.ops = 30000, .swap = true, .external = true, .limit = 24};
	diff_run(&cfg, 5);
}
END_TEST

Suite *vm_differential_suite(void)
{
	Suite *s = suite_create("vm_differential");
	TCase *tc = tcase_create("random operations");
	/* Generous for ASan+UBSan on a slow two-core machine; a soak runs as long as it takes
	 * (a week bounds one that hangs). */
	tcase_set_timeout(tc, diff_soak_ops() ? 7 * 86400 : 120);
	HARNESS_ADD_TEST(tc, test_differential_swap_backed_maps_match_the_model);
	HARNESS_ADD_TEST(tc, test_differential_under_a_tight_resident_limit_matches_the_model);
	HARNESS_ADD_TEST(tc, test_differential_without_swap_or_modified_bits_matches_the_model);
	HARNESS_ADD_TEST(tc, test_differential_with_file_mappings_matches_the_model);
	HARNESS_ADD_TEST(tc, test_differential_with_external_pager_mappings_matches_the_model);
	suite_add_tcase(s, tc);
	return s;
}

/*
 * Thinning continuous checkpoints (vmm/lifecycle/checkpoint.c, checkpoint_thin) on a real
 * store: the newest N stay and read as they were written; a base (the first checkpoint,
 * every page listed) beyond the newest N stays while little was written since, so that no
 * checkpoint rewrites a whole guest's list; once enough was written it is absorbed; a full
 * list absorbs it at once; a checkpoint that cannot be deleted leaves the list, said.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "store_pages.h"
#include "vmm/error.h"
#include "vmm/lifecycle/checkpoint.h"
#include "vmm/store/store.h"

/* A guest of PAGES unique pages; checkpoint 1 lists them all, checkpoint k > 1 rewrites
 * band k (BAND pages from BAND * k) with generation k. */
#define PAGES 1024u
#define BAND 4u
#define KEEP 3u
#define CAP CHECKPOINT_KEPT_CAP(KEEP)

static char dir[64];
static struct store *s;
static struct checkpoint_kept kept[CAP];
static unsigned nkept;

struct deletions {
	unsigned done, failed;
	char last_failed[64];
};

static void setup(void)
{
	strcpy(dir, "/tmp/vmm-checkpoint-XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(dir));
	ck_assert_int_eq(store_open(dir, true, &s), 0);
	nkept = 0;
	error_clear();
}

static void teardown(void)
{
	store_close(s);
	char cmd[128];
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	ck_assert_int_eq(system(cmd), 0);
}

static void deleted(void *arg, const char *name, int r)
{
	struct deletions *d = arg;
	if (r) {
		d->failed++;
		snprintf(d->last_failed, sizeof(d->last_failed), "%s", name);
		ck_assert_str_ne(error_message(), "");
	} else {
		d->done++;
	}
}

/* The generation page @p holds in checkpoint @k. */
static uint64_t generation(uint64_t p, unsigned k)
{
	unsigned band = (unsigned)(p / BAND);
	return band >= 2 && band <= k ? band : 1;
}

/* Write checkpoint @k as the checkpoint job would, and list it. */
static void take(unsigned k)
{
	char name[32], parent[32];
	snprintf(name, sizeof(name), "ck-%u", k);
	snprintf(parent, sizeof(parent), "ck-%u", k - 1);
	struct store_writer *w;
	const char state[] = "vcpu state";
	ck_assert_msg(store_writer_begin(s, name, k > 1 ? parent : NULL, PAGES, state, sizeof(state), &w) == 0, "%s",
		      error_message());
	uint64_t first = k > 1 ? BAND * k : 0, end = k > 1 ? first + BAND : PAGES;
	for (uint64_t p = first; p < end; p++)
		ck_assert_int_eq(store_writer_add(w, p, store_pages_make(p, k, 2)), 0);
	struct store_write_stats st;
	ck_assert_msg(store_writer_commit_stats(w, &st) == 0, "%s", error_message());
	ck_assert_uint_eq(st.entries, end - first);
	ck_assert(st.base == (k == 1));
	ck_assert_uint_lt(nkept, CAP);
	snprintf(kept[nkept].name, sizeof(kept[nkept].name), "%s", name);
	kept[nkept].entries = st.entries;
	kept[nkept].base = st.base;
	nkept++;
}

/* Checkpoint @k reads as it was written, on the pages its round could have changed. */
static void expect_round(unsigned k)
{
	char name[32];
	snprintf(name, sizeof(name), "ck-%u", k);
	struct store_snapshot *snap;
	ck_assert_msg(store_snapshot_open(s, name, &snap) == 0, "%s", error_message());
	for (uint64_t p = 0; p < PAGES; p += (p < BAND * (k + 2) ? 1 : 61)) {
		const void *data;
		uint64_t hash;
		ck_assert_msg(store_snapshot_page(snap, p, &data, &hash) == 0, "%s", error_message());
		ck_assert_msg(data && memcmp(data, store_pages_make(p, generation(p, k), 2), STORE_PAGE) == 0,
			      "%s: page %llu is not generation %llu's", name, (unsigned long long)p,
			      (unsigned long long)generation(p, k));
	}
	store_snapshot_close(snap);
}

struct listing {
	unsigned n;
	struct store_info info[CAP + 2];
};

static void list_one(void *arg, const struct store_info *info)
{
	struct listing *l = arg;
	ck_assert_uint_lt(l->n, CAP + 2);
	l->info[l->n++] = *info;
}

static const struct store_info *listed(const struct listing *l, unsigned k)
{
	char name[32];
	snprintf(name, sizeof(name), "ck-%u", k);
	for (unsigned i = 0; i < l->n; i++)
		if (!strcmp(l->info[i].name, name))
			return &l->info[i];
	return NULL;
}

START_TEST(the_newest_stay_and_the_base_waits_until_an_eighth_of_it_was_written)
{
	struct deletions d = {0};
	bool first_absorbed = false;
	for (unsigned k = 1; k <= 60; k++) {
		take(k);
		checkpoint_thin(s, kept, &nkept, CAP, KEEP, deleted, &d);
		ck_assert_uint_eq(d.failed, 0);
		struct listing l = {0};
		ck_assert_int_eq(store_list(s, list_one, &l), 0);
		/* The newest KEEP, each as it was written. */
		for (unsigned j = k > KEEP ? k - KEEP + 1 : 1; j <= k; j++) {
			ck_assert_msg(listed(&l, j), "ck-%u (of the newest %u after ck-%u) is gone", j, KEEP, k);
			expect_round(j);
		}
		/* At most one more, older: a base, which reads as it was written too. No delta
		 * lists as much as a whole guest: no checkpoint rewrote one. */
		ck_assert_uint_le(l.n, (k < KEEP ? k : KEEP) + 1);
		for (unsigned i = 0; i < l.n; i++) {
			unsigned j = (unsigned)strtoul(l.info[i].name + 3, NULL, 10);
			if (l.info[i].parent[0])
				ck_assert_msg(l.info[i].entries <= PAGES / CHECKPOINT_BASE_SHARE + 2 * BAND,
					      "delta %s lists %llu pages", l.info[i].name,
					      (unsigned long long)l.info[i].entries);
			if (j + KEEP <= k) {
				ck_assert_msg(!l.info[i].parent[0], "%s, older than the newest %u, is a delta", l.info[i].name,
					      KEEP);
				expect_round(j);
			}
		}
		/* The first checkpoint stays while its child lists less than an eighth of it. */
		if (k <= KEEP + 8)
			ck_assert_msg(listed(&l, 1), "ck-1 was absorbed at ck-%u with only %u pages written since", k,
				      BAND * (k - 1));
		if (!listed(&l, 1))
			first_absorbed = true;
		ck_assert_uint_eq(d.done, k - l.n);
	}
	ck_assert_msg(first_absorbed, "the base stayed although an eighth of it was rewritten");
	struct store_lines lines;
	ck_assert_int_eq(store_pages_verify(dir, &lines), 0);
}
END_TEST

START_TEST(a_full_list_absorbs_the_base_at_once)
{
	struct deletions d = {0};
	for (unsigned k = 1; k <= KEEP + 1; k++)
		take(k);
	/* Room left: the base stays. */
	checkpoint_thin(s, kept, &nkept, nkept + 1, KEEP, deleted, &d);
	ck_assert_uint_eq(nkept, KEEP + 1);
	ck_assert_uint_eq(d.done, 0);
	ck_assert(store_has_snapshot(s, "ck-1"));
	/* None: it goes, its child taking in its list and becoming the base. */
	checkpoint_thin(s, kept, &nkept, nkept, KEEP, deleted, &d);
	ck_assert_uint_eq(nkept, KEEP);
	ck_assert_uint_eq(d.done, 1);
	ck_assert(!store_has_snapshot(s, "ck-1"));
	ck_assert_str_eq(kept[0].name, "ck-2");
	ck_assert(kept[0].base);
	ck_assert_uint_ge(kept[0].entries, PAGES);
	for (unsigned k = 2; k <= KEEP + 1; k++)
		expect_round(k);
}
END_TEST

START_TEST(a_checkpoint_that_cannot_go_leaves_the_list_and_is_said)
{
	struct deletions d = {0};
	for (unsigned k = 1; k <= KEEP + 2; k++)
		take(k);
	/* ck-2, a delta beyond the newest 3, is in use by another (a VM restored from it). */
	struct store *other;
	struct store_snapshot *pinned;
	ck_assert_int_eq(store_open(dir, false, &other), 0);
	ck_assert_msg(store_snapshot_open_pinned(other, "ck-2", "VM test", &pinned) == 0, "%s", error_message());
	checkpoint_thin(s, kept, &nkept, CAP, KEEP, deleted, &d);
	store_snapshot_close(pinned);
	store_close(other);
	ck_assert_uint_eq(d.failed, 1);
	ck_assert_str_eq(d.last_failed, "ck-2");
	ck_assert(store_has_snapshot(s, "ck-2"));
	/* The list goes on without it: the base and the newest 3. */
	ck_assert_uint_eq(nkept, KEEP + 1);
	ck_assert_str_eq(kept[0].name, "ck-1");
	ck_assert_str_eq(kept[1].name, "ck-3");
	for (unsigned k = 1; k <= KEEP + 2; k++)
		expect_round(k);
}
END_TEST

Suite *checkpoint_suite(void)
{
	Suite *suite = suite_create("checkpoint");
	TCase *tc = tcase_create("thinning");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 60);
	HARNESS_ADD_TEST(tc, the_newest_stay_and_the_base_waits_until_an_eighth_of_it_was_written);
	HARNESS_ADD_TEST(tc, a_full_list_absorbs_the_base_at_once);
	HARNESS_ADD_TEST(tc, a_checkpoint_that_cannot_go_leaves_the_list_and_is_said);
	suite_add_tcase(suite, tc);
	return suite;
}

/*
 * Snapshots of known pages for the store suites (check_store.c on a folder,
 * check_store_rados.c on a RADOS pool): page contents by page number and "generation", a
 * writer of such snapshots, the check of a page read back, and verify's lines collected.
 */
#ifndef TESTS_STORE_PAGES_H
#define TESTS_STORE_PAGES_H

#include <stdbool.h>
#include <stdint.h>

struct store;
struct store_snapshot;
struct store_write_stats;

/* Page @pindex of generation @gen: kind 0 zero, 1 one of 4 shared patterns, 2 unique. In a
 * buffer of this thread's, good until its next call. */
const uint8_t *store_pages_make(uint64_t pindex, uint64_t gen, int kind);

/* The kind of page @pindex in the snapshots written here: 0, 1, 2 in turn. */
int store_pages_kind(uint64_t pindex);

/* Snapshot @name (parent @parent or NULL) of @npages pages: every @step-th page from @first
 * written, of generation @gen and its kind. Without Check's macros, for forked children
 * (those record every passing assertion in the runner's message file, and a child killed
 * in the middle of one leaves the runner a torn message). *@st (if not NULL): the writer's
 * stats as committed. 0 or -1 with error_message(). */
int store_pages_try_write(struct store *s, const char *name, const char *parent, uint64_t npages, uint64_t gen,
			  uint64_t first, uint64_t step, struct store_write_stats *st);

/* store_pages_try_write that fails the running test. */
void store_pages_write(struct store *s, const char *name, const char *parent, uint64_t npages, uint64_t gen,
		       uint64_t first, uint64_t step, struct store_write_stats *st);

/* Make the store at @dir (an empty folder) hold snapshot @name of a guest of @pages pages
 * of RAM at 0: every page of generation 1 and its kind, and a VM state that parses (one
 * vCPU), so that it can be restored (restore_open) or mapped; or the test fails. */
void store_pages_write_guest(const char *dir, const char *name, uint64_t pages);

/* Page @p of @snap reads as generation @gen's (zero for kind 0), or the test fails. */
void store_pages_expect(struct store_snapshot *snap, uint64_t p, uint64_t gen);

/* verify's lines, collected. */
struct store_lines {
	char text[4096];
	unsigned problems, notes;
};

/* store_verify's line callback: collects into the struct store_lines at @arg. */
void store_pages_collect(void *arg, bool problem, const char *line);

/* store_verify of the store at @where, its lines in @l. */
long store_pages_verify(const char *where, struct store_lines *l);

#endif

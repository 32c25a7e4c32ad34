/*
 * Page-out: when a domain holds more resident pages than its limit, the least recently used
 * are dropped (clean ones) or returned to their pager first (modified ones: data_return to
 * an external pager, or to the domain's default pager for anonymous memory, whose memory
 * object is created at the object's first page-out). A later fault brings them back.
 * "Least recently used" is a clock over the objects' page state tables: the hand visits
 * resident pages object by object in page order; a page used again since it became resident
 * or since the hand last passed (VM_PS_REF) loses the reference and gets one more turn.
 * Pages used by the operation in progress are never taken.
 * Locking: the domain lock is held.
 */
#ifndef MMU_VM_PAGEOUT_H
#define MMU_VM_PAGEOUT_H

#include <stdint.h>

struct vm_domain;
struct vm_page;

/* Page out one page: write-protect it, return it to its pager if modified, unmap and free
 * it. 0, or -errno and the page stays (-ENOSPC: no default pager, or it is full). A pager
 * refusing the page (its data_return failed: a full or failing swap file) is counted in
 * the domain's stats.pageout_errors, and its -errno kept in dom->pageout_error. */
int vm_pageout_page(struct vm_page *page);

/* Page out up to @target pages, least recently used first: the hand visits each resident
 * page at most once, besides the visits that take a reference away. Returns how many went. */
uint64_t vm_pageout_scan(struct vm_domain *dom, uint64_t target);

#endif

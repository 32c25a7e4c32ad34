/*
 * The default pager (default_pager_ops, declared with the pager interface in mmu/pager.h):
 * anonymous memory, paged out to a swap file. What it adds for its user is why a request
 * failed, in words.
 */
#ifndef PAGERS_DEFAULT_PAGER_H
#define PAGERS_DEFAULT_PAGER_H

struct pager;

/* Why the last data_request of default pager @p answered a page with data_error, in words
 * naming the page's place in the swap file (a short read: the file was cut short; other
 * bytes than were written: changed), for its user to prefix with the file's name. "" when
 * that request failed nothing. Valid until the next request; domain lock held. */
const char *default_pager_failure(const struct pager *p);

#endif

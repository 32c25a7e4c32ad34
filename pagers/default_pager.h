/*
 * The default pager: anonymous memory, paged out to a swap file (pager_args.fd; -1: no
 * swap, page-outs refused with -ENOSPC). What it adds for its user is why a request
 * failed, in words.
 */
#ifndef PAGERS_DEFAULT_PAGER_H
#define PAGERS_DEFAULT_PAGER_H

#include "mmu/pager.h"

extern const struct pager_ops default_pager_ops;

/* Why the last data_request of default pager @p answered a page with data_error, in words
 * naming the page's place in the swap file (a short read: the file was cut short; other
 * bytes than were written: changed), for its user to prefix with the file's name. "" when
 * that request failed nothing. Valid until the next request; domain lock held. */
const char *default_pager_failure(const struct pager *p);

#endif

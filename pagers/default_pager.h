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

/*
 * Forks of the process (fork(2)) share the swap file. default_pager_share_slots, called
 * before each fork with the domain lock held, freezes every slot in use (no process of the
 * family rewrites or reuses it: each reads it as it was) and makes new slots come from a
 * counter the family shares; the child then calls default_pager_forked_child (the slots
 * freed before the fork are the parent's). 0, or -errno (nothing frozen that matters: the
 * fork must not go on).
 */
int default_pager_share_slots(struct pager *p);
void default_pager_forked_child(struct pager *p);

#endif

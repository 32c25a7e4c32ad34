/*
 * A vm_domain is one pool of resident pages and everything that shares it: the page
 * buffers, the resident queue (least recently used first) and its limit, the statistics,
 * the default pager used for anonymous memory, and a deduplicating page store.
 * Maps and objects belong to one domain; an object may be mapped by many maps of it.
 *
 * Locking contract. The core takes no locks itself. Every call into mmu/ that names a map,
 * object, page, pmap or copy of a domain must be made by a thread holding that domain's
 * lock (vm_domain_lock); a VMM whose fault thread resolves faults while another thread
 * snapshots holds it in both. Single-threaded users (the tests) need not lock at all.
 * Pager and pmap callbacks run with the lock held and must not call back into mmu/.
 *
 * Field legend used across mmu/: (c) constant after creation, (d) domain lock,
 * (p) the owning pool, (h) the owning table, (s) the owning store.
 */
#ifndef MMU_VM_DOMAIN_H
#define MMU_VM_DOMAIN_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "mmu/pool.h"
#include "mmu/vm_param.h"

struct pager;
struct page_store;
struct vm_page;
struct vm_object;

/* Counters after Mach's vm_statistics, plus ours. All are totals since creation unless
 * they say "now". */
struct vm_statistics {
	uint64_t pagesize;          /* VM_PAGE_SIZE */
	uint64_t resident_count;    /* now: pages in objects */
	uint64_t resident_peak;     /* most pages ever resident at once */
	uint64_t resident_limit;    /* now: 0 = none */
	uint64_t buffer_count;      /* now: pages holding a buffer from the pool */
	uint64_t mapped_count;      /* now: pages whose bytes live in pmaps only */
	uint64_t packed_count;      /* now: of which packed (a state byte, no struct; vm_page.h) */
	uint64_t faults;            /* vm_fault calls */
	uint64_t zero_fill_count;   /* pages zero-filled */
	uint64_t cow_faults;        /* pages copied on write into a top object */
	uint64_t pageins;           /* pages provided by pagers */
	uint64_t pageouts;          /* modified pages returned to pagers */
	uint64_t reclaims;          /* clean pages dropped by page-out */
	uint64_t reactivations;     /* pages the page-out hand found used again and spared a turn
				       (Mach's: taken back from the inactive queue) */
	uint64_t pageout_failures;  /* pages page-out could not get rid of (no swap, I/O error) */
	uint64_t pageout_errors;    /* of which refused by their pager (a write error of swap) */
	uint64_t lookups;           /* object page lookups while resolving */
	uint64_t hits;              /* lookups that found the page resident */
	uint64_t pager_requests;    /* data_request calls */
	uint64_t cluster_pages;     /* pages entered besides the faulting one (clustering) */
	uint64_t protection_failures; /* faults refused for protection */
	uint64_t memory_errors;     /* faults failed by a pager */
	uint64_t data_unlocks;      /* faults that asked a pager to unlock a page (pager.h) */
	uint64_t object_shadows;    /* objects frozen behind a new one */
	uint64_t object_collapses;  /* backing objects merged into their only shadow */
	uint64_t object_bypasses;   /* backing objects skipped by a shadow that covers them */
	uint64_t object_copies;     /* eager copies (copy strategy none, shared sources) */
	uint64_t base_merges;       /* objects merged down into a snapshot base */
	uint64_t base_pages_freed;  /* pages of snapshot bases freed once copied up (vm_object.h) */
	uint64_t objects_live;      /* now: objects in the domain */
	/* The domain's page store (dedup). */
	uint64_t dedup_inserts, dedup_hits, dedup_collisions, dedup_zero_pages, dedup_unique_pages;
};

struct vm_domain {
	pthread_mutex_t lock;           /* the domain lock (see the contract above) */
	atomic_uint lock_waiters;       /* threads blocked in vm_domain_lock */
	struct pool data_pool;          /* (d) page buffers */
	struct pool page_pool;          /* (d) struct vm_page */
	struct pool pv_pool;            /* (d) struct pv_entry */
	struct vm_page *pack_queue;     /* (d) full pages to try to pack at the end of the operation */
	struct vm_object *hand_object;  /* (d) page-out clock hand: object (NULL: the first) */
	uint64_t hand_pindex;           /* (d) and page number in it */
	uint64_t resident_limit;        /* (d) 0 = no limit */
	uint64_t epoch;                 /* (d) number of the operation in progress */
	struct pager *default_pager;    /* (d) takes anonymous pages at page-out, or NULL */
	int pageout_error;              /* (d) the last -errno a pager refused a page-out with, 0 = none */
	struct page_store *store;       /* (d) dedup store */
	uint64_t next_object_id;        /* (d) */
	struct vm_object *objects;      /* (d) every live object (introspection, leak checks) */
	struct vm_statistics stats;     /* (d) */
};

/* A new domain with no limit and no default pager. 0 and *out, or -ENOMEM. */
int vm_domain_create(struct vm_domain **out);

/* Free the domain. Every map, object and copy of it must be gone (asserted). */
void vm_domain_destroy(struct vm_domain *dom);

/* Take / release the domain lock (see the contract above). Not recursive. */
void vm_domain_lock(struct vm_domain *dom);
void vm_domain_unlock(struct vm_domain *dom);

/* vm_domain_lock, giving up after @ms milliseconds: true when taken. For callers that must
 * stay responsive (a monitor) while another holds the lock for long (a fault waiting on a
 * slow pager, up to that pager's deadline). */
bool vm_domain_lock_within(struct vm_domain *dom, unsigned ms);

/* Whether a thread waits for the domain lock. A thread that takes it for a long job in
 * steps lets such waiters have it between steps: a mutex released and taken again at once
 * mostly goes to the thread that released it. */
bool vm_domain_lock_wanted(struct vm_domain *dom);

/* A fresh domain lock, nobody holding or waiting for it (in a child made by fork(2) while
 * another thread held it). */
void vm_domain_lock_reset(struct vm_domain *dom);

/* Limit resident pages to @pages (0 = none); least recently used pages are paged out at
 * the end of the operation that went over. Applies at once. */
void vm_domain_set_limit(struct vm_domain *dom, uint64_t pages);

/* Use @pager (a reference is taken; NULL = none) to take anonymous pages at page-out.
 * Objects that already have a memory object keep theirs. */
void vm_domain_set_default_pager(struct vm_domain *dom, struct pager *pager);

/* A copy of the statistics, dedup counters included. */
void vm_domain_statistics(const struct vm_domain *dom, struct vm_statistics *out);

/* The domain's deduplicating page store. */
struct page_store *vm_domain_page_store(struct vm_domain *dom);

/* Begin a top-level operation: pages touched from now on are "current" and are not paged
 * out until the next operation begins. Called by the mmu entry points. */
void vm_domain_begin(struct vm_domain *dom);

/* End a top-level operation: page out down to the limit, then pack the full pages it
 * touched that fit the packed form (vm_page.h). */
void vm_domain_end(struct vm_domain *dom);

#endif

/* Domains: the resident page pool, its queue, limit and statistics. See vm_domain.h. */
#include "mmu/vm_domain.h"

#include <assert.h>
#include <errno.h>
#include <stdlib.h>
#include <time.h>

#include "mmu/page_store.h"
#include "mmu/pager.h"
#include "mmu/pmap.h"
#include "mmu/vm_page.h"
#include "mmu/vm_pageout.h"

int vm_domain_create(struct vm_domain **out)
{
	struct vm_domain *dom = calloc(1, sizeof(*dom));
	if (!dom)
		return -ENOMEM;
	int err = page_store_create(NULL, &dom->store);
	if (err) {
		free(dom);
		return err;
	}
	pthread_mutex_init(&dom->lock, NULL);
	pool_init(&dom->data_pool, VM_PAGE_SIZE, 2u << 20);
	pool_init(&dom->page_pool, sizeof(struct vm_page), 64u << 10);
	pool_init(&dom->pv_pool, sizeof(struct pv_entry), 64u << 10);
	dom->next_object_id = 1;
	dom->stats.pagesize = VM_PAGE_SIZE;
	*out = dom;
	return 0;
}

void vm_domain_destroy(struct vm_domain *dom)
{
	if (!dom)
		return;
	assert(dom->objects == NULL && dom->stats.objects_live == 0);
	assert(dom->stats.resident_count == 0 && !dom->pack_queue);
	if (dom->default_pager)
		pager_release(dom->default_pager);
	page_store_destroy(dom->store);
	pool_fini(&dom->data_pool);
	pool_fini(&dom->page_pool);
	pool_fini(&dom->pv_pool);
	pthread_mutex_destroy(&dom->lock);
	free(dom);
}

void vm_domain_lock(struct vm_domain *dom)
{
	if (pthread_mutex_trylock(&dom->lock) == 0)
		return;
	atomic_fetch_add(&dom->lock_waiters, 1);
	pthread_mutex_lock(&dom->lock);
	atomic_fetch_sub(&dom->lock_waiters, 1);
}

bool vm_domain_lock_within(struct vm_domain *dom, unsigned ms)
{
	if (pthread_mutex_trylock(&dom->lock) == 0)
		return true;
	struct timespec until;
	clock_gettime(CLOCK_MONOTONIC, &until);
	until.tv_sec += ms / 1000;
	until.tv_nsec += (long)(ms % 1000) * 1000000L;
	if (until.tv_nsec >= 1000000000L) {
		until.tv_sec++;
		until.tv_nsec -= 1000000000L;
	}
	atomic_fetch_add(&dom->lock_waiters, 1);
	int r = pthread_mutex_clocklock(&dom->lock, CLOCK_MONOTONIC, &until);
	atomic_fetch_sub(&dom->lock_waiters, 1);
	return r == 0;
}

bool vm_domain_lock_wanted(struct vm_domain *dom)
{
	return atomic_load(&dom->lock_waiters) != 0;
}

void vm_domain_lock_reset(struct vm_domain *dom)
{
	pthread_mutex_init(&dom->lock, NULL);
	atomic_store(&dom->lock_waiters, 0);
}

void vm_domain_unlock(struct vm_domain *dom)
{
	pthread_mutex_unlock(&dom->lock);
}

void vm_domain_set_limit(struct vm_domain *dom, uint64_t pages)
{
	dom->resident_limit = pages;
	vm_domain_begin(dom);
	vm_domain_end(dom);
}

void vm_domain_set_default_pager(struct vm_domain *dom, struct pager *pager)
{
	if (pager)
		pager->refs++;
	if (dom->default_pager)
		pager_release(dom->default_pager);
	dom->default_pager = pager;
}

void vm_domain_statistics(const struct vm_domain *dom, struct vm_statistics *out)
{
	*out = dom->stats;
	out->resident_limit = dom->resident_limit;
	struct page_store_stats ps;
	page_store_stats(dom->store, &ps);
	out->dedup_inserts = ps.inserts;
	out->dedup_hits = ps.hits;
	out->dedup_collisions = ps.collisions;
	out->dedup_zero_pages = ps.zero_pages;
	out->dedup_unique_pages = ps.unique_pages;
}

struct page_store *vm_domain_page_store(struct vm_domain *dom)
{
	return dom->store;
}

void vm_domain_begin(struct vm_domain *dom)
{
	dom->epoch++;
}

void vm_domain_end(struct vm_domain *dom)
{
	if (dom->resident_limit && dom->stats.resident_count > dom->resident_limit)
		vm_pageout_scan(dom, dom->stats.resident_count - dom->resident_limit);
	vm_page_pack_queued(dom);
}

/* Pack names, and a pack being appended to. See store_impl.h. */
#include "vmm/store/store_impl.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "vmm/error.h"
#include "vmm/file_io.h"

#define WRITE_BATCH_PAGES 256u /* pages appended before they are written */

void pack_file_name(uint32_t id, char name[16])
{
	snprintf(name, 16, "%08x.pack", id);
}

/* Pack id from a file name "%08x.pack"; false for anything else. */
bool pack_name_id(const char *name, uint32_t *id)
{
	if (strlen(name) != 13 || strcmp(name + 8, ".pack") != 0)
		return false;
	uint32_t v = 0;
	for (int i = 0; i < 8; i++) {
		char c = name[i];
		unsigned d = c >= '0' && c <= '9' ? (unsigned)(c - '0') : c >= 'a' && c <= 'f' ? (unsigned)(c - 'a' + 10) : 16;
		if (d > 15)
			return false;
		v = v << 4 | d;
	}
	if (v == STORE_ZERO_PACK || v == PACK_ID_RESERVED)
		return false;
	*id = v;
	return true;
}


int pack_out_init(struct pack_out *p, struct store *s)
{
	*p = (struct pack_out){.s = s};
	p->batch = malloc((size_t)WRITE_BATCH_PAGES * STORE_PAGE);
	return p->batch ? 0 : error_set(ENOMEM, "no memory for a pack writer");
}

static int pack_out_flush(struct pack_out *p)
{
	uint32_t n = p->pages - p->flushed;
	if (!n)
		return 0;
	int r = p->s->backend->append(p->file, p->batch, (size_t)n * STORE_PAGE);
	if (!r)
		p->flushed = p->pages;
	return r;
}

/* One entry of the packs folder: the highest pack id so far in *arg. */
static int pack_max_id(struct store *s, const char *entry, void *arg)
{
	(void)s;
	uint32_t *max = arg, id;
	if (pack_name_id(entry, &id) && id > *max)
		*max = id;
	return 0;
}

/* Create the next pack file (ids only grow; an exclusive create settles races between
 * writers). */
static int pack_out_create(struct pack_out *p)
{
	struct store *s = p->s;
	uint32_t max = 0, id;
	int r = store_each_entry(s, STORE_PACKS, pack_max_id, &max);
	if (r)
		return r;
	for (id = max + 1; id < PACK_ID_RESERVED; id++) {
		char name[16];
		pack_file_name(id, name);
		r = s->backend->create(s, STORE_PACKS, name, &p->file);
		if (!r) {
			p->id = id;
			return 0;
		}
		if (r != -EEXIST)
			return r;
	}
	return error_set(ENOSPC, "no pack id left in %s", s->dir);
}

/* Make the pack being appended to durable and let it go: the next page starts another. */
static int pack_out_seal(struct pack_out *p)
{
	uint32_t *done = realloc(p->done, (p->ndone + 1) * sizeof(*done));
	if (!done)
		return error_set(ENOMEM, "no memory for a pack writer");
	p->done = done;
	int r = pack_out_finish(p);
	if (r)
		return r;
	p->s->backend->discard(p->file, false);
	p->done[p->ndone++] = p->id;
	p->file = NULL;
	p->id = p->pages = p->flushed = 0;
	return 0;
}

int pack_out_append(struct pack_out *p, const void *data, uint32_t *pack, uint32_t *slot)
{
	int r;
	if (p->id && p->pages >= p->s->pack_pages && (r = pack_out_seal(p)) != 0)
		return r;
	if (!p->id && (r = pack_out_create(p)) != 0)
		return r;
	if (p->pages - p->flushed == WRITE_BATCH_PAGES && (r = pack_out_flush(p)) != 0)
		return r;
	memcpy(p->batch + (size_t)(p->pages - p->flushed) * STORE_PAGE, data, STORE_PAGE);
	*pack = p->id;
	*slot = p->pages++;
	return 0;
}

/* The bytes of page @slot of this pack, for comparison: from the batch or the file. */
int pack_out_page(struct pack_out *p, uint32_t slot, uint8_t *buf, const void **bytes)
{
	if (slot >= p->flushed) {
		*bytes = p->batch + (size_t)(slot - p->flushed) * STORE_PAGE;
		return 0;
	}
	int r = p->s->backend->read_back(p->file, (uint64_t)slot * STORE_PAGE, buf, STORE_PAGE);
	if (!r)
		*bytes = buf;
	return r;
}

/* Make the pack durable: written, synced, and its name synced in the folder. */
int pack_out_finish(struct pack_out *p)
{
	if (!p->id)
		return 0;
	int r = pack_out_flush(p);
	return r ? r : p->s->backend->finish(p->file);
}

/* Free the writer's resources; with @discard also remove the pack file. */
void pack_out_close(struct pack_out *p, bool discard)
{
	if (p->file)
		p->s->backend->discard(p->file, discard);
	/* What could not be removed is a leftover gc removes; the caller's message stands. */
	char said[512];
	snprintf(said, sizeof(said), "%s", error_message());
	bool failed = false;
	for (unsigned i = 0; discard && i < p->ndone; i++) {
		char name[16];
		pack_file_name(p->done[i], name);
		failed |= p->s->backend->remove(p->s, STORE_PACKS, name) < 0;
	}
	if (discard && p->ndone)
		failed |= p->s->backend->flush(p->s, STORE_PACKS) < 0;
	if (failed)
		error_set(0, "%s", said);
	free(p->batch);
	free(p->done);
	p->file = NULL;
	p->batch = NULL;
	p->done = NULL;
	p->ndone = 0;
}

/*
 * The store's on-disk format: a manifest's parts and the limits readers check them against.
 * Packs have no format of their own: a pack is raw 4 KiB pages, named "%08x.pack" by its id.
 * Shared by the store's files only (vmm/store/); the public API is vmm/store/store.h.
 */
#ifndef VMM_STORE_FORMAT_H
#define VMM_STORE_FORMAT_H

#include <stddef.h>
#include <stdint.h>

#include "vmm/store/store.h"

/*
 * On disk: little-endian, x86-64 only. A manifest, version 3:
 *
 *   header       struct manifest_header (header_size bytes)
 *   state        state_len bytes of the VMM's opaque state, zero-padded to 8
 *   pack table   pack_count uint32 ids of the packs the entries use, increasing, zero-padded to 8
 *   entries      entry_count struct manifest_entry, page numbers strictly increasing
 *   chunk table  one struct manifest_chunk per chunk_entries entries (the last chunk may be short)
 *   trailer      struct manifest_trailer
 *
 * Opening a manifest checks the head (header, state, pack table) and the chunk table
 * against the trailer's checksums: no work in proportion to the pages listed but for the
 * chunk table (16 bytes per 512 entries). A chunk of entries is checked against its
 * checksum, and entry by entry, the first time a reader looks a page up in it (restore),
 * or all at once where every entry is used (verify, gc, list, a writer's index).
 * Magic and version keep their place in every version: an older or newer file is refused
 * by its version number, but for version 2, which is read too: the same but for its header,
 * MANIFEST_HEADER_V2_SIZE bytes, which ends before source and description (read as "").
 */
#define MANIFEST_MAGIC "VMMSNAP1" /* the file's kind, the same in every version */
#define TRAILER_MAGIC "VMMSEND2"
#define MANIFEST_VERSION 3u
#define MANIFEST_HEADER_V2_SIZE 184u /* offsetof(struct manifest_header, source) */
#define MANIFEST_CHUNK 512u          /* entries per chunk in the manifests written here */
#define MANIFEST_CHUNK_MAX (1u << 20) /* most entries per chunk a reader accepts */
#define STORE_MAX_DEPTH 1024u
/* A snapshot whose parent is read through this many manifests is written complete (see
 * MANIFEST_COMPLETE): no page is ever looked up through more. */
#define STORE_FLATTEN_DEPTH 8u
/* Manifest flag: it lists every non-zero page itself (its parent's entries merged in, no
 * bytes copied); readers stop at it, and the parent it names is lineage only. */
#define MANIFEST_COMPLETE 1u
/* Never a pack id, and more than a pack's pages: readers refuse it in a pack table and in a
 * pack's file name, writers stop below it. */
#define PACK_ID_RESERVED 0xfffffffeu
#define PACK_PAGES_MAX 16384u /* pages per pack file: 64 MiB, under RADOS's object limit (128 MiB by default) */

struct manifest_header {
	char magic[8];          /* MANIFEST_MAGIC */
	uint32_t version;       /* MANIFEST_VERSION */
	uint32_t header_size;   /* sizeof(struct manifest_header) */
	uint64_t created_ns;    /* CLOCK_REALTIME at commit */
	uint64_t page_count;    /* pages of guest memory described */
	uint64_t entry_count;   /* struct manifest_entry in the entries */
	uint32_t state_len;     /* bytes of opaque VMM state after the header */
	uint32_t pack_count;    /* pack ids in the pack table */
	uint32_t chunk_entries; /* entries per chunk: a power of two */
	uint32_t flags;         /* MANIFEST_COMPLETE, or 0 */
	char name[64];          /* this snapshot, NUL-terminated */
	char parent[64];        /* its parent, or "" */
	/* Version 3 on; a version 2 header ends here. */
	char source[80];        /* the VM it was taken of, or "": NUL-terminated, printable */
	char description[256];  /* what its taker said of it, or "": NUL-terminated, printable */
};

struct manifest_entry {
	uint64_t pindex; /* page number, strictly increasing */
	uint64_t hash;   /* XXH3-64 of the bytes; 0 for zero pages */
	uint32_t pack;   /* pack id (one of the pack table's), or STORE_ZERO_PACK */
	uint32_t slot;   /* page number in the pack; 0 for zero pages */
};

struct manifest_chunk {
	uint64_t first_pindex; /* page number of the chunk's first entry; strictly increasing */
	uint64_t checksum;     /* XXH3-64 of the chunk's entries */
};

struct manifest_trailer {
	uint64_t head_checksum;   /* XXH3-64 of header, state and pack table, padding included */
	uint64_t chunks_checksum; /* XXH3-64 of the chunk table */
	char magic[8];            /* TRAILER_MAGIC */
};

_Static_assert(sizeof(struct manifest_header) == 520, "manifest header layout");
_Static_assert(offsetof(struct manifest_header, source) == MANIFEST_HEADER_V2_SIZE, "version 2 header layout");
_Static_assert(sizeof(struct manifest_entry) == 24, "manifest entry layout");
_Static_assert(sizeof(struct manifest_chunk) == 16, "manifest chunk layout");
_Static_assert(sizeof(struct manifest_trailer) == 24, "manifest trailer layout");

static inline uint64_t pad8(uint64_t n)
{
	return (n + 7) & ~7ull;
}

/* Where the parts of a manifest lie, from its header's counts (checked: in range). */
struct manifest_layout {
	uint64_t packs_off, entries_off, chunks_off, trailer_off, size;
	uint64_t nchunks;
};

static inline void manifest_layout(const struct manifest_header *h, struct manifest_layout *l)
{
	l->packs_off = h->header_size + pad8(h->state_len);
	l->entries_off = l->packs_off + pad8((uint64_t)h->pack_count * sizeof(uint32_t));
	l->nchunks = (h->entry_count + h->chunk_entries - 1) / h->chunk_entries;
	l->chunks_off = l->entries_off + h->entry_count * sizeof(struct manifest_entry);
	l->trailer_off = l->chunks_off + l->nchunks * sizeof(struct manifest_chunk);
	l->size = l->trailer_off + sizeof(struct manifest_trailer);
}

#endif

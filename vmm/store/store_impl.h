/*
 * The store's insides, shared by the files of vmm/store/ and by nothing else (the public
 * API is vmm/store/store.h). One file per part:
 *
 *   format.h    the on-disk format of manifests
 *   store.c     open and close, the lock's holds, reading packs back, the index of stored
 *               pages built from every manifest
 *   store_dir.c the backend of a store in a local folder: its files, its lock, views of
 *               them (mapped), atomic writes (aside, synced, renamed, folder synced)
 *   index.c     that index: page hash -> (pack, slot), with reference counts
 *   manifest.c  reading (checked) and writing (atomically) one manifest
 *   pack.c      pack names, and a pack being appended to
 *   writer.c    store_writer_*: a new snapshot, its pages deduplicated
 *   reader.c    store_snapshot_*: a snapshot and its parents open for restore
 *   pins.c      pins in a local folder: snapshots a running VM reads from, which rm refuses
 *   verify.c    store_list and store_verify
 *   gc.c        store_gc and store_delete
 *
 * Field tags: (c) constant once opened; (o) the owner's: a handle (store, writer) is used
 * by one thread at a time; (l) meaningful only while the handle holds STORE/lock (see
 * struct store), forgotten when the last hold is released; (a) read and written atomically.
 */
#ifndef VMM_STORE_STORE_IMPL_H
#define VMM_STORE_STORE_IMPL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/uio.h>

#include "mmu/hmap.h"
#include "vmm/store/format.h"
#include "vmm/store/store.h"

/* ---- manifests (manifest.c) ------------------------------------------------------------ */

/*
 * A manifest mapped from disk. Everything but the entries is checked when it is opened;
 * chunks of entries are checked on first use (checked[k] then becomes 1, atomically: the
 * snapshot pager looks pages up from several threads).
 */
/* A whole file seen read-only: valid until store_backend.unview, even after the file is
 * removed or replaced meanwhile. */
struct store_view {
	const void *data; /* NULL for an empty file */
	size_t size;
};

struct manifest {
	struct store_view view;             /* (c) its bytes */
	void (*unview)(struct store_view *); /* (c) lets them go (the backend's) */
	const char *dir;                    /* (c) the store's folder, for messages */
	const struct manifest_header *hdr;  /* (c) only its first hdr->header_size bytes are there:
					       source and description are read through the two below */
	const char *source, *description;   /* (c) the header's, or "" (version 2) */
	const uint8_t *state;               /* (c) */
	const uint32_t *packs;              /* (c) the pack table: pack_count ids */
	const struct manifest_entry *entries; /* (c) */
	uint64_t nentries;                  /* (c) */
	const struct manifest_chunk *chunks; /* (c) */
	uint64_t nchunks;                   /* (c) */
	uint8_t *checked;                   /* (a) per chunk: 1 once its entries are known good */
};

struct store;

/* Open manifest @name of @s: map it and check everything but its entries, which are
 * checked chunk by chunk later (manifest_check_chunk). Work in proportion to the state,
 * packs and chunks, never to the pages. 0, -ENOENT ("no snapshot"), or -errno; with a message. */
int manifest_open(struct store *s, const char *name, struct manifest *m);

/* manifest_open, then every chunk checked (for those that use every entry). */
int manifest_load(struct store *s, const char *name, struct manifest *m);

/* Unmap and forget @m (opened or zeroed). */
void manifest_unload(struct manifest *m);

/* Check chunk @k of @m once (checksum, then each entry); safe from several threads at
 * once. 0 or -EIO with a message naming the manifest and the entries. */
int manifest_check_chunk(const struct manifest *m, uint64_t k);

/* Check every chunk of @m; the first damage found is the error. */
int manifest_check_all(const struct manifest *m);

/* Entries of chunk @k: the first, and how many in *n. */
const struct manifest_entry *manifest_chunk_entries(const struct manifest *m, uint64_t k, uint64_t *n);

/* The entry of @m for page @pindex in *out (NULL when @m lists none), its chunk checked
 * the first time. 0 or -EIO with a message. */
int manifest_find(const struct manifest *m, uint64_t pindex, const struct manifest_entry **out);

/* One of several sorted lists of entries laid over one another (manifest_merge): the
 * entries, how many, and the next one to take (0 to start). */
struct manifest_layer {
	const struct manifest_entry *entries;
	uint64_t count;
	uint64_t next;
};

/* Lay the @nlayers lists @layers over one another, [0] on top: each page any of them lists
 * once, in order, as the first layer listing it has it; with @drop_zero its zero entries are
 * left out (for a result that reads through nothing below, where no entry means zero).
 * @out has room for the layers' counts added up; returns how many entries it received.
 * O(entries * layers), no allocation. */
uint64_t manifest_merge(struct manifest_layer *layers, unsigned nlayers, bool drop_zero, struct manifest_entry *out);

/* Write manifest @h (magic, version, counts and chunking filled in here) with @state and
 * @entries atomically and durably (store_backend.write: a folder writes it aside, syncs,
 * renames, syncs the folder); @exclusive: a new snapshot, -EEXIST when the name was taken
 * meanwhile, else it replaces the manifest there. 0 or -errno with a message; a failed
 * write leaves no file behind. */
/* @m's header as a version 3 one (what a version 2 header lacks is ""), to write again. */
void manifest_header_copy(const struct manifest *m, struct manifest_header *out);

int manifest_write(struct store *s, struct manifest_header *h, const void *state,
		   const struct manifest_entry *entries, bool exclusive);

/* Snapshot name from a manifest's file name "NAME.snap" into @name; false for anything
 * else (temporaries too). */
bool manifest_file_name(const char *file, char name[STORE_NAME_MAX + 1]);

/* True for the file name of a manifest being written (".NAME.tmp"), or left by a killed
 * writer. */
bool manifest_is_temporary(const char *file);

/* ---- the page index (index.c) ------------------------------------------------------------ */

struct index_entry {
	uint64_t hash;          /* the bytes' hash */
	uint32_t pack, slot;    /* where they are */
	uint32_t refs;          /* manifests referring to it */
	uint32_t last_manifest; /* the manifest that counted last (1-based) */
	uint32_t next;          /* the next entry with the same hash (its number), 0: none */
};

/* A multimap from page hash to where such bytes are stored: several entries may share a
 * hash (collisions), each (hash, pack, slot) is there once. Belongs to its holder; zeroed
 * memory is an empty index. */
struct index {
	struct hmap heads;      /* hash -> number of its first entry (as a pointer) */
	struct index_entry *e;  /* entries by number, from 1 ([0] unused: 0 ends a chain) */
	uint32_t n;             /* entries, numbered 1..n in the order they were added */
	uint32_t cap;           /* entries allocated, [0] included */
	uint32_t met;           /* the entry index_add returned last, 0: none */
};

/* The entry for exactly (hash, pack, slot), added (refs 0) if missing. O(1) expected
 * (the entries with that hash are walked). NULL when out of memory. The pointer is good
 * until the next index_add. */
struct index_entry *index_add(struct index *ix, uint64_t hash, uint32_t pack, uint32_t slot);

/* The entries with @hash, in the order they were added: the first (NULL: none), and the
 * one after @e. */
struct index_entry *index_first(const struct index *ix, uint64_t hash);
struct index_entry *index_next(const struct index *ix, const struct index_entry *e);

/* All the entries, in the order they were added: the first (NULL when empty) and *n. */
struct index_entry *index_entries(const struct index *ix, size_t *n);

/* How many entries of each pack some manifest refers to (refs > 0): @live (initialised
 * here; hmap_fini it) maps a pack id to that count, as a pointer; a pack not there has
 * none. 0, or -ENOMEM (@live then empty). */
int index_live_pages(const struct index *ix, struct hmap *live);

/* Free the entries; @ix is then empty and usable again. */
void index_free(struct index *ix);

/* ---- where a store keeps its files: its backend ----------------------------------------------- */

/*
 * A store's files live in three folders, each file named within its folder. The backend
 * says how they are kept: store_dir.c in a local folder (STORE/packs, STORE/snapshots,
 * STORE/pins, STORE/lock). Every call is 0 or -errno with a one-line message naming the
 * store and the file, unless it says otherwise.
 */
enum store_folder { STORE_PACKS, STORE_SNAPSHOTS, STORE_PINS };

struct store_file; /* a file being written a piece at a time (a pack), the backend's */

/* A function called per entry of a folder: 0 goes on, anything else stops the walk and is
 * its result. */
typedef int store_entry_fn(struct store *s, const char *entry, void *arg);

struct store_backend {
	/* The store lock (see struct store), shared or @exclusive; with @wait for at most
	 * STORE_LOCK_WAIT_S, else failing at once. -EBUSY when it could not be had. */
	int (*lock)(struct store *s, bool exclusive, bool wait);
	void (*unlock)(struct store *s);
	/* Let go of what may go stale once the lock is let go (open packs). */
	void (*forget)(struct store *s);
	/* Call @fn for each entry of @f ("." and ".." included where a folder has them). */
	int (*each)(struct store *s, enum store_folder f, store_entry_fn *fn, void *arg);
	bool (*exists)(struct store *s, enum store_folder f, const char *name);
	/* What file @name is, in 64 bits never 0 (another file, or with @contents the same one
	 * changed, gets another), and its size. -ENOENT without message when it is not there. */
	int (*stat)(struct store *s, enum store_folder f, const char *name, bool contents, uint64_t *tag,
		    uint64_t *size);
	/* Whole file @name; -ENOTSUP (no message) for packs where they are read a page at a
	 * time instead (store_snapshot_page then reads each page through read). */
	int (*view)(struct store *s, enum store_folder f, const char *name, struct store_view *v);
	void (*unview)(struct store_view *v);
	/* Exactly @len bytes at @off of file @name (-EIO when it is shorter). */
	int (*read)(struct store *s, enum store_folder f, const char *name, uint64_t off, void *buf, size_t len);
	/* Write file @name whole, from the @n pieces of @iov, atomically (seen whole or not at
	 * all) and durably; @exclusive: -EEXIST (with a message) when it exists already. */
	int (*write)(struct store *s, enum store_folder f, const char *name, const struct iovec *iov, unsigned n,
		     bool exclusive);
	/* Remove @name (-ENOENT without message when it is not there); flush makes the removals
	 * of @f durable. */
	int (*remove)(struct store *s, enum store_folder f, const char *name);
	/* gc, with the store held alone (NULL: nothing to do): remove what interrupted writes
	 * left that the folders' listings do not show (RADOS manifest parts no head names). */
	int (*sweep)(struct store *s);
	int (*flush)(struct store *s, enum store_folder f);
	/* A new file @name to append to (-EEXIST without message when it exists), read back
	 * while written, made durable by finish; discard frees it (@remove: and the file). */
	int (*create)(struct store *s, enum store_folder f, const char *name, struct store_file **out);
	int (*append)(struct store_file *file, const void *data, size_t len);
	int (*read_back)(struct store_file *file, uint64_t off, void *buf, size_t len);
	int (*finish)(struct store_file *file);
	void (*discard)(struct store_file *file, bool remove);
	/* Pins (pins.c for a folder): see store_dir_pin and store_dir_pinned; unpin lets
	 * @token go (a folder's pins need no store for that: its pin is a descriptor). */
	int (*pin)(struct store *s, const char *name, const char *holder, int *token);
	void (*unpin)(struct store *s, int token);
	int (*pinned)(struct store *s, const char *name, char *holder, size_t len);
	/* Whether @where names this very store (store_is_at). */
	bool (*is_at)(struct store *s, const char *where);
	/* Free the backend's part of @s. */
	void (*close)(struct store *s);
};

/* The store in the local folder s->dir (store_dir.c): made (with @create) and opened
 * (@read_only: nothing made, nothing written) into s->backend and s->priv. */
int store_dir_open(struct store *s, bool create, bool read_only);

#define STORE_RADOS_NAME_MAX 100

/* "rados:POOL[/NAMESPACE]" split and checked into @pool and @ns ("" when none), each
 * STORE_RADOS_NAME_MAX + 1 bytes. 0 or -EINVAL with a message. */
int store_rados_parse(const char *where, char *pool, char *ns);

/* The store in a RADOS pool (store_rados.c), s->dir being "rados:POOL[/NAMESPACE]":
 * connected, into s->backend and s->priv. */
int store_rados_open(struct store *s, bool create, bool read_only);

/* The folder's own descriptor, for pins.c. */
int store_dir_fd(const struct store *s);

/* Call @fn for each entry of the folder open at @at (@sub names it in messages), in
 * directory order ("." and ".." too). For store_dir.c and pins.c. */
int store_dir_walk(struct store *s, int at, const char *sub, store_entry_fn *fn, void *arg);

/* Open @name in the store's folder @at (@sub names it in messages: "packs") through
 * file_open_regular: a FIFO or device left in a store is refused, never waited on. The fd,
 * or -errno with a message. (store_dir.c and pins.c) */
int store_open_file(struct store *s, int at, const char *sub, const char *name, int flags, mode_t mode);

/* ---- the store (store.c) ------------------------------------------------------------------ */

/*
 * Locking: STORE/lock is held shared while pages are being referred to or looked for
 * (a writer, a snapshot being opened, verify, list, rm) and alone by gc, which moves
 * pages and removes packs. A handle counts its holds and takes the flock on the first
 * only (a second flock on the same file would convert gc's exclusive lock).
 * The index of stored pages is built while the lock is held and dropped with it: after
 * that, another process's gc may have moved what it points to.
 */
struct store {
	char *dir;                /* (c) */
	store_hash_fn *hash;      /* (c) XXH3_64bits, or a test's */
	const struct store_backend *backend; /* (c) */
	void *priv;               /* (c) the backend's */
	bool read_only;           /* (c) store_open_read: no writer, gc or rm */
	unsigned holds;           /* (o) nested holds of the lock by this handle */
	bool indexed;             /* (l) index is built (only while held, unless keep_index) */
	struct index index;       /* (l) every page any readable manifest refers to */
	bool keep_index;          /* (o) store_keep_index: the index outlives the holds */
	bool index_stale;         /* (o) with keep_index: built in an earlier hold (store_refresh_index) */
	struct hmap index_manifests; /* (o) with keep_index: manifests indexed, by store_file_tag -> 1 */
	struct hmap index_packs;  /* (o) with keep_index: pack id -> its store_file_tag when indexed */
	uint32_t nmanifests;      /* (l) manifests indexed */
	uint32_t damaged;         /* (l) manifests that could not be indexed (verify names them) */
	bool writer_active;       /* (o) */
	uint32_t pack_pages;      /* (o) pages per pack file (PACK_PAGES_MAX, or a test's) */
	uint32_t manifest_part;   /* (o) RADOS: bytes per manifest part (0: RADOS_DATA_MAX, or a test's) */
	bool read_packs;          /* (o) store_set_pack_reads: packs read, not mapped, for restore */
};

/* -EROFS with a message when @s was opened for reading only, else 0. */
int store_writable(struct store *s);

/* Read stored page (pack, slot) into @buf (STORE_PAGE bytes). 0 or -errno with a message. */
int store_read_page(struct store *s, uint32_t pack, uint32_t slot, void *buf);

/* Hold the store lock shared (nested holds count). 0 or -errno with a message. */
int store_hold(struct store *s);

/* Take the store lock alone (gc, delete): with @wait for at most STORE_LOCK_WAIT_S, else
 * -EBUSY at once; nothing else may be held by this handle. store_release lets it go. */
int store_hold_alone(struct store *s, bool wait);

/* Undo one store_hold (or store_hold_alone); the last one unlocks and forgets the index
 * and the open packs. */
void store_release(struct store *s);

/* Call @fn for each entry of folder @f, in the backend's order ("." and ".." too for a
 * local folder). 0, what @fn stopped with, or -errno with a message when the folder cannot
 * be read. */
int store_each_entry(struct store *s, enum store_folder f, store_entry_fn *fn, void *arg);

/* Call @fn for each snapshot name in the store, in directory order. Stops at an error. */
int store_each_name(struct store *s, store_entry_fn *fn, void *arg);

/* The index kept from an earlier hold (store_keep_index) brought up to date: the manifests
 * written since are indexed; when a pack indexed is gone or changed (a gc ran), everything
 * is indexed again. Without a kept index, store_need_index. For writers, whose dedup
 * confirms every match byte for byte; the lock must be held. 0 or -errno with a message. */
int store_refresh_index(struct store *s);

struct pack_out;

/* Add what writer @local appended (the packs of @packs, manifest @name, all durable now) to
 * a kept index, so that the next refresh need not read them. No-op without keep_index. */
void store_index_written(struct store *s, const struct index *local, const struct pack_out *packs, const char *name);

/* (Re)build the index from every manifest (a damaged one is skipped and counted in
 * s->damaged); the lock must be held. 0 or -errno with a message. */
int store_reindex(struct store *s);

/* The index, built if this hold of the lock has none yet. 0 or -errno with a message. */
int store_need_index(struct store *s);

/* ---- packs (pack.c) ------------------------------------------------------------------------ */

/* The file name of pack @id: "%08x.pack". */
void pack_file_name(uint32_t id, char name[16]);

/* Pack id from a file name "%08x.pack"; false for anything else. */
bool pack_name_id(const char *name, uint32_t *id);

/* A pack being appended to: created on the first page, written in batches; once it holds
 * s->pack_pages pages it is made durable and the next page starts another. */
struct pack_out {
	struct store *s;
	uint32_t id;       /* the pack being appended to, 0 before its first page */
	struct store_file *file; /* NULL until created */
	uint32_t pages;    /* pages appended to it (written or batched) */
	uint32_t flushed;  /* pages written to the file */
	uint8_t *batch;    /* pages appended but not yet written */
	uint32_t *done;    /* the packs filled before it, durable already */
	unsigned ndone;
};

/* An empty pack writer for @s; no file until the first page. 0 or -ENOMEM with a message. */
int pack_out_init(struct pack_out *p, struct store *s);

/* Append the 4 KiB at @data (creating a pack first if needed); its place in *pack and
 * *slot. 0 or -errno with a message. */
int pack_out_append(struct pack_out *p, const void *data, uint32_t *pack, uint32_t *slot);

/* The bytes of page @slot of the pack being appended to (p->id), for comparison: *bytes
 * points into the batch, or to @buf (STORE_PAGE bytes) read back from the file. 0 or -EIO
 * with a message. Pages of the packs filled before it read as any stored page. */
int pack_out_page(struct pack_out *p, uint32_t slot, uint8_t *buf, const void **bytes);

/* Make the pack durable: written, synced, and its name synced in the folder. 0 or -errno
 * with a message. */
int pack_out_finish(struct pack_out *p);

/* Free the writer's resources; with @discard also remove every pack it made. */
void pack_out_close(struct pack_out *p, bool discard);

/* ---- snapshots open for reading (reader.c) -------------------------------------------------- */

struct mapped_pack {
	uint32_t id;
	const uint8_t *map;
	uint64_t pages;
	struct store_view view;    /* what map points into */
};

struct store_snapshot {
	char *dir;                 /* (c) */
	const struct store_backend *backend; /* (c) its store's, which it may outlive (no state) */
	struct store *store;       /* (c) the store, for packs its backend reads rather than maps:
				    * then the snapshot must be closed before the store is */
	struct snapshot_cache *cache; /* (c) pages of those packs prefetched, NULL: every pack mapped */
	int pin_token;             /* (c) the pin held while open (store_snapshot_open_pinned), or -1 */
	unsigned depth;            /* (c) */
	struct manifest *chain;    /* (c) [0] is the snapshot, then its parents */
	struct mapped_pack *packs; /* (c) those the chain's pack tables name, sorted by id */
	size_t npacks;             /* (c) */
};

/* ---- pins (pins.c) ------------------------------------------------------------------------- */

/* Pin snapshot @name for @holder (a folder's pins, store_backend.pin); *fd is the pin's
 * descriptor to close when done, or -1 when the store cannot be written by this user (who
 * then cannot delete from it either). 0 or -errno with a message. */
int store_dir_pin(struct store *s, const char *name, const char *holder, int *fd);

/* Look for a live pin of snapshot @name (NULL: none, only sweep), removing the stale pins
 * met on the way (store_backend.pinned). 1 with its holder in @holder, 0 when none, or
 * -errno with a message. The caller holds the store lock alone, so no pin is being made
 * meanwhile. */
int store_dir_pinned(struct store *s, const char *name, char *holder, size_t len);

#endif

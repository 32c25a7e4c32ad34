/*
 * The snapshot store: a directory holding a content-addressed pack of unique pages and
 * one manifest per snapshot naming its parent.
 *
 *   STORE/lock                 flock: shared while pages are referred to or looked for
 *                              (writers, opening a snapshot, verify, ls, rm), alone by gc
 *   STORE/packs/NNNNNNNN.pack  raw 4 KiB pages, nothing else (append-only; a write fills
 *                              one after another, 64 MiB each at most)
 *   STORE/snapshots/NAME.snap  manifest (version 2): header, the VMM's opaque state, the
 *                              table of packs it uses, page entries in chunks of 512, the
 *                              chunk table (first page and XXH3-64 of each chunk), trailer
 *                              (XXH3-64 of header+state+pack table and of the chunk table)
 *
 * A manifest lists, sorted by page number, the pages that differ from its parent (every
 * non-zero page for a snapshot without parent): page number, XXH3-64 of the bytes, and
 * where the bytes are (pack, slot) or "zero". A snapshot whose parent is read through 8
 * manifests already is written complete instead: its parent's entries merged into its own
 * (no bytes copied), so that no page is looked up through more than 8 manifests however
 * many restore-and-snapshot cycles a lineage goes through; its parent is then named for
 * the record only (and may be deleted). Pages are deduplicated across the whole
 * store by hash, every hit confirmed byte for byte; zero pages are never stored.
 *
 * Reading is lazy, for restore: opening a snapshot checks each manifest of its chain up to
 * its entries (header, state, pack and chunk tables: work that does not grow with the
 * pages) and maps the packs they name; a chunk of entries is checked against its checksum
 * the first time a page in it is looked up. verify, gc, ls and writers (whose dedup needs
 * an index of every stored page, built while they hold the lock) check every entry.
 *
 * Crash safety (kill -9 at any moment): a writer fills a new pack, fsyncs it, writes the
 * manifest under a temporary name, fsyncs, renames it into place and fsyncs the directory.
 * Until the rename nothing refers to the new pack; afterwards everything it refers to is
 * durable. A delete rewrites the children of the deleted snapshot the same way, one by one,
 * and removes its manifest only after. Leftovers of a killed writer (an unreferenced pack, a
 * ".tmp" manifest) are harmless: verify reports them, gc removes them.
 *
 * Every file is untrusted input: readers check every field and fail with one line naming
 * the file and what is wrong.
 */
#ifndef VMM_STORE_STORE_H
#define VMM_STORE_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define STORE_PAGE 4096u
#define STORE_NAME_MAX 63
#define STORE_STATE_MAX (16u << 20)  /* opaque VMM state in a manifest */
#define STORE_ZERO_PACK 0xffffffffu  /* pack id of an entry meaning "all zero" */
#define STORE_LOCK_WAIT_S 20         /* longest wait for another process's gc or writer (-EBUSY) */

struct store;
struct store_writer;
struct store_snapshot;

/*
 * Where a store is: a local folder (a path), or a RADOS pool, "rados:POOL[/NAMESPACE]"
 * (the cluster from Ceph's usual configuration: CEPH_CONF, /etc/ceph/ceph.conf,
 * CEPH_ARGS; VMM_RADOS_CLIENT names the client, default client.admin). Every function
 * below that takes a @dir takes either.
 */
#define STORE_RADOS_SCHEME "rados:"

/* True when @where names a RADOS store. */
bool store_is_rados(const char *where);

/* The one name of the store at @where into @out (@len bytes): a folder's real path, or
 * "rados:POOL/NAMESPACE" checked (1-100 of A-Z a-z 0-9 . _ - for the pool; the namespace,
 * "" when none, the same and '/' between parts). Two names of one store give the same.
 * 0, -ENOENT (no such folder) or -EINVAL with a message. */
int store_locate(const char *where, char *out, size_t len);

/* Open the store at @dir; with @create, make it (and its folders) if missing. Reads no
 * manifest. 0 and *out, or -errno with a message. */
int store_open(const char *dir, bool create, struct store **out);

/* Open the store at @dir for reading snapshots (restore): creates and writes nothing, so
 * needs no write permission; writers, gc and delete refuse it (-EROFS). */
int store_open_read(const char *dir, struct store **out);

/* store_open with another page hash than XXH3-64 (tests force collisions with it). */
typedef uint64_t store_hash_fn(const void *data, size_t len);
int store_open_hashed(const char *dir, bool create, store_hash_fn *hash, struct store **out);
void store_close(struct store *s);

/*
 * Keep @s's index of stored pages from one writer to the next (a VM snapshotting into one
 * store again and again): each writer then reads only the manifests written since, by any
 * process, instead of every manifest of the store; a pack gone or rewritten meanwhile (a
 * gc) makes it read them all again. Dedup stays exact: every match is confirmed byte for
 * byte against the pack as it is now.
 */
void store_keep_index(struct store *s);

/* At most @pages pages per pack file (0: the default, 16384 = 64 MiB): a writer fills
 * one pack after another. For tests. */
void store_set_pack_pages(struct store *s, uint32_t pages);

/* A RADOS store writes a manifest larger than @bytes (0: the default, RADOS_DATA_MAX, the
 * most one write takes; at least 4096) in parts. For tests. */
void store_set_manifest_part(struct store *s, uint32_t bytes);

/* True when @dir is the folder @s was opened at (the same file, not only the same name):
 * a store removed and made again at the same path is another store. */
bool store_is_at(struct store *s, const char *dir);

/* True when the store has a snapshot named @name. */
bool store_has_snapshot(struct store *s, const char *name);

/* True when @name may name a snapshot: 1-63 of [A-Za-z0-9._-], not starting with '.'. */
bool store_name_valid(const char *name);

/* True when @text ends (NUL) within @size bytes and has no control character: what a
 * snapshot's source and description may be (STORE_SOURCE_MAX, STORE_DESCRIPTION_MAX bytes,
 * the NUL not counted). */
#define STORE_SOURCE_MAX 79 /* a VM name is at most 64 */
#define STORE_DESCRIPTION_MAX 255
bool store_text_valid(const char *text, size_t size);

/*
 * Begin snapshot @name (must not exist) whose pages not given differ from nothing but
 * @parent's (NULL or "" = no parent; the parent must exist). @page_count: pages of guest
 * memory the snapshot describes. @state/@state_len: the VMM's state, stored as is.
 */
int store_writer_begin(struct store *s, const char *name, const char *parent, uint64_t page_count,
		       const void *state, size_t state_len, struct store_writer **out);

/* Say what the snapshot being written is of: @source, the VM it is taken of, and
 * @description, its taker's words (either NULL or ""; at most STORE_SOURCE_MAX and
 * STORE_DESCRIPTION_MAX bytes of text without control characters). 0, or -EINVAL with a
 * message naming what is wrong (nothing recorded). */
int store_writer_describe(struct store_writer *w, const char *source, const char *description);

/* store_writer_describe's check alone (NULL is ""): 0, or -EINVAL with a message. */
int store_description_check(const char *source, const char *description);

/* Record page @pindex (in increasing order) with the 4 KiB at @data: a page equal to the
 * parent's is left out (readers find it in the parent), zero pages become zero entries,
 * known bytes are shared, new bytes are appended to the pack. */
int store_writer_add(struct store_writer *w, uint64_t pindex, const void *data);

/* Make the snapshot durable and visible (see crash safety). Frees @w either way. */
int store_writer_commit(struct store_writer *w);

/* Give up: nothing becomes visible; the partial pack is removed. */
void store_writer_abort(struct store_writer *w);

struct store_write_stats {
	uint64_t unchanged;  /* pages given with the parent's bytes: not listed (fall through to it) */
	uint64_t pages;      /* pages listed: the others given */
	uint64_t zero;       /* of which all zero */
	uint64_t shared;     /* of which already stored (dedup hits) */
	uint64_t stored;     /* of which appended to the pack */
	uint64_t collisions; /* hash matches with other bytes */
	/* Known after commit (store_writer_commit_stats), 0 before: */
	uint64_t entries;    /* entries of the manifest written (more than pages when flattened) */
	bool base;           /* it reads through nothing: no parent, or complete (a long chain cut) */
};
void store_writer_stats(const struct store_writer *w, struct store_write_stats *out);

/* store_writer_commit, and when it succeeds @out (if not NULL) gets the writer's stats as
 * committed, entries and base included. */
int store_writer_commit_stats(struct store_writer *w, struct store_write_stats *out);

/*
 * Open snapshot @name for reading: its manifest and its parents' (checked up to their
 * entries, which are checked chunk by chunk as pages are looked up), and the packs they
 * use (mapped read-only: they stay readable after a gc removes them). Takes the store's
 * lock shared while it opens. Work in proportion to the chain and its packs, not to the
 * pages. 0 and *out, or -errno with a message naming the damaged or missing file.
 */
int store_snapshot_open(struct store *s, const char *name, struct store_snapshot **out);

/* store_snapshot_open that also pins the snapshot for @holder ("VM 'web' (pid 42)") while it
 * is open: store_delete refuses to delete it, naming @holder, until store_snapshot_close
 * (or the end of this process and of any child it forked). A store this user cannot write
 * is opened without a pin. Same results as store_snapshot_open, and -errno when the pin
 * cannot be made. */
int store_snapshot_open_pinned(struct store *s, const char *name, const char *holder, struct store_snapshot **out);
void store_snapshot_close(struct store_snapshot *snap);

/* The bytes of page @pindex: *data points into a mapped pack (or, for a store whose packs
 * are read rather than mapped, into this thread's buffer, good until its next call), or is
 * NULL for a zero page (also for pages beyond the snapshot); *hash receives the recorded
 * XXH3-64 (0 for zero pages). O(depth * log entries); the first lookup in a chunk of
 * entries checks it. 0, or -EIO with a message naming the manifest when a chunk it needs
 * is damaged or it points outside its packs. Callable from several threads at once. */
int store_snapshot_page(const struct store_snapshot *snap, uint64_t pindex, const void **data, uint64_t *hash);

/* store_snapshot_page, the page copied into @buf (4096 bytes; zeroed for a zero page,
 * *stored then false). The store's files are mapped: one truncated while in use (damage
 * from outside) makes reading the lost part raise SIGBUS; here that is caught and the read
 * fails: -EIO with a message naming the store. Installs a SIGBUS handler for the
 * process at the first call (a SIGBUS outside such a read keeps its default action). */
int store_snapshot_copy(const struct store_snapshot *snap, uint64_t pindex, void *buf, bool *stored, uint64_t *hash);

/* Pages [@first, @first + @n) are about to be read: where the store reads packs rather
 * than mapping them (RADOS), they are fetched now, a run of each pack's slots in one read,
 * and kept for the page calls that follow (a cache of STORE_PREFETCH_PAGES pages per
 * snapshot). Advice: what cannot be fetched is read, or fails, page by page later. */
#define STORE_PREFETCH_PAGES 1024u
void store_snapshot_prefetch(struct store_snapshot *snap, uint64_t first, uint64_t n);

/* Read packs a page (or a run) at a time instead of mapping them, as a RADOS store does:
 * for tests of that path on a folder. */
void store_set_pack_reads(struct store *s);

uint64_t store_snapshot_page_count(const struct store_snapshot *snap);
const void *store_snapshot_state(const struct store_snapshot *snap, size_t *len);
const char *store_snapshot_parent(const struct store_snapshot *snap);
/* Number of manifests from this snapshot to its root, this one included. */
unsigned store_snapshot_depth(const struct store_snapshot *snap);

#define STORE_IDENTITY_BYTES 16

/* What the snapshot's pages are, in 16 bytes: equal for two snapshots (of any stores)
 * whose every page is recorded with the same hash, different otherwise (up to the
 * collisions of XXH3-64 over the manifests' chunk tables). Work in proportion to the
 * chain's depth. 0 or -ENOMEM with a message. */
int store_snapshot_identity(const struct store_snapshot *snap, uint8_t out[STORE_IDENTITY_BYTES]);

struct store_info {
	char name[STORE_NAME_MAX + 1];
	char parent[STORE_NAME_MAX + 1];
	char source[STORE_SOURCE_MAX + 1];           /* the VM it was taken of, or "" */
	char description[STORE_DESCRIPTION_MAX + 1]; /* its taker's words, or "" */
	uint64_t created_ns;   /* CLOCK_REALTIME at commit */
	uint64_t size;         /* guest memory described: page_count * 4 KiB */
	uint64_t entries;      /* pages listed in the manifest */
	uint64_t unique_bytes; /* pack bytes referenced by this snapshot only */
	uint64_t shared_bytes; /* pack bytes referenced by this and other snapshots */
	uint64_t manifest_bytes;
};

/* List the snapshots (sorted by name) through @fn. 0 or -errno. */
int store_list(struct store *s, void (*fn)(void *arg, const struct store_info *info), void *arg);

/*
 * Re-hash every page every manifest refers to and check every manifest. Each problem is
 * reported through @fn as one line; leftovers (unreferenced packs, temporary manifests)
 * are reported as notes. Returns the number of problems (0: the store is valid), or -errno.
 */
struct store_verify_stats {
	uint64_t snapshots, pages_checked, packs, leftovers;
};
long store_verify(struct store *s, void (*fn)(void *arg, bool problem, const char *line), void *arg,
		  struct store_verify_stats *stats);

/*
 * Remove pages no snapshot refers to: delete unreferenced packs and leftovers (and the
 * pins of VMs that are gone), rewrite packs that are partly referenced. Needs the store to itself (fails with -EBUSY while a
 * writer is active). @freed receives the bytes given back. 0 or -errno.
 */
int store_gc(struct store *s, uint64_t *freed);

/*
 * Remove snapshot @name. Each delta snapshot naming it as parent takes it in first: that
 * manifest is rewritten (aside, then renamed over it) as its own entries laid over @name's,
 * naming @name's parent (complete, or without parent, where @name was), so that it reads
 * every page as before; no page bytes are copied, its own children are untouched, and a VM
 * that has it open reads on from what it mapped. @name's manifest goes only once every
 * child is rewritten and durable: a crash at any moment leaves every snapshot readable.
 * Refused, with nothing changed, while a live VM pins @name (restored from it, or its last
 * snapshot: store_snapshot_open_pinned; -EBUSY naming the VM), when its or a child's entries
 * are damaged (-EIO), or when there is no memory for the merge (-ENOMEM). A write failing
 * midway keeps @name; the children rewritten by then read the same. Takes the store lock
 * alone (waits out writers, at most STORE_LOCK_WAIT_S). Its pages stay until gc. 0 or -errno
 * with a message.
 */
int store_delete(struct store *s, const char *name);

/* Total bytes of packs and manifests (what the store costs on disk). */
int store_disk_usage(struct store *s, uint64_t *pack_bytes, uint64_t *manifest_bytes);

/* For tests and the fuzzer: recompute, in the manifest image @image of @len bytes, every
 * checksum its header's counts locate, so that damage made on purpose reaches the checks
 * behind them. 0, or -EINVAL when the counts do not fit @len. */
int store_manifest_seal(void *image, size_t len);

#endif

/*
 * A working set: the guest-physical pages a restored guest brought in, in the order it
 * first touched them. `vmm restore --record-working-set FILE` writes one when the VM ends;
 * `vmm restore --prefetch FILE` brings those pages in ahead of the guest on a later
 * restore (guest_memory_prefetch_start).
 *
 * The file (little-endian): the 8 bytes "VMMWSET1", the guest's RAM size in bytes (u64),
 * the number of pages (u64), then that many guest-physical page numbers (u64, address /
 * 4096). A file read from disk is untrusted: working_set_parse checks every field.
 */
#ifndef VMM_WORKING_SET_H
#define VMM_WORKING_SET_H

#include <stddef.h>
#include <stdint.h>

#define WORKING_SET_MAGIC "VMMWSET1"
#define WORKING_SET_HEADER 24u

struct working_set {
	uint64_t ram_size; /* bytes of RAM of the guest it was recorded in */
	uint64_t count;    /* pages listed */
	uint64_t *pages;   /* guest-physical page numbers, first touch first */
};

/* Parse [buf, buf + len): 0 and @ws (working_set_free it), or -EINVAL with a message
 * saying what is wrong (without the file's name). The RAM size is a non-zero multiple of
 * 4096, there are at most RAM size / 4096 pages and none lies at or above 2^52 bytes;
 * whether they lie in a guest's RAM is for its user to check. */
int working_set_parse(const void *buf, size_t len, struct working_set *ws);

/* Read and parse the file at @path: 0 and @ws, or -errno with a message naming it. */
int working_set_read(const char *path, struct working_set *ws);

/* Write @ws to @path whole or not at all (a temporary file, fsync, rename): 0 or -errno
 * with a message naming it. */
int working_set_write(const char *path, const struct working_set *ws);

/* Whether working_set_write can write @path (a temporary file beside it is made and
 * removed), so that a run recording one can fail before it starts. 0 or -errno with a
 * message naming it. */
int working_set_check_writable(const char *path);

void working_set_free(struct working_set *ws);

#endif

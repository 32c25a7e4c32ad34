/* Whole-file reads and whole writes with the retries and messages every reader of a
 * user's file needs. */
#ifndef VMM_FILE_IO_H
#define VMM_FILE_IO_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* Flags of file_open_regular beyond open(2)'s. */
#define FILE_NONEMPTY 0x1 /* refuse an empty file */

/* Write the @n bytes at @p to @fd, through short writes and EINTR. 0 or -errno (-EIO when
 * the file takes nothing); no message. */
int file_write_all(int fd, const void *p, size_t n);

/*
 * Open @name (relative to @dir, or AT_FDCWD) with open(2) @flags and @mode (O_CLOEXEC added)
 * and make sure it is a regular file before anyone reads it: it is opened O_NONBLOCK, so a
 * FIFO or a device neither blocks the open nor is read, then checked with fstat; O_NONBLOCK
 * is cleared again. @opts: FILE_NONEMPTY. @what and @shown name the file in messages
 * ("guest image", the user's path). Returns the fd, or -errno with a message: cannot open,
 * not a regular file (-EINVAL), empty (-EINVAL).
 */
int file_open_regular(int dir, const char *name, int flags, mode_t mode, unsigned opts, const char *what,
		      const char *shown);

/* Read the regular file at @path into a new buffer (*data, free() it) of *size bytes; at
 * most @max bytes. @what names the file in messages ("guest image"). 0, or -errno with a
 * message: cannot open, not a regular file, empty, larger than @max, no memory, cannot read
 * or shrank while read; *data is untouched then. */
int file_read_all(const char *path, const char *what, uint64_t max, void **data, size_t *size);

#endif

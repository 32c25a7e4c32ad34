/* Whole-file reads and whole writes with the retries and messages every reader of a
 * user's file needs. */
#ifndef VMM_FILE_IO_H
#define VMM_FILE_IO_H

#include <stddef.h>
#include <stdint.h>

/* Write the @n bytes at @p to @fd, through short writes and EINTR. 0 or -errno (-EIO when
 * the file takes nothing); no message. */
int file_write_all(int fd, const void *p, size_t n);

/* Read the regular file at @path into a new buffer (*data, free() it) of *size bytes; at
 * most @max bytes. @what names the file in messages ("guest image"). 0, or -errno with a
 * message: cannot open, not a regular file, larger than @max, no memory, cannot read or
 * shrank while read. */
int file_read_all(const char *path, const char *what, uint64_t max, void **data, size_t *size);

#endif

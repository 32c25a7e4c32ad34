/*
 * One error message per thread, set where an error is found and printed once by the CLI.
 * Library functions return -errno (or -1 for bad input with no errno) and call error_set
 * to say what was wrong in words a user can act on.
 */
#ifndef VMM_ERROR_H
#define VMM_ERROR_H

#include <stdarg.h>

/* Record a message (printf format) for this thread; returns -errnum for `return error_set(...)`.
 * @errnum: a positive errno value, or 0 when the cause is bad input (returns -EINVAL). */
int error_set(int errnum, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Like error_set, appending ": strerror(errnum)". */
int error_set_errno(int errnum, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* The last message recorded on this thread ("" when none). */
const char *error_message(void);

/* Forget the message of this thread. */
void error_clear(void);

#endif

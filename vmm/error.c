#include "vmm/error.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

static _Thread_local char error_buf[512];

static int error_vset(int errnum, int with_strerror, const char *fmt, va_list ap)
{
	/* Formatted aside first: a message may quote the one it replaces (error_message()). */
	char buf[sizeof(error_buf)];
	int n = vsnprintf(buf, sizeof(buf), fmt, ap);
	if (with_strerror && n >= 0 && (size_t)n < sizeof(buf))
		snprintf(buf + n, sizeof(buf) - (size_t)n, ": %s", strerror(errnum));
	memcpy(error_buf, buf, sizeof(buf));
	return errnum > 0 ? -errnum : -EINVAL;
}

int error_set(int errnum, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int r = error_vset(errnum, 0, fmt, ap);
	va_end(ap);
	return r;
}

int error_set_errno(int errnum, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int r = error_vset(errnum, 1, fmt, ap);
	va_end(ap);
	return r;
}

const char *error_message(void)
{
	return error_buf;
}

void error_clear(void)
{
	error_buf[0] = '\0';
}

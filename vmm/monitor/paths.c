/* Where monitor sockets live, and which VM names may name one. */
#include "vmm/monitor/monitor_impl.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "vmm/error.h"

/* ---- socket paths ------------------------------------------------------------------------- */

int monitor_name_check(const char *name)
{
	size_t len = strlen(name);
	if (len == 0)
		return error_set(0, "a VM name cannot be empty");
	if (len > MONITOR_NAME_MAX)
		return error_set(0, "VM name '%.*s...' is too long (%zu characters; at most %d)", 16, name, len,
				 MONITOR_NAME_MAX);
	if (name[0] == '.')
		return error_set(0, "VM name '%s' starts with a dot", name);
	for (const char *p = name; *p; p++) {
		char ch = *p;
		bool ok = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') || ch == '-' ||
			  ch == '_' || ch == '.';
		if (!ok)
			return error_set(0, "VM name '%s' has a character other than letters, digits, '-', '_' and '.'",
					 name);
	}
	return 0;
}

int monitor_runtime_dir(char *buf, size_t size, bool create)
{
	const char *xdg = getenv("XDG_RUNTIME_DIR");
	int n = xdg && xdg[0] == '/' ? snprintf(buf, size, "%s/vmm", xdg) : snprintf(buf, size, "/run/vmm");
	if (n < 0 || (size_t)n >= size)
		return error_set(ENAMETOOLONG, "the runtime directory $XDG_RUNTIME_DIR/vmm is too long");
	if (create && mkdir(buf, 0700) != 0 && errno != EEXIST)
		return error_set_errno(errno, "cannot create the runtime directory %s", buf);
	return 0;
}

int monitor_socket_path(const char *name, char *buf, size_t size, bool create)
{
	int r = monitor_name_check(name);
	if (r)
		return r;
	char dir[MONITOR_SUN_PATH_MAX];
	r = monitor_runtime_dir(dir, sizeof(dir), create);
	if (r)
		return r;
	int n = snprintf(buf, size, "%s/%s.sock", dir, name);
	if (n < 0 || (size_t)n >= size || (size_t)n >= MONITOR_SUN_PATH_MAX)
		return error_set(ENAMETOOLONG, "the monitor socket path %s/%s.sock is too long for a unix socket", dir,
				 name);
	return 0;
}

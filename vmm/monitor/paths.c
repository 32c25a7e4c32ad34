/* Where monitor sockets live, and which VM names may name one. */
#include "vmm/monitor/monitor_impl.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

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
	/* NAME.export-N.sock is an exported range's socket (monitor_export_file), never a VM's. */
	char file[MONITOR_NAME_MAX + 8];
	snprintf(file, sizeof(file), "%s.sock", name);
	if (monitor_export_file(file))
		return error_set(0, "VM name '%s' ends as the socket of an exported range does (.export-N)", name);
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

int monitor_system_dir(char *buf, size_t size)
{
	const char *over = getenv("VMM_SYSTEM_RUNDIR");
	int n = over && over[0] == '/' ? snprintf(buf, size, "%s", over) : snprintf(buf, size, "/run/vmm");
	if (n < 0 || (size_t)n >= size)
		return error_set(ENAMETOOLONG, "the system runtime directory $VMM_SYSTEM_RUNDIR is too long");
	return 0;
}

int monitor_runtime_dir(char *buf, size_t size, bool create)
{
	const char *xdg = getenv("XDG_RUNTIME_DIR");
	if (!(xdg && xdg[0] == '/')) {
		int r = monitor_system_dir(buf, size);
		if (r)
			return r;
	} else {
		int n = snprintf(buf, size, "%s/vmm", xdg);
		if (n < 0 || (size_t)n >= size)
			return error_set(ENAMETOOLONG, "the runtime directory $XDG_RUNTIME_DIR/vmm is too long");
	}
	if (create && mkdir(buf, 0700) != 0 && errno != EEXIST)
		return error_set_errno(errno, "cannot create the runtime directory %s", buf);
	return 0;
}

int monitor_search_dirs(char dirs[MONITOR_SEARCH_DIRS][MONITOR_DIR_MAX], unsigned *n)
{
	*n = 0;
	int r = monitor_runtime_dir(dirs[0], MONITOR_DIR_MAX, false);
	if (!r)
		r = monitor_system_dir(dirs[1], MONITOR_DIR_MAX);
	if (r)
		return r;
	*n = strcmp(dirs[0], dirs[1]) == 0 ? 1 : 2;
	return 0;
}

bool monitor_socket_visible(const struct stat *st)
{
	/* /run/vmm is shared: a user takes only the sockets of their own VMs for theirs,
	 * root everyone's. */
	return S_ISSOCK(st->st_mode) && (geteuid() == 0 || st->st_uid == geteuid());
}

int monitor_socket_find(const char *name, char *buf, size_t size)
{
	int r = monitor_name_check(name);
	if (r)
		return r;
	char dirs[MONITOR_SEARCH_DIRS][MONITOR_DIR_MAX];
	unsigned n;
	r = monitor_search_dirs(dirs, &n);
	if (r)
		return r;
	for (unsigned i = 0; i < n; i++) {
		struct stat st;
		int len = snprintf(buf, size, "%s/%s.sock", dirs[i], name);
		if (len >= 0 && (size_t)len < size && (size_t)len < MONITOR_SUN_PATH_MAX && lstat(buf, &st) == 0 &&
		    monitor_socket_visible(&st))
			return 0;
	}
	/* Nowhere: the default path, for the caller's "no socket at" message. */
	return monitor_socket_path(name, buf, size, false);
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

bool monitor_export_file(const char *file)
{
	size_t len = strlen(file);
	const char *tag = ".export-";
	if (len <= 5 || strcmp(file + len - 5, ".sock") != 0)
		return false;
	const char *digits = file + len - 5;
	while (digits > file && digits[-1] >= '0' && digits[-1] <= '9')
		digits--;
	size_t taglen = strlen(tag);
	return digits < file + len - 5 && (size_t)(digits - file) > taglen &&
	       strncmp(digits - taglen, tag, taglen) == 0;
}

int monitor_export_path(const char *monitor_sock, unsigned n, char *buf, size_t size)
{
	size_t len = strlen(monitor_sock);
	if (len > 5 && strcmp(monitor_sock + len - 5, ".sock") == 0)
		len -= 5;
	int w = snprintf(buf, size, "%.*s.export-%u.sock", (int)len, monitor_sock, n);
	if (w < 0 || (size_t)w >= size || (size_t)w >= MONITOR_SUN_PATH_MAX)
		return error_set(ENAMETOOLONG, "the socket %.*s.export-%u.sock is too long for a unix socket", (int)len,
				 monitor_sock, n);
	return 0;
}

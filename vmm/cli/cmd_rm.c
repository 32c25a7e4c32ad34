/* vmm rm: remove what dead VMs left behind (their stale sockets, and their logs). */
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "vmm/cli/cmd_client.h"
#include "vmm/devices/console.h"
#include "vmm/error.h"
#include "vmm/monitor/monitor.h"
#include "vmm/vm.h"

#define RM_USAGE "vmm rm NAME... | vmm rm --stale"
#define RM_TIMEOUT_MS 2000 /* as ps: a VM that answers late is alive all the same */

enum { RM_OPT_STALE = 1, RM_OPT_HELP };

static const struct cli_option rm_options[] = {
	{"stale", 0, NULL, RM_OPT_STALE,
	 "remove every stale VM vmm ps lists, and the logs of VMs that ended (instead of NAME...)"},
	{"help", 'h', NULL, RM_OPT_HELP, "show this help"},
	{0},
};

static void rm_help(FILE *f)
{
	fprintf(f, "usage: " RM_USAGE "\n"
		   "Remove what a VM whose vmm process died left behind: its monitor socket, which\n"
		   "nothing listens on any more (vmm ps shows it as 'stale'), the sockets of the\n"
		   "ranges it exported (NAME.export-N.sock), and its console log\n"
		   "beside it (NAME.log, NAME.log.1) when there is one; of a VM that ended cleanly\n"
		   "(its socket gone), the log that vmm logs still shows. A VM that is still running\n"
		   "is not touched (end it with vmm quit NAME); the other NAMEs are still removed.\n"
		   "Names are looked up as by the other verbs: in $XDG_RUNTIME_DIR/vmm, then in\n"
		   "/run/vmm. Prints nothing when all went well.\n\n");
	cli_print_options(f, rm_options);
	fprintf(f, "\nExit status: 0 when every NAME was removed (with --stale: also when there was\n"
		   "nothing to remove); 125 bad arguments, or a NAME unknown, running, or not removable.\n");
}

/* Remove the console log (NAME.log, NAME.log.1) beside the socket @path. 0, or the exit
 * status after printing. */
static int rm_log(const char *path)
{
	char log[PATH_MAX + 2];
	if (console_log_path(path, log, sizeof(log) - 2) != 0)
		return 0;
	if (unlink(log) != 0 && errno != ENOENT)
		return cmd_client_fail("rm", error_set_errno(errno, "cannot remove %s", log));
	strcat(log, ".1");
	if (unlink(log) != 0 && errno != ENOENT)
		return cmd_client_fail("rm", error_set_errno(errno, "cannot remove %s", log));
	return 0;
}

/* Remove the sockets of the ranges the dead VM whose socket was @path exported
 * (vm-export's NAME.export-N.sock beside it): nothing serves them any more. 0, or the exit
 * status after printing. */
static int rm_exports(const char *path)
{
	char dir[PATH_MAX], prefix[PATH_MAX], file[PATH_MAX * 2];
	const char *slash = strrchr(path, '/'), *base = slash ? slash + 1 : path;
	size_t len = strlen(base);
	if (len <= 5 || strcmp(base + len - 5, ".sock") != 0)
		return 0;
	snprintf(dir, sizeof(dir), "%.*s", slash ? (int)(slash - path) : 1, slash ? path : ".");
	snprintf(prefix, sizeof(prefix), "%.*s.export-", (int)(len - 5), base);
	DIR *d = opendir(dir);
	if (!d)
		return 0;
	int r = 0;
	for (struct dirent *e; !r && (e = readdir(d));) {
		if (strncmp(e->d_name, prefix, strlen(prefix)) != 0 || !monitor_export_file(e->d_name))
			continue;
		snprintf(file, sizeof(file), "%s/%s", dir, e->d_name);
		if (unlink(file) != 0 && errno != ENOENT)
			r = cmd_client_fail("rm", error_set_errno(errno, "cannot remove %s", file));
	}
	closedir(d);
	return r;
}

/* Whether a console log is beside the socket @path. */
static bool rm_has_log(const char *path)
{
	char log[PATH_MAX];
	return console_log_path(path, log, sizeof(log)) == 0 && access(log, F_OK) == 0;
}

/*
 * Remove the VM @name whose socket is at @path if it is stale, or its log when it ended
 * cleanly (its socket gone). @quiet (--stale): a VM
 * that is not stale is passed over without a word. 0, or the exit status after printing.
 */
static int rm_one(const char *name, const char *path, bool quiet)
{
	struct stat before, now;
	if (lstat(path, &before) != 0)
		before.st_ino = 0; /* qmp_client_open says what is missing */
	struct qmp_client *c;
	int r = qmp_client_open(&c, name, path, RM_TIMEOUT_MS);
	if (r == 0) {
		qmp_client_close(c);
		if (quiet)
			return 0;
		fprintf(stderr, "vmm rm: VM '%s' is running; vmm quit %s first\n", name, name);
		return VM_EXIT_VMM_ERROR;
	}
	if (r == -ENOENT && rm_has_log(path))
		return rm_log(path);
	if (r != -ECONNREFUSED)
		return quiet ? 0 : cmd_client_fail("rm", r);
	/* A VM of the same name starting meanwhile replaces the stale socket by its own (a new
	 * file): only the file found stale is removed. */
	if (lstat(path, &now) != 0 || now.st_dev != before.st_dev || now.st_ino != before.st_ino)
		return 0;
	if (unlink(path) != 0 && errno != ENOENT)
		return cmd_client_fail("rm", error_set_errno(errno, "cannot remove %s", path));
	int r2 = rm_exports(path);
	return r2 ? r2 : rm_log(path);
}

/* --stale's second half: the logs of VMs that ended (no socket beside them) in @dir, the
 * caller's own only. 0, or the exit status after printing. */
static int rm_ended_logs(const char *dir)
{
	DIR *d = opendir(dir);
	if (!d)
		return 0;
	int status = 0;
	struct dirent *e;
	while ((e = readdir(d))) {
		size_t len = strlen(e->d_name);
		char log[PATH_MAX], sock[PATH_MAX];
		struct stat st;
		if (len <= 4 || strcmp(e->d_name + len - 4, ".log") != 0 ||
		    (size_t)snprintf(log, sizeof(log), "%s/%s", dir, e->d_name) >= sizeof(log) ||
		    (size_t)snprintf(sock, sizeof(sock), "%s/%.*s.sock", dir, (int)(len - 4), e->d_name) >= sizeof(sock))
			continue;
		if (lstat(log, &st) != 0 || !S_ISREG(st.st_mode) || (geteuid() != 0 && st.st_uid != geteuid()) ||
		    lstat(sock, &st) == 0)
			continue;
		int s = rm_log(sock);
		status = s ? s : status;
	}
	closedir(d);
	return status;
}

int cmd_rm(int argc, char **argv)
{
	struct cli_parser p;
	cli_init(&p, "rm", rm_options, argc, argv, 1);
	const char *v, *names[argc > 0 ? argc : 1];
	int id, n = 0;
	bool stale = false;
	while ((id = cli_next(&p, &v)) != CLI_END) {
		switch (id) {
		case CLI_ERROR:
			fprintf(stderr, "%s\n", error_message());
			return VM_EXIT_VMM_ERROR;
		case CLI_POSITIONAL:
			names[n++] = v;
			break;
		case RM_OPT_STALE:
			stale = true;
			break;
		case RM_OPT_HELP:
			rm_help(stdout);
			return 0;
		}
	}
	if (stale == (n > 0)) {
		fprintf(stderr, "vmm rm: %s (usage: " RM_USAGE ")\n",
			stale ? "NAMEs or --stale, not both" : "no VM NAME given");
		return VM_EXIT_VMM_ERROR;
	}
	int status = 0;
	if (stale) {
		struct cmd_client_vm *vms;
		size_t nvms;
		int r = cmd_client_list_vms(&vms, &nvms);
		if (r)
			return cmd_client_fail("rm", r);
		for (size_t i = 0; i < nvms; i++) {
			int s = rm_one(vms[i].name, vms[i].path, true);
			status = s ? s : status;
		}
		cmd_client_free_vms(vms, nvms);
		char dirs[MONITOR_SEARCH_DIRS][MONITOR_DIR_MAX];
		unsigned ndirs;
		if (monitor_search_dirs(dirs, &ndirs) != 0)
			return cmd_client_fail("rm", -EINVAL);
		for (unsigned i = 0; i < ndirs; i++) {
			int s = rm_ended_logs(dirs[i]);
			status = s ? s : status;
		}
		return status;
	}
	/* Each in turn: one refused is named on its line and the others still go. */
	for (int i = 0; i < n; i++) {
		char path[108];
		int r = monitor_socket_find(names[i], path, sizeof(path));
		int s = r ? cmd_client_fail("rm", r) : rm_one(names[i], path, false);
		status = s ? s : status;
	}
	return status;
}

/*
 * make install / make uninstall (what lands where, with which mode, and that nothing else
 * does), and the bash completion script tools/vmm-completion.bash, run by a plain bash.
 *
 * make runs on the source tree the runner runs in (the repository root), into a staging
 * root of its own (DESTDIR) with PREFIX=/usr; the build is already made, so install only
 * copies. Completion runs as bash would run it at a <TAB>: the script sourced, COMP_WORDS
 * and COMP_CWORD set, _vmm called, COMPREPLY printed one word a line. Its environment is
 * only what each test gives it (env -i), so the user's own VMs and store never show.
 */
#include <ftw.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "harness.h"
#include "spawn.h"

static char tmp[64];		/* the test's scratch folder */
static char destdir[128];	/* tmp/dest: DESTDIR */
static char srcdir[PATH_MAX];	/* the source tree: the runner's working directory */

#define SCRIPT "tools/vmm-completion.bash"

/* What make install lays out under DESTDIR (PREFIX=/usr), in the order found_files sorts. */
static const struct {
	const char *path;
	mode_t mode;
} installed[] = {
	{"usr/bin/vmm", 0755},
	{"usr/bin/vmm-coherent-pager", 0755},
	{"usr/bin/vmm-pager-server", 0755},
	{"usr/bin/vmm-rados", 0755},
	{"usr/share/bash-completion/completions/vmm", 0644},
	{"usr/share/man/man1/vmm.1", 0644},
};
#define NINSTALLED (sizeof(installed) / sizeof(installed[0]))

static void setup(void)
{
	strcpy(tmp, "/tmp/vmm-install-XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(tmp));
	snprintf(destdir, sizeof(destdir), "%s/dest", tmp);
	ck_assert_ptr_nonnull(getcwd(srcdir, sizeof(srcdir)));
}

static void teardown(void)
{
	char cmd[128];
	snprintf(cmd, sizeof(cmd), "rm -rf %s", tmp);
	ck_assert_int_eq(system(cmd), 0);
}

/* make -C SRCDIR TARGET DESTDIR=destdir PREFIX=/usr, without the make that may be running
 * the tests (its jobserver and level are not ours); asserts status 0 and returns stdout
 * (free it). */
static char *make(const char *target)
{
	char dest_arg[160];
	snprintf(dest_arg, sizeof(dest_arg), "DESTDIR=%s", destdir);
	char *argv[] = {"/usr/bin/env", "-u", "MAKEFLAGS", "-u", "MFLAGS", "-u", "MAKELEVEL", "make",
			"--no-print-directory", "-C", srcdir, (char *)target, dest_arg, "PREFIX=/usr", NULL};
	struct spawn_result r;
	ck_assert_int_eq(spawn_run(&r, 300, argv), 0);
	ck_assert_msg(r.status == 0, "make %s: status %d\n%s%s", target, r.status, r.out, r.err);
	free(r.err);
	return r.out;
}

/* The regular files under destdir (path relative to it, permission bits), by path. */
struct found_file {
	char path[256];
	mode_t mode;
};
static struct found_file found[16];
static size_t nfound;

static int found_one(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
	(void)ftw;
	if (type != FTW_F)
		return 0;
	ck_assert_uint_lt(nfound, 16);
	snprintf(found[nfound].path, sizeof(found[0].path), "%s", path + strlen(destdir) + 1);
	found[nfound++].mode = st->st_mode & 07777;
	return 0;
}

static int by_path(const void *a, const void *b)
{
	return strcmp(((const struct found_file *)a)->path, ((const struct found_file *)b)->path);
}

static void find_files(void)
{
	nfound = 0;
	ck_assert_int_eq(nftw(destdir, found_one, 16, FTW_PHYS), 0);
	qsort(found, nfound, sizeof(found[0]), by_path);
}

START_TEST(install_lays_out_the_five_files_with_their_modes_and_only_copies)
{
	char *out = make("install");
	find_files();
	ck_assert_uint_eq(nfound, NINSTALLED);
	for (size_t i = 0; i < NINSTALLED; i++) {
		ck_assert_str_eq(found[i].path, installed[i].path);
		ck_assert_msg(found[i].mode == installed[i].mode, "%s: mode %o, not %o", found[i].path,
			      (unsigned)found[i].mode, (unsigned)installed[i].mode);
	}
	/* The build is made before the tests run (make test, or make all build/run_tests):
	 * install must not compile or link again. A stale build fails here. */
	for (char *line = strtok(out, "\n"); line; line = strtok(NULL, "\n"))
		ck_assert_msg(strncmp(line, "install ", 8) == 0, "make install did more than copy: '%s'", line);
	free(out);
}
END_TEST

START_TEST(uninstall_removes_exactly_the_installed_files)
{
	free(make("install"));
	/* Someone else's file beside ours stays. */
	char other[192];
	snprintf(other, sizeof(other), "%s/usr/bin/other", destdir);
	FILE *f = fopen(other, "w");
	ck_assert_ptr_nonnull(f);
	fclose(f);

	free(make("uninstall"));
	find_files();
	ck_assert_uint_eq(nfound, 1);
	ck_assert_str_eq(found[0].path, "usr/bin/other");
	/* Twice is not an error. */
	free(make("uninstall"));
}
END_TEST

START_TEST(installed_vmm_and_its_helpers_run)
{
	free(make("install"));
	const char *names[] = {"vmm", "vmm-pager-server", "vmm-coherent-pager", "vmm-rados"};
	const char *usage[] = {"usage: vmm ", "usage: pager_server ", "usage: coherent_pager ", "usage: vmm-rados"};
	for (int i = 0; i < 4; i++) {
		char bin[192];
		snprintf(bin, sizeof(bin), "%s/usr/bin/%s", destdir, names[i]);
		char *argv[] = {bin, "--help", NULL};
		struct spawn_result r;
		ck_assert_int_eq(spawn_run(&r, 10, argv), 0);
		ck_assert_msg(r.status == 0, "%s --help: status %d: %s", names[i], r.status, r.err);
		ck_assert_msg(strstr(r.out, usage[i]), "%s --help printed '%s'", names[i], r.out);
		spawn_free(&r);
	}
}
END_TEST

/*
 * COMPREPLY, one word a line, for the command line @line completed at its end ("vmm stop "
 * completes an empty word after stop), in an environment of PATH=@path, HOME=tmp and the
 * NAME=VALUE strings of @env (NULL-terminated). Free the result.
 */
static char *complete(const char *path, const char *const *env, const char *line)
{
	char path_var[PATH_MAX + 16], home_var[96], script[PATH_MAX + 32];
	snprintf(path_var, sizeof(path_var), "PATH=%s", path);
	snprintf(home_var, sizeof(home_var), "HOME=%s", tmp);
	snprintf(script, sizeof(script), "%s/%s", srcdir, SCRIPT);
	char *argv[64], words[256];
	int n = 0;
	argv[n++] = "/usr/bin/env";
	argv[n++] = "-i";
	argv[n++] = path_var;
	argv[n++] = home_var;
	for (; env && *env; env++)
		argv[n++] = (char *)*env;
	argv[n++] = "bash";
	argv[n++] = "-c";
	argv[n++] = "source \"$1\" || exit 1; shift; COMP_WORDS=(\"$@\"); COMP_CWORD=$(($# - 1)); "
		    "_vmm || exit 1; printf '%s\\n' \"${COMPREPLY[@]}\"";
	argv[n++] = "bash";
	argv[n++] = script;
	/* The words, split at each space: a trailing space leaves an empty last word. */
	snprintf(words, sizeof(words), "%s", line);
	for (char *w = words, *sp;; w = sp + 1) {
		ck_assert_int_lt(n, 62);
		argv[n++] = w;
		if (!(sp = strchr(w, ' ')))
			break;
		*sp = '\0';
	}
	argv[n] = NULL;
	struct spawn_result r;
	ck_assert_int_eq(spawn_run(&r, 10, argv), 0);
	ck_assert_msg(r.status == 0, "completing '%s': status %d: %s", line, r.status, r.err);
	ck_assert_msg(r.err[0] == '\0', "completing '%s' wrote to stderr: %s", line, r.err);
	free(r.err);
	return r.out;
}

/* PATH with the folder of the vmm under test first: completion reads its --help texts. */
static const char *path_with_vmm(void)
{
	static char path[PATH_MAX + 32];
	char vmm[PATH_MAX];
	ck_assert_ptr_nonnull(realpath(harness_build_path("vmm"), vmm));
	*strrchr(vmm, '/') = '\0';
	snprintf(path, sizeof(path), "%s:/usr/bin:/bin", vmm);
	return path;
}

#define EXPECT_COMPLETION(path, env, line, want)                                               \
	do {                                                                                   \
		char *got_ = complete((path), (env), (line));                                  \
		ck_assert_msg(strcmp(got_, (want)) == 0, "'%s<TAB>' gave\n%s\nnot\n%s", (line), \
			      got_, (want));                                                   \
		free(got_);                                                                    \
	} while (0)

START_TEST(completion_of_a_verb_from_vmm_help_and_without_vmm)
{
	EXPECT_COMPLETION(path_with_vmm(), NULL, "vmm st", "stats\nstop\nstore\n");
	/* Not on PATH (the built-in list), and a word that is none of them. */
	EXPECT_COMPLETION("/usr/bin:/bin", NULL, "vmm st", "stats\nstop\nstore\n");
	EXPECT_COMPLETION("/usr/bin:/bin", NULL, "vmm x", "\n");
	EXPECT_COMPLETION(path_with_vmm(), NULL, "vmm help sn", "snapshot\n");
	EXPECT_COMPLETION(path_with_vmm(), NULL, "vmm store ", "ls\nverify\ngc\nrm\n");
}
END_TEST

/* Make an empty file @dir/@name (a socket or a snapshot, as far as completion looks). */
static void touch(const char *dir, const char *name)
{
	char p[256];
	snprintf(p, sizeof(p), "%s/%s", dir, name);
	FILE *f = fopen(p, "w");
	ck_assert_ptr_nonnull(f);
	fclose(f);
}

START_TEST(completion_of_a_vm_name_lists_the_sockets_of_the_runtime_dir)
{
	char run[96], env[128];
	snprintf(run, sizeof(run), "%s/vmm", tmp);
	ck_assert_int_eq(mkdir(run, 0700), 0);
	touch(run, "a.sock");
	touch(run, "b.sock");
	touch(run, "notes.txt");
	snprintf(env, sizeof(env), "XDG_RUNTIME_DIR=%s", tmp);
	const char *const envs[] = {env, NULL};
	EXPECT_COMPLETION(path_with_vmm(), envs, "vmm stop ", "a\nb\n");
	EXPECT_COMPLETION(path_with_vmm(), envs, "vmm snapshot b", "b\n");
	/* One name only: after it, nothing; an option's argument is not the name. */
	EXPECT_COMPLETION(path_with_vmm(), envs, "vmm quit a ", "\n");
	EXPECT_COMPLETION(path_with_vmm(), envs, "vmm stats -N 3 ", "a\nb\n");
}
END_TEST

START_TEST(completion_of_restore_lists_the_snapshots_of_the_store)
{
	char store[96], snaps[128], env[128];
	snprintf(store, sizeof(store), "%s/store", tmp);
	snprintf(snaps, sizeof(snaps), "%s/snapshots", store);
	ck_assert_int_eq(mkdir(store, 0700), 0);
	ck_assert_int_eq(mkdir(snaps, 0700), 0);
	touch(snaps, "s1.snap");
	touch(snaps, ".s2.tmp"); /* an unfinished manifest */
	snprintf(env, sizeof(env), "VMM_STORE=%s", store);
	const char *const envs[] = {env, NULL};
	EXPECT_COMPLETION(path_with_vmm(), envs, "vmm restore ", "s1\n");
	EXPECT_COMPLETION(path_with_vmm(), envs, "vmm store rm ", "s1\n");

	/* --store DIR (-s DIR) on the line wins over $VMM_STORE; without either, the store
	 * under $HOME (here tmp, which has none). */
	char line[256];
	touch(snaps, "s3.snap");
	const char *const elsewhere[] = {"VMM_STORE=/nonexistent", NULL};
	snprintf(line, sizeof(line), "vmm restore --store %s ", store);
	EXPECT_COMPLETION(path_with_vmm(), elsewhere, line, "s1\ns3\n");
	snprintf(line, sizeof(line), "vmm restore -s %s s3", store);
	EXPECT_COMPLETION("/usr/bin:/bin", elsewhere, line, "s3\n");
	EXPECT_COMPLETION(path_with_vmm(), NULL, "vmm restore ", "\n");
}
END_TEST

/* Whether @text has a line that is @word. */
static bool has_line(const char *text, const char *word)
{
	size_t n = strlen(word);
	for (const char *p = text; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL)
		if (strncmp(p, word, n) == 0 && (p[n] == '\n' || p[n] == '\0'))
			return true;
	return false;
}

START_TEST(completion_of_options_reads_the_verb_help)
{
	char *got = complete(path_with_vmm(), NULL, "vmm run --");
	ck_assert_msg(has_line(got, "--memory") && has_line(got, "--mem-limit") && has_line(got, "--help"),
		      "vmm run --<TAB> gave\n%s", got);
	/* Short options do not begin with --; --store is restore's, not run's. */
	ck_assert_msg(!has_line(got, "-m") && !has_line(got, "--store"), "vmm run --<TAB> gave\n%s", got);
	free(got);
	EXPECT_COMPLETION(path_with_vmm(), NULL, "vmm fork --c", "--count\n");
	EXPECT_COMPLETION(path_with_vmm(), NULL, "vmm store --t", "--tree\n");
}
END_TEST

Suite *install_suite(void)
{
	Suite *s = suite_create("install");
	TCase *make_tc = tcase_create("make");
	tcase_add_checked_fixture(make_tc, setup, teardown);
	/* Room for building a stale tree, so that the failure is the test's, not a timeout. */
	tcase_set_timeout(make_tc, 300);
	HARNESS_ADD_TEST(make_tc, install_lays_out_the_five_files_with_their_modes_and_only_copies);
	HARNESS_ADD_TEST(make_tc, uninstall_removes_exactly_the_installed_files);
	HARNESS_ADD_TEST(make_tc, installed_vmm_and_its_helpers_run);
	suite_add_tcase(s, make_tc);

	TCase *comp = tcase_create("completion");
	tcase_add_checked_fixture(comp, setup, teardown);
	tcase_set_timeout(comp, 30);
	HARNESS_ADD_TEST(comp, completion_of_a_verb_from_vmm_help_and_without_vmm);
	HARNESS_ADD_TEST(comp, completion_of_a_vm_name_lists_the_sockets_of_the_runtime_dir);
	HARNESS_ADD_TEST(comp, completion_of_restore_lists_the_snapshots_of_the_store);
	HARNESS_ADD_TEST(comp, completion_of_options_reads_the_verb_help);
	suite_add_tcase(s, comp);
	return s;
}

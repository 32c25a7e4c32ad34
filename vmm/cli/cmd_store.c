/* vmm store ls|verify|gc|rm: look after a snapshot store (vmm/store.h) directly. */
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "vmm/cli/cmd_client.h"
#include "vmm/error.h"
#include "vmm/store/store.h"
#include "vmm/vm.h"

enum { STORE_OPT_TREE = 100 }; /* above the CMD_CLIENT_OPT_* ids */

static const struct cli_option store_options[] = {
	{"store", 's', "DIR", CMD_CLIENT_OPT_STORE, "the store (instead of the DIR argument)"},
	{"tree", 0, NULL, STORE_OPT_TREE, "ls: draw the lineage, each snapshot under its parent"},
	CMD_CLIENT_OPTION_JSON,
	CMD_CLIENT_OPTION_HELP,
	{0},
};

static void store_help(FILE *f, const char *verb)
{
	(void)verb;
	fprintf(f, "usage: vmm store ls     [--json | --tree] [DIR]\n"
		   "       vmm store verify [--json] [DIR]\n"
		   "       vmm store gc     [--json] [DIR]\n"
		   "       vmm store rm     [--json] [DIR] SNAPSHOT...\n"
		   "Look after a snapshot store: packs of unique pages and one manifest per snapshot.\n"
		   "The store is DIR (or --store DIR), and must exist.\n" CLI_STORE_DEFAULT_HELP
		   "  ls      list the snapshots: parent, memory size, pages listed, bytes only this\n"
		   "          snapshot uses (unique) and bytes it shares with others; with --tree,\n"
		   "          the names only, each under its parent, roots first, in creation order\n"
		   "  verify  re-hash every stored page and check every manifest; each problem is one\n"
		   "          line naming the file and page; leftovers of interrupted writes are notes\n"
		   "  gc      remove pages no snapshot refers to, and leftovers\n"
		   "  rm      delete snapshots, in the order given; a snapshot naming one as parent\n"
		   "          takes in the pages it read through it and reads the same. Not one a\n"
		   "          running VM runs from (restored from it, or its last snapshot): rm\n"
		   "          names that VM, and deletes the others; gc frees their pages. A lone\n"
		   "          argument is a SNAPSHOT of the default store, unless it cannot name one\n"
		   "          (a path: ./store).\n\n");
	cli_print_options(f, store_options);
	fprintf(f, "\nExit status: 0 done (verify: the store is valid), 1 verify found damage,\n"
		   "125 bad arguments, the store cannot be used, or rm could not delete one.\n");
}

struct store_ls {
	bool json;
	json_t *list;
	unsigned n;
};

/* vmm store ls --tree: the listing gathered, then drawn. */
struct store_tree {
	struct store_info *v;
	bool *drawn;
	size_t n, cap;
	bool nomem;
};

static void store_tree_add(void *arg, const struct store_info *info)
{
	struct store_tree *t = arg;
	if (t->n == t->cap) {
		size_t cap = t->cap ? 2 * t->cap : 64;
		struct store_info *v = realloc(t->v, cap * sizeof(*v));
		if (!v) {
			t->nomem = true;
			return;
		}
		t->v = v;
		t->cap = cap;
	}
	t->v[t->n++] = *info;
}

/* Creation order; the name breaks ties. */
static int store_tree_order(const void *a, const void *b)
{
	const struct store_info *x = a, *y = b;
	if (x->created_ns != y->created_ns)
		return x->created_ns < y->created_ns ? -1 : 1;
	return strcmp(x->name, y->name);
}

static bool store_tree_has(const struct store_tree *t, const char *name)
{
	for (size_t i = 0; i < t->n; i++)
		if (strcmp(t->v[i].name, name) == 0)
			return true;
	return false;
}

/* Snapshot @i on its line after @prefix (and its branch, unless it is a root), then its
 * children below it. A snapshot is drawn once, so a parent loop (damage) ends. */
static void store_tree_draw(struct store_tree *t, size_t i, const char *prefix, const char *branch)
{
	t->drawn[i] = true;
	const char *parent = t->v[i].parent;
	printf("%s%s%s", prefix, branch, t->v[i].name);
	if (!*branch && *parent)
		printf(" (parent %s, %s)", parent, store_tree_has(t, parent) ? "in a loop of parents" : "deleted");
	if (t->v[i].description[0])
		printf("  \"%s\"", t->v[i].description);
	printf("\n");
	size_t last = t->n;
	for (size_t k = 0; k < t->n; k++)
		if (!t->drawn[k] && strcmp(t->v[k].parent, t->v[i].name) == 0)
			last = k;
	char sub[4096];
	if (snprintf(sub, sizeof(sub), "%s%s", prefix, !*branch ? "" : strcmp(branch, "└─ ") == 0 ? "   " : "│  ") >=
	    (int)sizeof(sub))
		snprintf(sub, sizeof(sub), "%s", prefix); /* thousands deep: no deeper indent */
	for (size_t k = 0; k < t->n && last < t->n; k++)
		if (!t->drawn[k] && strcmp(t->v[k].parent, t->v[i].name) == 0)
			store_tree_draw(t, k, sub, k == last ? "└─ " : "├─ ");
}

/* Roots first (no parent, or a parent deleted since), each followed by its descendants;
 * then whatever a parent loop kept from being reached. 0 or -ENOMEM. */
static int store_tree_print(struct store_tree *t)
{
	if (t->nomem || !(t->drawn = calloc(t->n + 1, sizeof(*t->drawn))))
		return error_set(ENOMEM, "no memory for the tree");
	qsort(t->v, t->n, sizeof(*t->v), store_tree_order);
	for (size_t i = 0; i < t->n; i++)
		if (!t->drawn[i] && (!t->v[i].parent[0] || !store_tree_has(t, t->v[i].parent)))
			store_tree_draw(t, i, "", "");
	for (size_t i = 0; i < t->n; i++)
		if (!t->drawn[i])
			store_tree_draw(t, i, "", "");
	return 0;
}

static void store_ls_one(void *arg, const struct store_info *info)
{
	struct store_ls *ls = arg;
	if (ls->json) {
		json_array_append_new(ls->list,
				      json_pack("{s:s,s:s,s:s,s:s,s:I,s:I,s:I,s:I,s:I,s:I}", "name", info->name, "parent",
						info->parent, "source", info->source, "description", info->description,
						"created-ns", (json_int_t)info->created_ns, "size", (json_int_t)info->size,
						"entries", (json_int_t)info->entries, "unique", (json_int_t)info->unique_bytes,
						"shared", (json_int_t)info->shared_bytes, "manifest",
						(json_int_t)info->manifest_bytes));
		return;
	}
	if (ls->n++ == 0)
		printf("%-24s %-24s %-16s %10s %10s %10s %10s  %-19s  %s\n", "NAME", "PARENT", "SOURCE", "SIZE", "PAGES",
		       "UNIQUE", "SHARED", "CREATED (UTC)", "DESCRIPTION");
	time_t t = (time_t)(info->created_ns / 1000000000ull);
	struct tm tm;
	char when[32];
	gmtime_r(&t, &tm);
	strftime(when, sizeof(when), "%Y-%m-%d %H:%M:%S", &tm);
	printf("%-24s %-24s %-16s %9lluM %10llu %9.1fM %9.1fM  %-19s  %s\n", info->name,
	       info->parent[0] ? info->parent : "-", info->source[0] ? info->source : "-",
	       (unsigned long long)(info->size >> 20), (unsigned long long)info->entries,
	       (double)info->unique_bytes / 1048576.0, (double)info->shared_bytes / 1048576.0, when, info->description);
}

/* One line of verify: printed, or with --json added to the array @arg. */
static void store_verify_line(void *arg, bool problem, const char *line)
{
	json_t *problems = arg;
	if (problems)
		json_array_append_new(problems, json_pack("{s:s,s:b}", "line", line, "damage", problem));
	else
		printf("%s: %s\n", problem ? "damage" : "note", line);
}

int cmd_store(int argc, char **argv)
{
	if (argc < 2 || strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0) {
		store_help(argc < 2 ? stderr : stdout, "store");
		return argc < 2 ? VM_EXIT_VMM_ERROR : 0;
	}
	const char *sub = argv[1];
	char verb[32];
	snprintf(verb, sizeof(verb), "store %s", sub);
	if (strcmp(sub, "ls") && strcmp(sub, "verify") && strcmp(sub, "gc") && strcmp(sub, "rm")) {
		fprintf(stderr, "vmm store: unknown command '%s' (ls, verify, gc, rm; see vmm store --help)\n", sub);
		return VM_EXIT_VMM_ERROR;
	}
	/* Positionals: [DIR], and for rm SNAPSHOT...: at most argc - 2 of them. */
	const char *pos[argc], *dir = NULL;
	int npos = 0;
	bool json = false, tree = false;
	struct cli_parser p;
	cli_init(&p, verb, store_options, argc - 1, argv + 1, 1);
	const char *v;
	int id;
	while ((id = cli_next(&p, &v)) != CLI_END) {
		if (id == CLI_ERROR) {
			fprintf(stderr, "%s\n", error_message());
			return VM_EXIT_VMM_ERROR;
		}
		if (id == CMD_CLIENT_OPT_HELP) {
			store_help(stdout, verb);
			return 0;
		}
		if (id == CMD_CLIENT_OPT_JSON)
			json = true;
		else if (id == STORE_OPT_TREE)
			tree = true;
		else if (id == CMD_CLIENT_OPT_STORE)
			dir = v;
		else
			pos[npos++] = v;
	}
	bool rm = strcmp(sub, "rm") == 0;
	/* The first positional is DIR unless --store gave it; for rm, only when SNAPSHOTs
	 * follow it or it cannot name a snapshot (a path: snapshot names have no '/'). */
	int first = 0;
	if (!dir && npos && (!rm || npos > 1 || !store_name_valid(pos[0])))
		dir = pos[first++];
	if (tree && (strcmp(sub, "ls") != 0 || json)) {
		fprintf(stderr, "vmm %s: --tree %s\n", verb,
			json ? "draws text (with --json, each snapshot names its parent)" : "is for vmm store ls only");
		return VM_EXIT_VMM_ERROR;
	}
	int nsnaps = npos - first;
	if (rm ? nsnaps == 0 : nsnaps > 0) {
		fprintf(stderr, "vmm %s: %s (usage: vmm store %s [DIR]%s)\n", verb,
			rm ? "no SNAPSHOT given" : "too many arguments", sub, rm ? " SNAPSHOT..." : "");
		return VM_EXIT_VMM_ERROR;
	}
	char deflt[PATH_MAX];
	if (!dir) {
		if (cli_default_store(verb, deflt, sizeof(deflt), NULL) != 0) {
			fprintf(stderr, "%s\n", error_message());
			return VM_EXIT_VMM_ERROR;
		}
		dir = deflt;
	}
	/* ls and verify only read: they work on a store this user cannot write. */
	bool reads_only = strcmp(sub, "ls") == 0 || strcmp(sub, "verify") == 0;
	struct store *s;
	if ((reads_only ? store_open_read(dir, &s) : store_open(dir, false, &s)) != 0) {
		fprintf(stderr, "vmm %s: %s\n", verb, error_message());
		return VM_EXIT_VMM_ERROR;
	}
	int status = 0;
	if (rm) {
		/* Each in turn: one refused is named on its line and the others still go. */
		json_t *deleted = json_array(), *refused = json_array();
		for (int i = first; i < npos; i++) {
			if (store_delete(s, pos[i]) != 0) {
				fprintf(stderr, "vmm %s: %s\n", verb, error_message());
				json_array_append_new(refused, json_pack("{s:s,s:s}", "name", pos[i], "error", error_message()));
				status = VM_EXIT_VMM_ERROR;
			} else {
				json_array_append_new(deleted, json_string(pos[i]));
			}
		}
		json_t *out = json_pack("{s:o,s:o}", "deleted", deleted, "refused", refused);
		if (json)
			cmd_client_print_json(stdout, out);
		json_decref(out);
	} else if (tree) {
		struct store_tree t = {0};
		if (store_list(s, store_tree_add, &t) != 0 || store_tree_print(&t) != 0) {
			fprintf(stderr, "vmm %s: %s\n", verb, error_message());
			status = VM_EXIT_VMM_ERROR;
		}
		free(t.v);
		free(t.drawn);
	} else if (strcmp(sub, "ls") == 0) {
		struct store_ls ls = {.json = json, .list = json ? json_array() : NULL};
		if (store_list(s, store_ls_one, &ls) != 0) {
			fprintf(stderr, "vmm %s: %s\n", verb, error_message());
			status = VM_EXIT_VMM_ERROR;
		} else if (json) {
			cmd_client_print_json(stdout, ls.list);
		}
		json_decref(ls.list);
	} else if (strcmp(sub, "verify") == 0) {
		struct store_verify_stats st;
		json_t *lines = json ? json_array() : NULL;
		long problems = store_verify(s, store_verify_line, lines, &st);
		if (problems < 0) {
			fprintf(stderr, "vmm %s: %s\n", verb, error_message());
			status = VM_EXIT_VMM_ERROR;
		} else if (json) {
			json_t *out = json_pack("{s:I,s:I,s:I,s:I,s:O,s:b}", "snapshots", (json_int_t)st.snapshots,
						"pages_checked", (json_int_t)st.pages_checked, "packs", (json_int_t)st.packs,
						"leftovers", (json_int_t)st.leftovers, "problems", lines, "valid", problems == 0);
			cmd_client_print_json(stdout, out);
			json_decref(out);
			status = problems ? 1 : 0;
		} else {
			printf("%s: %s, %s checked, %s, %s: %s\n", dir, CLI_COUNT(st.snapshots, "snapshot"),
			       CLI_COUNT(st.pages_checked, "page"), CLI_COUNT(st.packs, "pack"),
			       CLI_COUNT(st.leftovers, "leftover"), problems ? "DAMAGED" : "valid");
			status = problems ? 1 : 0;
		}
		json_decref(lines);
	} else {
		uint64_t freed;
		if (store_gc(s, &freed) != 0) {
			fprintf(stderr, "vmm %s: %s\n", verb, error_message());
			status = VM_EXIT_VMM_ERROR;
		} else if (json) {
			json_t *out = json_pack("{s:I}", "freed_bytes", (json_int_t)freed);
			cmd_client_print_json(stdout, out);
			json_decref(out);
		} else {
			printf("%s: %.1f MiB freed\n", dir, (double)freed / 1048576.0);
		}
	}
	store_close(s);
	return status;
}

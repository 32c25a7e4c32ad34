/*
 * vmm stats: the statistics of a running VM (QMP 'query-stats'), or a line for each VM of
 * the runtime directory, once or every few seconds. The VM sends flat dotted keys; what a
 * person reads is made here: keys in natural order (vcpu.2 before vcpu.10), histograms as
 * charts, rates of the counters between samples, and for --json one fixed shape per sample.
 */
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "vmm/cli/cmd_client.h"
#include "vmm/clock.h"
#include "vmm/error.h"
#include "vmm/vm.h"

#define STATS_USAGE "vmm stats [OPTIONS] [NAME [KEY...]]"
#define STATS_ALL_TIMEOUT_MS 2000 /* without NAME: one stuck VM must not hold up the others for long */
#define STATS_BAR 40              /* the width of a histogram's largest bucket, in '#' */
#define STATS_BUCKET ".lt_"       /* histogram buckets: NAME.lt_N, the count of values below N */

static const struct cli_option stats_options[] = {
	{"watch", 'w', "TIME", CMD_CLIENT_OPT_WATCH, "query again every TIME (2, 500ms, 1m) until interrupted"},
	{"count", 'N', "N", CMD_CLIENT_OPT_COUNT, "with --watch: stop after N samples"},
	CMD_CLIENT_OPTION_JSON,
	CMD_CLIENT_OPTION_MONITOR,
	CMD_CLIENT_OPTION_HELP,
	{0},
};

static void stats_help(FILE *f, const char *verb)
{
	(void)verb;
	fprintf(f, "usage: " STATS_USAGE "\n"
		   "Print the statistics of the running VM NAME: one 'key value' line per figure,\n"
		   "sorted by key (numbers in keys by value), values aligned. Keys are flat and\n"
		   "dotted: vm.* (the VM as a whole), vcpu.N.exits (exits the VMM handled, per\n"
		   "vCPU), kvm.NAME and vcpu.N.kvm.NAME (KVM's own binary statistics under the\n"
		   "kernel's names), mem.* (faults, page-ins and page-outs, residency, userfaultfd\n"
		   "work, fault latency), object.ID.* (per memory object), snapshot.* and dedup.*\n"
		   "(snapshots taken and their pages: zero, shared with the store, stored),\n"
		   "monitor.* (the monitor's clients, commands and events), and the names of\n"
		   "'virsh domstats': state.state (1 running, 3 paused, 5 shut off), state.reason,\n"
		   "vcpu.current, vcpu.maximum, vcpu.N.state, vcpu.N.time (CPU ns), balloon.current,\n"
		   "balloon.maximum (guest RAM, KiB) and balloon.rss (the VMM's resident set, KiB).\n\n"
		   "KEY...: only these keys; a KEY ending in '.' is a prefix (mem. is every mem.*\n"
		   "key). A KEY that matches nothing is an error. With --monitor PATH every argument\n"
		   "is a KEY.\n\n"
		   "The fault-latency histogram (mem.fault_latency_ns.lt_N: faults served in less\n"
		   "than N ns) is drawn as a chart of its non-empty buckets, with p50 and p99\n"
		   "estimated from them. With --watch, counters (faults, page-ins, page-outs, exits)\n"
		   "show their rate per second since the previous sample.\n\n"
		   "Without NAME: one line per VM 'vmm ps' lists: NAME, STATUS, EXITS (all vCPUs),\n"
		   "RESIDENT_MIB (mem.resident_pages) and FAULTS (with --watch: FAULTS/S).\n\n");
	cli_print_options(f, stats_options);
	fprintf(f, "\nWith --json: one line per sample (without NAME: per VM and round), the object\n"
		   "{\"time\": seconds since the epoch (a number with fractions), \"vm\": the name,\n"
		   "\"status\": as vmm ps says it, \"stats\": {key: number}}. \"stats\" has every key\n"
		   "the VM has reported so far in the run (empty histogram buckets as 0), in the\n"
		   "text's order; a value missing from a sample is null; \"stats\" is null when the\n"
		   "VM could not be queried. With --watch on a terminal the screen is redrawn for\n"
		   "each sample; otherwise the samples follow each other, separated by an empty\n"
		   "line.\n\n"
		   "Exit status: 0 done (without NAME also when some VMs are stale or unreachable),\n"
		   "1 the VM answered with an error, 125 no such VM, no answer, a KEY that matches\n"
		   "nothing, or bad arguments.\n");
}

/* ---- keys ------------------------------------------------------------------------------ */

/* strcmp, but runs of digits compare by value: vcpu.2 < vcpu.10, lt_131072 < lt_1048576. */
static int stats_natural_cmp(const char *a, const char *b)
{
	while (*a && *b) {
		if (isdigit((unsigned char)*a) && isdigit((unsigned char)*b)) {
			while (*a == '0')
				a++;
			while (*b == '0')
				b++;
			size_t na = 0, nb = 0;
			while (isdigit((unsigned char)a[na]))
				na++;
			while (isdigit((unsigned char)b[nb]))
				nb++;
			if (na != nb)
				return na < nb ? -1 : 1;
			int c = strncmp(a, b, na);
			if (c)
				return c;
			a += na;
			b += nb;
			continue;
		}
		if (*a != *b)
			return (unsigned char)*a < (unsigned char)*b ? -1 : 1;
		a++, b++;
	}
	return (unsigned char)*a - (unsigned char)*b;
}

static int stats_key_cmp(const void *a, const void *b)
{
	return stats_natural_cmp(*(const char *const *)a, *(const char *const *)b);
}

/* The keys of @obj in natural order (borrowed from @obj), or NULL when out of memory. */
static const char **stats_sorted_keys(json_t *obj, size_t *n)
{
	*n = json_object_size(obj);
	const char **keys = malloc((*n ? *n : 1) * sizeof(*keys));
	if (!keys)
		return NULL;
	size_t i = 0;
	const char *key;
	json_t *value;
	json_object_foreach(obj, key, value)
		keys[i++] = key;
	qsort(keys, *n, sizeof(*keys), stats_key_cmp);
	return keys;
}

/* @key is selected by @want: the same key, or a prefix of it that ends in '.'. */
static bool stats_key_matches(const char *key, const char *want)
{
	size_t n = strlen(want);
	return n && want[n - 1] == '.' ? strncmp(key, want, n) == 0 : strcmp(key, want) == 0;
}

/* Keep in @stats only the keys @want selects (all when @nwant is 0). *unmatched: the
 * first KEY that selects nothing, or NULL. */
static void stats_filter(json_t *stats, const char *const *want, unsigned nwant, const char **unmatched)
{
	*unmatched = NULL;
	if (!nwant)
		return;
	const char *key;
	json_t *value;
	void *tmp;
	json_object_foreach_safe(stats, tmp, key, value) {
		unsigned i = 0;
		while (i < nwant && !stats_key_matches(key, want[i]))
			i++;
		if (i == nwant)
			json_object_del(stats, key);
	}
	for (unsigned i = 0; i < nwant && !*unmatched; i++) {
		bool any = false;
		json_object_foreach(stats, key, value)
			if ((any = stats_key_matches(key, want[i])))
				break;
		if (!any)
			*unmatched = want[i];
	}
}

/* A counter whose rate is worth showing: faults (and *_faults), pageins, pageouts, exits. */
static bool stats_is_counter(const char *key)
{
	static const char *const names[] = {"faults", "pageins", "pageouts", "exits"};
	const char *last = strrchr(key, '.');
	last = last ? last + 1 : key;
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		if (strcmp(last, names[i]) == 0)
			return true;
	size_t n = strlen(last);
	return n > 7 && strcmp(last + n - 7, "_faults") == 0;
}

/* The bound N of a histogram bucket key "NAME.lt_N", with *name_len the length of NAME;
 * 0 when @key is not a bucket. */
static uint64_t stats_bucket(const char *key, size_t *name_len)
{
	const char *b = strstr(key, STATS_BUCKET);
	if (!b || !isdigit((unsigned char)b[strlen(STATS_BUCKET)]) || strchr(b + 1, '.'))
		return 0;
	char *end;
	unsigned long long n = strtoull(b + strlen(STATS_BUCKET), &end, 10);
	if (*end)
		return 0;
	*name_len = (size_t)(b - key);
	return n;
}

/* ---- one sample as text ------------------------------------------------------------------ */

/* A duration of @ns in three figures and a unit: 2ns, 131us, 1.05ms. */
static void stats_duration(char *buf, size_t size, double ns)
{
	static const char *const units[] = {"ns", "us", "ms", "s"};
	unsigned u = 0;
	while (u + 1 < sizeof(units) / sizeof(units[0]) && ns >= 999.5) {
		ns /= 1000;
		u++;
	}
	snprintf(buf, size, "%.3g%s", ns, units[u]);
}

/* The value below which a fraction @q of the @total counted values lie, interpolated in
 * the bucket that holds it: bucket i counts the values in [bound[i-1], bound[i]). */
static double stats_quantile(const uint64_t *bound, const uint64_t *count, size_t n, uint64_t total, double q)
{
	double rank = q * (double)total, below = 0, lo = 0;
	for (size_t i = 0; i < n; i++) {
		if (count[i] && below + (double)count[i] >= rank)
			return lo + ((double)bound[i] - lo) * (rank - below) / (double)count[i];
		below += (double)count[i];
		lo = (double)bound[i];
	}
	return lo;
}

/* The histogram @name (@len bytes of it) of @n buckets: a header with the count, p50 and
 * p99, then a line and a bar per non-empty bucket. */
static void stats_print_chart(FILE *f, const char *name, size_t len, const uint64_t *bound, const uint64_t *count,
			      size_t n)
{
	uint64_t total = 0, most = 0;
	for (size_t i = 0; i < n; i++) {
		total += count[i];
		most = count[i] > most ? count[i] : most;
	}
	if (!total)
		return;
	char p50[16], p99[16], label[24];
	stats_duration(p50, sizeof(p50), stats_quantile(bound, count, n, total, 0.50));
	stats_duration(p99, sizeof(p99), stats_quantile(bound, count, n, total, 0.99));
	fprintf(f, "%.*s: %llu values, p50 %s, p99 %s\n", (int)len, name, (unsigned long long)total, p50, p99);
	int wlabel = 0, wcount = snprintf(NULL, 0, "%llu", (unsigned long long)most);
	for (size_t i = 0; i < n; i++) {
		stats_duration(label, sizeof(label), (double)bound[i]);
		int l = (int)strlen(label);
		wlabel = count[i] && l > wlabel ? l : wlabel;
	}
	for (size_t i = 0; i < n; i++) {
		if (!count[i])
			continue;
		stats_duration(label, sizeof(label), (double)bound[i]);
		unsigned bar = (unsigned)(((double)count[i] * STATS_BAR + (double)most / 2) / (double)most);
		fprintf(f, "  < %-*s %*llu ", wlabel, label, wcount, (unsigned long long)count[i]);
		for (unsigned k = 0; k < (bar ? bar : 1); k++)
			fputc('#', f);
		fputc('\n', f);
	}
}

/* The histograms among @keys (sorted: a histogram's buckets follow each other, in the
 * order of their bounds), as charts. */
static int stats_print_charts(FILE *f, json_t *stats, const char **keys, size_t n)
{
	uint64_t *bound = malloc((n ? n : 1) * sizeof(*bound)), *count = malloc((n ? n : 1) * sizeof(*count));
	int r = bound && count ? 0 : error_set(ENOMEM, "out of memory");
	for (size_t i = 0; !r && i < n;) {
		size_t len, len2, m = 0;
		if (!stats_bucket(keys[i], &len)) {
			i++;
			continue;
		}
		const char *name = keys[i];
		for (; i < n && (bound[m] = stats_bucket(keys[i], &len2)) && len2 == len && strncmp(keys[i], name, len) == 0;
		     i++, m++) {
			json_int_t v = json_integer_value(json_object_get(stats, keys[i]));
			count[m] = v > 0 ? (uint64_t)v : 0;
		}
		stats_print_chart(f, name, len, bound, count, m);
	}
	free(bound);
	free(count);
	return r;
}

/* The rate of counter @key between @prev and @stats, @dt seconds apart; false when there
 * is none (no previous sample, not a counter, or it went down). */
static bool stats_rate(json_t *stats, json_t *prev, double dt, const char *key, double *rate)
{
	json_t *now = json_object_get(stats, key), *then = prev ? json_object_get(prev, key) : NULL;
	if (!then || dt <= 0 || !stats_is_counter(key) || !json_is_number(now) || !json_is_number(then) ||
	    json_number_value(now) < json_number_value(then))
		return false;
	*rate = (json_number_value(now) - json_number_value(then)) / dt;
	return true;
}

static void stats_format_value(char *buf, size_t size, json_t *value)
{
	if (json_is_integer(value))
		snprintf(buf, size, "%lld", (long long)json_integer_value(value));
	else if (json_is_real(value))
		snprintf(buf, size, "%.6g", json_real_value(value));
	else
		snprintf(buf, size, "%s", json_is_null(value) ? "null" : "?");
}

/* Print @stats as sorted, aligned "key value" lines, the rates of the counters since @prev
 * (@dt seconds earlier; NULL: none) beside them, and the histograms as charts. */
static int stats_print(FILE *f, json_t *stats, json_t *prev, double dt)
{
	size_t n, width = 0, vwidth = 0, len;
	const char **keys = stats_sorted_keys(stats, &n);
	if (!keys)
		return error_set(ENOMEM, "out of memory");
	char value[64];
	for (size_t i = 0; i < n; i++) {
		if (stats_bucket(keys[i], &len))
			continue;
		stats_format_value(value, sizeof(value), json_object_get(stats, keys[i]));
		width = strlen(keys[i]) > width ? strlen(keys[i]) : width;
		vwidth = strlen(value) > vwidth ? strlen(value) : vwidth;
	}
	for (size_t i = 0; i < n; i++) {
		if (stats_bucket(keys[i], &len))
			continue;
		double rate;
		stats_format_value(value, sizeof(value), json_object_get(stats, keys[i]));
		if (stats_rate(stats, prev, dt, keys[i], &rate))
			fprintf(f, "%-*s %-*s  %.1f/s\n", (int)width, keys[i], (int)vwidth, value, rate);
		else
			fprintf(f, "%-*s %s\n", (int)width, keys[i], value);
	}
	int r = stats_print_charts(f, stats, keys, n);
	free(keys);
	return r;
}

/* ---- one VM ------------------------------------------------------------------------------- */

/* What stats keeps of one VM between its samples. */
struct stats_vm {
	char *name;
	json_t *keys;   /* every key the VM has reported (values unused): the JSON shape */
	json_t *prev;   /* the previous sample's statistics, or NULL */
	uint64_t prev_ns; /* ... and when it came (clock_monotonic_ns) */
	bool listed;    /* without NAME: in this round's listing */
};

static void stats_vm_free(struct stats_vm *v)
{
	free(v->name);
	json_decref(v->keys);
	json_decref(v->prev);
}

/* Ask @c for the run state (into @status, as vmm ps says it) and the statistics (*stats,
 * a new reference). 0 or -errno with the message set. */
static int stats_query(struct qmp_client *c, int timeout_ms, char *status, size_t size, json_t **stats)
{
	json_t *ret = NULL;
	*stats = NULL;
	int r = qmp_client_execute(c, "query-status", NULL, &ret, timeout_ms);
	if (r == 0)
		snprintf(status, size, "%s", json_is_string(json_object_get(ret, "status")) ? json_string_value(json_object_get(ret, "status")) : "unknown");
	else if (r == -EREMOTEIO && strcmp(qmp_client_error_class(c), "CommandNotFound") == 0)
		snprintf(status, size, "unknown"); /* a VM without query-status */
	else
		return r;
	json_decref(ret);
	r = qmp_client_execute(c, "query-stats", NULL, stats, timeout_ms);
	if (r == 0 && !json_is_object(*stats))
		r = error_set(EPROTO, "query-stats did not return an object");
	if (r) {
		json_decref(*stats);
		*stats = NULL;
	}
	return r;
}

/* The sample {"time", "vm", "status", "stats"} of @v, @stats (borrowed; NULL: none) taken
 * at @now (seconds since the epoch); @stats's keys join v->keys. */
static json_t *stats_sample(struct stats_vm *v, double now, const char *status, json_t *stats)
{
	json_t *shaped = json_null();
	if (stats) {
		const char *key;
		json_t *value;
		json_object_foreach(stats, key, value)
			if (!json_object_get(v->keys, key))
				json_object_set_new(v->keys, key, json_null());
		size_t n;
		const char **keys = stats_sorted_keys(v->keys, &n);
		shaped = json_object();
		for (size_t i = 0; keys && shaped && i < n; i++) {
			json_t *value = json_object_get(stats, keys[i]);
			json_object_set_new(shaped, keys[i], value ? json_incref(value) : json_null());
		}
		free(keys);
	}
	return json_pack("{s:f,s:s,s:s,s:o}", "time", now, "vm", v->name, "status", status, "stats", shaped);
}

/* Seconds since the epoch, with fractions. */
static double stats_now(void)
{
	struct timespec t;
	clock_gettime(CLOCK_REALTIME, &t);
	return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

/* Keep @stats (taken now) as @v's previous sample; *dt: seconds since the one before (0:
 * none). */
static void stats_vm_advance(struct stats_vm *v, json_t *stats, double *dt)
{
	uint64_t now = clock_monotonic_ns();
	*dt = v->prev ? (double)(now - v->prev_ns) / 1e9 : 0;
	json_decref(v->prev);
	v->prev = json_incref(stats);
	v->prev_ns = now;
}

/* ---- the two modes ------------------------------------------------------------------------- */

/* Where a round's output starts: a redrawn screen, or after an empty line. */
static void stats_begin_round(const struct cmd_client_args *a, unsigned round)
{
	if (a->watch_ms && !a->json && isatty(STDOUT_FILENO))
		fputs("\033[H\033[2J", stdout);
	else if (round > 1 && !a->json)
		fputc('\n', stdout);
}

/* One sample of the VM behind @c. 0, or the exit status after printing the error. */
static int stats_round_one(const struct cmd_client_args *a, struct qmp_client *c, struct stats_vm *v,
			   unsigned round)
{
	char status[32];
	json_t *stats;
	double now = stats_now(), dt;
	int r = stats_query(c, CMD_CLIENT_TIMEOUT_MS, status, sizeof(status), &stats);
	if (r)
		return cmd_client_fail("stats", r);
	const char *unmatched;
	stats_filter(stats, a->more, a->nmore, &unmatched);
	if (unmatched && round == 1) {
		json_decref(stats);
		fprintf(stderr, "vmm stats: '%s' matches no statistic of VM '%s'\n", unmatched, v->name);
		return VM_EXIT_VMM_ERROR;
	}
	json_t *prev = json_incref(v->prev);
	stats_vm_advance(v, stats, &dt);
	stats_begin_round(a, round);
	if (a->json) {
		json_t *sample = stats_sample(v, now, status, stats);
		r = sample ? 0 : error_set(ENOMEM, "out of memory");
		if (sample)
			cmd_client_print_json(stdout, sample);
		json_decref(sample);
	} else {
		r = stats_print(stdout, stats, prev, dt);
	}
	json_decref(prev);
	json_decref(stats);
	return r ? cmd_client_fail("stats", r) : 0;
}

/* The sum of vcpu.N.exits in @stats, or -1 when there is none. */
static long long stats_exits(json_t *stats)
{
	long long sum = -1;
	const char *key;
	json_t *value;
	json_object_foreach(stats, key, value) {
		unsigned cpu;
		int end = 0;
		if (sscanf(key, "vcpu.%u.exits%n", &cpu, &end) == 1 && end && !key[end])
			sum = (sum < 0 ? 0 : sum) + json_integer_value(value);
	}
	return sum;
}

/* The line of VM @v (status @status, @stats NULL when it could not be queried; @dt seconds
 * since its previous sample, in @prev). */
static void stats_print_row(const struct cmd_client_args *a, int wname, int wstatus, const char *name,
			    const char *status, json_t *stats, json_t *prev, double dt)
{
	char exits[24] = "-", resident[24] = "-", faults[24] = "-";
	long long e = stats ? stats_exits(stats) : -1;
	if (e >= 0)
		snprintf(exits, sizeof(exits), "%lld", e);
	json_t *pages = stats ? json_object_get(stats, "mem.resident_pages") : NULL;
	if (json_is_integer(pages)) {
		json_t *ps = json_object_get(stats, "mem.page_size");
		double page = json_is_integer(ps) ? (double)json_integer_value(ps) : 4096;
		snprintf(resident, sizeof(resident), "%.1f", (double)json_integer_value(pages) * page / (1 << 20));
	}
	double rate;
	if (stats && a->watch_ms && stats_rate(stats, prev, dt, "mem.faults", &rate))
		snprintf(faults, sizeof(faults), "%.1f", rate);
	else if (stats && !a->watch_ms && json_is_integer(json_object_get(stats, "mem.faults")))
		snprintf(faults, sizeof(faults), "%lld", (long long)json_integer_value(json_object_get(stats, "mem.faults")));
	printf("%-*s  %-*s  %10s  %12s  %10s\n", wname, name, wstatus, status, exits, resident, faults);
}

/* The VM named @name in @vms (of *n, room for @cap), added when new; NULL when out of memory. */
static struct stats_vm *stats_vm_get(struct stats_vm *vms, size_t *n, size_t cap, const char *name)
{
	for (size_t i = 0; i < *n; i++)
		if (strcmp(vms[i].name, name) == 0)
			return &vms[i];
	if (*n == cap)
		return NULL;
	struct stats_vm *v = &vms[*n];
	*v = (struct stats_vm){.name = strdup(name), .keys = json_object()};
	if (!v->name || !v->keys) {
		stats_vm_free(v);
		return NULL;
	}
	(*n)++;
	return v;
}

/* One round over every VM of the runtime directory: a line each (a sample each with
 * --json). *@vms (of *@nvms) keeps them between rounds. 0 or the exit status. */
static int stats_round_all(const struct cmd_client_args *a, struct stats_vm **vms, size_t *nvms, unsigned round)
{
	struct cmd_client_vm *list;
	size_t n;
	int r = cmd_client_list_vms(&list, &n);
	if (r)
		return cmd_client_fail("stats", r);
	/* The VMs gone since the last round are forgotten; the new ones join. */
	struct stats_vm *next = calloc(n ? n : 1, sizeof(*next));
	size_t nnext = 0;
	for (size_t i = 0; next && i < n; i++) {
		struct stats_vm *old = NULL;
		for (size_t k = 0; k < *nvms && !old; k++)
			if ((*vms)[k].name && strcmp((*vms)[k].name, list[i].name) == 0)
				old = &(*vms)[k];
		if (old) {
			next[nnext++] = *old;
			*old = (struct stats_vm){0};
		} else if (!stats_vm_get(next, &nnext, n, list[i].name)) {
			break;
		}
	}
	for (size_t k = 0; k < *nvms; k++)
		stats_vm_free(&(*vms)[k]);
	free(*vms);
	*vms = next;
	*nvms = nnext;
	if (!next || nnext < n) {
		cmd_client_free_vms(list, n);
		return cmd_client_fail("stats", error_set(ENOMEM, "out of memory"));
	}

	/* Ask every VM first, so the columns fit. */
	char (*status)[32] = calloc(nnext ? nnext : 1, sizeof(*status));
	json_t **stats = calloc(nnext ? nnext : 1, sizeof(*stats)), **prev = calloc(nnext ? nnext : 1, sizeof(*prev));
	double *dt = calloc(nnext ? nnext : 1, sizeof(*dt)), now = stats_now();
	if (!status || !stats || !prev || !dt) {
		free(status), free(stats), free(prev), free(dt);
		cmd_client_free_vms(list, n);
		return cmd_client_fail("stats", error_set(ENOMEM, "out of memory"));
	}
	int wname = 4, wstatus = 6;
	for (size_t i = 0; i < nnext; i++) {
		struct stats_vm *v = &next[i];
		struct qmp_client *c;
		r = qmp_client_open(&c, NULL, list[i].path, STATS_ALL_TIMEOUT_MS); /* next[i] is list[i] */
		if (r == 0) {
			r = stats_query(c, STATS_ALL_TIMEOUT_MS, status[i], sizeof(status[i]), &stats[i]);
			qmp_client_close(c);
		}
		if (r == -ECONNREFUSED) {
			snprintf(status[i], sizeof(status[i]), "stale");
		} else if (r) {
			snprintf(status[i], sizeof(status[i]), "unreachable");
			fprintf(stderr, "vmm stats: %s: %s\n", v->name, error_message());
		}
		prev[i] = json_incref(v->prev);
		if (stats[i])
			stats_vm_advance(v, stats[i], &dt[i]);
		int ln = (int)strlen(v->name), ls = (int)strlen(status[i]);
		wname = ln > wname ? ln : wname;
		wstatus = ls > wstatus ? ls : wstatus;
	}
	cmd_client_free_vms(list, n);
	stats_begin_round(a, round);
	if (!a->json)
		printf("%-*s  %-*s  %10s  %12s  %10s\n", wname, "NAME", wstatus, "STATUS", "EXITS", "RESIDENT_MIB",
		       a->watch_ms ? "FAULTS/S" : "FAULTS");
	r = 0;
	for (size_t i = 0; i < nnext; i++) {
		if (a->json) {
			json_t *sample = stats_sample(&next[i], now, status[i], stats[i]);
			if (sample)
				cmd_client_print_json(stdout, sample);
			else
				r = error_set(ENOMEM, "out of memory");
			json_decref(sample);
		} else {
			stats_print_row(a, wname, wstatus, next[i].name, status[i], stats[i], prev[i], dt[i]);
		}
		json_decref(stats[i]);
		json_decref(prev[i]);
	}
	free(status), free(stats), free(prev), free(dt);
	return r ? cmd_client_fail("stats", r) : 0;
}

static void stats_sleep(uint64_t ms)
{
	struct timespec t = {.tv_sec = (time_t)(ms / 1000), .tv_nsec = (long)(ms % 1000) * 1000000};
	while (nanosleep(&t, &t) != 0 && errno == EINTR)
		continue;
}

int cmd_stats(int argc, char **argv)
{
	struct cmd_client_args a;
	int status = cmd_client_parse_more("stats", STATS_USAGE, stats_options, stats_help, argc, argv, &a);
	if (status != CMD_CLIENT_GO_ON)
		goto out;
	if (a.count && !a.watch_ms) {
		fprintf(stderr, "vmm stats: --count needs --watch\n");
		status = VM_EXIT_VMM_ERROR;
		goto out;
	}
	bool all = !a.name && !a.monitor;
	struct qmp_client *c = NULL;
	struct stats_vm *vms = NULL;
	size_t nvms = 0;
	if (!all) {
		status = cmd_client_open("stats", a.name, a.monitor, &c);
		if (status)
			goto out;
		json_t *vmm = NULL;
		/* With --monitor the socket names the VM: its own name is asked for. */
		int r = a.name ? 0 : qmp_client_execute(c, "query-vmm", NULL, &vmm, CMD_CLIENT_TIMEOUT_MS);
		const char *name = a.name ? a.name : json_string_value(json_object_get(vmm, "name"));
		vms = calloc(1, sizeof(*vms));
		if (!r && !(vms && stats_vm_get(vms, &nvms, 1, name ? name : "")))
			r = error_set(ENOMEM, "out of memory");
		json_decref(vmm);
		if (r) {
			status = cmd_client_fail("stats", r);
			goto out_close;
		}
	}
	for (unsigned round = 1;; round++) {
		status = all ? stats_round_all(&a, &vms, &nvms, round) : stats_round_one(&a, c, &vms[0], round);
		fflush(stdout);
		if (status || !a.watch_ms || (a.count && round == a.count))
			break;
		stats_sleep(a.watch_ms);
	}
out_close:
	for (size_t i = 0; i < nvms; i++)
		stats_vm_free(&vms[i]);
	free(vms);
	if (c)
		qmp_client_close(c);
out:
	free(a.more);
	return status;
}

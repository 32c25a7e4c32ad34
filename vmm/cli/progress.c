/* The progress line of a long CLI operation: see progress.h. */
#include "vmm/cli/progress.h"

#include <stdio.h>

static const char *const progress_units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
#define PROGRESS_NUNITS (sizeof(progress_units) / sizeof(progress_units[0]))

/* Decimals shown of @v in its unit: @decimals, or when -1 whole from 10 up and one below. */
static int progress_decimals(double v, int decimals)
{
	return decimals >= 0 ? decimals : v >= 9.95 ? 0 : 1;
}

/* @value (bytes) in its unit with @decimals decimals (see progress_decimals) from 1 KiB
 * up, bytes whole, @suffix after the unit. */
static char *progress_units_fmt(char *buf, size_t size, double value, int decimals, const char *suffix)
{
	size_t u = 0;
	int dp = 0;
	/* Pick the unit after rounding: 1023.96 KiB would print as 1024.0 KiB otherwise. */
	for (;;) {
		dp = u ? progress_decimals(value, decimals) : 0;
		double half_ulp = dp ? 0.05 : 0.5; /* printf rounds half a last digit up */
		if (u + 1 == PROGRESS_NUNITS || value < 1024.0 - half_ulp)
			break;
		value /= 1024.0;
		u++;
	}
	snprintf(buf, size, "%.*f %s%s", dp, value, progress_units[u], suffix);
	return buf;
}

char *progress_bytes(char *buf, size_t size, uint64_t bytes)
{
	return progress_units_fmt(buf, size, (double)bytes, 1, "");
}

char *progress_rate(char *buf, size_t size, double bytes_per_s)
{
	return progress_units_fmt(buf, size, bytes_per_s, -1, "/s");
}

/* @s seconds left, rounded up, into @buf; 0 when too long to be worth saying. */
static int progress_eta(char *buf, size_t size, double s)
{
	if (!(s < 100.0 * 3600.0))
		return 0;
	unsigned t = (unsigned)s;
	if (t < s || t == 0)
		t++; /* rounded up: still writing, never "0 s left" */
	if (t < 60)
		snprintf(buf, size, "%u s", t);
	else if (t < 3600)
		snprintf(buf, size, "%u min %u s", t / 60, t % 60);
	else
		snprintf(buf, size, "%u h %u min", t / 3600, t % 3600 / 60);
	return 1;
}

int progress_line(char *buf, size_t size, const char *label, uint64_t total, uint64_t done, double elapsed_s,
		  enum progress_phase phase)
{
	char d[32], t[32], rate[32], eta[32];
	if (done > total)
		done = total;
	progress_bytes(t, sizeof(t), total);
	if (phase == PROGRESS_SYNCING)
		return snprintf(buf, size, "%s: %s written, syncing...", label, t);
	if (phase == PROGRESS_DONE)
		return snprintf(buf, size, "%s: %s written in %.1f s, durable", label, t, elapsed_s);
	progress_bytes(d, sizeof(d), done);
	if (total == 0)
		return snprintf(buf, size, "%s: %s of %s", label, d, t);
	unsigned pct = (unsigned)((double)done * 100.0 / (double)total); /* rounded down */
	if (done < total && pct > 99)
		pct = 99; /* 100% says the end has come */
	char tail[80] = "";
	if (elapsed_s >= PROGRESS_MIN_ELAPSED_S && done > 0) {
		double bps = (double)done / elapsed_s;
		int n = snprintf(tail, sizeof(tail), ", %s", progress_rate(rate, sizeof(rate), bps));
		/* A 1% floor: the first percent of a big snapshot says little about the rest. */
		if (done < total && (double)done * 100.0 >= (double)total &&
		    progress_eta(eta, sizeof(eta), (double)(total - done) / bps))
			snprintf(tail + n, sizeof(tail) - (size_t)n, ", %s left", eta);
	}
	return snprintf(buf, size, "%s: %s of %s (%u%%)%s", label, d, t, pct, tail);
}

/*
 * The progress line of a long CLI operation (vmm snapshot): bytes done of the total, the
 * rate, the time left, and what it is waiting for at the end. Pure formatting, no I/O and
 * no clock: the caller measures, draws ("\r" LINE "\033[K") and ends the line.
 *
 *   snapshot web -> base: 412.0 MiB of 1.0 GiB (40%), 310 MiB/s, 2 s left   writing
 *   snapshot web -> base: 1.0 GiB written, syncing...                       syncing
 *   snapshot web -> base: 1.0 GiB written in 3.3 s, durable                 done
 */
#ifndef VMM_CLI_PROGRESS_H
#define VMM_CLI_PROGRESS_H

#include <stddef.h>
#include <stdint.h>

/* Room for any progress line with a label of up to 160 characters. */
#define PROGRESS_LINE_MAX 256

/* Rate and time left appear once this much time has passed (before, they are noise). */
#define PROGRESS_MIN_ELAPSED_S 1.0

enum progress_phase {
	PROGRESS_WRITING, /* done of total, percent, rate, time left */
	PROGRESS_SYNCING, /* everything written, waiting until it is durable */
	PROGRESS_DONE,    /* durable: the total and how long it took */
};

/*
 * @bytes in binary units into @buf (@size bytes, truncated as snprintf): "512 B", then one
 * decimal in KiB, MiB, GiB or TiB ("412.0 MiB"); the unit is chosen after rounding, so
 * 1023.96 KiB is "1.0 MiB", never "1024.0 KiB". Returns @buf.
 */
char *progress_bytes(char *buf, size_t size, uint64_t bytes);

/*
 * A rate of @bytes_per_s into @buf as progress_bytes chooses units, "/s" appended, and
 * whole units from 10 up ("310 MiB/s", "3.5 MiB/s", "800 B/s"). Returns @buf.
 */
char *progress_rate(char *buf, size_t size, double bytes_per_s);

/*
 * The progress line of @label (no newline, no control characters) into @buf (@size bytes,
 * truncated as snprintf; PROGRESS_LINE_MAX is enough). @done is clamped to @total.
 * WRITING: "LABEL: DONE of TOTAL (P%)", P rounded down and at most 99 until done ==
 * total; then ", RATE" (the average, @done / @elapsed_s) once @elapsed_s reaches
 * PROGRESS_MIN_ELAPSED_S and @done is not 0; then ", T left" once at least 1% is done and
 * done < total, T rounded up ("7 s", "2 min 5 s", "1 h 3 min"; left out past 100 h). A
 * total of 0 prints "LABEL: 0 B of 0 B" alone.
 * SYNCING: "LABEL: TOTAL written, syncing...". DONE: "LABEL: TOTAL written in S s, durable",
 * S = @elapsed_s with one decimal.
 * Returns the length the line has (or would have had, untruncated).
 */
int progress_line(char *buf, size_t size, const char *label, uint64_t total, uint64_t done, double elapsed_s,
		  enum progress_phase phase);

#endif

#!/bin/sh
# Run every benchmark driver (build/bench/bench_*) in name order. Each prints its figures
# beside a peer or a physical limit measured in the same run, as ratios.
# usage: tools/bench.sh BUILD_DIR
set -u
build="${1:-build}"
status=0
for b in "$build"/bench/bench_*; do
	[ -x "$b" ] || continue
	echo "== $(basename "$b")"
	VMM_BUILD="$build" "$b" || { echo "bench: $(basename "$b") failed (status $?)"; status=1; }
done
exit $status

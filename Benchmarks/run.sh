#!/usr/bin/env bash
# run.sh: `make bench`: builds every allocator's binary, runs all workloads, counts instructions,
# and writes docs/benchmarks/ (results.csv, table.md, plot.png, instructions.md, memory.md).
# Neighbours: lib.sh (deps, build), runner/bench.c (workloads), instructions.sh (callgrind),
# report.py (tables and plot), docs/benchmarks.md (what each figure means).
#
# Knobs (environment): BENCH_REPS (default 7; at least 5 for published figures), BENCH_SCALE
# (operations per repetition, default 2.0), BENCH_PEERS (default: all), BENCH_OUT (default
# docs/benchmarks). Takes about 4 minutes here from a clean build; the limit is 15.
cd "$(dirname "$0")/.."
. Benchmarks/lib.sh

REPS=${BENCH_REPS:-7}
SCALE=${BENCH_SCALE:-2}
OUT=${BENCH_OUT:-docs/benchmarks}
PEERS=${BENCH_PEERS:-$PEERS}
start=$(date +%s)

bench_deps report
PYTHON=$(find_python)
bench_build

{
    echo "date: $(date -u +%Y-%m-%d)"
    echo "commit: $(git rev-parse --short HEAD 2> /dev/null || echo unknown)$(git diff --quiet HEAD -- Sources 2> /dev/null || echo ' (Sources modified)')"
    echo "host: $(grep -m1 'model name' /proc/cpuinfo | sed 's/.*: //'), $(nproc) vCPUs, Linux $(uname -r)"
    echo "repetitions: $REPS interleaved rounds (median), scale $SCALE"
    echo "load average (1, 5, 15 min) at start: $(cut -d' ' -f1-3 /proc/loadavg)"
} > "$BENCH_BUILD/env.txt"

# Repetitions are interleaved: round r runs every allocator once (all workloads and sizes,
# after its own warm-up), so a burst of load from a neighbour on this shared VM lands on one
# round of every allocator rather than on all repetitions of one; report.py takes the median
# per cell across rounds.
raw=$BENCH_BUILD/results-raw.csv
echo "allocator,workload,size,reps,ops,median_ns,min_ns,max_ns,status" > "$raw"
for round in $(seq 1 "$REPS"); do
    for p in $PEERS; do
        say "round $round/$REPS: bench-$p (--scale $SCALE)"
        if ! timeout 900 "$BIN/bench-$p" --reps 1 --scale "$SCALE" >> "$raw" 2> "$BENCH_BUILD/bench-$p.err"; then
            cat "$BENCH_BUILD/bench-$p.err"
            say "bench-$p failed"
            exit 1
        fi
        if [ "$round" = 1 ]; then
            version=$(sed -n "s/^bench-$p: //p" "$BENCH_BUILD/bench-$p.err" | head -n 1)
            [ -n "$version" ] && echo "$p: $version" >> "$BENCH_BUILD/env.txt"
        fi
    done
done

echo "load average (1, 5, 15 min) at end of the timed runs: $(cut -d' ' -f1-3 /proc/loadavg)" >> "$BENCH_BUILD/env.txt"

Benchmarks/instructions.sh all

rm -f "$BENCH_BUILD"/memory-*.csv
for bytes in $((16 << 20)) $((1 << 30)); do
    "$BIN/quarry-probe" memory "$bytes" > "$BENCH_BUILD/memory-$bytes.csv"
done
"$BIN/quarry-probe" classes > "$BENCH_BUILD/classes.csv"

say "report -> $OUT"
"$PYTHON" Benchmarks/report.py "$BENCH_BUILD" "$OUT"
say "done in $(($(date +%s) - start)) s"

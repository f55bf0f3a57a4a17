#!/usr/bin/env bash
# instructions.sh: exact instruction counts with callgrind (this VM has no performance counters).
# Neighbours: lib.sh (build), bench.c `--count` mode, quarry_probe.c (slow paths, start-up),
# report.py (turns the CSVs into docs/benchmarks/instructions.md), check-budgets.sh (the budgets).
#
#   Benchmarks/instructions.sh pair [PEER...]   instructions per allocate+free pair, pair workload,
#                                              64 bytes: run N and 2N pairs, take (I(2N) - I(N)) / N,
#                                              so start-up, setup and exit cancel out
#   Benchmarks/instructions.sh burst [PEER...]  instructions per object (one allocate and one free)
#                                              in bursts of 1000 allocations then 1000 frees, 64
#                                              bytes: one call per object (burst) and, for peers
#                                              with bulk calls, one bulk call each way (burst-bulk);
#                                              the same N / 2N subtraction
#   Benchmarks/instructions.sh slowpaths        Quarry's slow paths, one callgrind dump per region
#   Benchmarks/instructions.sh init             Quarry.initialize of a 16 MiB and a 1 GiB arena
#   Benchmarks/instructions.sh all              all three
#
# Writes $BENCH_BUILD/{pair-instructions,pair-functions,slowpaths}.csv (the first two can be
# redirected with PAIR_CSV / FUNCS_CSV) and, for `burst`, $BENCH_BUILD/burst-instructions.csv
# (BURST_CSV). Assumes `bench_build` ran.
cd "$(dirname "$0")/.."
. Benchmarks/lib.sh

PAIR_SIZE=${PAIR_SIZE:-64}
PAIR_N=${PAIR_N:-100000}
PAIR_CSV=${PAIR_CSV:-$BENCH_BUILD/pair-instructions.csv}
FUNCS_CSV=${FUNCS_CSV:-$BENCH_BUILD/pair-functions.csv}
BURST_CSV=${BURST_CSV:-$BENCH_BUILD/burst-instructions.csv}
CG=$BENCH_BUILD/callgrind
mkdir -p "$CG"

# Total instructions of one callgrind output file.
cg_total() { sed -n 's/^summary: *\([0-9]*\).*/\1/p; s/^totals: *\([0-9]*\).*/\1/p' "$1" | head -n 1; }

# The command that runs $2 objects of workload $3 (default pair) for peer $1 (bench.c's
# `--count` mode).
pair_command() { echo "$BIN/bench-$1 --count $PAIR_SIZE $2 ${3:-pair}"; }

# $1 = peer, $2 = objects, $3 = workload (default pair). Prints the total instruction count;
# exit 3 when the peer is unavailable.
cg_run_pair() {
    local w=${3:-pair}
    local out=$CG/$w-$1-$2.out
    rm -f "$out"
    # shellcheck disable=SC2046
    valgrind --tool=callgrind --callgrind-out-file="$out" $(pair_command "$1" "$2" "$w") \
        > "$CG/$w-$1-$2.log" 2>&1 || return $?
    cg_total "$out"
}

# $1 = peer, $2 = workload (default pair). Prints "per_pair,I(N),I(2N)" or returns 3 when the
# peer is unavailable.
pair_instructions() {
    local a b
    a=$(cg_run_pair "$1" "$PAIR_N" "${2:-pair}") || return $?
    b=$(cg_run_pair "$1" $((2 * PAIR_N)) "${2:-pair}") || return $?
    awk -v a="$a" -v b="$b" -v n="$PAIR_N" 'BEGIN { printf "%.2f,%d,%d\n", (b - a) / n, a, b }'
}

# Per-function instructions per pair: the same subtraction on callgrind_annotate's listing.
pair_functions() {
    local p=$1 a=$CG/pair-$1-$PAIR_N.out b=$CG/pair-$1-$((2 * PAIR_N)).out
    callgrind_annotate --auto=no --inclusive=no --threshold=100 "$a" 2> /dev/null > "$CG/annotate-$p-1.txt"
    callgrind_annotate --auto=no --inclusive=no --threshold=100 "$b" 2> /dev/null > "$CG/annotate-$p-2.txt"
    awk -v peer="$p" -v n="$PAIR_N" '
        function parse(line,   ir, fn) {
            if (line !~ /^ *[0-9,]+ +\(/) return ""
            ir = line; sub(/^ */, "", ir); sub(/ .*/, "", ir); gsub(/,/, "", ir)
            fn = line; sub(/^[^)]*\) +/, "", fn); sub(/ \[.*/, "", fn); sub(/^.*:/, "", fn)
            if (fn == "" || fn ~ /PROGRAM TOTALS/) return ""
            return ir SUBSEP fn
        }
        FNR == 1 { file++ }
        { r = parse($0); if (r == "") next; split(r, f, SUBSEP); cost[file, f[2]] += f[1]; names[f[2]] = 1 }
        END {
            for (fn in names) {
                d = (cost[2, fn] - cost[1, fn]) / n
                if (d >= 0.5) printf "%s,%.2f,%s\n", peer, d, fn
            }
        }' "$CG/annotate-$p-1.txt" "$CG/annotate-$p-2.txt" | sort -t, -k2,2 -g -r
}

run_pairs() {
    local peers=${*:-$PEERS}
    echo "allocator,size,per_pair,ir_n,ir_2n,n,status" > "$PAIR_CSV"
    echo "allocator,per_pair,function" > "$FUNCS_CSV"
    for p in $peers; do
        local r status=ok
        if r=$(pair_instructions "$p"); then
            pair_functions "$p" >> "$FUNCS_CSV"
        else
            [ $? = 3 ] && status=unavailable || status=failed
            r=",,"
        fi
        echo "$p,$PAIR_SIZE,$r,$PAIR_N,$status" >> "$PAIR_CSV"
        say "callgrind pair/$PAIR_SIZE $p: ${r%%,*} instructions per pair ($status)"
    done
}

# Bursts of 1000 then 1000, per call and in bulk: instructions per object (alloc + free).
run_bursts() {
    local peers=${*:-quarry-cache}
    echo "allocator,workload,size,per_object,ir_n,ir_2n,n,status" > "$BURST_CSV"
    for p in $peers; do
        for w in burst burst-bulk; do
            local r status=ok
            if ! r=$(pair_instructions "$p" "$w"); then
                [ $? = 3 ] && status=unavailable || status=failed
                r=",,"
            fi
            echo "$p,$w,$PAIR_SIZE,$r,$PAIR_N,$status" >> "$BURST_CSV"
            say "callgrind $w/$PAIR_SIZE $p: ${r%%,*} instructions per object ($status)"
        done
    done
}

# Runs quarry-probe under callgrind; prints "label,instructions" for each dump (region).
probe_regions() {
    local tag=$1
    shift
    rm -f "$CG/probe-$tag.out"*
    LD_BIND_NOW=1 valgrind --tool=callgrind --callgrind-out-file="$CG/probe-$tag.out" "$BIN/quarry-probe" "$@" \
        > "$CG/probe-$tag.log" 2>&1
    for f in "$CG/probe-$tag.out".*; do
        label=$(sed -n 's/^desc: Trigger: Client Request: *//p' "$f")
        [ -n "$label" ] && echo "$label,$(cg_total "$f")"
    done | sort -t, -k1,1 -V
}

run_slowpaths() {
    {
        echo "region,instructions"
        probe_regions slowpaths slowpaths
        probe_regions init-16m init $((16 << 20)) | grep -v "^empty,"
        probe_regions init-1g init $((1 << 30)) | grep -v "^empty,"
    } > "$BENCH_BUILD/slowpaths.csv"
    say "callgrind Quarry slow paths and start-up -> $BENCH_BUILD/slowpaths.csv"
}

case ${1:-all} in
    pair) shift; run_pairs "$@" ;;
    burst) shift; run_bursts "$@" ;;
    slowpaths | init) run_slowpaths ;;
    all) run_pairs; run_slowpaths ;;
    *) echo "usage: $0 pair [PEER...] | burst [PEER...] | slowpaths | all"; exit 2 ;;
esac

#!/bin/sh
# fastpath-callgrind.sh: exact instructions per allocate+free pair on the host (x86-64,
# release, whole module, SingleCPUPlatform), from callgrind: total instructions at
# 2,000,000 pairs minus total at 1,000,000 pairs, divided by 1,000,000 (start-up and
# exit cancel out). Fails if the pair made any call (the fast path must not call) or
# costs more than MAX_PER_PAIR instructions. MODE=object measures allocateObject() and the
# CacheObject's free() instead (CacheObject.swift: no pointer validation, no double-free test).
set -eu
cd "$(dirname "$0")/../.."
SWIFTC=${SWIFTC:-/opt/swift/usr/bin/swiftc}
OUT=${OUT:-/tmp/quarry-fastpath-bench}
MODE=${MODE:-pair}
case $MODE in
    pair) MAX_PER_PAIR=${MAX_PER_PAIR:-110}; FUNCTION='FastPathBench.*4pair' ;;
    object) MAX_PER_PAIR=${MAX_PER_PAIR:-60}; FUNCTION='FastPathBench.*10objectPair' ;;
    *) echo "MODE must be pair or object"; exit 2 ;;
esac
"$SWIFTC" -O -wmo -parse-as-library -module-name Quarry $(find Sources/Quarry -name "*.swift" | LC_ALL=C sort) Benchmarks/fastpath/fastpath-bench.swift -o "$OUT"
run() {
    valgrind --tool=callgrind --callgrind-out-file="$2" "$OUT" "$1" "$MODE" 2>&1 |
        sed -n 's/.*Collected : \([0-9]*\).*/\1/p'
}
a=$(run 1000000 "$OUT.1.cg")
b=$(run 2000000 "$OUT.2.cg")
per=$(( (b - a) / 1000000 ))
# Calls made from inside the measured function: callgrind lists each callee of a
# function as a `calls=N ...` line in that function's block (`fn=(id) name` the first
# time a function is named, in an `fn=` or `cfn=` line; `(id)` alone afterwards).
count_calls() {
    awk -v pattern="$1" '
        /^c?fn=\(/ {
            id = $1; sub(/^c?fn=/, "", id)
            if (NF > 1 && $0 ~ pattern) wanted[id] = 1
        }
        /^fn=/ { inside = (id in wanted) }
        inside && /^calls=/ { split($1, c, "="); n += c[2] }
        END { print n + 0 }' "$2"
}
calls=$(count_calls "$FUNCTION" "$OUT.2.cg")
main_calls=$(count_calls 'FastPathBench.*4main' "$OUT.2.cg")
rm -f "$OUT.1.cg" "$OUT.2.cg"
echo "instructions: $a (1M pairs), $b (2M pairs)"
echo "per allocate+free pair ($MODE): $per (includes the benchmark's call, loop and prologue)"
echo "calls made by the measured pair function: $calls (by main, as a check of the count: $main_calls)"
[ "$calls" -eq 0 ] || { echo "FAIL: the fast path made a call"; exit 1; }
[ "$per" -le "$MAX_PER_PAIR" ] || { echo "FAIL: more than $MAX_PER_PAIR instructions per pair"; exit 1; }

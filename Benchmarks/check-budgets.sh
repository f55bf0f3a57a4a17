#!/usr/bin/env bash
# check-budgets.sh: Quarry's performance budgets, for `make test`: deterministic, never time.
# Neighbours: instructions.sh (callgrind counts), check_hitpath.py (the hit path in the
# disassembly), lib.sh (builds), docs/benchmarks.md ("Budgets": what the figures mean).
#
# Everything is measured on the shipped C functions of include/quarry.h, called as a C program
# calls them (quarry_cache_alloc/quarry_cache_free, quarry_malloc/quarry_free, 64 bytes):
#   (a) instructions per allocate+free pair, callgrind, I(2N) - I(N) over N, through bench.c's
#       pair loop on the host library (build/host/libquarry.so);
#   (b) the same in a 32-bit process on the Embedded i686 library built with `make lib`'s flags
#       and -D QUARRY_PLATFORM_SINGLE_CPU (build/i686-single-cpu/libquarry.a);
#   (c) the hit path (magazine hit) of each function in the shipped build/<arch>/libquarry.a
#       (X86Platform, i686 and x86_64), read from the disassembly by check_hitpath.py: no call,
#       no lock-prefixed or other serialising instruction (pushf, popf, cli, ...), and its
#       straight-line instruction count, alloc + free, within the budget.
#   (d) the bulk calls: instructions per object (one allocation and one free) in bursts of 1000
#       allocations then 1000 frees through quarry_cache_alloc_bulk/quarry_cache_free_bulk
#       (callgrind, host and i686); the goal is BURST_GOAL_FACTOR times that library's pair (a).
# Each figure is printed beside its budget, goal and stretch.
#
# BUDGETS_ALLOW_SERIALISING=1 turns (c)'s violations (a call or a serialising instruction on
# the hit path) into warnings; the counts are still enforced.
cd "$(dirname "$0")/.."
. Benchmarks/lib.sh

# ---- The budgets: the only place these numbers live. ---------------------------------------
# Goals (issue 10), instructions per 64-byte allocate+free pair through the C ABI; the hit-path
# goal is the straight-line count of the X86 library's alloc + free.
GOAL_CACHE=30 STRETCH_CACHE=24
GOAL_MALLOC=40 STRETCH_MALLOC=32
GOAL_HITPATH=40
# Measured on the unmasked hit paths (in-use marker, cached mark, magic-word handle check,
# misses and errors tail-called out of line) plus ~5%. Before them (34e18f2): host cache 335,
# malloc 173; i686 cache 432, malloc 226 (the full handle validation, lock bts/btr, masking).
# (a) host library: measured cache 128, malloc 131; then 148 and 143 once each host thread has
# its own CPU index (a thread-local load and sign check on entry, the index read from
# thread-local storage instead of the constant 0; bare metal pays none of it).
# The allocation hit paths then called the C function's miss path in place of returning nil
# (allocateHit(orElse:)): cache 146, malloc 143.
BUDGET_CACHE_HOST=154
BUDGET_MALLOC_HOST=150
# (b) i686 single-CPU library in a 32-bit process: measured cache 188, malloc 188 (cache 182
# with the handle generation read through the handle, and the misses taking the cache).
# Then 180 and 185 (allocateHit(orElse:), see (a)).
BUDGET_CACHE_I686=189
BUDGET_MALLOC_I686=195
# (c) straight-line hit path, alloc + free. Measured i686: cache 166, malloc 171; x86_64:
# cache 120, malloc 124 (build/bench/hitpath-<arch>.txt lists each path). With the handle
# generation: i686 cache 155, x86_64 cache 123 (one more mask per call).
# Then i686 cache 153, malloc 158; x86_64 cache 121, malloc 125 (allocateHit(orElse:): no test
# of the object on a hit; x86_64 malloc one more, a jump to the shared epilogue).
BUDGET_HITPATH_CACHE_I686=161
BUDGET_HITPATH_MALLOC_I686=166
BUDGET_HITPATH_CACHE_X86_64=126
BUDGET_HITPATH_MALLOC_X86_64=131
# (d) bulk burst per object (issue 10 item 6), measured when this budget was added, plus 5%: host
# 235.81, i686 293.50 (one call per object: 375, 478). Goal: at most 2x the pair of (a)/(b).
# Then 246.29 and 306.08; with the allocation bits of small objects in their slabs (issue 10
# item 8) 260.87 and 325.17, plus 5%: each bitmap access of the slab layer (about four per
# object: admit, pop, set, clear) tests the cache's layout; the hit paths do not pay it.
BUDGET_BURST_HOST=274
BUDGET_BURST_I686=341
BURST_GOAL_FACTOR=2
# What is off the hit path (check_hitpath.py, rule 1), as shell-style patterns of short names:
# the slow paths (magazine empty or full, `*Slow`), the error reports (`*.refuse*`), a corrupt
# free list, a free into a tail page of a multi-page slab, the debug options' per-object work,
# the optional constructor (<indirect>); in the front: the page-map resolve of a pointer not on
# its class cache's slab head page, the first use of a class, spans above 32 KiB. And the
# error a refused call records (HITPATH_COLD_SYMBOLS). A slow path under a new name must be
# added here, or the check follows it and reports its call.
HITPATH_COLD_CALLS="*Slow *.refuse* Quarry.SlabCache.handOutCorrupt Quarry.PageMap.lookupMiss \
Quarry.SlabCache.checkOnAllocate Quarry.SlabCache.checkOnFree <indirect> Quarry.MallocFront.resolve \
Quarry.MallocFront.createClassCache Quarry.MallocFront.allocateSpan Quarry.MallocFront.record Quarry.Span.free"
HITPATH_COLD_SYMBOLS="Quarry.CCaller.errorBytes"
# ---------------------------------------------------------------------------------------------

bench_deps budgets
failed=0
mkdir -p "$BENCH_BUILD"

# $1 = what, $2 = measured, $3 = budget, $4 = goal, $5 = stretch (optional). Prints the verdict.
verdict() {
    local line
    line=$(awk -v m="$2" -v b="$3" -v g="$4" -v s="${5:-}" 'BEGIN {
        printf "%s: measured %s; budget %s, goal %s", (m <= b ? "ok" : "FAIL"), m, b, g
        if (s != "") printf ", stretch %s", s
        if (m > g) printf " (%.1fx the goal)", m / g }')
    say "budget $1: $line"
    case $line in FAIL*) failed=1 ;; esac
}

# ---- (a) and (b): callgrind, instructions per pair ------------------------------------------
bench_build quarry-cache quarry-malloc $I686_PEERS
PAIRS=$BENCH_BUILD/budget-pairs.csv
PAIR_CSV=$PAIRS FUNCS_CSV=$BENCH_BUILD/budget-functions.csv \
    Benchmarks/instructions.sh pair quarry-cache quarry-malloc $I686_PEERS > "$BENCH_BUILD/budget-pairs.log" 2>&1 ||
    { cat "$BENCH_BUILD/budget-pairs.log"; exit 1; }

# $1 = peer, $2 = budget, $3 = goal, $4 = stretch, $5 = description
check_pair() {
    local per_pair
    per_pair=$(awk -F, -v p="$1" '$1 == p && $7 == "ok" { print $3 }' "$PAIRS")
    if [ -z "$per_pair" ]; then
        say "FAIL budget $1: no measurement (see $BENCH_BUILD/budget-pairs.log and $BENCH_BUILD/callgrind)"
        failed=1
        return 0
    fi
    verdict "$5 ($1, callgrind)" "$per_pair" "$2" "$3" "$4"
}
check_pair quarry-cache "$BUDGET_CACHE_HOST" $GOAL_CACHE $STRETCH_CACHE "(a) cache pair, host"
check_pair quarry-malloc "$BUDGET_MALLOC_HOST" $GOAL_MALLOC $STRETCH_MALLOC "(a) malloc pair, host"
check_pair quarry-cache-i686 "$BUDGET_CACHE_I686" $GOAL_CACHE $STRETCH_CACHE "(b) cache pair, i686"
check_pair quarry-malloc-i686 "$BUDGET_MALLOC_I686" $GOAL_MALLOC $STRETCH_MALLOC "(b) malloc pair, i686"

# ---- (d): bulk calls, bursts of 1000 then 1000 -----------------------------------------------
BURSTS=$BENCH_BUILD/budget-bursts.csv
BURST_CSV=$BURSTS Benchmarks/instructions.sh burst quarry-cache quarry-cache-i686 \
    > "$BENCH_BUILD/budget-bursts.log" 2>&1 || { cat "$BENCH_BUILD/budget-bursts.log"; exit 1; }
# $1 = peer, $2 = budget, $3 = description
check_burst() {
    local pair per_object goal
    pair=$(awk -F, -v p="$1" '$1 == p && $7 == "ok" { print $3 }' "$PAIRS")
    per_object=$(awk -F, -v p="$1" '$1 == p && $2 == "burst-bulk" && $8 == "ok" { print $4 }' "$BURSTS")
    if [ -z "$pair" ] || [ -z "$per_object" ]; then
        say "FAIL budget $1: no burst measurement (see $BENCH_BUILD/budget-bursts.log)"
        failed=1
        return 0
    fi
    goal=$(awk -v p="$pair" -v f="$BURST_GOAL_FACTOR" 'BEGIN { printf "%.2f", p * f }')
    verdict "$3 ($1, callgrind, per object; goal ${BURST_GOAL_FACTOR}x its pair)" "$per_object" "$2" "$goal"
}
check_burst quarry-cache "$BUDGET_BURST_HOST" "(d) bulk burst, host"
check_burst quarry-cache-i686 "$BUDGET_BURST_I686" "(d) bulk burst, i686"

# ---- (c): the hit path of the shipped library ------------------------------------------------
# $1 = arch, $2 = cache budget, $3 = malloc budget
check_hitpath() {
    local arch=$1 lib=build/$1/libquarry.a out=$BENCH_BUILD/hitpath-$1.out detail=$BENCH_BUILD/hitpath-$1.txt status=0
    say "make lib ARCH=$arch -> $lib"
    make_quiet lib ARCH="$arch"
    say "(c) hit path in $lib (the path itself: $detail)"
    python3 Benchmarks/check_hitpath.py "$lib" "$OBJDUMP" "$SWIFT_BIN/swift-demangle" "$detail" \
        "$HITPATH_COLD_CALLS" "$HITPATH_COLD_SYMBOLS" \
        quarry_cache_alloc quarry_cache_free quarry_malloc quarry_free > "$out" || status=$?
    grep -v '^hitpath ' "$out"
    case $status in
        0) ;;
        3) say "FAIL (c) $arch: a Swift runtime or allocation reference (listed above)"; failed=1 ;;
        *) say "FAIL (c) $arch: the hit path check could not complete (status $status)"; failed=1; return 0 ;;
    esac
    local pair name budget count bad
    for pair in "cache quarry_cache_alloc quarry_cache_free $2" "malloc quarry_malloc quarry_free $3"; do
        set -- $pair
        name=$1 budget=$4
        count=$(awk -v a="$2" -v b="$3" '$1 == "hitpath" && ($2 == a || $2 == b) { n += $3 } END { print n + 0 }' "$out")
        bad=$(awk -v a="$2" -v b="$3" '$1 == "hitpath" && ($2 == a || $2 == b) { n += $4 } END { print n + 0 }' "$out")
        verdict "(c) $name hit path, $arch ($2 + $3, instructions)" "$count" "$budget" $GOAL_HITPATH
        if [ "$bad" != 0 ]; then
            if [ "${BUDGETS_ALLOW_SERIALISING:-0}" = 1 ]; then
                say "WARNING (c) $name hit path, $arch: $bad call(s) or serialising instruction(s) (allowed by BUDGETS_ALLOW_SERIALISING=1)"
            else
                say "FAIL (c) $name hit path, $arch: $bad call(s) or serialising instruction(s) (listed above)"
                failed=1
            fi
        fi
    done
}
check_hitpath i686 "$BUDGET_HITPATH_CACHE_I686" "$BUDGET_HITPATH_MALLOC_I686"
check_hitpath x86_64 "$BUDGET_HITPATH_CACHE_X86_64" "$BUDGET_HITPATH_MALLOC_X86_64"

if [ $failed != 0 ]; then
    say "budgets: FAILED"
    exit 1
fi
say "budgets: all passed"

#!/usr/bin/env bash
# check-budgets.sh: Quarry's performance budgets, for `make test`: deterministic, never time.
# Neighbours: instructions.sh (callgrind counts), check_fastpath.py (disassembly check),
# lib.sh (build), docs/benchmarks.md (what the figures mean).
#
# 1. Instructions per allocate+free pair (pair workload, 64 bytes, through the C harness,
#    callgrind: I(2N) - I(N) over N) must not exceed the budgets below.
# 2. The fast path in the Embedded i686 object (SlabCache.allocate/free and MallocFront.malloc/
#    free, for a call-free platform) makes no call outside FASTPATH_ALLOWED_CALLS and never
#    references the Swift runtime or an allocation function, directly or through anything it calls.
cd "$(dirname "$0")/.."
. Benchmarks/lib.sh

# ---- The budgets: the only place these numbers live. ---------------------------------------
# Quarry cache API, instructions per pair in the harness. Goal 25, stretch 20 (issue 6).
# Measured 316 on the locked slab path before the per-CPU layer; 133 with it (magazine hit:
# no lock; left: pointer validation of every free, the two atomic bitmap updates, about 34
# of them the C-ABI glue). Enforced at that figure plus ~5%. The safety layer (issue 5) added
# 8 (133 -> 141; 85 -> 91 from Swift): one test of the cache's `objectWork` flag on allocate
# and on free (debug options, docs/safety.md), and the randomized-carving bound in pointer
# validation (`carved | carvedFloor`). Re-enforced at 141 plus ~5%.
# The hit paths without serialising instructions (in-use marker, cached mark, bitmap read
# instead of lock bts/btr): 141 -> 159 instructions, fewer of them slow (docs/design.md,
# "Fast-path cost"); enforced at 159 plus ~5%.
QUARRY_CACHE_PAIR_BUDGET=167
# Quarry malloc front, instructions per pair in the harness. Goal 35, stretch 28 (issue 6).
# Measured 406 on the locked path, 224 with the per-CPU layer (the front adds a page-map
# resolve of every free and its class lookup); enforced at that figure plus ~5%. The safety
# layer added 12 (224 -> 236: the same flag tests and bound as the cache path, through the
# front's inlined SlabCache calls); re-enforced at 236 plus ~5%. The front's free then
# stopped resolving the page map itself for objects on a class cache's slab head page
# (SlabCache.free validates them anyway): 236 -> 190; enforced at 190 plus ~5%.
# With the same change and the front's single resolve of a freed pointer: 190 -> 182;
# enforced at 182 plus ~5%.
QUARRY_MALLOC_PAIR_BUDGET=191
# Calls the fast-path functions make today, by short name: only cold branches. Cache: the
# probe's call into allocate, the slow paths (magazine empty or full: allocateSlow,
# freeSlow), the error counter (refuse), a corrupt free list (handOutCorrupt), a free into
# a tail page of a multi-page slab (locateHead), the debug options' per-object work when the
# cache has any (checkOnAllocate, checkOnFree), the optional constructor (<indirect>).
# Front: the page-map resolve of a freed pointer, and its cold branches (first use of a
# class, spans above 32 KiB, error counter). Anything new fails the check.
FASTPATH_ALLOWED_CALLS="Quarry.SlabCache.allocate Quarry.SlabCache.allocateSlow \
Quarry.SlabCache.free Quarry.SlabCache.freeSlow Quarry.SlabCache.refuse \
Quarry.SlabCache.locateHead Quarry.SlabCache.checkOnAllocate Quarry.SlabCache.checkOnFree <indirect> \
Quarry.MallocFront.resolve Quarry.MallocFront.createClassCache Quarry.MallocFront.allocateSpan \
Quarry.MallocFront.record Quarry.Span.free"
# ---------------------------------------------------------------------------------------------
GOAL_CACHE=25 STRETCH_CACHE=20 GOAL_MALLOC=35 STRETCH_MALLOC=28

bench_deps
failed=0

mkdir -p "$BENCH_BUILD"
say "build (QuarryBench release, harness binaries)"
bench_build quarry-cache quarry-malloc > "$BENCH_BUILD/check-build.log" 2>&1 ||
    { cat "$BENCH_BUILD/check-build.log"; exit 1; }

# $1 = peer, $2 = budget, $3 = goal, $4 = stretch
check_pair() {
    local csv=$BENCH_BUILD/budget-$1.csv r per_pair
    r=$(PAIR_CSV=$csv FUNCS_CSV=$BENCH_BUILD/budget-$1-functions.csv Benchmarks/instructions.sh pair "$1" 2>&1) || true
    per_pair=$(awk -F, -v p="$1" '$1 == p { print $3 }' "$csv" 2> /dev/null)
    if [ -z "$per_pair" ]; then
        if grep -q "^$1,.*,unavailable$" "$csv" 2> /dev/null; then
            say "budget $1: not available in this tree (skipped; budget $2, goal $3)"
            return 0
        fi
        echo "$r"
        say "FAIL budget $1: no measurement (callgrind run failed, see $BENCH_BUILD/callgrind)"
        failed=1
        return 0
    fi
    local verdict
    verdict=$(awk -v m="$per_pair" -v b="$2" -v g="$3" -v s="$4" 'BEGIN {
        printf "%s: measured %s instructions per pair; budget %s, goal %s, stretch %s",
            (m <= b ? "ok" : "FAIL"), m, b, g, s
        if (m > g) printf " (%.1fx the goal)", m / g }')
    say "budget $1 (pair/64, callgrind): $verdict"
    case $verdict in FAIL*) failed=1 ;; esac
}

check_pair quarry-cache "$QUARRY_CACHE_PAIR_BUDGET" $GOAL_CACHE $STRETCH_CACHE
check_pair quarry-malloc "$QUARRY_MALLOC_PAIR_BUDGET" $GOAL_MALLOC $STRETCH_MALLOC

build_embedded_object
say "fast-path disassembly check ($EMBEDDED_OBJECT)"
python3 Benchmarks/check_fastpath.py "$EMBEDDED_OBJECT" "$OBJDUMP" "$SWIFT_BIN/swift-demangle" \
    "$FASTPATH_ALLOWED_CALLS" || failed=1

if [ $failed != 0 ]; then
    say "budgets: FAILED"
    exit 1
fi
say "budgets: all passed"

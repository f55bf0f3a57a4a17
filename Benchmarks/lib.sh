# lib.sh: what run.sh, instructions.sh and check-budgets.sh share: paths, dependency check, build.
# Neighbours: run.sh (make bench), check-budgets.sh (make test), instructions.sh (callgrind).
# Source it from the repository root: `. Benchmarks/lib.sh`.

set -eu

SWIFT_BIN=${SWIFT_BIN:-/opt/swift/usr/bin}
SWIFT=$SWIFT_BIN/swift
SWIFTC=$SWIFT_BIN/swiftc
OBJDUMP=$SWIFT_BIN/llvm-objdump
[ -x "$OBJDUMP" ] || OBJDUMP=llvm-objdump
CC=${CC:-gcc}
BENCH_BUILD=${BENCH_BUILD:-build/bench}
BIN=$BENCH_BUILD/bin
SWIFTPM_SCRATCH=$BENCH_BUILD/swiftpm
QB_LIBDIR=$SWIFTPM_SCRATCH/x86_64-unknown-linux-gnu/release
QB_INCLUDE=Benchmarks/QuarryBench/Sources/CQuarryBench/include
CFLAGS_BENCH="-O2 -g -std=gnu11 -Wall -Wextra -pthread"

# Every allocator under test, in report order: binary name and extra link flags.
PEERS="floor glibc mimalloc jemalloc tcmalloc quarry-cache quarry-malloc"

say() { echo "== bench: $*"; }

peer_libs() {
    case $1 in
        mimalloc) echo "-lmimalloc" ;;
        jemalloc) echo "-ljemalloc" ;;
        tcmalloc) echo "-ltcmalloc_minimal" ;;
        quarry-*) echo "-L$QB_LIBDIR -lQuarryBench -Wl,-rpath,$PWD/$QB_LIBDIR -Wl,-rpath,${SWIFT_BIN%/bin}/lib/swift/linux" ;;
        *) echo "" ;;
    esac
}

# A python3 that has matplotlib (Debian's python3-matplotlib lives in /usr/bin/python3).
find_python() {
    for p in /usr/bin/python3 python3; do
        if command -v "$p" > /dev/null 2>&1 && "$p" -c 'import matplotlib' > /dev/null 2>&1; then
            echo "$p"
            return 0
        fi
    done
    return 1
}

# Checks for the tools and libraries; as root installs what is missing, else says how.
# $1 = "report" to also require matplotlib.
bench_deps() {
    missing=""
    command -v "$CC" > /dev/null 2>&1 || missing="$missing gcc"
    command -v valgrind > /dev/null 2>&1 && [ -f /usr/include/valgrind/callgrind.h ] || missing="$missing valgrind"
    [ -f /usr/include/mimalloc.h ] || missing="$missing libmimalloc-dev"
    [ -f /usr/include/jemalloc/jemalloc.h ] || missing="$missing libjemalloc-dev"
    [ -f /usr/include/gperftools/tcmalloc.h ] || missing="$missing libgoogle-perftools-dev"
    if [ "${1:-}" = report ] && ! find_python > /dev/null; then missing="$missing python3-matplotlib"; fi
    [ -x "$SWIFT" ] || { echo "Swift toolchain not found at $SWIFT_BIN (set SWIFT_BIN)"; return 1; }
    [ -z "$missing" ] && return 0
    if [ "$(id -u)" = 0 ] && command -v apt-get > /dev/null 2>&1; then
        say "installing$missing"
        DEBIAN_FRONTEND=noninteractive apt-get update -q
        # shellcheck disable=SC2086
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q $missing
    else
        echo "missing packages; install them with:"
        echo "   sudo apt-get install -y$missing"
        return 1
    fi
}

# Quarry for the host, release, with Quarry's generic bodies serialised so that
# SlabCache<BenchPlatform> is specialised inside libQuarryBench.so.
build_quarry_bench() {
    say "swift build -c release Benchmarks/QuarryBench -> $QB_LIBDIR/libQuarryBench.so"
    local log=$BENCH_BUILD/quarrybench-build.log status=0
    mkdir -p "$BENCH_BUILD"
    "$SWIFT" build -c release -Xswiftc -enable-cmo-everything \
        --package-path Benchmarks/QuarryBench --scratch-path "$SWIFTPM_SCRATCH" > "$log" 2>&1 || status=$?
    grep -v -E '^\[[0-9]+/[0-9]+\]|^Building for|^Write |^Compiling|^Linking' "$log" || true
    [ $status = 0 ] || { echo "QuarryBench build failed (log: $log)"; return 1; }
}

build_peer() {
    mkdir -p "$BIN"
    # shellcheck disable=SC2046
    "$CC" $CFLAGS_BENCH -I Benchmarks/runner -I "$QB_INCLUDE" -o "$BIN/bench-$1" \
        Benchmarks/runner/bench.c "Benchmarks/runner/peer_$(echo "$1" | tr - _).c" $(peer_libs "$1")
}

build_probe() {
    mkdir -p "$BIN"
    # shellcheck disable=SC2046
    "$CC" $CFLAGS_BENCH -I Benchmarks/runner -I "$QB_INCLUDE" -o "$BIN/quarry-probe" \
        Benchmarks/runner/quarry_probe.c $(peer_libs quarry-cache)
}

# $@ = peers to build (default: all) plus the Quarry probe.
bench_build() {
    build_quarry_bench
    say "gcc $CFLAGS_BENCH: Benchmarks/runner -> $BIN/bench-{${PEERS// /,}} and quarry-probe"
    for p in ${@:-$PEERS}; do build_peer "$p"; done
    build_probe
}

# The Embedded i686 object of Quarry plus the fast-path probe (the library alone holds no
# specialisation of SlabCache, so the probe instantiates one with a call-free platform).
EMBEDDED_OBJECT=$BENCH_BUILD/quarry-i686.o
build_embedded_object() {
    mkdir -p "$BENCH_BUILD"
    say "swiftc (Embedded, i686, -Osize, -no-allocations) Sources/Quarry + Benchmarks/probe -> $EMBEDDED_OBJECT"
    "$SWIFTC" -target i686-unknown-none-elf -enable-experimental-feature Embedded -wmo \
        -parse-as-library -Osize -Xfrontend -disable-stack-protector -Xfrontend -function-sections \
        -Xfrontend -no-allocations -module-name Quarry -c Sources/Quarry/*.swift \
        Benchmarks/probe/FastPathProbe.swift -o "$EMBEDDED_OBJECT"
}

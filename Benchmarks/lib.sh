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
# Quarry as the benchmarks link it: the C functions of include/quarry.h, built by the main
# Makefile (one build description; see build_quarry):
#   host (x86_64)  build/host/libquarry.so       `make host-lib`: Sources/Quarry + Sources/QuarryC
#                  as one module, swiftc -O -wmo, as `make lib` compiles them for bare metal;
#                  its CPlatform is the host's one-CPU platform
#   i686           build/i686-single-cpu/libquarry.a   `make lib ARCH=i686 QUARRY_PLATFORM=single-cpu
#                  QUARRY_LIBC_NAMES=0`: the Embedded library, its flags and -D
#                  QUARRY_PLATFORM_SINGLE_CPU, so it runs in a 32-bit Linux process
# and for the disassembly check, the shipped libraries build/{i686,x86_64}/libquarry.a (`make lib`).
MAKE=${MAKE:-make}
HOST_LIB=build/host/libquarry.so
I686_LIB=build/i686-single-cpu/libquarry.a
CFLAGS_BENCH="-O2 -g -std=gnu11 -Wall -Wextra -pthread"

# Every allocator under test, in report order: binary name and extra link flags.
PEERS="floor glibc mimalloc jemalloc tcmalloc quarry-cache quarry-malloc"
# The same Quarry peers built -m32 against the i686 library (make budgets).
I686_PEERS="quarry-cache-i686 quarry-malloc-i686"

say() { echo "== bench: $*"; }

peer_libs() {
    case $1 in
        mimalloc) echo "-lmimalloc" ;;
        jemalloc) echo "-ljemalloc" ;;
        tcmalloc) echo "-ltcmalloc_minimal" ;;
        # gcc -m32 adds the 32-bit libgcc (__udivdi3 and friends) by itself.
        quarry-*-i686) echo "$I686_LIB" ;;
        quarry-*) echo "-Lbuild/host -lquarry -Wl,-rpath,$PWD/build/host -Wl,-rpath,${SWIFT_BIN%/bin}/lib/swift/linux" ;;
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
# $1 = "budgets": only what make budgets needs (gcc, -m32 linking, valgrind); "report": also
# matplotlib; otherwise the peer allocators too.
bench_deps() {
    missing=""
    command -v "$CC" > /dev/null 2>&1 || missing="$missing gcc"
    command -v valgrind > /dev/null 2>&1 && [ -f /usr/include/valgrind/callgrind.h ] || missing="$missing valgrind"
    # The 32-bit harness: check by linking one (gcc prints a libgcc path even without multilib).
    echo 'int main(void) { return 0; }' | "$CC" -m32 -x c -o /dev/null - > /dev/null 2>&1 || missing="$missing gcc-multilib"
    if [ "${1:-}" != budgets ]; then
        [ -f /usr/include/mimalloc.h ] || missing="$missing libmimalloc-dev"
        [ -f /usr/include/jemalloc/jemalloc.h ] || missing="$missing libjemalloc-dev"
        [ -f /usr/include/gperftools/tcmalloc.h ] || missing="$missing libgoogle-perftools-dev"
    fi
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

# The Quarry libraries, through the Makefile (up to date: nothing rebuilt). $@ = make goals
# and variables; output in $BENCH_BUILD/make.log unless it fails.
make_quiet() {
    local log=$BENCH_BUILD/make.log
    mkdir -p "$BENCH_BUILD"
    "$MAKE" --no-print-directory SWIFT_BIN="$SWIFT_BIN" "$@" > "$log" 2>&1 || { cat "$log"; return 1; }
}

# $1 = host or i686 (see the top of this file).
build_quarry() {
    case $1 in
        host) say "make host-lib -> $HOST_LIB"; make_quiet host-lib ;;
        i686) say "make lib ARCH=i686 QUARRY_PLATFORM=single-cpu QUARRY_LIBC_NAMES=0 -> $I686_LIB"
              make_quiet lib ARCH=i686 QUARRY_PLATFORM=single-cpu QUARRY_LIBC_NAMES=0 ;;
    esac
}

# $1 = peer: bench-$1 from bench.c and its peer_*.c; the -i686 peers are 32-bit programs.
build_peer() {
    local flags=$CFLAGS_BENCH source=${1%-i686}
    case $1 in *-i686) flags="$flags -m32" ;; esac
    mkdir -p "$BIN"
    # shellcheck disable=SC2046,SC2086
    "$CC" $flags -I Benchmarks/runner -I include -o "$BIN/bench-$1" \
        Benchmarks/runner/bench.c "Benchmarks/runner/peer_$(echo "$source" | tr - _).c" $(peer_libs "$1")
}

build_probe() {
    mkdir -p "$BIN"
    # shellcheck disable=SC2046
    "$CC" $CFLAGS_BENCH -I include -o "$BIN/quarry-probe" Benchmarks/runner/quarry_probe.c $(peer_libs quarry-cache)
}

# $@ = peers to build (default: all, and the Quarry probe), after the libraries they need.
bench_build() {
    local peers=${*:-$PEERS} host="" i686="" p
    [ $# != 0 ] || host=1
    for p in $peers; do
        case $p in
            quarry-*-i686) i686=1 ;;
            quarry-*) host=1 ;;
        esac
    done
    [ -z "$host" ] || build_quarry host
    [ -z "$i686" ] || build_quarry i686
    say "gcc $CFLAGS_BENCH: Benchmarks/runner -> $BIN/bench-{${peers// /,}}"
    for p in $peers; do build_peer "$p"; done
    if [ $# = 0 ]; then
        say "gcc: Benchmarks/runner/quarry_probe.c -> $BIN/quarry-probe"
        build_probe
    fi
}

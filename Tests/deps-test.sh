#!/usr/bin/env bash
# deps-test.sh (make deps-test): tests .ci/deps itself. With QUARRY_DEPS_NO_INSTALL=1 (it
# never installs), simulates a missing tool through GCC / VALGRIND / QEMU_I386 and expects
# exit status 1 and the install line to name the package; with the real tools expects
# "== deps: ok". The first case is the machine the old check passed on: a gcc without
# multilib, whose -m32 -print-libgcc-file-name still prints an existing (64-bit) libgcc.
set -uo pipefail
cd "$(dirname "$0")/.."

REAL_GCC=$(command -v "${GCC:-gcc}") || { echo "deps-test: no ${GCC:-gcc}"; exit 1; }
work=$(mktemp -d "${TMPDIR:-/tmp}/quarry-deps-test.XXXXXX")
trap 'rm -rf "$work"' EXIT

# A gcc without gcc-multilib: -m32 compiles fail for want of the 32-bit libc headers, and
# -m32 -print-libgcc-file-name answers with the 64-bit libgcc, as Debian's gcc does.
cat > "$work/gcc-no-multilib" << EOF
#!/usr/bin/env bash
m32=0; libgcc=0
for a in "\$@"; do
    case \$a in
        -m32) m32=1 ;;
        -print-libgcc-file-name) libgcc=1 ;;
    esac
done
if [ \$m32 = 1 ] && [ \$libgcc = 1 ]; then exec "$REAL_GCC" -print-libgcc-file-name; fi
if [ \$m32 = 1 ]; then
    echo "/usr/include/stdio.h:27:10: fatal error: bits/libc-header-start.h: No such file or directory" >&2
    echo "compilation terminated." >&2
    exit 1
fi
exec "$REAL_GCC" "\$@"
EOF
chmod +x "$work/gcc-no-multilib"

passed=0 failed=0
pass() { echo "PASS: $1"; passed=$((passed + 1)); }
fail() { echo "FAIL: $1"; failed=$((failed + 1)); }

# $1 = name, $2 = expected status, $3 = extended regex the output must match; the rest =
# environment assignments for .ci/deps (GCC, QEMU_I386, QEMU_X86_64, VALGRIND otherwise unset).
case_deps() {
    local name=$1 want=$2 pattern=$3 out status
    shift 3
    out=$(env -u GCC -u QEMU_I386 -u QEMU_X86_64 -u VALGRIND QUARRY_DEPS_NO_INSTALL=1 "$@" bash .ci/deps 2>&1 < /dev/null)
    status=$?
    if [ "$status" = "$want" ] && grep -Eq -- "$pattern" <<< "$out"; then
        pass "$name"
    else
        fail "$name (status $status, wanted $want and a line matching '$pattern'); output:"
        sed 's/^/    /' <<< "$out"
    fi
}

# The old check (the path exists) passes with the stand-in: that is the bug this guards.
lg=$("$work/gcc-no-multilib" -m32 -print-libgcc-file-name 2> /dev/null)
if [ -n "$lg" ] && [ -f "$lg" ]; then
    pass "stand-in gcc: -m32 -print-libgcc-file-name names an existing file ($lg)"
else
    fail "stand-in gcc: -m32 -print-libgcc-file-name gave '$lg'"
fi

missing_line='^== deps: missing packages; install them with:$'
install_line() { echo "^   sudo apt-get install -y .*\\b$1\\b"; }

case_deps "gcc without multilib -> gcc-multilib" 1 "$(install_line gcc-multilib)" \
    GCC="$work/gcc-no-multilib"
case_deps "gcc without multilib -> the 'missing packages' line" 1 "$missing_line" \
    GCC="$work/gcc-no-multilib"
case_deps "VALGRIND=/nonexistent -> valgrind" 1 "$(install_line valgrind)" \
    GCC="$REAL_GCC" VALGRIND=/nonexistent
case_deps "QEMU_I386=false -> qemu-system-x86" 1 "$(install_line qemu-system-x86)" \
    GCC="$REAL_GCC" QEMU_I386=false
case_deps "real tools -> ok" 0 '^== deps: ok' \
    GCC="$REAL_GCC"

echo "$passed passed, $failed failed"
[ "$failed" = 0 ]

#!/usr/bin/env bash
# doc-test.sh: docs/integration.md checked against the code (make doc-test, part of make test).
#   1. Every ```c block of the page is one translation unit that compiles against
#      include/quarry.h as strict C11 (-Wall -Wextra -Werror -pedantic, freestanding) for
#      -m32 and -m64: a snippet cannot call a function the header lacks or drift from its
#      types. A call to an undeclared function is an error under -Werror.
#   2. "Symbols the library provides": its first ```text block lists exactly the quarry_*
#      functions the archive defines; the QUARRY_CHECKED-only block none of them (a release
#      archive has no test hooks); the quarry_libc.o block the standard names it defines.
# Usage: Tests/doc-test.sh DOC ARCHIVE (CC and NM from the environment: gcc, llvm-nm).
# Neighbours: Makefile (doc-test), Tests/deps-test.sh (the other script test).
set -euo pipefail

doc=${1:?usage: doc-test.sh DOC ARCHIVE}
archive=${2:?usage: doc-test.sh DOC ARCHIVE}
CC=${CC:-gcc}
NM=${NM:-llvm-nm}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
failed=0

# 1. The C blocks, each to its own file named by the line it starts on.
awk -v dir="$work" '
    /^```c[[:space:]]*$/ { file = sprintf("%s/line%04d.c", dir, NR + 1); inside = 1; next }
    /^```/ && inside     { inside = 0; close(file); next }
    inside               { print > file }
' "$doc"
blocks=$(find "$work" -name 'line*.c' | sort)
if [ -z "$blocks" ]; then
    echo "doc-test: no \`\`\`c block in $doc"
    exit 1
fi
for block in $blocks; do
    line=$(basename "$block" .c | sed 's/^line0*//')
    for mode in -m32 -m64; do
        if ! "$CC" -x c -std=c11 -Wall -Wextra -Werror -pedantic -ffreestanding -fsyntax-only \
                "$mode" -I include "$block" 2> "$work/errors"; then
            echo "doc-test: FAIL $doc:$line: the C block does not compile ($mode):"
            sed "s|$block|$doc (block at line $line)|" "$work/errors"
            failed=1
        fi
    done
done
echo "doc-test: $(echo "$blocks" | wc -l) C blocks of $doc compiled against include/quarry.h (-m32, -m64)"

# 2. The symbol lists: the ```text blocks of the section, in order.
awk -v dir="$work" '
    /^## /                          { section = ($0 == "## Symbols the library provides") }
    section && /^```text[[:space:]]*$/ { n++; inside = 1; next }
    inside && /^```/                { inside = 0; next }
    inside                          { for (i = 1; i <= NF; i++) print $i > (dir "/list" n) }
' "$doc"
for n in 1 2 3; do
    [ -f "$work/list$n" ] || { echo "doc-test: FAIL: \"Symbols the library provides\" has no text block $n"; exit 1; }
    sort -u "$work/list$n" -o "$work/list$n"
done
"$NM" -g --defined-only "$archive" | awk 'NF == 3 && ($2 == "T" || $2 == "W") { print $3 }' | sort -u > "$work/defined"
grep '^quarry_' "$work/defined" > "$work/defined-quarry" || true

compare() {   # compare NAME WANTED GOT
    if ! diff -u "$2" "$3" > "$work/diff"; then
        echo "doc-test: FAIL: $1 (- the doc, + $archive):"
        grep -E '^[-+][a-z_]' "$work/diff" || true
        failed=1
    else
        echo "doc-test: $1: $(wc -l < "$2") names, as the archive defines them"
    fi
}
compare "the quarry_* functions listed as always provided" "$work/list1" "$work/defined-quarry"
comm -12 "$work/list2" "$work/defined" > "$work/hooks"
if [ -s "$work/hooks" ]; then
    echo "doc-test: FAIL: test hooks defined by the release archive: $(tr '\n' ' ' < "$work/hooks")"
    failed=1
fi
comm -12 "$work/list3" "$work/defined" > "$work/libc"
compare "the standard names of quarry_libc.o" "$work/list3" "$work/libc"

exit $failed

#!/usr/bin/env bash
# doc-references-test.sh (make doc-references): tests Tests/doc-references.sh itself on a
# small tree in a temporary folder. Every reference in it is either sound (a path with
# <arch>, a Neighbours line, `Type.member(label:)`, a C name, a protocol's member) or broken
# in one way each kind can be; the check must print exactly the broken ones and exit 1,
# pass once they are repaired, and honour DOC_REFERENCES_SKIP.
set -uo pipefail
cd "$(dirname "$0")/.."
check=$PWD/Tests/doc-references.sh
work=$(mktemp -d "${TMPDIR:-/tmp}/quarry-doc-references-test.XXXXXX")
trap 'rm -rf "$work"' EXIT

mkdir -p "$work/Sources/Quarry" "$work/boot" "$work/include" "$work/docs"
cat > "$work/Sources/Quarry/Widget.swift" << 'EOF'
// Widget: a test type.
// Neighbours: Gadget.swift (its user), Platform (the contract), boot/entry_<arch>.S,
// Gizmo (gone).
protocol Platform { static var cpuIndex: Int { get } }
struct Widget<P: Platform> {
    var count: Int
    enum State { case idle, busy }
    func place(of address: UInt, in slab: Int, hint: Int = 0) -> Bool { P.cpuIndex == 0 }
}
/// Calls `Widget.place(of:in:)`, `Widget.place(of:in:hint:)` and `Widget.State.busy`, not
/// `Widget.remove`.
extension Widget: Platform { static var cpuIndex: Int { 0 } }
EOF
cat > "$work/Sources/Quarry/Gadget.swift" << 'EOF'
// Gadget: uses Widget.swift and Quarry/Widget.swift; see Sources/Quarry/Gone.swift and
// Quarry/Gone.swift. `Widget.cpuIndex` is the protocol's. Plain words too: Widget.count
// is declared, Widget.weight is not; quarry_limit, QUARRY_* and quarry.h exist, quarry_lost
// does not.
let gadgetLimit = quarry_limit
EOF
cat > "$work/include/quarry.h" << 'EOF'
/* quarry.h: include/quarry.h, QUARRY_OK */
int quarry_limit(void);
#define QUARRY_OK 0
EOF
touch "$work/boot/entry_i686.S" "$work/boot/entry_x86_64.S"
cat > "$work/docs/map.md" << 'EOF'
# Map
`Widget` lives in `Sources/Quarry/Widget.swift`, boot/entry_<arch>.S and
`Sources/Quarry/*.swift`; build/i686/kernel.elf is an output. `quarry_limit` and
`QUARRY_OK` are C; `quarry_gone` is not. `Widget.place(from:)` has the wrong labels,
`Widget.count` is a member, `Widget.size` is not, `Doohickey` is no type, `placeAll` no
name, `.busy` a case and `Widget.swift` a file; `Gone.md` is not, nor
docs/gone.md.

    `Nothing.checked` in a code block

1. A list item whose continuation
    cites `Widget.gone`.

```swift
let x = quarry_fenced(Nothing.checked)
```
EOF

expected="Sources/Quarry/Gadget.swift:1: missing path Sources/Quarry/Gone.swift
Sources/Quarry/Gadget.swift:2: missing path Quarry/Gone.swift
Sources/Quarry/Gadget.swift:3: missing member Widget.weight
Sources/Quarry/Gadget.swift:3: missing symbol quarry_lost
Sources/Quarry/Widget.swift:11: missing member Widget.remove
Sources/Quarry/Widget.swift:2: missing neighbour Gizmo
docs/map.md:4: missing function Widget.place(from:)
docs/map.md:4: missing symbol quarry_gone
docs/map.md:5: missing member Widget.size
docs/map.md:5: missing member placeAll
docs/map.md:5: missing type Doohickey
docs/map.md:6: missing file Gone.md
docs/map.md:7: missing path docs/gone.md
docs/map.md:12: missing member Widget.gone
docs/map.md:15: missing symbol quarry_fenced"

passed=0 failed=0
pass() { echo "PASS: $1"; passed=$((passed + 1)); }
fail() { echo "FAIL: $1"; failed=$((failed + 1)); }

# $1 = name, $2 = expected status, $3 = expected broken references; the rest =
# environment assignments.
expect() {
    local name=$1 status=$2 want=$3
    shift 3
    local out got
    out=$(env -u DOC_REFERENCES_SKIP "$@" bash "$check" "$work" 2>&1)
    got=$?
    local lines
    lines=$(printf '%s\n' "$out" | grep ': missing ' | LC_ALL=C sort)
    want=$(printf '%s\n' "$want" | grep . | LC_ALL=C sort)
    if [ "$got" -eq "$status" ] && [ "$lines" = "$want" ]; then
        pass "$name"
    else
        fail "$name (status $got, expected $status)"
        diff <(printf '%s\n' "$want") <(printf '%s\n' "$lines") | sed 's/^/    /'
    fi
}

expect "every broken reference reported, none of the sound ones" 1 "$expected"
expect "DOC_REFERENCES_SKIP leaves out the named files" 1 \
    "$(printf '%s\n' "$expected" | grep -v '^docs/map.md')" DOC_REFERENCES_SKIP=docs/map.md

# Repair every reference (the neighbour Gizmo, `Widget.remove`, Gone.swift, Widget.weight,
# quarry_lost, the doc's): the check passes.
sed -i 's|^// Gizmo (gone)\.$|// Widget.swift.|; s|, not$|.|; s|^/// `Widget.remove`\.$|/// Done.|' \
    "$work/Sources/Quarry/Widget.swift"
sed -i 's/Gone.swift/Widget.swift/g; s/Widget.weight/Widget.place/; s/quarry_lost/QUARRY_OK/' \
    "$work/Sources/Quarry/Gadget.swift"
cat > "$work/docs/map.md" << 'EOF'
# Map
`Widget` lives in `Sources/Quarry/Widget.swift`; `quarry_limit`, `Widget.count`,
`Widget.place(of:in:)`, `.busy`.
EOF
# The design doc's file map must name every core file: Gadget.swift is left out.
cat > "$work/docs/design.md" << 'EOF'
# Design
| `Widget.swift` | widgets |
EOF
expect "a core file missing from the design doc's map is reported" 1 \
    "docs/design.md:1: missing map-entry Sources/Quarry/Gadget.swift"
echo '| `Gadget.swift` | gadgets |' >> "$work/docs/design.md"
expect "a repaired tree passes" 0 ""

echo "doc-references-test: $passed passed, $failed failed"
[ "$failed" -eq 0 ]

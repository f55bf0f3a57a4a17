#!/bin/sh
# fastpath-disasm.sh: builds the Embedded i686 object (-no-allocations) with the probe entry
# points (SingleCPUPlatform: the platform's own masking and CPU index add `pushf; pop;
# cli` / `push; popf` and a `%fs` load) and prints the disassembly of allocate and free.
# The Embedded flags are toolset.json's, as the Makefile reads them; -no-allocations is the
# library's own (as `make lib`).
set -eu
cd "$(dirname "$0")/../.."
BIN=${SWIFT_BIN:-/opt/swift/usr/bin}
OUT=${OUT:-/tmp/quarry-fastpath-probe.o}
EMBEDDED=$("${MAKE:-make}" -s --no-print-directory toolset-options)
# shellcheck disable=SC2086
"$BIN/swiftc" -target i686-unknown-none-elf $EMBEDDED -Xfrontend -no-allocations \
    -module-name Quarry -c $(find Sources/Quarry -name "*.swift" | LC_ALL=C sort) Benchmarks/fastpath/fastpath-probe.swift -o "$OUT"
"$BIN/llvm-objdump" -dr --no-show-raw-insn --disassemble-symbols=quarry_probe_allocate,quarry_probe_free "$OUT"

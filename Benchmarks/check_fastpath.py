#!/usr/bin/env python3
"""check_fastpath.py: fails if the fast path in the Embedded object gains a call or a runtime reference.

Neighbours: check-budgets.sh (builds the object, passes the allowed calls), probe/FastPathProbe.swift
(instantiates the fast path for a call-free platform).

Works on the per-function disassembly (`llvm-objdump -d -r`), not on `nm -u`: the Embedded
runtime's weak helpers put posix_memalign/free into every object whether the fast path uses
them or not. Checks:
  1. every call made directly by a fast-path function is in the allowed list (by short name);
  2. no fast-path function has a relocation to a Swift runtime or allocation symbol;
  3. no function reachable from the fast path through calls inside the object calls or
     references such a symbol (the allocator must never allocate through the runtime).
Usage: check_fastpath.py OBJECT OBJDUMP DEMANGLE "allowed short names, space separated"
"""
import re
import subprocess
import sys

FAST_PATH_EXPORTS = {"quarry_probe_allocate", "quarry_probe_free", "quarry_probe_malloc", "quarry_probe_free_block"}
FAST_PATH_DEMANGLED = re.compile(
    r"^generic specialization <Quarry\.ProbePlatform> of Quarry\.(SlabCache\.(allocate|free)|MallocFront\.(malloc|free))\(")
# The Swift runtime (swift_retain, swift_allocObject, swift_beginAccess, swift_once, ...) and
# what the Embedded runtime allocates or copies with.
RUNTIME = re.compile(
    r"^(_?swift_\w+|posix_memalign|malloc|calloc|realloc|free|memset|memcpy|memmove|putchar)(@\w+)?$")


def run(cmd, stdin=None):
    return subprocess.run(cmd, input=stdin, capture_output=True, text=True, check=True).stdout


def short_name(demangled):
    """`generic specialization <X> of Quarry.SlabCache.(freeLocked in _ABC)(Swift.UInt) -> ...`
    becomes `Quarry.SlabCache.freeLocked`."""
    s = re.sub(r"^(generic specialization <[^>]*> of |function signature specialization <[^>]*> of )+",
               "", demangled)
    s = re.sub(r"\((\w+) in _[0-9A-F]+\)", r"\1", s)
    return s.split("(")[0].strip()


def parse_functions(disassembly):
    """{symbol: {"calls": [(target or None, text)], "relocs": [symbol]}}"""
    functions, current, pending_call = {}, None, None
    header = re.compile(r"^[0-9a-f]+ <(.+)>:$")
    insn = re.compile(r"^\s+([0-9a-f]+):\s+(\S+)\s*(.*)$")
    reloc = re.compile(r"^\s+([0-9a-f]+):\s+(R_\w+)\s+(\S+)")
    for line in disassembly.splitlines():
        m = header.match(line)
        if m:
            current = functions.setdefault(m.group(1), {"calls": [], "relocs": []})
            pending_call = None
            continue
        if current is None:
            continue
        m = reloc.match(line)
        if m:
            target = re.sub(r"[+-]0x[0-9a-f]+$", "", m.group(3))
            if target.startswith(".text."):  # a section symbol under -function-sections
                target = target[len(".text."):]
            current["relocs"].append(target)
            if pending_call is not None:
                current["calls"][pending_call][0] = target
                pending_call = None
            continue
        m = insn.match(line)
        if not m:
            continue
        mnemonic, operands = m.group(2), m.group(3)
        pending_call = None
        if mnemonic.startswith("call"):
            if operands.startswith("*"):
                current["calls"].append(["<indirect>", line.strip()])
            else:
                # The target comes from the relocation on the next line. A call with no
                # relocation stays in its own section: under -function-sections that is the
                # i686 PIC idiom `call 1f; 1: pop %ebx` (the GOT address), not a call.
                current["calls"].append([None, line.strip()])
                pending_call = len(current["calls"]) - 1
    for f in functions.values():
        f["calls"] = [(t, text) for t, text in f["calls"] if t is not None]
    return functions


def main():
    obj, objdump, demangle, allowed = sys.argv[1], sys.argv[2], sys.argv[3], set(sys.argv[4].split())
    disassembly = run([objdump, "-d", "-r", "--no-show-raw-insn", obj])
    functions = parse_functions(disassembly)
    names = sorted(functions)
    demangled = dict(zip(names, run([demangle], "\n".join(names) + "\n").splitlines()))
    fast = [n for n in names if n in FAST_PATH_EXPORTS or FAST_PATH_DEMANGLED.match(demangled[n])]
    failures = []
    if not FAST_PATH_EXPORTS <= set(fast):
        failures.append("the probe exports are missing from the object (was FastPathProbe.swift compiled in?)")

    def label(sym):
        if sym == "<indirect>":
            return "<indirect>"
        return short_name(demangled.get(sym, run([demangle], sym + "\n").strip()))

    print("fast-path functions (Embedded i686, -Osize):")
    for f in fast:
        calls = functions[f]["calls"]
        print(f"  {label(f) if f not in FAST_PATH_EXPORTS else f}: {len(calls)} call(s)")
        for target, _ in calls:
            name = label(target)
            verdict = "allowed" if name in allowed else "NOT ALLOWED"
            if RUNTIME.match(target):
                verdict = "RUNTIME"
            print(f"      call {name}  [{verdict}]")
            if verdict != "allowed":
                failures.append(f"{f}: call to {name} ({verdict.lower()})")
        for r in functions[f]["relocs"]:
            if RUNTIME.match(r):
                failures.append(f"{f}: reference to runtime symbol {r}")

    # Everything reachable from the fast path through calls that stay inside the object.
    seen, stack = set(), list(fast)
    while stack:
        f = stack.pop()
        if f in seen or f not in functions:
            continue
        seen.add(f)
        for target, _ in functions[f]["calls"]:
            if target in functions:
                stack.append(target)
    runtime_refs = sorted({(f, r) for f in seen for r in functions[f]["relocs"] if RUNTIME.match(r)})
    print(f"functions reachable from the fast path: {len(seen)}; runtime references among them: {len(runtime_refs)}")
    for f, r in runtime_refs:
        failures.append(f"{label(f)} (reachable from the fast path) references {r}")

    if failures:
        print("FAIL: the fast path gained a call or a runtime reference:")
        for x in failures:
            print("  " + x)
        sys.exit(1)
    print("ok: no call outside the allowed list, no Swift runtime or allocation reference")


if __name__ == "__main__":
    main()

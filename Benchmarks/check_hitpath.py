#!/usr/bin/env python3
"""check_hitpath.py: the hit path of the shipped C entry points, read from the disassembly.

Neighbours: check-budgets.sh (builds build/<arch>/libquarry.a with `make lib`, passes the
function pairs, the cold calls and symbols, and compares the counts printed here with the
budgets), docs/benchmarks.md ("Budgets").

For each function (quarry_cache_alloc, quarry_cache_free, quarry_malloc, quarry_free) of the
library's Quarry.o, as `llvm-objdump -d -r` shows it, this finds the hit path (a magazine hit:
the object comes from or goes to the CPU's loaded magazine) and reports on it:
  - its instructions, counted from the entry to the `ret` (a prefix such as `lock` and the
    instruction it prefixes count as one);
  - every call on it (a `call`, or a `jmp` to another function: a tail call). The i686 PIC
    idiom `call 1f; 1: pop %ebx` (the GOT address) is not a call;
  - every serialising instruction on it: a `lock`-prefixed instruction, `xchg` with a memory
    operand (implicitly locked), `pushf`, `popf`, `cli`, `sti`, `mfence`, `cpuid`.
Calls and serialising instructions are the violations.

The rule that finds the hit path (no trace can run: the X86 platform's `cli` and `%fs`/`%gs`
CPU index need ring 0):
  1. An instruction is cold when it traps (`ud2`, `int3`), calls (or tail-calls) a function
     whose short name matches the cold list (shell-style patterns for the slow paths, error
     reports, debug options: passed by check-budgets.sh), or references a cold symbol
     (`CCaller.errorBytes`: recording an error means the call is being refused).
  2. A branch target is on a possible hit path when some path from it reaches a `ret` (or a
     tail call to a function that is not cold) without meeting a cold instruction.
  3. From the entry, follow the code: an unconditional jump to its target; at a conditional
     branch, the one side that is on a possible hit path; when both are, the fall-through
     (the compiler's layout: the likely side falls through), unless it loops back to an
     instruction already on the path. Stop at the first `ret` or tail call.
Each branch decided by the layout alone (3) is listed in the detail file, so a reader can see
whether the path found is the magazine hit (e.g. `quarry_free(NULL)` returns early: the
fall-through goes on to the real free, as it should).

Also, as the probe check did before it: nothing reachable from these functions through calls
inside the object references the Swift runtime or an allocation function (the allocator must
never allocate through the runtime).

Usage: check_hitpath.py OBJECT OBJDUMP DEMANGLE DETAIL_FILE "COLD CALLS" "COLD SYMBOLS" FUNCTION...
Prints one line per function and `hitpath FUNCTION INSTRUCTIONS VIOLATIONS` lines for the
script; exit 0 unless a hit path cannot be found (or the runtime check fails: exit 3).
"""
import fnmatch
import re
import subprocess
import sys

SERIALISING = re.compile(r"^(pushf[lqw]?|popf[lqw]?|cli|sti|mfence|cpuid)$")
PREFIXES = {"lock", "rep", "repe", "repz", "repne", "repnz"}
TRAPS = {"ud2", "int3"}
RETURNS = re.compile(r"^ret[lqw]?$")
# The Swift runtime (swift_retain, swift_allocObject, swift_beginAccess, ...) and what the
# Embedded runtime allocates or copies with.
RUNTIME = re.compile(r"^(_?swift_\w+|posix_memalign|malloc|calloc|realloc|free|memset|memcpy|memmove|putchar)(@\w+)?$")


def run(cmd, stdin=None):
    return subprocess.run(cmd, input=stdin, capture_output=True, text=True, check=True).stdout


class Insn:
    def __init__(self, address, mnemonic, operands, text):
        self.address, self.mnemonic, self.operands, self.text = address, mnemonic, operands, text
        self.relocs = []      # symbols referenced by this instruction's relocations
        self.prefix = None    # "lock", ... when a prefix line preceded it
        self.size = None      # bytes, from the next instruction's address

    def local_target(self):
        m = re.match(r"^(0x[0-9a-f]+|[0-9a-f]+)\b", self.operands)
        return int(m.group(1), 16) if m else None


def parse_functions(disassembly):
    """{symbol: [Insn]} with prefixes folded into the instruction they prefix."""
    functions, current = {}, None
    header = re.compile(r"^[0-9a-f]+ <(.+)>:$")
    insn = re.compile(r"^\s+([0-9a-f]+):\s+(\S+)\s*(.*)$")
    reloc = re.compile(r"^\s+([0-9a-f]+):\s+(R_\w+)\s+(\S+)")
    for line in disassembly.splitlines():
        m = header.match(line)
        if m:
            current = functions.setdefault(m.group(1), [])
            continue
        if current is None:
            continue
        m = reloc.match(line)
        if m:
            target = re.sub(r"[+-]0x[0-9a-f]+$", "", m.group(3))
            if target.startswith(".text."):  # a section symbol under -function-sections
                target = target[len(".text."):]
            if current:
                current[-1].relocs.append(target)
            continue
        m = insn.match(line)
        if m:
            operands = re.sub(r"\s+#.*$", "", m.group(3)).strip()
            current.append(Insn(int(m.group(1), 16), m.group(2), operands, line.strip()))
    for name, insns in functions.items():
        folded = []
        for i in insns:
            if folded and folded[-1].mnemonic in PREFIXES and not folded[-1].operands:
                p = folded.pop()
                i.prefix, i.address, i.relocs = p.mnemonic, p.address, p.relocs + i.relocs
            folded.append(i)
        for a, b in zip(folded, folded[1:]):
            a.size = b.address - a.address
        functions[name] = folded
    return functions


def short_name(demangled):
    """`generic specialization <X> of Quarry.SlabCache.(freeSlow in _ABC)(Swift.UInt) -> ...`
    becomes `Quarry.SlabCache.freeSlow`; `static Quarry.CCaller.errorBytes : T` becomes
    `Quarry.CCaller.errorBytes`."""
    s = re.sub(r"^(generic specialization <[^>]*> of |function signature specialization <[^>]*> of )+",
               "", demangled)
    s = re.sub(r"^static ", "", s)
    s = re.sub(r"\((\w+) in _[0-9A-F]+\)", r"\1", s)
    return s.split(" : ")[0].split("(")[0].strip()


def matches(name, patterns):
    """Whether a short name matches one of the shell-style patterns (`*Slow`, `Quarry.Span.free`)."""
    return any(fnmatch.fnmatchcase(name, p) for p in patterns)


class Function:
    def __init__(self, name, insns, label, cold_calls, cold_symbols):
        self.name, self.insns, self.label = name, insns, label
        self.at = {i.address: k for k, i in enumerate(insns)}
        self.cold_calls, self.cold_symbols = cold_calls, cold_symbols

    def call_target(self, k):
        """For a call or a jump out of the function: the callee's label; None otherwise."""
        i = self.insns[k]
        if i.mnemonic.startswith("call"):
            if i.operands.startswith("*"):
                return "<indirect>"
            if i.relocs:
                return self.label(i.relocs[0])
            t = i.local_target()
            # The i686 PIC idiom: a call to the next instruction, which pops the address.
            if t is not None and k + 1 < len(self.insns) and t == self.insns[k + 1].address:
                return None
            return "<local call>"
        if i.mnemonic.startswith("jmp"):
            if i.operands.startswith("*"):
                return "<indirect jump>"
            if i.relocs or self.local_target_index(k) is None:
                return self.label(i.relocs[0]) if i.relocs else "<jump out>"
        return None

    def local_target_index(self, k):
        t = self.insns[k].local_target()
        return self.at.get(t) if t is not None else None

    def kind(self, k):
        i = self.insns[k]
        if i.mnemonic in TRAPS:
            return "trap"
        if RETURNS.match(i.mnemonic):
            return "ret"
        if i.mnemonic.startswith("jmp"):
            return "tail" if self.call_target(k) is not None else "jmp"
        if i.mnemonic.startswith("j"):
            return "branch"
        return "plain"

    def cold(self, k):
        i, target = self.insns[k], self.call_target(k)
        if self.kind(k) == "trap":
            return "trap"
        if target is not None and matches(target, self.cold_calls):
            return f"cold call {target}"
        for r in i.relocs:
            if matches(self.label(r), self.cold_symbols):
                return f"references {self.label(r)}"
        return None

    def successors(self, k):
        kind = self.kind(k)
        nxt = [k + 1] if k + 1 < len(self.insns) else []
        if kind in ("ret", "tail", "trap"):
            return []
        if kind == "jmp":
            return [self.local_target_index(k)]
        if kind == "branch":
            t = self.local_target_index(k)
            return nxt + ([t] if t is not None else [])
        return nxt

    def hot(self):
        """hot[k]: some path from k reaches a ret or a non-cold tail call with no cold instruction."""
        n = len(self.insns)
        hot = [False] * n
        changed = True
        while changed:
            changed = False
            for k in range(n - 1, -1, -1):
                if hot[k] or self.cold(k):
                    continue
                if self.kind(k) in ("ret", "tail") or any(hot[s] for s in self.successors(k) if s is not None):
                    hot[k] = changed = True
        return hot

    def hit_path(self):
        """(path as instruction indices, layout decisions) or raises ValueError."""
        hot = self.hot()
        if not hot or not hot[0]:
            raise ValueError("no path from the entry to a ret avoids the cold blocks")
        path, seen, decisions, k = [], set(), [], 0
        while True:
            path.append(k)
            seen.add(k)
            if self.kind(k) in ("ret", "tail"):
                return path, decisions
            options = [s for s in self.successors(k) if s is not None and hot[s]]
            if len(options) == 2:
                fall, taken = options
                k = taken if fall in seen and taken not in seen else fall
                other = taken if k == fall else fall
                branch = self.insns[path[-1]]
                decisions.append(f"+{branch.address:#x} {branch.mnemonic}: took the "
                                 f"{'fall-through' if k == fall else 'branch'} (+{self.insns[k].address:#x}); "
                                 f"+{self.insns[other].address:#x} also reaches a ret")
            elif options:
                k = options[0]
            else:
                raise ValueError(f"stuck at +{self.insns[k].address:#x}")
            if k in seen and len(path) > len(self.insns):
                raise ValueError("the hit path loops")

    def violations(self, path):
        out = []
        for k in path:
            i, target = self.insns[k], self.call_target(k)
            if target is not None:
                out.append(f"call {target}" if i.mnemonic.startswith("call") else f"tail call {target}")
            if i.prefix == "lock":
                out.append(f"lock {i.mnemonic}")
            elif i.mnemonic.startswith("xchg") and "(" in i.operands:
                out.append(f"{i.mnemonic} with memory (implicitly locked)")
            if SERIALISING.match(i.mnemonic):
                out.append(i.mnemonic)
        return out


def main():
    obj, objdump, demangle, detail_file = sys.argv[1:5]
    cold_calls, cold_symbols = set(sys.argv[5].split()), set(sys.argv[6].split())
    wanted = sys.argv[7:]
    functions = parse_functions(run([objdump, "-d", "-r", "--no-show-raw-insn", obj]))
    names = sorted(set(functions) | {r for insns in functions.values() for i in insns for r in i.relocs})
    demangled = dict(zip(names, run([demangle], "\n".join(names) + "\n").splitlines()))

    def label(symbol):
        return short_name(demangled.get(symbol, symbol))

    status = 0
    with open(detail_file, "w") as detail:
        for name in wanted:
            if name not in functions:
                print(f"  {name}: not in {obj}")
                status = 2
                continue
            f = Function(name, functions[name], label, cold_calls, cold_symbols)
            try:
                path, decisions = f.hit_path()
            except ValueError as e:
                print(f"  {name}: hit path not found: {e}")
                status = 2
                continue
            bad = f.violations(path)
            print(f"  {name}: {len(path)} instructions on the hit path"
                  + (f"; {len(bad)} violation(s): {', '.join(bad)}" if bad else "; no call, nothing serialising"))
            print(f"hitpath {name} {len(path)} {len(bad)}")
            detail.write(f"{name}: hit path, {len(path)} instructions\n")
            for k in path:
                i = f.insns[k]
                detail.write(f"    {i.address:6x}:  {(i.prefix + ' ') if i.prefix else ''}{i.mnemonic}\t{i.operands}\n")
            for d in decisions:
                detail.write(f"  layout decision: {d}\n")
            detail.write("\n")

    # Runtime references among everything reachable from these functions through calls.
    seen, stack = set(), [n for n in wanted if n in functions]
    while stack:
        n = stack.pop()
        if n in seen or n not in functions:
            continue
        seen.add(n)
        stack.extend(r for i in functions[n] for r in i.relocs if r in functions)
    refs = sorted({(n, r) for n in seen for i in functions[n] for r in i.relocs if RUNTIME.match(r)})
    print(f"  functions reachable from them: {len(seen)}; Swift runtime or allocation references: {len(refs)}")
    for n, r in refs:
        print(f"    {label(n)} references {r}")
    if refs and status == 0:
        status = 3
    sys.exit(status)


if __name__ == "__main__":
    main()

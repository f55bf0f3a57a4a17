#!/usr/bin/env python3
"""report.py: turns the benchmark CSVs into docs/benchmarks/ (table, plot, instruction counts, memory).

Neighbours: run.sh (produces the CSVs under build/bench and calls this), instructions.sh
(pair-instructions.csv, pair-functions.csv, slowpaths.csv), quarry_probe.c (memory-*.csv).
Usage: report.py BUILD_DIR OUT_DIR
"""
import csv
import os
import re
import shutil
import subprocess
import sys

WORKLOADS = ["pair", "batch-lifo", "batch-fifo", "random", "prodcons", "threads"]
WORKLOAD_TEXT = {
    "pair": "pair: allocate then free, one other object kept live",
    "batch-lifo": "batch LIFO: 1000 allocations, then 1000 frees newest first",
    "batch-fifo": "batch FIFO: 1000 allocations, then 1000 frees oldest first",
    "random": "random: 10,000-slot working set, random replacement (xorshift64, fixed seed)",
    "prodcons": "producer-consumer: one thread allocates, another frees, through an SPSC ring",
    "threads": "threads: two threads, each its own random workload (ns per pair of wall time)",
}
ALLOCATORS = ["floor", "glibc", "mimalloc", "jemalloc", "tcmalloc", "quarry-cache", "quarry-malloc"]
SIZES = [16, 64, 256, 1024]


def read_goals():
    """(goal, stretch) per Quarry peer, from the one place they live: check-budgets.sh."""
    text = open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "check-budgets.sh")).read()
    value = {m.group(1): int(m.group(2)) for m in re.finditer(r"\b((?:GOAL|STRETCH)_\w+)=(\d+)", text)}
    return {f"quarry-{api.lower()}": (value[f"GOAL_{api}"], value[f"STRETCH_{api}"]) for api in ("CACHE", "MALLOC")}


GOALS = read_goals()
RUN = "make bench"


def read_csv(path):
    if not os.path.exists(path):
        return []
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def fmt(x, digits=1):
    return f"{x:.{digits}f}"


def env_lines(build):
    path = os.path.join(build, "env.txt")
    return open(path).read().strip().splitlines() if os.path.exists(path) else []


def aggregate(build, out):
    """results-raw.csv (one row per allocator, workload, size and round) -> results.csv (one row
    per cell: median, min and max over the rounds). Both are copied to `out`."""
    raw = read_csv(os.path.join(build, "results-raw.csv"))
    cells, order = {}, []
    for r in raw:
        key = (r["allocator"], r["workload"], r["size"])
        if key not in cells:
            order.append(key)
            cells[key] = {"ops": r["ops"], "status": r["status"], "times": [], "capped": False}
        if r["status"].startswith("ok"):
            cells[key]["times"].append(float(r["median_ns"]))
            cells[key]["capped"] |= r["status"] == "ok-capped"
    path = os.path.join(build, "results.csv")
    with open(path, "w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(["allocator", "workload", "size", "reps", "ops", "median_ns", "min_ns", "max_ns", "status"])
        for key in order:
            c = cells[key]
            t = sorted(c["times"])
            if not t:
                w.writerow([*key, 0, c["ops"], "", "", "", c["status"]])
                continue
            n = len(t)
            median = t[n // 2] if n % 2 else (t[n // 2 - 1] + t[n // 2]) / 2
            w.writerow([*key, n, c["ops"], f"{median:.2f}", f"{t[0]:.2f}", f"{t[-1]:.2f}",
                        "ok-capped" if c["capped"] else "ok"])
    shutil.copy(path, os.path.join(out, "results.csv"))
    shutil.copy(os.path.join(build, "results-raw.csv"), os.path.join(out, "results-raw.csv"))


def timing_table(build, out):
    rows = read_csv(os.path.join(build, "results.csv"))
    med = {}
    status = {}
    for r in rows:
        key = (r["allocator"], r["workload"], int(r["size"]))
        status[key] = r["status"]
        if r["status"].startswith("ok"):
            med[key] = float(r["median_ns"])
    reps = sorted({int(r["reps"]) for r in rows if r["status"].startswith("ok")})
    lines = ["# Benchmark timings", "",
             f"Median ns per allocate+free pair over {'/'.join(map(str, reps))} repetitions, "
             "interleaved across allocators (round r runs every allocator once, each after an "
             "untimed warm-up); in brackets the ratio to mimalloc and to the floor "
             "(below 1 is faster). Wall time on a shared 2-vCPU VM moves 15-40% between runs: "
             "read ratios, not digits; the instruction counts in instructions.md are exact.", "",
             f"Produced by `{RUN}` (Benchmarks/run.sh); data in results.csv (median, min and max per "
             "cell) and results-raw.csv (one row per repetition).", ""]
    for e in env_lines(build):
        lines.append(f"- {e}")
    lines.append("")
    for w in WORKLOADS:
        lines += [f"## {w}", "", WORKLOAD_TEXT[w], "",
                  "| allocator | " + " | ".join(f"{s} B" for s in SIZES) + " |",
                  "|---|" + "---:|" * len(SIZES)]
        for a in ALLOCATORS:
            cells = []
            for s in SIZES:
                k = (a, w, s)
                if k in med:
                    mi = med.get(("mimalloc", w, s))
                    fl = med.get(("floor", w, s))
                    ratios = [fmt(med[k] / mi, 2) + "x mi" if mi else "-",
                              fmt(med[k] / fl, 2) + "x floor" if fl else "-"]
                    mark = " *" if status[k] == "ok-capped" else ""
                    cells.append(f"{fmt(med[k])}{mark} ({', '.join(ratios)})")
                else:
                    cells.append(status.get(k, "not run"))
            lines.append(f"| {a} | " + " | ".join(cells) + " |")
        if any(status.get((a, w, s)) == "ok-capped" for a in ALLOCATORS for s in SIZES):
            lines += ["", "\\* at least one repetition reached the 1 s deadline before its operation count "
                      "and was divided by the operations it did (bench.c, --deadline-ms)."]
        lines.append("")
    lines += ["## Goals (issue 6)", ""]
    qc, mi = med.get(("quarry-cache", "pair", 64)), med.get(("mimalloc", "pair", 64))
    if qc and mi:
        r = qc / mi
        lines.append(f"- Quarry cache pair (64 B) at most 0.5x mimalloc's time: measured {fmt(r, 2)}x "
                     f"({fmt(qc)} ns against {fmt(mi)} ns): " +
                     ("met." if r <= 0.5 else f"missed by {fmt(r / 0.5, 1)}x."))
    for w in ("pair", "random"):
        qm, mi = med.get(("quarry-malloc", w, 64)), med.get(("mimalloc", w, 64))
        if qm and mi:
            lines.append(f"- Quarry malloc front faster than mimalloc on {w} (64 B): {fmt(qm / mi, 2)}x: " +
                         ("met." if qm < mi else "missed."))
        else:
            lines.append(f"- Quarry malloc front faster than mimalloc on {w}: not measured "
                         "(no malloc front in this tree).")
    open(os.path.join(out, "table.md"), "w").write("\n".join(lines) + "\n")
    return med, status


def plot(med, out, build):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    present = [a for a in ALLOCATORS if any(k[0] == a for k in med)]
    colors = {"floor": "#999999", "glibc": "#1f77b4", "mimalloc": "#2ca02c", "jemalloc": "#9467bd",
              "tcmalloc": "#ff7f0e", "quarry-cache": "#d62728", "quarry-malloc": "#8c564b"}
    fig, axes = plt.subplots(2, 3, figsize=(16, 9), sharey=False)
    width = 0.8 / max(1, len(present))
    for ax, w in zip(axes.flat, WORKLOADS):
        for i, a in enumerate(present):
            xs, ys = [], []
            for j, s in enumerate(SIZES):
                if (a, w, s) in med:
                    xs.append(j + (i - (len(present) - 1) / 2) * width)
                    ys.append(med[(a, w, s)])
            ax.bar(xs, ys, width, label=a, color=colors.get(a))
        ax.set_yscale("log")
        top = max([med[(a, w, s)] for a in present for s in SIZES if (a, w, s) in med] or [10])
        ax.set_ylim(1, top * 1.5)
        ax.yaxis.set_major_locator(LogLocator(base=10, subs=(1, 2, 5)))
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        ax.yaxis.set_minor_formatter(NullFormatter())
        missing = [a for a in present if not any((a, w, s) in med for s in SIZES)]
        ax.set_title(WORKLOAD_TEXT[w].split(":")[0] + (f"  ({', '.join(missing)}: n/a)" if missing else ""),
                     fontsize=13)
        ax.set_xticks(range(len(SIZES)))
        ax.set_xticklabels([f"{s} B" for s in SIZES], fontsize=11)
        ax.set_ylabel("median ns per pair (log)", fontsize=10)
        ax.grid(axis="y", which="both", alpha=0.3)
    handles, labels = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=len(present), fontsize=12, frameon=False)
    when = next((e for e in env_lines(build) if e.startswith("date")), "")
    absent = [a for a in ALLOCATORS if a not in present]
    fig.suptitle("Quarry and its peers: median ns per allocate+free pair, lower is better "
                 f"(host, {when.replace('date: ', '')})" +
                 (f"\nnot available in this tree: {', '.join(absent)}" if absent else ""), fontsize=14)
    fig.tight_layout(rect=(0, 0.05, 1, 0.96))
    fig.savefig(os.path.join(out, "plot.png"), dpi=100)


def demangle(names):
    tool = os.environ.get("SWIFT_DEMANGLE", "/opt/swift/usr/bin/swift-demangle")
    swift = [n for n in names if n.startswith("$s") or n.startswith("$e")]
    if not swift or not os.path.exists(tool):
        return {n: n for n in names}
    res = subprocess.run([tool, "--simplified"], input="\n".join(swift) + "\n", capture_output=True, text=True)
    table = dict(zip(swift, res.stdout.splitlines()))
    return {n: table.get(n, n) for n in names}


def instructions(build, out):
    pairs = read_csv(os.path.join(build, "pair-instructions.csv"))
    funcs = read_csv(os.path.join(build, "pair-functions.csv"))
    slow = read_csv(os.path.join(build, "slowpaths.csv"))
    per = {r["allocator"]: float(r["per_pair"]) for r in pairs if r["status"] == "ok"}
    lines = ["# Instruction counts (callgrind)", "",
             "Exact and repeatable (valgrind --tool=callgrind; this VM has no hardware counters). "
             "Produced by `Benchmarks/instructions.sh all` (part of `make bench`).", "",
             "## Instructions per allocate+free pair, pair workload, 64 bytes", "",
             "Each allocator runs the pair workload for N and for 2N pairs in separate processes "
             "(`build/bench/bin/bench-<allocator> --count 64 N`); the figure is "
             "(I(2N) - I(N)) / N, so start-up, setup and exit cancel. It includes the harness: the "
             "loop, the indirect call through `struct bench_allocator`, the peer's wrapper and the "
             "PLT jump into a shared library (the floor's 19 is that overhead plus a free-list "
             "pop and push). Quarry is called through include/quarry.h (`quarry_cache_alloc`/"
             "`quarry_cache_free`, `quarry_malloc`/`quarry_free`) in `build/host/libquarry.so`.",
             "", "| allocator | instructions per pair | x mimalloc | x floor | goal | N |",
             "|---|---:|---:|---:|---|---:|"]
    for r in pairs:
        a = r["allocator"]
        if r["status"] != "ok":
            lines.append(f"| {a} | {r['status']} | | | {goal_text(a)} | |")
            continue
        v = per[a]
        lines.append(f"| {a} | {fmt(v, 2)} | {ratio(v, per.get('mimalloc'))} | {ratio(v, per.get('floor'))} "
                     f"| {goal_text(a, v)} | {r['n']} |")
    lines += ["", "## Where the instructions go (per pair, by function)", "",
              "callgrind_annotate's self cost per function, the same N / 2N subtraction. PLT jumps "
              "are counted in the function they land in.", ""]
    names = demangle(sorted({f["function"] for f in funcs}))
    for a in [r["allocator"] for r in pairs if r["status"] == "ok"]:
        rows = [f for f in funcs if f["allocator"] == a]
        lines.append(f"- **{a}** ({fmt(per[a], 2)}): " +
                     ", ".join(f"{names[f['function']]} {fmt(float(f['per_pair']), 2)}" for f in rows))
    lines.append("")
    if slow:
        empty = next((int(r["instructions"]) for r in slow if r["region"] == "empty"), 0)
        lines += ["## Quarry's slow paths and start-up", "",
                  "One operation each, through include/quarry.h in build/host/libquarry.so (the call and its glue "
                  "included), from `Benchmarks/instructions.sh slowpaths`: `quarry-probe slowpaths` "
                  "and `quarry-probe init BYTES` under callgrind, one dump per region "
                  f"(CALLGRIND_ZERO_STATS before, CALLGRIND_DUMP_STATS_AT after), minus the {empty} "
                  "instructions of an empty region. Run with LD_BIND_NOW=1 so no region pays for "
                  "lazy symbol binding.", "",
                  "| region | " + " | ".join(f"{s} B" for s in SIZES) + " |",
                  "|---|" + "---:|" * len(SIZES)]
        by = {}
        for r in slow:
            if r["region"] == "empty":
                continue
            name, _, arg = r["region"].partition("/")
            by.setdefault(name, {})[arg] = int(r["instructions"]) - empty
        explain = {
            "partial-allocate": "allocate from a partial slab (the locked fast path, for reference)",
            "partial-free": "free into a partial slab (for reference)",
            "new-slab-first-allocate": "first allocate of a fresh cache: new slab, pages from the wilderness",
            "new-slab-when-full": "allocate when every slab is full: second slab",
            "new-slab-from-free-run": "new slab whose pages come from a free run (page allocator bins)",
            "free-releases-slab": "free of a slab's last object when the empty reserve is full: pages go back",
            "create-cache": "createCache (16 B row: the first, which also creates the cache of caches' slab)",
            "destroy-cache": "destroy an empty cache",
        }
        for name in ["partial-allocate", "partial-free", "new-slab-first-allocate", "new-slab-when-full",
                     "new-slab-from-free-run", "free-releases-slab", "create-cache", "destroy-cache"]:
            if name in by:
                lines.append(f"| {explain[name]} | " + " | ".join(str(by[name].get(str(s), "")) for s in SIZES) + " |")
        lines += ["| depot refill (magazine exchange) | not measured: the C ABI cannot empty one CPU's magazines alone | | | |", ""]
        if "initialize" in by:
            lines += ["Start-up, `Quarry.initialize` (through `quarry_init`, which also stores the instance):", ""]
            for arg, v in sorted(by["initialize"].items(), key=lambda kv: int(kv[0])):
                lines.append(f"- {int(arg) >> 20} MiB arena: {v} instructions")
            lines.append("")
    open(os.path.join(out, "instructions.md"), "w").write("\n".join(lines) + "\n")
    return per


def ratio(v, base):
    return f"{v / base:.2f}" if base else "-"


def goal_text(a, v=None):
    if a not in GOALS:
        return ""
    goal, stretch = GOALS[a]
    if v is None:
        return f"<= {goal} (stretch {stretch})"
    return f"<= {goal} (stretch {stretch}): " + ("met" if v <= goal else f"missed, {v / goal:.1f}x")


def memory(build, out):
    lines = ["# Memory figures", "",
             "From Quarry's own statistics (`PageStatistics.metadataBytes`, `CacheStatistics`), "
             "host x86_64 build: `build/bench/bin/quarry-probe memory BYTES` (part of `make bench`).", ""]
    arenas = {}
    for name in sorted(os.listdir(build)):
        if name.startswith("memory-") and name.endswith(".csv"):
            rows = read_csv(os.path.join(build, name))
            if rows:
                arenas[int(rows[0]["arena_bytes"])] = rows
    if not arenas:
        return
    lines += ["## Metadata per page", "",
              "Out-of-band metadata: the heap header, one page descriptor and 8 allocation-bitmap "
              "bytes (one bit per 64-byte granule) per 4 KiB data page. Caches of objects under 64 "
              "bytes keep their allocation bits at the end of their one-page slabs instead (16 to 64 "
              "bytes, counted below as slab slack). The 2% goal of issue 10 (item 8) is for 64-byte "
              "objects, which use no in-slab bits and leave no slack.", "",
              "| arena | data pages | metadata bytes | per data page | share of the arena |", "|---|---:|---:|---:|---:|"]
    for size, rows in sorted(arenas.items()):
        pages, meta = int(rows[0]["page_count"]), int(rows[0]["metadata_bytes"])
        lines.append(f"| {size >> 20} MiB | {pages} | {meta} | {meta / pages:.2f} | {100 * meta / size:.2f}% |")
    big = arenas[max(arenas)]
    per_page = int(big[0]["metadata_bytes"]) / int(big[0]["page_count"])
    lines += ["", "The per-page figure tends to the descriptor stride plus 8 as the arena grows "
              f"({per_page:.2f} bytes here: a 48-byte `PageDescriptor` on 64-bit targets plus 8). On i686 "
              "the descriptor's stride is 32 + 2 x 4 = 40 bytes (`PageDescriptor.stride`), so about 48 "
              "bytes per page: computed from the layout, not measured.", "",
              "## Per object, by cache size", "",
              "Metadata per object = per-page metadata x pages per slab / objects per slab. Slab slack "
              "is the part of the slab no object can use (colouring moves objects inside it); below "
              "64 bytes it includes the slab's in-slab allocation bits.", "",
              "| size | objects per slab | pages per slab | colours | metadata bytes per object | slab slack |",
              "|---:|---:|---:|---:|---:|---:|"]
    for r in big:
        n, pg = int(r["objects_per_slab"]), int(r["pages_per_slab"])
        slack = pg * 4096 - n * int(r["object_size"])
        lines.append(f"| {r['size']} | {n} | {pg} | {r['colors']} | {per_page * pg / n:.2f} | "
                     f"{slack} B ({100 * slack / (pg * 4096):.1f}%) |")
    classes = read_csv(os.path.join(build, "classes.csv"))
    if classes:
        lines += ["", "## Size classes of the malloc front: worst-case waste", "",
                  "`build/bench/bin/quarry-probe classes`. The worst request of a class is one byte "
                  "more than the class below; waste is the class size minus the request, against the "
                  "request. Slab slack is per slab of that class's cache.", ""]
        small = [c for c in classes if int(c["smallest_request"]) <= 128]
        big = [c for c in classes if int(c["smallest_request"]) > 128]
        worst_big = max(big, key=lambda c: float(c["worst_waste_pct"]))
        worst_slack = max(classes, key=lambda c: int(c["slab_slack_bytes"]) / (int(c["pages_per_slab"]) * 4096))
        def total(c):  # slab bytes per object against the worst request
            per_object = int(c["pages_per_slab"]) * 4096 / int(c["objects_per_slab"])
            return (per_object - int(c["smallest_request"])) / per_object
        worst_total = max(big, key=total)
        lines += [f"- {len(classes)} classes, {classes[0]['size']} to {classes[-1]['size']} bytes; "
                  "larger requests are spans of whole pages.",
                  f"- Requests up to 128 bytes: at most {max(int(c['worst_waste_bytes']) for c in small)} bytes "
                  "of rounding (16-byte steps after one 8-byte class).",
                  f"- Requests above 128 bytes: at most {float(worst_big['worst_waste_pct']):.2f}% "
                  f"(a {worst_big['smallest_request']}-byte request in the {worst_big['size']}-byte class); "
                  "the bound is 12.5%.",
                  f"- Slab slack, worst class: {worst_slack['slab_slack_bytes']} bytes of "
                  f"{int(worst_slack['pages_per_slab']) * 4096} ({worst_slack['size']}-byte class, "
                  f"{worst_slack['objects_per_slab']} objects per {worst_slack['pages_per_slab']}-page slab).",
                  f"- Rounding and slack together, worst class above 128 bytes: {100 * total(worst_total):.1f}% of "
                  f"the slab memory per object is not the request's (a {worst_total['smallest_request']}-byte "
                  f"request in the {worst_total['size']}-byte class, {worst_total['objects_per_slab']} per "
                  f"{worst_total['pages_per_slab']}-page slab).", "",
                  "| class | size | worst request | waste | objects per slab | pages per slab | slab slack |",
                  "|---:|---:|---:|---:|---:|---:|---:|"]
        for c in classes:
            lines.append(f"| {c['class']} | {c['size']} | {c['smallest_request']} | {c['worst_waste_bytes']} B "
                         f"({float(c['worst_waste_pct']):.1f}%) | {c['objects_per_slab']} | {c['pages_per_slab']} | "
                         f"{c['slab_slack_bytes']} B |")
    lines += ["", "Start-up cost for a 16 MiB against a 1 GiB arena: instruction counts in instructions.md.", "",
              "## Memory held by the per-CPU layer and the depot", "",
              "Per cache, at most `maxCPUs x (2 x magazineCapacity + 4) + depotFullLimit x magazineCapacity`",
              "objects (`CacheStatistics.perCPUBoundObjects`/`Bytes`, slabinfo column `bound_kb`); the",
              "formula and worked figures are in docs/design.md, \"Memory bound\".", ""]
    open(os.path.join(out, "memory.md"), "w").write("\n".join(lines) + "\n")


def main():
    build, out = sys.argv[1], sys.argv[2]
    os.makedirs(out, exist_ok=True)
    aggregate(build, out)
    med, _ = timing_table(build, out)
    plot(med, out, build)
    instructions(build, out)
    memory(build, out)
    print(f"report: wrote {out}/results.csv results-raw.csv table.md plot.png instructions.md memory.md")


if __name__ == "__main__":
    main()

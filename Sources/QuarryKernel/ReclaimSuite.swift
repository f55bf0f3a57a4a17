// ReclaimSuite: issue 11 on bare metal: MultiCPUStress (Tests/Scenarios) over the malloc
// front on every CPU of an 8 MiB heap while every CPU's timer handler allocates too; with
// the live blocks at most half of the arena, no allocation may fail (the scenario checks
// it, and the peak, cookies, errors and the per-CPU budget).
// Neighbours: Kernel.swift (runs it on its own arena slice), SMPStress.swift (drives the
// stress and its timer hook), TestHarness.swift (reports),
// Tests/QuarryTests/ReclaimStressTests.swift (the same scenario on the host).

import Quarry

enum ReclaimSuite {
    /// The heap under test: the arena size of issue 11.
    static let heapBytes = 8 << 20
    /// Operations per CPU: issue 11's 400 000, as the host test. With -smp 4 on i686 the
    /// suite took 8.6 s on an idle 2-core host; under load the time goes to vCPUs spinning
    /// on lock holders the host preempted (a quarter of the operations take the page lock
    /// or a cache lock), which QEMU_TIMEOUT (240 s per boot) leaves room for: 49.6 s on x86_64 at load 4.
    static let operationsPerCPU = 400_000
    static let seed: UInt64 = 0x11EC_1A1F
    /// Live blocks each CPU may hold.
    static let listCapacity = 2048

    /// Bytes of `[base, base + size)` the suite needs: the scenario's state for
    /// `maxCPUs`, then the heap.
    static var bytes: Int { stateBytes + heapBytes }
    static var stateBytes: Int {
        (MultiCPUStress<X86Platform>.bytes(cpus: X86Platform.maxCPUs, listCapacity: listCapacity) + 4095) & ~4095
    }

    /// Runs the scenario on every online CPU; `base` is page-aligned, `size >= bytes`.
    static func run(base: UnsafeMutableRawPointer, size: Int) {
        Console.printLine("== reclaim suite (issue 11)")
        guard size >= bytes, let q = try? KernelQuarry.initialize(base: base + stateBytes, size: heapBytes) else {
            TestHarness.fail("reclaim: initialize") { Console.print("no room for the heap") }
            return
        }
        let cpus = SMP.cpuCount
        let s = MultiCPUStress(
            quarry: q, source: .mallocFront, memory: base,
            configuration: .init(
                cpus: cpus, operationsPerCPU: operationsPerCPU, listCapacity: listCapacity, seed: seed,
                key: UInt(truncatingIfNeeded: seed), interrupts: true, limitBytes: heapBytes / 2,
                shrinkOneIn: 20_000))
        let (r, milliseconds) = SMPStress.drive(s)
        report(r, q, cpus: cpus, milliseconds: milliseconds)
        q.checkInvariants()
        q.front.shrink()
        q.drainAll()
        TestHarness.checkEqual("reclaim: every page came back", q.pageStatistics.pagesInUse, 0)
    }

    static func report(_ r: MultiCPUStressReport, _ q: KernelQuarry, cpus: Int, milliseconds: UInt64) {
        let budget = q.reclaimStatistics
        Console.line {
            Console.stressHead("reclaim: ", cpus: cpus, operations: operationsPerCPU, milliseconds: milliseconds)
            Console.decimal(r.allocations)
            Console.print(" allocations (")
            Console.decimal(r.spans)
            Console.print(" spans), ")
            Console.decimal(r.mailboxFrees)
            Console.print(" frees through the mailbox, ")
            Console.decimal(r.handlerAllocations)
            Console.print(" in timer handlers; peak live ")
            Console.decimal(r.peakLiveBytes)
            Console.print(" bytes, ")
            Console.decimal(r.limited)
            Console.print(" refused by the limit, ")
            Console.decimal(r.failures + r.handlerFailures)
            Console.print(" failures; ")
            Console.decimal(budget.reclaims)
            Console.print(" reclaims (")
            Console.decimal(r.shrinks)
            Console.print(" by shrink), ")
            Console.decimal(budget.flushesHonoured)
            Console.print(" flush requests honoured; per-CPU budget high water ")
            Console.decimal(budget.highWaterBytes)
            Console.print(" of ")
            Console.decimal(budget.budgetBytes)
            Console.print(" bytes")
            Console.newline()
        }
    }
}

// SMPStress: MultiCPUStress (Tests/Scenarios) on every CPU at once, the timer interrupt
// allocating and freeing on every CPU meanwhile: `run` drives it over three caches (each
// CPU hands objects to the others through the mailbox); `drive` runs any configured
// stress and is what ReclaimSuite uses for the malloc source.
// Neighbours: AllocatorSuite.swift (runs it, forwards the timer hook), ReclaimSuite.swift
// (the other driven stress), SMP.swift (phases), TestHarness.swift (reports),
// Tests/QuarryTests/ConcurrencyTests.swift (the same scenario on the host).

import Quarry
import Synchronization

enum SMPStress {
    static let sizes: InlineArray<3, Int> = [16, 96, 700]
    static let operationsPerCPU = 40_000
    /// Live objects each CPU holds at most.
    static let listCapacity = 256

    /// The stress being driven: written by the boot CPU before `hookEnabled` is set
    /// (release), read by the timer handlers after they see it set (acquire).
    nonisolated(unsafe) static var scenario: MultiCPUStress<X86Platform>? = nil
    static let hookEnabled = Atomic<Bool>(false)

    /// Runs the cache stress on a heap over `[base, base + size)`.
    static func run(base: UnsafeMutableRawPointer, size: Int) {
        guard let q = try? KernelQuarry.initialize(base: base, size: size) else {
            TestHarness.fail("smp: initialize") { Console.print("refused") }
            return
        }
        let cpus = SMP.cpuCount
        let bytes = MultiCPUStress<X86Platform>.bytes(cpus: cpus, listCapacity: listCapacity)
        guard let irq = try? q.createCache(name: "smp-irq", size: 48),
            let state = try? q.createCache(name: "smp-state", size: bytes, alignment: 64),
            let memory = try? state.allocate()
        else {
            TestHarness.fail("smp: set-up") { Console.print("allocation refused") }
            return
        }
        var s = MultiCPUStress(
            quarry: q, source: .caches(handlerCache: irq), memory: memory,
            configuration: .init(
                cpus: cpus, operationsPerCPU: operationsPerCPU, listCapacity: listCapacity, seed: 0x51ED_0000,
                key: 0x5EED_5EED, interrupts: true))
        var caches = InlineArray<3, KernelCache?>(repeating: nil)
        for k in 0..<3 {
            caches[k] = try? q.createCache(name: "smp-objects", size: sizes[k])
            if let c = caches[k] { s.add(c) }
        }
        let (r, milliseconds) = drive(s)
        Console.line {
            Console.stressHead("smp: ", cpus: cpus, operations: operationsPerCPU, milliseconds: milliseconds)
            Console.decimal(r.mailboxFrees)
            Console.print(" frees out of the mailbox, ")
            Console.decimal(r.handlerAllocations)
            Console.print(" allocations in ")
            Console.decimal(r.handlerRuns)
            Console.print(" timer handler runs")
            Console.newline()
        }
        _ = try? state.free(memory)
        var leaked = state.destroy() + irq.destroy()
        for k in 0..<3 { leaked += caches[k]?.destroy() ?? 1 }
        q.checkInvariants()
        q.shrink()
        TestHarness.checkEqual("smp: every cache destroyed without leaks", leaked, 0)
        TestHarness.checkEqual("smp: every page came back", q.pageStatistics.pagesInUse, 0)
    }

    /// Runs `s` on every online CPU with the timer hook on, then (at quiescence) its
    /// `finish`, whose checks become TestHarness checks. Returns the report and the time
    /// from start to the end of the run.
    static func drive(_ s: MultiCPUStress<X86Platform>) -> (MultiCPUStressReport, UInt64) {
        scenario = s
        let start = Clock.now()
        hookEnabled.store(true, ordering: .releasing)
        SMP.runOnAllCPUs { cpu in SMPStress.scenario!.run(cpu: cpu) }
        hookEnabled.store(false, ordering: .releasing)
        let milliseconds = Clock.milliseconds(from: start, to: Clock.now())
        // Let every handler that saw the flag finish (a tick is 0.5 ms).
        Clock.delay(microseconds: 5_000)
        let r = s.finish(HarnessChecks())
        scenario = nil
        return (r, milliseconds)
    }

    /// Runs in every timer interrupt (interrupts disabled): the driven stress's interrupt step.
    static func timerHook() {
        guard hookEnabled.load(ordering: .acquiring), let s = scenario else { return }
        s.interrupt(cpu: X86Platform.cpuIndex)
    }
}

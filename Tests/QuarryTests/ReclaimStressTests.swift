// ReclaimStressTests: issue 11's acceptance test on the host: with live data at most half
// of an 8 MiB arena, no allocation fails, for a random mix of 1 B ... 100 KB on 1, 2 and
// 4 CPUs (threads) with cross-CPU frees and SIGALRM handlers that allocate; and past half,
// allocations that would fail reclaim first. The workload is MultiCPUStress over the
// malloc front (Tests/Scenarios), which the test kernel runs too; it checks what both
// harnesses check (cookies, errors, failures within the limit, the peak, the budget).
// Neighbours: VirtualCPU (CPUs and interrupts), TestThread (threads, timer),
// MultiCPUStressHarness (runs the scenario), Sources/QuarryKernel/ReclaimSuite.swift.

import QuarryScenarios
import Synchronization
import Testing

@testable import Quarry

#if canImport(Glibc)
import Glibc
#endif

@Suite struct ReclaimStressTests {
    /// Operations per CPU: QUARRY_RECLAIM_OPS, else 400 000 (40 000 under ThreadSanitizer,
    /// `make host-tsan`, which runs this about ten times slower).
    static var operationsPerCPU: Int {
        ProcessInfoLite.environment("QUARRY_RECLAIM_OPS").flatMap { Int($0) }
            ?? (runningUnderThreadSanitizer ? 40_000 : 400_000)
    }
    static let arenaBytes = 8 << 20

    /// What one run saw.
    struct Run {
        var report: MultiCPUStressReport
        var reclaim: ReclaimStatistics
        var pagesAfterDrain: Int
        var seconds: Double
        var handlerRuns: [UInt]
        var seed: UInt64
        /// Reclaims run by allocations (not by `shrink`, nor the warm-up's).
        var reclaimsByAllocations: Int { Int(reclaim.reclaims) - report.shrinks - handlerRuns.count }

        var summary: String {
            "\(report.operations) operations in \(seconds) s, \(report.allocations) allocations "
                + "(\(report.spans) spans), \(report.mailboxFrees) frees through the mailbox, "
                + "\(report.handlerAllocations) in handlers (\(handlerRuns) handler runs), "
                + "peak live \(report.peakLiveBytes) bytes, "
                + "\(report.limited) refused by the limit, \(report.failures) failures, "
                + "\(reclaimsByAllocations) reclaims by allocations and \(report.shrinks) by shrink, "
                + "\(reclaim.flushesHonoured) flush requests honoured, per-CPU budget high water "
                + "\(reclaim.highWaterBytes) of \(reclaim.budgetBytes) bytes, seed \(seed)"
        }
    }

    /// Runs the scenario on `cpus` threads with the timer on, then frees, checks and drains.
    /// `mayRunOut`: the limit is past what the arena can serve, so `.outOfMemory` is no failure.
    static func run(cpus: Int, limitBytes: Int, mayRunOut: Bool, operationsPerCPU: Int, shrinkOneIn: Int) throws
        -> Run
    {
        let arena = TestArena(size: arenaBytes)
        defer { arena.release() }
        let q = try VirtualCPU.withCPU(0) { try arena.quarry(on: ThreadPlatform<16>.self, tuning: .standard) }
        let seed = testSeeds([UInt64.random(in: 1...UInt64.max)])[0]
        let configuration = MultiCPUStress<ThreadPlatform<16>>.Configuration(
            cpus: cpus, operationsPerCPU: operationsPerCPU, listCapacity: 2048, seed: seed,
            key: UInt(truncatingIfNeeded: seed), interrupts: true, limitBytes: limitBytes, mayRunOut: mayRunOut,
            shrinkOneIn: shrinkOneIn)
        nonisolated(unsafe) let heap = q
        let stress = runMultiCPUStress(
            quarry: q, source: .mallocFront, configuration: configuration, interruptMicroseconds: 100,
            warmUp: { _ in heap.shrink() })
        let reclaim = q.reclaimStatistics
        let pages = VirtualCPU.withCPU(0) { () -> Int in
            q.checkInvariants()
            q.front.shrink()
            q.drainAll()
            q.checkInvariants()
            return q.pageStatistics.pagesInUse
        }
        return Run(
            report: stress.report, reclaim: reclaim, pagesAfterDrain: pages, seconds: stress.seconds,
            handlerRuns: stress.handlerRuns, seed: seed)
    }

    /// Issue 11 item 2: live blocks (usable sizes) at most half the arena: no failure.
    @Test(arguments: [1, 2, 4])
    func noAllocationFailsWithinHalfTheArena(cpus: Int) throws {
        let limit = Self.arenaBytes / 2
        // The scenario checked failures (thread and handler), cookies, errors, operations,
        // mailbox frees, every CPU's handler, the peak near the limit, the end, the budget.
        let run = try Self.run(
            cpus: cpus, limitBytes: limit, mayRunOut: false, operationsPerCPU: Self.operationsPerCPU,
            shrinkOneIn: 20_000)
        print("reclaim stress, \(cpus) CPUs, live <= half: \(run.summary)")
        #expect(run.report.spans > 0, "seed \(run.seed)")
        #expect(run.pagesAfterDrain == 0, "seed \(run.seed)")
    }

    /// Live blocks up to 7/8 of the arena: allocations do run out of pages; each reclaims
    /// before it fails (concurrently with the other CPUs, their handlers and their flush
    /// requests), and nothing is lost or corrupted.
    @Test func pastHalfTheArenaAllocationsReclaimBeforeFailing() throws {
        let cpus = 4
        // The scenario checked cookies, errors, every CPU's handler, the end, the budget.
        let run = try Self.run(
            cpus: cpus, limitBytes: Self.arenaBytes / 8 * 7, mayRunOut: true,
            operationsPerCPU: min(Self.operationsPerCPU, 100_000), shrinkOneIn: 0)
        print("reclaim stress, \(cpus) CPUs, live <= 7/8: \(run.summary)")
        #expect(run.reclaimsByAllocations > 0 && run.reclaim.flushesHonoured > 0, "seed \(run.seed)")
        #expect(run.pagesAfterDrain == 0, "seed \(run.seed)")
    }
}

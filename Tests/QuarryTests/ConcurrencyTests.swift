// ConcurrencyTests: real threads as virtual CPUs: random allocate/free with objects handed
// between CPUs and a cookie checked on every free, with and without a SIGALRM timer whose
// handler allocates and frees on the interrupted CPU (Tests/Scenarios/MultiCPUStress.swift
// over caches, which the test kernel runs too); two CPUs freeing one object at once.
// Neighbours: VirtualCPU (CPUs and interrupts), TestThread (the threads), SpinBarrier,
// MultiCPUStressHarness (runs the scenario), Tests/Scenarios/MultiCPUStress.swift, Tests/Scenarios/TestRandom.swift (cookies).

import QuarryScenarios
import Synchronization
import Testing

@testable import Quarry

#if canImport(Glibc)
import Glibc
#endif

@Suite struct ConcurrencyTests {
    static let sizes = [8, 24, 64, 200, 1000, 4096]

    /// MultiCPUStress on `cpus` threads over the caches of `sizes` (the handlers allocate
    /// from the second), with the timer when `interruptMicroseconds > 0`; then the caches
    /// are destroyed and every page must come back.
    static func runCacheStress(cpus: Int, tuning: Tuning, operationsPerCPU: Int, interruptMicroseconds: Int) throws {
        let arena = TestArena(size: 32 << 20)
        defer { arena.release() }
        let q = try VirtualCPU.withCPU(0) { try arena.quarry(on: ThreadPlatform<16>.self, tuning: tuning) }
        let caches = try VirtualCPU.withCPU(0) {
            try sizes.map { size throws(QuarryError) in try q.createCache(name: "stress", size: size) }
        }
        let seed = testSeeds([UInt64.random(in: 1...UInt64.max)])[0]
        let configuration = MultiCPUStress<ThreadPlatform<16>>.Configuration(
            cpus: cpus, operationsPerCPU: operationsPerCPU, listCapacity: 1024, seed: seed,
            key: UInt.random(in: 1...UInt.max), interrupts: interruptMicroseconds > 0)
        let r = runMultiCPUStress(
            quarry: q, source: .caches(handlerCache: caches[1]), caches: caches, configuration: configuration,
            interruptMicroseconds: interruptMicroseconds
        ).report
        print(
            "cache stress, \(cpus) CPUs, \(tuning.magazineSize)-object magazines: \(r.operations) operations, "
                + "\(r.mailboxFrees) frees out of the mailbox, \(r.handlerAllocations) allocations in "
                + "\(r.handlerRuns) handler runs, seed \(seed)")
        let pages = VirtualCPU.withCPU(0) { () -> Int in
            q.checkInvariants()
            for c in caches { #expect(c.destroy() == 0, "seed \(seed)") }
            q.drainAll()
            q.checkInvariants()
            return q.pageStatistics.pagesInUse
        }
        #expect(pages == 0, "pages leaked (seed \(seed))")
    }

    /// 2 to 8 CPUs, standard and tiny tuning: about 2.3 million operations in all.
    @Test(arguments: [(2, Tuning.standard), (4, Tuning.tiny), (8, Tuning.standard), (8, Tuning.tiny)])
    func randomAllocateFreeAcrossCPUs(cpus: Int, tuning: Tuning) throws {
        try Self.runCacheStress(cpus: cpus, tuning: tuning, operationsPerCPU: 600_000 / cpus, interruptMicroseconds: 0)
    }

    /// A double free on two CPUs one after the other, 20 000 times: CPU 0 frees, then
    /// (after a barrier) CPU 1 frees the same object again and is refused with
    /// `.doubleFree`, every time, while the object sits in CPU 0's magazine (found by
    /// its cached mark) or, after a flush, in its slab (found by its bit). Two frees
    /// that race at the same instant may both pass (docs/design.md, Safety): not tested.
    @Test func sequentialDoubleFreeOnTwoCPUsIsRefused() throws {
        let arena = TestArena(size: 4 << 20)
        defer { arena.release() }
        let q = try VirtualCPU.withCPU(0) { try arena.quarry(on: ThreadPlatform<16>.self, tuning: .tiny) }
        let c = try VirtualCPU.withCPU(0) { try q.createCache(name: "race", size: 48) }
        final class Race: @unchecked Sendable {
            let object = Atomic<UInt>(0)
            let successes = Atomic<Int>(0)
            let doubleFrees = Atomic<Int>(0)
            let other = Atomic<Int>(0)
            let barrier = SpinBarrier(parties: 2)
        }
        let race = Race()
        let rounds = 20_000
        nonisolated(unsafe) let cache = c
        runOnCPUs(2) { cpu in
            for _ in 0..<rounds {
                if cpu == 0 {
                    let p = try! cache.allocate()
                    race.object.store(UInt(bitPattern: p), ordering: .releasing)
                }
                race.barrier.wait()
                let p = UnsafeMutableRawPointer(bitPattern: race.object.load(ordering: .acquiring))!
                if cpu == 1 { race.barrier.wait() }
                do throws(QuarryError) {
                    try cache.free(p)
                    race.successes.wrappingAdd(1, ordering: .relaxed)
                } catch {
                    if error == .doubleFree {
                        race.doubleFrees.wrappingAdd(1, ordering: .relaxed)
                    } else {
                        race.other.wrappingAdd(1, ordering: .relaxed)
                    }
                }
                if cpu == 0 { race.barrier.wait() }
                race.barrier.wait()
            }
        }
        #expect(race.successes.load(ordering: .relaxed) == rounds)
        #expect(race.doubleFrees.load(ordering: .relaxed) == rounds)
        #expect(race.other.load(ordering: .relaxed) == 0)
        VirtualCPU.withCPU(0) {
            #expect(c.statistics.count(of: .doubleFree) == UInt64(rounds))
            q.checkInvariants()
            #expect(c.destroy() == 0)
            q.drainAll()
            #expect(q.pageStatistics.pagesInUse == 0)
        }
    }

    /// SIGALRM every 100 µs while 4 CPUs run the stress on the same caches: the
    /// handler allocates and frees on the interrupted CPU (it keeps a few objects across
    /// interrupts). It must run on every CPU, never corrupt a cookie, and leave no page
    /// behind.
    @Test func timerInterruptsAllocateOnTheInterruptedCPU() throws {
        try Self.runCacheStress(cpus: 4, tuning: .tiny, operationsPerCPU: 150_000, interruptMicroseconds: 100)
    }
}

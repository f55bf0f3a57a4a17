// LockFreeStackTests: the EBR-backed Treiber stack under real threads (one virtual CPU
// each) with simulated interrupts: exactly-once delivery, cookie checks, the bound
// (Tests/Scenarios/EpochStackStress.swift, run by the test kernel too), stalled readers,
// no reuse before a reader leaves, and every page back at the end.
// Neighbours: EpochTestPlatform (threads as CPUs), EpochReclaimerTests (single-thread cases).

import Testing
import Synchronization
@testable import Quarry
import QuarryScenarios
#if canImport(Glibc)
import Glibc
#endif

/// What one thread pushed and popped.
final class ThreadLog: @unchecked Sendable {
    var pushed: [UInt] = []
    var popped: [UInt] = []
    var stalledPops = 0
    /// Failures seen on the thread (recorded after the join: threads do not call #expect).
    var failures = 0
}

struct StressConfig: Sendable, CustomTestStringConvertible {
    var threads: Int
    var bound: Int
    var operations: Int
    var interruptPeriod: UInt64
    var testDescription: String { "\(threads) threads, bound \(bound), interrupt every ~\(interruptPeriod) windows" }
}

let stalledTestStalls = Atomic<Int>(0)
let stalledTestNamedReader = Atomic<Int>(0)
let recordStalledTestStall: EpochStallHook = { cpu, _ in
    stalledTestStalls.add(1, ordering: .relaxed)
    if cpu == 0 { stalledTestNamedReader.add(1, ordering: .relaxed) }
}

@Suite struct LockFreeStackTests {
    static let configs: [StressConfig] = [
        StressConfig(threads: 2, bound: 64, operations: stressOperations(40_000), interruptPeriod: 0),
        StressConfig(threads: 4, bound: 256, operations: stressOperations(30_000), interruptPeriod: 40),
        StressConfig(threads: 8, bound: 16, operations: stressOperations(15_000), interruptPeriod: 25),
        StressConfig(threads: 4, bound: 4, operations: stressOperations(20_000), interruptPeriod: 30),
    ]

    /// Threads push unique values and pop at random, their simulated interrupt handlers
    /// too (the EpochStackStress scenario of Tests/Scenarios, which the test kernel runs
    /// on every CPU): every value pushed is popped exactly once, no reader ever saw a
    /// freed node (cookie), no CPU held more retired nodes than the bound, and after
    /// destroy and shrink every page is back.
    @Test(arguments: configs)
    func everyValueIsPoppedExactlyOnce(config: StressConfig) throws {
        try withEpochHeap(size: 16 << 20) { q in
            let r = try q.createReclaimer(retiredPerCPU: config.bound)
            let stack = try LockFreeStack.create(in: q, reclaimer: r)
            let valueBits = 16  // 32 768 values per CPU for each of thread context and handler
            let memory = UnsafeMutableRawPointer.allocate(
                byteCount: EpochStackStress<EpochTestPlatform>.bytes(cpus: config.threads, valueBits: valueBits),
                alignment: 64)
            defer { memory.deallocate() }
            let stress = EpochStackStress(stack: stack, memory: memory, configuration: .init(
                cpus: config.threads, operationsPerCPU: config.operations, valueBits: valueBits,
                seed: 0x5EED_0000, interrupts: config.interruptPeriod > 0))
            let shared = Shared(stress)
            let start = StartLine(parties: config.threads)
            runThreads(config.threads) { t in
                let stress = shared.value
                let me = EpochTestPlatform.current
                if config.interruptPeriod > 0 {
                    me.arm(period: config.interruptPeriod, seed: UInt64(t) &+ 99) { stress.interrupt(cpu: t) }
                }
                start.wait()
                stress.run(cpu: t)
                me.disarm()
            }
            let report = stress.finish(ExpectChecks())
            print("epoch stress, \(config.testDescription): \(report.pushes + report.handlerPushes) pushes, "
                  + "\(report.handlerPushes + report.handlerPops) handler pushes and pops, \(report.stalledPops) stalled pops")
            r.checkInvariants()
            q.checkInvariants()
            #expect(stack.destroy() == 0)
            #expect(r.statistics.pending == 0)
            r.destroy()
        }
    }

    /// A reader thread stays inside a critical section while the others push and pop:
    /// the epoch stops, each CPU's backlog fills to the bound and no further, pops are
    /// refused with `.reclaimStalled`, the stall is reported naming the reader's CPU;
    /// once the reader leaves, everything is freed.
    @Test func stalledReaderThreadBlocksReclamationWithinTheBound() throws {
        try withEpochHeap(size: 8 << 20) { q in
            let bound = 32
            let workers = 3
            stalledTestStalls.store(0, ordering: .relaxed)
            stalledTestNamedReader.store(0, ordering: .relaxed)
            let r = try q.createReclaimer(retiredPerCPU: bound, stallHook: recordStalledTestStall)
            let stack = try LockFreeStack.create(in: q, reclaimer: r)
            for v in 0..<UInt(4 * bound * workers) { try stack.push(v | 1 << 50) }
            let readerInside = Atomic<Bool>(false)
            let readerLeft = Atomic<Bool>(false)
            let overBound = Atomic<Int>(0)
            let logs = (0...workers).map { _ in ThreadLog() }
            let shared = Shared((stack, r, logs))
            runThreads(workers + 1) { t in
                let (stack, r, logs) = shared.value
                if t == 0 {
                    r.enter()
                    readerInside.store(true, ordering: .releasing)
                    // Stay until every worker has been refused a few times.
                    while r.statistics.refused < UInt(4 * workers) { sched_yield() }
                    if r.stallingCPU != 0 { logs[0].failures += 1 }
                    r.exit()
                    readerLeft.store(true, ordering: .releasing)
                    return
                }
                while !readerInside.load(ordering: .acquiring) { sched_yield() }
                var v: UInt = 0
                var i = 0
                while !readerLeft.load(ordering: .acquiring) || i < 2000 {
                    if i % 3 == 0 {
                        if (try? stack.push(UInt(t) << 40 | v)) != nil { logs[t].pushed.append(UInt(t) << 40 | v) }
                        v += 1
                    } else {
                        do {
                            if let w = try stack.pop() { logs[t].popped.append(w) }
                        } catch {
                            logs[t].stalledPops += 1
                            sched_yield()
                        }
                    }
                    let pending = r.statistics(cpu: t).pending
                    if pending > bound { overBound.add(1, ordering: .relaxed) }
                    i += 1
                }
            }
            #expect(overBound.load(ordering: .relaxed) == 0)
            #expect(logs[0].failures == 0, "the reader was not named as the stalling CPU")
            #expect(logs.map(\.stalledPops).reduce(0, +) >= 4 * workers)
            let s = r.statistics
            #expect(s.stalls >= UInt(4 * workers) && s.highWater <= bound)
            #expect(stalledTestStalls.load(ordering: .relaxed) == Int(s.stalls))
            // Most stalls name the reader; a worker that lingers inside with an old
            // announcement (preempted: this host has two vCPUs) may be named too.
            #expect(stalledTestNamedReader.load(ordering: .relaxed) > 0)
            #expect(stack.cookieMismatches == 0)
            var popped = logs.flatMap(\.popped)
            while let w = try stack.pop() { popped.append(w) }
            let pushed = logs.flatMap(\.pushed) + (0..<UInt(4 * bound * workers)).map { $0 | 1 << 50 }
            #expect(popped.count == Set(popped).count && Set(popped) == Set(pushed))
            r.synchronize()
            r.checkInvariants()
            stack.destroy()
            r.destroy()
        }
    }

    /// A writer publishes an object, waits until a reader holds it inside a critical
    /// section, unlinks and retires it, then allocates from the same cache: it must
    /// never get the object back while the reader is still inside (the reader stays
    /// until the writer has allocated 32 objects, then leaves), and the reader must
    /// always find the object's cookie intact. Round after round.
    @Test func objectRetiredUnderAReaderIsNotReusedBeforeItLeaves() throws {
        try withEpochHeap(size: 4 << 20) { q in
            let r = try q.createReclaimer(retiredPerCPU: 16)
            let c = try q.createCache(name: "published", size: 64)
            let rounds = stressOperations(40_000) / 100
            let slot = Atomic<UInt>(0)
            let insideRound = Atomic<Int>(0)
            let retiredRound = Atomic<Int>(0)
            let doneRound = Atomic<Int>(0)
            let violations = Atomic<Int>(0)
            let cookieFailures = Atomic<Int>(0)
            let reused = Atomic<Int>(0)
            let shared = Shared((r, c))
            runThreads(2) { t in
                let (r, c) = shared.value
                if t == 1 {
                    for round in 1...rounds {
                        var x: UInt = 0
                        while true {
                            r.enter()
                            x = slot.load(ordering: .acquiring)
                            if x != 0 { break }
                            r.exit()
                            sched_yield()
                        }
                        insideRound.store(round, ordering: .releasing)
                        let p = UnsafeMutableRawPointer(bitPattern: x)!
                        repeat {
                            if !Cookie.intact(p, size: 64, key: UInt(round)) { cookieFailures.add(1, ordering: .relaxed) }
                            sched_yield()
                        } while retiredRound.load(ordering: .acquiring) < round
                        insideRound.store(0, ordering: .releasing)
                        r.exit()
                        while doneRound.load(ordering: .acquiring) < round { sched_yield() }
                    }
                    return
                }
                for round in 1...rounds {
                    let x = try! c.allocate()
                    Cookie.fill(x, size: 64, key: UInt(round))
                    slot.store(UInt(bitPattern: x), ordering: .releasing)
                    while insideRound.load(ordering: .acquiring) != round { sched_yield() }
                    slot.store(0, ordering: .releasing)   // unlink, then retire
                    try! r.retire(x, to: c)
                    // Allocate and poll until `x` comes back: it may only come back once
                    // the reader has left, which it does after the first 32 allocations.
                    var got: [UnsafeMutableRawPointer] = []
                    while true {
                        r.poll()
                        if got.count == 32 { retiredRound.store(round, ordering: .releasing) }
                        if got.count >= 4096 { break }   // x never came back: counted below
                        if got.count < 32 || !c.isAllocated(x) {
                            let p = try! c.allocate()
                            got.append(p)
                            if p == x {
                                reused.add(1, ordering: .relaxed)
                                if insideRound.load(ordering: .acquiring) == round { violations.add(1, ordering: .relaxed) }
                                break
                            }
                        } else {
                            sched_yield()
                        }
                    }
                    retiredRound.store(round, ordering: .releasing)
                    for p in got { try! c.free(p) }
                    doneRound.store(round, ordering: .releasing)
                }
            }
            #expect(violations.load(ordering: .relaxed) == 0, "an object was handed out while its reader was inside")
            #expect(cookieFailures.load(ordering: .relaxed) == 0, "a reader saw its object change")
            #expect(reused.load(ordering: .relaxed) == rounds, "every object came back once its reader left")
            r.synchronize()
            r.destroy()
            #expect(c.destroy() == 0)
        }
    }
}

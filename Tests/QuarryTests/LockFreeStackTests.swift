// LockFreeStackTests: the EBR-backed Treiber stack under real threads (one virtual CPU
// each) with simulated interrupts: exactly-once delivery, cookie checks, the bound
// (Tests/Scenarios/EpochStackStress.swift, run by the test kernel too), stalled readers,
// no reuse before a reader leaves, and every page back at the end.
// Neighbours: VirtualCPU (threads as CPUs, injected interrupts), EpochReclaimerTests (single-thread cases).

import QuarryScenarios
import Synchronization
import Testing

@testable import Quarry

#if canImport(Glibc)
import Glibc
#endif

struct StressConfig: Sendable, CustomTestStringConvertible {
    var threads: Int
    var bound: Int
    var operations: Int
    var interruptPeriod: UInt64
    var testDescription: String { "\(threads) threads, bound \(bound), interrupt every ~\(interruptPeriod) windows" }
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
                byteCount: EpochStackStress<ThreadPlatform<16>>.bytes(cpus: config.threads, valueBits: valueBits),
                alignment: 64)
            defer { memory.deallocate() }
            let stress = EpochStackStress(
                stack: stack, memory: memory,
                configuration: .init(
                    cpus: config.threads, operationsPerCPU: config.operations, valueBits: valueBits,
                    seed: 0x5EED_0000, interrupts: config.interruptPeriod > 0))
            let shared = Shared(stress)
            let start = SpinBarrier(parties: config.threads)
            runOnCPUs(config.threads) { t in
                let stress = shared.value
                if config.interruptPeriod > 0 {
                    VirtualCPU.injectInterrupts(period: config.interruptPeriod, seed: UInt64(t) &+ 99) {
                        stress.interrupt(cpu: t)
                    }
                }
                start.wait()
                stress.run(cpu: t)
                VirtualCPU.stopInjecting()
            }
            let report = stress.finish(ExpectChecks())
            print(
                "epoch stress, \(config.testDescription): \(report.pushes + report.handlerPushes) pushes, "
                    + "\(report.handlerPushes + report.handlerPops) handler pushes and pops, \(report.stalledPops) stalled pops"
            )
            r.checkInvariants()
            q.checkInvariants()
            #expect(stack.destroy() == 0)
            #expect(r.statistics.pending == 0)
            r.destroy()
        }
    }

    /// A reader thread stays inside a critical section while the others push and pop
    /// (the EpochStall scenario of Tests/Scenarios, which the test kernel runs too): the
    /// epoch stops, each CPU's backlog fills to the bound and no further, pops are
    /// refused with `.reclaimStalled`, the stall is reported naming the reader's CPU;
    /// once every other CPU was refused, the reader leaves and everything is freed.
    @Test func stalledReaderThreadBlocksReclamationWithinTheBound() throws {
        try withEpochHeap(size: 8 << 20) { q in
            let bound = 32
            let workers = 3
            EpochStallRecorder.reset(watching: 0)
            let r = try q.createReclaimer(retiredPerCPU: bound, stallHook: EpochStallRecorder.hook)
            let stack = try LockFreeStack.create(in: q, reclaimer: r)
            for v in 0..<UInt(4 * bound * workers) { try stack.push(v | 1 << 50) }
            let state = UnsafeMutablePointer<EpochStallState>.allocate(capacity: 1)
            state.initialize(to: EpochStallState())
            defer {
                state.deinitialize(count: 1)
                state.deallocate()
            }
            let stall = EpochStall(stack: stack, state: state, cpus: workers + 1, reader: 0, maxWaits: 10_000_000)
            let shared = Shared(stall)
            runOnCPUs(workers + 1) { t in shared.value.run(cpu: t) }
            stall.finish(ExpectChecks())
            while try stack.pop() != nil {}
            r.synchronize()
            r.checkInvariants()
            #expect(stack.destroy() == 0)
            r.destroy()
        }
    }

    /// A writer publishes an object, waits until a reader holds it inside a critical
    /// section, unlinks and retires it, then allocates from the same cache: it must
    /// never get the object back while the reader is still inside, and the reader must
    /// always find the object's cookie intact. Round after round (the EpochReuse
    /// scenario of Tests/Scenarios, which the test kernel runs too).
    @Test func objectRetiredUnderAReaderIsNotReusedBeforeItLeaves() throws {
        try withEpochHeap(size: 4 << 20) { q in
            let r = try q.createReclaimer(retiredPerCPU: 16)
            let c = try q.createCache(name: "published", size: 64)
            let state = UnsafeMutablePointer<EpochReuseState>.allocate(capacity: 1)
            state.initialize(to: EpochReuseState())
            let held = UnsafeMutableBufferPointer<UInt>.allocate(capacity: 4096)
            defer {
                state.deinitialize(count: 1)
                state.deallocate()
                held.deallocate()
            }
            let reuse = EpochReuse(
                reclaimer: r, cache: c, state: state, held: held,
                rounds: stressOperations(40_000) / 100, writer: 0, reader: 1)
            let shared = Shared(reuse)
            runOnCPUs(2) { t in shared.value.run(cpu: t) }
            reuse.finish(ExpectChecks())
            r.destroy()
            #expect(c.destroy() == 0)
        }
    }
}

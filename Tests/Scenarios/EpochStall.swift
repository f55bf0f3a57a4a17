// EpochStall: a reader that stays inside its critical section while every other CPU
// pushes and pops on the EBR stack, written once for the host test (LockFreeStackTests:
// threads as virtual CPUs) and the test kernel (EpochSuite: SMP under QEMU). The epoch
// stops, each CPU's backlog fills to the bound and no further, pops are refused with
// `.reclaimStalled`, the stall is counted and reported (EpochStallRecorder) naming the
// reader; once every other CPU was refused, the reader leaves.
// Neighbours: Quarry/Epochs/EpochReclaimer (under test), EpochStackStress (the stack's stress),
// ScenarioChecks (reporting). Embedded Swift: no allocation, no existentials.

import Quarry
import Synchronization

/// The stall hook scenarios give `createReclaimer(stallHook:)`: counts the reports, the
/// ones naming the `watched` CPU, and keeps the last CPU named. One reclaimer at a time.
public enum EpochStallRecorder {
    public static let calls = Atomic<Int>(0)
    public static let lastCPU = Atomic<Int>(-2)
    static let watched = Atomic<Int>(-2)
    static let watchedCalls = Atomic<Int>(0)

    public static let hook: EpochStallHook = { cpu, _ in
        EpochStallRecorder.calls.add(1, ordering: .relaxed)
        EpochStallRecorder.lastCPU.store(cpu, ordering: .relaxed)
        if cpu == EpochStallRecorder.watched.load(ordering: .relaxed) {
            EpochStallRecorder.watchedCalls.add(1, ordering: .relaxed)
        }
    }

    /// Forgets every report; from now on counts those naming `cpu` apart.
    public static func reset(watching cpu: Int) {
        calls.store(0, ordering: .relaxed)
        lastCPU.store(-2, ordering: .relaxed)
        watched.store(cpu, ordering: .relaxed)
        watchedCalls.store(0, ordering: .relaxed)
    }
}

/// The shared state of one run (atomics only).
public struct EpochStallState: ~Copyable {
    let readerInside = Atomic<Bool>(false)
    let readerLeft = Atomic<Bool>(false)
    /// Other CPUs refused at least once, and refusals in all.
    let refusedCPUs = Atomic<Int>(0)
    let refusals = Atomic<Int>(0)
    /// Times a CPU's backlog was seen above the bound.
    let overBound = Atomic<Int>(0)
    /// The reader was not the stalling CPU when it left, or its wait timed out.
    let readerNotNamed = Atomic<Int>(0)
    let timedOut = Atomic<Int>(0)

    public init() {}
}

public struct EpochStall<P: Platform> {
    public let stack: LockFreeStack<P>
    let state: UnsafeMutablePointer<EpochStallState>
    /// CPUs taking part (0 ..< cpus), at least two; the one that stays inside.
    public let cpus: Int
    public let reader: Int
    /// How many times the reader pauses at most waiting for every other CPU to be refused.
    public let maxWaits: Int

    /// `state` is the caller's, initialised, alive until after `finish`. Install
    /// `EpochStallRecorder.hook` as the reclaimer's stall hook and call
    /// `EpochStallRecorder.reset(watching: reader)` before the run.
    public init(
        stack: LockFreeStack<P>, state: UnsafeMutablePointer<EpochStallState>, cpus: Int, reader: Int,
        maxWaits: Int
    ) {
        precondition(cpus >= 2 && reader < cpus, "EpochStall: a reader and at least one other CPU")
        self.stack = stack
        self.state = state
        self.cpus = cpus
        self.reader = reader
        self.maxWaits = maxWaits
    }

    /// CPU `cpu`'s part: the reader enters and stays until every other CPU was refused
    /// (or `maxWaits` pauses); the others push (one operation in three) and pop until the
    /// reader left, checking their backlog against the bound after each operation.
    public func run(cpu: Int) {
        let r = stack.reclaimer
        let s = state
        if cpu == reader {
            r.enter()
            s.pointee.readerInside.store(true, ordering: .releasing)
            var waits = 0
            while s.pointee.refusedCPUs.load(ordering: .acquiring) < cpus - 1 && waits < maxWaits {
                P.pause()
                waits += 1
            }
            if waits == maxWaits { s.pointee.timedOut.add(1, ordering: .relaxed) }
            if r.stallingCPU != reader { s.pointee.readerNotNamed.add(1, ordering: .relaxed) }
            r.exit()
            s.pointee.readerLeft.store(true, ordering: .releasing)
            return
        }
        guard cpu < cpus else { return }
        while !s.pointee.readerInside.load(ordering: .acquiring) { P.pause() }
        let bound = r.capacity
        var i = 0
        var refused = false
        while !s.pointee.readerLeft.load(ordering: .acquiring) {
            if i % 3 == 0 {
                _ = try? stack.push(UInt(cpu) << 24 | UInt(i & 0xFF_FFFF))
            } else {
                do throws(QuarryError) {
                    _ = try stack.pop()
                } catch {
                    s.pointee.refusals.add(1, ordering: .relaxed)
                    if !refused {
                        refused = true
                        s.pointee.refusedCPUs.add(1, ordering: .releasing)
                    }
                    P.pause()
                }
            }
            if r.statistics(cpu: cpu).pending > bound { s.pointee.overBound.add(1, ordering: .relaxed) }
            i += 1
        }
    }

    /// After every CPU returned from `run`: the checks.
    public func finish<C: ScenarioChecks>(_ checks: C) {
        let s = state
        let r = stack.reclaimer.statistics
        checks.checkEqual(
            "epoch stall: every other CPU was refused while the reader stayed inside",
            s.pointee.refusedCPUs.load(ordering: .relaxed), cpus - 1)
        checks.checkEqual(
            "epoch stall: the reader did not wait in vain", s.pointee.timedOut.load(ordering: .relaxed), 0)
        checks.checkEqual(
            "epoch stall: the reader was the stalling CPU while inside",
            s.pointee.readerNotNamed.load(ordering: .relaxed), 0)
        checks.checkEqual(
            "epoch stall: backlogs never passed the bound", s.pointee.overBound.load(ordering: .relaxed), 0)
        checks.check(
            "epoch stall: the high-water mark stayed within the bound", r.highWater <= r.capacity,
            "above the bound")
        checks.check(
            "epoch stall: each refusal counted as a stall and reported through the hook",
            Int(r.stalls) >= s.pointee.refusals.load(ordering: .relaxed) && r.stalls > 0
                && Int(r.stalls) == EpochStallRecorder.calls.load(ordering: .relaxed),
            "stall counter and hook disagree")
        checks.check(
            "epoch stall: the hook named the reader",
            EpochStallRecorder.watchedCalls.load(ordering: .relaxed) > 0, "never named")
        checks.checkEqual("epoch stall: no reader saw a freed node (cookies)", stack.cookieMismatches, 0)
    }
}

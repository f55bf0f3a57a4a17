// EpochStackStress: the EBR-backed lock-free stack on every CPU at once while every CPU's
// interrupt handler pushes, pops and retires too (a critical section nested in whatever
// it interrupted), written once for the host test (LockFreeStackTests: threads as virtual
// CPUs, simulated interrupts) and the test kernel (EpochSuite: SMP under QEMU, the LAPIC
// timer). Every value pushed is popped exactly once, no reader sees a freed node, no CPU
// holds more retired nodes than the bound.
// Neighbours: Quarry/Epochs/LockFreeStack and Quarry/Epochs/EpochReclaimer (under test), ScenarioChecks
// (reporting), MultiCPUStress (the same shape: state in memory the harness gives).
// Embedded Swift: no classes, arrays or escaping closures; the interrupt path touches
// only the stack, atomics and its own CPU's record.

import Quarry
import Synchronization

/// What one CPU counted: written by that CPU from thread and interrupt context (atomic
/// adds), read after the run.
public struct EpochStackStressCounters: ~Copyable {
    /// The next value this CPU's thread context pushes, and its handler's.
    let nextValue = Atomic<Int>(0)
    let nextHandlerValue = Atomic<Int>(0)
    let pushes = Atomic<Int>(0)
    let failedPushes = Atomic<Int>(0)
    let pops = Atomic<Int>(0)
    let stalledPops = Atomic<Int>(0)
    let handlerPushes = Atomic<Int>(0)
    let handlerPops = Atomic<Int>(0)
    let handlerStalls = Atomic<Int>(0)
    /// Pops of a value already popped, or never pushed.
    let duplicates = Atomic<Int>(0)
    let unknown = Atomic<Int>(0)
}

/// The totals of a run (`EpochStackStress.finish`).
public struct EpochStackStressReport: Sendable {
    public var pushes = 0
    public var pops = 0
    /// Popped by `finish` after the run.
    public var drained = 0
    public var stalledPops = 0
    public var handlerPushes = 0
    public var handlerPops = 0
    public var handlerStalls = 0
    public var failedPushes = 0
    public var duplicates = 0
    public var unknown = 0
    /// Values marked pushed and never popped, and popped but never pushed.
    public var lost = 0
    public var invented = 0
}

/// The workload. Values are `cpu << valueBits | origin | i` with `i < 2^(valueBits - 1)`:
/// origin 0 for thread context, `2^(valueBits - 1)` for the handler, so every value is
/// pushed once and one bit per value marks it pushed, another popped. The state lives
/// in `bytes(cpus:valueBits:)` bytes the harness gives (64-byte aligned, its own):
///
///     | counters x cpus | pushed bits | popped bits |
public struct EpochStackStress<P: Platform> {
    public struct Configuration: Sendable {
        public var cpus: Int
        /// Thread-context operations per CPU (half pushes, half pops, at random).
        public var operationsPerCPU: Int
        /// log2 of the values per CPU; thread context and handler get half each.
        public var valueBits: Int
        public var seed: UInt64
        /// The harness delivers interrupts: the handlers must have pushed or popped.
        public var interrupts: Bool

        public init(cpus: Int, operationsPerCPU: Int, valueBits: Int, seed: UInt64, interrupts: Bool) {
            self.cpus = cpus
            self.operationsPerCPU = operationsPerCPU
            self.valueBits = valueBits
            self.seed = seed
            self.interrupts = interrupts
        }
    }

    public let stack: LockFreeStack<P>
    let base: UnsafeMutableRawPointer
    public let configuration: Configuration

    private static var countersStride: Int { (MemoryLayout<EpochStackStressCounters>.stride + 63) & ~63 }
    private static func bitmapWords(_ cpus: Int, _ valueBits: Int) -> Int { ((cpus << valueBits) + 31) / 32 }

    /// Bytes of state for `cpus` CPUs and `2^valueBits` values each.
    public static func bytes(cpus: Int, valueBits: Int) -> Int {
        cpus * countersStride + 2 * 4 * bitmapWords(cpus, valueBits)
    }

    /// Lays the state out in `memory` (`bytes(cpus:valueBits:)` bytes, 64-byte aligned,
    /// owned by the caller until after `finish`).
    public init(stack: LockFreeStack<P>, memory: UnsafeMutableRawPointer, configuration: Configuration) {
        precondition(configuration.valueBits >= 2 && configuration.valueBits <= 20, "EpochStackStress: valueBits")
        self.stack = stack
        base = memory
        self.configuration = configuration
        var cpu = 0
        while cpu < configuration.cpus {
            // Sound: the caller gave `bytes` bytes; each record is bound once, here.
            (memory + cpu * Self.countersStride).bindMemory(to: EpochStackStressCounters.self, capacity: 1)
                .initialize(to: EpochStackStressCounters())
            cpu += 1
        }
        let words = 2 * Self.bitmapWords(configuration.cpus, configuration.valueBits)
        let bits = (memory + configuration.cpus * Self.countersStride).bindMemory(
            to: Atomic<UInt32>.self, capacity: words)
        var i = 0
        while i < words {
            (bits + i).initialize(to: Atomic<UInt32>(0))
            i += 1
        }
    }

    // MARK: State

    private func counters(_ cpu: Int) -> UnsafeMutablePointer<EpochStackStressCounters> {
        (base + cpu * Self.countersStride).assumingMemoryBound(to: EpochStackStressCounters.self)
    }
    private var pushedBits: UnsafeMutablePointer<Atomic<UInt32>> {
        (base + configuration.cpus * Self.countersStride).assumingMemoryBound(to: Atomic<UInt32>.self)
    }
    private var poppedBits: UnsafeMutablePointer<Atomic<UInt32>> {
        pushedBits + Self.bitmapWords(configuration.cpus, configuration.valueBits)
    }
    private var half: Int { 1 << (configuration.valueBits - 1) }

    /// Marks `value` in `bits`; returns whether it was already marked.
    private static func mark(_ bits: UnsafeMutablePointer<Atomic<UInt32>>, _ value: Int) -> Bool {
        let mask = UInt32(1) << UInt32(value & 31)
        return bits[value >> 5].bitwiseOr(mask, ordering: .relaxed).oldValue & mask != 0
    }

    private static func isMarked(_ bits: UnsafeMutablePointer<Atomic<UInt32>>, _ value: Int) -> Bool {
        bits[value >> 5].load(ordering: .relaxed) & (UInt32(1) << UInt32(value & 31)) != 0
    }

    /// Pushes `value`, marked first (so a popper on another CPU finds it marked) and
    /// unmarked if the push is refused.
    private func push(_ value: Int) -> Bool {
        _ = Self.mark(pushedBits, value)
        do throws(QuarryError) {
            try stack.push(UInt(value))
            return true
        } catch {
            pushedBits[value >> 5].bitwiseAnd(~(UInt32(1) << UInt32(value & 31)), ordering: .relaxed)
            return false
        }
    }

    /// Pops one value and accounts for it on `cpu`; nil when empty; throws when stalled.
    private func pop(_ cpu: Int) throws(QuarryError) -> Int? {
        guard let raw = try stack.pop() else { return nil }
        let value = Int(truncatingIfNeeded: raw)
        if value < 0 || value >= configuration.cpus << configuration.valueBits || !Self.isMarked(pushedBits, value) {
            counters(cpu).pointee.unknown.wrappingAdd(1, ordering: .relaxed)
        } else if Self.mark(poppedBits, value) {
            counters(cpu).pointee.duplicates.wrappingAdd(1, ordering: .relaxed)
        }
        return value
    }

    // MARK: The run

    /// CPU `cpu`'s thread context: random pushes of its own values and pops.
    public func run(cpu: Int) {
        let c = counters(cpu)
        var random = SeededGenerator(seed: configuration.seed &+ UInt64(cpu))
        var step = 0
        while step < configuration.operationsPerCPU {
            step += 1
            if random.below(2) == 0 {
                let i = c.pointee.nextValue.load(ordering: .relaxed)
                guard i < half else { continue }
                c.pointee.nextValue.store(i + 1, ordering: .relaxed)  // thread context only
                if push(cpu << configuration.valueBits | i) {
                    c.pointee.pushes.wrappingAdd(1, ordering: .relaxed)
                } else {
                    c.pointee.failedPushes.wrappingAdd(1, ordering: .relaxed)
                }
            } else {
                do throws(QuarryError) {
                    if try pop(cpu) != nil { c.pointee.pops.wrappingAdd(1, ordering: .relaxed) }
                } catch {
                    c.pointee.stalledPops.wrappingAdd(1, ordering: .relaxed)
                    stack.reclaimer.poll()
                }
            }
        }
    }

    /// One interrupt on CPU `cpu`, in its handler (interrupts off): a critical section
    /// nested in whatever the interrupted code holds, with a push, a pop (retiring its
    /// node) and a poll. A refused push is not a failure here (a handler may find the
    /// node cache busy).
    public func interrupt(cpu: Int) {
        guard cpu < configuration.cpus else { return }
        let c = counters(cpu)
        let r = stack.reclaimer
        r.enter()
        let n = c.pointee.nextHandlerValue.load(ordering: .relaxed)
        if n < half {
            c.pointee.nextHandlerValue.store(n + 1, ordering: .relaxed)  // this CPU's handler only
            if push(cpu << configuration.valueBits | half | n) {
                c.pointee.handlerPushes.wrappingAdd(1, ordering: .relaxed)
            }
        }
        do throws(QuarryError) {
            if try pop(cpu) != nil { c.pointee.handlerPops.wrappingAdd(1, ordering: .relaxed) }
        } catch {
            c.pointee.handlerStalls.wrappingAdd(1, ordering: .relaxed)
        }
        r.exit()
        _ = r.poll()
    }

    /// Whether CPU `cpu`'s handler pushed, popped or was refused yet (a harness may wait
    /// for it before it stops the interrupts).
    public func handlerWorked(cpu: Int) -> Bool {
        let c = counters(cpu)
        return c.pointee.handlerPushes.load(ordering: .relaxed) + c.pointee.handlerPops.load(ordering: .relaxed)
            + c.pointee.handlerStalls.load(ordering: .relaxed) > 0
    }

    /// At quiescence (every CPU returned from `run`, no handler runs any more, with a
    /// happens-before edge to the caller), on CPU 0: pops what is left, sums, checks
    /// that every value pushed was popped exactly once and the reclaimer's accounts,
    /// and returns the totals.
    public func finish<C: ScenarioChecks>(_ checks: C) -> EpochStackStressReport {
        var report = EpochStackStressReport()
        while true {
            do throws(QuarryError) {
                guard try pop(0) != nil else { break }
                report.drained += 1
            } catch {
                stack.reclaimer.synchronize()
            }
        }
        var cpu = 0
        while cpu < configuration.cpus {
            let c = counters(cpu)
            report.pushes += c.pointee.pushes.load(ordering: .relaxed)
            report.failedPushes += c.pointee.failedPushes.load(ordering: .relaxed)
            report.pops += c.pointee.pops.load(ordering: .relaxed)
            report.stalledPops += c.pointee.stalledPops.load(ordering: .relaxed)
            report.handlerPushes += c.pointee.handlerPushes.load(ordering: .relaxed)
            report.handlerPops += c.pointee.handlerPops.load(ordering: .relaxed)
            report.handlerStalls += c.pointee.handlerStalls.load(ordering: .relaxed)
            report.duplicates += c.pointee.duplicates.load(ordering: .relaxed)
            report.unknown += c.pointee.unknown.load(ordering: .relaxed)
            cpu += 1
        }
        var w = 0
        while w < Self.bitmapWords(configuration.cpus, configuration.valueBits) {
            let pushed = pushedBits[w].load(ordering: .relaxed)
            let popped = poppedBits[w].load(ordering: .relaxed)
            report.lost += (pushed & ~popped).nonzeroBitCount
            report.invented += (popped & ~pushed).nonzeroBitCount
            w += 1
        }
        let pushes = report.pushes + report.handlerPushes
        let pops = report.pops + report.handlerPops + report.drained
        let s = stack.reclaimer.statistics
        checks.checkEqual("epoch stress: no push in thread context refused", report.failedPushes, 0)
        checks.checkEqual("epoch stress: every value pushed was popped", report.lost, 0)
        checks.checkEqual("epoch stress: no value popped twice", report.duplicates, 0)
        checks.checkEqual("epoch stress: no value popped that was never pushed", report.unknown + report.invented, 0)
        checks.checkEqual("epoch stress: pops == pushes", pops, pushes)
        checks.checkEqual("epoch stress: no reader saw a freed node (cookies)", stack.cookieMismatches, 0)
        checks.checkEqual("epoch stress: every pop retired its node", Int(s.retired), pops)
        if configuration.interrupts {
            checks.check(
                "epoch stress: the interrupt handlers pushed and popped",
                report.handlerPushes + report.handlerPops > 0, "no handler work")
        }
        checks.check(
            "epoch stress: no CPU held more retired nodes than the bound", s.highWater <= s.capacity,
            "high water above the bound")
        checks.checkEqual(
            "epoch stress: every retired node was freed or is pending",
            Int(s.retired) - Int(s.freed), s.pending)
        checks.checkEqual("epoch stress: no retired node's free was refused", Int(s.freeErrors), 0)
        return report
    }
}

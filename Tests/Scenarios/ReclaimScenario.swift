// ReclaimScenario: issue 11's workload, written once for the host test (threads as CPUs,
// SIGALRM as the timer) and the test kernel (SMP under QEMU, the LAPIC timer): every CPU
// runs random malloc/free of 1 B ... 100 KB with cross-CPU frees while its timer handler
// allocates and frees too; the live bytes are tracked globally and no allocation may fail
// while they stay within the limit (half the arena).
// Neighbours: Quarry's malloc front (under test), Quarry+Reclaim (what makes it pass),
// Tests/QuarryTests/ReclaimStressTests.swift and Sources/QuarryKernel/ReclaimSuite.swift
// (the two harnesses). Embedded Swift: no classes, arrays or closures that escape; the
// interrupt path touches only Quarry, atomics and its own CPU's record.

import Quarry
import Synchronization

/// What one CPU counted: written by that CPU from thread and interrupt context (atomic
/// adds), read after the run.
public struct ReclaimScenarioCounters: ~Copyable {
    let operations = Atomic<Int>(0)
    let allocations = Atomic<Int>(0)
    let frees = Atomic<Int>(0)
    /// Blocks taken out of the mailbox and freed here (allocated by any CPU: with
    /// several CPUs, mostly by another).
    let mailboxFrees = Atomic<Int>(0)
    let spans = Atomic<Int>(0)
    /// Allocations not tried because live + the block's usable size would pass the limit.
    let limited = Atomic<Int>(0)
    /// `.outOfMemory` while live bytes (this allocation included) were within the limit.
    let failures = Atomic<Int>(0)
    /// Any other error.
    let unexpected = Atomic<Int>(0)
    /// Cookie mismatches found when freeing.
    let mismatches = Atomic<Int>(0)
    let handlerRuns = Atomic<Int>(0)
    let handlerAllocations = Atomic<Int>(0)
    let shrinks = Atomic<Int>(0)
}

/// A CPU's timer-handler state: only its handler touches it.
struct ReclaimScenarioHandler {
    var random: SeededGenerator
    var next = 0
    var stash = InlineArray<4, UInt>(repeating: 0)
    var stashBytes = InlineArray<4, Int>(repeating: 0)
}

/// The totals of a run (`ReclaimScenario.finish`).
public struct ReclaimScenarioReport: Sendable {
    public var operations = 0
    public var allocations = 0
    public var frees = 0
    public var mailboxFrees = 0
    public var spans = 0
    public var limited = 0
    public var failures = 0
    public var unexpected = 0
    public var mismatches = 0
    public var handlerRuns = 0
    public var handlerAllocations = 0
    /// CPUs whose handler allocated at least once.
    public var cpusWithHandlerAllocations = 0
    public var shrinks = 0
    public var peakLiveBytes = 0
    /// Live bytes after `finish` freed everything (0 expected).
    public var liveBytesAtEnd = 0
}

/// The workload. The state lives in `bytes(cpus:)` bytes of memory the harness gives
/// (its own, not the heap under test) and is shared by every CPU:
///
///     | live, peak | counters x cpus | handler x cpus | list x cpus | mailbox |
///
/// - `live` is the sum of the usable sizes of the blocks out (reserved before each
///   allocation with an atomic add and given back if the allocation is not made), so
///   `live <= limit` at every instant and an `.outOfMemory` always happened within it;
/// - each CPU's list (its blocks: address, usable size) belongs to its thread context;
/// - the mailbox is `mailboxSlots` words exchanged atomically: a CPU publishes a block
///   by exchanging it in and frees whatever it took out, allocated by any CPU.
///
/// Sizes are log-uniform: an octave `b` in 0 ... 16 uniformly, then uniform in
/// `[2^b, 2^(b+1))`, the top octave cut at `maxSize` (100 000): about 12% of the blocks
/// are spans (above 32 KiB), most of the bytes are large blocks.
public struct ReclaimScenario<P: Platform> {
    public struct Configuration: Sendable {
        public var cpus: Int
        public var operationsPerCPU: Int
        /// Live bytes (usable sizes) never pass this; within it no allocation may fail.
        public var limitBytes: Int
        public var seed: UInt32
        /// One thread-context operation in this many is a `Quarry.shrink` (0: never).
        public var shrinkOneIn: Int

        public init(cpus: Int, operationsPerCPU: Int, limitBytes: Int, seed: UInt32, shrinkOneIn: Int = 20_000) {
            self.cpus = cpus
            self.operationsPerCPU = operationsPerCPU
            self.limitBytes = limitBytes
            self.seed = seed
            self.shrinkOneIn = shrinkOneIn
        }
    }

    public static var maxSize: Int { 100_000 }
    static var listCapacity: Int { 2048 }
    static var mailboxSlots: Int { 256 }

    let quarry: Quarry<P>
    let base: UnsafeMutableRawPointer
    public let configuration: Configuration

    private static func line(_ n: Int) -> Int { (n + 63) & ~63 }
    private static var countersStride: Int { line(MemoryLayout<ReclaimScenarioCounters>.stride) }
    private static var handlerStride: Int { line(MemoryLayout<ReclaimScenarioHandler>.stride) }
    private static var listBytes: Int { listCapacity * 2 * MemoryLayout<UInt>.stride }
    private static func countersOffset() -> Int { 64 }
    private static func handlerOffset(_ cpus: Int) -> Int { countersOffset() + cpus * countersStride }
    private static func listOffset(_ cpus: Int) -> Int { handlerOffset(cpus) + cpus * handlerStride }
    private static func mailboxOffset(_ cpus: Int) -> Int { listOffset(cpus) + cpus * listBytes }

    /// Bytes of state for `cpus` CPUs (64-byte aligned memory).
    public static func bytes(cpus: Int) -> Int {
        mailboxOffset(cpus) + mailboxSlots * MemoryLayout<UInt>.stride
    }

    /// Lays the state out in `memory` (`bytes(cpus:)` bytes, 64-byte aligned, owned by
    /// the caller until after `finish`).
    public init(quarry: Quarry<P>, memory: UnsafeMutableRawPointer, configuration: Configuration) {
        self.quarry = quarry
        base = memory
        self.configuration = configuration
        let cpus = configuration.cpus
        // Sound: the caller gave `bytes(cpus:)` bytes; each record is bound once, here.
        let words = memory.bindMemory(to: Atomic<Int>.self, capacity: 2)
        words.initialize(to: Atomic<Int>(0))
        (words + 1).initialize(to: Atomic<Int>(0))
        var cpu = 0
        while cpu < cpus {
            (memory + Self.countersOffset() + cpu * Self.countersStride)
                .bindMemory(to: ReclaimScenarioCounters.self, capacity: 1).initialize(to: ReclaimScenarioCounters())
            (memory + Self.handlerOffset(cpus) + cpu * Self.handlerStride)
                .bindMemory(to: ReclaimScenarioHandler.self, capacity: 1)
                .initialize(to: ReclaimScenarioHandler(random: Self.generator(configuration.seed, 0xA5A5, cpu)))
            (memory + Self.listOffset(cpus) + cpu * Self.listBytes).bindMemory(
                to: UInt.self, capacity: 2 * Self.listCapacity)
            cpu += 1
        }
        let mailbox = (memory + Self.mailboxOffset(cpus)).bindMemory(to: Atomic<UInt>.self, capacity: Self.mailboxSlots)
        var i = 0
        while i < Self.mailboxSlots {
            (mailbox + i).initialize(to: Atomic<UInt>(0))
            i += 1
        }
    }

    // MARK: State

    private var live: UnsafeMutablePointer<Atomic<Int>> { base.assumingMemoryBound(to: Atomic<Int>.self) }
    private var peak: UnsafeMutablePointer<Atomic<Int>> {
        (base + MemoryLayout<Atomic<Int>>.stride).assumingMemoryBound(to: Atomic<Int>.self)
    }
    private func counters(_ cpu: Int) -> UnsafeMutablePointer<ReclaimScenarioCounters> {
        (base + Self.countersOffset() + cpu * Self.countersStride).assumingMemoryBound(to: ReclaimScenarioCounters.self)
    }
    private func handler(_ cpu: Int) -> UnsafeMutablePointer<ReclaimScenarioHandler> {
        (base + Self.handlerOffset(configuration.cpus) + cpu * Self.handlerStride)
            .assumingMemoryBound(to: ReclaimScenarioHandler.self)
    }
    /// CPU `cpu`'s list: entry i is (address, usable size) at words 2i, 2i + 1.
    private func list(_ cpu: Int) -> UnsafeMutablePointer<UInt> {
        (base + Self.listOffset(configuration.cpus) + cpu * Self.listBytes).assumingMemoryBound(to: UInt.self)
    }
    private var mailbox: UnsafeMutablePointer<Atomic<UInt>> {
        (base + Self.mailboxOffset(configuration.cpus)).assumingMemoryBound(to: Atomic<UInt>.self)
    }

    // MARK: Sizes, the live count

    /// A size from the log-uniform distribution.
    static func size(_ random: inout SeededGenerator) -> Int {
        let octave = random.below(17)
        let low = 1 << octave
        let width = octave == 16 ? maxSize - low + 1 : low
        return low + random.below(width)
    }

    /// The generator of `cpu`'s `stream` (thread context or timer handler).
    static func generator(_ seed: UInt32, _ stream: Int, _ cpu: Int) -> SeededGenerator {
        SeededGenerator(seed: UInt64(seed) << 32 | UInt64(truncatingIfNeeded: stream &* (cpu + 1)))
    }

    /// Bytes a block of `size` really takes: its class size, or whole pages.
    static func usable(_ size: Int) -> Int {
        size <= SizeClasses.largest
            ? SizeClasses.size(ofClass: SizeClasses.index(forSize: size))
            : (size + 4095) & ~4095
    }

    /// Reserves `bytes` of the limit; false (nothing reserved) when it would pass it.
    private func reserve(_ bytes: Int) -> Bool {
        let now = live.pointee.wrappingAdd(bytes, ordering: .relaxed).newValue
        guard now <= configuration.limitBytes else {
            live.pointee.wrappingAdd(-bytes, ordering: .relaxed)
            return false
        }
        var high = peak.pointee.load(ordering: .relaxed)
        while now > high {
            let (done, seen) = peak.pointee.compareExchange(expected: high, desired: now, ordering: .relaxed)
            if done { break }
            high = seen
        }
        return true
    }

    private func release(_ bytes: Int) { live.pointee.wrappingAdd(-bytes, ordering: .relaxed) }

    // MARK: Allocate and free

    /// Allocates `size` bytes within the limit; the block and its usable size, or nil
    /// (not tried because of the limit, or refused: counted).
    private func allocate(_ size: Int, _ c: UnsafeMutablePointer<ReclaimScenarioCounters>) -> (UInt, Int)? {
        let bytes = Self.usable(size)
        guard reserve(bytes) else {
            c.pointee.limited.wrappingAdd(1, ordering: .relaxed)
            return nil
        }
        do throws(QuarryError) {
            let p = try quarry.front.malloc(size)
            Cookie.write(p, size: bytes, key: UInt(configuration.seed))
            c.pointee.allocations.wrappingAdd(1, ordering: .relaxed)
            if size > SizeClasses.largest { c.pointee.spans.wrappingAdd(1, ordering: .relaxed) }
            return (UInt(bitPattern: p), bytes)
        } catch {
            release(bytes)
            if error == .outOfMemory {
                c.pointee.failures.wrappingAdd(1, ordering: .relaxed)
            } else {
                c.pointee.unexpected.wrappingAdd(1, ordering: .relaxed)
            }
            return nil
        }
    }

    /// Checks the cookie of a block of `bytes` usable bytes and frees it.
    private func free(_ address: UInt, _ bytes: Int, _ c: UnsafeMutablePointer<ReclaimScenarioCounters>) {
        // Sound: a block this scenario allocated and still owns.
        let p = UnsafeMutableRawPointer(bitPattern: address).unsafelyUnwrapped
        if !Cookie.check(p, size: bytes, key: UInt(configuration.seed)) {
            c.pointee.mismatches.wrappingAdd(1, ordering: .relaxed)
        }
        do throws(QuarryError) {
            try quarry.front.free(p)
            release(bytes)
            c.pointee.frees.wrappingAdd(1, ordering: .relaxed)
        } catch {
            c.pointee.unexpected.wrappingAdd(1, ordering: .relaxed)
        }
    }

    /// Frees a block another CPU (or this one) published: its size comes from Quarry.
    private func freePublished(_ address: UInt, _ c: UnsafeMutablePointer<ReclaimScenarioCounters>) {
        // Sound: a block this scenario allocated; whoever takes it from the mailbox owns it.
        let p = UnsafeMutableRawPointer(bitPattern: address).unsafelyUnwrapped
        do throws(QuarryError) {
            let bytes = try quarry.front.usableSize(p)
            free(address, bytes, c)
            c.pointee.mailboxFrees.wrappingAdd(1, ordering: .relaxed)
        } catch {
            c.pointee.unexpected.wrappingAdd(1, ordering: .relaxed)
        }
    }

    // MARK: The CPUs

    /// CPU `cpu`'s share, in thread context: `operationsPerCPU` steps of allocate (50%),
    /// free one of its own (35%), publish one of its own to the mailbox and free what
    /// comes out (15%); an allocation the limit refuses frees one instead. Ends by
    /// freeing its own blocks.
    public func run(cpu: Int) {
        let c = counters(cpu)
        let blocks = list(cpu)
        var count = 0
        var random = Self.generator(configuration.seed, 0x51ED, cpu)
        var step = 0
        while step < configuration.operationsPerCPU {
            step += 1
            let r = random.below(100)
            if configuration.shrinkOneIn > 0 && random.below(configuration.shrinkOneIn) == 0 {
                quarry.shrink()
                c.pointee.shrinks.wrappingAdd(1, ordering: .relaxed)
            }
            if (r < 50 || count == 0) && count < Self.listCapacity {
                if let block = allocate(Self.size(&random), c) {
                    blocks[2 * count] = block.0
                    blocks[2 * count + 1] = UInt(bitPattern: block.1)
                    count += 1
                } else if count > 0 {
                    let block = Self.take(blocks, &count, random.below(count))
                    free(block.0, block.1, c)
                }
            } else if r < 85 {
                let block = Self.take(blocks, &count, random.below(count))
                free(block.0, block.1, c)
            } else {
                let block = Self.take(blocks, &count, random.below(count))
                let slot = random.below(Self.mailboxSlots)
                let out = mailbox[slot].exchange(block.0, ordering: .acquiringAndReleasing)
                if out != 0 { freePublished(out, c) }
            }
            c.pointee.operations.wrappingAdd(1, ordering: .relaxed)
        }
        while count > 0 {
            let block = Self.take(blocks, &count, count - 1)
            free(block.0, block.1, c)
        }
    }

    /// Removes entry `i` of a list of `count` entries (the last one moves into its place).
    private static func take(_ blocks: UnsafeMutablePointer<UInt>, _ count: inout Int, _ i: Int) -> (UInt, Int) {
        let entry = (blocks[2 * i], Int(bitPattern: blocks[2 * i + 1]))
        count -= 1
        blocks[2 * i] = blocks[2 * count]
        blocks[2 * i + 1] = blocks[2 * count + 1]
        return entry
    }

    /// One timer tick on CPU `cpu`, in its interrupt handler: allocate one block (the
    /// same sizes, within the limit), keep it until four ticks later, free the oldest.
    public func interrupt(cpu: Int) {
        guard cpu < configuration.cpus else { return }
        let c = counters(cpu)
        let h = handler(cpu)
        c.pointee.handlerRuns.wrappingAdd(1, ordering: .relaxed)
        let i = h.pointee.next & 3
        h.pointee.next &+= 1
        let old = h.pointee.stash[i]
        let oldBytes = h.pointee.stashBytes[i]
        h.pointee.stash[i] = 0
        if let block = allocate(Self.size(&h.pointee.random), c) {
            h.pointee.stash[i] = block.0
            h.pointee.stashBytes[i] = block.1
            c.pointee.handlerAllocations.wrappingAdd(1, ordering: .relaxed)
        }
        if old != 0 { free(old, oldBytes, c) }
    }

    /// At quiescence (every CPU returned from `run`, no handler runs it any more, with
    /// a happens-before edge to the caller): frees what the mailbox and the handlers
    /// still hold and returns the totals.
    public func finish() -> ReclaimScenarioReport {
        let c0 = counters(0)
        var slot = 0
        while slot < Self.mailboxSlots {
            let out = mailbox[slot].exchange(0, ordering: .acquiringAndReleasing)
            if out != 0 { freePublished(out, c0) }
            slot += 1
        }
        var report = ReclaimScenarioReport()
        var cpu = 0
        while cpu < configuration.cpus {
            let h = handler(cpu)
            var i = 0
            while i < 4 {
                if h.pointee.stash[i] != 0 { free(h.pointee.stash[i], h.pointee.stashBytes[i], c0) }
                h.pointee.stash[i] = 0
                i += 1
            }
            cpu += 1
        }
        cpu = 0
        while cpu < configuration.cpus {
            let c = counters(cpu)
            report.operations += c.pointee.operations.load(ordering: .relaxed)
            report.allocations += c.pointee.allocations.load(ordering: .relaxed)
            report.frees += c.pointee.frees.load(ordering: .relaxed)
            report.mailboxFrees += c.pointee.mailboxFrees.load(ordering: .relaxed)
            report.spans += c.pointee.spans.load(ordering: .relaxed)
            report.limited += c.pointee.limited.load(ordering: .relaxed)
            report.failures += c.pointee.failures.load(ordering: .relaxed)
            report.unexpected += c.pointee.unexpected.load(ordering: .relaxed)
            report.mismatches += c.pointee.mismatches.load(ordering: .relaxed)
            report.handlerRuns += c.pointee.handlerRuns.load(ordering: .relaxed)
            let handled = c.pointee.handlerAllocations.load(ordering: .relaxed)
            report.handlerAllocations += handled
            if handled > 0 { report.cpusWithHandlerAllocations += 1 }
            report.shrinks += c.pointee.shrinks.load(ordering: .relaxed)
            cpu += 1
        }
        report.peakLiveBytes = peak.pointee.load(ordering: .relaxed)
        report.liveBytesAtEnd = live.pointee.load(ordering: .relaxed)
        return report
    }
}

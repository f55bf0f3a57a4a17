// MultiCPUStress: every CPU allocates and frees at random and hands blocks to other CPUs
// through a mailbox, while every CPU's timer interrupt allocates and frees too; every
// block's cookie is checked when it is freed. One driver loop over two allocation sources:
// - `.caches`: objects of several caches (`SlabCache.allocate`/`free`, the owner found by
//   `Quarry.cache(owning:)`), the handlers on one of them: many small objects handed
//   around (the host's ConcurrencyTests, the kernel's SMPStress);
// - `.mallocFront`: `malloc`/`free` of 1 B ... 100 KB, the live bytes held under a limit
//   within which no allocation may fail: issue 11's reclaim pressure (the host's
//   ReclaimStressTests, the kernel's ReclaimSuite).
// Written once for the host tests (threads as CPUs, SIGALRM as the timer) and the test
// kernel (SMP under QEMU, the LAPIC timer).
// Neighbours: ScenarioChecks (reporting), TestRandom (generator, cookies), Quarry's
// Quarry+Reclaim (what makes the malloc source pass), EpochStackStress (the same shape:
// state in memory the harness gives). Embedded Swift: no classes, arrays or closures that
// escape; the interrupt path touches only Quarry, atomics and its own CPU's record.

import Quarry
import Synchronization

/// What one CPU counted: written by that CPU from thread and interrupt context (atomic
/// adds), read after the run.
public struct MultiCPUStressCounters: ~Copyable {
    let operations = Atomic<Int>(0)
    let allocations = Atomic<Int>(0)
    let frees = Atomic<Int>(0)
    /// Blocks taken out of the mailbox and freed here by `run` (allocated by any CPU:
    /// with several CPUs, mostly by another).
    let mailboxFrees = Atomic<Int>(0)
    /// Malloc blocks above the largest size class.
    let spans = Atomic<Int>(0)
    /// Allocations not tried because live + the block's usable size would pass the limit.
    let limited = Atomic<Int>(0)
    /// `.outOfMemory` in thread context, live bytes (this allocation included) within the limit.
    let failures = Atomic<Int>(0)
    /// `.outOfMemory` in the timer handler, likewise.
    let handlerFailures = Atomic<Int>(0)
    /// Any other error, or a block no cache owns.
    let unexpected = Atomic<Int>(0)
    /// Cookie mismatches found when freeing.
    let mismatches = Atomic<Int>(0)
    let handlerRuns = Atomic<Int>(0)
    let handlerAllocations = Atomic<Int>(0)
    let shrinks = Atomic<Int>(0)
}

/// A CPU's timer-handler state: only its handler touches it.
struct MultiCPUStressHandler {
    var random: SeededGenerator
    var next = 0
    var stash = InlineArray<4, UInt>(repeating: 0)
    var stashBytes = InlineArray<4, Int>(repeating: 0)
}

/// The totals of a run (`MultiCPUStress.finish`).
public struct MultiCPUStressReport: Sendable {
    public var operations = 0
    public var allocations = 0
    public var frees = 0
    public var mailboxFrees = 0
    public var spans = 0
    public var limited = 0
    public var failures = 0
    public var handlerFailures = 0
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

/// The workload. The state lives in `bytes(cpus:listCapacity:)` bytes of memory the
/// harness gives (its own, not the heap under test), shared by every CPU:
///
///     | live, peak | counters x cpus | handler x cpus | list x cpus | mailbox |
///
/// - `live` is the sum of the usable sizes of the blocks out (reserved before each
///   allocation with an atomic add and given back if the allocation is not made), so
///   `live <= limit` at every instant and an `.outOfMemory` always happened within it;
/// - each CPU's list (its blocks: address, usable size) belongs to its thread context;
/// - the mailbox is `mailboxSlots` words exchanged atomically: a CPU publishes a block
///   by exchanging it in and frees whatever it took out, allocated by any CPU; its size
///   comes from Quarry (the owning cache's object size, or `usableSize`).
///
/// Every block gets a cookie (`Cookie.write`: first, middle and last word of its usable
/// bytes) checked before it is freed.
public struct MultiCPUStress<P: Platform> {
    /// Where the blocks come from; it also sets the mix of thread-context steps.
    public enum Source {
        /// Objects of the caches added with `add`, one at random per allocation; the timer
        /// handlers allocate from `handlerCache`. Phases of 2000 steps lean to allocating
        /// (50%), then to freeing (40%); 30-40% free one of the CPU's own objects, 10%
        /// publish one to the mailbox, 10% only take one out.
        case caches(handlerCache: SlabCache<P>)
        /// Malloc blocks of log-uniform sizes: an octave `b` in 0 ... 16 uniformly, then
        /// uniform in `[2^b, 2^(b+1))`, the top octave cut at `maxSize` (100 000): about
        /// 12% of the blocks are spans (above 32 KiB), most of the bytes are large blocks.
        /// 50% allocate, 35% free one of the CPU's own, 15% publish one to the mailbox:
        /// the live bytes drift up to the limit and stay there.
        case mallocFront
    }

    public struct Configuration: Sendable {
        public var cpus: Int
        public var operationsPerCPU: Int
        /// Live blocks each CPU may hold.
        public var listCapacity: Int
        public var seed: UInt64
        /// The cookies' key.
        public var key: UInt
        /// The harness delivers interrupts: every CPU's handler must have allocated.
        public var interrupts: Bool
        /// Live bytes (usable sizes) never pass this (nil: no limit); with a limit and
        /// `mayRunOut` false, the peak must come within two largest blocks of it.
        public var limitBytes: Int?
        /// `.outOfMemory` is allowed (a limit past what the arena can serve); otherwise
        /// no allocation may fail, in thread context or in a handler.
        public var mayRunOut: Bool
        /// One thread-context step in this many is a `Quarry.shrink` (0: never).
        public var shrinkOneIn: Int

        public init(
            cpus: Int, operationsPerCPU: Int, listCapacity: Int, seed: UInt64, key: UInt, interrupts: Bool,
            limitBytes: Int? = nil, mayRunOut: Bool = false, shrinkOneIn: Int = 0
        ) {
            self.cpus = cpus
            self.operationsPerCPU = operationsPerCPU
            self.listCapacity = listCapacity
            self.seed = seed
            self.key = key
            self.interrupts = interrupts
            self.limitBytes = limitBytes
            self.mayRunOut = mayRunOut
            self.shrinkOneIn = shrinkOneIn
        }
    }

    public static var maxCaches: Int { 8 }
    /// The largest malloc block (`.mallocFront`).
    public static var maxSize: Int { 100_000 }
    static var mailboxSlots: Int { 256 }
    static var phaseSteps: Int { 2000 }

    let quarry: Quarry<P>
    let source: Source
    var caches = InlineArray<8, SlabCache<P>?>(repeating: nil)
    var cacheCount = 0
    let base: UnsafeMutableRawPointer
    public let configuration: Configuration

    private static func line(_ n: Int) -> Int { (n + 63) & ~63 }
    private static var countersStride: Int { line(MemoryLayout<MultiCPUStressCounters>.stride) }
    private static var handlerStride: Int { line(MemoryLayout<MultiCPUStressHandler>.stride) }
    private static func listBytes(_ listCapacity: Int) -> Int { listCapacity * 2 * MemoryLayout<UInt>.stride }
    private static var countersOffset: Int { 64 }
    private static func handlerOffset(_ cpus: Int) -> Int { countersOffset + cpus * countersStride }
    private static func listOffset(_ cpus: Int) -> Int { handlerOffset(cpus) + cpus * handlerStride }
    private static func mailboxOffset(_ cpus: Int, _ listCapacity: Int) -> Int {
        listOffset(cpus) + cpus * listBytes(listCapacity)
    }

    /// Bytes of state for `cpus` CPUs of `listCapacity` live blocks each.
    public static func bytes(cpus: Int, listCapacity: Int) -> Int {
        mailboxOffset(cpus, listCapacity) + mailboxSlots * MemoryLayout<UInt>.stride
    }

    /// Lays the state out in `memory` (`bytes(cpus:listCapacity:)` bytes, word-aligned,
    /// owned by the caller until after `finish`). For `.caches`, add the caches with
    /// `add` before `run`.
    public init(quarry: Quarry<P>, source: Source, memory: UnsafeMutableRawPointer, configuration: Configuration) {
        self.quarry = quarry
        self.source = source
        base = memory
        self.configuration = configuration
        let cpus = configuration.cpus
        // Sound: the caller gave `bytes` bytes; each record is bound once, here.
        let words = memory.bindMemory(to: Atomic<Int>.self, capacity: 2)
        words.initialize(to: Atomic<Int>(0))
        (words + 1).initialize(to: Atomic<Int>(0))
        var cpu = 0
        while cpu < cpus {
            (memory + Self.countersOffset + cpu * Self.countersStride)
                .bindMemory(to: MultiCPUStressCounters.self, capacity: 1).initialize(to: MultiCPUStressCounters())
            (memory + Self.handlerOffset(cpus) + cpu * Self.handlerStride)
                .bindMemory(to: MultiCPUStressHandler.self, capacity: 1)
                .initialize(to: MultiCPUStressHandler(random: Self.generator(configuration.seed, 0xA5A5, cpu)))
            cpu += 1
        }
        (memory + Self.listOffset(cpus)).bindMemory(to: UInt.self, capacity: cpus * 2 * configuration.listCapacity)
        let mailbox = (memory + Self.mailboxOffset(cpus, configuration.listCapacity))
            .bindMemory(to: Atomic<UInt>.self, capacity: Self.mailboxSlots)
        var i = 0
        while i < Self.mailboxSlots {
            (mailbox + i).initialize(to: Atomic<UInt>(0))
            i += 1
        }
    }

    /// Adds a cache the CPUs allocate from (`.caches`; at most `maxCaches`).
    public mutating func add(_ cache: SlabCache<P>) {
        precondition(cacheCount < Self.maxCaches, "MultiCPUStress: too many caches")
        caches[cacheCount] = cache
        cacheCount += 1
    }

    // MARK: State

    private var live: UnsafeMutablePointer<Atomic<Int>> { base.assumingMemoryBound(to: Atomic<Int>.self) }
    private var peak: UnsafeMutablePointer<Atomic<Int>> {
        (base + MemoryLayout<Atomic<Int>>.stride).assumingMemoryBound(to: Atomic<Int>.self)
    }
    private func counters(_ cpu: Int) -> UnsafeMutablePointer<MultiCPUStressCounters> {
        (base + Self.countersOffset + cpu * Self.countersStride).assumingMemoryBound(to: MultiCPUStressCounters.self)
    }
    private func handler(_ cpu: Int) -> UnsafeMutablePointer<MultiCPUStressHandler> {
        (base + Self.handlerOffset(configuration.cpus) + cpu * Self.handlerStride)
            .assumingMemoryBound(to: MultiCPUStressHandler.self)
    }
    /// CPU `cpu`'s list: entry i is (address, usable size) at words 2i, 2i + 1.
    private func list(_ cpu: Int) -> UnsafeMutablePointer<UInt> {
        (base + Self.listOffset(configuration.cpus) + cpu * Self.listBytes(configuration.listCapacity))
            .assumingMemoryBound(to: UInt.self)
    }
    private var mailbox: UnsafeMutablePointer<Atomic<UInt>> {
        (base + Self.mailboxOffset(configuration.cpus, configuration.listCapacity))
            .assumingMemoryBound(to: Atomic<UInt>.self)
    }

    // MARK: Sizes, the live count

    /// A size from the log-uniform distribution (`.mallocFront`).
    static func size(_ random: inout SeededGenerator) -> Int {
        let octave = random.below(17)
        let low = 1 << octave
        let width = octave == 16 ? maxSize - low + 1 : low
        return low + random.below(width)
    }

    /// The generator of `cpu`'s `stream` (thread context or timer handler).
    static func generator(_ seed: UInt64, _ stream: Int, _ cpu: Int) -> SeededGenerator {
        SeededGenerator(seed: seed ^ UInt64(truncatingIfNeeded: stream &* (cpu + 1)) &* 0x9E37_79B9_7F4A_7C15)
    }

    /// Bytes a malloc block of `size` really takes: its class size, or whole pages.
    static func usable(_ size: Int) -> Int {
        size <= SizeClasses.largest
            ? SizeClasses.size(ofClass: SizeClasses.index(forSize: size))
            : (size + 4095) & ~4095
    }

    /// Reserves `bytes` of the limit; false (nothing reserved) when it would pass it.
    private func reserve(_ bytes: Int) -> Bool {
        let now = live.pointee.wrappingAdd(bytes, ordering: .relaxed).newValue
        if let limit = configuration.limitBytes, now > limit {
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

    /// Allocates one block from the source (in a handler: the handler's cache), within
    /// the limit, and writes its cookie; the block and its usable size, or nil (not tried
    /// because of the limit, or refused: counted).
    private func allocate(
        _ random: inout SeededGenerator, _ c: UnsafeMutablePointer<MultiCPUStressCounters>, inHandler: Bool
    ) -> (UInt, Int)? {
        var cache: SlabCache<P>? = nil
        let size: Int
        let bytes: Int
        switch source {
        case .caches(let handlerCache):
            let k = inHandler ? handlerCache : caches[random.below(cacheCount)].unsafelyUnwrapped
            cache = k
            size = k.objectSize
            bytes = size
        case .mallocFront:
            size = Self.size(&random)
            bytes = Self.usable(size)
        }
        guard reserve(bytes) else {
            c.pointee.limited.wrappingAdd(1, ordering: .relaxed)
            return nil
        }
        do throws(QuarryError) {
            let p: UnsafeMutableRawPointer
            if let cache {
                p = try cache.allocate()
            } else {
                p = try quarry.front.malloc(size)
                if size > SizeClasses.largest { c.pointee.spans.wrappingAdd(1, ordering: .relaxed) }
            }
            Cookie.write(p, size: bytes, key: configuration.key)
            c.pointee.allocations.wrappingAdd(1, ordering: .relaxed)
            return (UInt(bitPattern: p), bytes)
        } catch {
            release(bytes)
            if error != .outOfMemory {
                c.pointee.unexpected.wrappingAdd(1, ordering: .relaxed)
            } else if inHandler {
                c.pointee.handlerFailures.wrappingAdd(1, ordering: .relaxed)
            } else {
                c.pointee.failures.wrappingAdd(1, ordering: .relaxed)
            }
            return nil
        }
    }

    /// Checks the cookie of a block of `bytes` usable bytes and frees it (a cache object
    /// through the cache that owns it).
    private func free(_ address: UInt, _ bytes: Int, _ c: UnsafeMutablePointer<MultiCPUStressCounters>) {
        // Sound: a block this scenario allocated and still owns.
        let p = UnsafeMutableRawPointer(bitPattern: address).unsafelyUnwrapped
        if !Cookie.check(p, size: bytes, key: configuration.key) {
            c.pointee.mismatches.wrappingAdd(1, ordering: .relaxed)
        }
        do throws(QuarryError) {
            switch source {
            case .caches:
                guard let cache = quarry.cache(owning: p) else {
                    c.pointee.unexpected.wrappingAdd(1, ordering: .relaxed)
                    return
                }
                try cache.free(p)
            case .mallocFront:
                try quarry.front.free(p)
            }
            release(bytes)
            c.pointee.frees.wrappingAdd(1, ordering: .relaxed)
        } catch {
            c.pointee.unexpected.wrappingAdd(1, ordering: .relaxed)
        }
    }

    /// Frees a block another CPU (or this one) published: its size comes from Quarry.
    private func freePublished(_ address: UInt, _ c: UnsafeMutablePointer<MultiCPUStressCounters>) {
        // Sound: a block this scenario allocated; whoever takes it from the mailbox owns it.
        let p = UnsafeMutableRawPointer(bitPattern: address).unsafelyUnwrapped
        let bytes: Int
        switch source {
        case .caches:
            guard let cache = quarry.cache(owning: p) else {
                c.pointee.unexpected.wrappingAdd(1, ordering: .relaxed)
                return
            }
            bytes = cache.objectSize
        case .mallocFront:
            do throws(QuarryError) {
                bytes = try quarry.front.usableSize(p)
            } catch {
                c.pointee.unexpected.wrappingAdd(1, ordering: .relaxed)
                return
            }
        }
        free(address, bytes, c)
    }

    // MARK: The CPUs

    /// CPU `cpu`'s share, in thread context: `operationsPerCPU` steps of the source's mix
    /// (allocate, free one of its own, publish one of its own to the mailbox and free
    /// what comes out, take one out of the mailbox and free it); an allocation refused
    /// (by the limit or by Quarry) frees one instead. Ends by freeing its own blocks.
    public func run(cpu: Int) {
        let c = counters(cpu)
        let blocks = list(cpu)
        var count = 0
        var random = Self.generator(configuration.seed, 0x51ED, cpu)
        // Percent thresholds of a draw in 0 ..< 100 (Source says why).
        let allocatePercent: Int
        let drainPercent: Int
        let freeBelow: Int
        let publishBelow: Int
        switch source {
        case .caches: (allocatePercent, drainPercent, freeBelow, publishBelow) = (50, 40, 80, 90)
        case .mallocFront: (allocatePercent, drainPercent, freeBelow, publishBelow) = (50, 50, 85, 100)
        }
        var step = 0
        while step < configuration.operationsPerCPU {
            let allocating = (step / Self.phaseSteps) % 2 == 0 ? allocatePercent : drainPercent
            step += 1
            if configuration.shrinkOneIn > 0 && random.below(configuration.shrinkOneIn) == 0 {
                quarry.shrink()
                c.pointee.shrinks.wrappingAdd(1, ordering: .relaxed)
            }
            let r = random.below(100)
            if count == 0 || (r < allocating && count < configuration.listCapacity) {
                if let block = allocate(&random, c, inHandler: false) {
                    blocks[2 * count] = block.0
                    blocks[2 * count + 1] = UInt(bitPattern: block.1)
                    count += 1
                } else if count > 0 {
                    let block = Self.take(blocks, &count, random.below(count))
                    free(block.0, block.1, c)
                }
            } else if r < freeBelow {
                let block = Self.take(blocks, &count, random.below(count))
                free(block.0, block.1, c)
            } else {
                var put: UInt = 0
                if r < publishBelow { put = Self.take(blocks, &count, random.below(count)).0 }
                let out = mailbox[random.below(Self.mailboxSlots)].exchange(put, ordering: .acquiringAndReleasing)
                if out != 0 {
                    freePublished(out, c)
                    c.pointee.mailboxFrees.wrappingAdd(1, ordering: .relaxed)
                }
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
    /// handler's cache, or the same malloc sizes within the limit), keep it until four
    /// ticks later, free the oldest (cookie checked).
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
        if let block = allocate(&h.pointee.random, c, inHandler: true) {
            h.pointee.stash[i] = block.0
            h.pointee.stashBytes[i] = block.1
            c.pointee.handlerAllocations.wrappingAdd(1, ordering: .relaxed)
        }
        if old != 0 { free(old, oldBytes, c) }
    }

    /// At quiescence (every CPU returned from `run`, no handler runs any more, with a
    /// happens-before edge to the caller), on one CPU: frees what the mailbox and the
    /// handlers still hold, checks, and returns the totals.
    public func finish<C: ScenarioChecks>(_ checks: C) -> MultiCPUStressReport {
        let c0 = counters(0)
        var slot = 0
        while slot < Self.mailboxSlots {
            let out = mailbox[slot].exchange(0, ordering: .acquiringAndReleasing)
            if out != 0 { freePublished(out, c0) }
            slot += 1
        }
        var report = MultiCPUStressReport()
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
            report.handlerFailures += c.pointee.handlerFailures.load(ordering: .relaxed)
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
        check(report, checks)
        return report
    }

    private func check<C: ScenarioChecks>(_ report: MultiCPUStressReport, _ checks: C) {
        checks.checkEqual("stress: cookie mismatches", report.mismatches, 0)
        checks.checkEqual("stress: unexpected errors", report.unexpected, 0)
        checks.checkEqual(
            "stress: every operation ran", report.operations, configuration.cpus * configuration.operationsPerCPU)
        checks.check("stress: blocks were freed out of the mailbox", report.mailboxFrees > 0, "none")
        checks.checkEqual("stress: nothing live at the end", report.liveBytesAtEnd, 0)
        let budget = quarry.reclaimStatistics
        checks.check(
            "stress: the per-CPU budget held", budget.highWaterBytes <= budget.budgetBytes,
            "high water above the budget")
        if configuration.interrupts {
            checks.checkEqual(
                "stress: every CPU's timer handler allocated", report.cpusWithHandlerAllocations, configuration.cpus)
        }
        if !configuration.mayRunOut {
            checks.checkEqual("stress: no allocation failed (within the limit)", report.failures, 0)
            checks.checkEqual("stress: no handler allocation failed (within the limit)", report.handlerFailures, 0)
            if let limit = configuration.limitBytes {
                checks.check(
                    "stress: live blocks reached the limit and stayed within it",
                    report.peakLiveBytes <= limit && report.peakLiveBytes > limit - 2 * Self.maxSize,
                    "peak live out of range")
            }
        }
    }
}

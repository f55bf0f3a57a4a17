// CacheStress: every CPU allocates and frees objects of several caches at once, hands
// objects to other CPUs through a mailbox, while every CPU's timer interrupt allocates
// and frees too; every object's cookie is checked when it is freed. Written once for the
// host tests (ConcurrencyTests: threads as CPUs, SIGALRM as the timer) and the test
// kernel (SMPStress: SMP under QEMU, the LAPIC timer).
// Neighbours: ScenarioChecks (reporting), TestRandom (generator, cookies), ReclaimScenario
// (the same shape over the malloc front). Embedded Swift: no classes, arrays or closures
// that escape; the interrupt path touches only Quarry, atomics and its own CPU's record.

import Quarry
import Synchronization

/// What one CPU counted: written by that CPU from thread and interrupt context (atomic
/// adds), read after the run.
public struct CacheStressCounters: ~Copyable {
    let operations = Atomic<Int>(0)
    /// Objects taken out of the mailbox and freed here (allocated by any CPU).
    let mailboxFrees = Atomic<Int>(0)
    let mismatches = Atomic<Int>(0)
    let outOfMemory = Atomic<Int>(0)
    /// Any other error, or an object no cache owns.
    let unexpected = Atomic<Int>(0)
    let handlerRuns = Atomic<Int>(0)
    let handlerAllocations = Atomic<Int>(0)
    /// Any error in the handler.
    let handlerFailures = Atomic<Int>(0)
}

/// A CPU's timer-handler state: only its handler touches it.
struct CacheStressHandler {
    var next = 0
    var stash = InlineArray<4, UInt>(repeating: 0)
}

/// The totals of a run (`CacheStress.finish`).
public struct CacheStressReport: Sendable {
    public var operations = 0
    public var mailboxFrees = 0
    public var mismatches = 0
    public var outOfMemory = 0
    public var unexpected = 0
    public var handlerRuns = 0
    public var handlerAllocations = 0
    public var handlerFailures = 0
    /// CPUs whose handler allocated at least once.
    public var cpusWithHandlerAllocations = 0
}

/// The workload. The state lives in `bytes(cpus:listCapacity:)` bytes the harness gives
/// (its own, not the heap under test), shared by every CPU:
///
///     | counters x cpus | handler x cpus | list x cpus | mailbox |
///
/// Each CPU's list (the addresses of its live objects) belongs to its thread context;
/// the mailbox is `mailboxSlots` words exchanged atomically: a CPU publishes an object by
/// exchanging it in and frees whatever it took out. Every free finds the object's cache
/// through `Quarry.cache(owning:)` and checks the cookie (Cookie.write: first, middle and
/// last word) before freeing.
public struct CacheStress<P: Platform> {
    public struct Configuration: Sendable {
        public var cpus: Int
        public var operationsPerCPU: Int
        /// Live objects each CPU may hold.
        public var listCapacity: Int
        public var seed: UInt64
        /// The cookies' key.
        public var key: UInt
        /// The harness delivers interrupts: every CPU's handler must have allocated.
        public var interrupts: Bool

        public init(cpus: Int, operationsPerCPU: Int, listCapacity: Int, seed: UInt64, key: UInt, interrupts: Bool) {
            self.cpus = cpus
            self.operationsPerCPU = operationsPerCPU
            self.listCapacity = listCapacity
            self.seed = seed
            self.key = key
            self.interrupts = interrupts
        }
    }

    public static var maxCaches: Int { 8 }
    static var mailboxSlots: Int { 256 }

    let quarry: Quarry<P>
    var caches = InlineArray<8, SlabCache<P>?>(repeating: nil)
    var cacheCount = 0
    /// The cache the timer handlers allocate from.
    let handlerCache: SlabCache<P>
    let base: UnsafeMutableRawPointer
    public let configuration: Configuration

    private static func line(_ n: Int) -> Int { (n + 63) & ~63 }
    private static var countersStride: Int { line(MemoryLayout<CacheStressCounters>.stride) }
    private static var handlerStride: Int { line(MemoryLayout<CacheStressHandler>.stride) }
    private static func handlerOffset(_ cpus: Int) -> Int { cpus * countersStride }
    private static func listOffset(_ cpus: Int) -> Int { handlerOffset(cpus) + cpus * handlerStride }
    private static func mailboxOffset(_ cpus: Int, _ listCapacity: Int) -> Int {
        listOffset(cpus) + cpus * listCapacity * MemoryLayout<UInt>.stride
    }

    /// Bytes of state for `cpus` CPUs of `listCapacity` live objects each.
    public static func bytes(cpus: Int, listCapacity: Int) -> Int {
        mailboxOffset(cpus, listCapacity) + mailboxSlots * MemoryLayout<UInt>.stride
    }

    /// Lays the state out in `memory` (`bytes(cpus:listCapacity:)` bytes, word-aligned,
    /// owned by the caller until after `finish`). Add the caches with `add` before `run`.
    public init(
        quarry: Quarry<P>, handlerCache: SlabCache<P>, memory: UnsafeMutableRawPointer,
        configuration: Configuration
    ) {
        self.quarry = quarry
        self.handlerCache = handlerCache
        base = memory
        self.configuration = configuration
        let cpus = configuration.cpus
        var cpu = 0
        while cpu < cpus {
            // Sound: the caller gave `bytes` bytes; each record is bound once, here.
            (memory + cpu * Self.countersStride).bindMemory(to: CacheStressCounters.self, capacity: 1)
                .initialize(to: CacheStressCounters())
            (memory + Self.handlerOffset(cpus) + cpu * Self.handlerStride)
                .bindMemory(to: CacheStressHandler.self, capacity: 1).initialize(to: CacheStressHandler())
            cpu += 1
        }
        (memory + Self.listOffset(cpus)).bindMemory(to: UInt.self, capacity: cpus * configuration.listCapacity)
        let mailbox = (memory + Self.mailboxOffset(cpus, configuration.listCapacity))
            .bindMemory(to: Atomic<UInt>.self, capacity: Self.mailboxSlots)
        var i = 0
        while i < Self.mailboxSlots {
            (mailbox + i).initialize(to: Atomic<UInt>(0))
            i += 1
        }
    }

    /// Adds a cache the CPUs allocate from (at most `maxCaches`).
    public mutating func add(_ cache: SlabCache<P>) {
        precondition(cacheCount < Self.maxCaches, "CacheStress: too many caches")
        caches[cacheCount] = cache
        cacheCount += 1
    }

    // MARK: State

    private func counters(_ cpu: Int) -> UnsafeMutablePointer<CacheStressCounters> {
        (base + cpu * Self.countersStride).assumingMemoryBound(to: CacheStressCounters.self)
    }
    private func handler(_ cpu: Int) -> UnsafeMutablePointer<CacheStressHandler> {
        (base + Self.handlerOffset(configuration.cpus) + cpu * Self.handlerStride)
            .assumingMemoryBound(to: CacheStressHandler.self)
    }
    private func list(_ cpu: Int) -> UnsafeMutablePointer<UInt> {
        (base + Self.listOffset(configuration.cpus) + cpu * configuration.listCapacity * MemoryLayout<UInt>.stride)
            .assumingMemoryBound(to: UInt.self)
    }
    private var mailbox: UnsafeMutablePointer<Atomic<UInt>> {
        (base + Self.mailboxOffset(configuration.cpus, configuration.listCapacity))
            .assumingMemoryBound(to: Atomic<UInt>.self)
    }

    // MARK: Allocate and free

    /// Allocates from `cache` and writes the cookie; 0 when refused (counted).
    private func allocate(_ cache: SlabCache<P>, _ c: UnsafeMutablePointer<CacheStressCounters>) -> UInt {
        do throws(QuarryError) {
            let p = try cache.allocate()
            Cookie.write(p, size: cache.objectSize, key: configuration.key)
            return UInt(bitPattern: p)
        } catch {
            if error == .outOfMemory {
                c.pointee.outOfMemory.wrappingAdd(1, ordering: .relaxed)
            } else {
                c.pointee.unexpected.wrappingAdd(1, ordering: .relaxed)
            }
            return 0
        }
    }

    /// Finds the object's cache, checks the cookie and frees it; false on any refusal.
    private func free(_ address: UInt, _ c: UnsafeMutablePointer<CacheStressCounters>) -> Bool {
        // Sound: an object this scenario allocated and still owns.
        let p = UnsafeMutableRawPointer(bitPattern: address).unsafelyUnwrapped
        guard let cache = quarry.cache(owning: p) else { return false }
        if !Cookie.check(p, size: cache.objectSize, key: configuration.key) {
            c.pointee.mismatches.wrappingAdd(1, ordering: .relaxed)
        }
        do throws(QuarryError) { try cache.free(p) } catch { return false }
        return true
    }

    private func free(_ address: UInt, counting c: UnsafeMutablePointer<CacheStressCounters>) {
        if !free(address, c) { c.pointee.unexpected.wrappingAdd(1, ordering: .relaxed) }
    }

    // MARK: The run

    /// CPU `cpu`'s thread context: allocate (phases of 2000 steps that lean to
    /// allocating, then to freeing), free its own, publish its own to the mailbox, free
    /// what it takes out; at the end every object of its own freed.
    public func run(cpu: Int) {
        let c = counters(cpu)
        let objects = list(cpu)
        var count = 0
        var random = SeededGenerator(seed: configuration.seed &+ UInt64(cpu) &* 0x9E37_79B9_7F4A_7C15)
        var step = 0
        while step < configuration.operationsPerCPU {
            let r = random.below(100)
            let allocating = (step / 2000) % 2 == 0 ? 50 : 40
            step += 1
            if count == 0 || (r < allocating && count < configuration.listCapacity) {
                let a = allocate(caches[random.below(cacheCount)].unsafelyUnwrapped, c)
                if a != 0 {
                    objects[count] = a
                    count += 1
                }
            } else if r < 80 {
                let i = random.below(count)
                count -= 1
                let a = objects[i]
                objects[i] = objects[count]
                free(a, counting: c)
            } else if r < 90 {
                let i = random.below(count)
                count -= 1
                let a = objects[i]
                objects[i] = objects[count]
                let out = mailbox[random.below(Self.mailboxSlots)].exchange(a, ordering: .acquiringAndReleasing)
                if out != 0 {
                    free(out, counting: c)
                    c.pointee.mailboxFrees.wrappingAdd(1, ordering: .relaxed)
                }
            } else {
                let out = mailbox[random.below(Self.mailboxSlots)].exchange(0, ordering: .acquiringAndReleasing)
                if out != 0 {
                    free(out, counting: c)
                    c.pointee.mailboxFrees.wrappingAdd(1, ordering: .relaxed)
                }
            }
            c.pointee.operations.wrappingAdd(1, ordering: .relaxed)
        }
        while count > 0 {
            count -= 1
            free(objects[count], counting: c)
        }
    }

    /// One timer tick on CPU `cpu`, in its interrupt handler: allocate one object of
    /// `handlerCache`, keep it until four ticks later, free the oldest (cookie checked).
    public func interrupt(cpu: Int) {
        guard cpu < configuration.cpus else { return }
        let c = counters(cpu)
        let h = handler(cpu)
        c.pointee.handlerRuns.wrappingAdd(1, ordering: .relaxed)
        let i = h.pointee.next & 3
        h.pointee.next &+= 1
        let old = h.pointee.stash[i]
        h.pointee.stash[i] = 0
        do throws(QuarryError) {
            let p = try handlerCache.allocate()
            Cookie.write(p, size: handlerCache.objectSize, key: configuration.key)
            h.pointee.stash[i] = UInt(bitPattern: p)
            c.pointee.handlerAllocations.wrappingAdd(1, ordering: .relaxed)
        } catch {
            c.pointee.handlerFailures.wrappingAdd(1, ordering: .relaxed)
        }
        if old != 0 && !free(old, c) { c.pointee.handlerFailures.wrappingAdd(1, ordering: .relaxed) }
    }

    /// At quiescence (every CPU returned from `run`, no handler runs any more, with a
    /// happens-before edge to the caller), on CPU 0: frees what the mailbox and the
    /// handlers still hold, checks, and returns the totals.
    public func finish<C: ScenarioChecks>(_ checks: C) -> CacheStressReport {
        let c0 = counters(0)
        var slot = 0
        while slot < Self.mailboxSlots {
            let out = mailbox[slot].exchange(0, ordering: .acquiringAndReleasing)
            if out != 0 { free(out, counting: c0) }
            slot += 1
        }
        var report = CacheStressReport()
        var cpu = 0
        while cpu < configuration.cpus {
            let h = handler(cpu)
            var i = 0
            while i < 4 {
                if h.pointee.stash[i] != 0 { free(h.pointee.stash[i], counting: c0) }
                h.pointee.stash[i] = 0
                i += 1
            }
            cpu += 1
        }
        cpu = 0
        while cpu < configuration.cpus {
            let c = counters(cpu)
            report.operations += c.pointee.operations.load(ordering: .relaxed)
            report.mailboxFrees += c.pointee.mailboxFrees.load(ordering: .relaxed)
            report.mismatches += c.pointee.mismatches.load(ordering: .relaxed)
            report.outOfMemory += c.pointee.outOfMemory.load(ordering: .relaxed)
            report.unexpected += c.pointee.unexpected.load(ordering: .relaxed)
            report.handlerRuns += c.pointee.handlerRuns.load(ordering: .relaxed)
            let handled = c.pointee.handlerAllocations.load(ordering: .relaxed)
            report.handlerAllocations += handled
            if handled > 0 { report.cpusWithHandlerAllocations += 1 }
            report.handlerFailures += c.pointee.handlerFailures.load(ordering: .relaxed)
            cpu += 1
        }
        checks.checkEqual("cache stress: cookie mismatches", report.mismatches, 0)
        checks.checkEqual("cache stress: unexpected errors", report.unexpected, 0)
        checks.checkEqual("cache stress: allocations out of memory", report.outOfMemory, 0)
        checks.checkEqual(
            "cache stress: every operation ran", report.operations,
            configuration.cpus * configuration.operationsPerCPU)
        checks.check("cache stress: objects were freed out of the mailbox", report.mailboxFrees > 0, "none")
        checks.checkEqual("cache stress: handler failures", report.handlerFailures, 0)
        if configuration.interrupts {
            checks.checkEqual(
                "cache stress: every CPU's timer handler allocated", report.cpusWithHandlerAllocations,
                configuration.cpus)
        }
        return report
    }
}

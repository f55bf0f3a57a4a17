// EpochSuite: deferred freeing on bare metal: the EBR-backed lock-free stack stressed on
// every CPU at once while every CPU's timer interrupt pushes, pops and retires too; a
// retired object that is not reused while its reader is inside; a stalled reader.
// Neighbours: AllocatorSuite.swift (calls runEpochSuite and, from every tick, epochTimerHook),
// SMP.swift (phases), TestHarness.swift (reports), Quarry/Epochs/EpochReclaimer.swift (under test).

import CQuarrySupport
import Quarry
import Synchronization

typealias KernelReclaimer = EpochReclaimer<X86Platform>
typealias KernelStack = LockFreeStack<X86Platform>

/// One CPU's counts. Each field is updated by its CPU only, from thread and interrupt
/// context (hence atomic adds), and read by the boot CPU after the phase.
struct EpochCPUCounts: ~Copyable {
    /// The next value this CPU's thread context pushes (`< hookOrigin`).
    let nextValue = Atomic<Int>(0)
    let pushes = Atomic<Int>(0)
    let pops = Atomic<Int>(0)
    let stalledPops = Atomic<Int>(0)
    let hookPushes = Atomic<Int>(0)
    let hookPops = Atomic<Int>(0)
    let hookStalls = Atomic<Int>(0)
    /// Pops of a value already popped, or never pushed.
    let duplicates = Atomic<Int>(0)
    let unknown = Atomic<Int>(0)
}

/// The suite's shared state. Written by the boot CPU before a phase starts (the phase
/// start is a release/acquire pair) or with the timer hook off; read by every CPU.
enum EpochSuite {
    /// Retired nodes each CPU may hold: small, so the bound is reached and tested.
    static let bound = 64
    static let operationsPerCPU = 5_000
    /// Values are `cpu << 15 | origin | i` with `i < hookOrigin`: origin 0 for thread
    /// context, `hookOrigin` for the timer hook. So every value is pushed once, and one
    /// bitmap of `maxCPUs << 15` bits (64 KiB, the largest object) marks them all.
    static let hookOrigin = 0x4000
    static let valuesPerCPU = 1 << 15
    static var bitmapBytes: Int { X86Platform.maxCPUs * valuesPerCPU / 8 }

    nonisolated(unsafe) static var reclaimer: KernelReclaimer? = nil
    nonisolated(unsafe) static var stack: KernelStack? = nil
    /// `maxCPUs` EpochCPUCounts; one bit per value pushed; one per value popped.
    nonisolated(unsafe) static var countRecords: UnsafeMutablePointer<EpochCPUCounts>? = nil
    nonisolated(unsafe) static var pushedBits: UnsafeMutablePointer<Atomic<UInt32>>? = nil
    nonisolated(unsafe) static var poppedBits: UnsafeMutablePointer<Atomic<UInt32>>? = nil
    /// The timer hook works only while this is set.
    static let hookEnabled = Atomic<Bool>(false)

    // The stalled-reader and reuse phases.
    nonisolated(unsafe) static var plain: KernelCache? = nil
    static let readerInside = Atomic<Bool>(false)
    static let readerMayLeave = Atomic<Bool>(false)
    static let readerLeft = Atomic<Bool>(false)
    static let stallsSeen = Atomic<Int>(0)
    static let overBound = Atomic<Int>(0)
    static let reusedTooEarly = Atomic<Int>(0)
    static let stallHookCalls = Atomic<Int>(0)
    static let stallHookCPU = Atomic<Int>(-2)

    static func counts(_ cpu: Int) -> UnsafeMutablePointer<EpochCPUCounts> { countRecords! + cpu }

    /// Marks `value` in `bits`; returns whether it was already marked.
    static func mark(_ bits: UnsafeMutablePointer<Atomic<UInt32>>, _ value: Int) -> Bool {
        let mask = UInt32(1) << UInt32(value & 31)
        return bits[value >> 5].bitwiseOr(mask, ordering: .relaxed).oldValue & mask != 0
    }

    static func isMarked(_ bits: UnsafeMutablePointer<Atomic<UInt32>>, _ value: Int) -> Bool {
        bits[value >> 5].load(ordering: .relaxed) & (UInt32(1) << UInt32(value & 31)) != 0
    }

    /// Pushes this CPU's next thread-context value; false when out of values or memory.
    static func pushNext(_ cpu: Int) -> Bool {
        let c = counts(cpu)
        let i = c.pointee.nextValue.load(ordering: .relaxed)
        guard i < hookOrigin else { return false }
        c.pointee.nextValue.store(i + 1, ordering: .relaxed)   // thread context only
        guard push(cpu << 15 | i) else { return false }
        c.pointee.pushes.add(1, ordering: .relaxed)
        return true
    }

    /// Pushes `value` (marking it first, so a popper on another CPU finds it marked).
    static func push(_ value: Int) -> Bool {
        _ = mark(pushedBits!, value)
        do throws(QuarryError) {
            try stack!.push(UInt(value))
            return true
        } catch {
            return false
        }
    }

    /// Pops one value and accounts for it on `cpu`; nil when empty; throws when stalled.
    static func pop(_ cpu: Int) throws(QuarryError) -> Int? {
        guard let raw = try stack!.pop() else { return nil }
        let value = Int(raw)
        if value < 0 || value >= X86Platform.maxCPUs * valuesPerCPU || !isMarked(pushedBits!, value) {
            counts(cpu).pointee.unknown.add(1, ordering: .relaxed)
        } else if mark(poppedBits!, value) {
            counts(cpu).pointee.duplicates.add(1, ordering: .relaxed)
        }
        return value
    }
}

/// Runs inside every timer interrupt on every CPU (from allocatorTimerHook): a critical
/// section in interrupt context, nested inside whatever the interrupted code holds, with
/// a push, a pop (retiring its node) and a poll.
func epochTimerHook() {
    guard EpochSuite.hookEnabled.load(ordering: .acquiring), let reclaimer = EpochSuite.reclaimer else { return }
    let cpu = X86Platform.cpuIndex
    let c = EpochSuite.counts(cpu)
    reclaimer.enter()
    let n = c.pointee.hookPushes.load(ordering: .relaxed)
    if n < EpochSuite.hookOrigin, EpochSuite.push(cpu << 15 | EpochSuite.hookOrigin | n) {
        c.pointee.hookPushes.add(1, ordering: .relaxed)
    }
    do throws(QuarryError) {
        if try EpochSuite.pop(cpu) != nil { c.pointee.hookPops.add(1, ordering: .relaxed) }
    } catch {
        c.pointee.hookStalls.add(1, ordering: .relaxed)
    }
    reclaimer.exit()
    reclaimer.poll()
}

/// The stack stress on one CPU: random pushes and pops of unique values.
func epochStressPhase(_ cpu: Int) {
    let c = EpochSuite.counts(cpu)
    var rng = SeededGenerator(seed: 0xEB0C_0000 &+ UInt64(cpu))
    for _ in 0..<EpochSuite.operationsPerCPU {
        if rng.below(2) == 0 {
            _ = EpochSuite.pushNext(cpu)
        } else {
            do throws(QuarryError) {
                if try EpochSuite.pop(cpu) != nil { c.pointee.pops.add(1, ordering: .relaxed) }
            } catch {
                c.pointee.stalledPops.add(1, ordering: .relaxed)
                EpochSuite.reclaimer!.poll()
            }
        }
    }
}

/// Does nothing: once every CPU ran it, no timer hook that started before
/// `hookEnabled` was cleared is still running (hooks run with interrupts off, the phase
/// runs outside them) and every later hook sees the flag clear.
func epochQuiescePhase(_ cpu: Int) {}

/// CPU 1 enters and stays; the other CPUs push and pop until each has been refused
/// once (their backlogs checked against the bound all along), then wait; once every
/// one was refused, CPU 1 leaves (or after 2 s).
func epochStallPhase(_ cpu: Int) {
    let r = EpochSuite.reclaimer!
    if cpu == 1 {
        r.enter()
        EpochSuite.readerInside.store(true, ordering: .releasing)
        let deadline = Clock.now() &+ Clock.ticks(microseconds: 2_000_000)
        while !EpochSuite.readerMayLeave.load(ordering: .acquiring) && Clock.now() < deadline { quarry_pause() }
        r.exit()
        EpochSuite.readerLeft.store(true, ordering: .releasing)
        return
    }
    while !EpochSuite.readerInside.load(ordering: .acquiring) { quarry_pause() }
    var i = 0
    var refused = false
    while !refused && !EpochSuite.readerLeft.load(ordering: .acquiring) {
        if i % 3 == 0 {
            _ = EpochSuite.pushNext(cpu)
        } else {
            do throws(QuarryError) {
                _ = try EpochSuite.pop(cpu)
            } catch {
                refused = true
                if EpochSuite.stallsSeen.add(1, ordering: .relaxed).newValue == SMP.cpuCount - 1 {
                    EpochSuite.readerMayLeave.store(true, ordering: .releasing)
                }
            }
        }
        if r.statistics(cpu: cpu).pending > EpochSuite.bound { EpochSuite.overBound.add(1, ordering: .relaxed) }
        i += 1
    }
    while !EpochSuite.readerLeft.load(ordering: .acquiring) { quarry_pause() }
}

/// Reader on CPU `reader`: an object retired while it is inside is not handed out again.
/// The boot CPU retires and allocates; the reader (CPU 1, or CPU 0 itself on one CPU)
/// stays inside until the boot CPU has allocated 256 objects.
func epochReusePhase(_ cpu: Int) {
    let r = EpochSuite.reclaimer!
    if cpu == 1 {
        r.enter()
        EpochSuite.readerInside.store(true, ordering: .releasing)
        while !EpochSuite.readerMayLeave.load(ordering: .acquiring) { quarry_pause() }
        r.exit()
        EpochSuite.readerLeft.store(true, ordering: .releasing)
        return
    }
    guard cpu == 0 else { return }
    let single = SMP.cpuCount == 1
    if single { r.enter() } else {
        while !EpochSuite.readerInside.load(ordering: .acquiring) { quarry_pause() }
    }
    let c = EpochSuite.plain!
    guard let x = try? c.allocate() else { return }
    do throws(QuarryError) { try r.retire(x, to: c) } catch { EpochSuite.reusedTooEarly.add(1, ordering: .relaxed) }
    var held = InlineArray<256, UInt>(repeating: 0)
    for i in 0..<256 {
        r.poll()
        guard let p = try? c.allocate() else { break }
        if p == x { EpochSuite.reusedTooEarly.add(1, ordering: .relaxed) }
        held[i] = UInt(bitPattern: p)
    }
    for i in 0..<256 where held[i] != 0 { _ = try? c.free(UnsafeMutableRawPointer(bitPattern: held[i])) }
    if single { r.exit() } else {
        EpochSuite.readerMayLeave.store(true, ordering: .releasing)
        while !EpochSuite.readerLeft.load(ordering: .acquiring) { quarry_pause() }
    }
    r.synchronize()
    // Freed now that the reader left.
    if c.activeObjects != 0 { EpochSuite.reusedTooEarly.add(1000, ordering: .relaxed) }
}

/// Runs the deferred-freeing suite on its own Quarry over `[arenaBase, arenaBase + arenaSize)`.
/// Boot CPU only, every CPU online and idle, timers ticking.
func runEpochSuite(arenaBase: UnsafeMutableRawPointer, arenaSize: Int) {
    Console.printLine("== epoch suite (deferred freeing)")
    let q: KernelQuarry
    let r: KernelReclaimer
    let bits: KernelCache
    do throws(QuarryError) {
        q = try KernelQuarry.initialize(base: arenaBase, size: arenaSize)
        r = try q.createReclaimer(retiredPerCPU: EpochSuite.bound, stallHook: { cpu, _ in
            EpochSuite.stallHookCalls.add(1, ordering: .relaxed)
            EpochSuite.stallHookCPU.store(cpu, ordering: .relaxed)
        })
        EpochSuite.stack = try KernelStack.create(in: q, reclaimer: r)
        EpochSuite.plain = try q.createCache(name: "ebr_plain", size: 48)
        bits = try q.createCache(name: "ebr_suite", size: EpochSuite.bitmapBytes)
        let pushed = try bits.allocate()
        let popped = try bits.allocate()
        let counts = try bits.allocate()
        // Sound: each object is bitmapBytes long (64 KiB), word-aligned; the counts need
        // maxCPUs × 36 bytes of the third. All are only accessed through atomics.
        pushed.initializeMemory(as: UInt8.self, repeating: 0, count: EpochSuite.bitmapBytes)
        popped.initializeMemory(as: UInt8.self, repeating: 0, count: EpochSuite.bitmapBytes)
        EpochSuite.pushedBits = pushed.bindMemory(to: Atomic<UInt32>.self, capacity: EpochSuite.bitmapBytes / 4)
        EpochSuite.poppedBits = popped.bindMemory(to: Atomic<UInt32>.self, capacity: EpochSuite.bitmapBytes / 4)
        let records = counts.bindMemory(to: EpochCPUCounts.self, capacity: X86Platform.maxCPUs)
        for i in 0..<X86Platform.maxCPUs { (records + i).initialize(to: EpochCPUCounts()) }
        EpochSuite.countRecords = records
    } catch {
        TestHarness.fail("epoch: set-up") { Console.print(error.name) }
        return
    }
    EpochSuite.reclaimer = r
    let cpus = SMP.cpuCount
    let stack = EpochSuite.stack!

    // 1. The stack on every CPU, with the timer hook in interrupt context on every CPU.
    let start = Clock.now()
    EpochSuite.hookEnabled.store(true, ordering: .releasing)
    SMP.runOnAllCPUs { cpu in epochStressPhase(cpu) }
    EpochSuite.hookEnabled.store(false, ordering: .releasing)
    SMP.runOnAllCPUs { cpu in epochQuiescePhase(cpu) }
    let milliseconds = Clock.milliseconds(from: start, to: Clock.now())
    var drained = 0
    while true {
        do throws(QuarryError) {
            guard try EpochSuite.pop(0) != nil else { break }
            drained += 1
        } catch {
            r.synchronize()
        }
    }
    var totals = InlineArray<8, Int>(repeating: 0)
    for cpu in 0..<cpus {
        let c = EpochSuite.counts(cpu)
        let rs = r.statistics(cpu: cpu)
        let row: InlineArray<8, Int> = [
            c.pointee.pushes.load(ordering: .relaxed), c.pointee.pops.load(ordering: .relaxed),
            c.pointee.stalledPops.load(ordering: .relaxed), c.pointee.hookPushes.load(ordering: .relaxed),
            c.pointee.hookPops.load(ordering: .relaxed), c.pointee.hookStalls.load(ordering: .relaxed),
            c.pointee.duplicates.load(ordering: .relaxed), c.pointee.unknown.load(ordering: .relaxed),
        ]
        for k in 0..<8 { totals[k] += row[k] }
        Console.line {
            Console.print("epoch: cpu ")
            Console.decimal(cpu)
            Console.print(": ")
            Console.decimal(row[0])
            Console.print(" pushes, ")
            Console.decimal(row[1])
            Console.print(" pops, ")
            Console.decimal(row[2])
            Console.print(" stalled pops; in the timer interrupt ")
            Console.decimal(row[3])
            Console.print(" pushes, ")
            Console.decimal(row[4])
            Console.print(" pops, ")
            Console.decimal(row[5])
            Console.print(" stalled; retired ")
            Console.decimal(rs.retired)
            Console.print(", freed ")
            Console.decimal(rs.freed)
            Console.print(", high-water ")
            Console.decimal(rs.highWater)
            Console.newline()
        }
    }
    // Every value marked pushed is marked popped, and no other.
    var lost = 0
    var invented = 0
    for w in 0..<(EpochSuite.bitmapBytes / 4) {
        let pushedWord = EpochSuite.pushedBits![w].load(ordering: .relaxed)
        let poppedWord = EpochSuite.poppedBits![w].load(ordering: .relaxed)
        lost += (pushedWord & ~poppedWord).nonzeroBitCount
        invented += (poppedWord & ~pushedWord).nonzeroBitCount
    }
    let pushes = totals[0] + totals[3]
    let pops = totals[1] + totals[4] + drained
    let stats = r.statistics
    Console.line {
        Console.print("epoch: ")
        Console.decimal(cpus)
        Console.print(" CPUs, ")
        Console.decimal(milliseconds)
        Console.print(" ms: ")
        Console.decimal(pushes)
        Console.print(" pushes, ")
        Console.decimal(pops)
        Console.print(" pops (")
        Console.decimal(drained)
        Console.print(" drained at the end); epoch ")
        Console.decimal(stats.epoch)
        Console.print(", ")
        Console.decimal(stats.blockedAdvances)
        Console.print(" blocked advances, ")
        Console.decimal(stats.pending)
        Console.print(" retired nodes pending")
        Console.newline()
    }
    TestHarness.checkEqual("epoch: every value pushed was popped", lost, 0)
    TestHarness.checkEqual("epoch: no value popped twice", totals[6], 0)
    TestHarness.checkEqual("epoch: no value popped that was never pushed", totals[7] + invented, 0)
    TestHarness.checkEqual("epoch: pops == pushes", pops, pushes)
    TestHarness.checkEqual("epoch: no reader saw a freed node (cookies)", stack.cookieMismatches, 0)
    TestHarness.checkAtLeast("epoch: the timer interrupt pushed and popped", totals[3] + totals[4], 1)
    TestHarness.check("epoch: no CPU held more retired nodes than the bound", stats.highWater <= EpochSuite.bound,
                      "high-water above the bound")
    TestHarness.checkEqual("epoch: every retired node was freed or is pending",
                           Int(stats.retired) - Int(stats.freed), stats.pending)

    // 2. A retired object is not handed out again while a reader is inside.
    EpochSuite.readerInside.store(false, ordering: .relaxed)
    EpochSuite.readerMayLeave.store(false, ordering: .relaxed)
    EpochSuite.readerLeft.store(false, ordering: .relaxed)
    SMP.runOnAllCPUs { cpu in epochReusePhase(cpu) }
    TestHarness.checkEqual("epoch: a retired object is not reused while its reader is inside, then is",
                           EpochSuite.reusedTooEarly.load(ordering: .relaxed), 0)

    // 3. A stalled reader (CPU 1 stays inside; on one CPU, the boot CPU stalls itself).
    if cpus >= 2 {
        EpochSuite.readerInside.store(false, ordering: .relaxed)
        EpochSuite.readerMayLeave.store(false, ordering: .relaxed)
        EpochSuite.readerLeft.store(false, ordering: .relaxed)
        SMP.runOnAllCPUs { cpu in epochStallPhase(cpu) }
        TestHarness.checkEqual("epoch: every other CPU was refused while CPU 1 stayed inside",
                               EpochSuite.stallsSeen.load(ordering: .relaxed), cpus - 1)
        TestHarness.checkEqual("epoch: the stall hook named CPU 1", EpochSuite.stallHookCPU.load(ordering: .relaxed), 1)
    } else {
        r.enter()
        var refused = 0
        for _ in 0..<(2 * EpochSuite.bound) {
            guard let p = try? EpochSuite.plain!.allocate() else { break }
            do throws(QuarryError) { try r.retire(p, to: EpochSuite.plain!) } catch {
                refused += 1
                _ = try? EpochSuite.plain!.free(p)   // nobody else can hold it: never published
            }
            if r.statistics(cpu: 0).pending > EpochSuite.bound { EpochSuite.overBound.add(1, ordering: .relaxed) }
        }
        r.exit()
        TestHarness.checkEqual("epoch: a CPU inside its own section is refused past the bound", refused, EpochSuite.bound)
        TestHarness.checkEqual("epoch: the stall hook named CPU 0", EpochSuite.stallHookCPU.load(ordering: .relaxed), 0)
    }
    TestHarness.checkEqual("epoch: backlogs never passed the bound while stalled", EpochSuite.overBound.load(ordering: .relaxed), 0)
    TestHarness.check("epoch: stalls counted and reported",
                      r.statistics.stalls > 0 && Int(r.statistics.stalls) == EpochSuite.stallHookCalls.load(ordering: .relaxed),
                      "stall counter and hook disagree")

    // 4. Everything back: drain, flush, destroy, shrink.
    while true {
        do throws(QuarryError) {
            guard try EpochSuite.pop(0) != nil else { break }
        } catch {
            r.synchronize()
        }
    }
    r.checkInvariants()
    q.checkInvariants()
    EpochSuite.reclaimer = nil
    EpochSuite.stack = nil
    TestHarness.checkEqual("epoch: stack destroyed empty", stack.destroy(), 0)
    r.destroy()
    _ = try? bits.free(UnsafeMutableRawPointer(EpochSuite.pushedBits!))
    _ = try? bits.free(UnsafeMutableRawPointer(EpochSuite.poppedBits!))
    _ = try? bits.free(UnsafeMutableRawPointer(EpochSuite.countRecords!))
    TestHarness.checkEqual("epoch: suite caches destroyed", bits.destroy() + EpochSuite.plain!.destroy(), 0)
    q.shrink()
    TestHarness.checkEqual("epoch: only the internal caches are left", q.cacheCount, 2)
    TestHarness.checkEqual("epoch: heap back to its first state", q.pageStatistics.pagesInUse, 0)
}

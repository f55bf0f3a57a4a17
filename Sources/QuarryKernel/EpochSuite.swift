// EpochSuite: deferred freeing on bare metal: the EBR-backed lock-free stack stressed on
// every CPU at once while every CPU's timer interrupt pushes, pops and retires too (the
// EpochStackStress scenario of Tests/Scenarios, which the host runs too); a retired object
// that is not reused while its reader is inside; a stalled reader.
// Neighbours: AllocatorSuite.swift (calls runEpochSuite and, from every tick, epochTimerHook),
// SMP.swift (phases), TestHarness.swift (reports), Quarry/Epochs/EpochReclaimer.swift (under test),
// Tests/QuarryTests/LockFreeStackTests.swift (the same stress on the host).

import CQuarrySupport
import Quarry
import Synchronization

typealias KernelReclaimer = EpochReclaimer<X86Platform>
typealias KernelStack = LockFreeStack<X86Platform>

/// The suite's shared state. Written by the boot CPU before a phase starts (the phase
/// start is a release/acquire pair) or with the timer hook off; read by every CPU.
enum EpochSuite {
    /// Retired nodes each CPU may hold: small, so the bound is reached and tested.
    static let bound = 64
    static let operationsPerCPU = 5_000
    /// 2^13 values per CPU, half for thread context (about operationsPerCPU / 2 pushes),
    /// half for the timer hook: the stress's state for 16 CPUs fits one object.
    static let valueBits = 13

    nonisolated(unsafe) static var reclaimer: KernelReclaimer? = nil
    nonisolated(unsafe) static var stack: KernelStack? = nil
    nonisolated(unsafe) static var stress: EpochStackStress<X86Platform>? = nil
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

    /// Pops until the stack is empty, waiting out stalls.
    static func drain() {
        while true {
            do throws(QuarryError) {
                guard try stack!.pop() != nil else { break }
            } catch {
                reclaimer!.synchronize()
            }
        }
    }
}

/// Runs inside every timer interrupt on every CPU (from allocatorTimerHook): the
/// stress's interrupt step while it runs.
func epochTimerHook() {
    guard EpochSuite.hookEnabled.load(ordering: .acquiring), let stress = EpochSuite.stress else { return }
    stress.interrupt(cpu: X86Platform.cpuIndex)
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
    let stack = EpochSuite.stack!
    var i = 0
    var refused = false
    while !refused && !EpochSuite.readerLeft.load(ordering: .acquiring) {
        if i % 3 == 0 {
            _ = try? stack.push(UInt(i))
        } else {
            do throws(QuarryError) {
                _ = try stack.pop()
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
    let cpus = SMP.cpuCount
    let memory: UnsafeMutableRawPointer
    let state: KernelCache
    do throws(QuarryError) {
        q = try KernelQuarry.initialize(base: arenaBase, size: arenaSize)
        r = try q.createReclaimer(retiredPerCPU: EpochSuite.bound, stallHook: { cpu, _ in
            EpochSuite.stallHookCalls.add(1, ordering: .relaxed)
            EpochSuite.stallHookCPU.store(cpu, ordering: .relaxed)
        })
        EpochSuite.stack = try KernelStack.create(in: q, reclaimer: r)
        EpochSuite.plain = try q.createCache(name: "ebr_plain", size: 48)
        state = try q.createCache(name: "ebr_stress",
                                  size: EpochStackStress<X86Platform>.bytes(cpus: cpus, valueBits: EpochSuite.valueBits),
                                  alignment: 64)
        memory = try state.allocate()
    } catch {
        TestHarness.fail("epoch: set-up") { Console.print(error.name) }
        return
    }
    EpochSuite.reclaimer = r
    let stack = EpochSuite.stack!

    // 1. The stack on every CPU, with the timer hook in interrupt context on every CPU.
    let stress = EpochStackStress(stack: stack, memory: memory, configuration: .init(
        cpus: cpus, operationsPerCPU: EpochSuite.operationsPerCPU, valueBits: EpochSuite.valueBits,
        seed: 0xEB0C_0000, interrupts: true))
    EpochSuite.stress = stress
    let start = Clock.now()
    EpochSuite.hookEnabled.store(true, ordering: .releasing)
    SMP.runOnAllCPUs { cpu in EpochSuite.stress!.run(cpu: cpu) }
    EpochSuite.hookEnabled.store(false, ordering: .releasing)
    SMP.runOnAllCPUs { cpu in epochQuiescePhase(cpu) }
    let milliseconds = Clock.milliseconds(from: start, to: Clock.now())
    let report = stress.finish(HarnessChecks())
    EpochSuite.stress = nil
    _ = try? state.free(memory)
    TestHarness.checkEqual("epoch: stress state's cache destroyed", state.destroy(), 0)
    let stats = r.statistics
    Console.line {
        Console.print("epoch: ")
        Console.decimal(cpus)
        Console.print(" CPUs, ")
        Console.decimal(milliseconds)
        Console.print(" ms: ")
        Console.decimal(report.pushes)
        Console.print(" pushes, ")
        Console.decimal(report.pops)
        Console.print(" pops, ")
        Console.decimal(report.stalledPops)
        Console.print(" stalled pops; in the timer interrupt ")
        Console.decimal(report.handlerPushes)
        Console.print(" pushes, ")
        Console.decimal(report.handlerPops)
        Console.print(" pops, ")
        Console.decimal(report.handlerStalls)
        Console.print(" stalled; ")
        Console.decimal(report.drained)
        Console.print(" drained at the end; epoch ")
        Console.decimal(stats.epoch)
        Console.print(", ")
        Console.decimal(stats.blockedAdvances)
        Console.print(" blocked advances, high-water ")
        Console.decimal(stats.highWater)
        Console.newline()
    }

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
    EpochSuite.drain()
    r.checkInvariants()
    q.checkInvariants()
    EpochSuite.reclaimer = nil
    EpochSuite.stack = nil
    TestHarness.checkEqual("epoch: stack destroyed empty", stack.destroy(), 0)
    r.destroy()
    TestHarness.checkEqual("epoch: suite cache destroyed", EpochSuite.plain!.destroy(), 0)
    q.shrink()
    TestHarness.checkEqual("epoch: only the internal caches are left", q.cacheCount, 2)
    TestHarness.checkEqual("epoch: heap back to its first state", q.pageStatistics.pagesInUse, 0)
}
